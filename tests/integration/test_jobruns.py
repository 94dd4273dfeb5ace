"""The job ledger records RUNNING, then COMPLETED or FAILED with counts and a redacted error."""

from __future__ import annotations

import psycopg
import pytest

from orion_etl.adapters.jobruns import record_job_run
from orion_etl.config.models import OrionSettings
from orion_etl.errors import OrionError

pytestmark = pytest.mark.integration


def test_completed_and_failed_runs(stack_settings: OrionSettings, warehouse: psycopg.Connection) -> None:
    with record_job_run(stack_settings.warehouse, "unit-of-work", "TEST", {"k": 1}) as run:
        status = warehouse.execute("SELECT status FROM etl_job_runs WHERE id = %s", (run.id,)).fetchone()
        assert status == ("RUNNING",)
        run.processed = 7
        run.metadata["extra"] = "x"
    row = warehouse.execute(
        "SELECT status, records_processed, metadata, completed_at IS NOT NULL "
        "FROM etl_job_runs WHERE id = %s",
        (run.id,),
    ).fetchone()
    assert row == ("COMPLETED", 7, {"k": 1, "extra": "x"}, True)

    with pytest.raises(OrionError), record_job_run(stack_settings.warehouse, "boom", "TEST") as failing:
        raise OrionError("it broke")
    row = warehouse.execute(
        "SELECT status, error_message FROM etl_job_runs WHERE id = %s", (failing.id,)
    ).fetchone()
    assert row == ("FAILED", "it broke")
