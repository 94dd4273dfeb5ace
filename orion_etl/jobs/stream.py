"""`orion-etl stream`: the consume -> micro-batch -> transaction loop.

Effectively-once: the Kafka positions live in `etl_consumer_offsets`, written in the same
warehouse transaction as the rows they produced. On partition assignment the consumer seeks to
those stored positions (first deployment: `stream.start_from`). Offsets are also committed to Kafka
asynchronously after each warehouse commit, for lag monitoring only; they are never read back.

A batch closes on size (`stream.batch_max_messages`), on the age of its oldest record
(`stream.batch_max_ms`, the latency target) or when the consumer has nothing more to give while the
commit thread has room (`orion_etl.core.batching`: small batches at low rates, large at high
rates). Infrastructure failures (PostgreSQL or Kafka unavailable) retry the same batch with
exponential backoff until they succeed or the process is asked to stop; nothing is ever skipped.
SIGTERM/SIGINT finish the batch in hand (commit it), then close the consumer so the group rebalances at once.

No advisory lock: several processes in one consumer group are the scaling model; the
compare-and-set on `etl_consumer_offsets` fences a process that lost a partition.

This module is the loop; positions, fencing, reseek, the batches in flight and the commit
ordering are `orion_etl.jobs.checkpoint.Checkpoint`'s; counters and metrics are
`orion_etl.jobs.stream_stats`'s.
"""

from __future__ import annotations

import gc
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from types import FrameType
from typing import Any

from orion_etl.adapters.dlq import DeadLetterPublisher
from orion_etl.adapters.dlq_reader import DlqReader
from orion_etl.adapters.failures import is_warehouse_failure
from orion_etl.adapters.jobruns import JobRun, record_job_run
from orion_etl.adapters.kafka import (
    Coordinates,
    RecordConsumer,
    ensure_topics,
    make_consumer,
    make_producer,
    read_records,
)
from orion_etl.adapters.positions import FencedError, Floors
from orion_etl.adapters.warehouse_loader import LoadCounts, Rejection, WarehouseLoader
from orion_etl.config.models import OrionSettings
from orion_etl.core.batching import BatchPolicy, next_poll
from orion_etl.core.records import KafkaRecord
from orion_etl.errors import ExitCode, OrionError, TransientError
from orion_etl.jobs.checkpoint import Batch, Checkpoint, LetterHooks, Partition
from orion_etl.jobs.retrying import Retry
from orion_etl.jobs.stream_batch import BatchPreparer, PreparedBatch
from orion_etl.jobs.stream_stats import (
    RATE_WINDOW_S,
    BatchMetrics,
    StreamStats,
    Tally,
    log_progress,
    warn_dead_letters,
)

__all__ = ["CONSUMER_TUNING", "RATE_WINDOW_S", "StreamJob", "StreamResult", "StreamStats", "run_stream"]

log = logging.getLogger(__name__)
PIPELINE_DEPTH = 2  # batches handed to the commit thread at most (one committing, one waiting)
READ_AGAIN_TIMEOUT_S = 30.0  # reading refused rows' records again (then the batch is retried)
KEEP_ALIVE_S = 15.0  # how often the loader checks its ledger session (jobruns.JobRun.keep_alive)


# Consumer settings the loader fixes ([kafka.extra] overrides each of them).
CONSUMER_TUNING: dict[str, Any] = {
    "fetch.wait.max.ms": 50,  # latency: do not let the broker hold fetches long
    "statistics.interval.ms": 1000,  # keeps cached watermarks fresh (lag, caught-up)
    # Memory. librdkafka decompresses a whole fetch response at once, and lz4 packs 5 KB Debezium
    # envelopes (schema repeated in each) ~10-20x, so the *compressed* fetch size, not the queue
    # limit, sets the peak: 8 MiB fetches put the process at ~500 MiB, 2 MiB ones at ~400 MiB,
    # 1 MiB ones ~30 MiB lower, at the same drain rate (docs/benchmarks.md "Loader memory"). The
    # broker still returns one whole record batch when it is larger.
    "queued.max.messages.kbytes": 8192,
    "fetch.max.bytes": 1024 * 1024,
    "max.partition.fetch.bytes": 512 * 1024,
    # Throughput. Once the prefetch queue is over its bound, librdkafka waits fetch.queue.backoff.ms
    # (default 1000 ms) before fetching that partition again: with a small queue the loader then
    # starves for most of every second. 5 ms refills the queue as soon as the batch has taken it.
    "fetch.queue.backoff.ms": 5,
}


