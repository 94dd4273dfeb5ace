"""The loader's positions as Kafka and the warehouse see them (`stream status`, `stream offsets`).

Kafka side: partitions of the topics, their low/high watermarks, the first offset at or after a
time, and the members of the loader's consumer group. Warehouse side: the group's rows of
`etl_consumer_offsets` (the positions the loader resumes from) and `etl_cdc_watermarks`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import psycopg
from confluent_kafka import KafkaException, TopicPartition

from orion_etl.adapters.kafka import make_admin, make_consumer
from orion_etl.config.models import KafkaSettings
from orion_etl.core.offset_reset import PartitionState, PlannedReset
from orion_etl.errors import ServiceUnavailableError, UsageError
from orion_etl.logs import redactor


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


def stored_positions(conn: psycopg.Connection, group: str) -> dict[tuple[str, int], int]:
    """The group's positions in `etl_consumer_offsets`."""
    rows = conn.execute(
        "SELECT topic, partition, next_offset FROM etl_consumer_offsets WHERE consumer_group = %s",
        (group,),
    ).fetchall()
    return {(t, p): o for t, p, o in rows}


def write_positions(conn: psycopg.Connection, group: str, plan: list[PlannedReset]) -> int:
    """Set the planned positions in one statement (a running loader would be fenced by it).

    Exactly one letter per record across a reset: a partition that will re-read records gets the
    empty DLQ floor `{}` (every DLQ partition from its earliest offset), so the next loader's
    recall finds the letters already published for the records it re-reads and does not publish
    them again; its claims keep the floor below those letters until the re-read passes them
    (`DeadLetterPublisher.floors`). A move forwards keeps the stored floor (it still lies below
    every letter of the records at or after the new position).
    """
    rows = [r for r in plan if r.changes]
    if not rows:
        return 0
    conn.execute(
        "INSERT INTO etl_consumer_offsets (consumer_group, topic, partition, next_offset, dlq_floor) "
        "SELECT %s, t, p, o, CASE WHEN re THEN '{}'::jsonb END "
        "FROM unnest(%s::text[], %s::int[], %s::bigint[], %s::bool[]) AS u(t, p, o, re) "
        "ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET "
        "next_offset = EXCLUDED.next_offset, "
        "dlq_floor = COALESCE(EXCLUDED.dlq_floor, etl_consumer_offsets.dlq_floor), updated_at = now()",
        (
            group,
            [r.topic for r in rows],
            [r.partition for r in rows],
            [r.new for r in rows],
            [r.rereads for r in rows],
        ),
    )
    return len(rows)


def cdc_watermarks(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """`etl_cdc_watermarks`: per source table, the newest LSN and source commit time loaded."""
    rows = conn.execute(
        "SELECT source_table, last_processed_lsn, last_processed_timestamp, "
        "extract(epoch FROM now() - last_processed_timestamp)::float8, updated_at "
        "FROM etl_cdc_watermarks ORDER BY source_table"
    ).fetchall()
    return [
        {"source_table": t, "last_lsn": lsn, "last_source_commit": ts, "age_s": age, "updated_at": upd}
        for t, lsn, ts, age, upd in rows
    ]


def running_loaders(conn: psycopg.Connection, group: str) -> list[dict[str, Any]]:
    """Loader runs of the group the ledger shows RUNNING (call `mark_abandoned` first)."""
    rows = conn.execute(
        "SELECT id::text, host, pid, started_at FROM etl_job_runs WHERE status = 'RUNNING' "
        "AND job_type = 'STREAM' AND metadata->>'group' = %s ORDER BY started_at",
        (group,),
    ).fetchall()
    return [{"run_id": r, "host": h, "pid": p, "started_at": s} for r, h, p, s in rows]
