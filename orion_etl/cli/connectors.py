"""`orion-etl connectors render|validate|register|list|status|pause|resume|restart|delete`."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated, Literal

import typer

from orion_etl.adapters.connect import ConnectClient
from orion_etl.cli.context import state
from orion_etl.cli.render import OutputFormat, print_json, print_table
from orion_etl.core.cdc_target import CdcTarget, resolve_target
from orion_etl.core.connectors import ConnectorHealth
from orion_etl.errors import ExitCode, UsageError
from orion_etl.jobs import connectors as job
from orion_etl.logs import redactor

app = typer.Typer(help="Manage the Debezium connector in Kafka Connect.", no_args_is_help=True)

EnvOption = Annotated[
    str | None,
    typer.Option("--env", "-e", help="CDC environment (default: cdc.env); overrides in cdc.environments."),
]
NameArg = Annotated[
    str | None,
    typer.Argument(help="Connector name (default: the one rendered for --env).", show_default=False),
]
FormatOption = Annotated[OutputFormat, typer.Option("--format", help="table or json")]


class RenderFormat(StrEnum):
    """`connectors render --format` choices."""

    JSON = "json"
    PROPERTIES = "properties"


def _target(ctx: typer.Context, env: str | None) -> CdcTarget:
    return resolve_target(state(ctx).settings(), env)


def _client(ctx: typer.Context) -> ConnectClient:
    return ConnectClient(state(ctx).settings().connect)


def _name(ctx: typer.Context, env: str | None, name: str | None) -> str:
    return name or job.render(_target(ctx, env)).name


@app.command("render")
def render(
    ctx: typer.Context,
    env: EnvOption = None,
    fmt: Annotated[RenderFormat, typer.Option("--format", help="json or properties")] = RenderFormat.JSON,
) -> None:
    """Print the connector config generated from the settings (secrets masked)."""
    data = job.masked(job.render(_target(ctx, env)))
    if fmt is RenderFormat.JSON:
        print_json(data)
    else:
        # Java .properties: a backslash escapes the next character, so double it.
        for key, value in data["config"].items():
            sys.stdout.write(redactor.redact(f"{key}={value.replace(chr(92), chr(92) * 2)}") + "\n")


@app.command("validate")
def validate(ctx: typer.Context, env: EnvOption = None, fmt: FormatOption = OutputFormat.TABLE) -> None:
    """Ask Kafka Connect to validate the config (Debezium also tries the database); exit 2 if rejected."""
    spec = job.render(_target(ctx, env))
    with _client(ctx) as client:
        errors = job.validate(client, spec)
    if fmt is OutputFormat.JSON:
        print_json({"connector": spec.name, "valid": not errors, "errors": errors})
    elif errors:
        for error in errors:
            typer.echo(f"{spec.name}: invalid: {error}")
    else:
        typer.echo(f"{spec.name}: valid")
    if errors:
        raise typer.Exit(int(ExitCode.FAILURE))


@app.command("register")
def register(
    ctx: typer.Context,
    env: EnvOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and show the plan; change nothing.")
    ] = False,
    fmt: FormatOption = OutputFormat.TABLE,
) -> None:
    """Create or update the connector: validate, show the plan (diff), then apply with PUT (idempotent)."""
    target = _target(ctx, env)
    with _client(ctx) as client:
        result = job.register(client, target, dry_run=dry_run)
    if fmt is OutputFormat.JSON:
        print_json(result.as_dict())
        return
    plan = result.plan
    typer.echo(f"{plan.name}: config valid")
    if plan.action == "none":
        typer.echo(f"{plan.name}: unchanged (running config already matches; nothing to do)")
    else:
        typer.echo(f"{plan.name}: plan: {plan.action} ({len(plan.changes)} properties)")
        for change in plan.changes:
            typer.echo(f"  {redactor.redact(change.line())}")
        if result.applied:
            typer.echo(f"{plan.name}: {'created' if plan.action == 'create' else 'updated'}")
        else:
            typer.echo(f"{plan.name}: dry run, nothing applied")
    if result.password_inline:
        typer.echo(
            f"{plan.name}: note: the database password is inline; Kafka Connect stores it in its config "
            "topic. Prefer cdc.database_password_ref (${file:...} / ${env:...}).",
            err=True,
        )


@app.command("list")
def list_connectors(ctx: typer.Context, fmt: FormatOption = OutputFormat.TABLE) -> None:
    """Every connector registered in Kafka Connect, with connector and task states."""
    with _client(ctx) as client:
        rows = job.list_all(client)
    if fmt is OutputFormat.JSON:
        print_json(rows)
        return
    print_table(
        state(ctx).console,
        "connectors",
        ["connector", "type", "state", "tasks"],
        [[r["connector"], r["type"], r["state"], ", ".join(r["tasks"]) or "-"] for r in rows],
    )


def _show(ctx: typer.Context, health: ConnectorHealth, fmt: OutputFormat) -> None:
    if fmt is OutputFormat.JSON:
        print_json(health.as_dict())
        return
    rows = [["connector", health.state, health.worker_id or "-"]]
    rows += [[f"task {t.id}", t.state, t.worker_id or "-"] for t in health.tasks]
    print_table(state(ctx).console, health.name, ["", "state", "worker"], rows)
    for label, trace in [("connector", health.trace)] + [(f"task {t.id}", t.trace) for t in health.tasks]:
        if trace:
            typer.echo(f"{label} trace:\n{redactor.redact(trace)}")


@app.command("status")
def status(
    ctx: typer.Context, name: NameArg = None, env: EnvOption = None, fmt: FormatOption = OutputFormat.TABLE
) -> None:
    """Connector and task states with the trace of failures; exit 2 on FAILED, 1 on PAUSED/UNASSIGNED."""
    connector = _name(ctx, env, name)
    with _client(ctx) as client:
        health = job.health(client, connector)
    _show(ctx, health, fmt)
    raise typer.Exit(health.exit_code)


WaitOption = Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until the new state is reached.")]
TimeoutOption = Annotated[float, typer.Option("--timeout", help="Seconds to wait.")]


def _request_state(
    ctx: typer.Context,
    name: str | None,
    env: str | None,
    action: Literal["pause", "resume"],
    wanted: str,
    wait: bool,
    timeout: float,
) -> None:
    """Ask Connect to pause or resume the connector; with `wait`, report the state it reaches."""
    connector = _name(ctx, env, name)
    with _client(ctx) as client:
        getattr(client, action)(connector)
        typer.echo(f"{connector}: {action} requested")
        if wait:
            health = job.wait_for_state(client, connector, wanted, timeout_s=timeout)
            typer.echo(f"{connector}: {health.state}")
            if wanted == "RUNNING":  # a resumed connector reports its health as the exit code
                raise typer.Exit(health.exit_code)


@app.command("pause")
def pause(
    ctx: typer.Context,
    name: NameArg = None,
    env: EnvOption = None,
    wait: WaitOption = True,
    timeout: TimeoutOption = 30,
) -> None:
    """Pause the connector and its tasks (the slot keeps retaining WAL while paused)."""
    _request_state(ctx, name, env, "pause", "PAUSED", wait, timeout)


@app.command("resume")
def resume(
    ctx: typer.Context,
    name: NameArg = None,
    env: EnvOption = None,
    wait: WaitOption = True,
    timeout: TimeoutOption = 30,
) -> None:
    """Resume a paused connector."""
    _request_state(ctx, name, env, "resume", "RUNNING", wait, timeout)


@app.command("restart")
def restart(
    ctx: typer.Context,
    name: NameArg = None,
    env: EnvOption = None,
    include_tasks: Annotated[bool, typer.Option("--include-tasks", help="Restart the tasks too.")] = False,
    only_failed: Annotated[
        bool, typer.Option("--only-failed", help="Only restart FAILED instances.")
    ] = False,
) -> None:
    """Restart the connector (and with --include-tasks its tasks; --only-failed restarts only failed ones)."""
    connector = _name(ctx, env, name)
    with _client(ctx) as client:
        client.restart(connector, include_tasks=include_tasks, only_failed=only_failed)
    typer.echo(f"{connector}: restart requested")


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: NameArg = None,
    env: EnvOption = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    drop_slot: Annotated[
        bool, typer.Option("--drop-slot", help="Also drop the replication slot (its WAL is released).")
    ] = False,
) -> None:
    """Delete the connector. Its replication slot stays (and retains WAL) unless --drop-slot."""
    target = _target(ctx, env)
    configured = job.render(target).name
    connector = name or configured
    if drop_slot and connector != configured:
        raise UsageError("--drop-slot only applies to the connector configured for --env")
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(f"refusing to delete {connector!r} without --yes (no terminal to confirm on)")
        typer.confirm(f"delete connector {connector!r}?", abort=True)
    with _client(ctx) as client:
        existed = job.delete(client, connector)
    typer.echo(f"{connector}: {'deleted' if existed else 'not registered (nothing to delete)'}")
    if drop_slot:
        typer.echo(f"{connector}: {job.drop_slot(target)}")
    elif existed and connector == configured:
        typer.echo(
            f"{connector}: replication slot {target.cdc.slot_name!r} still retains WAL; "
            "drop it with --drop-slot if the connector is gone for good",
            err=True,
        )
