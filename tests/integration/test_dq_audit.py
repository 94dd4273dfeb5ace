"""`dq audit` against the real warehouse: set-based rules, issues with samples, alert state."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest
from pydantic import SecretStr

from orion_etl.adapters.alerts import notifier_from_settings
from orion_etl.adapters.dq_sql import Window
from orion_etl.config.dq import build_catalog
from orion_etl.config.models import AlertSettings, DqSettings, OrionSettings
from orion_etl.core.dq_results import Outcome
from orion_etl.errors import exit_code_for
from orion_etl.jobs.audit import AuditReport, run_audit
from tests.integration.dq_builders import add_client, add_instrument, add_trade, clean_world

pytestmark = pytest.mark.integration


class Hook:
    """A local Slack-like webhook that records what it receives."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.status = 200
        self.token = f"secret-token-{uuid.uuid4().hex}"
        self.url = ""

    def take(self) -> list[dict[str, Any]]:
        out, self.bodies = self.bodies, []
        return out


@pytest.fixture
def webhook() -> Iterator[Hook]:
    hook = Hook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hook.bodies.append(json.loads(body))
            self.send_response(hook.status)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hook.url = f"http://127.0.0.1:{server.server_port}/services/{hook.token}"
    yield hook
    server.shutdown()
    server.server_close()


def audit(settings: OrionSettings, dq: DqSettings | None = None, **kw: Any) -> AuditReport:
    dq = dq or DqSettings()
    settings = settings.model_copy(update={"dq": dq})
    notifier = notifier_from_settings(dq.alerts, source=settings.warehouse.describe())
    try:
        return run_audit(settings, build_catalog(dq), notifier=notifier, **kw)
    finally:
        notifier.close()


def outcomes(report: AuditReport) -> dict[str, Outcome]:
    return {r.rule.key: r.outcome for r in report.results}


def failing(report: AuditReport) -> set[str]:
    return {r.rule.key for r in report.results if r.outcome is Outcome.FAIL}


def test_clean_warehouse_passes_every_default_rule(
    stack_settings: OrionSettings, warehouse: psycopg.Connection
) -> None:
    clean_world(warehouse)
    report = audit(stack_settings)
    assert set(outcomes(report).values()) == {Outcome.PASS}, failing(report)
    assert exit_code_for(report) == 0 and report.issues_recorded == 0
    row = warehouse.execute(
        "SELECT job_type, status, records_processed FROM etl_job_runs WHERE id = %s", (report.run_id,)
    ).fetchone()
    assert row == ("DQ_AUDIT", "COMPLETED", len(report.results))


def test_orphan_fact_rows_are_found_by_a_relationships_rule(
    stack_settings: OrionSettings, warehouse: psycopg.Connection
) -> None:
    client, instrument = clean_world(warehouse)
    orphan = add_trade(warehouse, uuid.uuid4(), instrument)
    by_key = DqSettings(
        rules=[
            {
                "table": "fact_trades", "name": "client_key_exists", "kind": "relationships",
                "column": "client_key", "to_table": "dim_clients", "to_column": "client_key",
                "message": "client_key has no dim_clients row",
            }
        ]
    )  # fmt: skip
    report = audit(stack_settings, by_key, tables=["fact_trades"])
    assert failing(report) == {"fact_trades.client_exists"}
    assert exit_code_for(report) == 4
    result = next(r for r in report.results if r.rule.name == "client_exists")
    assert result.failed == 1 and result.checked == 2
    assert [s["trade_id"] for s in result.samples] == [str(orphan)]
    issue = warehouse.execute(
        "SELECT i.rule_name, i.severity, i.error_message, i.failed_count, i.checked_count, i.record_id, "
        "i.sample_rows, i.rule_kind, j.job_type FROM etl_data_quality_issues i "
        "JOIN etl_job_runs j ON j.id = i.job_run_id WHERE i.job_run_id = %s",
        (report.run_id,),
    ).fetchall()
    assert len(issue) == 1
    name, severity, message, failed, checked, record_id, samples, kind, job_type = issue[0]
    assert (name, severity, failed, checked, kind, job_type) == (
        "client_exists", "ERROR", 1, 2, "relationships", "DQ_AUDIT",
    )  # fmt: skip
    assert message == "[client_exists] client_id has no dim_clients member"
    assert record_id == str(orphan) and samples[0]["client_id"] != str(client)


