"""`orion-etl jobs list|show`: the job ledger (`etl_job_runs`)."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

import typer

from orion_etl.cli.context import state
from orion_etl.cli.options import LimitOpt, SinceOpt
from orion_etl.cli.render import Column, FormatOpt, OutputFormat, print_json, print_rows, resolve_format
from orion_etl.errors import UsageError

app = typer.Typer(help="The job ledger: what ran, when, how it ended.", no_args_is_help=True)


class Status(StrEnum):
    """Life states and outcomes of a run (see jobs/ledger.py)."""

    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    ABANDONED = "ABANDONED"
    SUCCESS = "SUCCESS"
    WARNING = "WARNING"
    ERROR = "ERROR"
    INTERRUPTED = "INTERRUPTED"


_COLUMNS = [
    Column("run_id", "run id"),
    Column("job_name", "job"),
    Column("job_type", "type"),
    Column("status"),
    Column("outcome"),
    Column("exit_code", "exit", justify="right"),
    Column("started_at", "started"),
    Column("duration_s", "duration s", justify="right"),
    Column("records_processed", "processed", justify="right"),
    Column("records_failed", "failed", justify="right"),
    Column("error_message", "error"),
]


@app.command("list")
def list_runs(
    ctx: typer.Context,
    job: Annotated[
        list[str] | None,
        typer.Option("--job", "-j", metavar="NAME", help="Job name, e.g. dims-sync (repeatable)."),
    ] = None,
    job_type: Annotated[
        list[str] | None,
        typer.Option("--type", metavar="TYPE", help="STREAM, DIMENSION_SYNC, ... (repeatable, any case)."),
    ] = None,
    status: Annotated[
        list[Status] | None,
        typer.Option(
            "--status",
            "-s",
            case_sensitive=False,
            help="RUNNING, COMPLETED, FAILED (exit >= 2 or interrupted), ABANDONED (process died), "
            "or an outcome: SUCCESS, WARNING, ERROR, INTERRUPTED (repeatable, any case).",
        ),
    ] = None,
    since: SinceOpt = None,
    limit: LimitOpt = 50,
    fmt: FormatOpt = None,
) -> None:
    """Recent job runs, newest first."""
    from orion_etl.core.timeparse import parse_optional_time
    from orion_etl.jobs.ledger import recent_runs

    app_state = state(ctx)
    runs = recent_runs(
        app_state.settings().warehouse,
        job_names=list(job) if job else None,
        job_types=[t.upper() for t in job_type] if job_type else None,
        statuses=[s.value for s in status] if status else None,
        since=parse_optional_time(since, "--since"),
        limit=limit,
    )
    rows = []
    for r in runs:
        row = r.as_dict()
        row.pop("metadata")
        row["duration_s"] = None if r.duration_s is None else round(r.duration_s, 1)
        rows.append(row)
    print_rows(fmt, _COLUMNS, rows, title="job runs")


@app.command("show")
def show(
    ctx: typer.Context,
    run_id: Annotated[str, typer.Argument(help="Run id or unique prefix (from `jobs list`).")],
    fmt: FormatOpt = None,
) -> None:
    """One run in full, with its metadata."""
    from orion_etl.jobs.ledger import find_run

    if not re.fullmatch(r"[0-9a-fA-F-]{4,36}", run_id):
        raise UsageError(f"{run_id!r} is not a job run id (hex, at least 4 characters)")
    record = find_run(state(ctx).settings().warehouse, run_id.lower())
    if record is None:
        raise UsageError(f"no single job run matches {run_id!r}")
    data = record.as_dict()
    data["duration_s"] = record.duration_s
    resolved = resolve_format(fmt)
    if resolved is OutputFormat.JSON:
        print_json({"run_id": data["run_id"], "run": data})
        return
    metadata = data.pop("metadata") or {}
    fields = [[k, v] for k, v in data.items()]
    fields += [[f"metadata.{k}", v] for k, v in sorted(metadata.items())]
    print_rows(resolved, [Column("field"), Column("value")], fields, title=f"job run {data['run_id']}")
