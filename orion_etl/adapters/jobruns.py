"""The job ledger: every command that changes data records one `etl_job_runs` row.

    with record_job_run(settings.warehouse, "dims-sync", "DIMENSION_SYNC") as run:
        ... do the work, on any connection ...
        run.processed += n
        run.metadata["inserted"] = n

The row is inserted as RUNNING on its own autocommit connection (so it is visible while the job
runs and survives the job's rollbacks), then closed as COMPLETED, or FAILED with the error.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from orion_etl.adapters.postgres import connect
from orion_etl.config.models import PostgresSettings
from orion_etl.logs import redactor


@dataclass
class JobRun:
    """Counters and metadata of a running job, written to `etl_job_runs` when it ends."""

    id: uuid.UUID
    job_name: str
    job_type: str
    processed: int = 0
    failed: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)


@contextmanager
def record_job_run(
    warehouse: PostgresSettings, job_name: str, job_type: str, metadata: dict[str, Any] | None = None
) -> Iterator[JobRun]:
    """Record a job run around the block; re-raises whatever the block raises."""
    run = JobRun(uuid.uuid4(), job_name, job_type, metadata=dict(metadata or {}))
    with connect(warehouse, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO etl_job_runs (id, job_name, job_type, status, metadata, host, pid) "
            "VALUES (%s, %s, %s, 'RUNNING', %s::jsonb, %s, %s)",
            (
                run.id,
                job_name,
                job_type,
                json.dumps(run.metadata, default=str),
                socket.gethostname(),
                os.getpid(),
            ),
        )
    try:
        yield run
    except BaseException as exc:
        message = redactor.redact(getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}")
        _finish(warehouse, run, "FAILED", message[:2000])
        raise
    _finish(warehouse, run, "COMPLETED", None)


def _finish(warehouse: PostgresSettings, run: JobRun, status: str, error: str | None) -> None:
    with connect(warehouse, autocommit=True) as conn:
        conn.execute(
            "UPDATE etl_job_runs SET status = %s, completed_at = now(), records_processed = %s, "
            "records_failed = %s, error_message = %s, metadata = %s::jsonb WHERE id = %s",
            (status, run.processed, run.failed, error, json.dumps(run.metadata, default=str), run.id),
        )
