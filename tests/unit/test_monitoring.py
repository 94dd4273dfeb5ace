"""The shipped Prometheus rules and Grafana dashboard, checked with promtool and against the
metric families the code exports; batch-job textfiles that node_exporter can read side by side."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from orion_etl.adapters import metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "config" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "config" / "prometheus" / "alerts.test.yml"
DASHBOARD = ROOT / "config" / "grafana" / "orion-etl.json"
EXPORTED = {*metrics.STREAM_FAMILIES, *metrics.JOB_FAMILIES, *metrics.EXTRA_FAMILIES}
_NAME = re.compile(r"\borion_etl_[a-z0-9_]+")


def promtool() -> str:
    found = shutil.which("promtool") or str(ROOT / ".venv" / "bin" / "promtool")
    if not Path(found).exists():
        pytest.fail("promtool is missing: run scripts/promtool.sh (scripts/bootstrap.sh does)")
    return found


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, check=False, timeout=120)


def _family(name: str) -> str:
    """The exported family a series name in a query belongs to (histogram series suffixes)."""
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name.removesuffix(suffix) in EXPORTED:
            return name.removesuffix(suffix)
    return name


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def _rule_exprs() -> list[str]:
    """The rules file's text without comments: every query in it (no YAML parser needed)."""
    return [line.split("#", 1)[0] for line in RULES.read_text().splitlines()]


