"""Domain events for the demo (pure): `trade.executed`, `quote.received` and `risk.snapshot` envelopes.

The envelope format is the loader's (docs/stream.md): eventId, eventType, eventVersion,
occurredAt, payload. Event-only trades complement the CDC trades (a venue that reports
executions as events); quotes are a random walk around each instrument's mid per LP.
"""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
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


def risk_events(data: SyntheticData, per_client: int, *, seed: int, day: date) -> list[dict[str, Any]]:
    """`per_client` risk.snapshot events for every client, spread over the day.

    Exposure follows the client's traded notional; utilization = margin used / margin limit in %
    (2 decimals); a snapshot above 80 % counts a soft breach, above 100 % a hard breach; the risk
    score is 0.8 x utilization capped at 100.
    """
    rng = random.Random(seed + 3)  # noqa: S311 - reproducible demo data
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    notional: dict[str, Decimal] = {}
    for client, qty, price in data.trades.select("client_id", "quantity", "price").iter_rows():
        notional[client] = notional.get(client, Decimal(0)) + qty * price
    events = []
    for client in data.clients.to_dicts():
        for n in range(per_client):
            at = start + timedelta(seconds=(2 * n + 1) * 86_400 // (2 * max(per_client, 1)))
            utilization = Decimal(rng.randint(0, 12_000)).scaleb(-2)
            limit = Decimal(rng.randint(1, 50) * 100_000)
            exposure = (notional.get(client["id"], Decimal(0)) * Decimal("0.01")).quantize(Decimal("0.01"))
            events.append(
                {
                    "eventId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    "eventType": "risk.snapshot",
                    "eventVersion": 1,
                    "occurredAt": _iso(at),
                    "payload": {
                        "tenantId": client["tenant_id"],
                        "clientId": client["id"],
                        "snapshotTime": _iso(at),
                        "exposure": str(exposure),
                        "marginUsed": str((limit * utilization / 100).quantize(Decimal("0.01"))),
                        "utilizationPct": str(utilization),
                        "softBreachCount": int(utilization > 80),
                        "hardBreachCount": int(utilization > 100),
                        "riskScore": str(
                            min(Decimal(100), utilization * Decimal("0.8")).quantize(Decimal("0.01"))
                        ),
                    },
                }
            )
    return events


FOUR_PLACES = Decimal("0.0001")


def risk_expectations(
    events: list[dict[str, Any]], day: date, timezone: str = "UTC", cutoff: str = "00:00"
) -> dict[str, tuple[Decimal, Decimal, int, Decimal]]:
    """What daily client metrics must show for `day` from these risk snapshots, per client:
    (avg utilization, max utilization, soft + hard breaches, avg risk score), at NUMERIC(9,4)
    (PostgreSQL rounds half away from zero)."""
    from orion_etl.core.tradingday import trading_date

    seen: dict[str, list[tuple[Decimal, int, Decimal]]] = {}
    for event in events:
        p = event["payload"]
        at = datetime.fromisoformat(p["snapshotTime"].replace("Z", "+00:00"))
        if trading_date(at, timezone, cutoff) != day:
            continue
        breaches = int(p["softBreachCount"]) + int(p["hardBreachCount"])
        seen.setdefault(p["clientId"], []).append(
            (Decimal(p["utilizationPct"]), breaches, Decimal(p["riskScore"]))
        )
    out = {}
    for client, snaps in seen.items():
        utils = [u for u, _, _ in snaps]
        avg_util = (sum(utils, Decimal(0)) / len(utils)).quantize(FOUR_PLACES, ROUND_HALF_UP)
        score = (sum((r for _, _, r in snaps), Decimal(0)) / len(snaps)).quantize(FOUR_PLACES, ROUND_HALF_UP)
        out[client] = (avg_util, max(utils).quantize(FOUR_PLACES), sum(b for _, b, _ in snaps), score)
    return out
