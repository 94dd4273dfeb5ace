"""Pure DLQ logic: classification from headers (and fallbacks), failure fingerprints, filters."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from orion_etl.core.dead_letter_classes import ErrorClass, LetterClass
from orion_etl.core.dead_letters import (
    DlqMessage,
    OffsetRange,
    Selection,
    failure_fingerprint,
    group_failures,
    parse_classes,
    parse_letter,
    parse_range,
)
from orion_etl.core.dimension_gate import split_missing, wanted_ids
from orion_etl.core.timeparse import parse_time
from orion_etl.errors import UsageError


def _letter(error_class: str, error: str, rule: str = "", offset: int = 0, **extra: str) -> DlqMessage:
    headers = {
        "dlq.error_class": error_class,
        "dlq.error": error,
        "dlq.rule": rule,
        "dlq.origin_topic": "cdc.public.trades",
        "dlq.origin_partition": "1",
        "dlq.origin_offset": str(100 + offset),
        "dlq.fingerprint": f"{offset:032x}",
        **extra,
    }
    return parse_letter(
        "cdc.public.trades.dlq", 0, offset, 1_700_000_000_000, b'{"id": "k1"}', b"{}",
        [(k, v.encode()) for k, v in headers.items()] + [("traceparent", b"00-abc")], ".dlq",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("error_class", "expected"),
    [
        ("DECODE", LetterClass.UNDECODABLE),
        ("MISSING_PAYLOAD", LetterClass.SCHEMA),
        ("UNKNOWN_OP", LetterClass.SCHEMA),
        ("UNKNOWN_TOPIC", LetterClass.SCHEMA),
        ("INVALID_VALUE", LetterClass.SCHEMA),
        ("RULE", LetterClass.RULE),
        ("MISSING_DIMENSION", LetterClass.MISSING_DIMENSION),
        ("LOAD_REJECTED", LetterClass.REJECTED),
        ("TRANSIENT", LetterClass.TRANSIENT),
    ],
)
def test_class_from_the_error_class_header(error_class: str, expected: LetterClass) -> None:
    assert _letter(error_class, "x").letter_class is expected
    assert ErrorClass(error_class).letter_class is expected


def test_one_vocabulary_every_error_class_has_a_letter_class() -> None:
    # the persisted spellings (dlq.error_class header, metrics label) are the members' values
    assert [str(e) for e in ErrorClass] == [
        "DECODE", "MISSING_PAYLOAD", "UNKNOWN_OP", "UNKNOWN_TOPIC", "INVALID_VALUE", "RULE",
        "MISSING_DIMENSION", "LOAD_REJECTED", "TRANSIENT",
    ]  # fmt: skip
    assert {e.letter_class for e in ErrorClass} == set(LetterClass) - {LetterClass.UNKNOWN}
    assert ErrorClass.of_header("RULE") is ErrorClass.RULE
    assert ErrorClass.of_header("rule") is None and ErrorClass.of_header("") is None
    assert _letter("FAKE", "x").letter_class is LetterClass.UNKNOWN  # not ours, JSON payload


def test_origin_and_headers_are_parsed() -> None:
    m = _letter("RULE", "[positive_quantity] quantity must be positive", "positive_quantity", offset=3)
    assert (m.origin_topic, m.origin_partition, m.origin_offset) == ("cdc.public.trades", 1, 103)
    assert m.origin_headers == [("traceparent", b"00-abc")]
    assert m.letter_id == f"{3:032x}" and m.has_origin


def test_fallbacks_without_dlq_headers() -> None:
    connect = parse_letter(
        "orders.dlq", 0, 5, None, None, b"\xff",
        [(b, v.encode()) for b, v in {
            "__connect.errors.topic": "orders", "__connect.errors.partition": "2",
            "__connect.errors.offset": "9", "__connect.errors.stage": "VALUE_CONVERTER",
            "__connect.errors.exception.class.name": "org.apache.kafka.connect.errors.DataException",
            "__connect.errors.exception.message": "Converting byte[] to Kafka Connect data failed",
        }.items()],
        ".dlq",
    )  # fmt: skip
    assert connect.letter_class is LetterClass.UNDECODABLE
    assert (connect.origin_topic, connect.origin_partition, connect.origin_offset) == ("orders", 2, 9)
    assert connect.error_class == "DataException" and "Converting" in connect.error
    timeout = parse_letter(
        "x.dlq", 0, 0, None, None, b"{}",
        [("__connect.errors.exception.class.name", b"org.apache.kafka.common.errors.TimeoutException")],
        ".dlq",
    )  # fmt: skip
    assert timeout.letter_class is LetterClass.TRANSIENT
    bare = parse_letter("trades.dlq", 0, 0, None, None, b"not json", None, ".dlq")
    assert (
        bare.letter_class is LetterClass.UNDECODABLE and bare.origin_topic == "trades" and not bare.has_origin
    )
    assert parse_letter("t.dlq", 0, 0, None, None, b"{}", None, ".dlq").letter_class is LetterClass.UNKNOWN


def test_same_failure_same_fingerprint_different_failure_different() -> None:
    a = failure_fingerprint(
        "schema", "INVALID_VALUE", "", "client_id: 'abc' at 12.5 for 6f1c0e9a-0000-0000-0000-000000000001"
    )
    b = failure_fingerprint(
        "schema", "INVALID_VALUE", "", "client_id: 'xyz' at 7 for 6f1c0e9a-0000-0000-0000-000000000002"
    )
    c = failure_fingerprint(
        "schema", "INVALID_VALUE", "", "quantity: 'abc' at 12.5 for 6f1c0e9a-0000-0000-0000-000000000001"
    )
    assert a == b != c and len(a) == 12
    groups: dict = {}
    group_failures([_letter("RULE", "[r] x 1", "r", offset=i) for i in range(1000)], groups)
    assert len(groups) == 1 and next(iter(groups.values())).count == 1000


def test_selection_filters() -> None:
    m = _letter(
        "RULE", "[positive_quantity] quantity must be positive", "valid_side,positive_quantity", offset=7
    )
    assert Selection().matches(m)
    assert Selection(classes=(LetterClass.RULE,), rules=("positive_quantity",), error="QUANTITY").matches(m)
    assert not Selection(classes=(LetterClass.SCHEMA,)).matches(m)
    assert not Selection(rules=("positive",)).matches(m)
    assert Selection(fingerprints=(m.fingerprint[:6],)).matches(m)
    assert Selection(fingerprints=(f"{7:032x}"[:20],)).matches(m)
    assert Selection(key="k1").matches(m) and not Selection(key="k2").matches(m)
    assert Selection(offsets=OffsetRange(7, 7), origin_offsets=OffsetRange(100, None)).matches(m)
    assert not Selection(origin_offsets=OffsetRange(None, 106)).matches(m)
    t0 = datetime.fromtimestamp(1_700_000_000, UTC)
    assert Selection(since=t0, until=t0).matches(m)
    assert not Selection(since=datetime(2030, 1, 1, tzinfo=UTC)).matches(m)


def test_parsers_and_their_one_line_errors() -> None:
    assert parse_range("3..9", "--offsets") == OffsetRange(3, 9)
    assert parse_range("3..", "--offsets") == OffsetRange(3, None)
    assert parse_range("..9", "--offsets") == OffsetRange(None, 9)
    assert parse_range("5", "--offsets") == OffsetRange(5, 5)
    for bad in ("9..3", "a..b", "..", "", "-1..2"):
        with pytest.raises(UsageError):
            parse_range(bad, "--offsets")
    now = datetime(2024, 3, 15, 12, tzinfo=UTC)
    assert parse_time("2h", "--since", now) == datetime(2024, 3, 15, 10, tzinfo=UTC)
    assert parse_time("2024-03-15T14:30:00Z", "--since") == datetime(2024, 3, 15, 14, 30, tzinfo=UTC)
    assert parse_time("2024-03-15", "--since").tzinfo is UTC
    with pytest.raises(UsageError, match="--since"):
        parse_time("yesterday", "--since")
    assert parse_classes(["Missing-Dimension", "rule"]) == (LetterClass.MISSING_DIMENSION, LetterClass.RULE)
    with pytest.raises(UsageError, match="--class"):
        parse_classes(["nope"])
    with pytest.raises(UsageError, match="--until"):
        Selection(since=now, until=datetime(2024, 1, 1, tzinfo=UTC))


def test_dimension_gate_splits_rows_with_missing_members() -> None:
    frame = pl.DataFrame(
        {"client_id": ["a", "b", None], "instrument_id": ["x", "y", "x"], "lp_id": [None, "l", "l"],
         "_error": [None, None, None]},
        schema_overrides={"_error": pl.String},
    )  # fmt: skip
    assert wanted_ids(frame, "fact_trades") == {
        "dim_clients": ["a", "b"], "dim_instruments": ["x", "y"], "dim_liquidity_providers": ["l"],
    }  # fmt: skip
    known = {"dim_clients": {"a"}, "dim_instruments": {"x", "y"}, "dim_liquidity_providers": set()}
    kept, missing = split_missing(frame, "fact_trades", known)
    assert kept.get_column("client_id").to_list() == ["a"]
    assert missing.get_column("_error").to_list() == [
        "[client_exists] no dim_clients member for client_id b; "
        "[lp_exists] no dim_liquidity_providers member for lp_id l",
        "[lp_exists] no dim_liquidity_providers member for lp_id l",
    ]
