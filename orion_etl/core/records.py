"""The transport types of the stream: a consumed Kafka record and the change decoded from it.

`KafkaRecord` is what jobs and adapters pass around (and what the DLQ re-publishes verbatim);
`Change` is one decoded record (core/envelopes.py) before its row becomes frame columns
(core/columns.py); `Kind` and `FieldType` describe a column's target type and a field's embedded
Kafka Connect schema type. Pure, no I/O.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# Debezium's placeholder for an unchanged TOASTed value (as text, and base64 in bytes columns)
UNAVAILABLE = "__debezium_unavailable_value"
UNAVAILABLE_B64 = base64.b64encode(UNAVAILABLE.encode()).decode()
LOAD_OPS = frozenset({"c", "u", "r"})  # operations whose `after` image is loaded ("d" reads `before`)


class Kind(StrEnum):
    """Target type of a column."""

    UUID = "uuid"
    STRING = "string"
    DECIMAL = "decimal"
    TIMESTAMP = "timestamp"
    DATE = "date"
    INT = "int"
    BOOL = "bool"


@dataclass(frozen=True, slots=True)
class FieldType:
    """A field of an embedded Kafka Connect schema: its type, logical name and parameters."""

    type: str
    name: str | None = None
    parameters: dict[str, str] | None = None


@dataclass(slots=True)
class KafkaRecord:
    """One consumed Kafka record (what the DLQ needs to re-publish it verbatim)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None
    headers: list[tuple[str, bytes]] | None = None


@dataclass(slots=True)
class Change:
    """A decoded change: operation, row image and ordering position."""

    record: KafkaRecord
    op: str  # c | u | r | d  (events are c)
    row: dict[str, Any]
    commit_lsn: int | None = None
    lsn: int | None = None
    ts_ms: int | None = None  # source commit time (CDC) or event time in ms (events)
    event_version: int | None = None
    event_time: Any = None  # raw occurredAt of events (converted with the frame)
    table: str | None = None
    fields: dict[str, FieldType] | None = field(default=None)


class Tombstone(Exception):  # noqa: N818 - a signal, not an error
    """A record with a null value (Kafka compaction tombstone): acknowledged, no effect."""
