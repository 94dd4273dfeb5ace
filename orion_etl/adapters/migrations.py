"""Versioned SQL migrations: `V<NNN>__<name>.sql` files applied in order, once each.

Every pending file is applied inside one transaction while holding an advisory lock, so two
concurrent `db migrate` runs cannot interleave and a failing file leaves the schema untouched.
Applied files are recorded with a checksum; an edited, already-applied file is reported as drift.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg

from orion_etl.adapters.postgres import advisory_lock
from orion_etl.errors import MigrationError
from orion_etl.sqlfiles import sql_root

log = logging.getLogger(__name__)

_FILE_RE = re.compile(r"^V(\d{3,})__([a-z0-9_]+)\.sql$")
HISTORY_TABLE = "orion_schema_migrations"
TARGETS = ("warehouse", "source")


@dataclass(frozen=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    path: Path
    checksum: str

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


@dataclass(frozen=True)
class MigrationState:
    """A migration and whether/when it was applied."""

    migration: Migration
    applied_at: datetime | None
    drifted: bool


def discover(target: str, root: Path | None = None) -> list[Migration]:
    """Migration files for `target` ('warehouse' or 'source') in version order."""
    if target not in TARGETS:
        raise MigrationError(f"unknown migration target {target!r} (expected one of {', '.join(TARGETS)})")
    folder = (root or sql_root()) / target
    found: list[Migration] = []
    for path in sorted(folder.glob("*.sql")):
        match = _FILE_RE.match(path.name)
        if not match:
            raise MigrationError(f"{path}: migration files must be named V<NNN>__<name>.sql")
        checksum = hashlib.sha256(path.read_bytes()).hexdigest()
        found.append(Migration(int(match.group(1)), match.group(2), path, checksum))
    versions = [m.version for m in found]
    if len(versions) != len(set(versions)):
        raise MigrationError(f"duplicate migration version in {folder}")
    return found


def _ensure_history(conn: psycopg.Connection) -> None:
    conn.execute(
        f"""
        CREATE TABLE IF NOT EXISTS {HISTORY_TABLE} (
            version     INTEGER PRIMARY KEY,
            name        TEXT NOT NULL,
            checksum    TEXT NOT NULL,
            applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
        )"""
    )


def status(conn: psycopg.Connection, target: str) -> list[MigrationState]:
    """Every known migration with its applied time (None when pending) and drift flag."""
    migrations = discover(target)
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (HISTORY_TABLE,)).fetchone()
    applied: dict[int, tuple[str, datetime]] = {}
    if exists and exists[0]:
        for version, checksum, applied_at in conn.execute(
            f"SELECT version, checksum, applied_at FROM {HISTORY_TABLE}"
        ):
            applied[version] = (checksum, applied_at)
    if not conn.autocommit:
        conn.rollback()
    return [
        MigrationState(
            m,
            applied[m.version][1] if m.version in applied else None,
            m.version in applied and applied[m.version][0] != m.checksum,
        )
        for m in migrations
    ]


def migrate(conn: psycopg.Connection, target: str) -> list[Migration]:
    """Apply pending migrations in one transaction; returns what was applied (empty: no-op)."""
    migrations = discover(target)
    with advisory_lock(conn, f"orion-etl:migrate:{target}", wait=True), conn.transaction():
        _ensure_history(conn)
        applied = {row[0]: row[1] for row in conn.execute(f"SELECT version, checksum FROM {HISTORY_TABLE}")}
        drifted = [m for m in migrations if m.version in applied and applied[m.version] != m.checksum]
        if drifted:
            names = ", ".join(m.path.name for m in drifted)
            raise MigrationError(f"already-applied migration files were edited: {names}")
        pending = [m for m in migrations if m.version not in applied]
        for migration in pending:
            log.info("applying migration %s", migration.path.name, extra={"target": target})
            try:
                conn.execute(migration.sql.encode())
            except psycopg.Error as exc:
                detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise MigrationError(f"{migration.path.name} failed: {detail}") from None
            conn.execute(
                f"INSERT INTO {HISTORY_TABLE} (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
    return pending
