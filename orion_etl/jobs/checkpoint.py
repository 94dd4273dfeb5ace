"""The checkpoint of a consumer that writes the warehouse: where it is, and how a batch commits.

Effectively-once: a consumer's Kafka positions live in `etl_consumer_offsets`, *claimed* in the
warehouse transaction that writes what a batch produced (compare-and-set against the positions the
batch started from; `orion_etl.adapters.positions.claim`). The offsets committed to Kafka are for
lag tools only; they are never read back. `stream` and `dims sync --from-cdc` share this object.

It owns, per assigned partition:
* `expected`: the position after the last *submitted* batch (what the next batch claims from);
* `committed`: the position after the last *committed* batch (lag, caught-up);
  the two differ while batches are in flight;
* `pending`: records read but not yet in a batch (the loop's; revoke and reseek drop them);
* `inflight`: batches handed to the commit thread, oldest first (the pipelined commit, `submit`);
* the state caches that hold warehouse state across batches (`invalidate`, e.g. the quote
  sampler's): cleared whenever the warehouse may hold something else (assignment, a fenced or failed batch).

A batch commits in this order (`commit`, `_accept`), each step only after the one before:
1. claim the positions, first thing in the batch's warehouse transaction, with the dead-letter
   floors (`LetterHooks.floors`): a process that lost the partition is fenced here (`FencedError`,
   the transaction rolls back, nothing of the batch is kept, every batch after it is void too);
2. the batch's rows, in the same transaction;
3. flush the batch's dead letters to Kafka (`LetterHooks.before_commit`), still inside the
   transaction: a letter is durable before the positions that skip its record are;
4. the warehouse commit;
5. account the batch (`on_committed`: stats, metrics), forget its letters, and commit its positions
   to Kafka (asynchronously, informational).
A fenced batch re-seeks every assigned partition to its stored position (`reseek`) and recalls the
letters already published for what will be read again; transient failures retry the batch
(`orion_etl.jobs.retrying.Retry`) with the connection reset.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from orion_etl.adapters.dlq import DeadLetter
from orion_etl.adapters.dlq_reader import DlqReader
from orion_etl.adapters.positions import FencedError, Floors
from orion_etl.core.records import KafkaRecord
from orion_etl.jobs.retrying import Retry

log = logging.getLogger(__name__)
Partition = tuple[str, int]  # (topic, partition)
B = TypeVar("B")  # a batch, as the job prepares it
C = TypeVar("C")  # what committing a batch returned (e.g. LoadCounts)


class OffsetStore(Protocol):
    """Where positions are stored (the warehouse; `WarehouseLoader`, `positions.OffsetStore`)."""

    def stored_floors(
        self, partitions: Iterable[Partition]
    ) -> tuple[dict[Partition, int], dict[Partition, tuple[int, Floors]]]: ...

    def note_first_floors(self, floors: dict[Partition, Floors]) -> None: ...


class PositionConsumer(Protocol):
    """The consumer, as far as positions go (`orion_etl.adapters.kafka.RecordConsumer`)."""

    def seek(self, partition: Partition, offset: int | None) -> None: ...

    def commit_async(self, offsets: Mapping[Partition, int]) -> None: ...


class LetterSink(Protocol):
    """Where dead letters go, exactly once per record (`orion_etl.adapters.dlq.DeadLetterPublisher`)."""

    def floors(self, origin_topics: Iterable[str]) -> dict[str, Floors]: ...

    def publish(self, letters: list[DeadLetter]) -> int: ...

    def flush(self, timeout_s: float = ...) -> None: ...

    def forget(self, partitions: dict[Partition, int | None]) -> None: ...

    def recall(self, reader: DlqReader, partitions: dict[Partition, tuple[int, Floors]]) -> int: ...


@dataclass
class Batch(Generic[B]):
    """A batch of the checkpoint: what the job made of it, and the next position per partition."""

    item: B
    offsets: dict[Partition, int]
    letters: Callable[[], list[DeadLetter]] = lambda: []  # its dead letters (known by step 3)


class LetterHooks:
    """Steps 1 and 3 for one batch (`WarehouseLoader.commit_batch`'s `CommitHooks`): the DLQ floors
    stored with the claim; the letters published and flushed before the commit."""

    def __init__(
        self,
        publisher: LetterSink | None,
        store: OffsetStore,
        offsets: Mapping[Partition, int],
        expected: Mapping[Partition, int | None],
        letters: Callable[[], list[DeadLetter]],
    ) -> None:
        self.publisher = publisher
        self.store = store
        self.offsets = offsets
        self.expected = expected
        self.letters = letters

    def floors(self) -> dict[str, Floors] | None:
        if self.publisher is None:
            return None
        return self.publisher.floors({t for t, _ in self.offsets})

    def before_commit(self) -> None:
        letters = self.letters()
        if not letters or self.publisher is None:
            return
        # partitions never committed have no floor with their positions yet: note one first
        first = {tp for tp in self.offsets if self.expected.get(tp) is None}
        if first:
            floors = self.publisher.floors({t for t, _ in first})
            self.store.note_first_floors({(t, p): floors[t] for t, p in first if t in floors})
        self.publisher.publish(letters)
        self.publisher.flush()


# A batch's warehouse transaction (steps 1-4): given the positions it claims from and its hooks.
Transaction = Callable[[dict[Partition, int | None], LetterHooks], C]


class Checkpoint(Generic[B, C]):
    """Positions, fencing, reseek, batches in flight and state caches of one consumer (module doc)."""

    def __init__(
        self,
        store: OffsetStore,
        retry: Retry,
        *,
        publisher: LetterSink | None = None,
        reader: DlqReader | None = None,
        invalidate: Callable[[], None] = lambda: None,
        depth: int = 2,
        on_committed: Callable[[Batch[B], C, float], None] = lambda _b, _c, _ms: None,
        on_fenced: Callable[[FencedError], None] = lambda _e: None,
        reset: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.retry = retry
        self.publisher = publisher
        self.reader = reader
        self._invalidate = invalidate  # clears the state caches (they are the job's)
        self.depth = depth  # batches in flight at most (one committing, the others waiting)
        self.on_committed = on_committed
        self.on_fenced = on_fenced
        self.reset = reset  # before a batch's transaction is retried (drop its connection)
        self.consumer: PositionConsumer | None = None
        self.assigned: set[Partition] = set()
        # monotonic time the assignment last became empty (or the checkpoint was made); None while
        # partitions are assigned. A rebalance empties it for a moment: "nothing assigned for
        # long" must be timed from then, not from the start of the run.
        self.unassigned_since: float | None = time.monotonic()
        self.expected: dict[Partition, int | None] = {}
        self.committed: dict[Partition, int | None] = {}
        self.pending: list[KafkaRecord] = []
        self.inflight: deque[tuple[Future[tuple[C, float]], Batch[B]]] = deque()
        self._executor: ThreadPoolExecutor | None = None

    @property
    def executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orion-commit")
        return self._executor

    def invalidate(self) -> None:
        """Forget the warehouse state cached across batches (it may have changed under us)."""
        self._invalidate()

    # --- assignment ----------------------------------------------------------------------

    def assign(self, partitions: list[Partition]) -> dict[Partition, int]:
        """Partitions came in: their stored positions (absent: never committed, start from the
        configured end), after the batches in flight are settled and letters already published
        for what will be re-read are recalled."""
        self.settle(reseek=False)
        self.invalidate()
        stored = self._stored(partitions)
        for key in partitions:
            self.expected[key] = self.committed[key] = stored.get(key)
            self.assigned.add(key)
        if self.assigned:
            self.unassigned_since = None
        return stored

    def revoke(self, partitions: Iterable[Partition]) -> None:
        """Partitions go: finish the batches in flight before handing over, drop their records."""
        self.settle(reseek=False)
        gone = set(partitions)
        self.pending = [r for r in self.pending if (r.topic, r.partition) not in gone]
        for key in gone:
            self.assigned.discard(key)
            self.expected.pop(key, None)
            self.committed.pop(key, None)
        if not self.assigned and self.unassigned_since is None:
            self.unassigned_since = time.monotonic()
        if self.publisher is not None:
            self.publisher.forget(dict.fromkeys(gone))

    def take_pending(self) -> list[KafkaRecord]:
        """The records read and not yet in a batch, handed over (`pending` starts empty again)."""
        records, self.pending = self.pending, []
        return records

    def unassigned_for(self, now: float | None = None) -> float:
        """Seconds since the assignment became empty (0 while partitions are assigned)."""
        if self.unassigned_since is None:
            return 0.0
        return (time.monotonic() if now is None else now) - self.unassigned_since

    def reseek(self) -> None:
        """After a fenced batch: continue every assigned partition from its stored position."""
        keys = sorted(self.assigned | set(self.expected))
        stored = self._stored(keys)
        self.pending = []
        for key in keys:
            self.expected[key] = self.committed[key] = stored.get(key)
            if self.consumer is not None:
                self.consumer.seek(key, stored.get(key))

    def _stored(self, partitions: list[Partition]) -> dict[Partition, int]:
        stored, floors = self.retry(lambda: self.store.stored_floors(partitions))
        if self.publisher is not None and self.reader is not None and floors:
            # letters a crashed (or fenced) process published for records this one re-reads
            publisher, reader = self.publisher, self.reader
            self.retry(lambda: publisher.recall(reader, floors))
        return stored

    # --- committing ----------------------------------------------------------------------

    def begin(self, offsets: Mapping[Partition, int]) -> dict[Partition, int | None]:
        """The positions a batch ending at `offsets` claims from; the next batch claims from its end."""
        expected = {tp: self.expected.get(tp) for tp in offsets}
        self.expected.update(offsets)
        return expected

    def _transaction(self, batch: Batch[B], expected: dict[Partition, int | None], run: Transaction[C]) -> C:
        hooks = LetterHooks(self.publisher, self.store, batch.offsets, expected, batch.letters)
        return self.retry(lambda: run(expected, hooks), reset=self.reset)

    def commit(self, batch: Batch[B], run: Transaction[C]) -> C:
        """Commit one batch now (steps 1-5); `FencedError` when fenced (then call `reseek`)."""
        expected = self.begin(batch.offsets)
        try:
            result = self._transaction(batch, expected, run)
        except FencedError as exc:
            self.on_fenced(exc)
            self.invalidate()
            raise
        except BaseException:
            self.invalidate()
            raise
        self._accept(batch, result, time.time() * 1000)
        return result

    def submit(self, batch: Batch[B], run: Transaction[C]) -> None:
        """Hand a batch to the commit thread (steps 1-4 there; step 5 when settled, here)."""
        expected = self.begin(batch.offsets)

        def commit() -> tuple[C, float]:
            return self._transaction(batch, expected, run), time.time() * 1000

        self.inflight.append((self.executor.submit(commit), batch))

    def busy(self) -> bool:
        """Whether the commit thread has as many batches as it takes (committing and waiting)."""
        return sum(not future.done() for future, _ in self.inflight) >= self.depth

    def settle(self, *, reseek: bool = True, keep: int = 0) -> bool:
        """Wait for batches in flight, oldest first, until at most `keep` remain, and account them.

        False when one was fenced: every batch after it is then void too (it claims positions
        from where the fenced one would have ended), so all are waited for, and re-seeked.
        """
        fenced = False
        while len(self.inflight) > (0 if fenced else keep):
            future, batch = self.inflight.popleft()
            try:
                result, committed_ms = future.result()
            except FencedError as exc:
                if not fenced:
                    log.warning("%s", exc.message)
                    self.on_fenced(exc)
                    self.invalidate()
                fenced = True
                continue
            except BaseException:
                self.invalidate()
                raise
            self._accept(batch, result, committed_ms)
        if fenced and reseek:
            self.reseek()
        return not fenced

    def settle_or_discard(self) -> None:
        """Settle every batch in flight; `FencedError` when one was fenced (what the caller
        prepares from warehouse state read now would follow a void batch)."""
        if not self.settle():
            raise FencedError("the previous batch was fenced")

    def _accept(self, batch: Batch[B], result: C, committed_ms: float) -> None:
        """Step 5: a committed batch's positions, accounting, letters and Kafka commit."""
        self.committed.update(batch.offsets)
        if self.publisher is not None:
            self.publisher.forget(dict(batch.offsets))  # committed: never re-read here
        self.on_committed(batch, result, committed_ms)
        if self.consumer is not None:
            self.consumer.commit_async(batch.offsets)  # for lag monitoring only; never read back

    def close(self) -> None:
        """Let the commits in flight finish (an error interrupted the loop), stop the thread."""
        while self.inflight:
            self.inflight.popleft()[0].exception()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
