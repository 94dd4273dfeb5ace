"""Config plans (diffs), connector health, trace trimming, validation errors, replication findings."""

from __future__ import annotations

import httpx
import pytest

from orion_etl.adapters.connect import ConnectClient, ConnectError, ConnectorNotFoundError
from orion_etl.config.models import ConnectSettings
from orion_etl.core.connectors import MASK, connector_health, plan_config, trim_trace, validation_errors
from orion_etl.core.replication_health import (
    Thresholds,
    check_heartbeat,
    check_publication,
    check_slots,
    publication_drift,
    verdict,
)
from orion_etl.errors import exit_code_for


def exit_code(findings: list) -> int:
    """The exit code `cdc status` gives for these findings (through the one policy)."""
    return exit_code_for(verdict(findings))


DESIRED = {"name": "c", "database.password": "secret-1", "slot.name": "s", "snapshot.mode": "initial"}


def test_plan_for_a_new_connector_adds_everything_masked() -> None:
    plan = plan_config("c", DESIRED, None)
    assert plan.action == "create"
    assert {c.key for c in plan.changes} == set(DESIRED)
    assert "secret-1" not in repr(plan.as_dict())
    assert f"+ database.password = {MASK}" in [c.line() for c in plan.changes]


def test_plan_identical_config_is_a_no_op() -> None:
    plan = plan_config("c", DESIRED, dict(DESIRED))
    assert plan.action == "none" and plan.changes == []


def test_plan_shows_changed_added_removed_keys() -> None:
    running = {**DESIRED, "snapshot.mode": "no_data", "old.key": "1"}
    del running["slot.name"]
    plan = plan_config("c", DESIRED, running)
    assert plan.action == "update"
    assert [c.line() for c in plan.changes] == [
        "- old.key = 1",
        "+ slot.name = s",
        "~ snapshot.mode: no_data -> initial",
    ]


def test_plan_secret_change_is_visible_but_masked() -> None:
    plan = plan_config("c", DESIRED, {**DESIRED, "database.password": "secret-0"})
    assert [c.line() for c in plan.changes] == [f"~ database.password: {MASK} -> {MASK} (changed)"]
    assert "secret" not in repr(plan.as_dict()).replace("(changed)", "")
    to_ref = plan_config("c", {**DESIRED, "database.password": "${env:PW}"}, DESIRED)
    assert [c.line() for c in to_ref.changes] == [f"~ database.password: {MASK} -> ${{env:PW}}"]


TRACE = """org.apache.kafka.connect.errors.ConnectException: An exception occurred
\tat io.debezium.pipeline.ErrorHandler.setProducerThrowable(ErrorHandler.java:67)
\tat java.base/java.lang.Thread.run(Thread.java:840)
Caused by: io.debezium.DebeziumException: Creation of replication slot failed
\tat io.debezium.connector.postgresql.PostgresConnectorTask.start(PostgresConnectorTask.java:170)
Caused by: org.postgresql.util.PSQLException: FATAL: number of requested standby connections exceeds
\tat org.postgresql.core.v3.ConnectionFactoryImpl.doAuthentication(ConnectionFactoryImpl.java:693)
"""


def test_trim_trace_keeps_first_line_and_causes() -> None:
    assert trim_trace(TRACE) == (
        "org.apache.kafka.connect.errors.ConnectException: An exception occurred\n"
        "Caused by: io.debezium.DebeziumException: Creation of replication slot failed\n"
        "Caused by: org.postgresql.util.PSQLException: FATAL: number of requested standby connections exceeds"
    )
    assert trim_trace(None) is None
    assert len(trim_trace("x" * 5000) or "") == 2000


@pytest.mark.parametrize(
    ("connector", "tasks", "code"),
    [
        ("RUNNING", ["RUNNING"], 0),
        ("RUNNING", ["FAILED"], 4),
        ("FAILED", [], 4),
        ("PAUSED", ["PAUSED"], 1),
        ("RUNNING", [], 1),
        ("RUNNING", ["UNASSIGNED"], 1),
    ],
)
def test_health_exit_codes(connector: str, tasks: list[str], code: int) -> None:
    status = {
        "name": "c",
        "connector": {"state": connector, "worker_id": "w"},
        "tasks": [
            {"id": i, "state": s, "worker_id": "w", "trace": TRACE if s == "FAILED" else None}
            for i, s in enumerate(tasks)
        ],
        "type": "source",
    }
    health = connector_health(status)
    assert exit_code_for(health) == code
    if "FAILED" in tasks:
        assert health.tasks[0].trace and health.tasks[0].trace.count("\n") == 2


