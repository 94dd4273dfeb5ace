#!/usr/bin/env python
"""Benchmark: `dq audit` with every default rule over N fact_trades rows (default 10,000,000).

Creates a scratch warehouse database (orion_bench_dq_<random>) on the configured server, applies the
migrations, generates dimensions and facts with set-based INSERT ... SELECT generate_series, then
times `run_audit` (no alert channels). The database is dropped at the end unless --keep.

    PYTHONPATH=. .venv/bin/python scripts/bench_dq.py [--rows 10000000] [--keep]

Connection settings come from the usual config (ORION_ETL_WAREHOUSE__*, --config).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import uuid

from psycopg import sql

from orion_etl.adapters import migrations
from orion_etl.adapters.postgres import connect
from orion_etl.config import load_settings
from orion_etl.config.dq import build_catalog
from orion_etl.jobs.audit import run_audit

CLIENTS, INSTRUMENTS, LPS, TENANTS = 10_000, 500, 20, 5

DIMS = """
INSERT INTO dim_clients (client_id, tenant_id, client_name, segment, valid_from)
SELECT md5('c' || g)::uuid, md5('tenant' || (g % {tenants}))::uuid, 'client ' || g, 'TIER_' || (g % 3),
       now() - interval '400 days'
FROM generate_series(0, {clients} - 1) AS g;
INSERT INTO dim_instruments (instrument_id, symbol, asset_class, valid_from)
SELECT md5('i' || g)::uuid, 'SYM' || g, 'FX', now() - interval '400 days'
FROM generate_series(0, {instruments} - 1) AS g;
INSERT INTO dim_liquidity_providers (lp_id, lp_code, tier, valid_from)
SELECT md5('l' || g)::uuid, 'LP' || g, 'T1', now() - interval '400 days'
FROM generate_series(0, {lps} - 1) AS g;
"""

FACTS = """
INSERT INTO fact_trades (trade_id, tenant_id, trade_reference, trade_date, trade_date_key, client_id,
    instrument_id, lp_id, side, order_type, quantity, price, notional_value, fees, net_amount, currency,
    src_origin)
SELECT md5('t' || g)::uuid, md5('tenant' || (g % {clients} % {tenants}))::uuid, 'TR' || g, ts,
       to_char(ts AT TIME ZONE 'UTC', 'YYYYMMDD')::int,
       CASE WHEN g % {bad} = 7 THEN md5('orphan' || g) ELSE md5('c' || (g % {clients})) END::uuid,
       md5('i' || (g % {instruments}))::uuid, md5('l' || (g % {lps}))::uuid,
       CASE WHEN g % 2 = 0 THEN 'BUY' ELSE 'SELL' END, 'MARKET', q, p, q * p,
       CASE WHEN g % {bad} = 7 THEN -1.5 ELSE 1.5 END,
       q * p + CASE WHEN g % 2 = 0 THEN 1.5 ELSE -1.5 END, 'USD', 'event'
FROM (
    SELECT g, now() - ((g % 31536000) * interval '1 second') AS ts,
           (1000 + g % 100000)::numeric(28, 10) AS q, (1.05 + (g % 1000) / 10000.0)::numeric(28, 10) AS p
    FROM generate_series(%s::bigint, %s::bigint) AS g
) AS s;
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--chunk", type=int, default=1_000_000)
    parser.add_argument("--bad-every", type=int, default=100_000, help="1 orphan + negative-fee row per N")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    parser.add_argument("--config", default=None)
    args = parser.parse_args()

    settings, _ = load_settings(args.config)
    dbname = f"orion_bench_dq_{uuid.uuid4().hex[:8]}"
    admin = settings.warehouse.model_copy(update={"dbname": "postgres"})
    bench = settings.model_copy(
        update={"warehouse": settings.warehouse.model_copy(update={"dbname": dbname})}
    )
    with connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    print(f"scratch database {dbname} (PostgreSQL {version})")
    try:
        with connect(bench.warehouse, autocommit=True) as conn:
            migrations.migrate(conn, "warehouse")
            params = {
                "clients": CLIENTS,
                "instruments": INSTRUMENTS,
                "lps": LPS,
                "tenants": TENANTS,
                "bad": args.bad_every,
            }
            conn.execute(DIMS.format(**params))
            # Load without secondary indexes, then build them (what a bulk load would do).
            conn.execute(
                "ALTER TABLE fact_trades DROP CONSTRAINT fact_trades_pkey; "
                "DROP INDEX idx_fact_trades_day, idx_fact_trades_date, idx_fact_trades_client, "
                "idx_fact_trades_ref, idx_fact_trades_updated"
            )
            started = time.monotonic()
            for low in range(0, args.rows, args.chunk):
                high = min(low + args.chunk, args.rows) - 1
                conn.execute(FACTS.format(**params).replace(" % ", " %% "), (low, high))
                print(f"  loaded {high + 1:,} rows ({time.monotonic() - started:.0f}s)", flush=True)
            conn.execute("ALTER TABLE fact_trades ADD PRIMARY KEY (trade_id)")
            conn.execute("CREATE INDEX idx_fact_trades_date ON fact_trades (trade_date)")
            conn.execute("CREATE INDEX idx_fact_trades_ref ON fact_trades (tenant_id, trade_reference)")
            conn.execute("VACUUM ANALYZE")
            size = conn.execute("SELECT pg_size_pretty(pg_total_relation_size('fact_trades'))").fetchone()[0]  # type: ignore[index]
            print(f"generated in {time.monotonic() - started:.0f}s; fact_trades {size}")

        catalog = build_catalog(bench.dq)
        runs = []
        for attempt in (1, 2):
            started = time.monotonic()
            report = run_audit(bench, catalog)
            elapsed = time.monotonic() - started
            runs.append(elapsed)
            print(f"audit run {attempt}: {elapsed:.1f}s, exit {int(report.exit_code)}, {report.counts()}")
        for r in report.results:
            print(f"  {r.rule.key:45} {r.outcome.value:5} failed={r.failed:<8} {r.duration_ms} ms")
        print(
            f"machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"PostgreSQL {version}; rows={args.rows:,}; audit best {min(runs):.1f}s"
        )
    finally:
        if args.keep:
            print(f"kept {dbname}")
        else:
            with connect(admin, autocommit=True) as conn:
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname))
                )


if __name__ == "__main__":
    main()
