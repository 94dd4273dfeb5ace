"""`orion-etl dims sync|check`: SCD Type 2 / Type 1 dimension synchronisation."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from orion_etl.cli.context import state
from orion_etl.cli.render import FormatOpt, OutputFormat, finish_report, print_rows
from orion_etl.errors import UsageError

app = typer.Typer(help="Dimension sync (SCD2/SCD1 with surrogate keys) and checks.", no_args_is_help=True)


class Dimension(StrEnum):
    """`--dimension` choices."""

    CLIENT = "client"
    INSTRUMENT = "instrument"
    LP = "lp"
    ALL = "all"


DimensionOpt = Annotated[
    Dimension, typer.Option("--dimension", "-D", case_sensitive=False, help="client | instrument | lp | all")
]


@app.command("sync")
def sync(
    ctx: typer.Context,
    dimension: DimensionOpt = Dimension.ALL,
    full: Annotated[
        bool, typer.Option("--full", help="Read every source row; close members deleted in the source.")
    ] = False,
    from_cdc: Annotated[
        bool, typer.Option("--from-cdc", help="Apply changes from the Debezium topics until caught up.")
    ] = False,
    fmt: FormatOpt = None,
) -> None:
    """Bring dimensions up to date; exit 1 when changes were skipped (stale or undecodable)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from orion_etl.jobs import dims as dims_job
    from orion_etl.jobs import dims_cdc

    if full and from_cdc:
        raise UsageError("--full and --from-cdc cannot be combined")
    app_state = state(ctx)
    settings = app_state.settings()
    names = dims_job.selected(dimension.value)
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=app_state.err_console,
        disable=not app_state.err_console.is_terminal,
        transient=True,
    ) as bar:
        tasks = {n: bar.add_task(f"{n}: waiting", total=1) for n in names}

        def step(name: str, phase: str) -> None:
            bar.update(tasks[name], description=f"{name}: {phase}", completed=1 if phase == "done" else 0)

        if from_cdc:
            report = dims_cdc.sync_cdc(settings, dimension.value, progress=step)
        else:
            report = dims_job.sync_batch(settings, dimension.value, full=full, progress=step)
    data = report.to_document()

    def human(out: OutputFormat) -> None:
        columns = ["dimension", "read", "inserted", "scd1", "scd2", "closed", "completed_inferred"]
        columns += ["unchanged", "stale", "undecodable", "rejected", "rekeyed_facts"]
        print_rows(out, columns, data["dimensions"], title=f"dims sync ({data['mode']})")

    finish_report(
        fmt,
        report,
        human=human,
        summary_event="dims-sync",
        json_logs_only=app_state.json_logs,
    )


@app.command("check")
def check(ctx: typer.Context, dimension: DimensionOpt = Dimension.ALL, fmt: FormatOpt = None) -> None:
    """Check SCD2 invariants and that facts carry the version valid at their time; exit 4 on violation."""
    from orion_etl.jobs import dims as dims_job

    report = dims_job.check_report(state(ctx).settings(), dimension.value)
    finish_report(
        fmt,
        report,
        human=lambda out: print_rows(out, ["dimension", "check", "violations", "samples"], report.rows(),
                                     title="dimension checks"),
    )  # fmt: skip
