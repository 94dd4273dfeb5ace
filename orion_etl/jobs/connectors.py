"""Connector lifecycle against Kafka Connect: render, validate, register (plan/apply), watch states."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from orion_etl.adapters import replication as repl
from orion_etl.adapters.connect import ConnectClient, ConnectError, ConnectorNotFoundError
from orion_etl.adapters.postgres import connect
from orion_etl.config.cdc_target import CdcTarget
from orion_etl.config.connector_config import CONNECTOR_CLASS, ConnectorSpec, render_connector
from orion_etl.config.models import ConnectSettings
from orion_etl.core.connectors import (
    ConfigPlan,
    ConnectorHealth,
    connector_health,
    mask_config,
    plan_config,
    validation_errors,
)
from orion_etl.errors import ConfigError, ExitCode, OrionError, Verdict, exit_code_for
from orion_etl.logs import redactor

log = logging.getLogger(__name__)


class ConnectorRejectedError(OrionError):
    """Kafka Connect's validation rejected the rendered config (exit 2: invalid configuration)."""

    exit_code = ExitCode.USAGE


class ConnectorStateTimeoutError(OrionError):
    """A connector did not reach the expected state in time (exit 1: the request was accepted)."""

    exit_code = ExitCode.WARNINGS


def render(target: CdcTarget) -> ConnectorSpec:
    """Render the connector for `target`; inline secrets are registered with the log redactor."""
    spec = render_connector(target)
    redactor.register(*spec.secrets)
    return spec


def masked(spec: ConnectorSpec) -> dict[str, Any]:
    """`{"name": ..., "config": {...}}` with secrets masked: safe to print."""
    return {"name": spec.name, "config": mask_config(spec.config)}


def validate(client: ConnectClient, spec: ConnectorSpec) -> list[str]:
    """Problems Kafka Connect (and Debezium, which connects to the database) find in the config."""
    try:
        result = client.validate(spec.config.get("connector.class", CONNECTOR_CLASS), spec.config)
    except ConnectError as exc:
        # A config provider that cannot resolve a reference (missing secrets file, ...) makes
        # Connect answer 500 with a ConfigException: that is a rejected config, not an outage.
        if exc.status_code == 500 and "ConfigException" in exc.message:
            return [redactor.redact(exc.message.split("ConfigException:", 1)[1].strip())]
        raise
    return list(dict.fromkeys(redactor.redact(e) for e in validation_errors(result)))


def ensure_valid(client: ConnectClient, spec: ConnectorSpec) -> None:
    """Raise `ConnectorRejectedError` (one line) when validation finds problems."""
    errors = validate(client, spec)
    if errors:
        more = (
            f" (and {len(errors) - 1} more; see `orion-etl connectors validate`)" if len(errors) > 1 else ""
        )
        raise ConnectorRejectedError(
            f"Kafka Connect rejected connector {spec.name!r}: {errors[0]}{more}",
            hint="check the cdc and source settings, and that the Connect worker can reach the database",
        )


@dataclass(frozen=True)
class RegisterResult:
    """What `register` planned and whether it applied it."""

    plan: ConfigPlan
    applied: bool
    dry_run: bool
    password_inline: bool

    @property
    def verdict(self) -> Verdict:
        return Verdict.OK

    def to_document(self) -> dict[str, Any]:
        return {
            **self.plan.as_dict(),
            "applied": self.applied,
            "dry_run": self.dry_run,
            "password_inline": self.password_inline,
        }


def register(client: ConnectClient, target: CdcTarget, *, dry_run: bool = False) -> RegisterResult:
    """Validate, diff against the running config, then PUT it unless nothing changed or `dry_run`."""
    spec = render(target)
    ensure_valid(client, spec)
    refuse_shared_slot(client, spec.name, spec.config)
    running = client.get_config(spec.name)
    plan = plan_config(spec.name, spec.config, running)
    applied = False
    if plan.action != "none" and not dry_run:
        client.put_config(spec.name, spec.config)
        applied = True
        log.info(
            "connector %s: %s applied (%d changes)", spec.name, plan.action, len(plan.changes),
            extra={"event": "connector_applied", "connector": spec.name, "action": plan.action,
                   "changes": len(plan.changes)},
        )  # fmt: skip
    return RegisterResult(plan, applied, dry_run, spec.password_inline)


