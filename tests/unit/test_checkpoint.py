"""The checkpoint's state machine and commit order, against in-memory stand-ins of its narrow
interfaces (positions store, consumer positions, dead-letter sink). The real compare-and-set,
Kafka and the DLQ are covered by tests/integration (test_stream*.py, test_dims_cdc.py)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import psycopg
import pytest

from orion_etl.adapters.positions import FencedError, Floors
from orion_etl.core.records import KafkaRecord
from orion_etl.jobs.checkpoint import Batch, Checkpoint, LetterHooks
from orion_etl.jobs.retrying import Retry

T = "cdc.public.trades"
P0, P1 = (T, 0), (T, 1)
Partition = tuple[str, int]


class Store:
    """Positions as `etl_consumer_offsets` holds them; `claim` is the compare-and-set."""

    def __init__(self, events: list[str], positions: dict[Partition, int] | None = None) -> None:
        self.events = events
        self.positions = dict(positions or {})
        self.first_floors: dict[Partition, Floors] = {}

    def stored_floors(
        self, partitions: Iterable[Partition]
    ) -> tuple[dict[Partition, int], dict[Partition, tuple[int, Floors]]]:
        stored = {tp: self.positions[tp] for tp in partitions if tp in self.positions}
        return stored, {tp: (o, {0: 0}) for tp, o in stored.items()}

    def note_first_floors(self, floors: dict[Partition, Floors]) -> None:
        self.events.append("note first floors")
        self.first_floors.update(floors)

    def claim(self, offsets: Mapping[Partition, int], expected: Mapping[Partition, int | None]) -> None:
        if any(self.positions.get(tp) != expected.get(tp) for tp in offsets):
            raise FencedError("fenced")
        self.positions.update(offsets)


class Consumer:
    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.seeks: list[tuple[Partition, int | None]] = []
        self.commits: list[dict[Partition, int]] = []

    def seek(self, partition: Partition, offset: int | None) -> None:
        self.seeks.append((partition, offset))

    def commit_async(self, offsets: Mapping[Partition, int]) -> None:
        self.events.append("kafka commit")
        self.commits.append(dict(offsets))


class Letters:
    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.published: list[Any] = []
        self.forgotten: list[dict[Partition, int | None]] = []
        self.recalled: list[dict[Partition, tuple[int, Floors]]] = []

    def floors(self, origin_topics: Iterable[str]) -> dict[str, Floors]:
        return {t: {0: 7} for t in origin_topics}

    def publish(self, letters: list[Any]) -> int:
        self.events.append("publish letters")
        self.published += letters
        return len(letters)

    def flush(self, timeout_s: float = 30.0) -> None:
        self.events.append("flush letters")

    def forget(self, partitions: dict[Partition, int | None]) -> None:
        self.events.append("forget revoked" if None in partitions.values() else "forget committed")
        self.forgotten.append(dict(partitions))

    def recall(self, reader: Any, partitions: dict[Partition, tuple[int, Floors]]) -> int:
        self.recalled.append(dict(partitions))
        return 0


class Rig:
    """A checkpoint wired to the stand-ins; `run(batch)` is a batch's warehouse transaction."""

    def __init__(self, positions: dict[Partition, int] | None = None) -> None:
        self.events: list[str] = []
        self.store = Store(self.events, positions)
        self.consumer = Consumer(self.events)
        self.letters = Letters(self.events)
        self.invalidated = 0
        self.fenced = 0
        self.resets = 0
        self.accounted: list[tuple[str, dict[Partition, int]]] = []
        self.fail_next: list[BaseException] = []
        self.pause_s = 0.0
        retry = Retry(stopping=lambda: False, max_backoff_s=0.001)
        self.checkpoint: Checkpoint[str, str] = Checkpoint(
            self.store,
            retry,
            publisher=self.letters,
            reader=object(),  # type: ignore[arg-type]  # only handed to the sink's recall
            invalidate=self._invalidate,
            on_committed=lambda b, result, _ms: self._accounted(b, result),
            on_fenced=self._fenced,
            reset=self._reset,
        )
        self.checkpoint.consumer = self.consumer

    def _invalidate(self) -> None:
        self.invalidated += 1

    def _fenced(self, _exc: FencedError) -> None:
        self.fenced += 1

    def _reset(self) -> None:
        self.resets += 1

    def _accounted(self, batch: Batch[str], result: str) -> None:
        self.events.append("accounted")
        self.accounted.append((result, dict(batch.offsets)))

    def run(self, batch: Batch[str]) -> Any:
        def transaction(expected: dict[Partition, int | None], hooks: LetterHooks) -> str:
            if self.fail_next:
                raise self.fail_next.pop(0)
            floors = hooks.floors()
            assert floors == {T: {0: 7}}
            self.store.claim(batch.offsets, expected)
            self.events.append("claim")
            time.sleep(self.pause_s)
            self.events.append("rows")
            hooks.before_commit()
            self.events.append("warehouse commit")
            return batch.item

        return transaction


