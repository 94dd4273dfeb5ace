"""Read-only dimension queries: SCD2 invariant checks."""

from __future__ import annotations

from dataclasses import dataclass

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
