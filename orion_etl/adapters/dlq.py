"""Dead-letter publishing: the original record, verbatim, plus `dlq.*` headers (docs/stream.md).

One long-lived idempotent producer per loader. `flush` is called before the batch's warehouse
transaction commits its Kafka positions, so a dead letter is durable before its source record is
considered consumed. A crash between the flush and the commit re-publishes the same dead letters
on restart: the DLQ is at-least-once, and `dlq.fingerprint` identifies duplicates.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import KafkaError, Message, Producer

from orion_etl.core.debezium import KafkaRecord
from orion_etl.core.pgtext import storable
from orion_etl.errors import ServiceUnavailableError

HEADER_PREFIX = "dlq."
# Kafka's default broker/topic limit is 1 MB: a larger original (it may have been produced to a
# topic with a higher limit) is dead-lettered truncated to this size, with `dlq.original_size`, so
# that one oversized record can never block the loader. The full record stays in its origin topic.
MAX_DLQ_VALUE_BYTES = 900_000


def fingerprint(record: KafkaRecord) -> str:
    """Stable id of a dead letter: sha256 of its origin coordinates (topic/partition/offset)."""
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
        "fingerprint": fingerprint(r),
        "consumer_group": group,
        "job_run_id": job_run_id or "",
    }
    originals: list[tuple[str, str | bytes | None]] = [
        (k, v) for k, v in (r.headers or []) if not k.startswith(HEADER_PREFIX)
    ]
    return originals + [(HEADER_PREFIX + k, storable(v).encode()) for k, v in own.items()]


class DeadLetterPublisher:
    """Publishes dead letters to `<origin topic><suffix>`."""

    def __init__(self, producer: Producer, suffix: str, group: str) -> None:
        self.producer = producer
        self.suffix = suffix
        self.group = group
        self.job_run_id: str | None = None
        self._errors: list[str] = []

    def topic_for(self, origin: str) -> str:
        return f"{origin}{self.suffix}"

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._errors.append(f"{msg.topic()}: {err.str()}")

    def publish(self, letters: list[DeadLetter]) -> None:
        for letter in letters:
            r = letter.record
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
                        on_delivery=self._on_delivery,
                    )
                    break
                except BufferError:
                    self.producer.poll(0.1)
        self.producer.poll(0)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Wait until every dead letter is acknowledged; raise (transient) otherwise."""
        remaining = self.producer.flush(timeout_s)
        errors, self._errors = self._errors, []
        if remaining or errors:
            detail = "; ".join(errors[:3]) or f"{remaining} message(s) not delivered"
            raise ServiceUnavailableError(f"dead-letter queue publish failed: {detail}")
