"""Hostile Kafka records around valid ones, each built to a known fate (issue 14's property test and
`scripts/reliability.py --long`).

A `Case` is one record with what must happen to it: `LOAD` (a fact row appears, its text verbatim),
`DLQ` (exactly one dead letter with a reason, no fact row) or `ACK` (a tombstone: neither). Hostile
*values* come from hypothesis strategies (every code point including NUL and lone surrogates,
escaped and raw; non-finite, huge and tiny numbers; type swaps; deep nesting; missing and extra
fields; invalid UTF-8; tombstones with odd keys); the good records around them from a seeded
`random.Random`, with text drawn from the same space minus what PostgreSQL refuses.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from tests.stream_builders import cdc, trade_event, trade_row

LOAD, DLQ, ACK = "LOAD", "DLQ", "ACK"
REFUSED_VENUE = "REFUSE-ME"  # the property test's warehouse refuses it (a CHECK constraint)
REFUSE_CONSTRAINT = (
    "ALTER TABLE fact_trades ADD CONSTRAINT t14_refuse "
    f"CHECK (execution_venue IS DISTINCT FROM '{REFUSED_VENUE}')"
)
UNDO_REFUSE = "ALTER TABLE fact_trades DROP CONSTRAINT IF EXISTS t14_refuse"


@dataclass
class Case:
    """One record to produce and its expected fate."""

    route: str  # "event" | "cdc"
    key: bytes | None
    value: bytes | None
    fate: str
    trade_id: str | None = None  # LOAD: the fact row's key
    reference: str | None = None  # LOAD: trade_reference as it must be stored
    why: str = ""


# --- text ---------------------------------------------------------------------------------------

any_text = st.text(st.characters(codec=None, categories=None), max_size=12)  # every code point
storable_text = st.text(
    st.characters(codec=None, categories=None, exclude_categories=("Cs",), exclude_characters="\x00"),
    max_size=12,
)


def _encode(doc: Any, raw: bool) -> bytes:
    """JSON bytes; `raw`: non-ASCII characters as themselves (lone surrogates as their 3 bytes,
    which is not UTF-8) instead of \\u escapes."""
    return json.dumps(doc, ensure_ascii=not raw, default=str).encode("utf-8", "surrogatepass")


# --- hostile records ------------------------------------------------------------------------------

TEXT_FIELDS = ("tradeReference", "venue", "orderType", "currency")
NUMERIC_FIELDS = ("quantity", "price")
BAD_NUMBERS = (
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    '"-0"',
    '"0"',
    "-5",
    '"1e-20"',
    '"' + "9" * 25 + '"',
    '"abc"',
)
REQUIRED_EVENT_FIELDS = ("tradeId", "executionTime", "clientId", "tenantId", "instrumentId")


def _with_number(doc: dict[str, Any], field: str, literal: str) -> bytes:
    marker = f"__N_{uuid.uuid4().hex}__"
    doc["payload"][field] = marker
    return json.dumps(doc).replace(f'"{marker}"', literal).encode()


@st.composite
def hostile_case(draw: st.DrawFn) -> Case:
    """One record that must be dead-lettered (or, for tombstones, acknowledged)."""
    kind = draw(
        st.sampled_from(
            [
                "nul",
                "surrogate",
                "utf8",
                "number",
                "swap",
                "nesting",
                "missing",
                "too_long",
                "refused",
                "cdc_nul",
                "cdc_swap",
                "cdc_broken",
                "tombstone",
            ]
        )
    )
    ev = trade_event()
    p = ev["payload"]
    if kind == "nul":
        field = draw(st.sampled_from(TEXT_FIELDS[:2]))
        text = draw(any_text)
        at = draw(st.integers(0, len(text)))
        p[field] = text[:at] + "\x00" + text[at:]
        value = _encode(ev, draw(st.booleans()))
        if draw(st.booleans()):  # a raw NUL byte inside the JSON string (not even valid JSON)
            value = value.replace(b"\\u0000", b"\x00", 1)
        return Case("event", None, value, DLQ, why=f"NUL in {field}")
    if kind == "surrogate":
        field = draw(st.sampled_from(TEXT_FIELDS))
        text = draw(storable_text)
        lone = chr(draw(st.integers(0xD800, 0xDFFF)))
        at = draw(st.integers(0, len(text)))
        p[field] = text[:at] + lone + text[at:]
        return Case("event", None, _encode(ev, draw(st.booleans())), DLQ, why=f"lone surrogate in {field}")
    if kind == "utf8":
        junk = draw(
            st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"])
        )
        value = _encode(ev, False).replace(b'"LP2"', b'"LP' + junk + b'"', 1)
        return Case("event", draw(st.binary(max_size=8)), value, DLQ, why="invalid UTF-8")
    if kind == "number":
        field = draw(st.sampled_from(NUMERIC_FIELDS))
        return Case(
            "event", None, _with_number(ev, field, draw(st.sampled_from(BAD_NUMBERS))), DLQ, why=field
        )
    if kind == "swap":
        field = draw(st.sampled_from(["tradeId", "quantity", "price", "executionTime", "tenantId"]))
        p[field] = draw(st.sampled_from([True, [1, 2], {"x": "y"}]))
        return Case("event", None, _encode(ev, False), DLQ, why=f"type of {field}")
    if kind == "nesting":
        depth = draw(st.integers(1000, 3000))
        value = _with_number(ev, draw(st.sampled_from(NUMERIC_FIELDS)), "[" * depth + "]" * depth)
        return Case("event", None, value, DLQ, why="nesting")
    if kind == "missing":
        del p[draw(st.sampled_from(REQUIRED_EVENT_FIELDS))]
        return Case("event", None, _encode(ev, False), DLQ, why="missing field")
    if kind == "too_long":
        unit = draw(storable_text) or "x"
        p["tradeReference"] = (unit * (101 // len(unit) + 1))[: draw(st.integers(101, 200))]
        return Case("event", None, _encode(ev, draw(st.booleans())), DLQ, why="too long")
    if kind == "refused":
        p["venue"] = REFUSED_VENUE
        return Case("event", None, _encode(ev, False), DLQ, why="refused by the warehouse")
    if kind == "cdc_nul":
        text = draw(any_text)
        row = trade_row(trade_reference=text + "\x00")
        return Case("cdc", None, cdc("trades", row, schema=draw(st.booleans())), DLQ, why="CDC NUL")
    if kind == "cdc_swap":
        field = draw(st.sampled_from(["quantity", "id", "trade_date", "fill_latency_ms"]))
        row = trade_row(**{field: draw(st.sampled_from([True, "x", 2**70, [1], {"a": 1}]))})
        return Case("cdc", None, cdc("trades", row, schema=draw(st.booleans())), DLQ, why=f"CDC {field}")
    if kind == "cdc_broken":
        value = draw(st.sampled_from([b"{", b"[]", b'{"payload": 5}', b'{"op": "z", "after": {}}', b"\xff"]))
        return Case("cdc", None, value, DLQ, why="CDC envelope")
    key = draw(st.one_of(st.none(), st.binary(max_size=64)))
    return Case(draw(st.sampled_from(["event", "cdc"])), key, None, ACK, why="tombstone")


# --- good records ---------------------------------------------------------------------------------


def good_case(rnd: random.Random, texts: list[str]) -> Case:
    """A record that must load, its reference text verbatim (drawn from `texts`)."""
    reference = rnd.choice(texts) if texts else f"R-{rnd.random()}"
    trade_id = str(uuid.uuid4())  # unique across runs (a repeated seed must not repeat an id)
    if rnd.random() < 0.5:
        ev = trade_event(tradeReference=reference, tradeId=trade_id)
        if rnd.random() < 0.3:  # hostile content in fields the loader ignores changes nothing
            ev["payload"]["note"] = {"nul": "x\x00y", "deep": [[[[["z"]]]]], "big": 10**40, "esc": "\\u0000"}
        if rnd.random() < 0.3:
            ev["payload"]["quantity"] = rnd.choice(["0.0000000001", "999999999", "42"])
        return Case("event", None, _encode(ev, rnd.random() < 0.5), LOAD, trade_id, reference)
    row = trade_row(id=trade_id, trade_reference=reference)
    value = cdc("trades", row, schema=rnd.random() < 0.5)
    return Case("cdc", str(trade_id).encode(), value, LOAD, trade_id, reference)


def mix(rnd: random.Random, hostile: list[Case], texts: list[str], total: int) -> list[Case]:
    """`hostile` and good records up to `total`, interleaved at random."""
    cases = hostile + [good_case(rnd, texts) for _ in range(max(0, total - len(hostile)))]
    rnd.shuffle(cases)
    return cases
