"""`orion-etl dlq replay`: dead letters back through the loader's own pipeline.

Each selected letter becomes the `KafkaRecord` the loader originally read (ORIGIN topic, partition,
offset, Kafka timestamp, original headers, key and value byte for byte) and goes through the
loader's own phases (`orion_etl.jobs.stream_batch`: decoding, TOAST filling, computed fields, rules,
dimension gate, inferred members, point-in-time keys) and `WarehouseLoader.commit_batch`
(position-guarded upserts, tombstones, quotes keyed by their origin coordinates). So a replay
loads exactly what the loader would load now, subject to the ordering guard: an older change never
overwrites a newer one, and a second replay of the same letter changes nothing.

What differs from the loader, on purpose:

* Positions: the batch claims the REPLAY group's DLQ positions (`etl_consumer_offsets`,
  group `dlq.replay_group`, topic = the DLQ topic), never the loader's origin-topic positions.
  The position only moves over a contiguous run of letters that were attempted, so a filtered
  replay never marks unselected letters as done.
* A letter that fails again is not re-published (it is already in the DLQ) and gets no new
  `etl_data_quality_issues` row; the attempt is recorded in `etl_dlq_replays` (same transaction).
  Its rejection (`RowIssue`) is the outcome; only the plan's warnings become issue rows.
* Quote sampling is off (the replay's `BatchPolicy`: every replayed quote is kept; the loader's
  sampler state is neither read nor written).
* `--dry-run` runs the same preparation and the same commit inside a transaction that is rolled
  back: it reports what would load (and upsert/stale/duplicate counts) and what would fail again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import psycopg

from orion_etl.adapters import dlq_replays
from orion_etl.adapters.dlq_reader import DlqReader, Partition
from orion_etl.adapters.dlq_replays import ReplayAttempt
from orion_etl.adapters.failures import is_transient, is_warehouse_failure
from orion_etl.adapters.jobruns import record_job_run
from orion_etl.adapters.postgres import advisory_lock, connect
from orion_etl.adapters.warehouse_loader import BatchWrite, LoadCounts, WarehouseLoader
from orion_etl.config.models import OrionSettings
from orion_etl.core.batch_draft import Coordinates, RowIssue
from orion_etl.core.dead_letter_classes import ErrorClass
from orion_etl.core.dead_letters import DlqMessage, FailureGroup, Selection, group_failures, parse_letter
from orion_etl.core.records import KafkaRecord
from orion_etl.errors import ConfigError, ExitCode, OrionError, ServiceUnavailableError
from orion_etl.jobs.dlq import configured_dlq_topics, resolve_topics, scan_ranges
from orion_etl.jobs.stream_batch import BatchPreparer, fact_table_of, policy_for, warning_row

log = logging.getLogger(__name__)
LOCK_NAME = "orion-etl:dlq-replay"
MAX_ITEMS = 500  # per-letter outcomes kept for display; counters cover everything


@dataclass
class ReplayItem:
    """What happened (or would happen) to one selected letter."""

    message: DlqMessage
    outcome: str  # load | fail | skip | unreplayable
    table: str | None = None
    error_class: str | None = None
    error: str | None = None
    rule: str | None = None

    def as_dict(self) -> dict[str, Any]:
        m = self.message
        return {
            "dlq_topic": m.dlq_topic,
            "dlq_partition": m.dlq_partition,
            "dlq_offset": m.dlq_offset,
            "origin": {"topic": m.origin_topic, "partition": m.origin_partition, "offset": m.origin_offset},
            "fingerprint": m.fingerprint,
            "outcome": self.outcome,
            "table": self.table,
            "error_class": self.error_class,
            "error": self.error,
            "rule": self.rule,
        }


@dataclass
class ReplayResult:
    """Counters of a replay (or a dry run) and the per-letter outcomes (first `MAX_ITEMS`)."""

    dry_run: bool
    job_run_id: str | None = None
    scanned: int = 0
    selected: int = 0
    skipped: int = 0  # replayed by an earlier run (use --from-start / --retry-failed)
    loaded: int = 0
    failed: int = 0
    unreplayable: int = 0
    counts: LoadCounts = field(default_factory=LoadCounts)
    failures: dict[tuple[str, str], FailureGroup] = field(default_factory=dict)
    items: list[ReplayItem] = field(default_factory=list)
    positions: dict[str, int] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return int(ExitCode.WARNINGS if (self.failed or self.unreplayable) else ExitCode.OK)

    def summary(self) -> dict[str, Any]:
        c = self.counts
        return {
            "dry_run": self.dry_run,
            "job_run_id": self.job_run_id,
            "scanned": self.scanned,
            "selected": self.selected,
            "skipped_already_replayed": self.skipped,
            "loaded": self.loaded,
            "failed_again": self.failed,
            "unreplayable": self.unreplayable,
            "upserted": c.upserted,
            "deleted": c.deleted,
            "quotes": c.quotes,
            "stale": c.stale,
            "duplicates": c.duplicates,
            "positions": self.positions,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "failures": [g.as_dict() for g in self.failures.values()],
            "items": [i.as_dict() for i in self.items],
        }


def _origin_record(m: DlqMessage) -> KafkaRecord:
    assert m.origin_topic is not None and m.origin_partition is not None and m.origin_offset is not None
    return KafkaRecord(
        m.origin_topic, m.origin_partition, m.origin_offset, m.key, m.value, m.origin_timestamp_ms,
        m.origin_headers or None,
    )  # fmt: skip


class _Replay:
    def __init__(
        self,
        settings: OrionSettings,
        reader: DlqReader,
        selection: Selection,
        *,
        dry_run: bool,
        from_start: bool,
        retry_failed: bool,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self.settings = settings
        self.reader = reader
        self.selection = selection
        self.from_start = from_start
        self.retry_failed = retry_failed
        self.progress = progress
        self.result = ReplayResult(dry_run)
        self.loader = WarehouseLoader(settings.warehouse, settings.dlq.replay_group)
        self.preparer = BatchPreparer(settings, self.loader)
        self.preparer.insert_inferred = not dry_run  # a dry run writes nothing, not even placeholders
        # Sampling off for replays: a dead letter is rare and each one should load.
        self.policy = policy_for(settings, sampling=False)

    def run(self, job_run_id: str | None) -> ReplayResult:
        self.result.job_run_id = job_run_id
        try:
            self._run(job_run_id)
        finally:
            self.loader.close_all()
        return self.result

    def _run(self, job_run_id: str | None) -> None:
        topics = resolve_topics(self.reader, self.selection.topics, configured_dlq_topics(self.settings))
        lows = {(t, p): lo for t in topics for p, (lo, _) in self.reader.watermarks(t).items()}
        current: dict[Partition, int | None] = dict.fromkeys(lows)
        current.update(self.loader.stored_offsets(list(lows)))
        rewind = self.from_start or self.retry_failed
        starts = {} if rewind else {tp: o for tp, o in current.items() if o is not None}
        ranges = scan_ranges(self.reader, topics, self.selection, starts)
        # The remembered position may only advance over a contiguous run of attempted letters.
        frontier: dict[Partition, int | None] = {}
        for tp, (start, _) in ranges.items():
            base = max(lows[tp], current.get(tp) or lows[tp])
            frontier[tp] = start if start <= base else None
        total = sum(max(0, e - s) for s, e in ranges.values())
        for chunk in self.reader.read(ranges, chunk=self.settings.dlq.replay_batch_messages):
            self.result.scanned += len(chunk)
            attempts = self._chunk(chunk, frontier)
            positions = {tp: f for tp, f in frontier.items() if f is not None and f > (current.get(tp) or -1)}
            self._commit(attempts, positions, current, job_run_id)
            if self.progress:
                self.progress(self.result.scanned, total)
        # Reached the end of every range without a gap: the position is the range end.
        ends = {
            tp: e
            for tp, (_, e) in ranges.items()
            if frontier.get(tp) is not None and e > (current.get(tp) or -1)
        }
        if ends and not self.result.dry_run:
            self._commit(([], BatchWrite()), ends, current, job_run_id)
        self.result.positions = {f"{t}[{p}]": o for (t, p), o in sorted(current.items()) if o is not None}

    def _chunk(
        self,
        chunk: list[DlqMessage],
        frontier: dict[Partition, int | None],
    ) -> tuple[list[ReplayAttempt], BatchWrite]:
        r = self.result
        selected = [m for m in chunk if self.selection.matches(m)]
        chosen = {id(m) for m in selected}
        for m in chunk:  # advance the frontier over attempted (or already replayed) letters only
            tp = (m.dlq_topic, m.dlq_partition)
            if frontier.get(tp) is not None:
                frontier[tp] = m.dlq_offset + 1 if id(m) in chosen else None
        r.selected += len(selected)
        logged: dict[tuple[str, int, int], str] = {}
        if selected:
            conn = self.loader.open_reader()
            for t, p in {(m.dlq_topic, m.dlq_partition) for m in selected}:
                offsets = [m.dlq_offset for m in selected if (m.dlq_topic, m.dlq_partition) == (t, p)]
                logged.update({(t, p, o): s for o, s in dlq_replays.outcomes(conn, t, p, offsets).items()})
        todo: list[DlqMessage] = []
        items: list[ReplayItem] = []
        for m in selected:
            before = logged.get((m.dlq_topic, m.dlq_partition, m.dlq_offset))
            if not self.from_start and before is not None and (before != "failed" or not self.retry_failed):
                r.skipped += 1
                continue
            if not m.has_origin:
                items.append(ReplayItem(m, "unreplayable", error="no origin topic/partition/offset headers"))
                continue
            todo.append(m)
        previously_loaded = {
            (m.origin_topic, m.origin_partition, m.origin_offset)
            for m in todo
            if logged.get((m.dlq_topic, m.dlq_partition, m.dlq_offset)) == "loaded"
        }
        records: dict[tuple[str, int, int], KafkaRecord] = {}
        for m in todo:  # the DLQ is at-least-once: one origin record may be there twice
            rec = _origin_record(m)
            records.setdefault((rec.topic, rec.partition, rec.offset), rec)
        write = BatchWrite()
        failed: dict[Coordinates, RowIssue] = {}
        if records:
            phased = self.preparer.phases(list(records.values()), self.policy)
            failed = {i.origin: i for i in phased.plan.rejections}
            # failed-again letters stay where they are (no new DLQ record, no new ERROR issue);
            # warnings of letters an earlier replay already loaded are not repeated
            warnings = [warning_row(i) for i in phased.plan.warnings if i.origin not in previously_loaded]
            write = self.preparer.write_of(phased, warnings)
        write.offsets = {}
        for m in todo:
            coords = (m.origin_topic or "", m.origin_partition or 0, m.origin_offset or 0)
            issue = failed.get(coords)
            if issue is None:
                items.append(ReplayItem(m, "load", table=fact_table_of(self.settings, m.origin_topic or "")))
            else:
                error_class = str(issue.error_class)
                items.append(ReplayItem(m, "fail", issue.table, error_class, issue.reason, issue.rule))
                headers = [
                    ("dlq.error_class", error_class.encode()),
                    ("dlq.error", issue.reason.encode()),
                    ("dlq.rule", issue.rule.encode()),
                ]
                letter = parse_letter(
                    m.dlq_topic, m.dlq_partition, m.dlq_offset, m.timestamp_ms, None, None, headers, ""
                )
                group_failures([letter], r.failures)
        attempts = []
        for item in items:
            m = item.message
            r.loaded += item.outcome == "load"
            r.failed += item.outcome == "fail"
            r.unreplayable += item.outcome == "unreplayable"
            if len(r.items) < MAX_ITEMS:
                r.items.append(item)
            attempts.append(
                ReplayAttempt(
                    m.dlq_topic, m.dlq_partition, m.dlq_offset, m.origin_topic, m.origin_partition,
                    m.origin_offset, m.letter_id, m.fingerprint,
                    {"load": "loaded", "fail": "failed"}.get(item.outcome, item.outcome),
                    item.error_class, item.error,
                )
            )  # fmt: skip
        return attempts, write

    def _commit(
        self,
        work: tuple[list[ReplayAttempt], BatchWrite],
        positions: dict[Partition, int],
        current: dict[Partition, int | None],
        job_run_id: str | None,
    ) -> None:
        attempts, write = work
        if self.result.dry_run:
            write.offsets, write.issues = {}, []
            frames = (write.trades, write.orders, write.deletes, write.quotes, write.positions, write.risk)
            if all(f is None or f.is_empty() for f in frames):
                return
            conn = self.loader.open()
            with conn.transaction():
                counts = self.loader.commit_batch(write, {}, None)
                self._refused(counts, attempts)
                self.result.counts.add(counts)
                raise psycopg.Rollback()
            return
        if not attempts and not positions:
            return
        assert job_run_id is not None
        write.offsets = positions
        conn = self.loader.open()
        with conn.transaction():
            expected = {tp: current.get(tp) for tp in positions}
            counts = self.loader.commit_batch(write, expected, job_run_id)
            attempts = self._refused(counts, attempts)
            self.result.counts.add(counts)
            dlq_replays.record(conn, attempts, job_run_id)
        current.update(positions)

    def _refused(self, counts: LoadCounts, attempts: list[ReplayAttempt]) -> list[ReplayAttempt]:
        """Letters whose rows the warehouse refused again: failed (LOAD_REJECTED), not loaded."""
        refused = {(r.topic, r.partition, r.offset): r for r in counts.rejections}
        counts.rejections = []
        if not refused:
            return attempts
        out = []
        for a in attempts:
            r = refused.get((a.origin_topic, a.origin_partition, a.origin_offset))
            if r is not None and a.outcome == "loaded":
                error = f"the warehouse refused the row ({r.error})"
                a = replace(a, outcome="failed", error_class=str(ErrorClass.LOAD_REJECTED), error=error)
                self.result.loaded -= 1
                self.result.failed += 1
                for item in self.result.items:
                    if (item.message.dlq_topic, item.message.dlq_offset) == (a.dlq_topic, a.dlq_offset):
                        item.outcome, item.error_class, item.error = "fail", a.error_class, error
            out.append(a)
        return out


def run_replay(
    settings: OrionSettings,
    selection: Selection,
    *,
    dry_run: bool = False,
    from_start: bool = False,
    retry_failed: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    """Replay the selected dead letters (or, with `dry_run`, report what a replay would do)."""
    if settings.dlq.replay_group == settings.stream.group_id:
        raise ConfigError(
            "dlq.replay_group must differ from stream.group_id (replays must not move the loader's positions)"
        )
    try:
        with DlqReader(settings.kafka, settings.stream.dlq_suffix) as reader:
            replay = _Replay(
                settings,
                reader,
                selection,
                dry_run=dry_run,
                from_start=from_start,
                retry_failed=retry_failed,
                progress=progress,
            )
            if dry_run:
                return replay.run(None)
            lock_conn = connect(settings.warehouse, autocommit=True)
            with lock_conn, advisory_lock(lock_conn, LOCK_NAME):
                meta = {
                    "selection": selection.describe(),
                    "from_start": from_start,
                    "retry_failed": retry_failed,
                }
                with record_job_run(settings.warehouse, "dlq-replay", "DLQ_REPLAY", meta) as run:
                    result = replay.run(str(run.id))
                    run.processed = result.loaded + result.failed + result.unreplayable
                    run.failed = result.failed + result.unreplayable
                    run.metadata.update(result.summary())
                    run.exit_code = result.exit_code
                return result
    except Exception as exc:
        if isinstance(exc, OrionError) or not is_warehouse_failure(exc):
            raise
        if is_transient(exc):
            raise ServiceUnavailableError(
                f"warehouse unavailable during replay: {_one_line(exc)}",
                hint="letters committed so far stay replayed; run the replay again",
            ) from exc
        raise OrionError(
            f"replay failed: {type(exc).__name__}: {_one_line(exc)}",
            hint="nothing of the failing batch was committed; run with --debug",
        ) from exc


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]
