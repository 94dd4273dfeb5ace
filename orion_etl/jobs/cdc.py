"""`cdc prepare` (make a source database ready for Debezium) and `cdc status` (replication health)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import psycopg

from orion_etl.adapters import metrics
from orion_etl.adapters import replication as repl
from orion_etl.adapters.jobruns import record_job_run
from orion_etl.adapters.postgres import advisory_lock, connect
from orion_etl.config.cdc_target import CdcTarget
from orion_etl.config.models import PostgresSettings
from orion_etl.core.replication_health import (
    Finding,
    Thresholds,
    check_heartbeat,
    check_publication,
    check_slots,
    publication_drift,
    verdict,
)
from orion_etl.core.snapshot_signal import snapshot_signal
from orion_etl.errors import ConfigError, Verdict, exit_code_for
from orion_etl.logs import redactor

log = logging.getLogger(__name__)
Outcome = Literal["changed", "would-change", "unchanged", "warning", "could-not"]
LOCK_TIMEOUT = "5s"


@dataclass(frozen=True)
class Step:
    """One thing `cdc prepare` checked or did."""

    item: str
    outcome: Outcome
    detail: str

    def to_document(self) -> dict[str, str]:
        return {"item": self.item, "outcome": self.outcome, "detail": self.detail}


@dataclass
class PrepareReport:
    """Everything `cdc prepare` did, in order."""

    env: str
    database: str
    dry_run: bool
    steps: list[Step] = field(default_factory=list)

    def add(self, item: str, outcome: Outcome, detail: str) -> None:
        self.steps.append(Step(item, outcome, detail))
        log.debug("cdc prepare: %s %s: %s", item, outcome, detail)

    @property
    def verdict(self) -> Verdict:
        """Failed when something could not be done (fix that first), warnings, or ok."""
        outcomes = {s.outcome for s in self.steps}
        if "could-not" in outcomes:
            return Verdict.FAILED
        return Verdict.WARNINGS if "warning" in outcomes else Verdict.OK

    def to_document(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "database": self.database,
            "dry_run": self.dry_run,
            "steps": [s.to_document() for s in self.steps],
        }


def _pg_error(exc: psycopg.Error) -> str:
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return redactor.redact(text)


def prepare(target: CdcTarget, warehouse: PostgresSettings, *, dry_run: bool = False) -> PrepareReport:
    """Check and fix the source for CDC; idempotent. Recorded in `etl_job_runs` unless `dry_run`."""
    report = PrepareReport(target.env, target.source.describe(), dry_run)
    if dry_run:
        _prepare(target, report)
        return report
    with record_job_run(
        warehouse, f"cdc-prepare:{target.env}", "CDC_PREPARE", {"database": report.database}
    ) as run:
        _prepare(target, report)
        run.processed = sum(s.outcome == "changed" for s in report.steps)
        run.failed = sum(s.outcome == "could-not" for s in report.steps)
        run.metadata["steps"] = [s.to_document() for s in report.steps]
        run.exit_code = exit_code_for(report)
    return report


def _prepare(target: CdcTarget, report: PrepareReport) -> None:
    cdc, schema = target.cdc, target.source.schema_name
    with (
        connect(target.source, autocommit=True) as conn,
        advisory_lock(conn, f"cdc-prepare:{cdc.publication_name}"),
    ):
        repl.set_lock_timeout(conn, LOCK_TIMEOUT)
        _check_server(conn, target, report)
        _check_role(conn, target, report)
        tables = repl.table_info(conn, schema, target.captured_tables, target.database_user)
        present = [t for t, info in tables.items() if info.exists]
        for name, info in tables.items():
            if not info.exists:
                report.add(f"table {schema}.{name}", "could-not", "table does not exist")
            elif not info.user_can_select:
                report.add(
                    f"table {schema}.{name}",
                    "could-not",
                    f"{target.database_user} cannot SELECT it (snapshot needs it): "
                    f"GRANT SELECT ON {schema}.{name} TO {target.database_user}",
                )
        published = list(present)
        if cdc.heartbeat_table and _heartbeat_table(conn, target, report):
            published.append(cdc.heartbeat_table)
        if cdc.signal_table and _signal_table(conn, target, report):
            published.append(cdc.signal_table)
        _publication(conn, target, published, report)
        _replica_identity(conn, target, tables, report)


def _run(conn: psycopg.Connection, report: PrepareReport, item: str, done: str, action: Any) -> bool:
    """Run one change (or only report it in dry-run); failures become `could-not` steps."""
    if report.dry_run:
        report.add(item, "would-change", done)
        return True
    try:
        action()
    except psycopg.Error as exc:
        report.add(item, "could-not", _pg_error(exc))
        return False
    report.add(item, "changed", done)
    return True


def _check_server(conn: psycopg.Connection, target: CdcTarget, report: PrepareReport) -> None:
    info = repl.server_info(conn)
    if info.wal_level == "logical":
        report.add("wal_level", "unchanged", "logical")
    else:
        report.add(
            "wal_level",
            "could-not",
            f"is {info.wal_level}; needs `ALTER SYSTEM SET wal_level = logical` and a PostgreSQL restart",
        )
    slot_exists = any(
        s["slot_name"] == target.cdc.slot_name for s in repl.replication_slots(conn, target.source.dbname)
    )
    if not slot_exists and info.slots_in_use >= info.max_replication_slots:
        report.add(
            "max_replication_slots",
            "could-not",
            f"all {info.max_replication_slots} slots in use; "
            f"the connector cannot create {target.cdc.slot_name!r}",
        )


def _check_role(conn: psycopg.Connection, target: CdcTarget, report: PrepareReport) -> None:
    user = target.database_user
    role = repl.role_info(conn, user)
    item = f"role {user}"
    if not role.exists:
        report.add(item, "could-not", "role does not exist")
    elif not role.can_login:
        report.add(item, "could-not", f"cannot log in: ALTER ROLE {user} WITH LOGIN")
    elif role.superuser:
        report.add(
            item, "unchanged", "superuser (works; a dedicated REPLICATION role is safer in production)"
        )
    elif role.replication:
        report.add(item, "unchanged", "has REPLICATION")
    else:
        report.add(
            item, "could-not", f"lacks REPLICATION: ALTER ROLE {user} WITH REPLICATION (as a superuser)"
        )


def _heartbeat_table(conn: psycopg.Connection, target: CdcTarget, report: PrepareReport) -> bool:
    """The table the connector's heartbeat action query upserts (one row per slot)."""
    return _connector_table(
        conn,
        target,
        report,
        "heartbeat",
        target.cdc.heartbeat_table,
        repl.create_heartbeat_table,
        repl.HEARTBEAT_GRANTS,
    )


