"""Deterministic synthetic trading activity for the demo and benchmarks (pure: no I/O).

Same seed, same data: clients, instruments, liquidity providers, orders in every terminal state,
trades for the filled quantity, and quotes. Money is built from integers scaled to fixed decimal
places so the generated values are exact. Positions follow the trades (`position_changes`).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import polars as pl

from orion_etl.core.tradingday import trading_date_expr

SEGMENTS = ["TIER_1", "TIER_2", "TIER_3"]
REGIONS = ["EMEA", "AMER", "APAC"]
CLIENT_TYPES = ["INSTITUTIONAL", "CORPORATE", "RETAIL"]
INDUSTRIES = ["BANKING", "ASSET_MANAGEMENT", "HEDGE_FUND", "CORPORATE_TREASURY"]
ORDER_TYPES = ["MARKET", "LIMIT"]
FX_PAIRS = [
    ("EURUSD", "1.08500"), ("GBPUSD", "1.26400"), ("USDJPY", "151.200"), ("AUDUSD", "0.65800"),
    ("USDCHF", "0.88300"), ("USDCAD", "1.36100"), ("NZDUSD", "0.60900"), ("EURGBP", "0.85800"),
    ("EURJPY", "164.100"), ("XAUUSD", "2350.50"), ("BTCUSD", "67000.0"), ("ETHUSD", "3500.00"),
]  # fmt: skip


@dataclass(frozen=True)
class SyntheticData:
    """All generated frames, with source-table column names."""

    clients: pl.DataFrame
    instruments: pl.DataFrame
    liquidity_providers: pl.DataFrame
    orders: pl.DataFrame
    trades: pl.DataFrame


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def generate(
    *,
    seed: int = 42,
    tenants: int = 2,
    clients: int = 20,
    lps: int = 5,
    orders: int = 500,
    day: date | None = None,
) -> SyntheticData:
    """Generate one trading day of activity."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not security
    day = day or (datetime.now(UTC).date() - timedelta(days=1))
    tenant_ids = [_uuid(rng) for _ in range(tenants)]
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    created = start - timedelta(days=30)

    client_rows = [
        {
            "id": _uuid(rng),
            "tenant_id": tenant_ids[i % tenants],
            "client_code": f"C{i:05d}",
            "name": f"Client {i:05d}",
            "client_type": rng.choice(CLIENT_TYPES),
            "region": rng.choice(REGIONS),
            "segment": rng.choice(SEGMENTS),
            "industry": rng.choice(INDUSTRIES),
            "onboard_date": (created - timedelta(days=rng.randint(0, 900))).date(),
            "status": "ACTIVE",
            "created_at": created,
            "updated_at": created,
        }
        for i in range(clients)
    ]
    instrument_rows = [
        {
            "id": _uuid(rng),
            "symbol": symbol,
            "name": f"{symbol[:3]}/{symbol[3:]}",
            "asset_class": "CRYPTO"
            if symbol[:3] in {"BTC", "ETH"}
            else ("METAL" if symbol[:3] == "XAU" else "FX"),
            "instrument_type": "SPOT",
            "base_currency": symbol[:3],
            "quote_currency": symbol[3:],
            "exchange": "OTC",
            "price_precision": len(mid.split(".")[1]),
            "quantity_precision": 2,
            "created_at": created,
            "updated_at": created,
        }
        for symbol, mid in FX_PAIRS
    ]
    lp_rows = [
        {
            "id": _uuid(rng),
            "code": f"LP{i:02d}",
            "name": f"Liquidity Provider {i:02d}",
            "type": rng.choice(["BANK", "NON_BANK", "ECN"]),
            "region": rng.choice(REGIONS),
            "tier": rng.choice(["TIER_1", "TIER_2"]),
            "is_active": True,
            "created_at": created,
            "updated_at": created,
        }
        for i in range(lps)
    ]
    mids = {row["id"]: Decimal(mid) for row, (_, mid) in zip(instrument_rows, FX_PAIRS, strict=True)}
    precision: dict[object, int] = {row["id"]: int(str(row["price_precision"])) for row in instrument_rows}

    order_rows: list[dict[str, object]] = []
    trade_rows: list[dict[str, object]] = []
    for n in range(orders):
        client = rng.choice(client_rows)
        instrument = rng.choice(instrument_rows)
        lp = rng.choice(lp_rows)
        at = start + timedelta(microseconds=rng.randrange(86_400 * 1_000_000))
        requested = Decimal(rng.randint(1, 500) * 1000)
        status = rng.choices(["FILLED", "PARTIAL", "CANCELLED", "REJECTED"], weights=[80, 8, 7, 5])[0]
        filled = {
            "FILLED": requested,
            "PARTIAL": requested / 2,
            "CANCELLED": Decimal(0),
            "REJECTED": Decimal(0),
        }[status]
        scale = Decimal(1).scaleb(-precision[instrument["id"]])
        price = (mids[instrument["id"]] * (1 + Decimal(rng.randint(-50, 50)) / 10_000)).quantize(scale)
        side = rng.choice(["BUY", "SELL"])
        order_id = _uuid(rng)
        order_rows.append(
            {
                "id": order_id,
                "tenant_id": client["tenant_id"],
                "client_id": client["id"],
                "instrument_id": instrument["id"],
                "lp_id": lp["id"],
                "order_type": rng.choice(ORDER_TYPES),
                "side": side,
                "status": status,
                "requested_quantity": requested,
                "filled_quantity": filled,
                "limit_price": price,
                "avg_fill_price": price if filled else None,
                "fill_count": 1 if filled else 0,
                "total_latency_ms": rng.randint(1, 200),
                "routing_latency_ms": rng.randint(1, 50),
                "created_at": at,
                "updated_at": at,
            }
        )
        if filled:
            trade_rows.append(
                {
                    "id": _uuid(rng),
                    "tenant_id": client["tenant_id"],
                    "trade_reference": f"TR-{day:%Y%m%d}-{n:07d}",
                    "order_id": order_id,
                    "client_id": client["id"],
                    "instrument_id": instrument["id"],
                    "lp_id": lp["id"],
                    "trade_date": at + timedelta(milliseconds=rng.randint(1, 500)),
                    "settlement_date": day + timedelta(days=2),
                    "side": side,
                    "order_type": order_rows[-1]["order_type"],
                    "quantity": filled,
                    "price": price,
                    "fees": (filled * price * Decimal("0.00002")).quantize(Decimal("0.01")),
                    "currency": instrument["quote_currency"],
                    "execution_venue": "OTC",
                    "fill_latency_ms": rng.randint(1, 300),
                    "fill_count": 1,
                    "is_partial_fill": status == "PARTIAL",
                    "created_at": at,
                    "updated_at": at,
                }
            )
    dec = pl.Decimal(28, 10)
    money = {"requested_quantity": dec, "filled_quantity": dec, "limit_price": dec, "avg_fill_price": dec}
    return SyntheticData(
        clients=pl.DataFrame(client_rows),
        instruments=pl.DataFrame(instrument_rows),
        liquidity_providers=pl.DataFrame(lp_rows),
        orders=pl.DataFrame(order_rows, schema_overrides=money, infer_schema_length=None),
        trades=pl.DataFrame(
            trade_rows,
            schema_overrides={"quantity": dec, "price": dec, "fees": dec},
            infer_schema_length=None,
        ),
    )


