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
import re
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


# --- at scale: scripts/reliability.py's "hostile" scenario ------------------------------------------


def hostile_pool(size: int) -> list[Case]:
    """`size` hostile cases drawn by hypothesis (reused round-robin by `hostile_run`)."""
    from hypothesis import HealthCheck, Phase, given, settings

    pool: list[Case] = []

    @settings(max_examples=max(1, size // 50), phases=[Phase.generate], database=None, deadline=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(st.lists(hostile_case(), min_size=50, max_size=50))
    def collect(cases: list[Case]) -> None:
        pool.extend(cases)

    collect()
    return pool


def hostile_run(settings: Any, total: int, seed: int, hostile_share: float = 0.05) -> dict[str, Any]:
    """Produce `total` records (about `hostile_share` hostile), drain them with the loader and check
    the invariant of the property test at scale; returns figures for docs/reliability.md."""
    import time

    from confluent_kafka import TopicPartition

    from orion_etl.adapters import positions
    from orion_etl.adapters.dlq_reader import DlqReader
    from orion_etl.adapters.kafka import make_consumer, make_producer
    from orion_etl.adapters.postgres import connect
    from orion_etl.jobs.stream import run_stream

    rnd = random.Random(seed)
    pool = hostile_pool(2000)
    texts = hostile_pool_texts(rnd)
    t = settings.stream.topics
    with connect(settings.warehouse, autocommit=True) as conn:
        conn.execute(REFUSE_CONSTRAINT)
    producer = make_producer(settings.kafka, **{"linger.ms": 20, "batch.size": 1_000_000})
    expected_good: dict[str, str] = {}
    bad: set[tuple[str, int, int]] = set()
    acks = 0
    counts = {"produced": 0}

    def on_delivery(fate: str) -> Any:
        def cb(err: Any, msg: Any) -> None:
            assert err is None, err
            if fate == DLQ:
                bad.add((msg.topic(), msg.partition(), msg.offset()))

        return cb

    started = time.monotonic()
    for i in range(total):
        if rnd.random() < hostile_share:  # a pool case with a fresh key: a repeated id would be a
            case = _fresh_id(pool[rnd.randrange(len(pool))])  # superseded change, not a new record
        else:
            case = good_case(rnd, texts)
        if case.fate == LOAD:
            expected_good[case.trade_id or ""] = case.reference or ""
        acks += case.fate == ACK
        topic = t.trade_events if case.route == "event" else t.trades_cdc
        while True:
            try:
                producer.produce(topic, key=case.key, value=case.value, on_delivery=on_delivery(case.fate))
                break
            except BufferError:
                producer.poll(0.05)
        counts["produced"] += 1
        if i % 5000 == 0:
            producer.poll(0)
    assert producer.flush(300) == 0
    produce_s = time.monotonic() - started
    started = time.monotonic()
    result = run_stream(settings, until_caught_up=True)
    load_s = time.monotonic() - started

    checks: dict[str, bool] = {"exit 0 or 1": result.exit_code in (0, 1)}
    with connect(settings.warehouse, autocommit=True) as conn:
        conn.execute("CREATE TEMP TABLE want (trade_id uuid, ref text)")
        with conn.cursor() as cur, cur.copy("COPY want FROM STDIN") as copy:
            for k, v in expected_good.items():
                copy.write_row((k, v))
        missing = conn.execute(
            "SELECT count(*) FROM want w LEFT JOIN fact_trades f USING (trade_id) "
            "WHERE f.trade_id IS NULL OR f.trade_reference IS DISTINCT FROM w.ref"
        ).fetchone()
        extra = conn.execute("SELECT count(*) FROM fact_trades f WHERE NOT EXISTS "
                             "(SELECT 1 FROM want w WHERE w.trade_id = f.trade_id)").fetchone()  # fmt: skip
        issues = conn.execute(
            "SELECT count(*), count(DISTINCT (origin->>'topic', origin->>'partition', origin->>'offset')) "
            "FROM etl_data_quality_issues WHERE severity = 'ERROR'"
        ).fetchone()
        checks["every good record loaded once, verbatim"] = missing == (0,) and extra == (0,)
        checks["one ERROR issue per bad record"] = issues == (len(bad), len(bad))
        dlqs = [t.trade_events + settings.stream.dlq_suffix, t.trades_cdc + settings.stream.dlq_suffix]
        with DlqReader(settings.kafka, settings.stream.dlq_suffix) as reader:
            ranges = {(d, p): (lo, hi) for d in dlqs for p, (lo, hi) in reader.watermarks(d).items()}
            origins = [
                (m.origin_topic, m.origin_partition, m.origin_offset) for c in reader.read(ranges) for m in c
            ]
        checks["every bad record dead-lettered exactly once"] = sorted(origins) == sorted(bad)  # type: ignore[arg-type]
        consumer = make_consumer(settings.kafka, "hostile-watermarks")
        parts = []
        for topic in (t.trade_events, t.trades_cdc):
            meta = consumer.list_topics(topic, timeout=10).topics[topic]
            parts += [(topic, p) for p in meta.partitions]
        highs = {tp: consumer.get_watermark_offsets(TopicPartition(*tp), timeout=10)[1] for tp in parts}
        consumer.close()
        stored = positions.stored(conn, settings.stream.group_id, parts)
        checks["positions at the high watermark"] = {tp: stored.get(tp, 0) for tp in parts} == highs
    s = result.stats
    return {
        "messages": total,
        "good": len(expected_good),
        "bad": len(bad),
        "tombstones": acks,
        "rejected": s.rejected,
        "dead_letters": s.dlq,
        "exit_code": result.exit_code,
        "produce_s": round(produce_s, 1),
        "load_s": round(load_s, 1),
        "throughput_msg_s": round(total / load_s),
        "checks": checks,
        "ok": all(checks.values()),
        "live_trades": len(expected_good),
        "deleted_trades": 0,
        "quotes": 0,
    }


_ID = re.compile(rb'("(?:tradeId|id)": ")[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"')


def _fresh_id(case: Case) -> Case:
    if case.value is None:
        return case
    value = _ID.sub(lambda m: m.group(1) + str(uuid.uuid4()).encode() + b'"', case.value, count=1)
    return Case(case.route, case.key, value, case.fate, why=case.why)


def hostile_pool_texts(rnd: random.Random) -> list[str]:
    """Good reference texts: a few drawn by hypothesis from the storable space, plus fixed hard ones."""
    from hypothesis import HealthCheck, Phase, given, settings

    texts = ["", "\\u0000", "\\", '"', "\u2028", "\U0010fffd", "\ufffe", "a\r\nb", "\\.", "NULL"]

    @settings(
        max_examples=20, phases=[Phase.generate], database=None, suppress_health_check=list(HealthCheck)
    )
    @given(storable_text)
    def collect(text: str) -> None:
        texts.append(text)

    collect()
    rnd.shuffle(texts)
    return texts
