"""Helpers for the re-keying tests: load trade events through the real loader without Kafka."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import psycopg

from orion_etl.adapters.warehouse_loader import LoadCounts, WarehouseLoader
from orion_etl.config.models import OrionSettings
from orion_etl.core.records import KafkaRecord
from orion_etl.jobs.dims import check
from orion_etl.jobs.stream_batch import BatchPreparer, PreparedBatch
from tests.stream_builders import trade_event


def iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


class DirectLoader:
    """The stream's prepare + commit (real warehouse, real SQL) fed with in-memory records."""

    def __init__(self, settings: OrionSettings, group: str | None = None) -> None:
        self.settings = settings
        self.loader = WarehouseLoader(settings.warehouse, group or f"rekey-{uuid.uuid4().hex[:8]}")
        self.preparer = BatchPreparer(settings, self.loader)
        self.topic = settings.stream.topics.trade_events
        self.offset = 0
        self.positions: dict[tuple[str, int], int | None] = {}

    def prepare(
        self, trades: list[tuple[uuid.UUID, datetime]], **payload: Any
    ) -> tuple[PreparedBatch, list[str]]:
        """A prepared batch of one trade event per (client, execution time); returns the trade ids.
        `payload` overrides event payload fields of every trade."""
        records, ids = [], []
        for client, at in trades:
            event = trade_event(clientId=str(client), executionTime=iso(at), occurred_at=iso(at), **payload)
            ids.append(event["payload"]["tradeId"])
            records.append(KafkaRecord(self.topic, 0, self.offset, None, json.dumps(event).encode()))
            self.offset += 1
        prepared = self.preparer.prepare(records)
        assert not prepared.letters, [lt.error for lt in prepared.letters]
        return prepared, ids

    def commit(self, prepared: PreparedBatch) -> LoadCounts:
        expected = {tp: self.positions.get(tp) for tp in prepared.write.offsets}
        counts = self.loader.commit_batch(prepared.write, expected, None)
        self.positions.update(prepared.write.offsets)
        return counts

    def load(self, trades: list[tuple[uuid.UUID, datetime]], **payload: Any) -> list[str]:
        prepared, ids = self.prepare(trades, **payload)
        self.commit(prepared)
        return ids

    def close(self) -> None:
        self.loader.close_all()


def trade_versions(warehouse: psycopg.Connection) -> dict[str, int | None]:
    """trade id -> version number of the client version its client_key points to."""
    rows = warehouse.execute(
        "SELECT f.trade_id::text, d.version FROM fact_trades f LEFT JOIN dim_clients d USING (client_key)"
    ).fetchall()
    return {r[0]: r[1] for r in rows}


def mismatches(settings: OrionSettings, dimension: str = "all") -> dict[str, int]:
    """`dims check` fact-key checks with violations: check name -> count."""
    return {
        r.check: r.violations
        for r in check(settings, dimension)
        if r.check.startswith("fact_keys:") and r.violations
    }


def set_segment_at(source: psycopg.Connection, cid: uuid.UUID, segment: str, at: datetime) -> None:
    source.execute("UPDATE clients SET segment = %s, updated_at = %s WHERE id = %s", (segment, at, cid))


def dirty_days(warehouse: psycopg.Connection, table: str = "fact_trades") -> set[Any]:
    rows = warehouse.execute(
        "SELECT DISTINCT period_start FROM agg_dirty_buckets WHERE source_table = %s AND op = 'UPDATE' "
        "AND period_type = 'DAILY'",
        (table,),
    ).fetchall()
    return {r[0] for r in rows}
