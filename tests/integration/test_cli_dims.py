"""`orion-etl dims sync|check` through the real console script: JSON, exit codes, the lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg
import pytest

from orion_etl.adapters.postgres import advisory_lock, connect
from orion_etl.config.models import OrionSettings
from tests.integration.dims_helpers import add_client, ts, update_client

pytestmark = pytest.mark.integration


def run_cli(
    settings: OrionSettings, *args: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {"ORION_ETL_LOGGING__FORMAT": "plain", **(extra_env or {})}
    for section, pg in (("SOURCE", settings.source), ("WAREHOUSE", settings.warehouse)):
        env[f"ORION_ETL_{section}__PORT"] = str(pg.port)
        env[f"ORION_ETL_{section}__DBNAME"] = pg.dbname
        env[f"ORION_ETL_{section}__PASSWORD"] = pg.password.get_secret_value()
    return subprocess.run(
        [sys.executable, "-m", "orion_etl.cli.app", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def dims(
    stack_settings: OrionSettings, warehouse: psycopg.Connection, source: psycopg.Connection
) -> OrionSettings:
    warehouse.execute("TRUNCATE etl_dim_sync_state")
    return stack_settings


def test_sync_json_summary_job_run_and_check(dims: OrionSettings, source, warehouse) -> None:
    cid = add_client(source, at=ts(1))
    first = run_cli(dims, "dims", "sync", "--format", "json")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    client = next(d for d in summary["dimensions"] if d["dimension"] == "client")
    assert client["inserted"] == 1 and summary["mode"] == "incremental"
    update_client(source, cid, ts(2), segment="TIER_1")
    second = json.loads(run_cli(dims, "dims", "sync", "-D", "client", "--format", "json").stdout)
    assert second["dimensions"][0]["scd2"] == 1
    status, metadata = warehouse.execute(
        "SELECT status, metadata FROM etl_job_runs WHERE id = %s", (second["run_id"],)
    ).fetchone()
    assert status == "COMPLETED" and metadata["client"]["scd2"] == 1
    assert warehouse.execute("SELECT job_type FROM etl_job_runs LIMIT 1").fetchone() == ("DIMENSION_SYNC",)

    ok = run_cli(dims, "dims", "check", "--format", "json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert json.loads(ok.stdout)["ok"] is True
    # corrupt the history: the old version now overlaps the new one
    warehouse.execute(
        "UPDATE dim_clients SET valid_to = valid_to + interval '1 day' WHERE client_id = %s AND version = 1",
        (cid,),
    )
    bad = run_cli(dims, "dims", "check", "--format", "json")
    assert bad.returncode == 4
    failed = {c["check"]: c for c in json.loads(bad.stdout)["checks"] if c["violations"]}
    assert set(failed) == {"overlapping_intervals"} and failed["overlapping_intervals"]["samples"] == [
        str(cid)
    ]


def test_overlapping_run_gets_lock_held_exit_3(dims: OrionSettings, source) -> None:
    add_client(source)
    with (
        connect(dims.warehouse, autocommit=True) as other,
        advisory_lock(other, "orion-etl:dims-sync:client"),
    ):
        result = run_cli(dims, "dims", "sync", "--dimension", "all")
    assert result.returncode == 3
    assert "in progress" in result.stderr and "Traceback" not in result.stderr


def test_bad_config_is_exit_2(dims: OrionSettings) -> None:
    result = run_cli(dims, "dims", "sync", extra_env={"ORION_ETL_DIMS__CLIENT__SCD2": '["no_such_column"]'})
    assert result.returncode == 2
    assert "no_such_column" in result.stderr
