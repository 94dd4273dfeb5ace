"""Point-in-time dimension keys: the polars resolution equals the SQL rule it replaces."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from orion_etl.core.dimension_keys import TIME, empty_versions, resolve_dimension_keys

T0 = datetime(2024, 1, 1, tzinfo=UTC)
LOW = datetime(1, 1, 1, tzinfo=UTC)  # how -infinity valid_from values are read


def reference_key(
    versions: list[tuple[str, int, datetime, int]], natural_id: str | None, at: datetime | None
) -> int | None:
    """The loader's former SQL, row by row: ORDER BY (valid_from <= t) DESC,
    CASE WHEN valid_from <= t THEN version ELSE -version END DESC LIMIT 1 (NULL t sorts first)."""
    mine = [v for v in versions if v[0] == natural_id]
    if not mine:
        return None
    if at is None:
        return min(mine, key=lambda v: v[3])[1]
    before = [v for v in mine if v[2] <= at]
    if before:
        return max(before, key=lambda v: v[3])[1]
    return min(mine, key=lambda v: v[3])[1]


def frame_of(versions: list[tuple[str, int, datetime, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        versions,
        schema={"natural_id": pl.String, "key": pl.Int64, "valid_from": TIME, "version": pl.Int64},
        orient="row",
    )


def test_version_valid_at_the_event_time_else_the_first() -> None:
    versions = [("a", 10, LOW, 1), ("a", 11, T0, 2), ("a", 12, T0 + timedelta(days=2), 3), ("b", 20, T0, 1)]
    facts = pl.DataFrame(
        {
            "client_id": ["a", "a", "a", "a", "b", "b", "c", None],
            "at": [
                T0 - timedelta(days=9),  # only the inferred (-infinity) version had started
                T0,  # boundary: valid_from <= t
                T0 + timedelta(days=1),
                T0 + timedelta(days=5),
                T0 - timedelta(days=1),  # before b's first version: the first version
                T0,
                T0,  # no versions of c
                T0,
            ],
        },
        schema={"client_id": pl.String, "at": TIME},
    )
    out = resolve_dimension_keys(facts, "client_id", "at", frame_of(versions), "client_key")
    assert out.get_column("client_key").to_list() == [10, 11, 11, 12, 20, 20, None, None]
    assert out.columns == ["client_id", "at", "client_key"]


def test_no_versions_or_no_rows() -> None:
    facts = pl.DataFrame({"client_id": ["a"], "at": [T0]}, schema={"client_id": pl.String, "at": TIME})
    assert resolve_dimension_keys(facts, "client_id", "at", empty_versions(), "k")["k"].to_list() == [None]
    assert (
        resolve_dimension_keys(facts.clear(), "client_id", "at", frame_of([("a", 1, T0, 1)]), "k").height == 0
    )


@pytest.mark.parametrize("max_versions", [1, 4])  # one version per member takes a shortcut
def test_randomized_against_the_sql_rule(max_versions: int) -> None:
    rng = random.Random(1202 + max_versions)
    for _ in range(200):
        members = [f"m{i}" for i in range(rng.randint(1, 4))]
        versions: list[tuple[str, int, datetime, int]] = []
        key = 1
        for m in members:
            n = rng.randint(0, max_versions)
            version_numbers = rng.sample(range(1, 9), n)  # not necessarily in valid_from order
            for v in version_numbers:
                start = LOW if rng.random() < 0.2 else T0 + timedelta(hours=rng.randint(0, 5))  # ties happen
                versions.append((m, key, start, v))
                key += 1
        rows = [
            (
                rng.choice([*members, "other", None]),
                None
                if rng.random() < 0.1
                else T0 + timedelta(hours=rng.randint(-2, 7), minutes=rng.choice([0, 30])),
            )
            for _ in range(rng.randint(1, 25))
        ]
        facts = pl.DataFrame(rows, schema={"client_id": pl.String, "at": TIME}, orient="row")
        got = resolve_dimension_keys(facts, "client_id", "at", frame_of(versions), "k")["k"].to_list()
        assert got == [reference_key(versions, nid, at) for nid, at in rows]
