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
"""

from __future__ import annotations

import gc
import logging
import signal
import statistics
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from types import FrameType
from typing import Any

import psycopg
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from orion_etl.adapters import metrics
from orion_etl.adapters.dlq import DeadLetterPublisher
from orion_etl.adapters.dlq_reader import DlqReader
from orion_etl.adapters.jobruns import JobRun, record_job_run
from orion_etl.adapters.kafka import ensure_topics, is_unreachable, make_consumer, make_producer
from orion_etl.adapters.positions import FencedError
from orion_etl.adapters.warehouse_loader import LoadCounts, Rejection, WarehouseLoader
from orion_etl.config.models import OrionSettings
from orion_etl.core.batching import BatchPolicy, next_poll
from orion_etl.core.records import KafkaRecord
from orion_etl.errors import ExitCode, OrionError, TransientError
from orion_etl.jobs.stream_batch import BatchPreparer, PreparedBatch

log = logging.getLogger(__name__)
RATE_WINDOW_S = 10.0  # the live view's and the progress line's msg/s cover this recent window
PIPELINE_DEPTH = 2  # batches handed to the commit thread at most (one committing, one waiting)
KEEP_ALIVE_S = 15.0  # how often the loader checks its ledger session (jobruns.JobRun.keep_alive)


# Consumer settings the loader fixes ([kafka.extra] overrides each of them).
CONSUMER_TUNING: dict[str, Any] = {
    "fetch.wait.max.ms": 50,  # latency: do not let the broker hold fetches long
    "statistics.interval.ms": 1000,  # keeps cached watermarks fresh (lag, caught-up)
    # Memory. librdkafka decompresses a whole fetch response at once, and lz4 packs 5 KB Debezium
    # envelopes (schema repeated in each) ~10-20x, so the *compressed* fetch size, not the queue
    # limit, sets the peak: 8 MiB fetches put the process at ~500 MiB, 2 MiB ones at ~300 MiB
    # (docs/benchmarks.md). The broker still returns one whole record batch when it is larger.
    "queued.max.messages.kbytes": 8192,
    "fetch.max.bytes": 2 * 1024 * 1024,
    "max.partition.fetch.bytes": 1024 * 1024,
    # Throughput. Once the prefetch queue is over its bound, librdkafka waits fetch.queue.backoff.ms
    # (default 1000 ms) before fetching that partition again: with a small queue the loader then
    # starves for most of every second. 5 ms refills the queue as soon as the batch has taken it.
    "fetch.queue.backoff.ms": 5,
}


class StreamLoadError(OrionError):
    """A batch failed in the warehouse for a reason retrying cannot fix (exit 3)."""


@dataclass
class StreamStats:
    """Live and final counters of a run."""

    messages: int = 0
    batches: int = 0
    loaded: int = 0
    quotes: int = 0
    deleted: int = 0
    stale: int = 0
    duplicates: int = 0
    superseded: int = 0
    sampled_out: int = 0
    tombstones: int = 0
    dlq: int = 0
    rejected: int = 0  # of `dlq`: rows the warehouse refused (LOAD_REJECTED)
    side_rows_dropped: int = 0  # sampler / issue rows the warehouse refused (logged)
    dq_warnings: int = 0
    retries: int = 0
    fenced: int = 0
    lag: int | None = None
    lag_by_partition: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))
    # (monotonic time, messages) after each batch, the last RATE_WINDOW_S seconds (and one before).
    marks: deque[tuple[float, int]] = field(default_factory=deque)

    def mark(self, now: float | None = None) -> None:
        """Note the message count now (after a batch) for the recent rate."""
        now = time.monotonic() if now is None else now
        self.marks.append((now, self.messages))
        while len(self.marks) > 2 and self.marks[1][0] <= now - RATE_WINDOW_S:
            self.marks.popleft()

    def rate(self, now: float | None = None) -> float:
        """Messages per second over about the last RATE_WINDOW_S seconds (not since start).

        Counted from the last mark at or before the window's start (or the start of the run), so
        an idle loader reads 0 msg/s within one window instead of a slowly decaying average.
        """
        now = time.monotonic() if now is None else now
        base_t, base_m = self.started, 0
        for t, m in self.marks:
            if t > now - RATE_WINDOW_S:
                break
            base_t, base_m = t, m
        elapsed = now - base_t
        return (self.messages - base_m) / elapsed if elapsed > 0 else 0.0

    def average_rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.messages / elapsed if elapsed > 0 else 0.0

    def percentile(self, q: float) -> float | None:
        if len(self.latencies_ms) < 2:
            return self.latencies_ms[0] if self.latencies_ms else None
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[int(q) - 1]

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "batches": self.batches,
            "loaded": self.loaded,
            "quotes": self.quotes,
            "deleted": self.deleted,
            "stale": self.stale,
            "duplicates": self.duplicates,
            "superseded": self.superseded,
            "sampled_out": self.sampled_out,
            "tombstones": self.tombstones,
            "dlq": self.dlq,
            "rejected": self.rejected,
            "side_rows_dropped": self.side_rows_dropped,
            "dq_warnings": self.dq_warnings,
            "retries": self.retries,
            "fenced": self.fenced,
            "lag": self.lag,
            "lag_by_partition": dict(sorted(self.lag_by_partition.items())),
            "rate_per_s": round(self.rate(), 1),
            "average_rate_per_s": round(self.average_rate(), 1),
            "latency_p50_ms": _round(self.percentile(50)),
            "latency_p99_ms": _round(self.percentile(99)),
        }


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


@dataclass
class StreamResult:
    """What `run_stream` returns."""

    stats: StreamStats
    exit_code: int
    job_run_id: str


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, TransientError | psycopg.OperationalError | psycopg.InterfaceError):
        return True
    return isinstance(exc, KafkaException) and bool(exc.args) and is_unreachable(exc.args[0])


class StreamJob:
    """One loader process: consumer, DLQ producer, warehouse loader."""

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
        # Positions after the last *submitted* batch (what the next batch claims from) and after
        # the last *committed* one (lag, caught-up). They differ while a batch is in flight.
        self.expected: dict[tuple[str, int], int | None] = {}
        self.committed: dict[tuple[str, int], int | None] = {}
        # Batches handed to the commit thread, oldest first (at most PIPELINE_DEPTH).
        self.inflight: deque[tuple[Future[tuple[LoadCounts, float]], PreparedBatch]] = deque()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="orion-commit")
        self.submitted = 0
        self.assigned: set[tuple[str, int]] = set()
        self.pending: list[KafkaRecord] = []
        self.stopping = False
        self.job_run_id = ""
        self.source_commit_s: dict[str, float] = {}  # newest source commit loaded, per source table
        self.ledger_run: JobRun | None = None
        self._last_keep_alive = time.monotonic()
        self._last_lag = 0.0
        self.consumer: Consumer | None = None
        self.publisher: DeadLetterPublisher | None = None
        self.dlq_reader: DlqReader | None = None

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

    # --- rebalance callbacks -----------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._settle(consumer, reseek=False)
        self.preparer.sampler_cache.clear()
        stored, floors = self._retry(
            lambda: self.loader.stored_floors([(p.topic, p.partition) for p in partitions])
        )
        if self.publisher is not None and self.dlq_reader is not None and floors:
            # letters a crashed process published for records this one re-reads (exactly once)
            reader, publisher = self.dlq_reader, self.publisher
            self._retry(lambda: publisher.recall(reader, floors))
        fallback = OFFSET_BEGINNING if self.st.start_from == "earliest" else OFFSET_END
        for p in partitions:
            key = (p.topic, p.partition)
            p.offset = stored.get(key, fallback)
            self.expected[key] = self.committed[key] = stored.get(key)
            self.assigned.add(key)
        log.info("assigned %s", ", ".join(f"{p.topic}[{p.partition}]@{p.offset}" for p in partitions))
        consumer.assign(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._settle(consumer, reseek=False)  # finish the batches in flight before handing over
        gone = {(p.topic, p.partition) for p in partitions}
        self.pending = [r for r in self.pending if (r.topic, r.partition) not in gone]
        for key in gone:
            self.assigned.discard(key)
            self.expected.pop(key, None)
            self.committed.pop(key, None)
        if self.publisher is not None:
            self.publisher.forget(dict.fromkeys(gone))
        log.info("revoked %s", ", ".join(f"{t}[{p}]" for t, p in sorted(gone)))
        consumer.unassign()

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
                except psycopg.Error as exc:
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
            self._retry(
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
        reader = self.dlq_reader = DlqReader(kafka, self.st.dlq_suffix)
        for dlq_topic in dlq_topics:  # floors start at the DLQ's end: later letters lie above
            marks: dict[int, tuple[int, int]] = self._retry(partial(reader.watermarks, dlq_topic))
            publisher.start_floors(dlq_topic, {p: high for p, (_, high) in marks.items()})
        self.publisher = publisher
        overrides = {k: v for k, v in CONSUMER_TUNING.items() if k not in kafka.extra}
        consumer = make_consumer(kafka, self.group, **{"auto.offset.reset": self.st.start_from, **overrides})
        self.consumer = consumer
        consumer.subscribe(
            self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_revoke
        )
        started = time.monotonic()
        last_progress = 0.0
        last_log = started
        try:
            self.preparer.before_read = lambda: self._settle_or_discard(consumer)
            while not self.stopping:
                self._collect(consumer)
                if self.pending:
                    records, self.pending = self.pending, []
                    self._submit(consumer, publisher, records)
                else:  # idle: nothing to overlap with, account the batches in flight now
                    self._settle(consumer)
                    if self.until_caught_up and self._caught_up(consumer, started):
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
            self._settle(consumer)
        finally:
            while self.inflight:  # an error interrupted the loop: let the commits finish
                self.inflight.popleft()[0].exception()
            self.executor.shutdown(wait=True)
            self._update_lag(consumer, force=True)
            if self.on_progress:
                self.on_progress(self.stats)
            consumer.close()
            producer.flush(10)
            reader.close()
            self.loader.close_all()

    def _log_progress(self) -> None:
        """One line at a steady interval: messages, recent rate, lag per partition, latency."""
        d = self.stats.as_dict()
        lag = ", ".join(f"{k}={v}" for k, v in d["lag_by_partition"].items()) or "-"
        log.info(
            "progress: %s messages, %s msg/s, lag %s (%s), latency p50 %s ms, p99 %s ms",
            d["messages"], d["rate_per_s"], d["lag"], lag, d["latency_p50_ms"], d["latency_p99_ms"],
            extra={"event": "progress", "run_id": self.job_run_id,
                   **{k: d[k] for k in ("messages", "rate_per_s", "lag", "lag_by_partition", "latency_p50_ms",
                                        "latency_p99_ms", "loaded", "dlq", "dq_warnings", "retries")}},
        )  # fmt: skip

    def _collect(self, consumer: Consumer) -> None:
        """Fill `pending` until the batch policy closes it (size, age, drained while idle).

        The policy is `orion_etl.core.batching.next_poll`; the age of a batch runs from the moment
        its first record was read.
        """
        limit = self.st.batch_max_messages
        if self.max_messages is not None:
            limit = max(1, min(limit, self.max_messages - self.submitted))
        policy = BatchPolicy(limit, self.st.batch_max_ms / 1000, self.st.batch_linger_ms / 1000)
        started = time.monotonic()
        first_at: float | None = None
        drained = False
        while not self.stopping:
            now = time.monotonic()
            if first_at is None and self.pending:
                first_at = now
            poll = next_poll(
                policy,
                count=len(self.pending),
                age_s=0.0 if first_at is None else now - first_at,
                waited_s=now - started,
                drained=drained,
                # busy: the commit thread has one batch in its commit and one waiting (a batch
                # closed now would wait anyway); with room, a drained batch goes and is prepared
                # while the one before commits, so the two threads keep overlapping.
                committer_busy=sum(not future.done() for future, _ in self.inflight) >= PIPELINE_DEPTH,
            )
            if poll is None:
                break
            messages = consumer.consume(num_messages=poll.messages, timeout=poll.timeout_s)
            # Drained: nothing came within the linger, and the broker holds nothing more either (a
            # fetch hiccup under load is not the end of the stream; a short return is normal at
            # saturation too, the prefetch queue is bounded).
            drained = not messages and not self.stopping and not self._broker_has_more(consumer)
            # Bound only now: a rebalance callback run inside consume() replaces `self.pending`.
            assigned, append = self.assigned, self.pending.append  # (a hot loop: one pass per record)
            for msg in messages:
                err = msg.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        log.warning("kafka: %s", err.str())
                    continue
                topic, partition = msg.topic(), msg.partition()
                if (topic, partition) not in assigned:
                    continue
                ts_type, ts = msg.timestamp()
                headers = msg.headers()
                append(
                    KafkaRecord(
                        topic,  # type: ignore[arg-type]  # never None for a message without error
                        partition,  # type: ignore[arg-type]
                        msg.offset(),  # type: ignore[arg-type]
                        msg.key(),
                        msg.value(),
                        ts if ts_type else None,
                        [(k, v) for k, v in headers if isinstance(v, bytes)]
                        if isinstance(headers, list)
                        else None,
                    )
                )

    def _broker_has_more(self, consumer: Consumer) -> bool:
        """Whether an assigned partition's high watermark (librdkafka's cached one: no request) is past
        the consumer's position, i.e. records exist that have not reached the prefetch queue yet."""
        tps = [TopicPartition(t, p) for t, p in self.assigned]
        try:
            for tp in consumer.position(tps):
                marks = consumer.get_watermark_offsets(tp, cached=True)
                if marks and tp.offset >= 0 and marks[1] > tp.offset:
                    return True
        except KafkaException:
            return False
        return False

    def _submit(self, consumer: Consumer, publisher: DeadLetterPublisher, records: list[KafkaRecord]) -> None:
        """Prepare a batch while earlier ones commit, then queue it for the commit thread.

        Two cores work at once: this thread reads and transforms batch k+2 while PostgreSQL
        executes batch k and batch k+1 waits its turn (PIPELINE_DEPTH), so the commit thread never
        waits for this one. Batches commit one after the other, in order, each claiming its
        positions from where the one before ends. A prepared batch holds its fact rows (a few MB),
        not the records, so memory stays bounded.
        """
        records = [r for r in records if (r.topic, r.partition) in self.assigned]
        if not records:
            return
        try:
            prepared = self._retry(lambda: self.preparer.prepare(records))
        except FencedError:
            return  # the batch before was fenced; positions re-read, this batch is void
        if not self._settle(consumer, keep=PIPELINE_DEPTH - 1):
            return
        expected = {tp: self.expected.get(tp) for tp in prepared.write.offsets}
        self.expected.update(prepared.write.offsets)
        self.submitted += len(records)
        future = self.executor.submit(self._commit, publisher, prepared, expected)
        self.inflight.append((future, prepared))

    def _commit(
        self,
        publisher: DeadLetterPublisher,
        prepared: PreparedBatch,
        expected: dict[tuple[str, int], int | None],
    ) -> tuple[LoadCounts, float]:
        """(Commit thread) rows, positions and dead letters in one transaction (`_BatchLetters`)."""
        hooks = _BatchLetters(self.preparer, publisher, prepared, expected, self.loader)

        def attempt() -> LoadCounts:
            return self.loader.commit_batch(prepared.write, expected, self.job_run_id, hooks)

        counts = self._retry(attempt, reset=self.loader.close)
        return counts, time.time() * 1000

    def _settle_or_discard(self, consumer: Consumer) -> None:
        if not self._settle(consumer):
            raise FencedError("the previous batch was fenced")

    def _settle(self, consumer: Consumer, *, reseek: bool = True, keep: int = 0) -> bool:
        """Wait for batches in flight, oldest first, until at most `keep` remain, and account them.

        False when one was fenced: every batch after it is then void too (it claims positions
        from where the fenced one would have ended), so all are waited for, and re-seeked.
        """
        fenced = False
        while len(self.inflight) > (0 if fenced else keep):
            future, prepared = self.inflight.popleft()
            try:
                counts, committed_ms = future.result()
            except FencedError as exc:
                if not fenced:
                    log.warning("%s", exc.message)
                    self.stats.fenced += 1
                    self.preparer.sampler_cache.clear()
                fenced = True
                continue
            except BaseException:
                self.preparer.sampler_cache.clear()
                raise
            self._accept(consumer, prepared, counts, committed_ms)
        if fenced and reseek:
            self._reseek(consumer)
        return not fenced

    def _accept(
        self, consumer: Consumer, prepared: PreparedBatch, counts: LoadCounts, committed_ms: float
    ) -> None:
        """Account a committed batch: stats, metrics, and its positions for lag monitoring."""
        self.committed.update(prepared.write.offsets)
        if self.publisher is not None and (prepared.letters or prepared.rejected):
            self.publisher.forget(dict(prepared.write.offsets))  # committed: never re-read here
        self._account(prepared.counts, counts, prepared.latencies_ts_ms, committed_ms)
        self.stats.dlq += len(prepared.rejected)
        self.stats.rejected += len(prepared.rejected)
        self.stats.side_rows_dropped += counts.side_rows_dropped
        if prepared.letters or prepared.rejected:
            self._warn_dead_letters(prepared)
        self._metrics(prepared, counts, committed_ms)
        try:  # for lag monitoring only; never read back
            consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in prepared.write.offsets.items()],
                asynchronous=True,
            )
        except KafkaException as exc:
            log.debug("async Kafka commit failed: %s", exc)

    def _warn_dead_letters(self, prepared: PreparedBatch) -> None:
        """A WARNING per batch that dead-lettered records: classes, count, origin offsets."""
        letters = [*prepared.letters, *prepared.rejected]
        classes = Counter(str(letter.error_class) for letter in letters)
        spans: dict[str, list[int]] = {}
        for letter in letters:
            rec = letter.record
            span = spans.setdefault(f"{rec.topic}[{rec.partition}]", [rec.offset, rec.offset])
            span[0], span[1] = min(span[0], rec.offset), max(span[1], rec.offset)
        origins = {k: f"{lo}..{hi}" if lo != hi else str(lo) for k, (lo, hi) in sorted(spans.items())}
        log.warning(
            "batch dead-lettered %s record(s): %s; origin offsets %s",
            len(letters),
            ", ".join(f"{n} {c}" for c, n in sorted(classes.items())),
            ", ".join(f"{k}@{v}" for k, v in origins.items()),
            extra={"event": "dead_letters", "run_id": self.job_run_id, "count": len(letters),
                   "classes": dict(sorted(classes.items())), "origin_offsets": origins},
        )  # fmt: skip

    def _metrics(self, prepared: PreparedBatch, counts: LoadCounts, committed_ms: float) -> None:
        """Prometheus families of a committed batch (orion_etl.adapters.metrics, served with
        `stream --metrics-addr`): records read per topic; what became of them per outcome."""
        for topic, n in prepared.topic_counts.items():
            metrics.STREAM_CONSUMED.labels(topic).inc(n)
        for letter in [*prepared.letters, *prepared.rejected]:
            metrics.STREAM_DEAD_LETTERS.labels(letter.record.topic, str(letter.error_class)).inc()
        c = prepared.counts
        for outcome, n in (
            ("loaded", counts.upserted + counts.deleted + counts.quotes),
            ("stale", counts.stale),
            ("duplicate", counts.duplicates),
            ("superseded", c["superseded"]),
            ("sampled_out", c["sampled_out"]),
            ("tombstone", c["tombstones"]),
            ("dlq", len(prepared.letters) + len(prepared.rejected)),
        ):
            if n:
                metrics.STREAM_RECORDS.labels(outcome).inc(n)
        for issue in prepared.write.issues:
            metrics.STREAM_DQ_VIOLATIONS.labels(
                issue["source_table"], issue["rule_name"], issue["severity"]
            ).inc()
        for table, (_lsn, ts_ms) in prepared.write.watermarks.items():
            if ts_ms is not None and ts_ms / 1000 > self.source_commit_s.get(table, 0.0):
                self.source_commit_s[table] = ts_ms / 1000
                metrics.STREAM_SOURCE_COMMIT.labels(table).set(ts_ms / 1000)
        metrics.STREAM_BATCHES.inc()
        metrics.STREAM_LAST_COMMIT.set(committed_ms / 1000)
        metrics.STREAM_BATCH_SECONDS.observe(committed_ms / 1000 - prepared.started)
        step = max(1, len(prepared.latencies_ts_ms) // 500)  # a bounded sample per batch
        for ts in prepared.latencies_ts_ms[::step]:
            metrics.STREAM_LATENCY.observe(max(0.0, (committed_ms - ts) / 1000))

    def _account(self, c: dict[str, int], counts: LoadCounts, ts_ms: list[int], committed_ms: float) -> None:
        s = self.stats
        s.batches += 1
        s.messages += c["messages"]
        s.tombstones += c["tombstones"]
        s.dlq += c["dlq"]
        s.dq_warnings += c["warnings"]
        s.superseded += c["superseded"]
        s.sampled_out += c["sampled_out"]
        s.loaded += counts.upserted + counts.deleted + counts.quotes
        s.quotes += counts.quotes
        s.deleted += counts.deleted
        s.stale += counts.stale
        s.duplicates += counts.duplicates
        s.latencies_ms.extend(committed_ms - t for t in ts_ms)
        s.mark()

    def _reseek(self, consumer: Consumer) -> None:
        stored = self._retry(lambda: self.loader.stored_offsets(sorted(self.assigned)))
        self.pending = []
        for key in sorted(self.assigned):
            self.expected[key] = self.committed[key] = stored.get(key)
            fallback = OFFSET_BEGINNING if self.st.start_from == "earliest" else OFFSET_END
            consumer.seek(TopicPartition(key[0], key[1], stored.get(key, fallback)))

    def _caught_up(self, consumer: Consumer, started: float) -> bool:
        if not self.assigned:
            return time.monotonic() - started > self.st.assignment_timeout_s
        for topic, partition in self.assigned:
            low, high = self._watermarks(consumer, topic, partition)
            done = self.committed.get((topic, partition))
            if done is None:
                done = low if self.st.start_from == "earliest" else high
            if done < high:
                return False
        return True

    @staticmethod
    def _watermarks(consumer: Consumer, topic: str, partition: int) -> tuple[int, int]:
        """(low, high): as seen in librdkafka's last fetch/statistics, else asked (slow).

        An uncached query waits behind the in-flight fetch request, so the cached value is used
        whenever the partition has been fetched at least once.
        """
        tp = TopicPartition(topic, partition)
        low, high = consumer.get_watermark_offsets(tp, cached=True) or (-1, -1)
        if high < 0 or low < 0:
            low, high = consumer.get_watermark_offsets(tp, timeout=10, cached=False) or (0, 0)
        return low, high

    def _update_lag(self, consumer: Consumer, *, force: bool = False) -> None:
        if not self.assigned or (not force and time.monotonic() - self._last_lag < 2.0):
            return
        self._last_lag = time.monotonic()
        lag = 0
        per_partition: dict[str, int] = {}
        try:
            for topic, partition in sorted(self.assigned):
                low, high = self._watermarks(consumer, topic, partition)
                done = self.committed.get((topic, partition))
                behind = max(0, high - (low if done is None else done))
                metrics.STREAM_LAG.labels(topic, str(partition)).set(behind)
                per_partition[f"{topic}[{partition}]"] = behind
                lag += behind
        except KafkaException:
            return
        self.stats.lag = lag
        self.stats.lag_by_partition = per_partition

    def _retry(
        self, fn: Callable[[], Any], reset: Callable[[], None] | None = None, *, finish_on_stop: bool = True
    ) -> Any:
        """Run `fn`, retrying infrastructure failures with backoff until it works or we stop.

        After a stop request the pause is cut short; with `finish_on_stop` (a batch in hand) `fn`
        gets one more attempt, otherwise the last failure is raised at once.
        """
        attempts = 0
        after_stop = 1 if finish_on_stop else 0

        def before_sleep(state: Any) -> None:
            nonlocal attempts
            attempts += 1
            self.stats.retries += 1
            exc = state.outcome.exception() if state.outcome else None
            pause = state.next_action.sleep if state.next_action else 0.0
            log.warning(
                "transient failure (attempt %s), retrying in %.1f s: %s", attempts, pause, _describe(exc)
            )
            (reset or self.loader.close_reader)()

        def sleep(seconds: float) -> None:  # a signal handler sets `stopping`; look every 0.1 s
            deadline = time.monotonic() + seconds
            while not self.stopping and (left := deadline - time.monotonic()) > 0:
                time.sleep(min(left, 0.1))

        retrying = Retrying(
            retry=retry_if_exception(_transient),
            wait=wait_exponential(multiplier=0.5, max=self.st.retry_max_backoff_s),
            stop=lambda state: (
                (self.stopping and state.attempt_number > after_stop) or stop_after_attempt(10_000)(state)
            ),
            sleep=sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(fn)


class _BatchLetters:
    """The loader's `CommitHooks` for one batch: its dead letters, published exactly once."""

    def __init__(
        self,
        preparer: BatchPreparer,
        publisher: DeadLetterPublisher,
        prepared: PreparedBatch,
        expected: dict[tuple[str, int], int | None],
        loader: WarehouseLoader,
    ) -> None:
        self.preparer = preparer
        self.publisher = publisher
        self.prepared = prepared
        self.expected = expected
        self.loader = loader

    def floors(self) -> dict[str, dict[int, int]]:
        return self.publisher.floors({t for t, _ in self.prepared.write.offsets})

    def rejected(self, rejections: list[Rejection]) -> list[dict[str, Any]]:
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
        letters = [*self.prepared.letters, *self.prepared.rejected]
        if letters:
            # partitions never committed have no floor with their positions yet: note one first
            first = {tp for tp in self.prepared.write.offsets if self.expected.get(tp) is None}
            if first:
                floors = self.publisher.floors({t for t, _ in first})
                self.loader.note_first_floors({(t, p): floors[t] for t, p in first if t in floors})
            self.publisher.publish(letters)
            self.publisher.flush()


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "?"
    if isinstance(exc, OrionError):
        return exc.message
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


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
    """
    gc_threshold, switch_interval = gc.get_threshold(), sys.getswitchinterval()
    gc.set_threshold(50_000, 20, 100)
    sys.setswitchinterval(0.0005)
    try:
        yield
    finally:
        gc.set_threshold(*gc_threshold)
        sys.setswitchinterval(switch_interval)
