"""Which natural ids have a dimension row (for `stream.missing_dimension = "dlq"`)."""

from __future__ import annotations

import psycopg
from psycopg import sql

NATURAL_ID = {
    "dim_clients": "client_id",
    "dim_instruments": "instrument_id",
    "dim_liquidity_providers": "lp_id",
}


def existing_ids(conn: psycopg.Connection, wanted: dict[str, list[str]]) -> dict[str, set[str]]:
    """Per dimension table, the subset of `wanted` ids with at least one row (one query per table)."""
    out: dict[str, set[str]] = {}
    for table, ids in wanted.items():
        if not ids:
            out[table] = set()
            continue
        column = sql.Identifier(NATURAL_ID[table])
        rows = conn.execute(
            sql.SQL("SELECT DISTINCT {c}::text FROM {t} WHERE {c} = ANY(%s::uuid[])").format(
                c=column, t=sql.Identifier(table)
            ),
            (ids,),
        ).fetchall()
        out[table] = {r[0] for r in rows}
    return out
