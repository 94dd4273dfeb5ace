"""Benchmark client metrics with positions and risk (not a test): one month of facts.

Side by side in one run, on the same data (N trades, M position changes and S risk snapshots over
one calendar month), each timed as the median of --repeat runs, interleaved:
  (a) before issue 17: the client-metrics statement on the trades (+ risk snapshots), as `aggregate`
      ran it (pre-grouped trades, one INSERT), realized P&L NULL;
  (b) now: the client-metrics statement with realized P&L from the position history (sum of the
      changes' deltas in the month) and risk snapshots;
  (c) now: the consistency checks with the new P&L / breach checks;
  (d) now: `aggregate --period monthly` end to end (summary, client metrics, LPs, checks, ledger).
Target: (b) <= 1.5 x (a).

With `--loader-changes N` it also measures the loader in-process (no Kafka): N Debezium changes of
positions (history + P&L chain) against N trade creates, prepared and committed in batches of 5,000
by `BatchPreparer` + `WarehouseLoader` in a second database.

    PYTHONPATH=. .venv/bin/python scripts/bench_positions.py --trades 5000000 --changes 1000000

Creates (and drops, unless --keep) its own database on the local stack (`--port`).
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

from psycopg import sql

from orion_etl.adapters import aggregates as agg
from orion_etl.adapters import migrations
from orion_etl.adapters.postgres import connect
from orion_etl.adapters.warehouse_loader import WarehouseLoader
from orion_etl.config.models import OrionSettings, PostgresSettings
from orion_etl.core.periods import Period, bucket_for
from orion_etl.core.records import KafkaRecord
from orion_etl.jobs.aggregate import run_periods
from orion_etl.jobs.stream_batch import BatchPreparer
from orion_etl.sqlfiles import read_sql
from tests.stream_builders import cdc, position_row, trade_row

MONTH = date(2026, 3, 1)
DAYS = 31
# The client-metrics statement before issue 17 (sql/queries/aggregate_clients.sql at fb7473a).
BEFORE = """
INSERT INTO agg_client_metrics (
    tenant_id, client_id, metric_date, period_type, period_end,
    trading_days, total_trades, unique_instruments, total_volume, total_notional,
    avg_trade_size, total_fees, realized_pnl, avg_utilization, max_utilization, breach_count,
    risk_score, engagement_score, notional_rank)
SELECT c.tenant_id, c.client_id, %(start)s, %(period)s, %(end)s,
       c.trading_days, c.trades, c.instruments, c.volume, c.notional,
       c.notional / c.trades, c.fees, NULL,
       COALESCE(r.avg_util, 0), COALESCE(r.max_util, 0), COALESCE(r.breaches, 0), r.risk_score,
       LEAST(1.0, c.trading_days::numeric / %(days)s * 0.4
                  + LEAST(c.trades, 100)::numeric / 100 * 0.3
                  + LEAST(c.instruments, 20)::numeric / 20 * 0.3),
       rank() OVER (PARTITION BY c.tenant_id ORDER BY c.notional DESC)
FROM (
    SELECT tenant_id, client_id, count(DISTINCT trade_date_key) AS trading_days, sum(n) AS trades,
           count(DISTINCT instrument_id) AS instruments, sum(vol) AS volume,
           sum(notional) AS notional, sum(fees) AS fees
    FROM base GROUP BY tenant_id, client_id
) c
LEFT JOIN (
    SELECT tenant_id, client_id, avg(utilization_pct) AS avg_util, max(utilization_pct) AS max_util,
           sum(soft_breach_count + hard_breach_count) AS breaches, avg(risk_score) AS risk_score
    FROM fact_risk_snapshots
    WHERE snapshot_time >= %(start_ts)s AND snapshot_time < %(end_ts)s
    GROUP BY tenant_id, client_id
) r USING (tenant_id, client_id)
RETURNING 1
"""
TRADES = """
INSERT INTO fact_trades (trade_id, tenant_id, trade_date, trade_date_key, client_id, instrument_id,
    lp_id, side, quantity, price, notional_value, fees, net_amount, fill_latency_ms, src_origin)
SELECT gen_random_uuid(), c.tenant, ts, to_char(ts AT TIME ZONE 'UTC', 'YYYYMMDD')::int, c.client,
       i.instrument, l.lp, CASE WHEN g %% 2 = 0 THEN 'BUY' ELSE 'SELL' END, q, p, q * p,
       round(q * p * 0.0001, 10), q * p, (g * 7919) %% 500, 'event'
FROM generate_series(1::bigint, %(rows)s) g
CROSS JOIN LATERAL (SELECT %(month)s::timestamptz + (g %% (86400 * %(days)s)) * interval '1 second' AS ts,
    round((1 + (g * 37) %% 100000 / 100.0)::numeric, 2) AS q,
    round((0.5 + (g * 101) %% 200000 / 1000.0)::numeric, 5) AS p) v
JOIN (SELECT n, md5('c' || n)::uuid AS client, md5('t' || n %% 5)::uuid AS tenant
      FROM generate_series(0, 1999) n) c ON c.n = (g * 13) %% 2000
