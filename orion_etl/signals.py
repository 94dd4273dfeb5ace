"""SIGTERM ends a batch command like Ctrl-C: an exception, so the ledger records the run.

Python's default SIGTERM action kills the process without unwinding: the run would stay RUNNING
(until the ledger finds it abandoned) and no metrics textfile would be written. The CLI entry
point installs `raise_on_signals` so SIGTERM raises `Interrupted` (a KeyboardInterrupt, like
SIGINT) in the main thread; `record_job_run` records it as INTERRUPTED with exit code 128 + signal.
The streaming loader installs its own handlers while it runs (finish the batch, then stop).
"""

from __future__ import annotations

import signal
from types import FrameType


class Interrupted(KeyboardInterrupt):
    """The process was asked to stop by a signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


# The last signal `raise_on_signals` turned into `Interrupted` (click may re-wrap the exception).
last_signal: list[int] = []


def _raise(signum: int, _frame: FrameType | None) -> None:
    last_signal[:] = [signum]
    raise Interrupted(signum)


def raise_on_signals() -> None:
    """SIGTERM and SIGINT raise `Interrupted` in the main thread."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _raise)


def exit_code_of(exc: BaseException) -> int:
    """The exit code a stop by `exc` means: 128 + signal (SIGINT when unknown)."""
    if isinstance(exc, Interrupted):
        return exc.exit_code
    return 128 + (last_signal[0] if last_signal else int(signal.SIGINT))
