"""Typed factories around confluent-kafka: one place that turns settings into librdkafka clients,
and `RecordConsumer`, the consumer as the jobs see it (`KafkaRecord`s, (topic, partition) keys).

librdkafka's own log lines go through Python logging (logger `orion_etl.librdkafka`), so they get
the process's log format (JSON lines off a terminal) and secret redaction instead of being printed
raw to stderr. confluent-kafka then queues them and delivers them when the client is polled
(`consume`/`poll`/`flush`); the admin client made here polls after each metadata request.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ClusterMetadata, NewTopic

from orion_etl.config.models import KafkaSettings
from orion_etl.core.offset_reset import PartitionState
from orion_etl.core.records import KafkaRecord
from orion_etl.errors import ServiceUnavailableError, UsageError
from orion_etl.logs import redactor

log = logging.getLogger(__name__)

# confluent-kafka calls `librdkafka_log.log(level, "%s [%s] %s", facility, client, text)` with the
# syslog level already mapped: 0-2 CRITICAL, 3 ERROR, 4 WARNING, 5-6 INFO, 7 DEBUG (DEBUG lines
# only exist with the librdkafka `debug` property set, e.g. [kafka.extra] debug = "broker").
librdkafka_log = logging.getLogger("orion_etl.librdkafka")

_THREAD_PREFIX = re.compile(r"^\[thrd:[^\]]*\]: ")
_VARYING = re.compile(r" \(after \d+ms in state \w+(?:, \d+ identical error\(s\) suppressed)?\)$")

# Errors meaning "the cluster cannot be reached (yet)": retried, never fatal.
_UNREACHABLE = {
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError._TIMED_OUT,
    KafkaError._RESOLVE,
    KafkaError._WAIT_COORD,
    KafkaError.REQUEST_TIMED_OUT,
}


class RepeatFilter(logging.Filter):
    """Lets each distinct librdkafka message through at most once per `window_s`.

    While a broker is down librdkafka logs the same connection failure on every reconnect attempt
    (up to ~20 lines a second), and reports it a second time through `error_cb`. Both arrive here
    with the same text (the thread prefix and the varying "(after Nms in state X)" suffix are not
    part of the key), so one line is written, then at most one per window, saying how many were
    left out. Also redacts the message, whatever handler it ends up in.
    """

    def __init__(self, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window_s = window_s
        self._clock = clock
        self._seen: dict[str, tuple[float, int]] = {}  # key -> (last written at, left out since)
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            args = record.args
            if record.msg == "%s [%s] %s" and isinstance(args, tuple) and len(args) == 3:
                facility, client, text = (str(a) for a in args)
                text = _THREAD_PREFIX.sub("", text)
                message = f"{facility} [{client}] {text}"
            else:
                text = message = record.getMessage()
            key = _VARYING.sub("", text)
            now = self._clock()
            with self._lock:
                last = self._seen.get(key)
                if last is not None and now - last[0] < self.window_s:
                    self._seen[key] = (last[0], last[1] + 1)
                    return False
                if len(self._seen) > 1000:
                    self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.window_s}
                self._seen[key] = (now, 0)
            if last is not None and last[1]:
                message += f" ({last[1]} more like it in the last {now - last[0]:.0f} s)"
            record.msg, record.args = redactor.redact(message), None
        except Exception:  # never break the client's poll(): an exception here would surface there
            return True
        return True


repeat_filter = RepeatFilter()
librdkafka_log.addFilter(repeat_filter)


def _base(settings: KafkaSettings) -> dict[str, Any]:
    conf: dict[str, Any] = dict(settings.client_config())
    if settings.sasl_password is not None:
        redactor.register(settings.sasl_password.get_secret_value())
    client = settings.client_id

    def on_error(err: KafkaError) -> None:
        # Most of these are also librdkafka log lines (connection and authentication failures,
        # fatal errors); the shared RepeatFilter writes such a pair once.
        level = logging.ERROR if err.fatal() else logging.WARNING
        librdkafka_log.log(level, "%s [%s] %s", err.name(), client, err.str())

    conf["error_cb"] = on_error
    conf["logger"] = librdkafka_log
    return conf


class _AdminClient(AdminClient):
    """An AdminClient that delivers librdkafka's queued log lines after each metadata request.

    Unlike consumers and producers, nothing polls an admin client in the normal course of things,
    so without this its log lines (routed through `logger=`) would wait forever.
    """

    def list_topics(self, *args: Any, **kwargs: Any) -> ClusterMetadata:
        try:
            return super().list_topics(*args, **kwargs)
        finally:
            self.poll(0)


def make_producer(settings: KafkaSettings, **overrides: Any) -> Producer:
    """An idempotent producer (acks=all) unless overridden."""
    conf = _base(settings) | {
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "compression.type": "lz4",
    }
    conf.update(overrides)
    return Producer(conf)


def make_consumer(settings: KafkaSettings, group_id: str, **overrides: Any) -> Consumer:
    """A consumer that never auto-commits: positions are owned by the caller."""
    conf = _base(settings) | {
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "isolation.level": "read_committed",
    }
    conf.update(overrides)
    return Consumer(conf)


def make_admin(settings: KafkaSettings) -> AdminClient:
    """An admin client (its librdkafka log lines are delivered after each `list_topics`)."""
    return _AdminClient(_base(settings))


def is_unreachable(err: KafkaError) -> bool:
    """True when `err` means the cluster cannot be reached (yet): worth retrying."""
    return not err.fatal() and (err.retriable() or err.code() in _UNREACHABLE)


def _unavailable(settings: KafkaSettings, exc: KafkaException) -> ServiceUnavailableError | None:
    err = exc.args[0] if exc.args else None
    if not isinstance(err, KafkaError) or not is_unreachable(err):
        return None
    return ServiceUnavailableError(
        f"Kafka at {settings.bootstrap_servers} unreachable: {redactor.redact(err.str())}",
        hint="is the broker running? (local stack: scripts/stack.sh up)",
    )


def _metadata(
    settings: KafkaSettings, admin: AdminClient, timeout_s: float, stop: Callable[[], bool] | None
) -> ClusterMetadata:
    """Cluster metadata, asked in slices of at most 1 s until `timeout_s` or `stop()`.

    `list_topics` blocks in librdkafka for its whole timeout, and Python runs signal handlers only
    between calls: one long call would hold a SIGTERM back for that long.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return admin.list_topics(timeout=max(0.05, min(1.0, deadline - time.monotonic())))
        except KafkaException as exc:
            unavailable = _unavailable(settings, exc)
            if unavailable is None:
                raise
            if time.monotonic() >= deadline or (stop is not None and stop()):
                raise unavailable from None


