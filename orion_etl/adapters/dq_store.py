"""Warehouse I/O of data-quality audits: run rule queries, record issues, keep alert state."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads

from orion_etl.adapters import dq_sql
from orion_etl.adapters.dq_sql import Query, Target, Window
from orion_etl.core.dq_results import Alert, AlertKind, Outcome, RuleResult
from orion_etl.core.pgtext import pg_json, storable
from orion_etl.core.quality import Rule, RuleKind

log = logging.getLogger(__name__)


def _exact_json_loads(data: str | bytes) -> Any:
    return json.loads(data, parse_float=Decimal)


def _one_line(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:500]


def read_only(conn: psycopg.Connection, query: Query, timeout_s: int) -> list[tuple[Any, ...]]:
    """Run one audit query in its own read-only transaction with a statement timeout."""
    with conn.transaction():
        conn.execute("SET TRANSACTION READ ONLY")
        conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(f"{timeout_s}s")))
        return conn.execute(query.text, query.params).fetchall()


def table_columns(conn: psycopg.Connection, schema: str, tables: list[str]) -> dict[str, dict[str, str]]:
    """`{table: {column: data_type}}` for the tables that exist."""
    query = dq_sql.columns_query(schema, tables)
    out: dict[str, dict[str, str]] = {}
    for table, column, data_type in conn.execute(query.text, query.params).fetchall():
        out.setdefault(table, {})[column] = data_type
    return out


def missing_objects(rule: Rule, columns: dict[str, dict[str, str]]) -> str | None:
    """Why a rule cannot run against this schema (unknown table or column), or None."""
    own = columns.get(rule.table)
    if own is None:
        return f"table {rule.table} does not exist"
    needed = [c for c in (rule.column, rule.other_column, *rule.columns) if c]
    unknown = [c for c in needed if c not in own]
    if unknown:
        return f"column {unknown[0]} does not exist in {rule.table}"
    if rule.kind is RuleKind.RELATIONSHIPS:
        assert rule.to_table and rule.to_column
        ref = columns.get(rule.to_table)
        if ref is None:
            return f"referenced table {rule.to_table} does not exist"
        if rule.to_column not in ref:
            return f"referenced column {rule.to_column} does not exist in {rule.to_table}"
    return None


@dataclass
class Evaluator:
    """Runs the rules of one table against the warehouse."""

    conn: psycopg.Connection
    target: Target
    window: Window
    sample_rows: int
    timeout_s: int
    # seconds of [newest, now) the market is closed (the FX week's weekend): not counted as age
    closed_seconds: Callable[[datetime, datetime], float] | None = None

    def __post_init__(self) -> None:
        # Sample rows come back as jsonb: read numbers as Decimal so money stays exact (a float
        # would turn 0.1 + 0.2 style values into approximations in reports and alerts).
        set_json_loads(_exact_json_loads, self.conn)

    def _samples(self, rule: Rule) -> list[dict[str, Any]]:
        if self.sample_rows <= 0:
            return []
        rows = read_only(
            self.conn, dq_sql.sample_query(self.target, rule, self.window, self.sample_rows), self.timeout_s
        )
        return [r[0] for r in rows]

    def row_predicates(self, rules: list[Rule]) -> list[RuleResult]:
        """All row-predicate rules of the table in one scan; on error, each rule alone."""
        if not rules:
            return []
        started = time.monotonic()
        try:
            row = read_only(self.conn, dq_sql.scan_query(self.target, rules, self.window), self.timeout_s)[0]
        except psycopg.Error as exc:
            if len(rules) == 1:
                return [RuleResult(rules[0], Outcome.ERROR, error=_one_line(exc))]
            log.warning("combined scan of %s failed (%s); checking rules one by one", self.target.table, exc)
            return [res for rule in rules for res in self.row_predicates([rule])]
        elapsed = int((time.monotonic() - started) * 1000)
        checked, counts = int(row[0]), [int(c) for c in row[1:]]
        results = []
        for rule, failed in zip(rules, counts, strict=True):
            result = RuleResult(
                rule, Outcome.FAIL if failed else Outcome.PASS, failed, checked, duration_ms=elapsed
            )
            if failed:
                try:
                    result.samples = self._samples(rule)
                except psycopg.Error as exc:
                    log.warning("sample rows of %s unavailable: %s", rule.key, exc)
            results.append(result)
        return results

    def unique(self, rule: Rule) -> RuleResult:
        started = time.monotonic()
        try:
            rows = read_only(
                self.conn,
                dq_sql.unique_query(self.target, rule, self.window, self.sample_rows),
                self.timeout_s,
            )
        except psycopg.Error as exc:
            return RuleResult(rule, Outcome.ERROR, error=_one_line(exc))
        elapsed = int((time.monotonic() - started) * 1000)
        if not rows:
            return RuleResult(rule, Outcome.PASS, 0, duration_ms=elapsed)
        samples = [r[2] for r in rows][: self.sample_rows]
        return RuleResult(rule, Outcome.FAIL, int(rows[0][0]), samples=samples, duration_ms=elapsed)

    def freshness(self, rule: Rule) -> RuleResult:
        started = time.monotonic()
        try:
            newest, age_s = read_only(self.conn, dq_sql.freshness_query(self.target, rule), self.timeout_s)[0]
        except psycopg.Error as exc:
            return RuleResult(rule, Outcome.ERROR, error=_one_line(exc))
        elapsed = int((time.monotonic() - started) * 1000)
        assert rule.max_age_s is not None
        closed = 0.0
        if self.closed_seconds is not None and isinstance(newest, datetime) and age_s is not None:
            closed = self.closed_seconds(newest, newest + timedelta(seconds=age_s))
            age_s -= closed
        stale = newest is None or age_s is None or age_s > rule.max_age_s
        sample = {
            "newest": newest,
            "age_s": None if age_s is None else round(age_s),
            "max_age_s": rule.max_age_s,
            **({"closed_weekend_s": round(closed)} if closed else {}),
        }
        if not stale:
            return RuleResult(rule, Outcome.PASS, 0, duration_ms=elapsed)
        return RuleResult(
            rule, Outcome.FAIL, 1, samples=[json.loads(json.dumps(sample, default=str))], duration_ms=elapsed
        )


def record_issues(
    conn: psycopg.Connection,
    run_id: uuid.UUID,
    results: list[RuleResult],
    key_columns: dict[str, str | None],
    origin: dict[str, Any],
) -> int:
    """One `etl_data_quality_issues` row per failing rule, linked to the audit's job run."""
    rows = []
    for r in results:
        if r.outcome is not Outcome.FAIL:
            continue
        key_column = key_columns.get(r.rule.table)
        record_id = None
        if key_column and r.samples and key_column in r.samples[0]:
            record_id = str(r.samples[0][key_column])
        rows.append(
            (
                run_id,
                r.rule.table,
                record_id,
                r.rule.name,
                str(r.rule.severity),
                storable(r.rule.label),
                r.failed,
                pg_json(origin),
                str(r.rule.kind),
                r.checked,
                pg_json(r.samples),
            )
        )
    if rows:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO etl_data_quality_issues (job_run_id, source_table, record_id, rule_name, "
                "severity, error_message, failed_count, origin, rule_kind, checked_count, sample_rows) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s::jsonb)",
                rows,
            )
    return len(rows)


