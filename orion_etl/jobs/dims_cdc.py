"""`dims sync --from-cdc`: apply Debezium dimension changes with the batch path's SCD statements.

Drains the dimension topics with its own consumer group until no message arrives for
`dims.cdc_idle_timeout_s`. Each polled batch is decoded, staged and applied in ONE warehouse
transaction together with the next offsets in `etl_consumer_offsets`, through the streaming
loader's checkpoint (`orion_etl.jobs.checkpoint.Checkpoint`: positions claimed by compare-and-set
against the positions read at assignment, letters flushed before the commit, Kafka's commit after
it; a process that lost a partition is fenced and re-reads from the stored positions). A batch
whose transaction fails for a transient reason (the warehouse restarted) is retried on a new
connection (`RETRY_ATTEMPTS`); otherwise one connection serves every batch. On start the
consumer seeks to those stored positions, so a crash between the commit and Kafka's own commit
neither loses nor re-applies a change (effectively-once). Several changes to one member in a batch
are applied in `round`s (the k-th change of every member in round k), keeping every intermediate
version.

Nothing stops the drain: a change that does not decode is dead-lettered (`DECODE`), and one whose
rows PostgreSQL refuses for a reason of the data (`warehouse_loader.is_data_rejection`) is isolated
in savepoints (the batch's changes of that dimension split until the refused one stands alone) and
dead-lettered (`LOAD_REJECTED`), to `<topic><stream.dlq_suffix>`, exactly once per record (the
loader's `DeadLetterPublisher`: letters flushed inside the transaction, floors with the positions).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

import psycopg

from orion_etl.adapters import dim_store, fact_rekey, positions
from orion_etl.adapters.dlq import DeadLetter, DeadLetterPublisher
from orion_etl.adapters.dlq_reader import DlqReader
from orion_etl.adapters.failures import describe_rejection
from orion_etl.adapters.jobruns import record_job_run
from orion_etl.adapters.kafka import Partition, RecordConsumer, ensure_topics, make_consumer, make_producer
from orion_etl.adapters.postgres import close_connection, connect
from orion_etl.adapters.warehouse_loader import is_data_rejection
from orion_etl.config.models import OrionSettings
from orion_etl.core.dead_letter_classes import ErrorClass
from orion_etl.core.dimension_changes import UndecodableChangeError, decode_change, stage_row
from orion_etl.core.pgtext import REFUSED
from orion_etl.core.records import KafkaRecord
from orion_etl.core.scd import DimensionSpec, resolve_spec
from orion_etl.errors import ServiceUnavailableError, exit_code_for
from orion_etl.jobs.checkpoint import Batch, Checkpoint, LetterHooks
from orion_etl.jobs.dims import (
    JOB_NAME,
    JOB_TYPE,
    DimensionReport,
    Progress,
    SyncReport,
    dimension_locks,
    prepare,
    selected,
)
from orion_etl.jobs.retrying import Retry

log = logging.getLogger(__name__)
ASSIGN_TIMEOUT_S = 60.0
# A batch's transaction is retried on transient failures (the warehouse restarted, a connection
# dropped) this many times, backing off up to `stream.retry_max_backoff_s`: about a minute at the
# defaults; then the drain stops with the failure (a batch command, unlike the loader, does not
# wait for ever). Nothing of a failed batch is kept: the next run reads it again.
RETRY_ATTEMPTS = 8
Staged = tuple[list[Any], KafkaRecord]  # a stage row and the record it came from


class _Drain:
    """Consumer loop state (kept small: one batch = one transaction); positions, fencing, reseek
    and the commit order are the shared `Checkpoint`'s."""

    def __init__(
        self,
        settings: OrionSettings,
        specs: dict[str, DimensionSpec],
        group: str,
        publisher: DeadLetterPublisher,
        reader: DlqReader,
    ) -> None:
        self.settings = settings
        self.specs = specs  # topic -> spec
        self.group = group
        self.assigned = False
        self.reports = {s.name: DimensionReport(s.name) for s in specs.values()}
        self.conn: psycopg.Connection | None = None  # the warehouse connection, kept across batches
        self.store = positions.OffsetStore(settings.warehouse, group)
        retry = Retry(
            stopping=lambda: False,
            max_backoff_s=settings.stream.retry_max_backoff_s,
            attempts=RETRY_ATTEMPTS,
            default_reset=self.store.close,
        )
        self.checkpoint: Checkpoint[list[KafkaRecord], dict[str, DimensionReport]] = Checkpoint(
            self.store, retry, publisher=publisher, reader=reader, reset=self.close
        )

    @property
    def expected(self) -> dict[tuple[str, int], int | None]:
        """Positions this process claims from."""
        return self.checkpoint.expected

    @expected.setter
    def expected(self, value: dict[tuple[str, int], int | None]) -> None:
        self.checkpoint.expected = value

    def close(self) -> None:
        """Drop the warehouse connections (a retried batch reconnects)."""
        conn, self.conn = self.conn, None
        close_connection(conn)
        self.store.close()

    def _connection(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed or self.conn.broken:
            self.close()
            self.conn = connect(self.settings.warehouse)
        return self.conn

    def on_assign(self, partitions: list[Partition]) -> dict[Partition, int]:
        stored = self.checkpoint.assign(partitions)
        self.assigned = True
        return stored

    def on_revoke(self, partitions: list[Partition]) -> None:
        self.checkpoint.revoke(partitions)

    def reseek(self, consumer: RecordConsumer) -> None:
        """After a fenced batch: continue from the positions the new owner stored."""
        self.checkpoint.consumer = consumer
        self.checkpoint.reseek()

    def apply_batch(self, records: list[KafkaRecord]) -> dict[tuple[str, int], int]:
        """Decode, stage and apply one polled batch; returns the next offset per partition.

        `FencedError` when another consumer moved a position of the batch (call `reseek`).
        """
        by_spec: dict[str, list[Staged]] = defaultdict(list)
        rounds: dict[tuple[str, Any], int] = defaultdict(int)
        offsets: dict[tuple[str, int], int] = {}
        letters: list[DeadLetter] = []
        # counted once the batch commits: a fenced or retried batch must not count twice
        undecodable: dict[str, int] = defaultdict(int)
        for seq, rec in enumerate(records):
            offsets[(rec.topic, rec.partition)] = max(
                offsets.get((rec.topic, rec.partition), 0), rec.offset + 1
            )
            spec = self.specs[rec.topic]
            try:
                change = decode_change(rec.value, spec)
            except UndecodableChangeError as exc:
                undecodable[spec.name] += 1
                log.warning(
                    "dims %s: dead-lettered %s[%d]@%d: %s",
                    spec.name,
                    rec.topic,
                    rec.partition,
                    rec.offset,
                    exc,
                )
                letters.append(DeadLetter(rec, ErrorClass.DECODE, str(exc), source_table=spec.table))
                continue
            if change is None:
                continue
            refused = [k for k, v in change.attrs.items() if isinstance(v, str) and REFUSED.search(v)]
            if refused:  # like a fact column: not altered, the change is dead-lettered
                undecodable[spec.name] += 1
                error = f"{refused[0]}: contains a character PostgreSQL cannot store (NUL)"
                letters.append(DeadLetter(rec, ErrorClass.INVALID_VALUE, error, source_table=spec.table))
                continue
            rounds[(spec.name, change.natural_id)] += 1
            row = stage_row(spec, change, seq, rounds[(spec.name, change.natural_id)])
            by_spec[spec.name].append((row, rec))
        attempt: list[DeadLetter] = []  # the letters of the attempt that commits
        batch = Batch(records, offsets, lambda: attempt)

        def transaction(
            expected: dict[Partition, int | None], hooks: LetterHooks
        ) -> dict[str, DimensionReport]:
            attempt[:] = letters
            reports = {name: DimensionReport(name) for name in self.reports}
            wh = self._connection()
            with wh.transaction():
                positions.claim(wh, self.group, offsets, expected, hooks.floors())  # 1. the fence
                for spec in {s.name: s for s in self.specs.values()}.values():  # 2. the changes
                    staged = by_spec.get(spec.name)
                    if not staged:
                        continue
                    report = reports[spec.name]
                    _, report.rehashed = prepare(wh, spec)
                    report.read = len(staged)
                    attempt.extend(self._apply_isolating(wh, spec, staged, report))
                    dim_store.write_state(
                        wh, spec.name, watermark=None, fingerprint=spec.fingerprint(), full=False
                    )
                hooks.before_commit()  # 3. the letters, flushed; 4. the commit (leaving the block)
            return reports

        reports = self.checkpoint.commit(batch, transaction)
        for name, count in undecodable.items():
            self.reports[name].undecodable += count
        for name, done in reports.items():
            _merge(self.reports[name], done)
        return offsets

    def _apply_isolating(
        self, wh: psycopg.Connection, spec: DimensionSpec, staged: list[Staged], report: DimensionReport
    ) -> list[DeadLetter]:
        """Apply the staged changes in savepoints; changes PostgreSQL refuses, alone, are letters.

        Pieces are applied in order (prefix first), so every member's changes keep their order.
        """
        letters: list[DeadLetter] = []
        todo = [staged]
        while todo:
            piece = todo.pop()
            try:
                with wh.transaction():
                    dim_store.create_stage(wh, spec)
                    dim_store.write_stage_rows(wh, spec, [row for row, _ in piece])
                    counts = dim_store.apply_staged(wh, spec)
                    rekeyed = fact_rekey.rekey_after_sync(wh, spec)
            except Exception as exc:
                if not is_data_rejection(exc):
                    raise
                if len(piece) > 1:
                    half = len(piece) // 2
                    todo += [piece[half:], piece[:half]]
                    continue
                rec = piece[0][1]
                sqlstate, error = describe_rejection(exc)
                log.warning("dims %s: dead-lettered %s[%d]@%d: the warehouse refused it: %s",
                            spec.name, rec.topic, rec.partition, rec.offset, error)  # fmt: skip
                report.rejected += 1
                letters.append(
                    DeadLetter(rec, ErrorClass.LOAD_REJECTED, f"the warehouse refused the row ({error})",
                               source_table=spec.table, sqlstate=sqlstate)
                )  # fmt: skip
                continue
            report.counts.update(counts)
            report.rekeyed.update(rekeyed)
        return letters


def _merge(into: DimensionReport, done: DimensionReport) -> None:
    """Add a committed batch's report of one dimension to the run's."""
    into.read += done.read
    into.rehashed += done.rehashed
    into.rejected += done.rejected
    into.undecodable += done.undecodable
    into.counts.update(done.counts)
    into.rekeyed.update(done.rekeyed)


def sync_cdc(
    settings: OrionSettings, dimension: str, *, progress: Progress | None = None, group_id: str | None = None
) -> SyncReport:
    """Drain the dimension CDC topics once (see module doc)."""
    names = selected(dimension)
    specs = {getattr(settings.dims.cdc_topics, n): resolve_spec(n, settings.dims) for n in names}
    group = group_id or settings.dims.cdc_group_id
    drain: _Drain | None = None
    report = SyncReport("cdc")
    step = progress or (lambda _d, _p: None)
    suffix = settings.stream.dlq_suffix
    with (
        dimension_locks(settings, names),
        record_job_run(settings.warehouse, JOB_NAME, JOB_TYPE, {"mode": "cdc", "group": group}) as run,
    ):
        report.job_run_id = str(run.id)
        consumer = RecordConsumer(make_consumer(settings.kafka, group), start_from="earliest")
        producer = make_producer(settings.kafka)
        publisher = DeadLetterPublisher(producer, suffix, group)
        publisher.job_run_id = str(run.id)
        reader = DlqReader(settings.kafka, suffix)
        try:
            existing = consumer.existing_topics(timeout_s=15)
            topics = [t for t in specs if t in existing]
            for missing in sorted(set(specs) - set(topics)):
                log.warning("dims: topic %s does not exist (yet); skipped", missing)
            if topics:
                ensure_topics(settings.kafka, [t + suffix for t in topics], timeout_s=15)
                for t in topics:  # letters published later lie above these floors
                    marks = reader.watermarks(t + suffix)
                    publisher.start_floors(t + suffix, {p: high for p, (_, high) in marks.items()})
                drain = _Drain(settings, specs, group, publisher, reader)
                drain.checkpoint.consumer = consumer
                consumer.subscribe(topics, on_assign=drain.on_assign, on_revoke=drain.on_revoke)
                _drain(consumer, drain, settings, step)
        finally:
            if drain is not None:
                drain.close()
            consumer.close()
            producer.flush(10)
            reader.close()
        report.dimensions = (
            list(drain.reports.values()) if drain else [DimensionReport(s.name) for s in specs.values()]
        )
        for dim_report in report.dimensions:
            run.processed += dim_report.read
            run.failed += dim_report.undecodable + dim_report.rejected
            run.metadata[dim_report.dimension] = dim_report.as_dict()
            step(dim_report.dimension, "done")
        run.metadata["warnings"] = report.warnings
        run.exit_code = exit_code_for(report)
    return report


def _drain(consumer: RecordConsumer, drain: _Drain, settings: OrionSettings, step: Progress) -> None:
    started = time.monotonic()
    idle_since: float | None = None
    while True:
        polled = consumer.consume(settings.dims.cdc_batch_max_messages, timeout_s=0.5)
        if polled.errors:
            raise ServiceUnavailableError(f"kafka: {polled.errors[0]}")
        if polled.records:
            idle_since = None
            for name in {drain.specs[r.topic].name for r in polled.records}:
                step(name, "applying changes")
            try:
                drain.apply_batch(polled.records)  # (its positions also go to Kafka, for lag tools)
            except positions.FencedError as exc:
                log.warning("dims: %s", exc.message)
                drain.reseek(consumer)
            continue
        now = time.monotonic()
        if not drain.assigned:
            if now - started > ASSIGN_TIMEOUT_S:
                raise ServiceUnavailableError("kafka: no partition assigned to the dims consumer group")
            continue
        idle_since = idle_since or now
        if now - idle_since >= settings.dims.cdc_idle_timeout_s:
            return