JOIN (SELECT n, md5('i' || n)::uuid AS instrument FROM generate_series(0, 49) n) i ON i.n = (g * 7) %% 50
JOIN (SELECT n, md5('l' || n)::uuid AS lp FROM generate_series(0, 9) n) l ON l.n = (g * 3) %% 10
"""
# 20,000 positions (2,000 clients x 10 instruments), changes spread evenly over the month; the
# cumulative realized P&L and its per-change delta are consistent (delta = step of the cumulative).
POSITIONS = """
INSERT INTO fact_positions (position_id, tenant_id, client_id, instrument_id, changed_at,
    change_date_key, quantity, avg_price, realized_pnl, realized_pnl_delta, src_op, src_commit_lsn,
    src_lsn, src_topic, src_partition, src_offset)
SELECT md5('p' || pos)::uuid, md5('t' || (pos / 10) %% 5)::uuid, md5('c' || pos / 10)::uuid,
       md5('i' || pos %% 10)::uuid, ts, to_char(ts AT TIME ZONE 'UTC', 'YYYYMMDD')::int,
       1000, 1.1, sum(step) OVER (PARTITION BY pos ORDER BY k), step,
       CASE WHEN k = 0 THEN 'c' ELSE 'u' END, g, g, 'cdc.public.positions', 0, g
FROM (
    SELECT g, g %% 20000 AS pos, g / 20000 AS k,
           %(month)s::timestamptz + (g * (86400.0 * %(days)s / %(rows)s)) * interval '1 second' AS ts,
           CASE WHEN g < 20000 THEN 0 ELSE ((g * 31) %% 2001 - 1000) / 100.0 END AS step
    FROM generate_series(0::bigint, %(rows)s - 1) g
) s
"""
RISK = """
INSERT INTO fact_risk_snapshots (tenant_id, client_id, snapshot_time, snapshot_date, snapshot_date_key,
    exposure, margin_used, utilization_pct, soft_breach_count, hard_breach_count, risk_score)
SELECT md5('t' || c %% 5)::uuid, md5('c' || c)::uuid, ts, (ts AT TIME ZONE 'UTC')::date,
       to_char(ts AT TIME ZONE 'UTC', 'YYYYMMDD')::int, 1000000, 50000, u, (u > 80)::int,
       (u > 100)::int, LEAST(100, u * 0.8)
FROM generate_series(0, 1999) c
CROSS JOIN generate_series(0, %(per_client)s - 1) n
CROSS JOIN LATERAL (SELECT %(month)s::timestamptz + n * (interval '1 day' * %(days)s / %(per_client)s) AS ts,
                           ((c * 7 + n * 13) %% 12000) / 100.0 AS u) v
