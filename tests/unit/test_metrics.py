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
    assert [(s.labels["orion_job"], s.value) for s in records] == [("dims-sync", 42.0)]
    assert families["orion_etl_job_duration_seconds"].samples[0].value >= 2.5
    assert families["orion_etl_job_exit_code"].samples[0].value == 0


def test_cli_writes_the_textfile_with_the_exit_code(tmp_path: Path) -> None:
    import subprocess
    import sys

    ok = tmp_path / "ok.prom"
    bad_config = tmp_path / "bad.toml"
    bad_config.write_text("[warehouse]\nprot = 1\n")
    failed = tmp_path / "failed.prom"
    run = [sys.executable, "-m", "orion_etl.cli.app"]
    assert subprocess.run([*run, "--metrics-file", str(ok), "config", "check"], check=False).returncode == 0
    result = subprocess.run(
        [*run, "--config", str(bad_config), "--metrics-file", str(failed), "config", "check"],
        check=False, capture_output=True,
    )  # fmt: skip
    assert result.returncode == 2

    def exit_code(path: Path) -> tuple[str, float]:
        family = {f.name: f for f in text_string_to_metric_families(path.read_text())}[
            "orion_etl_job_exit_code"
        ]
        sample = family.samples[0]
        return sample.labels["orion_job"], sample.value

    assert exit_code(ok) == ("config-check", 0.0)
    assert exit_code(failed) == ("config-check", 2.0)
    assert "orion_etl_job_last_success_timestamp_seconds{" not in failed.read_text()
