"""Re-keying facts after dimension versions changed, and counting facts keyed to the wrong version.

The rule (the loader's, `orion_etl.core.dimension_keys`, and `orion_etl.core.fact_keys.point_in_time_sql`):
a fact at time t gets the key of its member's highest version with `valid_from <= t`; a fact older
than every version gets the first version. In SQL that is two index-only probes of the dimension's
`(natural id, valid_from) INCLUDE (key, version)` index per fact row (`point_in_time_sql`).

Everything here is set-based: ONE `UPDATE` per (fact table, dimension) for all changed members,
driven by the changed intervals (member, changed from) joined to the members' version intervals,
touching only rows whose key differs (so a fact already right is not rewritten, and the aggregate
dirty-bucket triggers see only real changes).
Nothing commits: the caller owns the transaction (the dimension change and the re-key together).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl
import psycopg
from psycopg import sql

from orion_etl.core.fact_keys import FactKeyRef, refs_for_table, registered
from orion_etl.core.scd import DimensionSpec

CHANGED_MEMBERS = sql.Identifier("_dim_changed_members")


def rekey(
    conn: psycopg.Connection,
    ref: FactKeyRef,
    changed: sql.Composable,
    params: Sequence[Any] = (),
    lower: datetime | None = None,
) -> int:
    """Re-key one fact column for the members of `changed` (columns natural_id, changed_from; one
    row per member): every fact at or after its member's `changed_from` whose key is not the
    point-in-time one. Returns the number of fact rows re-keyed.

    Set-based over validity intervals, not per fact row: the changed members' versions, sorted by
    (valid_from, version), become half-open intervals [valid_from, next valid_from) (the first one
    from -infinity: a fact older than every version gets the first), and facts are joined to the
    interval containing their event time, one index range scan per (member, version) on the
    fact's (natural id, event time) index where it has one. This is exactly `point_in_time_sql`
    (the last version in that order with valid_from <= time, else the first). `lower` (the
    earliest changed_from) bounds the event time for facts without such an index.
    """
    bound: sql.Composable = sql.SQL("")
    args = list(params)
    if lower is not None:
        bound = sql.SQL(" AND f.{t} >= %s").format(t=sql.Identifier(ref.time_column))
        args.append(lower)
    cur = conn.execute(
        sql.SQL(
            "WITH c AS MATERIALIZED (SELECT natural_id, changed_from FROM {changed} x), "
            "v AS MATERIALIZED (SELECT i.*, c.changed_from FROM ({intervals}) i JOIN c USING (natural_id)) "
            "UPDATE {fact} f SET {key} = v.key FROM v "
            "WHERE v.to_t > v.changed_from AND v.to_t > v.from_t "
            "AND f.{nat} = v.natural_id AND f.{t} >= v.from_t AND f.{t} < v.to_t "
            "AND f.{t} >= v.changed_from{bound} AND f.{key} IS DISTINCT FROM v.key"
        ).format(
            intervals=_intervals(
                ref,
                sql.SQL(" WHERE d.{} IN (SELECT natural_id FROM c)").format(
                    sql.Identifier(ref.dimension_natural_id)
                ),
            ),
            changed=changed,
            fact=sql.Identifier(ref.fact_table),
            key=sql.Identifier(ref.key_column),
            nat=sql.Identifier(ref.natural_column),
            t=sql.Identifier(ref.time_column),
            bound=bound,
        ),
        args,
    )
    return max(cur.rowcount, 0)


def bump_epoch(conn: psycopg.Connection, dimension: str) -> None:
    """Tell loaders in flight that versions of `dimension` changed (row-locks the epoch row until commit)."""
    conn.execute(
        "INSERT INTO etl_dim_key_epoch AS e (dimension, epoch) VALUES (%s, 1) "
        "ON CONFLICT (dimension) DO UPDATE SET epoch = e.epoch + 1, updated_at = now()",
        (dimension,),
    )


def read_epochs(conn: psycopg.Connection, dimensions: Iterable[str], *, lock: bool = False) -> dict[str, int]:
    """Current epoch per dimension (0 when never bumped); `lock` takes FOR SHARE row locks."""
    names = sorted(set(dimensions))
    if not names:
        return {}
    query = "SELECT dimension, epoch FROM etl_dim_key_epoch WHERE dimension = ANY(%s)"
    rows = conn.execute(query + (" ORDER BY dimension FOR SHARE" if lock else ""), (names,)).fetchall()
    found = {str(d): int(e) for d, e in rows}
    return {n: found.get(n, 0) for n in names}


def rekey_after_sync(conn: psycopg.Connection, spec: DimensionSpec) -> dict[str, int]:
    """After `apply_staged`: re-key every registered fact of the members whose versions changed.

    Bumps the dimension's epoch first (so a loader committing concurrently either waits for this
    transaction and then sees the new epoch, or has committed before the re-key statements read
    the facts). Returns re-keyed rows per fact column label; empty when no version changed.
    """
    row = conn.execute("SELECT count(*), min(changed_from) FROM _dim_changed").fetchone()
    if row is None or not row[0]:
        return {}
    lower: datetime = row[1]
    # Syncs of different dimensions may re-key the same fact rows (a trade's client_key and its
    # instrument_key): one re-key at a time, so their row locks cannot deadlock.
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('orion-etl:fact-rekey'))")
    bump_epoch(conn, spec.name)
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(CHANGED_MEMBERS))
    conn.execute(
        sql.SQL(
            "CREATE TEMP TABLE {} ON COMMIT DROP AS "
            "SELECT natural_id, min(changed_from) AS changed_from FROM _dim_changed GROUP BY natural_id"
        ).format(CHANGED_MEMBERS)
    )
    conn.execute(sql.SQL("ANALYZE {}").format(CHANGED_MEMBERS))
    conn.execute("SELECT set_config('jit', 'off', true)")
    out: dict[str, int] = {}
    for ref in registered(spec.name):
        out[ref.label] = rekey(conn, ref, CHANGED_MEMBERS, lower=lower)
    return out


def rekey_frame(conn: psycopg.Connection, fact_table: str, dimensions: set[str], frame: pl.DataFrame) -> int:
    """Loader: re-key the facts of this batch's members (from each member's earliest event time in
    `frame`) for the given dimensions, after a sync changed versions while the batch was prepared."""
    total = 0
    for ref in refs_for_table(fact_table):
        if ref.dimension not in dimensions or ref.natural_column not in frame.columns:
            continue
        members = (
            frame.select(pl.col(ref.natural_column).cast(pl.String), pl.col(ref.time_column))
            .drop_nulls()
            .group_by(ref.natural_column)
            .agg(pl.col(ref.time_column).min())
        )
        if members.is_empty():
            continue
        changed = sql.SQL(
            "(SELECT * FROM unnest(%s::uuid[], %s::timestamptz[]) AS u (natural_id, changed_from))"
        )
        total += rekey(
            conn,
            ref,
            changed,
            [members.get_column(ref.natural_column).to_list(), members.get_column(ref.time_column).to_list()],
        )
    return total


def table_exists(conn: psycopg.Connection, table: str) -> bool:
    """Whether a (registered) fact table exists in this warehouse."""
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    return bool(row and row[0])


@dataclass(frozen=True)
class KeyMismatch:
    """Facts of one key column whose key is not the version valid at their event time."""

    ref: FactKeyRef
    count: int
    samples: list[str]


def _intervals(ref: FactKeyRef, members: sql.Composable) -> sql.Composed:
    """Validity intervals of the versions of `members` (relation with column natural_id), sorted
    by (valid_from, version): [valid_from, next valid_from), the first from -infinity. A fact's
    point-in-time key (`point_in_time_sql`) is the key of the interval containing its time."""
    return sql.SQL(
        "SELECT d.{dnat} AS natural_id, d.{dkey} AS key, "
        "CASE WHEN row_number() OVER w = 1 THEN '-infinity'::timestamptz ELSE d.valid_from END AS from_t, "
        "coalesce(lead(d.valid_from) OVER w, 'infinity'::timestamptz) AS to_t "
        "FROM {dim} d{members} WINDOW w AS (PARTITION BY d.{dnat} ORDER BY d.valid_from, d.version)"
    ).format(
        dnat=sql.Identifier(ref.dimension_natural_id),
        dkey=sql.Identifier(ref.dimension_key),
        dim=sql.Identifier(ref.dimension_table),
        members=members,
    )


def key_mismatches(conn: psycopg.Connection, ref: FactKeyRef, sample: int = 5) -> KeyMismatch:
    """Count the facts of `ref` keyed to another version than the one valid at their time.

    One scan of the fact table hash-joined to the validity intervals of all members (the same
    rule as `point_in_time_sql`, which the row-level audit rule uses): seconds for millions of
    facts, where a per-row probe of the dimension would take minutes.
    """
    row_id = sql.SQL(" || ' ' || ").join(
        sql.SQL("{} || '=' || coalesce(f.{}::text, 'null')").format(sql.Literal(c), sql.Identifier(c))
        for c in ref.row_id
    )
    query = sql.SQL(
        "WITH v AS ({intervals}) "
        "SELECT count(*), (array_agg({row_id} || ' at ' || f.{t}::text || ': ' || {key_text} || "
        "' (valid: ' || coalesce(v.key::text, 'null') || ')' ORDER BY f.{t}))[1:%s] "
        "FROM {fact} f LEFT JOIN v ON v.natural_id = f.{nat} AND f.{t} >= v.from_t AND f.{t} < v.to_t "
        "AND v.to_t > v.from_t "
        "WHERE f.{nat} IS NOT NULL AND f.{key} IS DISTINCT FROM v.key"
    ).format(
        intervals=_intervals(ref, sql.SQL("")),
        row_id=row_id,
        t=sql.Identifier(ref.time_column),
        key_text=sql.SQL("{} || '=' || coalesce(f.{}::text, 'null')").format(
            sql.Literal(ref.key_column), sql.Identifier(ref.key_column)
        ),
        fact=sql.Identifier(ref.fact_table),
        nat=sql.Identifier(ref.natural_column),
        key=sql.Identifier(ref.key_column),
    )
    row = conn.execute(query, (sample,)).fetchone()
    assert row is not None
    return KeyMismatch(ref, int(row[0]), [str(s) for s in (row[1] or [])])
