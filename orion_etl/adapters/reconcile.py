"""Read-only reconciliation queries: the source of truth versus what reached the warehouse."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from orion_etl.adapters.postgres import connect
from orion_etl.config.models import SourceSettings, WarehouseSettings


@dataclass(frozen=True)
class Check:
    """One reconciliation line: what the source says, what the warehouse has."""

    name: str
    expected: Any
    actual: Any

    @property
    def ok(self) -> bool:
        return bool(self.expected == self.actual)


def _per_tenant(rows: Sequence[tuple[Any, ...]]) -> dict[str, tuple[int, Decimal, Decimal]]:
    return {str(r[0]): (int(r[1]), Decimal(r[2] or 0), Decimal(r[3] or 0)) for r in rows}


def source_truth(source: SourceSettings) -> dict[str, Any]:
    """Per-tenant trade totals, orders by status and reference-data counts in the source."""
    with connect(source, autocommit=True) as conn:
        trades = conn.execute(
            "SELECT tenant_id, count(*), sum(quantity), sum(quantity * price) FROM trades GROUP BY tenant_id"
        ).fetchall()
        orders = conn.execute("SELECT status, count(*) FROM orders GROUP BY status").fetchall()
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM clients), (SELECT count(*) FROM instruments), "
            "(SELECT count(*) FROM liquidity_providers)"
        ).fetchone()
    assert counts is not None
    return {
        "trades": _per_tenant(trades),
        "orders": {str(s): int(n) for s, n in orders},
        "clients": counts[0],
        "instruments": counts[1],
        "lps": counts[2],
    }


def warehouse_state(
    warehouse: WarehouseSettings, event_trade_ids: Sequence[str], day: date
) -> dict[str, Any]:
    """The same figures read from the warehouse, plus event trades, quotes and the day's aggregate."""
    day_key = day.year * 10_000 + day.month * 100 + day.day
    with connect(warehouse, autocommit=True) as conn:
        cdc_trades = conn.execute(
            "SELECT tenant_id, count(*), sum(quantity), sum(notional_value) FROM fact_trades "
            "WHERE src_origin = 'cdc' AND NOT is_deleted GROUP BY tenant_id"
        ).fetchall()
        event_trades = conn.execute(
            "SELECT count(*) FROM fact_trades WHERE trade_id = ANY(%s::uuid[]) AND NOT is_deleted",
            (list(event_trade_ids),),
        ).fetchone()
        orders = conn.execute(
            "SELECT final_status, count(*) FROM fact_orders WHERE NOT is_deleted GROUP BY final_status"
        ).fetchall()
        dims = conn.execute(
            "SELECT (SELECT count(*) FROM dim_clients WHERE is_current AND NOT is_inferred), "
            "(SELECT count(*) FROM dim_instruments WHERE is_current AND NOT is_inferred), "
            "(SELECT count(*) FROM dim_liquidity_providers WHERE is_current AND NOT is_inferred)"
        ).fetchone()
        facts_of_day = conn.execute(
            "SELECT count(*), coalesce(sum(notional_value), 0) FROM fact_trades "
            "WHERE trade_date_key = %s AND NOT is_deleted",
            (day_key,),
        ).fetchone()
        aggregate_of_day = conn.execute(
            "SELECT coalesce(sum(trade_count), 0), coalesce(sum(total_notional), 0) "
            "FROM agg_daily_trade_summary "
            "WHERE trade_date = %s AND aggregation_level = 'TENANT' AND period_type = 'DAILY'",
            (day,),
        ).fetchone()
        quotes = conn.execute("SELECT count(*) FROM fact_quotes").fetchone()
        unresolved = conn.execute(
            "SELECT count(*) FROM fact_trades WHERE client_key IS NULL OR instrument_key IS NULL"
        ).fetchone()
    assert dims and facts_of_day and aggregate_of_day and quotes and event_trades and unresolved
    return {
        "trades": _per_tenant(cdc_trades),
        "event_trades": int(event_trades[0]),
        "orders": {str(s): int(n) for s, n in orders},
        "clients": dims[0],
        "instruments": dims[1],
        "lps": dims[2],
        "facts_of_day": (int(facts_of_day[0]), Decimal(facts_of_day[1])),
        "aggregate_of_day": (int(aggregate_of_day[0]), Decimal(aggregate_of_day[1])),
        "quotes": int(quotes[0]),
        "unresolved_keys": int(unresolved[0]),
    }


def position_state(
    warehouse: WarehouseSettings, position_ids: Sequence[str], risk_clients: Sequence[str], day: date
) -> dict[str, Any]:
    """Position changes and risk snapshots loaded for the demo, and the day's client metrics."""
    with connect(warehouse, autocommit=True) as conn:
        changes = conn.execute(
            "SELECT count(*) FROM fact_positions WHERE position_id = ANY(%s::uuid[])", (list(position_ids),)
        ).fetchone()
        snapshots = conn.execute(
            "SELECT count(*) FROM fact_risk_snapshots WHERE client_id = ANY(%s::uuid[])",
            (list(risk_clients),),
        ).fetchone()
        metrics = conn.execute(
            "SELECT client_id::text, realized_pnl, avg_utilization, max_utilization, breach_count, "
            "risk_score FROM agg_client_metrics WHERE period_type = 'DAILY' AND metric_date = %s",
            (day,),
        ).fetchall()
    assert changes and snapshots
    return {
        "position_changes": int(changes[0]),
        "risk_snapshots": int(snapshots[0]),
        "client_pnl": {r[0]: r[1] for r in metrics if r[1] is not None},
        "client_risk": {r[0]: (r[2], r[3], int(r[4]), r[5]) for r in metrics},
    }
