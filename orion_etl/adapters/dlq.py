"""Dead-letter publishing: the original record, verbatim, plus `dlq.*` headers (docs/stream.md).

One long-lived idempotent producer per consumer. Letters are published and flushed inside the
batch's warehouse transaction, after its positions are claimed and before it commits, so a dead
letter is durable before its source record is considered consumed, and a fenced batch publishes
nothing.

Exactly one letter per record (docs/dlq.md): the publisher remembers the origins it has delivered
(`published`), so a retried batch does not publish them again; for a re-read after a crash, each
claim stores the *floor* of the partition's DLQ topic (per DLQ partition, an offset below which lie
all letters of the records committed so far; every letter this process publishes later lies above
it), and a process taking the partition over reads the DLQ from the stored floor (`recall`) and
treats the letters it finds for records it will re-read as published.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import KafkaError, Message, Producer

from orion_etl.adapters.dlq_reader import DlqReader
from orion_etl.core.pgtext import storable
from orion_etl.core.records import KafkaRecord
from orion_etl.errors import ServiceUnavailableError

HEADER_PREFIX = "dlq."
# Kafka's default broker/topic limit is 1 MB: a larger original (it may have been produced to a
# topic with a higher limit) is dead-lettered truncated to this size, with `dlq.original_size`, so
# that one oversized record can never block the loader. The full record stays in its origin topic.
MAX_DLQ_VALUE_BYTES = 900_000


def letter_id(record: KafkaRecord) -> str:
    """Stable id of a dead letter: sha256 of its origin coordinates (topic/partition/offset).

    Persisted as the `dlq.fingerprint` header and the `fingerprint` key of DQ issue origins (names
    kept for compatibility); not to be confused with the *failure fingerprint* of
    core/dead_letters.py, which groups letters that failed the same way.
    """
    text = f"{record.topic}/{record.partition}/{record.offset}"
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class DeadLetter:
    """Why one record is dead-lettered."""

    record: KafkaRecord
    error_class: str
    error: str
    rule: str = ""
    source_table: str | None = None
    record_id: str | None = None
    sqlstate: str = ""  # LOAD_REJECTED: PostgreSQL's SQLSTATE


Origin = tuple[str, int, int]  # topic, partition, offset of the dead-lettered record
log = logging.getLogger(__name__)


def dlq_headers(
    letter: DeadLetter, group: str, job_run_id: str | None
) -> list[tuple[str, str | bytes | None]]:
    """The documented header contract (the DLQ tools parse exactly these)."""
    r = letter.record
    own = {
        "error": letter.error[:2000],
        "error_class": letter.error_class,
        "rule": letter.rule,
        "origin_topic": r.topic,
        "origin_partition": str(r.partition),
        "origin_offset": str(r.offset),
        "origin_timestamp": "" if r.timestamp_ms is None else str(r.timestamp_ms),
        "failed_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "fingerprint": letter_id(r),
        "consumer_group": group,
        "job_run_id": job_run_id or "",
    }
    if letter.sqlstate:
        own["sqlstate"] = letter.sqlstate
    originals: list[tuple[str, str | bytes | None]] = [
        (k, v) for k, v in (r.headers or []) if not k.startswith(HEADER_PREFIX)
    ]
    return originals + [(HEADER_PREFIX + k, storable(v).encode()) for k, v in own.items()]


class DeadLetterPublisher:
    """Publishes dead letters to `<origin topic><suffix>`, each origin once (module doc)."""

    def __init__(self, producer: Producer, suffix: str, group: str) -> None:
        self.producer = producer
        self.suffix = suffix
        self.group = group
        self.job_run_id: str | None = None
        self._errors: list[str] = []
        self._lock = threading.Lock()  # delivery reports arrive on whichever thread polls
        self.published: set[Origin] = set()  # delivered (or found in the DLQ by `recall`)
        self._queued: set[Origin] = set()  # produced, delivery not reported yet
        self._floors: dict[str, dict[int, int]] = {}  # DLQ topic -> partition -> floor
        # letters found by `recall` for records not committed yet -> where they lie in the DLQ:
        # they keep the floors stored with later claims below them until their records commit
        self._recalled: dict[Origin, tuple[str, int, int]] = {}

    def topic_for(self, origin: str) -> str:
        return f"{origin}{self.suffix}"

    # --- floors and recall ---------------------------------------------------------------

    def start_floors(self, dlq_topic: str, high_watermarks: dict[int, int]) -> None:
        """Floors from the DLQ's end before this process publishes anything to it."""
        with self._lock:
            floors = self._floors.setdefault(dlq_topic, {})
            for partition, high in high_watermarks.items():
                floors[partition] = max(floors.get(partition, 0), high)

    def floors(self, origin_topics: Iterable[str]) -> dict[str, dict[int, int]]:
        """Current floors of the DLQ topics of `origin_topics` (those known), by origin topic.

        A floor is never above a letter `recall` found for a record not committed yet: a claim
        that stores it must let the next reader of the partition find that letter again (after a
        reset backwards, or a second crash before the re-read passed the record).
        """
        with self._lock:
            lowest: dict[str, dict[int, int]] = {}
            for dlq, dlq_partition, dlq_offset in self._recalled.values():
                pins = lowest.setdefault(dlq, {})
                pins[dlq_partition] = min(pins.get(dlq_partition, dlq_offset), dlq_offset)
            found: dict[str, dict[int, int]] = {}
            for t in origin_topics:
                dlq = self.topic_for(t)
                if dlq not in self._floors:
                    continue
                floors = dict(self._floors[dlq])
                for dlq_partition, offset in lowest.get(dlq, {}).items():
                    floors[dlq_partition] = min(floors.get(dlq_partition, offset), offset)
                found[t] = floors
            return found

    def recall(self, reader: DlqReader, partitions: dict[tuple[str, int], tuple[int, dict[int, int]]]) -> int:
        """Mark as published the letters already in the DLQ for records about to be re-read.

        `partitions`: origin partition -> (stored next offset, stored floors). Reads each DLQ
        partition from the lowest stored floor to its end; returns the letters found.
        """
        ranges: dict[tuple[str, int], tuple[int, int]] = {}
        for (topic, _), (_, floors) in partitions.items():
            dlq = self.topic_for(topic)
            marks = reader.watermarks(dlq)
            for dlq_partition, (low, high) in marks.items():
                # (a DLQ partition added after the floors were stored: from its beginning)
                floor = max(low, floors.get(dlq_partition, 0))
                start = min(floor, ranges.get((dlq, dlq_partition), (floor, high))[0])
                ranges[(dlq, dlq_partition)] = (start, high)
        found = 0
        for chunk in reader.read(ranges):
            for m in chunk:
                key = (m.origin_topic or "", m.origin_partition or 0)
                if m.consumer_group != self.group or key not in partitions or m.origin_offset is None:
                    continue
                if m.origin_offset >= partitions[key][0]:
                    origin = (key[0], key[1], m.origin_offset)
                    with self._lock:
                        self.published.add(origin)
                        self._recalled[origin] = (m.dlq_topic, m.dlq_partition, m.dlq_offset)
                    found += 1
        if found:
            log.info(
                "%s dead letter(s) of records to re-read are in the DLQ already; not published again", found
            )
        return found

    def forget(self, partitions: dict[tuple[str, int], int | None]) -> None:
        """Drop what is remembered of records below these positions (or of revoked partitions: None)."""

        def kept(o: Origin) -> bool:
            return (o[0], o[1]) not in partitions or (
                (pos := partitions[(o[0], o[1])]) is not None and o[2] >= pos
            )

        with self._lock:
            self.published = {o for o in self.published if kept(o)}
            self._recalled = {o: where for o, where in self._recalled.items() if kept(o)}

    # --- publishing ----------------------------------------------------------------------

    def _deliveries(self, origin: Origin) -> Callable[[KafkaError | None, Message], None]:
        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            with self._lock:
                self._queued.discard(origin)
                if err is not None:
                    self._errors.append(f"{msg.topic()}: {err.str()}")
                    return
                self.published.add(origin)
                topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
                if topic is not None and partition is not None and offset is not None:
                    floors = self._floors.setdefault(topic, {})
                    floors[partition] = max(floors.get(partition, 0), offset + 1)

        return on_delivery

    def publish(self, letters: list[DeadLetter]) -> int:
        """Produce the letters whose origin is neither published nor on its way; returns how many."""
        produced = 0
        for letter in letters:
            r = letter.record
            origin = (r.topic, r.partition, r.offset)
            with self._lock:
                if origin in self.published or origin in self._queued:
                    continue
                self._queued.add(origin)
            headers = dlq_headers(letter, self.group, self.job_run_id)
            value = r.value
            if value is not None and len(value) > MAX_DLQ_VALUE_BYTES:
                value = value[:MAX_DLQ_VALUE_BYTES]
                headers.append((HEADER_PREFIX + "original_size", str(len(r.value or b"")).encode()))
            while True:
                try:
                    self.producer.produce(
                        self.topic_for(r.topic),
                        value=value,
                        key=r.key,
                        headers=headers,
                        on_delivery=self._deliveries(origin),
                    )
                    break
                except BufferError:
                    self.producer.poll(0.1)
            produced += 1
        self.producer.poll(0)
        return produced

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until every dead letter is acknowledged; raise (transient) otherwise."""
        remaining = self.producer.flush(timeout_s)
        with self._lock:
            # (letters not delivered in time stay queued: a retry waits for them, it does not
            # produce them again; one that finally fails is reported and produced again)
            errors, self._errors = self._errors, []
        if remaining or errors:
            detail = "; ".join(errors[:3]) or f"{remaining} message(s) not delivered"
            raise ServiceUnavailableError(f"dead-letter queue publish failed: {detail}")
