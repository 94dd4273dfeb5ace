"""`orion-etl doctor`: check the live system a configuration points at, one finding per check.

Each check returns a `Check` (ok | warning | failure | error) and never raises: an unreachable
service is an `error` finding, and the checks that need it are reported as skipped.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orion_etl.config.models import OrionSettings
from orion_etl.errors import ExitCode, OrionError, Verdict
from orion_etl.jobs.config_check import check_config

# A failure is a check that ran and failed (exit 4, configuration problems included: doctor checks
# them); an error is something it could not reach (exit 3).
LEVELS = {"ok": Verdict.OK, "skipped": Verdict.OK, "warning": Verdict.WARNINGS,
          "failure": Verdict.FAILED, "error": Verdict.ERROR}  # fmt: skip
DEBEZIUM_POSTGRES = "io.debezium.connector.postgresql.PostgresConnector"


@dataclass(frozen=True)
class Check:
    """One finding: what was checked, how it went, and the detail a person acts on."""

    check: str
    level: str
    detail: str

    def to_document(self) -> dict[str, Any]:
        return {"check": self.check, "level": self.level, "detail": self.detail}


@dataclass
class DoctorReport:
    """Every check's finding; `settings` when the configuration loaded."""

    checks: list[Check] = field(default_factory=list)
    settings: OrionSettings | None = None
    source: Path | None = None

    @property
    def verdict(self) -> Verdict:
        """ok, warnings, failed (something to fix), error (something unreachable): the worst."""
        return Verdict.worst(LEVELS[c.level] for c in self.checks)

    def to_document(self) -> dict[str, Any]:
        return {"checks": [c.to_document() for c in self.checks]}


def doctor(config_path: Path | None, metrics_port: int | None) -> DoctorReport:
    """Load and check the configuration, then every service it points at."""
    config = check_config(config_path)
    if config.settings is None:
        return DoctorReport([Check("config", "failure", p) for p in config.problems])
    checks = run_doctor(config.settings, config.source, config.problems, metrics_port)
    return DoctorReport(checks, config.settings, config.source)


def _guard(name: str, fn: Callable[[], list[Check]]) -> list[Check]:
    try:
        return fn()
    except OrionError as exc:
        return [Check(name, "error" if exc.exit_code == ExitCode.ERROR else "failure", exc.message)]


def run_doctor(
    settings: OrionSettings, source_path: Path | None, config_problems: list[str], metrics_port: int | None
) -> list[Check]:
    """Every check, in the order data flows (config, source, Kafka, Connect, warehouse, loader)."""
    checks = [Check("config", "failure", p) for p in config_problems]
    if not config_problems:
        where = str(source_path) if source_path else "defaults + environment"
        checks.append(Check("config", "ok", f"valid ({where}); DQ rules file and CDC names included"))
    checks += _guard("source", lambda: _source(settings))
    kafka = _guard("kafka", lambda: _kafka(settings))
    checks += kafka
    checks += _guard("connect", lambda: _connect(settings))
    checks += _guard("warehouse", lambda: _warehouse(settings))
    if metrics_port is not None:
        checks.append(_metrics_port(metrics_port))
    return checks


def _source(settings: OrionSettings) -> list[Check]:
    from orion_etl.config.cdc_target import resolve_target
    from orion_etl.jobs.cdc import replication_status

    target = resolve_target(settings)
    report = replication_status(target).document
    checks = [Check("source", "ok", f"reachable ({report['database']})")]
    level = "ok" if report["wal_level"] == "logical" else "failure"
    checks.append(Check("source wal_level", level, f"wal_level = {report['wal_level']}"))
    for finding in report["findings"]:
        if finding["check"] == "wal_level":
            continue
        checks.append(Check(f"cdc {finding['check']}", finding["level"], finding["message"]))
    if not any(f["check"] != "wal_level" for f in report["findings"]):
        checks.append(Check("cdc slot", "ok", f"slot {report['slot_name']!r} healthy, publication in sync"))
    return checks


def _kafka(settings: OrionSettings) -> list[Check]:
    from orion_etl.adapters.kafka import check_broker, make_admin

    brokers = check_broker(settings.kafka, timeout_s=5)
    checks = [Check("kafka", "ok", f"reachable at {settings.kafka.bootstrap_servers} ({brokers} broker(s))")]
    existing = set(make_admin(settings.kafka).list_topics(timeout=5).topics)
    wanted = list(dict.fromkeys(vars(settings.stream.topics).values()))
    missing = [t for t in wanted if t not in existing]
    if missing:
        checks.append(Check("kafka topics", "warning", f"missing: {', '.join(missing)} (no events yet?)"))
    else:
        checks.append(Check("kafka topics", "ok", f"all {len(wanted)} stream topics exist"))
    return checks


def _connect(settings: OrionSettings) -> list[Check]:
    from orion_etl.adapters.connect import ConnectClient, ConnectorNotFoundError
    from orion_etl.config.cdc_target import resolve_target
    from orion_etl.jobs import connectors as job

    with ConnectClient(settings.connect, rebalance_timeout_s=5) as client:
        info = client.worker_info()
        checks = [
            Check("connect", "ok", f"reachable at {client.base_url} (version {info.get('version', '?')})")
        ]
        plugins = {p.get("class") for p in client.connector_plugins()}
        if DEBEZIUM_POSTGRES in plugins:
            checks.append(Check("connect plugin", "ok", "Debezium PostgreSQL connector installed"))
        else:
            checks.append(Check("connect plugin", "failure", f"{DEBEZIUM_POSTGRES} is not installed"))
        name = job.render(resolve_target(settings)).name
        try:
            health = job.health(client, name)
        except ConnectorNotFoundError:
            checks.append(Check("connector", "warning", f"{name} is not registered (connectors register)"))
            return checks
        level = {Verdict.OK: "ok", Verdict.WARNINGS: "warning"}.get(health.verdict, "failure")
        tasks = ", ".join(f"task {t.id} {t.state}" for t in health.tasks) or "no tasks"
        checks.append(Check("connector", level, f"{name} {health.state} ({tasks})"))
    return checks


def _warehouse(settings: OrionSettings) -> list[Check]:
    from orion_etl.adapters import migrations
    from orion_etl.adapters.postgres import connect

    with connect(settings.warehouse, autocommit=True) as conn:
        states = migrations.status(conn, "warehouse")
    checks = [Check("warehouse", "ok", f"reachable ({settings.warehouse.describe()})")]
    drifted = [s.migration.path.name for s in states if s.drifted]
    pending = [s.migration.path.name for s in states if not s.applied_at and not s.drifted]
    if drifted:
        checks.append(Check("warehouse migrations", "failure", f"drifted: {', '.join(drifted)}"))
    elif pending:
        checks.append(Check("warehouse migrations", "warning", f"{len(pending)} pending (db migrate)"))
    else:
        checks.append(Check("warehouse migrations", "ok", f"all {len(states)} applied"))
    return checks


def _metrics_port(port: int) -> Check:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            return Check(
                "metrics port", "warning", f"127.0.0.1:{port} is in use ({exc.strerror}; a running loader?)"
            )
    return Check("metrics port", "ok", f"127.0.0.1:{port} is free")