def _signal_table(conn: psycopg.Connection, target: CdcTarget, report: PrepareReport) -> bool:
    """Debezium's signal table: `cdc snapshot` inserts into it, the connector writes watermarks."""
    return _connector_table(
        conn, target, report, "signal", target.cdc.signal_table, repl.create_signal_table, repl.SIGNAL_GRANTS
    )


def _connector_table(
    conn: psycopg.Connection,
    target: CdcTarget,
    report: PrepareReport,
    kind: str,
    table: str,
    create: Callable[[psycopg.Connection, str, str], None],
    grants: tuple[str, ...],
) -> bool:
    """Create a table the connector writes to and grant its user `grants`; False when it could not."""
    schema, user = target.source.schema_name, target.database_user
    item = f"{kind} table {schema}.{table}"
    if repl.table_exists(conn, schema, table):
        report.add(item, "unchanged", "exists")
    elif not _run(conn, report, item, "created", lambda: create(conn, schema, table)):
        return False
    if report.dry_run and not repl.table_exists(conn, schema, table):
        return True
    if repl.role_info(conn, user).exists:
        missing = repl.heartbeat_grants_missing(conn, schema, table, user, grants)
        if missing:
            _run(
                conn,
                report,
                f"grant on {schema}.{table}",
                f"granted {', '.join(missing)} to {user}",
                lambda: repl.grant_heartbeat(conn, schema, table, user, grants),
            )
    return True


