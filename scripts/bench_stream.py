#!/usr/bin/env python
"""Benchmark of `orion-etl stream` (not a test). Writes results into docs/benchmarks.md.

    PYTHONPATH=. .venv/bin/python scripts/bench_stream.py [--events 1000000] [--story-sample 3000]
        [--latency-rates 500,2000,20000] [--latency-seconds 10] [--compare-with DIR] [--db-rtt-ms 0.5]
        [--parts main,forms,scale,memory,profile] [--scale-procs 1,2,4] [--scale-partitions 4,8]
        [--scale-events N] [--memory-events N] [--profile-events N] [--no-write]

Side by side in one run, over the same N pre-produced trade CDC events (Debezium JSON with the
embedded schema, as `value.converter.schemas.enable=true` produces them):
  (a) a bare confluent-kafka consume loop over the topic (no decoding),
  (b) a raw COPY of the same rows (already in fact_trades' shape) into fact_trades,
  (c) the story's approach: json.loads, per-row rule checks, one single-row upsert and a commit
      per message, run on a sample and extrapolated,
  (d) the loader: `orion-etl stream --until-caught-up` as a separate process (peak RSS measured);
with --db-rtt-ms X, (c) and (d) once more with all their PostgreSQL traffic through a relay that
adds X ms to every round trip (scripts/netdelay.py: a userspace delay, this kernel has no netem);
then latency at steady rates: events produced at each of --latency-rates per second with source
ts_ms = produce time, loaded by a running loader; p50/p99 of (warehouse commit - ts_ms).
With --compare-with DIR (a checkout of the code before, e.g. `git archive main orion_etl | tar -x -C
DIR`), the loader drain and the latency table run with that code too, in the same run.

--parts selects what runs (default `main`, all of the above); each part writes its own block of
docs/benchmarks.md:
  forms    the same events with and without the embedded schema (`cdc.schemas`): value and broker
           bytes, loader drains alternated, loader and PostgreSQL CPU per 1,000 events, peak RSS;
  scale    --scale-procs loader processes in one group over --scale-partitions partitions:
           aggregate rate, CPU per process, PostgreSQL backend / auxiliary / broker CPU and WAL per
           event (scripts/bench_cpu.py reads /proc);
  memory   peak RSS of an idle loader, a bare consume loop, batch sizes, envelope forms, smaller
           fetches, with the smaps split at the peak;
  profile  the loader's stages in this process (timers wrapped around its functions by the bench,
           none in the product): wall, client CPU, main-thread CPU and PostgreSQL backend CPU;
  copy     the loader's own fact_trades rows (captured from `copy_payload`) COPYed as CSV and as
           binary (`[warehouse] copy_format`), rounds alternated: encode CPU, server CPU per row.

Uses its own warehouse database and topics on the local stack and removes them afterwards.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import confluent_kafka
import polars as pl
import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orion_etl.adapters import migrations  # noqa: E402
from orion_etl.adapters.kafka import ensure_topics, make_admin, make_consumer, make_producer  # noqa: E402
from orion_etl.adapters.postgres import connect  # noqa: E402
from orion_etl.config.models import OrionSettings  # noqa: E402
from orion_etl.jobs.stream import CONSUMER_TUNING  # noqa: E402
from tests.stream_builders import envelope_schema  # noqa: E402

sys.path.insert(0, str(REPO / "scripts"))
from bench_cpu import (  # noqa: E402
    ChildProcess,
    CpuWatch,
    LoaderProcess,
    cpu_seconds,
    kafka_broker_pid,
    machine_busy,
    parent_of,
)
from netdelay import calibrated_port  # noqa: E402

MARK_START, MARK_END = "<!-- bench_stream:start -->", "<!-- bench_stream:end -->"
PROFILE_MARKS = ("<!-- bench_stream_profile:start -->", "<!-- bench_stream_profile:end -->")
MEMORY_MARKS = ("<!-- bench_stream_memory:start -->", "<!-- bench_stream_memory:end -->")
FORMS_MARKS = ("<!-- bench_stream_forms:start -->", "<!-- bench_stream_forms:end -->")
SCALE_MARKS = ("<!-- bench_stream_scale:start -->", "<!-- bench_stream_scale:end -->")
COPY_MARKS = ("<!-- bench_stream_copy:start -->", "<!-- bench_stream_copy:end -->")


def log(msg: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {msg}", flush=True)


# --- data -------------------------------------------------------------------------------------

TENANT = str(uuid.UUID(int=1))
CLIENTS = [str(uuid.UUID(int=100 + i)) for i in range(50)]
INSTRUMENTS = [str(uuid.UUID(int=1000 + i)) for i in range(20)]
LPS = [str(uuid.UUID(int=5000 + i)) for i in range(5)]


def trade_values(i: int) -> dict[str, Any]:
    return {
        "id": str(uuid.UUID(int=(1 << 100) + i)),
        "tenant_id": TENANT,
        "trade_reference": f"T{i:09d}",
        "order_id": None,
        "client_id": CLIENTS[i % len(CLIENTS)],
        "instrument_id": INSTRUMENTS[i % len(INSTRUMENTS)],
        "lp_id": LPS[i % len(LPS)],
        "trade_date": f"2024-03-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{(i // 60) % 60:02d}.{i % 1000000:06d}Z",  # noqa: E501
        "settlement_date": 19800 + i % 30,
        "side": "BUY" if i % 2 else "SELL",
        "order_type": "MARKET",
        "quantity": f"{(i % 1000) + 1}.{i % 100:02d}00000000",
        "price": f"1.{i % 10000:04d}000000",
        "fees": f"{i % 7}.5000000000",
        "currency": "USD",
        "execution_venue": "LP",
        "fill_latency_ms": i % 50,
        "fill_count": 1,
        "is_partial_fill": False,
        "created_at": "2024-03-01T00:00:00Z",
        "updated_at": "2024-03-01T00:00:00Z",
    }


class EnvelopeWriter:
    """Fast Debezium envelope bytes: the schema part is serialized once.

    `schemas=False`: the value as the JSON converter writes it with `schemas.enable=false`, the
    payload alone (the same payload).
    """

    def __init__(self, schemas: bool = True) -> None:
        self.schemas = schemas
        self.head = b'{"schema":' + json.dumps(envelope_schema("trades"), separators=(",", ":")).encode()

    def __call__(self, i: int, ts_ms: int) -> bytes:
        lsn = 1_000_000 + i * 10
        payload = {
            "before": None,
            "after": trade_values(i),
            "source": {
                "version": "3.6.1.Final", "connector": "postgresql", "name": "bench", "ts_ms": ts_ms,
                "snapshot": "false", "db": "orion_source", "sequence": f'["{lsn - 5}","{lsn}"]',
                "schema": "public", "table": "trades", "txId": i, "lsn": lsn,
            },
            "op": "c",
            "ts_ms": ts_ms,
        }  # fmt: skip
        body = json.dumps(payload, separators=(",", ":")).encode()
        return self.head + b',"payload":' + body + b"}" if self.schemas else body


def produce_events(
    settings: OrionSettings,
    topic: str,
    start: int,
    count: int,
    rate: float | None = None,
    schemas: bool = True,
) -> None:
    producer = make_producer(settings.kafka, **{"linger.ms": 20, "batch.size": 1_000_000})
    write = EnvelopeWriter(schemas)
    if rate:
        # A source (Debezium's producer) is long-running: stamp no event before this producer has
        # its idempotent producer id and the topic's leaders, or the first ~0.5 s of events wait in
        # the producer and count as loader latency (the whole p99 at 500 and 2,000/s before).
        producer.produce(f"{topic}.warmup", value=b"")
        producer.flush(30)
        producer.list_topics(topic, timeout=10)
    t0 = time.monotonic()
    for n, i in enumerate(range(start, start + count)):
        if rate:
            wait = t0 + n / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        ts = int(time.time() * 1000)
        value = write(i, ts)
        while True:
            try:
                producer.produce(topic, key=str(i).encode(), value=value)
                break
            except BufferError:
                producer.poll(0.05)
        if n % 1000 == 0:
            producer.poll(0)
    producer.flush(120)


# --- the measured approaches ------------------------------------------------------------------


def bare_consume(settings: OrionSettings, topic: str, n: int, **conf: Any) -> float:
    consumer = make_consumer(settings.kafka, f"bench-bare-{uuid.uuid4().hex[:6]}", **conf)
    consumer.subscribe([topic])
    seen = 0
    t0 = 0.0
    while seen < n:
        msgs = consumer.consume(10_000, timeout=1.0)
        if msgs and not t0:
            t0 = time.monotonic()
        seen += sum(1 for m in msgs if m.error() is None)
    elapsed = time.monotonic() - t0
    consumer.close()
    return n / elapsed


def fact_rows(n: int) -> pl.DataFrame:
    chunks = [_fact_chunk(start, min(n, start + 100_000)) for start in range(0, n, 100_000)]
    return pl.concat(chunks)


def _fact_chunk(start: int, end: int) -> pl.DataFrame:
    rows = [trade_values(i) for i in range(start, end)]
    frame = pl.DataFrame(rows, infer_schema_length=None)
    qty = pl.col("quantity").str.to_decimal(scale=10).cast(pl.Decimal(38, 10))
    price = pl.col("price").str.to_decimal(scale=10).cast(pl.Decimal(38, 10))
    return frame.select(
        pl.col("id").alias("trade_id"), "tenant_id", "trade_reference",
        pl.col("trade_date").str.to_datetime("%Y-%m-%dT%H:%M:%S%.f%#z", time_zone="UTC"),
        pl.lit(20240301).alias("trade_date_key"), "client_id", "instrument_id", "lp_id", "side", "order_type",
        qty.alias("quantity"), price.alias("price"), (qty * price).alias("notional_value"),
        pl.col("fees").str.to_decimal(scale=10), (qty * price).alias("net_amount"), "currency",
        pl.lit("cdc").alias("src_origin"),
    )  # fmt: skip


def raw_copy(conn: psycopg.Connection, frame: pl.DataFrame) -> float:
    buf = io.BytesIO()
    frame.write_csv(buf, include_header=False)
    data = buf.getvalue()
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in frame.columns)
    conn.execute("TRUNCATE fact_trades")
    conn.commit()
    t0 = time.monotonic()
    with (
        conn.cursor() as cur,
        cur.copy(sql.SQL("COPY fact_trades ({}) FROM STDIN (FORMAT csv)").format(cols)) as cp,
    ):
        for start in range(0, len(data), 1 << 20):
            cp.write(data[start : start + (1 << 20)])
    conn.commit()
    elapsed = time.monotonic() - t0
    conn.execute("TRUNCATE fact_trades")
    conn.commit()
    return frame.height / elapsed


def story_approach(conn: psycopg.Connection, settings: OrionSettings, topic: str, sample: int) -> float:
    """The story's loop: parse, validate, single-row upsert, commit; one message at a time."""
    consumer = make_consumer(settings.kafka, f"bench-story-{uuid.uuid4().hex[:6]}")
    consumer.subscribe([topic])
    done = 0
    t0 = 0.0
    upsert = (
        "INSERT INTO fact_trades (trade_id, tenant_id, trade_reference, trade_date, trade_date_key, client_id, "  # noqa: E501
        "instrument_id, lp_id, side, quantity, price, notional_value, fees, net_amount, src_origin) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'cdc') "
        "ON CONFLICT (trade_id) DO UPDATE SET price = EXCLUDED.price, quantity = EXCLUDED.quantity, "
        "notional_value = EXCLUDED.notional_value, net_amount = EXCLUDED.net_amount"
    )
    while done < sample:
        msg = consumer.poll(1.0)
        if msg is None or msg.error():
            continue
        if not t0:
            t0 = time.monotonic()
        trade = json.loads(msg.value())["payload"]["after"]
        if not (trade["tenant_id"] and trade["client_id"] and Decimal(trade["quantity"]) > 0):
            continue
        qty, price, fees = Decimal(trade["quantity"]), Decimal(trade["price"]), Decimal(trade["fees"])
        notional = qty * price
        day = datetime.fromisoformat(trade["trade_date"])
        conn.execute(
            upsert,
            (trade["id"], trade["tenant_id"], trade["trade_reference"], day, int(day.strftime("%Y%m%d")),
             trade["client_id"], trade["instrument_id"], trade["lp_id"], trade["side"], qty, price, notional,
             fees, notional + fees if trade["side"] == "BUY" else notional - fees),
        )  # fmt: skip
        conn.commit()
        done += 1
    elapsed = time.monotonic() - t0
    consumer.close()
    conn.execute("TRUNCATE fact_trades")
    conn.commit()
    return sample / elapsed


