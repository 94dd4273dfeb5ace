"""Error hierarchy and the one exit-code policy.

Every failure a user can cause or meet surfaces as an ``OrionError`` subclass; the CLI's single
error boundary prints its message on one line and exits with ``exit_code_for(exc)``.
``TransientError`` marks failures worth retrying (broker or database unavailable); anything else is
terminal.

Where the exit code is decided: a job returns a result whose ``verdict`` says what the run found
(ok, warnings, checks failed, could not run); an exception says what stopped it. `exit_code_for` is
the one function that turns either into an `ExitCode`; nothing else picks numbers. README
"Exit codes" documents the table per command.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum, StrEnum
from typing import Protocol

from orion_etl.signals import exit_code_of


class ExitCode(IntEnum):
    """Exit codes shared by all commands (documented in README for cron and systemd)."""

    OK = 0
    WARNINGS = 1  # the job ran; it found warnings (DQ warnings, lag over the warn threshold)
    USAGE = 2  # the command line or the configuration is invalid (click's convention)
    ERROR = 3  # the job could not run (service unreachable, lock held, unexpected error)
    CHECKS_FAILED = 4  # the job ran and its checks failed (DQ errors, mismatches, failed connector)
    INTERRUPTED = 130  # stopped by SIGINT (SIGTERM: 143, i.e. 128 + signal number)


class Verdict(StrEnum):
    """What a run found; its exit code and its JSON `status` word follow from it."""

    OK = "ok"
    WARNINGS = "warnings"
    FAILED = "failed"  # ran, and checks failed
    INVALID = "invalid"  # the configuration (or input) it was given is invalid
    ERROR = "error"  # could not run (all of it, or a part: an unreachable service, a rule in error)

    @classmethod
    def worst(cls, verdicts: Iterable[Verdict]) -> Verdict:
        """The most serious verdict (ok < warnings < failed < invalid < error); ok for none."""
        return max(verdicts, key=_RANK.__getitem__, default=cls.OK)


_RANK = {Verdict.OK: 0, Verdict.WARNINGS: 1, Verdict.FAILED: 2, Verdict.INVALID: 3, Verdict.ERROR: 4}
_CODES = {
    Verdict.OK: ExitCode.OK,
    Verdict.WARNINGS: ExitCode.WARNINGS,
    Verdict.FAILED: ExitCode.CHECKS_FAILED,
    Verdict.INVALID: ExitCode.USAGE,
    Verdict.ERROR: ExitCode.ERROR,
}


class Judged(Protocol):
    """A job's result: what it found."""

    @property
    def verdict(self) -> Verdict: ...


def exit_code_for(outcome: Verdict | Judged | BaseException) -> int:
    """The process exit code of a run's result, or of the exception that ended it.

    An `OrionError` carries its own (`USAGE` for bad input, `ERROR` for could not run, ...); a
    stop by signal n is 128 + n (SIGINT when unknown); any other exception is `ERROR`.
    """
    if isinstance(outcome, Verdict):
        return int(_CODES[outcome])
    if isinstance(outcome, OrionError):
        return int(outcome.exit_code)
    if isinstance(outcome, KeyboardInterrupt):
        return exit_code_of(outcome)
    if isinstance(outcome, BaseException):
        return int(ExitCode.ERROR)
    return int(_CODES[outcome.verdict])


def status_word(exit_code: int) -> str:
    """The JSON `status` of an exit code: ok, warnings, invalid, error, failed or interrupted."""
    if exit_code > 128:
        return "interrupted"
    words: dict[int, str] = {int(code): verdict.value for verdict, code in _CODES.items()}
    return words.get(exit_code, "error")


class OrionError(Exception):
    """Base of every error orion-etl reports to its user."""

    exit_code: int = ExitCode.ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class ConfigError(OrionError):
    """Configuration file or environment is invalid (exit 2).

    `problems` lists every problem found (the message names the first and counts the others);
    `config check` prints them all.
    """

    exit_code = ExitCode.USAGE

    def __init__(self, message: str, *, hint: str | None = None, problems: list[str] | None = None) -> None:
        super().__init__(message, hint=hint)
        self.problems = problems or [message]

    @classmethod
    def of(cls, problems: list[str], *, hint: str | None = None) -> ConfigError:
        """One error for several problems: the first, and how many more."""
        more = (
            f" (and {len(problems) - 1} more; `orion-etl config check` lists them)"
            if len(problems) > 1
            else ""
        )
        return cls(problems[0] + more, hint=hint, problems=problems)


class UsageError(OrionError):
    """A command-line argument is invalid (exit 2)."""

    exit_code = ExitCode.USAGE


class TransientError(OrionError):
    """A dependency is temporarily unavailable; retrying may succeed."""


class ServiceUnavailableError(TransientError):
    """PostgreSQL, Kafka or Kafka Connect could not be reached."""


class LockHeldError(OrionError):
    """Another run of the same job holds its advisory lock."""


class MigrationError(OrionError):
    """A schema migration could not be applied or the history does not match the files."""
