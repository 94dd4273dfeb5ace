"""`orion-etl cdc prepare|status|snapshot`: get a source ready for Debezium, watch its replication
health, ask for incremental snapshots."""

from __future__ import annotations

from typing import Annotated

import typer

from orion_etl.cli.context import state
from orion_etl.cli.options import DryRunOpt, EnvOpt
from orion_etl.cli.render import Column, FormatOpt, OutputFormat, finish, finish_report, print_rows, say

app = typer.Typer(
    help="Prepare the source database for CDC and check replication health.", no_args_is_help=True
)


@app.command("prepare")
def prepare(
    ctx: typer.Context, env: EnvOpt = None, dry_run: DryRunOpt = False, fmt: FormatOpt = None
) -> None:
    """Check wal_level and privileges, create/extend the publication, set REPLICA IDENTITY FULL (idempotent).

    Exit 0 when ready, 1 with warnings, 4 when something could not be done.
    """
    from orion_etl.config.cdc_target import resolve_target
    from orion_etl.jobs import cdc as job

    settings = state(ctx).settings()
    report = job.prepare(resolve_target(settings, env), settings.warehouse, dry_run=dry_run)
    data = report.to_document()

    def human(out: OutputFormat) -> None:
        if out is OutputFormat.CSV:
            print_rows(out, ["outcome", "item", "detail"], data["steps"])
            return
        for step in report.steps:  # already one aligned line per step
            say(f"{step.outcome:<12} {step.item}: {step.detail}")
        counts = {
            o: sum(s.outcome == o for s in report.steps) for o in ("changed", "would-change", "could-not")
        }
        summary = ", ".join(f"{n} {o}" for o, n in counts.items() if n) or "nothing to change"
        say(f"cdc prepare ({report.env}, {report.database}): {summary}")

    finish_report(fmt, report, human=human)


@app.command("status")
def status(ctx: typer.Context, env: EnvOpt = None, fmt: FormatOpt = None) -> None:
    """Replication slots (WAL retained, lag), publication drift and heartbeat age, against thresholds.

    Exit 0 healthy, 1 warnings (inactive slot, WAL above the warn threshold, stale heartbeat),
    4 failures (slot missing or lost, inactive slot over max_retained_wal_bytes, tables not published).
    """
    from orion_etl.config.cdc_target import resolve_target
    from orion_etl.core.replication_health import human_bytes
    from orion_etl.jobs import cdc as job

    result = job.replication_status(resolve_target(state(ctx).settings(), env))
    report = result.document

    def human(out: OutputFormat) -> None:
        rows = [
            {
                "slot": s["slot_name"] + (" *" if s["slot_name"] == report["slot_name"] else ""),
                "active": bool(s["active"]),
                "wal_status": s["wal_status"],
                "retained": human_bytes(s["retained_wal_bytes"]),
                "flush_lag": human_bytes(s["flush_lag_bytes"]),
                "safe_wal_size": human_bytes(s["safe_wal_size_bytes"])
                if s["safe_wal_size_bytes"] is not None
                else "unlimited",
            }
            for s in report["slots"]
        ]
        columns = [
            Column("slot"), Column("active"), Column("wal_status"), Column("retained", "retained WAL"),
            Column("flush_lag", "flush lag"), Column("safe_wal_size", "safe WAL size"),
        ]  # fmt: skip
        title = f"replication slots ({report['database']}, wal_level={report['wal_level']})"
        if out is OutputFormat.CSV:
            print_rows(out, columns, rows)
            return
        print_rows(out, columns, rows, title=title)
        for finding in report["findings"]:
            say(f"{finding['level']:<8} {finding['check']}: {finding['message']}")

    finish_report(fmt, result, human=human)


@app.command("snapshot")
def snapshot(
    ctx: typer.Context,
    table: Annotated[
        list[str] | None,
        typer.Option(
            "--table", metavar="TABLE", help="A captured table (repeat for several), e.g. --table trades."
        ),
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
    env: EnvOpt = None,
    fmt: FormatOpt = None,
) -> None:
    """Ask the Debezium connector for an incremental snapshot (a signal in cdc.signal_table).

    The rows are re-read in chunks while streaming continues and arrive as `op = r` events; the
    loader's upserts absorb them (refreshed, never doubled). Exit 0 when the signal was sent.
    """
    from orion_etl.config.cdc_target import resolve_target
    from orion_etl.jobs import cdc as job

    settings = state(ctx).settings()
    result = job.request_snapshot(
        resolve_target(settings, env), settings.warehouse, table or [], condition=condition, stop=stop
    )

    def human(out: OutputFormat) -> None:
        what = "stop of the incremental snapshot" if stop else "incremental snapshot"
        tables = ", ".join(result["tables"]) or "all tables"
        say(f"{what} of {tables} requested (signal {result['id']} in {result['signal_table']})")

    finish(fmt, result, human=human)
