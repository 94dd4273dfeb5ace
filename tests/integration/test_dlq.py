"""`orion-etl dlq`: list/show/replay against real Kafka and PostgreSQL.

The loader runs with `stream.missing_dimension = "dlq"`, so a trade or quote whose client or
instrument has no dimension row is dead-lettered (class missing_dimension); once the member
appears, `dlq replay` loads it through the loader's own pipeline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import sql

from orion_etl.config.models import OrionSettings
from orion_etl.core.dead_letter_classes import LetterClass
from orion_etl.core.dead_letters import Selection
from orion_etl.jobs.dlq import list_dead_letters, show_dead_letters
from orion_etl.jobs.dlq_replay import run_replay
from tests.integration.stream_support import STREAM_TABLES, drain, produce, stream_settings
from tests.stream_builders import cdc, dumps, quote_event, trade_row

pytestmark = pytest.mark.integration

TENANT = str(uuid.UUID(int=1))
CLIENT, INSTRUMENT, LP = str(uuid.UUID(int=101)), str(uuid.UUID(int=201)), str(uuid.UUID(int=301))


@pytest.fixture
def wh(warehouse: psycopg.Connection) -> psycopg.Connection:
    tables = [*STREAM_TABLES, "etl_dlq_replays"]
    warehouse.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(sql.Identifier(t) for t in tables)))
    return warehouse


def _settings(base: OrionSettings, topic_name: Callable[[str], str]) -> OrionSettings:
    s = stream_settings(base, topic_name, missing_dimension="dlq", batch_max_messages=1000)
    return s.model_copy(update={"dlq": s.dlq.model_copy(update={"replay_group": topic_name("replay")})})


def _dims(conn: psycopg.Connection, clients: list[str], instruments: list[str], lps: list[str]) -> None:
    for c in clients:
        conn.execute(
            "INSERT INTO dim_clients (client_id, tenant_id, valid_from) VALUES (%s, %s, '2000-01-01')",
            (c, TENANT),
        )
    for i in instruments:
        conn.execute(
            "INSERT INTO dim_instruments (instrument_id, valid_from) VALUES (%s, '2000-01-01')", (i,)
        )
    for lp in lps:
        conn.execute(
            "INSERT INTO dim_liquidity_providers (lp_id, valid_from) VALUES (%s, '2000-01-01')", (lp,)
        )


def _state(conn: psycopg.Connection, group: str) -> dict[str, Any]:
    """Everything a replay may change (or, for the loader's positions, must not)."""
    return {
        "trades": conn.execute(
            "SELECT trade_id, quantity, src_topic, src_partition, src_offset FROM fact_trades ORDER BY 1"
        ).fetchall(),
        "quotes": conn.execute(
            "SELECT src_topic, src_partition, src_offset FROM fact_quotes ORDER BY 1, 2, 3"
        ).fetchall(),
        "loader_offsets": conn.execute(
            "SELECT topic, partition, next_offset FROM etl_consumer_offsets WHERE consumer_group = %s "
            "ORDER BY 1, 2",
            (group,),
        ).fetchall(),
        "issues": conn.execute("SELECT count(*) FROM etl_data_quality_issues").fetchone(),
        "replays": conn.execute("SELECT count(*), sum(attempts) FROM etl_dlq_replays").fetchone(),
        "runs": conn.execute("SELECT count(*) FROM etl_job_runs WHERE job_type = 'DLQ_REPLAY'").fetchone(),
    }


def _scenario(settings: OrionSettings, wh: psycopg.Connection) -> dict[str, Any]:
    """A good trade, two trades and a quote of an unknown instrument, a malformed and a rule failure."""
    t = settings.stream.topics
    missing_instrument = str(uuid.uuid4())
    _dims(wh, [CLIENT], [INSTRUMENT], [LP])
    good = trade_row()
    waiting = [trade_row(instrument_id=missing_instrument) for _ in range(2)]
    produce(
        settings,
        [
            (t.trades_cdc, b'{"id": "k-good"}', cdc("trades", good)),
            *((t.trades_cdc, f'{{"id": "{w["id"]}"}}'.encode(), cdc("trades", w)) for w in waiting),
            (t.trades_cdc, b'{"id": "k-bad"}', b"{not json"),
            (t.trades_cdc, None, cdc("trades", trade_row(quantity="-5"), schema=False)),
            (t.quote_events, None, dumps(quote_event("1.1", "1.2", instrumentId=missing_instrument))),
        ],
    )
    result = drain(settings)
    assert result.stats.dlq == 5, result.stats.as_dict()
    return {"good": good, "waiting": waiting, "instrument": missing_instrument}


def test_missing_dimension_letters_load_after_the_member_appears(
    stack_settings: OrionSettings, topic_name: Callable[[str], str], wh: psycopg.Connection
) -> None:
    settings = _settings(stack_settings, topic_name)
    t, suffix = settings.stream.topics, settings.stream.dlq_suffix
    sc = _scenario(settings, wh)
    group = settings.stream.group_id
    assert wh.execute("SELECT count(*) FROM fact_trades").fetchone() == (1,)

    # list: exact counts and one line per failure (the two missing-instrument trades share a fingerprint)
    listing = list_dead_letters(settings, (t.trades_cdc, t.quote_events))
    assert {s.topic: s.messages for s in listing.topics} == {
        t.trades_cdc + suffix: 4,
        t.quote_events + suffix: 1,
    }
    trade_groups = {g.letter_class: g for g in listing.groups if g.dlq_topic == t.trades_cdc + suffix}
    assert trade_groups["missing_dimension"].count == 2
    assert trade_groups["missing_dimension"].rule == "instrument_exists"
    assert trade_groups["undecodable"].count == 1 and trade_groups["rule"].rule == "positive_quantity"

    # dry run while the member is still missing: everything would fail again, nothing changes
    before = _state(wh, group)
    dry = run_replay(settings, Selection(topics=(t.trades_cdc, t.quote_events)), dry_run=True)
    assert (dry.loaded, dry.failed) == (0, 5)
    assert _state(wh, group) == before

    _dims(wh, [], [sc["instrument"]], [])
    dry = run_replay(settings, Selection(topics=(t.trades_cdc, t.quote_events)), dry_run=True)
    assert (dry.loaded, dry.failed, dry.counts.upserted, dry.counts.quotes) == (3, 2, 2, 1)
    assert {i.outcome for i in dry.items if i.message.letter_class is LetterClass.UNDECODABLE} == {"fail"}
    assert _state(wh, group) == before  # the dry run rolled back its trial load

    first = run_replay(settings, Selection(topics=(t.trades_cdc, t.quote_events)))
    assert (first.loaded, first.failed, first.counts.upserted, first.counts.quotes) == (3, 2, 2, 1)
    assert first.exit_code == 1  # the malformed and the rule failure stay dead-lettered
    after = _state(wh, group)
    assert after["loader_offsets"] == before["loader_offsets"]  # the loader's positions never move
    assert after["issues"] == before["issues"]  # failed-again letters get no second issue row
    assert after["replays"] == (5, 5) and after["runs"] == (1,)
    assert {str(r[0]) for r in after["trades"]} == {sc["good"]["id"], *(w["id"] for w in sc["waiting"])}
    for w in sc["waiting"]:
        src_topic = next(r[2] for r in after["trades"] if str(r[0]) == w["id"])
        assert src_topic == t.trades_cdc  # lineage: the ORIGIN coordinates, not the DLQ's
    assert after["quotes"][0][0] == t.quote_events and after["quotes"][0][2] == 0
    # the failures keep their reason; the DLQ was not written to again
    reasons = {g.letter_class: g.sample_error for g in first.failures.values()}
    assert set(reasons) == {"undecodable", "rule"} and "positive_quantity" in reasons["rule"]
    assert sum(s.messages for s in list_dead_letters(settings, (t.trades_cdc,)).topics) == 4
    run = wh.execute(
        "SELECT status, records_processed, records_failed FROM etl_job_runs WHERE job_type = 'DLQ_REPLAY'"
    ).fetchone()
    assert run == ("COMPLETED", 5, 2)

    # the position is remembered: a second replay has nothing to do
    second = run_replay(settings, Selection(topics=(t.trades_cdc, t.quote_events)))
    assert (second.scanned, second.loaded, second.failed) == (0, 0, 0)
    # asked to redo everything: no duplicate facts (guarded by source position / origin coordinates)
    again = run_replay(settings, Selection(topics=(t.trades_cdc, t.quote_events)), from_start=True)
    assert (again.loaded, again.failed, again.counts.upserted, again.counts.quotes) == (3, 2, 0, 0)
    assert again.counts.duplicates == 2
    final = _state(wh, group)
    assert final["trades"] == after["trades"] and final["quotes"] == after["quotes"]
    assert final["replays"] == (5, 10) and final["loader_offsets"] == before["loader_offsets"]


def test_filtered_replay_does_not_skip_unselected_letters(
    stack_settings: OrionSettings, topic_name: Callable[[str], str], wh: psycopg.Connection
) -> None:
    settings = _settings(stack_settings, topic_name)
    t = settings.stream.topics
    sc = _scenario(settings, wh)
    _dims(wh, [], [sc["instrument"]], [])
    only = Selection(topics=(t.trades_cdc,), key=sc["waiting"][1]["id"])
    assert [m.key for m in show_dead_letters(settings, only, 10)] == [
        f'{{"id": "{sc["waiting"][1]["id"]}"}}'.encode()
    ]
    one = run_replay(settings, only)
    assert (one.selected, one.loaded) == (1, 1)
    # the other waiting trade (offset before the selected one) is still replayed by a plain replay
    rest = run_replay(settings, Selection(topics=(t.trades_cdc,)))
    assert (rest.loaded, rest.failed, rest.skipped) == (1, 2, 1)
    assert wh.execute("SELECT count(*) FROM fact_trades").fetchone() == (3,)
    # --retry-failed re-attempts only the letters that failed again
    retry = run_replay(settings, Selection(topics=(t.trades_cdc,)), retry_failed=True)
    assert (retry.loaded, retry.failed, retry.skipped) == (0, 2, 2)


def _cli(settings: OrionSettings, *args: str) -> subprocess.CompletedProcess[str]:
    wh, st = settings.warehouse, settings.stream
    env = {
        "ORION_ETL_WAREHOUSE__PORT": str(wh.port),
        "ORION_ETL_WAREHOUSE__DBNAME": wh.dbname,
        "ORION_ETL_WAREHOUSE__PASSWORD": wh.password.get_secret_value(),
        "ORION_ETL_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "ORION_ETL_STREAM__GROUP_ID": st.group_id,
        "ORION_ETL_STREAM__MISSING_DIMENSION": "dlq",
        "ORION_ETL_DLQ__REPLAY_GROUP": settings.dlq.replay_group,
        "ORION_ETL_LOGGING__FORMAT": "plain",
        "COLUMNS": "250",
        **{f"ORION_ETL_STREAM__TOPICS__{k.upper()}": v for k, v in vars(st.topics).items()},
    }
    return subprocess.run(
        [sys.executable, "-m", "orion_etl.cli.app", "dlq", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_list_show_replay_and_bad_filters(
    stack_settings: OrionSettings, topic_name: Callable[[str], str], wh: psycopg.Connection
) -> None:
    settings = _settings(stack_settings, topic_name)
    t = settings.stream.topics
    _scenario(settings, wh)

    listed = _cli(settings, "list", "--topic", t.trades_cdc, "--format", "json")
    assert listed.returncode == 0, listed.stderr
    doc = json.loads(listed.stdout)
    assert doc["topics"][0]["messages"] == 4 and doc["topics"][0]["complete"]
    md = next(g for g in doc["groups"] if g["class"] == "missing_dimension")
    assert md["count"] == 2

    shown = _cli(settings, "show", "-t", t.trades_cdc, "--fingerprint", md["fingerprint"], "--format", "json")
    assert shown.returncode == 0, shown.stderr
    letters = json.loads(shown.stdout)["items"]
    assert len(letters) == 2 and {m["rule"] for m in letters} == {"instrument_exists"}
    assert all(m["origin"]["topic"] == t.trades_cdc and m["value"].startswith("{") for m in letters)

    bad = _cli(
        settings, "show", "-t", t.trades_cdc, "--class", "undecodable", "--limit", "1", "--format", "json"
    )
    assert [m["value"] for m in json.loads(bad.stdout)["items"]] == ["{not json"]
    by_rule = _cli(settings, "show", "-t", t.trades_cdc, "--rule", "positive_quantity", "--format", "json")
    assert len(json.loads(by_rule.stdout)["items"]) == 1
    window = _cli(
        settings, "show", "-t", t.trades_cdc, "--offsets", "1..2", "--since", "1h", "--format", "json"
    )
    assert [m["dlq_offset"] for m in json.loads(window.stdout)["items"]] == [1, 2]
    table = _cli(settings, "show", "-t", t.trades_cdc, "--error", "NOT VALID json")
    assert table.returncode == 0 and "undecodable" in table.stdout

    dry = _cli(settings, "replay", "-t", t.trades_cdc, "--dry-run", "--format", "json")
    assert dry.returncode == 1, dry.stderr  # some would fail again
    assert json.loads(dry.stdout)["dry_run"] is True
    assert wh.execute("SELECT count(*) FROM etl_dlq_replays").fetchone() == (0,)
    dry_table = _cli(settings, "replay", "-t", t.trades_cdc, "--dry-run")
    assert dry_table.returncode == 1 and "dry run" in dry_table.stdout and "fail" in dry_table.stdout
    list_table = _cli(settings, "list")
    assert list_table.returncode == 0, list_table.stderr
    assert "missing_dimension" in list_table.stdout and md["fingerprint"] in list_table.stdout
    real = _cli(settings, "replay", "-t", t.trades_cdc, "--class", "undecodable", "--format", "json")
    assert real.returncode == 1 and json.loads(real.stdout)["failed_again"] == 1, real.stderr

    for args in (
        ["show", "--class", "nope"],
        ["show", "--offsets", "9..3"],
        ["show", "--since", "yesterday"],
        ["show", "--topic", "no.such.topic"],
        ["replay", "--since", "1h", "--until", "2h"],
        ["show", "--origin-offsets", "a..b"],
    ):
        out = _cli(settings, *args)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert out.stderr.strip().startswith("error:") and len(out.stderr.strip().splitlines()) <= 2, (
            out.stderr
        )
        assert "Traceback" not in out.stderr