def batch(name: str, offsets: dict[Partition, int], letters: list[Any] | None = None) -> Batch[str]:
    return Batch(name, offsets, lambda: letters or [])


def test_assignment_reads_stored_positions_and_recalls_letters() -> None:
    rig = Rig({P0: 5})
    assert rig.checkpoint.assign([P0, P1]) == {P0: 5}
    cp = rig.checkpoint
    assert (cp.assigned, cp.expected, cp.committed) == ({P0, P1}, {P0: 5, P1: None}, {P0: 5, P1: None})
    assert rig.letters.recalled == [{P0: (5, {0: 0})}]
    assert rig.invalidated == 1  # the warehouse may have changed while this process did not own P0


def test_a_batch_commits_letters_before_the_warehouse_and_kafka_after() -> None:
    rig = Rig()
    rig.checkpoint.assign([P0])
    rig.events.clear()
    rig.checkpoint.submit(batch("b1", {P0: 3}, ["letter"]), rig.run(batch("b1", {P0: 3})))
    assert rig.checkpoint.settle()
    assert rig.events == [
        "claim",  # 1. the fence, first in the transaction
        "rows",  # 2.
        "note first floors",  # 3. (a partition never committed: its floor noted first)
        "publish letters",
        "flush letters",
        "warehouse commit",  # 4.
        "forget committed",  # 5.
        "accounted",
        "kafka commit",
    ]
    assert rig.store.first_floors == {P0: {0: 7}}
    assert rig.consumer.commits == [{P0: 3}]
    assert rig.letters.forgotten == [{P0: 3}]  # committed: never re-read by this process


def test_positions_advance_at_submit_and_at_commit() -> None:
    rig = Rig({P0: 5})
    cp = rig.checkpoint
    cp.assign([P0, P1])
    rig.pause_s = 0.05
    b1, b2 = batch("b1", {P0: 8, P1: 2}), batch("b2", {P0: 10})
    cp.submit(b1, rig.run(b1))
    cp.submit(b2, rig.run(b2))
    # the next batch claims from where the one before ends; nothing committed is assumed yet
    assert cp.expected == {P0: 10, P1: 2}
    assert cp.committed == {P0: 5, P1: None}
    assert cp.settle(keep=1)  # the oldest is accounted, one may stay in flight
    assert cp.committed == {P0: 8, P1: 2} and len(cp.inflight) == 1
    assert cp.settle()
    assert cp.committed == {P0: 10, P1: 2}
    assert rig.store.positions == {P0: 10, P1: 2}
    assert [name for name, _ in rig.accounted] == ["b1", "b2"]


def test_a_fenced_batch_voids_the_ones_after_it_and_reseeks() -> None:
    rig = Rig({P0: 5, P1: 0})
    cp = rig.checkpoint
    cp.assign([P0, P1])
    rig.store.positions[P0] = 20  # another consumer of the group committed P0 meanwhile
    cp.pending = [KafkaRecord(T, 1, 0, None, b"{}")]
    b1, b2 = batch("b1", {P0: 8}), batch("b2", {P0: 10, P1: 4})
    cp.submit(b1, rig.run(b1))
    cp.submit(b2, rig.run(b2))
    invalidated = rig.invalidated
    assert not cp.settle()
    assert rig.fenced == 1 and rig.invalidated == invalidated + 1
    assert rig.accounted == [] and rig.consumer.commits == []  # b2 claims from b1's end: void too
    assert not cp.inflight
    assert sorted(rig.consumer.seeks) == [(P0, 20), (P1, 0)]
    assert cp.expected == cp.committed == {P0: 20, P1: 0}
    assert cp.pending == []  # read from positions that are void
    assert rig.letters.recalled[-1] == {P0: (20, {0: 0}), P1: (0, {0: 0})}


