"""The loader applies the configured rule catalogue, not only the built-in defaults."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest
from psycopg import sql

from orion_etl.config.models import OrionSettings
from tests.integration.stream_support import STREAM_TABLES, drain, produce, read_topic, stream_settings
from tests.stream_builders import dumps, trade_event

pytestmark = pytest.mark.integration


def test_configured_rules_reach_the_stream(
    stack_settings: OrionSettings, warehouse: psycopg.Connection, topic_name: Callable[[str], str]
) -> None:
    warehouse.execute(
        sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(sql.Identifier(t) for t in STREAM_TABLES))
    )
    base = stream_settings(stack_settings, topic_name)
    dq = base.dq.model_validate(
        {
            "rules": [
                # a user rule (error): unknown settlement currencies are dead-lettered
                {
                    "table": "fact_trades", "name": "known_currency", "kind": "accepted_values",
                    "column": "currency", "values": ["USD", "EUR"], "severity": "error",
                    "message": "currency is not settled here",
                },
                # a default switched off: zero quantities load
                {"table": "fact_trades", "name": "positive_quantity", "enabled": False},
            ]
        }
    )  # fmt: skip
    settings = base.model_copy(update={"dq": dq})
    topic = settings.stream.topics.trade_events
    good = trade_event(currency="USD", quantity="0")
    bad = trade_event(currency="XXX")
    produce(settings, [(topic, None, dumps(good)), (topic, None, dumps(bad))])

    drain(settings)

    loaded = warehouse.execute("SELECT trade_id::text, quantity FROM fact_trades").fetchall()
    assert [row[0] for row in loaded] == [good["payload"]["tradeId"]]
    letters = read_topic(settings, topic + settings.stream.dlq_suffix, expected=1)
    assert len(letters) == 1
    headers = {k: v.decode() for k, v in letters[0].headers()}
    assert headers["dlq.rule"] == "known_currency"
    assert "currency is not settled here" in headers["dlq.error"]
