"""`orion-etl dq ...` through the console script: exit codes, JSON output, hostile arguments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal

import psycopg
import pytest

from orion_etl.config.models import OrionSettings
from tests.integration.dq_builders import add_trade, clean_world

pytestmark = pytest.mark.integration


def run_cli(settings: OrionSettings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    wh = settings.warehouse
    base = {
        "ORION_ETL_WAREHOUSE__PORT": str(wh.port),
        "ORION_ETL_WAREHOUSE__DBNAME": wh.dbname,
        "ORION_ETL_WAREHOUSE__PASSWORD": wh.password.get_secret_value(),
        "ORION_ETL_LOGGING__FORMAT": "plain",
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "orion_etl.cli.app", *args],
        env={**os.environ, **base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_audit_exit_codes(stack_settings: OrionSettings, warehouse: psycopg.Connection) -> None:
    client, instrument = clean_world(warehouse)
    ok = run_cli(stack_settings, "dq", "audit")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "0 failed" in ok.stdout

    add_trade(warehouse, client, instrument, fees=Decimal("-2"))
    warned = run_cli(stack_settings, "dq", "audit", "--format", "json")
    assert warned.returncode == 1, warned.stderr
    report = json.loads(warned.stdout)
    assert report["exit_code"] == 1
    assert [r["key"] for r in report["results"] if r["outcome"] == "fail"] == [
        "fact_trades.fees_non_negative"
    ]

    add_trade(warehouse, client, instrument, quantity="-1")
    failed = run_cli(stack_settings, "dq", "audit", "--table", "fact_trades")
    assert failed.returncode == 4, failed.stderr  # checks failed, not bad usage (2)
    assert "positive_quantity" in failed.stdout

    broken_rule = json.dumps(
        [
            {
                "table": "fact_trades",
                "name": "broken",
                "kind": "custom_sql",
                "sql": "t.nope > 0",
                "message": "m",
            }
        ]
    )
    broken = run_cli(stack_settings, "dq", "audit", "--table", "fact_trades", ORION_ETL_DQ__RULES=broken_rule)
    assert broken.returncode == 3, broken.stderr

    only_warning = run_cli(
        stack_settings, "dq", "audit", "--rule", "fees_non_negative", "--from", "2000-01-01"
    )
    assert only_warning.returncode == 1, only_warning.stderr

    issues = run_cli(stack_settings, "dq", "issues", "--table", "fact_trades", "--format", "json")
    assert issues.returncode == 0, issues.stderr
    recorded = json.loads(issues.stdout)["items"]
    assert {"fees_non_negative", "positive_quantity"} <= {i["rule_name"] for i in recorded}
    assert all(i["sample_rows"] for i in recorded)
    table_view = run_cli(stack_settings, "dq", "issues", "--severity", "error")
    assert table_view.returncode == 0 and "[positive_quantity]" in table_view.stdout


def test_hostile_table_and_rule_names_are_unknown_never_executed(
    stack_settings: OrionSettings, warehouse: psycopg.Connection
) -> None:
    clean_world(warehouse)
    for args in (
        ["--table", "fact_trades; DROP TABLE fact_trades"],
        ["--table", 'fact_trades" WHERE 1=1; --'],
        ["--rule", "x'; DROP TABLE fact_trades; --"],
        ["--rule", "fact_trades.tenant_required OR 1=1"],
    ):
        result = run_cli(stack_settings, "dq", "audit", *args)
        assert result.returncode == 2, result.stderr
        assert "unknown" in result.stderr and "Traceback" not in result.stderr
    assert warehouse.execute("SELECT count(*) FROM fact_trades").fetchone() == (1,)
    assert warehouse.execute("SELECT count(*) FROM etl_job_runs").fetchone() == (0,)


def test_webhook_failure_keeps_exit_code_and_secret(
    stack_settings: OrionSettings, warehouse: psycopg.Connection
) -> None:
    client, instrument = clean_world(warehouse)
    add_trade(warehouse, client, instrument, quantity="0")
    secret = "http://127.0.0.1:9/services/T0/B0/very-secret-hook-token"
    result = run_cli(stack_settings, "dq", "audit", ORION_ETL_DQ__ALERTS__WEBHOOK_URL=secret)
    assert result.returncode == 4, result.stderr
    assert "undelivered 1" in result.stdout
    assert "very-secret-hook-token" not in result.stdout + result.stderr
    shown = run_cli(stack_settings, "config", "show", ORION_ETL_DQ__ALERTS__WEBHOOK_URL=secret)
    assert "very-secret-hook-token" not in shown.stdout + shown.stderr


def test_rules_lists_defaults_as_json(stack_settings: OrionSettings) -> None:
    result = run_cli(stack_settings, "dq", "rules", "--format", "json")
    assert result.returncode == 0, result.stderr
    rules = json.loads(result.stdout)["items"]
    tenant = next(r for r in rules if r["table"] == "fact_trades" and r["name"] == "tenant_required")
    assert tenant["message"] == "tenant_id is required" and tenant["severity"] == "ERROR"
    assert tenant["mode"] == "stream+audit"
    assert any(r["kind"] == "relationships" and r["mode"] == "audit" for r in rules)
