"""`orion-etl jobs list|show`: the job ledger (`etl_job_runs`)."""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Annotated

import typer

from orion_etl.adapters.jobruns import get_job_run, list_job_runs
from orion_etl.cli.context import state
from orion_etl.cli.render import OutputFormat, print_json, print_table
from orion_etl.core.timeparse import parse_optional_time
from orion_etl.errors import UsageError

app = typer.Typer(help="The job ledger: what ran, when, how it ended.", no_args_is_help=True)


class Status(StrEnum):
    """Life states and outcomes of a run (see adapters/jobruns.py)."""

    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    ABANDONED = "ABANDONED"
    SUCCESS = "SUCCESS"
    WARNING = "WARNING"
    ERROR = "ERROR"
    INTERRUPTED = "INTERRUPTED"


@app.command("list")
def list_runs(
    ctx: typer.Context,
    job: Annotated[str | None, typer.Option("--job", help="Job name, e.g. dims-sync.")] = None,
    job_type: Annotated[str | None, typer.Option("--type", help="STREAM, DIMENSION_SYNC, ...")] = None,
    status: Annotated[
        Status | None,
        typer.Option(
            "--status",
            help="RUNNING, COMPLETED, FAILED (exit >= 2 or interrupted), ABANDONED (process died), "
            "or an outcome: SUCCESS, WARNING, ERROR, INTERRUPTED.",
        ),
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="2h, 7d or an ISO time.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 20,
    fmt: Annotated[OutputFormat, typer.Option("--format")] = OutputFormat.TABLE,
) -> None:
    """Recent job runs, newest first."""
    app_state = state(ctx)
    runs = list_job_runs(
        app_state.settings().warehouse,
        job_name=job,
        job_type=job_type.upper() if job_type else None,
        status=status.value if status else None,
        since=parse_optional_time(since, "--since"),
        limit=limit,
    )
    if fmt is OutputFormat.JSON:
        print_json([r.as_dict() for r in runs])
        return
    print_table(
        app_state.console,
        "job runs",
        ["id", "job", "type", "status", "exit", "started", "duration", "processed", "failed", "error"],
        [
            [
                str(r.id)[:8],
                r.job_name,
                r.job_type,
                r.outcome or r.status,
                "-" if r.exit_code is None else r.exit_code,
                r.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                f"{r.duration_s:.1f}s" if r.duration_s is not None else "-",
                r.records_processed,
                r.records_failed,
                (r.error_message or "")[:60],
            ]
            for r in runs
        ],
    )


@app.command("show")
def show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="Run id or unique prefix (from `jobs list`).")],
    fmt: Annotated[OutputFormat, typer.Option("--format")] = OutputFormat.TABLE,
) -> None:
    """One run in full, with its metadata."""
    if not re.fullmatch(r"[0-9a-fA-F-]{4,36}", run_id):
        raise UsageError(f"{run_id!r} is not a job run id (hex, at least 4 characters)")
    record = get_job_run(state(ctx).settings().warehouse, run_id.lower())
    if record is None:
        raise UsageError(f"no single job run matches {run_id!r}")
    data = record.as_dict()
    if fmt is OutputFormat.JSON:
        print_json(data)
        return
    for key, value in data.items():
        if key == "metadata":
            value = json.dumps(value, indent=2, default=str)
        typer.echo(f"{key:>18}: {value}")
