"""`orion-etl aggregate`: period rollups, intraday running aggregates, consistency validation.

    orion-etl aggregate [--period daily] [--date D | --from D [--to D]] [--format json]
    orion-etl aggregate --intraday [--periods daily,weekly,monthly|all]
    orion-etl aggregate validate [--period daily] [--date D]

Exit codes: 0 ok, 4 a consistency check failed, 2 bad usage, 3 could not run (lock held, DB down).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from orion_etl.cli.context import AppState, state
from orion_etl.cli.render import FormatOpt, OutputFormat, finish_report, print_rows, say
from orion_etl.errors import UsageError

if TYPE_CHECKING:  # core.periods imports polars: loaded when a command runs, not for --help
    from orion_etl.config.models import OrionSettings
    from orion_etl.core.periods import Bucket, Period
    from orion_etl.jobs.aggregate import AggregateReport

# No help= here: the callback's docstring (with the exit codes) is the help of `aggregate`.
app = typer.Typer(invoke_without_command=True)

PeriodOpt = Annotated[
    str, typer.Option("--period", "-p", help="daily | weekly | monthly | quarterly | yearly (any case)")
]
DateOpt = Annotated[
    str | None,
    typer.Option("--date", "-d", help="A trading day YYYY-MM-DD (default: the last complete one)."),
]


def _default_day(settings: OrionSettings) -> date:
    from orion_etl.core.periods import last_complete_trading_day

    td = settings.trading_day
    return last_complete_trading_day(datetime.now(UTC), td.timezone, td.cutoff, weekend_roll=td.weekend_roll)


def _buckets(
    settings: OrionSettings, period: Period, day: str | None, first: str | None, last: str | None
) -> list[Bucket]:
    from orion_etl.core.periods import bucket_for, buckets_between, parse_date

    if day is not None and (first is not None or last is not None):
        raise UsageError("--date cannot be combined with --from/--to")
    if first is None and last is not None:
        raise UsageError("--to needs --from")
    if first is not None:
        end = parse_date(last, "--to") if last is not None else _default_day(settings)
        return buckets_between(period, parse_date(first, "--from"), end)
    return [bucket_for(period, parse_date(day) if day is not None else _default_day(settings))]


def _parse_periods(text: str | None) -> list[Period] | None:
    from orion_etl.core.periods import Period

    if text is None:
        return None
    if text.strip().lower() == "all":
        return list(Period)
    return [Period.parse(p) for p in text.split(",") if p.strip()]


def _render(
    app_state: AppState, report: AggregateReport, fmt: OutputFormat | None, ok_line: str | None = None
) -> None:
    def human(out: OutputFormat) -> None:
        if out is not OutputFormat.CSV:
            rows = ", ".join(f"{t} {n}" for t, n in sorted(report.rows.items()))
            say(
                f"aggregate {report.mode}: {len(report.buckets)} bucket(s)"
                + (f", {report.merged_rows} summary rows merged" if report.mode == "intraday" else "")
                + (f", rows: {rows}" if rows else "")
            )
        if report.issues or out is OutputFormat.CSV:
            columns = ["rule", "record_id", "message"]
            print_rows(out, columns, report.issues, title="consistency issues")
        elif ok_line:
            say(ok_line)

    finish_report(
        fmt,
        report,
        human=human,
        summary_event="aggregate",
        json_logs_only=app_state.json_logs,
    )


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
    fmt: FormatOpt = None,
) -> None:
    """Aggregates: daily/weekly/monthly/quarterly/yearly rollups, intraday running aggregates.

    Without a sub-command: recompute a period (default: daily, the last complete trading day).

    Exit codes: 0 ok, 4 a consistency check failed, 2 bad usage, 3 could not run (lock held,
    database down).
    """
    if ctx.invoked_subcommand is not None:
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from orion_etl.core.periods import Period
    from orion_etl.jobs import aggregate as job

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
        disable=not app_state.err_console.is_terminal,
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
    fmt: FormatOpt = None,
) -> None:
    """Check a bucket's aggregates (levels sum to tenant, counts = facts, VWAP range, volumes)."""
    from orion_etl.core.periods import Period, bucket_for, parse_date
    from orion_etl.jobs import aggregate as job

    parsed = Period.parse(period)
    app_state = state(ctx)
    settings = app_state.settings()
    bucket = bucket_for(parsed, parse_date(day) if day is not None else _default_day(settings))
    report = job.run_validate(settings, bucket)
    _render(app_state, report, fmt, ok_line=f"{bucket}: all consistency checks passed")
