"""Consumer positions in the warehouse (`etl_consumer_offsets`), shared by every Kafka consumer
that writes the warehouse: `stream`, `dims sync --from-cdc` and `dlq replay`.

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

import psycopg

from orion_etl.adapters.postgres import connect
from orion_etl.config.models import WarehouseSettings
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
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None

    def stored_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return stored(self._open(), self.group, partitions)

    def stored_floors(
        self, partitions: Iterable[TopicPartition]
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, tuple[int, Floors]]]:
        return stored_floors(self._open(), self.group, partitions)

    def note_first_floors(self, floors: dict[TopicPartition, Floors]) -> None:
        note_first_floors(self._open(), self.group, floors)
