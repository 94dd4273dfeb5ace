"""The one exit-code policy: verdicts and exceptions to exit codes, JSON status words."""

from __future__ import annotations

import signal

import pytest

from orion_etl.errors import (
    ConfigError,
    ExitCode,
    LockHeldError,
    ServiceUnavailableError,
    UsageError,
    Verdict,
    exit_code_for,
    status_word,
)
from orion_etl.signals import Interrupted


@pytest.mark.parametrize(
    ("outcome", "code"),
    [
        (Verdict.OK, 0),
        (Verdict.WARNINGS, 1),
        (Verdict.INVALID, 2),
        (Verdict.ERROR, 3),
        (Verdict.FAILED, 4),
        (UsageError("bad option"), 2),
        (ConfigError("bad key"), 2),
        (ServiceUnavailableError("database down"), 3),
        (LockHeldError("another run"), 3),
        (RuntimeError("bug"), 3),
        (Interrupted(signal.SIGTERM), 143),
        (Interrupted(signal.SIGINT), 130),
    ],
)
def test_one_function_decides_the_exit_code(outcome: object, code: int) -> None:
    assert exit_code_for(outcome) == code  # type: ignore[arg-type]


def test_checks_failed_is_not_bad_usage() -> None:
    assert ExitCode.CHECKS_FAILED != ExitCode.USAGE
    assert exit_code_for(Verdict.FAILED) != exit_code_for(UsageError("x"))


def test_a_result_is_judged_by_its_verdict() -> None:
    class Result:
        verdict = Verdict.FAILED

    assert exit_code_for(Result()) == 4


def test_the_worst_verdict_wins_could_not_run_above_failed() -> None:
    assert Verdict.worst([]) is Verdict.OK
    assert Verdict.worst([Verdict.WARNINGS, Verdict.OK]) is Verdict.WARNINGS
    assert Verdict.worst([Verdict.FAILED, Verdict.WARNINGS]) is Verdict.FAILED
    assert Verdict.worst([Verdict.FAILED, Verdict.ERROR]) is Verdict.ERROR
    assert Verdict.worst([Verdict.INVALID, Verdict.FAILED]) is Verdict.INVALID


@pytest.mark.parametrize(
    ("code", "word"),
    [(0, "ok"), (1, "warnings"), (2, "invalid"), (3, "error"), (4, "failed"), (130, "interrupted"),
     (143, "interrupted"), (9, "error")],
)  # fmt: skip
def test_status_words(code: int, word: str) -> None:
    assert status_word(code) == word
