"""The job ledger: every command that changes data records one `etl_job_runs` row.

    with record_job_run(settings.warehouse, "dims-sync", "DIMENSION_SYNC") as run:
        ... do the work, on any connection ...
        run.processed += n
        run.metadata["inserted"] = n
        run.exit_code = exit_code_for(report)   # what the job found (errors.py: the one policy)

The row is inserted as RUNNING on the run's own autocommit connection (so it is visible while
the job runs and survives the job's rollbacks), which holds a session-level advisory lock
(`lock_key`) until the run is closed. The run ends with its exit code and an outcome:

    exit 0 -> COMPLETED/SUCCESS, 1 -> COMPLETED/WARNING, 4 (checks failed) -> FAILED/FAILED,
    2 (bad usage/config) and 3 (could not run) -> FAILED/ERROR,
    SIGTERM/SIGINT -> FAILED/INTERRUPTED (exit 143/130).

A process killed outright (kill -9, OOM killer, host lost) cannot close its row, but its session
ends and PostgreSQL releases the lock: whoever reads the ledger (`jobs list|show`,
`mark_abandoned`) turns RUNNING rows whose lock is no longer held into ABANDONED.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg

from orion_etl.adapters.postgres import advisory_key, connect
from orion_etl.config.models import PostgresSettings
from orion_etl.core.pgtext import pg_json, storable
from orion_etl.errors import ExitCode, OrionError, exit_code_for
from orion_etl.logs import redactor

log = logging.getLogger(__name__)

STATUSES = ("RUNNING", "COMPLETED", "FAILED", "ABANDONED")


def outcome_of(exit_code: int) -> str:
    """The ledger outcome of an exit code (128 + n: stopped by signal n)."""
    if exit_code > 128:
        return "INTERRUPTED"
    outcomes: dict[int, str] = {
        ExitCode.OK: "SUCCESS",
        ExitCode.WARNINGS: "WARNING",
        ExitCode.CHECKS_FAILED: "FAILED",
    }
    return outcomes.get(exit_code, "ERROR")


def status_of(exit_code: int) -> str:
    """COMPLETED for exit 0/1 (the job did its work), FAILED otherwise."""
    return "COMPLETED" if exit_code in (ExitCode.OK, ExitCode.WARNINGS) else "FAILED"


@dataclass
class JobRun:
    """Counters and metadata of a running job, written to `etl_job_runs` when it ends."""

    id: uuid.UUID
    job_name: str
    job_type: str
    processed: int = 0
    failed: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    exit_code: int = 0  # set by the job from its result: `errors.exit_code_for(report)`
    _session: _LedgerSession | None = field(default=None, repr=False, compare=False)

    def keep_alive(self) -> None:
        """Make sure the run's ledger session (and so its lock) still exists; long jobs call this.

        After the warehouse restarted, or the session was terminated, the lock is gone and readers
        mark the run ABANDONED although the process lives: a new session takes the lock again and
        puts the row back to RUNNING. Failures are logged and tried again on the next call.
        """
        if self._session is not None:
            self._session.keep_alive(self.id)


class _LedgerSession:
    """The autocommit connection that holds a run's advisory lock while it runs."""

    def __init__(self, warehouse: PostgresSettings, key: int) -> None:
        self.warehouse = warehouse
        self.key = key
        self.conn = self._open()

    def _open(self) -> psycopg.Connection:
        conn = connect(self.warehouse, autocommit=True)
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (self.key,))
        except BaseException:
            conn.close()
            raise
        return conn

    def keep_alive(self, run_id: uuid.UUID) -> None:
        try:
            self.conn.execute("SELECT 1")
            return
        except psycopg.Error:
            self.conn.close()
        try:
            self.conn = self._open()
            cur = self.conn.execute(
                "UPDATE etl_job_runs SET status = 'RUNNING', completed_at = NULL, error_message = NULL "
                "WHERE id = %s AND status = 'ABANDONED'",
                (run_id,),
            )
            restored = " (it had been marked ABANDONED: back to RUNNING)" if cur.rowcount else ""
            log.warning("job ledger session lost and re-established%s", restored)
        except (psycopg.Error, OrionError) as exc:
            log.warning("job ledger session lost, retrying later: %s", type(exc).__name__)

    def close(self) -> None:
        self.conn.close()  # ends the session: the run's lock goes with it


# Runs this process closed, oldest first (the CLI puts their counts in --metrics-file).
finished_runs: list[JobRun] = []