class StreamLoadError(OrionError):
    """A batch failed in the warehouse for a reason retrying cannot fix (exit 3)."""


@dataclass
class StreamResult:
    """What `run_stream` returns."""

    stats: StreamStats
    exit_code: int
    job_run_id: str


class StreamJob:
    """One loader process: consumer, DLQ producer, warehouse loader, and their checkpoint."""

    def __init__(
        self,
        settings: OrionSettings,
        *,
        group: str | None = None,
        until_caught_up: bool = False,
        max_messages: int | None = None,
        on_progress: Callable[[StreamStats], None] | None = None,
    ) -> None:
        self.settings = settings
        self.st = settings.stream
        self.group = group or self.st.group_id
        self.until_caught_up = until_caught_up
        self.max_messages = max_messages
        self.on_progress = on_progress
        self.stats = StreamStats()
        self.loader = WarehouseLoader(settings.warehouse, self.group)
        self.preparer = BatchPreparer(settings, self.loader)
        self.topics = list(dict.fromkeys(vars(self.st.topics).values()))
        self.stopping = False
        self.retry = Retry(
            stopping=lambda: self.stopping,
            max_backoff_s=self.st.retry_max_backoff_s,
            on_retry=self._count_retry,
            default_reset=self.loader.close_reader,
        )
        self.checkpoint: Checkpoint[PreparedBatch, LoadCounts] = Checkpoint(
            self.loader,
            self.retry,
            invalidate=lambda: self.preparer.sampler_cache.clear(),
            depth=PIPELINE_DEPTH,
            on_committed=self._committed,
            on_fenced=self._count_fenced,
            reset=self.loader.close,
        )
        self.metrics = BatchMetrics()
        self.submitted = 0
        self.job_run_id = ""
        self.ledger_run: JobRun | None = None
        self._last_keep_alive = time.monotonic()
        self._last_lag = 0.0

    def _count_retry(self) -> None:
        self.stats.retries += 1

    def _count_fenced(self, _exc: FencedError) -> None:
        self.stats.fenced += 1

    # --- signals ---------------------------------------------------------------------------

    def request_stop(self, signum: int | None = None, _frame: FrameType | None = None) -> None:
        if signum is not None:
            log.info("signal %s: finishing the current batch, then stopping", signum)
        self.stopping = True

    def _install_signals(self) -> list[tuple[int, Any]]:
        previous: list[tuple[int, Any]] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                previous.append((sig, signal.signal(sig, self.request_stop)))
            except ValueError:  # not the main thread (tests)
                break
        return previous

    # --- the loop --------------------------------------------------------------------------

    def run(self) -> StreamResult:
        previous = self._install_signals()
        try:
            with record_job_run(
                self.settings.warehouse, "stream", "STREAM", {"group": self.group, "topics": self.topics}
            ) as run:
                self.job_run_id = str(run.id)
                self.ledger_run = run
                log.info(
                    "started: group %s, topics %s, Kafka at %s",
                    self.group,
                    ", ".join(self.topics),
                    self.settings.kafka.bootstrap_servers,
                )
                try:
                    self._loop()
                except Exception as exc:
                    if not is_warehouse_failure(exc):
                        raise
                    detail = " ".join(str(exc).split())[:300] or type(exc).__name__
                    raise StreamLoadError(
                        f"a batch could not be loaded ({type(exc).__name__}: {detail}); nothing of it was "
                        "committed, it is read again on the next start",
                        hint="run with --debug for details",
                    ) from exc
                finally:
                    run.processed = self.stats.messages
                    run.failed = self.stats.dlq
                    run.metadata.update(self.stats.as_dict())
                    run.exit_code = int(self._exit_code())
        finally:
            for sig, handler in previous:
                signal.signal(sig, handler)
        return StreamResult(self.stats, int(self._exit_code()), self.job_run_id)

    def _exit_code(self) -> ExitCode:
        return ExitCode.WARNINGS if (self.stats.dlq or self.stats.dq_warnings) else ExitCode.OK

    def _loop(self) -> None:
        kafka = self.settings.kafka
        dlq_topics = [t + self.st.dlq_suffix for t in self.topics]
        try:
            self.retry(
                lambda: ensure_topics(kafka, dlq_topics, timeout_s=10, stop=lambda: self.stopping),
                finish_on_stop=False,
            )
        except TransientError as exc:
            if not self.stopping:
                raise
            # Nothing was read, so nothing is lost: a clean stop like any other.
            log.warning("stopped before consuming anything: %s", exc.message)
            self.loader.close_all()
            return
        producer = make_producer(kafka)
        publisher = DeadLetterPublisher(producer, self.st.dlq_suffix, self.group)
        publisher.job_run_id = self.job_run_id
        reader = DlqReader(kafka, self.st.dlq_suffix)
        for dlq_topic in dlq_topics:  # floors start at the DLQ's end: later letters lie above
            marks: dict[int, tuple[int, int]] = self.retry(partial(reader.watermarks, dlq_topic))
            publisher.start_floors(dlq_topic, {p: high for p, (_, high) in marks.items()})
        checkpoint = self.checkpoint
        checkpoint.publisher, checkpoint.reader = publisher, reader
        overrides = {k: v for k, v in CONSUMER_TUNING.items() if k not in kafka.extra}
        consumer = RecordConsumer(
            make_consumer(kafka, self.group, **{"auto.offset.reset": self.st.start_from, **overrides}),
            start_from=self.st.start_from,
        )
        checkpoint.consumer = consumer
        consumer.subscribe(self.topics, on_assign=checkpoint.assign, on_revoke=checkpoint.revoke)
        started = time.monotonic()
        checkpoint.unassigned_since = started  # the assignment timeout runs from the subscription
        last_progress = 0.0
        last_log = started
        try:
            self.preparer.before_read = checkpoint.settle_or_discard
            while not self.stopping:
                self._collect(consumer)
                if checkpoint.pending:
                    self._submit(checkpoint.take_pending())  # (no name here keeps the records alive)
                else:  # idle: nothing to overlap with, account the batches in flight now
                    checkpoint.settle()
                    if self.until_caught_up and self._caught_up(consumer):
                        break
                if self.max_messages is not None and self.submitted >= self.max_messages:
                    break
                now = time.monotonic()
                if now - last_progress >= 1.0:
                    last_progress = now
                    producer.poll(0)  # delivers the DLQ producer's librdkafka log lines while idle
                    self._update_lag(consumer)
                    if self.ledger_run is not None and now - self._last_keep_alive >= KEEP_ALIVE_S:
                        self._last_keep_alive = now
                        self.ledger_run.keep_alive()  # a restarted warehouse: the run is not abandoned
                    if self.on_progress:
                        self.on_progress(self.stats)
                if now - last_log >= self.st.progress_log_s:
                    last_log = now
                    self._update_lag(consumer)
                    self._log_progress()
            checkpoint.settle()
        finally:
            checkpoint.close()  # an error interrupted the loop: let the commits finish
            self._update_lag(consumer, force=True)
            if self.on_progress:
                self.on_progress(self.stats)
            consumer.close()
            producer.flush(10)
            reader.close()
            self.loader.close_all()

    def _log_progress(self) -> None:
        log_progress(self.stats, self.job_run_id)

    def _warn_dead_letters(self, prepared: PreparedBatch) -> None:
        warn_dead_letters(prepared, self.job_run_id)

    def _collect(self, consumer: RecordConsumer) -> None:
        """Fill the checkpoint's `pending` until the batch policy closes it (size, age, drained
        while idle).

        The policy is `orion_etl.core.batching.next_poll`; the age of a batch runs from the moment
        its first record was read.
        """
        checkpoint = self.checkpoint
        limit = self.st.batch_max_messages
        if self.max_messages is not None:
            limit = max(1, min(limit, self.max_messages - self.submitted))
        policy = BatchPolicy(limit, self.st.batch_max_ms / 1000, self.st.batch_linger_ms / 1000)
        started = time.monotonic()
        first_at: float | None = None
        drained = False
        while not self.stopping:
            now = time.monotonic()
            if first_at is None and checkpoint.pending:
                first_at = now
            poll = next_poll(
                policy,
                count=len(checkpoint.pending),
                age_s=0.0 if first_at is None else now - first_at,
                waited_s=now - started,
                drained=drained,
                # busy: the commit thread has one batch in its commit and one waiting (a batch
                # closed now would wait anyway); with room, a drained batch goes and is prepared
                # while the one before commits, so the two threads keep overlapping.
                committer_busy=checkpoint.busy(),
            )
            if poll is None:
                break
            # (records of partitions revoked meanwhile are left out: `assigned` is updated in place)
            polled = consumer.consume(poll.messages, poll.timeout_s, checkpoint.assigned)
            for err in polled.errors:
                log.warning("kafka: %s", err.str())
            # Drained: nothing came within the linger, and the broker holds nothing more either (a
            # fetch hiccup under load is not the end of the stream; a short return is normal at
            # saturation too, the prefetch queue is bounded).
            drained = not polled.count and not self.stopping and not consumer.has_more(checkpoint.assigned)
            # Only now: a rebalance callback run inside consume() replaces `pending`.
            checkpoint.pending.extend(polled.records)

    def _submit(self, records: list[KafkaRecord]) -> None:
        """Prepare a batch while earlier ones commit, then queue it for the commit thread.

        Two cores work at once: this thread reads and transforms batch k+2 while PostgreSQL
        executes batch k and batch k+1 waits its turn (PIPELINE_DEPTH), so the commit thread never
        waits for this one. Batches commit one after the other, in order, each claiming its
        positions from where the one before ends. A prepared batch holds its fact rows (a few MB),
        not the records, so memory stays bounded.

        Memory: the records' values (5 KB each for envelopes with an embedded schema, most of a
        batch's memory) are released once the batch is prepared, here and in the batches in
        flight: a row PostgreSQL refuses at commit time has its record read again from Kafka for
        its dead letter (`_BatchLetters.rejected`). The caller keeps no reference to `records`.
        """
        assigned = self.checkpoint.assigned
        records = [r for r in records if (r.topic, r.partition) in assigned]
        if not records:
            return
        count = len(records)
        try:
            prepared = self.retry(partial(self.preparer.prepare, records))
        except FencedError:
            return  # the batch before was fenced; positions re-read, this batch is void
        del records
        prepared.records = {}  # released: a refused row's record is read again (`_BatchLetters`)
        if not self.checkpoint.settle(keep=PIPELINE_DEPTH - 1):
            return
        self.submitted += count
        batch = Batch(prepared, prepared.write.offsets, lambda: [*prepared.letters, *prepared.rejected])
        self.checkpoint.submit(batch, partial(self._commit, prepared))

    def _commit(
        self, prepared: PreparedBatch, expected: dict[Partition, int | None], hooks: LetterHooks
    ) -> LoadCounts:
        """(Commit thread) rows, positions and dead letters in one transaction (`_BatchLetters`)."""
        letters = _BatchLetters(self.preparer, prepared, hooks, self._read_again)
        return self.loader.commit_batch(prepared.write, expected, self.job_run_id, letters)

    def _read_again(self, wanted: list[Coordinates]) -> dict[Coordinates, KafkaRecord]:
        """(Commit thread) the records of refused rows, read again from Kafka (their values were
        released once the batch was prepared)."""
        return read_records(self.settings.kafka, wanted, timeout_s=READ_AGAIN_TIMEOUT_S)

    def _committed(self, batch: Batch[PreparedBatch], counts: LoadCounts, committed_ms: float) -> None:
        """Account a committed batch: stats, its dead letters' warning, metrics."""
        prepared = batch.item
        tally = Tally.of(prepared, counts)
        self.stats.account(tally, prepared.latencies_ts_ms, committed_ms)
        if prepared.letters or prepared.rejected:
            self._warn_dead_letters(prepared)
        self.metrics.committed(prepared, tally, committed_ms)

    def _caught_up(self, consumer: RecordConsumer) -> bool:
        assigned = self.checkpoint.assigned
        if not assigned:
            # timed from when the assignment became empty: a rebalance in a long run is not "done"
            return self.checkpoint.unassigned_for() > self.st.assignment_timeout_s
        for key in assigned:
            low, high = consumer.watermarks(key)
            done = self.checkpoint.committed.get(key)
            if done is None:
                done = low if self.st.start_from == "earliest" else high
            if done < high:
                return False
        return True

    def _update_lag(self, consumer: RecordConsumer, *, force: bool = False) -> None:
        assigned = self.checkpoint.assigned
        if not assigned or (not force and time.monotonic() - self._last_lag < 2.0):
            return
        self._last_lag = time.monotonic()
        lag = 0
        per_partition: dict[str, int] = {}
        try:
            for topic, partition in sorted(assigned):
                low, high = consumer.watermarks((topic, partition))
                done = self.checkpoint.committed.get((topic, partition))
                behind = max(0, high - (low if done is None else done))
                self.metrics.lag(topic, partition, behind)
                per_partition[f"{topic}[{partition}]"] = behind
                lag += behind
        except TransientError:
            return
        self.stats.lag = lag
        self.stats.lag_by_partition = per_partition


