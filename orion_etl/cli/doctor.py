"""`orion-etl doctor`: is the system this configuration points at ready? A line per check."""

from __future__ import annotations

from typing import Annotated

import typer

from orion_etl.cli.context import state
from orion_etl.cli.render import Column, FormatOpt, OutputFormat, Styled, finish_report, print_rows

_STYLE = {"ok": "green", "skipped": "dim", "warning": "yellow", "failure": "red", "error": "magenta"}


def doctor(
    ctx: typer.Context,
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", min=1, max=65535, help="Also check that 127.0.0.1:PORT is free."),
    ] = 9464,
    fmt: FormatOpt = None,
) -> None:
    """Check the live system: config and DQ rules, source reachable with wal_level=logical and a healthy
    slot, Kafka reachable with the topics, Connect reachable with Debezium and the connector's state,
    warehouse reachable and migrated, the metrics port free.

    Exit codes: 0 all ok, 1 warnings, 4 failures (config or system to fix), 3 something unreachable.
    """
    from orion_etl.jobs.doctor import doctor as run_doctor

    app_state = state(ctx)
    report = run_doctor(app_state.config_path, metrics_port)
    if report.settings is not None:
        app_state.adopt(report.settings, report.source)
    rows = [
        {"level": Styled(c.level, _STYLE[c.level]), "check": c.check, "detail": c.detail}
        for c in report.checks
    ]

    def human(out: OutputFormat) -> None:
        print_rows(out, [Column("level"), Column("check"), Column("detail")], rows, title="orion-etl doctor")

    finish_report(fmt, report, human=human)
