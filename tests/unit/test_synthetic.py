"""Synthetic demo data is deterministic, exact and consistent (orders, trades, events)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from orion_etl.core.demo_events import quote_events, trade_events
from orion_etl.core.synthetic import generate

DAY = date(2026, 3, 9)


def test_same_seed_same_data() -> None:
    a, b = generate(seed=3, orders=200, day=DAY), generate(seed=3, orders=200, day=DAY)
    assert a.trades.equals(b.trades) and a.orders.equals(b.orders)
    assert not generate(seed=4, orders=200, day=DAY).trades.equals(a.trades)


def test_trades_follow_fills_in_every_terminal_state() -> None:
    data = generate(seed=5, orders=400, day=DAY)
    orders = {o["id"]: o for o in data.orders.to_dicts()}
    assert set(data.orders["status"]) == {"FILLED", "PARTIAL", "CANCELLED", "REJECTED"}
    for trade in data.trades.to_dicts():
        order = orders[trade["order_id"]]
        assert trade["quantity"] == order["filled_quantity"] > 0
        assert trade["trade_date"].date() == DAY
        assert isinstance(trade["price"], Decimal)
    unfilled = [o for o in orders.values() if o["status"] in {"CANCELLED", "REJECTED"}]
    assert all(o["filled_quantity"] == 0 for o in unfilled)


def test_events_reference_generated_members_and_are_reproducible() -> None:
    data = generate(seed=6, orders=50, day=DAY)
    events = trade_events(data, 20, seed=6, day=DAY)
    assert events == trade_events(data, 20, seed=6, day=DAY)
    clients = set(data.clients["id"])
    assert all(e["payload"]["clientId"] in clients for e in events)
    quotes = quote_events(data, 3, seed=6, day=DAY)
    assert len(quotes) == 3 * data.instruments.height * data.liquidity_providers.height * 2
    assert all(Decimal(q["payload"]["bid"]) < Decimal(q["payload"]["ask"]) for q in quotes)
