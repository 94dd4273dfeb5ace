"""Test-data builders for data-quality tests: a few dimension members and fact rows."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg

TENANT = uuid.UUID("00000000-0000-0000-0000-0000000000aa")


def add_client(conn: psycopg.Connection, client_id: uuid.UUID | None = None) -> uuid.UUID:
    client_id = client_id or uuid.uuid4()
    conn.execute(
        "INSERT INTO dim_clients (client_id, tenant_id, client_name, valid_from) VALUES (%s, %s, 'c', now())",
        (client_id, TENANT),
    )
    return client_id


def add_instrument(conn: psycopg.Connection) -> uuid.UUID:
    instrument_id = uuid.uuid4()
    conn.execute(
        "INSERT INTO dim_instruments (instrument_id, symbol, valid_from) VALUES (%s, 'EURUSD', now())",
        (instrument_id,),
    )
    return instrument_id


def add_trade(
    conn: psycopg.Connection, client_id: uuid.UUID, instrument_id: uuid.UUID, **over: Any
) -> uuid.UUID:
    when: datetime = over.pop("trade_date", datetime.now(UTC) - timedelta(minutes=5))
    qty = Decimal(over.pop("quantity", "10"))
    price = Decimal(over.pop("price", "1.1"))
    row: dict[str, Any] = {
        "trade_id": uuid.uuid4(),
        "tenant_id": TENANT,
        "trade_reference": f"TR-{uuid.uuid4().hex[:10]}",
        "trade_date": when,
        "trade_date_key": int(when.strftime("%Y%m%d")),
        "client_id": client_id,
        "instrument_id": instrument_id,
        "side": "BUY",
        "quantity": qty,
        "price": price,
        "notional_value": qty * price,
        "fees": Decimal("0"),
        "net_amount": qty * price,
        "src_origin": "event",
    }
    row.update(over)
    columns = ", ".join(row)
    marks = ", ".join(["%s"] * len(row))
    conn.execute(f"INSERT INTO fact_trades ({columns}) VALUES ({marks})", list(row.values()))
    # keys of the members' (single) versions, as the loader resolves them, unless given
    for key, dim, natural in (
        ("client_key", "dim_clients", "client_id"),
        ("instrument_key", "dim_instruments", "instrument_id"),
    ):
        if key not in row:
            conn.execute(
                f"UPDATE fact_trades f SET {key} = (SELECT min(d.{key}) FROM {dim} d "
                f"WHERE d.{natural} = f.{natural}) WHERE trade_id = %s",
                (row["trade_id"],),
            )
    return row["trade_id"]


def add_position_and_risk(conn: psycopg.Connection, client_id: uuid.UUID, instrument_id: uuid.UUID) -> None:
    """A fresh position change and a fresh risk snapshot of the client."""
    when = datetime.now(UTC) - timedelta(minutes=5)
    conn.execute(
        "INSERT INTO fact_positions (position_id, tenant_id, client_id, instrument_id, changed_at, "
        "change_date_key, quantity, avg_price, realized_pnl, src_op, src_commit_lsn, src_lsn) "
        "VALUES (%s, %s, %s, %s, %s, %s, 10, 1.1, 0, 'c', 1, 1)",
        (uuid.uuid4(), TENANT, client_id, instrument_id, when, int(when.strftime("%Y%m%d"))),
    )
    conn.execute(
        "INSERT INTO fact_risk_snapshots (tenant_id, client_id, snapshot_time, snapshot_date, "
        "snapshot_date_key, utilization_pct, risk_score) VALUES (%s, %s, %s, %s, %s, 40, 30)",
        (TENANT, client_id, when, when.date(), int(when.strftime("%Y%m%d"))),
    )
    # keyed like the loader keys them (each member has one version)
    conn.execute(
        "UPDATE fact_positions f SET client_key = (SELECT min(client_key) FROM dim_clients d "
        "WHERE d.client_id = f.client_id), instrument_key = (SELECT min(instrument_key) "
        "FROM dim_instruments d WHERE d.instrument_id = f.instrument_id) WHERE f.client_id = %s",
        (client_id,),
    )
    conn.execute(
        "UPDATE fact_risk_snapshots f SET client_key = (SELECT min(client_key) FROM dim_clients d "
        "WHERE d.client_id = f.client_id) WHERE f.client_id = %s",
        (client_id,),
    )


def clean_world(conn: psycopg.Connection) -> tuple[uuid.UUID, uuid.UUID]:
    """One client, one instrument, one fresh valid trade, position change and risk snapshot."""
    client, instrument = add_client(conn), add_instrument(conn)
    add_trade(conn, client, instrument)
    add_position_and_risk(conn, client, instrument)
    return client, instrument
