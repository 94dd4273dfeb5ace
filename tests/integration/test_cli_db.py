"""`orion-etl db migrate|status` through the real console script."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from psycopg import sql

from orion_etl.adapters.postgres import connect
from orion_etl.config.models import OrionSettings

pytestmark = pytest.mark.integration


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orion_etl.cli.app", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_db_migrate_twice_changes_nothing_the_second_time(stack_settings: OrionSettings) -> None:
    dbname = f"{stack_settings.warehouse.dbname}_cli"
    admin = stack_settings.warehouse.model_copy(update={"dbname": "postgres"})
    with connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    env = {
        "ORION_ETL_WAREHOUSE__PORT": str(stack_settings.warehouse.port),
        "ORION_ETL_WAREHOUSE__DBNAME": dbname,
        "ORION_ETL_WAREHOUSE__PASSWORD": stack_settings.warehouse.password.get_secret_value(),
        "ORION_ETL_LOGGING__FORMAT": "plain",
    }
    try:
        pending = run_cli("db", "status", env=env)
        assert pending.returncode == 1, pending.stderr
        first = run_cli("db", "migrate", env=env)
        assert first.returncode == 0, first.stderr
        assert "applied V001__control_tables.sql" in first.stdout
        second = run_cli("db", "migrate", env=env)
        assert second.returncode == 0, second.stderr
        assert "up to date" in second.stdout and "applied" not in second.stdout
        status = run_cli("db", "status", "--format", "json", env=env)
        assert status.returncode == 0
        assert '"pending"' not in status.stdout
        # the password never shows up in any output
        secret = env["ORION_ETL_WAREHOUSE__PASSWORD"]
        for out in (first, second, status):
            assert secret not in out.stdout + out.stderr
    finally:
        with connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


def test_unreachable_database_is_one_line_exit_3() -> None:
    result = run_cli(
        "db",
        "migrate",
        env={"ORION_ETL_WAREHOUSE__PORT": "1", "ORION_ETL_WAREHOUSE__PASSWORD": "hunter2-secret"},
    )
    assert result.returncode == 3
    assert "cannot connect to PostgreSQL" in result.stderr
    assert "Traceback" not in result.stderr
    assert "hunter2-secret" not in result.stderr
