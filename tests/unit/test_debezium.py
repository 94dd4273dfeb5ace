"""Decoding Debezium envelopes: schema / no schema, logical types, TOAST, ops, tombstones."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from orion_etl.core.columns import to_frame
from orion_etl.core.dead_letter_classes import DecodeError, ErrorClass
from orion_etl.core.envelopes import decode_cdc, decode_event, parse_sequence
from orion_etl.core.facts import TRADE_COLUMNS, TRADE_REQUIRED
from orion_etl.core.records import UNAVAILABLE, KafkaRecord, Kind, Tombstone
from tests.stream_builders import b64_decimal, cdc, dumps, trade_event, trade_row


def rec(value: bytes | None, offset: int = 0, topic: str = "t") -> KafkaRecord:
    return KafkaRecord(topic, 0, offset, None, value, 1_700_000_000_000)


@pytest.mark.parametrize("schema", [True, False])
def test_decodes_with_and_without_embedded_schema(schema: bool) -> None:
    row = trade_row()
    change = decode_cdc(rec(cdc("trades", row, schema=schema, lsn=5000, commit_lsn=4000)))
    assert change.op == "c" and change.row["id"] == row["id"]
    assert (change.commit_lsn, change.lsn) == (4000, 5000)
    assert change.table == "trades"
    assert (change.fields is not None) is schema
    frame = to_frame([change], TRADE_COLUMNS, TRADE_REQUIRED)
    got = frame.row(0, named=True)
    assert got["_error"] is None
    assert got["quantity"] == Decimal("100.5") and got["price"] == Decimal("1.085")
    assert got["trade_date"] == datetime(2024, 3, 15, 14, 30, 0, 123456, tzinfo=UTC)
    assert got["settlement_date"] == date(2024, 3, 17)
    assert got["fill_latency_ms"] == 12 and got["is_partial_fill"] is False


def test_sequence_tuple_and_lsn_fallback() -> None:
    assert parse_sequence('["100","250"]', 250) == (100, 250)
    assert parse_sequence('[null,"250"]', 250) == (None, 250)
    assert parse_sequence(None, 77) == (None, 77)
    with pytest.raises(DecodeError):
        parse_sequence("[broken", None)


def test_logical_types_decimal_variable_scale_timestamps_date() -> None:
    overrides = {
        "quantity": (
            "bytes",
            "org.apache.kafka.connect.data.Decimal",
            {"scale": "10", "connect.decimal.precision": "28"},
        ),
        "price": ("struct", "io.debezium.data.VariableScaleDecimal", None),
        "trade_date": ("int64", "io.debezium.time.MicroTimestamp", None),
        "settlement_date": ("int32", "io.debezium.time.Date", None),
    }
    row = trade_row(
        quantity=b64_decimal(Decimal("-12.3456789012"), 10),
        price={"scale": 3, "value": b64_decimal(Decimal("1.085"), 3)},
        trade_date=1_710_513_000_123_456,
        settlement_date=0,
    )
    change = decode_cdc(rec(cdc("trades", row, overrides=overrides)))
    got = to_frame([change], TRADE_COLUMNS).row(0, named=True)
    assert got["quantity"] == Decimal("-12.3456789012")
    assert got["price"] == Decimal("1.085")
    assert got["trade_date"] == datetime(2024, 3, 15, 14, 30, 0, 123456, tzinfo=UTC)
    assert got["_error"] is not None  # 1970-01-01 settlement date is outside the calendar
    assert "settlement_date" in got["_error"]


@pytest.mark.parametrize(
    ("logical", "value", "expected"),
    [
        (
            "io.debezium.time.Timestamp",
            1_710_513_000_123,
            datetime(2024, 3, 15, 14, 30, 0, 123000, tzinfo=UTC),
        ),
        (
            "io.debezium.time.NanoTimestamp",
            1_710_513_000_123_456_789,
            datetime(2024, 3, 15, 14, 30, 0, 123456, tzinfo=UTC),
        ),
        (
            "io.debezium.time.ZonedTimestamp",
            "2024-03-15T16:30:00+02:00",
            datetime(2024, 3, 15, 14, 30, tzinfo=UTC),
        ),
    ],
)
def test_timestamp_logical_types(logical: str, value: object, expected: datetime) -> None:
    typ = "string" if isinstance(value, str) else "int64"
    change = decode_cdc(
        rec(cdc("trades", trade_row(trade_date=value), overrides={"trade_date": (typ, logical, None)}))
    )
    assert to_frame([change], TRADE_COLUMNS).row(0, named=True)["trade_date"] == expected


def test_uuid_is_validated_and_lowercased() -> None:
    change = decode_cdc(rec(cdc("trades", trade_row(client_id="ABCDEF00-0000-0000-0000-000000000001"))))
    assert (
        to_frame([change], TRADE_COLUMNS).row(0, named=True)["client_id"]
        == "abcdef00-0000-0000-0000-000000000001"
    )
    bad = decode_cdc(rec(cdc("trades", trade_row(client_id="not-a-uuid"))))
    assert "client_id" in to_frame([bad], TRADE_COLUMNS).row(0, named=True)["_error"]


def test_toast_placeholder_becomes_unavailable_not_a_value() -> None:
    change = decode_cdc(
        rec(cdc("trades", trade_row(execution_venue=UNAVAILABLE, trade_reference=UNAVAILABLE), op="u"))
    )
    got = to_frame([change], TRADE_COLUMNS, TRADE_REQUIRED).row(0, named=True)
    assert got["execution_venue"] is None and got["trade_reference"] is None
    assert sorted(got["_unavailable"]) == ["execution_venue", "trade_reference"]
    assert got["_error"] is None


def test_snapshot_read_update_and_delete_ops() -> None:
    row = trade_row()
    assert decode_cdc(rec(cdc("trades", row, op="r"))).op == "r"
    assert decode_cdc(rec(cdc("trades", row, op="u"))).row["id"] == row["id"]
    deleted = decode_cdc(rec(cdc("trades", None, op="d", before={"id": row["id"]})))
    assert deleted.op == "d" and deleted.row == {"id": row["id"]}


@pytest.mark.parametrize(
    ("value", "error_class"),
    [
        (b"{not json", ErrorClass.DECODE),
        (b'\xff\xfe{"op":"c"}', ErrorClass.DECODE),
        (b'{"schema": {}, "payload": {"op": 5}}', ErrorClass.DECODE),
        (b'{"hello": "world"}', ErrorClass.MISSING_PAYLOAD),
        (b'{"op": "c", "after": null}', ErrorClass.MISSING_PAYLOAD),
        (b'{"op": "x", "after": {"id": "1"}}', ErrorClass.UNKNOWN_OP),
        (b'{"op": "t"}', ErrorClass.UNKNOWN_OP),
        (b"[1, 2]", ErrorClass.DECODE),
        (b'{"op": "c", "after": {"quantity": NaN}}', ErrorClass.DECODE),
    ],
)
def test_undecodable_records(value: bytes, error_class: ErrorClass) -> None:
    with pytest.raises(DecodeError) as info:
        decode_cdc(rec(value))
    assert info.value.error_class is error_class


def test_tombstones() -> None:
    with pytest.raises(Tombstone):
        decode_cdc(rec(None))
    with pytest.raises(Tombstone):
        decode_cdc(rec(b'{"schema": null, "payload": null}'))


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("quantity", "abc"),
        ("quantity", 12.5e300),
        ("quantity", "1" * 19),  # beyond NUMERIC(28,10)
        ("price", "1.12345678901"),  # more than 10 decimal places
        ("price", True),
        ("fill_latency_ms", "12"),
        ("fill_latency_ms", 2**40),
        ("side", 1),
        ("trade_date", "yesterday"),
        ("trade_date", "2999-01-01T00:00:00Z"),
        ("is_partial_fill", "no"),
    ],
)
def test_wrong_values_mark_the_row_with_the_column(column: str, value: object) -> None:
    change = decode_cdc(rec(cdc("trades", trade_row(**{column: value}), schema=False)))
    error = to_frame([change], TRADE_COLUMNS, TRADE_REQUIRED).row(0, named=True)["_error"]
    assert error is not None and error.startswith(column)


def test_json_numbers_are_exact_decimals() -> None:
    doc = json.loads(cdc("trades", trade_row(), schema=False))
    doc["after"]["quantity"] = "__Q__"
    raw = json.dumps(doc).replace('"__Q__"', "0.1000000001").encode()
    got = to_frame([decode_cdc(rec(raw))], TRADE_COLUMNS).row(0, named=True)
    assert got["quantity"] == Decimal("0.1000000001")


def test_required_value_missing() -> None:
    change = decode_cdc(rec(cdc("trades", trade_row(trade_date=None), schema=False)))
    assert (
        to_frame([change], TRADE_COLUMNS, TRADE_REQUIRED)
        .row(0, named=True)["_error"]
        .startswith("trade_date")
    )


def test_added_and_dropped_columns_keep_loading() -> None:
    row = trade_row(new_column="whatever")
    del row["execution_venue"]
    got = to_frame([decode_cdc(rec(cdc("trades", row, schema=False)))], TRADE_COLUMNS, TRADE_REQUIRED)
    assert got.row(0, named=True)["_error"] is None and got.row(0, named=True)["execution_venue"] is None


def test_domain_event_envelope() -> None:
    event = trade_event(sequence=3, occurred_at="2024-03-15T14:30:01Z")
    change = decode_event(rec(dumps(event)), "trade.executed")
    assert change.event_version == 3 and change.row["tradeId"] == event["payload"]["tradeId"]
    wrapped = decode_event(rec(dumps({"schema": {"type": "struct"}, "payload": event})), "trade.executed")
    assert wrapped.row == change.row
    with pytest.raises(DecodeError) as info:
        decode_event(rec(dumps({**event, "payload": None})), "trade.executed")
    assert info.value.error_class is ErrorClass.MISSING_PAYLOAD
    with pytest.raises(DecodeError) as info:
        decode_event(rec(dumps({**event, "eventType": "quote.received"})), "trade.executed")
    assert info.value.error_class is ErrorClass.UNKNOWN_TOPIC
    frame = to_frame([change], {"id": Kind.UUID}, rename={"tradeId": "id"})
    assert frame.row(0, named=True)["_event_ts"] == datetime(2024, 3, 15, 14, 30, 1, tzinfo=UTC)