def test_promtool_checks_the_rules() -> None:
    result = _run("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 10 rules found" in result.stdout


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    result = _run("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    shipped = set(re.findall(r"- alert: (\w+)", RULES.read_text()))
    assert len(shipped) == 10 and tested == shipped  # every alert has unit-test series


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses every panel query (as recording rules in a scratch rules file)."""
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"orion_etl_dashboard:query{i}", "expr": expr} for i, expr in enumerate(_dashboard_exprs())
    ]}]}  # fmt: skip
    scratch = tmp_path / "dashboard-rules.yml"
    scratch.write_text(json.dumps(rules))  # JSON is YAML
    result = _run("check", "rules", str(scratch))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("source", ["dashboard", "rules"])
def test_queries_use_only_exported_families(source: str) -> None:
    exprs = _dashboard_exprs() if source == "dashboard" else _rule_exprs()
    used = {_family(n) for e in exprs for n in _NAME.findall(e)}
    assert used, "no orion_etl metric in the queries"
    assert used <= EXPORTED, f"not exported by orion-etl: {sorted(used - EXPORTED)}"
    if source == "dashboard":  # the dashboard shows every family
        assert used == EXPORTED, f"not on the dashboard: {sorted(EXPORTED - used)}"


def test_every_family_is_documented() -> None:
    docs = (ROOT / "docs" / "operations.md").read_text()
    missing = [name for name in sorted(EXPORTED) if name not in docs]
    assert not missing, f"families missing from docs/operations.md: {missing}"


def test_no_family_carries_a_job_label() -> None:
    queries = " ".join(_dashboard_exprs() + _rule_exprs())
    assert "exported_job" not in queries
    stream = metrics.STREAM_REGISTRY.collect()
    assert all("job" not in s.labels for family in stream for s in family.samples)


def _write_two_jobs(directory: Path) -> tuple[Path, Path]:
    metrics.job_samples.clear()
    audit = directory / "orion-etl-dq-audit.prom"
    metrics.add_job_samples([metrics.Sample("orion_etl_dq_audit_rules", {"outcome": "fail"}, 2.0)])
    metrics.record_batch_job(audit, "dq-audit", started=time.time() - 1, exit_code=4, records=12, failed=2)
    metrics.job_samples.clear()
    cdc = directory / "orion-etl-cdc-status.prom"
    metrics.add_job_samples(
        [metrics.Sample("orion_etl_replication_slot_retained_wal_bytes", {"slot": "orion_cdc"}, 4096.0)]
    )
    metrics.record_batch_job(cdc, "cdc-status", started=time.time() - 1, exit_code=0, records=0)
    metrics.job_samples.clear()
    return audit, cdc


def test_two_textfiles_hold_no_duplicate_series(tmp_path: Path) -> None:
    """What node_exporter's textfile collector does with a directory: merge families, reject a
    series seen twice or a family whose help/type differ between files."""
    audit, cdc = _write_two_jobs(tmp_path)
    families: dict[str, tuple[str, str]] = {}
    series: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
    for path in (audit, cdc):
        result = subprocess.run(
            [promtool(), "check", "metrics"],
            input=path.read_text(),
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        for family in text_string_to_metric_families(path.read_text()):
            assert families.setdefault(family.name, (family.documentation, family.type)) == (
                family.documentation,
                family.type,
            )
            for s in family.samples:
                series[(s.name, tuple(sorted(s.labels.items())))] += 1
                assert "job" not in s.labels and "orion_job" in s.labels
    assert [k for k, n in series.items() if n > 1] == []
    assert not any(name.startswith("orion_etl_stream") for name in families)  # the loader's stay out
    text = audit.read_text()
    assert 'orion_etl_job_records_processed{orion_job="dq-audit"} 12.0' in text
    assert 'orion_etl_dq_audit_rules{orion_job="dq-audit",outcome="fail"} 2.0' in text
    assert "orion_etl_replication" not in text


def test_a_failed_run_keeps_the_last_success_time(tmp_path: Path) -> None:
    target = tmp_path / "dims.prom"
    metrics.record_batch_job(target, "dims-sync", started=time.time(), exit_code=0, records=5)
    ok = {f.name: f.samples[0].value for f in text_string_to_metric_families(target.read_text())}
    time.sleep(0.01)
    metrics.record_batch_job(target, "dims-sync", started=time.time(), exit_code=3, records=0)
    failed = {f.name: f.samples[0].value for f in text_string_to_metric_families(target.read_text())}
    name = "orion_etl_job_last_success_timestamp_seconds"
    assert failed[name] == ok[name]
    assert failed["orion_etl_job_last_run_timestamp_seconds"] > ok["orion_etl_job_last_run_timestamp_seconds"]
    assert failed["orion_etl_job_exit_code"] == 3


@pytest.mark.parametrize(
    ("addr", "expected"),
    [("0.0.0.0:9464", ("0.0.0.0", 9464)), ("[::]:9464", ("::", 9464)), (":1", ("0.0.0.0", 1)),
     ("etl1.example:80", ("etl1.example", 80))],
)  # fmt: skip
def test_metrics_addr(addr: str, expected: tuple[str, int]) -> None:
    assert metrics.parse_addr(addr) == expected


@pytest.mark.parametrize("addr", ["9464", "host:", "host:0", "host:70000", "host:x"])
def test_bad_metrics_addr(addr: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        metrics.parse_addr(addr)


def test_cdc_status_exports_the_slot_families(tmp_path: Path) -> None:
    from orion_etl.jobs.cdc import _export_metrics

    metrics.job_samples.clear()
    slots = [
        {"slot_name": "orion_cdc", "active": True, "retained_wal_bytes": 8192, "flush_lag_bytes": 1024},
        {"slot_name": "old", "active": False, "retained_wal_bytes": None, "flush_lag_bytes": None},
    ]
    _export_metrics(slots, 12.5)
    target = tmp_path / "cdc.prom"
    metrics.record_batch_job(target, "cdc-status", started=time.time(), exit_code=1, records=0)
    metrics.job_samples.clear()
    samples = {
        (s.name, s.labels.get("slot")): s.value
        for f in text_string_to_metric_families(target.read_text())
        for s in f.samples
    }
    assert samples[("orion_etl_replication_slot_retained_wal_bytes", "orion_cdc")] == 8192
    assert samples[("orion_etl_replication_slot_flush_lag_bytes", "orion_cdc")] == 1024
    assert samples[("orion_etl_replication_slot_active", "old")] == 0
    assert ("orion_etl_replication_slot_retained_wal_bytes", "old") not in samples
    assert samples[("orion_etl_replication_heartbeat_age_seconds", None)] == 12.5
