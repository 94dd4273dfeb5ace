"""Consumer positions in the warehouse (`etl_consumer_offsets`), shared by every Kafka consumer
that writes the warehouse: `stream`, `dims sync --from-cdc` and `dlq replay`, and by the commands
that show or move them (`stream status`, `stream offsets`; the Kafka side of those is
`orion_etl.adapters.kafka.partition_states` / `group_members`).

A consumer reads its stored positions when partitions are assigned (`stored`) and, inside the
transaction that writes what a batch produced, *claims* the batch's next positions with a
compare-and-set against the positions it started from (`claim`). A process that lost a partition
in a rebalance cannot commit over the new owner: its claim matches no row, it gets `FencedError`,
its transaction rolls back and it re-reads from the stored positions. The claim also stores each
partition's dead-letter floor (V013; see `orion_etl.adapters.dlq.LetterLedger`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import psycopg

from orion_etl.adapters.postgres import close_connection, connect
from orion_etl.config.models import WarehouseSettings
from orion_etl.core.offset_reset import PlannedReset
from orion_etl.errors import OrionError

TopicPartition = tuple[str, int]
Floors = dict[int, int]  # DLQ partition -> offset


class FencedError(OrionError):
    """Another consumer committed positions of a partition this batch read: the batch is void."""


def stored(
    conn: psycopg.Connection, group: str, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, int]:
    """Positions stored for `group` (absent: never committed)."""
    return {tp: offset for tp, (offset, _) in stored_with_floors(conn, group, partitions).items()}


def stored_with_floors(
    conn: psycopg.Connection, group: str, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, tuple[int, Floors | None]]:
    """Positions and dead-letter floors stored for `group` (absent: never committed)."""
    wanted = list(partitions)
    if not wanted:
        return {}
    rows = conn.execute(
        "SELECT topic, partition, next_offset, dlq_floor FROM etl_consumer_offsets "
        "WHERE consumer_group = %s AND (topic, partition) IN (SELECT * FROM unnest(%s::text[], %s::int[]))",
        (group, [t for t, _ in wanted], [p for _, p in wanted]),
    ).fetchall()
    return {
        (t, p): (o, {int(k): int(v) for k, v in floor.items()} if isinstance(floor, dict) else None)
        for t, p, o, floor in rows
    }


def stored_floors(
    conn: psycopg.Connection, group: str, partitions: Iterable[TopicPartition]
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, tuple[int, Floors]]]:
    """Stored positions (absent: never committed), and for the DLQ recall each partition's
    (first offset that will be re-read, floor), where a floor is known: the floor stored with the
    position, else the one noted before the partition's first commit (`note_first_floors`). An
    empty floor `{}` (set by `stream offsets reset`) means: the whole DLQ."""
    wanted = list(partitions)
    found = stored_with_floors(conn, group, wanted)
    recall = {tp: (offset, floor) for tp, (offset, floor) in found.items() if floor is not None}
    never = [tp for tp in wanted if tp not in found]
    recall.update({tp: (0, floor) for tp, floor in first_floors(conn, group, never).items()})
    return {tp: offset for tp, (offset, _) in found.items()}, recall


def first_floors(
    conn: psycopg.Connection, group: str, partitions: Iterable[TopicPartition]
) -> dict[TopicPartition, Floors]:
    """Floors noted for partitions before their first positions were committed (`note_first_floors`)."""
    wanted = list(partitions)
    if not wanted:
        return {}
    rows = conn.execute(
        "SELECT topic, partition, dlq_floor FROM etl_dlq_first_floors "
        "WHERE consumer_group = %s AND (topic, partition) IN (SELECT * FROM unnest(%s::text[], %s::int[]))",
        (group, [t for t, _ in wanted], [p for _, p in wanted]),
    ).fetchall()
    return {(t, p): {int(k): int(v) for k, v in floor.items()} for t, p, floor in rows}


def note_first_floors(conn: psycopg.Connection, group: str, floors: Mapping[TopicPartition, Floors]) -> None:
    """Before publishing the first letters of never-committed partitions (own transaction; the
    first floor noted stays, it is the lowest)."""
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO etl_dlq_first_floors (consumer_group, topic, partition, dlq_floor) "
            "VALUES (%s, %s, %s, %s::jsonb) ON CONFLICT DO NOTHING",
            [
                (group, t, p, json.dumps({str(k): v for k, v in sorted(f.items())}))
                for (t, p), f in sorted(floors.items())
            ],
        )


def claim(
    conn: psycopg.Connection,
    group: str,
    offsets: Mapping[TopicPartition, int],
    expected: Mapping[TopicPartition, int | None],
    floors: Mapping[str, Floors] | None = None,
) -> None:
    """Move `group`'s positions to `offsets` if they still are `expected` (None: never stored).

    `floors`: DLQ floors by consumed topic, stored with each of its partitions. Runs in the
    caller's transaction; raises `FencedError` when another consumer moved a position.
    """
    for (topic, partition), next_offset in sorted(offsets.items()):
        before = expected.get((topic, partition))
        floor = (floors or {}).get(topic)
        floor_json = None if floor is None else json.dumps({str(k): v for k, v in sorted(floor.items())})
        if before is None:
            cur = conn.execute(
                "INSERT INTO etl_consumer_offsets (consumer_group, topic, partition, next_offset, dlq_floor) "
                "VALUES (%s, %s, %s, %s, %s::jsonb) ON CONFLICT DO NOTHING",
                (group, topic, partition, next_offset, floor_json),
            )
        else:
            cur = conn.execute(
                "UPDATE etl_consumer_offsets SET next_offset = %s, "
                "dlq_floor = COALESCE(%s::jsonb, dlq_floor), updated_at = now() "
                "WHERE consumer_group = %s AND topic = %s AND partition = %s AND next_offset = %s",
                (next_offset, floor_json, group, topic, partition, before),
            )
        if cur.rowcount != 1:
            raise FencedError(
                f"positions of {topic}[{partition}] were committed by another consumer of group "
                f"{group!r}; the batch is discarded and the partition re-read"
            )


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


class OffsetStore:
    """A group's positions read and noted on their own autocommit connection (kept open, re-opened
    when broken); the claim itself runs in the caller's transaction (`claim`)."""

    def __init__(self, settings: WarehouseSettings, group: str) -> None:
        self.settings = settings
        self.group = group
        self.conn: psycopg.Connection | None = None

    def _open(self) -> psycopg.Connection:
        if self.conn is None or self.conn.closed or self.conn.broken:
            self.close()
            self.conn = connect(self.settings, autocommit=True)
        return self.conn

    def close(self) -> None:
        conn, self.conn = self.conn, None
        close_connection(conn)

    def stored_floors(
        self, partitions: Iterable[TopicPartition]
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, tuple[int, Floors]]]:
        return stored_floors(self._open(), self.group, partitions)

    def note_first_floors(self, floors: dict[TopicPartition, Floors]) -> None:
        note_first_floors(self._open(), self.group, floors)
