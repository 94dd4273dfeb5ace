"""SCD rules: configuration, canonical hashing, classification and the reference model."""

from __future__ import annotations

import hashlib
import itertools
import re
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orion_etl.config.models import DimensionSettings, DimsSettings
from orion_etl.core.scd import Action, resolve_spec
from orion_etl.errors import ConfigError
from tests.scd_model import INFINITY, Change, ModelDimension, Version, attr_hash, canonical_text, classify

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def test_spec_uses_configured_split_and_unlisted_attributes_are_type_1() -> None:
    spec = resolve_spec("client", DimsSettings())
    assert spec.scd2 == ("client_type", "region", "segment", "status")
    assert {"client_name", "industry", "client_code", "tenant_id", "onboard_date"} == set(spec.scd1)
    assert spec.table == "dim_clients" and spec.natural_id == "client_id"
    assert {a.column: a.source for a in resolve_spec("lp", DimsSettings()).attributes}["lp_type"] == "type"


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        (DimensionSettings(scd2=["segmnt"]), "unknown attribute(s) segmnt"),
        (DimensionSettings(scd2=["segment"], scd1=["segment"]), "both scd2 and scd1"),
    ],
)
def test_bad_split_is_a_config_error(conf: DimensionSettings, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        resolve_spec("client", DimsSettings(client=conf))


def test_fingerprint_changes_with_the_split_only() -> None:
    a = resolve_spec("client", DimsSettings())
    b = resolve_spec("client", DimsSettings(client=DimensionSettings(scd2=["segment"])))
    assert a.fingerprint() == resolve_spec("client", DimsSettings()).fingerprint() != b.fingerprint()


def test_canonical_text_matches_postgres_jsonb_and_is_null_safe() -> None:
    cid = uuid.UUID("12345678-1234-5678-1234-567812345678")
    # jsonb_build_array('a"b', NULL, 5, true, DATE '2024-01-02', uuid)::text in PostgreSQL 15:
    expected = '["a\\"b", null, 5, true, "2024-01-02", "12345678-1234-5678-1234-567812345678"]'
    assert canonical_text(['a"b', None, 5, True, date(2024, 1, 2), cid]) == expected
    assert attr_hash([None]) != attr_hash(["null"]) != attr_hash([""])
    assert attr_hash(["a", "bc"]) != attr_hash(["ab", "c"])  # no concatenation ambiguity
    assert attr_hash(["é"]) == hashlib.md5('["é"]'.encode()).hexdigest()


def _cur(**kw: object) -> Version:
    base: dict[str, object] = {
        "key": 1,
        "version": 1,
        "valid_from": T0,
        "valid_to": INFINITY,
        "is_current": True,
        "attrs": {},
        "h2": "x",
        "h1": "y",
        "source_updated_at": T0,
    }
    base.update(kw)
    return Version(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cur", "change", "h2", "h1", "expected"),
    [
        (None, Change({}, T0), "x", "y", Action.INSERT),
        (None, Change({}, T0, deleted=True), "x", "y", Action.IGNORED_DELETE),
        (_cur(), Change({}, T0 + timedelta(1), deleted=True), "x", "y", Action.CLOSE),
        (_cur(is_inferred=True, h2=None, h1=None), Change({}, T0), "x", "y", Action.COMPLETE),
        (_cur(source_updated_at=T0 + timedelta(2)), Change({}, T0 + timedelta(1)), "z", "y", Action.STALE),
        (_cur(), Change({}, T0 + timedelta(1)), "x", "y", Action.UNCHANGED),
        (_cur(), Change({}, T0 + timedelta(1)), "z", "y", Action.SCD2),
        (_cur(), Change({}, T0 + timedelta(1)), "z", "w", Action.SCD2),
        (_cur(), Change({}, T0), "z", "y", Action.CORRECT),
        (_cur(), Change({}, T0 + timedelta(1)), "x", "w", Action.SCD1),
        (_cur(is_deleted=True), Change({}, T0 + timedelta(1)), "x", "y", Action.SCD1),
    ],
)
def test_classify(cur: Version | None, change: Change, h2: str, h1: str, expected: Action) -> None:
    assert classify(cur, change, h2, h1, close_on_delete=True) == expected


def test_classify_delete_without_close_flags_once_and_replay_after_delete_is_stale() -> None:
    assert classify(_cur(), Change({}, T0, deleted=True), "x", "y", False) is Action.DELETE_FLAG
    assert classify(_cur(is_deleted=True), Change({}, T0, deleted=True), "x", "y", False) is Action.UNCHANGED
    assert classify(None, Change({}, T0), "x", "y", True, closed_at=T0 + timedelta(1)) is Action.STALE


# --- property: whatever arrives, SCD2 history stays well-formed --------------------------------

IDS = ["a", "b", "c"]
change_st = st.tuples(
    st.sampled_from(IDS),
    st.sampled_from(["TIER_1", "TIER_2"]),  # segment (SCD2)
    st.sampled_from(["n1", "n2", None]),  # client_name (SCD1)
    st.integers(-3, 30),  # change time, hours from the previous one (negative: out of order)
    st.sampled_from([False, False, False, True]),  # deleted
    st.booleans(),  # loader creates an inferred member first
)


@settings(max_examples=200, deadline=None)
@given(st.lists(change_st, max_size=40), st.booleans())
def test_scd2_invariants_hold_for_any_change_sequence(changes: list, close_on_delete: bool) -> None:
    spec = resolve_spec(
        "client", DimsSettings(client=DimensionSettings(scd2=["segment"], close_on_delete=close_on_delete))
    )
    dim = ModelDimension(spec)
    clock = T0
    issued: dict[tuple[str, int], int] = {}
    for nid, segment, name, hours, deleted, inferred in changes:
        if inferred and nid not in dim.rows:
            dim.add_inferred(nid)
        clock += timedelta(hours=hours)
        dim.apply_change(nid, Change({"segment": segment, "client_name": name}, clock, clock, deleted))
        for versions in dim.rows.values():
            assert [v.version for v in versions] == list(range(1, len(versions) + 1))
            assert sum(v.is_current for v in versions) <= 1
            for prev, nxt in itertools.pairwise(versions):
                # no overlap; no gap except while the member was deleted in the source
                assert prev.valid_to == nxt.valid_from or (prev.is_deleted and prev.valid_to < nxt.valid_from)
                assert not prev.is_current
            for v in versions:
                assert v.valid_from < v.valid_to
            last = versions[-1]
            if last.is_current:
                assert last.valid_to == INFINITY
            else:
                assert last.is_deleted and last.valid_to < INFINITY
        for n, versions in dim.rows.items():
            for v in versions:
                assert issued.setdefault((n, v.version), v.key) == v.key  # surrogate keys never change
