"""The incremental-snapshot signals `cdc snapshot` sends, checked against Debezium's signal format."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orion_etl.config.cdc_target import resolve_target
from orion_etl.config.connector_config import render_connector
from orion_etl.config.models import OrionSettings
from orion_etl.core.snapshot_signal import EXECUTE, STOP, snapshot_signal
from orion_etl.errors import ConfigError, UsageError

CAPTURED = ["trades", "orders", "positions", "clients", "instruments", "liquidity_providers"]
TARGET = resolve_target(OrionSettings())


@given(st.lists(st.sampled_from(CAPTURED), min_size=1, max_size=8), st.booleans())
def test_execute_and_stop_name_each_table_once(tables: list[str], stop: bool) -> None:
    signal = snapshot_signal(TARGET, tables, stop=stop)
    data = json.loads(signal.data)
    expected = [f"public.{t}" for t in dict.fromkeys(tables)]
    assert signal.type == (STOP if stop else EXECUTE)
    assert data == {"type": "incremental", "data-collections": expected}
    assert list(signal.tables) == expected
    assert signal.id.startswith("orion-etl-") and len(signal.id) <= 64


@given(st.sampled_from(CAPTURED), st.text(min_size=1).filter(str.strip))
def test_filter_becomes_the_additional_condition_verbatim(table: str, condition: str) -> None:
    data = json.loads(snapshot_signal(TARGET, [table], condition=condition).data)
    assert data["additional-conditions"] == [
        {"data-collection": f"public.{table}", "filter": condition.strip()}
    ]


def test_stop_without_tables_stops_everything() -> None:
    assert json.loads(snapshot_signal(TARGET, [], stop=True).data) == {"type": "incremental"}


@pytest.mark.parametrize(
    ("tables", "kwargs", "message"),
    [
        (["nosuch"], {}, "'nosuch' is not a captured table"),
        ([], {}, "at least one table"),
        (["trades", "orders"], {"condition": "id > 1"}, "exactly one --table"),
        (["trades"], {"condition": "id > 1", "stop": True}, "not to --stop"),
        (["trades"], {"condition": "  "}, "--filter is empty"),
    ],
)
def test_bad_requests_are_usage_errors(tables: list[str], kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        snapshot_signal(TARGET, tables, **kwargs)  # type: ignore[arg-type]


def test_disabled_signalling_is_a_config_error() -> None:
    target = resolve_target(OrionSettings(cdc={"signal_table": ""}))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="signalling is disabled"):
        snapshot_signal(target, ["trades"])
    assert "signal.data.collection" not in render_connector(target).config


def test_rendered_connector_enables_the_source_signal_channel() -> None:
    config = render_connector(TARGET).config
    assert config["signal.enabled.channels"] == "source"
    assert config["signal.data.collection"] == "public.orion_cdc_signal"


@pytest.mark.parametrize("value", ["trades", "orion_cdc_heartbeat", "Bad-Name"])
def test_signal_table_must_be_its_own_plain_table(value: str) -> None:
    with pytest.raises(ConfigError, match="signal_table"):
        resolve_target(OrionSettings(cdc={"signal_table": value}))  # type: ignore[arg-type]
