"""The pure phases of a micro-batch (draft A, plan C) with literal frames, no warehouse, no Kafka."""

from __future__ import annotations

import random
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from orion_etl.core.batch_draft import (
    BatchCounts,
    BatchPolicy,
    IssueSeverity,
    RowIssue,
    StoredNeed,
    draft_batch,
    next_offsets,
)
from orion_etl.core.batch_plan import Lookup, inferred_members, plan_batch, with_keys
from orion_etl.core.dead_letter_classes import ErrorClass
from orion_etl.core.fact_model import DIMENSION_TABLES, FACT_MODELS, Route, markdown_table
from orion_etl.core.quality import DEFAULT_RULES
from orion_etl.core.records import UNAVAILABLE, KafkaRecord
from orion_etl.core.sampling import SamplerState
from orion_etl.core.scd import CATALOG
from orion_etl.jobs.stream_batch import letter_of, warning_row
from tests.stream_builders import cdc, dumps, order_row, position_row, quote_event, trade_event, trade_row

D = Decimal
TRADES, ORDERS, POSITIONS, QUOTES, TRADE_EVENTS = (
    "cdc.public.trades", "cdc.public.orders", "cdc.public.positions", "quote.received", "trade.executed",
)  # fmt: skip
POLICY = BatchPolicy(
    routes={
        TRADES: Route.TRADES_CDC,
        ORDERS: Route.ORDERS_CDC,
        POSITIONS: Route.POSITIONS_CDC,
        QUOTES: Route.QUOTE_EVENTS,
        TRADE_EVENTS: Route.TRADE_EVENTS,
    },
    rules=DEFAULT_RULES,
)
CLIENT, INSTRUMENT, LP = (str(uuid.UUID(int=n)) for n in (101, 201, 301))
T1, T2 = str(uuid.UUID(int=9001)), str(uuid.UUID(int=9002))
TS = datetime(2024, 3, 15, 14, 30, 0, 123456, tzinfo=UTC)


def rec(topic: str, offset: int, value: bytes | None) -> KafkaRecord:
    return KafkaRecord(topic, 0, offset, None, value, 1_700_000_000_000 + offset)


def versions(*members: tuple[str, int]) -> pl.DataFrame:
    """One (inferred-like) version per member, valid since -infinity."""
    return pl.DataFrame(
        {
            "natural_id": [m for m, _ in members],
            "key": [k for _, k in members],
            "valid_from": [datetime(1, 1, 1, tzinfo=UTC)] * len(members),
            "version": [1] * len(members),
        },
        schema={"natural_id": pl.String, "key": pl.Int64, "valid_from": pl.Datetime("us", "UTC"),
                "version": pl.Int64},
    )  # fmt: skip


KNOWN = {"client": versions((CLIENT, 1)), "instrument": versions((INSTRUMENT, 2)), "lp": versions((LP, 3))}


def test_fact_model_dimensions_match_the_scd_catalogue() -> None:
    for dim, (table, key, natural) in DIMENSION_TABLES.items():
        spec = CATALOG[dim]
        assert (spec.table, spec.key, spec.natural_id) == (table, key, natural)
    assert FACT_MODELS["fact_orders"].toast == {
        "id": "order_id",
        "status": "final_status",
        "created_at": "order_date",
    }


