"""SQL for logical replication: server checks, publications, REPLICA IDENTITY, slots, heartbeat.

Everything `cdc prepare` and `cdc status` ask PostgreSQL lives here. Identifiers are quoted with
psycopg.sql; values are parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from orion_etl.adapters.postgres import qualified

# pg_class.relreplident codes.
REPLICA_IDENTITY = {"d": "default", "n": "nothing", "f": "full", "i": "index"}


@dataclass(frozen=True)
class ServerInfo:
    """Server settings logical decoding depends on."""

    version: str
    wal_level: str
    max_replication_slots: int
    max_wal_senders: int
    slots_in_use: int


@dataclass(frozen=True)
class RoleInfo:
    """Privileges of the role the connector logs in as."""

    name: str
    exists: bool
    can_login: bool = False
    replication: bool = False
    superuser: bool = False


@dataclass(frozen=True)
class TableInfo:
    """A captured table as the catalog sees it."""

    name: str
    exists: bool
    replica_identity: str | None = None
    user_can_select: bool = False


@dataclass(frozen=True)
class PublicationInfo:
    """A publication, the operations it publishes and its tables (`schema.table`)."""

    name: str
    all_tables: bool
    operations: dict[str, bool]
    tables: frozenset[str]


def server_info(conn: psycopg.Connection) -> ServerInfo:
    """wal_level, slot and sender limits, slots in use."""
    row = conn.execute(
        "SELECT current_setting('server_version'), current_setting('wal_level'), "
        "current_setting('max_replication_slots')::int, current_setting('max_wal_senders')::int, "
        "(SELECT count(*) FROM pg_replication_slots)::int"
    ).fetchone()
    assert row is not None
    return ServerInfo(*row)


def role_info(conn: psycopg.Connection, role: str) -> RoleInfo:
    """Login, REPLICATION and superuser flags of `role`."""
    row = conn.execute(
        "SELECT rolcanlogin, rolreplication, rolsuper FROM pg_roles WHERE rolname = %s", (role,)
    ).fetchone()
    if row is None:
        return RoleInfo(role, exists=False)
    return RoleInfo(role, exists=True, can_login=row[0], replication=row[1], superuser=row[2])


def table_info(conn: psycopg.Connection, schema: str, tables: list[str], user: str) -> dict[str, TableInfo]:
    """Existence, replica identity and the CDC user's SELECT privilege for each table (one query)."""
    rows = conn.execute(
        """
        SELECT t.name, c.relreplident,
               CASE WHEN c.oid IS NULL OR NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %(user)s)
                    THEN false ELSE has_table_privilege(%(user)s, c.oid, 'SELECT') END
        FROM unnest(%(tables)s::text[]) WITH ORDINALITY AS t(name, ord)
        LEFT JOIN pg_namespace n ON n.nspname = %(schema)s
        LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.name AND c.relkind IN ('r', 'p')
        ORDER BY t.ord
        """,
        {"tables": tables, "schema": schema, "user": user},
    ).fetchall()
    return {
        name: TableInfo(
            name,
            exists=ident is not None,
            replica_identity=REPLICA_IDENTITY.get(ident) if ident else None,
            user_can_select=bool(can_select),
        )
        for name, ident, can_select in rows
    }


def publication_info(conn: psycopg.Connection, name: str) -> PublicationInfo | None:
    """The publication `name`, or None when it does not exist in this database."""
    row = conn.execute(
        "SELECT puballtables, pubinsert, pubupdate, pubdelete, pubtruncate FROM pg_publication "
        "WHERE pubname = %s",
        (name,),
    ).fetchone()
    if row is None:
        return None
    tables = conn.execute(
        "SELECT schemaname || '.' || tablename FROM pg_publication_tables WHERE pubname = %s", (name,)
    ).fetchall()
    operations = dict(zip(("insert", "update", "delete", "truncate"), row[1:], strict=True))
    return PublicationInfo(name, bool(row[0]), operations, frozenset(t[0] for t in tables))


def _table_list(schema: str, tables: list[str]) -> sql.Composable:
    return sql.SQL(", ").join(qualified(schema, t) for t in tables)


def create_publication(conn: psycopg.Connection, name: str, schema: str, tables: list[str]) -> None:
    """CREATE PUBLICATION ... FOR TABLE ... (inserts, updates, deletes and truncates)."""
    conn.execute(
        sql.SQL("CREATE PUBLICATION {} FOR TABLE {}").format(
            sql.Identifier(name), _table_list(schema, tables)
        )
    )


def add_publication_tables(conn: psycopg.Connection, name: str, schema: str, tables: list[str]) -> None:
    """ALTER PUBLICATION ... ADD TABLE ..."""
    conn.execute(
        sql.SQL("ALTER PUBLICATION {} ADD TABLE {}").format(sql.Identifier(name), _table_list(schema, tables))
    )


def set_publication_operations(conn: psycopg.Connection, name: str) -> None:
    """Publish every DML operation Debezium needs."""
    conn.execute(
        sql.SQL("ALTER PUBLICATION {} SET (publish = 'insert, update, delete, truncate')").format(
            sql.Identifier(name)
        )
    )


def set_lock_timeout(conn: psycopg.Connection, timeout: str) -> None:
    """Bound how long DDL waits for locks (REPLICA IDENTITY needs ACCESS EXCLUSIVE briefly)."""
    conn.execute("SELECT set_config('lock_timeout', %s, false)", (timeout,))


def set_replica_identity_full(conn: psycopg.Connection, schema: str, table: str) -> None:
    """ALTER TABLE ... REPLICA IDENTITY FULL: updates and deletes carry the whole old row."""
    conn.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(qualified(schema, table)))


def table_exists(conn: psycopg.Connection, schema: str, table: str) -> bool:
    """Whether `schema.table` exists."""
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}"."{table}"',)).fetchone()
    return bool(row and row[0])


def create_heartbeat_table(conn: psycopg.Connection, schema: str, table: str) -> None:
    """The one-row-per-slot table the connector's heartbeat.action.query upserts."""
    conn.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (slot_name text PRIMARY KEY, heartbeat_at timestamptz NOT NULL)"
        ).format(qualified(schema, table))
    )


HEARTBEAT_GRANTS = ("SELECT", "INSERT", "UPDATE")


def heartbeat_grants_missing(
    conn: psycopg.Connection,
    schema: str,
    table: str,
    user: str,
    privileges: tuple[str, ...] = HEARTBEAT_GRANTS,
) -> list[str]:
    """Which of `privileges` (default: what the heartbeat upsert needs) `user` lacks on `table`."""
    missing = []
    for privilege in privileges:
        row = conn.execute(
            "SELECT has_table_privilege(%s, %s, %s)", (user, f'"{schema}"."{table}"', privilege)
        ).fetchone()
        if not (row and row[0]):
            missing.append(privilege)
    return missing


def grant_heartbeat(
    conn: psycopg.Connection,
    schema: str,
    table: str,
    user: str,
    privileges: tuple[str, ...] = HEARTBEAT_GRANTS,
) -> None:
    """Let the connector's user upsert the heartbeat row (or use `table` with `privileges`)."""
    allowed = {"SELECT", "INSERT", "UPDATE", "DELETE"}
    if not set(privileges) <= allowed:
        raise ValueError(f"unexpected privileges {privileges}")
    conn.execute(
        sql.SQL("GRANT {} ON {} TO {}").format(
            sql.SQL(", ").join(sql.SQL(p) for p in privileges), qualified(schema, table), sql.Identifier(user)
        )
    )


SIGNAL_GRANTS = ("SELECT", "INSERT")


def create_signal_table(conn: psycopg.Connection, schema: str, table: str) -> None:
    """Debezium's signal table: (id, type, data) strings; the connector inserts its watermarks here."""
    conn.execute(
        sql.SQL("CREATE TABLE IF NOT EXISTS {} (id text PRIMARY KEY, type text NOT NULL, data text)").format(
            qualified(schema, table)
        )
    )


def insert_signal(
    conn: psycopg.Connection, schema: str, table: str, signal_id: str, signal_type: str, data: str
) -> None:
    """Send one signal to the connector (it reads the insert from the WAL)."""
    conn.execute(
        sql.SQL("INSERT INTO {} (id, type, data) VALUES (%s, %s, %s)").format(qualified(schema, table)),
        (signal_id, signal_type, data),
    )


def heartbeat_age_s(conn: psycopg.Connection, schema: str, table: str, slot: str) -> float | None:
    """Seconds since the connector last upserted its heartbeat row (None: no table or no row yet)."""
    if not table_exists(conn, schema, table):
        return None
    row = conn.execute(
        sql.SQL(
            "SELECT extract(epoch FROM now() - heartbeat_at)::float8 FROM {} WHERE slot_name = %s"
        ).format(qualified(schema, table)),
        (slot,),
    ).fetchone()
    return None if row is None else float(row[0])


def replication_slots(conn: psycopg.Connection, dbname: str) -> list[dict[str, Any]]:
    """Logical slots of `dbname` with WAL retention and lag in bytes."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            """
            SELECT slot_name, plugin, active, active_pid, wal_status,
                   safe_wal_size::bigint AS safe_wal_size_bytes,
                   pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS retained_wal_bytes,
                   pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint AS flush_lag_bytes,
                   restart_lsn::text AS restart_lsn, confirmed_flush_lsn::text AS confirmed_flush_lsn
            FROM pg_replication_slots
            WHERE slot_type = 'logical' AND database = %s
            ORDER BY slot_name
            """,
            (dbname,),
        )
        return list(cur.fetchall())


def drop_slot_if_inactive(conn: psycopg.Connection, slot: str) -> bool | None:
    """Drop `slot` if it exists and is inactive: True dropped, False still active, None absent."""
    row = conn.execute("SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
    if row is None:
        return None
    if row[0]:
        return False
    try:
        conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    except psycopg.errors.ObjectInUse:
        return False
    except psycopg.errors.UndefinedObject:
        return None
    return True
