"""Benchmark the daily aggregation (not a test): N trades in one trading day.

Side by side in one run, on the same data, each timed as median of --repeat runs:
  (a) floor: one hand-written GROUPING SETS INSERT straight over fact_trades;
  (b) story: five INSERT ... GROUP BY statements (one full scan per level);
  (c) orion: the trade-summary statement `aggregate` runs (pre-grouped base + GROUPING SETS);
  (d) orion: summary + client metrics + LP performance in one statement (one scan of the trades);
  (e) orion: the consistency checks run after every aggregation;
  (f) orion: `run_periods` end to end (d + e + delete + job ledger).

    PYTHONPATH=. .venv/bin/python scripts/bench_aggregate.py --rows 5000000

Creates (and drops, unless --keep) its own database on the local stack.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import date

import psycopg
from psycopg import sql

from orion_etl.adapters import aggregates as agg
from orion_etl.adapters import migrations
from orion_etl.adapters.postgres import connect
from orion_etl.config.models import OrionSettings, PostgresSettings
from orion_etl.core.periods import Period, bucket_for
from orion_etl.jobs.aggregate import run_periods

DAY = date(2026, 3, 4)
COLS = """tenant_id, period_type, trade_date, trade_date_key, period_end, aggregation_level,
    client_id, instrument_id, lp_id, trade_count, buy_count, sell_count, total_volume, buy_volume,
    sell_volume, total_notional, total_fees, sum_price, sum_price_qty, sum_latency_ms, avg_price,
    vwap_price, min_price, max_price, avg_latency_ms, max_latency_ms, is_final"""
MEASURES = """count(*), count(*) FILTER (WHERE side = 'BUY'), count(*) FILTER (WHERE side = 'SELL'),
    sum(quantity), COALESCE(sum(quantity) FILTER (WHERE side = 'BUY'), 0),
    COALESCE(sum(quantity) FILTER (WHERE side = 'SELL'), 0), sum(notional_value), sum(fees),
    sum(price), sum(quantity * price), sum(fill_latency_ms), avg(price),
    sum(quantity * price) / NULLIF(sum(quantity), 0), min(price), max(price), avg(fill_latency_ms),
    max(fill_latency_ms), true"""
FLOOR = f"""INSERT INTO agg_daily_trade_summary ({COLS})
SELECT tenant_id, 'DAILY', %(start)s, %(start_key)s, %(end)s,
    CASE GROUPING(client_id, instrument_id, lp_id) WHEN 7 THEN 'TENANT' WHEN 3 THEN 'CLIENT'
        WHEN 5 THEN 'INSTRUMENT' WHEN 6 THEN 'LP' ELSE 'CLIENT_INSTRUMENT' END,
    client_id, instrument_id, lp_id, {MEASURES}
FROM fact_trades WHERE trade_date_key = %(start_key)s AND NOT is_deleted
GROUP BY GROUPING SETS ((tenant_id), (tenant_id, client_id), (tenant_id, instrument_id),
    (tenant_id, lp_id), (tenant_id, client_id, instrument_id))"""
LEVELS = {
    "TENANT": ("NULL::uuid, NULL::uuid, NULL::uuid", "tenant_id"),
    "CLIENT": ("client_id, NULL::uuid, NULL::uuid", "tenant_id, client_id"),
    "INSTRUMENT": ("NULL::uuid, instrument_id, NULL::uuid", "tenant_id, instrument_id"),
    "LP": ("NULL::uuid, NULL::uuid, lp_id", "tenant_id, lp_id"),
    "CLIENT_INSTRUMENT": ("client_id, instrument_id, NULL::uuid", "tenant_id, client_id, instrument_id"),
}
STORY = [
    f"""INSERT INTO agg_daily_trade_summary ({COLS})
SELECT tenant_id, 'DAILY', %(start)s, %(start_key)s, %(end)s, '{level}', {cols}, {MEASURES}
FROM fact_trades WHERE trade_date_key = %(start_key)s AND NOT is_deleted GROUP BY {group}"""
    for level, (cols, group) in LEVELS.items()
]
GENERATE = """
INSERT INTO fact_trades (trade_id, tenant_id, trade_date, trade_date_key, client_id, instrument_id,
    lp_id, side, quantity, price, notional_value, fees, net_amount, fill_latency_ms, src_origin)
SELECT gen_random_uuid(), t.tenant, ts, %(key)s, c.client, i.instrument,
       CASE WHEN g %% 20 = 0 THEN NULL ELSE l.lp END,
       CASE WHEN g %% 2 = 0 THEN 'BUY' ELSE 'SELL' END, q, p, q * p, round(q * p * 0.0001, 10), q * p,
       (g * 7919) %% 500, 'event'
