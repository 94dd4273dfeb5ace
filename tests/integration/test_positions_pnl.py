"""Positions and risk snapshots end to end: Kafka -> stream -> history -> client metrics.

Hand-computed realized P&L across day, ISO-week, month and year boundaries (the ISO week of
2024-12-30 spans two months and two years), then corrections, a replayed out-of-order change, a
duplicate and a delete arriving after aggregation: the intraday run must give the hand-computed
figures and equal a full recompute.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import sql

from orion_etl.config.models import OrionSettings
from orion_etl.core.periods import Period, bucket_for
from orion_etl.jobs.aggregate import run_intraday, run_periods, run_validate
from tests.integration.stream_support import POSITION_TABLES, drain, produce, stream_settings
from tests.stream_builders import cdc, dumps, position_row, risk_event

pytestmark = pytest.mark.integration

D = Decimal
TENANT = str(uuid.UUID(int=1))
C1, C2 = str(uuid.UUID(int=1101)), str(uuid.UUID(int=1102))
I1, I2 = str(uuid.UUID(int=1201)), str(uuid.UUID(int=1202))
P1, P2, P3 = str(uuid.UUID(int=1501)), str(uuid.UUID(int=1502)), str(uuid.UUID(int=1503))
OWNER = {P1: (C1, I1), P2: (C1, I2), P3: (C2, I1)}


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def change(
    position: str, at: str, pnl: str, lsn: int, *, op: str = "u", qty: str = "1000"
) -> tuple[str, bytes]:
    """A Debezium change of a position made at `at` (source updated_at) with cumulative `pnl`."""
    client, instrument = OWNER[position]
    row = position_row(
        id=position, tenant_id=TENANT, client_id=client, instrument_id=instrument, quantity=qty,
        avg_price="1.1", realized_pnl=pnl, updated_at=at, opened_at="2024-12-27T10:00:00Z",
    )  # fmt: skip
    if op == "d":
        return position, cdc("positions", None, op="d", before=row, lsn=lsn, commit_lsn=lsn, ts_ms=_ms(at))
    return position, cdc("positions", row, op=op, lsn=lsn, commit_lsn=lsn, ts_ms=_ms(at))


INITIAL = [
    change(P1, "2024-12-27T10:00:00Z", "0", 100, op="c"),
    change(P1, "2024-12-27T15:00:00Z", "100", 110),  # +100 Fri 12-27
    change(P3, "2024-12-30T08:00:00Z", "0", 115, op="c"),
    change(P1, "2024-12-30T09:00:00Z", "250", 120),  # +150 Mon 12-30 (ISO week 2025-W01)
    change(P3, "2024-12-30T12:00:00Z", "-20", 125),  # -20 C2 12-30
    change(P2, "2024-12-31T23:30:00Z", "0", 130, op="c"),
    change(P2, "2024-12-31T23:59:59Z", "40", 135),  # +40 Tue 12-31, last second of the year
    change(P2, "2025-01-01T00:00:01Z", "10", 140),  # -30 Wed 01-01
    change(P1, "2025-01-02T11:00:00Z", "200", 160),  # -50 Thu 01-02
]
# P1's change at LSN 150 (2024-12-31, cumulative 300) was dead-lettered and is replayed later.
LATE_OUT_OF_ORDER = change(P1, "2024-12-31T10:00:00Z", "300", 150)
LATE = [
    change(P2, "2025-01-02T09:00:00Z", "5", 170),  # correction of P2's cumulative: -5 on 01-02
    change(P3, "2025-01-03T09:00:00Z", "-20", 180, op="d"),  # P3 deleted: P&L-neutral
    INITIAL[1],  # a duplicate delivery
]
RISK = [
    risk_event(tenantId=TENANT, clientId=C1, snapshotTime="2024-12-30T12:00:00Z", utilizationPct="50",
               softBreachCount=1, hardBreachCount=0, riskScore="40"),
    risk_event(tenantId=TENANT, clientId=C1, snapshotTime="2024-12-31T12:00:00Z", utilizationPct="70",
               softBreachCount=0, hardBreachCount=1, riskScore="60"),
    risk_event(tenantId=TENANT, clientId=C1, snapshotTime="2025-01-02T12:00:00Z", utilizationPct="30",
               softBreachCount=0, hardBreachCount=0, riskScore="20"),
]  # fmt: skip

BUCKETS = [
    bucket_for(p, date.fromisoformat(d))
    for p, d in (
        (Period.DAILY, "2024-12-27"), (Period.DAILY, "2024-12-30"), (Period.DAILY, "2024-12-31"),
        (Period.DAILY, "2025-01-01"), (Period.DAILY, "2025-01-02"), (Period.DAILY, "2025-01-03"),
        (Period.WEEKLY, "2024-12-27"), (Period.WEEKLY, "2024-12-30"),
        (Period.MONTHLY, "2024-12-01"), (Period.MONTHLY, "2025-01-01"),
        (Period.QUARTERLY, "2024-10-01"), (Period.QUARTERLY, "2025-01-01"),
        (Period.YEARLY, "2024-01-01"), (Period.YEARLY, "2025-01-01"),
    )
]  # fmt: skip


@pytest.fixture
def wh(warehouse: psycopg.Connection) -> psycopg.Connection:
    warehouse.execute(
        sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(sql.Identifier(t) for t in POSITION_TABLES))
    )
    warehouse.execute("TRUNCATE agg_intraday_state")
    return warehouse


def pnl(conn: psycopg.Connection) -> dict[tuple[str, str, str], Decimal]:
    """(period, bucket start, client) -> realized P&L of client metrics."""
    rows = conn.execute(
        "SELECT period_type, metric_date::text, client_id::text, realized_pnl FROM agg_client_metrics"
    ).fetchall()
    return {(r[0], r[1], r[2]): r[3] for r in rows}


def expected(by_day: dict[str, dict[str, str]]) -> dict[tuple[str, str, str], Decimal]:
    """Client metrics P&L of BUCKETS from per-day P&L (days without a change have none)."""
    out: dict[tuple[str, str, str], Decimal] = {}
    for bucket in BUCKETS:
        for day, clients in by_day.items():
            if bucket.start <= date.fromisoformat(day) < bucket.end:
                for client, amount in clients.items():
                    key = (bucket.period.value, bucket.start.isoformat(), client)
                    out[key] = out.get(key, D(0)) + D(amount)
    return out


def client_rows(conn: psycopg.Connection, bucket_keys: list[tuple[str, str]]) -> list[tuple[Any, ...]]:
    rows = conn.execute(
        "SELECT period_type, metric_date::text, client_id::text, total_trades, realized_pnl, "
        "avg_utilization, max_utilization, breach_count, risk_score, engagement_score "
        "FROM agg_client_metrics ORDER BY 1, 2, 3"
    ).fetchall()
    return [r for r in rows if (r[0], r[1]) in bucket_keys]


def test_realized_pnl_and_risk_across_period_boundaries_with_late_changes(
    stack_settings: OrionSettings, topic_name: Callable[[str], str], wh: psycopg.Connection
) -> None:
    settings = stream_settings(stack_settings, topic_name)
    t = settings.stream.topics
    produce(settings, [(t.positions_cdc, k.encode(), v) for k, v in INITIAL])
    produce(settings, [(t.risk_events, e["payload"]["clientId"].encode(), dumps(e)) for e in RISK])
    result = drain(settings)
    assert result.stats.dlq == 0, result
    assert wh.execute("SELECT count(*) FROM fact_positions").fetchone() == (len(INITIAL),)
    # point-in-time keys of inferred members; deltas chained in source order
    assert wh.execute("SELECT count(*) FROM fact_positions WHERE client_key IS NULL").fetchone() == (0,)
    assert run_periods(settings, BUCKETS[:6]).issues == []
    for period in (Period.WEEKLY, Period.MONTHLY, Period.QUARTERLY, Period.YEARLY):
        assert run_periods(settings, [b for b in BUCKETS if b.period is period]).issues == []
    before = {
        "2024-12-27": {C1: "100"},
        "2024-12-30": {C1: "150", C2: "-20"},
        "2024-12-31": {C1: "40"},
        "2025-01-01": {C1: "-30"},
        "2025-01-02": {C1: "-50"},
    }
    assert pnl(wh) == expected(before)
    # by hand: ISO week from Monday 2024-12-30 = 150 + 40 - 30 - 50; December 2024 = 100 + 150 + 40
    assert pnl(wh)[("WEEKLY", "2024-12-30", C1)] == D(110)
    assert pnl(wh)[("MONTHLY", "2024-12-01", C1)] == D(290)
    assert pnl(wh)[("YEARLY", "2025-01-01", C1)] == D(-80)
    risk = wh.execute(
        "SELECT avg_utilization, max_utilization, breach_count, risk_score FROM agg_client_metrics "
        "WHERE period_type = 'WEEKLY' AND metric_date = '2024-12-30' AND client_id = %s",
        (C1,),
    ).fetchone()
    assert risk == (D("50.0000"), D("70.0000"), 2, D("40.0000"))

    # After aggregation: an intraday baseline, then corrections, a delete, a duplicate and a
    # change replayed out of source order.
    assert run_intraday(settings, list(Period)).issues == []
    produce(settings, [(t.positions_cdc, k.encode(), v) for k, v in LATE])
    assert drain(settings).stats.dlq == 0
    produce(settings, [(t.positions_cdc, LATE_OUT_OF_ORDER[0].encode(), LATE_OUT_OF_ORDER[1])])
    produce(settings, [(t.risk_events, C1.encode(), dumps(risk_event(
        tenantId=TENANT, clientId=C1, snapshotTime="2024-12-31T12:00:00Z", utilizationPct="90",
        softBreachCount=2, hardBreachCount=1, riskScore="80", sequence=1)))])  # fmt: skip
    stats = drain(settings).stats
    assert stats.dlq == 0
    assert wh.execute("SELECT count(*) FROM fact_positions").fetchone() == (len(INITIAL) + 3,)
    current = wh.execute(
        "SELECT DISTINCT ON (position_id) position_id::text, is_deleted FROM fact_positions "
        "ORDER BY position_id, src_commit_lsn DESC, src_lsn DESC"
    ).fetchall()
    assert dict(current) == {P1: False, P2: False, P3: True}  # an older change never resurrects
    report = run_intraday(settings, list(Period))
    assert report.issues == []
    after = {
        "2024-12-27": {C1: "100"},
        "2024-12-30": {C1: "150", C2: "-20"},
        "2024-12-31": {C1: "90"},  # +40 (P2) +50 (P1's replayed 250 -> 300)
        "2025-01-01": {C1: "-30"},
        "2025-01-02": {C1: "-105"},  # P1 300 -> 200 now -100; P2's correction 10 -> 5
        "2025-01-03": {C2: "0"},  # the delete: a row for C2, nothing realized
    }
    assert pnl(wh) == expected(after)
    assert pnl(wh)[("MONTHLY", "2024-12-01", C1)] == D(340)
    assert pnl(wh)[("YEARLY", "2025-01-01", C1)] == D(-135)
    assert pnl(wh)[("WEEKLY", "2024-12-30", C1)] == D(105)
    risk_day = wh.execute(
        "SELECT avg_utilization, max_utilization, breach_count, risk_score FROM agg_client_metrics "
        "WHERE period_type = 'DAILY' AND metric_date = '2024-12-31' AND client_id = %s",
        (C1,),
    ).fetchone()
    assert risk_day == (D("90.0000"), D("90.0000"), 3, D("80.0000"))  # the corrected snapshot

    keys = [(b.period.value, b.start.isoformat()) for b in BUCKETS]
    incremental = client_rows(wh, keys)
    for period in Period:
        buckets = [b for b in BUCKETS if b.period is period]
        if buckets:
            assert run_periods(settings, buckets).issues == []
    assert client_rows(wh, keys) == incremental


def test_position_deltas_survive_redelivery_and_toast_placeholders(
    stack_settings: OrionSettings, topic_name: Callable[[str], str], wh: psycopg.Connection
) -> None:
    settings = stream_settings(stack_settings, topic_name)
    t = settings.stream.topics
    first = change(P1, "2024-03-15T10:00:00Z", "0", 10, op="c")
    client, instrument = OWNER[P1]
    toast = position_row(
        id=P1, tenant_id=TENANT, client_id=client, instrument_id=instrument, quantity="500",
        avg_price="__debezium_unavailable_value", realized_pnl="12.5", updated_at="2024-03-15T11:00:00Z",
    )  # fmt: skip
    bad = position_row(
        id=P2, tenant_id=TENANT, client_id=C1, instrument_id=I2, quantity="1", avg_price="-1",
        realized_pnl="1", updated_at="2024-03-15T11:00:00Z",
    )  # fmt: skip
    produce(settings, [(t.positions_cdc, P1.encode(), first[1])])
    assert drain(settings).stats.dlq == 0
    produce(
        settings,
        [
            (t.positions_cdc, P1.encode(), cdc("positions", toast, op="u", lsn=20, commit_lsn=20)),
            (t.positions_cdc, P2.encode(), cdc("positions", bad, op="c", lsn=30, commit_lsn=30)),
            (t.positions_cdc, P1.encode(), first[1]),  # redelivered
        ],
    )
    stats = drain(settings).stats
    assert stats.dlq == 1  # avg_price_non_negative
    rows = wh.execute(
        "SELECT src_lsn, avg_price, realized_pnl, realized_pnl_delta FROM fact_positions ORDER BY src_lsn"
    ).fetchall()
    assert rows == [(10, D("1.1"), D(0), D(0)), (20, D("1.1"), D("12.5"), D("12.5"))]
    issue = wh.execute(
        "SELECT rule_name FROM etl_data_quality_issues WHERE source_table = 'fact_positions'"
    ).fetchall()
    assert ("avg_price_non_negative",) in issue
    # a delete whose before image has only the key (no REPLICA IDENTITY FULL): the values come from
    # the position's latest change; a key-only delete of a position never loaded changes nothing
    key_only = cdc(
        "positions", None, op="d", before={"id": P1}, lsn=40, commit_lsn=40, ts_ms=_ms("2024-03-16T09:00:00Z")
    )
    unknown = cdc("positions", None, op="d", before={"id": P3}, lsn=41, commit_lsn=41)
    produce(settings, [(t.positions_cdc, P1.encode(), key_only), (t.positions_cdc, P3.encode(), unknown)])
    stats = drain(settings).stats
    assert stats.dlq == 0 and stats.tombstones == 1
    deleted = wh.execute(
        "SELECT client_id::text, quantity, realized_pnl, realized_pnl_delta, is_deleted, change_date_key "
        "FROM fact_positions WHERE src_lsn = 40"
    ).fetchone()
    assert deleted == (C1, D(500), D("12.5"), D(0), True, 20240316)
    assert wh.execute("SELECT count(*) FROM fact_positions WHERE position_id = %s", (P3,)).fetchone() == (0,)


def test_validate_reports_client_metrics_that_disagree_with_the_position_and_risk_facts(
    stack_settings: OrionSettings, wh: psycopg.Connection
) -> None:
    day = date(2024, 6, 3)
    wh.execute(
        "INSERT INTO fact_positions (position_id, tenant_id, client_id, instrument_id, changed_at, "
        "change_date_key, quantity, realized_pnl, realized_pnl_delta, src_op, src_commit_lsn, src_lsn) "
        "VALUES (%s, %s, %s, %s, '2024-06-03T10:00:00Z', 20240603, 5, 7.5, 7.5, 'u', 1, 1)",
        (P1, TENANT, C1, I1),
    )
    wh.execute(
        "INSERT INTO fact_risk_snapshots (tenant_id, client_id, snapshot_time, snapshot_date, "
        "snapshot_date_key, utilization_pct, soft_breach_count, hard_breach_count, risk_score) "
        "VALUES (%s, %s, '2024-06-03T11:00:00Z', '2024-06-03', 20240603, 90, 1, 1, 70)",
        (TENANT, C2),
    )
    bucket = bucket_for(Period.DAILY, day)
    assert run_periods(stack_settings, [bucket]).issues == []
    rows = wh.execute(
        "SELECT client_id::text, total_trades, avg_trade_size, realized_pnl, breach_count "
        "FROM agg_client_metrics"
    ).fetchall()
    assert sorted(rows) == sorted([(C1, 0, None, D("7.5"), 0), (C2, 0, None, D(0), 2)])  # no trades needed
    wh.execute("UPDATE agg_client_metrics SET realized_pnl = realized_pnl + 1 WHERE client_id = %s", (C1,))
    wh.execute(
        "UPDATE agg_client_metrics SET breach_count = 5, avg_utilization = 95 WHERE client_id = %s", (C2,)
    )
    issues = run_validate(stack_settings, bucket).issues
    assert {i["rule"] for i in issues} == {
        "realized_pnl_equals_facts",
        "breach_count_equals_facts",
        "utilization_within_bounds",
    }
    stored = wh.execute(
        "SELECT DISTINCT source_table FROM etl_data_quality_issues "
        "WHERE rule_name = 'realized_pnl_equals_facts'"
    ).fetchall()
    assert stored == [("agg_client_metrics",)]