class _BatchLetters:
    """The loader's `CommitHooks` for one batch: the checkpoint's (floors with the claim, letters
    flushed before the commit), and the rows the warehouse refused, as letters and issues."""

    def __init__(
        self,
        preparer: BatchPreparer,
        prepared: PreparedBatch,
        hooks: LetterHooks,
        read_again: Callable[[list[Coordinates]], dict[Coordinates, KafkaRecord]],
    ) -> None:
        self.preparer = preparer
        self.prepared = prepared
        self.hooks = hooks
        self.read_again = read_again

    def floors(self) -> dict[str, Floors] | None:
        return self.hooks.floors()

    def rejected(self, rejections: list[Rejection]) -> list[dict[str, Any]]:
        # The records were released once the batch was prepared (`StreamJob._submit`): those of
        # the refused rows are read again from Kafka (kept for a retried attempt). A record Kafka
        # no longer holds keeps its letter and issue row, without its value.
        records = self.prepared.records
        wanted = sorted({_origin(r) for r in rejections if r.topic} - records.keys())
        if wanted:
            records.update(self.read_again(wanted))
            for t, p, o in wanted:
                if (t, p, o) not in records:
                    log.error("%s[%s]@%s is no longer in Kafka: its dead letter has no value", t, p, o)
                    records[(t, p, o)] = KafkaRecord(t, p, o, None, None)
        # assigned, not appended: a retried attempt finds the same rows again
        self.prepared.rejected = self.preparer.rejected_letters(self.prepared, rejections)
        for r in rejections:
            log.warning(
                "dead-lettered %s[%s]@%s: the warehouse refused it: %s",
                r.topic,
                r.partition,
                r.offset,
                r.error[:200],
            )
        return [self.preparer.issue_for(letter) for letter in self.prepared.rejected]

    def before_commit(self) -> None:
        self.hooks.before_commit()


