"""`aggregate` periods: hand-computed values at every level, boundaries, DST, empty days."""

from __future__ import annotations

from datetime import UTC, date, datetime

import psycopg
import pytest

from orion_etl.config.models import OrionSettings, TradingDaySettings
from orion_etl.core.periods import Period, bucket_for
from orion_etl.jobs.aggregate import run_periods, run_validate
from tests.integration.aggfacts import (
    C1,
    C2,
    DAY,
    I1,
    I2,
    L1,
    L2,
    L3,
    NEXT,
    D,
    at,
    insert,
    order,
    quote,
    risk,
    summary,
    trade,
)

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _clean_aggregation_state(warehouse: psycopg.Connection) -> None:
    warehouse.execute("TRUNCATE agg_dirty_buckets, agg_intraday_state")


def _hand_set(conn: psycopg.Connection) -> None:
    insert(
        conn,
        "fact_trades",
        [
            trade(at(DAY, 9), side="BUY", qty="10", price="1.10", fees="0.10", latency=10),
            trade(at(DAY, 10), lp=L2, side="SELL", qty="5", price="1.20", fees="0.05", latency=20),
            trade(at(DAY, 11), instrument=I2, qty="2", price="100", fees="1", latency=30),
            trade(at(DAY, 12), client=C2, lp=None, qty="4", price="1.00", latency=40),
            trade(at(DAY, 13), client=C2, side="SELL", qty="1", price="1.30", deleted=True),
            trade(at(NEXT, 9), qty="100", price="9"),  # next day: outside the daily bucket
        ],
    )
    insert(
        conn,
        "fact_quotes",
        [
            quote(at(DAY, 9), spread_bps="1", latency=10),
            quote(at(DAY, 10), spread_bps="2", latency=20),
            quote(at(DAY, 11), spread_bps="3", latency=30),
            quote(at(DAY, 12), spread_bps="6", latency=40, stale=True),
            quote(at(NEXT, 0, 0), spread_bps="50", latency=900),  # next day starts at midnight UTC
        ],
    )
    insert(
        conn,
        "fact_orders",
        [
            order(at(DAY, 9), filled="10"),
            order(at(DAY, 9), filled="10"),
            order(at(DAY, 9), filled="0", rejected=True),
            order(at(DAY, 9), filled="1"),
            order(at(DAY, 9), lp=L2, filled="10"),
            order(at(DAY, 9), lp=L3, filled="0", rejected=True),
            order(at(DAY, 9), lp=None, filled="0", rejected=True),  # never routed: no LP
        ],
    )
    insert(
        conn,
        "fact_risk_snapshots",
        [
            risk(at(DAY, 9), util="50", soft=1, score="10"),
            risk(at(DAY, 15), util="70", hard=2, score="20"),
            risk(at(NEXT, 9), util="99", hard=9, score="90"),
        ],
    )


