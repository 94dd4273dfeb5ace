"""Bad messages end in the DLQ (with the documented headers) or are handled as documented; the
good messages of the same batch load and the loader keeps running."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import psycopg
import pytest
from psycopg import sql

from orion_etl.adapters.warehouse_loader import WarehouseLoader
from orion_etl.config.models import OrionSettings
from orion_etl.core.records import KafkaRecord
from orion_etl.jobs.stream_batch import BatchPreparer
from tests.integration.stream_support import STREAM_TABLES, drain, produce, read_topic, stream_settings
from tests.stream_builders import cdc, dumps, envelope_schema, order_row, quote_event, trade_event, trade_row

pytestmark = pytest.mark.integration


@pytest.fixture
def wh(warehouse: psycopg.Connection) -> psycopg.Connection:
    warehouse.execute(
        sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(sql.Identifier(t) for t in STREAM_TABLES))
    )
    return warehouse


def _trade_raw(**after: object) -> bytes:
    return cdc("trades", trade_row(**after), schema=False)


def test_bad_messages_go_to_the_dlq_and_good_ones_load(
    stack_settings: OrionSettings, topic_name: Callable[[str], str], wh: psycopg.Connection
) -> None:
    settings = stream_settings(stack_settings, topic_name, batch_max_messages=1000)
    t = settings.stream.topics
    good = [trade_row() for _ in range(3)]
    no_payload = json.dumps({"schema": envelope_schema("trades")}).encode()
    op_as_int = json.dumps({"schema": {}, "payload": {"op": 5, "after": {}}}).encode()
    nan = _trade_raw(quantity="__N__").replace(b'"__N__"', b"NaN")
    # (topic, value, expected error class or None when handled without a dead letter)
    bad: list[tuple[str, bytes | None, str | None]] = [
        (t.trades_cdc, b"{not json", "DECODE"),  # 1 invalid JSON
        (t.trades_cdc, b'{"op": "c", "after": {"id": "\xff\xfe"}}', "DECODE"),  # 2 invalid UTF-8
        (t.trades_cdc, no_payload, "MISSING_PAYLOAD"),  # 3 schema but no payload
        (t.trades_cdc, op_as_int, "DECODE"),  # 4 wrong types in the envelope
        (t.trades_cdc, _trade_raw(quantity=True), "INVALID_VALUE"),  # 5 wrong type of a field
        (t.trades_cdc, _trade_raw(quantity="-5"), "RULE"),  # 6 negative quantity
        (t.trades_cdc, _trade_raw(side="HOLD"), "RULE"),  # 7 unknown side
        (t.trades_cdc, _trade_raw(tenant_id=None), "RULE"),  # 8 null tenant
        (t.trades_cdc, _trade_raw(quantity="1" * 25), "INVALID_VALUE"),  # 9 huge number
        (t.trades_cdc, _trade_raw().replace(b'"op": "c"', b'"op": "z"'), "UNKNOWN_OP"),  # 10 unknown op
        (t.trades_cdc, None, None),  # 11 Kafka tombstone: acknowledged, no effect
        (t.trades_cdc, cdc("orders", order_row(), schema=False), "UNKNOWN_TOPIC"),  # 12 other table
        (t.trades_cdc, nan, "DECODE"),  # 13 NaN
        (t.trades_cdc, _trade_raw(trade_date="2999-01-01T00:00:00Z"), "INVALID_VALUE"),  # 14 far future
        (t.trades_cdc, _trade_raw(trade_date=None), "INVALID_VALUE"),  # 15 missing required field
        (t.trades_cdc, _trade_raw(client_id="client-1"), "INVALID_VALUE"),  # 16 not a UUID
        (t.trades_cdc, _trade_raw(price="1.123456789012"), "INVALID_VALUE"),  # 17 too many decimals
        (t.trades_cdc, _trade_raw(quantity="999999999999", price="99999999999999999"), "INVALID_VALUE"),  # 18
        (t.trade_events, dumps({**trade_event(), "payload": None}), "MISSING_PAYLOAD"),  # 19
        (t.trade_events, dumps({**trade_event(), "eventType": "quote.received"}), "UNKNOWN_TOPIC"),  # 20
        (t.quote_events, dumps(quote_event("1.2", "1.1")), "RULE"),  # 21 crossed quote
        (t.orders_cdc, cdc("orders", order_row(status="LOST"), schema=False), "RULE"),  # 22 bad status
        (t.orders_cdc, cdc("orders", None, op="d"), "MISSING_PAYLOAD"),  # 23 delete without before
        (t.trades_cdc, _trade_raw(fill_latency_ms=2**40), "INVALID_VALUE"),  # 24 int overflow
    ]
    msgs: list[tuple[str, bytes | None, bytes | None]] = []
    for i, (topic, value, _) in enumerate(bad):
        msgs.append((topic, None, value))
        if i % 8 == 0:
            g = good[i // 8]
            msgs.append((t.trades_cdc, None, cdc("trades", g)))
    msgs.append((t.trade_events, None, dumps(trade_event())))
    produce(settings, msgs)

    result = drain(settings)
    s = result.stats
    expected_dlq = [b for b in bad if b[2] is not None]
    assert result.exit_code == 1
    assert s.messages == len(msgs) and s.tombstones == 1 and s.dlq == len(expected_dlq), s.as_dict()
    assert wh.execute("SELECT count(*) FROM fact_trades").fetchone() == (4,)  # 3 CDC + 1 event
    issues = wh.execute(
        "SELECT rule_name, origin->>'error_class', origin->>'fingerprint' FROM etl_data_quality_issues "
        "WHERE severity = 'ERROR'"
    ).fetchall()
    assert len(issues) == len(expected_dlq)

    letters = []
    for topic in (t.trades_cdc, t.trade_events, t.quote_events, t.orders_cdc):
        want = sum(1 for b in expected_dlq if b[0] == topic)
        got = read_topic(settings, topic + settings.stream.dlq_suffix, want)
        assert len(got) == want, topic
        letters += got
    by_class: dict[str, int] = {}
    for msg in letters:
        headers = {k: v.decode() for k, v in msg.headers()}
        assert {
            "dlq.error",
            "dlq.error_class",
            "dlq.rule",
            "dlq.origin_topic",
            "dlq.origin_partition",
            "dlq.origin_offset",
            "dlq.origin_timestamp",
            "dlq.failed_at",
            "dlq.fingerprint",
            "dlq.consumer_group",
            "dlq.job_run_id",
        } <= set(headers)
        assert headers["dlq.job_run_id"] == result.job_run_id
        by_class[headers["dlq.error_class"]] = by_class.get(headers["dlq.error_class"], 0) + 1
        if headers["dlq.error_class"] == "RULE":
            assert headers["dlq.rule"]
    expected_classes: dict[str, int] = {}
    for *_, cls in expected_dlq:
        assert cls is not None
        expected_classes[cls] = expected_classes.get(cls, 0) + 1
    assert by_class == expected_classes
    assert {i[2] for i in issues} == {
        {k: v.decode() for k, v in m.headers()}["dlq.fingerprint"] for m in letters
    }
    # the raw value is re-published verbatim (invalid UTF-8 included)
    assert any(m.value() == b'{"op": "c", "after": {"id": "\xff\xfe"}}' for m in letters)

    # the loader keeps running: a later good message still loads
    late = trade_row()
    produce(settings, [(t.trades_cdc, None, cdc("trades", late))])
    assert drain(settings).stats.loaded == 1


def test_unknown_topic_is_dead_lettered(stack_settings: OrionSettings, wh: psycopg.Connection) -> None:
    loader = WarehouseLoader(stack_settings.warehouse, f"g-{uuid.uuid4().hex[:6]}")
    try:
        prepared = BatchPreparer(stack_settings, loader).prepare(
            [KafkaRecord("some.other.topic", 0, 7, None, b"{}", None)]
        )
    finally:
        loader.close()
    assert [letter.error_class for letter in prepared.letters] == ["UNKNOWN_TOPIC"]
    assert prepared.write.offsets == {("some.other.topic", 0): 8}
