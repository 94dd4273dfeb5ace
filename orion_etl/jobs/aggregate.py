"""Aggregation jobs: period recomputes, intraday running aggregates, consistency validation.

All writers take the same advisory lock, so cron/systemd runs never overlap; each run is one
`etl_job_runs` row (job type AGGREGATION) and its failed checks are `etl_data_quality_issues`
linked to it. See docs/aggregates.md for formulas and the intraday design.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import psycopg

from orion_etl.adapters import aggregates as agg
from orion_etl.adapters.jobruns import JobRun, record_job_run
from orion_etl.adapters.postgres import advisory_lock, connect
from orion_etl.config.models import OrionSettings
from orion_etl.core.periods import Bucket, Period, bucket_for, is_complete
from orion_etl.core.tradingday import trading_date
from orion_etl.errors import Verdict, exit_code_for

log = logging.getLogger(__name__)

LOCK_NAME = "orion-etl:aggregate"
OnBucket = Callable[[Bucket], None]


@dataclass
class AggregateReport:
    """What a run did, rendered by the CLI (`--format json`) and stored in the run's metadata."""

    mode: str
    run_id: str = ""
    buckets: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    merged_rows: int = 0
    merged_days: list[str] = field(default_factory=list)
    issues: list[dict[str, Any]] = field(default_factory=list)

    def add_rows(self, counts: dict[str, int]) -> None:
        for table, n in counts.items():
            self.rows[table] = self.rows.get(table, 0) + n

    def add_issues(self, issues: list[agg.Issue]) -> None:
        self.issues += [{"rule": i.rule, "record_id": i.record_id, "message": i.message} for i in issues]

    @property
    def verdict(self) -> Verdict:
        """Failed when a consistency check found an issue (exit 4)."""
        return Verdict.FAILED if self.issues else Verdict.OK

    def to_document(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "run_id": self.run_id,
            "buckets": self.buckets,
            "rows": self.rows,
            "merged_rows": self.merged_rows,
            "merged_days": self.merged_days,
            "issues": self.issues,
            "ok": not self.issues,
        }


def _finish(run: JobRun, report: AggregateReport) -> None:
    run.failed = len(report.issues)
    run.metadata.update({k: v for k, v in report.to_document().items() if k != "issues"})
    run.metadata["issue_count"] = len(report.issues)
    run.exit_code = exit_code_for(report)


def run_periods(
    settings: OrionSettings, buckets: list[Bucket], *, on_bucket: OnBucket | None = None
) -> AggregateReport:
    """Recompute every bucket (summary, client metrics, LP performance), then validate it.

    One transaction per bucket: a backfill interrupted half-way keeps the buckets it finished.
    """
    td = settings.trading_day
    tz, cutoff, roll = td.timezone, td.cutoff, td.weekend_roll
    period = buckets[0].period.value.lower() if buckets else "none"
    report = AggregateReport(mode=period)
    with (
        connect(settings.warehouse, autocommit=True) as lock_conn,
        advisory_lock(lock_conn, LOCK_NAME, wait=settings.aggregate.wait_for_lock),
        record_job_run(settings.warehouse, f"aggregate-{period}", "AGGREGATION") as run,
        connect(settings.warehouse) as conn,
    ):
        report.run_id = str(run.id)
        now = datetime.now(UTC)
        for bucket in buckets:
            params = agg.bucket_params(
                bucket,
                tz,
                cutoff,
                weekend_roll=roll,
                is_final=is_complete(bucket, now, tz, cutoff, weekend_roll=roll),
            )
            with conn.transaction():
                agg.claim_bucket(conn, bucket)  # before the recompute: it sees the claimed facts
                report.add_rows(agg.recompute_bucket(conn, params))
                if bucket.period is Period.DAILY:
                    agg.mark_recompute(conn, [bucket.start])
                report.add_issues(agg.validate_bucket(conn, params, run.id))
            report.buckets.append(str(bucket))
            run.processed += 1
            if on_bucket:
                on_bucket(bucket)
        _finish(run, report)
    return report


