"""The whole-batch CDC decode (`cdc_frame`) gives exactly the per-record path's frame, or declines."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from orion_etl.core.cdc_batch import cdc_frame
from orion_etl.core.columns import to_frame
from orion_etl.core.envelopes import decode_cdc, known_envelope
from orion_etl.core.facts import ORDER_COLUMNS, ORDER_REQUIRED, TRADE_COLUMNS, TRADE_REQUIRED
from orion_etl.core.records import UNAVAILABLE, KafkaRecord
from tests.stream_builders import cdc, order_row, trade_row

SPECS = {
    "trades": (TRADE_COLUMNS, TRADE_REQUIRED, trade_row),
    "orders": (ORDER_COLUMNS, ORDER_REQUIRED, order_row),
}


def compact(value: bytes) -> bytes:
    """Kafka Connect's JsonConverter writes compact JSON."""
    return json.dumps(json.loads(value), separators=(",", ":")).encode()


def records(values: list[bytes | None]) -> list[KafkaRecord]:
    return [KafkaRecord("t", i % 3, 100 + i, None, v, 1_700_000_000_000 + i) for i, v in enumerate(values)]


def per_record(table: str, batch: list[KafkaRecord]) -> Any:
    columns, required, _ = SPECS[table]
    return to_frame([decode_cdc(r) for r in batch], columns, required)


def random_row(rng: random.Random, table: str) -> dict[str, Any]:
    """A row with values of the JSON types its columns expect (some odd, none of another type)."""
    row = SPECS[table][2]()
    for name in list(row):
        roll = rng.random()
        if roll < 0.08:
            row[name] = None
        elif roll < 0.12 and isinstance(row[name], str):
            row[name] = UNAVAILABLE  # unchanged TOASTed value
        elif roll < 0.15 and isinstance(row[name], str):
            row[name] = rng.choice(
                ["", "not a value", "1.12345678901", "-0", "9" * 19, "2024-02-30T00:00:00Z"]
            )
        elif roll < 0.17 and isinstance(row[name], int) and not isinstance(row[name], bool):
            row[name] = rng.choice([-1, 0, 2**31, 2**40, 10**9])
    return row


@pytest.mark.parametrize("table", ["trades", "orders"])
@pytest.mark.parametrize("spaced", [False, True])
@pytest.mark.parametrize("schema", [True, False], ids=["embedded", "schemaless"])
def test_batch_equals_per_record(table: str, spaced: bool, schema: bool) -> None:
    rng = random.Random(f"{table}{spaced}{schema}")
    for trial in range(40):
        values = []
        for i in range(rng.randint(1, 40)):
            commit = rng.choice([900 + i, 900 + i, None]) if trial % 3 == 0 else 900 + i
            ts = rng.choice([0, 1_700_000_000_000 + i]) if trial % 4 == 0 else 1_700_000_000_000 + i
            op = rng.choice(["c", "u", "r"])
            value = cdc(
                table,
                random_row(rng, table),
                op=op,
                lsn=1000 + 7 * i,
                commit_lsn=commit,
                ts_ms=ts,
                schema=schema,
            )
            values.append(value if spaced else compact(value))
        batch = records(values)
        expected = per_record(table, batch)  # also teaches the decoder the envelope's schema
        got = cdc_frame(batch, table, *SPECS[table][:2])
        if any(b'"sequence": "[null' in v or b'"sequence":"[null' in v for v in values):
            assert got is None  # [null, lsn] sequences are left to the per-record path
            continue
        assert got is not None
        assert got.schema == expected.schema
        assert got.equals(expected, null_equal=True), trial


def batch_of(table: str, n: int = 5, schema: bool = True) -> list[bytes]:
    return [compact(cdc(table, SPECS[table][2](), lsn=1000 + i, schema=schema)) for i in range(n)]


@pytest.mark.parametrize(
    "odd",
    [
        pytest.param(lambda: compact(cdc("trades", None, op="d", before=trade_row())), id="delete"),
        pytest.param(lambda: None, id="tombstone"),
        pytest.param(lambda: compact(cdc("trades", trade_row(quantity=12.5))), id="decimal as JSON number"),
        pytest.param(lambda: compact(cdc("trades", trade_row(), schema=False)), id="no schema"),
        pytest.param(lambda: compact(cdc("orders", order_row())), id="another table's schema"),
        pytest.param(lambda: compact(cdc("trades", trade_row(fill_count=True))), id="bool as int"),
        pytest.param(lambda: compact(cdc("trades", trade_row()))[:-2], id="broken JSON"),
        pytest.param(lambda: compact(cdc("trades", trade_row(), op="t")), id="unknown op"),
        pytest.param(
            lambda: compact(cdc("trades", trade_row(), op="u", before=5)),  # type: ignore[arg-type]
            id="before of a wrong type",
        ),
    ],
)
def test_declines_anything_unusual(odd: Any) -> None:
    values: list[bytes | None] = batch_of("trades")
    per_record("trades", records(values))  # the trades schema is known
    assert cdc_frame(records(values), "trades", TRADE_COLUMNS, TRADE_REQUIRED) is not None
    values.insert(2, odd())
    assert cdc_frame(records(values), "trades", TRADE_COLUMNS, TRADE_REQUIRED) is None