def update_alert_state(conn: psycopg.Connection, run_id: uuid.UUID, results: list[RuleResult]) -> None:
    """Open failing rules, resolve passing ones (rules that errored keep their state)."""
    failing = [r for r in results if r.outcome is Outcome.FAIL]
    passing = [r.rule.key for r in results if r.outcome is Outcome.PASS]
    with conn.cursor() as cur:
        if failing:
            cur.executemany(
                "INSERT INTO etl_dq_alert_state AS s (rule_key, source_table, rule_name, severity, status, "
                "message, failed_count, opened_at, last_seen_at, last_job_run_id) "
                "VALUES (%s, %s, %s, %s, 'OPEN', %s, %s, now(), now(), %s) "
                "ON CONFLICT (rule_key) DO UPDATE SET "
                "status = 'OPEN', severity = EXCLUDED.severity, message = EXCLUDED.message, "
                "failed_count = EXCLUDED.failed_count, last_seen_at = now(), resolved_at = NULL, "
                "last_job_run_id = EXCLUDED.last_job_run_id, updated_at = now(), "
                "opened_at = CASE WHEN s.status = 'OPEN' THEN s.opened_at ELSE now() END",
                [
                    (
                        r.rule.key,
                        r.rule.table,
                        r.rule.name,
                        str(r.rule.severity),
                        r.rule.label,
                        r.failed,
                        run_id,
                    )
                    for r in failing
                ],
            )
        if passing:
            cur.execute(
                "UPDATE etl_dq_alert_state SET status = 'RESOLVED', resolved_at = now(), failed_count = 0, "
                "last_job_run_id = %s, updated_at = now() WHERE rule_key = ANY(%s) AND status = 'OPEN'",
                (run_id, passing),
            )


