"""Retrying transient failures with backoff until the work succeeds or the process is asked to stop.

Shared by the consumers that write the warehouse (`stream`, `dims sync --from-cdc`): which failures
are transient is the adapters' decision (`orion_etl.adapters.failures.is_transient`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from orion_etl.adapters.failures import describe, is_transient

log = logging.getLogger(__name__)
T = TypeVar("T")


class Retry:
    """Runs work, retrying transient failures with exponential backoff (at most `max_backoff_s`).

    `stopping()` turns true when the process is asked to stop: the pause is cut short; with
    `finish_on_stop` (a batch in hand) the work gets one more attempt, otherwise the last failure
    is raised at once; after `attempts` the last failure is raised too. `on_retry` hears of every
    retry; `reset` (or `default_reset`) runs before it (drop a connection that may be broken).
    """

    def __init__(
        self,
        *,
        stopping: Callable[[], bool],
        max_backoff_s: float,
        on_retry: Callable[[], None] = lambda: None,
        default_reset: Callable[[], None] = lambda: None,
        attempts: int = 10_000,
    ) -> None:
        self.stopping = stopping
        self.attempts = attempts
        self.max_backoff_s = max_backoff_s
        self.on_retry = on_retry
        self.default_reset = default_reset

    def __call__(
        self, fn: Callable[[], T], reset: Callable[[], None] | None = None, *, finish_on_stop: bool = True
    ) -> T:
        attempts = 0
        after_stop = 1 if finish_on_stop else 0

        def before_sleep(state: Any) -> None:
            nonlocal attempts
            attempts += 1
            self.on_retry()
            exc = state.outcome.exception() if state.outcome else None
            pause = state.next_action.sleep if state.next_action else 0.0
            log.warning(
                "transient failure (attempt %s), retrying in %.1f s: %s", attempts, pause, describe(exc)
            )
            (reset or self.default_reset)()

        def sleep(seconds: float) -> None:  # a signal handler sets the stop flag; look every 0.1 s
            deadline = time.monotonic() + seconds
            while not self.stopping() and (left := deadline - time.monotonic()) > 0:
                time.sleep(min(left, 0.1))

        retrying = Retrying(
            retry=retry_if_exception(is_transient),
            wait=wait_exponential(multiplier=0.5, max=self.max_backoff_s),
            stop=lambda state: (
                (self.stopping() and state.attempt_number > after_stop)
                or stop_after_attempt(self.attempts)(state)
            ),
            sleep=sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(fn)