def test_unique_freshness_and_custom_sql(
    stack_settings: OrionSettings, warehouse: psycopg.Connection
) -> None:
    client = add_client(warehouse)

    instrument = add_instrument(warehouse)
    old = datetime.now(UTC) - timedelta(days=3)
    add_trade(warehouse, client, instrument, trade_date=old, trade_reference="DUP-1")
    add_trade(warehouse, client, instrument, trade_date=old, trade_reference="DUP-1")
    add_trade(warehouse, client, instrument, trade_date=old, notional_value=Decimal("999"))
    dq = DqSettings(
        rules=[
            {
                "table": "fact_trades", "name": "notional_matches", "kind": "custom_sql",
                "sql": "t.notional_value <> t.quantity * t.price", "message": "notional differs",
            }
        ]
    )  # fmt: skip
    report = audit(stack_settings, dq, tables=["fact_trades"])
    results = {r.rule.name: r for r in report.results}
    assert failing(report) == {
        "fact_trades.unique_trade_reference",
        "fact_trades.trades_fresh",
        "fact_trades.notional_matches",
    }
    assert results["unique_trade_reference"].failed == 2
    assert results["unique_trade_reference"].samples[0]["trade_reference"] == "DUP-1"
    assert results["unique_trade_reference"].samples[0]["n"] == 2
    assert results["trades_fresh"].samples[0]["age_s"] > 2 * 86400
    assert results["notional_matches"].failed == 1
    assert exit_code_for(report) == 4


def test_a_broken_rule_does_not_hide_the_others(
    stack_settings: OrionSettings, warehouse: psycopg.Connection
) -> None:
    client, instrument = clean_world(warehouse)
    add_trade(warehouse, client, instrument, fees=Decimal("-1"))
    dq = DqSettings(
        rules=[
            {
                "table": "fact_trades",
                "name": "broken",
                "kind": "custom_sql",
                "sql": "t.no_such > 1",
                "message": "m",
            },
            {"table": "fact_trades", "name": "ghost", "kind": "not_null", "column": "ghost", "message": "m"},
        ]
    )
    report = audit(stack_settings, dq, tables=["fact_trades"])
    got = outcomes(report)
    assert got["fact_trades.broken"] is Outcome.ERROR
    assert got["fact_trades.ghost"] is Outcome.ERROR
    assert got["fact_trades.fees_non_negative"] is Outcome.FAIL
    assert got["fact_trades.client_exists"] is Outcome.PASS
    assert exit_code_for(report) == 3
    errors = {r.rule.name: r.error for r in report.results if r.error}
    assert "no_such" in (errors["broken"] or "")
    assert errors["ghost"] == "column ghost does not exist in fact_trades"


def test_time_window_limits_the_scan(stack_settings: OrionSettings, warehouse: psycopg.Connection) -> None:
    client, instrument = clean_world(warehouse)
    add_trade(warehouse, client, instrument, quantity="-1", trade_date=datetime(2024, 1, 10, tzinfo=UTC))
    inside = Window(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC))
    outside = Window(datetime(2024, 2, 1, tzinfo=UTC), None)
    rules = ["positive_quantity"]
    assert failing(audit(stack_settings, tables=["fact_trades"], rules=rules, window=inside)) == {
        "fact_trades.positive_quantity"
    }
    assert failing(audit(stack_settings, tables=["fact_trades"], rules=rules, window=outside)) == set()


def test_one_alert_per_new_failure_none_on_rerun_and_a_recovery(
    stack_settings: OrionSettings,
    warehouse: psycopg.Connection,
    webhook: Hook,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, instrument = clean_world(warehouse)
    missing_client = uuid.uuid4()
    add_trade(warehouse, missing_client, instrument)
    add_trade(warehouse, client, instrument, quantity="-5")
    dq = DqSettings(alerts=AlertSettings(webhook_url=SecretStr(webhook.url), timeout_s=5))
    run = lambda: audit(stack_settings, dq, tables=["fact_trades"])  # noqa: E731
    expected = {"fact_trades.client_exists", "fact_trades.positive_quantity"}

    webhook.status = 500  # delivery fails: the audit result and its records are unaffected
    down = run()
    assert exit_code_for(down) == 4 and down.issues_recorded == 2
    assert [d.delivered for d in down.deliveries] == [False, False]
    assert len(webhook.take()) == 2

    webhook.status = 200  # undelivered alerts are retried by the next run
    first = run()
    bodies = webhook.take()
    assert len(bodies) == 2
    assert {key for body in bodies for key in expected if key in body["text"]} == expected
    assert all(set(body) == {"text", "blocks"} and body["blocks"] for body in bodies)

    again = run()  # identical re-run: failures already open, nothing new to say
    assert webhook.take() == []
    assert exit_code_for(again) == 4 and again.issues_recorded == 2 and again.deliveries == []

    add_client(warehouse, missing_client)  # fix the orphan (and key it, as the loader would)
    warehouse.execute(
        "UPDATE fact_trades f SET client_key = d.client_key FROM dim_clients d "
        "WHERE d.client_id = f.client_id AND f.client_key IS NULL"
    )
    fixed = run()
    bodies = webhook.take()
    assert len(bodies) == 1
    assert "recovered" in bodies[0]["text"] and "fact_trades.client_exists" in bodies[0]["text"]
    assert failing(fixed) == {"fact_trades.positive_quantity"}
    assert run().deliveries == [] and webhook.take() == []

    state = dict(warehouse.execute("SELECT rule_key, status FROM etl_dq_alert_state").fetchall())
    assert state == {"fact_trades.client_exists": "RESOLVED", "fact_trades.positive_quantity": "OPEN"}
    assert webhook.token not in caplog.text
    assert first.run_id != again.run_id
