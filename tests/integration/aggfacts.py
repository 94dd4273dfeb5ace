"""Builders that insert small sets of facts straight into the test warehouse (aggregation tests)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import psycopg

from orion_etl.core.periods import date_key
from orion_etl.core.tradingday import trading_date

D = Decimal
T1 = uuid.UUID("00000000-0000-0000-0000-0000000000a1")
C1 = uuid.UUID("00000000-0000-0000-0000-0000000000c1")
C2 = uuid.UUID("00000000-0000-0000-0000-0000000000c2")
I1 = uuid.UUID("00000000-0000-0000-0000-0000000000e1")
I2 = uuid.UUID("00000000-0000-0000-0000-0000000000e2")
L1 = uuid.UUID("00000000-0000-0000-0000-0000000000b1")
L2 = uuid.UUID("00000000-0000-0000-0000-0000000000b2")
L3 = uuid.UUID("00000000-0000-0000-0000-0000000000b3")


def at(day: date, hour: int = 12, minute: int = 0) -> datetime:
    """A UTC instant on `day`."""
    return datetime.combine(day, time(hour, minute), tzinfo=UTC)


def trade(
    when: datetime,
    *,
    client: uuid.UUID = C1,
    instrument: uuid.UUID = I1,
    lp: uuid.UUID | None = L1,
    side: str = "BUY",
    qty: str = "1",
    price: str = "1",
    fees: str = "0",
    latency: int = 0,
    deleted: bool = False,
    tenant: uuid.UUID = T1,
    zone: tuple[str, str] = ("UTC", "00:00"),
    trade_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """One fact_trades row; the trading-day key is derived like the loader derives it."""
    notional = D(qty) * D(price)
    return {
        "trade_id": trade_id or uuid.uuid4(),
        "tenant_id": tenant,
        "trade_date": when,
        "trade_date_key": date_key(trading_date(when, *zone)),
        "client_id": client,
        "instrument_id": instrument,
        "lp_id": lp,
        "side": side,
        "quantity": D(qty),
        "price": D(price),
        "notional_value": notional,
        "fees": D(fees),
        "net_amount": notional,
        "fill_latency_ms": latency,
        "is_deleted": deleted,
        "src_origin": "event",
    }


def insert(conn: psycopg.Connection, table: str, rows: list[dict[str, Any]]) -> None:
    """Insert rows (all with the same keys) in one statement (one trigger firing)."""
    if not rows:
        return
    cols = list(rows[0])
    values = ", ".join("(" + ", ".join(["%s"] * len(cols)) + ")" for _ in rows)
    params = [row[c] for row in rows for c in cols]
    conn.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES {values}", params)


def quote(
    when: datetime,
    *,
    lp: uuid.UUID = L1,
    spread_bps: str = "1",
    stale: bool = False,
    latency: int = 0,
    offset: int | None = None,
) -> dict[str, Any]:
    return {
        "tenant_id": T1,
        "quote_timestamp": when,
        "quote_date": when.date(),
        "quote_date_key": date_key(when.date()),
        "instrument_id": I1,
        "lp_id": lp,
        "bid_price": D("1"),
        "ask_price": D("1.0001"),
        "mid_price": D("1.00005"),
        "spread": D(spread_bps) / 10000,
        "spread_bps": D(spread_bps),
        "is_stale": stale,
        "latency_ms": latency,
        "src_topic": "test.quotes",
        "src_partition": 0,
        "src_offset": offset if offset is not None else uuid.uuid4().int % 10**12,
    }


def order(
    when: datetime, *, lp: uuid.UUID | None = L1, filled: str = "1", rejected: bool = False
) -> dict[str, Any]:
    return {
        "order_id": uuid.uuid4(),
        "tenant_id": T1,
        "order_date": when,
        "order_date_key": date_key(when.date()),
        "client_id": C1,
        "lp_id": lp,
        "final_status": "REJECTED" if rejected else ("FILLED" if D(filled) > 0 else "CANCELLED"),
        "requested_quantity": D("10"),
        "filled_quantity": D(filled),
        "was_rejected": rejected,
        "was_cancelled": not rejected and D(filled) < 10,
        "src_origin": "event",
    }


def risk(when: datetime, *, util: str, soft: int = 0, hard: int = 0, score: str = "0") -> dict[str, Any]:
    return {
        "tenant_id": T1,
        "client_id": C1,
        "snapshot_time": when,
        "snapshot_date": when.date(),
        "snapshot_date_key": date_key(when.date()),
        "utilization_pct": D(util),
        "soft_breach_count": soft,
        "hard_breach_count": hard,
        "risk_score": D(score),
    }


def summary(conn: psycopg.Connection, period: str, start: date) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Summary rows of one bucket keyed by (level, client, instrument, lp)."""
    cur = conn.cursor(row_factory=psycopg.rows.dict_row)
    rows = cur.execute(
        "SELECT * FROM agg_daily_trade_summary WHERE period_type = %s AND trade_date = %s",
        (period, start),
    ).fetchall()
    return {(r["aggregation_level"], r["client_id"], r["instrument_id"], r["lp_id"]): r for r in rows}


DAY = date(2026, 3, 4)  # a Wednesday
NEXT = DAY + timedelta(days=1)