def test_unknown_topic_tombstone_and_undecodable_records_are_accounted() -> None:
    records = [
        rec("some.other.topic", 0, b"{}"),
        rec(TRADES, 1, None),  # a compaction tombstone
        rec(TRADES, 2, b"not json"),
        rec(TRADES, 3, cdc("trades", trade_row(id=T1))),
    ]
    draft = draft_batch(records, POLICY)
    assert draft.counts == BatchCounts(messages=4, tombstones=1)
    assert draft.issues == [
        RowIssue(IssueSeverity.ERROR, "no handler for topic some.other.topic", ("some.other.topic", 0, 0),
                 ErrorClass.UNKNOWN_TOPIC),
        RowIssue(IssueSeverity.ERROR, draft.issues[1].reason, (TRADES, 0, 2), ErrorClass.DECODE,
                 table="fact_trades"),
    ]  # fmt: skip
    assert draft.offsets == {("some.other.topic", 0): 1, (TRADES, 0): 4}
    assert draft.topic_counts == {"some.other.topic": 1, TRADES: 3}
    rows = draft.tables["fact_trades"].rows
    assert rows is not None
    assert_frame_equal(rows.select("trade_id", "_offset", "_op"), pl.DataFrame(
        {"trade_id": [T1], "_offset": [3], "_op": ["u"]}, schema_overrides={"_offset": pl.Int64}
    ))  # fmt: skip
    assert draft.needs.members == {"client": [CLIENT], "instrument": [INSTRUMENT], "lp": [LP]}
    assert draft.needs.stored == [] and draft.needs.sampler == []
    plan = plan_batch(draft, Lookup(versions=KNOWN), POLICY)
    assert plan.counts == BatchCounts(messages=4, tombstones=1, dlq=2)
    # the letter is built from the record found by the rejection's coordinates
    letter = letter_of(plan.rejections[1], draft.records)
    assert (letter.record.offset, letter.error_class, letter.source_table) == (2, "DECODE", "fact_trades")


def _next_offsets_one_by_one(records: list[KafkaRecord]) -> dict[tuple[str, int], int]:
    offsets: dict[tuple[str, int], int] = {}
    for r in records:
        offsets[(r.topic, r.partition)] = max(offsets.get((r.topic, r.partition), -1), r.offset + 1)
    return offsets


@pytest.mark.parametrize("partitions", [1, 3, 12])
def test_next_offsets_are_the_highest_offset_plus_one_per_partition(partitions: int) -> None:
    rng = random.Random(partitions)
    for _ in range(50):
        records = [
            KafkaRecord(rng.choice(["a", "b"]), rng.randrange(partitions), rng.randrange(100), None, None)
            for _ in range(rng.randint(1, 30))
        ]
        expected = _next_offsets_one_by_one(records)
        got = next_offsets(records)
        assert got == expected and list(got) == list(expected)  # in the order first seen
    assert next_offsets([]) == {}


def test_a_batch_of_one_known_topic_is_routed_whole() -> None:
    records = [rec(TRADES, i, cdc("trades", trade_row(), lsn=1000 + i)) for i in range(3)]
    draft = draft_batch(records, POLICY)
    assert draft.topic_counts == {TRADES: 3} and draft.offsets == {(TRADES, 0): 3} and draft.issues == []
    assert draft.tables["fact_trades"].rows is not None and draft.tables["fact_trades"].rows.height == 3
    assert list(draft.records) == [(TRADES, 0, i) for i in range(3)]
    unknown = draft_batch([rec("some.other.topic", i, b"{}") for i in range(2)], POLICY)
    assert [i.error_class for i in unknown.issues] == [ErrorClass.UNKNOWN_TOPIC] * 2
    assert unknown.topic_counts == {"some.other.topic": 2}


def test_toast_placeholder_filled_from_an_earlier_change_of_the_batch() -> None:
    first = trade_row(id=T1, trade_reference="REF-1", execution_venue="LP9")
    second = {**first, "trade_reference": UNAVAILABLE, "quantity": "5.0000000000"}
    draft = draft_batch(
        [
            rec(TRADES, 0, cdc("trades", first, lsn=1000)),
            rec(TRADES, 1, cdc("trades", second, op="u", lsn=1100)),
        ],
        POLICY,
    )
    t = draft.tables["fact_trades"]
    assert t.pending is None and draft.needs.stored == []
    assert t.rows is not None
    assert_frame_equal(
        t.rows.select("trade_id", "trade_reference", "quantity", "notional_value", "src_lsn"),
        pl.DataFrame(
            {
                "trade_id": [T1, T1],
                "trade_reference": ["REF-1", "REF-1"],
                "quantity": [D("100.5"), D("5")],
                "notional_value": [D("109.0425"), D("5.425")],
                "src_lsn": [1000, 1100],
            },
            schema_overrides={"quantity": pl.Decimal(38, 10), "notional_value": pl.Decimal(38, 10)},
        ),
        check_dtypes=False,
    )


