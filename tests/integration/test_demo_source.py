"""Synthetic activity lands in the source database exactly (COPY, exact decimals)."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest

from orion_etl.config.models import OrionSettings
from orion_etl.core.synthetic import generate
from orion_etl.jobs.demo import write_to_source

pytestmark = pytest.mark.integration


def test_write_synthetic_activity(stack_settings: OrionSettings, source: psycopg.Connection) -> None:
    data = generate(seed=7, clients=10, lps=3, orders=200)
    counts = write_to_source(stack_settings.source, data, trade_batches=4)
    assert counts.orders == 200
    rows = source.execute("SELECT count(*), sum(quantity), sum(quantity * price) FROM trades").fetchone()
    expected_notional = sum(
        (q * p for q, p in zip(data.trades["quantity"], data.trades["price"], strict=True)), Decimal(0)
    )
    assert rows == (data.trades.height, Decimal(data.trades["quantity"].sum()), expected_notional)
    statuses = dict(source.execute("SELECT status, count(*) FROM orders GROUP BY status").fetchall())
    assert set(statuses) == {"FILLED", "PARTIAL", "CANCELLED", "REJECTED"}
    assert source.execute("SELECT count(*) FROM clients").fetchone() == (10,)
