"""`orion-etl dlq list|show`: what is dead-lettered, grouped by failure, and the letters themselves.

Reads only (Kafka by `assign`, the replay log from the warehouse); `dlq replay` is in
`orion_etl.jobs.dlq_replay`.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg

from orion_etl.adapters import dlq_replays
from orion_etl.adapters.dlq_reader import DlqReader, Partition
from orion_etl.adapters.postgres import connect
from orion_etl.config.models import OrionSettings
from orion_etl.core.dead_letters import DlqMessage, FailureGroup, Selection, group_failures
from orion_etl.errors import OrionError, UsageError, Verdict

log = logging.getLogger(__name__)


def configured_dlq_topics(settings: OrionSettings) -> tuple[str, ...]:
    """The DLQ topics of this deployment: each configured stream topic plus `stream.dlq_suffix`."""
    topics = dict.fromkeys(vars(settings.stream.topics).values())
    return tuple(t + settings.stream.dlq_suffix for t in topics)


def resolve_topics(reader: DlqReader, wanted: tuple[str, ...], configured: tuple[str, ...] = ()) -> list[str]:
    """DLQ topics to work on: the given ones (origin or DLQ names, or glob patterns such as
    `'*'`), else this deployment's configured DLQ topics that exist.

    Never every `*.dlq` topic of the cluster by default: a shared cluster holds other deployments'
    dead letters, which a replay would otherwise record as failed here.
    """
    existing = reader.topics()
    if not wanted:
        return [t for t in dict.fromkeys(configured) if t in existing]
    out = []
    for name in wanted:
        if any(ch in name for ch in "*?["):
            pattern = name if name.endswith(("*", reader.suffix)) else name + reader.suffix
            out.extend(sorted(t for t in existing if fnmatch.fnmatchcase(t, pattern)))
            continue
        dlq = name if name.endswith(reader.suffix) else name + reader.suffix
        if dlq not in existing:
            known = ", ".join(sorted(existing)[:10]) or "none"
            raise UsageError(f"--topic: no DLQ topic {dlq!r} (DLQ topics: {known})")
        out.append(dlq)
    return list(dict.fromkeys(out))


def scan_ranges(
    reader: DlqReader, topics: list[str], selection: Selection, starts: dict[Partition, int] | None = None
) -> dict[Partition, tuple[int, int]]:
    """[start, end) per DLQ partition from watermarks, `starts`, --partition, --offsets and --since."""
    ranges: dict[Partition, tuple[int, int]] = {}
    for topic in topics:
        for partition, (low, high) in reader.watermarks(topic).items():
            if selection.partition is not None and partition != selection.partition:
                continue
            start = max(low, (starts or {}).get((topic, partition), low))
            end = high
            if selection.offsets is not None:
                if selection.offsets.start is not None:
                    start = max(start, selection.offsets.start)
                if selection.offsets.stop is not None:
                    end = min(end, selection.offsets.stop + 1)
            if selection.since is not None and start < end:
                at = reader.offset_for_time(topic, partition, selection.since)
                start = end if at is None else max(start, at)
            ranges[(topic, partition)] = (start, end)
    return ranges


def iter_selected(
    reader: DlqReader, ranges: dict[Partition, tuple[int, int]], selection: Selection, chunk: int = 1000
) -> Iterator[list[DlqMessage]]:
    for messages in reader.read(ranges, chunk=chunk):
        selected = [m for m in messages if selection.matches(m)]
        if selected:
            yield selected


@dataclass
class TopicSummary:
    """One DLQ topic: exact message count and the breakdown of the messages read."""

    topic: str
    messages: int
    scanned: int
    partitions: dict[int, tuple[int, int]]
    replays: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "messages": self.messages,
            "scanned": self.scanned,
            "complete": self.scanned >= self.messages,
            "partitions": {str(p): {"low": lo, "high": hi} for p, (lo, hi) in self.partitions.items()},
            "replays": self.replays,
        }


@dataclass
class ListResult:
    """`dlq list`: the DLQ topics and their letters grouped by failure."""

    topics: list[TopicSummary]
    groups: list[FailureGroup]

    @property
    def verdict(self) -> Verdict:
        return Verdict.OK

    def to_document(self) -> dict[str, Any]:
        return {"topics": [t.as_dict() for t in self.topics], "groups": [g.as_dict() for g in self.groups]}


def list_dead_letters(settings: OrionSettings, topics: tuple[str, ...] = ()) -> ListResult:
    """Every DLQ topic with its message count (watermarks) and a breakdown by class/fingerprint/rule."""
    groups: dict[tuple[str, str], FailureGroup] = {}
    summaries: dict[str, TopicSummary] = {}
    cap = settings.dlq.list_max_messages
    with DlqReader(settings.kafka, settings.stream.dlq_suffix) as reader:
        ranges: dict[Partition, tuple[int, int]] = {}
        for topic in resolve_topics(reader, topics, configured_dlq_topics(settings)):
            marks = reader.watermarks(topic)
            summaries[topic] = TopicSummary(topic, sum(hi - lo for lo, hi in marks.values()), 0, marks)
            per_partition = max(1, cap // max(1, len(marks)))  # the newest letters are the interesting ones
            ranges.update({(topic, p): (max(lo, hi - per_partition), hi) for p, (lo, hi) in marks.items()})
        for chunk in reader.read(ranges, chunk=5000):  # one pass over every topic: no per-topic latency
            for m in chunk:
                summaries[m.dlq_topic].scanned += 1
            group_failures(chunk, groups)
    if summaries:
        try:
            with connect(settings.warehouse) as conn:
                replays = dlq_replays.summary(conn, list(summaries))
        except (OrionError, psycopg.Error) as exc:  # Kafka is the source of truth here; say so, go on
            detail = " ".join(str(getattr(exc, "message", exc)).split())[:200]
            log.warning("replay history unavailable (warehouse: %s)", detail)
            replays = {}
        for s in summaries.values():
            s.replays = replays.get(s.topic, {})
    ordered = sorted(groups.values(), key=lambda g: (g.dlq_topic, -g.count, g.fingerprint))
    return ListResult(list(summaries.values()), ordered)


def show_dead_letters(settings: OrionSettings, selection: Selection, limit: int) -> list[DlqMessage]:
    """The first `limit` letters (in offset order per partition) matching `selection`."""
    if limit < 1:
        raise UsageError("--limit must be at least 1")
    out: list[DlqMessage] = []
    with DlqReader(settings.kafka, settings.stream.dlq_suffix) as reader:
        topics = resolve_topics(reader, selection.topics, configured_dlq_topics(settings))
        ranges = scan_ranges(reader, topics, selection)
        for chunk in iter_selected(reader, ranges, selection):
            out.extend(chunk[: limit - len(out)])
            if len(out) >= limit:
                break
    return out
