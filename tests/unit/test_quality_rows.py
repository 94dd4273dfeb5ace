"""Row-level rules evaluated vectorized on a batch (the story's DataQualityService tests)."""

from __future__ import annotations

from decimal import Decimal

import polars as pl

from orion_etl.core.quality import DEFAULT_RULES, ERRORS_COLUMN, WARNINGS_COLUMN, evaluate_rows, split_valid

DEC = pl.Decimal(28, 10)


def trades(**overrides: list) -> pl.DataFrame:
    base = {
        "tenant_id": ["t1"],
        "client_id": ["c1"],
        "instrument_id": ["i1"],
        "quantity": [Decimal("100")],
        "price": [Decimal("10")],
        "side": ["BUY"],
        "fees": [Decimal("1")],
    }
    base.update(overrides)
    return pl.DataFrame(base, schema_overrides={"quantity": DEC, "price": DEC, "fees": DEC})


def test_trade_with_missing_tenant_is_invalid_with_exactly_that_error() -> None:
    out = evaluate_rows(trades(tenant_id=[None]), DEFAULT_RULES, "fact_trades")
    assert out[ERRORS_COLUMN].to_list() == [["[tenant_required] tenant_id is required"]]
    valid, invalid = split_valid(out)
    assert valid.height == 0 and invalid.height == 1


def test_negative_fees_warn_and_the_trade_stays_valid() -> None:
    out = evaluate_rows(trades(fees=[Decimal("-10")]), DEFAULT_RULES, "fact_trades")
    assert out[WARNINGS_COLUMN].to_list() == [["[fees_non_negative] fees should be non-negative"]]
    assert out[ERRORS_COLUMN].to_list() == [[]]
    assert split_valid(out)[0].height == 1


def test_many_rows_many_rules_at_once() -> None:
    frame = trades(
        tenant_id=["t", "", "t", "t"],
        client_id=["c", "c", None, "c"],
        instrument_id=["i", "i", "i", "i"],
        quantity=[Decimal(1), Decimal(0), Decimal(-1), None],
        price=[Decimal(1), Decimal("2000000000"), Decimal(1), Decimal(1)],
        side=["BUY", "SELL", "HOLD", None],
        fees=[None, Decimal(0), Decimal(0), Decimal(0)],
    )
    out = evaluate_rows(frame, DEFAULT_RULES, "fact_trades")
    errors = out[ERRORS_COLUMN].to_list()
    assert errors[0] == []
    assert "[tenant_required] tenant_id is required" in errors[1]
    assert "[positive_quantity] quantity must be positive" in errors[1]
    assert out[WARNINGS_COLUMN].to_list()[1] == ["[reasonable_price] price seems unreasonably high"]
    assert set(errors[2]) == {
        "[client_required] client_id is required",
        "[positive_quantity] quantity must be positive",
        "[valid_side] side must be BUY or SELL",
    }
    assert "[valid_side] side must be BUY or SELL" in errors[3]
    assert "[positive_quantity] quantity must be positive" in errors[3]


def test_order_rules() -> None:
    orders = pl.DataFrame(
        {
            "tenant_id": ["t", "t"],
            "client_id": ["c", "c"],
            "requested_quantity": [Decimal(10), Decimal(10)],
            "filled_quantity": [Decimal(11), Decimal(10)],
            "final_status": ["FILLED", "LOST"],
        },
        schema_overrides={"requested_quantity": DEC, "filled_quantity": DEC},
    )
    out = evaluate_rows(orders, DEFAULT_RULES, "fact_orders")
    assert out[WARNINGS_COLUMN].to_list()[0] == [
        "[filled_not_exceed_requested] filled quantity exceeds requested"
    ]
    assert out[ERRORS_COLUMN].to_list() == [[], ["[valid_status] invalid order status"]]


def test_a_batch_without_violations_gets_the_lists_the_full_evaluation_gives() -> None:
    """The shortcut for a batch that violates no rule equals evaluating every rule row by row."""
    good = trades(
        tenant_id=["t1", "t2", "t3"],
        client_id=["c1", "c2", "c3"],
        instrument_id=["i1", "i2", "i3"],
        quantity=[Decimal(1), Decimal(2), Decimal(3)],
        price=[Decimal(1), Decimal(2), Decimal(3)],
        side=["BUY", "SELL", "BUY"],
        fees=[Decimal(0), None, Decimal(1)],
    )
    bad = trades(tenant_id=[None], fees=[Decimal(-1)])  # an error and a warning: the full evaluation
    shortcut = evaluate_rows(good, DEFAULT_RULES, "fact_trades")
    full = evaluate_rows(pl.concat([good, bad]), DEFAULT_RULES, "fact_trades").head(good.height)
    assert shortcut.schema == full.schema
    assert shortcut.equals(full)
    valid, invalid = split_valid(shortcut)  # (no error: the frame and none of its rows)
    has_error = pl.col(ERRORS_COLUMN).list.len() > 0
    filtered_invalid = full.filter(has_error)
    assert valid.equals(full.filter(~has_error))
    assert invalid.equals(filtered_invalid) and invalid.schema == filtered_invalid.schema
    empty = evaluate_rows(good.clear(), DEFAULT_RULES, "fact_trades")
    assert empty.schema == full.schema and empty.height == 0