def test_toast_placeholder_filled_from_stored_values_then_transformed_and_checked() -> None:
    oid = str(uuid.UUID(int=7001))
    row = order_row(id=oid, status=UNAVAILABLE)
    draft = draft_batch([rec(ORDERS, 5, cdc("orders", row, op="u"))], POLICY)
    t = draft.tables["fact_orders"]
    assert t.rows is not None and t.rows.is_empty() and t.pending is not None
    assert draft.needs.stored == [StoredNeed("fact_orders", "order_id", ("final_status",), (oid,))]
    stored = pl.DataFrame({"order_id": [oid], "final_status": ["CANCELLED"]})
    plan = plan_batch(draft, Lookup(stored={"fact_orders": stored}, versions=KNOWN), POLICY)
    assert_frame_equal(
        plan.rows["fact_orders"].select("order_id", "final_status", "was_cancelled", "src_offset"),
        pl.DataFrame(
            {"order_id": [oid], "final_status": ["CANCELLED"], "was_cancelled": [True], "src_offset": [5]}
        ),
        check_dtypes=False,
    )
    # the stored value is checked like any other: an unknown status is a rule rejection
    stored = pl.DataFrame({"order_id": [oid], "final_status": ["LOST"]})
    plan = plan_batch(draft, Lookup(stored={"fact_orders": stored}, versions=KNOWN), POLICY)
    assert "fact_orders" not in plan.rows
    assert plan.rejections == [
        RowIssue(IssueSeverity.ERROR, "[valid_status] invalid order status", (ORDERS, 0, 5), ErrorClass.RULE,
                 "valid_status", "fact_orders", oid),
    ]  # fmt: skip


def test_dimension_gate_splits_rows_with_unknown_members() -> None:
    stranger = str(uuid.UUID(int=999))
    records = [
        rec(TRADES, 0, cdc("trades", trade_row(id=T1))),
        rec(TRADES, 1, cdc("trades", trade_row(id=T2, client_id=stranger))),
    ]
    policy = replace(POLICY, gate=True)
    draft = draft_batch(records, policy)
    assert draft.needs.members["client"] == sorted([CLIENT, stranger])
    plan = plan_batch(draft, Lookup(versions=KNOWN), policy)
    assert plan.rows["fact_trades"].get_column("trade_id").to_list() == [T1]
    assert plan.rejections == [
        RowIssue(IssueSeverity.ERROR, f"[client_exists] no dim_clients member for client_id {stranger}",
                 (TRADES, 0, 1), ErrorClass.MISSING_DIMENSION, "client_exists", "fact_trades", T2),
    ]  # fmt: skip
    # without the gate the stranger becomes an inferred member (with its tenant) and keys resolve
    plan = plan_batch(draft, Lookup(versions=KNOWN), POLICY)
    inferred = inferred_members(plan, KNOWN)
    assert list(inferred) == ["client"]
    assert_frame_equal(
        inferred["client"], pl.DataFrame({"natural_id": [stranger], "tenant_id": [str(uuid.UUID(int=1))]})
    )
    keyed = with_keys(plan, {**KNOWN, "client": pl.concat([KNOWN["client"], versions((stranger, 77))])})
    assert_frame_equal(
        keyed["fact_trades"].select("trade_id", "client_key", "instrument_key", "lp_key"),
        pl.DataFrame(
            {"trade_id": [T1, T2], "client_key": [1, 77], "instrument_key": [2, 2], "lp_key": [3, 3]}
        ),
    )