def due_alerts(
    conn: psycopg.Connection, run_id: uuid.UUID, results: list[RuleResult], severities: set[str]
) -> list[Alert]:
    """Alerts whose state changed since the channels were last told, among this run's rules."""
    keys = [r.rule.key for r in results if r.outcome is not Outcome.ERROR]
    by_key = {r.rule.key: r for r in results}
    rows = conn.execute(
        "SELECT rule_key, source_table, rule_name, severity, status, message, failed_count "
        "FROM etl_dq_alert_state WHERE rule_key = ANY(%s) AND status IS DISTINCT FROM notified_status "
        "AND NOT (status = 'RESOLVED' AND notified_status IS NULL) ORDER BY rule_key",
        (keys,),
    ).fetchall()
    alerts = []
    for key, table, name, severity, status, message, failed in rows:
        if severity not in severities:
            continue
        kind = AlertKind.FAILURE if status == "OPEN" else AlertKind.RECOVERY
        samples = tuple(by_key[key].samples) if key in by_key else ()
        alerts.append(Alert(kind, key, table, name, severity, message, int(failed), str(run_id), samples))
    return alerts


def mark_notified(conn: psycopg.Connection, alert: Alert) -> None:
    """Remember that the channels were told about this state of the rule."""
    status = "OPEN" if alert.kind is AlertKind.FAILURE else "RESOLVED"
    conn.execute(
        "UPDATE etl_dq_alert_state SET notified_status = %s, notified_at = now() "
        "WHERE rule_key = %s AND status = %s",
        (status, alert.rule_key, status),
    )


def list_issues(
    conn: psycopg.Connection,
    *,
    table: str | list[str] | None = None,
    rule: str | list[str] | None = None,
    severity: str | list[str] | None = None,
    since: datetime | None = None,
    run_id: uuid.UUID | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Most recent issues first, filtered (table, rule, severity: one value or any of several)."""
    conds: list[sql.Composable] = [sql.SQL("TRUE")]
    params: list[Any] = []
    for column, value in (("source_table", table), ("rule_name", rule), ("severity", severity)):
        if value:
            conds.append(sql.SQL("{} = ANY(%s)").format(sql.Identifier(column)))
            params.append([value] if isinstance(value, str) else list(value))
    if run_id is not None:
        conds.append(sql.SQL("job_run_id = %s"))
        params.append(run_id)
    if since is not None:
        conds.append(sql.SQL("created_at >= %s"))
        params.append(since)
    query = sql.SQL(
        "SELECT created_at, source_table, rule_name, severity, failed_count, checked_count, error_message, "
        "record_id, job_run_id, rule_kind, sample_rows, record_data, origin "
        "FROM etl_data_quality_issues WHERE {} ORDER BY created_at DESC, id LIMIT %s"
    ).format(sql.SQL(" AND ").join(conds))
    with conn.cursor(row_factory=dict_row) as cur:
        set_json_loads(_exact_json_loads, cur)
        return cur.execute(query, [*params, limit]).fetchall()