def _publication(
    conn: psycopg.Connection, target: CdcTarget, tables: list[str], report: PrepareReport
) -> None:
    name, schema = target.cdc.publication_name, target.source.schema_name
    item = f"publication {name}"
    if not tables:
        report.add(item, "could-not", "no existing table to publish")
        return
    pub = repl.publication_info(conn, name)
    if pub is None:
        _run(
            conn,
            report,
            item,
            f"created for {', '.join(tables)}",
            lambda: repl.create_publication(conn, name, schema, tables),
        )
        return
    drift = publication_drift({f"{schema}.{t}" for t in tables}, set(pub.tables), pub.all_tables)
    missing = [m.split(".", 1)[1] for m in drift["missing"]]
    if missing:
        _run(
            conn,
            report,
            item,
            f"added {', '.join(missing)}",
            lambda: repl.add_publication_tables(conn, name, schema, missing),
        )
    if not all(pub.operations.get(op) for op in ("insert", "update", "delete")):
        _run(
            conn,
            report,
            item,
            "now publishes insert, update, delete, truncate",
            lambda: repl.set_publication_operations(conn, name),
        )
    if drift["extra"]:
        report.add(item, "warning", f"also publishes {', '.join(drift['extra'])} (left as is)")
    if not missing and not drift["extra"]:
        report.add(
            item,
            "unchanged",
            "publishes all configured tables" + (" (FOR ALL TABLES)" if pub.all_tables else ""),
        )


def _replica_identity(
    conn: psycopg.Connection, target: CdcTarget, tables: dict[str, repl.TableInfo], report: PrepareReport
) -> None:
    schema = target.source.schema_name
    wanted = set(target.replica_identity_tables)
    for name, info in tables.items():
        if not info.exists:
            continue
        item = f"replica identity {schema}.{name}"
        if name in wanted:
            if info.replica_identity == "full":
                report.add(item, "unchanged", "FULL")
            else:
                _run(
                    conn,
                    report,
                    item,
                    f"{info.replica_identity} -> FULL",
                    lambda n=name: repl.set_replica_identity_full(conn, schema, n),
                )
        elif info.replica_identity == "nothing":
            report.add(item, "warning", "NOTHING: updates and deletes fail on a published table")


# ---------------------------------------------------------------------------------------- status


@dataclass(frozen=True)
class ReplicationReport:
    """`cdc status`: the replication facts (`document`) and the findings judged against thresholds."""

    document: dict[str, Any]
    findings: list[Finding]

    @property
    def verdict(self) -> Verdict:
        return verdict(self.findings)

    def to_document(self) -> dict[str, Any]:
        return self.document


