"""Set-based aggregation statements against the warehouse (SQL in sql/queries/aggregate_*.sql).

Every statement is parameterized; the only composed SQL is fixed fragments chosen here (never
user input). A bucket is recomputed delete-then-insert in the caller's transaction, so groups that
disappeared (all trades of a client deleted) disappear from the aggregates too.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import Any

import psycopg
from psycopg import sql

from orion_etl.core.periods import Bucket, Period, bucket_for
from orion_etl.sqlfiles import read_sql

PARTS = ("summary", "clients", "lp")
_TABLES = {
    "summary": ("agg_daily_trade_summary", "trade_date"),
    "clients": ("agg_client_metrics", "metric_date"),
    "lp": ("agg_lp_performance", "metric_date"),
}
_BUCKET_WHERE = sql.SQL("trade_date_key >= %(start_key)s AND trade_date_key < %(end_key)s")
# Trades whose inserting transaction committed after the previous intraday snapshot.
_DELTA_WHERE = sql.SQL(
    "load_xid >= pg_snapshot_xmin(%(prev)s::pg_snapshot) "
    "AND NOT pg_visible_in_snapshot(load_xid, %(prev)s::pg_snapshot) "
    "AND trade_date_key <> ALL(%(exclude)s::int[])"
)
INTRADAY_STATE = "fact_trades"


@cache
def _query(name: str) -> str:
    return read_sql(f"queries/{name}.sql")


def _base(where: sql.Composable) -> sql.Composed:
    return sql.SQL(_query("aggregate_base")).format(where=where)


@dataclass(frozen=True)
class Issue:
    """One failed consistency check."""

    rule: str
    record_id: str | None
    message: str


def bucket_params(
    bucket: Bucket, timezone: str, cutoff: str, is_final: bool = False, *, weekend_roll: bool = False
) -> dict[str, Any]:
    """Named parameters shared by the aggregation statements."""
    start_ts, end_ts = bucket.instants(timezone, cutoff, weekend_roll=weekend_roll)
    return {
        "period": bucket.period.value,
        "start": bucket.start,
        "end": bucket.end,
        "start_key": bucket.start_key,
        "end_key": bucket.end_key,
        "start_ts": start_ts,
        "end_ts": end_ts,
        "days": bucket.days,
        "is_final": is_final,
    }


def recompute_bucket(
    conn: psycopg.Connection, params: dict[str, Any], parts: tuple[str, ...] = PARTS
) -> dict[str, int]:
    """Delete the bucket's rows of `parts` and insert them again from one scan of the facts."""
    for part in parts:
        table, date_col = _TABLES[part]
        conn.execute(
            sql.SQL("DELETE FROM {} WHERE period_type = %(period)s AND {} = %(start)s").format(
                sql.Identifier(table), sql.Identifier(date_col)
            ),
            params,
        )
    ctes = [sql.SQL("base AS MATERIALIZED ({})").format(_base(_BUCKET_WHERE))]
    ctes += [
        sql.SQL("{} AS ({})").format(sql.Identifier(f"ins_{part}"), sql.SQL(_query(f"aggregate_{part}")))
        for part in parts
    ]
    counts = sql.SQL(", ").join(
        sql.SQL("(SELECT count(*) FROM {})").format(sql.Identifier(f"ins_{part}")) for part in parts
    )
    statement = sql.SQL("WITH {} SELECT {}").format(sql.SQL(",\n").join(ctes), counts)
    row = conn.execute(statement, params).fetchone()
    assert row is not None
    return {_TABLES[part][0]: int(n) for part, n in zip(parts, row, strict=True)}


def merge_delta(
    conn: psycopg.Connection, prev_snapshot: str, exclude_days: list[int]
) -> tuple[int, set[int]]:
    """Merge trades loaded since `prev_snapshot` into DAILY summaries; (rows upserted, day keys)."""
    statement = sql.SQL("WITH base AS MATERIALIZED ({}) {}").format(
        _base(_DELTA_WHERE), sql.SQL(_query("aggregate_delta"))
    )
    rows = conn.execute(statement, {"prev": prev_snapshot, "exclude": exclude_days}).fetchall()
    return len(rows), {int(r[0]) for r in rows}


