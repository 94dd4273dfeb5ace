"""Positions and risk snapshots, the pure parts: transforms, rules, the event contract, the demo."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from orion_etl.config.models import OrionSettings
from orion_etl.core import facts
from orion_etl.core.columns import to_frame
from orion_etl.core.demo_events import risk_events, risk_expectations
from orion_etl.core.envelopes import decode_cdc, decode_event
from orion_etl.core.quality import DEFAULT_RULES, ERRORS_COLUMN, WARNINGS_COLUMN, evaluate_rows
from orion_etl.core.records import KafkaRecord
from orion_etl.core.synthetic import generate, position_changes, realized_by_client_day
from orion_etl.jobs.stream_batch import Route, routes
from tests.stream_builders import cdc, position_row

D = Decimal
DOCS = Path(__file__).resolve().parents[2] / "docs" / "stream.md"


def position_frame(*changes: bytes) -> pl.DataFrame:
    decoded = [decode_cdc(KafkaRecord("cdc.public.positions", 0, n, None, v)) for n, v in enumerate(changes)]
    frame = to_frame(decoded, facts.POSITION_ROW_COLUMNS, facts.POSITION_ROW_REQUIRED)
    return facts.transform_positions(frame, "America/New_York", "17:00")


def test_position_changes_are_timed_by_updated_at_and_deletes_by_commit_time() -> None:
    row = position_row(realized_pnl="12.5", updated_at="2024-03-15T21:30:00Z")  # 17:30 New York
    frame = position_frame(
        cdc("positions", row, op="u", lsn=7, commit_lsn=None),
        cdc("positions", None, op="d", before=row, lsn=9, commit_lsn=8, ts_ms=1_710_600_000_000),
    )
    assert frame.get_column("_error").to_list() == [None, None]
    assert frame.get_column("changed_at").to_list() == [
        datetime(2024, 3, 15, 21, 30, tzinfo=UTC),
        datetime(2024, 3, 16, 14, 40, tzinfo=UTC),  # the delete's commit time
    ]
    assert frame.get_column("change_date_key").to_list() == [20240316, 20240316]  # FX roll at 17:00
    assert frame.get_column("is_deleted").to_list() == [False, True]
    assert frame.get_column("src_op").to_list() == ["u", "d"]
    assert frame.get_column("src_commit_lsn").to_list() == [-1, 8]  # no sequence: -1 (primary key)
    assert frame.get_column("realized_pnl").to_list() == [D("12.5"), D("12.5")]


def test_position_rules_reject_insane_values_and_warn_on_unreasonable_ones() -> None:
    rows = [
        position_row(avg_price="1.1"),
        position_row(avg_price="-1"),
        position_row(realized_pnl="200000000000000000"),  # 2e17: finite but beyond the bound
        position_row(quantity="2000000000000000"),  # 2e15: a warning
    ]
    frame = position_frame(*(cdc("positions", r, lsn=n) for n, r in enumerate(rows)))
    evaluated = evaluate_rows(frame, DEFAULT_RULES, "fact_positions")
    errors = evaluated.get_column(ERRORS_COLUMN).to_list()
    assert errors[0] == [] and errors[3] == []
    assert errors[1] == ["[avg_price_non_negative] avg_price must not be negative"]
    assert errors[2] == ["[realized_pnl_finite] realized_pnl must be a finite amount below 1e17"]
    assert evaluated.get_column(WARNINGS_COLUMN).to_list()[3] == [
        "[reasonable_quantity] quantity seems unreasonably large"
    ]


def test_non_finite_pnl_is_an_invalid_value_not_a_row() -> None:
    frame = position_frame(cdc("positions", position_row(realized_pnl="NaN")))
    assert frame.get_column("_error").to_list()[0] is not None


def _documented_risk_event() -> dict[str, object]:
    text = DOCS.read_text()
    blocks = re.findall(r"```json\n(.*?)```", text, re.S)
    docs = [json.loads(b) for b in blocks if '"risk.snapshot"' in b]
    assert len(docs) == 1, "docs/stream.md has one risk.snapshot example"
    return docs[0]


def test_the_documented_risk_snapshot_loads_as_documented() -> None:
    event = _documented_risk_event()
    record = KafkaRecord("risk.snapshot", 0, 0, None, json.dumps(event).encode(), 1_710_513_000_000)
    change = decode_event(record, "risk.snapshot")
    frame = to_frame([change], facts.RISK_COLUMNS, facts.RISK_REQUIRED, rename=facts.RISK_EVENT_RENAME)
    row = facts.transform_risk(frame).row(0, named=True)
    assert row["_error"] is None
    assert row["utilization_pct"] == D("85") and row["risk_score"] == D("68")
    assert (row["soft_breach_count"], row["hard_breach_count"]) == (1, 0)
    assert row["snapshot_date_key"] == 20240315 and row["src_origin"] == "event"
    evaluated = evaluate_rows(facts.transform_risk(frame), DEFAULT_RULES, "fact_risk_snapshots")
    assert evaluated.get_column(ERRORS_COLUMN).to_list() == [[]]


def test_risk_values_beyond_their_columns_are_invalid_values() -> None:
    event = _documented_risk_event()
    event["payload"]["utilizationPct"] = "100000"  # type: ignore[index]
    record = KafkaRecord("risk.snapshot", 0, 0, None, json.dumps(event).encode())
    frame = to_frame([decode_event(record, "risk.snapshot")], facts.RISK_COLUMNS, facts.RISK_REQUIRED,
                     rename=facts.RISK_EVENT_RENAME)  # fmt: skip
    assert facts.transform_risk(frame).get_column("_error").to_list() == [
        "utilization_pct: out of range (NUMERIC(9,4))"
    ]


def test_the_loader_routes_the_new_topics() -> None:
    table = routes(OrionSettings())
    assert table["cdc.public.positions"] is Route.POSITIONS_CDC
    assert table["risk.snapshot"] is Route.RISK_EVENTS


# --- the demo's positions: average cost, consistent with its trades -----------------------------

CLIENT, INSTRUMENT, TENANT = str(uuid.UUID(int=1)), str(uuid.UUID(int=2)), str(uuid.UUID(int=3))
START = datetime(2024, 3, 4, tzinfo=UTC)


def trades_frame(legs: list[tuple[str, int, int]]) -> pl.DataFrame:
    """(side, quantity, price in cents) legs, one minute apart."""
    dec = pl.Decimal(28, 10)
    return pl.DataFrame(
        {
            "id": [str(uuid.UUID(int=100 + n)) for n in range(len(legs))],
            "tenant_id": [TENANT] * len(legs),
            "client_id": [CLIENT] * len(legs),
            "instrument_id": [INSTRUMENT] * len(legs),
            "side": [s for s, _, _ in legs],
            "quantity": pl.Series([D(q) for _, q, _ in legs], dtype=dec),
            "price": pl.Series([D(p).scaleb(-2) for _, _, p in legs], dtype=dec),
            "trade_date": [START + timedelta(hours=7 * n) for n in range(len(legs))],
        }
    )


def test_a_round_trip_realizes_the_price_difference() -> None:
    changes = position_changes(trades_frame([("BUY", 100, 110), ("BUY", 100, 130), ("SELL", 150, 150)]))
    assert changes.get_column("quantity").to_list() == [D(100), D(200), D(50)]
    assert changes.get_column("avg_price").to_list() == [D("1.1"), D("1.2"), D("1.2")]
    assert changes.get_column("realized_pnl").to_list() == [D(0), D(0), D(150) * D("0.3")]
    flipped = position_changes(trades_frame([("SELL", 10, 200), ("BUY", 30, 150)]))
    assert flipped.get_column("realized_pnl").to_list()[-1] == D(10) * D("0.5")  # short closed at a gain
    assert flipped.get_column("quantity").to_list()[-1] == D(20)
    assert flipped.get_column("avg_price").to_list()[-1] == D("1.5")  # the remainder opens at the price


legs_strategy = st.lists(
    st.tuples(st.sampled_from(["BUY", "SELL"]), st.integers(1, 1000), st.integers(50, 500)),
    min_size=1,
    max_size=25,
)


@settings(max_examples=200, deadline=None)
@given(legs=legs_strategy)
def test_daily_realized_pnl_adds_up_to_the_final_cumulative_figure(legs: list[tuple[str, int, int]]) -> None:
    changes = position_changes(trades_frame(legs))
    by_day = realized_by_client_day(changes)
    final = changes.get_column("realized_pnl").to_list()[-1]
    assert sum(by_day.values(), D(0)) == final
    assert {d for _, d in by_day} <= {(START + timedelta(hours=7 * n)).date() for n in range(len(legs))}


@settings(max_examples=200, deadline=None)
@given(legs=legs_strategy)
def test_a_position_closed_flat_without_flipping_realizes_sells_minus_buys(
    legs: list[tuple[str, int, int]],
) -> None:
    held = 0
    for side, qty, _ in legs:  # keep it long: sells never exceed what is held
        if side == "SELL" and qty > held:
            return
        held += qty if side == "BUY" else -qty
    legs = [*legs, ("SELL", held, 100)] if held else legs
    changes = position_changes(trades_frame(legs))
    cash = sum((D(q) * D(p).scaleb(-2) * (1 if s == "SELL" else -1) for s, q, p in legs), D(0))
    realized = changes.get_column("realized_pnl").to_list()[-1]
    total_qty = sum(q for _, q, _ in legs)
    assert abs(realized - cash) <= D(total_qty) * D("1e-10")  # the average price is stored at 10 places


def test_demo_risk_expectations_follow_the_events() -> None:
    day = date(2024, 3, 5)
    data = generate(seed=3, clients=4, orders=20, day=day)
    events = risk_events(data, 3, seed=3, day=day)
    assert len(events) == 12
    expected = risk_expectations(events, day)
    assert set(expected) == set(data.clients.get_column("id").to_list())
    for client, (avg, peak, breaches, score) in expected.items():
        utils = [D(e["payload"]["utilizationPct"]) for e in events if e["payload"]["clientId"] == client]
        assert peak == max(utils) and min(utils) <= avg <= peak
        assert breaches == sum((u > 80) + (u > 100) for u in utils)
        assert D(0) <= score <= D(100)
    assert risk_expectations(events, day + timedelta(days=1)) == {}