def check_broker(settings: KafkaSettings, timeout_s: float = 10.0) -> int:
    """Number of brokers in the cluster; `ServiceUnavailableError` when it cannot be reached."""
    try:
        return len(_metadata(settings, make_admin(settings), timeout_s, None).brokers)
    except KafkaException as exc:  # not a connectivity error (e.g. authentication): still one line
        raise ServiceUnavailableError(
            f"cannot reach Kafka at {settings.bootstrap_servers}: {redactor.redact(exc.args[0].str())}",
            hint="is the broker running? (local stack: scripts/stack.sh up)",
        ) from None


def ensure_topics(
    settings: KafkaSettings,
    names: Iterable[str],
    *,
    partitions: int = 1,
    timeout_s: float = 30.0,
    stop: Callable[[], bool] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created.

    `ServiceUnavailableError` when Kafka cannot be reached within `timeout_s` (or before `stop()`
    turns true, checked about every second).
    """
    admin = make_admin(settings)
    existing = set(_metadata(settings, admin, timeout_s, stop).topics)
    wanted = [n for n in dict.fromkeys(names) if n not in existing]
    if not wanted:
        return []
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in wanted],
        operation_timeout=timeout_s,
    )
    created = []
    try:
        for name, future in futures.items():
            try:
                future.result()
                created.append(name)
            except KafkaException as exc:
                if exc.args[0].name() == "TOPIC_ALREADY_EXISTS":
                    continue
                raise _unavailable(settings, exc) or exc from None
    finally:
        admin.poll(0)
    return created


Partition = tuple[str, int]  # (topic, partition)


@dataclass
class Polled:
    """What one `RecordConsumer.consume` returned."""

    records: list[KafkaRecord] = field(default_factory=list)
    errors: list[KafkaError] = field(default_factory=list)  # except end-of-partition notices
    count: int = 0  # messages librdkafka handed over (records, errors, records of other partitions)


def records_of(messages: list[Message], assigned: Collection[Partition] | None = None) -> Polled:
    """Messages as records (of `assigned` partitions only, when given) and errors."""
    out = Polled(count=len(messages))
    append = out.records.append  # (a hot loop: one pass per record)
    for msg in messages:
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                out.errors.append(err)
            continue
        if assigned is not None and (msg.topic(), msg.partition()) not in assigned:
            continue
        ts_type, ts = msg.timestamp()
        headers = msg.headers()
        append(
            KafkaRecord(
                msg.topic(),  # type: ignore[arg-type]  # never None for a message without error
                msg.partition(),  # type: ignore[arg-type]
                msg.offset(),  # type: ignore[arg-type]
                msg.key(),
                msg.value(),
                ts if ts_type else None,
                [(k, v) for k, v in headers if isinstance(v, bytes)] if isinstance(headers, list) else None,
            )
        )
    return out


class RecordConsumer:
    """A confluent-kafka `Consumer` seen through records and (topic, partition) keys.

    Rebalance callbacks hear partition keys; `on_assign` returns the stored position of each
    partition it knows, the others start from `start_from` ("earliest" or "latest"). Positions
    the caller commits to Kafka are informational (lag tools): the caller owns the real ones.
    """

    def __init__(self, consumer: Consumer, *, start_from: str = "earliest") -> None:
        self.raw = consumer
        self.fallback = OFFSET_BEGINNING if start_from == "earliest" else OFFSET_END

    def subscribe(
        self,
        topics: list[str],
        *,
        on_assign: Callable[[list[Partition]], Mapping[Partition, int]],
        on_revoke: Callable[[list[Partition]], None],
    ) -> None:
        """Subscribe; rebalances call back (inside `consume`) before partitions move (partitions
        lost without a revoke, e.g. after a session timeout, are revoked too)."""

        def assign(consumer: Consumer, parts: list[TopicPartition]) -> None:
            stored = on_assign([(p.topic, p.partition) for p in parts])
            for p in parts:
                p.offset = stored.get((p.topic, p.partition), self.fallback)
            log.info("assigned %s", ", ".join(f"{p.topic}[{p.partition}]@{p.offset}" for p in parts))
            consumer.assign(parts)

        def revoke(consumer: Consumer, parts: list[TopicPartition]) -> None:
            keys = [(p.topic, p.partition) for p in parts]
            on_revoke(keys)
            log.info("revoked %s", ", ".join(f"{t}[{p}]" for t, p in sorted(set(keys))))
            consumer.unassign()

        self.raw.subscribe(topics, on_assign=assign, on_revoke=revoke, on_lost=revoke)

    def consume(
        self, max_messages: int, timeout_s: float, assigned: Collection[Partition] | None = None
    ) -> Polled:
        """Up to `max_messages` records within `timeout_s` (rebalance callbacks run in here)."""
        return records_of(self.raw.consume(num_messages=max_messages, timeout=timeout_s), assigned)

    def seek(self, partition: Partition, offset: int | None) -> None:
        """Continue `partition` from `offset` (None: from `start_from`)."""
        self.raw.seek(TopicPartition(partition[0], partition[1], self.fallback if offset is None else offset))

    def commit_async(self, offsets: Mapping[Partition, int]) -> None:
        """Tell Kafka the next positions (lag monitoring only; never read back); failures logged."""
        try:
            self.raw.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=True
            )
        except KafkaException as exc:
            log.debug("async Kafka commit failed: %s", exc)

    def watermarks(self, partition: Partition) -> tuple[int, int]:
        """(low, high): as seen in librdkafka's last fetch/statistics, else asked (slow);
        `ServiceUnavailableError` when Kafka does not answer.

        An uncached query waits behind the in-flight fetch request, so the cached value is used
        whenever the partition has been fetched at least once.
        """
        tp = TopicPartition(*partition)
        try:
            low, high = self.raw.get_watermark_offsets(tp, cached=True) or (-1, -1)
            if high < 0 or low < 0:
                low, high = self.raw.get_watermark_offsets(tp, timeout=10, cached=False) or (0, 0)
        except KafkaException as exc:
            raise ServiceUnavailableError(
                f"Kafka watermarks of {partition[0]}[{partition[1]}]: {exc}"
            ) from exc
        return low, high

    def has_more(self, partitions: Iterable[Partition]) -> bool:
        """Whether a partition's high watermark (librdkafka's cached one: no request) is past the
        consumer's position, i.e. records exist that have not reached the prefetch queue yet."""
        try:
            for tp in self.raw.position([TopicPartition(t, p) for t, p in partitions]):
                marks = self.raw.get_watermark_offsets(tp, cached=True)
                if marks and tp.offset >= 0 and marks[1] > tp.offset:
                    return True
        except KafkaException:
            return False
        return False

    def existing_topics(self, timeout_s: float) -> set[str]:
        """Names of the topics the cluster has."""
        return set(self.raw.list_topics(timeout=timeout_s).topics)

    def close(self) -> None:
        self.raw.close()


