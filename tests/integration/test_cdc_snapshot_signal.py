"""`orion-etl cdc snapshot` on the real stack: the rendered connector has a signal table, the
command's execute-snapshot signal makes Debezium re-read a table (op=r events after streaming
began), `--filter` narrows it to matching rows, `--stop` is accepted, and the loader absorbs the
re-read rows: the facts are the same rows with the same values afterwards, none doubled.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import TopicPartition
from psycopg import sql

from orion_etl.adapters.connect import ConnectClient, ConnectError
from orion_etl.adapters.kafka import ensure_topics, make_admin, make_consumer
from orion_etl.adapters.postgres import connect
from orion_etl.config.cdc_target import resolve_target
from orion_etl.config.models import OrionSettings
from orion_etl.jobs import cdc as cdc_job
from orion_etl.jobs import connectors as connectors_job
from tests.integration.stream_support import drain

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
TRADES = 30
DEADLINE_S = 120.0  # slot creation waits for every open transaction on the shared server
FACT_COLUMNS = "trade_id, trade_reference, side, quantity, price, fees, notional_value, is_deleted"


@dataclass
class Signalled:
    settings: OrionSettings
    env: dict[str, str]
    name: str
    trades_topic: str

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "orion_etl.cli.app", *args],
            env=self.env, capture_output=True, text=True, timeout=120, check=False, cwd=REPO,
        )  # fmt: skip
        assert "Traceback" not in result.stdout + result.stderr, result.stderr
        return result


def _seed(conn: psycopg.Connection) -> None:
    conn.execute("TRUNCATE trades, orders, positions, clients, instruments, liquidity_providers CASCADE")
    tenant = uuid.uuid4()
    client = conn.execute(
        "INSERT INTO clients (tenant_id, client_code, name, client_type) VALUES (%s, 'SIG', 'Sig', 'CORP') "
        "RETURNING id",
        (tenant,),
    ).fetchone()[0]  # type: ignore[index]
    instrument = conn.execute(
        "INSERT INTO instruments (symbol, name, asset_class, instrument_type) VALUES "
        "('EURUSD', 'Euro', 'FX', 'SPOT') RETURNING id"
    ).fetchone()[0]  # type: ignore[index]
    for i in range(TRADES):
        conn.execute(
            "INSERT INTO trades (tenant_id, trade_reference, client_id, instrument_id, trade_date, side, "
            "quantity, price, fees) VALUES (%s, %s, %s, %s, '2026-03-16 10:00:00+00', %s, %s, %s, 1)",
            (tenant, f"T-{i}", client, instrument, "BUY" if i % 2 else "SELL", 100 + i, "1.0850000001"),
        )


@pytest.fixture(scope="module")
def signalled(stack_settings: OrionSettings, run_id: str) -> Iterator[Signalled]:
    """A connector rendered by orion-etl (signal table included) on this session's source database."""
    routed = f"cdcsig{run_id}"
    cdc = stack_settings.cdc.model_copy(
        update={
            "env": f"sig{run_id}",
            "topic_prefix": f"orion-sig{run_id}",
            "routed_topic_prefix": routed,
            "slot_name": f"orion_sig_{run_id}",
            "publication_name": f"orion_sig_{run_id}",
            "signal_table": f"orion_sig_signal_{run_id}",
            "tables": ["trades", "orders"],
            "heartbeat_interval_ms": 1000,
        }
    )
    events = [
        f"test.{run_id}.sig.trade.executed",
        f"test.{run_id}.sig.quote.received",
        f"test.{run_id}.sig.risk",
    ]
    # The loader's topics exist before it starts (no orders are written, so Debezium never would).
    ensure_topics(
        stack_settings.kafka,
        [*events, f"{routed}.public.trades", f"{routed}.public.orders", f"{routed}.public.positions"],
    )
    topics = stack_settings.stream.topics.model_copy(
        update={
            "trades_cdc": f"{routed}.public.trades",
            "orders_cdc": f"{routed}.public.orders",
            "trade_events": events[0],
            "quote_events": events[1],
            "positions_cdc": f"{routed}.public.positions",
            "risk_events": events[2],
        }
    )
    stream = stack_settings.stream.model_copy(
        update={
            "topics": topics,
            "group_id": f"sig-{run_id}",
            "batch_max_ms": 200,
            "assignment_timeout_s": 30,
        }
    )
    settings = stack_settings.model_copy(update={"cdc": cdc, "stream": stream})
    target = resolve_target(settings)
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("ORION_ETL_")} | {
        "PYTHONPATH": str(REPO),
        "ORION_ETL_SOURCE__PORT": str(settings.source.port),
        "ORION_ETL_SOURCE__DBNAME": settings.source.dbname,
        "ORION_ETL_SOURCE__PASSWORD": settings.source.password.get_secret_value(),
        "ORION_ETL_WAREHOUSE__PORT": str(settings.warehouse.port),
        "ORION_ETL_WAREHOUSE__DBNAME": settings.warehouse.dbname,
        "ORION_ETL_WAREHOUSE__PASSWORD": settings.warehouse.password.get_secret_value(),
        "ORION_ETL_CDC__ENV": cdc.env,
        "ORION_ETL_CDC__TABLES": json.dumps(cdc.tables),
        "ORION_ETL_CDC__PUBLICATION_NAME": cdc.publication_name,
        "ORION_ETL_CDC__SIGNAL_TABLE": cdc.signal_table,
    }
    state = Signalled(settings, env, cdc.connector_name.replace("{env}", cdc.env), topics.trades_cdc)
    with connect(settings.source, autocommit=True) as conn:
        _seed(conn)
    try:
        report = cdc_job.prepare(target, settings.warehouse)
        assert report.verdict == "ok", report.to_document()
        assert f"signal table public.{cdc.signal_table}" in {s.item for s in report.steps}
        with ConnectClient(settings.connect) as client:
            result = connectors_job.register(client, target)
            config = client.get_config(state.name)
        assert config is not None
        assert config["signal.data.collection"] == f"public.{cdc.signal_table}"
        assert config["signal.enabled.channels"] == "source"
        assert result is not None
        yield state
    finally:
        with ConnectClient(settings.connect) as client, contextlib.suppress(ConnectError):
            client.delete(state.name)
        _cleanup(settings, routed)


