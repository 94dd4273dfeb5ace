"""Typed factories around confluent-kafka: one place that turns settings into librdkafka clients."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from orion_etl.config.models import KafkaSettings
from orion_etl.errors import ServiceUnavailableError
from orion_etl.logs import redactor

log = logging.getLogger(__name__)


def _base(settings: KafkaSettings) -> dict[str, Any]:
    conf: dict[str, Any] = dict(settings.client_config())
    if settings.sasl_password is not None:
        redactor.register(settings.sasl_password.get_secret_value())
    conf["error_cb"] = _log_client_error
    return conf


def _log_client_error(err: Any) -> None:
    log.warning("kafka client: %s", redactor.redact(str(err)))


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
    """An admin client."""
    return AdminClient(_base(settings))


def check_broker(settings: KafkaSettings, timeout_s: float = 10.0) -> int:
    """Number of brokers in the cluster; `ServiceUnavailableError` when it cannot be reached."""
    admin = make_admin(settings)
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise ServiceUnavailableError(
            f"cannot reach Kafka at {settings.bootstrap_servers}: {redactor.redact(str(exc.args[0]))}",
            hint="is the broker running? (local stack: scripts/stack.sh up)",
        ) from None
    return len(metadata.brokers)


def ensure_topics(
    settings: KafkaSettings, names: Iterable[str], *, partitions: int = 1, timeout_s: float = 30.0
) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created."""
    admin = make_admin(settings)
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    wanted = [n for n in dict.fromkeys(names) if n not in existing]
    if not wanted:
        return []
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in wanted],
        operation_timeout=timeout_s,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
    return created