def test_validation_errors_ignore_null_values_and_never_include_values() -> None:
    result = {
        "configs": [
            {"value": None},
            {"value": {"name": "database.hostname", "value": "h", "errors": ["cannot connect"]}},
            {"value": {"name": "database.password", "value": "pw-secret", "errors": []}},
        ]
    }
    assert validation_errors(result) == ["database.hostname: cannot connect"]


LIMITS = Thresholds(warn_retained_wal_bytes=100, max_retained_wal_bytes=1000, max_heartbeat_age_s=60)


def slot(name: str = "s", *, active: bool = True, retained: int = 10, wal_status: str = "reserved") -> dict:
    return {"slot_name": name, "active": active, "retained_wal_bytes": retained, "wal_status": wal_status}


@pytest.mark.parametrize(
    ("slots", "code"),
    [
        ([slot()], 0),
        ([], 4),  # configured slot missing
        ([slot(wal_status="lost")], 4),
        ([slot(active=False, retained=5000)], 4),  # abandoned slot over the limit
        ([slot(active=False)], 1),
        ([slot(retained=500)], 1),
        ([slot(retained=5000)], 1),  # active but lagging
        ([slot(wal_status="unreserved")], 1),
        ([slot(), slot("other", active=False, retained=5000)], 4),  # someone else's abandoned slot
    ],
)
def test_slot_findings(slots: list[dict], code: int) -> None:
    assert exit_code(check_slots(slots, "s", LIMITS)) == code


def test_publication_drift_and_findings() -> None:
    drift = publication_drift({"public.a", "public.b"}, {"public.a", "public.x"}, all_tables=False)
    assert drift == {"missing": ["public.b"], "extra": ["public.x"]}
    ops = {"insert": True, "update": True, "delete": True}
    assert exit_code(check_publication("p", True, drift, ops)) == 4
    assert exit_code(check_publication("p", True, {"missing": [], "extra": ["public.x"]}, ops)) == 1
    assert exit_code(check_publication("p", True, {"missing": [], "extra": []}, ops)) == 0
    assert (
        exit_code(check_publication("p", True, {"missing": [], "extra": []}, {**ops, "delete": False})) == 4
    )
    assert exit_code(check_publication("p", False, {"missing": [], "extra": []}, {})) == 4
    assert publication_drift({"public.a"}, {"public.a", "public.z"}, all_tables=True)["extra"] == []


def test_heartbeat_findings() -> None:
    assert check_heartbeat(False, None, LIMITS) == []
    assert exit_code(check_heartbeat(True, 5.0, LIMITS)) == 0
    assert exit_code(check_heartbeat(True, 600.0, LIMITS)) == 1
    assert exit_code(check_heartbeat(True, None, LIMITS)) == 1


def test_connect_client_retries_rebalance_409_then_succeeds() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) < 3:
            return httpx.Response(409, json={"error_code": 409, "message": "rebalance in progress"})
        return httpx.Response(200, json={"name": "c", "connector.class": "x"})

    settings = ConnectSettings(url="http://connect.test")
    client = ConnectClient(settings, transport=httpx.MockTransport(handler), backoff_max_s=0.01)
    assert client.get_config("c") == {"name": "c", "connector.class": "x"}
    assert calls == ["/connectors/c/config"] * 3


def test_connect_client_gives_up_on_persistent_409_and_maps_404() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/status"):
            return httpx.Response(404, json={"message": "Connector c not found"})
        return httpx.Response(409, json={"message": "rebalance in progress"})

    settings = ConnectSettings(url="http://connect.test")
    client = ConnectClient(
        settings, transport=httpx.MockTransport(handler), rebalance_timeout_s=0.05, backoff_max_s=0.01
    )
    with pytest.raises(ConnectError) as info:
        client.put_config("c", {"name": "c"})
    assert info.value.status_code == 409
    with pytest.raises(ConnectorNotFoundError, match="not registered") as missing:
        client.status("c")
    assert missing.value.exit_code == 4