def loader_env(
    settings: OrionSettings, topic: str, group: str, batch: int, code: Path = REPO
) -> dict[str, str]:
    """The loader's environment; `code` is the checkout whose `orion_etl` runs (--compare-with)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORION_ETL_")}
    wh = settings.warehouse
    env.update(
        PYTHONPATH=str(code),
        ORION_ETL_WAREHOUSE__DBNAME=wh.dbname,
        ORION_ETL_WAREHOUSE__PORT=str(wh.port),
        ORION_ETL_WAREHOUSE__PASSWORD=wh.password.get_secret_value(),
        ORION_ETL_KAFKA__BOOTSTRAP_SERVERS=settings.kafka.bootstrap_servers,
        ORION_ETL_STREAM__TOPICS__TRADES_CDC=topic,
        ORION_ETL_STREAM__TOPICS__ORDERS_CDC=topic + ".orders",
        ORION_ETL_STREAM__TOPICS__TRADE_EVENTS=topic + ".events",
        ORION_ETL_STREAM__TOPICS__QUOTE_EVENTS=topic + ".quotes",
        ORION_ETL_STREAM__TOPICS__POSITIONS_CDC=topic + ".positions",
        ORION_ETL_STREAM__TOPICS__RISK_EVENTS=topic + ".risk",
        ORION_ETL_STREAM__GROUP_ID=group,
        ORION_ETL_STREAM__BATCH_MAX_MESSAGES=str(batch),
    )
    return env


def run_loader(env: dict[str, str], extra: list[str]) -> tuple[dict[str, Any], float, int]:
    """(stats JSON, wall seconds, peak RSS in KiB) of one `orion-etl stream` process."""
    stats, wall, peak, _ = start_loader(env, extra).wait_loader()
    return stats, wall, peak


def start_loader(env: dict[str, str], extra: list[str]) -> LoaderProcess:
    """An `orion-etl stream` process of the code in env's PYTHONPATH (see bench_cpu)."""
    return LoaderProcess(env, extra, sys.executable, env.get("PYTHONPATH", str(REPO)))


def over_network(args: argparse.Namespace, settings: OrionSettings, topic: str, run: str) -> dict[str, Any]:
    """(c) and the loader again, their PostgreSQL traffic through the delay relay."""
    with calibrated_port(settings.warehouse, args.db_rtt_ms, max_seconds=1800) as (port, model):
        log("delay model: " + ", ".join(f"{k} {v:.3f}" for k, v in model.items()))
        remote = settings.model_copy(
            update={"warehouse": settings.warehouse.model_copy(update={"port": port})}
        )
        with connect(remote.warehouse) as conn:
            conn.execute("TRUNCATE fact_trades")
            conn.commit()
            c = story_approach(conn, remote, topic, args.story_sample)
        log(f"(c) story approach over the network on {args.story_sample:,}: {c:,.0f} msg/s")
        _, wall, rss = run_loader(
            loader_env(remote, topic, f"bench-loader-net-{run}", args.batch), ["--until-caught-up"]
        )
        with connect(settings.warehouse) as conn:
            count = conn.execute("SELECT count(*) FROM fact_trades").fetchone()
            conn.execute("TRUNCATE fact_trades")
            conn.commit()
        assert count == (args.events,), count
        d = args.events / wall
        log(f"(d) loader over the network: {d:,.0f} msg/s, peak RSS {rss / 1024:.0f} MiB")
    return {"c": c, "d": d, "rss": rss, **model}


# --- measured drains: schemaless envelopes, scale-out ---------------------------------------------


