"""Debezium incremental-snapshot signals (pure, no I/O): what `orion-etl cdc snapshot` inserts.

Debezium's source signalling channel reads rows ``(id, type, data)`` inserted into the signal
table (``signal.data.collection``) from the WAL. Two signal types matter here:

* ``execute-snapshot`` with ``{"type": "incremental", "data-collections": [...]}`` re-reads the
  listed tables in chunks (``op = r`` events) while streaming goes on; optional
  ``additional-conditions`` (``[{"data-collection": ..., "filter": "<SQL condition>"}]``) limit it
  to the rows matching the condition, which Debezium appends to its chunk query as is;
* ``stop-snapshot`` with the same ``type`` and ``data-collections`` removes those tables from a
  running incremental snapshot (no ``data-collections``: stops it entirely).

Re-snapshotted rows reach the loader as reads of rows it already has; its upserts are keyed on
the natural key, so a re-snapshot refreshes facts and never doubles them.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Protocol

from orion_etl.errors import ConfigError, UsageError


class _SignalSettings(Protocol):
    @property
    def signal_table(self) -> str: ...


class _Schema(Protocol):
    @property
    def schema_name(self) -> str: ...


class SignalTarget(Protocol):
    """What a snapshot signal needs of a CDC environment (`config.cdc_target.CdcTarget` has it)."""

    @property
    def cdc(self) -> _SignalSettings: ...

    @property
    def source(self) -> _Schema: ...

    @property
    def captured_tables(self) -> list[str]: ...


EXECUTE = "execute-snapshot"
STOP = "stop-snapshot"


@dataclass(frozen=True)
class SnapshotSignal:
    """One row for the signal table."""

    id: str
    type: str
    data: str
    tables: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "type": self.type, "data": json.loads(self.data), "tables": list(self.tables)}


def snapshot_signal(
    target: SignalTarget,
    tables: list[str],
    *,
    condition: str | None = None,
    stop: bool = False,
    signal_id: str | None = None,
) -> SnapshotSignal:
    """The signal that starts (or stops) an incremental snapshot of `tables`; ConfigError when invalid."""
    cdc, schema = target.cdc, target.source.schema_name
    if not cdc.signal_table:
        raise ConfigError("cdc.signal_table is empty: signalling is disabled for this environment")
    if not tables and not stop:
        raise UsageError("name at least one table to snapshot (--table)")
    unknown = [t for t in tables if t not in target.captured_tables]
    if unknown:
        raise UsageError(
            f"{unknown[0]!r} is not a captured table (cdc.tables: {', '.join(target.captured_tables)})"
        )
    if condition is not None:
        if stop:
            raise UsageError("--filter applies to starting a snapshot, not to --stop")
        if len(tables) != 1:
            raise UsageError("--filter needs exactly one --table (the condition is that table's SQL)")
        if not condition.strip():
            raise UsageError("--filter is empty")
    collections = [f"{schema}.{t}" for t in dict.fromkeys(tables)]
    data: dict[str, object] = {"type": "incremental"}
    if collections:
        data["data-collections"] = collections
    if condition is not None:
        data["additional-conditions"] = [{"data-collection": collections[0], "filter": condition.strip()}]
    return SnapshotSignal(
        id=signal_id or f"orion-etl-{uuid.uuid4()}",
        type=STOP if stop else EXECUTE,
        data=json.dumps(data, separators=(",", ":")),
        tables=tuple(collections),
    )
