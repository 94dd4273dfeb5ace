"""Read-only dimension queries: SCD2 invariant checks and point-in-time key lookup."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import psycopg
from psycopg import sql

from orion_etl.core.scd import DimensionSpec
from orion_etl.sqlfiles import read_sql


@dataclass(frozen=True)
class CheckResult:
    """One invariant of one dimension: how many violations and a few member ids."""

    dimension: str
    check: str
    violations: int
    samples: list[str]


def _fmt(spec: DimensionSpec) -> dict[str, sql.Identifier]:
    return {
        "table": sql.Identifier(spec.table),
        "key": sql.Identifier(spec.key),
        "nat": sql.Identifier(spec.natural_id),
    }


def check_dimension(conn: psycopg.Connection, spec: DimensionSpec) -> list[CheckResult]:
    """Evaluate every invariant of `sql/queries/dims_check.sql` on one dimension."""
    query = sql.SQL(read_sql("queries/dims_check.sql")).format(**_fmt(spec))
    return [
        CheckResult(spec.name, name, int(count), list(samples or []))
        for name, count, samples in conn.execute(query).fetchall()
    ]


def point_in_time_keys(
    conn: psycopg.Connection, spec: DimensionSpec, pairs: Sequence[tuple[UUID, datetime]]
) -> list[int | None]:
    """Surrogate keys valid at each (natural id, time), in input order (one round-trip)."""
    if not pairs:
        return []
    query = sql.SQL(read_sql("queries/dims_point_in_time.sql")).format(**_fmt(spec))
    rows = conn.execute(query, ([p[0] for p in pairs], [p[1] for p in pairs])).fetchall()
    return [row[3] for row in rows]