def finalize_complete(conn: psycopg.Connection, first_open_day: date) -> int:
    """Mark summary rows of every bucket that ended before trading day `first_open_day` final.

    A bucket is complete once its last instant has passed, i.e. when its exclusive end day is at
    most the trading day of now: what a full recompute writes (`is_final = is_complete(...)`). The
    intraday merge inserts rows `false` and never updates the column; this makes merged rows (and
    rows of days that ended since the last run) equal to a recompute. Returns the rows changed.
    """
    cur = conn.execute(
        "UPDATE agg_daily_trade_summary SET is_final = true WHERE NOT is_final AND period_end <= %s",
        (first_open_day,),
    )
    return max(cur.rowcount, 0)


def current_snapshot(conn: psycopg.Connection) -> str:
    """The snapshot of the running (REPEATABLE READ) transaction, as text."""
    row = conn.execute("SELECT pg_current_snapshot()::text").fetchone()
    assert row is not None
    return str(row[0])


def previous_snapshot(conn: psycopg.Connection) -> str | None:
    """The snapshot stored by the last intraday run, or None before the first one."""
    row = conn.execute(
        "SELECT snapshot::text FROM agg_intraday_state WHERE name = %s", (INTRADAY_STATE,)
    ).fetchone()
    return None if row is None else str(row[0])


def store_snapshot(conn: psycopg.Connection, snapshot: str) -> None:
    """Remember `snapshot` as the intraday watermark."""
    conn.execute(
        "INSERT INTO agg_intraday_state (name, snapshot) VALUES (%s, %s::pg_snapshot) "
        "ON CONFLICT (name) DO UPDATE SET snapshot = EXCLUDED.snapshot, updated_at = now()",
        (INTRADAY_STATE, snapshot),
    )


@dataclass(frozen=True)
class DirtyMark:
    """A claimed dirty-bucket mark."""

    bucket: Bucket
    source_table: str
    op: str


def claim_dirty(conn: psycopg.Connection, periods: list[Period]) -> list[DirtyMark]:
    """Remove and return the dirty marks of `periods` visible to this transaction."""
    rows = conn.execute(
        "DELETE FROM agg_dirty_buckets WHERE period_type = ANY(%s) "
        "RETURNING period_type, period_start, source_table, op",
        ([p.value for p in periods],),
    ).fetchall()
    return [DirtyMark(bucket_for(Period(r[0]), r[1]), r[2], r[3]) for r in rows]


def claim_bucket(conn: psycopg.Connection, bucket: Bucket) -> None:
    """Drop the dirty marks of one bucket that a full recompute (run next) makes redundant."""
    conn.execute(
        "DELETE FROM agg_dirty_buckets WHERE period_type = %s AND period_start = %s",
        (bucket.period.value, bucket.start),
    )


def mark_recompute(conn: psycopg.Connection, days: list[date]) -> None:
    """Ask the next intraday run to recompute these DAILY summaries (their rows were rebuilt
    outside its watermark, so merging later deltas into them could double count)."""
    conn.execute(
        "INSERT INTO agg_dirty_buckets (period_type, period_start, source_table, op) "
        "SELECT 'DAILY', d, 'agg_daily_trade_summary', 'RECOMPUTE' FROM unnest(%s::date[]) d "
        "WHERE EXISTS (SELECT 1 FROM agg_intraday_state)",
        (days,),
    )


def fact_days(conn: psycopg.Connection) -> list[date]:
    """Every trading day that has trades (first intraday run initializes them all)."""
    rows = conn.execute(
        "SELECT DISTINCT to_date(trade_date_key::text, 'YYYYMMDD') FROM fact_trades ORDER BY 1"
    ).fetchall()
    return [r[0] for r in rows]


def validate_bucket(conn: psycopg.Connection, params: dict[str, Any], run_id: uuid.UUID) -> list[Issue]:
    """Run the consistency checks of a bucket; failed checks are inserted as issues of `run_id`."""
    rows = conn.execute(_query("aggregate_validate"), {**params, "run_id": run_id}).fetchall()
    return [Issue(r[0], r[1], r[2]) for r in rows]
