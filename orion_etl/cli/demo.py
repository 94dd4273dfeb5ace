"""`orion-etl demo generate|verify`: synthetic trading activity through the real pipeline."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from orion_etl.cli.context import state
from orion_etl.cli.render import FormatOpt, OutputFormat, finish, print_rows, say
from orion_etl.errors import ExitCode, UsageError

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
    from orion_etl.core.demo_events import quote_events, risk_events, trade_events
    from orion_etl.core.synthetic import generate as generate_activity
    from orion_etl.jobs.demo import (
        DemoManifest,
        align_reference_data,
        position_expectations,
        produce_events,
        write_to_source,
    )

    settings = state(ctx).settings()
    the_day = _day(day)
    the_seed = seed if seed is not None else int(datetime.now(UTC).timestamp())
    data = generate_activity(
        seed=the_seed, tenants=tenants, clients=clients, lps=lps, orders=orders, day=the_day
    )
    data = align_reference_data(settings.source, data)
    written = write_to_source(settings.source, data)
    events = trade_events(data, trade_events_count, seed=the_seed, day=the_day)
    quotes = quote_events(data, quotes_per_pair, seed=the_seed, day=the_day)
    produce_events(settings.kafka, settings.stream.topics.trade_events, events)
    produce_events(settings.kafka, settings.stream.topics.quote_events, quotes)
    risk = risk_events(data, risk_per_client, seed=the_seed, day=the_day)
    produce_events(settings.kafka, settings.stream.topics.risk_events, risk)
    td = settings.trading_day
    expectations = position_expectations(data, risk, the_day, td.timezone, td.cutoff)
    DemoManifest(
        the_day, the_seed, [e["payload"]["tradeId"] for e in events], len(quotes), **expectations
    ).save(manifest)
    result = {
        "day": the_day,
        "seed": the_seed,
        "source": {
            "clients": written.clients,
            "instruments": written.instruments,
            "liquidity_providers": written.liquidity_providers,
            "orders": written.orders,
            "trades": written.trades,
            "position_changes": written.position_changes,
        },
        "kafka": {"trade_events": len(events), "quotes": len(quotes), "risk_snapshots": len(risk)},
        "manifest": manifest,
    }
    finish(
        fmt,
        result,
        human=lambda out: say(
            f"source: {written.clients} clients, {written.instruments} instruments, "
            f"{written.liquidity_providers} LPs, {written.orders} orders, {written.trades} trades, "
            f"{written.position_changes} position changes; kafka: {len(events)} trade events, "
            f"{len(quotes)} quotes, {len(risk)} risk snapshots; day {the_day}, seed {the_seed}"
        ),
    )


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
    """Reconcile the warehouse with the source of truth; exit 2 when anything differs."""
    from orion_etl.jobs.demo import DemoManifest, reconcile

    app_state = state(ctx)
    checks = reconcile(app_state.settings(), DemoManifest.load(manifest))
    if stage is Stage.FACTS:
        facts = ("tenant ", "trade.executed", "orders ", "position changes", "risk snapshots")
        checks = [c for c in checks if c.name.startswith(facts)]
    rows = [{"check": c.name, "expected": c.expected, "actual": c.actual, "ok": c.ok} for c in checks]
    code = int(ExitCode.OK if all(c.ok for c in checks) else ExitCode.FAILURE)

    def human(out: OutputFormat) -> None:
        print_rows(out, ["check", "expected", "actual", "ok"], rows, title="demo reconciliation")

    finish(fmt, {"checks": rows}, exit_code=code, human=human)
