"""Write synthetic trading activity into the operational source database (for Debezium to capture)."""

from __future__ import annotations

from dataclasses import dataclass

from orion_etl.adapters.bulk import copy_frame
from orion_etl.adapters.postgres import connect
from orion_etl.config.models import SourceSettings
from orion_etl.core.synthetic import SyntheticData


@dataclass(frozen=True)
class WrittenCounts:
    """Rows written per source table."""

    clients: int
    instruments: int
    liquidity_providers: int
    orders: int
    trades: int


def write_to_source(source: SourceSettings, data: SyntheticData, *, trade_batches: int = 10) -> WrittenCounts:
    """Reference data in one transaction, then orders and trades in `trade_batches` transactions,
    so the change stream looks like live activity rather than one giant transaction."""
    with connect(source) as conn:
        with conn.transaction():
            copy_frame(conn, "clients", data.clients)
            copy_frame(conn, "instruments", data.instruments)
            copy_frame(conn, "liquidity_providers", data.liquidity_providers)
        orders = data.orders.sort("created_at")
        trades = data.trades.sort("trade_date")
        batches = max(1, trade_batches)
        order_size = -(-orders.height // batches) or 1
        for start in range(0, orders.height, order_size):
            chunk = orders.slice(start, order_size)
            ids = chunk["id"]
            with conn.transaction():
                copy_frame(conn, "orders", chunk)
                copy_frame(conn, "trades", trades.filter(trades["order_id"].is_in(ids.implode())))
    return WrittenCounts(
        data.clients.height,
        data.instruments.height,
        data.liquidity_providers.height,
        data.orders.height,
        data.trades.height,
    )