def measured_drain(
    settings: OrionSettings, topic: str, group: str, events: int, *, batch: int, procs: int = 1,
    code: Path = REPO,
) -> dict[str, Any]:  # fmt: skip
    """`procs` loader processes in one consumer group drain `topic` (`--until-caught-up`) into an
    empty fact_trades: wall time, the steady rate (10 % -> 90 % of the events committed, from the
    group's positions in etl_consumer_offsets), CPU seconds and peak RSS per process, CPU seconds
    of the database's backends, of the server's auxiliary processes and of the broker."""
    with connect(settings.warehouse, autocommit=True) as conn:
        conn.execute("TRUNCATE fact_trades")
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert backend is not None
        watch = CpuWatch(
            parent_of(backend[0]), settings.warehouse.dbname,
            kafka_broker_pid(os.environ.get("ORION_STACK_HOME")), exclude={backend[0]},
        )  # fmt: skip
        env = loader_env(settings, topic, group, batch, code)
        # --until-caught-up takes an empty assignment for "done" once assignment_timeout_s has passed
        # since the start, and a rebalance (a member leaving) empties it for a moment: with several
        # processes a drain longer than that ends early (StreamJob._caught_up, reported). Not here:
        env["ORION_ETL_STREAM__ASSIGNMENT_TIMEOUT_S"] = "900"
        marks: dict[float, float] = {}
        wal0 = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()
        watch.start()
        t0 = time.monotonic()
        loaders = [start_loader(env, ["--until-caught-up"]) for _ in range(procs)]
        done = threading.Event()
        results: list[tuple[dict[str, Any], float, int, float]] = []

        def wait_all() -> None:
            results.extend(loader.wait_loader() for loader in loaders)
            done.set()

        waiter = threading.Thread(target=wait_all)
        waiter.start()
        while not done.wait(0.25):
            row = conn.execute(
                "SELECT coalesce(sum(next_offset), 0) FROM etl_consumer_offsets WHERE consumer_group = %s",
                (group,),
            ).fetchone()
            committed = int(row[0]) if row else 0
            for share in (0.1, 0.9):
                if committed >= share * events and share not in marks:
                    marks[share] = time.monotonic()
        waiter.join()
        wall = time.monotonic() - t0
        cpu = watch.stop()
        wal = conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), %s)", wal0).fetchone()
        count = conn.execute("SELECT count(*) FROM fact_trades").fetchone()
    assert count == (events,), (count, events)
    span = marks[0.9] - marks[0.1] if 0.1 in marks and 0.9 in marks else 0.0
    steady = 0.8 * events / span if span >= 1.0 else events / wall  # (polled every 0.25 s)
    return {
        "procs": procs, "wall": wall, "rate": events / wall, "steady": steady,
        "cpu": [r[3] for r in results], "rss": [r[2] for r in results], **cpu,
        "wal_bytes": float(wal[0]) if wal else 0.0,  # the whole server's: other work included
    }  # fmt: skip


def topic_disk_bytes(topic: str) -> int | None:
    """Bytes of the topic's log segments on the local broker's disk (compressed record batches)."""
    home = os.environ.get("ORION_STACK_HOME")
    if not home:
        return None
    data = Path(home) / "kafka-data"
    dirs = [d for d in data.glob(f"{topic}-*") if d.name.rsplit("-", 1)[1].isdigit()]
    return sum(f.stat().st_size for d in dirs for f in d.glob("*.log")) or None


def drain_line(label: str, r: dict[str, Any], events: int) -> str:
    per_k = 1000 / events
    return (
        f"{label}: {r['rate']:,.0f}/s wall, {r['steady']:,.0f}/s steady, loader CPU "
        f"{sum(r['cpu']):.1f} s ({sum(r['cpu']) * per_k * 1000:.0f} ms per 1,000), PG backends "
        f"{r['pg_backends_s']:.1f} s, peak RSS {max(r['rss']) / 1024:.0f} MiB, "
        f"machine busy {r['machine_busy']:.0%}"
    )


def schemaless_compare(
    args: argparse.Namespace, settings: OrionSettings, run: str, embedded_topic: str
) -> dict[str, Any]:
    """The same events without the embedded schema, drained between two drains of the embedded form."""
    topic = f"bench.{run}.schemaless.trades"
    ensure_topics(settings.kafka, [topic], partitions=args.partitions)
    produce_events(settings, topic, 0, args.events, schemas=False)
    drains: dict[str, list[dict[str, Any]]] = {"embedded": [], "none": []}
    for i, (form, t) in enumerate(
        [("embedded", embedded_topic), ("none", topic), ("embedded", embedded_topic), ("none", topic)]
    ):
        r = measured_drain(settings, t, f"bench-forms-{i}-{run}", args.events, batch=args.batch)
        log(drain_line(f"(e) loader, schemas {form}", r, args.events))
        drains[form].append(r)
    return {
        "bytes": {"embedded": len(EnvelopeWriter(True)(0, 0)), "none": len(EnvelopeWriter(False)(0, 0))},
        "disk": {"embedded": topic_disk_bytes(embedded_topic), "none": topic_disk_bytes(topic)},
        "drains": drains,
    }


def schemaless_lines(args: argparse.Namespace, result: dict[str, Any], info: dict[str, str]) -> list[str]:
    n = args.events
    rows = []
    for form, label in (
        ("embedded", "schemas embedded (default)"),
        ("none", 'schemaless (`cdc.schemas = "none"`)'),
    ):
        drains = result["drains"][form]
        disk = result["disk"][form]
        rows.append({
            "label": label, "bytes": result["bytes"][form], "disk": disk / n if disk else None,
            "rate": [d["rate"] for d in drains], "steady": [d["steady"] for d in drains],
            "cpu_k": sum(sum(d["cpu"]) for d in drains) / len(drains) / n * 1e6,
            "pg_k": sum(d["pg_backends_s"] for d in drains) / len(drains) / n * 1e6,
            "rss": max(max(d["rss"]) for d in drains),
        })  # fmt: skip
    e, s = rows
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    lines = [
        "## Envelope forms: embedded schema vs schemaless (`scripts/bench_stream.py --parts forms`)",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {n:,} trade CDC events in each form, {args.partitions} "
        f"partitions, batch_max_messages={args.batch}, one loader process, drained alternately "
        "(embedded, schemaless, embedded, schemaless) into an empty fact_trades. Same payload; the "
        "schemaless value is the payload alone, as the JSON converter writes it with `schemas.enable=false`.",
        "",
        "| form | value bytes | on the broker (lz4) per event | drains (events/s, wall) | steady (10-90 %) | "
        "loader CPU per 1,000 | PG backend CPU per 1,000 | peak RSS |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        disk = f"{r['disk']:,.0f} B" if r["disk"] else "n/a"
        lines.append(
            f"| {r['label']} | {r['bytes']:,} | {disk} | {' / '.join(f'{x:,.0f}' for x in r['rate'])} | "
            f"{' / '.join(f'{x:,.0f}' for x in r['steady'])} | {r['cpu_k']:.0f} ms | {r['pg_k']:.0f} ms | "
            f"{r['rss'] / 1024:.0f} MiB |"
        )
    lines += [
        "",
        f"- Schemaless / embedded: value bytes {s['bytes'] / e['bytes']:.2f} x"
        + (f", bytes on the broker {s['disk'] / e['disk']:.2f} x" if s["disk"] and e["disk"] else "")
        + f", loader throughput {mean(s['rate']) / mean(e['rate']):.2f} x (wall), "
        f"{mean(s['steady']) / mean(e['steady']):.2f} x (steady), "
        f"loader CPU per event {s['cpu_k'] / e['cpu_k']:.2f} x.",
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in info.items()) + ".",
        "The machine is shared with other work (2 cores); compare the rows of one run.",
    ]
    return lines


def scale_out(args: argparse.Namespace, settings: OrionSettings, run: str) -> list[dict[str, Any]]:
    """1, 2, 4 ... loader processes in one consumer group over topics of 4 and 8 partitions."""
    rows = []
    n = args.scale_events or args.events
    for parts in [int(x) for x in args.scale_partitions.split(",")]:
        topic = f"bench.{run}.scale{parts}.trades"
        ensure_topics(settings.kafka, [topic], partitions=parts)
        produce_events(settings, topic, 0, n)
        for procs in [int(x) for x in args.scale_procs.split(",")]:
            r = measured_drain(
                settings, topic, f"bench-scale-{parts}-{procs}-{run}", n, batch=args.batch, procs=procs
            )
            log(drain_line(f"(f) {procs} loader(s) over {parts} partitions", r, n))
            rows.append({"partitions": parts, **r})
    return rows


