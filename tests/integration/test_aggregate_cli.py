"""`orion-etl aggregate` as cron runs it: exit codes, one-line errors, JSON summary, lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from orion_etl.adapters.postgres import advisory_lock, connect
from orion_etl.config.models import OrionSettings
from orion_etl.jobs.aggregate import LOCK_NAME
from tests.integration.aggfacts import DAY, at, insert, trade

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def _cli(settings: OrionSettings, *args: str) -> subprocess.CompletedProcess[str]:
    wh = settings.warehouse
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ORION_ETL_WAREHOUSE__PORT": str(wh.port),
        "ORION_ETL_WAREHOUSE__DBNAME": wh.dbname,
        "ORION_ETL_WAREHOUSE__PASSWORD": wh.password.get_secret_value(),
        "ORION_ETL_LOGGING__FORMAT": "plain",
        "ORION_ETL_LOGGING__LEVEL": "WARNING",
    }
    return subprocess.run(
        [sys.executable, "-m", "orion_etl.cli.app", "aggregate", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--date", "2026-02-30"],
        ["--date", "yesterday"],
        ["--date", "2026-01-01'; DROP TABLE fact_trades; --"],
        ["--period", "fortnightly"],
        ["--from", "2026-03-05", "--to", "2026-03-01"],
        ["--date", "2026-03-01", "--from", "2026-03-01"],
        ["validate", "--date", "2026-13-01"],
        ["--intraday", "--date", "2026-03-01"],
    ],
)
def test_bad_usage_is_one_line_and_exit_2(
    stack_settings: OrionSettings, warehouse: psycopg.Connection, args: list[str]
) -> None:
    result = _cli(stack_settings, *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.stderr
    assert warehouse.execute("SELECT count(*) FROM etl_job_runs").fetchone() == (0,)
    assert warehouse.execute("SELECT to_regclass('fact_trades') IS NOT NULL").fetchone() == (True,)


def test_json_summary_then_validate(stack_settings: OrionSettings, warehouse: psycopg.Connection) -> None:
    insert(warehouse, "fact_trades", [trade(at(DAY, 9), qty="2", price="3")])
    result = _cli(stack_settings, "--period", "weekly", "--date", DAY.isoformat(), "--format", "json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["ok"] is True and summary["buckets"] == ["weekly 2026-03-02"]
    assert summary["rows"]["agg_daily_trade_summary"] == 5
    backfill = _cli(stack_settings, "--from", "2026-03-02", "--to", "2026-03-08", "--format", "json")
    assert backfill.returncode == 0 and len(json.loads(backfill.stdout)["buckets"]) == 7
    ok = _cli(stack_settings, "validate", "--date", DAY.isoformat())
    assert ok.returncode == 0 and "all consistency checks passed" in ok.stdout
    warehouse.execute("UPDATE agg_daily_trade_summary SET total_volume = -1 WHERE period_type = 'DAILY'")
    bad = _cli(stack_settings, "validate", "--date", DAY.isoformat(), "--format", "json")
    assert bad.returncode == 4  # checks failed (2 is bad usage)
    assert {i["rule"] for i in json.loads(bad.stdout)["issues"]} >= {"no_negative_volume"}
    runs = warehouse.execute(
        "SELECT job_name, status, outcome, exit_code FROM etl_job_runs ORDER BY started_at"
    ).fetchall()
    assert [r[1:] for r in runs[:3]] == [("COMPLETED", "SUCCESS", 0)] * 3
    # the validation that found inconsistencies exited 4: the ledger says so
    assert runs[-1] == ("aggregate-validate", "FAILED", "FAILED", 4)


def test_overlapping_run_is_refused_with_exit_3(
    stack_settings: OrionSettings, warehouse: psycopg.Connection
) -> None:
    with connect(stack_settings.warehouse, autocommit=True) as other, advisory_lock(other, LOCK_NAME):
        result = _cli(stack_settings, "--intraday")
    assert result.returncode == 3
    assert "in progress" in result.stderr
