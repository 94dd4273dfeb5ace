"""Textfile output for batch jobs is valid Prometheus exposition text."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from orion_etl.adapters.metrics import record_batch_job


def test_textfile_has_job_outcome(tmp_path: Path) -> None:
    target = tmp_path / "textfile" / "orion_etl_dims_sync.prom"
    record_batch_job(target, "dims-sync", started=time.time() - 2.5, exit_code=0, records=42)
    families = {f.name: f for f in text_string_to_metric_families(target.read_text())}
    records = families["orion_etl_job_records_processed"].samples
    assert [(s.labels["job"], s.value) for s in records] == [("dims-sync", 42.0)]
    assert families["orion_etl_job_duration_seconds"].samples[0].value >= 2.5
    assert families["orion_etl_job_exit_code"].samples[0].value == 0
