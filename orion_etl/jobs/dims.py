"""`dims sync` / `dims check`: wire the source, the warehouse and Kafka to the SCD rules.

Batch: per dimension, changed source rows (updated_at >= watermark - lookback, or all rows with
`full`) are piped with binary COPY into a warehouse staging table, applied set-based, and the new
watermark is written, all in ONE warehouse transaction. CDC: Debezium envelopes are decoded into
the same staging table and applied by the same statements, with the Kafka positions stored in
`etl_consumer_offsets` in the same transaction. Both hold the per-dimension advisory lock.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from orion_etl.adapters import dim_store, fact_rekey
from orion_etl.adapters.dim_queries import CheckResult, check_dimension
from orion_etl.adapters.jobruns import record_job_run
from orion_etl.adapters.postgres import advisory_lock, connect
from orion_etl.config.models import OrionSettings
from orion_etl.core.fact_keys import registered
from orion_etl.core.scd import DIMENSION_NAMES, Action, DimensionSpec, resolve_spec
from orion_etl.errors import Verdict, exit_code_for

log = logging.getLogger(__name__)

JOB_NAME = "dims-sync"
JOB_TYPE = "DIMENSION_SYNC"
WARNING_ACTIONS = (Action.STALE.value,)
Progress = Callable[[str, str], None]  # (dimension, phase) -> None; phase "done" ends one


@dataclass
class DimensionReport:
    """What one dimension's sync did."""

    dimension: str
    read: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    rehashed: int = 0
    watermark: datetime | None = None
    undecodable: int = 0  # dead-lettered: not a usable change event (DECODE)
    rejected: int = 0  # dead-lettered: the warehouse refused the change (LOAD_REJECTED)
    # fact rows re-keyed to the version valid at their event time, per fact key column
    rekeyed: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        c = self.counts
        return {
            "dimension": self.dimension,
            "read": self.read,
            "inserted": c[Action.INSERT],
            "scd1": c[Action.SCD1],
            "scd2": c[Action.SCD2],
            "corrected": c[Action.CORRECT],
            "closed": c[Action.CLOSE],
            "flagged_deleted": c[Action.DELETE_FLAG],
            "completed_inferred": c[Action.COMPLETE],
            "unchanged": c[Action.UNCHANGED],
            "stale": c[Action.STALE],
            "ignored_deletes": c[Action.IGNORED_DELETE],
            "undecodable": self.undecodable,
            "rejected": self.rejected,
            "rehashed": self.rehashed,
            "rekeyed_facts": sum(self.rekeyed.values()),
            "rekeyed": dict(sorted(self.rekeyed.items())),
            "watermark": self.watermark.isoformat() if self.watermark else None,
        }


@dataclass
class SyncReport:
    """The result of one `dims sync` run."""

    mode: str
    dimensions: list[DimensionReport] = field(default_factory=list)
    job_run_id: str | None = None

    @property
    def warnings(self) -> int:
        return sum(d.counts[a] for d in self.dimensions for a in WARNING_ACTIONS) + sum(
            d.undecodable + d.rejected for d in self.dimensions
        )

    @property
    def verdict(self) -> Verdict:
        """Warnings when rows were rejected, undecodable or stale (the run itself did its work)."""
        return Verdict.WARNINGS if self.warnings else Verdict.OK

    def to_document(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "job_run_id": self.job_run_id,
            "warnings": self.warnings,
            "dimensions": [d.as_dict() for d in self.dimensions],
        }


def selected(dimension: str) -> list[str]:
    """Dimension names for a `--dimension` value (`all` = every one)."""
    return list(DIMENSION_NAMES) if dimension == "all" else [dimension]


@contextmanager
def dimension_locks(settings: OrionSettings, names: list[str]) -> Iterator[None]:
    """Hold the advisory lock of every named dimension (LockHeldError if any is taken)."""
    with connect(settings.warehouse, autocommit=True) as lock_conn, ExitStack() as stack:
        for name in sorted(names):
            stack.enter_context(advisory_lock(lock_conn, f"orion-etl:dims-sync:{name}"))
        yield


def prepare(conn: psycopg.Connection, spec: DimensionSpec) -> tuple[datetime | None, int]:
    """Lock the dimension's state row; re-hash when the SCD split changed. Returns (watermark, rehashed)."""
    watermark, fingerprint = dim_store.read_state(conn, spec.name)
    rehashed = dim_store.rehash(conn, spec) if fingerprint != spec.fingerprint() else 0
    if rehashed:
        log.warning("dims %s: SCD attribute split changed, %d stored hashes recomputed", spec.name, rehashed)
    return watermark, rehashed


def _source_snapshot(src: psycopg.Connection) -> tuple[datetime, datetime | None]:
    """(snapshot time, start of the oldest writing transaction still open) on the source."""
    row = src.execute(
        "SELECT now(), (SELECT min(xact_start) FROM pg_stat_activity WHERE datname = current_database() "
        "AND backend_xid IS NOT NULL AND pid <> pg_backend_pid())"
    ).fetchone()
    assert row is not None
    return row[0], row[1]


