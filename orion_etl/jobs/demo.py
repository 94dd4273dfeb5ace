"""Write synthetic trading activity into the operational source database (for Debezium to capture)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import psycopg

from orion_etl.adapters.bulk import copy_frame
from orion_etl.adapters.kafka import make_producer
from orion_etl.adapters.postgres import connect
from orion_etl.adapters.reconcile import Check, position_state, source_truth, warehouse_state
from orion_etl.config.models import KafkaSettings, OrionSettings, SourceSettings
from orion_etl.core.demo_events import risk_expectations
from orion_etl.core.synthetic import SyntheticData, position_changes, realized_by_client_day
from orion_etl.errors import ServiceUnavailableError, UsageError, Verdict


@dataclass(frozen=True)
class WrittenCounts:
    """Rows written per source table."""

    clients: int
    instruments: int
    liquidity_providers: int
    orders: int
    trades: int
    position_changes: int = 0


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
        changes = write_positions(conn, position_changes(data.trades))
    return WrittenCounts(
        data.clients.height,
        data.instruments.height,
        data.liquidity_providers.height,
        data.orders.height,
        data.trades.height,
        changes,
    )


def write_positions(conn: psycopg.Connection, changes: pl.DataFrame) -> int:
    """Apply position changes to the source `positions` table, so Debezium captures each one.

    Change 0 of every position is one COPY; change k of every position is one set-based UPDATE
    (a statement changes a row once, so the k-th changes of all positions go together, in order).
    """
    if changes.is_empty():
        return 0
    with conn.transaction():
        copy_frame(conn, "positions", changes.filter(pl.col("change") == 0).drop("change"))
    last = int(changes.get_column("change").max())  # type: ignore[arg-type]
    for k in range(1, last + 1):
        step = changes.filter(pl.col("change") == k)
        with conn.transaction():
            conn.execute(
                "UPDATE positions p SET quantity = v.quantity, avg_price = v.avg_price, "
                "realized_pnl = v.realized_pnl, updated_at = v.updated_at "
                "FROM unnest(%s::uuid[], %s::numeric[], %s::numeric[], %s::numeric[], %s::timestamptz[]) "
                "AS v(id, quantity, avg_price, realized_pnl, updated_at) WHERE p.id = v.id",
                [
                    step.get_column(c).to_list()
                    for c in ("id", "quantity", "avg_price", "realized_pnl", "updated_at")
                ],
            )
    return changes.height


def produce_events(kafka: KafkaSettings, topic: str, events: list[dict[str, Any]]) -> int:
    """Produce domain events (JSON) keyed by their business id, waiting for every acknowledgement."""
    producer = make_producer(kafka)
    for n, event in enumerate(events):
        payload = event["payload"]
        # trades by id, risk snapshots by client (their order matters per client), quotes by pair
        key = (
            payload.get("tradeId")
            or (payload.get("clientId") if "snapshotTime" in payload else None)
            or f"{payload.get('instrumentId')}:{payload.get('lpId')}"
        )
        producer.produce(topic, key=str(key).encode(), value=json.dumps(event).encode())
        if n % 10_000 == 0:
            producer.poll(0)
    if producer.flush(60) != 0:
        raise ServiceUnavailableError(f"Kafka did not acknowledge every event on {topic}")
    return len(events)


@dataclass(frozen=True)
class DemoManifest:
    """What `demo generate` produced, kept in a small JSON file for `demo verify`.

    Positions and risk: the generated position ids and number of changes, the realized P&L per
    client on the demo's trading day, and per client what daily client metrics must show from
    the risk snapshots (avg / max utilization, breaches, avg risk score; 4 decimals).
    """

    day: date
    seed: int
    event_trade_ids: list[str]
    quotes_produced: int
    position_ids: list[str] = field(default_factory=list)
    position_changes: int = 0
    realized_pnl: dict[str, str] = field(default_factory=dict)  # client -> P&L of the day
    risk_snapshots: int = 0
    risk: dict[str, list[str]] = field(default_factory=dict)  # client -> [avg, max, breaches, score]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "day": self.day.isoformat(),
            "seed": self.seed,
            "event_trade_ids": self.event_trade_ids,
            "quotes_produced": self.quotes_produced,
            "position_ids": self.position_ids,
            "position_changes": self.position_changes,
            "realized_pnl": self.realized_pnl,
            "risk_snapshots": self.risk_snapshots,
            "risk": self.risk,
        }
        path.write_text(json.dumps(doc))

    @classmethod
    def load(cls, path: Path) -> DemoManifest:
        try:
            raw = json.loads(path.read_text())
            return cls(
                date.fromisoformat(raw["day"]), int(raw["seed"]), list(raw["event_trade_ids"]),
                int(raw["quotes_produced"]), list(raw.get("position_ids", [])),
                int(raw.get("position_changes", 0)), dict(raw.get("realized_pnl", {})),
                int(raw.get("risk_snapshots", 0)), dict(raw.get("risk", {})),
            )  # fmt: skip
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"cannot read demo manifest {path}: {exc}") from None


def position_expectations(
    data: SyntheticData, risk: list[dict[str, Any]], day: date, timezone: str, cutoff: str
) -> dict[str, Any]:
    """The manifest's position and risk fields for generated activity (see DemoManifest)."""
    changes = position_changes(data.trades)
    pnl = realized_by_client_day(changes, timezone, cutoff)
    expected_risk = risk_expectations(risk, day, timezone, cutoff)
    return {
        "position_ids": sorted(set(changes.get_column("id").to_list())),
        "position_changes": changes.height,
        "realized_pnl": {client: str(v) for (client, d), v in pnl.items() if d == day},
        "risk_snapshots": len(risk),
        "risk": {client: [str(a), str(m), str(b), str(s)] for client, (a, m, b, s) in expected_risk.items()},
    }


