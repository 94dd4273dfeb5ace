"""Dead letters as the DLQ tools see them: parsed headers, class, failure fingerprint, filters.

Pure (no I/O). The loader writes the `dlq.*` header contract of docs/stream.md; a letter is
classified from its `dlq.error_class` header (the vocabulary is core/dead_letter_classes.py), else
(letters written by something else, e.g. a Kafka Connect `errors.deadletterqueue`) from
`__connect.errors.*` headers, else by sniffing the payload. The *failure fingerprint* groups
letters that failed the same way (class, error class, rules and the error text with ids, numbers
and quoted values masked), so that ten thousand letters of one failure read as one line; the
`dlq.fingerprint` header is the *letter id* (one record).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from orion_etl.core.dead_letter_classes import ErrorClass, LetterClass
from orion_etl.errors import UsageError

CONNECT_PREFIX = "__connect.errors."
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_HEX = re.compile(r"\b[0-9a-fA-F]{16,}\b")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def normalize_error(text: str) -> str:
    """The error with the parts that differ between records of one failure masked."""
    out = _UUID.sub("<id>", text)
    out = _QUOTED.sub("<value>", out)
    out = _HEX.sub("<hex>", out)
    out = _NUMBER.sub("<n>", out)
    return " ".join(out.split())


def failure_fingerprint(letter_class: str, error_class: str, rule: str, error: str) -> str:
    """12 hex chars identifying a kind of failure (not a record)."""
    text = "|".join((letter_class, error_class, rule, normalize_error(error)))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class DlqMessage:
    """One message of a DLQ topic with its parsed dead-letter headers."""

    dlq_topic: str
    dlq_partition: int
    dlq_offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    origin_topic: str | None
    origin_partition: int | None
    origin_offset: int | None
    origin_timestamp_ms: int | None
    error: str
    error_class: str
    rule: str
    letter_class: LetterClass
    fingerprint: str
    letter_id: str
    failed_at: str | None = None
    consumer_group: str | None = None
    job_run_id: str | None = None

    @property
    def origin_headers(self) -> list[tuple[str, bytes]]:
        """The original record's headers (what the loader saw)."""
        return [(k, v) for k, v in self.headers if not k.startswith(("dlq.", CONNECT_PREFIX))]

    @property
    def has_origin(self) -> bool:
        return None not in (self.origin_topic, self.origin_partition, self.origin_offset)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view (payload as text; base64 hint when it is not UTF-8)."""
        return {
            "dlq_topic": self.dlq_topic,
            "dlq_partition": self.dlq_partition,
            "dlq_offset": self.dlq_offset,
            "time": iso_ms(self.timestamp_ms),
            "class": self.letter_class.value,
            "fingerprint": self.fingerprint,
            "letter_id": self.letter_id,
            "error_class": self.error_class,
            "rule": self.rule,
            "error": self.error,
            "origin": {
                "topic": self.origin_topic,
                "partition": self.origin_partition,
                "offset": self.origin_offset,
                "time": iso_ms(self.origin_timestamp_ms),
            },
            "failed_at": self.failed_at,
            "consumer_group": self.consumer_group,
            "job_run_id": self.job_run_id,
            "key": text_or_none(self.key),
            "value": text_or_none(self.value),
            "value_is_utf8": text_or_none(self.value) is not None or self.value is None,
        }


def text_or_none(data: bytes | None) -> str | None:
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def iso_ms(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text not in (None, "") else None
    except ValueError:
        return None


def _sniff(value: bytes | None) -> LetterClass:
    """Class of a letter without headers: undecodable when the payload is not JSON text."""
    if value is None:
        return LetterClass.UNKNOWN
    try:
        json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return LetterClass.UNDECODABLE
    return LetterClass.UNKNOWN


def _connect_class(h: dict[str, str]) -> LetterClass | None:
    stage = h.get(CONNECT_PREFIX + "stage", "").upper()
    exc = h.get(CONNECT_PREFIX + "exception.class.name", "")
    if "Retriable" in exc or "Timeout" in exc:
        return LetterClass.TRANSIENT
    if stage.endswith("CONVERTER"):
        return LetterClass.UNDECODABLE
    if stage:
        return LetterClass.SCHEMA
    return None


def parse_letter(
    dlq_topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int | None,
    key: bytes | None,
    value: bytes | None,
    headers: list[tuple[str, bytes]] | None,
    suffix: str,
) -> DlqMessage:
    """Parse one DLQ record; headers first, then Kafka Connect headers, then the payload."""
    raw = headers or []
    h = {k: v.decode("utf-8", errors="replace") for k, v in raw if v is not None}
    error_class = h.get("dlq.error_class", "")
    error = h.get("dlq.error") or h.get(CONNECT_PREFIX + "exception.message", "")
    rule = h.get("dlq.rule", "")
    ours = ErrorClass.of_header(error_class)
    letter_class = (ours.letter_class if ours else None) or _connect_class(h) or _sniff(value)
    if not error_class:
        error_class = h.get(CONNECT_PREFIX + "exception.class.name", "").rsplit(".", 1)[-1] or "UNKNOWN"
    if not error:
        error = "no dead-letter headers" if letter_class is LetterClass.UNKNOWN else "payload is not JSON"
    origin_topic = h.get("dlq.origin_topic") or h.get(CONNECT_PREFIX + "topic")
    if not origin_topic and suffix and dlq_topic.endswith(suffix):
        origin_topic = dlq_topic[: -len(suffix)]
    origin_partition = _int(h.get("dlq.origin_partition") or h.get(CONNECT_PREFIX + "partition"))
    origin_offset = _int(h.get("dlq.origin_offset") or h.get(CONNECT_PREFIX + "offset"))
    letter_id = h.get("dlq.fingerprint") or ""
    if not letter_id and origin_partition is not None and origin_offset is not None:
        coords = f"{origin_topic}/{origin_partition}/{origin_offset}"
        letter_id = hashlib.sha256(coords.encode()).hexdigest()[:32]
    return DlqMessage(
        dlq_topic=dlq_topic,
        dlq_partition=partition,
        dlq_offset=offset,
        timestamp_ms=timestamp_ms,
        key=key,
        value=value,
        headers=[(k, v) for k, v in raw if v is not None],
        origin_topic=origin_topic,
        origin_partition=origin_partition,
        origin_offset=origin_offset,
        origin_timestamp_ms=_int(h.get("dlq.origin_timestamp")),
        error=error,
        error_class=error_class,
        rule=rule,
        letter_class=letter_class,
        fingerprint=failure_fingerprint(letter_class, error_class, rule, error),
        letter_id=letter_id,
        failed_at=h.get("dlq.failed_at"),
        consumer_group=h.get("dlq.consumer_group"),
        job_run_id=h.get("dlq.job_run_id") or None,
    )


# --- filters ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OffsetRange:
    """Inclusive offsets; None = open."""

    start: int | None = None
    stop: int | None = None

    def contains(self, offset: int | None) -> bool:
        if offset is None:
            return False
        return (self.start is None or offset >= self.start) and (self.stop is None or offset <= self.stop)


def parse_range(text: str, option: str) -> OffsetRange:
    """`A..B`, `A..`, `..B` or `A` (inclusive) -> OffsetRange; UsageError otherwise."""
    m = re.fullmatch(r"\s*(\d*)\s*(\.\.)?\s*(\d*)\s*", text)
    if not m or (not m.group(1) and not m.group(3)) or (m.group(2) is None and m.group(3)):
        raise UsageError(f"{option}: expected A..B, A.., ..B or A (non-negative offsets), got {text!r}")
    start = int(m.group(1)) if m.group(1) else None
    stop = start if m.group(2) is None else (int(m.group(3)) if m.group(3) else None)
    if start is not None and stop is not None and stop < start:
        raise UsageError(f"{option}: the range {text!r} is empty (end before start)")
    return OffsetRange(start, stop)


def parse_classes(values: Iterable[str]) -> tuple[LetterClass, ...]:
    out = []
    for v in values:
        try:
            out.append(LetterClass(v.strip().lower().replace("-", "_")))
        except ValueError:
            choices = ", ".join(c.value for c in LetterClass)
            raise UsageError(f"--class: unknown class {v!r} (one of: {choices})") from None
    return tuple(out)


@dataclass(frozen=True)
class Selection:
    """Which dead letters a command works on (every given filter must match)."""

    topics: tuple[str, ...] = ()  # DLQ topic names (resolved by the job)
    partition: int | None = None  # DLQ partition
    classes: tuple[LetterClass, ...] = ()
    error: str | None = None  # case-insensitive substring of the error
    rules: tuple[str, ...] = ()  # any of these rule names
    fingerprints: tuple[str, ...] = ()  # prefix of the failure fingerprint or of the letter id
    key: str | None = None  # substring of the record key (text)
    since: datetime | None = None  # DLQ record time (when dead-lettered)
    until: datetime | None = None
    offsets: OffsetRange | None = None  # DLQ offsets
    origin_offsets: OffsetRange | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.since and self.until and self.until < self.since:
            raise UsageError("--until is before --since: the time range is empty")

    def matches(self, m: DlqMessage) -> bool:
        """Whether a letter is selected (topic, partition and offset bounds are applied when reading)."""
        if self.classes and m.letter_class not in self.classes:
            return False
        if self.error and self.error.lower() not in m.error.lower():
            return False
        if self.rules and not set(self.rules) & {r.strip() for r in m.rule.split(",") if r.strip()}:
            return False
        if self.fingerprints and not any(
            m.fingerprint.startswith(f) or (m.letter_id and m.letter_id.startswith(f))
            for f in self.fingerprints
        ):
            return False
        if self.key is not None and (m.key is None or self.key not in m.key.decode("utf-8", "replace")):
            return False
        if self.origin_offsets is not None and not self.origin_offsets.contains(m.origin_offset):
            return False
        if self.offsets is not None and not self.offsets.contains(m.dlq_offset):
            return False
        if self.since or self.until:
            if m.timestamp_ms is None:
                return False
            ts = datetime.fromtimestamp(m.timestamp_ms / 1000, UTC)
            if (self.since and ts < self.since) or (self.until and ts > self.until):
                return False
        return True

    def describe(self) -> dict[str, Any]:
        """The filters given (for job-run metadata and JSON output)."""
        out: dict[str, Any] = {}
        for name in ("topics", "partition", "error", "rules", "fingerprints", "key"):
            value = getattr(self, name)
            if value:
                out[name] = list(value) if isinstance(value, tuple) else value
        if self.classes:
            out["classes"] = [c.value for c in self.classes]
        for name in ("since", "until"):
            if getattr(self, name):
                out[name] = getattr(self, name).isoformat()
        for name in ("offsets", "origin_offsets"):
            r = getattr(self, name)
            if r is not None:
                out[name] = [r.start, r.stop]
        return out


# --- summaries -----------------------------------------------------------------------------------


@dataclass
class FailureGroup:
    """Letters of one DLQ topic that failed the same way."""

    dlq_topic: str
    letter_class: str
    fingerprint: str
    rule: str
    error_class: str
    sample_error: str
    count: int = 0
    first_ms: int | None = None
    last_ms: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "dlq_topic": self.dlq_topic,
            "class": self.letter_class,
            "fingerprint": self.fingerprint,
            "rule": self.rule,
            "error_class": self.error_class,
            "count": self.count,
            "first": iso_ms(self.first_ms),
            "last": iso_ms(self.last_ms),
            "sample_error": self.sample_error,
        }


def group_failures(messages: Iterable[DlqMessage], into: dict[tuple[str, str], FailureGroup]) -> None:
    """Add letters to per-(topic, fingerprint) groups (streaming: call once per chunk)."""
    for m in messages:
        g = into.get((m.dlq_topic, m.fingerprint))
        if g is None:
            g = into[(m.dlq_topic, m.fingerprint)] = FailureGroup(
                m.dlq_topic, m.letter_class.value, m.fingerprint, m.rule, m.error_class, m.error[:300]
            )
        g.count += 1
        if m.timestamp_ms is not None:
            g.first_ms = m.timestamp_ms if g.first_ms is None else min(g.first_ms, m.timestamp_ms)
            g.last_ms = m.timestamp_ms if g.last_ms is None else max(g.last_ms, m.timestamp_ms)
