"""Audit exit codes and the Slack-compatible alert body."""

from __future__ import annotations

import json

from orion_etl.core.dq_results import Alert, AlertKind, Outcome, RuleResult, slack_payload, verdict
from orion_etl.core.quality import Rule, RuleKind, Severity
from orion_etl.errors import exit_code_for


def res(severity: Severity, outcome: Outcome) -> RuleResult:
    return RuleResult(Rule("r", "t", RuleKind.NOT_NULL, "m", severity, column="c"), outcome)


def exit_code(results: list[RuleResult]) -> int:
    return exit_code_for(verdict(results))


def test_exit_codes_like_soda() -> None:
    e, w = Severity.ERROR, Severity.WARNING
    assert exit_code([]) == 0
    assert exit_code([res(e, Outcome.PASS), res(w, Outcome.PASS)]) == 0
    assert exit_code([res(e, Outcome.PASS), res(w, Outcome.FAIL)]) == 1
    assert exit_code([res(e, Outcome.FAIL), res(w, Outcome.FAIL)]) == 4
    assert exit_code([res(e, Outcome.FAIL), res(w, Outcome.ERROR)]) == 3


def test_slack_payload_has_text_and_blocks() -> None:
    alert = Alert(
        AlertKind.FAILURE, "fact_trades.client_exists", "fact_trades", "client_exists", "ERROR",
        "[client_exists] client_id has no dim_clients member", 3, "run-1", ({"trade_id": "x"},),
    )  # fmt: skip
    body = slack_payload(alert, source="postgresql://u@h:1/db", include_samples=False)
    assert set(body) == {"text", "blocks"}
    assert "fact_trades.client_exists" in body["text"] and "3 failing" in body["text"]
    assert body["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "Data-quality failure"},
    }
    assert "trade_id" not in json.dumps(body)
    with_samples = slack_payload(alert, source="s", include_samples=True)
    assert "trade_id" in json.dumps(with_samples)
    recovery = Alert(AlertKind.RECOVERY, "k", "t", "r", "ERROR", "msg", 0, "run-2")
    assert "recovered" in slack_payload(recovery, source="s", include_samples=False)["text"]
