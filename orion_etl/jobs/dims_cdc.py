"""`dims sync --from-cdc`: apply Debezium dimension changes with the batch path's SCD statements.

Drains the dimension topics with its own consumer group until no message arrives for
`dims.cdc_idle_timeout_s`. Each polled batch is decoded, staged and applied in ONE warehouse
transaction together with the next offsets in `etl_consumer_offsets`; on start the consumer seeks
to those stored positions, so a crash between the commit and Kafka's own commit neither loses nor
re-applies a change (effectively-once). Several changes to one member in a batch are applied in
`round`s (the k-th change of every member in round k), keeping every intermediate version.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from orion_etl.adapters import dim_store, fact_rekey
from orion_etl.adapters.jobruns import record_job_run
from orion_etl.adapters.kafka import make_consumer
from orion_etl.adapters.postgres import connect
from orion_etl.config.models import OrionSettings
from orion_etl.core.dimension_changes import UndecodableChangeError, decode_change, stage_row
from orion_etl.core.scd import DimensionSpec, resolve_spec
from orion_etl.errors import ServiceUnavailableError
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


def _stored_offsets(
    settings: OrionSettings, group: str, parts: list[TopicPartition]
) -> dict[tuple[str, int], int]:
    with connect(settings.warehouse) as conn:
        rows = conn.execute(
            "SELECT topic, partition, next_offset FROM etl_consumer_offsets "
            "WHERE consumer_group = %s AND topic = ANY(%s)",
            (group, sorted({p.topic for p in parts})),
        ).fetchall()
    return {(t, int(p)): int(o) for t, p, o in rows}


def _save_offsets(conn: psycopg.Connection, group: str, positions: dict[tuple[str, int], int]) -> None:
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO etl_consumer_offsets (consumer_group, topic, partition, next_offset) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT (consumer_group, topic, partition) "
            "DO UPDATE SET next_offset = EXCLUDED.next_offset, updated_at = now()",
            [(group, t, p, o) for (t, p), o in sorted(positions.items())],
        )


class _Drain:
    """Consumer loop state (kept small: one batch = one transaction)."""

    def __init__(self, settings: OrionSettings, specs: dict[str, DimensionSpec], group: str) -> None:
        self.settings = settings
        self.specs = specs  # topic -> spec
        self.group = group
        self.assigned = False
        self.reports = {s.name: DimensionReport(s.name) for s in specs.values()}

    def on_assign(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        stored = _stored_offsets(self.settings, self.group, parts)
        for p in parts:
            p.offset = stored.get((p.topic, p.partition), OFFSET_BEGINNING)
        consumer.assign(parts)
        self.assigned = True

    def apply_batch(self, messages: list[Message]) -> dict[tuple[str, int], int]:
        """Decode, stage and apply one polled batch; returns the next offset per partition."""
        by_spec: dict[str, list[list[Any]]] = defaultdict(list)
        rounds: dict[tuple[str, Any], int] = defaultdict(int)
        positions: dict[tuple[str, int], int] = {}
        for seq, msg in enumerate(messages):
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            assert topic is not None and partition is not None and offset is not None
            positions[(topic, partition)] = max(positions.get((topic, partition), 0), offset + 1)
            spec = self.specs[topic]
            try:
                change = decode_change(msg.value(), spec)
            except UndecodableChangeError as exc:
                self.reports[spec.name].undecodable += 1
                log.warning("dims %s: skipped %s[%d]@%d: %s", spec.name, topic, partition, offset, exc)
                continue
            if change is None:
                continue
            rounds[(spec.name, change.natural_id)] += 1
            by_spec[spec.name].append(stage_row(spec, change, seq, rounds[(spec.name, change.natural_id)]))
        with connect(self.settings.warehouse) as wh:
            for spec in {s.name: s for s in self.specs.values()}.values():
                rows = by_spec.get(spec.name)
                if not rows:
                    continue
                report = self.reports[spec.name]
                _, rehashed = prepare(wh, spec)
                report.rehashed += rehashed
                dim_store.create_stage(wh, spec)
                dim_store.write_stage_rows(wh, spec, rows)
                report.read += len(rows)
                report.counts.update(dim_store.apply_staged(wh, spec))
                report.rekeyed.update(fact_rekey.rekey_after_sync(wh, spec))
                dim_store.write_state(
                    wh, spec.name, watermark=None, fingerprint=spec.fingerprint(), full=False
                )
            _save_offsets(wh, self.group, positions)
            wh.commit()
        return positions


def sync_cdc(
    settings: OrionSettings, dimension: str, *, progress: Progress | None = None, group_id: str | None = None
) -> SyncReport:
    """Drain the dimension CDC topics once (see module doc)."""
    names = selected(dimension)
    specs = {getattr(settings.dims.cdc_topics, n): resolve_spec(n, settings.dims) for n in names}
    group = group_id or settings.dims.cdc_group_id
    drain = _Drain(settings, specs, group)
    report = SyncReport("cdc")
    step = progress or (lambda _d, _p: None)
    with (
        dimension_locks(settings, names),
        record_job_run(settings.warehouse, JOB_NAME, JOB_TYPE, {"mode": "cdc", "group": group}) as run,
    ):
        report.job_run_id = str(run.id)
        consumer = make_consumer(settings.kafka, group)
        try:
            existing = set(consumer.list_topics(timeout=15).topics)
            topics = [t for t in specs if t in existing]
            for missing in sorted(set(specs) - set(topics)):
                log.warning("dims: topic %s does not exist (yet); skipped", missing)
            if topics:
                consumer.subscribe(topics, on_assign=drain.on_assign)
                _drain(consumer, drain, settings, step)
        finally:
            consumer.close()
        report.dimensions = list(drain.reports.values())
        for dim_report in report.dimensions:
            run.processed += dim_report.read
            run.failed += dim_report.undecodable
            run.metadata[dim_report.dimension] = dim_report.as_dict()
            step(dim_report.dimension, "done")
        run.metadata["warnings"] = report.warnings
        run.exit_code = 1 if report.warnings else 0
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
            positions = drain.apply_batch(messages)
            # Informational only (lag tools): the warehouse holds the positions that count.
            consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in positions.items()], asynchronous=True
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
