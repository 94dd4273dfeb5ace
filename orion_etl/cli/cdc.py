"""`orion-etl cdc prepare|status`: get a source ready for Debezium, watch its replication health."""

from __future__ import annotations

from typing import Annotated

import typer

from orion_etl.cli.connectors import EnvOption, FormatOption
from orion_etl.cli.context import state
from orion_etl.cli.render import OutputFormat, print_json, print_table
from orion_etl.core.cdc_target import resolve_target
from orion_etl.core.replication_health import human_bytes
from orion_etl.jobs import cdc as job

app = typer.Typer(
    help="Prepare the source database for CDC and check replication health.", no_args_is_help=True
)


@app.command("prepare")
def prepare(
    ctx: typer.Context,
    env: EnvOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would change; change nothing.")
    ] = False,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Check wal_level and privileges, create/extend the publication, set REPLICA IDENTITY FULL (idempotent).

    Exit 0 when ready, 1 with warnings, 2 when something could not be done.
    """
    settings = state(ctx).settings()
    report = job.prepare(resolve_target(settings, env), settings.warehouse, dry_run=dry_run)
    if fmt is OutputFormat.JSON:
        print_json(report.as_dict())
    else:
        for step in report.steps:
            typer.echo(f"{step.outcome:<12} {step.item}: {step.detail}")
        counts = {
            o: sum(s.outcome == o for s in report.steps) for o in ("changed", "would-change", "could-not")
        }
        summary = ", ".join(f"{n} {o}" for o, n in counts.items() if n) or "nothing to change"
        typer.echo(f"cdc prepare ({report.env}, {report.database}): {summary}")
    raise typer.Exit(report.exit_code)


@app.command("status")
def status(ctx: typer.Context, env: EnvOption = None, fmt: FormatOption = OutputFormat.TABLE) -> None:
    """Replication slots (WAL retained, lag), publication drift and heartbeat age, against thresholds.

    Exit 0 healthy, 1 warnings (inactive slot, WAL above the warn threshold, stale heartbeat),
    2 failures (slot missing or lost, inactive slot over max_retained_wal_bytes, tables not published).
    """
    report = job.replication_status(resolve_target(state(ctx).settings(), env))
    if fmt is OutputFormat.JSON:
        print_json(report)
        raise typer.Exit(report["exit_code"])
    console = state(ctx).console
    print_table(
        console,
        f"replication slots ({report['database']}, wal_level={report['wal_level']})",
        ["slot", "active", "wal_status", "retained WAL", "flush lag", "safe WAL size"],
        [
            [
                s["slot_name"] + (" *" if s["slot_name"] == report["slot_name"] else ""),
                "yes" if s["active"] else "no",
                s["wal_status"],
                human_bytes(s["retained_wal_bytes"]),
                human_bytes(s["flush_lag_bytes"]),
                human_bytes(s["safe_wal_size_bytes"])
                if s["safe_wal_size_bytes"] is not None
                else "unlimited",
            ]
            for s in report["slots"]
        ],
    )
    for finding in report["findings"]:
        typer.echo(f"{finding['level']:<8} {finding['check']}: {finding['message']}")
    raise typer.Exit(report["exit_code"])


@app.command("snapshot")
def snapshot(
    ctx: typer.Context,
    table: Annotated[
        list[str] | None,
        typer.Option("--table", "-t", help="A captured table (repeat for several), e.g. --table trades."),
    ] = None,
    condition: Annotated[
        str | None,
        typer.Option(
            "--filter",
            help="SQL condition on that one table, e.g. \"trade_date >= '2026-01-01'\" (run by Debezium).",
        ),
    ] = None,
    stop: Annotated[
        bool,
        typer.Option("--stop", help="Stop the running incremental snapshot of these tables (all if none)."),
    ] = False,
    env: EnvOption = None,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Ask the Debezium connector for an incremental snapshot (a signal in cdc.signal_table).

    The rows are re-read in chunks while streaming continues and arrive as `op = r` events; the
    loader's upserts absorb them (refreshed, never doubled). Exit 0 when the signal was sent.
    """
    settings = state(ctx).settings()
    result = job.request_snapshot(
        resolve_target(settings, env), settings.warehouse, table or [], condition=condition, stop=stop
    )
    if fmt is OutputFormat.JSON:
        print_json(result)
    else:
        what = "stop of the incremental snapshot" if stop else "incremental snapshot"
        tables = ", ".join(result["tables"]) or "all tables"
        typer.echo(f"{what} of {tables} requested (signal {result['id']} in {result['signal_table']})")
