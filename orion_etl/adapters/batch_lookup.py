"""Phase B of a micro-batch: what the warehouse must tell about a draft, in one call; and the one
write before the batch transaction, inferred dimension members.

`lookup` runs on the loader's read connection (autocommit) while the previous batch commits:

1. the stored values behind TOAST placeholders (a position's latest change for the history);
2. the dimensions' key epochs, read BEFORE their versions (`WarehouseLoader.commit_batch` compares
   them again under lock: a sync in between re-keys the batch's facts);
3. the versions of every member the draft references, and of the members the stored values name
   (a position delete whose before image held only the key takes its client from them);
4. the quote sampler state of keys the job has no state for.

`write_inferred` inserts a placeholder member (Kimball's late-arriving dimension, completed later by
`dims sync`) for natural ids without any dimension row, and returns their versions. It runs outside
the batch transaction: the insert is idempotent (NOT EXISTS + ON CONFLICT DO NOTHING), harmless if
the batch is later retried, and the commit itself then only writes facts.
"""

from __future__ import annotations

import uuid
from typing import Any

import polars as pl
import psycopg
from psycopg import sql

from orion_etl.adapters.fact_rekey import read_epochs
from orion_etl.core.batch_draft import Needs, StoredNeed
from orion_etl.core.batch_plan import Lookup
from orion_etl.core.dimension_keys import VERSIONS_SCHEMA
from orion_etl.core.fact_model import DIMENSION_TABLES, FACT_MODELS
from orion_etl.core.sampling import SamplerKey, SamplerState


def lookup(conn: psycopg.Connection, needs: Needs, group: str) -> Lookup:
    """Everything `needs` asks for (module doc), one query per kind and table."""
    out = Lookup()
    members = {dim: set(ids) for dim, ids in needs.members.items()}
    for need in needs.stored:
        stored = stored_values(conn, need)
        out.stored[need.table] = stored
        for ref in FACT_MODELS[need.table].dims:
            if ref.column in stored.columns:
                found = stored.get_column(ref.column).drop_nulls().cast(pl.String).to_list()
                members.setdefault(ref.dimension, set()).update(found)
    if needs.dimensions:
        out.epochs = read_epochs(conn, needs.dimensions)
    for dim, ids in members.items():
        if ids:
            out.versions[dim] = versions(conn, dim, sorted(ids))
    out.sampler = sampler_state(conn, group, needs.sampler)
    return out


def stored_values(conn: psycopg.Connection, need: StoredNeed) -> pl.DataFrame:
    """Current stored values of some columns of fact rows (to replace TOAST placeholders)."""
    key, columns = sql.Identifier(need.key), sql.SQL(", ").join(sql.Identifier(c) for c in need.columns)
    table = sql.Identifier(need.table)
    query = sql.SQL("SELECT {key}::text, {cols} FROM {table} WHERE {key} = ANY(%s::uuid[])").format(
        key=key, cols=columns, table=table
    )
    if need.table == "fact_positions":  # a history: the position's latest change
        query = sql.SQL(
            "SELECT DISTINCT ON ({key}) {key}::text, {cols} FROM {table} WHERE {key} = ANY(%s::uuid[]) "
            "ORDER BY {key}, src_commit_lsn DESC, src_lsn DESC"
        ).format(key=key, cols=columns, table=table)
    rows = conn.execute(query, (list(need.ids),)).fetchall()
    # UUID values (e.g. a position delete's client_id) as text, the frame's type for them
    rows = [tuple(str(v) if isinstance(v, uuid.UUID) else v for v in row) for row in rows]
    return pl.DataFrame(rows, schema=[need.key, *need.columns], orient="row", infer_schema_length=None)


def versions(conn: psycopg.Connection, dimension: str, ids: list[str]) -> pl.DataFrame:
    """The versions of some members (`core.dimension_keys.VERSIONS_SCHEMA`)."""
    table, key, natural = DIMENSION_TABLES[dimension]
    # valid_from as epoch microseconds, +-infinity clamped to the representable range
    rows = conn.execute(
        sql.SQL(
            "SELECT {nat}::text, {key}, (extract(epoch FROM GREATEST(LEAST(valid_from, "
            "'9999-12-31 00:00+00'), '0001-01-01 00:00+00')) * 1000000)::bigint, version "
            "FROM {dim} WHERE {nat} = ANY(%s::uuid[])"
        ).format(dim=sql.Identifier(table), nat=sql.Identifier(natural), key=sql.Identifier(key)),
        (ids,),
    ).fetchall()
    if not rows:
        return pl.DataFrame(schema=VERSIONS_SCHEMA)
    return pl.DataFrame(
        rows, schema=["natural_id", "key", "valid_from", "version"], orient="row"
    ).with_columns(pl.from_epoch("valid_from", time_unit="us").dt.replace_time_zone("UTC"))


def sampler_state(
    conn: psycopg.Connection, group: str, keys: list[SamplerKey]
) -> dict[SamplerKey, SamplerState]:
    """Stored sampler state of the given keys."""
    if not keys:
        return {}
    cols = list(zip(*keys, strict=True))
    rows = conn.execute(
        "SELECT s.topic, s.partition, s.tenant_id::text, s.instrument_id::text, s.lp_id::text, "
        "s.seen_since_kept, s.last_kept_spread_bps, s.last_kept_offset "
        "FROM etl_quote_sampler_state s JOIN unnest(%s::text[], %s::int[], %s::uuid[], %s::uuid[], "
        "%s::uuid[]) AS k(topic, partition, tenant_id, instrument_id, lp_id) "
        "USING (topic, partition, tenant_id, instrument_id, lp_id) WHERE s.consumer_group = %s",
        [*(list(c) for c in cols), group],
    ).fetchall()
    return {(r[0], r[1], r[2], r[3], r[4]): SamplerState(r[5], r[6], r[7]) for r in rows}


def write_inferred(conn: psycopg.Connection, members: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """Insert an inferred member per natural id without a dimension row; their versions after it.

    `members`: per dimension, `natural_id` (+ `tenant_id` for clients) frames. A member another
    writer created meanwhile is left as it is (and its versions are returned).
    """
    out = {}
    for dim, frame in members.items():
        table, _, natural = DIMENSION_TABLES[dim]
        has_tenant = "tenant_id" in frame.columns
        ids = frame.get_column("natural_id").to_list()
        tenant = sql.SQL(", tenant_id") if has_tenant else sql.SQL("")
        tenant_val = sql.SQL(", s.tenant_id") if has_tenant else sql.SQL("")
        tenant_arg = sql.SQL(", %s::uuid[]") if has_tenant else sql.SQL("")
        args: list[Any] = [ids, *([frame.get_column("tenant_id").to_list()] if has_tenant else [])]
        conn.execute(
            sql.SQL(
                "INSERT INTO {dim} ({nat}{tenant}, valid_from, valid_to, is_current, version, "
                "is_inferred) SELECT s.{nat}{tenant_val}, '-infinity', 'infinity', true, 1, true "
                "FROM unnest(%s::uuid[]{tenant_arg}) AS s({nat}{tenant}) "
                "WHERE NOT EXISTS (SELECT 1 FROM {dim} d WHERE d.{nat} = s.{nat}) "
                "ORDER BY s.{nat} ON CONFLICT DO NOTHING"
            ).format(
                dim=sql.Identifier(table),
                nat=sql.Identifier(natural),
                tenant=tenant,
                tenant_val=tenant_val,
                tenant_arg=tenant_arg,
            ),
            args,
        )
        out[dim] = versions(conn, dim, ids)
    return out
