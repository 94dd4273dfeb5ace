"""CDC end to end on the real stack, driven through the CLI like an operator would.

`cdc prepare` + `connectors register` (password passed as a `${file:...}` config-provider
reference) -> snapshot rows arrive as op=r, INSERT/UPDATE/DELETE as c/u/d envelopes with
before/after on `<routed_prefix>.public.<table>`, schema changes keep flowing, registering again is
a no-op, pause/resume show in `status`, delete removes the connector (and the slot). No command
output or log line may contain the database password.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from orion_etl.adapters.connect import ConnectClient
from orion_etl.adapters.kafka import make_admin, make_consumer
from orion_etl.adapters.postgres import connect
from orion_etl.config.models import OrionSettings
from tests.integration.conftest import STACK_PG_PASSWORD

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SECRET = STACK_PG_PASSWORD
DEADLINE_S = 90.0  # slot creation waits for every open transaction on the shared server


@dataclass
class Cdc:
    """One connector of this test session and the CLI environment that points at it."""

    settings: OrionSettings
    env: dict[str, str]
    name: str
    slot: str
    routed_prefix: str
    outputs: list[str] = field(default_factory=list)

    def run(
        self, *args: str, extra_env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run `orion-etl <args>`; every output is checked for the secret."""
        result = subprocess.run(
            [sys.executable, "-m", "orion_etl.cli.app", *args],
            env={**self.env, **(extra_env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=REPO,
        )
        combined = result.stdout + result.stderr
        self.outputs.append(combined)
        assert SECRET not in combined, f"secret leaked by {args}"
        assert "Traceback" not in combined, combined
        return result

    def topic(self, table: str) -> str:
        return f"{self.routed_prefix}.public.{table}"


def _client_row(conn: psycopg.Connection, code: str, **extra: Any) -> str:
    row = conn.execute(
        "INSERT INTO clients (tenant_id, client_code, name, client_type, segment) "
        "VALUES (gen_random_uuid(), %s, %s, 'INSTITUTIONAL', %s) RETURNING id",
        (code, f"client {code}", extra.get("segment", "RETAIL")),
    ).fetchone()
    assert row is not None
    return str(row[0])


def _drop_slot(settings: OrionSettings, slot: str) -> None:
    deadline = time.monotonic() + 30
    with connect(settings.source, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)
            ).fetchone()
            if row is None:
                return
            if not row[0]:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                return
            time.sleep(0.5)


@pytest.fixture(scope="module")
def cdc(
    stack_settings: OrionSettings, run_id: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cdc]:
    """Seed rows, `cdc prepare`, `connectors register`; at teardown delete the connector and its slot."""
    secrets_file = tmp_path_factory.mktemp("connect-secrets") / "cdc.properties"
    secrets_file.write_text(f"password={SECRET}\n")
    s = stack_settings
    slot = f"orion_cdc_{run_id}"
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("ORION_ETL_")} | {
        "PYTHONPATH": str(REPO),
        "ORION_ETL_SOURCE__PORT": str(s.source.port),
        "ORION_ETL_SOURCE__DBNAME": s.source.dbname,
        "ORION_ETL_SOURCE__PASSWORD": SECRET,
        "ORION_ETL_WAREHOUSE__PORT": str(s.warehouse.port),
        "ORION_ETL_WAREHOUSE__DBNAME": s.warehouse.dbname,
        "ORION_ETL_WAREHOUSE__PASSWORD": SECRET,
        "ORION_ETL_KAFKA__BOOTSTRAP_SERVERS": s.kafka.bootstrap_servers,
        "ORION_ETL_CONNECT__URL": s.connect.url,
        "ORION_ETL_CDC__ENV": f"t{run_id}",
        "ORION_ETL_CDC__TOPIC_PREFIX": f"orion-t{run_id}",
        "ORION_ETL_CDC__ROUTED_TOPIC_PREFIX": f"cdc{run_id}",
        "ORION_ETL_CDC__SLOT_NAME": slot,
        "ORION_ETL_CDC__PUBLICATION_NAME": f"orion_cdc_{run_id}",
        "ORION_ETL_CDC__HEARTBEAT_INTERVAL_MS": "1000",
        # The shared stack writes a lot of WAL; these tests are not about the size thresholds.
        "ORION_ETL_CDC__WARN_RETAINED_WAL_BYTES": str(1024**4),
        "ORION_ETL_CDC__MAX_RETAINED_WAL_BYTES": str(1024**4),
        "ORION_ETL_CDC__DATABASE_PASSWORD_REF": f"${{file:{secrets_file}:password}}",
        "ORION_ETL_LOGGING__LEVEL": "DEBUG",
        "ORION_ETL_LOGGING__FORMAT": "json",
    }
    state = Cdc(s, env, f"orion-cdc-t{run_id}", slot, f"cdc{run_id}")
    with connect(s.source, autocommit=True) as conn:
        conn.execute("TRUNCATE trades, orders, positions, clients, instruments, liquidity_providers CASCADE")
        _client_row(conn, "SNAP-1")
        _client_row(conn, "SNAP-2")
    try:
        prepared = state.run("cdc", "prepare")
        assert prepared.returncode == 0, prepared.stdout + prepared.stderr
        assert "changed      publication" in prepared.stdout
        registered = state.run("connectors", "register")
        assert registered.returncode == 0, registered.stdout + registered.stderr
        assert f"{state.name}: created" in registered.stdout
        yield state
    finally:
        with ConnectClient(s.connect) as client:
            if client.get_config(state.name) is not None:
                client.delete(state.name)
        _drop_slot(s, slot)
        _delete_topics(s, state)