def sync_dimension_batch(
    settings: OrionSettings, spec: DimensionSpec, *, full: bool, progress: Progress | None = None
) -> DimensionReport:
    """One dimension, one warehouse transaction (see module doc)."""
    report = DimensionReport(spec.name)
    step = progress or (lambda _d, _p: None)
    with connect(settings.warehouse) as wh, connect(settings.source) as src:
        src.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        src.read_only = True
        watermark, report.rehashed = prepare(wh, spec)
        since = None if full or watermark is None else watermark - timedelta(seconds=settings.dims.lookback_s)
        snapshot_at, oldest_open = _source_snapshot(src)
        step(spec.name, "reading source")
        dim_store.create_stage(wh, spec)
        query = sql.SQL("COPY ({}) TO STDOUT (FORMAT BINARY)").format(
            dim_store.source_select(spec, settings.source.schema_name, since)
        )
        with src.cursor() as cur, cur.copy(query) as out:
            dim_store.copy_in_stage(wh, spec, out)
        src.rollback()
        report.read, newest = dim_store.stage_summary(wh)
        if full:
            dim_store.stage_deletions(wh, spec, snapshot_at)
        step(spec.name, "applying")
        report.counts = dim_store.apply_staged(wh, spec)
        step(spec.name, "re-keying facts")
        report.rekeyed.update(fact_rekey.rekey_after_sync(wh, spec))
        # Never move past a change a still-open source transaction may commit later.
        new_watermark = watermark
        if newest is not None:
            new_watermark = min(newest, oldest_open) if oldest_open else newest
        report.watermark = new_watermark
        dim_store.write_state(
            wh, spec.name, watermark=new_watermark, fingerprint=spec.fingerprint(), full=full
        )
        wh.commit()
    step(spec.name, "done")
    counts = report.as_dict()
    log.info(
        "dims %s: %s",
        spec.name,
        ", ".join(f"{k} {v}" for k, v in counts.items() if isinstance(v, int) and v and k != "dimension"),
        extra={"event": "dimension_synced", **{k: v for k, v in counts.items() if k != "dimension"},
               "dimension": spec.name},
    )  # fmt: skip
    return report


def sync_batch(
    settings: OrionSettings, dimension: str, *, full: bool, progress: Progress | None = None
) -> SyncReport:
    """`dims sync [--full]`: every selected dimension under its lock, recorded in etl_job_runs."""
    names = selected(dimension)
    specs = [resolve_spec(n, settings.dims) for n in names]
    report = SyncReport("full" if full else "incremental")
    with (
        dimension_locks(settings, names),
        record_job_run(settings.warehouse, JOB_NAME, JOB_TYPE, {"mode": report.mode}) as run,
    ):
        report.job_run_id = str(run.id)
        for spec in specs:
            dim_report = sync_dimension_batch(settings, spec, full=full, progress=progress)
            report.dimensions.append(dim_report)
            run.processed += dim_report.read
            run.metadata[spec.name] = dim_report.as_dict()
        run.metadata["warnings"] = report.warnings
        run.exit_code = exit_code_for(report)
    return report


def check(settings: OrionSettings, dimension: str, *, facts: bool = True) -> list[CheckResult]:
    """`dims check`: SCD2 invariants of the selected dimensions, then (with `facts`) per registered
    fact key column (`core.fact_keys`) the facts whose key is not the version valid at their time
    (check `fact_keys:<fact table>.<key column>`, samples name the row, its key and the valid one)."""
    results: list[CheckResult] = []
    with connect(settings.warehouse) as conn:
        conn.read_only = True
        conn.execute("SET jit = off")  # per-row probes over large facts: compile time, no gain
        for name in selected(dimension):
            results += check_dimension(conn, resolve_spec(name, settings.dims))
            if not facts:
                continue
            for ref in registered(name):
                if not fact_rekey.table_exists(conn, ref.fact_table):
                    continue
                found = fact_rekey.key_mismatches(conn, ref)
                results.append(CheckResult(name, f"fact_keys:{ref.label}", found.count, found.samples))
    return results


@dataclass(frozen=True)
class DimsCheckReport:
    """`dims check`: every invariant checked, with its violations."""

    results: list[CheckResult]

    @property
    def verdict(self) -> Verdict:
        """Failed when any invariant is violated (exit 4)."""
        return Verdict.FAILED if any(r.violations for r in self.results) else Verdict.OK

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"dimension": r.dimension, "check": r.check, "violations": r.violations, "samples": r.samples}
            for r in self.results
        ]

    def to_document(self) -> dict[str, Any]:
        return {"ok": self.verdict is Verdict.OK, "checks": self.rows()}


def check_report(settings: OrionSettings, dimension: str) -> DimsCheckReport:
    """`check` as a report."""
    return DimsCheckReport(check(settings, dimension))
