"""The set-based SQL equals the reference model on both plan paths (index nested loops / planner).

`dim_store.apply_staged` takes an index-only path for small batches and leaves large ones to the
planner; the statements are the same, so the results must be too. A seeded random sequence of
changes (SCD1, SCD2, same-time corrections, out-of-order changes, deletions, re-creations,
inferred members, several changes of one member in one batch) is applied batch by batch on each
path and compared, version by version and action by action, with `ModelDimension`.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from orion_etl.adapters import dim_store
from orion_etl.adapters.postgres import connect
from orion_etl.config.models import DimensionSettings, DimsSettings, OrionSettings
from orion_etl.core.dimension_changes import DimensionChange, stage_row
from orion_etl.core.scd import DimensionSpec, resolve_spec
from tests.integration.dims_helpers import dict_cursor
from tests.scd_model import Change, ModelDimension

pytestmark = pytest.mark.integration

T0 = datetime(2024, 1, 1, tzinfo=UTC)
IDS = "abcdefgh"
Batch = list[tuple[str, Change, bool]]  # (logical id, change, loader creates an inferred member first)


def random_batches(seed: int) -> list[Batch]:
    rng = random.Random(seed)
    clock = T0
    batches: list[Batch] = []
    for _ in range(14):
        batch: Batch = []
        for _ in range(rng.randint(1, 10)):
            clock += timedelta(hours=rng.choice([-3, 0, 1, 5, 24]))
            attrs = {
                "segment": rng.choice(["TIER_1", "TIER_2"]),
                "client_name": rng.choice(["n1", "n2", None]),
            }
            created = clock if rng.random() < 0.5 else None
            change = Change(attrs, clock, created, deleted=rng.random() < 0.15)
            batch.append((rng.choice(IDS), change, rng.random() < 0.1))
        batches.append(batch)
    return batches


def state(conn: psycopg.Connection, uuids: dict[str, uuid.UUID]) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    cur = dict_cursor(conn)
    for name, nid in uuids.items():
        rows = cur.execute(
            "SELECT * FROM dim_clients WHERE client_id = %s ORDER BY version", (nid,)
        ).fetchall()
        if rows:
            out[name] = [
                (
                    r["version"],
                    r["valid_from"],
                    r["valid_to"],
                    r["is_current"],
                    r["is_deleted"],
                    r["is_inferred"],
                    r["segment"],
                    r["client_name"],
                    r["source_updated_at"],
                )
                for r in rows
            ]
    return out


def model_state(model: ModelDimension) -> dict[str, list[tuple[Any, ...]]]:
    return {
        name: [
            (
                v.version,
                v.valid_from,
                v.valid_to,
                v.is_current,
                v.is_deleted,
                v.is_inferred,
                v.attrs.get("segment"),
                v.attrs.get("client_name"),
                v.source_updated_at,
            )
            for v in versions
        ]
        for name, versions in model.rows.items()
    }


def apply_batch(
    conn: psycopg.Connection, spec: DimensionSpec, batch: Batch, uuids: dict[str, uuid.UUID], index_path: bool
) -> Counter[str]:
    rounds: Counter[str] = Counter()
    rows = []
    for seq, (name, change, _) in enumerate(batch):
        rounds[name] += 1
        staged = DimensionChange(
            uuids[name], change.attrs, change.change_time, change.created_at, change.deleted
        )
        rows.append(stage_row(spec, staged, seq, rounds[name]))
    dim_store.create_stage(conn, spec)
    dim_store.write_stage_rows(conn, spec, rows)
    counts = dim_store.apply_staged(conn, spec, index_path=index_path)
    conn.commit()
    return counts


@pytest.mark.parametrize("close_on_delete", [True, False])
@pytest.mark.parametrize("index_path", [True, False])
def test_both_plan_paths_match_the_reference_model(
    stack_settings: OrionSettings, warehouse: psycopg.Connection, index_path: bool, close_on_delete: bool
) -> None:
    spec = resolve_spec(
        "client", DimsSettings(client=DimensionSettings(scd2=["segment"], close_on_delete=close_on_delete))
    )
    model = ModelDimension(spec)
    uuids = {name: uuid.uuid4() for name in IDS}
    issued: dict[tuple[str, int], int] = {}
    with connect(stack_settings.warehouse) as conn:
        for batch in random_batches(seed=7 + close_on_delete):
            for name, _, inferred in batch:
                if inferred and name not in model.rows:
                    model.add_inferred(name)
                    conn.execute(
                        "INSERT INTO dim_clients (client_id, valid_from, is_current, version, is_inferred) "
                        "VALUES (%s, '-infinity', true, 1, true)",
                        (uuids[name],),
                    )
            expected = Counter(model.apply_change(name, change).value for name, change, _ in batch)
            counts = apply_batch(conn, spec, batch, uuids, index_path)
            assert +counts == expected
            got, want = state(conn, uuids), model_state(model)
            for name in sorted(set(got) | set(want)):
                assert got.get(name) == want.get(name), (name, batch)
            for key, version, nid in conn.execute(
                "SELECT client_key, version, client_id FROM dim_clients WHERE client_id = ANY(%s)",
                (list(uuids.values()),),
            ):
                assert issued.setdefault((str(nid), version), key) == key  # keys never change
    assert len(issued) > len(IDS)  # the sequence did make history