def test_declines_a_row_of_another_table() -> None:
    values = batch_of("trades")
    per_record("trades", records(values))
    assert cdc_frame(records(values), "orders", ORDER_COLUMNS, ORDER_REQUIRED) is None


def test_a_batch_across_a_switch_to_schemaless_gives_the_same_frame() -> None:
    """`cdc.schemas` changed from embedded to none: a batch holding both forms loads the same rows."""
    rows = [trade_row() for _ in range(4)]
    embedded = [compact(cdc("trades", r, lsn=1000 + i, ts_ms=1_700_000_000_000)) for i, r in enumerate(rows)]
    schemaless = [
        compact(cdc("trades", r, lsn=1000 + i, ts_ms=1_700_000_000_000, schema=False))
        for i, r in enumerate(rows)
    ]
    assert len(schemaless[0]) * 4 < len(embedded[0])
    expected = per_record("trades", records(embedded))  # type: ignore[arg-type]
    mixed = per_record("trades", records(embedded[:2] + schemaless[2:]))  # type: ignore[arg-type]
    assert mixed.equals(expected, null_equal=True)
    assert per_record("trades", records(schemaless)).equals(expected, null_equal=True)  # type: ignore[arg-type]


def schemaless(**kw: Any) -> bytes:
    return compact(cdc("trades", trade_row(), schema=False, **kw))


def wrapped(value: bytes, **top: Any) -> bytes:
    doc = json.loads(value)
    doc.update(top)
    return compact(json.dumps(doc).encode())


@pytest.mark.parametrize(
    "odd",
    [
        pytest.param(
            lambda: compact(cdc("trades", None, op="d", before=trade_row(), schema=False)), id="delete"
        ),
        pytest.param(lambda: None, id="tombstone"),
        pytest.param(lambda: compact(cdc("trades", trade_row())), id="embedded schema"),
        pytest.param(lambda: b" " + schemaless(), id="leading space"),
        pytest.param(lambda: schemaless() + b"," + schemaless(), id="two values in one"),
        pytest.param(lambda: schemaless(before=5), id="before of a wrong type"),  # type: ignore[arg-type]
        pytest.param(lambda: wrapped(schemaless(), payload=5), id="payload of a wrong type"),
        pytest.param(
            lambda: compact(json.dumps({"schema": None, "payload": json.loads(schemaless())}).encode()),
            id="null schema wrapper",
        ),
        pytest.param(lambda: schemaless(op="t"), id="unknown op"),
        pytest.param(lambda: schemaless()[:-2], id="broken JSON"),
    ],
)
def test_schemaless_batch_declines_anything_unusual(odd: Any) -> None:
    """The per-record path decides (and classifies) every batch holding such a record."""
    values: list[bytes | None] = batch_of("trades", schema=False)
    assert cdc_frame(records(values), "trades", TRADE_COLUMNS, TRADE_REQUIRED) is not None
    values.insert(2, odd())
    assert cdc_frame(records(values), "trades", TRADE_COLUMNS, TRADE_REQUIRED) is None


def test_schemaless_batch_with_an_update_image_equals_per_record() -> None:
    """Top-level fields the per-record decode checks (`before`, a `payload` beside `op`) load the same."""
    values = [
        schemaless(op="u", before=trade_row(), lsn=1000),  # type: ignore[arg-type]
        wrapped(schemaless(lsn=1001), payload=None, schema={"type": "struct"}),
        schemaless(op="r", lsn=1002),
    ]
    batch = records(values)  # type: ignore[arg-type]
    got = cdc_frame(batch, "trades", TRADE_COLUMNS, TRADE_REQUIRED)
    assert got is not None
    assert got.equals(per_record("trades", batch), null_equal=True)


def test_an_embedded_schema_not_seen_yet_is_learnt_from_the_first_record() -> None:
    """The first batch of a schema (after a start, a schema change) takes the batch path too."""
    fees = {"fees": ("string", "test.Learnt", None)}  # a schema no record carried before
    values = [compact(cdc("trades", trade_row(), lsn=1000 + i, overrides=fees)) for i in range(3)]
    batch = records(values)  # type: ignore[arg-type]
    assert known_envelope(values[0]) is None
    got = cdc_frame(batch, "trades", TRADE_COLUMNS, TRADE_REQUIRED)
    assert known_envelope(values[0]) is not None
    assert got is not None and got.equals(per_record("trades", batch), null_equal=True)
    broken = [values[0][:-2], *values[1:]]  # a first record that does not decode: record by record
    assert cdc_frame(records(broken), "trades", TRADE_COLUMNS, TRADE_REQUIRED) is None  # type: ignore[arg-type]
