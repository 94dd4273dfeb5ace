"""The loader releases a prepared batch's records (issue #20: memory); a row PostgreSQL refuses
at commit time has its record read again for its dead letter (`_BatchLetters.rejected`). The
read itself is `adapters.kafka.read_records`, tested against the broker in
tests/integration/test_stream_released_values.py; here it is a stand-in."""

from __future__ import annotations

from typing import Any

from orion_etl.adapters.warehouse_loader import BatchWrite, Rejection
from orion_etl.config.models import OrionSettings
from orion_etl.core.records import KafkaRecord
from orion_etl.jobs.checkpoint import Checkpoint, LetterHooks
from orion_etl.jobs.stream import _BatchLetters
from orion_etl.jobs.stream_batch import BatchPreparer, PreparedBatch


def _refused(offset: int) -> Rejection:
    return Rejection("fact_trades", "t", 0, offset, "23514", "check violated", key=f"k{offset}")


def _letters(
    kafka: dict[tuple[str, int, int], KafkaRecord],
) -> tuple[_BatchLetters, PreparedBatch, list[Any]]:
    calls: list[Any] = []

    def read_again(wanted: list[tuple[str, int, int]]) -> dict[tuple[str, int, int], KafkaRecord]:
        calls.append(wanted)
        return {c: kafka[c] for c in wanted if c in kafka}

    prepared = PreparedBatch(BatchWrite())  # released: no records
    hooks = LetterHooks(None, None, {}, {}, lambda: [])  # type: ignore[arg-type]
    preparer = BatchPreparer(OrionSettings(), None)  # type: ignore[arg-type]  # (no warehouse needed)
    return _BatchLetters(preparer, prepared, hooks, read_again), prepared, calls


def test_refused_rows_get_their_records_read_again_once() -> None:
    record = KafkaRecord("t", 0, 7, b"key", b'{"a": 1}', 1_700_000_000_000, [("h", b"v")])
    letters, prepared, calls = _letters({("t", 0, 7): record})

    issues = letters.rejected([_refused(7)])
    assert calls == [[("t", 0, 7)]]
    assert [lt.record for lt in prepared.rejected] == [record]
    assert issues[0]["record_data"] == {"raw": '{"a": 1}'}
    letters.rejected([_refused(7)])  # a retried attempt: the record is kept, not read again
    assert calls == [[("t", 0, 7)]] and len(prepared.rejected) == 1


def test_a_record_kafka_no_longer_holds_keeps_its_letter_without_value() -> None:
    letters, prepared, calls = _letters({})

    issues = letters.rejected([_refused(3), _refused(1)])
    assert calls == [[("t", 0, 1), ("t", 0, 3)]]
    assert sorted((lt.record.offset, lt.record.value) for lt in prepared.rejected) == [(1, None), (3, None)]
    assert [i["origin"]["offset"] for i in issues] == [3, 1]


def test_take_pending_hands_the_records_over() -> None:
    checkpoint: Checkpoint[Any, Any] = Checkpoint(None, None)  # type: ignore[arg-type]
    records = [KafkaRecord("t", 0, i, None, b"x") for i in range(3)]
    checkpoint.pending.extend(records)
    assert checkpoint.take_pending() == records
    assert checkpoint.pending == []