FROM generate_series(1::bigint, %(rows)s) g
CROSS JOIN LATERAL (SELECT %(day)s::timestamptz + (g %% 86400) * interval '1 second' AS ts,
    round((1 + (g * 37) %% 100000 / 100.0)::numeric, 2) AS q,
    round((0.5 + (g * 101) %% 200000 / 1000.0)::numeric, 5) AS p) v
JOIN (SELECT n, md5('t' || n)::uuid AS tenant FROM generate_series(0, 4) n) t ON t.n = g %% 5
JOIN (SELECT n, md5('c' || n)::uuid AS client FROM generate_series(0, 1999) n) c ON c.n = (g * 13) %% 2000
JOIN (SELECT n, md5('i' || n)::uuid AS instrument FROM generate_series(0, 49) n) i ON i.n = (g * 7) %% 50
JOIN (SELECT n, md5('l' || n)::uuid AS lp FROM generate_series(0, 9) n) l ON l.n = (g * 3) %% 10
"""


def timed(conn: psycopg.Connection, work: Callable[[], object], repeat: int) -> list[float]:
    """Run `work` in its own transaction after deleting the day's rows; seconds per run."""
    out = []
    for _ in range(repeat):
        with conn.transaction():
            conn.execute("DELETE FROM agg_daily_trade_summary")
            conn.execute("DELETE FROM agg_client_metrics")
            conn.execute("DELETE FROM agg_lp_performance")
        with conn.transaction():
            t0 = time.perf_counter()
            work()
            out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--port", type=int, default=int(os.environ.get("ORION_STACK_PG_PORT", "55432")))
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    args = parser.parse_args()

    db = f"orion_bench_agg_{uuid.uuid4().hex[:6]}"
    admin = PostgresSettings(port=args.port, dbname="postgres")
    with connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    settings = OrionSettings(warehouse={"port": args.port, "dbname": db})
    try:
        with connect(settings.warehouse, autocommit=True) as conn:
            migrations.migrate(conn, "warehouse")
            t0 = time.perf_counter()
            conn.execute(GENERATE, {"rows": args.rows, "day": DAY.isoformat(), "key": 20260304})
            load_s = time.perf_counter() - t0
            conn.execute("VACUUM ANALYZE fact_trades")
            conn.execute("SELECT count(*) FROM fact_trades").fetchone()  # warm the cache
            server = conn.execute("SELECT version()").fetchone()
            work_mem = conn.execute("SHOW work_mem").fetchone()
        bucket = bucket_for(Period.DAILY, DAY)
        params = agg.bucket_params(bucket, "UTC", "00:00", is_final=True)
        results: dict[str, list[float]] = {}
        with connect(settings.warehouse) as conn:
            runs: dict[str, Callable[[], object]] = {
                "(a) floor: one GROUPING SETS query": lambda: conn.execute(FLOOR, params),
                "(b) story: five scans": lambda: [conn.execute(q, params) for q in STORY],
                "(c) orion: trade summary": lambda: agg.recompute_bucket(conn, params, ("summary",)),
                "(d) orion: summary + clients + LPs": lambda: agg.recompute_bucket(conn, params),
                "(e) orion: consistency checks": lambda: agg.validate_bucket(conn, params, None),  # type: ignore[arg-type]
            }
            for _ in range(args.repeat):  # interleave so cache state is shared fairly
                for name, work in runs.items():
                    if name.startswith("(e)"):
                        with conn.transaction():
                            agg.recompute_bucket(conn, params)
                    results.setdefault(name, []).extend(timed(conn, work, 1))
        end_to_end = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            run_periods(settings, [bucket])
            end_to_end.append(time.perf_counter() - t0)
        results["(f) orion: `aggregate --date` end to end"] = end_to_end

        floor = statistics.median(results["(a) floor: one GROUPING SETS query"])
        print(f"rows={args.rows:,} load={load_s:.1f}s repeat={args.repeat}")
        print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, python {platform.python_version()}")
        print(f"server: {server[0] if server else '?'}, work_mem={work_mem[0] if work_mem else '?'}")
        print("| approach | median s | runs (s) | x floor |")
        print("|---|---:|---|---:|")
        for name, secs in results.items():
            med = statistics.median(secs)
            runs_txt = ", ".join(f"{s:.2f}" for s in secs)
            print(f"| {name} | {med:.2f} | {runs_txt} | {med / floor:.2f} |")
    finally:
        if not args.keep:
            with connect(admin, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))


if __name__ == "__main__":
    main()
