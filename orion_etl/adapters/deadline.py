"""A total deadline for blocking calls to outside services (webhooks, Kafka Connect REST).

httpx's `timeout` bounds each connect/read/write, not the request: a server that answers one
header line every half second keeps a request alive for ever. `call_with_deadline` runs the call
on a daemon thread and waits at most the deadline; past it, `cancel` (closing the client, so its
socket) makes the worker give up and the caller gets `DeadlineExceededError` at once. The wait is
interruptible: a signal handler that raises (SIGTERM, SIGINT) ends it like any other call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# How long the caller waits, after cancelling, for the worker to notice (it normally fails at once).
_CANCEL_GRACE_S = 1.0


class DeadlineExceededError(Exception):
    """The call did not finish within its total deadline (it was cancelled)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no complete answer within {seconds:g} s")
        self.seconds = seconds


def call_with_deadline(fn: Callable[[], T], seconds: float, *, cancel: Callable[[], None]) -> T:
    """`fn()`, or `DeadlineExceededError` once `seconds` have passed (after calling `cancel`)."""
    if seconds <= 0:
        raise DeadlineExceededError(0.0)
    outcome: list[tuple[bool, object]] = []
    done = threading.Event()

    def work() -> None:
        try:
            outcome.append((True, fn()))
        except BaseException as exc:  # handed to the caller below, re-raised there
            outcome.append((False, exc))
        finally:
            done.set()

    worker = threading.Thread(target=work, name="orion-deadline", daemon=True)
    worker.start()
    if not done.wait(seconds):
        cancel()
        done.wait(_CANCEL_GRACE_S)
        raise DeadlineExceededError(seconds)
    ok, value = outcome[0]
    if not ok:
        assert isinstance(value, BaseException)
        raise value
    return value  # type: ignore[return-value]


class Budget:
    """A total time budget shared by several calls (e.g. every alert of one audit)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def left(self) -> float:
        return max(0.0, self._end - time.monotonic())

    @property
    def spent(self) -> bool:
        return self.left() <= 0