def test_newest_change_per_key_with_deletes_apart() -> None:
    row = trade_row(id=T1)
    records = [
        rec(TRADES, 0, cdc("trades", row, lsn=1000)),
        rec(TRADES, 1, cdc("trades", {**row, "price": "2.0000000000"}, op="u", lsn=1100)),
        rec(TRADES, 2, cdc("trades", None, op="d", before={"id": T1}, lsn=1200)),
        rec(TRADES, 3, cdc("trades", None, op="d", before={"id": T2}, lsn=1300)),
        rec(TRADES, 4, cdc("trades", None, op="d", before={"id": T2}, lsn=1250)),
    ]
    draft = draft_batch(records, POLICY)
    plan = plan_batch(draft, Lookup(versions=KNOWN), POLICY)
    assert plan.counts.superseded == 2  # the create of T1, the older delete of T2
    assert_frame_equal(
        plan.rows["fact_trades"].select("trade_id", "price", "src_lsn", "src_offset"),
        pl.DataFrame({"trade_id": [T1], "price": [D("2")], "src_lsn": [1100], "src_offset": [1]}),
        check_dtypes=False,
    )
    assert plan.deletes is not None
    assert_frame_equal(
        plan.deletes.sort("natural_key").select("fact_table", "natural_key", "src_origin", "src_commit_lsn",
                                                "src_lsn", "src_offset"),
        pl.DataFrame({"fact_table": ["fact_trades"] * 2, "natural_key": [T1, T2], "src_origin": ["cdc"] * 2,
                      "src_commit_lsn": [900, 900], "src_lsn": [1200, 1300], "src_offset": [2, 3]}),
        check_dtypes=False,
    )  # fmt: skip


def test_rule_rejections_and_warnings_become_rejection_rows() -> None:
    bad = trade_row(id=T1, tenant_id=None, quantity="-1.0000000000")
    warned = trade_row(id=T2, fees="-1.0000000000")
    draft = draft_batch([rec(TRADES, 0, cdc("trades", bad)), rec(TRADES, 1, cdc("trades", warned))], POLICY)
    plan = plan_batch(draft, Lookup(versions=KNOWN), POLICY)
    assert plan.rows["fact_trades"].get_column("trade_id").to_list() == [T2]
    assert plan.issues == [
        RowIssue(IssueSeverity.ERROR,
                 "[tenant_required] tenant_id is required; [positive_quantity] quantity must be positive",
                 (TRADES, 0, 0), ErrorClass.RULE, "tenant_required,positive_quantity", "fact_trades", T1),
        RowIssue(IssueSeverity.WARNING, "[fees_non_negative] fees should be non-negative", (TRADES, 0, 1),
                 rule="fees_non_negative", table="fact_trades", record_id=T2),
    ]  # fmt: skip
    assert plan.counts == BatchCounts(messages=2, dlq=1, warnings=1)
    assert warning_row(plan.warnings[0]) == {
        "source_table": "fact_trades",
        "record_id": T2,
        "rule_name": "fees_non_negative",
        "severity": "WARNING",
        "error_message": "[fees_non_negative] fees should be non-negative",
        "origin": {"topic": TRADES, "partition": 0, "offset": 1},
    }


def test_quote_rules_come_from_the_catalogue_and_can_be_switched_off() -> None:
    records = [
        rec(QUOTES, 0, dumps(quote_event("1.2", "1.1"))),
        rec(QUOTES, 1, dumps(quote_event("1.1", "1.2"))),
    ]
    plan = plan_batch(draft_batch(records, POLICY), Lookup(versions=KNOWN), POLICY)
    assert plan.rejections == [
        RowIssue(IssueSeverity.ERROR, "[crossed_quote] ask must not be below bid", (QUOTES, 0, 0),
                 ErrorClass.RULE, "crossed_quote", "fact_quotes", None),
    ]  # fmt: skip
    off = [r if r.key != "fact_quotes.crossed_quote" else replace(r, enabled=False) for r in DEFAULT_RULES]
    policy = replace(POLICY, rules=off)
    plan = plan_batch(draft_batch(records, policy), Lookup(versions=KNOWN), policy)
    assert plan.rejections == [] and plan.rows["fact_quotes"].height == 2


def test_quote_sampling_uses_the_state_it_is_given() -> None:
    pairs = [("1.0000", "1.0001")] * 4 + [("1.0000", "1.0020")]
    records = [rec(QUOTES, 10 + n, dumps(quote_event(b, a))) for n, (b, a) in enumerate(pairs)]
    policy = replace(POLICY, sample_every=10, spread_change_bps=D(5))
    draft = draft_batch(records, policy)
    key = (QUOTES, 0, str(uuid.UUID(int=1)), INSTRUMENT, LP)
    assert draft.needs.sampler == [key]
    state = {key: SamplerState(8, D("1.000000"), 9)}  # 8 quotes seen since the last kept one
    plan = plan_batch(draft, Lookup(versions=KNOWN), policy, state)
    # offset 11: the 10th since the last kept; 14: the spread moved by 19 bps
    assert plan.rows["fact_quotes"].get_column("src_offset").to_list() == [11, 14]
    assert plan.counts.sampled_out == 3
    assert plan.sampler_state == {key: SamplerState(0, D("20.000000"), 14)}
    # sampling off (a DLQ replay): every quote is kept, no state is written
    plan = plan_batch(draft, Lookup(versions=KNOWN), replace(policy, sampling=False), state)
    assert plan.rows["fact_quotes"].height == 5 and plan.sampler_state == {}