@contextmanager
def record_job_run(
    warehouse: PostgresSettings, job_name: str, job_type: str, metadata: dict[str, Any] | None = None
) -> Iterator[JobRun]:
    """Record a job run around the block; re-raises whatever the block raises."""
    run = JobRun(uuid.uuid4(), job_name, job_type, metadata=dict(metadata or {}))
    key = advisory_key(f"orion-etl:job-run:{run.id}")
    session = run._session = _LedgerSession(warehouse, key)
    try:
        session.conn.execute(
            "INSERT INTO etl_job_runs (id, job_name, job_type, status, metadata, host, pid, lock_key) "
            "VALUES (%s, %s, %s, 'RUNNING', %s::jsonb, %s, %s, %s)",
            (
                run.id,
                job_name,
                job_type,
                pg_json(run.metadata),
                socket.gethostname(),
                os.getpid(),
                key,
            ),
        )
    except BaseException:
        session.close()
        raise
    try:
        try:
            yield run
        except KeyboardInterrupt as exc:
            _finish(warehouse, session.conn, run, exit_code_for(exc), str(exc) or "interrupted")
            raise
        except BaseException as exc:
            code = exit_code_for(exc)
            message = redactor.redact(getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}")
            _finish(warehouse, session.conn, run, code, message[:2000])
            raise
        _finish(warehouse, session.conn, run, run.exit_code, None)
    finally:
        session.close()
        run._session = None


def _finish(
    warehouse: PostgresSettings, conn: psycopg.Connection, run: JobRun, exit_code: int, error: str | None
) -> None:
    """Close the row on the run's connection (or a new one if that one broke meanwhile)."""
    run.exit_code = exit_code
    params = (
        status_of(exit_code),
        outcome_of(exit_code),
        exit_code,
        run.processed,
        run.failed,
        None if error is None else storable(error),
        pg_json(run.metadata),
        run.id,
    )
    query = (
        "UPDATE etl_job_runs SET status = %s, outcome = %s, exit_code = %s, completed_at = now(), "
        "records_processed = %s, records_failed = %s, error_message = %s, metadata = %s::jsonb "
        "WHERE id = %s"
    )
    finished_runs.append(run)
    try:
        conn.execute(query, params)
        return
    except psycopg.Error as exc:
        log.warning("job ledger connection lost (%s); closing the run on a new one", type(exc).__name__)
    with connect(warehouse, autocommit=True) as fresh:
        fresh.execute(query, params)


def mark_abandoned(conn: psycopg.Connection) -> int:
    """Turn RUNNING runs whose session is gone (lock no longer held) into ABANDONED; how many.

    Runs recorded before the ledger had `lock_key` (older versions) are left alone.
    """
    cur = conn.execute(
        "UPDATE etl_job_runs r SET status = 'ABANDONED', completed_at = now(), "
        "error_message = COALESCE(error_message, 'the process ended without closing the run "
        "(killed, out of memory or host lost)') "
        "WHERE r.status = 'RUNNING' AND r.lock_key IS NOT NULL AND NOT EXISTS ("
        "SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted "
        "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND ((l.classid::bigint << 32) | l.objid::bigint) = r.lock_key)"
    )
    return max(cur.rowcount, 0)


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
    exit_code: int | None
    outcome: str | None

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
            "outcome": self.outcome,
            "exit_code": self.exit_code,
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
    "error_message, metadata, host, pid, exit_code, outcome"
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
    """Most recent runs first, filtered by name, type, status (each one value or any of several)
    and start time.

    A `status` is a life state (RUNNING, COMPLETED, FAILED, ABANDONED; FAILED covers the outcomes
    FAILED, ERROR and INTERRUPTED) or an outcome (SUCCESS, WARNING, ERROR, INTERRUPTED); several
    match any of them.
    """
    from psycopg import sql

    clauses: list[sql.Composable] = []
    params: list[Any] = []
    for column, value in (("job_name", job_name), ("job_type", job_type)):
        if value is not None:
            clauses.append(sql.SQL("{} = ANY(%s)").format(sql.Identifier(column)))
            params.append([value] if isinstance(value, str) else list(value))
    if status is not None:
        wanted = [status] if isinstance(status, str) else list(status)
        states = [s for s in wanted if s in STATUSES]
        outcomes = [s for s in wanted if s not in STATUSES]
        clauses.append(sql.SQL("(status = ANY(%s) OR outcome = ANY(%s))"))
        params += [states, outcomes]
    if since is not None:
        clauses.append(sql.SQL("started_at >= %s"))
        params.append(since)
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
    query = sql.SQL("SELECT {} FROM etl_job_runs{} ORDER BY started_at DESC LIMIT %s").format(
        sql.SQL(_COLUMNS), where
    )
    with connect(warehouse, autocommit=True) as conn:
        mark_abandoned(conn)
        rows = conn.execute(query, [*params, limit]).fetchall()
    return [JobRunRecord(*row) for row in rows]


def get_job_run(warehouse: PostgresSettings, run_id: str) -> JobRunRecord | None:
    """One run by id or by a unique id prefix (as printed by `jobs list`)."""
    from psycopg import sql

    with connect(warehouse, autocommit=True) as conn:
        mark_abandoned(conn)
        rows = conn.execute(
            sql.SQL(
                "SELECT {} FROM etl_job_runs WHERE id::text LIKE %s ORDER BY started_at DESC LIMIT 2"
            ).format(sql.SQL(_COLUMNS)),
            (run_id.replace("%", "").replace("_", "") + "%",),
        ).fetchall()
    if len(rows) != 1:
        return None
    return JobRunRecord(*rows[0])
