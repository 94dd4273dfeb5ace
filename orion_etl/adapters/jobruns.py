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


@dataclass(frozen=True)
class JobRunRecord:
    """One row of `etl_job_runs` as read back."""

    id: uuid.UUID
    job_name: str
    job_type: str
    status: str
    started_at: Any
    completed_at: Any
    records_processed: int
    records_failed: int
    error_message: str | None
    metadata: dict[str, Any]
    host: str | None
    pid: int | None

    @property
    def duration_s(self) -> float | None:
        if self.completed_at is None:
            return None
        return float((self.completed_at - self.started_at).total_seconds())

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": str(self.id),
            "job_name": self.job_name,
            "job_type": self.job_type,
            "status": self.status,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "duration_s": self.duration_s,
            "records_processed": self.records_processed,
            "records_failed": self.records_failed,
            "error_message": self.error_message,
            "metadata": self.metadata,
            "host": self.host,
            "pid": self.pid,
        }


_COLUMNS = (
    "id, job_name, job_type, status, started_at, completed_at, records_processed, records_failed, "
    "error_message, metadata, host, pid"
)


def list_job_runs(
    warehouse: PostgresSettings,
    *,
    job_name: str | list[str] | None = None,
    job_type: str | list[str] | None = None,
    status: str | list[str] | None = None,
    since: Any = None,
    limit: int = 50,
) -> list[JobRunRecord]:
    """Most recent runs first, filtered by name, type, status (each one value or any of several)."""
    from psycopg import sql

    clauses: list[sql.Composable] = []
    params: list[Any] = []
    for column, value in (("job_name", job_name), ("job_type", job_type), ("status", status)):
        if value is not None:
            clauses.append(sql.SQL("{} = ANY(%s)").format(sql.Identifier(column)))
            params.append([value] if isinstance(value, str) else list(value))
    if since is not None:
        clauses.append(sql.SQL("started_at >= %s"))
        params.append(since)
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
    query = sql.SQL("SELECT {} FROM etl_job_runs{} ORDER BY started_at DESC LIMIT %s").format(
        sql.SQL(_COLUMNS), where
    )
    with connect(warehouse, autocommit=True) as conn:
        rows = conn.execute(query, [*params, limit]).fetchall()
    return [JobRunRecord(*row) for row in rows]


def get_job_run(warehouse: PostgresSettings, run_id: str) -> JobRunRecord | None:
    """One run by id or by a unique id prefix (as printed by `jobs list`)."""
    from psycopg import sql

    with connect(warehouse, autocommit=True) as conn:
        rows = conn.execute(
            sql.SQL(
                "SELECT {} FROM etl_job_runs WHERE id::text LIKE %s ORDER BY started_at DESC LIMIT 2"
            ).format(sql.SQL(_COLUMNS)),
            (run_id.replace("%", "").replace("_", "") + "%",),
        ).fetchall()
    if len(rows) != 1:
        return None
    return JobRunRecord(*rows[0])
