"""Rows PostgreSQL refuses for a reason of the data are isolated and dead-lettered (LOAD_REJECTED
with the SQLSTATE), the rest of the batch loads, positions reach the end, nothing is published
twice, and `dlq replay` loads a letter once its cause is gone.

The test database is made to refuse data the loader's own checks let through: constraints,
narrower columns and indexes added for the test (and removed afterwards), one per SQLSTATE.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from orion_etl.adapters import positions
from orion_etl.config.models import OrionSettings
from orion_etl.core.dead_letter_classes import LetterClass
from orion_etl.core.dead_letters import Selection
from orion_etl.jobs.dlq_replay import run_replay
from tests.integration.stream_support import STREAM_TABLES, drain, produce, read_topic, stream_settings
from tests.stream_builders import cdc, dumps, quote_event, trade_event, trade_row

pytestmark = pytest.mark.integration

# Each: what makes the warehouse refuse data, and how it is undone.
REFUSALS = [
    (
        "ALTER TABLE fact_trades ADD CONSTRAINT t14_check "
        "CHECK (trade_reference IS DISTINCT FROM 'REJECT-CHECK')",
        "ALTER TABLE fact_trades DROP CONSTRAINT IF EXISTS t14_check",
    ),
    (
        "ALTER TABLE fact_trades ADD CONSTRAINT t14_json "
        "CHECK (trade_reference NOT LIKE 'J%' OR substr(trade_reference, 2)::jsonb IS NOT NULL)",
        "ALTER TABLE fact_trades DROP CONSTRAINT IF EXISTS t14_json",
    ),
    (
        "ALTER TABLE fact_trades ADD CONSTRAINT t14_numeric "
        "CHECK (fees < 1000 OR fees::numeric(3, 0) IS NOT NULL)",
        "ALTER TABLE fact_trades DROP CONSTRAINT IF EXISTS t14_numeric",
    ),
    (
        "ALTER TABLE fact_trades ADD CONSTRAINT t14_time CHECK (execution_venue IS DISTINCT FROM 'DT' "
        "OR trade_date + interval '300000 years' > trade_date)",
        "ALTER TABLE fact_trades DROP CONSTRAINT IF EXISTS t14_time",
    ),
    (
        "ALTER TABLE fact_trades ALTER COLUMN execution_venue TYPE varchar(12)",
        "ALTER TABLE fact_trades ALTER COLUMN execution_venue TYPE varchar(50)",
    ),
    (
        "ALTER TABLE fact_trades ALTER COLUMN order_type SET NOT NULL",
        "ALTER TABLE fact_trades ALTER COLUMN order_type DROP NOT NULL",
    ),
    (
        "CREATE TABLE t14_currencies (code varchar(10) PRIMARY KEY); "
        "INSERT INTO t14_currencies VALUES ('USD'), ('EUR'); "
        "ALTER TABLE fact_trades ADD CONSTRAINT t14_fk FOREIGN KEY (currency) REFERENCES t14_currencies",
        "ALTER TABLE fact_trades DROP CONSTRAINT IF EXISTS t14_fk; DROP TABLE IF EXISTS t14_currencies",
    ),
    (
        "CREATE UNIQUE INDEX t14_unique ON fact_trades (trade_reference) WHERE trade_reference LIKE 'DUP%'",
        "DROP INDEX IF EXISTS t14_unique",
    ),
    (
        # md5 text does not compress: 400 of them exceed the btree row limit (54000)
        "CREATE FUNCTION t14_blow(ref text) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT CASE WHEN "
        "ref LIKE 'BIG%' THEN (SELECT string_agg(md5(ref || i), '') FROM generate_series(1, 400) i) "
        "ELSE ref END $$; CREATE INDEX t14_big ON fact_trades (t14_blow(trade_reference))",
        "DROP INDEX IF EXISTS t14_big; DROP FUNCTION IF EXISTS t14_blow(text)",
    ),
    (
        "ALTER TABLE etl_fact_tombstones ADD CONSTRAINT t14_tomb CHECK (src_lsn IS DISTINCT FROM 666)",
        "ALTER TABLE etl_fact_tombstones DROP CONSTRAINT IF EXISTS t14_tomb",
    ),
    (
        "ALTER TABLE fact_quotes ADD CONSTRAINT t14_quote CHECK (bid_size IS DISTINCT FROM 13)",
        "ALTER TABLE fact_quotes DROP CONSTRAINT IF EXISTS t14_quote",
    ),
    (
        "ALTER TABLE etl_data_quality_issues ADD CONSTRAINT t14_issue "
        "CHECK (record_data::text NOT LIKE '%POISON-ISSUE%')",
        "ALTER TABLE etl_data_quality_issues DROP CONSTRAINT IF EXISTS t14_issue",
    ),
]


@pytest.fixture
def refusing(warehouse: psycopg.Connection) -> Iterator[psycopg.Connection]:
    warehouse.execute(
        sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(sql.Identifier(t) for t in STREAM_TABLES))
    )
    try:
        for make, _ in REFUSALS:
            warehouse.execute(make)  # type: ignore[arg-type]  # test-owned literal DDL
        yield warehouse
    finally:
        for _, undo in reversed(REFUSALS):
            warehouse.execute(undo)  # type: ignore[arg-type]


def _ev(**payload: Any) -> bytes:
    return dumps(trade_event(**payload))


def test_each_refusal_is_isolated_and_dead_lettered_once(
    stack_settings: OrionSettings, topic_name: Callable[[str], str], refusing: psycopg.Connection
) -> None:
    settings = stream_settings(stack_settings, topic_name, batch_max_messages=5000, quote_sample_every=1)
    t = settings.stream.topics
    wh = refusing
    # origin topic, value, expected SQLSTATE
    bad: list[tuple[str, bytes, str]] = [
        (t.trade_events, _ev(tradeReference="REJECT-CHECK"), "23514"),
        (t.trade_events, _ev(tradeReference='J"\\u0000"'), "22P05"),  # jsonb: unsupported escape
        (t.trade_events, _ev(tradeReference="J{not json"), "22P02"),
        (t.trade_events, _ev(fees="123456"), "22003"),
        (t.trade_events, _ev(venue="DT"), "22008"),
        (t.trade_events, _ev(venue="VENUE-TOO-LONG"), "22001"),
        (t.trade_events, _ev(orderType=None), "23502"),
        (t.trade_events, _ev(currency="XXX"), "23503"),
        (t.trade_events, _ev(tradeReference="BIG-1"), "54000"),
        (t.trades_cdc, cdc("trades", None, op="d", before=trade_row(), lsn=666), "23514"),
        (t.quote_events, dumps(quote_event("1.1000", "1.1002", bidSize="13")), "23514"),
    ]
    good_trades = [trade_event() for _ in range(40)]
    dup = [trade_event(tradeReference="DUP-1") for _ in range(2)]  # one loads, one is refused (23505)
    poison = trade_event(quantity="-5", note="POISON-ISSUE")  # RULE letter; its issue row is refused
    messages: list[tuple[str, bytes | None, bytes | None]] = []
    for i, g in enumerate(good_trades):
        messages.append((t.trade_events, None, dumps(g)))
        if i < len(bad):
            messages.append((bad[i][0], None, bad[i][1]))
    messages += [(t.trade_events, None, dumps(d)) for d in dup]
    messages.append((t.trade_events, None, dumps(poison)))
    messages.append((t.quote_events, None, dumps(quote_event("1.1000", "1.1002"))))
    produce(settings, messages)

    result = drain(settings)
    s = result.stats
    assert result.exit_code == 1, s.as_dict()
    assert s.rejected == len(bad) + 1 and s.dlq == len(bad) + 2 and s.side_rows_dropped == 1, s.as_dict()
    loaded = {r[0] for r in wh.execute("SELECT trade_id::text FROM fact_trades").fetchall()}
    assert {g["payload"]["tradeId"] for g in good_trades} <= loaded
    assert len(loaded & {d["payload"]["tradeId"] for d in dup}) == 1
    assert len(loaded) == len(good_trades) + 1
    assert wh.execute("SELECT count(*) FROM fact_quotes").fetchone() == (1,)

    letters = {
        topic: read_topic(settings, topic + settings.stream.dlq_suffix, 50, timeout_s=4)
        for topic in (t.trade_events, t.trades_cdc, t.quote_events)
    }
    states: dict[str, list[str]] = {}
    for topic, msgs in letters.items():
        for m in msgs:
            h = {k: v.decode() for k, v in m.headers()}
            if h["dlq.error_class"] == "LOAD_REJECTED":
                assert "the warehouse refused the row (SQLSTATE" in h["dlq.error"]
                states.setdefault(topic, []).append(h["dlq.sqlstate"])
    want: dict[str, list[str]] = {}
    for topic, _, state in [*bad, (t.trade_events, b"", "23505")]:
        want.setdefault(topic, []).append(state)
    assert {k: sorted(v) for k, v in states.items()} == {k: sorted(v) for k, v in want.items()}
    assert sum(len(m) for m in letters.values()) == len(bad) + 2  # + the RULE letter, each once
    issues = wh.execute(
        "SELECT count(*) FROM etl_data_quality_issues WHERE severity = 'ERROR' "
        "AND origin->>'error_class' = 'LOAD_REJECTED'"
    ).fetchone()
    assert issues == (len(bad) + 1,)

    # positions at the high watermark; a second run loads and publishes nothing
    with psycopg.connect(**_conninfo(settings)) as conn:
        stored = positions.stored(
            conn, settings.stream.group_id, [(tp, 0) for tp in letters] + [(t.trades_cdc, 1)]
        )
    assert stored[(t.trade_events, 0)] == sum(1 for m in messages if m[0] == t.trade_events)
    again = drain(settings)
    assert again.stats.messages == 0 and again.exit_code == 0
    assert len(read_topic(settings, t.trade_events + settings.stream.dlq_suffix, 50, timeout_s=3)) == len(
        letters[t.trade_events]
    )

    # the cause of one refusal goes away: its letter replays once, the others fail again
    wh.execute("ALTER TABLE fact_trades DROP CONSTRAINT t14_check")
    replay = run_replay(settings, Selection(topics=(t.trade_events,), classes=(LetterClass.REJECTED,)))
    assert replay.loaded == 1 and replay.failed == len(want[t.trade_events]) - 1, replay.summary()
    assert wh.execute(
        "SELECT count(*) FROM fact_trades WHERE trade_reference = 'REJECT-CHECK'"
    ).fetchone() == (1,)
    twice = run_replay(settings, Selection(topics=(t.trade_events,), classes=(LetterClass.REJECTED,)))
    assert twice.loaded == 0 and twice.skipped == replay.selected
    assert wh.execute(
        "SELECT count(*) FROM fact_trades WHERE trade_reference = 'REJECT-CHECK'"
    ).fetchone() == (1,)
    assert json.loads(wh.execute("SELECT count(*)::text FROM fact_trades").fetchone()[0]) == len(loaded) + 1  # type: ignore[index]


def _conninfo(settings: OrionSettings) -> dict[str, Any]:
    wh = settings.warehouse
    return {
        "host": wh.host,
        "port": wh.port,
        "dbname": wh.dbname,
        "user": wh.user,
        "password": wh.password.get_secret_value(),
    }
