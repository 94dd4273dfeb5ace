"""`orion-etl db migrate|status`: versioned schema migrations for the warehouse and the demo source."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from orion_etl.cli.context import state
from orion_etl.cli.render import Column, FormatOpt, OutputFormat, finish_report, print_rows, say
from orion_etl.errors import exit_code_for

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
    from orion_etl.jobs import db as job

    report = job.migrate(_targets(target, state(ctx).settings()))

    def human(out: OutputFormat) -> None:
        for r in report.targets:
            for m in r["applied"]:
                say(f"{r['target']}: applied {m}")
            if not r["applied"]:
                say(f"{r['target']}: up to date ({r['database']})")

    finish_report(fmt, report, human=human)


@app.command("status")
def status(ctx: typer.Context, target: TargetOpt = Target.WAREHOUSE, fmt: FormatOpt = None) -> None:
    """List migrations with their state; exit 1 when some are pending, 4 on drift."""
    from orion_etl.jobs import db as job

    report = job.migration_status(_targets(target, state(ctx).settings()))
    columns = [Column("target"), Column("version"), Column("name"), Column("state"),
               Column("applied_at", "applied at")]  # fmt: skip
    code = exit_code_for(report)
    print_rows(fmt, columns, report.migrations, title="migrations", exit_code=code)
    raise typer.Exit(code)