def scale_lines(args: argparse.Namespace, rows: list[dict[str, Any]], info: dict[str, str]) -> list[str]:
    n = args.scale_events or args.events
    per_k = 1e6 / n  # seconds per event -> ms per 1,000 events
    lines = [
        "## Scale-out: loader processes in one consumer group (`scripts/bench_stream.py --parts scale`)",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {n:,} trade CDC events (embedded schema) per topic, "
        f"batch_max_messages={args.batch}; each row drains the topic into an empty fact_trades with that "
        "many `orion-etl stream --until-caught-up` processes started together in one group. CPU from "
        "the processes themselves (loaders: rusage; PostgreSQL backends of the benchmark database, the "
        "server's WAL writer/checkpointer/background writer/autovacuum and the Kafka broker: /proc, "
        "sampled; the last two are shared with other work on the machine).",
        "",
        "| partitions | processes | events/s (wall) | steady (10-90 %) | CPU s per process "
        "| loader CPU per 1,000 | PG backends per 1,000 | PG aux per 1,000 | broker per 1,000 "
        "| WAL per event | peak RSS (max) | machine busy |",
        "|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['partitions']} | {r['procs']} | {r['rate']:,.0f} | {r['steady']:,.0f} | "
            f"{', '.join(f'{c:.1f}' for c in r['cpu'])} | {sum(r['cpu']) * per_k:.0f} ms | "
            f"{r['pg_backends_s'] * per_k:.0f} ms | {r['pg_aux_s'] * per_k:.0f} ms | "
            f"{r['broker_s'] * per_k:.0f} ms | {r['wal_bytes'] / n:,.0f} B | "
            f"{max(r['rss']) / 1024:.0f} MiB | {r['machine_busy']:.0%} |"
        )
    lines += [
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in info.items()) + ".",
        "The machine has 2 cores shared with other work: the sum saturates them; read the CPU per 1,000 "
        "events.",
    ]
    return lines


# --- memory ------------------------------------------------------------------------------------

CONSUME_ONLY = """
import sys
from orion_etl.adapters.kafka import make_consumer
from orion_etl.config.models import OrionSettings
from orion_etl.jobs.stream import CONSUMER_TUNING
topic, n, group = sys.argv[1], int(sys.argv[2]), sys.argv[3]
c = make_consumer(OrionSettings().kafka, group, **{"auto.offset.reset": "earliest", **CONSUMER_TUNING})
c.subscribe([topic])
seen = 0
while seen < n:
    seen += sum(1 for m in c.consume(5000, timeout=1.0) if m.error() is None)
c.close()
"""
SMALL_FETCH = '[kafka.extra]\n"fetch.max.bytes" = "1048576"\n"max.partition.fetch.bytes" = "524288"\n'


def memory_runs(args: argparse.Namespace, settings: OrionSettings, run: str) -> list[dict[str, Any]]:
    """Peak RSS of the loader and of what it is made of, one process at a time, on the same events:
    an idle loader (empty topic), a bare consume loop with the loader's consumer settings, the
    loader with 5,000- and 1,000-record batches, schemaless envelopes, smaller fetches."""
    n = args.memory_events
    embedded, bare, empty = (f"bench.{run}.mem.{name}" for name in ("embedded", "schemaless", "empty"))
    ensure_topics(settings.kafka, [embedded, bare, empty], partitions=args.partitions)
    produce_events(settings, embedded, 0, n)
    produce_events(settings, bare, 0, n, schemas=False)
    small_fetch = Path(f"/tmp/bench-{run}-small-fetch.toml")
    small_fetch.write_text(SMALL_FETCH)
    cases: list[tuple[str, str, int, list[str], str | None]] = [
        ("loader, idle (empty topic: imports, connections, consumer)", empty, args.batch, [], None),
        ("bare consume loop, loader's consumer settings, embedded", embedded, 0, [], "consume"),
        ("bare consume loop, loader's consumer settings, schemaless", bare, 0, [], "consume"),
        ("loader, embedded, batches of 5,000", embedded, 5000, [], None),
        ("loader, embedded, batches of 1,000", embedded, 1000, [], None),
        ("loader, schemaless, batches of 5,000", bare, 5000, [], None),
        ("loader, embedded, 5,000, fetch.max.bytes 1 MiB / partition 512 KiB", embedded, 5000,
         ["--config", str(small_fetch)], None),
    ]  # fmt: skip
    rows = []
    try:
        for i, (label, topic, batch, pre, kind) in enumerate(cases):
            with connect(settings.warehouse, autocommit=True) as conn:
                conn.execute("TRUNCATE fact_trades")
            env = loader_env(settings, topic, f"bench-mem-{i}-{run}", batch or args.batch)
            if kind == "consume":
                cmd = [sys.executable, "-c", CONSUME_ONLY, topic, str(n), f"bench-mem-{i}-{run}"]
            else:
                cmd = [sys.executable, "-m", "orion_etl.cli.app", *pre, "--log-format", "json", "stream",
                       "--format", "json", "--until-caught-up"]  # fmt: skip
            child = ChildProcess(cmd, env, str(REPO))
            _, wall, peak, cpu, code = child.wait()
            if code not in (0, 1):
                raise SystemExit(f"{label}: exit {code}")
            events = 0 if topic == empty else n
            row = {"label": label, "peak": peak, "kinds": child.smaps_at_peak, "wall": wall, "cpu": cpu,
                   "rate": events / wall if events else None}  # fmt: skip
            log(f"(m) {label}: peak RSS {peak / 1024:.0f} MiB, at the peak "
                + ", ".join(f"{k} {v / 1024:.0f}" for k, v in child.smaps_at_peak.items())
                + (f"; {events / wall:,.0f}/s" if events else ""))  # fmt: skip
            rows.append(row)
    finally:
        small_fetch.unlink(missing_ok=True)
    return rows


def memory_lines(args: argparse.Namespace, rows: list[dict[str, Any]], info: dict[str, str]) -> list[str]:
    kinds = ["files", "heap", "thread arenas", "other anonymous"]
    lines = [
        "## Loader memory (`scripts/bench_stream.py --parts memory`)",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {args.memory_events:,} trade CDC events per topic "
        f"({args.partitions} partitions), one process at a time, each draining the whole topic. Peak = the "
        "process's VmHWM; the split is /proc/<pid>/smaps when VmRSS was highest (MiB): shared libraries "
        "and files, the brk heap (glibc's main arena), 64 MiB-aligned glibc thread arenas (librdkafka's "
        "and other threads' malloc), other anonymous mappings (large allocations, Python object arenas, "
        "polars' allocator).",
        "",
        "| process | peak RSS (MiB) | " + " | ".join(kinds) + " | events/s |",
        "|---|---:|" + "---:|" * len(kinds) + "---:|",
    ]
    for r in rows:
        split = " | ".join(f"{r['kinds'].get(k, 0) / 1024:.0f}" for k in kinds)
        rate = f"{r['rate']:,.0f}" if r["rate"] else ""
        lines.append(f"| {r['label']} | {r['peak'] / 1024:.0f} | {split} | {rate} |")
    lines += [
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in info.items()) + ".",
        "The machine is shared with other work (2 cores): memory does not depend on it, rates do.",
    ]
    return lines


# --- per-stage profile ----------------------------------------------------------------------------


