"""The batch-closing policy of the stream loader (orion_etl.core.batching), on a simulated clock.

A reference consumer plays librdkafka's `consume(n, timeout)` (returns once it has n records or the
timeout passed) over arrival times drawn by hypothesis; the commit thread is busy until a drawn
time. The properties are the ones the loader relies on: no record lost or reordered, no batch
over its size, no batch older than its age bound, and a batch closing early only when the consumer
was drained for one linger while the committer was free.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from orion_etl.core.batching import BatchPolicy, Poll, next_poll

EPS = 1e-9


class SimulatedConsumer:
    """Records arriving at fixed times; `consume` advances the shared clock as librdkafka would."""

    def __init__(self, arrivals: list[float]) -> None:
        self.arrivals = sorted(arrivals)
        self.next = 0
        self.now = 0.0

    def consume(self, n: int, timeout: float) -> list[int]:
        ready = [i for i in range(self.next, len(self.arrivals)) if self.arrivals[i] <= self.now + EPS]
        if len(ready) < n:
            upcoming = self.next + n - 1
            nth = self.arrivals[upcoming] if upcoming < len(self.arrivals) else float("inf")
            # a real clock always moves on (here by a microsecond at least: float sums may not)
            self.now = max(self.now + 1e-6, min(nth, self.now + timeout))
        out = []
        while self.next < len(self.arrivals) and self.arrivals[self.next] <= self.now + EPS and len(out) < n:
            out.append(self.next)
            self.next += 1
        return out


def collect(
    policy: BatchPolicy, consumer: SimulatedConsumer, busy_until: float
) -> tuple[list[int], float, bool]:
    """The loader's collect loop on the simulated clock: (batch, close time, last call drained)."""
    batch: list[int] = []
    started, first_at, drained = consumer.now, None, False
    while True:
        now = consumer.now
        if first_at is None and batch:
            first_at = now
        poll = next_poll(
            policy,
            count=len(batch),
            age_s=0.0 if first_at is None else now - first_at,
            waited_s=now - started,
            drained=drained,
            committer_busy=now < busy_until,
        )
        if poll is None:
            return batch, now, drained
        assert poll.messages >= 1 and poll.timeout_s > 0
        got = consumer.consume(poll.messages, poll.timeout_s)
        drained = not got
        batch.extend(got)


policies = st.builds(
    BatchPolicy,
    max_messages=st.integers(1, 50),
    max_age_s=st.floats(0.01, 0.5),
    linger_s=st.floats(0.001, 0.02),
)
arrivals = st.lists(st.floats(0, 2.0, allow_nan=False), max_size=200)


@settings(max_examples=300, deadline=None)
@given(policy=policies, times=arrivals, busy=st.lists(st.floats(0, 2.5), min_size=1, max_size=40))
def test_batches_keep_every_record_in_order_within_size_and_age(
    policy: BatchPolicy, times: list[float], busy: list[float]
) -> None:
    consumer = SimulatedConsumer(times)
    seen: list[int] = []
    for round_ in range(10_000):
        if consumer.next == len(consumer.arrivals):
            break
        busy_until = busy[round_ % len(busy)]
        begin = consumer.now
        batch, closed, drained = collect(policy, consumer, busy_until)
        assert len(batch) <= policy.max_messages
        if batch:
            first = max(begin, consumer.arrivals[batch[0]])  # read at once, or when it arrived
            assert closed - first <= policy.max_age_s + 2e-6
            full, aged = len(batch) == policy.max_messages, closed - first >= policy.max_age_s - 1e-6
            if not (full or aged):  # closed early: drained, committer free
                assert drained and closed >= busy_until
        else:
            assert closed - begin >= policy.max_age_s - EPS  # an empty wait lasts the age bound
        seen.extend(batch)
    assert seen == list(range(len(consumer.arrivals)))


@given(policy=policies)
def test_idle_committer_and_a_lone_record_close_after_one_linger(policy: BatchPolicy) -> None:
    """Low rate: one record closes its batch one linger after it arrived, not at the age bound."""
    consumer = SimulatedConsumer([0.0, 10.0])
    batch, closed, _ = collect(policy, consumer, busy_until=0.0)
    assert batch == [0] or len(batch) == policy.max_messages
    assert closed <= min(policy.linger_s, policy.max_age_s) + 2e-6


@given(policy=policies)
def test_busy_committer_lets_a_steady_stream_grow_the_batch(policy: BatchPolicy) -> None:
    """High rate: while the batch before commits, records keep joining (size or age closes it)."""
    step = policy.linger_s / 4
    consumer = SimulatedConsumer([i * step for i in range(2000)])
    batch, closed, _ = collect(policy, consumer, busy_until=float("inf"))
    assert len(batch) == policy.max_messages or closed >= policy.max_age_s - 1e-6


def test_the_policy_asks_for_one_record_when_empty_and_the_rest_when_not() -> None:
    policy = BatchPolicy(max_messages=100, max_age_s=0.25, linger_s=0.005)
    assert next_poll(policy, count=0, age_s=0, waited_s=0.1, drained=True, committer_busy=False) == Poll(
        1, 0.15
    )
    assert next_poll(policy, count=0, age_s=0, waited_s=0.25, drained=True, committer_busy=False) is None
    assert next_poll(policy, count=10, age_s=0.1, waited_s=0.2, drained=False, committer_busy=False) == Poll(
        90, 0.005
    )
    assert next_poll(policy, count=10, age_s=0.1, waited_s=0.2, drained=True, committer_busy=False) is None
    assert next_poll(policy, count=10, age_s=0.248, waited_s=0.3, drained=True, committer_busy=True) == Poll(
        90, 0.25 - 0.248
    )
    assert next_poll(policy, count=100, age_s=0, waited_s=0, drained=False, committer_busy=True) is None
