"""Exactly one dead letter per bad record: a retried batch, and a run that dies after its letters
were flushed but before its transaction committed, do not publish a letter twice."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import sql

from orion_etl.adapters.dlq import DeadLetterPublisher
from orion_etl.config.models import OrionSettings
from orion_etl.core.offset_reset import ResetTarget, TargetKind
from orion_etl.jobs.stream import run_stream
from orion_etl.jobs.stream_positions import reset_offsets
from tests.integration.stream_support import STREAM_TABLES, drain, produce, read_topic, stream_settings
from tests.stream_builders import dumps, trade_event

pytestmark = pytest.mark.integration


class Crash(BaseException):
    """Stands for kill -9: nothing after it runs (not an error the loader handles)."""


@pytest.fixture
def wh(warehouse: psycopg.Connection) -> psycopg.Connection:
    warehouse.execute(
        sql.SQL("TRUNCATE {}").format(
            sql.SQL(", ").join(sql.Identifier(t) for t in [*STREAM_TABLES, "etl_dlq_first_floors"])
        )
    )
    return warehouse


def _crash_after_flush(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    flushed: list[int] = []
    original = DeadLetterPublisher.flush

    def flush(self: DeadLetterPublisher, timeout_s: float = 30.0) -> None:
        original(self, timeout_s)
        flushed.append(1)
        raise Crash()

    monkeypatch.setattr(DeadLetterPublisher, "flush", flush)
    return flushed


def _letters(settings: OrionSettings, want: int) -> list[Any]:
    topic = settings.stream.topics.trade_events + settings.stream.dlq_suffix
    return read_topic(settings, topic, want + 5, timeout_s=4)


def test_a_crash_between_flush_and_commit_publishes_no_letter_twice(
    stack_settings: OrionSettings,
    topic_name: Callable[[str], str],
    wh: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = stream_settings(stack_settings, topic_name)
    t = settings.stream.topics
    good = [trade_event() for _ in range(3)]
    bad = [trade_event(quantity="-1"), trade_event(tradeReference="A\u0000B")]

    # 1. the very first batch of a partition (no positions committed yet)
    produce(settings, [(t.trade_events, None, dumps(e)) for e in [good[0], bad[0]]])
    with monkeypatch.context() as m:
        flushed = _crash_after_flush(m)
        with pytest.raises(Crash):
            drain(settings)
        assert flushed == [1]
    assert wh.execute("SELECT count(*) FROM fact_trades").fetchone() == (0,)  # nothing committed
    assert len(_letters(settings, 1)) == 1  # but the letter was published
    first = drain(settings)
    assert first.stats.loaded == 1 and first.exit_code == 1
    assert len(_letters(settings, 1)) == 1  # not again

    # 2. a later batch (positions committed before), crashing twice in a row
    produce(settings, [(t.trade_events, None, dumps(e)) for e in [good[1], bad[1], good[2]]])
    with monkeypatch.context() as m:
        _crash_after_flush(m)
        for _ in range(2):
            with pytest.raises(Crash):
                drain(settings)
    after = drain(settings)
    assert after.stats.loaded == 2 and after.stats.dlq == 1
    letters = _letters(settings, 2)
    assert len(letters) == 2
    origins = sorted(int(dict(m.headers())["dlq.origin_offset"]) for m in letters)
    assert origins == [1, 3]
    assert wh.execute("SELECT count(*) FROM etl_data_quality_issues WHERE severity = 'ERROR'").fetchone() == (
        2,
    )


def test_a_reset_backwards_re_reads_without_a_second_letter(
    stack_settings: OrionSettings, topic_name: Callable[[str], str], wh: psycopg.Connection
) -> None:
    """`stream offsets reset --to-earliest` then a reload: the re-read records load once (the
    loader's writes are idempotent) and the bad ones are not dead-lettered again, also when the
    re-read stops after its first commit and a later run finishes it (the floor stored by that
    commit must still lie below the letters of the records not re-read yet)."""
    settings = stream_settings(stack_settings, topic_name, batch_max_messages=2)
    t = settings.stream.topics
    events = [
        trade_event(),
        trade_event(quantity="-1"),
        trade_event(),
        trade_event(),
        trade_event(tradeReference="A\u0000B"),
        trade_event(),
    ]
    produce(settings, [(t.trade_events, None, dumps(e)) for e in events])
    first = drain(settings)
    assert first.stats.loaded == 4 and first.stats.dlq == 2
    facts = wh.execute("SELECT count(*) FROM fact_trades").fetchone()
    assert facts == (4,)

    def reset() -> None:
        report = reset_offsets(settings, ResetTarget(TargetKind.EARLIEST), topics=[t.trade_events])
        assert report.changed == 1 and [(r.current, r.new) for r in report.plan] == [(6, 0)]

    reset()
    again = drain(settings)
    assert again.stats.messages == 6 and again.stats.loaded == 0  # re-read: duplicates, not loaded
    assert len(_letters(settings, 2)) == 2  # (stats.dlq counts the bad records, not what is published)
    assert wh.execute("SELECT count(*) FROM fact_trades").fetchone() == facts

    reset()
    part = run_stream(settings, max_messages=2)  # commits [0, 2) (letter of 1 known), then stops
    assert part.stats.messages == 2
    assert wh.execute(
        "SELECT next_offset FROM etl_consumer_offsets WHERE consumer_group = %s", (settings.stream.group_id,)
    ).fetchone() == (2,)
    rest = drain(settings)
    assert rest.stats.messages == 4
    letters = _letters(settings, 2)
    assert sorted(int(dict(m.headers())["dlq.origin_offset"]) for m in letters) == [1, 4]
    assert wh.execute("SELECT count(*) FROM fact_trades").fetchone() == facts
    # (the DQ issue rows are a log of each read: a re-read after a reset writes them again)