class StageTimers:
    """Wall time, CPU of this process (all its threads: polars' pool too) and CPU of the loader's
    PostgreSQL backends spent inside chosen functions. Installed by wrapping the functions where
    the loader looks them up (module globals, class attributes) and removed afterwards: the product
    carries no timers. Stages run one at a time here, so a backend's CPU between entry and exit is
    that stage's server work. Nested stages are subtracted from the enclosing one by the report."""

    def __init__(self, backends: Callable[[], list[int]]) -> None:
        self.backends = backends
        self.totals: dict[str, list[float]] = {}  # stage -> [wall, cpu, server cpu, this thread's cpu]
        self._undo: list[tuple[Any, str, Any]] = []

    def _server(self) -> float:
        return sum(cpu_seconds(pid) or 0.0 for pid in self.backends())

    def wrap(self, owner: Any, name: str, stage: str) -> None:
        original = getattr(owner, name)
        raw = owner.__dict__[name] if isinstance(owner, type) else original

        def timed(*a: Any, **kw: Any) -> Any:
            return self.measure(stage, original, *a, **kw)

        self._undo.append((owner, name, raw))
        setattr(owner, name, staticmethod(timed) if isinstance(raw, staticmethod) else timed)

    def wrap_result(self, owner: Any, name: str, method: str, stage: str) -> None:
        """Time `method` of the objects `owner.name(...)` returns (e.g. a msgspec Decoder's decode)."""
        original = getattr(owner, name)
        timers = self

        class Timed:
            def __init__(self, inner: Any) -> None:
                self.inner = inner

            def __getattr__(self, attr: str) -> Any:
                inner = getattr(self.inner, attr)
                if attr != method:
                    return inner

                def timed(*a: Any, **kw: Any) -> Any:
                    return timers.measure(stage, inner, *a, **kw)

                return timed

        self._undo.append((owner, name, original))
        setattr(owner, name, lambda *a, **kw: Timed(original(*a, **kw)))

    def measure(self, stage: str, fn: Callable[..., Any], *a: Any, **kw: Any) -> Any:
        t0, c0, s0, h0 = time.perf_counter(), time.process_time(), self._server(), time.thread_time()
        try:
            return fn(*a, **kw)
        finally:
            total = self.totals.setdefault(stage, [0.0, 0.0, 0.0, 0.0])
            total[0] += time.perf_counter() - t0
            total[1] += time.process_time() - c0
            total[2] += self._server() - s0
            total[3] += time.thread_time() - h0

    def remove(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()


# stage label -> (timer, nested timers subtracted from it)
STAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "decode: msgspec, one typed call per batch": ("decode: msgspec", ()),
    "decode: columns into polars (types, decimals, times)": ("decode: columns", ()),
    "decode: the rest (byte checks, joins, getters, LSNs)": (
        "decode", ("decode: msgspec", "decode: columns")),
    "transform (fact columns, trading day)": ("transform", ()),
    "rules (DQ row rules)": ("rules", ()),
    "dimension keys (versions from the warehouse, polars join)": ("dimension keys", ()),
    "encode (COPY data: binary, or CSV)": ("encode", ()),
    "rest of prepare (routing, dedup, lineage columns)": (
        "prepare", ("decode", "transform", "rules", "dimension keys", "encode")),
    "claim positions (compare-and-set)": ("claim positions", ()),
    "COPY into fact_trades": ("COPY", ()),
    "watermarks": ("watermarks", ()),
    "commit and the rest of the transaction": ("commit_batch", ("claim positions", "COPY", "watermarks")),
}  # fmt: skip


def with_trades_topic(settings: OrionSettings, topic: str) -> OrionSettings:
    """`settings` whose trades CDC route reads `topic` (the in-process parts: profile, copy)."""
    topics = settings.stream.topics.model_copy(update={"trades_cdc": topic})
    return settings.model_copy(update={"stream": settings.stream.model_copy(update={"topics": topics})})


def stage_profile(args: argparse.Namespace, settings: OrionSettings, run: str) -> dict[str, Any]:
    """The loader's stages on `--profile-events` events, one batch after the other in this process
    (prepare, then commit: no overlap, no Kafka), and the raw COPY of the same rows, side by side."""
    from orion_etl.adapters import batch_lookup
    from orion_etl.adapters import positions as positions_adapter
    from orion_etl.adapters import warehouse_loader as wl
    from orion_etl.core import batch_draft, batch_plan, cdc_batch, facts
    from orion_etl.core.records import KafkaRecord
    from orion_etl.jobs import stream_batch

    n, size = args.profile_events, args.batch
    topic = f"bench.{run}.profile.trades"
    st = with_trades_topic(settings, topic)
    write = EnvelopeWriter(True)
    loader = wl.WarehouseLoader(st.warehouse, f"bench-profile-{run}")
    preparer = stream_batch.BatchPreparer(st, loader)

    def backends() -> list[int]:
        return [c.info.backend_pid for c in (loader.conn, loader.reader) if c is not None and not c.closed]

    timers = StageTimers(backends)
    with connect(settings.warehouse, autocommit=True) as conn:
        conn.execute("TRUNCATE fact_trades")
    timers.wrap_result(cdc_batch, "_batch_decoder", "decode", "decode: msgspec")
    for owner, name, stage in [
        (cdc_batch, "build_frame", "decode: columns"), (batch_draft, "cdc_frame", "decode"),
        (facts, "transform_trades", "transform"),
        (batch_draft, "validate", "rules"),
        (batch_lookup, "lookup", "dimension keys"), (batch_plan, "with_keys", "dimension keys"),
        (wl.WarehouseLoader, "copy_payload", "encode"), (stream_batch.BatchPreparer, "prepare", "prepare"),
        (positions_adapter, "claim", "claim positions"), (wl.WarehouseLoader, "_copy_data", "COPY"),
        (wl.WarehouseLoader, "_watermarks", "watermarks"),
        (wl.WarehouseLoader, "commit_batch", "commit_batch"),
    ]:  # fmt: skip
        timers.wrap(owner, name, stage)
    expected: dict[Any, int | None] = {}
    busy0 = machine_busy()
    t0 = time.perf_counter()
    gc_threshold = gc.get_threshold()
    gc.set_threshold(50_000, 20, 100)  # as `orion-etl stream` runs (jobs/stream.py)
    try:
        for start in range(0, n, size):
            records = [
                KafkaRecord(topic, 0, i, str(i).encode(), write(i, 1_700_000_000_000 + i), 1_700_000_000_000)
                for i in range(start, min(n, start + size))
            ]
            prepared = preparer.prepare(records)
            loader.commit_batch(prepared.write, expected, None)
            expected = dict(prepared.write.offsets)
    finally:
        gc.set_threshold(*gc_threshold)
        timers.remove()
        loader.close_all()
    wall = time.perf_counter() - t0
    busy1 = machine_busy()
    with connect(settings.warehouse, autocommit=True) as conn:
        count = conn.execute("SELECT count(*) FROM fact_trades").fetchone()
        conn.execute("TRUNCATE fact_trades")
    assert count == (n,), count
    raw = raw_copy_cpu(settings, n)
    per = {k: [x / n * 1e6 for x in v] for k, v in timers.totals.items()}

    def stage(timer: str, nested: tuple[str, ...]) -> list[float]:
        own = per.get(timer, [0.0] * 4)
        return [own[m] - sum(per.get(t, [0.0] * 4)[m] for t in nested) for m in range(4)]

    stages = {label: stage(*spec) for label, spec in STAGES.items()}
    log("per-stage (us/event wall/cpu/server): " + "; ".join(
        f"{k.split(' (')[0]} {v[0]:.1f}/{v[1]:.1f}/{v[2]:.1f}" for k, v in stages.items()))  # fmt: skip
    return {
        "stages": stages, "wall_us": wall / n * 1e6, "prepare": per.get("prepare", [0.0] * 4),
        "commit": per.get("commit_batch", [0.0] * 4), "raw": raw,
        "busy": (busy1[0] - busy0[0]) / max(1.0, busy1[1] - busy0[1]),
    }  # fmt: skip


