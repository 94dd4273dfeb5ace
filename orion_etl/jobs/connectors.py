"""Connector lifecycle against Kafka Connect: render, validate, register (plan/apply), watch states."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from orion_etl.adapters import replication as repl
from orion_etl.adapters.connect import ConnectClient, ConnectError, ConnectorNotFoundError
from orion_etl.adapters.postgres import connect
from orion_etl.core.cdc_target import CdcTarget
from orion_etl.core.connector_config import CONNECTOR_CLASS, ConnectorSpec, mask_config, render_connector
from orion_etl.core.connectors import (
    ConfigPlan,
    ConnectorHealth,
    connector_health,
    plan_config,
    validation_errors,
)
from orion_etl.errors import ConfigError, ExitCode, OrionError
from orion_etl.logs import redactor

log = logging.getLogger(__name__)


class ConnectorRejectedError(OrionError):
    """Kafka Connect's validation rejected the rendered config (exit 2)."""

    exit_code = ExitCode.FAILURE


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

    def as_dict(self) -> dict[str, Any]:
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
                "exit_code": state.exit_code,
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