Coordinates = tuple[str, int, int]  # (topic, partition, offset) of one record


def read_records(
    settings: KafkaSettings, wanted: Iterable[Coordinates], *, timeout_s: float = 30.0
) -> dict[Coordinates, KafkaRecord]:
    """The records at `wanted` coordinates, read again from Kafka (key, value, timestamp and
    headers as they were consumed): a throw-away consumer, no group, reading each partition from
    its lowest wanted offset to its highest.

    A coordinate Kafka no longer holds (retention, compaction) is left out of the result.
    `ServiceUnavailableError` when Kafka does not give the records within `timeout_s`.
    """
    todo = set(wanted)
    last: dict[Partition, int] = {}
    first: dict[Partition, int] = {}
    for topic, partition, offset in todo:
        key = (topic, partition)
        last[key] = max(offset, last.get(key, offset))
        first[key] = min(offset, first.get(key, offset))
    if not todo:
        return {}
    consumer = make_consumer(
        settings, f"orion-etl-reread-{uuid.uuid4().hex[:8]}", **{"enable.partition.eof": True}
    )
    found: dict[Coordinates, KafkaRecord] = {}
    reading = set(last)
    deadline = time.monotonic() + timeout_s
    try:
        consumer.assign([TopicPartition(t, p, first[(t, p)]) for t, p in sorted(reading)])
        while reading:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServiceUnavailableError(
                    f"Kafka at {settings.bootstrap_servers}: records of "
                    + ", ".join(f"{t}[{p}]" for t, p in sorted(reading))
                    + f" not read again within {timeout_s:.0f} s"
                )
            for msg in consumer.consume(num_messages=500, timeout=min(1.0, left)):
                key = (msg.topic() or "", msg.partition() or 0)
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        reading.discard(key)  # the end: what is still wanted is gone
                    elif not is_unreachable(err):
                        raise KafkaException(err)
                    continue
                offset = msg.offset() or 0
                if key in reading and (key[0], key[1], offset) in todo:
                    found[(key[0], key[1], offset)] = records_of([msg]).records[0]
                if offset >= last.get(key, -1):
                    reading.discard(key)
    except KafkaException as exc:
        raise _unavailable(settings, exc) or exc from None
    finally:
        consumer.close()
    return found


