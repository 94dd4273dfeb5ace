"""The shipped example rules (config/dq-rules.example.toml, over the defaults) hold on correctly
loaded data: edge-case trades through the real loader, then every active rule passes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from orion_etl.adapters.alerts import notifier_from_settings
from orion_etl.config.dq import build_catalog
from orion_etl.config.models import DqSettings, OrionSettings
from orion_etl.core.dq_results import Outcome
from orion_etl.errors import exit_code_for
from orion_etl.jobs.audit import run_audit
from tests.integration.rekey_support import DirectLoader

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "dq-rules.example.toml"

# (quantity, price, fees, side): products with more than 10 decimals, exact ties (rounded half to
# even by the loader, away from zero by PostgreSQL's round), extremes, fees above the notional
EDGE_TRADES = [
    ("1000000.0000000001", "1.5", "0", "BUY"),
    ("0.0000000025", "0.1", "0", "BUY"),
    ("0.0000000015", "0.1", "0", "SELL"),
    ("0.0000000035", "0.1", "0.0000000001", "SELL"),
    ("0.3333333333", "0.3333333333", "0", "BUY"),
    ("999999999999.9999999999", "1.0000000001", "12.5", "BUY"),
    ("1", "999999999.9999999999", "0", "SELL"),
    ("0.0000000001", "0.0000000001", "0", "BUY"),
    ("2", "0.5", "5", "SELL"),
]


def test_every_shipped_example_rule_holds_on_edge_case_trades(
    stack_settings: OrionSettings, warehouse: psycopg.Connection
) -> None:
    warehouse.execute("TRUNCATE etl_consumer_offsets, etl_fact_tombstones")
    loader = DirectLoader(stack_settings)
    now = datetime.now(UTC)
    try:
        for i, (qty, price, fees, side) in enumerate(EDGE_TRADES):
            loader.load(
                [(uuid.uuid4(), now - timedelta(minutes=5 + i))],
                quantity=qty,
                price=price,
                fees=fees,
                side=side,
                currency="JPY" if i % 2 else "USD",
            )
    finally:
        loader.close()
    count = warehouse.execute("SELECT count(*) FROM fact_trades").fetchone()
    assert count == (len(EDGE_TRADES),)
    # the data is the edge the old rule tripped on: stored notionals are rounded products
    exact = warehouse.execute("SELECT count(*) FROM fact_trades WHERE notional_value <> quantity * price")
    assert (exact.fetchone() or (0,))[0] >= 3

    # this deployment loads trades only: the positions and risk feeds' freshness rules are switched
    # off as docs/data-quality.md advises (the example file does the same for quotes)
    dq = DqSettings(
        rules_file=str(EXAMPLE),
        rules=[
            {"table": "fact_positions", "name": "positions_fresh", "enabled": False},
            {"table": "fact_risk_snapshots", "name": "risk_snapshots_fresh", "enabled": False},
        ],
    )
    settings = stack_settings.model_copy(update={"dq": dq})
    catalog = build_catalog(dq)
    notifier = notifier_from_settings(dq.alerts, source=settings.warehouse.describe())
    try:
        report = run_audit(settings, catalog, notifier=notifier)
    finally:
        notifier.close()
    outcomes = {r.rule.key: r.outcome for r in report.results}
    assert "fact_trades.notional_matches" in outcomes and "fact_trades.client_key_point_in_time" in outcomes
    assert {k for k, v in outcomes.items() if v is not Outcome.PASS} == set()
    assert exit_code_for(report) == 0
