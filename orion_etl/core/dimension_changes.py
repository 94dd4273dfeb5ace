"""Debezium change events of the dimension source tables, decoded into staged changes.

Small and local on purpose: only what `dims sync --from-cdc` needs (the streaming loader has its
own general decoder for facts). Handles envelopes with and without embedded JSON schemas
(`{"schema": ..., "payload": {...}}` or the bare payload), `op` c/u/r/d, and the logical types
the source tables use: `io.debezium.time.ZonedTimestamp` (ISO string, timestamptz),
`MicroTimestamp`/`Timestamp`/`NanoTimestamp` (epoch ints, timestamp), `Date` (epoch days).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

import msgspec

from orion_etl.core.scd import DimensionSpec

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH_DAY = date(1970, 1, 1)
_INT_TIME_UNITS = {
    "io.debezium.time.Timestamp": 1_000,
    "org.apache.kafka.connect.data.Timestamp": 1_000,
    "io.debezium.time.MicroTimestamp": 1_000_000,
    "io.debezium.time.NanoTimestamp": 1_000_000_000,
}


class UndecodableChangeError(ValueError):
    """A record that is not a usable Debezium change event of the expected table."""


@dataclass(frozen=True)
class DimensionChange:
    """One source row change: natural id, dimension attributes, change time, deleted flag."""

    natural_id: UUID
    attrs: dict[str, Any]
    change_time: datetime
    created_at: datetime | None
    deleted: bool


def decode_timestamp(value: Any, logical: str | None = None) -> datetime | None:
    """A Debezium timestamp (ISO string or epoch int in the unit its logical type names)."""
    if value is None:
        return None
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if isinstance(value, int):
        per_second = _INT_TIME_UNITS.get(logical or "", 1_000_000)
        seconds, rest = divmod(value, per_second)
        return EPOCH + timedelta(seconds=seconds, microseconds=rest * 1_000_000 // per_second)
    raise UndecodableChangeError(f"unexpected timestamp value {value!r}")


def decode_value(value: Any, pg_type: str) -> Any:
    """A column value in its Python type (Debezium JSON -> what the staging table expects)."""
    if value is None:
        return None
    if pg_type == "uuid":
        return UUID(str(value))
    if pg_type == "date":
        if isinstance(value, int):
            return EPOCH_DAY + timedelta(days=value)
        return date.fromisoformat(str(value))
    if pg_type == "integer":
        return int(value)
    if pg_type == "boolean":
        if not isinstance(value, bool):
            raise UndecodableChangeError(f"expected a boolean, got {value!r}")
        return value
    return str(value)


def _logical_types(schema: Any, section: str) -> dict[str, str]:
    """Field name -> logical type name of payload.<section>, from an embedded schema."""
    if not isinstance(schema, dict):
        return {}
    for part in schema.get("fields") or []:
        if isinstance(part, dict) and part.get("field") == section:
            return {
                f["field"]: f["name"]
                for f in part.get("fields") or []
                if isinstance(f, dict) and f.get("name")
            }
    return {}


def decode_change(raw: bytes | str | None, spec: DimensionSpec) -> DimensionChange | None:
    """Decode one record value; None for tombstones and non-row events (truncate, message)."""
    if raw is None or raw in (b"", ""):
        return None
    try:
        doc = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise UndecodableChangeError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise UndecodableChangeError("not a JSON object")
    schema = doc.get("schema") if "payload" in doc else None
    payload = doc.get("payload", doc)
    if payload is None:
        return None
    if not isinstance(payload, dict) or "op" not in payload:
        raise UndecodableChangeError("no Debezium envelope (payload.op missing)")
    op = payload["op"]
    if op not in ("c", "u", "r", "d"):
        return None
    deleted = op == "d"
    section = "before" if deleted else "after"
    row = payload.get(section)
    if not isinstance(row, dict) or row.get("id") is None:
        raise UndecodableChangeError(f"op={op} without payload.{section}.id")
    logical = _logical_types(schema, section)
    source = payload.get("source") or {}
    commit_time = decode_timestamp(source.get("ts_ms") or payload.get("ts_ms"), "io.debezium.time.Timestamp")
    try:
        natural_id = UUID(str(row["id"]))
        updated_at = decode_timestamp(row.get("updated_at"), logical.get("updated_at"))
        created_at = decode_timestamp(row.get("created_at"), logical.get("created_at"))
        attrs = (
            {} if deleted else {a.column: decode_value(row.get(a.source), a.pg_type) for a in spec.attributes}
        )
    except (ValueError, TypeError) as exc:
        raise UndecodableChangeError(f"bad column value: {exc}") from None
    change_time = commit_time if deleted else (updated_at or commit_time)
    if change_time is None:
        raise UndecodableChangeError("no change time (updated_at / source.ts_ms)")
    return DimensionChange(natural_id, attrs, change_time, created_at, deleted)


def stage_row(spec: DimensionSpec, change: DimensionChange, seq: int, round_no: int) -> list[Any]:
    """The change as a `_dim_stage` row (column order of `dim_store.stage_columns`)."""
    return [
        change.natural_id,
        *(change.attrs.get(c) for c in spec.columns),
        change.change_time,
        change.created_at,
        change.deleted,
        seq,
        round_no,
    ]
