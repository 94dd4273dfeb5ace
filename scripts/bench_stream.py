#!/usr/bin/env python
"""Benchmark of `orion-etl stream` (not a test). Writes results into docs/benchmarks.md.

    PYTHONPATH=. .venv/bin/python scripts/bench_stream.py [--events 1000000] [--story-sample 3000]
        [--latency-rates 500,2000,20000] [--latency-seconds 10] [--compare-with DIR] [--db-rtt-ms 0.5]
        [--no-write]

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

Uses its own warehouse database and topics on the local stack and removes them afterwards.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
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
from netdelay import calibrated_port  # noqa: E402

MARK_START, MARK_END = "<!-- bench_stream:start -->", "<!-- bench_stream:end -->"


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
    """Fast Debezium envelope bytes: the schema part is serialized once."""

    def __init__(self) -> None:
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
        return self.head + b',"payload":' + json.dumps(payload, separators=(",", ":")).encode() + b"}"


def produce_events(
    settings: OrionSettings, topic: str, start: int, count: int, rate: float | None = None
) -> None:
    producer = make_producer(settings.kafka, **{"linger.ms": 20, "batch.size": 1_000_000})
    write = EnvelopeWriter()
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
    """(stats JSON, wall seconds, peak RSS in KiB) of one `orion-etl stream` process.

    The peak is the child's own VmHWM, polled from /proc: `ru_maxrss` of a child is useless here,
    Linux carries the parent's high-water mark across fork + exec.
    """
    cmd = [
        sys.executable,
        "-m",
        "orion_etl.cli.app",
        "--log-format",
        "json",
        "stream",
        "--format",
        "json",
        *extra,
    ]
    t0 = time.monotonic()
    cwd = env.get("PYTHONPATH", str(REPO))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=cwd)
    peak = [0]

    def watch() -> None:
        status = Path(f"/proc/{proc.pid}/status")
        while proc.poll() is None:
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak[0] = max(peak[0], int(line.split()[1]))
            except (OSError, ValueError):
                pass
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out, _ = proc.communicate()
    wall = time.monotonic() - t0
    watcher.join(1)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"loader failed: {out[-2000:]!r}")
    return json.loads(out), wall, peak[0]


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


# --- report -----------------------------------------------------------------------------------


def latency_at(
    settings: OrionSettings, topic: str, group: str, batch: int, code: Path, rate: float, seconds: float
) -> dict[str, Any]:
    """Events produced at `rate`/s (source ts_ms = produce time) into a fresh topic, loaded by a
    running loader from `code`: p50/p99 of (warehouse commit - ts_ms), the rate reached, peak RSS."""
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
    produce_events(settings, topic, 10_000_000, n, rate=rate)
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


def write_report(path: Path, text: str) -> None:
    body = f"{MARK_START}\n{text.strip()}\n{MARK_END}"
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    if MARK_START in old and MARK_END in old:
        new = old[: old.index(MARK_START)] + body + old[old.index(MARK_END) + len(MARK_END) :]
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
        names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(f"bench.{run}")]
        if names:
            for f in admin.delete_topics(names, operation_timeout=60).values():
                try:
                    f.result()
                except Exception as exc:
                    log(f"topic clean-up: {exc}")


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
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    run = uuid.uuid4().hex[:8]
    topic, lat_topic = f"bench.{run}.cdc.public.trades", f"bench.{run}.latency.trades"
    with bench_deployment(run) as settings:
        ensure_topics(settings.kafka, [topic, lat_topic], partitions=args.partitions)
        log(f"producing {args.events:,} trade CDC events (schemas enabled) to {topic}")
        t0 = time.monotonic()
        produce_events(settings, topic, 0, args.events)
        log(f"produced in {time.monotonic() - t0:.1f} s; sample size {len(EnvelopeWriter()(0, 0)):,} bytes")

        # (a) is the better of librdkafka's defaults and the loader's consumer settings (with the
        # defaults, fetch.queue.backoff.ms=1000 throttles a consume loop to a fraction of this)
        a_default = bare_consume(settings, topic, args.events)
        a_tuned = bare_consume(settings, topic, args.events, **CONSUMER_TUNING)
        a = max(a_default, a_tuned)
        log(
            f"(a) bare consume: {a_default:,.0f} msg/s (defaults), {a_tuned:,.0f} msg/s (loader's fetch settings)"  # noqa: E501
        )
        with connect(settings.warehouse) as conn:
            frame = fact_rows(args.events)
            b = raw_copy(conn, frame)
            del frame
            log(f"(b) raw COPY: {b:,.0f} rows/s")
            c = story_approach(conn, settings, topic, args.story_sample)
            log(f"(c) story approach on {args.story_sample:,}: {c:,.0f} msg/s")
            info = machine_info(conn)

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
        for rate in [float(r) for r in args.latency_rates.split(",")]:
            for name, code in variants.items():
                lat_topic = f"bench.{run}.latency.{name}.{int(rate)}"
                table[name].append(
                    latency_at(settings, lat_topic, f"bench-latency-{name}-{int(rate)}-{run}", args.batch,
                               code, rate, args.latency_seconds)
                )  # fmt: skip

    floor = min(a, b)
    lines = [
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
        f"{max(r['rss'] for r in table['after']) / 1024:.0f} MiB in the latency runs (target < 500 MiB).",
        *network_lines(args, net, c, d),
        *latency_lines(table, args.latency_seconds),
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in info.items()) + ".",
        "The machine is shared with other work (2 cores), so absolute rates vary between runs; the ratios "
        "are measured in one run.",
    ]
    report = "\n".join(lines)
    print(report)
    if not args.no_write:
        write_report(REPO / "docs" / "benchmarks.md", report)


if __name__ == "__main__":
    main()