def replication_status(target: CdcTarget) -> ReplicationReport:
    """Slots, publication drift and heartbeat of one environment, with findings and a verdict."""
    cdc, schema = target.cdc, target.source.schema_name
    limits = Thresholds(cdc.warn_retained_wal_bytes, cdc.max_retained_wal_bytes, cdc.max_heartbeat_age_s)
    heartbeat_enabled = bool(cdc.heartbeat_table) and cdc.heartbeat_interval_ms > 0
    expected = {f"{schema}.{t}" for t in target.captured_tables}
    if heartbeat_enabled:
        expected.add(f"{schema}.{cdc.heartbeat_table}")
    if cdc.signal_table:
        expected.add(f"{schema}.{cdc.signal_table}")
    with connect(target.source, autocommit=True) as conn:
        server = repl.server_info(conn)
        slots = repl.replication_slots(conn, target.source.dbname)
        pub = repl.publication_info(conn, cdc.publication_name)
        age = (
            repl.heartbeat_age_s(conn, schema, cdc.heartbeat_table, cdc.slot_name)
            if heartbeat_enabled
            else None
        )
    findings: list[Finding] = []
    if server.wal_level != "logical":
        findings.append(Finding("wal_level", "failure", f"wal_level is {server.wal_level}, not logical"))
    findings += check_slots(slots, cdc.slot_name, limits)
    drift = publication_drift(expected, set(pub.tables) if pub else set(), pub.all_tables if pub else False)
    findings += check_publication(cdc.publication_name, pub is not None, drift, pub.operations if pub else {})
    findings += check_heartbeat(heartbeat_enabled, age, limits)
    _export_metrics(slots, age)
    document = {
        "env": target.env,
        "database": target.source.describe(),
        "wal_level": server.wal_level,
        "slot_name": cdc.slot_name,
        "slots": slots,
        "publication": {
            "name": cdc.publication_name,
            "exists": pub is not None,
            "all_tables": pub.all_tables if pub else None,
            "tables": sorted(pub.tables) if pub else [],
            **drift,
        },
        "heartbeat": {"enabled": heartbeat_enabled, "table": cdc.heartbeat_table or None, "age_s": age},
        "thresholds": limits.__dict__,
        "findings": [f.to_document() for f in findings],
    }
    return ReplicationReport(document, findings)


def _export_metrics(slots: list[dict[str, Any]], heartbeat_age_s: float | None) -> None:
    """Slot lag and retained WAL for `cdc status --metrics-file` (adapters.metrics)."""
    samples = []
    for slot in slots:
        labels = {"slot": str(slot["slot_name"])}
        samples.append(
            metrics.Sample("orion_etl_replication_slot_active", labels, float(bool(slot["active"])))
        )
        for family, key in (
            ("orion_etl_replication_slot_retained_wal_bytes", "retained_wal_bytes"),
            ("orion_etl_replication_slot_flush_lag_bytes", "flush_lag_bytes"),
        ):
            if slot.get(key) is not None:
                samples.append(metrics.Sample(family, labels, float(slot[key])))
    if heartbeat_age_s is not None:
        samples.append(
            metrics.Sample("orion_etl_replication_heartbeat_age_seconds", {}, float(heartbeat_age_s))
        )
    metrics.add_job_samples(samples)


# -------------------------------------------------------------------------------------- snapshot


def request_snapshot(
    target: CdcTarget,
    warehouse: PostgresSettings,
    tables: list[str],
    *,
    condition: str | None = None,
    stop: bool = False,
) -> dict[str, Any]:
    """Insert an execute-snapshot (or stop-snapshot) signal; recorded in `etl_job_runs`.

    The connector acts on it when it reads the insert from the WAL: at once when it is running,
    otherwise when it next starts.
    """
    signal = snapshot_signal(target, tables, condition=condition, stop=stop)
    schema, table = target.source.schema_name, target.cdc.signal_table
    with record_job_run(
        warehouse, f"cdc-snapshot:{target.env}", "CDC_SNAPSHOT", {"signal": signal.as_dict()}
    ) as run:
        with connect(target.source, autocommit=True) as conn:
            if not repl.table_exists(conn, schema, table):
                raise ConfigError(
                    f"signal table {schema}.{table} does not exist", hint="run `orion-etl cdc prepare` first"
                )
            pub = repl.publication_info(conn, target.cdc.publication_name)
            if pub is not None and not pub.all_tables and f"{schema}.{table}" not in pub.tables:
                raise ConfigError(
                    f"signal table {schema}.{table} is not in publication {target.cdc.publication_name}: "
                    "the connector would never see the signal",
                    hint="run `orion-etl cdc prepare` first",
                )
            repl.insert_signal(conn, schema, table, signal.id, signal.type, signal.data)
        run.processed = 1
    log.info("cdc snapshot: %s %s (signal %s)", signal.type, ", ".join(signal.tables) or "all", signal.id)
    return {"env": target.env, "signal_table": f"{schema}.{table}", **signal.as_dict()}