def _delete_topics(settings: OrionSettings, state: Cdc) -> None:
    """Remove the topics this session's connector created (routed tables and its heartbeat topic)."""
    admin = make_admin(settings.kafka)
    heartbeat = f"__debezium-heartbeat.{state.env['ORION_ETL_CDC__TOPIC_PREFIX']}"
    mine = [
        t
        for t in admin.list_topics(timeout=15).topics
        if t.startswith(f"{state.routed_prefix}.") or t == heartbeat
    ]
    if mine:
        for future in admin.delete_topics(mine, operation_timeout=30).values():
            future.result()


class Reader:
    """Collects Debezium envelopes from routed topics until a predicate holds or a deadline passes."""

    def __init__(self, cdc: Cdc, tables: list[str]) -> None:
        self.consumer = make_consumer(
            cdc.settings.kafka,
            f"test-cdc-{uuid.uuid4().hex[:8]}",
            **{"topic.metadata.refresh.interval.ms": 1000},
        )
        self.consumer.subscribe([cdc.topic(t) for t in tables])
        self.events: list[dict[str, Any]] = []

    def until(self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = DEADLINE_S) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.events):
            assert time.monotonic() < deadline, (
                f"timed out; got {[(e['op'], e['table']) for e in self.events]}"
            )
            msg = self.consumer.poll(0.5)
            if msg is None or msg.error() or msg.value() is None:  # tombstones follow deletes
                continue
            envelope = json.loads(msg.value())
            assert set(envelope) == {"schema", "payload"}  # JSON converter with schemas enabled
            payload = envelope["payload"]
            self.events.append({**payload, "table": payload["source"]["table"], "topic": msg.topic()})

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture
def reader(cdc: Cdc) -> Iterator[Reader]:
    r = Reader(cdc, ["clients", "trades"])
    yield r
    r.close()


def _client(events: list[dict[str, Any]], op: str, code: str) -> dict[str, Any]:
    return next(
        e
        for e in events
        if e["table"] == "clients" and e["op"] == op and (e["after"] or e["before"])["client_code"] == code
    )


def _codes(events: list[dict[str, Any]], op: str) -> set[str]:
    return {
        (e["after"] or e["before"])["client_code"]
        for e in events
        if e["op"] == op and e["table"] == "clients"
    }