def run_intraday(settings: OrionSettings, periods: list[Period] | None = None) -> AggregateReport:
    """Bring running aggregates up to date in one REPEATABLE READ transaction.

    1. claim the dirty-bucket marks visible in this transaction's snapshot;
    2. merge trades inserted since the previous run's snapshot into the DAILY summaries
       (days whose trades were corrected or deleted are recomputed instead);
    3. recompute exactly the claimed buckets (client metrics, LP performance; whole summaries for
       non-daily buckets); 4. validate the touched days; 5. store this snapshot as the watermark.
    """
    td = settings.trading_day
    tz, cutoff, roll = td.timezone, td.cutoff, td.weekend_roll
    wanted = periods or [Period(p) for p in settings.aggregate.intraday_periods]
    if Period.DAILY not in wanted:
        wanted = [Period.DAILY, *wanted]
    report = AggregateReport(mode="intraday")
    with (
        connect(settings.warehouse, autocommit=True) as lock_conn,
        advisory_lock(lock_conn, LOCK_NAME, wait=settings.aggregate.wait_for_lock),
        record_job_run(settings.warehouse, "aggregate-intraday", "AGGREGATION") as run,
        connect(settings.warehouse) as conn,
    ):
        report.run_id = str(run.id)
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with conn.transaction():
            _intraday(conn, run, report, wanted, tz, cutoff, roll)
        _finish(run, report)
    return report


def _intraday(
    conn: psycopg.Connection,
    run: JobRun,
    report: AggregateReport,
    wanted: list[Period],
    tz: str,
    cutoff: str,
    roll: bool = False,
) -> None:
    snapshot = agg.current_snapshot(conn)  # first statement: fixes the transaction snapshot
    previous = agg.previous_snapshot(conn)
    marks = agg.claim_dirty(conn, wanted)
    full_days: set[date] = {m.bucket.start for m in marks if _summary_needs_recompute(m)}
    if previous is None:  # first run: no watermark yet, initialize every day from the facts
        full_days |= set(agg.fact_days(conn))
    merged_days: set[int] = set()
    if previous is not None:
        report.merged_rows, merged_days = agg.merge_delta(
            conn, previous, sorted(int(d.strftime("%Y%m%d")) for d in full_days)
        )
        report.merged_days = sorted(str(k) for k in merged_days)
    now = datetime.now(UTC)
    buckets = {m.bucket for m in marks if m.op != "RECOMPUTE"} | {
        bucket_for(Period.DAILY, d) for d in full_days
    }
    for bucket in sorted(buckets, key=lambda b: (list(Period).index(b.period), b.start)):
        params = agg.bucket_params(
            bucket,
            tz,
            cutoff,
            weekend_roll=roll,
            is_final=is_complete(bucket, now, tz, cutoff, weekend_roll=roll),
        )
        if bucket.period is Period.DAILY and bucket.start not in full_days:
            parts: tuple[str, ...] = ("clients", "lp")
        else:
            parts = agg.PARTS
        report.add_rows(agg.recompute_bucket(conn, params, parts))
        report.buckets.append(str(bucket))
        run.processed += 1
    checked = {b for b in buckets if b.period is Period.DAILY} | {
        bucket_for(Period.DAILY, datetime.strptime(str(k), "%Y%m%d").date()) for k in merged_days
    }
    # merged rows and rows of buckets that ended since: is_final as a full recompute writes it
    agg.finalize_complete(conn, trading_date(now, tz, cutoff, weekend_roll=roll))
    for bucket in sorted(checked, key=lambda b: b.start):
        report.add_issues(
            agg.validate_bucket(conn, agg.bucket_params(bucket, tz, cutoff, weekend_roll=roll), run.id)
        )
    agg.store_snapshot(conn, snapshot)
    log.info(
        "intraday: %d buckets recomputed, %d summary rows merged, %d issues",
        len(report.buckets),
        report.merged_rows,
        len(report.issues),
        extra={"event": "intraday", "buckets": len(report.buckets), "merged_rows": report.merged_rows,
               "issues": len(report.issues)},
    )  # fmt: skip


def _summary_needs_recompute(mark: agg.DirtyMark) -> bool:
    """Inserted trades are merged; corrected/deleted trades and outside rebuilds need a recompute."""
    if mark.bucket.period is not Period.DAILY:
        return False
    return mark.op == "RECOMPUTE" or (mark.source_table == "fact_trades" and mark.op in ("UPDATE", "DELETE"))


def run_validate(settings: OrionSettings, bucket: Bucket) -> AggregateReport:
    """Check one bucket's aggregates against each other and the facts; record issues."""
    td = settings.trading_day
    tz, cutoff, roll = td.timezone, td.cutoff, td.weekend_roll
    report = AggregateReport(mode="validate", buckets=[str(bucket)])
    with (
        record_job_run(settings.warehouse, "aggregate-validate", "AGGREGATION") as run,
        connect(settings.warehouse) as conn,
    ):
        report.run_id = str(run.id)
        with conn.transaction():
            report.add_issues(
                agg.validate_bucket(conn, agg.bucket_params(bucket, tz, cutoff, weekend_roll=roll), run.id)
            )
        run.processed = 1
        _finish(run, report)
    return report
