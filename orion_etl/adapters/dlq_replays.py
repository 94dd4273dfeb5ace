"""`etl_dlq_replays`: what `dlq replay` attempted, per dead letter (DLQ coordinates)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from orion_etl.core.pgtext import storable_value


@dataclass(frozen=True)
class ReplayAttempt:
    """The outcome of replaying one dead letter."""

    dlq_topic: str
    dlq_partition: int
    dlq_offset: int
    origin_topic: str | None
    origin_partition: int | None
    origin_offset: int | None
    letter_id: str
    failure_fingerprint: str
    outcome: str  # loaded | failed | unreplayable
    error_class: str | None = None
    error: str | None = None


def outcomes(conn: psycopg.Connection, topic: str, partition: int, offsets: list[int]) -> dict[int, str]:
    """DLQ offset -> last recorded outcome, for the given offsets of one partition."""
    if not offsets:
        return {}
    rows = conn.execute(
        "SELECT dlq_offset, outcome FROM etl_dlq_replays WHERE dlq_topic = %s AND dlq_partition = %s "
        "AND dlq_offset = ANY(%s::bigint[])",
        (topic, partition, offsets),
    ).fetchall()
    return {int(o): str(s) for o, s in rows}


def record(conn: psycopg.Connection, attempts: list[ReplayAttempt], job_run_id: str) -> None:
    """Upsert the attempts (one statement; `attempts` counts how often a letter was replayed)."""
    if not attempts:
        return
    cols: list[list[Any]] = [
        [storable_value(getattr(a, name)) for a in attempts]
        for name in (
            "dlq_topic", "dlq_partition", "dlq_offset", "origin_topic", "origin_partition",
            "origin_offset", "letter_id", "failure_fingerprint", "outcome", "error_class", "error",
        )
    ]  # fmt: skip
    conn.execute(
        "INSERT INTO etl_dlq_replays AS r (dlq_topic, dlq_partition, dlq_offset, origin_topic, "
        "origin_partition, origin_offset, letter_id, failure_fingerprint, outcome, error_class, error, "
        "job_run_id) SELECT *, %s::uuid FROM unnest(%s::text[], %s::int[], %s::bigint[], %s::text[], "
        "%s::int[], %s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[]) "
        "ON CONFLICT (dlq_topic, dlq_partition, dlq_offset) DO UPDATE SET outcome = EXCLUDED.outcome, "
        "error_class = EXCLUDED.error_class, error = EXCLUDED.error, attempts = r.attempts + 1, "
        "last_attempt_at = now(), job_run_id = EXCLUDED.job_run_id",
        [job_run_id, *cols],
    )


def summary(conn: psycopg.Connection, topics: list[str]) -> dict[str, dict[str, int]]:
    """DLQ topic -> {outcome: letters}."""
    rows = conn.execute(
        "SELECT dlq_topic, outcome, count(*) FROM etl_dlq_replays WHERE dlq_topic = ANY(%s) GROUP BY 1, 2",
        (topics,),
    ).fetchall()
    out: dict[str, dict[str, int]] = {}
    for topic, outcome, n in rows:
        out.setdefault(topic, {})[outcome] = int(n)
    return out