def _origin(r: Rejection) -> Coordinates:
    return (r.topic or "", r.partition or 0, r.offset or 0)  # (as `rejected_letters` looks it up)


def run_stream(
    settings: OrionSettings,
    *,
    group: str | None = None,
    until_caught_up: bool = False,
    max_messages: int | None = None,
    on_progress: Callable[[StreamStats], None] | None = None,
) -> StreamResult:
    """Run the streaming loader until stopped, caught up or `max_messages` consumed."""
    job = StreamJob(
        settings,
        group=group,
        until_caught_up=until_caught_up,
        max_messages=max_messages,
        on_progress=on_progress,
    )
    with loader_runtime():
        return job.run()


@contextmanager
def loader_runtime() -> Iterator[None]:
    """Interpreter settings for the loader's two busy threads; restored afterwards (tests run the
    loader in-process).

    * The cyclic garbage collector runs rarely. A batch allocates tens of thousands of short-lived
      containers (decoded rows, their dicts); with CPython's default gen-0 threshold (700) the
      collector runs every few hundred records and re-scans the surviving ones, 15-20% of the
      decode time. Reference counting frees what a batch allocates (it builds no reference
      cycles), so memory stays flat either way; the collector still runs, 70x less often.
    * A short GIL switch interval. The commit thread mostly waits on PostgreSQL with the GIL
      released; each time it wakes (a result arrived, a polars call returned) it must take the GIL
      back from the decoding thread, which by default holds it up to 5 ms, a dozen times per batch.
      0.5 ms made the loader ~6% faster in scripts/bench_stream.py (docs/benchmarks.md).

    Tried and left out (issue #20): a fixed glibc malloc mmap threshold (mallopt M_MMAP_THRESHOLD
    256 KiB: large buffers unmapped when freed) took the peak RSS of a 1,000,000-event drain from
    ~330 to ~275 MiB, but the page faults of fresh mappings cost 10-30% more CPU and, on a busy
    machine, a quarter of the drain rate.
    """
    gc_threshold, switch_interval = gc.get_threshold(), sys.getswitchinterval()
    gc.set_threshold(50_000, 20, 100)
    sys.setswitchinterval(0.0005)
    try:
        yield
    finally:
        gc.set_threshold(*gc_threshold)
        sys.setswitchinterval(switch_interval)