def test_daily_values_by_hand_at_every_level(
    stack_settings: OrionSettings, warehouse: psycopg.Connection
) -> None:
    _hand_set(warehouse)
    report = run_periods(stack_settings, [bucket_for(Period.DAILY, DAY)])
    assert report.issues == []
    rows = summary(warehouse, "DAILY", DAY)
    assert len(rows) == 11  # 1 tenant + 2 clients + 2 instruments + 3 LPs (one NULL) + 3 pairs

    tenant = rows[("TENANT", None, None, None)]
    assert (tenant["trade_count"], tenant["buy_count"], tenant["sell_count"]) == (4, 3, 1)
    assert (tenant["total_volume"], tenant["buy_volume"], tenant["sell_volume"]) == (D(21), D(16), D(5))
    assert tenant["total_notional"] == D(221)
    assert tenant["total_fees"] == D("1.15")
    assert tenant["avg_price"] == D("25.825")
    assert tenant["vwap_price"] == D("10.5238095238")  # 221 / 21
    assert (tenant["min_price"], tenant["max_price"]) == (D(1), D(100))
    assert (tenant["avg_latency_ms"], tenant["max_latency_ms"]) == (D(25), 40)
    assert tenant["period_end"] == NEXT
    assert tenant["is_final"] is True

    c1 = rows[("CLIENT", C1, None, None)]
    assert (c1["trade_count"], c1["total_volume"], c1["total_notional"]) == (3, D(17), D(217))
    assert c1["avg_price"] == D("34.1")
    assert c1["vwap_price"] == D("12.7647058824")  # 217 / 17
    assert c1["avg_latency_ms"] == D(20)
    c2 = rows[("CLIENT", C2, None, None)]
    assert (c2["trade_count"], c2["total_volume"], c2["vwap_price"]) == (1, D(4), D(1))

    i1 = rows[("INSTRUMENT", None, I1, None)]
    assert (i1["trade_count"], i1["total_volume"], i1["total_notional"]) == (3, D(19), D(21))
    assert i1["vwap_price"] == D("1.1052631579")  # 21 / 19
    assert i1["avg_price"] == D("1.1")
    assert i1["avg_latency_ms"] == D("23.3333")
    assert rows[("INSTRUMENT", None, I2, None)]["vwap_price"] == D(100)

    assert rows[("LP", None, None, L1)]["vwap_price"] == D("17.5833333333")  # 211 / 12
    assert rows[("LP", None, None, L2)]["total_notional"] == D(6)
    assert rows[("LP", None, None, None)]["trade_count"] == 1  # the trade without LP

    assert rows[("CLIENT_INSTRUMENT", C1, I1, None)]["vwap_price"] == D("1.1333333333")  # 17 / 15
    assert rows[("CLIENT_INSTRUMENT", C1, I2, None)]["total_notional"] == D(200)
    assert rows[("CLIENT_INSTRUMENT", C2, I1, None)]["total_volume"] == D(4)

    cur = warehouse.cursor(row_factory=psycopg.rows.dict_row)
    clients = {
        r["client_id"]: r
        for r in cur.execute("SELECT * FROM agg_client_metrics WHERE period_type = 'DAILY'").fetchall()
    }
    m1, m2 = clients[C1], clients[C2]
    assert (m1["trading_days"], m1["total_trades"], m1["unique_instruments"]) == (1, 3, 2)
    assert m1["avg_trade_size"] == D("72.3333333333")
    assert m1["engagement_score"] == D("0.439")  # 1/1*0.4 + 3/100*0.3 + 2/20*0.3
    assert m2["engagement_score"] == D("0.418")  # 0.4 + 0.003 + 0.015
    assert (m1["avg_utilization"], m1["max_utilization"], m1["breach_count"]) == (D(60), D(70), 3)
    assert m1["risk_score"] == D(15)
    assert m1["realized_pnl"] is None  # not derivable from warehouse facts (documented)
    assert (m1["notional_rank"], m2["notional_rank"]) == (1, 2)
    assert m2["avg_utilization"] == 0 and m2["risk_score"] is None

    lps = {
        r["lp_id"]: r
        for r in cur.execute("SELECT * FROM agg_lp_performance WHERE period_type = 'DAILY'").fetchall()
    }
    assert set(lps) == {L1, L2, L3}
    lp1 = lps[L1]
    assert (lp1["quote_count"], lp1["quote_availability_pct"], lp1["avg_spread_bps"]) == (4, D(75), D(3))
    assert lp1["avg_latency_ms"] == D(25)
    assert (lp1["order_count"], lp1["fill_rate"], lp1["rejection_count"]) == (4, D("0.75"), 1)
    assert (lp1["trade_count"], lp1["total_notional"]) == (2, D(211))
    # 0.75*0.25 + (1 - 3/100)*0.35 + (1 - 25/1000)*0.20 + 0.75*0.20
    assert lp1["performance_score"] == D("0.872")
    assert lps[L2]["performance_score"] == D("0.2")  # no quotes: worst quote terms; fill 1.0
    assert lps[L2]["fill_rate"] == 1 and lps[L2]["quote_availability_pct"] is None
    assert (lps[L3]["performance_score"], lps[L3]["rejection_count"]) == (0, 1)
    assert [lps[x]["overall_rank"] for x in (L1, L2, L3)] == [1, 2, 3]


