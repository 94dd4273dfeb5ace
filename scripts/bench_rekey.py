#!/usr/bin/env python
"""Benchmark of fact re-keying after `dims sync` and of the loader's epoch check (not a test).

    PYTHONPATH=. .venv/bin/python scripts/bench_rekey.py [--clients 1000000] [--trades 10000000]
        [--changed-pct 1] [--rounds 4] [--loader-batches 20] [--batch 5000]

1. Throwaway source + warehouse databases on the local stack; N clients in the source, created 40
   days ago; initial `dims sync --full`; M trades spread uniformly over those 40 days, each keyed
   to its client's version 1 (loaded set-based, in chunks), then VACUUM ANALYZE.
2. Rounds, alternating: X% of the clients (a fresh, disjoint set each round) change segment at a
   time 20 days (+1 hour per round) after creation, so about half of their trades fall after the
   change; an incremental `dims sync` runs end to end (locks, ledger, source COPY, apply, re-key,
   watermark, commit). Even rounds with re-keying switched off (`rekey_after_sync` replaced by a
   no-op: the sync as it was before issue 15), odd rounds with it. Same data, same sizes.
3. Loader hot path: batches of trade events (existing clients) through the stream's prepare +
   commit in process (no Kafka), alternately with the epoch check (one `etl_dim_key_epoch` read
   while preparing, one `FOR SHARE` read in the commit) and without it (both replaced by no-ops).

Prints the figures and Markdown rows for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from psycopg import sql

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orion_etl.adapters import fact_rekey, migrations, warehouse_loader  # noqa: E402
from orion_etl.adapters.postgres import connect  # noqa: E402
from orion_etl.adapters.warehouse_loader import WarehouseLoader  # noqa: E402
from orion_etl.config.models import OrionSettings  # noqa: E402
from orion_etl.core.records import KafkaRecord  # noqa: E402
from orion_etl.jobs import dims as dims_job  # noqa: E402
from orion_etl.jobs.stream_batch import BatchPreparer  # noqa: E402
from tests.stream_builders import trade_event  # noqa: E402

PASSWORD = os.environ.get("ORION_STACK_PG_PASSWORD", "orion-stack-pw")
TENANT = "00000000-0000-0000-0000-000000000001"
INSTRUMENT = "00000000-0000-0000-0000-0000000000c9"


def log(msg: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {msg}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=1_000_000)
    parser.add_argument("--trades", type=int, default=10_000_000)
    parser.add_argument("--changed-pct", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=6, help="counted rounds per scenario")
    parser.add_argument("--loader-batches", type=int, default=20)
    parser.add_argument("--batch", type=int, default=5000)
    args = parser.parse_args()
    suffix = uuid.uuid4().hex[:6]
    port = int(os.environ.get("ORION_STACK_PG_PORT", "55432"))
    settings = OrionSettings(
        source={"dbname": f"orion_bench_src_{suffix}", "password": PASSWORD, "port": port},
        warehouse={"dbname": f"orion_bench_wh_{suffix}", "password": PASSWORD, "port": port},
    )
    admin = settings.warehouse.model_copy(update={"dbname": "postgres"})
    with connect(admin, autocommit=True) as conn:
        for db in (settings.source.dbname, settings.warehouse.dbname):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    try:
        run(settings, args)
    finally:
        with connect(admin, autocommit=True) as conn:
            for db in (settings.source.dbname, settings.warehouse.dbname):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))


def setup(settings: OrionSettings, clients: int, trades: int) -> datetime:
    for target, pg in (("warehouse", settings.warehouse), ("source", settings.source)):
        with connect(pg, autocommit=True) as conn:
            migrations.migrate(conn, target)
    created = datetime.now(UTC).replace(microsecond=0) - timedelta(days=40)
    with connect(settings.source, autocommit=True) as src:
        src.execute(
            "INSERT INTO clients (tenant_id, client_code, name, client_type, region, segment, industry, "
            "onboard_date, status, created_at, updated_at) "
            "SELECT %s, 'C' || g, 'Client ' || g, 'INSTITUTIONAL', 'EMEA', 'TIER_2', 'Banking', "
            "DATE '2020-01-01', 'ACTIVE', %s, %s FROM generate_series(1, %s) g",
            (TENANT, created, created, clients),
        )
        src.execute("VACUUM ANALYZE clients")
    t0 = time.perf_counter()
    dims_job.sync_batch(settings, "client", full=True)
    log(f"initial full sync of {clients:,} clients: {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    chunk = 1_000_000
    with connect(settings.warehouse, autocommit=True) as wh:
        for first in range(0, trades, chunk):
            n = min(chunk, trades - first)
            wh.execute(
                "INSERT INTO fact_trades (trade_id, tenant_id, trade_reference, trade_date, trade_date_key, "
                "client_id, client_key, instrument_id, side, quantity, price, notional_value, net_amount, "
                "src_origin) "
                "SELECT gen_random_uuid(), %(tenant)s, 'B' || (%(first)s + s.g), s.t, "
                "to_char(s.t AT TIME ZONE 'UTC', 'YYYYMMDD')::int, d.client_id, d.client_key, %(instr)s, "
                "'BUY', 1, 1, 1, 1, 'event' "
                "FROM (SELECT g, %(created)s + random() * interval '40 days' AS t, "
                "      1 + floor(random() * %(clients)s)::bigint AS k FROM generate_series(1, %(n)s) g) s "
                "JOIN dim_clients d ON d.client_key = s.k",
                {"tenant": TENANT, "first": first, "instr": INSTRUMENT, "created": created,
                 "clients": clients, "n": n},
            )  # fmt: skip
            log(f"  trades loaded: {first + n:,}")
        wh.execute("TRUNCATE agg_dirty_buckets")
        wh.execute("VACUUM ANALYZE fact_trades")
        wh.execute("VACUUM ANALYZE dim_clients")
    log(f"{trades:,} trades loaded and vacuumed: {time.perf_counter() - t0:.1f} s")
    return created


def sync_round(
    settings: OrionSettings, index: int, changed: int, at: datetime, rekey: bool, scenario: str
) -> dict[str, Any]:
    with connect(settings.source, autocommit=True) as src:
        src.execute(
            "UPDATE clients SET segment = 'TIER_1', updated_at = %s WHERE id IN "
            "(SELECT id FROM clients ORDER BY client_code OFFSET %s LIMIT %s)",
            (at, index * changed, changed),
        )
    original = dims_job.fact_rekey.rekey_after_sync
    spent = {"rekey": 0.0}

    def timed_rekey(conn: Any, spec: Any) -> dict[str, int]:
        t = time.perf_counter()
        try:
            return original(conn, spec) if rekey else {}
        finally:
            spent["rekey"] += time.perf_counter() - t

    dims_job.fact_rekey.rekey_after_sync = timed_rekey  # type: ignore[assignment]
    try:
        t0 = time.perf_counter()
        report = dims_job.sync_batch(settings, "client", full=False)
        elapsed = time.perf_counter() - t0
    finally:
        dims_job.fact_rekey.rekey_after_sync = original  # type: ignore[assignment]
    counts = report.dimensions[0].as_dict()
    out = {
        "scenario": scenario,
        "rekey": rekey,
        "seconds": elapsed,
        "scd2": counts["scd2"],
        "rekeyed": counts["rekeyed_facts"],
        "rekey_seconds": spent["rekey"],
    }
    log(
        f"{scenario} round {index} rekey={rekey}: {elapsed:.2f} s (re-key {spent['rekey']:.2f} s), "
        f"scd2 {counts['scd2']:,}, "
        f"rekeyed {counts['rekeyed_facts']:,}"
    )
    return out


def loader_rounds(settings: OrionSettings, batches: int, size: int) -> dict[str, float]:
    with connect(settings.warehouse, autocommit=True) as wh:
        ids = [r[0] for r in wh.execute("SELECT client_id::text FROM dim_clients LIMIT 10000").fetchall()]
    settings = settings.model_copy(
        update={"stream": settings.stream.model_copy(update={"quote_sample_every": 1})}
    )
    loader = WarehouseLoader(settings.warehouse, f"bench-rekey-{uuid.uuid4().hex[:6]}")
    preparer = BatchPreparer(settings, loader)
    topic = settings.stream.topics.trade_events
    positions: dict[tuple[str, int], int | None] = {}
    offset = 0
    now = datetime.now(UTC)
    timings: dict[bool, list[float]] = {True: [], False: []}
    read_epochs, changed = fact_rekey.read_epochs, WarehouseLoader.__dict__["_dimensions_changed"]

    def batch_records() -> list[KafkaRecord]:
        nonlocal offset
        records = []
        for i in range(size):
            at = (now - timedelta(seconds=offset + i)).isoformat().replace("+00:00", "Z")
            event = trade_event(clientId=ids[(offset + i) % len(ids)], instrumentId=INSTRUMENT,
                                executionTime=at, occurred_at=at)  # fmt: skip
            records.append(KafkaRecord(topic, 0, offset + i, None, json.dumps(event).encode()))
        offset += size
        return records

    try:
        for i in range(batches + 2):
            check = i % 2 == 1
            records = batch_records()
            if not check:  # the loader without the epoch check: no read, no lock
                warehouse_loader.fact_rekey.read_epochs = lambda conn, dims, lock=False: {}  # type: ignore[assignment]
                WarehouseLoader._dimensions_changed = staticmethod(lambda conn, batch, keyed: set())  # type: ignore[method-assign,assignment]
            try:
                t0 = time.perf_counter()
                prepared = preparer.prepare(records)
                expected = {tp: positions.get(tp) for tp in prepared.write.offsets}
                loader.commit_batch(prepared.write, expected, None)
                elapsed = time.perf_counter() - t0
            finally:
                warehouse_loader.fact_rekey.read_epochs = read_epochs  # type: ignore[assignment]
                WarehouseLoader._dimensions_changed = changed  # type: ignore[method-assign]
            positions.update(prepared.write.offsets)
            if i >= 2:  # the first two warm up (connections, inferred instrument / LP)
                timings[check].append(size / elapsed)
    finally:
        loader.close_all()
    # The check's own cost, without the noise of whole batches: the epoch read of the preparing
    # thread plus the FOR SHARE read in a transaction, against an empty transaction.
    dims = ["client", "instrument", "lp"]
    costs: dict[bool, list[float]] = {True: [], False: []}
    with connect(settings.warehouse) as conn:
        for i in range(600):
            check = i % 2 == 0
            t0 = time.perf_counter()
            if check:
                fact_rekey.read_epochs(conn, dims)
            with conn.transaction():
                if check:
                    fact_rekey.read_epochs(conn, dims, lock=True)
            costs[check].append(time.perf_counter() - t0)
    per_batch = statistics.median(costs[True]) - statistics.median(costs[False])
    return {
        "with_check": statistics.median(timings[True]),
        "without_check": statistics.median(timings[False]),
        "check_ms_per_batch": per_batch * 1000,
        "batch_s_without": size / statistics.median(timings[False]),
    }


def run(settings: OrionSettings, args: argparse.Namespace) -> None:
    created = setup(settings, args.clients, args.trades)
    changed = int(args.clients * args.changed_pct / 100)
    # back-dated: changes 20 days into the trades' 40 days, about half of each changed client's
    # trades move (the worst case); recent: changes minutes ago, as with the shipped 5-minute
    # schedule, only the trades since the change move. Back-dated first: the watermark advances.
    now = datetime.now(UTC)
    scenarios = {
        "back-dated 20 days": [created + timedelta(days=20, hours=i + 1) for i in range(args.rounds + 1)],
        "recent (5-minute schedule)": [
            now - timedelta(minutes=5) + timedelta(seconds=10 * i) for i in range(args.rounds + 1)
        ],
    }
    rounds = []
    index = 0
    for scenario, times in scenarios.items():
        for i, at in enumerate(times):
            # the first round of a scenario warms up (caches, hint bits) and is not counted
            name = scenario if i else f"{scenario} (warm-up)"
            rounds.append(sync_round(settings, index, changed, at, rekey=i % 2 == 0, scenario=name))
            index += 1
    with connect(settings.warehouse, autocommit=True) as wh:
        wh.execute("SET jit = off")
        t0 = time.perf_counter()
        bad = fact_rekey.key_mismatches(
            wh, next(r for r in fact_rekey.registered("client") if r.fact_table == "fact_trades")
        )
        check_s = time.perf_counter() - t0
    log(
        f"dims check of fact_trades.client_key: {bad.count:,} mismatched "
        f"(left by the no-rekey rounds), {check_s:.1f} s"
    )
    loader = loader_rounds(settings, args.loader_batches, args.batch)
    loader_ratio = loader["with_check"] / loader["without_check"]
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor(),
    )  # fmt: skip
    print()
    print(
        f"machine: {os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
        f"run {datetime.now(UTC):%Y-%m-%d}"
    )
    print("| clients | trades | changed clients | changes | sync without re-key (median) | "
          "sync with re-key (median) | trades re-keyed per sync | ratio of medians | "
          "ratio within the re-key rounds |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for scenario in scenarios:
        mine = [r for r in rounds if r["scenario"] == scenario]  # warm-up rounds are named apart
        plain_s = statistics.median(r["seconds"] for r in mine if not r["rekey"])
        rekey_s = statistics.median(r["seconds"] for r in mine if r["rekey"])
        moved = statistics.median(r["rekeyed"] for r in mine if r["rekey"])
        # the same rounds split: the re-key statements vs the rest of the same sync (same noise)
        split = statistics.median(
            r["seconds"] / (r["seconds"] - r["rekey_seconds"]) for r in mine if r["rekey"]
        )
        part = statistics.median(r["rekey_seconds"] for r in mine if r["rekey"])
        print(f"| {args.clients:,} | {args.trades:,} | {changed:,} | {scenario} | {plain_s:.2f} s | "
              f"{rekey_s:.2f} s (re-key {part:.2f} s) | {int(moved):,} | {rekey_s / plain_s:.2f}x "
              f"| {split:.2f}x |")  # fmt: skip
    print()
    print("| loader batches | events per batch | with epoch check (median) | without (median) | ratio |")
    print("|---|---|---|---|---|")
    print(f"| {args.loader_batches} | {args.batch:,} | {loader['with_check']:,.0f} events/s | "
          f"{loader['without_check']:,.0f} events/s | {loader_ratio:.3f} |")  # fmt: skip
    share = loader["check_ms_per_batch"] / 1000 / loader["batch_s_without"]
    print(f"epoch check alone: {loader['check_ms_per_batch']:.2f} ms per batch = {share:.3%} of a "
          f"{loader['batch_s_without'] * 1000:.0f} ms batch "
          f"(throughput ratio {1 / (1 + share):.4f})")  # fmt: skip
    print(json.dumps({"rounds": rounds, "loader": loader}, default=str))


if __name__ == "__main__":
    main()
