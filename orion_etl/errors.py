"""Error hierarchy and process exit codes.

Every failure a user can cause or meet surfaces as an ``OrionError`` subclass; the CLI's single
error boundary prints its message on one line and exits with its ``exit_code``. ``TransientError``
marks failures worth retrying (broker or database unavailable); anything else is terminal.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes shared by all commands (documented in README for cron and systemd)."""

    OK = 0
    WARNINGS = 1  # the job ran; it found warnings (DQ warnings, lag over the warn threshold)
    FAILURE = 2  # the job ran and found failures, or the command line / config is invalid
    ERROR = 3  # the job could not run (service unreachable, lock held, unexpected error)


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

    exit_code = ExitCode.FAILURE

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

    exit_code = ExitCode.FAILURE


class TransientError(OrionError):
    """A dependency is temporarily unavailable; retrying may succeed."""


class ServiceUnavailableError(TransientError):
    """PostgreSQL, Kafka or Kafka Connect could not be reached."""


class LockHeldError(OrionError):
    """Another run of the same job holds its advisory lock."""


class MigrationError(OrionError):
    """A schema migration could not be applied or the history does not match the files."""