def test_snapshot_then_insert_update_delete(cdc: Cdc, reader: Reader) -> None:
    reader.until(lambda ev: {"SNAP-1", "SNAP-2"} <= _codes(ev, "r"))
    snap = next(e for e in reader.events if e["op"] == "r")
    assert snap["before"] is None and snap["topic"] == cdc.topic("clients")

    with connect(cdc.settings.source, autocommit=True) as conn:
        client_id = _client_row(conn, "LIVE-1", segment="RETAIL")
        conn.execute("UPDATE clients SET segment = 'CORPORATE' WHERE id = %s", (client_id,))
        conn.execute("DELETE FROM clients WHERE id = %s", (client_id,))
    reader.until(lambda ev: "LIVE-1" in _codes(ev, "d"))
    live = [
        e for e in reader.events if e["table"] == "clients" and (e["after"] or e["before"])["id"] == client_id
    ]
    assert [e["op"] for e in live] == ["c", "u", "d"]
    created, updated, deleted = live
    assert created["before"] is None and created["after"]["segment"] == "RETAIL"
    # REPLICA IDENTITY FULL (set by `cdc prepare`): the whole old row, not just the key.
    assert updated["before"]["segment"] == "RETAIL" and updated["after"]["segment"] == "CORPORATE"
    assert deleted["after"] is None and deleted["before"]["name"] == "client LIVE-1"
    assert all(e["topic"] == cdc.topic("clients") for e in live)


def test_decimals_arrive_exact_on_the_trades_topic(cdc: Cdc, reader: Reader) -> None:
    with connect(cdc.settings.source, autocommit=True) as conn:
        client_id = _client_row(conn, "TRADER-1")
        conn.execute(
            "INSERT INTO instruments (symbol, name, asset_class, instrument_type) "
            "VALUES ('EURUSD', 'Euro / US Dollar', 'FX', 'SPOT')"
        )
        conn.execute(
            "INSERT INTO trades (tenant_id, trade_reference, client_id, instrument_id, trade_date, side, "
            "quantity, price) SELECT gen_random_uuid(), 'T-1', %s, id, now(), 'BUY', 1000000.5, 1.0845312345 "
            "FROM instruments WHERE symbol = 'EURUSD'",
            (client_id,),
        )
    reader.until(lambda ev: any(e["table"] == "trades" and e["op"] == "c" for e in ev))
    trade = next(e for e in reader.events if e["table"] == "trades")
    assert trade["topic"] == cdc.topic("trades")
    assert trade["after"]["price"] == "1.0845312345"  # decimal.handling.mode=string: exact
    assert trade["after"]["quantity"] == "1000000.5000000000"


def test_add_and_drop_column_keep_events_flowing(cdc: Cdc, reader: Reader) -> None:
    with connect(cdc.settings.source, autocommit=True) as conn:
        conn.execute("ALTER TABLE clients ADD COLUMN risk_score NUMERIC(5, 2)")
        conn.execute(
            "INSERT INTO clients (tenant_id, client_code, name, client_type, risk_score) "
            "VALUES (gen_random_uuid(), 'WIDE-1', 'wide', 'RETAIL', 12.5)"
        )
    reader.until(lambda ev: "WIDE-1" in _codes(ev, "c"))
    wide = _client(reader.events, "c", "WIDE-1")
    assert wide["after"]["risk_score"] == "12.50"

    with connect(cdc.settings.source, autocommit=True) as conn:
        conn.execute("ALTER TABLE clients DROP COLUMN risk_score")
        conn.execute(
            "INSERT INTO clients (tenant_id, client_code, name, client_type) "
            "VALUES (gen_random_uuid(), 'NARROW-1', 'narrow', 'RETAIL')"
        )
        conn.execute("UPDATE clients SET segment = 'VIP' WHERE client_code = 'WIDE-1'")
    reader.until(lambda ev: "NARROW-1" in _codes(ev, "c") and "WIDE-1" in _codes(ev, "u"))
    narrow = _client(reader.events, "c", "NARROW-1")
    assert "risk_score" not in narrow["after"]
    assert narrow["after"]["name"] == "narrow"
    updated = _client(reader.events, "u", "WIDE-1")
    assert "risk_score" not in updated["after"] and updated["after"]["segment"] == "VIP"


