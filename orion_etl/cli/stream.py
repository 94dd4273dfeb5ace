"""`orion-etl stream`: run the streaming loader (Kafka -> warehouse facts)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from orion_etl.cli.context import state
from orion_etl.cli.render import FormatOpt, OutputFormat, finish, print_record, resolve_format

if TYPE_CHECKING:
    from rich.table import Table

    from orion_etl.jobs.stream import StreamStats

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
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", min=1, max=65535, help="Serve Prometheus metrics on 127.0.0.1:PORT."),
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
    from orion_etl.adapters import metrics
    from orion_etl.jobs.stream import StreamStats, run_stream

    app_state = state(ctx)
    settings = app_state.settings()
    console = app_state.err_console
    if metrics_port is not None:
        metrics.serve(metrics_port)
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
