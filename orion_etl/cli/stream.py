"""`orion-etl stream`: run the streaming loader (Kafka -> warehouse facts)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.live import Live
from rich.table import Table

from orion_etl.adapters import metrics
from orion_etl.cli.context import state
from orion_etl.cli.render import OutputFormat, print_json
from orion_etl.errors import UsageError
from orion_etl.jobs.stream import StreamStats, run_stream

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