def reconcile(settings: OrionSettings, manifest: DemoManifest) -> list[Check]:
    """Compare the source of truth and the produced events with the warehouse."""
    truth = source_truth(settings.source)
    state = warehouse_state(settings.warehouse, manifest.event_trade_ids, manifest.day)
    state.update(position_state(settings.warehouse, manifest.position_ids, list(manifest.risk), manifest.day))
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
    checks += _position_and_risk_checks(state, manifest)
    loaded_quotes = state["quotes"]
    checks.append(
        Check(
            f"quotes loaded (sampled from {manifest.quotes_produced:,} produced)",
            "> 0",
            "> 0" if loaded_quotes > 0 else "0",
        )
    )
    return checks


def _position_and_risk_checks(state: dict[str, Any], manifest: DemoManifest) -> list[Check]:
    """Position changes and risk snapshots loaded; realized P&L and risk columns of the demo day's
    client metrics per client (a line counts the clients that match; totals per tenant follow)."""
    day = manifest.day
    pnl: dict[str, Decimal] = state["client_pnl"]
    risk: dict[str, tuple[Decimal, Decimal, int, Decimal | None]] = state["client_risk"]
    expected_pnl = {c: Decimal(v) for c, v in manifest.realized_pnl.items()}
    matching = sum(1 for c, v in expected_pnl.items() if pnl.get(c) == v)
    expected_risk = {
        c: (Decimal(a), Decimal(m), int(b), Decimal(s)) for c, (a, m, b, s) in manifest.risk.items()
    }
    risk_matching = sum(1 for c, v in expected_risk.items() if risk.get(c) == v)
    return [
        Check("position changes loaded", _fmt(manifest.position_changes), _fmt(state["position_changes"])),
        Check("risk snapshots loaded", _fmt(manifest.risk_snapshots), _fmt(state["risk_snapshots"])),
        Check(f"{day} realized P&L: clients matching", _fmt(len(expected_pnl)), _fmt(matching)),
        Check(f"{day} realized P&L: total", _fmt(sum(expected_pnl.values(), Decimal(0))),
              _fmt(sum((pnl.get(c, Decimal(0)) for c in expected_pnl), Decimal(0)))),
        Check(f"{day} risk columns: clients matching", _fmt(len(expected_risk)), _fmt(risk_matching)),
    ]  # fmt: skip


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