def copy_formats(args: argparse.Namespace, settings: OrionSettings, run: str) -> dict[str, list[list[float]]]:
    """The loader's fact_trades COPY data in both formats: per row [encode CPU, of it main thread,
    server CPU, wall, bytes], one list per round (formats alternated within each round)."""
    from orion_etl.adapters import copy_data
    from orion_etl.adapters import warehouse_loader as wl
    from orion_etl.core.fact_model import TRADES
    from orion_etl.core.records import KafkaRecord
    from orion_etl.jobs import stream_batch

    n, size = args.profile_events, args.batch
    topic = f"bench.{run}.copy.trades"
    st = with_trades_topic(settings, topic)
    loader = wl.WarehouseLoader(st.warehouse, f"bench-copy-{run}")
    preparer = stream_batch.BatchPreparer(st, loader)
    frames: list[pl.DataFrame] = []
    real = wl.WarehouseLoader.copy_payload

    def capture(self: Any, table: str, frame: pl.DataFrame) -> Any:
        frames.append(frame.select(TRADES.load_columns))
        return real(self, table, frame)

    wl.WarehouseLoader.copy_payload = capture  # type: ignore[method-assign]
    write = EnvelopeWriter(True)
    try:
        for start in range(0, n, size):
            preparer.prepare([
                KafkaRecord(topic, 0, i, str(i).encode(), write(i, 1_700_000_000_000 + i), 1_700_000_000_000)
                for i in range(start, min(n, start + size))
            ])  # fmt: skip
    finally:
        wl.WarehouseLoader.copy_payload = real  # type: ignore[method-assign]
    types = loader.copy_types["fact_trades"]
    loader.close_all()
    encoders: dict[str, Callable[[pl.DataFrame], Any]] = {
        "csv": copy_data.csv_data, "binary": lambda f: copy_data.encode_copy(f, types),
    }  # fmt: skip
    out: dict[str, list[list[float]]] = {"csv": [], "binary": []}
    for _ in range(3):
        for fmt, encode in encoders.items():
            gc.collect()
            c0, m0 = time.process_time(), time.thread_time()
            payloads = [encode(f) for f in frames]
            enc_cpu, enc_main = time.process_time() - c0, time.thread_time() - m0
            assert all(p.format == fmt for p in payloads)
            with connect(settings.warehouse) as conn:
                conn.execute("TRUNCATE fact_trades")
                conn.commit()
                pid = conn.info.backend_pid
                s0, t0 = cpu_seconds(pid) or 0.0, time.perf_counter()
                for p in payloads:  # one transaction per batch, as the loader commits
                    stmt = p.statement("fact_trades", TRADES.load_columns)
                    with conn.cursor() as cur, cur.copy(stmt) as cp:
                        cp.write(p.data)
                    conn.commit()
                wall, srv = time.perf_counter() - t0, (cpu_seconds(pid) or 0.0) - s0
                assert conn.execute("SELECT count(*) FROM fact_trades").fetchone() == (n,)
                conn.execute("TRUNCATE fact_trades")
                conn.commit()
            size_b = sum(len(p.data) for p in payloads)
            out[fmt].append([x / n * 1e6 for x in (enc_cpu, enc_main, srv, wall)] + [size_b / n])
            log(f"copy {fmt}: encode {out[fmt][-1][0]:.2f} us/row (main {out[fmt][-1][1]:.2f}), "
                f"server {out[fmt][-1][2]:.2f} us/row")  # fmt: skip
    return out


def copy_lines(args: argparse.Namespace, r: dict[str, list[list[float]]], info: dict[str, str]) -> list[str]:
    from orion_etl.core.fact_model import TRADES

    def med(fmt: str, i: int) -> float:
        return statistics.median(x[i] for x in r[fmt])

    rows = [
        ("encode (client CPU)", 0, "{:.2f}"), ("of which the calling thread (GIL)", 1, "{:.2f}"),
        ("COPY (PostgreSQL backend CPU)", 2, "{:.2f}"), ("COPY + commit (wall)", 3, "{:.2f}"),
        ("bytes per row", 4, "{:.0f}"),
    ]  # fmt: skip
    lines = [
        "## Binary vs CSV COPY (`scripts/bench_stream.py --parts copy`)",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: the loader's own `fact_trades` rows for "
        f"{args.profile_events:,} trade CDC events (captured from `WarehouseLoader.copy_payload`, all "
        f"{len(TRADES.load_columns)} load columns), encoded and COPYed in batches of {args.batch:,} (one "
        "transaction each) into the emptied fact_trades, in each format; 3 rounds, formats alternated "
        "within a round; medians, per row in us (CPU from /proc, 10 ms ticks summed over all batches).",
        "",
        "| per row | CSV | binary (pgpq) | binary / CSV |",
        "|---|---:|---:|---:|",
    ]
    for label, i, f in rows:
        c, b = med("csv", i), med("binary", i)
        lines.append(f"| {label} | {f.format(c)} | {f.format(b)} | {b / c:.2f} x |" if c else
                     f"| {label} | {f.format(c)} | {f.format(b)} | |")  # fmt: skip
    total_c, total_b = med("csv", 0) + med("csv", 2), med("binary", 0) + med("binary", 2)
    lines += [
        "",
        f"- Client encode + server COPY CPU per row: CSV {total_c:.2f} us, binary {total_b:.2f} us "
        f"({total_b / total_c:.2f} x). pgpq encodes holding the GIL (the calling-thread row), the CSV "
        "writer and the casts run in polars' pool.",
        "- Rounds (encode / server us per row): "
        + "; ".join(f"{fmt} " + ", ".join(f"{x[0]:.2f}/{x[2]:.2f}" for x in r[fmt]) for fmt in r)
        + ".",
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in info.items()) + ".",
        "The machine is shared with other work (2 cores); the formats are measured in one run.",
    ]
    return lines


def raw_copy_cpu(settings: OrionSettings, n: int) -> list[float]:
    """(b) again, [wall, client CPU, server CPU] per event in us: COPY of the prepared CSV only."""
    frame = fact_rows(n)
    buf = io.BytesIO()
    frame.write_csv(buf, include_header=False)
    data = buf.getvalue()
    cols = sql.SQL(", ").join(sql.Identifier(c) for c in frame.columns)
    del frame
    with connect(settings.warehouse) as conn:
        pid = conn.info.backend_pid
        t0, c0, s0 = time.perf_counter(), time.process_time(), cpu_seconds(pid) or 0.0
        with (
            conn.cursor() as cur,
            cur.copy(sql.SQL("COPY fact_trades ({}) FROM STDIN (FORMAT csv)").format(cols)) as cp,
        ):
            for start in range(0, len(data), 1 << 20):
                cp.write(data[start : start + (1 << 20)])
        conn.commit()
        out = [time.perf_counter() - t0, time.process_time() - c0, (cpu_seconds(pid) or 0.0) - s0]
        conn.execute("TRUNCATE fact_trades")
        conn.commit()
    return [x / n * 1e6 for x in out]


def profile_lines(args: argparse.Namespace, r: dict[str, Any], info: dict[str, str]) -> list[str]:
    raw = r["raw"]
    prep, commit = r["prepare"], r["commit"]
    commit_side = commit[1] + commit[2]
    total = prep[1] + commit[1] + prep[2] + commit[2]
    bound = max(commit_side, prep[3], total / 2)
    lines = [
        "## Loader per stage (`scripts/bench_stream.py --parts profile`)",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {args.profile_events:,} trade CDC events (embedded "
        f"schema) in batches of {args.batch:,}, prepared and committed one after the other in the "
        "benchmark's own process with the loader's classes (`BatchPreparer.prepare`, "
        "`WarehouseLoader.commit_batch`; no Kafka, no overlap of the two). Stage figures come from timers "
        "the benchmark wraps around the loader's functions (none in the product): wall time, CPU of the "
        "process (all threads, polars' pool included) and CPU of the loader's PostgreSQL backends "
        '(/proc, 10 ms ticks summed over all batches); "main thread" is the part of the client CPU spent '
        "by the calling thread itself (the rest: polars' thread pool). Then a raw COPY of the same rows "
        "(17 columns, no lineage) into the emptied fact_trades, measured the same way.",
        "",
        "| stage | wall us/event | client CPU us/event | of which main thread | PostgreSQL CPU us/event |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {k} | {v[0]:.1f} | {v[1]:.1f} | {v[3]:.1f} | {v[2]:.1f} |" for k, v in r["stages"].items()]
    lines += [
        f"| **prepare** (the Python thread) | **{prep[0]:.1f}** | **{prep[1]:.1f}** | **{prep[3]:.1f}** | "
        f"{prep[2]:.1f} |",
        f"| **commit** (commit thread + PostgreSQL) | **{commit[0]:.1f}** | **{commit[1]:.1f}** | "
        f"**{commit[3]:.1f}** | **{commit[2]:.1f}** |",
        f"| raw COPY of the same rows | {raw[0]:.1f} | {raw[1]:.1f} | | {raw[2]:.1f} |",
        "",
        f"- Whole run {r['wall_us']:.1f} us per event wall; machine busy {r['busy']:.0%} "
        "(other work included).",
        f"- CPU per event, loader: {prep[1] + commit[1]:.1f} us client + {prep[2] + commit[2]:.1f} us "
        f"PostgreSQL; raw COPY: {raw[1]:.1f} us client + {raw[2]:.1f} us PostgreSQL.",
        f"- Pipelined on two cores (prepare of batch k+1 while batch k commits) the loader needs per event "
        f"at least the commit side ({commit_side:.1f} us: its PostgreSQL backend plus the commit thread), "
        f"the GIL-bound main thread ({prep[3]:.1f} us) and half the total CPU ({total / 2:.1f} us): "
        f"{bound:.1f} us, i.e. at best {raw[0] / bound:.2f} x the raw COPY ({raw[0]:.1f} us per row wall), "
        "before Kafka's share (librdkafka and the broker).",
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in info.items()) + ".",
        "The machine is shared with other work (2 cores); the stages are measured in one run, CPU "
        "figures are less sensitive to the load than wall times.",
    ]
    return lines


