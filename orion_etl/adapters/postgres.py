"""PostgreSQL connections, advisory locks and small helpers shared by every job."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from orion_etl.config.models import PostgresSettings
from orion_etl.errors import LockHeldError, ServiceUnavailableError
from orion_etl.logs import redactor

log = logging.getLogger(__name__)


def connect(settings: PostgresSettings, *, autocommit: bool = False) -> psycopg.Connection:
    """Open a connection, turning connection failures into one clear `ServiceUnavailableError`."""
    redactor.register(settings.password.get_secret_value())
    try:
        return psycopg.connect(settings.conninfo(), autocommit=autocommit)
    except psycopg.OperationalError as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        reason = redactor.redact(text)
        lowered = text.lower()
        if "password authentication failed" in lowered or "no password supplied" in lowered:
            hint = "check the user and password (ORION_ETL_WAREHOUSE__PASSWORD, ORION_ETL_SOURCE__PASSWORD)"
        elif "does not exist" in lowered:
            hint = "check dbname and user; `orion-etl config show` prints the effective settings"
        else:
            hint = "is the database running and reachable? (local stack: scripts/stack.sh up)"
        raise ServiceUnavailableError(
            f"cannot connect to PostgreSQL at {settings.describe()}: {reason}", hint=hint
        ) from None


def close_connection(conn: psycopg.Connection | None) -> None:
    """Close `conn` if there is one. Callers drop their reference first (`conn, self.conn =
    self.conn, None`), so a broken connection whose close raises is forgotten all the same."""
    if conn is not None:
        conn.close()


def advisory_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a job name."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@contextmanager
def advisory_lock(conn: psycopg.Connection, name: str, *, wait: bool = False) -> Iterator[None]:
    """Session-level advisory lock named `name`; raises `LockHeldError` if another run holds it.

    Needs an autocommit connection, so that the lock outlives the transactions run under it and
    releasing it never commits or rolls back the caller's work.
    """
    if not conn.autocommit:
        raise ValueError("advisory_lock needs an autocommit connection")
    key = advisory_key(name)
    if wait:
        conn.execute("SELECT pg_advisory_lock(%s)", (key,))
    else:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if not row or not row[0]:
            raise LockHeldError(f"another '{name}' run is in progress (advisory lock held); try again later")
    try:
        yield
    finally:
        if not conn.closed and not conn.broken:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def qualified(schema: str, table: str) -> sql.Composed:
    """`schema.table` with both identifiers quoted."""
    return sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(table))
