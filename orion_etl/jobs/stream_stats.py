"""What the streaming loader counts: one typed tally per batch, the run's `StreamStats`, the
Prometheus families it updates (`orion_etl.adapters.metrics`) and its progress / dead-letter lines.

A batch's counts come from two places, the preparer's (`PreparedBatch.counts`) and the warehouse's
(`LoadCounts`); `Tally.of` maps them once, and the run's stats, the metrics' `outcome` labels and
the summary all read that one shape.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections import Counter, deque
from dataclasses import dataclass, field, fields
from typing import Any

from orion_etl.adapters import metrics
from orion_etl.adapters.warehouse_loader import LoadCounts
from orion_etl.jobs.stream_batch import PreparedBatch

log = logging.getLogger("orion_etl.jobs.stream")
RATE_WINDOW_S = 10.0  # the live view's and the progress line's msg/s cover this recent window


@dataclass
class Tally:
    """What became of records: of one batch, or (in `StreamStats`) of the whole run."""

    messages: int = 0
    loaded: int = 0  # upserted, deleted or appended (quotes)
    quotes: int = 0
    deleted: int = 0
    stale: int = 0
    duplicates: int = 0
    superseded: int = 0
    sampled_out: int = 0
    tombstones: int = 0
    dlq: int = 0
    rejected: int = 0  # of `dlq`: rows the warehouse refused (LOAD_REJECTED)
    side_rows_dropped: int = 0  # sampler / issue rows the warehouse refused (logged)
    dq_warnings: int = 0

    @classmethod
    def of(cls, prepared: PreparedBatch, counts: LoadCounts) -> Tally:
        """A committed batch's tally: the preparer's counts and what the warehouse changed."""
        c = prepared.counts
        return cls(
            messages=c.messages,
            loaded=counts.upserted + counts.deleted + counts.quotes,
            quotes=counts.quotes,
            deleted=counts.deleted,
            stale=counts.stale,
            duplicates=counts.duplicates,
            superseded=c.superseded,
            sampled_out=c.sampled_out,
            tombstones=c.tombstones,
            dlq=c.dlq + len(prepared.rejected),
            rejected=len(prepared.rejected),
            side_rows_dropped=counts.side_rows_dropped,
            dq_warnings=c.warnings,
        )

    def add(self, other: Tally) -> None:
        for f in fields(Tally):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


# `orion_etl_stream_records_total{outcome}`: the label of each tally field counted there
OUTCOMES = {
    "loaded": "loaded",
    "stale": "stale",
    "duplicate": "duplicates",
    "superseded": "superseded",
    "sampled_out": "sampled_out",
    "tombstone": "tombstones",
    "dlq": "dlq",
}


@dataclass
class StreamStats(Tally):
    """Live and final counters of a run."""

    batches: int = 0
    retries: int = 0
    fenced: int = 0
    lag: int | None = None
    lag_by_partition: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=100_000))
    # (monotonic time, messages) after each batch, the last RATE_WINDOW_S seconds (and one before).
    marks: deque[tuple[float, int]] = field(default_factory=deque)

    def mark(self, now: float | None = None) -> None:
        """Note the message count now (after a batch) for the recent rate."""
        now = time.monotonic() if now is None else now
        self.marks.append((now, self.messages))
        while len(self.marks) > 2 and self.marks[1][0] <= now - RATE_WINDOW_S:
            self.marks.popleft()

    def rate(self, now: float | None = None) -> float:
        """Messages per second over about the last RATE_WINDOW_S seconds (not since start).

        Counted from the last mark at or before the window's start (or the start of the run), so
        an idle loader reads 0 msg/s within one window instead of a slowly decaying average.
        """
        now = time.monotonic() if now is None else now
        base_t, base_m = self.started, 0
        for t, m in self.marks:
            if t > now - RATE_WINDOW_S:
                break
            base_t, base_m = t, m
        elapsed = now - base_t
        return (self.messages - base_m) / elapsed if elapsed > 0 else 0.0

    def average_rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.messages / elapsed if elapsed > 0 else 0.0

    def percentile(self, q: float) -> float | None:
        if len(self.latencies_ms) < 2:
            return self.latencies_ms[0] if self.latencies_ms else None
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[int(q) - 1]

    def account(self, tally: Tally, ts_ms: list[int], committed_ms: float) -> None:
        """A committed batch: its tally, and the latency of each record (source time to commit)."""
        self.batches += 1
        self.add(tally)
        self.latencies_ms.extend(committed_ms - t for t in ts_ms)
        self.mark()

    def as_dict(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "batches": self.batches,
            "loaded": self.loaded,
            "quotes": self.quotes,
            "deleted": self.deleted,
            "stale": self.stale,
            "duplicates": self.duplicates,
            "superseded": self.superseded,
            "sampled_out": self.sampled_out,
            "tombstones": self.tombstones,
            "dlq": self.dlq,
            "rejected": self.rejected,
            "side_rows_dropped": self.side_rows_dropped,
            "dq_warnings": self.dq_warnings,
            "retries": self.retries,
            "fenced": self.fenced,
            "lag": self.lag,
            "lag_by_partition": dict(sorted(self.lag_by_partition.items())),
            "rate_per_s": round(self.rate(), 1),
            "average_rate_per_s": round(self.average_rate(), 1),
            "latency_p50_ms": _round(self.percentile(50)),
            "latency_p99_ms": _round(self.percentile(99)),
        }


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


class BatchMetrics:
    """Prometheus families of committed batches (served with `stream --metrics-addr`): records
    read per topic; what became of them per outcome; latency; lag and source commit time."""

    def __init__(self) -> None:
        self.source_commit_s: dict[str, float] = {}  # newest source commit loaded, per source table

    def committed(self, prepared: PreparedBatch, tally: Tally, committed_ms: float) -> None:
        for topic, n in prepared.topic_counts.items():
            metrics.STREAM_CONSUMED.labels(topic).inc(n)
        for letter in [*prepared.letters, *prepared.rejected]:
            metrics.STREAM_DEAD_LETTERS.labels(letter.record.topic, str(letter.error_class)).inc()
        for outcome, name in OUTCOMES.items():
            if n := getattr(tally, name):
                metrics.STREAM_RECORDS.labels(outcome).inc(n)
        for issue in prepared.write.issues:
            metrics.STREAM_DQ_VIOLATIONS.labels(
                issue["source_table"], issue["rule_name"], issue["severity"]
            ).inc()
        for table, (_lsn, ts_ms) in prepared.write.watermarks.items():
            if ts_ms is not None and ts_ms / 1000 > self.source_commit_s.get(table, 0.0):
                self.source_commit_s[table] = ts_ms / 1000
                metrics.STREAM_SOURCE_COMMIT.labels(table).set(ts_ms / 1000)
        metrics.STREAM_BATCHES.inc()
        metrics.STREAM_LAST_COMMIT.set(committed_ms / 1000)
        metrics.STREAM_BATCH_SECONDS.observe(committed_ms / 1000 - prepared.started)
        step = max(1, len(prepared.latencies_ts_ms) // 500)  # a bounded sample per batch
        for ts in prepared.latencies_ts_ms[::step]:
            metrics.STREAM_LATENCY.observe(max(0.0, (committed_ms - ts) / 1000))

    @staticmethod
    def lag(topic: str, partition: int, behind: int) -> None:
        metrics.STREAM_LAG.labels(topic, str(partition)).set(behind)


def log_progress(stats: StreamStats, run_id: str) -> None:
    """One line at a steady interval: messages, recent rate, lag per partition, latency."""
    d = stats.as_dict()
    lag = ", ".join(f"{k}={v}" for k, v in d["lag_by_partition"].items()) or "-"
    log.info(
        "progress: %s messages, %s msg/s, lag %s (%s), latency p50 %s ms, p99 %s ms",
        d["messages"], d["rate_per_s"], d["lag"], lag, d["latency_p50_ms"], d["latency_p99_ms"],
        extra={"event": "progress", "run_id": run_id,
               **{k: d[k] for k in ("messages", "rate_per_s", "lag", "lag_by_partition", "latency_p50_ms",
                                    "latency_p99_ms", "loaded", "dlq", "dq_warnings", "retries")}},
    )  # fmt: skip


def warn_dead_letters(prepared: PreparedBatch, run_id: str) -> None:
    """A WARNING per batch that dead-lettered records: classes, count, origin offsets."""
    letters = [*prepared.letters, *prepared.rejected]
    classes = Counter(str(letter.error_class) for letter in letters)
    spans: dict[str, list[int]] = {}
    for letter in letters:
        rec = letter.record
        span = spans.setdefault(f"{rec.topic}[{rec.partition}]", [rec.offset, rec.offset])
        span[0], span[1] = min(span[0], rec.offset), max(span[1], rec.offset)
    origins = {k: f"{lo}..{hi}" if lo != hi else str(lo) for k, (lo, hi) in sorted(spans.items())}
    log.warning(
        "batch dead-lettered %s record(s): %s; origin offsets %s",
        len(letters),
        ", ".join(f"{n} {c}" for c, n in sorted(classes.items())),
        ", ".join(f"{k}@{v}" for k, v in origins.items()),
        extra={"event": "dead_letters", "run_id": run_id, "count": len(letters),
               "classes": dict(sorted(classes.items())), "origin_offsets": origins},
    )  # fmt: skip
