"""`orion-etl stream`: run the streaming loader (Kafka -> warehouse facts); `stream status` and
`stream offsets show|reset` look at and move its positions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from orion_etl.cli.context import state
from orion_etl.cli.options import TopicOpt
from orion_etl.cli.render import (
    Column,
    FormatOpt,
    OutputFormat,
    finish,
    print_record,
    print_rows,
    resolve_format,
    say,
)

if TYPE_CHECKING:
    from rich.table import Table

    from orion_etl.jobs.stream import StreamStats
    from orion_etl.jobs.stream_positions import PositionsReport

# No help= here: the callback's docstring (with the exit codes) is the help of `stream`.
app = typer.Typer(invoke_without_command=True, rich_markup_mode="rich")

_ROWS = [
    ("messages", "messages"),
    ("rate_per_s", "msg/s (last 10 s)"),
    ("lag", "lag"),
    ("latency_p50_ms", "latency p50 ms"),
    ("latency_p99_ms", "latency p99 ms"),
    ("loaded", "loaded"),
    ("stale", "stale dropped"),
    ("dlq", "dead-lettered"),
    ("dq_warnings", "DQ warnings"),
    ("retries", "retries"),
]


def _view(stats: StreamStats) -> Table:
    """The live view (stderr): counters, then the lag of each partition."""
    from rich.table import Table
    from rich.text import Text

    data = stats.as_dict()
    table = Table(title="orion-etl stream", show_header=False, title_justify="left")
    for key, label in _ROWS:
        table.add_row(label, Text("-" if data[key] is None else str(data[key])))
    for partition, lag in data["lag_by_partition"].items():
        table.add_row(Text(f"  lag {partition}"), Text(str(lag)))
    return table


def _summary(run_id: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"run_id": run_id, **data}


@app.callback()
def stream(
    ctx: typer.Context,
    until_caught_up: Annotated[
        bool, typer.Option("--until-caught-up", help="Stop once every assigned partition is drained.")
    ] = False,
    max_messages: Annotated[
        int | None, typer.Option("--max-messages", min=1, help="Stop after about this many messages.")
    ] = None,
    group: Annotated[
        str | None, typer.Option("--group", "-g", help="Consumer group (default: stream.group_id).")
    ] = None,
    live: Annotated[
        bool | None,
        typer.Option(
            "--live/--no-live",
            help="Live view on stderr (default: when stderr is a terminal).",
            show_default=False,
        ),
    ] = None,
    fmt: FormatOpt = None,
    metrics_addr: Annotated[
        str | None,
        typer.Option(
            "--metrics-addr",
            metavar="HOST:PORT",
            help="Serve Prometheus metrics on HOST:PORT (0.0.0.0:9464 for every address, [::]:9464).",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", min=1, max=65535, help="Shorthand for --metrics-addr 127.0.0.1:PORT."),
    ] = None,
) -> None:
    """Stream CDC and domain events into warehouse facts, in micro-batches, until stopped.

    SIGTERM/SIGINT finish the batch in hand, then stop.

    Log lines and the live view go to stderr, the final summary to stdout. A progress line is
    logged every stream.progress_log_s seconds and a WARNING for each batch with dead letters.

    Exit codes: 0 done, nothing dead-lettered; 1 some records went to the DLQ or raised DQ
    warnings; 2 bad options or configuration; 3 could not run (database unreachable at start, a
    non-transient failure). Kafka unreachable at start is retried with backoff; a signal then
    stops with exit 0 (nothing was read).
    """
    if ctx.invoked_subcommand is not None:
        return
    from orion_etl.jobs.metrics_endpoint import serve_metrics
    from orion_etl.jobs.stream import StreamStats, run_stream

    app_state = state(ctx)
    settings = app_state.settings()
    console = app_state.err_console
    serve_metrics(metrics_addr, metrics_port)
    show_live = console.is_terminal if live is None else live
    if show_live:
        from rich.live import Live

        # The log handler prints through the same console: its lines appear above the live region.
        with Live(_view(StreamStats()), console=console, refresh_per_second=4, transient=True) as view:
            result = run_stream(
                settings,
                group=group,
                until_caught_up=until_caught_up,
                max_messages=max_messages,
                on_progress=lambda s: view.update(_view(s)),
            )
    else:
        result = run_stream(settings, group=group, until_caught_up=until_caught_up, max_messages=max_messages)
    data = _summary(result.job_run_id, result.stats.as_dict())

    def human(out: OutputFormat) -> None:
        flat = {k: v for k, v in data.items() if k != "lag_by_partition"}
        flat.update({f"lag {k}": v for k, v in data["lag_by_partition"].items()})
        print_record(
            out if out is not OutputFormat.CSV else OutputFormat.PLAIN, flat, title="orion-etl stream"
        )

    finish(
        fmt if fmt is None else resolve_format(fmt),
        data,
        exit_code=result.exit_code,
        human=human,
        summary_event="stream",
        json_logs_only=app_state.json_logs,
    )


GroupOpt = Annotated[
    str | None, typer.Option("--group", "-g", help="Consumer group (default: stream.group_id).")
]
_PARTITIONS = [
    Column("topic"),
    Column("partition", justify="right"),
    Column("stored", "stored position", justify="right"),
    Column("low", justify="right"),
    Column("high", justify="right"),
    Column("lag", justify="right"),
]


def _partitions(out: OutputFormat, report: PositionsReport, title: str, *, section: bool = False) -> None:
    print_rows(out, _PARTITIONS, report.as_dict()["partitions"], title=title, section=section)


@app.command("status")
def status(ctx: typer.Context, group: GroupOpt = None, topic: TopicOpt = None, fmt: FormatOpt = None) -> None:
    """Lag per partition (stored position vs. Kafka's high watermark), loaders, CDC watermarks."""
    from orion_etl.jobs.stream_positions import positions_report

    report = positions_report(state(ctx).settings(), group=group, topics=topic)

    def human(out: OutputFormat) -> None:
        if out is OutputFormat.CSV:
            _partitions(out, report, "")
            return
        _partitions(out, report, f"loader positions of group {report.group} (lag {report.lag})", section=True)
        rows = [{**w, "age": None if w["age_s"] is None else f"{w['age_s']:.0f}s"} for w in report.watermarks]
        columns = [Column("source_table", "source table"), Column("last_lsn", "last LSN"),
                   Column("last_source_commit", "last source commit"), Column("age")]  # fmt: skip
        print_rows(
            out, columns, rows, title="CDC watermarks (newest change loaded per source table)", section=True
        )
        members = ", ".join(report.members) or "none"
        say(f"group members in Kafka: {members}; running loader runs in the ledger: {len(report.running)}")

    finish(fmt, report.as_dict(), human=human)


offsets_app = typer.Typer(
    help="The loader's positions (etl_consumer_offsets): show or reset.", no_args_is_help=True
)
app.add_typer(offsets_app, name="offsets")


@offsets_app.command("show")
def offsets_show(
    ctx: typer.Context, group: GroupOpt = None, topic: TopicOpt = None, fmt: FormatOpt = None
) -> None:
    """The group's stored positions with each partition's low/high watermark and lag."""
    from orion_etl.jobs.stream_positions import positions_report

    report = positions_report(state(ctx).settings(), group=group, topics=topic)
    print_rows(
        fmt, _PARTITIONS, report.as_dict()["partitions"], title=f"loader positions of group {report.group}"
    )


@offsets_app.command("reset")
def offsets_reset(
    ctx: typer.Context,
    to_earliest: Annotated[
        bool, typer.Option("--to-earliest", help="Read everything Kafka retains again.")
    ] = False,
    to_latest: Annotated[
        bool, typer.Option("--to-latest", help="Skip to the end (load only new records).")
    ] = False,
    to_datetime: Annotated[
        str | None,
        typer.Option(
            "--to-datetime", metavar="TIME", help="First record at or after T (ISO time or 2h, 7d ago)."
        ),
    ] = None,
    to_offset: Annotated[
        int | None, typer.Option("--to-offset", min=0, help="This offset (with --topic).")
    ] = None,
    group: GroupOpt = None,
    topic: TopicOpt = None,
    partition: Annotated[int | None, typer.Option("--partition", min=0, help="Only this partition.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan, change nothing.")] = False,
    fmt: FormatOpt = None,
) -> None:
    """Move the loader's positions (refused while a loader of the group runs; exit 3).

    Positions are clamped to what Kafka retains. Replaying is safe: upserts are guarded by the
    source position, so records loaded again change nothing.
    """
    from orion_etl.core.timeparse import parse_optional_time
    from orion_etl.jobs.stream_positions import parse_target, reset_offsets

    target = parse_target(
        earliest=to_earliest,
        latest=to_latest,
        at=parse_optional_time(to_datetime, "--to-datetime"),
        offset=to_offset,
    )
    report = reset_offsets(
        state(ctx).settings(), target, group=group, topics=topic, partition=partition, dry_run=dry_run
    )

    def human(out: OutputFormat) -> None:
        rows = [{"topic": r.topic, "partition": r.partition, "current": r.current, "new": r.new, "low": r.low,
                 "high": r.high, "to_load": r.high - r.new} for r in report.plan]  # fmt: skip
        columns: list[Column | str] = ["topic", "partition", "current", "new", "low", "high"]
        columns.append(Column("to_load", "to load"))
        title = f"{'plan: ' if dry_run else ''}reset group {report.group} to {target.describe()}"
        print_rows(out, columns, rows, title=title)
        if out is not OutputFormat.CSV:
            verb = "would change" if dry_run else "changed"
            say(f"{verb} {report.changed} of {len(report.plan)} partition positions")

    finish(fmt, report.as_dict(), human=human)