def test_position_delete_takes_what_its_before_image_lacks_from_the_previous_change() -> None:
    pid = str(uuid.UUID(int=501))
    update = position_row(id=pid, quantity="10", realized_pnl="12.5")
    records = [
        rec(POSITIONS, 0, cdc("positions", update, op="u", lsn=100, commit_lsn=90)),
        rec(POSITIONS, 1, cdc("positions", None, op="d", before={"id": pid}, lsn=110, commit_lsn=105)),
    ]
    draft = draft_batch(records, POLICY)
    assert draft.needs.stored == []  # the batch's own update carried the values
    plan = plan_batch(draft, Lookup(versions=KNOWN), POLICY)
    assert_frame_equal(
        plan.rows["fact_positions"].select("position_id", "src_op", "is_deleted", "client_id", "quantity",
                                           "realized_pnl"),
        pl.DataFrame({"position_id": [pid, pid], "src_op": ["u", "d"], "is_deleted": [False, True],
                      "client_id": [CLIENT, CLIENT], "quantity": [D(10), D(10)],
                      "realized_pnl": [D("12.5"), D("12.5")]}),
        check_dtypes=False,
    )  # fmt: skip


def test_position_delete_completed_from_the_stored_change_or_counted_as_a_tombstone() -> None:
    pid = str(uuid.UUID(int=502))
    records = [rec(POSITIONS, 3, cdc("positions", None, op="d", before={"id": pid}, lsn=110, commit_lsn=105))]
    draft = draft_batch(records, POLICY)
    (need,) = draft.needs.stored
    assert (need.table, need.key, need.ids) == ("fact_positions", "position_id", (pid,))
    assert set(need.columns) == set(FACT_MODELS["fact_positions"].carried_on_delete)
    stored = pl.DataFrame(
        {"position_id": [pid], "tenant_id": [str(uuid.UUID(int=1))], "client_id": [CLIENT],
         "instrument_id": [INSTRUMENT], "quantity": [D(3)], "avg_price": [D("1.5")], "realized_pnl": [D(7)],
         "unrealized_pnl": [D(0)], "opened_at": [datetime(2024, 3, 1, tzinfo=UTC)]}
    )  # fmt: skip
    plan = plan_batch(draft, Lookup(stored={"fact_positions": stored}, versions=KNOWN), POLICY)
    columns = ["position_id", "is_deleted", "client_id", "quantity", "realized_pnl"]
    assert_frame_equal(
        plan.rows["fact_positions"].select(columns),
        pl.DataFrame({"position_id": [pid], "is_deleted": [True], "client_id": [CLIENT], "quantity": [D(3)],
                      "realized_pnl": [D(7)]}),
        check_dtypes=False,
    )  # fmt: skip
    # a position never loaded: nothing to record, acknowledged like a tombstone
    plan = plan_batch(draft, Lookup(versions=KNOWN), POLICY)
    assert "fact_positions" not in plan.rows
    assert plan.counts == BatchCounts(messages=1, tombstones=1)


def test_event_and_cdc_rows_of_one_trade_keep_the_cdc_change() -> None:
    event = trade_event(tradeId=T1, sequence=5)
    records = [rec(TRADE_EVENTS, 0, dumps(event)), rec(TRADES, 0, cdc("trades", trade_row(id=T1)))]
    plan = plan_batch(draft_batch(records, POLICY), Lookup(versions=KNOWN), POLICY)
    assert plan.rows["fact_trades"].select("trade_id", "src_origin").rows() == [(T1, "cdc")]
    assert plan.counts.superseded == 1


def test_docs_show_the_fact_model() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "stream.md").read_text()
    assert markdown_table() in docs
