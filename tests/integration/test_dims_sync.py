"""`dims sync` batch path against the real source and warehouse databases."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import psycopg
import pytest

from orion_etl.config.models import DimensionSettings, OrionSettings
from orion_etl.core.fact_keys import point_in_time_sql, refs_for_table
from orion_etl.core.scd import resolve_spec
from orion_etl.jobs.dims import check, sync_batch
from tests.integration.dims_helpers import (
    add_client,
    row_fingerprints,
    ts,
    update_client,
    versions,
    with_dims,
)
from tests.scd_model import INFINITY, MINUS_INFINITY, attr_hash

pytestmark = pytest.mark.integration


@pytest.fixture
def dims(
    stack_settings: OrionSettings, warehouse: psycopg.Connection, source: psycopg.Connection
) -> OrionSettings:
    """Empty dimensions, source and sync state."""
    warehouse.execute("TRUNCATE etl_dim_sync_state")
    return stack_settings


def client_counts(settings: OrionSettings, *, full: bool = False) -> dict[str, int]:
    report = sync_batch(settings, "client", full=full)
    return report.dimensions[0].as_dict()


def no_violations(settings: OrionSettings) -> None:
    bad = [r for r in check(settings, "all") if r.violations]
    assert not bad, bad


def test_segment_change_creates_a_second_version(dims: OrionSettings, source, warehouse) -> None:
    cid = add_client(source, segment="TIER_2", at=ts(1))
    assert client_counts(dims)["inserted"] == 1
    first_key = versions(warehouse, cid)[0]["client_key"]
    update_client(source, cid, ts(10), segment="TIER_1")
    counts = client_counts(dims)
    assert counts["scd2"] == 1 and counts["inserted"] == 0

    rows = versions(warehouse, cid)
    assert len(rows) == 2
    old, new = rows
    assert (old["is_current"], new["is_current"]) == (False, True)
    assert new["segment"] == "TIER_1" and old["segment"] == "TIER_2"
    assert old["client_key"] == first_key  # surrogate keys never change
    assert old["valid_from"] == ts(1) and old["valid_to"] == ts(10)  # source change time, not job time
    assert new["valid_from"] == ts(10) and new["version"] == 2
    spec = resolve_spec("client", dims.dims)
    assert new["scd2_hash"] == attr_hash([new[c] for c in spec.scd2])  # SQL hash == Python canonical hash
    assert new["scd1_hash"] == attr_hash([new[c] for c in spec.scd1])
    no_violations(dims)


def test_name_only_change_updates_in_place(dims: OrionSettings, source, warehouse) -> None:
    cid = add_client(source, name="Acme")
    client_counts(dims)
    update_client(source, cid, ts(5), name="Acme Holdings")
    counts = client_counts(dims)
    assert (counts["scd1"], counts["scd2"]) == (1, 0)
    rows = versions(warehouse, cid)
    assert len(rows) == 1
    assert rows[0]["client_name"] == "Acme Holdings" and rows[0]["source_updated_at"] == ts(5)


def test_mixed_change_makes_one_version_carrying_both(dims: OrionSettings, source, warehouse) -> None:
    cid = add_client(source, name="Acme", segment="TIER_2")
    client_counts(dims)
    update_client(source, cid, ts(7), name="Acme Two", segment="TIER_1")
    counts = client_counts(dims)
    assert (counts["scd2"], counts["scd1"]) == (1, 0)
    old, new = versions(warehouse, cid)
    assert (new["segment"], new["client_name"]) == ("TIER_1", "Acme Two")
    assert old["segment"] == "TIER_2"
    assert old["client_name"] == "Acme Two"  # type 1 overwrites every version (Kimball)


def test_rerun_without_source_change_touches_nothing(dims: OrionSettings, source, warehouse) -> None:
    a = add_client(source)
    add_client(source)
    client_counts(dims)
    update_client(source, a, ts(3), segment="TIER_1")
    client_counts(dims)
    before = row_fingerprints(warehouse)
    for full in (False, True):
        counts = client_counts(dims, full=full)
        assert counts["unchanged"] == counts["read"] == (2 if full else 1)  # incremental: from watermark
        assert sum(counts[k] for k in ("inserted", "scd1", "scd2", "closed", "stale")) == 0
    assert row_fingerprints(warehouse) == before


def point_in_time_keys(warehouse: psycopg.Connection, pairs: list[tuple[uuid.UUID, datetime]]) -> list[int]:
    """The client key the loader's rule (`point_in_time_sql`, as re-keying and the audit use it)
    gives a trade of each (client, time), in input order."""
    (ref,) = (r for r in refs_for_table("fact_trades") if r.dimension == "client")
    query = (
        f"SELECT {point_in_time_sql(ref, 't')} FROM unnest(%s::uuid[], %s::timestamptz[]) "
        f"WITH ORDINALITY AS t ({ref.natural_column}, {ref.time_column}, ord) ORDER BY t.ord"
    )
    rows = warehouse.execute(query, ([p[0] for p in pairs], [p[1] for p in pairs])).fetchall()
    return [row[0] for row in rows]


def test_trade_between_two_versions_resolves_to_the_earlier_key(
    dims: OrionSettings, source, warehouse
) -> None:
    cid = add_client(source, segment="TIER_2", at=ts(1))
    client_counts(dims)
    update_client(source, cid, ts(10), segment="TIER_1")
    client_counts(dims)
    v1, v2 = (r["client_key"] for r in versions(warehouse, cid))
    at = [ts(5), ts(10), ts(20), ts(1) - timedelta(days=30), ts(1)]
    keys = point_in_time_keys(warehouse, [(cid, t) for t in at] + [(uuid.uuid4(), ts(5))])
    # between the versions -> v1; at the boundary -> v2 (half-open); before creation -> version 1
    assert keys == [v1, v2, v2, v1, v1, None]


def test_inferred_member_is_completed_in_place(dims: OrionSettings, source, warehouse) -> None:
    cid = add_client(source, segment="TIER_3", at=ts(4))
    # What the streaming loader inserts for a fact whose client is not known yet.
    key = warehouse.execute(
        "INSERT INTO dim_clients (client_id, valid_from, valid_to, is_current, version, is_inferred) "
        "VALUES (%s, '-infinity', 'infinity', true, 1, true) RETURNING client_key",
        (cid,),
    ).fetchone()[0]
    assert client_counts(dims)["completed_inferred"] == 1
    (row,) = versions(warehouse, cid)
    assert row["client_key"] == key and row["version"] == 1 and not row["is_inferred"]
    assert row["segment"] == "TIER_3" and row["scd2_hash"] is not None
    assert row["valid_from"] == MINUS_INFINITY  # kept
    update_client(source, cid, ts(9), segment="TIER_1")
    assert client_counts(dims)["scd2"] == 1
    no_violations(dims)


def test_delete_in_source_closes_the_current_version(dims: OrionSettings, source, warehouse) -> None:
    gone, kept = add_client(source), add_client(source)
    client_counts(dims)
    source.execute("DELETE FROM clients WHERE id = %s", (gone,))
    assert client_counts(dims)["closed"] == 0  # incremental mode cannot see deletions
    counts = client_counts(dims, full=True)
    assert counts["closed"] == 1
    (row,) = versions(warehouse, gone)
    assert not row["is_current"] and row["is_deleted"] and row["valid_to"] < INFINITY
    assert versions(warehouse, kept)[0]["is_current"]
    assert client_counts(dims, full=True)["closed"] == 0  # idempotent
    no_violations(dims)


def test_delete_only_flags_when_close_on_delete_is_off(dims: OrionSettings, source, warehouse) -> None:
    settings = with_dims(dims, client=DimensionSettings(scd2=["segment"], scd1=[], close_on_delete=False))
    gone = add_client(source)
    client_counts(settings)
    source.execute("DELETE FROM clients WHERE id = %s", (gone,))
    assert client_counts(settings, full=True)["flagged_deleted"] == 1
    (row,) = versions(warehouse, gone)
    assert row["is_current"] and row["is_deleted"]
    assert client_counts(settings, full=True)["flagged_deleted"] == 0


def test_watermark_catches_changes_made_while_the_job_was_late(
    dims: OrionSettings, source, warehouse
) -> None:
    a, b = add_client(source, at=ts(1)), add_client(source, at=ts(1))
    client_counts(dims)
    # Changes dated long before "now" (the run was hours late): no clock window can miss them.
    update_client(source, a, ts(2), segment="TIER_1")
    update_client(source, b, ts(3), name="B renamed")
    counts = client_counts(dims)
    assert (counts["scd2"], counts["scd1"]) == (1, 1)
    # Only rows from the watermark on are read.
    add_client(source, at=ts(2, 12))
    assert client_counts(dims)["read"] <= 3


def test_watermark_waits_for_open_source_transactions(dims: OrionSettings, source, warehouse) -> None:
    settings = with_dims(dims, lookback_s=0)  # only the open-transaction guard protects here
    cid = add_client(source, at=ts(1))
    client_counts(settings)
    with psycopg.connect(settings.source.conninfo()) as slow:
        slow.execute("UPDATE clients SET segment = 'TIER_1' WHERE id = %s", (cid,))  # updated_at = now
        later = add_client(source)  # committed after the open transaction's change time
        client_counts(settings)  # sees `later`, not the uncommitted change
        slow.commit()
    assert later
    counts = client_counts(settings)
    assert counts["scd2"] == 1, counts
    assert versions(warehouse, cid)[-1]["segment"] == "TIER_1"


def test_changed_scd_split_rehashes_instead_of_versioning_everything(
    dims: OrionSettings, source, warehouse
) -> None:
    add_client(source)
    client_counts(dims)
    settings = with_dims(dims, client=DimensionSettings(scd2=["segment", "industry"], scd1=["client_name"]))
    counts = client_counts(settings)
    assert counts["rehashed"] == 1 and counts["scd2"] == 0 and counts["unchanged"] == 1
