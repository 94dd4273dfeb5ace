"""Write synthetic trading activity into the operational source database (for Debezium to capture)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl

from orion_etl.adapters.bulk import copy_frame
from orion_etl.adapters.kafka import make_producer
from orion_etl.adapters.postgres import connect
from orion_etl.adapters.reconcile import Check, source_truth, warehouse_state
from orion_etl.config.models import KafkaSettings, OrionSettings, SourceSettings
from orion_etl.core.synthetic import SyntheticData
from orion_etl.errors import ServiceUnavailableError, UsageError


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
        existing_instruments = {r[0] for r in conn.execute("SELECT id::text FROM instruments")}
        existing_lps = {r[0] for r in conn.execute("SELECT id::text FROM liquidity_providers")}
        with conn.transaction():
            copy_frame(conn, "clients", data.clients)
            copy_frame(
                conn, "instruments", data.instruments.filter(~pl.col("id").is_in(list(existing_instruments)))
            )
            copy_frame(
                conn,
                "liquidity_providers",
                data.liquidity_providers.filter(~pl.col("id").is_in(list(existing_lps))),
            )
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


def produce_events(kafka: KafkaSettings, topic: str, events: list[dict[str, Any]]) -> int:
    """Produce domain events (JSON) keyed by their business id, waiting for every acknowledgement."""
    producer = make_producer(kafka)
    for n, event in enumerate(events):
        payload = event["payload"]
        key = payload.get("tradeId") or f"{payload.get('instrumentId')}:{payload.get('lpId')}"
        producer.produce(topic, key=str(key).encode(), value=json.dumps(event).encode())
        if n % 10_000 == 0:
            producer.poll(0)
    if producer.flush(60) != 0:
        raise ServiceUnavailableError(f"Kafka did not acknowledge every event on {topic}")
    return len(events)


@dataclass(frozen=True)
class DemoManifest:
    """What `demo generate` produced, kept in a small JSON file for `demo verify`."""

    day: date
    seed: int
    event_trade_ids: list[str]
    quotes_produced: int

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            json.dumps(
                {
                    "day": self.day.isoformat(),
                    "seed": self.seed,
                    "event_trade_ids": self.event_trade_ids,
                    "quotes_produced": self.quotes_produced,
                }
            )
        )

    @classmethod
    def load(cls, path: Path) -> DemoManifest:
        try:
            raw = json.loads(path.read_text())
            return cls(date.fromisoformat(raw["day"]), int(raw["seed"]), list(raw["event_trade_ids"]),
                       int(raw["quotes_produced"]))  # fmt: skip
        except (OSError, ValueError, KeyError) as exc:
            raise UsageError(f"cannot read demo manifest {path}: {exc}") from None


def reconcile(settings: OrionSettings, manifest: DemoManifest) -> list[Check]:
    """Compare the source of truth and the produced events with the warehouse."""
    truth = source_truth(settings.source)
    state = warehouse_state(settings.warehouse, manifest.event_trade_ids, manifest.day)
    checks: list[Check] = []
    tenants = sorted(set(truth["trades"]) | set(state["trades"]))
    for tenant in tenants:
        expected = truth["trades"].get(tenant, (0, Decimal(0), Decimal(0)))
        actual = state["trades"].get(tenant, (0, Decimal(0), Decimal(0)))
        for label, index in (("trades", 0), ("quantity", 1), ("notional", 2)):
            checks.append(
                Check(f"tenant {tenant[:8]}: CDC {label}", _fmt(expected[index]), _fmt(actual[index]))
            )
    checks.append(Check("trade.executed events loaded", len(manifest.event_trade_ids), state["event_trades"]))
    for status in sorted(set(truth["orders"]) | set(state["orders"])):
        checks.append(
            Check(f"orders {status}", truth["orders"].get(status, 0), state["orders"].get(status, 0))
        )
    checks += [
        Check("clients (current dimension rows)", truth["clients"], state["clients"]),
        Check("instruments (current dimension rows)", truth["instruments"], state["instruments"]),
        Check("liquidity providers (current dimension rows)", truth["lps"], state["lps"]),
        Check("facts without dimension keys", 0, state["unresolved_keys"]),
        Check(f"{manifest.day} trades: facts vs daily aggregate",
              _fmt(state["facts_of_day"][0]), _fmt(state["aggregate_of_day"][0])),
        Check(f"{manifest.day} notional: facts vs daily aggregate",
              _fmt(state["facts_of_day"][1]), _fmt(state["aggregate_of_day"][1])),
    ]  # fmt: skip
    loaded_quotes = state["quotes"]
    checks.append(
        Check(
            f"quotes loaded (sampled from {manifest.quotes_produced:,} produced)",
            "> 0",
            "> 0" if loaded_quotes > 0 else "0",
        )
    )
    return checks


def _fmt(value: int | Decimal) -> str:
    """Exact figures, thousands separated, trailing zeros of NUMERIC(28,10) dropped."""
    if isinstance(value, Decimal):
        return f"{value.normalize():,f}"
    return f"{value:,}"


def align_reference_data(source: SourceSettings, data: SyntheticData) -> SyntheticData:
    """Reuse instruments (by symbol) and LPs (by code) that already exist in the source, so the demo
    can run again on the same database: their generated ids are replaced by the stored ones."""
    with connect(source, autocommit=True) as conn:
        symbols: dict[str, str] = dict(conn.execute("SELECT symbol, id::text FROM instruments").fetchall())
        codes: dict[str, str] = dict(
            conn.execute("SELECT code, id::text FROM liquidity_providers").fetchall()
        )
    remap = {
        row["id"]: symbols[row["symbol"]] for row in data.instruments.to_dicts() if row["symbol"] in symbols
    } | {row["id"]: codes[row["code"]] for row in data.liquidity_providers.to_dicts() if row["code"] in codes}
    if not remap:
        return data

    def swap(frame: pl.DataFrame, *columns: str) -> pl.DataFrame:
        return frame.with_columns(pl.col(c).replace(remap) for c in columns)

    return SyntheticData(
        clients=data.clients,
        instruments=swap(data.instruments, "id"),
        liquidity_providers=swap(data.liquidity_providers, "id"),
        orders=swap(data.orders, "instrument_id", "lp_id"),
        trades=swap(data.trades, "instrument_id", "lp_id"),
    )
