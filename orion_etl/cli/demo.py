"""`orion-etl demo generate|verify`: synthetic trading activity through the real pipeline."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from orion_etl.cli.context import state
from orion_etl.cli.render import FormatOpt, OutputFormat, finish_report, print_rows, say
from orion_etl.errors import UsageError

app = typer.Typer(help="Demo: synthetic trading activity through the whole pipeline.", no_args_is_help=True)

DEFAULT_MANIFEST = Path(".orion-demo/manifest.json")


class Stage(StrEnum):
    """How much of the pipeline `verify` checks."""

    FACTS = "facts"
    ALL = "all"


def _day(value: str | None) -> date:
    if value is None:
        return datetime.now(UTC).date() - timedelta(days=1)
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"--day {value!r}: expected YYYY-MM-DD") from None


@app.command("generate")
def generate(
    ctx: typer.Context,
    orders: Annotated[int, typer.Option(min=1, max=5_000_000, help="Orders (trades follow fills).")] = 500,
    clients: Annotated[int, typer.Option(min=1, max=1_000_000)] = 25,
    lps: Annotated[int, typer.Option(min=1, max=1000)] = 5,
    tenants: Annotated[int, typer.Option(min=1, max=100)] = 2,
    trade_events_count: Annotated[
        int, typer.Option("--trade-events", min=0, help="Event-only trades on trade.executed.")
    ] = 100,
    quotes_per_pair: Annotated[int, typer.Option(min=0, help="Quotes per (tenant, instrument, LP).")] = 40,
    risk_per_client: Annotated[int, typer.Option(min=0, help="risk.snapshot events per client.")] = 4,
    seed: Annotated[int | None, typer.Option(help="Random seed (default: from the clock).")] = None,
    day: Annotated[
        str | None,
        typer.Option("--date", "-d", "--day", help="Trading day YYYY-MM-DD (default: yesterday, UTC)."),
    ] = None,
    manifest: Annotated[Path, typer.Option(help="Where to record what was produced.")] = DEFAULT_MANIFEST,
    fmt: FormatOpt = None,
) -> None:
    """Write clients, instruments, LPs, orders, trades and the positions they make to the source
    database (Debezium captures them) and produce trade.executed / quote.received / risk.snapshot
    events to Kafka."""
    from orion_etl.jobs.demo import ActivitySize, generate_demo

    the_seed = seed if seed is not None else int(datetime.now(UTC).timestamp())
    size = ActivitySize(tenants, clients, lps, orders, trade_events_count, quotes_per_pair, risk_per_client)
    report = generate_demo(state(ctx).settings(), size, day=_day(day), seed=the_seed, manifest=manifest)
    finish_report(fmt, report, human=lambda out: say(report.summary()))


@app.command("verify")
def verify(
    ctx: typer.Context,
    manifest: Annotated[Path, typer.Option(help="Manifest written by `demo generate`.")] = DEFAULT_MANIFEST,
    stage: Annotated[
        Stage,
        typer.Option(case_sensitive=False, help="facts: only the loaded facts; all: the whole pipeline."),
    ] = Stage.ALL,
    fmt: FormatOpt = None,
) -> None:
    """Reconcile the warehouse with the source of truth; exit 4 when anything differs."""
    from orion_etl.jobs.demo import verify_demo

    report = verify_demo(state(ctx).settings(), manifest, facts_only=stage is Stage.FACTS)

    def human(out: OutputFormat) -> None:
        print_rows(out, ["check", "expected", "actual", "ok"], report.rows(), title="demo reconciliation")

    finish_report(fmt, report, human=human)