# --- the loader's positions as Kafka sees them (`stream status`, `stream offsets`) ----------------


def _kafka_error(settings: KafkaSettings, exc: KafkaException) -> ServiceUnavailableError:
    err = exc.args[0] if exc.args else exc
    text = err.str() if hasattr(err, "str") else str(err)
    return ServiceUnavailableError(
        f"Kafka at {settings.bootstrap_servers}: {redactor.redact(text)}",
        hint="is the broker running? (local stack: scripts/stack.sh up)",
    )


def partition_states(
    settings: KafkaSettings,
    topics: list[str],
    stored: dict[tuple[str, int], int],
    *,
    at: datetime | None = None,
    timeout_s: float = 10.0,
) -> list[PartitionState]:
    """Every partition of `topics` with its watermarks, stored position and (with `at`) the first
    offset at or after `at`. A topic that does not exist is a usage error."""
    # A throw-away group id: this consumer never joins a group nor commits.
    consumer = make_consumer(settings, f"orion-etl-inspect-{uuid.uuid4().hex[:8]}")
    try:
        metadata = consumer.list_topics(timeout=timeout_s)
        wanted: list[TopicPartition] = []
        for topic in topics:
            meta = metadata.topics.get(topic)
            if meta is None or meta.error is not None:
                raise UsageError(f"topic {topic!r} does not exist in Kafka at {settings.bootstrap_servers}")
            wanted += [TopicPartition(topic, p) for p in sorted(meta.partitions)]
        at_time: dict[tuple[str, int], int] = {}
        if at is not None and wanted:
            ms = int(at.timestamp() * 1000)
            found = consumer.offsets_for_times(
                [TopicPartition(t.topic, t.partition, ms) for t in wanted], timeout_s
            )
            at_time = {(t.topic, t.partition): t.offset for t in found}
        states = []
        for tp in wanted:
            low, high = consumer.get_watermark_offsets(tp, timeout=timeout_s)
            key = (tp.topic, tp.partition)
            states.append(
                PartitionState(tp.topic, tp.partition, low, high, stored.get(key), at_time.get(key))
            )
        return states
    except KafkaException as exc:
        raise _kafka_error(settings, exc) from None
    finally:
        consumer.close()


def group_members(settings: KafkaSettings, group: str, timeout_s: float = 10.0) -> list[str]:
    """Client ids and hosts of the live members of a consumer group (empty: nobody consumes)."""
    admin = make_admin(settings)
    try:
        futures = admin.describe_consumer_groups([group], request_timeout=timeout_s)
        description = futures[group].result()
    except KafkaException as exc:
        raise _kafka_error(settings, exc) from None
    finally:
        admin.poll(0)
    return [f"{m.client_id}@{m.host}" for m in description.members]