# --- `demo generate` and `demo verify` as one call each -----------------------------------------


@dataclass(frozen=True)
class ActivitySize:
    """How much synthetic activity `demo generate` makes."""

    tenants: int
    clients: int
    lps: int
    orders: int
    trade_events: int
    quotes_per_pair: int
    risk_per_client: int


@dataclass(frozen=True)
class GenerateReport:
    """What `demo generate` wrote to the source and produced to Kafka."""

    day: date
    seed: int
    source: dict[str, int]
    kafka: dict[str, int]
    manifest: Path

    @property
    def verdict(self) -> Verdict:
        return Verdict.OK

    def to_document(self) -> dict[str, Any]:
        return {"day": self.day, "seed": self.seed, "source": self.source, "kafka": self.kafka,
                "manifest": self.manifest}  # fmt: skip

    def summary(self) -> str:
        s, k = self.source, self.kafka
        return (
            f"source: {s['clients']} clients, {s['instruments']} instruments, "
            f"{s['liquidity_providers']} LPs, {s['orders']} orders, {s['trades']} trades, "
            f"{s['position_changes']} position changes; kafka: {k['trade_events']} trade events, "
            f"{k['quotes']} quotes, {k['risk_snapshots']} risk snapshots; day {self.day}, seed {self.seed}"
        )


def generate_demo(
    settings: OrionSettings, size: ActivitySize, *, day: date, seed: int, manifest: Path
) -> GenerateReport:
    """Write a day of synthetic activity to the source, produce its events, record the manifest."""
    from orion_etl.core.demo_events import quote_events, risk_events, trade_events
    from orion_etl.core.synthetic import generate as generate_activity

    data = generate_activity(
        seed=seed, tenants=size.tenants, clients=size.clients, lps=size.lps, orders=size.orders, day=day
    )
    data = align_reference_data(settings.source, data)
    written = write_to_source(settings.source, data)
    events = trade_events(data, size.trade_events, seed=seed, day=day)
    quotes = quote_events(data, size.quotes_per_pair, seed=seed, day=day)
    produce_events(settings.kafka, settings.stream.topics.trade_events, events)
    produce_events(settings.kafka, settings.stream.topics.quote_events, quotes)
    risk = risk_events(data, size.risk_per_client, seed=seed, day=day)
    produce_events(settings.kafka, settings.stream.topics.risk_events, risk)
    td = settings.trading_day
    expectations = position_expectations(data, risk, day, td.timezone, td.cutoff)
    DemoManifest(day, seed, [e["payload"]["tradeId"] for e in events], len(quotes), **expectations).save(
        manifest
    )
    source = {
        "clients": written.clients,
        "instruments": written.instruments,
        "liquidity_providers": written.liquidity_providers,
        "orders": written.orders,
        "trades": written.trades,
        "position_changes": written.position_changes,
    }
    kafka = {"trade_events": len(events), "quotes": len(quotes), "risk_snapshots": len(risk)}
    return GenerateReport(day, seed, source, kafka, manifest)


_FACT_CHECKS = ("tenant ", "trade.executed", "orders ", "position changes", "risk snapshots")


@dataclass(frozen=True)
class VerifyReport:
    """`demo verify`: each reconciliation check, expected against actual."""

    checks: list[Check]

    @property
    def verdict(self) -> Verdict:
        """Failed when anything differs (exit 4)."""
        return Verdict.OK if all(c.ok for c in self.checks) else Verdict.FAILED

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"check": c.name, "expected": c.expected, "actual": c.actual, "ok": c.ok} for c in self.checks
        ]

    def to_document(self) -> dict[str, Any]:
        return {"checks": self.rows()}


def verify_demo(settings: OrionSettings, manifest: Path, *, facts_only: bool) -> VerifyReport:
    """Reconcile the warehouse with the manifest's source of truth (`facts_only`: the loaded facts)."""
    checks = reconcile(settings, DemoManifest.load(manifest))
    if facts_only:
        checks = [c for c in checks if c.name.startswith(_FACT_CHECKS)]
    return VerifyReport(checks)
