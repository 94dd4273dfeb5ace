"""Collecting a batch across a rebalance: records consumed after the callbacks are kept.

librdkafka runs the rebalance callbacks inside `consume()`; `_on_revoke` drops the pending records of
the revoked partitions by replacing the pending list. A regression (found by
`scripts/reliability.py --medium --only group`) kept appending to the list of before the
callback, so the records of that consume() call were lost and the next batch's positions skipped
them. The consumer here is a stand-in that plays librdkafka's part of the protocol (no broker);
the real group behaviour is covered by the reliability scenarios.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import TopicPartition

from orion_etl.config.models import OrionSettings
from orion_etl.core.records import KafkaRecord
from orion_etl.jobs.stream import StreamJob


class Message:
    def __init__(self, topic: str, partition: int, offset: int) -> None:
        self._coords = (topic, partition, offset)

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return self._coords[0]

    def partition(self) -> int:
        return self._coords[1]

    def offset(self) -> int:
        return self._coords[2]

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return b"{}"

    def timestamp(self) -> tuple[int, int]:
        return (1, 1_700_000_000_000)

    def headers(self) -> None:
        return None


class RebalancingConsumer:
    """Revokes partition 1 during the first consume() call, then returns records of partition 0."""

    def __init__(self, job: StreamJob, topic: str) -> None:
        self.job, self.topic, self.calls = job, topic, 0

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        self.calls += 1
        if self.calls == 1:
            self.job._on_revoke(self, [TopicPartition(self.topic, 1)])  # type: ignore[arg-type]
            return [Message(self.topic, 0, 10), Message(self.topic, 0, 11)]
        self.job.stopping = True  # end the collect loop
        return []

    def unassign(self) -> None:
        pass


def test_records_consumed_in_the_call_that_rebalanced_are_kept() -> None:
    settings = OrionSettings()
    topic = settings.stream.topics.trades_cdc
    job = StreamJob(settings)
    try:
        job.assigned = {(topic, 0), (topic, 1)}
        job.pending = [KafkaRecord(topic, 0, 9, None, b"{}"), KafkaRecord(topic, 1, 5, None, b"{}")]
        job._collect(RebalancingConsumer(job, topic))  # type: ignore[arg-type]
        assert [(r.partition, r.offset) for r in job.pending] == [(0, 9), (0, 10), (0, 11)]
    finally:
        job.executor.shutdown()