def _cleanup(settings: OrionSettings, routed: str) -> None:
    deadline = time.monotonic() + 30
    with connect(settings.source, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (settings.cdc.slot_name,)
            ).fetchone()
            if row is None:
                break
            if not row[0]:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (settings.cdc.slot_name,))
                break
            time.sleep(0.5)
    admin = make_admin(settings.kafka)
    mine = [t for t in admin.list_topics(timeout=15).topics if t.startswith(f"{routed}.")]
    if mine:
        for future in admin.delete_topics(mine, operation_timeout=30).values():
            with contextlib.suppress(Exception):
                future.result()


def _facts(wh: psycopg.Connection) -> list[tuple[Any, ...]]:
    return wh.execute(f"SELECT {FACT_COLUMNS} FROM fact_trades ORDER BY trade_reference").fetchall()


def _end_offsets(settings: OrionSettings, topic: str) -> list[TopicPartition]:
    consumer = make_consumer(settings.kafka, f"sig-probe-{uuid.uuid4().hex[:6]}")
    try:
        meta = consumer.list_topics(topic, timeout=15).topics[topic]
        ends = []
        for p in meta.partitions:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=15)
            ends.append(TopicPartition(topic, p, high))
        return ends
    finally:
        consumer.close()


def _events_after(
    settings: OrionSettings, start: list[TopicPartition], expected: int, settle_s: float = 0.0
) -> list[dict[str, Any]]:
    """Envelope payloads after `start`, waiting for `expected` of them (then `settle_s` for extras)."""
    consumer = make_consumer(settings.kafka, f"sig-reader-{uuid.uuid4().hex[:6]}")
    consumer.assign(start)
    events: list[dict[str, Any]] = []
    deadline = time.monotonic() + DEADLINE_S
    settle_until: float | None = None
    try:
        while True:
            now = time.monotonic()
            if len(events) >= expected:
                settle_until = settle_until or now + settle_s
                if now >= settle_until:
                    return events
            assert now < deadline, f"only {len(events)} of {expected} events arrived"
            msg = consumer.poll(0.5)
            if msg is None or msg.error() or msg.value() is None:
                continue
            events.append(json.loads(msg.value())["payload"])
    finally:
        consumer.close()


