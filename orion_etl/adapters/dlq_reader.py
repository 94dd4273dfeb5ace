"""Reading DLQ topics: which exist, their watermarks, and bounded reads of offset ranges.

Reads use `assign` (no group membership, nothing committed), so inspecting a DLQ never disturbs
any consumer group. A read of a partition ends at the high watermark taken when it started (or at
partition EOF), so it always terminates even while the loader keeps dead-lettering.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import datetime

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from orion_etl.adapters.kafka import make_admin, make_consumer
from orion_etl.config.models import KafkaSettings
from orion_etl.core.dead_letters import DlqMessage, parse_letter
from orion_etl.errors import ServiceUnavailableError
from orion_etl.logs import redactor

log = logging.getLogger(__name__)

Partition = tuple[str, int]
READER_GROUP = "orion-etl-dlq-reader"  # never joins or commits: assign() only


def _unavailable(settings: KafkaSettings, exc: KafkaException) -> ServiceUnavailableError:
    return ServiceUnavailableError(
        f"cannot read from Kafka at {settings.bootstrap_servers}: {redactor.redact(str(exc.args[0]))}",
        hint="is the broker running? (local stack: scripts/stack.sh up)",
    )


class DlqReader:
    """DLQ topics of one cluster (topic = origin + suffix)."""

    def __init__(self, settings: KafkaSettings, suffix: str, timeout_s: float = 15.0) -> None:
        self.settings = settings
        self.suffix = suffix
        self.timeout_s = timeout_s
        self._consumer: Consumer | None = None
        self._partitions: dict[str, list[int]] | None = None

    def __enter__(self) -> DlqReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    @property
    def consumer(self) -> Consumer:
        if self._consumer is None:
            self._consumer = make_consumer(
                self.settings, READER_GROUP, **{"enable.partition.eof": True, "fetch.wait.max.ms": 50}
            )
        return self._consumer

    def topics(self) -> dict[str, list[int]]:
        """DLQ topic -> its partitions."""
        if self._partitions is None:
            try:
                metadata = make_admin(self.settings).list_topics(timeout=self.timeout_s)
            except KafkaException as exc:
                raise _unavailable(self.settings, exc) from None
            self._partitions = {
                name: sorted(t.partitions)
                for name, t in metadata.topics.items()
                if self.suffix and name.endswith(self.suffix) and not name.startswith("__")
            }
        return self._partitions

    def watermarks(self, topic: str) -> dict[int, tuple[int, int]]:
        """partition -> (low, high) of a DLQ topic."""
        out = {}
        try:
            for p in self.topics().get(topic, []):
                low, high = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=self.timeout_s, cached=False
                )
                out[p] = (low, high)
        except KafkaException as exc:
            raise _unavailable(self.settings, exc) from None
        return out

    def offset_for_time(self, topic: str, partition: int, when: datetime) -> int | None:
        """First offset with a timestamp >= `when` (None: none that late)."""
        tp = TopicPartition(topic, partition, int(when.timestamp() * 1000))
        try:
            found = self.consumer.offsets_for_times([tp], timeout=self.timeout_s)
        except KafkaException as exc:
            raise _unavailable(self.settings, exc) from None
        offset = found[0].offset if found else -1
        return offset if offset >= 0 else None

    def read(
        self, ranges: dict[Partition, tuple[int, int]], chunk: int = 1000, max_messages: int | None = None
    ) -> Iterator[list[DlqMessage]]:
        """Messages of `[start, end)` per partition, in offset order per partition, in chunks."""
        todo = {tp: (s, e) for tp, (s, e) in ranges.items() if e > s}
        if not todo:
            return
        consumer = self.consumer
        consumer.assign([TopicPartition(t, p, s) for (t, p), (s, _) in todo.items()])
        remaining = dict(todo)
        total = 0
        batch: list[DlqMessage] = []
        idle_deadline = time.monotonic() + self.timeout_s
        try:
            while remaining and (max_messages is None or total < max_messages):
                msgs = consumer.consume(num_messages=min(chunk, 5000), timeout=0.5)
                if msgs:
                    idle_deadline = time.monotonic() + self.timeout_s
                elif time.monotonic() > idle_deadline:
                    raise ServiceUnavailableError(
                        f"no data from Kafka for {self.timeout_s:.0f}s while reading "
                        + ", ".join(f"{t}[{p}]" for t, p in sorted(remaining))
                    )
                for msg in msgs:
                    tp = (str(msg.topic()), int(msg.partition() or 0))
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            remaining.pop(tp, None)
                        elif not err.retriable():
                            raise _unavailable(self.settings, KafkaException(err))
                        continue
                    if tp not in remaining:
                        continue
                    offset = int(msg.offset() or 0)
                    end = remaining[tp][1]
                    if offset >= end:
                        remaining.pop(tp, None)
                        continue
                    if offset >= end - 1:
                        remaining.pop(tp, None)
                    ts_type, ts = msg.timestamp()
                    raw = msg.headers()
                    headers = (
                        [(k, v) for k, v in raw if isinstance(v, bytes)] if isinstance(raw, list) else None
                    )
                    batch.append(
                        parse_letter(
                            tp[0], tp[1], offset, ts if ts_type else None, msg.key(), msg.value(), headers,
                            self.suffix,
                        )
                    )  # fmt: skip
                    total += 1
                    if len(batch) >= chunk or (max_messages is not None and total >= max_messages):
                        yield batch
                        batch = []
                        if max_messages is not None and total >= max_messages:
                            break
            if batch:
                yield batch
        finally:
            consumer.unassign()