def test_weekly_engagement_uses_real_days_and_rerun_is_idempotent(
    stack_settings: OrionSettings, warehouse: psycopg.Connection
) -> None:
    _hand_set(warehouse)
    week = bucket_for(Period.WEEKLY, DAY)
    assert week.start == date(2026, 3, 2) and week.days == 7
    for _ in range(2):
        assert run_periods(stack_settings, [week]).issues == []
    row = warehouse.execute(
        "SELECT trading_days, total_trades, engagement_score, breach_count, period_end "
        "FROM agg_client_metrics WHERE client_id = %s AND period_type = 'WEEKLY'",
        (C1,),
    ).fetchall()
    # 2/7*0.4 + 4/100*0.3 + 2/20*0.3 = 0.156285714...
    assert row == [(2, 4, D("0.156286"), 12, date(2026, 3, 9))]
    tenant = summary(warehouse, "WEEKLY", week.start)[("TENANT", None, None, None)]
    assert (tenant["trade_count"], tenant["trade_date_key"]) == (5, 20260302)


@pytest.mark.parametrize(
    ("period", "before", "first"),
    [
        (Period.WEEKLY, date(2026, 3, 1), date(2026, 3, 2)),  # Sunday | ISO Monday
        (Period.MONTHLY, date(2026, 2, 28), date(2026, 3, 1)),
        (Period.QUARTERLY, date(2026, 3, 31), date(2026, 4, 1)),
        (Period.YEARLY, date(2025, 12, 31), date(2026, 1, 1)),
    ],
)
def test_period_boundaries(
    stack_settings: OrionSettings, warehouse: psycopg.Connection, period: Period, before: date, first: date
) -> None:
    insert(
        warehouse,
        "fact_trades",
        [trade(at(before, 23, 59), qty="1"), trade(at(first, 0, 0), qty="2"), trade(at(first, 1), qty="3")],
    )
    buckets = [bucket_for(period, before), bucket_for(period, first)]
    assert buckets[1].start == first and buckets[0].end == first
    assert run_periods(stack_settings, buckets).issues == []
    earlier = summary(warehouse, period.value, buckets[0].start)[("TENANT", None, None, None)]
    later = summary(warehouse, period.value, first)[("TENANT", None, None, None)]
    assert (earlier["trade_count"], earlier["total_volume"]) == (1, D(1))
    assert (later["trade_count"], later["total_volume"]) == (2, D(5))


def test_dst_switch_with_new_york_17h_trading_day(
    stack_settings: OrionSettings, warehouse: psycopg.Connection
) -> None:
    # calendar trading days (the FX week, on by default for this convention, would roll the
    # Sunday into Monday: tests/integration/test_fx_week.py)
    ny = TradingDaySettings(timezone="America/New_York", cutoff="17:00", fx_week=False)
    settings = stack_settings.model_copy(update={"trading_day": ny})
    zone = ("America/New_York", "17:00")
    # DST starts Sunday 8 March 2026. Trading day 9 March = [8 Mar 21:00 UTC, 9 Mar 21:00 UTC);
    # trading day 8 March has 23 hours = [7 Mar 22:00 UTC, 8 Mar 21:00 UTC).
    utc = lambda *a: datetime(*a, tzinfo=UTC)  # noqa: E731
    insert(
        warehouse,
        "fact_trades",
        [
            trade(utc(2026, 3, 7, 22, 0), qty="1", zone=zone),  # 17:00 EST Sat -> day 8
            trade(utc(2026, 3, 8, 20, 59), qty="2", zone=zone),  # 16:59 EDT Sun -> day 8
            trade(utc(2026, 3, 8, 21, 0), qty="4", zone=zone),  # 17:00 EDT Sun -> day 9
            trade(utc(2026, 3, 9, 20, 59), qty="8", zone=zone),  # day 9
            trade(utc(2026, 3, 9, 21, 0), qty="16", zone=zone),  # day 10
        ],
    )
    insert(
        warehouse,
        "fact_quotes",
        [quote(utc(2026, 3, 8, 20, 59)), quote(utc(2026, 3, 8, 21, 0)), quote(utc(2026, 3, 9, 20, 59))],
    )
    days = [bucket_for(Period.DAILY, date(2026, 3, d)) for d in (8, 9, 10)]
    assert run_periods(settings, days).issues == []  # includes the trading-day-key check
    volumes = [
        summary(warehouse, "DAILY", b.start)[("TENANT", None, None, None)]["total_volume"] for b in days
    ]
    assert volumes == [D(3), D(12), D(16)]
    quotes = dict(
        warehouse.execute("SELECT metric_date, quote_count FROM agg_lp_performance WHERE lp_id = %s", (L1,))
    )
    assert quotes == {date(2026, 3, 8): 1, date(2026, 3, 9): 2, date(2026, 3, 10): 0}
    # the same facts judged under a UTC-midnight trading day: their keys disagree -> issue, exit 4
    report = run_validate(stack_settings, bucket_for(Period.DAILY, date(2026, 3, 9)))
    assert {i["rule"] for i in report.issues} == {"trading_day_key"}


