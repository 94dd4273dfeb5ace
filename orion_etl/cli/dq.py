"""`orion-etl dq rules|audit|issues`: data-quality rules, audits with alerts, recorded issues."""

from __future__ import annotations

import uuid
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orion_etl.cli.context import AppState, state
from orion_etl.cli.options import LimitOpt, RuleOpt, SinceOpt, TableOpt
from orion_etl.cli.render import Column, FormatOpt, OutputFormat, Styled, finish_report, print_rows, say
from orion_etl.errors import UsageError

if TYPE_CHECKING:
    from orion_etl.config.dq import RuleCatalog
    from orion_etl.core.quality import Rule

app = typer.Typer(help="Data quality: rules, audits with alerts, recorded issues.", no_args_is_help=True)


class Severity(StrEnum):
    """`--severity` choices."""

    ERROR = "ERROR"
    WARNING = "WARNING"


def _catalog(app_state: AppState) -> RuleCatalog:
    from orion_etl.config.dq import build_catalog

    settings = app_state.settings()
    source = app_state.settings_source
    return build_catalog(settings.dq, base_dir=source.parent if source else Path.cwd())


def _detail(rule: Rule) -> str:
    from orion_etl.core.quality import RuleKind

    match rule.kind:
        case RuleKind.ACCEPTED_VALUES:
            return f"{rule.column} in ({', '.join(rule.values)})"
        case RuleKind.RANGE:
            upper = "<=" if rule.inclusive_max else "<"
            low = f"{rule.min} <= " if rule.min is not None else ""
            high = f" {upper} {rule.max}" if rule.max is not None else ""
            return f"{low}{rule.column}{high}"
        case RuleKind.LESS_OR_EQUAL:
            return f"{rule.column} <= {rule.other_column}"
        case RuleKind.UNIQUE:
            return f"({', '.join(rule.columns)})"
        case RuleKind.RELATIONSHIPS:
            return f"{rule.column} -> {rule.to_table}.{rule.to_column}"
        case RuleKind.FRESHNESS:
            return f"max({rule.column}) younger than {rule.max_age_s}s"
        case RuleKind.CUSTOM_SQL:
            return f"fails where {rule.sql}"
    return rule.column or ""


@app.command("rules")
def rules_cmd(
    ctx: typer.Context,
    table: TableOpt = None,
    include_disabled: Annotated[bool, typer.Option("--all", "-a", help="Include disabled rules.")] = False,
    fmt: FormatOpt = None,
) -> None:
    """List the active rules (defaults merged with dq.rules_file and the \\[\\[dq.rules]] tables)."""
    app_state = state(ctx)
    catalog = _catalog(app_state)
    rules = [r for r in catalog.rules if (include_disabled or r.enabled) and (not table or r.table in table)]
    rows: list[dict[str, Any]] = [
        {
            "table": r.table,
            "name": r.name,
            "kind": str(r.kind),
            "severity": str(r.severity),
            "message": r.message,
            "detail": _detail(r),
            "mode": "stream+audit" if r.row_level else "audit",
            "origin": catalog.origins.get(r.key, "default"),
            "enabled": r.enabled,
        }
        for r in rules
    ]
    columns = ["table", "name", "kind", "severity", "message", "detail", "mode", "origin"]
    if include_disabled:
        columns.append("enabled")
    print_rows(fmt, columns, rows, title="data-quality rules")


_STYLE = {"PASS": "green", "FAIL": "red", "ERROR": "magenta"}


@app.command("audit")
def audit_cmd(
    ctx: typer.Context,
    table: TableOpt = None,
    rule: RuleOpt = None,
    start: Annotated[
        str | None, typer.Option("--from", help="Window start (inclusive) on each table's time column.")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="Window end (exclusive).")] = None,
    fmt: FormatOpt = None,
) -> None:
    """Run the rules as set-based SQL; record issues; alert on new failures and recoveries.

    Exit codes: 0 all pass, 1 only warnings failed, 4 an error-severity rule failed,
    3 a rule (or the audit) could not run.
    """
    from orion_etl.core.timeparse import parse_optional_time
    from orion_etl.jobs.audit import audit

    app_state = state(ctx)
    report = audit(
        app_state.settings(),
        _catalog(app_state),
        tables=table,
        rules=rule,
        start=parse_optional_time(start, "--from"),
        end=parse_optional_time(end, "--to"),
    )

    def human(out: OutputFormat) -> None:
        rows = []
        for r in report.results:
            outcome = r.outcome.value
            style = _STYLE.get(outcome, "")
            if outcome == "FAIL" and str(r.rule.severity) == "WARNING":
                style = "yellow"
            rows.append(
                {
                    "table": r.rule.table,
                    "rule": r.rule.name,
                    "kind": str(r.rule.kind),
                    "severity": str(r.rule.severity),
                    "outcome": Styled(outcome, style),
                    "failed": r.failed if outcome != "ERROR" else None,
                    "checked": r.checked,
                    "detail": r.error or (r.rule.message if outcome == "FAIL" else ""),
                }
            )
        print_rows(out, list(rows[0]) if rows else ["table", "rule"], rows, title="data-quality audit")
        if out is OutputFormat.CSV:
            return
        counts = report.counts()
        say(
            f"{len(report.results)} rules: {counts['pass']} passed, {counts['fail']} failed, "
            f"{counts['error']} could not run; {report.issues_recorded} issues recorded; "
            f"alerts sent {sum(d.delivered for d in report.deliveries)}, "
            f"undelivered {sum(not d.delivered for d in report.deliveries)}; "
            f"run {report.run_id} ({report.duration_s:.1f}s)"
        )
        if report.unwindowed_tables:
            say(f"note: no time column, window not applied to: {', '.join(report.unwindowed_tables)}")

    finish_report(
        fmt,
        report,
        human=human,
        summary_event="dq-audit",
        json_logs_only=app_state.json_logs,
    )


@app.command("issues")
def issues_cmd(
    ctx: typer.Context,
    table: TableOpt = None,
    rule: Annotated[
        list[str] | None,
        typer.Option("--rule", metavar="RULE", help="Only this rule name (repeatable).", show_default=False),
    ] = None,
    severity: Annotated[
        list[Severity] | None, typer.Option("--severity", case_sensitive=False, help="ERROR | WARNING.")
    ] = None,
    since: SinceOpt = None,
    run: Annotated[str | None, typer.Option("--run", help="Only issues of this job run id.")] = None,
    limit: LimitOpt = 50,
    fmt: FormatOpt = None,
) -> None:
    """List recent issues from the stream (rejected rows) and audits (failing rules)."""
    from orion_etl.core.timeparse import parse_optional_time
    from orion_etl.jobs.audit import recent_issues

    try:
        run_id = uuid.UUID(run) if run else None
    except ValueError:
        raise UsageError(f"--run: {run!r} is not a job run id (UUID)") from None
    found = recent_issues(
        state(ctx).settings(),
        tables=table,
        rules=rule,
        severities=[s.value for s in severity] if severity else None,
        since=parse_optional_time(since, "--since"),
        run_id=run_id,
        limit=limit,
    )
    columns = [
        Column("created_at", "recorded"),
        Column("source_table", "table"),
        Column("rule_name", "rule"),
        Column("severity"),
        Column("failed_count", "failed", justify="right"),
        Column("error_message", "message"),
        Column("record_id", "record"),
        Column("job_run_id", "run"),
    ]
    print_rows(fmt, columns, found, title="data-quality issues (newest first)")
