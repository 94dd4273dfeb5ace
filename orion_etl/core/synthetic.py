"""Deterministic synthetic trading activity for the demo and benchmarks (pure: no I/O).

Same seed, same data: clients, instruments, liquidity providers, orders in every terminal state,
trades for the filled quantity, and quotes. Money is built from integers scaled to fixed decimal
places so the generated values are exact.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import polars as pl

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
