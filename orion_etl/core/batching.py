"""When the stream loader closes a micro-batch: the policy, as a pure function.

A batch closes on whichever comes first:

* **size**: `batch_max_messages` records;
* **age**: its oldest record has waited `batch_max_ms` (the latency target for batching);
* **drained while the committer has room**: the consumer had nothing more to give within a short
  linger (`batch_linger_ms`) and the commit thread is not full (one batch in its commit and one
  waiting). This is group commit: at low rates the commit thread is idle, so a batch closes as
  soon as the records in hand are read (small batches, latency of one linger + one commit); at
  high rates the commit thread is full, records pile up meanwhile, and the batch grows until a
  commit ends (or size/age close it), so the cost per transaction is spread over more rows when
  the load needs it. A batch that closes while one commits is prepared meanwhile, so the two
  threads keep overlapping as before.

The consumer's `consume(n, timeout)` blocks until it has `n` records or the timeout passes, so the
policy also says how many records to ask for and how long to wait: with nothing in hand, one record
(returns as soon as one arrives, or after the idle wait); with records in hand, the rest of the
batch for at most one linger (never past the age bound).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """The batch bounds of `[stream]`: size, age (seconds) and linger (seconds)."""

    max_messages: int
    max_age_s: float
    linger_s: float


@dataclass(frozen=True, slots=True)
class Poll:
    """Ask the consumer for at most `messages` records, waiting at most `timeout_s`."""

    messages: int
    timeout_s: float


def next_poll(
    policy: BatchPolicy,
    *,
    count: int,
    age_s: float,
    waited_s: float,
    drained: bool,
    committer_busy: bool,
) -> Poll | None:
    """The next consume() call for the batch being collected, or None: close it now.

    `count`: records in hand; `age_s`: how long the oldest of them has waited (0 when none);
    `waited_s`: how long this collection has run (bounds an empty wait, so the loop still does its
    housekeeping); `drained`: the last consume() returned nothing within its timeout (not merely
    fewer than asked: at saturation the consumer's prefetch queue is bounded and returns short
    every time, yet more keeps coming); `committer_busy`: the commit thread is full (a batch
    closed now would only wait).
    """
    if count >= policy.max_messages:
        return None
    if count == 0:
        left = policy.max_age_s - waited_s
        return Poll(1, left) if left > 0 else None
    left = policy.max_age_s - age_s
    if left <= 0:
        return None
    if drained and not committer_busy:
        return None
    return Poll(policy.max_messages - count, min(policy.linger_s, left))
