"""Fact transforms: exact computed fields, date keys, rules, in-batch ordering, quote sampling."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal
from itertools import pairwise

import polars as pl
import pytest

from orion_etl.core import facts
from orion_etl.core.columns import to_frame
from orion_etl.core.envelopes import decode_cdc, decode_event
from orion_etl.core.records import KafkaRecord
from orion_etl.core.sampling import SamplerState, sample_quotes
from tests.stream_builders import cdc, dumps, order_row, quote_event, trade_event, trade_row


def _rec(value: bytes, offset: int = 0, topic: str = "t") -> KafkaRecord:
    return KafkaRecord(topic, 0, offset, None, value, 1_700_000_000_000)


def trades(*rows: dict, **kw: object) -> pl.DataFrame:
    changes = [decode_cdc(_rec(cdc("trades", r, **kw), i)) for i, r in enumerate(rows)]  # type: ignore[arg-type]
    return facts.transform_trades(to_frame(changes, facts.TRADE_COLUMNS, facts.TRADE_REQUIRED), "cdc")


def test_notional_and_net_amount_are_exact() -> None:
    frame = trades(
        trade_row(quantity="0.1", price="0.2", fees="0.3", side="BUY"),
        trade_row(quantity="123456789.5", price="1000000000.25", fees="0.0000000001", side="SELL"),
    )
    got = frame.select("notional_value", "net_amount").rows()
    assert got[0] == (Decimal("0.02"), Decimal("0.32"))
    assert got[1] == (Decimal("123456789530864197.375"), Decimal("123456789530864197.3749999999"))
    assert frame.schema["notional_value"] == pl.Decimal(38, 10)


def test_notional_rounds_half_even_at_ten_places() -> None:
    frame = trades(
        trade_row(quantity="0.0000000001", price="0.5"), trade_row(quantity="0.0000000003", price="0.5")
    )
    assert frame.get_column("notional_value").to_list() == [Decimal("0E-10"), Decimal("2E-10")]


def test_notional_overflow_is_an_error_not_a_crash() -> None:
    frame = trades(trade_row(quantity="999999999999999999", price="999999999999999999"), trade_row())
    errors = frame.get_column("_error").to_list()
    assert errors[0].startswith("notional_value") and errors[1] is None


def test_date_key_uses_the_trading_day() -> None:
    row = trade_row(trade_date="2024-03-15T21:30:00Z")  # 17:30 in New York (EDT)
    change = decode_cdc(_rec(cdc("trades", row)))
    frame = to_frame([change], facts.TRADE_COLUMNS)
    assert facts.transform_trades(frame, "cdc").item(0, "trade_date_key") == 20240315
    assert (
        facts.transform_trades(frame, "cdc", "America/New_York", "17:00").item(0, "trade_date_key")
        == 20240316
    )


def test_trade_rules_split_valid_and_invalid() -> None:
    frame = trades(trade_row(), trade_row(side="HOLD"), trade_row(quantity="-1"), trade_row(fees="-2"))
    valid, invalid = facts.check(frame.filter(pl.col("_error").is_null()), "fact_trades")
    assert valid.height == 2 and invalid.height == 2
    assert any("[valid_side]" in e for e in invalid.get_column("_dq_errors").explode().to_list())
    assert valid.get_column("_dq_warnings").list.len().to_list() == [0, 1]


def test_orders_fill_rate_and_flags() -> None:
    rows = [
        order_row(status="FILLED", requested_quantity="200", filled_quantity="150"),
        order_row(status="REJECTED", requested_quantity="0", filled_quantity="0"),
        order_row(status="CANCELLED", requested_quantity="3", filled_quantity="1"),
    ]
    changes = [decode_cdc(_rec(cdc("orders", r), i)) for i, r in enumerate(rows)]
    frame = facts.transform_orders(to_frame(changes, facts.ORDER_COLUMNS, facts.ORDER_REQUIRED), "cdc")
    got = frame.select("fill_rate", "was_rejected", "was_cancelled", "order_date_key").rows()
    assert got[0] == (Decimal("0.75"), False, False, 20240315)
    assert got[1][:3] == (Decimal("0"), True, False)
    assert got[2][0] == Decimal("0.33333333") and got[2][2] is True


def test_trade_event_maps_to_the_same_columns() -> None:
    event = trade_event(quantity="1000", price="1.2345", fees="1.5", side="SELL")
    change = decode_event(_rec(dumps(event)), "trade.executed")
    frame = facts.transform_trades(
        to_frame([change], facts.TRADE_COLUMNS, facts.TRADE_REQUIRED, rename=facts.TRADE_EVENT_RENAME),
        "event",
    )
    row = frame.row(0, named=True)
    assert row["_error"] is None
    assert row["trade_id"] == event["payload"]["tradeId"]
    assert row["notional_value"] == Decimal("1234.5") and row["net_amount"] == Decimal("1233")
    assert row["execution_venue"] == "LP2" and row["src_origin"] == "event"


def quotes(*pairs: tuple[str, str]) -> pl.DataFrame:
    changes = [
        decode_event(_rec(dumps(quote_event(b, a)), i), "quote.received") for i, (b, a) in enumerate(pairs)
    ]
    frame = to_frame(changes, facts.QUOTE_COLUMNS, facts.QUOTE_REQUIRED, rename=facts.QUOTE_EVENT_RENAME)
    return facts.transform_quotes(frame)


def test_quote_mid_spread_bps() -> None:
    row = quotes(("1.0850", "1.0852")).row(0, named=True)
    assert row["mid_price"] == Decimal("1.0851")
    assert row["spread"] == Decimal("0.0002")
    assert row["spread_bps"] == Decimal("1.843318")
    bad = quotes(("0", "1"), ("1.2", "1.1")).get_column("_error").to_list()
    assert bad[0].startswith("[positive_bid]") and bad[1].startswith("[crossed_quote]")


def test_quote_sampling_is_deterministic_every_nth_and_on_spread_moves() -> None:
    pairs = [("1.0000", "1.0001")] * 7 + [("1.0000", "1.0020")] + [("1.0000", "1.0001")] * 3
    frame = quotes(*pairs)
    kept1, state1 = sample_quotes(frame, {}, 3, Decimal(5))
    kept2, _ = sample_quotes(frame, {}, 3, Decimal(5))
    assert kept1.get_column("_offset").to_list() == kept2.get_column("_offset").to_list()
    # first ever, then every 3rd, the spread jump (offset 7), and the jump back (offset 8)
    assert kept1.get_column("_offset").to_list() == [0, 3, 6, 7, 8]
    # split into two batches with state carried: the same quotes are kept
    first, st = sample_quotes(frame.slice(0, 5), {}, 3, Decimal(5))
    second, _ = sample_quotes(frame.slice(5), st, 3, Decimal(5))
    assert first.get_column("_offset").to_list() + second.get_column("_offset").to_list() == [0, 3, 6, 7, 8]
    assert isinstance(next(iter(state1.values())), SamplerState)


def test_latest_per_key_keeps_the_newest_position() -> None:
    row = trade_row()
    frame = pl.concat(
        [
            trades(row, lsn=300, commit_lsn=250),
            trades({**row, "price": "2"}, lsn=200, commit_lsn=260),  # later transaction, lower LSN
            trades({**row, "price": "3"}, lsn=100, commit_lsn=100),
        ]
    )
    latest, superseded = facts.latest_per_key(frame, "trade_id")
    assert superseded == 2 and latest.item(0, "price") == Decimal("2")


@pytest.mark.parametrize("origin_first", ["cdc", "event"])
def test_cdc_outranks_events(origin_first: str) -> None:
    cdc_frame = trades(trade_row(id="00000000-0000-0000-0000-00000000000a", price="5"))
    ev = decode_event(
        _rec(dumps(trade_event(tradeId="00000000-0000-0000-0000-00000000000a", price="6", sequence=9))), ""
    )
    ev_frame = facts.transform_trades(
        to_frame([ev], facts.TRADE_COLUMNS, rename=facts.TRADE_EVENT_RENAME), "event"
    )
    parts = [cdc_frame, ev_frame] if origin_first == "cdc" else [ev_frame, cdc_frame]
    latest, _ = facts.latest_per_key(pl.concat(parts, how="diagonal_relaxed"), "trade_id")
    assert latest.item(0, "price") == Decimal("5")


def _sorted_then_deduplicated(frame: pl.DataFrame, key: str) -> pl.DataFrame:
    """`latest_per_key` without its shortcut for frames already in order with distinct keys."""
    ranked = frame.with_columns(pl.struct(facts.position_order()).alias("_pos_sort"))
    return ranked.sort("_pos_sort").unique(subset=[key], keep="last", maintain_order=True).drop("_pos_sort")


def test_latest_per_key_equals_sort_then_dedup() -> None:
    """Frames in order with distinct keys (returned as they are) and any other frame give what the
    full sort and dedup give."""
    rng = random.Random(20)
    hits = 0
    for trial in range(300):
        n = rng.randint(1, 12)
        small = trial % 2 == 0  # few distinct values: ties, repeated keys
        frame = pl.DataFrame(
            {
                "trade_id": [str(rng.randint(0, 3) if small else i) for i in range(n)],
                "src_origin": [rng.choice(["cdc", "cdc", "event", None]) for _ in range(n)],
                "src_commit_lsn": [rng.choice([None, *range(3 if small else 1000)]) for _ in range(n)],
                "src_lsn": [rng.choice([None, *range(3 if small else 1000)]) for _ in range(n)],
                "src_event_version": [rng.choice([None, 1, 2]) for _ in range(n)],
                "src_event_ts": [rng.choice([None, datetime(2024, 1, 1, tzinfo=UTC)]) for _ in range(n)],
                "_offset": [rng.randint(0, 5) if small else i for i in range(n)],
            },
            schema_overrides={"src_commit_lsn": pl.Int64, "src_lsn": pl.Int64, "src_event_version": pl.Int64},
        )
        if trial % 3 == 0:  # in position order
            frame = _sorted_then_deduplicated(frame, "_offset" if not small else "trade_id")
        latest, superseded = facts.latest_per_key(frame, "trade_id")
        expected = _sorted_then_deduplicated(frame, "trade_id")
        assert superseded == frame.height - expected.height
        positions = frame.select(
            (pl.col("src_origin") == "cdc").cast(pl.Int8),
            pl.col("src_commit_lsn").fill_null(-1),
            pl.col("src_lsn").fill_null(-1),
            pl.col("src_event_version").fill_null(-1),
            pl.col("src_event_ts").dt.epoch("us").fill_null(-(2**62)),
            "_offset",
        ).rows()
        increasing = all(None not in a and None not in b and a < b for a, b in pairwise(positions))
        if increasing and frame.get_column("trade_id").is_unique().all():  # the shortcut
            hits += 1
            assert latest.equals(frame, null_equal=True) and latest.equals(expected, null_equal=True), trial
        else:  # the full sort: rows of equal position may come in any order
            assert sorted(latest.rows(), key=repr) == sorted(expected.rows(), key=repr), trial
    assert 30 < hits < 270


def test_latest_per_key_of_a_frame_in_order_is_the_frame() -> None:
    frame = trades(*(trade_row() for _ in range(4)), lsn=100)
    frame = frame.with_columns(pl.col("src_lsn") + pl.col("_offset"))
    latest, superseded = facts.latest_per_key(frame, "trade_id")
    assert latest.equals(frame) and superseded == 0
