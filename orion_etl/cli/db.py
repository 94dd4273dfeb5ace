"""`orion-etl db migrate|status`: versioned schema migrations for the warehouse and the demo source."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from orion_etl.adapters import migrations
from orion_etl.adapters.postgres import connect
from orion_etl.cli.context import state
from orion_etl.cli.render import OutputFormat, print_json, print_table
from orion_etl.config.models import OrionSettings, PostgresSettings
from orion_etl.errors import ExitCode

app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)


class Target(StrEnum):
    """Which database a migration set belongs to."""

    WAREHOUSE = "warehouse"
    SOURCE = "source"
    ALL = "all"


def _targets(target: Target, settings: OrionSettings) -> list[tuple[str, PostgresSettings]]:
    pairs: list[tuple[str, PostgresSettings]] = [
        ("warehouse", settings.warehouse),
        ("source", settings.source),
    ]
    return [p for p in pairs if target is Target.ALL or p[0] == target.value]


@app.command("migrate")
def migrate(
    ctx: typer.Context,
    target: Annotated[
        Target, typer.Option("--target", "-t", help="warehouse (default), source (demo/test schema) or all")
    ] = Target.WAREHOUSE,
) -> None:
    """Apply pending migrations in one transaction under an advisory lock (no-op when none)."""
    settings = state(ctx).settings()
    for name, pg in _targets(target, settings):
        with connect(pg, autocommit=True) as conn:
            applied = migrations.migrate(conn, name)
        if applied:
            for m in applied:
                typer.echo(f"{name}: applied {m.path.name}")
        else:
            typer.echo(f"{name}: up to date ({pg.describe()})")


@app.command("status")
def status(
    ctx: typer.Context,
    target: Annotated[Target, typer.Option("--target", "-t")] = Target.WAREHOUSE,
    fmt: Annotated[OutputFormat, typer.Option("--format")] = OutputFormat.TABLE,
) -> None:
    """List migrations with their state; exit 1 when some are pending, 2 on drift."""
    app_state = state(ctx)
    settings = app_state.settings()
    report = []
    for name, pg in _targets(target, settings):
        with connect(pg) as conn:
            for st in migrations.status(conn, name):
                state_word = "drifted" if st.drifted else ("applied" if st.applied_at else "pending")
                report.append(
                    {
                        "target": name,
                        "version": st.migration.version,
                        "name": st.migration.name,
                        "state": state_word,
                        "applied_at": st.applied_at.isoformat() if st.applied_at else None,
                    }
                )
    if fmt is OutputFormat.JSON:
        print_json(report)
    else:
        print_table(
            app_state.console,
            "migrations",
            ["target", "version", "name", "state", "applied at"],
            [
                [r["target"], f"V{r['version']:03d}", r["name"], r["state"], r["applied_at"] or "-"]
                for r in report
            ],
        )
    if any(r["state"] == "drifted" for r in report):
        raise typer.Exit(int(ExitCode.FAILURE))
    if any(r["state"] == "pending" for r in report):
        raise typer.Exit(int(ExitCode.WARNINGS))