# --- report -----------------------------------------------------------------------------------


def latency_at(
    settings: OrionSettings,
    topic: str,
    group: str,
    batch: int,
    code: Path,
    rate: float,
    seconds: float,
    first_id: int = 10_000_000,
) -> dict[str, Any]:
    """Events produced at `rate`/s (source ts_ms = produce time) into a fresh topic, loaded by a
    running loader from `code`: p50/p99 of (warehouse commit - ts_ms), the rate reached, peak RSS.

    `first_id`: the trade ids of each run are new to the warehouse (runs share its fact table; a
    run on ids an earlier one loaded would measure the update path, not new trades)."""
    n = int(rate * seconds)
    ensure_topics(settings.kafka, [topic], partitions=2)
    env = loader_env(settings, topic, group, batch, code)
    result: dict[str, Any] = {}

    def loader() -> None:
        result["stats"], _, result["rss"] = run_loader(env, ["--max-messages", str(n)])

    thread = threading.Thread(target=loader)
    thread.start()
    time.sleep(5)  # let it join the group and get its partitions
    t0 = time.monotonic()
    produce_events(settings, topic, first_id, n, rate=rate)
    produced = n / (time.monotonic() - t0)
    thread.join(600)
    stats = result["stats"]
    log(f"latency at {rate:,.0f}/s ({code.name}): reached {produced:,.0f}/s, "
        f"p50 {stats['latency_p50_ms']} ms, p99 {stats['latency_p99_ms']} ms")  # fmt: skip
    p50, p99 = stats["latency_p50_ms"], stats["latency_p99_ms"]
    return {"rate": rate, "produced": produced, "p50": p50, "p99": p99, "rss": result["rss"]}


def latency_lines(table: dict[str, list[dict[str, Any]]], seconds: float) -> list[str]:
    """The latency-vs-rate table, one column pair per code variant."""
    names = list(table)
    head = " | ".join(f"{n}: p50 / p99 (ms)" for n in names)
    lines = [
        "",
        f"Latency vs rate (source ts_ms -> warehouse commit; {seconds:.0f} s of steady production per rate, "
        "2 partitions; targets p99 < 250 ms at 2,000/s, < 1,000 ms at 20,000/s):",
        "",
        f"| rate asked (events/s) | rate reached | {head} |",
        "|---:|---:|" + "---:|" * len(names),
    ]
    for i, row in enumerate(table[names[0]]):
        cells = " | ".join(f"{table[n][i]['p50']} / {table[n][i]['p99']}" for n in names)
        reached = " / ".join(f"{table[n][i]['produced']:,.0f}" for n in names)
        lines.append(f"| {row['rate']:,.0f} | {reached} | {cells} |")
    return lines


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "-"


def machine_info(conn: psycopg.Connection) -> dict[str, str]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor())  # fmt: skip
    mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal")))  # fmt: skip
    row = conn.execute("SHOW server_version").fetchone()
    return {
        "nproc": str(os.cpu_count()),
        "RAM": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "CPU": cpu,
        "Python": platform.python_version(),
        "polars": pl.__version__,
        "psycopg": psycopg.__version__,
        "pyarrow / pgpq": f"{_version('pyarrow')} / {_version('pgpq')}",
        "confluent-kafka / librdkafka": f"{confluent_kafka.version()[0]} / {confluent_kafka.libversion()[0]}",
        "PostgreSQL": row[0] if row else "?",
        "Kafka": "4.1.1 (local stack, single broker, KRaft)",
    }


def network_lines(args: argparse.Namespace, net: dict[str, Any] | None, c: float, d: float) -> list[str]:
    if net is None:
        return []
    return [
        "",
        f"Same run, PostgreSQL over a network path with {args.db_rtt_ms:g} ms added per round trip "
        "(Kafka stays on loopback): every connection of (c) and of the loader goes through a TCP relay "
        "(`scripts/delayproxy.c` via `scripts/netdelay.py`) that delivers each byte a fixed delay after it "
        f"arrived, in each direction ({net['delay_us_each_way']:.0f} us each way plus the relay's own "
        f"{net['relay_overhead_ms']:.2f} ms per round trip). Measured median `SELECT 1` round trip: "
        f"{net['direct_rtt_ms']:.3f} ms direct, {net['relayed_rtt_ms']:.3f} ms through the relay "
        f"(+{net['added_rtt_ms']:.3f} ms). The kernel has no netem (`CONFIG_NET_SCH_NETEM` is not set), "
        "hence the userspace relay.",
        "",
        "| approach | loopback (events/s) | network (events/s) |",
        "|---|---:|---:|",
        f"| (c) story approach ({args.story_sample:,}-event sample) | {c:,.0f} | {net['c']:,.0f} |",
        f"| **loader** (wall time, 1 process) | **{d:,.0f}** | **{net['d']:,.0f}** |",
        f"| loader / story | {d / c:.1f} x | **{net['d'] / net['c']:.1f} x** |",
        "",
        f"- Target >= 20 x (c) over the network: {net['d'] / net['c']:.1f} x "
        f"({'met' if net['d'] >= 20 * net['c'] else 'NOT met'}). Loader peak RSS in this run: "
        f"{net['rss'] / 1024:.0f} MiB.",
    ]


def write_report(path: Path, text: str, marks: tuple[str, str] = (MARK_START, MARK_END)) -> None:
    """Replace the block between `marks` in `path` (append it when absent)."""
    start, end = marks
    body = f"{start}\n{text.strip()}\n{end}"
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in old and end in old:
        new = old[: old.index(start)] + body + old[old.index(end) + len(end) :]
    else:
        new = old.rstrip() + "\n\n" + body + "\n"
    path.write_text(new)