def test_prepare_and_register_again_change_nothing(cdc: Cdc, connect_client: ConnectClient) -> None:
    again = cdc.run("cdc", "prepare", "--format", "json")
    assert again.returncode == 0
    outcomes = {s["outcome"] for s in json.loads(again.stdout)["steps"]}
    assert outcomes == {"unchanged"}
    with connect(cdc.settings.warehouse) as wh:
        runs = wh.execute(
            "SELECT status, records_processed FROM etl_job_runs "
            "WHERE job_type = 'CDC_PREPARE' ORDER BY started_at"
        ).fetchall()
    assert runs[-1] == ("COMPLETED", 0) and runs[-2][0] == "COMPLETED" and runs[-2][1] > 0

    before = connect_client.get_config(cdc.name)
    plan = cdc.run("connectors", "register", "--format", "json")
    assert plan.returncode == 0
    assert json.loads(plan.stdout) | {"password_inline": False} == {
        "schema_version": 1,
        "status": "ok",
        "exit_code": 0,
        "connector": cdc.name,
        "action": "none",
        "changes": [],
        "applied": False,
        "dry_run": False,
        "password_inline": False,
    }
    human = cdc.run("connectors", "register")
    assert "unchanged (running config already matches; nothing to do)" in human.stdout
    assert connect_client.get_config(cdc.name) == before
    # Connect stores the reference, never the password.
    assert before is not None and before["database.password"].startswith("${file:")

    changed = cdc.run(
        "connectors", "register", "--dry-run", extra_env={"ORION_ETL_CDC__SNAPSHOT_MODE": "no_data"}
    )
    assert changed.returncode == 0
    assert "~ snapshot.mode: initial -> no_data" in changed.stdout
    assert "dry run, nothing applied" in changed.stdout
    assert connect_client.get_config(cdc.name) == before


def _status(cdc: Cdc) -> tuple[int, dict[str, Any]]:
    result = cdc.run("connectors", "status", "--format", "json")
    return result.returncode, json.loads(result.stdout)


def test_status_pause_resume(cdc: Cdc) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while (status := _status(cdc))[0] != 0 and time.monotonic() < deadline:
        time.sleep(0.5)  # tasks are assigned shortly after registration
    code, status = _status(cdc)
    assert (code, status["state"], [t["state"] for t in status["tasks"]]) == (0, "RUNNING", ["RUNNING"])

    paused = cdc.run("connectors", "pause")
    assert paused.returncode == 0 and f"{cdc.name}: PAUSED" in paused.stdout
    code, status = _status(cdc)
    assert (code, status["state"], [t["state"] for t in status["tasks"]]) == (1, "PAUSED", ["PAUSED"])

    resumed = cdc.run("connectors", "resume")
    assert resumed.returncode == 0 and f"{cdc.name}: RUNNING" in resumed.stdout
    assert _status(cdc)[0] == 0

    listed = cdc.run("connectors", "list", "--format", "json")
    assert {"connector": cdc.name, "state": "RUNNING"}.items() <= next(
        r for r in json.loads(listed.stdout)["items"] if r["connector"] == cdc.name
    ).items()
    restarted = cdc.run("connectors", "restart", "--include-tasks", "--only-failed")
    assert restarted.returncode == 0


def test_cdc_status_healthy_then_drift(cdc: Cdc) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        result = cdc.run("cdc", "status", "--format", "json")
        report = json.loads(result.stdout)
        if result.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert result.returncode == 0, report["findings"]
    slot = next(s for s in report["slots"] if s["slot_name"] == cdc.slot)
    assert slot["active"] and slot["wal_status"] in {"reserved", "extended"}
    assert slot["retained_wal_bytes"] >= 0
    assert report["publication"]["missing"] == [] and report["publication"]["extra"] == []
    assert report["heartbeat"]["age_s"] is not None and report["heartbeat"]["age_s"] < 60

    tables = json.dumps(
        ["trades", "orders", "positions", "clients", "instruments", "liquidity_providers", "ghost"]
    )
    drift = cdc.run("cdc", "status", "--format", "json", extra_env={"ORION_ETL_CDC__TABLES": tables})
    assert drift.returncode == 4
    assert json.loads(drift.stdout)["publication"]["missing"] == ["public.ghost"]
    human = cdc.run("cdc", "status", extra_env={"ORION_ETL_CDC__TABLES": tables})
    assert "failure  publication" in human.stdout and "public.ghost" in human.stdout


