"""`stream status` and `stream offsets show|reset`: the loader's positions without raw SQL.

A reset writes the group's `etl_consumer_offsets` rows (the positions the loader resumes from; the
offsets committed to Kafka are for lag monitoring only and are not read back). It refuses while
a loader of the group runs, as seen by Kafka (live members of the consumer group) or by the
ledger (a RUNNING stream run of the group whose process is alive). Should a loader start right
after the check, its first commit is fenced by the compare-and-set on the positions and it
re-reads them: it continues from the reset positions, never from the old ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from orion_etl.adapters import positions
from orion_etl.adapters.jobruns import mark_abandoned, running_loaders
from orion_etl.adapters.kafka import group_members, partition_states
from orion_etl.adapters.postgres import connect
from orion_etl.config.models import OrionSettings
from orion_etl.core.offset_reset import PartitionState, PlannedReset, ResetTarget, TargetKind, plan_reset
from orion_etl.errors import LockHeldError, UsageError


class LoaderRunningError(LockHeldError):
    """A loader of the group is running: its positions must not be moved under it (exit 3)."""


def _topics(settings: OrionSettings, topics: list[str] | None) -> list[str]:
    return list(dict.fromkeys(topics or vars(settings.stream.topics).values()))


@dataclass
class PositionsReport:
    """Per-partition positions of a group, and what else `stream status` shows."""

    group: str
    partitions: list[PartitionState]
    members: list[str] = field(default_factory=list)
    running: list[dict[str, Any]] = field(default_factory=list)
    watermarks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    def as_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "lag": self.lag,
            "partitions": [
                {
                    "topic": p.topic,
                    "partition": p.partition,
                    "stored": p.stored,
                    "low": p.low,
                    "high": p.high,
                    "lag": p.lag,
                }
                for p in self.partitions
            ],
            "group_members": self.members,
            "running_loaders": self.running,
            "cdc_watermarks": self.watermarks,
        }


def positions_report(
    settings: OrionSettings, *, group: str | None = None, topics: list[str] | None = None
) -> PositionsReport:
    """Stored positions against Kafka's watermarks (lag per partition), loaders, CDC watermarks."""
    group = group or settings.stream.group_id
    with connect(settings.warehouse, autocommit=True) as conn:
        mark_abandoned(conn)
        stored = positions.stored_positions(conn, group)
        running = running_loaders(conn, group)
        watermarks = positions.cdc_watermarks(conn)
    states = partition_states(settings.kafka, _topics(settings, topics), stored)
    members = group_members(settings.kafka, group)
    return PositionsReport(group, states, members, running, watermarks)


@dataclass
class ResetReport:
    group: str
    target: ResetTarget
    plan: list[PlannedReset]
    dry_run: bool
    changed: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "target": self.target.describe(),
            "dry_run": self.dry_run,
            "changed": self.changed,
            "partitions": [r.as_dict() for r in self.plan],
        }


def reset_offsets(
    settings: OrionSettings,
    target: ResetTarget,
    *,
    group: str | None = None,
    topics: list[str] | None = None,
    partition: int | None = None,
    dry_run: bool = False,
) -> ResetReport:
    """Move the group's positions to `target` (all partitions of `topics`, or one `partition`)."""
    group = group or settings.stream.group_id
    if target.kind is TargetKind.OFFSET and partition is None and len(_topics(settings, topics)) != 1:
        raise UsageError("--to-offset moves one topic: give --topic (and --partition for one partition)")
    with connect(settings.warehouse, autocommit=True) as conn:
        mark_abandoned(conn)
        running = running_loaders(conn, group)
        members = group_members(settings.kafka, group)
        if not dry_run and (members or running):
            who = ", ".join(members) or ", ".join(f"pid {r['pid']} on {r['host']}" for r in running)
            raise LoaderRunningError(
                f"a loader of group {group!r} is running ({who}); its positions are not moved under it",
                hint="stop it first (systemctl stop 'orion-etl-stream*'), then reset; "
                "--dry-run shows the plan",
            )
        stored = positions.stored_positions(conn, group)
        at = target.at if target.kind is TargetKind.DATETIME else None
        states = partition_states(settings.kafka, _topics(settings, topics), stored, at=at)
        if partition is not None:
            states = [s for s in states if s.partition == partition]
            if not states:
                raise UsageError(
                    f"--partition {partition}: no such partition in {', '.join(_topics(settings, topics))}"
                )
        plan = plan_reset(states, target)
        report = ResetReport(group, target, plan, dry_run)
        if not dry_run:
            with conn.transaction():
                report.changed = positions.write_positions(conn, group, plan)
        else:
            report.changed = sum(r.changes for r in plan)
    return report


def parse_target(*, earliest: bool, latest: bool, at: datetime | None, offset: int | None) -> ResetTarget:
    """Exactly one of the `--to-*` options."""
    if sum((earliest, latest, at is not None, offset is not None)) != 1:
        raise UsageError("give exactly one of --to-earliest, --to-latest, --to-datetime T, --to-offset N")
    if earliest:
        return ResetTarget(TargetKind.EARLIEST)
    if latest:
        return ResetTarget(TargetKind.LATEST)
    if at is not None:
        return ResetTarget(TargetKind.DATETIME, at=at)
    return ResetTarget(TargetKind.OFFSET, offset=offset)
