"""Pure logic behind `orion-etl connectors`: config plans (diffs), health of a connector's status.

Nothing here talks to Kafka Connect; the jobs feed in what the REST API returned.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from orion_etl.errors import Verdict

Action = Literal["add", "change", "remove"]

# --- secrets in connector configs: masked wherever a config is shown or diffed -----------------

MASK = "********"
_SECRET_KEY = re.compile(r"password|secret|token|jaas|credential|api\.?key", re.I)
_PROVIDER_REF = re.compile(r"\$\{[A-Za-z0-9_.-]+:[^{}]+\}")


def is_provider_ref(value: str) -> bool:
    """`${provider:[path:]key}`: a Kafka Connect config-provider reference, safe to show."""
    return bool(_PROVIDER_REF.fullmatch(value))


def is_secret_key(key: str) -> bool:
    """Whether a connector property name carries a secret."""
    return bool(_SECRET_KEY.search(key))


def mask_value(key: str, value: str | None) -> str | None:
    """The value as it may be shown: secrets masked, config-provider references kept."""
    if value is None or not is_secret_key(key) or is_provider_ref(value) or value == "":
        return value
    return MASK


def mask_config(config: dict[str, str]) -> dict[str, str]:
    """A copy of a connector config with every secret value masked."""
    return {k: mask_value(k, v) or "" for k, v in config.items()}


@dataclass(frozen=True)
class ConfigChange:
    """One property that differs between the desired and the running config (values masked)."""

    key: str
    action: Action
    old: str | None
    new: str | None

    def line(self) -> str:
        """`+ key = new`, `~ key: old -> new`, `- key = old` (terraform-like)."""
        if self.action == "add":
            return f"+ {self.key} = {self.new}"
        if self.action == "remove":
            return f"- {self.key} = {self.old}"
        return f"~ {self.key}: {self.old} -> {self.new}"


@dataclass(frozen=True)
class ConfigPlan:
    """What `register` would do: create the connector, update some keys, or nothing."""

    name: str
    exists: bool
    changes: list[ConfigChange] = field(default_factory=list)

    @property
    def action(self) -> Literal["create", "update", "none"]:
        if not self.exists:
            return "create"
        return "update" if self.changes else "none"

    def as_dict(self) -> dict[str, Any]:
        return {
            "connector": self.name,
            "action": self.action,
            "changes": [{"key": c.key, "action": c.action, "old": c.old, "new": c.new} for c in self.changes],
        }


def plan_config(name: str, desired: dict[str, str], running: dict[str, str] | None) -> ConfigPlan:
    """Compare the desired config with the running one (None: not registered); secrets masked."""
    if running is None:
        return ConfigPlan(
            name=name,
            exists=False,
            changes=[ConfigChange(k, "add", None, mask_value(k, v)) for k, v in sorted(desired.items())],
        )
    changes: list[ConfigChange] = []
    for key in sorted(set(desired) | set(running)):
        old, new = running.get(key), desired.get(key)
        if old == new:
            continue
        if old is None:
            changes.append(ConfigChange(key, "add", None, mask_value(key, new)))
        elif new is None:
            changes.append(ConfigChange(key, "remove", mask_value(key, old), None))
        else:
            shown_old, shown_new = mask_value(key, old), mask_value(key, new)
            if shown_old == shown_new:  # two different secrets both render as ********
                shown_new = f"{shown_new} (changed)"
            changes.append(ConfigChange(key, "change", shown_old, shown_new))
    return ConfigPlan(name=name, exists=True, changes=changes)


# Connector/task states reported by Kafka Connect.
FAILED_STATES = {"FAILED"}
WARNING_STATES = {"PAUSED", "STOPPED", "UNASSIGNED", "RESTARTING"}


@dataclass(frozen=True)
class TaskHealth:
    """One task of a connector."""

    id: int
    state: str
    worker_id: str | None
    trace: str | None


@dataclass(frozen=True)
class ConnectorHealth:
    """A connector's state, its tasks, and the verdict monitoring should see."""

    name: str
    state: str
    worker_id: str | None
    connector_type: str | None
    trace: str | None
    tasks: list[TaskHealth]

    @property
    def verdict(self) -> Verdict:
        """Failed when the connector or a task FAILED; warnings when paused, unassigned or taskless."""
        states = {self.state, *(t.state for t in self.tasks)}
        if states & FAILED_STATES:
            return Verdict.FAILED
        if states & WARNING_STATES or not self.tasks:
            return Verdict.WARNINGS
        return Verdict.OK

    def to_document(self) -> dict[str, Any]:
        return {
            "connector": self.name,
            "state": self.state,
            "worker_id": self.worker_id,
            "type": self.connector_type,
            "trace": self.trace,
            "tasks": [
                {"id": t.id, "state": t.state, "worker_id": t.worker_id, "trace": t.trace} for t in self.tasks
            ],
        }


def trim_trace(trace: str | None, max_lines: int = 12, max_chars: int = 2000) -> str | None:
    """The useful part of a Java stack trace: the first line and every `Caused by:` line, capped."""
    if not trace:
        return None
    lines = [ln.rstrip() for ln in trace.strip().splitlines() if ln.strip()]
    keep = [lines[0]] + [ln.strip() for ln in lines[1:] if ln.lstrip().startswith("Caused by:")]
    if len(keep) == 1:
        keep = lines[: min(len(lines), 4)]
    text = "\n".join(keep[:max_lines])
    return text if len(text) <= max_chars else text[: max_chars - 3] + "..."


def connector_health(status: dict[str, Any]) -> ConnectorHealth:
    """Parse `GET /connectors/{name}/status` into a `ConnectorHealth` (traces trimmed)."""
    connector = status.get("connector", {})
    tasks = [
        TaskHealth(
            id=int(t.get("id", 0)),
            state=str(t.get("state", "UNKNOWN")),
            worker_id=t.get("worker_id"),
            trace=trim_trace(t.get("trace")),
        )
        for t in status.get("tasks", [])
    ]
    return ConnectorHealth(
        name=str(status.get("name", "")),
        state=str(connector.get("state", "UNKNOWN")),
        worker_id=connector.get("worker_id"),
        connector_type=status.get("type"),
        trace=trim_trace(connector.get("trace")),
        tasks=sorted(tasks, key=lambda t: t.id),
    )


def validation_errors(result: dict[str, Any]) -> list[str]:
    """`key: message` for each property Connect's validate endpoint rejected (values never included)."""
    errors: list[str] = []
    for item in result.get("configs", []):
        value = item.get("value") or {}
        for message in value.get("errors", []) or []:
            errors.append(f"{value.get('name', '?')}: {message}")
    return errors
