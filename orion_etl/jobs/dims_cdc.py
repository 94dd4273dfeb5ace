"""`dims sync --from-cdc`: apply Debezium dimension changes with the batch path's SCD statements.

Drains the dimension topics with its own consumer group until no message arrives for
`dims.cdc_idle_timeout_s`. Each polled batch is decoded, staged and applied in ONE warehouse
transaction together with the next offsets in `etl_consumer_offsets`, claimed like the streaming
loader's (`orion_etl.adapters.positions`: compare-and-set against the positions read at assignment;
a process that lost a partition is fenced and re-reads from the stored positions). On start the
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
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from orion_etl.adapters import dim_store, fact_rekey, positions
from orion_etl.adapters.dlq import DeadLetter, DeadLetterPublisher
from orion_etl.adapters.dlq_reader import DlqReader
from orion_etl.adapters.jobruns import record_job_run
from orion_etl.adapters.kafka import ensure_topics, make_consumer, make_producer
from orion_etl.adapters.postgres import connect
from orion_etl.adapters.warehouse_loader import is_data_rejection
from orion_etl.config.models import OrionSettings
from orion_etl.core.dead_letter_classes import ErrorClass
from orion_etl.core.dimension_changes import UndecodableChangeError, decode_change, stage_row
from orion_etl.core.pgtext import REFUSED
from orion_etl.core.records import KafkaRecord
from orion_etl.core.scd import DimensionSpec, resolve_spec
from orion_etl.errors import ServiceUnavailableError, exit_code_for
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

log = logging.getLogger(__name__)
ASSIGN_TIMEOUT_S = 60.0
Staged = tuple[list[Any], KafkaRecord]  # a stage row and the record it came from


def _record(msg: Message) -> KafkaRecord:
    topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
    assert topic is not None and partition is not None and offset is not None
    ts_type, ts = msg.timestamp()
    headers = msg.headers()
    return KafkaRecord(
        topic, partition, offset, msg.key(), msg.value(), ts if ts_type else None,
        [(k, v) for k, v in headers if isinstance(v, bytes)] if isinstance(headers, list) else None,
    )  # fmt: skip


class _Drain:
    """Consumer loop state (kept small: one batch = one transaction)."""

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
        self.publisher = publisher
        self.reader = reader
        self.assigned = False
        self.expected: dict[tuple[str, int], int | None] = {}  # positions this process claims from
        self.reports = {s.name: DimensionReport(s.name) for s in specs.values()}

    def _stored(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        with connect(self.settings.warehouse, autocommit=True) as conn:
            found = positions.stored_with_floors(conn, self.group, keys)
            recall = {tp: (o, f) for tp, (o, f) in found.items() if f is not None}
            never = [tp for tp in keys if tp not in found]
            recall.update({tp: (0, f) for tp, f in positions.first_floors(conn, self.group, never).items()})
        if recall:
            self.publisher.recall(self.reader, recall)
        return {tp: o for tp, (o, _) in found.items()}

    def on_assign(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        stored = self._stored([(p.topic, p.partition) for p in parts])
        for p in parts:
            p.offset = stored.get((p.topic, p.partition), OFFSET_BEGINNING)
            self.expected[(p.topic, p.partition)] = stored.get((p.topic, p.partition))
        consumer.assign(parts)
        self.assigned = True

    def on_revoke(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        gone = {(p.topic, p.partition) for p in parts}
        for key in gone:
            self.expected.pop(key, None)
        self.publisher.forget(dict.fromkeys(gone))
        consumer.unassign()

    def reseek(self, consumer: Consumer) -> None:
        """After a fenced batch: continue from the positions the new owner stored."""
        stored = self._stored(sorted(self.expected))
        for key in list(self.expected):
            self.expected[key] = stored.get(key)
            consumer.seek(TopicPartition(key[0], key[1], stored.get(key, OFFSET_BEGINNING)))

    def apply_batch(self, messages: list[Message]) -> dict[tuple[str, int], int]:
        """Decode, stage and apply one polled batch; returns the next offset per partition."""
        by_spec: dict[str, list[Staged]] = defaultdict(list)
        rounds: dict[tuple[str, Any], int] = defaultdict(int)
        offsets: dict[tuple[str, int], int] = {}
        letters: list[DeadLetter] = []
        # counted once the claim holds: a fenced batch is read again and must not count twice
        undecodable: dict[str, int] = defaultdict(int)
        for seq, msg in enumerate(messages):
            rec = _record(msg)
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
        expected = {tp: self.expected.get(tp) for tp in offsets}
        with connect(self.settings.warehouse) as wh:
            floors = self.publisher.floors({t for t, _ in offsets})
            positions.claim(wh, self.group, offsets, expected, floors)
            for name, count in undecodable.items():
                self.reports[name].undecodable += count
            for spec in {s.name: s for s in self.specs.values()}.values():
                staged = by_spec.get(spec.name)
                if not staged:
                    continue
                report = self.reports[spec.name]
                _, rehashed = prepare(wh, spec)
                report.rehashed += rehashed
                report.read += len(staged)
                letters += self._apply_isolating(wh, spec, staged, report)
                dim_store.write_state(
                    wh, spec.name, watermark=None, fingerprint=spec.fingerprint(), full=False
                )
            if letters:
                first = {tp for tp in offsets if expected.get(tp) is None}
                if first:
                    with connect(self.settings.warehouse, autocommit=True) as side:
                        positions.note_first_floors(
                            side, self.group, {tp: floors[tp[0]] for tp in first if tp[0] in floors}
                        )
                self.publisher.publish(letters)
                self.publisher.flush()
            wh.commit()
        self.expected.update(offsets)
        self.publisher.forget(dict(offsets))
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
            except psycopg.Error as exc:
                if not is_data_rejection(exc):
                    raise
                if len(piece) > 1:
                    half = len(piece) // 2
                    todo += [piece[half:], piece[:half]]
                    continue
                rec = piece[0][1]
                error = " ".join(f"SQLSTATE {exc.sqlstate}: {exc.diag.message_primary or exc}".split())[:1000]
                log.warning("dims %s: dead-lettered %s[%d]@%d: the warehouse refused it: %s",
                            spec.name, rec.topic, rec.partition, rec.offset, error)  # fmt: skip
                report.rejected += 1
                letters.append(
                    DeadLetter(rec, ErrorClass.LOAD_REJECTED, f"the warehouse refused the row ({error})",
                               source_table=spec.table, sqlstate=exc.sqlstate or "")
                )  # fmt: skip
                continue
            report.counts.update(counts)
            report.rekeyed.update(rekeyed)
        return letters


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
        consumer = make_consumer(settings.kafka, group)
        producer = make_producer(settings.kafka)
        publisher = DeadLetterPublisher(producer, suffix, group)
        publisher.job_run_id = str(run.id)
        reader = DlqReader(settings.kafka, suffix)
        try:
            existing = set(consumer.list_topics(timeout=15).topics)
            topics = [t for t in specs if t in existing]
            for missing in sorted(set(specs) - set(topics)):
                log.warning("dims: topic %s does not exist (yet); skipped", missing)
            if topics:
                ensure_topics(settings.kafka, [t + suffix for t in topics], timeout_s=15)
                for t in topics:  # letters published later lie above these floors
                    marks = reader.watermarks(t + suffix)
                    publisher.start_floors(t + suffix, {p: high for p, (_, high) in marks.items()})
                drain = _Drain(settings, specs, group, publisher, reader)
                consumer.subscribe(topics, on_assign=drain.on_assign, on_revoke=drain.on_revoke)
                _drain(consumer, drain, settings, step)
        finally:
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


def _drain(consumer: Consumer, drain: _Drain, settings: OrionSettings, step: Progress) -> None:
    started = time.monotonic()
    idle_since: float | None = None
    while True:
        messages = consumer.consume(settings.dims.cdc_batch_max_messages, timeout=0.5)
        errors = [m for m in messages if m.error()]
        if errors:
            raise ServiceUnavailableError(f"kafka: {errors[0].error()}")
        if messages:
            idle_since = None
            for name in {drain.specs[m.topic() or ""].name for m in messages}:
                step(name, "applying changes")
            try:
                done = drain.apply_batch(messages)
            except positions.FencedError as exc:
                log.warning("dims: %s", exc.message)
                drain.reseek(consumer)
                continue
            # Informational only (lag tools): the warehouse holds the positions that count.
            consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in done.items()], asynchronous=True
            )
            continue
        now = time.monotonic()
        if not drain.assigned:
            if now - started > ASSIGN_TIMEOUT_S:
                raise ServiceUnavailableError("kafka: no partition assigned to the dims consumer group")
            continue
        idle_since = idle_since or now
        if now - idle_since >= settings.dims.cdc_idle_timeout_s:
            return
