"""`dq audit`: run every selected rule as set-based SQL, record issues, raise alerts.

One run: a `DQ_AUDIT` row in `etl_job_runs`; per table, one scan for all row-predicate rules
plus a query per `unique`/`freshness` rule, each in a read-only transaction; one
`etl_data_quality_issues` row (with sample rows) per failing rule; the open-failure state in
`etl_dq_alert_state` updated in the same transaction; then alerts for state changes only.
Alert delivery problems are logged and retried by the next audit; they never change the result.

The audit lock covers the evaluation and the state update only. Alerts go out after it is
released, under a lock of their own (`orion-etl:dq-alerts`, not waited for: an audit that finds
another one delivering leaves its due alerts to the next run), with a total budget for the whole
phase (`[dq.alerts] phase_timeout_s`) and a total deadline per webhook call: a slow webhook
neither keeps the next audit out nor holds this one past its budget.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from orion_etl.adapters import dq_store, metrics
from orion_etl.adapters.alerts import Delivery, Notifier, notifier_from_settings
from orion_etl.adapters.deadline import Budget
from orion_etl.adapters.dq_sql import Target, Window, row_predicate_rule
from orion_etl.adapters.jobruns import record_job_run
from orion_etl.adapters.postgres import advisory_lock, connect
from orion_etl.config.dq import RuleCatalog
from orion_etl.config.models import OrionSettings
from orion_etl.core.dq_results import Outcome, RuleResult, verdict
from orion_etl.core.quality import Rule, RuleKind
from orion_etl.core.tradingday import closed_weekend_seconds
from orion_etl.errors import LockHeldError, UsageError, Verdict, exit_code_for

log = logging.getLogger(__name__)

JOB_NAME = "dq-audit"
LOCK_NAME = "orion-etl:dq-audit"
ALERT_LOCK_NAME = "orion-etl:dq-alerts"


@dataclass
class AuditReport:
    """What an audit found and did."""

    run_id: uuid.UUID
    results: list[RuleResult]
    window: Window
    issues_recorded: int = 0
    deliveries: list[Delivery] = field(default_factory=list)
    alerts_skipped: str | None = None  # why due alerts were left to the next audit
    unwindowed_tables: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def verdict(self) -> Verdict:
        return verdict(self.results)

    def counts(self) -> dict[str, int]:
        out = {o.value: 0 for o in Outcome}
        for r in self.results:
            out[r.outcome.value] += 1
        return out

    def to_document(self) -> dict[str, Any]:
        return {
            "run_id": str(self.run_id),
            "window": {"from": self.window.start, "to": self.window.end},
            "unwindowed_tables": self.unwindowed_tables,
            "counts": self.counts(),
            "issues_recorded": self.issues_recorded,
            "alerts": [
                {
                    "rule": d.alert.rule_key,
                    "kind": str(d.alert.kind),
                    "delivered": d.delivered,
                    "errors": d.errors,
                }
                for d in self.deliveries
            ],
            "alerts_skipped": self.alerts_skipped,
            "duration_s": round(self.duration_s, 3),
            "results": [r.as_dict() for r in self.results],
        }


def select_rules(catalog: RuleCatalog, tables: list[str], rules: list[str]) -> list[Rule]:
    """Active rules filtered by table names and rule names/keys; unknown names are usage errors.

    Names are matched against the configured rules only, so nothing a user types reaches SQL.
    """
    active = catalog.active
    known_tables = sorted({r.table for r in active})
    for table in tables:
        if table not in known_tables:
            raise UsageError(
                f"unknown table {table!r}: no active rule on it (tables: {', '.join(known_tables)})"
            )
    selected = [r for r in active if not tables or r.table in tables]
    if rules:
        for name in rules:
            if not any(name in (r.name, r.key) for r in selected):
                raise UsageError(f"unknown rule {name!r} (list them with `orion-etl dq rules`)")
        selected = [r for r in selected if r.name in rules or r.key in rules]
    return selected


def _evaluate_table(
    conn: Any, settings: OrionSettings, catalog: RuleCatalog, table: str, rules: list[Rule],
    columns: dict[str, dict[str, str]], window: Window,
) -> tuple[list[RuleResult], bool]:  # fmt: skip
    """Results of one table's rules, and whether the time window applied."""
    spec = catalog.table(table)
    own = columns.get(table, {})
    results: list[RuleResult] = []
    time_column = spec.time_column
    problem: str | None
    if time_column and own and time_column not in own and not window.empty:
        problem = f"time column {time_column} does not exist in {table}"
        return [RuleResult(r, Outcome.ERROR, error=problem) for r in rules], False
    target = Target(settings.warehouse.schema_name, table, own, time_column)
    td = settings.trading_day
    closed = (
        partial(closed_weekend_seconds, timezone=td.timezone, cutoff=td.cutoff) if td.weekend_roll else None
    )
    evaluator = dq_store.Evaluator(
        conn, target, window, settings.dq.sample_rows, settings.dq.statement_timeout_s, closed
    )
    runnable = []
    for rule in rules:
        problem = dq_store.missing_objects(rule, columns)
        if problem:
            results.append(RuleResult(rule, Outcome.ERROR, error=problem))
        else:
            runnable.append(rule)
    results += evaluator.row_predicates([r for r in runnable if row_predicate_rule(r)])
    for rule in runnable:
        if rule.kind is RuleKind.UNIQUE:
            results.append(evaluator.unique(rule))
        elif rule.kind is RuleKind.FRESHNESS:
            results.append(evaluator.freshness(rule))
    return results, bool(time_column) or window.empty


