"""`orion-etl stream`: run the streaming loader (Kafka -> warehouse facts); `stream status` and
`stream offsets show|reset` look at and move its positions."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.live import Live
from rich.table import Table

from orion_etl.adapters import metrics
from orion_etl.cli.context import state
from orion_etl.cli.render import OutputFormat, print_json, print_table
from orion_etl.core.timeparse import parse_optional_time
from orion_etl.errors import UsageError
from orion_etl.jobs.stream import StreamStats, run_stream
from orion_etl.jobs.stream_positions import PositionsReport, parse_target, positions_report, reset_offsets

app = typer.Typer(help="Stream CDC and domain events into warehouse facts.", invoke_without_command=True)

_ROWS = [
    ("messages", "messages"),
    ("rate_per_s", "msg/s"),
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
    data = stats.as_dict()
    table = Table(title="orion-etl stream", show_header=False)
    for key, label in _ROWS:
        table.add_row(label, "-" if data[key] is None else str(data[key]))
    return table


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
        str | None, typer.Option("--group", help="Consumer group (default: stream.group_id).")
    ] = None,
    fmt: Annotated[
        OutputFormat, typer.Option("--format", help="Summary as a table or JSON.")
    ] = OutputFormat.TABLE,
    metrics_addr: Annotated[
        str | None,
        typer.Option(
            "--metrics-addr",
            help="Serve Prometheus metrics on HOST:PORT (0.0.0.0:9464 for every address, [::]:9464).",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", min=1, max=65535, help="Shorthand for --metrics-addr 127.0.0.1:PORT."),
    ] = None,
) -> None:
    """Consume the configured topics in micro-batches until stopped (SIGTERM/SIGINT finish the batch).

    Exit 0: done, nothing dead-lettered; 1: some records went to the DLQ or raised DQ warnings;
    3: could not run (database unreachable at start, a non-transient failure). Kafka unreachable at
    start is retried with backoff; a signal then stops with exit 0 (nothing was read).
    """
    if ctx.invoked_subcommand is not None:
        return
    app_state = state(ctx)
    if metrics_addr is not None and metrics_port is not None:
        raise UsageError("give --metrics-addr or --metrics-port, not both")
    address: tuple[str, int] | None = ("127.0.0.1", metrics_port) if metrics_port is not None else None
    if metrics_addr is not None:
        try:
            address = metrics.parse_addr(metrics_addr)
        except ValueError as exc:
            raise UsageError(f"--metrics-addr: {exc}") from None
    settings = app_state.settings()
    console = app_state.err_console
    if address is not None:
        try:
            metrics.serve(*address)
        except OSError as exc:
            raise UsageError(f"--metrics-addr: cannot listen on {address[0]}:{address[1]}: {exc}") from None
    if console.is_terminal and fmt is OutputFormat.TABLE:
        with Live(_view(StreamStats()), console=console, refresh_per_second=4, transient=True) as live:
            result = run_stream(
                settings,
                group=group,
                until_caught_up=until_caught_up,
                max_messages=max_messages,
                on_progress=lambda s: live.update(_view(s)),
            )
    else:
        result = run_stream(settings, group=group, until_caught_up=until_caught_up, max_messages=max_messages)
    summary = {"job_run_id": result.job_run_id, **result.stats.as_dict()}
    if fmt is OutputFormat.JSON:
        print_json(summary)
    else:
        app_state.console.print(_view(result.stats))
    raise typer.Exit(result.exit_code)


TopicOption = Annotated[
    list[str] | None, typer.Option("--topic", help="A topic (repeatable; default: the configured ones).")
]
GroupOption = Annotated[
    str | None, typer.Option("--group", help="Consumer group (default: stream.group_id).")
]
FormatOption = Annotated[OutputFormat, typer.Option("--format")]


def _partitions_table(ctx: typer.Context, report: PositionsReport, title: str) -> None:
    print_table(
        state(ctx).console,
        title,
        ["topic", "partition", "stored position", "low", "high", "lag"],
        [[p.topic, p.partition, "-" if p.stored is None else p.stored, p.low, p.high, p.lag]
         for p in report.partitions],
    )  # fmt: skip


@app.command("status")
def status(
    ctx: typer.Context,
    group: GroupOption = None,
    topic: TopicOption = None,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Lag per partition (stored position vs. Kafka's high watermark), loaders, CDC watermarks."""
    report = positions_report(state(ctx).settings(), group=group, topics=topic)
    if fmt is OutputFormat.JSON:
        print_json(report.as_dict())
        return
    _partitions_table(ctx, report, f"loader positions of group {report.group} (lag {report.lag})")
    print_table(
        state(ctx).console,
        "CDC watermarks (newest change loaded per source table)",
        ["source table", "last LSN", "last source commit", "age"],
        [[w["source_table"], w["last_lsn"], w["last_source_commit"],
          "-" if w["age_s"] is None else f"{w['age_s']:.0f}s"] for w in report.watermarks],
    )  # fmt: skip
    members = ", ".join(report.members) or "none"
    typer.echo(f"group members in Kafka: {members}; running loader runs in the ledger: {len(report.running)}")


offsets_app = typer.Typer(
    help="The loader's positions (etl_consumer_offsets): show or reset.", no_args_is_help=True
)
app.add_typer(offsets_app, name="offsets")


@offsets_app.command("show")
def offsets_show(
    ctx: typer.Context,
    group: GroupOption = None,
    topic: TopicOption = None,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """The group's stored positions with each partition's low/high watermark and lag."""
    report = positions_report(state(ctx).settings(), group=group, topics=topic)
    if fmt is OutputFormat.JSON:
        print_json(report.as_dict()["partitions"])
        return
    _partitions_table(ctx, report, f"loader positions of group {report.group}")


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
        str | None, typer.Option("--to-datetime", help="First record at or after T (ISO time or 2h, 7d ago).")
    ] = None,
    to_offset: Annotated[
        int | None, typer.Option("--to-offset", min=0, help="This offset (with --topic).")
    ] = None,
    group: GroupOption = None,
    topic: TopicOption = None,
    partition: Annotated[int | None, typer.Option("--partition", min=0, help="Only this partition.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan, change nothing.")] = False,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Move the loader's positions (refused while a loader of the group runs; exit 3).

    Positions are clamped to what Kafka retains. Replaying is safe: upserts are guarded by the
    source position, so records loaded again change nothing.
    """
    target = parse_target(
        earliest=to_earliest,
        latest=to_latest,
        at=parse_optional_time(to_datetime, "--to-datetime"),
        offset=to_offset,
    )
    report = reset_offsets(
        state(ctx).settings(), target, group=group, topics=topic, partition=partition, dry_run=dry_run
    )
    if fmt is OutputFormat.JSON:
        print_json(report.as_dict())
        return
    print_table(
        state(ctx).console,
        f"{'plan: ' if dry_run else ''}reset group {report.group} to {target.describe()}",
        ["topic", "partition", "current", "new", "low", "high", "to load"],
        [[r.topic, r.partition, "-" if r.current is None else r.current, r.new, r.low, r.high, r.high - r.new]
         for r in report.plan],
    )  # fmt: skip
    verb = "would change" if dry_run else "changed"
    typer.echo(f"{verb} {report.changed} of {len(report.plan)} partition positions")
