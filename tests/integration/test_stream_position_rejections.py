"""Position changes and risk snapshots (issue 17's facts) that PostgreSQL refuses for a reason of
the data: each refused record gets exactly one LOAD_REJECTED letter with its SQLSTATE and one
ERROR issue row, the rest of the batch loads, positions reach the end, a second run publishes
nothing. The test database is made to refuse them by CHECK constraints added for the test."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql

from orion_etl.config.models import OrionSettings
from tests.integration.stream_support import (
    POSITION_TABLES,
    STREAM_TABLES,
    drain,
    produce,
    read_topic,
    stream_settings,
)
from tests.stream_builders import cdc, dumps, position_row, risk_event

pytestmark = pytest.mark.integration

REFUSALS = [
    (
        "ALTER TABLE fact_positions ADD CONSTRAINT t14f_position CHECK (quantity IS DISTINCT FROM 777)",
        "ALTER TABLE fact_positions DROP CONSTRAINT IF EXISTS t14f_position",
    ),
    (
        "ALTER TABLE fact_risk_snapshots ADD CONSTRAINT t14f_risk CHECK (risk_score IS DISTINCT FROM 66.6)",
        "ALTER TABLE fact_risk_snapshots DROP CONSTRAINT IF EXISTS t14f_risk",
    ),
]


@pytest.fixture
def refusing(warehouse: psycopg.Connection) -> Iterator[psycopg.Connection]:
    warehouse.execute(
        sql.SQL("TRUNCATE {}").format(
            sql.SQL(", ").join(sql.Identifier(t) for t in [*STREAM_TABLES, *POSITION_TABLES])
        )
    )
    try:
        for make, _ in REFUSALS:
            warehouse.execute(make)  # type: ignore[arg-type]  # test-owned literal DDL
        yield warehouse
    finally:
        for _, undo in reversed(REFUSALS):
            warehouse.execute(undo)  # type: ignore[arg-type]


def _position(n: int, quantity: str) -> tuple[bytes, bytes]:
    pid = str(uuid.UUID(int=91_000 + n))
    row = position_row(id=pid, quantity=quantity, avg_price="1.1", updated_at=f"2024-03-15T10:{n:02d}:00Z")
    return pid.encode(), cdc("positions", row, op="c", lsn=5000 + n, commit_lsn=5000 + n)


def _snapshot(n: int, score: str) -> tuple[bytes, bytes]:
    client = str(uuid.UUID(int=92_000 + n))
    return client.encode(), dumps(risk_event(clientId=client, riskScore=score))


def test_a_refused_position_and_risk_snapshot_are_dead_lettered_once(
    stack_settings: OrionSettings, topic_name: Callable[[str], str], refusing: psycopg.Connection
) -> None:
    settings = stream_settings(stack_settings, topic_name)
    t = settings.stream.topics
    wh = refusing
    positions = [_position(n, "777" if n == 2 else "1000") for n in range(5)]
    snapshots = [_snapshot(n, "66.6" if n == 3 else "35.5") for n in range(5)]
    produce(settings, [(t.positions_cdc, k, v) for k, v in positions])
    produce(settings, [(t.risk_events, k, v) for k, v in snapshots])

    result = drain(settings)
    s = result.stats
    assert result.exit_code == 1, s.as_dict()
    assert s.rejected == 2 and s.dlq == 2, s.as_dict()
    assert wh.execute("SELECT count(*) FROM fact_positions").fetchone() == (4,)
    assert wh.execute("SELECT count(*) FROM fact_positions WHERE quantity = 777").fetchone() == (0,)
    assert wh.execute("SELECT count(*) FROM fact_risk_snapshots").fetchone() == (4,)
    assert wh.execute("SELECT count(*) FROM fact_risk_snapshots WHERE risk_score = 66.6").fetchone() == (0,)

    for topic, records, refused in ((t.positions_cdc, positions, 2), (t.risk_events, snapshots, 3)):
        letters = read_topic(settings, topic + settings.stream.dlq_suffix, 5, timeout_s=4)
        assert len(letters) == 1, topic
        h = {k: v.decode() for k, v in letters[0].headers()}
        assert h["dlq.error_class"] == "LOAD_REJECTED" and h["dlq.sqlstate"] == "23514", h
        assert int(h["dlq.origin_offset"]) == refused
        assert letters[0].value() == records[refused][1]  # verbatim
    issues = wh.execute(
        "SELECT count(*) FROM etl_data_quality_issues WHERE severity = 'ERROR' "
        "AND origin->>'error_class' = 'LOAD_REJECTED'"
    ).fetchone()
    assert issues == (2,)
    stored = dict(
        wh.execute(
            "SELECT topic, next_offset FROM etl_consumer_offsets WHERE consumer_group = %s",
            (settings.stream.group_id,),
        ).fetchall()
    )
    assert stored[t.positions_cdc] == 5 and stored[t.risk_events] == 5

    again = drain(settings)
    assert again.stats.messages == 0 and again.exit_code == 0
    for topic in (t.positions_cdc, t.risk_events):
        assert len(read_topic(settings, topic + settings.stream.dlq_suffix, 5, timeout_s=3)) == 1