"""


def statement(clients_sql: str) -> sql.Composed:
    """`WITH base AS (<the month's trades, pre-grouped>), ins AS (<client metrics>)`, as in `aggregate`."""
    base = sql.SQL(read_sql("queries/aggregate_base.sql")).format(
        where=sql.SQL("trade_date_key >= %(start_key)s AND trade_date_key < %(end_key)s")
    )
    return sql.SQL("WITH base AS MATERIALIZED ({}), ins AS ({}) SELECT count(*) FROM ins").format(
        base, sql.SQL(clients_sql)
    )


def loader_run(settings: OrionSettings, topic: str, values: list[bytes], batch: int = 5000) -> float:
    """Prepare + commit `values` (records of `topic`) in batches; seconds."""
    loader = WarehouseLoader(settings.warehouse, f"bench-{uuid.uuid4().hex[:6]}")
    preparer = BatchPreparer(settings, loader)
    t0 = time.perf_counter()
    expected: dict[tuple[str, int], int | None] = {}
    for start in range(0, len(values), batch):
        records = [
            KafkaRecord(topic, 0, start + n, None, v) for n, v in enumerate(values[start : start + batch])
        ]
        prepared = preparer.prepare(records)
        assert not prepared.letters, prepared.letters[:1]
        loader.commit_batch(prepared.write, expected, None)
        expected = dict(prepared.write.offsets)
    elapsed = time.perf_counter() - t0
    loader.close_all()
    return elapsed


def loader_bench(admin: PostgresSettings, port: int, changes: int) -> None:
    """N position changes vs N trade creates through the loader (in-process, one database each)."""
    positions = 2_000

    def position(n: int) -> bytes:
        p = n % positions  # position p belongs to client p % 500 and instrument p // 500
        row = position_row(
            id=str(uuid.UUID(int=10_000 + p)), client_id=str(uuid.UUID(int=20_000 + p % 500)),
            instrument_id=str(uuid.UUID(int=30_000 + p // 500)), quantity=str(n % 97),
            realized_pnl=str(n // positions * 10),
            updated_at=f"2026-03-{1 + n * 28 // changes:02d}T12:00:00Z",
        )  # fmt: skip
        return cdc("positions", row, op="c" if n < positions else "u", lsn=1000 + n, commit_lsn=1000 + n)

    pos_values = [position(n) for n in range(changes)]
    trade_values = [cdc("trades", trade_row(), lsn=1000 + n, commit_lsn=1000 + n) for n in range(changes)]
    print(f"loader, in-process, batches of 5,000: {changes:,} records each")
    for name, topic, values in (
        ("trade creates (fact_trades, append)", "cdc.public.trades", trade_values),
        ("position changes (fact_positions history + P&L chain)", "cdc.public.positions", pos_values),
    ):
        db = f"orion_bench_load_{uuid.uuid4().hex[:6]}"
        with connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
        settings = OrionSettings(warehouse={"port": port, "dbname": db})
        try:
            with connect(settings.warehouse, autocommit=True) as conn:
                migrations.migrate(conn, "warehouse")
            secs = loader_run(settings, topic, values)
            print(f"| {name} | {secs:.2f} s | {changes / secs:,.0f} records/s |")
        finally:
            with connect(admin, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trades", type=int, default=5_000_000)
    parser.add_argument("--changes", type=int, default=1_000_000)
    parser.add_argument("--risk-per-client", type=int, default=120, help="risk snapshots per client")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--port", type=int, default=int(os.environ.get("ORION_STACK_PG_PORT", "55432")))
    parser.add_argument("--keep", action="store_true", help="keep the benchmark database")
    parser.add_argument("--loader-changes", type=int, default=0, help="also measure the loader (records)")
    parser.add_argument("--loader-only", action="store_true", help="only the loader measurement")
    args = parser.parse_args()
    admin = PostgresSettings(port=args.port, dbname="postgres")
    if args.loader_changes:
        loader_bench(admin, args.port, args.loader_changes)
    if args.loader_only:
        return

    db = f"orion_bench_pos_{uuid.uuid4().hex[:6]}"
    with connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    settings = OrionSettings(warehouse={"port": args.port, "dbname": db})
    try:
        with connect(settings.warehouse, autocommit=True) as conn:
            migrations.migrate(conn, "warehouse")
            t0 = time.perf_counter()
            params = {"month": MONTH.isoformat(), "days": DAYS}
            conn.execute(TRADES, {**params, "rows": args.trades})
            conn.execute(POSITIONS, {**params, "rows": args.changes})
            conn.execute(RISK, {**params, "per_client": args.risk_per_client})
            load_s = time.perf_counter() - t0
            conn.execute("TRUNCATE agg_dirty_buckets")
            for table in ("fact_trades", "fact_positions", "fact_risk_snapshots"):
                conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(table)))
            counts = conn.execute(
                "SELECT (SELECT count(*) FROM fact_trades), (SELECT count(*) FROM fact_positions), "
                "(SELECT count(*) FROM fact_risk_snapshots)"
            ).fetchone()
            server = conn.execute("SELECT version()").fetchone()
            work_mem = conn.execute("SHOW work_mem").fetchone()
        bucket = bucket_for(Period.MONTHLY, MONTH)
        bparams = agg.bucket_params(bucket, "UTC", "00:00", is_final=True)
        results: dict[str, list[float]] = {}
        with connect(settings.warehouse) as conn:

            def clients(text: str) -> Callable[[], object]:
                return lambda: conn.execute(statement(text), bparams).fetchone()

            runs: dict[str, Callable[[], object]] = {
                "(a) before: client metrics on trades + risk (P&L NULL)": clients(BEFORE),
                "(b) now: client metrics with realized P&L from positions + risk": clients(
                    read_sql("queries/aggregate_clients.sql")
                ),
                "(c) now: consistency checks (incl. P&L / breaches = facts)": lambda: agg.validate_bucket(
                    conn,
                    bparams,
                    None,  # type: ignore[arg-type]
                ),
            }
            for _ in range(args.repeat):  # interleaved so cache state is shared fairly
                for name, work in runs.items():
                    with conn.transaction():
                        conn.execute("DELETE FROM agg_client_metrics")
                        if name.startswith("(c)"):
                            agg.recompute_bucket(conn, bparams)
                    with conn.transaction():
                        t0 = time.perf_counter()
                        work()
                        results.setdefault(name, []).append(time.perf_counter() - t0)
        end_to_end = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            report = run_periods(settings, [bucket])
            end_to_end.append(time.perf_counter() - t0)
            assert not report.issues, report.issues
        results["(d) now: `aggregate --period monthly` end to end"] = end_to_end

        before = statistics.median(results["(a) before: client metrics on trades + risk (P&L NULL)"])
        assert counts is not None
        print(
            f"month {MONTH:%Y-%m}: trades={counts[0]:,} position changes={counts[1]:,} "
            f"risk snapshots={counts[2]:,} load={load_s:.1f}s repeat={args.repeat}"
        )
        print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, python {platform.python_version()}")
        print(f"server: {server[0] if server else '?'}, work_mem={work_mem[0] if work_mem else '?'}")
        print("| approach | median s | runs (s) | x (a) |")
        print("|---|---:|---|---:|")
        for name, secs in results.items():
            med = statistics.median(secs)
            runs_txt = ", ".join(f"{s:.2f}" for s in secs)
            print(f"| {name} | {med:.2f} | {runs_txt} | {med / before:.2f} |")
    finally:
        if not args.keep:
            with connect(admin, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))


if __name__ == "__main__":
    main()
