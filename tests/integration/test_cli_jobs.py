"""`orion-etl jobs list|show` over real recorded runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg
import pytest

from orion_etl.adapters.jobruns import record_job_run
from orion_etl.config.models import OrionSettings

pytestmark = pytest.mark.integration


def cli(settings: OrionSettings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "ORION_ETL_WAREHOUSE__PORT": str(settings.warehouse.port),
        "ORION_ETL_WAREHOUSE__DBNAME": settings.warehouse.dbname,
        "ORION_ETL_WAREHOUSE__PASSWORD": settings.warehouse.password.get_secret_value(),
    }
    return subprocess.run(
        [sys.executable, "-m", "orion_etl.cli.app", *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_list_filter_and_show(stack_settings: OrionSettings, warehouse: psycopg.Connection) -> None:
    with record_job_run(stack_settings.warehouse, "dims-sync", "DIMENSION_SYNC") as ok:
        ok.processed = 10
    with pytest.raises(RuntimeError), record_job_run(stack_settings.warehouse, "aggregate", "AGGREGATION"):
        raise RuntimeError("disk full")

    listed = cli(stack_settings, "jobs", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)["items"]
    assert [r["job_name"] for r in runs] == ["aggregate", "dims-sync"]

    failed_runs = cli(stack_settings, "jobs", "list", "--status", "failed", "--format", "json")
    failed = json.loads(failed_runs.stdout)["items"]
    assert [(r["job_name"], r["error_message"]) for r in failed] == [("aggregate", "RuntimeError: disk full")]

    shown = cli(stack_settings, "jobs", "show", str(ok.id)[:8], "--format", "json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["run"]["records_processed"] == 10

    missing = cli(stack_settings, "jobs", "show", "'; DROP TABLE etl_job_runs; --")
    assert missing.returncode == 2
    assert warehouse.execute("SELECT count(*) FROM etl_job_runs").fetchone() == (2,)