def audit(
    settings: OrionSettings,
    catalog: RuleCatalog,
    *,
    tables: list[str] | None = None,
    rules: list[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> AuditReport:
    """`dq audit`: the window checked, the configured notifier, then `run_audit`."""
    if start and end and start >= end:
        raise UsageError("--from must be before --to")
    notifier = notifier_from_settings(settings.dq.alerts, source=settings.warehouse.describe())
    try:
        return run_audit(
            settings, catalog, tables=tables, rules=rules, window=Window(start, end), notifier=notifier
        )
    finally:
        notifier.close()


def run_audit(
    settings: OrionSettings,
    catalog: RuleCatalog,
    *,
    tables: list[str] | None = None,
    rules: list[str] | None = None,
    window: Window | None = None,
    notifier: Notifier | None = None,
) -> AuditReport:
    """Run the selected rules against the warehouse, record the outcome, send due alerts."""
    window = window or Window()
    selected = select_rules(catalog, tables or [], rules or [])
    started = time.monotonic()
    metadata = {"tables": tables or [], "rules": rules or [], "from": window.start, "to": window.end}
    with record_job_run(settings.warehouse, JOB_NAME, "DQ_AUDIT", metadata) as run:
        report = AuditReport(run.id, [], window)
        with connect(settings.warehouse, autocommit=True) as conn, advisory_lock(conn, LOCK_NAME):
            involved = sorted({r.table for r in selected} | {r.to_table for r in selected if r.to_table})
            columns = dq_store.table_columns(conn, settings.warehouse.schema_name, involved)
            by_table: dict[str, list[Rule]] = {}
            for rule in selected:
                by_table.setdefault(rule.table, []).append(rule)
            for table, table_rules in by_table.items():
                results, windowed = _evaluate_table(
                    conn, settings, catalog, table, table_rules, columns, window
                )
                report.results += results
                if not window.empty and not windowed:
                    report.unwindowed_tables.append(table)
            order = {r.key: i for i, r in enumerate(selected)}
            report.results.sort(key=lambda r: order[r.rule.key])
            key_columns = {t: catalog.table(t).key_column for t in by_table}
            origin = {"mode": "audit", "from": window.start, "to": window.end}
            with conn.transaction():
                report.issues_recorded = dq_store.record_issues(
                    conn, run.id, report.results, key_columns, origin
                )
                dq_store.update_alert_state(conn, run.id, report.results)
        if notifier is not None:
            _deliver_alerts(settings, notifier, run.id, report)
        report.duration_s = time.monotonic() - started
        run.exit_code = exit_code_for(report)
        counts = report.counts()
        run.processed = len(report.results)
        run.failed = counts["fail"] + counts["error"]
        run.metadata.update(
            counts=counts,
            exit_code=exit_code_for(report),
            issues=report.issues_recorded,
            alerts_sent=sum(d.delivered for d in report.deliveries),
            alerts_failed=sum(not d.delivered for d in report.deliveries),
            alerts_skipped=report.alerts_skipped,
            errors={r.rule.key: r.error for r in report.results if r.error},
        )
    metrics.add_job_samples(
        metrics.Sample("orion_etl_dq_audit_rules", {"outcome": outcome}, float(n))
        for outcome, n in counts.items()
    )
    return report


def _deliver_alerts(
    settings: OrionSettings, notifier: Notifier, run_id: uuid.UUID, report: AuditReport
) -> None:
    """Send the alerts due after this run (outside the audit lock, within the phase budget)."""
    alerts = settings.dq.alerts
    severities = {"ERROR"} if alerts.min_severity == "error" else {"ERROR", "WARNING"}
    budget = Budget(alerts.phase_timeout_s)
    with connect(settings.warehouse, autocommit=True) as conn:
        try:
            with advisory_lock(conn, ALERT_LOCK_NAME):
                # Due alerts are read under the alert lock: a concurrent audit that delivered first
                # has marked its alerts notified, so none goes out twice.
                for alert in dq_store.due_alerts(conn, run_id, report.results, severities):
                    if budget.spent:
                        report.alerts_skipped = (
                            f"the alert phase used its {budget.seconds:g} s; the next audit sends the rest"
                        )
                    delivery = notifier.send(alert, budget)
                    report.deliveries.append(delivery)
                    if delivery.delivered:
                        dq_store.mark_notified(conn, alert)
        except LockHeldError:
            report.alerts_skipped = "another audit is delivering alerts; the next audit sends these"
            log.warning("alerts not sent: %s", report.alerts_skipped)


def recent_issues(
    settings: OrionSettings,
    *,
    tables: list[str] | None,
    rules: list[str] | None,
    severities: list[str] | None,
    since: datetime | None,
    run_id: uuid.UUID | None,
    limit: int,
) -> list[dict[str, Any]]:
    """`dq issues`: the newest recorded issues (stream rejections and audit failures), filtered."""
    with connect(settings.warehouse) as conn:
        return dq_store.list_issues(
            conn, table=tables, rule=rules, severity=severities, since=since, run_id=run_id, limit=limit
        )
