"""Domain events for the demo (pure): `trade.executed` and `quote.received` envelopes.

The envelope format is the loader's (docs/stream.md): eventId, eventType, eventVersion,
occurredAt, payload. Event-only trades complement the CDC trades (a venue that reports
executions as events); quotes are a random walk around each instrument's mid per LP.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from orion_etl.core.synthetic import SyntheticData


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def trade_events(data: SyntheticData, count: int, *, seed: int, day: date) -> list[dict[str, Any]]:
    """`count` trade.executed events for trades that exist only as events."""
    rng = random.Random(seed + 1)  # noqa: S311 - reproducible demo data
    clients = data.clients.to_dicts()
    instruments = data.instruments.to_dicts()
    lps = data.liquidity_providers.to_dicts()
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    events = []
    for n in range(count):
        client, instrument, lp = rng.choice(clients), rng.choice(instruments), rng.choice(lps)
        at = start + timedelta(microseconds=rng.randrange(86_400 * 1_000_000))
        mid = _mid(data, instrument["id"])
        scale = Decimal(1).scaleb(-int(instrument["price_precision"]))
        price = (mid * (1 + Decimal(rng.randint(-30, 30)) / 10_000)).quantize(scale)
        quantity = Decimal(rng.randint(1, 100) * 1000)
        trade_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        events.append(
            {
                "eventId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                "eventType": "trade.executed",
                "eventVersion": 1,
                "occurredAt": _iso(at + timedelta(milliseconds=5)),
                "payload": {
                    "tradeId": trade_id,
                    "tenantId": client["tenant_id"],
                    "executionTime": _iso(at),
                    "settlementDate": (day + timedelta(days=2)).isoformat(),
                    "clientId": client["id"],
                    "instrumentId": instrument["id"],
                    "lpId": lp["id"],
                    "tradeReference": f"EV-{day:%Y%m%d}-{seed}-{n:06d}",
                    "orderId": None,
                    "side": rng.choice(["BUY", "SELL"]),
                    "orderType": "MARKET",
                    "quantity": str(quantity),
                    "price": str(price),
                    "fees": str((quantity * price * Decimal("0.00002")).quantize(Decimal("0.01"))),
                    "currency": instrument["quote_currency"],
                    "venue": "ECN",
                    "latencyMs": rng.randint(1, 50),
                },
            }
        )
    return events


def _mid(data: SyntheticData, instrument_id: str) -> Decimal:
    from orion_etl.core.synthetic import FX_PAIRS

    symbol = data.instruments.filter(data.instruments["id"] == instrument_id)["symbol"][0]
    return Decimal(dict(FX_PAIRS)[symbol])


def quote_events(data: SyntheticData, per_pair: int, *, seed: int, day: date) -> list[dict[str, Any]]:
    """`per_pair` quotes for every (tenant, instrument, LP), in time order."""
    rng = random.Random(seed + 2)  # noqa: S311 - reproducible demo data
    tenants = sorted(set(data.clients["tenant_id"].to_list()))
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    events = []
    for tenant in tenants:
        for instrument in data.instruments.to_dicts():
            scale = Decimal(1).scaleb(-int(instrument["price_precision"]))
            for lp in data.liquidity_providers.to_dicts():
                mid = _mid(data, instrument["id"])
                for n in range(per_pair):
                    mid = (mid * (1 + Decimal(rng.randint(-5, 5)) / 100_000)).quantize(scale)
                    half = scale * rng.randint(1, 8)
                    at = start + timedelta(
                        seconds=n * 86_400 // max(per_pair, 1), milliseconds=rng.randint(0, 999)
                    )
                    events.append(
                        {
                            "eventId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                            "eventType": "quote.received",
                            "eventVersion": 1,
                            "occurredAt": _iso(at),
                            "payload": {
                                "tenantId": tenant,
                                "instrumentId": instrument["id"],
                                "lpId": lp["id"],
                                "timestamp": _iso(at),
                                "bid": str(mid - half),
                                "ask": str(mid + half),
                                "bidSize": "1000000",
                                "askSize": "1000000",
                                "isStale": rng.random() < 0.02,
                                "latencyMs": rng.randint(1, 40),
                            },
                        }
                    )
    return events
