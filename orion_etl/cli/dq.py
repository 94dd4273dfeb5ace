"""`orion-etl dq rules|audit|issues`: data-quality rules, audits with alerts, recorded issues."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from orion_etl.adapters.alerts import notifier_from_settings
from orion_etl.adapters.dq_sql import Window
from orion_etl.adapters.dq_store import list_issues
from orion_etl.adapters.postgres import connect
from orion_etl.cli.context import AppState, state
from orion_etl.cli.render import OutputFormat, print_json, print_table
from orion_etl.config.dq import RuleCatalog, build_catalog
from orion_etl.core.dq_results import Outcome
from orion_etl.core.quality import Rule, RuleKind
from orion_etl.core.timeparse import parse_optional_time
from orion_etl.errors import UsageError
from orion_etl.jobs.audit import run_audit

app = typer.Typer(help="Data quality: rules, audits with alerts, recorded issues.", no_args_is_help=True)

FormatOpt = Annotated[OutputFormat, typer.Option("--format", help="table (people) or json (scripts).")]
TableOpt = Annotated[list[str] | None, typer.Option("--table", help="Only rules of this table (repeatable).")]
RuleOpt = Annotated[
    list[str] | None, typer.Option("--rule", help="Only this rule: name or table.name (repeatable).")
]


def _catalog(app_state: AppState) -> RuleCatalog:
    settings = app_state.settings()
    source = app_state.settings_source
    return build_catalog(settings.dq, base_dir=source.parent if source else Path.cwd())


def _detail(rule: Rule) -> str:
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
    include_disabled: Annotated[bool, typer.Option("--all", help="Include disabled rules.")] = False,
    fmt: FormatOpt = OutputFormat.TABLE,
) -> None:
    """List the active rules (defaults merged with dq.rules_file and [[dq.rules]])."""
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
    if fmt is OutputFormat.JSON:
        print_json(rows)
        return
    columns = ["table", "name", "kind", "severity", "message", "detail", "mode", "origin"]
    if include_disabled:
        columns.append("enabled")
    print_table(
        app_state.console,
        "data-quality rules",
        columns,
        [[escape(str(r[c])) for c in columns] for r in rows],
    )


_STYLE = {Outcome.PASS: "green", Outcome.FAIL: "red", Outcome.ERROR: "magenta"}


@app.command("audit")
def audit_cmd(
    ctx: typer.Context,
    table: TableOpt = None,
    rule: RuleOpt = None,
    start: Annotated[
        str | None, typer.Option("--from", help="Window start (inclusive) on each table's time column.")
    ] = None,
    end: Annotated[str | None, typer.Option("--to", help="Window end (exclusive).")] = None,
    fmt: FormatOpt = OutputFormat.TABLE,
) -> None:
    """Run the rules as set-based SQL; record issues; alert on new failures and recoveries.

    Exit codes: 0 all pass, 1 only warnings failed, 2 an error-severity rule failed,
    3 a rule (or the audit) could not run.
    """
    app_state = state(ctx)
    settings = app_state.settings()
    catalog = _catalog(app_state)
    window = Window(parse_optional_time(start, "--from"), parse_optional_time(end, "--to"))
    if window.start and window.end and window.start >= window.end:
        raise UsageError("--from must be before --to")
    notifier = notifier_from_settings(settings.dq.alerts, source=settings.warehouse.describe())
    try:
        report = run_audit(settings, catalog, tables=table, rules=rule, window=window, notifier=notifier)
    finally:
        notifier.close()
    if fmt is OutputFormat.JSON:
        print_json(report.as_dict())
        raise typer.Exit(int(report.exit_code))
    console = app_state.console
    rows = []
    for r in report.results:
        style = _STYLE[r.outcome]
        if r.outcome is Outcome.FAIL and str(r.rule.severity) == "WARNING":
            style = "yellow"
        rows.append(
            [
                r.rule.table,
                r.rule.name,
                str(r.rule.kind),
                str(r.rule.severity),
                f"[{style}]{r.outcome.value}[/]",
                r.failed if r.outcome is not Outcome.ERROR else "-",
                "-" if r.checked is None else r.checked,
                escape(r.error or (r.rule.message if r.outcome is Outcome.FAIL else "")),
            ]
        )
    print_table(
        console,
        "data-quality audit",
        ["table", "rule", "kind", "severity", "outcome", "failed", "checked", "detail"],
        rows,
    )
    counts = report.counts()
    console.print(
        f"{len(report.results)} rules: {counts['pass']} passed, {counts['fail']} failed, "
        f"{counts['error']} could not run; {report.issues_recorded} issues recorded; "
        f"alerts sent {sum(d.delivered for d in report.deliveries)}, "
        f"undelivered {sum(not d.delivered for d in report.deliveries)}; "
        f"run {report.run_id} ({report.duration_s:.1f}s)",
        highlight=False,
    )
    if report.unwindowed_tables:
        console.print(f"note: no time column, window not applied to: {', '.join(report.unwindowed_tables)}")
    raise typer.Exit(int(report.exit_code))


@app.command("issues")
def issues_cmd(
    ctx: typer.Context,
    table: Annotated[str | None, typer.Option("--table", help="Only this table.")] = None,
    rule: Annotated[str | None, typer.Option("--rule", help="Only this rule name.")] = None,
    severity: Annotated[str | None, typer.Option("--severity", help="ERROR or WARNING.")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Recorded at or after (ISO date/time).")
    ] = None,
    run: Annotated[str | None, typer.Option("--run", help="Only issues of this job run id.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 50,
    fmt: FormatOpt = OutputFormat.TABLE,
) -> None:
    """List recent issues from the stream (rejected rows) and audits (failing rules)."""
    app_state = state(ctx)
    settings = app_state.settings()
    if severity is not None and severity.upper() not in ("ERROR", "WARNING"):
        raise UsageError("--severity must be ERROR or WARNING")
    try:
        run_id = uuid.UUID(run) if run else None
    except ValueError:
        raise UsageError(f"--run: {run!r} is not a job run id (UUID)") from None
    with connect(settings.warehouse) as conn:
        found = list_issues(
            conn,
            table=table,
            rule=rule,
            severity=severity.upper() if severity else None,
            since=parse_optional_time(since, "--since"),
            run_id=run_id,
            limit=limit,
        )
    if fmt is OutputFormat.JSON:
        print_json(found)
        return
    print_table(
        app_state.console,
        "data-quality issues (newest first)",
        ["recorded", "table", "rule", "severity", "failed", "message", "record", "run"],
        [
            [
                i["created_at"].isoformat(timespec="seconds"),
                i["source_table"],
                i["rule_name"],
                i["severity"],
                i["failed_count"],
                escape(i["error_message"]),
                i["record_id"],
                str(i["job_run_id"] or "")[:8],
            ]
            for i in found
        ],
    )