def test_failures_are_one_clear_line(cdc: Cdc) -> None:
    cases = [
        (
            ("connectors", "status"),
            {"ORION_ETL_CONNECT__URL": "http://127.0.0.1:9"},
            3,
            "cannot reach Kafka Connect",
        ),
        (("cdc", "status"), {"ORION_ETL_SOURCE__PORT": "9"}, 3, "cannot connect to PostgreSQL"),
        (
            ("connectors", "register", "--dry-run"),
            {"ORION_ETL_CDC__DATABASE_PASSWORD_REF": "${env:ORION_TEST_MISSING_SECRET}"},
            2,
            "Kafka Connect rejected connector",
        ),
        (
            ("connectors", "validate"),
            {"ORION_ETL_CDC__DATABASE_PASSWORD_REF": "${file:/nonexistent/orion.properties:password}"},
            2,
            "invalid",
        ),
        (("connectors", "status", "no-such-connector"), {}, 4, "is not registered"),
        (
            ("cdc", "prepare", "--dry-run"),
            {"ORION_ETL_CDC__DATABASE_USER": "orion_no_such_role"},
            4,
            "could-not    role orion_no_such_role: role does not exist",
        ),
        (("connectors", "render", "--env", "bad env"), {}, 2, "invalid environment name"),
    ]
    for args, extra, code, text in cases:
        result = cdc.run(*args, extra_env=extra)
        assert result.returncode == code, (args, result.stdout, result.stderr)
        errors = [
            ln for ln in (result.stdout + result.stderr).splitlines() if ln.startswith(("error:", "hint:"))
        ]
        assert text in result.stdout + result.stderr, (args, result.stdout, result.stderr)
        assert len([ln for ln in errors if ln.startswith("error:")]) <= 1


def test_render_masks_an_inline_password(cdc: Cdc) -> None:
    result = cdc.run("connectors", "render", extra_env={"ORION_ETL_CDC__DATABASE_PASSWORD_REF": ""})
    assert result.returncode == 0
    assert json.loads(result.stdout)["config"]["database.password"] == "********"
    properties = cdc.run("connectors", "render", "--format", "properties")
    assert "database.password=${file:" in properties.stdout


def test_delete_leaves_an_abandoned_slot_that_status_flags_then_drops_it(cdc: Cdc) -> None:
    deleted = cdc.run("connectors", "delete", "--yes")
    assert deleted.returncode == 0 and f"{cdc.name}: deleted" in deleted.stdout
    assert "still retains WAL" in deleted.stderr
    deadline = time.monotonic() + 30
    while (missing := cdc.run("connectors", "status", "--format", "json")).returncode != 4:
        assert time.monotonic() < deadline, missing.stdout  # the status topic catches up shortly
        time.sleep(0.5)
    assert "is not registered" in missing.stderr

    # The slot outlives the connector: with a zero WAL budget, an inactive slot is a failure.
    deadline = time.monotonic() + 30
    while True:
        result = cdc.run(
            "cdc", "status", "--format", "json", extra_env={"ORION_ETL_CDC__MAX_RETAINED_WAL_BYTES": "0"}
        )
        slot = next(s for s in json.loads(result.stdout)["slots"] if s["slot_name"] == cdc.slot)
        if not slot["active"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert result.returncode == 4
    assert any("inactive slot" in f["message"] for f in json.loads(result.stdout)["findings"])

    dropped = cdc.run("connectors", "delete", "--yes", "--drop-slot")
    assert dropped.returncode == 0
    assert "not registered" in dropped.stdout and "dropped" in dropped.stdout
    gone = cdc.run("cdc", "status", "--format", "json")
    assert gone.returncode == 4
    assert all(s["slot_name"] != cdc.slot for s in json.loads(gone.stdout)["slots"])


def test_no_output_contained_the_secret(cdc: Cdc) -> None:
    assert len(cdc.outputs) > 20
    assert not any(SECRET in out for out in cdc.outputs)
    # Debug JSON logs were on for every command: they went through the same check.
    assert any('"level": "debug"' in out or '"level": "info"' in out for out in cdc.outputs)
