"""`orion-etl connectors render|validate|register|list|status|pause|resume|restart|delete`."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from orion_etl.cli.context import state
from orion_etl.cli.options import DryRunOpt, EnvOpt, YesOpt
from orion_etl.cli.render import (
    FormatOpt,
    OutputFormat,
    finish,
    finish_report,
    note,
    print_json,
    print_rows,
    resolve_format,
    say,
)
from orion_etl.errors import UsageError, exit_code_for
from orion_etl.logs import redactor

if TYPE_CHECKING:
    from orion_etl.config.cdc_target import CdcTarget
    from orion_etl.config.models import ConnectSettings
    from orion_etl.core.connectors import ConnectorHealth

app = typer.Typer(help="Manage the Debezium connector in Kafka Connect.", no_args_is_help=True)

NameArg = Annotated[
    str | None,
    typer.Argument(help="Connector name (default: the one rendered for --env).", show_default=False),
]


class RenderFormat(StrEnum):
    """`connectors render --format` choices."""

    JSON = "json"
    PROPERTIES = "properties"


def _target(ctx: typer.Context, env: str | None) -> CdcTarget:
    from orion_etl.config.cdc_target import resolve_target

    return resolve_target(state(ctx).settings(), env)


def _connect(ctx: typer.Context) -> ConnectSettings:
    return state(ctx).settings().connect


def _name(ctx: typer.Context, env: str | None, name: str | None) -> str:
    from orion_etl.jobs import connectors as job

    return name or job.render(_target(ctx, env)).name


@app.command("render")
def render(
    ctx: typer.Context,
    env: EnvOpt = None,
    fmt: Annotated[
        RenderFormat, typer.Option("--format", "-o", case_sensitive=False, help="json or properties")
    ] = RenderFormat.JSON,
) -> None:
    """Print the connector config generated from the settings (secrets masked)."""
    from orion_etl.jobs import connectors as job

    data = job.masked(job.render(_target(ctx, env)))
    if fmt is RenderFormat.JSON:
        print_json(data)
    else:
        # Java .properties: a backslash escapes the next character, so double it.
        for key, value in data["config"].items():
            sys.stdout.write(f"{key}={redactor.mask_text(str(value), key).replace(chr(92), chr(92) * 2)}\n")


@app.command("validate")
def validate(ctx: typer.Context, env: EnvOpt = None, fmt: FormatOpt = None) -> None:
    """Ask Kafka Connect to validate the config (Debezium also tries the database); exit 2 if rejected."""
    from orion_etl.jobs import connectors as job

    report = job.validate_connector(_connect(ctx), _target(ctx, env))

    def human(out: OutputFormat) -> None:
        for error in report.errors:
            say(f"{report.connector}: invalid: {error}")
        if not report.errors:
            say(f"{report.connector}: valid")

    finish_report(fmt, report, human=human)


@app.command("register")
def register(
    ctx: typer.Context,
    env: EnvOpt = None,
    dry_run: DryRunOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """Create or update the connector: validate, show the plan (diff), then apply with PUT (idempotent).

    Refused (exit 2) when the plan would use a replication slot another connector already uses.
    """
    from orion_etl.jobs import connectors as job

    result = job.register_connector(_connect(ctx), _target(ctx, env), dry_run=dry_run)
    if result.password_inline:
        note(
            f"{result.plan.name}: note: the database password is inline; Kafka Connect stores it in its "
            "config topic. Prefer cdc.database_password_ref (${file:...} / ${env:...})."
        )

    def human(out: OutputFormat) -> None:
        plan = result.plan
        say(f"{plan.name}: config valid")
        if plan.action == "none":
            say(f"{plan.name}: unchanged (running config already matches; nothing to do)")
            return
        say(f"{plan.name}: plan: {plan.action} ({len(plan.changes)} properties)")
        for change in plan.changes:
            say(f"  {change.line()}")
        if result.applied:
            say(f"{plan.name}: {'created' if plan.action == 'create' else 'updated'}")
        else:
            say(f"{plan.name}: dry run, nothing applied")

    finish_report(fmt, result, human=human)


@app.command("list")
def list_connectors(ctx: typer.Context, fmt: FormatOpt = None) -> None:
    """Every connector registered in Kafka Connect, with connector and task states."""
    from orion_etl.jobs import connectors as job

    rows = job.list_connectors(_connect(ctx))
    print_rows(fmt, ["connector", "type", "state", "tasks"], rows, title="connectors")


def _show(health: ConnectorHealth, fmt: OutputFormat | None) -> None:
    out = resolve_format(fmt)
    if out is OutputFormat.JSON:
        print_json(health.to_document(), exit_code_for(health))
        return
    rows: list[dict[str, Any]] = [
        {"instance": "connector", "state": health.state, "worker": health.worker_id}
    ]
    rows += [{"instance": f"task {t.id}", "state": t.state, "worker": t.worker_id} for t in health.tasks]
    print_rows(out, ["instance", "state", "worker"], rows, title=health.name)
    if out is OutputFormat.CSV:
        return
    for label, trace in [("connector", health.trace)] + [(f"task {t.id}", t.trace) for t in health.tasks]:
        if trace:
            note(f"{label} trace:\n{trace}")


@app.command("status")
def status(ctx: typer.Context, name: NameArg = None, env: EnvOpt = None, fmt: FormatOpt = None) -> None:
    """Connector and task states with the trace of failures; exit 4 on FAILED, 1 on PAUSED/UNASSIGNED."""
    from orion_etl.jobs import connectors as job

    health = job.connector_status(_connect(ctx), _name(ctx, env, name))
    _show(health, fmt)
    raise typer.Exit(exit_code_for(health))


WaitOption = Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until the new state is reached.")]
TimeoutOption = Annotated[float, typer.Option("--timeout", min=0, help="Seconds to wait.")]


def _request_state(
    ctx: typer.Context,
    name: str | None,
    env: str | None,
    action: Literal["pause", "resume"],
    wanted: str,
    wait: bool,
    timeout: float,
    fmt: OutputFormat | None,
) -> None:
    """Ask Connect to pause or resume the connector; with `wait`, report the state it reaches."""
    from orion_etl.jobs import connectors as job

    change = job.request_state(
        _connect(ctx), _name(ctx, env, name), action, wanted, wait=wait, timeout_s=timeout
    )

    def human(out: OutputFormat) -> None:
        say(f"{change.connector}: {action} requested")
        if change.state:
            say(f"{change.connector}: {change.state}")

    finish_report(fmt, change, human=human)


@app.command("pause")
def pause(
    ctx: typer.Context,
    name: NameArg = None,
    env: EnvOpt = None,
    wait: WaitOption = True,
    timeout: TimeoutOption = 30,
    fmt: FormatOpt = None,
) -> None:
    """Pause the connector and its tasks (the slot keeps retaining WAL while paused)."""
    _request_state(ctx, name, env, "pause", "PAUSED", wait, timeout, fmt)


@app.command("resume")
def resume(
    ctx: typer.Context,
    name: NameArg = None,
    env: EnvOpt = None,
    wait: WaitOption = True,
    timeout: TimeoutOption = 30,
    fmt: FormatOpt = None,
) -> None:
    """Resume a paused connector."""
    _request_state(ctx, name, env, "resume", "RUNNING", wait, timeout, fmt)


@app.command("restart")
def restart(
    ctx: typer.Context,
    name: NameArg = None,
    env: EnvOpt = None,
    include_tasks: Annotated[bool, typer.Option("--include-tasks", help="Restart the tasks too.")] = False,
    only_failed: Annotated[
        bool, typer.Option("--only-failed", help="Only restart FAILED instances.")
    ] = False,
    fmt: FormatOpt = None,
) -> None:
    """Restart the connector (and with --include-tasks its tasks; --only-failed restarts only failed ones)."""
    from orion_etl.jobs import connectors as job

    connector = _name(ctx, env, name)
    job.restart_connector(_connect(ctx), connector, include_tasks=include_tasks, only_failed=only_failed)
    finish(
        fmt,
        {
            "connector": connector,
            "action": "restart",
            "include_tasks": include_tasks,
            "only_failed": only_failed,
        },
        human=lambda out: say(f"{connector}: restart requested"),
    )


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: NameArg = None,
    env: EnvOpt = None,
    yes: YesOpt = False,
    drop_slot: Annotated[
        bool, typer.Option("--drop-slot", help="Also drop the replication slot (its WAL is released).")
    ] = False,
    fmt: FormatOpt = None,
) -> None:
    """Delete the connector. Its replication slot stays (and retains WAL) unless --drop-slot."""
    from orion_etl.jobs import connectors as job

    target = _target(ctx, env)
    configured = job.render(target).name
    connector = name or configured
    if drop_slot and connector != configured:
        raise UsageError("--drop-slot only applies to the connector configured for --env")
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(f"refusing to delete {connector!r} without --yes (no terminal to confirm on)")
        typer.confirm(f"delete connector {connector!r}?", abort=True, err=True)
    existed = job.delete_connector(_connect(ctx), connector)
    slot = job.drop_slot(target) if drop_slot else None
    if not drop_slot and existed and connector == configured:
        note(
            f"{connector}: replication slot {target.cdc.slot_name!r} still retains WAL; "
            "drop it with --drop-slot if the connector is gone for good"
        )

    def human(out: OutputFormat) -> None:
        say(f"{connector}: {'deleted' if existed else 'not registered (nothing to delete)'}")
        if slot:
            say(f"{connector}: {slot}")

    finish(fmt, {"connector": connector, "deleted": existed, "slot": slot}, human=human)
