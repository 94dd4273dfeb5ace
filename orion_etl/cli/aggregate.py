"""`orion-etl aggregate`: period rollups, intraday running aggregates, consistency validation.

    orion-etl aggregate [--period daily] [--date D | --from D [--to D]] [--format json]
    orion-etl aggregate --intraday [--periods daily,weekly,monthly|all]
    orion-etl aggregate validate [--period daily] [--date D]

Exit codes: 0 ok, 2 consistency check failed or bad usage, 3 could not run (lock held, DB down).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from orion_etl.cli.context import AppState, state
from orion_etl.cli.render import OutputFormat, print_json, print_table
from orion_etl.config.models import OrionSettings
from orion_etl.core.periods import (
    Bucket,
    Period,
    bucket_for,
    buckets_between,
    last_complete_trading_day,
    parse_date,
)
from orion_etl.errors import ExitCode, UsageError
from orion_etl.jobs import aggregate as job

app = typer.Typer(
    help="Aggregates: daily/weekly/monthly/quarterly/yearly rollups, intraday running aggregates.",
    invoke_without_command=True,
)

PeriodOpt = Annotated[
    str, typer.Option("--period", "-p", help="daily | weekly | monthly | quarterly | yearly")
]
DateOpt = Annotated[
    str | None,
    typer.Option("--date", "-d", help="A trading day YYYY-MM-DD (default: the last complete one)."),
]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", help="table | json")]


def _default_day(settings: OrionSettings) -> date:
    td = settings.trading_day
    return last_complete_trading_day(datetime.now(UTC), td.timezone, td.cutoff, weekend_roll=td.weekend_roll)


def _buckets(
    settings: OrionSettings, period: Period, day: str | None, first: str | None, last: str | None
) -> list[Bucket]:
    if day is not None and (first is not None or last is not None):
        raise UsageError("--date cannot be combined with --from/--to")
    if first is None and last is not None:
        raise UsageError("--to needs --from")
    if first is not None:
        end = parse_date(last, "--to") if last is not None else _default_day(settings)
        return buckets_between(period, parse_date(first, "--from"), end)
    return [bucket_for(period, parse_date(day) if day is not None else _default_day(settings))]


def _parse_periods(text: str | None) -> list[Period] | None:
    if text is None:
        return None
    if text.strip().lower() == "all":
        return list(Period)
    return [Period.parse(p) for p in text.split(",") if p.strip()]


def _render(app_state: AppState, report: job.AggregateReport, fmt: OutputFormat) -> None:
    if fmt is OutputFormat.JSON:
        print_json(report.as_dict())
    else:
        console = app_state.console
        console.print(
            f"aggregate {report.mode}: {len(report.buckets)} bucket(s)"
            + (f", {report.merged_rows} summary rows merged" if report.mode == "intraday" else "")
            + (f", rows {report.rows}" if report.rows else ""),
            highlight=False,
        )
        if report.issues:
            print_table(
                console,
                "consistency issues",
                ["rule", "record", "message"],
                [[i["rule"], i["record_id"], i["message"]] for i in report.issues],
            )
    if report.issues:
        raise typer.Exit(int(ExitCode.FAILURE))


@app.callback()
def aggregate(
    ctx: typer.Context,
    period: PeriodOpt = "daily",
    day: DateOpt = None,
    first: Annotated[
        str | None, typer.Option("--from", help="Backfill: first trading day YYYY-MM-DD.")
    ] = None,
    last: Annotated[
        str | None, typer.Option("--to", help="Backfill: last trading day (default: last complete).")
    ] = None,
    intraday: Annotated[
        bool, typer.Option("--intraday", help="Update running aggregates and recompute dirty buckets.")
    ] = False,
    periods: Annotated[
        str | None,
        typer.Option("--periods", help="With --intraday: dirty periods to recompute (list or 'all')."),
    ] = None,
    fmt: FormatOpt = OutputFormat.TABLE,
) -> None:
    """Recompute aggregates of a period (default: daily, the last complete trading day)."""
    if ctx.invoked_subcommand is not None:
        return
    app_state = state(ctx)
    if intraday:
        if day is not None or first is not None or last is not None:
            raise UsageError("--intraday takes no --date/--from/--to (it follows the dirty buckets)")
        settings = app_state.settings()
        report = job.run_intraday(settings, _parse_periods(periods))
        _render(app_state, report, fmt)
        return
    if periods is not None:
        raise UsageError("--periods only applies to --intraday")
    parsed = Period.parse(period)
    settings = app_state.settings()
    buckets = _buckets(settings, parsed, day, first, last)
    with Progress(
        TextColumn("[bold]aggregate[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=app_state.err_console,
        disable=not app_state.err_console.is_terminal or fmt is OutputFormat.JSON,
        transient=True,
    ) as progress:
        task = progress.add_task(parsed.value.lower(), total=len(buckets))

        def advance(bucket: Bucket) -> None:
            progress.update(task, advance=1, description=str(bucket))

        report = job.run_periods(settings, buckets, on_bucket=advance)
    _render(app_state, report, fmt)


@app.command("validate")
def validate(
    ctx: typer.Context,
    period: PeriodOpt = "daily",
    day: DateOpt = None,
    fmt: FormatOpt = OutputFormat.TABLE,
) -> None:
    """Check a bucket's aggregates (levels sum to tenant, counts = facts, VWAP range, volumes)."""
    parsed = Period.parse(period)
    app_state = state(ctx)
    settings = app_state.settings()
    bucket = bucket_for(parsed, parse_date(day) if day is not None else _default_day(settings))
    report = job.run_validate(settings, bucket)
    _render(app_state, report, fmt)
    if fmt is OutputFormat.TABLE and not report.issues:
        app_state.console.print(f"{bucket}: all consistency checks passed", highlight=False)