def test_the_claim_refuses_and_commit_raises_for_a_caller_committing_in_line() -> None:
    rig = Rig({P0: 5})
    cp = rig.checkpoint
    cp.assign([P0])
    rig.store.positions[P0] = 9
    b1 = batch("b1", {P0: 7})
    with pytest.raises(FencedError):
        cp.commit(b1, rig.run(b1))
    assert rig.fenced == 1 and rig.store.positions == {P0: 9} and rig.accounted == []
    cp.reseek()
    assert cp.expected == {P0: 9} and rig.consumer.seeks == [(P0, 9)]
    b2 = batch("b2", {P0: 12})
    assert cp.commit(b2, rig.run(b2)) == "b2"
    assert cp.committed == {P0: 12} and rig.consumer.commits == [{P0: 12}]


def test_a_transient_failure_retries_the_batch_on_a_reset_connection() -> None:
    rig = Rig({P0: 5})
    cp = rig.checkpoint
    cp.assign([P0])
    rig.fail_next = [psycopg.OperationalError("server closed the connection unexpectedly")]
    b1 = batch("b1", {P0: 6})
    cp.submit(b1, rig.run(b1))
    assert cp.settle()
    assert rig.resets == 1 and rig.store.positions == {P0: 6} and cp.committed == {P0: 6}


def test_a_terminal_failure_stops_with_the_caches_invalidated() -> None:
    rig = Rig({P0: 5})
    cp = rig.checkpoint
    cp.assign([P0])
    invalidated = rig.invalidated
    rig.fail_next = [psycopg.errors.UndefinedTable("relation does not exist")]
    b1 = batch("b1", {P0: 6})
    cp.submit(b1, rig.run(b1))
    with pytest.raises(psycopg.errors.UndefinedTable):
        cp.settle()
    assert rig.resets == 0 and rig.invalidated == invalidated + 1
    assert rig.store.positions == {P0: 5} and cp.committed == {P0: 5}


def test_revoke_finishes_the_batch_in_flight_then_hands_the_partition_over() -> None:
    rig = Rig({P0: 5, P1: 0})
    cp = rig.checkpoint
    cp.assign([P0, P1])
    rig.pause_s = 0.2  # still committing when the revoke comes
    b1 = batch("b1", {P0: 9, P1: 1})
    cp.submit(b1, rig.run(b1))
    cp.pending = [KafkaRecord(T, 0, 9, None, b"{}"), KafkaRecord(T, 1, 1, None, b"{}")]
    cp.revoke([P0])
    assert rig.events[-7:] == [
        "claim",
        "rows",
        "warehouse commit",
        "forget committed",
        "accounted",
        "kafka commit",
        "forget revoked",  # only once the batch in flight is accounted
    ]
    assert rig.store.positions == {P0: 9, P1: 1}  # committed before the partition went
    assert cp.assigned == {P1} and cp.expected == {P1: 1} and cp.committed == {P1: 1}
    assert [(r.partition, r.offset) for r in cp.pending] == [(1, 1)]
    assert rig.letters.forgotten[-1] == {P0: None}


def test_unassigned_time_runs_from_the_moment_the_assignment_became_empty() -> None:
    """`stream --until-caught-up` ends on "nothing assigned for assignment_timeout_s": a rebalance
    in a long run empties the assignment for a moment, which must not count as that long."""
    rig = Rig()
    cp = rig.checkpoint
    cp.unassigned_since = time.monotonic() - 3600  # subscribed an hour ago, never assigned
    assert cp.unassigned_for() >= 3600
    cp.assign([("t", 0), ("t", 1)])
    assert cp.unassigned_for() == 0.0
    time.sleep(0.01)
    cp.revoke([("t", 0)])
    assert cp.unassigned_for() == 0.0  # one partition left
    cp.revoke([("t", 1)])  # a rebalance takes everything, an hour into the run
    assert 0.0 <= cp.unassigned_for() < 5.0
    cp.assign([("t", 1)])
    assert cp.unassigned_for() == 0.0
