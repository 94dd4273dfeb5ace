"""`orion-etl db migrate|status`: versioned schema migrations for the warehouse and the demo source."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from orion_etl.cli.context import state
from orion_etl.cli.render import Column, FormatOpt, OutputFormat, finish, print_rows, say
from orion_etl.errors import ExitCode

if TYPE_CHECKING:
    from orion_etl.config.models import OrionSettings, PostgresSettings

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


TargetOpt = Annotated[
    Target,
    typer.Option(
        "--target", case_sensitive=False, help="warehouse (default), source (demo/test schema) or all"
    ),
]


@app.command("migrate")
def migrate(ctx: typer.Context, target: TargetOpt = Target.WAREHOUSE, fmt: FormatOpt = None) -> None:
    """Apply pending migrations in one transaction under an advisory lock (no-op when none)."""
    from orion_etl.adapters import migrations
    from orion_etl.adapters.postgres import connect

    settings = state(ctx).settings()
    results = []
    for name, pg in _targets(target, settings):
        with connect(pg, autocommit=True) as conn:
            applied = migrations.migrate(conn, name)
        results.append({"target": name, "database": pg.describe(), "applied": [m.path.name for m in applied]})

    def human(out: OutputFormat) -> None:
        for r in results:
            for m in r["applied"]:
                say(f"{r['target']}: applied {m}")
            if not r["applied"]:
                say(f"{r['target']}: up to date ({r['database']})")

    finish(fmt, {"targets": results}, human=human)


@app.command("status")
def status(ctx: typer.Context, target: TargetOpt = Target.WAREHOUSE, fmt: FormatOpt = None) -> None:
    """List migrations with their state; exit 1 when some are pending, 2 on drift."""
    from orion_etl.adapters import migrations
    from orion_etl.adapters.postgres import connect

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
                        "applied_at": st.applied_at,
                    }
                )
    code = ExitCode.OK
    if any(r["state"] == "pending" for r in report):
        code = ExitCode.WARNINGS
    if any(r["state"] == "drifted" for r in report):
        code = ExitCode.FAILURE
    columns = [Column("target"), Column("version"), Column("name"), Column("state"),
               Column("applied_at", "applied at")]  # fmt: skip
    print_rows(fmt, columns, report, title="migrations", exit_code=int(code))
    raise typer.Exit(int(code))
