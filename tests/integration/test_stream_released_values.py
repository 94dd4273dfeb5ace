"""The loader releases each record's value once its batch is prepared (issue #20: memory), so a
row PostgreSQL refuses at commit time gets its dead letter from the record read again from
Kafka: the letter still carries the original key, value and headers, verbatim.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from confluent_kafka import TopicPartition

from orion_etl.adapters.kafka import Coordinates, ensure_topics, make_consumer, make_producer, read_records
from orion_etl.config.models import OrionSettings
from orion_etl.core.records import KafkaRecord
from orion_etl.jobs import stream as stream_job
from orion_etl.jobs.stream import StreamJob
from tests.integration.stream_support import drain, read_topic, stream_settings
from tests.stream_builders import dumps, trade_event

pytestmark = pytest.mark.integration


def _produce(
    settings: OrionSettings, messages: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]]
) -> None:
    producer = make_producer(settings.kafka, **{"linger.ms": 20})
    for topic, key, value, headers in messages:
        producer.produce(topic, key=key, value=value, headers=headers)
    assert producer.flush(30) == 0


def test_read_records_gives_the_records_back_verbatim(
    stack_settings: OrionSettings, topic_name: Callable[[str], str]
) -> None:
    topic = topic_name("reread")
    ensure_topics(stack_settings.kafka, [topic])
    sent = [(topic, f"k{i}".encode(), f"value {i}".encode() * 50, [("h", str(i).encode())]) for i in range(6)]
    _produce(stack_settings, sent)
    consumer = make_consumer(stack_settings.kafka, topic_name("group"))
    consumer.assign([TopicPartition(topic, 0, 0)])
    consumed: list[Any] = []
    while len(consumed) < len(sent):
        consumed += [m for m in consumer.consume(10, timeout=1.0) if m.error() is None]
    consumer.close()

    found = read_records(stack_settings.kafka, [(topic, 0, 1), (topic, 0, 4), (topic, 0, 99)])

    assert sorted(found) == [(topic, 0, 1), (topic, 0, 4)]  # offset 99 does not exist: left out
    for offset in (1, 4):
        msg, rec = consumed[offset], found[(topic, 0, offset)]
        assert (rec.key, rec.value, rec.headers) == (msg.key(), msg.value(), [("h", str(offset).encode())])
        assert rec.timestamp_ms == msg.timestamp()[1]
    assert read_records(stack_settings.kafka, []) == {}


def test_refused_row_letter_is_the_record_read_again(
    stack_settings: OrionSettings,
    topic_name: Callable[[str], str],
    warehouse: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = stream_settings(stack_settings, topic_name, batch_max_messages=5000)
    topic = settings.stream.topics.trade_events
    warehouse.execute(
        "ALTER TABLE fact_trades ADD CONSTRAINT t20_check "
        "CHECK (trade_reference IS DISTINCT FROM 'REFUSE-ME')"
    )
    held: list[int] = []  # records a prepared batch still holds when the commit thread takes it
    read_again: list[list[Coordinates]] = []
    commit, reread = StreamJob._commit, stream_job.read_records

    def spy_commit(self: StreamJob, prepared: Any, *a: Any) -> Any:
        held.append(len(prepared.records))
        return commit(self, prepared, *a)

    def spy_reread(kafka: Any, wanted: list[Coordinates], **kw: Any) -> dict[Coordinates, KafkaRecord]:
        read_again.append(list(wanted))
        return reread(kafka, wanted, **kw)

    monkeypatch.setattr(StreamJob, "_commit", spy_commit)
    monkeypatch.setattr(stream_job, "read_records", spy_reread)
    try:
        bad = dumps(trade_event(tradeReference="REFUSE-ME"))
        messages = [(topic, f"good-{i}".encode(), dumps(trade_event()), [("src", b"x")]) for i in range(30)]
        messages.insert(17, (topic, b"bad-key", bad, [("src", b"original"), ("trace", b"\x00\x01")]))
        _produce(settings, messages)

        result = drain(settings)
    finally:
        warehouse.execute("ALTER TABLE fact_trades DROP CONSTRAINT IF EXISTS t20_check")

    s = result.stats
    assert s.messages == 31 and s.rejected == 1 and s.dlq == 1, s.as_dict()
    assert held and set(held) == {0}, held  # no batch in flight kept its records
    assert read_again == [[(topic, 0, 17)]]
    assert warehouse.execute("SELECT count(*) FROM fact_trades").fetchone() == (30,)
    letters = read_topic(settings, topic + settings.stream.dlq_suffix, 1, timeout_s=10)
    assert len(letters) == 1
    letter = letters[0]
    assert (letter.key(), letter.value()) == (b"bad-key", bad)
    headers = letter.headers()
    assert headers[:2] == [("src", b"original"), ("trace", b"\x00\x01")]
    own = {k: v.decode() for k, v in headers[2:]}
    assert own["dlq.error_class"] == "LOAD_REJECTED" and own["dlq.sqlstate"] == "23514"
    assert own["dlq.origin_offset"] == "17"
    issue = warehouse.execute(
        "SELECT record_data->>'raw', origin->>'offset' FROM etl_data_quality_issues "
        "WHERE origin->>'error_class' = 'LOAD_REJECTED'"
    ).fetchall()
    assert issue == [(bad.decode(), "17")]
