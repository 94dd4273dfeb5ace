"""Intraday running aggregates: incremental == full recompute; dirty buckets recomputed exactly."""

from __future__ import annotations

from datetime import date
from typing import Any

import psycopg
import pytest

from orion_etl.adapters.postgres import connect
from orion_etl.config.models import OrionSettings
from orion_etl.core.periods import Period, bucket_for
from orion_etl.jobs.aggregate import run_intraday, run_periods
from tests.integration.aggfacts import C1, C2, DAY, I2, L2, NEXT, at, insert, trade

pytestmark = pytest.mark.integration

VOLATILE = {"id", "created_at", "updated_at"}


@pytest.fixture(autouse=True)
def _clean_aggregation_state(warehouse: psycopg.Connection) -> None:
    warehouse.execute("TRUNCATE agg_dirty_buckets, agg_intraday_state")


def _rows(conn: psycopg.Connection, table: str, period: str, start: date) -> list[dict[str, Any]]:
    date_col = "trade_date" if table == "agg_daily_trade_summary" else "metric_date"
    cur = conn.cursor(row_factory=psycopg.rows.dict_row)
    rows = cur.execute(
        f"SELECT * FROM {table} WHERE period_type = %s AND {date_col} = %s", (period, start)
    ).fetchall()
    cleaned = [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]
    return sorted(cleaned, key=lambda r: tuple(str(v) for v in r.values()))


def _snapshot(conn: psycopg.Connection, start: date) -> dict[str, list[dict[str, Any]]]:
    return {
        t: _rows(conn, t, "DAILY", start)
        for t in ("agg_daily_trade_summary", "agg_client_metrics", "agg_lp_performance")
    }


def _assert_equals_full_recompute(settings: OrionSettings, conn: psycopg.Connection, day: date) -> None:
    incremental = _snapshot(conn, day)
    assert incremental["agg_daily_trade_summary"], "nothing aggregated"
    assert run_periods(settings, [bucket_for(Period.DAILY, day)]).issues == []
    assert _snapshot(conn, day) == incremental


def test_incremental_equals_full_recompute(
    stack_settings: OrionSettings, warehouse: psycopg.Connection
) -> None:
    insert(warehouse, "fact_trades", [trade(at(DAY, 9), qty="3", price="1.5", latency=7)])
    first = run_intraday(stack_settings)
    assert first.issues == [] and first.merged_rows == 0  # first run initializes from the facts
    tenant_row = (
        "SELECT id FROM agg_daily_trade_summary WHERE period_type = 'DAILY' AND aggregation_level = 'TENANT'"
    )
    tenant_id_before = warehouse.execute(tenant_row).fetchone()
    insert(
        warehouse,
        "fact_trades",
        [
            trade(at(DAY, 10), qty="2", price="0.75", side="SELL", latency=3),  # new min
            trade(at(DAY, 11), client=C2, instrument=I2, lp=L2, qty="1", price="9"),  # new groups
            trade(at(DAY, 12), lp=None, qty="0.0000000001", price="3.3333333333", fees="0.01"),
        ],
    )
    second = run_intraday(stack_settings)
    assert second.issues == []
    assert second.merged_rows > 0 and second.merged_days == [str(DAY.strftime("%Y%m%d"))]
    assert warehouse.execute(tenant_row).fetchone() == tenant_id_before  # merged in place, not rebuilt
    insert(warehouse, "fact_trades", [trade(at(DAY, 13), qty="7", price="12.125", latency=99)])
    assert run_intraday(stack_settings).issues == []
    _assert_equals_full_recompute(stack_settings, warehouse, DAY)


def test_trade_committed_after_a_run_started_is_counted_once(
    stack_settings: OrionSettings, warehouse: psycopg.Connection
) -> None:
    insert(warehouse, "fact_trades", [trade(at(DAY, 9), qty="1")])
    run_intraday(stack_settings)
    with connect(stack_settings.warehouse) as slow:  # a loader transaction still open during the run
        insert(slow, "fact_trades", [trade(at(DAY, 10), qty="2")])
        run_intraday(stack_settings)
        slow.commit()
    run_intraday(stack_settings)
    run_intraday(stack_settings)
    tenant = [
        r
        for r in _rows(warehouse, "agg_daily_trade_summary", "DAILY", DAY)
        if r["aggregation_level"] == "TENANT"
    ]
    assert [(r["trade_count"], r["total_volume"]) for r in tenant] == [(2, 3)]
    _assert_equals_full_recompute(stack_settings, warehouse, DAY)


def test_period_run_between_intraday_runs_does_not_double_count(
    stack_settings: OrionSettings, warehouse: psycopg.Connection
) -> None:
    insert(warehouse, "fact_trades", [trade(at(DAY, 9), qty="1")])
    run_intraday(stack_settings)
    insert(warehouse, "fact_trades", [trade(at(DAY, 10), qty="2")])
    run_periods(stack_settings, [bucket_for(Period.DAILY, DAY)])  # already includes the new trade
    insert(warehouse, "fact_trades", [trade(at(DAY, 11), qty="4")])
    assert run_intraday(stack_settings).issues == []
    _assert_equals_full_recompute(stack_settings, warehouse, DAY)


def test_deleted_and_late_facts_recompute_exactly_the_touched_buckets(
    stack_settings: OrionSettings, warehouse: psycopg.Connection
) -> None:
    late_day = date(2026, 2, 10)
    victim = trade(at(DAY, 9), qty="5")
    insert(warehouse, "fact_trades", [victim, trade(at(DAY, 10), qty="1"), trade(at(NEXT, 9), qty="2")])
    insert(warehouse, "fact_trades", [trade(at(late_day, 9), qty="3")])
    run_intraday(stack_settings)
    quiet = run_intraday(stack_settings)
    assert quiet.buckets == [] and quiet.merged_rows == 0
    untouched = warehouse.execute(
        "SELECT max(updated_at) FROM agg_daily_trade_summary WHERE trade_date = %s", (NEXT,)
    ).fetchone()

    warehouse.execute("UPDATE fact_trades SET is_deleted = true WHERE trade_id = %s", (victim["trade_id"],))
    insert(warehouse, "fact_trades", [trade(at(late_day, 15), client=C1, qty="10")])  # arrives late
    report = run_intraday(stack_settings)
    assert report.buckets == [
        "daily 2026-02-10",
        "daily 2026-03-04",
        "weekly 2026-02-09",
        "weekly 2026-03-02",
        "monthly 2026-02-01",
        "monthly 2026-03-01",
    ]
    assert report.merged_days == ["20260210"]  # the late insert is merged, the deletion recomputed
    assert report.issues == []
    # quarterly and yearly marks stay queued for a run that includes them
    queued = warehouse.execute("SELECT DISTINCT period_type FROM agg_dirty_buckets ORDER BY 1").fetchall()
    assert queued == [("QUARTERLY",), ("YEARLY",)]
    assert (
        warehouse.execute(
            "SELECT max(updated_at) FROM agg_daily_trade_summary WHERE trade_date = %s", (NEXT,)
        ).fetchone()
        == untouched
    )
    weekly = _rows(warehouse, "agg_client_metrics", "WEEKLY", date(2026, 3, 2))
    assert [(r["client_id"], r["total_trades"], r["trading_days"]) for r in weekly] == [(C1, 2, 2)]
    everything = run_intraday(stack_settings, list(Period))
    assert everything.buckets == ["quarterly 2026-01-01", "yearly 2026-01-01"]
    _assert_equals_full_recompute(stack_settings, warehouse, DAY)
    _assert_equals_full_recompute(stack_settings, warehouse, late_day)
