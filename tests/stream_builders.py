"""Builders of realistic Debezium envelopes and orion domain events (shared by tests and benchmarks)."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

UNAVAILABLE_PLACEHOLDER = "__debezium_unavailable_value"

_FIELD_TYPES = {
    "trades": {
        "id": ("string", "io.debezium.data.Uuid", False),
        "tenant_id": ("string", "io.debezium.data.Uuid", False),
        "trade_reference": ("string", None, False),
        "order_id": ("string", "io.debezium.data.Uuid", True),
        "client_id": ("string", "io.debezium.data.Uuid", False),
        "instrument_id": ("string", "io.debezium.data.Uuid", False),
        "lp_id": ("string", "io.debezium.data.Uuid", True),
        "trade_date": ("string", "io.debezium.time.ZonedTimestamp", False),
        "settlement_date": ("int32", "io.debezium.time.Date", True),
        "side": ("string", None, False),
        "order_type": ("string", None, True),
        "quantity": ("string", None, False),
        "price": ("string", None, False),
        "fees": ("string", None, False),
        "currency": ("string", None, True),
        "execution_venue": ("string", None, True),
        "fill_latency_ms": ("int32", None, False),
        "fill_count": ("int32", None, False),
        "is_partial_fill": ("boolean", None, False),
        "created_at": ("string", "io.debezium.time.ZonedTimestamp", False),
        "updated_at": ("string", "io.debezium.time.ZonedTimestamp", False),
    },
    "orders": {
        "id": ("string", "io.debezium.data.Uuid", False),
        "tenant_id": ("string", "io.debezium.data.Uuid", False),
        "client_id": ("string", "io.debezium.data.Uuid", False),
        "instrument_id": ("string", "io.debezium.data.Uuid", False),
        "lp_id": ("string", "io.debezium.data.Uuid", True),
        "order_type": ("string", None, False),
        "side": ("string", None, False),
        "status": ("string", None, False),
        "requested_quantity": ("string", None, False),
        "filled_quantity": ("string", None, False),
        "limit_price": ("string", None, True),
        "avg_fill_price": ("string", None, True),
        "fill_count": ("int32", None, False),
        "total_latency_ms": ("int32", None, False),
        "routing_latency_ms": ("int32", None, False),
        "created_at": ("string", "io.debezium.time.ZonedTimestamp", False),
        "updated_at": ("string", "io.debezium.time.ZonedTimestamp", False),
    },
    "positions": {
        "id": ("string", "io.debezium.data.Uuid", False),
        "tenant_id": ("string", "io.debezium.data.Uuid", False),
        "client_id": ("string", "io.debezium.data.Uuid", False),
        "instrument_id": ("string", "io.debezium.data.Uuid", False),
        "quantity": ("string", None, False),
        "avg_price": ("string", None, True),
        "realized_pnl": ("string", None, False),
        "unrealized_pnl": ("string", None, False),
        "opened_at": ("string", "io.debezium.time.ZonedTimestamp", False),
        "updated_at": ("string", "io.debezium.time.ZonedTimestamp", False),
    },
}


def row_schema(
    table: str, overrides: dict[str, tuple[str, str | None, dict[str, str] | None]] | None = None
) -> dict[str, Any]:
    fields = []
    for name, (typ, logical, optional) in _FIELD_TYPES[table].items():
        f: dict[str, Any] = {"type": typ, "optional": optional, "field": name}
        if logical:
            f["name"] = logical
            f["version"] = 1
        if overrides and name in overrides:
            t2, l2, params = overrides[name]
            f = {"type": t2, "optional": optional, "field": name}
            if l2:
                f["name"] = l2
            if params:
                f["parameters"] = params
        fields.append(f)
    return {"type": "struct", "fields": fields, "optional": True, "name": f"orion.public.{table}.Value"}


def envelope_schema(table: str, overrides: Any = None) -> dict[str, Any]:
    row = row_schema(table, overrides)
    return {
        "type": "struct",
        "fields": [
            {**row, "field": "before"},
            {**row, "field": "after"},
            {
                "type": "struct",
                "fields": [
                    {"type": "string", "optional": False, "field": "version"},
                    {"type": "string", "optional": False, "field": "connector"},
                    {"type": "string", "optional": False, "field": "name"},
                    {"type": "int64", "optional": False, "field": "ts_ms"},
                    {"type": "string", "optional": True, "field": "sequence"},
                    {"type": "string", "optional": False, "field": "table"},
                    {"type": "int64", "optional": True, "field": "lsn"},
                ],
                "optional": False,
                "name": "io.debezium.connector.postgresql.Source",
                "field": "source",
            },
            {"type": "string", "optional": False, "field": "op"},
            {"type": "int64", "optional": True, "field": "ts_ms"},
        ],
        "optional": False,
        "name": f"orion.public.{table}.Envelope",
        "version": 2,
    }


def cdc(
    table: str,
    row: dict[str, Any] | None,
    *,
    op: str = "c",
    lsn: int = 1000,
    commit_lsn: int | None = 900,
    ts_ms: int | None = None,
    schema: bool = True,
    before: dict[str, Any] | None = None,
    overrides: Any = None,
) -> bytes:
    """One Debezium change envelope as Kafka value bytes."""
    ts = ts_ms if ts_ms is not None else int(datetime.now(UTC).timestamp() * 1000)
    payload = {
        "before": before,
        "after": row if op != "d" else None,
        "source": {
            "version": "3.6.1.Final",
            "connector": "postgresql",
            "name": "orion-test",
            "ts_ms": ts,
            "snapshot": "false",
            "db": "orion_source",
            "sequence": json.dumps([None if commit_lsn is None else str(commit_lsn), str(lsn)]),
            "schema": "public",
            "table": table,
            "txId": 42,
            "lsn": lsn,
        },
        "op": op,
        "ts_ms": ts,
    }
    doc = {"schema": envelope_schema(table, overrides), "payload": payload} if schema else payload
    return json.dumps(doc, default=str).encode()


def trade_row(**kw: Any) -> dict[str, Any]:
    row = {
        "id": str(uuid.uuid4()),
        "tenant_id": str(uuid.UUID(int=1)),
        "trade_reference": f"T-{uuid.uuid4().hex[:8]}",
        "order_id": None,
        "client_id": str(uuid.UUID(int=101)),
        "instrument_id": str(uuid.UUID(int=201)),
        "lp_id": str(uuid.UUID(int=301)),
        "trade_date": "2024-03-15T14:30:00.123456Z",
        "settlement_date": 19799,  # 2024-03-17
        "side": "BUY",
        "order_type": "MARKET",
        "quantity": "100.5000000000",
        "price": "1.0850000000",
        "fees": "2.5000000000",
        "currency": "USD",
        "execution_venue": "LP1",
        "fill_latency_ms": 12,
        "fill_count": 1,
        "is_partial_fill": False,
        "created_at": "2024-03-15T14:30:00.123456Z",
        "updated_at": "2024-03-15T14:30:00.123456Z",
    }
    row.update(kw)
    return row


def order_row(**kw: Any) -> dict[str, Any]:
    row = {
        "id": str(uuid.uuid4()),
        "tenant_id": str(uuid.UUID(int=1)),
        "client_id": str(uuid.UUID(int=101)),
        "instrument_id": str(uuid.UUID(int=201)),
        "lp_id": str(uuid.UUID(int=301)),
        "order_type": "LIMIT",
        "side": "SELL",
        "status": "FILLED",
        "requested_quantity": "200.0000000000",
        "filled_quantity": "150.0000000000",
        "limit_price": "1.2000000000",
        "avg_fill_price": "1.1990000000",
        "fill_count": 2,
        "total_latency_ms": 30,
        "routing_latency_ms": 5,
        "created_at": "2024-03-15T10:00:00Z",
        "updated_at": "2024-03-15T10:00:01Z",
    }
    row.update(kw)
    return row


def trade_event(
    *, sequence: int = 0, occurred_at: str = "2024-03-15T14:30:00.200Z", **kw: Any
) -> dict[str, Any]:
    payload = {
        "tradeId": str(uuid.uuid4()),
        "tenantId": str(uuid.UUID(int=1)),
        "executionTime": "2024-03-15T14:30:00.123456Z",
        "settlementDate": "2024-03-17",
        "clientId": str(uuid.UUID(int=101)),
        "instrumentId": str(uuid.UUID(int=201)),
        "lpId": str(uuid.UUID(int=301)),
        "tradeReference": f"E-{uuid.uuid4().hex[:8]}",
        "orderId": None,
        "side": "SELL",
        "orderType": "LIMIT",
        "quantity": "1000",
        "price": "1.2345",
        "fees": "1.5",
        "currency": "USD",
        "venue": "LP2",
        "latencyMs": 7,
    }
    payload.update(kw)
    return {
        "eventId": str(uuid.uuid4()),
        "eventType": "trade.executed",
        "eventVersion": 1,
        "occurredAt": occurred_at,
        "sequence": sequence,
        "payload": payload,
    }


def position_row(**kw: Any) -> dict[str, Any]:
    """A source `positions` row (Debezium JSON: decimals as strings, timestamps ISO)."""
    row = {
        "id": str(uuid.UUID(int=501)),
        "tenant_id": str(uuid.UUID(int=1)),
        "client_id": str(uuid.UUID(int=101)),
        "instrument_id": str(uuid.UUID(int=201)),
        "quantity": "0",
        "avg_price": None,
        "realized_pnl": "0",
        "unrealized_pnl": "0",
        "opened_at": "2024-03-15T10:00:00Z",
        "updated_at": "2024-03-15T10:00:00Z",
    }
    row.update(kw)
    return row


def risk_event(*, sequence: int = 0, occurred_at: str | None = None, **kw: Any) -> dict[str, Any]:
    """A `risk.snapshot` event (docs/stream.md)."""
    payload = {
        "tenantId": str(uuid.UUID(int=1)),
        "clientId": str(uuid.UUID(int=101)),
        "snapshotTime": "2024-03-15T12:00:00Z",
        "exposure": "1500000",
        "marginUsed": "300000",
        "utilizationPct": "42.5",
        "softBreachCount": 0,
        "hardBreachCount": 0,
        "riskScore": "35.5",
    }
    payload.update(kw)
    return {
        "eventId": str(uuid.uuid4()),
        "eventType": "risk.snapshot",
        "eventVersion": 1,
        "occurredAt": occurred_at or payload["snapshotTime"],
        "sequence": sequence,
        "payload": payload,
    }


def quote_event(bid: str, ask: str, *, ts: str = "2024-03-15T14:30:00.000Z", **kw: Any) -> dict[str, Any]:
    payload = {
        "tenantId": str(uuid.UUID(int=1)),
        "instrumentId": str(uuid.UUID(int=201)),
        "lpId": str(uuid.UUID(int=301)),
        "timestamp": ts,
        "bid": bid,
        "ask": ask,
        "bidSize": "1000000",
        "askSize": "1000000",
        "isStale": False,
        "latencyMs": 3,
    }
    payload.update(kw)
    return {
        "eventId": str(uuid.uuid4()),
        "eventType": "quote.received",
        "eventVersion": 1,
        "occurredAt": ts,
        "payload": payload,
    }


def b64_decimal(value: Decimal, scale: int) -> str:
    unscaled = int(value.scaleb(scale))
    length = max(1, (unscaled.bit_length() + 8) // 8)
    return base64.b64encode(unscaled.to_bytes(length, "big", signed=True)).decode()


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, default=str).encode()