POSITION_SCALE = Decimal(1).scaleb(-10)  # NUMERIC(28,10): the source stores avg_price at 10 places
POSITIONS_NAMESPACE = uuid.UUID("6f5e0c1a-3c1e-4c55-9a57-0d1d7a0e5b17")


def position_id(client_id: str, instrument_id: str) -> str:
    """The position of a (client, instrument): one per pair in the source (UNIQUE)."""
    return str(uuid.uuid5(POSITIONS_NAMESPACE, f"{client_id}/{instrument_id}"))


def position_changes(trades: pl.DataFrame) -> pl.DataFrame:
    """Every change the trades make to their (client, instrument) positions, in trade order.

    Average-cost accounting: a trade in the position's direction moves the average price to the
    quantity-weighted average (stored at 10 decimals, as the source column holds it); a trade
    against it realizes `closed quantity x (price - average)` (long) or `x (average - price)`
    (short), and a remainder opens the other way at the trade price. Fees are not part of
    realized P&L. One row per trade: the position after it (`change` numbers the changes of a
    position from 0; change 0 creates it). Exact Decimal arithmetic.
    """
    rows: list[dict[str, object]] = []
    state: dict[tuple[str, str], tuple[int, Decimal, Decimal, Decimal, datetime]] = {}
    ordered = trades.sort(["trade_date", "id"]).select(
        "tenant_id", "client_id", "instrument_id", "side", "quantity", "price", "trade_date"
    )
    for tenant, client, instrument, side, qty, price, at in ordered.iter_rows():
        key = (client, instrument)
        n, held, avg, realized, opened = state.get(key, (-1, Decimal(0), Decimal(0), Decimal(0), at))
        signed = qty if side == "BUY" else -qty
        if held == 0 or (held > 0) == (signed > 0):
            new_held = held + signed
            avg = ((abs(held) * avg + qty * price) / abs(new_held)).quantize(POSITION_SCALE)
            held = new_held
        else:
            closed = min(abs(held), qty)
            realized += closed * ((price - avg) if held > 0 else (avg - price))
            held += signed
            if held == 0:
                avg = Decimal(0)
            elif abs(signed) > closed:  # flipped: the remainder opens at the trade price
                avg = price
        state[key] = (n + 1, held, avg, realized, opened)
        rows.append(
            {
                "id": position_id(client, instrument),
                "tenant_id": tenant,
                "client_id": client,
                "instrument_id": instrument,
                "quantity": held,
                "avg_price": avg if held != 0 else None,
                "realized_pnl": realized,
                "unrealized_pnl": Decimal(0),
                "opened_at": opened,
                "updated_at": at,
                "change": n + 1,
            }
        )
    dec = pl.Decimal(28, 10)
    money = {"quantity": dec, "avg_price": dec, "realized_pnl": pl.Decimal(38, 10), "unrealized_pnl": dec}
    schema: dict[str, pl.DataType | type[pl.DataType]] = {
        "id": pl.String, "tenant_id": pl.String, "client_id": pl.String, "instrument_id": pl.String,
        **money, "opened_at": pl.Datetime("us", "UTC"), "updated_at": pl.Datetime("us", "UTC"),
        "change": pl.Int64,
    }  # fmt: skip
    return pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)


def realized_by_client_day(
    changes: pl.DataFrame, timezone: str = "UTC", cutoff: str = "00:00"
) -> dict[tuple[str, date], Decimal]:
    """Realized P&L per (client, trading day): each change's step of its position's cumulative
    realized P&L (the first change counts from 0), summed by the trading day of the change."""
    steps = changes.sort("id", "change").with_columns(
        (pl.col("realized_pnl") - pl.col("realized_pnl").shift(1).over("id").fill_null(Decimal(0))).alias(
            "step"
        ),
        trading_date_expr("updated_at", timezone, cutoff).alias("day"),
    )
    out: dict[tuple[str, date], Decimal] = {}
    for client, day, step in steps.select("client_id", "day", "step").iter_rows():
        out[(client, day)] = out.get((client, day), Decimal(0)) + step
    return out
