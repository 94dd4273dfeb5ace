"""The keyed-facts registry: what re-keying, `dims check` and the audit rules walk (issue 15)."""

from __future__ import annotations

import pytest

from orion_etl.core import fact_keys
from orion_etl.core.fact_keys import (
    FactKeyRef,
    mismatch_predicate,
    point_in_time_sql,
    refs_for_table,
    registered,
)
from orion_etl.core.quality import default_rules


def test_every_keyed_fact_is_registered() -> None:
    labels = {r.label for r in registered()}
    assert labels == {
        "fact_trades.client_key", "fact_trades.instrument_key", "fact_trades.lp_key",
        "fact_orders.client_key", "fact_orders.instrument_key", "fact_orders.lp_key",
        "fact_quotes.instrument_key", "fact_quotes.lp_key", "fact_risk_snapshots.client_key",
        "fact_positions.client_key", "fact_positions.instrument_key",
    }  # fmt: skip
    clients = {r.fact_table for r in registered("client")}
    assert clients == {"fact_trades", "fact_orders", "fact_risk_snapshots", "fact_positions"}
    assert [r.key_column for r in refs_for_table("fact_quotes")] == ["instrument_key", "lp_key"]


def test_a_new_fact_registers_itself_and_gets_an_audit_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fact_keys, "_REGISTRY", dict(fact_keys._REGISTRY))
    ref = fact_keys.register(
        FactKeyRef("fact_fills", "client", "client_key", "client_id", "filled_at", ("fill_id",))
    )
    assert ref in registered("client")
    rules = {r.key: r for r in default_rules()}
    assert rules["fact_fills.client_key_point_in_time"].sql == mismatch_predicate(ref)


@pytest.mark.parametrize(
    "bad",
    [
        FactKeyRef("fact_x", "desk", "desk_key", "desk_id", "at", ("id",)),
        FactKeyRef("fact_x", "client", "client_key; drop", "client_id", "at", ("id",)),
        FactKeyRef("fact_x", "client", "client_key", "client_id", "at", ('id"',)),
    ],
)
def test_unknown_dimensions_and_unsafe_identifiers_are_rejected(bad: FactKeyRef) -> None:
    with pytest.raises(ValueError):
        fact_keys.register(bad)


def test_point_in_time_sql_follows_the_loaders_rule() -> None:
    (ref,) = [r for r in registered() if r.label == "fact_trades.client_key"]
    text = point_in_time_sql(ref, "f")
    # the highest version starting at or before the fact's time, else the first version
    assert 'd."valid_from" <= "f"."trade_date"'.replace('d."valid_from"', "d.valid_from") in text
    assert "ORDER BY d.valid_from DESC, d.version DESC LIMIT 1" in text
    assert "ORDER BY d.valid_from, d.version LIMIT 1" in text
    assert mismatch_predicate(ref, "t").startswith(
        '("t"."client_id" IS NOT NULL AND "t"."client_key" IS DISTINCT'
    )
