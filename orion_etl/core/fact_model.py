"""The fact model: one description per fact table the stream loads (pure, no I/O).

Every part of the loader reads the same description instead of keeping its own table:

* the decoder: which topics (routes) feed the table, the source columns and their kinds, the
  required ones, the wire names of domain events (`sources`, `decoded`, `required`);
* the planner (`orion_etl.core.batch_plan`): the natural key, the TOAST column map, the dimension
  references it gates and keys, the event time the dimension version is chosen by;
* the loader (`orion_etl.adapters.warehouse_loader`): the fact columns it COPYs, plus dimension
  keys, source position and lineage (`load_columns`);
* the DQ catalogue and re-keying: the time column and row identifier (`core.quality.DEFAULT_TABLES`,
  `core.fact_keys`), the rule names of the dimension gate (`DimensionRef.gate_rule`);
* the text limits that keep a value the warehouse column cannot hold out of COPY (`text_limits`).

docs/stream.md describes the same tables for people.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from orion_etl.core.records import Kind

# dimension -> (table, surrogate key column, natural id column), as in core.scd.CATALOG (a unit test
# holds them equal; not imported from there, which would make every reader of the model import config)
DIMENSION_TABLES: dict[str, tuple[str, str, str]] = {
    "client": ("dim_clients", "client_key", "client_id"),
    "instrument": ("dim_instruments", "instrument_key", "instrument_id"),
    "lp": ("dim_liquidity_providers", "lp_key", "lp_id"),
}


class Route(StrEnum):
    """What a topic carries (the `stream.topics` setting names each route's topic)."""

    TRADES_CDC = "trades_cdc"
    ORDERS_CDC = "orders_cdc"
    TRADE_EVENTS = "trade_events"
    QUOTE_EVENTS = "quote_events"
    POSITIONS_CDC = "positions_cdc"
    RISK_EVENTS = "risk_events"


@dataclass(frozen=True)
class Source:
    """One route feeding a fact table: a CDC source table or a domain event type."""

    route: Route
    origin: Literal["cdc", "event"]
    name: str  # source table (cdc) or event type (event)
    rename: dict[str, str] | None = None  # wire name -> column name (events)


@dataclass(frozen=True)
class DimensionRef:
    """A fact column holding a dimension member's natural id (client, instrument or lp)."""

    dimension: str  # a key of DIMENSION_TABLES (and of orion_etl.core.scd.CATALOG)
    column: str  # the fact's natural id column
    gate_rule: str  # rule name of `stream.missing_dimension = "dlq"` letters

    @property
    def table(self) -> str:
        return DIMENSION_TABLES[self.dimension][0]

    @property
    def key_column(self) -> str:
        return DIMENSION_TABLES[self.dimension][1]

    @property
    def natural_id(self) -> str:
        return DIMENSION_TABLES[self.dimension][2]

    @property
    def has_tenant(self) -> bool:
        """Inferred members of this dimension carry the fact's tenant."""
        return self.dimension == "client"


@dataclass(frozen=True)
class FactModel:
    """How one fact table is fed, checked, keyed and loaded."""

    table: str
    key: str  # natural key column ("" when the table has none: quotes, risk snapshots)
    dedup_key: str  # the column "newest change per key" groups by within a batch ("" = none)
    row_id: tuple[str, ...]  # the columns identifying a row in samples
    time_column: str  # event time the point-in-time dimension version is chosen by
    columns: tuple[str, ...]  # fact columns loaded (without dimension keys, position, lineage)
    dims: tuple[DimensionRef, ...]
    sources: tuple[Source, ...]
    decoded: dict[str, Kind]  # source columns and their kinds
    required: tuple[str, ...]  # source columns a row cannot do without
    # TOAST: source column -> fact column where the names differ ("id" -> the key column)
    toast: dict[str, str] = field(default_factory=dict)
    text_limits: dict[str, int] = field(default_factory=dict)  # text column -> warehouse width
    # position deletes: columns taken from the previous change when the before image lacks them
    carried_on_delete: tuple[str, ...] = ()

    @property
    def dimension_names(self) -> tuple[str, ...]:
        return tuple(d.dimension for d in self.dims)

    @property
    def load_columns(self) -> list[str]:
        """Facts, dimension keys, source position and lineage: what the loader COPYs."""
        return [*self.columns, *(d.key_column for d in self.dims), *POSITION, *LINEAGE]

    def source(self, route: Route) -> Source:
        return next(s for s in self.sources if s.route is route)


# Source position columns every fact row carries (see sql/warehouse/V003 and V010).
POSITION = ["src_origin", "src_commit_lsn", "src_lsn", "src_event_version", "src_event_ts"]
LINEAGE = ["src_topic", "src_partition", "src_offset"]  # the Kafka record that last wrote the row

_CLIENT = DimensionRef("client", "client_id", "client_exists")
_INSTRUMENT = DimensionRef("instrument", "instrument_id", "instrument_exists")
_LP = DimensionRef("lp", "lp_id", "lp_exists")

TRADE_COLUMNS: dict[str, Kind] = {
    "id": Kind.UUID,
    "tenant_id": Kind.UUID,
    "trade_reference": Kind.STRING,
    "order_id": Kind.UUID,
    "client_id": Kind.UUID,
    "instrument_id": Kind.UUID,
    "lp_id": Kind.UUID,
    "trade_date": Kind.TIMESTAMP,
    "settlement_date": Kind.DATE,
    "side": Kind.STRING,
    "order_type": Kind.STRING,
    "quantity": Kind.DECIMAL,
    "price": Kind.DECIMAL,
    "fees": Kind.DECIMAL,
    "currency": Kind.STRING,
    "execution_venue": Kind.STRING,
    "fill_latency_ms": Kind.INT,
    "fill_count": Kind.INT,
    "is_partial_fill": Kind.BOOL,
}
TRADE_REQUIRED = ("id", "trade_date")
# trade.executed payload (the story's handleTradeEvent) -> trades column names.
TRADE_EVENT_RENAME = {
    "tradeId": "id",
    "tenantId": "tenant_id",
    "executionTime": "trade_date",
    "settlementDate": "settlement_date",
    "clientId": "client_id",
    "instrumentId": "instrument_id",
    "lpId": "lp_id",
    "tradeReference": "trade_reference",
    "orderId": "order_id",
    "side": "side",
    "orderType": "order_type",
    "quantity": "quantity",
    "price": "price",
    "fees": "fees",
    "currency": "currency",
    "venue": "execution_venue",
    "latencyMs": "fill_latency_ms",
    "fillCount": "fill_count",
    "isPartialFill": "is_partial_fill",
}

ORDER_COLUMNS: dict[str, Kind] = {
    "id": Kind.UUID,
    "tenant_id": Kind.UUID,
    "client_id": Kind.UUID,
    "instrument_id": Kind.UUID,
    "lp_id": Kind.UUID,
    "order_type": Kind.STRING,
    "side": Kind.STRING,
    "status": Kind.STRING,
    "requested_quantity": Kind.DECIMAL,
    "filled_quantity": Kind.DECIMAL,
    "limit_price": Kind.DECIMAL,
    "avg_fill_price": Kind.DECIMAL,
    "fill_count": Kind.INT,
    "total_latency_ms": Kind.INT,
    "routing_latency_ms": Kind.INT,
    "created_at": Kind.TIMESTAMP,
    "updated_at": Kind.TIMESTAMP,
}
ORDER_REQUIRED = ("id", "created_at")

QUOTE_COLUMNS: dict[str, Kind] = {
    "tenant_id": Kind.UUID,
    "instrument_id": Kind.UUID,
    "lp_id": Kind.UUID,
    "quote_timestamp": Kind.TIMESTAMP,
    "bid_price": Kind.DECIMAL,
    "ask_price": Kind.DECIMAL,
    "bid_size": Kind.DECIMAL,
    "ask_size": Kind.DECIMAL,
    "is_stale": Kind.BOOL,
    "latency_ms": Kind.INT,
}
QUOTE_REQUIRED = ("tenant_id", "instrument_id", "lp_id", "quote_timestamp", "bid_price", "ask_price")
QUOTE_EVENT_RENAME = {
    "tenantId": "tenant_id",
    "instrumentId": "instrument_id",
    "lpId": "lp_id",
    "timestamp": "quote_timestamp",
    "bid": "bid_price",
    "ask": "ask_price",
    "bidSize": "bid_size",
    "askSize": "ask_size",
    "isStale": "is_stale",
    "latencyMs": "latency_ms",
}

# Source `positions` rows (CDC); every change is kept (fact_positions is a history, see V050).
POSITION_ROW_COLUMNS: dict[str, Kind] = {
    "id": Kind.UUID,
    "tenant_id": Kind.UUID,
    "client_id": Kind.UUID,
    "instrument_id": Kind.UUID,
    "quantity": Kind.DECIMAL,
    "avg_price": Kind.DECIMAL,
    "realized_pnl": Kind.DECIMAL,
    "unrealized_pnl": Kind.DECIMAL,
    "opened_at": Kind.TIMESTAMP,
    "updated_at": Kind.TIMESTAMP,
}
POSITION_ROW_REQUIRED = ("id",)

# risk.snapshot payload (docs/stream.md) -> fact_risk_snapshots column names.
RISK_COLUMNS: dict[str, Kind] = {
    "tenant_id": Kind.UUID,
    "client_id": Kind.UUID,
    "snapshot_time": Kind.TIMESTAMP,
    "exposure": Kind.DECIMAL,
    "margin_used": Kind.DECIMAL,
    "utilization_pct": Kind.DECIMAL,
    "soft_breach_count": Kind.INT,
    "hard_breach_count": Kind.INT,
    "risk_score": Kind.DECIMAL,
}
RISK_REQUIRED = ("tenant_id", "client_id", "snapshot_time")
RISK_EVENT_RENAME = {
    "tenantId": "tenant_id",
    "clientId": "client_id",
    "snapshotTime": "snapshot_time",
    "exposure": "exposure",
    "marginUsed": "margin_used",
    "utilizationPct": "utilization_pct",
    "softBreachCount": "soft_breach_count",
    "hardBreachCount": "hard_breach_count",
    "riskScore": "risk_score",
}

TRADES = FactModel(
    table="fact_trades",
    key="trade_id",
    dedup_key="trade_id",
    row_id=("trade_id",),
    time_column="trade_date",
    columns=(
        "trade_id",
        "tenant_id",
        "trade_reference",
        "order_id",
        "trade_date",
        "trade_date_key",
        "settlement_date",
        "client_id",
        "instrument_id",
        "lp_id",
        "side",
        "order_type",
        "quantity",
        "price",
        "notional_value",
        "fees",
        "net_amount",
        "currency",
        "execution_venue",
        "fill_latency_ms",
        "fill_count",
        "is_partial_fill",
    ),
    dims=(_CLIENT, _INSTRUMENT, _LP),
    sources=(
        Source(Route.TRADES_CDC, "cdc", "trades"),
        Source(Route.TRADE_EVENTS, "event", "trade.executed", TRADE_EVENT_RENAME),
    ),
    decoded=TRADE_COLUMNS,
    required=TRADE_REQUIRED,
    toast={"id": "trade_id"},
    # warehouse widths (sql/warehouse/V003): a longer value, or a NUL, is a dead letter, not a
    # failed COPY that stops the loader on a poison record
    text_limits={"trade_reference": 100, "side": 4, "order_type": 20, "currency": 10, "execution_venue": 50},
)
ORDERS = FactModel(
    table="fact_orders",
    key="order_id",
    dedup_key="order_id",
    row_id=("order_id",),
    time_column="order_date",
    columns=(
        "order_id",
        "tenant_id",
        "order_date",
        "order_date_key",
        "client_id",
        "instrument_id",
        "lp_id",
        "order_type",
        "side",
        "final_status",
        "requested_quantity",
        "filled_quantity",
        "fill_rate",
        "limit_price",
        "avg_fill_price",
        "fill_count",
        "total_latency_ms",
        "routing_latency_ms",
        "was_rejected",
        "was_cancelled",
    ),
    dims=(_CLIENT, _INSTRUMENT, _LP),
    sources=(Source(Route.ORDERS_CDC, "cdc", "orders"),),
    decoded=ORDER_COLUMNS,
    required=ORDER_REQUIRED,
    toast={"id": "order_id", "status": "final_status", "created_at": "order_date"},
    text_limits={"order_type": 20, "side": 4, "status": 20},
)
QUOTES = FactModel(
    table="fact_quotes",
    key="",
    dedup_key="",
    row_id=("src_topic", "src_partition", "src_offset"),
    time_column="quote_timestamp",
    columns=(
        "tenant_id",
        "quote_timestamp",
        "quote_date",
        "quote_date_key",
        "instrument_id",
        "lp_id",
        "bid_price",
        "ask_price",
        "bid_size",
        "ask_size",
        "mid_price",
        "spread",
        "spread_bps",
        "is_stale",
        "latency_ms",
        "src_topic",
        "src_partition",
        "src_offset",
    ),
    dims=(_INSTRUMENT, _LP),
    sources=(Source(Route.QUOTE_EVENTS, "event", "quote.received", QUOTE_EVENT_RENAME),),
    decoded=QUOTE_COLUMNS,
    required=QUOTE_REQUIRED,
)
POSITIONS = FactModel(
    table="fact_positions",
    key="position_id",
    dedup_key="position_id",
    row_id=("position_id", "src_commit_lsn", "src_lsn"),
    time_column="changed_at",
    columns=(
        "position_id",
        "tenant_id",
        "client_id",
        "instrument_id",
        "changed_at",
        "change_date_key",
        "quantity",
        "avg_price",
        "realized_pnl",
        "unrealized_pnl",
        "opened_at",
        "is_deleted",
        "src_op",
    ),
    dims=(_CLIENT, _INSTRUMENT),
    sources=(Source(Route.POSITIONS_CDC, "cdc", "positions"),),
    decoded=POSITION_ROW_COLUMNS,
    required=POSITION_ROW_REQUIRED,
    toast={"id": "position_id", "updated_at": "changed_at"},
    # a source table without REPLICA IDENTITY FULL sends only the key in a delete's before image
    carried_on_delete=(
        "tenant_id",
        "client_id",
        "instrument_id",
        "quantity",
        "avg_price",
        "realized_pnl",
        "unrealized_pnl",
        "opened_at",
    ),
)
RISK = FactModel(
    table="fact_risk_snapshots",
    key="",
    dedup_key="_risk_key",
    row_id=("client_id", "snapshot_time"),
    time_column="snapshot_time",
    columns=(
        "tenant_id",
        "client_id",
        "snapshot_time",
        "snapshot_date",
        "snapshot_date_key",
        "exposure",
        "margin_used",
        "utilization_pct",
        "soft_breach_count",
        "hard_breach_count",
        "risk_score",
    ),
    dims=(_CLIENT,),
    sources=(Source(Route.RISK_EVENTS, "event", "risk.snapshot", RISK_EVENT_RENAME),),
    decoded=RISK_COLUMNS,
    required=RISK_REQUIRED,
)

# In planning order (the order a batch's tables are worked on and their letters listed).
FACT_MODELS: dict[str, FactModel] = {m.table: m for m in (TRADES, ORDERS, POSITIONS, RISK, QUOTES)}
# route -> (fact model, its source)
ROUTES: dict[Route, tuple[FactModel, Source]] = {
    s.route: (m, s) for m in FACT_MODELS.values() for s in m.sources
}


def model_of(route: Route) -> FactModel:
    """The fact table a route feeds."""
    return ROUTES[route][0]


def markdown_table() -> str:
    """The fact model as the table docs/stream.md shows (a unit test keeps the two equal)."""
    lines = [
        "| fact table | routes (source) | key | dimension ids | event time |",
        "|---|---|---|---|---|",
    ]
    for m in FACT_MODELS.values():
        sources = ", ".join(f"`{s.route}` ({s.origin} `{s.name}`)" for s in m.sources)
        dims = ", ".join(f"`{d.column}`" for d in m.dims)
        lines.append(
            f"| `{m.table}` | {sources} | {f'`{m.key}`' if m.key else '-'} | {dims} | `{m.time_column}` |"
        )
    return "\n".join(lines)
