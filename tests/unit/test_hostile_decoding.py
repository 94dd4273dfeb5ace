"""Hostile input found by the reliability corpus must become dead letters, never loader crashes."""

from __future__ import annotations

import polars as pl
import pytest

from orion_etl.core import facts
from orion_etl.core.columns import to_frame
from orion_etl.core.dead_letter_classes import DecodeError, ErrorClass
from orion_etl.core.envelopes import decode_cdc, decode_event
from orion_etl.core.records import KafkaRecord
from tests.stream_builders import cdc, order_row, trade_row


def _record(value: bytes) -> KafkaRecord:
    return KafkaRecord("t", 0, 0, None, value)


@pytest.mark.parametrize("decode", [decode_cdc, decode_event])
def test_json_nested_beyond_the_recursion_limit_is_a_decode_error(decode: object) -> None:
    deep = b'{"payload": {"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    with pytest.raises(DecodeError) as err:
        decode(_record(deep))  # type: ignore[operator]
    assert err.value.error_class is ErrorClass.DECODE and "nested too deeply" in err.value.message


def _trades(**after: object) -> pl.DataFrame:
    change = decode_cdc(_record(cdc("trades", trade_row(**after), schema=False)))
    frame = to_frame([change], facts.TRADE_COLUMNS, facts.TRADE_REQUIRED)
    return facts.transform_trades(frame, "cdc")


@pytest.mark.parametrize(
    ("after", "message"),
    [
        ({"trade_reference": "x" * 101}, "trade_reference: longer than 100 characters"),
        ({"execution_venue": "v" * 51}, "execution_venue: longer than 50 characters"),
        ({"currency": "USDUSDUSDUS"}, "currency: longer than 10 characters"),
        ({"trade_reference": "a\x00b"}, "trade_reference: contains NUL"),
    ],
)
def test_text_the_warehouse_cannot_store_marks_the_row_invalid(
    after: dict[str, object], message: str
) -> None:
    assert _trades(**after).get_column("_error").to_list() == [message]


def test_text_at_the_column_width_and_unicode_load() -> None:
    frame = _trades(trade_reference="é" * 100, execution_venue="😀 مرحبا", currency="")
    assert frame.get_column("_error").to_list() == [None]


def test_order_status_longer_than_the_column_is_invalid() -> None:
    change = decode_cdc(_record(cdc("orders", order_row(status="S" * 21), schema=False)))
    frame = facts.transform_orders(to_frame([change], facts.ORDER_COLUMNS, facts.ORDER_REQUIRED), "cdc")
    assert frame.get_column("_error").to_list() == ["status: longer than 20 characters"]
