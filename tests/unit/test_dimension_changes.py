"""Decoding Debezium envelopes of the dimension source tables."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime

import pytest

from orion_etl.config.models import DimsSettings
from orion_etl.core.dimension_changes import (
    UndecodableChangeError,
    decode_change,
    decode_timestamp,
    stage_row,
)
from orion_etl.core.scd import resolve_spec

LP = resolve_spec("lp", DimsSettings())
CLIENT = resolve_spec("client", DimsSettings())
LP_ID = uuid.uuid4()


def lp_row(**kw: object) -> dict[str, object]:
    row = {
        "id": str(LP_ID),
        "code": "LP1",
        "name": "Prime",
        "type": "BANK",
        "region": "EU",
        "tier": "A",
        "is_active": True,
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-02T03:04:05.123456Z",
    }
    row.update(kw)
    return row


def test_update_with_embedded_schema() -> None:
    doc = {
        "schema": {"type": "struct"},
        "payload": {"op": "u", "before": None, "after": lp_row(), "source": {"ts_ms": 1}},
    }
    change = decode_change(json.dumps(doc).encode(), LP)
    assert change is not None and not change.deleted
    assert change.natural_id == LP_ID
    assert change.attrs == {
        "lp_code": "LP1",
        "lp_name": "Prime",
        "lp_type": "BANK",
        "region": "EU",
        "tier": "A",
        "is_active": True,
    }
    assert change.change_time == datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert change.created_at == datetime(2024, 1, 1, tzinfo=UTC)
    row = stage_row(LP, change, 7, 2)
    assert row[0] == LP_ID and row[-3:] == [False, 7, 2]


def test_bare_payload_delete_uses_commit_time() -> None:
    doc = {"op": "d", "before": {"id": str(LP_ID)}, "after": None, "source": {"ts_ms": 1704067200000}}
    change = decode_change(json.dumps(doc), LP)
    assert change is not None and change.deleted and change.attrs == {}
    assert change.change_time == datetime(2024, 1, 1, tzinfo=UTC)


def test_logical_types_from_schema_micro_timestamp_and_epoch_days() -> None:
    schema = {
        "fields": [
            {
                "field": "after",
                "fields": [
                    {"field": "updated_at", "name": "io.debezium.time.MicroTimestamp"},
                    {"field": "onboard_date", "name": "io.debezium.time.Date"},
                ],
            }
        ]
    }
    after = {
        "id": str(uuid.uuid4()),
        "tenant_id": str(uuid.uuid4()),
        "client_code": "C1",
        "name": "N",
        "client_type": "T",
        "region": None,
        "segment": "S",
        "industry": None,
        "onboard_date": 19723,
        "status": "ACTIVE",
        "updated_at": 1704067200000001,
        "created_at": None,
    }
    change = decode_change(json.dumps({"schema": schema, "payload": {"op": "r", "after": after}}), CLIENT)
    assert change is not None
    assert change.change_time == datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
    assert change.attrs["onboard_date"] == date(2024, 1, 1)
    assert change.attrs["region"] is None and change.attrs["client_name"] == "N"


def test_tombstones_and_non_row_events_are_skipped() -> None:
    assert decode_change(None, LP) is None
    assert decode_change(b"", LP) is None
    assert decode_change(json.dumps({"schema": None, "payload": None}), LP) is None
    assert decode_change(json.dumps({"op": "t", "source": {"ts_ms": 1}}), LP) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[1]",
        json.dumps({"payload": {"after": {}}}).encode(),
        json.dumps({"op": "u", "after": {"name": "x"}}).encode(),
        json.dumps({"op": "u", "after": lp_row(is_active="yes")}).encode(),
        json.dumps({"op": "u", "after": lp_row(id="not-a-uuid")}).encode(),
    ],
)
def test_undecodable_records_raise(raw: bytes) -> None:
    with pytest.raises(UndecodableChangeError):
        decode_change(raw, LP)


def test_decode_timestamp_units() -> None:
    assert decode_timestamp(1_000, "io.debezium.time.Timestamp") == datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert decode_timestamp(1_000_000) == datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert decode_timestamp("2024-01-01T00:00:00+02:00") == datetime(2023, 12, 31, 22, tzinfo=UTC)
