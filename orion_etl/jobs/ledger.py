"""The job ledger seen from commands: `jobs list|show`, and the metrics textfile of a batch run."""

from __future__ import annotations

import os
from datetime import datetime

from orion_etl.adapters import jobruns, metrics
from orion_etl.adapters.jobruns import JobRunRecord
from orion_etl.config.models import PostgresSettings


def recent_runs(
    warehouse: PostgresSettings,
    *,
    job_names: list[str] | None,
    job_types: list[str] | None,
    statuses: list[str] | None,
    since: datetime | None,
    limit: int,
) -> list[JobRunRecord]:
    """Most recent runs first (RUNNING rows whose process died are marked ABANDONED first)."""
    return jobruns.list_job_runs(
        warehouse, job_name=job_names, job_type=job_types, status=statuses, since=since, limit=limit
    )


def find_run(warehouse: PostgresSettings, run_id: str) -> JobRunRecord | None:
    """One run by id or unique id prefix; None when none or several match."""
    return jobruns.get_job_run(warehouse, run_id)


def write_batch_metrics(path: str | os.PathLike[str], job: str, *, started: float, exit_code: int) -> None:
    """The node-exporter textfile of this process's batch run, with the records its runs counted."""
    metrics.record_batch_job(
        path,
        job,
        started=started,
        exit_code=exit_code,
        records=sum(run.processed for run in jobruns.finished_runs),
        failed=sum(run.failed for run in jobruns.finished_runs),
    )
