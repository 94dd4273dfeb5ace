"""Issue 14's report: a NUL escape in a record's JSON stopped the loader for good (exit 3 on the DQ
issue row), the good record beside it never loaded, and every retry published the letter again."""

from __future__ import annotations

import json
from collections.abc import Callable

import psycopg
import pytest
from psycopg import sql

from orion_etl.config.models import OrionSettings
from tests.integration.stream_support import STREAM_TABLES, drain, produce, read_topic, stream_settings
from tests.stream_builders import cdc, dumps, trade_event, trade_row

pytestmark = pytest.mark.integration


@pytest.fixture
def wh(warehouse: psycopg.Connection) -> psycopg.Connection:
    warehouse.execute(
        sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(sql.Identifier(t) for t in STREAM_TABLES))
    )
    return warehouse


def test_nul_in_text_is_dead_lettered_once_and_the_rest_loads(
    stack_settings: OrionSettings, topic_name: Callable[[str], str], wh: psycopg.Connection
) -> None:
    settings = stream_settings(stack_settings, topic_name)
    t = settings.stream.topics
    good = trade_event()
    nul_ref = trade_event(tradeReference="A\u0000B")  # json.dumps writes the escape \u0000
    assert b"\\u0000" in dumps(nul_ref)
    # a record dead-lettered for another reason, the NUL (and a literal backslash-u0000) only in an
    # ignored field
    ignored = trade_event(quantity="-5", note="x\u0000y", literal="A\\u0000B")
    # a schemaless CDC envelope with a NUL in a fact text column
    cdc_nul = cdc("trades", trade_row(trade_reference="C\u0000D"), schema=False)
    cdc_good = trade_row()
    produce(
        settings,
        [
            (t.trade_events, None, dumps(nul_ref)),
            (t.trade_events, None, dumps(good)),
            (t.trade_events, None, dumps(ignored)),
            (t.trades_cdc, None, cdc_nul),
            (t.trades_cdc, None, cdc("trades", cdc_good)),
        ],
    )
    first = drain(settings)
    assert first.exit_code == 1, first.stats.as_dict()
    loaded = {r[0] for r in wh.execute("SELECT trade_id::text FROM fact_trades").fetchall()}
    assert loaded == {good["payload"]["tradeId"], cdc_good["id"]}
    issues = wh.execute(
        "SELECT origin->>'error_class', record_data->>'raw' FROM etl_data_quality_issues "
        "WHERE severity = 'ERROR' ORDER BY origin->>'topic', (origin->>'offset')::int"
    ).fetchall()
    assert sorted(i[0] for i in issues) == ["INVALID_VALUE", "INVALID_VALUE", "RULE"]
    raws = [i[1] for i in issues]
    assert any('"A\\u0000B"' in r for r in raws)  # the raw text as it was, escape included
    assert any('"x\\u0000y"' in r and '"A\\\\u0000B"' in r for r in raws)

    # a second run reads nothing new and publishes nothing again
    second = drain(settings)
    assert second.exit_code == 0 and second.stats.messages == 0
    letters = read_topic(settings, t.trade_events + settings.stream.dlq_suffix, 3, timeout_s=5)
    assert len(letters) == 2
    assert {json.loads(m.value())["payload"]["tradeReference"] for m in letters} >= {"A\u0000B"}
    assert len(read_topic(settings, t.trades_cdc + settings.stream.dlq_suffix, 2, timeout_s=5)) == 1