def test_empty_day_writes_nothing_and_passes(
    stack_settings: OrionSettings, warehouse: psycopg.Connection
) -> None:
    report = run_periods(stack_settings, [bucket_for(Period.DAILY, DAY)])
    assert report.issues == [] and sum(report.rows.values()) == 0
    assert warehouse.execute("SELECT count(*) FROM agg_daily_trade_summary").fetchone() == (0,)
    status = warehouse.execute("SELECT status, job_type FROM etl_job_runs").fetchall()
    assert status == [("COMPLETED", "AGGREGATION")]


def test_rerun_removes_groups_that_disappeared(
    stack_settings: OrionSettings, warehouse: psycopg.Connection
) -> None:
    _hand_set(warehouse)
    bucket = bucket_for(Period.DAILY, DAY)
    run_periods(stack_settings, [bucket])
    warehouse.execute("UPDATE fact_trades SET is_deleted = true WHERE client_id = %s", (C2,))
    assert run_periods(stack_settings, [bucket]).issues == []
    rows = summary(warehouse, "DAILY", DAY)
    assert not [k for k in rows if k[1] == C2]
    assert not [k for k in rows if k[0] == "LP" and k[3] is None]  # C2's trade was the LP-less one
    assert warehouse.execute(
        "SELECT count(*) FROM agg_client_metrics WHERE client_id = %s", (C2,)
    ).fetchone() == (0,)


def test_validation_records_issues_linked_to_the_run(
    stack_settings: OrionSettings, warehouse: psycopg.Connection
) -> None:
    _hand_set(warehouse)
    bucket = bucket_for(Period.DAILY, DAY)
    run_periods(stack_settings, [bucket])
    # corrupt the aggregates: a client row that no longer sums up, a VWAP out of range
    warehouse.execute(
        "UPDATE agg_daily_trade_summary SET trade_count = trade_count + 1, vwap_price = max_price + 1 "
        "WHERE aggregation_level = 'CLIENT' AND client_id = %s",
        (C2,),
    )
    report = run_validate(stack_settings, bucket)
    assert {i["rule"] for i in report.issues} == {"level_sums_to_tenant", "vwap_within_price_range"}
    linked = warehouse.execute(
        "SELECT DISTINCT i.rule_name, r.job_name FROM etl_data_quality_issues i "
        "JOIN etl_job_runs r ON r.id = i.job_run_id WHERE r.id = %s",
        (report.run_id,),
    ).fetchall()
    assert sorted(linked) == [
        ("level_sums_to_tenant", "aggregate-validate"),
        ("vwap_within_price_range", "aggregate-validate"),
    ]
    assert warehouse.execute(
        "SELECT records_failed FROM etl_job_runs WHERE id = %s", (report.run_id,)
    ).fetchone() == (2,)
