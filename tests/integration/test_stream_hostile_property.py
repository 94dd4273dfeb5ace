"""Property (issue 14): hostile records mixed at random with good ones, on CDC and event topics, run
through the real loader against the real stack. For every generated run: every good record is
loaded exactly once with its text verbatim, every bad record is dead-lettered exactly once with a
reason (and one ERROR issue row), tombstones are acknowledged, the exit code is 0 or 1 (never 3)
and the stored positions are at the high watermark. 20 runs of 500 records (10,000 records)."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from confluent_kafka import TopicPartition
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from psycopg import sql

from orion_etl.adapters import positions
from orion_etl.adapters.dlq_reader import DlqReader
from orion_etl.adapters.kafka import make_consumer, make_producer
from orion_etl.adapters.postgres import connect
from orion_etl.config.models import OrionSettings
from tests.hostile_records import (
    ACK,
    DLQ,
    LOAD,
    REFUSE_CONSTRAINT,
    UNDO_REFUSE,
    Case,
    hostile_case,
    mix,
    storable_text,
)
from tests.integration.stream_support import STREAM_TABLES, drain, stream_settings

pytestmark = pytest.mark.integration
RUNS = int(os.environ.get("ORION_HOSTILE_RUNS", "20"))
RECORDS_PER_RUN = 500


@pytest.fixture(scope="module")
def stage(stack_settings: OrionSettings, run_id: str) -> Iterator[dict[str, Any]]:
    """One set of topics and one group for all runs (each run checks only its own records)."""
    settings = stream_settings(stack_settings, lambda base: f"prop.{run_id}.{base}", quote_sample_every=1)
    with connect(settings.warehouse, autocommit=True) as conn:
        conn.execute(
            sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(sql.Identifier(t) for t in STREAM_TABLES))
        )
        conn.execute(REFUSE_CONSTRAINT)  # type: ignore[arg-type]  # test-owned literal DDL
        try:
            yield {"settings": settings, "conn": conn, "runs": 0, "records": 0}
        finally:
            conn.execute(UNDO_REFUSE)  # type: ignore[arg-type]


def _produce(settings: OrionSettings, cases: list[Case]) -> list[tuple[str, int, int]]:
    """Produce in order; the origin coordinates of each case."""
    t = settings.stream.topics
    producer = make_producer(settings.kafka, **{"linger.ms": 10})
    coords: list[tuple[str, int, int] | None] = [None] * len(cases)

    def delivered(i: int) -> Callable[[Any, Any], None]:
        def cb(err: Any, msg: Any) -> None:
            assert err is None, err
            coords[i] = (msg.topic(), msg.partition(), msg.offset())

        return cb

    for i, case in enumerate(cases):
        topic = t.trade_events if case.route == "event" else t.trades_cdc
        producer.produce(topic, key=case.key, value=case.value, on_delivery=delivered(i))
        producer.poll(0)
    assert producer.flush(60) == 0
    assert None not in coords
    return coords  # type: ignore[return-value]


def _high_watermarks(settings: OrionSettings, parts: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    consumer = make_consumer(settings.kafka, "prop-watermarks")
    try:
        return {tp: consumer.get_watermark_offsets(TopicPartition(*tp), timeout=10)[1] for tp in parts}
    finally:
        consumer.close()


@settings(
    max_examples=RUNS,
    deadline=None,
    # no shrinking: each step would be a loader run; a failure reports its whole example
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(
    hostile=st.lists(hostile_case(), min_size=10, max_size=40),
    texts=st.lists(storable_text, min_size=1, max_size=12),
    seed=st.integers(0, 2**32),
    batch=st.sampled_from([7, 64, 500, 5000]),
)
def test_hostile_records_never_stop_the_loader(
    stage: dict[str, Any], hostile: list[Case], texts: list[str], seed: int, batch: int
) -> None:
    base: OrionSettings = stage["settings"]
    conn: psycopg.Connection = stage["conn"]
    settings = base.model_copy(
        update={"stream": base.stream.model_copy(update={"batch_max_messages": batch})}
    )
    t = settings.stream.topics
    dlq_topics = [t.trade_events + settings.stream.dlq_suffix, t.trades_cdc + settings.stream.dlq_suffix]
    with DlqReader(settings.kafka, settings.stream.dlq_suffix) as reader:
        dlq_start = {(d, p): high for d in dlq_topics for p, (_, high) in reader.watermarks(d).items()}

    cases = mix(random.Random(seed), hostile, texts, RECORDS_PER_RUN)
    t0 = time.monotonic()
    coords = _produce(settings, cases)
    t1 = time.monotonic()
    result = drain(settings)
    print(f"run {stage['runs']}: produce {t1 - t0:.1f} s, drain {time.monotonic() - t1:.1f} s, batch {batch}")
    stage["runs"] += 1
    stage["records"] += len(cases)

    assert result.exit_code in (0, 1), result.stats.as_dict()
    assert result.stats.messages == len(cases)
    fate = dict(zip(coords, cases, strict=True))

    # every good record loaded once, its text verbatim
    good = {c.trade_id: c for c in cases if c.fate == LOAD}
    rows = conn.execute(
        "SELECT trade_id::text, trade_reference, src_topic, src_partition, src_offset FROM fact_trades "
        "WHERE trade_id = ANY(%s::uuid[])",
        (list(good),),
    ).fetchall()
    assert {r[0]: r[1] for r in rows} == {k: c.reference for k, c in good.items()}

    # every bad record dead-lettered exactly once, with a reason; nothing else dead-lettered
    with DlqReader(settings.kafka, settings.stream.dlq_suffix) as reader:
        ends = {(d, p): high for d in dlq_topics for p, (_, high) in reader.watermarks(d).items()}
        ranges = {tp: (dlq_start.get(tp, 0), end) for tp, end in ends.items()}
        letters = [m for chunk in reader.read(ranges) for m in chunk]
    origins = [(m.origin_topic, m.origin_partition, m.origin_offset) for m in letters]
    bad = {xy for xy, c in fate.items() if c.fate == DLQ}
    assert sorted(origins) == sorted(bad), {
        "missing": [fate[o].why for o in bad - set(origins)],
        "unexpected": [(fate[o].fate, fate[o].why) for o in set(origins) - bad if o in fate],  # type: ignore[index]
    }
    assert all(m.error and m.error_class for m in letters)
    issues = conn.execute(
        "SELECT origin->>'topic', (origin->>'partition')::int, (origin->>'offset')::bigint "
        "FROM etl_data_quality_issues WHERE severity = 'ERROR' AND job_run_id = %s::uuid",
        (result.job_run_id,),
    ).fetchall()
    assert sorted(issues) == sorted(bad)
    assert result.stats.tombstones == sum(1 for c in cases if c.fate == ACK)

    # positions at the high watermark
    parts = sorted({(tp[0], tp[1]) for tp in coords} | {(t.trades_cdc, 0), (t.trades_cdc, 1)})
    highs = _high_watermarks(settings, parts)
    stored = positions.stored(conn, settings.stream.group_id, parts)
    assert {tp: stored.get(tp, 0) for tp in parts} == highs
