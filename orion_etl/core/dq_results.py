"""Audit outcomes, the verdict they add up to, and alert messages (pure: no I/O).

Verdicts follow `soda scan`: ok (exit 0) every rule passed, warnings (1) only warning-severity
rules failed, failed (4) at least one error-severity rule failed, error (3) at least one rule
could not be evaluated (or the audit could not run at all). The most serious one wins.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from orion_etl.core.quality import Rule, Severity
from orion_etl.errors import Verdict


class Outcome(StrEnum):
    """What evaluating one rule found."""

    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"  # could not be evaluated (unknown column, SQL error, timeout)


@dataclass
class RuleResult:
    """The result of one rule in one audit."""

    rule: Rule
    outcome: Outcome
    failed: int = 0
    checked: int | None = None  # rows in scope, where meaningful
    samples: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    duration_ms: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "table": self.rule.table,
            "rule": self.rule.name,
            "key": self.rule.key,
            "kind": str(self.rule.kind),
            "severity": str(self.rule.severity),
            "outcome": str(self.outcome),
            "failed": self.failed,
            "checked": self.checked,
            "message": self.rule.label,
            "error": self.error,
            "samples": self.samples,
            "duration_ms": self.duration_ms,
        }


def verdict(results: list[RuleResult]) -> Verdict:
    """The audit's verdict (see module docstring)."""
    if any(r.outcome is Outcome.ERROR for r in results):
        return Verdict.ERROR
    failing = [r for r in results if r.outcome is Outcome.FAIL]
    if any(r.rule.severity is Severity.ERROR for r in failing):
        return Verdict.FAILED
    if failing:
        return Verdict.WARNINGS
    return Verdict.OK


class AlertKind(StrEnum):
    FAILURE = "failure"
    RECOVERY = "recovery"


@dataclass(frozen=True)
class Alert:
    """One state change of one rule, to be announced."""

    kind: AlertKind
    rule_key: str
    table: str
    rule_name: str
    severity: str
    message: str
    failed: int
    run_id: str
    samples: tuple[dict[str, Any], ...] = ()

    @property
    def text(self) -> str:
        """One line: what happened, to which rule."""
        if self.kind is AlertKind.FAILURE:
            head = f"DQ {self.severity} {self.rule_key}: {self.message}"
            return f"{head} ({self.failed} failing) - run {self.run_id}"
        return f"DQ recovered {self.rule_key}: {self.message} now passes - run {self.run_id}"


def slack_payload(alert: Alert, *, source: str, include_samples: bool) -> dict[str, Any]:
    """A Slack incoming-webhook body: `text` (fallback/notifications) plus Block Kit `blocks`."""
    icon = ":rotating_light:" if alert.kind is AlertKind.FAILURE else ":white_check_mark:"
    if alert.kind is AlertKind.FAILURE and alert.severity == "WARNING":
        icon = ":warning:"
    title = "Data-quality failure" if alert.kind is AlertKind.FAILURE else "Data-quality recovery"
    fields = [
        {"type": "mrkdwn", "text": f"*Rule*\n`{alert.rule_key}`"},
        {"type": "mrkdwn", "text": f"*Severity*\n{alert.severity}"},
        {"type": "mrkdwn", "text": f"*Failing rows*\n{alert.failed}"},
        {"type": "mrkdwn", "text": f"*Warehouse*\n{source}"},
    ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} {alert.message}"}, "fields": fields},
    ]
    if include_samples and alert.samples:
        import json

        sample = json.dumps(list(alert.samples)[:3], default=str, indent=1)[:2500]
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"```{sample}```"}})
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": f"orion-etl dq audit run {alert.run_id}"}],
        }
    )
    return {"text": f"{icon} {alert.text}", "blocks": blocks}
