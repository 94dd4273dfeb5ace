"""`stream offsets reset` targets: a reference model over generated partitions."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from orion_etl.core.offset_reset import PartitionState, ResetTarget, TargetKind, plan_reset


@st.composite
def partitions(draw: st.DrawFn) -> list[PartitionState]:
    out = []
    for i in range(draw(st.integers(1, 6))):
        low = draw(st.integers(0, 1_000))
        high = low + draw(st.integers(0, 1_000))
        stored = draw(st.none() | st.integers(0, high + 10))
        at = draw(st.none() | st.just(-1) | st.integers(low, high))
        out.append(PartitionState(f"t{i % 2}", i, low, high, stored, at))
    return out


targets = st.one_of(
    st.builds(ResetTarget, st.sampled_from([TargetKind.EARLIEST, TargetKind.LATEST, TargetKind.DATETIME])),
    st.builds(ResetTarget, st.just(TargetKind.OFFSET), st.integers(-5, 3_000)),
)


@given(partitions(), targets)
def test_every_new_position_is_retained_and_matches_the_target(
    states: list[PartitionState], target: ResetTarget
) -> None:
    plan = plan_reset(states, target)
    assert [(p.topic, p.partition) for p in plan] == sorted((s.topic, s.partition) for s in states)
    by_key = {(s.topic, s.partition): s for s in states}
    for row in plan:
        s = by_key[(row.topic, row.partition)]
        assert s.low <= row.new <= s.high
        assert row.current == s.stored
        expected = {
            TargetKind.EARLIEST: s.low,
            TargetKind.LATEST: s.high,
            TargetKind.OFFSET: min(max(target.offset or 0, s.low), s.high),
            TargetKind.DATETIME: s.high if s.at_time is None or s.at_time < 0 else s.at_time,
        }[target.kind]
        assert row.new == expected
        assert row.as_dict()["to_load"] == s.high - row.new >= 0
        # a move that may re-read records gets the whole-DLQ floor (exactly one letter per record)
        assert row.rereads == (s.stored is None or row.new < s.stored)


@given(partitions())
def test_lag_counts_from_the_stored_position_or_the_start(states: list[PartitionState]) -> None:
    for s in states:
        start = s.low if s.stored is None else max(s.low, s.stored)
        assert s.lag == max(0, s.high - start)
