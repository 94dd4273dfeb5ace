"""The ledger tells failures, interruptions and dead processes apart; a slow webhook cannot hang
`dq audit` nor keep the next audit out (issues 14 and 19)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from orion_etl.adapters.jobruns import record_job_run
from orion_etl.config.models import OrionSettings
from orion_etl.errors import OrionError, UsageError, Verdict, exit_code_for
from tests.integration.dq_builders import add_trade, clean_world
from tests.integration.test_cli_dq import run_cli
from tests.slow_http import slow_http_server

pytestmark = pytest.mark.integration


def _env(settings: OrionSettings, **extra: str) -> dict[str, str]:
    wh = settings.warehouse
    return {
        **os.environ,
        "ORION_ETL_WAREHOUSE__PORT": str(wh.port),
        "ORION_ETL_WAREHOUSE__DBNAME": wh.dbname,
        "ORION_ETL_WAREHOUSE__PASSWORD": wh.password.get_secret_value(),
        "ORION_ETL_LOGGING__FORMAT": "plain",
        **extra,
    }


def _audit(settings: OrionSettings, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "orion_etl.cli.app", "dq", "audit", "--format", "json"],
        env=_env(settings, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _runs(settings: OrionSettings, *args: str) -> list[dict[str, object]]:
    result = run_cli(settings, "jobs", "list", "--format", "json", *args)
    assert result.returncode == 0, result.stderr
    return list(json.loads(result.stdout)["items"])


def test_slow_webhook_cannot_hang_the_audit(
    stack_settings: OrionSettings, warehouse: psycopg.Connection
) -> None:
    client, instrument = clean_world(warehouse)
    add_trade(warehouse, client, instrument, quantity="0")  # an error-severity failure: exit 4 + alert
    with slow_http_server() as server:
        started = time.monotonic()
        result = run_cli(
            stack_settings,
            "dq", "audit", "--format", "json",
            ORION_ETL_DQ__ALERTS__WEBHOOK_URL=server.url,
            ORION_ETL_DQ__ALERTS__TIMEOUT_S="2",
        )  # fmt: skip
        elapsed = time.monotonic() - started
    assert result.returncode == 4, result.stderr
    assert elapsed < 15, f"the audit took {elapsed:.1f} s"
    report = json.loads(result.stdout)
    assert [a["delivered"] for a in report["alerts"]] == [False]
    assert "no complete answer within 2.0 s" in report["alerts"][0]["errors"][0]
    # the ledger: exit 4 (checks failed) is FAILED, found by the runbook's query
    failed = _runs(stack_settings, "--status", "FAILED", "--since", "1h")
    assert [(r["job_name"], r["status"], r["outcome"], r["exit_code"]) for r in failed] == [
        ("dq-audit", "FAILED", "FAILED", 4)
    ]
    assert _runs(stack_settings, "--status", "COMPLETED") == []


def test_alert_phase_is_bounded_and_does_not_hold_the_audit_lock(
    stack_settings: OrionSettings, warehouse: psycopg.Connection
) -> None:
    client, instrument = clean_world(warehouse)
    add_trade(warehouse, client, instrument, quantity="0")
    with slow_http_server() as server:
        started = time.monotonic()
        first = _audit(
            stack_settings,
            ORION_ETL_DQ__ALERTS__WEBHOOK_URL=server.url,
            ORION_ETL_DQ__ALERTS__TIMEOUT_S="60",
            ORION_ETL_DQ__ALERTS__PHASE_TIMEOUT_S="5",
        )
        server.wait_for_request()  # the first audit is alerting now
        second = run_cli(
            stack_settings, "dq", "audit", "--format", "json", ORION_ETL_DQ__ALERTS__WEBHOOK_URL=server.url
        )
        assert second.returncode == 4, second.stderr  # not 3: the audit lock is free while alerting
        assert "another audit is delivering alerts" in json.loads(second.stdout)["alerts_skipped"]
        out, err = first.communicate(timeout=30)
        elapsed = time.monotonic() - started
    assert first.returncode == 4, err
    assert elapsed < 15, f"the alert phase was not bounded: {elapsed:.1f} s"
    error = json.loads(out)["alerts"][0]["errors"][0]
    found = re.search(r"no complete answer within (\d+\.\d) s", error)
    assert found and 4.0 <= float(found.group(1)) <= 5.0, error  # what was left of the 5 s budget


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_is_recorded_as_interrupted(
    stack_settings: OrionSettings, warehouse: psycopg.Connection, sig: signal.Signals, code: int
) -> None:
    client, instrument = clean_world(warehouse)
    add_trade(warehouse, client, instrument, quantity="0")
    with slow_http_server() as server:
        audit = _audit(
            stack_settings, ORION_ETL_DQ__ALERTS__WEBHOOK_URL=server.url, ORION_ETL_DQ__ALERTS__TIMEOUT_S="60"
        )
        server.wait_for_request()
        audit.send_signal(sig)
        audit.communicate(timeout=15)
    assert audit.returncode == code
    runs = _runs(stack_settings, "--status", "INTERRUPTED")
    assert [(r["status"], r["outcome"], r["exit_code"]) for r in runs] == [("FAILED", "INTERRUPTED", code)]
    assert runs[0]["error_message"] == f"stopped by {sig.name}"


def test_a_killed_process_is_shown_abandoned(
    stack_settings: OrionSettings, warehouse: psycopg.Connection
) -> None:
    client, instrument = clean_world(warehouse)
    add_trade(warehouse, client, instrument, quantity="0")
    with slow_http_server() as server:
        audit = _audit(
            stack_settings, ORION_ETL_DQ__ALERTS__WEBHOOK_URL=server.url, ORION_ETL_DQ__ALERTS__TIMEOUT_S="60"
        )
        server.wait_for_request()
        assert [r["status"] for r in _runs(stack_settings)] == ["RUNNING"]  # alive: not abandoned
        audit.kill()  # SIGKILL: no handler, no cleanup
        audit.communicate(timeout=15)
    deadline = time.monotonic() + 10  # the server notices the closed session at once, give it time
    while (runs := _runs(stack_settings))[0]["status"] == "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [(r["status"], r["outcome"], r["exit_code"]) for r in runs] == [("ABANDONED", None, None)]
    assert "ended without closing the run" in str(runs[0]["error_message"])
    assert [r["status"] for r in _runs(stack_settings, "--status", "ABANDONED")] == ["ABANDONED"]
    table = run_cli(stack_settings, "jobs", "list")
    assert "ABANDONED" in table.stdout


def test_exit_codes_map_to_outcomes(stack_settings: OrionSettings, warehouse: psycopg.Connection) -> None:
    for verdict in Verdict:
        with record_job_run(stack_settings.warehouse, f"job-{verdict}", "TEST") as run:
            run.exit_code = exit_code_for(verdict)
    with pytest.raises(OrionError), record_job_run(stack_settings.warehouse, "job-raised", "TEST") as run:
        raise OrionError("could not run")
    with pytest.raises(UsageError), record_job_run(stack_settings.warehouse, "job-usage", "TEST") as run:
        raise UsageError("bad option")
    rows = warehouse.execute("SELECT job_name, exit_code, status, outcome FROM etl_job_runs").fetchall()
    assert sorted(rows) == [
        ("job-error", 3, "FAILED", "ERROR"),  # could not run (a rule, a service)
        ("job-failed", 4, "FAILED", "FAILED"),  # ran, and its checks failed
        ("job-invalid", 2, "FAILED", "ERROR"),  # bad usage or configuration
        ("job-ok", 0, "COMPLETED", "SUCCESS"),
        ("job-raised", 3, "FAILED", "ERROR"),
        ("job-usage", 2, "FAILED", "ERROR"),
        ("job-warnings", 1, "COMPLETED", "WARNING"),
    ]
    assert [r["job_name"] for r in _runs(stack_settings, "--status", "WARNING")] == ["job-warnings"]
    assert {r["job_name"] for r in _runs(stack_settings, "--status", "ERROR")} == {
        "job-error", "job-invalid", "job-raised", "job-usage"
    }  # fmt: skip
    assert {r["job_name"] for r in _runs(stack_settings, "--status", "FAILED")} == {
        "job-error", "job-failed", "job-invalid", "job-raised", "job-usage"
    }  # fmt: skip


def test_metrics_file_carries_the_ledger_counts(
    stack_settings: OrionSettings, warehouse: psycopg.Connection, tmp_path: Path
) -> None:
    client, instrument = clean_world(warehouse)
    add_trade(warehouse, client, instrument, quantity="0")
    target = tmp_path / "orion-etl-dq-audit.prom"
    result = run_cli(
        stack_settings, "--metrics-file", str(target), "--metrics-job", "dq-audit", "dq", "audit"
    )
    assert result.returncode == 4, result.stderr
    row = warehouse.execute("SELECT records_processed, records_failed FROM etl_job_runs").fetchone()
    assert row is not None and row[0] > 0
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(target.read_text())
        for s in f.samples
    }
    job = (("orion_job", "dq-audit"),)
    assert samples[("orion_etl_job_records_processed", job)] == row[0]
    assert samples[("orion_etl_job_records_failed", job)] == row[1]
    assert samples[("orion_etl_job_exit_code", job)] == 4
    assert samples[("orion_etl_dq_audit_rules", (("orion_job", "dq-audit"), ("outcome", "fail")))] >= 1


def test_a_lost_ledger_session_is_restored_by_keep_alive(
    stack_settings: OrionSettings, warehouse: psycopg.Connection
) -> None:
    """A warehouse restart ends the run's session: readers see ABANDONED until keep_alive."""
    from orion_etl.adapters.jobruns import list_job_runs

    with record_job_run(stack_settings.warehouse, "long-job", "TEST") as run:
        run.keep_alive()  # a live session: nothing to do
        terminated = warehouse.execute(
            "SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN etl_job_runs r "
            "ON ((l.classid::bigint << 32) | l.objid::bigint) = r.lock_key "
            "WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND r.id = %s",
            (run.id,),
        ).fetchall()
        assert terminated == [(True,)]
        deadline = time.monotonic() + 10
        while list_job_runs(stack_settings.warehouse)[0].status != "ABANDONED":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        run.keep_alive()
        assert [r.status for r in list_job_runs(stack_settings.warehouse)] == ["RUNNING"]
        run.processed = 3
    row = warehouse.execute("SELECT status, outcome, records_processed FROM etl_job_runs").fetchone()
    assert row == ("COMPLETED", "SUCCESS", 3)