def _load_until(settings: OrionSettings, wh: psycopg.Connection, rows: int) -> int:
    """Run the loader until `rows` facts are there; the number of messages it consumed."""
    consumed = 0
    deadline = time.monotonic() + DEADLINE_S
    while True:
        result = drain(settings)
        consumed += result.stats.messages
        assert result.stats.dlq == 0
        count = wh.execute("SELECT count(*) FROM fact_trades").fetchone()[0]  # type: ignore[index]
        if count >= rows:
            return consumed
        assert time.monotonic() < deadline, f"{count} of {rows} facts after {DEADLINE_S}s"
        time.sleep(0.5)


def test_incremental_snapshot_is_absorbed_without_doubling(
    signalled: Signalled, warehouse: psycopg.Connection
) -> None:
    settings = signalled.settings
    _load_until(settings, warehouse, TRADES)
    before = _facts(warehouse)
    assert len(before) == TRADES
    start = _end_offsets(settings, signalled.trades_topic)

    sent = signalled.run("cdc", "snapshot", "--table", "trades", "--format", "json")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    signal = json.loads(sent.stdout)
    assert signal["type"] == "execute-snapshot"
    assert signal["data"] == {"type": "incremental", "data-collections": ["public.trades"]}

    reread = _events_after(settings, start, TRADES)
    assert {e["op"] for e in reread} == {"r"}
    assert sorted(e["after"]["trade_reference"] for e in reread) == sorted(r[1] for r in before)

    consumed = 0
    deadline = time.monotonic() + DEADLINE_S
    while consumed < TRADES:  # the loader really read the re-snapshot
        consumed += drain(settings).stats.messages
        assert time.monotonic() < deadline, f"loader consumed {consumed} of {TRADES} re-read rows"
    assert _facts(warehouse) == before, "a re-snapshot refreshes facts, never doubles or changes them"
    assert warehouse.execute("SELECT count(*) FROM etl_data_quality_issues").fetchone() == (0,)

    # Debezium acted on the signal: it wrote its snapshot-window watermarks into the signal table.
    with connect(settings.source, autocommit=True) as conn:
        kinds = {
            r[0]
            for r in conn.execute(
                sql.SQL("SELECT type FROM {}").format(sql.Identifier(settings.cdc.signal_table))
            ).fetchall()
        }
    assert {"execute-snapshot", "snapshot-window-open", "snapshot-window-close"} <= kinds, kinds


def test_filter_narrows_the_snapshot_and_stop_is_accepted(
    signalled: Signalled, warehouse: psycopg.Connection
) -> None:
    settings = signalled.settings
    _load_until(settings, warehouse, TRADES)
    start = _end_offsets(settings, signalled.trades_topic)
    sent = signalled.run("cdc", "snapshot", "--table", "trades", "--filter", "trade_reference = 'T-7'")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "incremental snapshot of public.trades requested" in sent.stdout
    reread = _events_after(settings, start, 1, settle_s=5.0)
    assert [(e["op"], e["after"]["trade_reference"]) for e in reread] == [("r", "T-7")]
    drain(settings)
    assert warehouse.execute("SELECT count(*), count(DISTINCT trade_id) FROM fact_trades").fetchone() == (
        TRADES,
        TRADES,
    )

    stopped = signalled.run("cdc", "snapshot", "--stop", "--table", "trades")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    with ConnectClient(settings.connect) as client:
        status = client.request("GET", f"/connectors/{signalled.name}/status")
    assert status["connector"]["state"] == "RUNNING"
    assert [t["state"] for t in status["tasks"]] == ["RUNNING"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--table", "nosuch"], "'nosuch' is not a captured table"),
        (["--table", "trades", "--table", "orders", "--filter", "id > 0"], "--filter needs exactly one"),
        ([], "name at least one table"),
    ],
)
def test_bad_requests_are_one_line_exit_2(signalled: Signalled, args: list[str], message: str) -> None:
    result = signalled.run("cdc", "snapshot", *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr
