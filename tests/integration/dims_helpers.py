"""Builders shared by the dimension-sync integration tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.datetime import TimestamptzLoader

from orion_etl.config.models import OrionSettings
from tests.scd_model import INFINITY, MINUS_INFINITY

TENANT = uuid.UUID("00000000-0000-0000-0000-00000000a001")


def ts(day: int, hour: int = 0) -> datetime:
    """A fixed UTC instant in January 2024."""
    return datetime(2024, 1, day, hour, tzinfo=UTC)


def add_client(
    source: psycopg.Connection,
    *,
    segment: str = "TIER_2",
    name: str = "Acme",
    at: datetime | None = None,
    client_id: uuid.UUID | None = None,
) -> uuid.UUID:
    """Insert a source client created (and last updated) at `at`."""
    cid = client_id or uuid.uuid4()
    at = at or ts(1)
    source.execute(
        "INSERT INTO clients (id, tenant_id, client_code, name, client_type, region, segment, industry, "
        "onboard_date, status, created_at, updated_at) "
        "VALUES (%s, %s, %s, %s, 'INSTITUTIONAL', 'EMEA', %s, 'Banking', '2023-12-01', 'ACTIVE', %s, %s)",
        (cid, TENANT, f"C-{cid.hex[:8]}", name, segment, at, at),
    )
    return cid


def update_client(source: psycopg.Connection, cid: uuid.UUID, at: datetime, **values: Any) -> None:
    """Update source columns of a client with an explicit change time."""
    sets = ", ".join(f"{k} = %s" for k in values)
    source.execute(f"UPDATE clients SET {sets}, updated_at = %s WHERE id = %s", (*values.values(), at, cid))


class InfinityLoader(TimestamptzLoader):
    """timestamptz loader mapping PostgreSQL's +/-infinity to the model's INFINITY / MINUS_INFINITY."""

    def load(self, data: Any) -> datetime:
        if bytes(data) == b"infinity":
            return INFINITY
        if bytes(data) == b"-infinity":
            return MINUS_INFINITY
        return super().load(data)


def dict_cursor(conn: psycopg.Connection) -> psycopg.Cursor[dict[str, Any]]:
    """A dict-row cursor that can read 'infinity' timestamps."""
    cur = conn.cursor(row_factory=psycopg.rows.dict_row)
    cur.adapters.register_loader("timestamptz", InfinityLoader)
    return cur


def versions(warehouse: psycopg.Connection, cid: uuid.UUID) -> list[dict[str, Any]]:
    """Every dim_clients row of a client, by version."""
    cur = dict_cursor(warehouse)
    return cur.execute("SELECT * FROM dim_clients WHERE client_id = %s ORDER BY version", (cid,)).fetchall()


def row_fingerprints(warehouse: psycopg.Connection, table: str = "dim_clients") -> list[tuple[Any, ...]]:
    """(key, xmin, updated_at) of every row: unchanged means no row was touched."""
    key = {"dim_clients": "client_key"}.get(table, "instrument_key")
    return warehouse.execute(f"SELECT {key}, xmin::text, updated_at FROM {table} ORDER BY 1").fetchall()


def with_dims(settings: OrionSettings, **dims: Any) -> OrionSettings:
    """A copy of the settings with some `dims` keys replaced."""
    return settings.model_copy(update={"dims": settings.dims.model_copy(update=dims)})