@contextmanager
def bench_deployment(run: str) -> Iterator[OrionSettings]:
    """Settings for a benchmark run: its own migrated warehouse database on the local stack.

    On the way out the database and every topic named `bench.<run>...` are removed, whatever
    happened in between.
    """
    base = OrionSettings()
    admin_pg = base.warehouse.model_copy(update={"dbname": "postgres"})
    db = f"orion_wh_bench_{run}"
    with connect(admin_pg, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    settings = base.model_copy(update={"warehouse": base.warehouse.model_copy(update={"dbname": db})})
    try:
        with connect(settings.warehouse, autocommit=True) as conn:
            migrations.migrate(conn, "warehouse")
        yield settings
    finally:
        with connect(admin_pg, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
        admin = make_admin(settings.kafka)
        try:
            names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(f"bench.{run}")]
        except confluent_kafka.KafkaException as exc:  # the report must not be lost to a broker outage
            log(f"topic clean-up skipped, Kafka unreachable: {exc}")
            names = []
        if names:
            for f in admin.delete_topics(names, operation_timeout=60).values():
                try:
                    f.result()
                except Exception as exc:
                    log(f"topic clean-up: {exc}")


def classic(
    args: argparse.Namespace, settings: OrionSettings, run: str, topic: str, info: dict[str, str]
) -> list[str]:
    """(a)-(d), the network variant, --compare-with and the latency table: the report's main block."""
    # (a) is the better of librdkafka's defaults and the loader's consumer settings (with the
    # defaults, fetch.queue.backoff.ms=1000 throttles a consume loop to a fraction of this)
    a_default = bare_consume(settings, topic, args.events)
    a_tuned = bare_consume(settings, topic, args.events, **CONSUMER_TUNING)
    a = max(a_default, a_tuned)
    log(
        f"(a) bare consume: {a_default:,.0f} msg/s (defaults), {a_tuned:,.0f} msg/s (loader's fetch settings)"
    )
    with connect(settings.warehouse) as conn:
        frame = fact_rows(args.events)
        b = raw_copy(conn, frame)
        del frame
        log(f"(b) raw COPY: {b:,.0f} rows/s")
        c = story_approach(conn, settings, topic, args.story_sample)
        log(f"(c) story approach on {args.story_sample:,}: {c:,.0f} msg/s")

    stats, wall, rss = run_loader(
        loader_env(settings, topic, f"bench-loader-{run}", args.batch), ["--until-caught-up"]
    )
    with connect(settings.warehouse) as conn:
        count = conn.execute("SELECT count(*) FROM fact_trades").fetchone()
    assert count == (args.events,), count
    d = args.events / wall
    log(f"(d) loader: {args.events:,} in {wall:.1f} s wall = {d:,.0f} msg/s "
        f"(in-loop rate {stats['rate_per_s']:,.0f}/s), peak RSS {rss / 1024:.0f} MiB")  # fmt: skip
    net = over_network(args, settings, topic, run) if args.db_rtt_ms > 0 else None

    before: tuple[float, int] | None = None
    if args.compare_with is not None:  # the same drain with the code before, same topic, new groups,
        walls, peaks = [], []  # once more after too, so neither side has the warm caches alone
        for i, code in enumerate([args.compare_with, REPO]):
            with connect(settings.warehouse, autocommit=True) as conn:
                conn.execute("TRUNCATE fact_trades")
            env = loader_env(settings, topic, f"bench-again-{i}-{run}", args.batch, code)
            _, wall_i, rss_i = run_loader(env, ["--until-caught-up"])
            log(f"(d) loader {'before' if i == 0 else 'after, again'}: {args.events / wall_i:,.0f} msg/s")
            walls.append(wall_i)
            peaks.append(rss_i)
        d = args.events / ((wall + walls[1]) / 2)  # after: mean of its two drains
        before = (args.events / walls[0], peaks[0])

    # latency at steady rates, loader already running; each variant and rate on its own topic
    variants = {"after": REPO} | ({"before": args.compare_with} if args.compare_with else {})
    table: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for i, rate in enumerate(float(r) for r in args.latency_rates.split(",")):
        for j, (name, code) in enumerate(variants.items()):
            lat_topic = f"bench.{run}.latency.{name}.{int(rate)}"
            table[name].append(
                latency_at(settings, lat_topic, f"bench-latency-{name}-{int(rate)}-{run}", args.batch,
                           code, rate, args.latency_seconds, first_id=100_000_000 * (1 + 2 * i + j))
            )  # fmt: skip

    floor = min(a, b)
    return [
        "## Streaming loader (`scripts/bench_stream.py`)",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {args.events:,} pre-produced trade CDC events "
        f"(Debezium JSON with embedded schema, {len(EnvelopeWriter()(0, 0)):,} bytes each), "
        f"{args.partitions} partitions, batch_max_messages={args.batch}, one loader process.",
        "",
        "| approach | rate (events/s) | loader ratio |",
        "|---|---:|---:|",
        f"| (a) bare confluent-kafka consume loop | {a:,.0f} | {d / a:.2f} x |",
        f"| (b) raw COPY of the same rows into fact_trades | {b:,.0f} | {d / b:.2f} x |",
        f"| (c) story approach (parse, validate, 1-row upsert + commit per message; "
        f"{args.story_sample:,}-event sample) | {c:,.0f} | {d / c:.1f} x |",
        f"| **loader** (`orion-etl stream --until-caught-up`, wall time incl. start-up and group join) "
        f"| **{d:,.0f}** | |",
        "",
        f"- Targets: loader >= 0.5 x min(a, b) -> {d / floor:.2f} x ({'met' if d >= 0.5 * floor else 'NOT met'}); "  # noqa: E501
        f">= 20 x (c) -> {d / c:.1f} x ({'met' if d >= 20 * c else 'NOT met'}).",
        *(
            [
                f"- The loader before (`--compare-with {args.compare_with}`), same events, same run: "
                f"{before[0]:,.0f} events/s ({d / before[0]:.2f} x after/before), "
                f"peak RSS {before[1] / 1024:.0f} MiB."
            ]
            if before
            else []
        ),
        f"- Peak RSS of the loader process: {rss / 1024:.0f} MiB draining {args.events:,} events, "
        f"{max(r['rss'] for r in table['after']) / 1024:.0f} MiB in the latency runs (target < 350 MiB).",
        *network_lines(args, net, c, d),
        *latency_lines(table, args.latency_seconds),
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in info.items()) + ".",
        "The machine is shared with other work (2 cores), so absolute rates vary between runs; the ratios "
        "are measured in one run.",
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--story-sample", type=int, default=3000)
    ap.add_argument("--latency-rates", default="500,2000,20000", help="comma-separated events/s")
    ap.add_argument("--latency-seconds", type=float, default=10)
    ap.add_argument(
        "--compare-with", type=Path, default=None,
        help="a checkout of the code before (its orion_etl/ runs as 'before'): loader, latency side by side",
    )  # fmt: skip
    ap.add_argument(
        "--db-rtt-ms", type=float, default=0.0,
        help="also run (c) and the loader with this many ms added to every PostgreSQL round trip",
    )  # fmt: skip
    ap.add_argument(
        "--parts", default="main",
        help="comma-separated: main ((a)-(d), latency), forms (embedded vs schemaless envelopes), scale "
        "(several loader processes), memory (peak RSS and its parts), profile (the loader per stage), "
        "copy (binary vs CSV COPY of the loader's rows)",
    )  # fmt: skip
    ap.add_argument("--scale-procs", default="1,2,4", help="loader processes per scale-out row")
    ap.add_argument("--scale-partitions", default="4,8", help="partitions of the scale-out topics")
    ap.add_argument(
        "--scale-events", type=int, default=0, help="events per scale-out topic (default --events)"
    )
    ap.add_argument("--memory-events", type=int, default=300_000, help="events per topic of --parts memory")
    ap.add_argument("--profile-events", type=int, default=200_000, help="events of --parts profile")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    run = uuid.uuid4().hex[:8]
    parts = set(args.parts.split(","))
    unknown = parts - {"main", "forms", "scale", "memory", "profile", "copy"}
    if unknown:
        ap.error(f"--parts: unknown {sorted(unknown)} (main, forms, scale, memory, profile, copy)")
    topic = f"bench.{run}.cdc.public.trades"
    blocks: list[tuple[tuple[str, str], list[str]]] = []
    with bench_deployment(run) as settings:
        with connect(settings.warehouse) as conn:
            info = machine_info(conn)
        if parts & {"main", "forms"}:
            ensure_topics(settings.kafka, [topic], partitions=args.partitions)
            log(f"producing {args.events:,} trade CDC events (schemas enabled) to {topic}")
            t0 = time.monotonic()
            produce_events(settings, topic, 0, args.events)
            log(
                f"produced in {time.monotonic() - t0:.1f} s; "
                f"sample size {len(EnvelopeWriter()(0, 0)):,} bytes"
            )
        if "main" in parts:
            blocks.append(((MARK_START, MARK_END), classic(args, settings, run, topic, info)))
        if "forms" in parts:
            forms = schemaless_compare(args, settings, run, topic)
            blocks.append((FORMS_MARKS, schemaless_lines(args, forms, info)))
        if "scale" in parts:
            blocks.append((SCALE_MARKS, scale_lines(args, scale_out(args, settings, run), info)))
        if "profile" in parts:
            blocks.append((PROFILE_MARKS, profile_lines(args, stage_profile(args, settings, run), info)))
        if "memory" in parts:
            blocks.append((MEMORY_MARKS, memory_lines(args, memory_runs(args, settings, run), info)))
        if "copy" in parts:
            blocks.append((COPY_MARKS, copy_lines(args, copy_formats(args, settings, run), info)))
    for marks, lines in blocks:
        report = "\n".join(lines)
        print(report)
        if not args.no_write:
            write_report(REPO / "docs" / "benchmarks.md", report, marks)


if __name__ == "__main__":
    main()
