"""Where `stream offsets reset` moves a consumer group's loader positions (pure).

A position is the next offset to load (`etl_consumer_offsets.next_offset`). Kafka keeps offsets
`low .. high - 1` of a partition; a position is valid from `low` (everything retained is read
again) to `high` (nothing is read until new records arrive). Every target is clamped into that
range, so a reset never points the loader at offsets Kafka no longer has or does not have yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class TargetKind(StrEnum):
    EARLIEST = "earliest"
    LATEST = "latest"
    DATETIME = "datetime"
    OFFSET = "offset"


@dataclass(frozen=True)
class ResetTarget:
    """`--to-earliest`, `--to-latest`, `--to-datetime T` or `--to-offset N`."""

    kind: TargetKind
    offset: int | None = None
    at: datetime | None = None

    def describe(self) -> str:
        if self.kind is TargetKind.OFFSET:
            return f"offset {self.offset}"
        if self.kind is TargetKind.DATETIME and self.at is not None:
            return f"first record at or after {self.at.isoformat()}"
        return str(self.kind)


@dataclass(frozen=True)
class PartitionState:
    """One partition as Kafka and the warehouse see it."""

    topic: str
    partition: int
    low: int
    high: int
    stored: int | None  # the group's position in the warehouse (None: never committed)
    at_time: int | None = None  # --to-datetime: Kafka's first offset at/after T (None: none yet)

    @property
    def lag(self) -> int:
        """Records still to load (from `low` when nothing is stored yet)."""
        return max(0, self.high - max(self.low, self.stored if self.stored is not None else self.low))


@dataclass(frozen=True)
class PlannedReset:
    """One partition's move."""

    topic: str
    partition: int
    current: int | None
    new: int
    low: int
    high: int

    @property
    def changes(self) -> bool:
        return self.current != self.new

    @property
    def rereads(self) -> bool:
        """Records at or after `new` may have been read (and dead-lettered) before: a move
        backwards, or a position never stored (an earlier run may have died before its first
        commit)."""
        return self.current is None or self.new < self.current

    def as_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "current": self.current,
            "new": self.new,
            "low": self.low,
            "high": self.high,
            "to_load": self.high - self.new,
        }


def target_offset(state: PartitionState, target: ResetTarget) -> int:
    """The new position of one partition, clamped into `low .. high`."""
    if target.kind is TargetKind.EARLIEST:
        wanted = state.low
    elif target.kind is TargetKind.LATEST:
        wanted = state.high
    elif target.kind is TargetKind.OFFSET:
        if target.offset is None:
            raise ValueError("an offset target needs an offset")
        wanted = target.offset
    else:
        wanted = state.high if state.at_time is None or state.at_time < 0 else state.at_time
    return min(max(wanted, state.low), state.high)


def plan_reset(states: list[PartitionState], target: ResetTarget) -> list[PlannedReset]:
    """Every partition's move, in topic/partition order."""
    return [
        PlannedReset(s.topic, s.partition, s.stored, target_offset(s, target), s.low, s.high)
        for s in sorted(states, key=lambda s: (s.topic, s.partition))
    ]