def refuse_shared_slot(client: ConnectClient, name: str, config: dict[str, str]) -> None:
    """ConfigError when another connector already uses this replication slot on this database.

    Two connectors on one slot steal each other's WAL positions; with the same topic prefix they
    also write the same topics. Compared on what Connect stores (hostname, port, dbname, slot).
    """

    def place(cfg: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(
            cfg.get(k) for k in ("database.hostname", "database.port", "database.dbname", "slot.name")
        )

    mine = place(config)
    for other, item in sorted(client.list_connectors().items()):
        other_config = (item.get("info") or {}).get("config") or {}
        if other != name and place(other_config) == mine:
            raise ConfigError(
                f"replication slot {config.get('slot.name')!r} on {config.get('database.dbname')!r} is "
                f"already used by connector {other!r}; refusing to plan {name!r} on it",
                hint="check --env and cdc.slot_name (one slot per connector)",
            )


def health(client: ConnectClient, name: str) -> ConnectorHealth:
    """Current state of a connector and its tasks (traces trimmed and redacted)."""
    status = client.status(name)
    for task in status.get("tasks", []):
        if task.get("trace"):
            task["trace"] = redactor.redact(task["trace"])
    if status.get("connector", {}).get("trace"):
        status["connector"]["trace"] = redactor.redact(status["connector"]["trace"])
    return connector_health(status)


def list_all(client: ConnectClient) -> list[dict[str, Any]]:
    """Every connector with state, task states and type; configs masked."""
    rows = []
    for name, item in sorted(client.list_connectors().items()):
        status = item.get("status", {})
        info = item.get("info", {})
        state = connector_health({"name": name, **status})
        rows.append(
            {
                "connector": name,
                "type": info.get("type") or status.get("type"),
                "class": info.get("config", {}).get("connector.class"),
                "state": state.state,
                "tasks": [t.state for t in state.tasks],
                "exit_code": exit_code_for(state),
            }
        )
    return rows


def wait_for_state(
    client: ConnectClient, name: str, wanted: str, *, timeout_s: float = 30.0, poll_s: float = 0.5
) -> ConnectorHealth:
    """Poll until the connector and all its tasks are in `wanted` (or a task FAILED)."""
    deadline = time.monotonic() + timeout_s
    while True:
        current = health(client, name)
        states = {current.state, *(t.state for t in current.tasks)}
        if states == {wanted} or "FAILED" in states:
            return current
        if time.monotonic() >= deadline:
            raise ConnectorStateTimeoutError(
                f"connector {name!r} did not become {wanted} within {timeout_s:.0f}s "
                f"(now {current.state}, tasks {[t.state for t in current.tasks]})"
            )
        time.sleep(poll_s)


def drop_slot(target: CdcTarget, *, timeout_s: float = 30.0) -> str:
    """Drop the connector's replication slot once the deleted connector has let go of it."""
    slot = target.cdc.slot_name
    deadline = time.monotonic() + timeout_s
    with connect(target.source, autocommit=True) as conn:
        while True:
            dropped = repl.drop_slot_if_inactive(conn, slot)
            if dropped is None:
                return f"replication slot {slot!r} does not exist"
            if dropped:
                return f"replication slot {slot!r} dropped"
            if time.monotonic() >= deadline:
                raise ConnectorStateTimeoutError(
                    f"replication slot {slot!r} is still in use after {timeout_s:.0f}s; not dropped"
                )
            time.sleep(0.5)


def delete(client: ConnectClient, name: str) -> bool:
    """Delete a connector; False when it was not registered (deleting is idempotent)."""
    try:
        client.delete(name)
    except ConnectorNotFoundError:
        return False
    return True


# --- one call per command: each opens its own Connect client (the CLI never holds one) ----------


@dataclass(frozen=True)
class ValidateReport:
    """`connectors validate`: Connect's problems with the rendered config (none: valid)."""

    connector: str
    errors: list[str]

    @property
    def verdict(self) -> Verdict:
        """A rejected config is invalid configuration (exit 2), as when `register` meets it."""
        return Verdict.INVALID if self.errors else Verdict.OK

    def to_document(self) -> dict[str, Any]:
        return {"connector": self.connector, "valid": not self.errors, "errors": self.errors}


def validate_connector(settings: ConnectSettings, target: CdcTarget) -> ValidateReport:
    """Render the connector for `target` and ask Kafka Connect to validate it."""
    spec = render(target)
    with ConnectClient(settings) as client:
        return ValidateReport(spec.name, validate(client, spec))


def register_connector(settings: ConnectSettings, target: CdcTarget, *, dry_run: bool) -> RegisterResult:
    """`register` on a client of its own."""
    with ConnectClient(settings) as client:
        return register(client, target, dry_run=dry_run)


def list_connectors(settings: ConnectSettings) -> list[dict[str, Any]]:
    """`list_all` on a client of its own."""
    with ConnectClient(settings) as client:
        return list_all(client)


def connector_status(settings: ConnectSettings, name: str) -> ConnectorHealth:
    """`health` on a client of its own."""
    with ConnectClient(settings) as client:
        return health(client, name)


@dataclass(frozen=True)
class StateChange:
    """A pause or resume request and, when waited for, the state reached (its health on resume)."""

    connector: str
    action: str
    state: str | None = None
    health: ConnectorHealth | None = field(default=None, compare=False)

    @property
    def verdict(self) -> Verdict:
        return self.health.verdict if self.health is not None else Verdict.OK

    def to_document(self) -> dict[str, Any]:
        return {"connector": self.connector, "action": self.action, "state": self.state}


def request_state(
    settings: ConnectSettings,
    name: str,
    action: Literal["pause", "resume"],
    wanted: str,
    *,
    wait: bool,
    timeout_s: float,
) -> StateChange:
    """Ask Connect to pause or resume the connector; with `wait`, the state it reaches."""
    with ConnectClient(settings) as client:
        getattr(client, action)(name)
        if not wait:
            return StateChange(name, action)
        reached = wait_for_state(client, name, wanted, timeout_s=timeout_s)
    # a resumed connector reports its health as the verdict
    return StateChange(name, action, reached.state, reached if wanted == "RUNNING" else None)


def restart_connector(
    settings: ConnectSettings, name: str, *, include_tasks: bool, only_failed: bool
) -> None:
    """Ask Connect to restart the connector (and its tasks)."""
    with ConnectClient(settings) as client:
        client.restart(name, include_tasks=include_tasks, only_failed=only_failed)


def delete_connector(settings: ConnectSettings, name: str) -> bool:
    """`delete` on a client of its own."""
    with ConnectClient(settings) as client:
        return delete(client, name)
