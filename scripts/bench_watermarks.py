"""Benchmark (not a test): what keeping `etl_cdc_watermarks` adds to a loader batch.

The loader writes both source tables' watermarks with one statement, last in each batch's
transaction. Side by side in one run, medians of --repeat rounds of --batches batches each:
  (a) the watermark statement alone, inside an open transaction (the marginal cost per batch);
  (b) a transaction with only that statement, committed (upper bound: its own commit);
  (c) an empty transaction (the round trip floor).

    PYTHONPATH=. .venv/bin/python scripts/bench_watermarks.py --batches 2000

Creates and drops its own database on the local stack (ORION_STACK_PG_PORT, default 55432).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import uuid

import psycopg
from psycopg import sql

from orion_etl.adapters import migrations
from orion_etl.adapters.warehouse_loader import WarehouseLoader

MARKS = {"orders": (7_000, 1_710_513_000_000), "trades": (5_000_000_000, 1_710_513_000_000)}


def _marks(i: int) -> dict[str, tuple[int | None, int | None]]:
    return {table: (lsn + i, ts + i) for table, (lsn, ts) in MARKS.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    port = os.environ.get("ORION_STACK_PG_PORT", "55432")
    password = os.environ.get("ORION_STACK_PG_PASSWORD", "orion-stack-pw")
    admin = f"host=127.0.0.1 port={port} user=postgres password={password} dbname=postgres"
    db = f"orion_bench_wm_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    results: dict[str, list[float]] = {"statement in a transaction": [], "own transaction": [], "empty": []}
    try:
        with psycopg.connect(admin.replace("dbname=postgres", f"dbname={db}"), autocommit=True) as conn:
            migrations.migrate(conn, "warehouse")
            conn.autocommit = False
            n = args.batches
            for _ in range(args.repeat):
                started = time.perf_counter()
                with conn.transaction():
                    for i in range(n):
                        WarehouseLoader._watermarks(conn, _marks(i))
                results["statement in a transaction"].append((time.perf_counter() - started) / n)
                started = time.perf_counter()
                for i in range(n):
                    with conn.transaction():
                        WarehouseLoader._watermarks(conn, _marks(i))
                results["own transaction"].append((time.perf_counter() - started) / n)
                started = time.perf_counter()
                for _ in range(n):
                    with conn.transaction():
                        conn.execute("SELECT 1")
                results["empty"].append((time.perf_counter() - started) / n)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(db)))
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    for name, values in results.items():
        print(f"{name:>28}: {statistics.median(values) * 1000:.3f} ms per batch")


if __name__ == "__main__":
    main()
