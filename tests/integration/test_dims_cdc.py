"""`dims sync --from-cdc`: synthetic Debezium envelopes reach the same dimension state as batch."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import psycopg
import pytest

from orion_etl.adapters.dlq import DeadLetterPublisher
from orion_etl.adapters.dlq_reader import DlqReader
from orion_etl.adapters.kafka import ensure_topics, make_producer
from orion_etl.config.models import DimsTopicSettings, OrionSettings
from orion_etl.jobs import dims_cdc
from orion_etl.jobs.dims import sync_batch
from orion_etl.jobs.dims_cdc import sync_cdc
from tests.integration.dims_helpers import TENANT, add_client, dict_cursor, ts, update_client, with_dims
from tests.scd_model import INFINITY

pytestmark = pytest.mark.integration

SCHEMA_AFTER = {
    "type": "struct",
    "fields": [
        {
            "field": "after",
            "type": "struct",
            "fields": [
                {"field": "updated_at", "type": "string", "name": "io.debezium.time.ZonedTimestamp"},
                {"field": "created_at", "type": "string", "name": "io.debezium.time.ZonedTimestamp"},
                {"field": "onboard_date", "type": "int32", "name": "io.debezium.time.Date"},
            ],
        }
    ],
}


def client_row(
    cid: uuid.UUID, segment: str, name: str, created: datetime, updated: datetime
) -> dict[str, Any]:
    """A clients row as Debezium's JsonConverter writes it."""
    return {
        "id": str(cid),
        "tenant_id": str(TENANT),
        "client_code": f"C-{cid.hex[:8]}",
        "name": name,
        "client_type": "INSTITUTIONAL",
        "region": "EMEA",
        "segment": segment,
        "industry": "Banking",
        "onboard_date": (date(2023, 12, 1) - date(1970, 1, 1)).days,
        "status": "ACTIVE",
        "created_at": created.isoformat().replace("+00:00", "Z"),
        "updated_at": updated.isoformat().replace("+00:00", "Z"),
    }


def envelope(op: str, before: Any, after: Any, ts_ms: int, *, schema: bool) -> bytes:
    payload = {"op": op, "before": before, "after": after, "source": {"ts_ms": ts_ms, "table": "clients"}}
    return json.dumps({"schema": SCHEMA_AFTER, "payload": payload} if schema else payload).encode()


def dimension_state(warehouse: psycopg.Connection) -> list[tuple[Any, ...]]:
    """Comparable state of dim_clients (keys excluded: they are issued in a different order)."""
    rows = dict_cursor(warehouse).execute("SELECT * FROM dim_clients ORDER BY client_id, version").fetchall()
    ignore = {"client_key", "created_at", "updated_at"}
    out = []
    for row in rows:
        if row["is_deleted"] and not row["is_current"]:
            row["valid_to"] = "closed-by-delete"  # batch: time of the full run; CDC: the commit time
        out.append(tuple(v for k, v in sorted(row.items()) if k not in ignore))
    return out


def test_cdc_and_batch_reach_the_same_dimension_state(
    stack_settings: OrionSettings,
    warehouse: psycopg.Connection,
    source: psycopg.Connection,
    topic_name: Callable[[str], str],
    run_id: str,
) -> None:
    warehouse.execute("TRUNCATE etl_dim_sync_state")
    a, b = uuid.uuid4(), uuid.uuid4()
    # --- batch: a run after every step
    add_client(source, client_id=a, segment="TIER_2", name="A", at=ts(1))
    add_client(source, client_id=b, segment="TIER_3", name="B", at=ts(1))
    sync_batch(stack_settings, "client", full=False)
    update_client(source, a, ts(2), segment="TIER_1")
    sync_batch(stack_settings, "client", full=False)
    update_client(source, a, ts(3), name="A renamed")
    sync_batch(stack_settings, "client", full=False)
    update_client(source, a, ts(4), segment="TIER_3", name="A again")
    sync_batch(stack_settings, "client", full=False)
    source.execute("DELETE FROM clients WHERE id = %s", (b,))
    sync_batch(stack_settings, "client", full=True)
    batch_state = dimension_state(warehouse)
    assert len(batch_state) == 4  # a: 3 versions, b: 1 (closed)

    # --- CDC: the same changes as envelopes, all in one topic (several per key in one batch)
    warehouse.execute("TRUNCATE dim_clients RESTART IDENTITY CASCADE")
    warehouse.execute("TRUNCATE etl_dim_sync_state")
    topic = topic_name("clients")
    ensure_topics(stack_settings.kafka, [topic])
    events = [
        ("r", None, client_row(a, "TIER_2", "A", ts(1), ts(1)), True),
        ("c", None, client_row(b, "TIER_3", "B", ts(1), ts(1)), False),
        ("u", None, client_row(a, "TIER_1", "A", ts(1), ts(2)), True),
        ("u", None, client_row(a, "TIER_1", "A renamed", ts(1), ts(3)), False),
        ("u", None, client_row(a, "TIER_3", "A again", ts(1), ts(4)), True),
        ("d", {"id": str(b)}, None, True),
    ]
    producer = make_producer(stack_settings.kafka)
    for i, (op, before, after, schema) in enumerate(events):
        key = str((after or before)["id"])
        producer.produce(topic, key=key, value=envelope(op, before, after, 1704499200000 + i, schema=schema))
    producer.produce(topic, key=str(b), value=None)  # the tombstone after a delete
    producer.flush(30)
    settings = with_dims(stack_settings, cdc_topics=DimsTopicSettings(client=topic), cdc_idle_timeout_s=1.0)
    group = f"dims-test-{run_id}-{uuid.uuid4().hex[:6]}"
    report = sync_cdc(settings, "client", group_id=group).dimensions[0].as_dict()
    assert (report["read"], report["inserted"], report["scd2"], report["scd1"], report["closed"]) == (
        6,
        2,
        2,
        1,
        1,
    )
    assert dimension_state(warehouse) == batch_state
    (b_row,) = (
        dict_cursor(warehouse).execute("SELECT * FROM dim_clients WHERE client_id = %s", (b,)).fetchall()
    )
    assert b_row["valid_to"] < INFINITY and b_row["is_deleted"]

    # positions were stored with the changes: a second drain reads nothing
    stored = warehouse.execute(
        "SELECT next_offset FROM etl_consumer_offsets WHERE consumer_group = %s AND topic = %s",
        (group, topic),
    ).fetchone()
    assert stored == (7,)
    assert sync_cdc(settings, "client", group_id=group).dimensions[0].read == 0
    # a full replay (new group) changes nothing: older changes are stale, the latest unchanged
    replay = sync_cdc(settings, "client", group_id=group + "-replay").dimensions[0].as_dict()
    assert replay["inserted"] == replay["scd2"] == replay["scd1"] == 0
    assert replay["stale"] > 0
    assert dimension_state(warehouse) == batch_state


def test_undecodable_and_refused_changes_are_dead_lettered_once(
    stack_settings: OrionSettings,
    warehouse: psycopg.Connection,
    topic_name: Callable[[str], str],
    run_id: str,
) -> None:
    from tests.integration.stream_support import read_topic

    warehouse.execute("TRUNCATE etl_dim_sync_state")
    a, b, c, d = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    topic = topic_name("clients")
    ensure_topics(stack_settings.kafka, [topic])
    values = [
        envelope("c", None, client_row(a, "TIER_1", "A", ts(1), ts(1)), 1704499200000, schema=True),
        b"{not json",
        envelope("c", None, client_row(b, "REFUSED", "B", ts(1), ts(1)), 1704499200001, schema=False),
        envelope("c", None, client_row(d, "TIER_1", "D\u0000", ts(1), ts(1)), 1704499200003, schema=False),
        envelope("c", None, client_row(c, "TIER_2", "C", ts(1), ts(1)), 1704499200002, schema=True),
    ]
    producer = make_producer(stack_settings.kafka)
    for v in values:
        producer.produce(topic, value=v)
    producer.flush(30)
    settings = with_dims(stack_settings, cdc_topics=DimsTopicSettings(client=topic), cdc_idle_timeout_s=1.0)
    group = f"dims-test-{run_id}-{uuid.uuid4().hex[:6]}"
    warehouse.execute(
        "ALTER TABLE dim_clients ADD CONSTRAINT t14_segment CHECK (segment IS DISTINCT FROM 'REFUSED')"
    )
    try:
        report = sync_cdc(settings, "client", group_id=group)
        again = sync_cdc(settings, "client", group_id=group)
    finally:
        warehouse.execute("ALTER TABLE dim_clients DROP CONSTRAINT t14_segment")
    got = report.dimensions[0].as_dict()
    assert (got["inserted"], got["undecodable"], got["rejected"]) == (2, 2, 1), got
    assert report.warnings == 3
    assert again.dimensions[0].read == 0
    ids = {r[0] for r in warehouse.execute("SELECT client_id FROM dim_clients").fetchall()}
    assert ids == {a, c}
    letters = read_topic(settings, topic + settings.stream.dlq_suffix, 5, timeout_s=4)
    classes = sorted(dict(m.headers())["dlq.error_class"].decode() for m in letters)
    assert classes == ["DECODE", "INVALID_VALUE", "LOAD_REJECTED"]
    refused = next(m for m in letters if dict(m.headers())["dlq.error_class"] == b"LOAD_REJECTED")
    assert dict(refused.headers())["dlq.sqlstate"] == b"23514"
    stored = warehouse.execute(
        "SELECT next_offset FROM etl_consumer_offsets WHERE consumer_group = %s AND topic = %s",
        (group, topic),
    ).fetchone()
    assert stored == (5,)


def test_a_fenced_cdc_batch_re_seeks_and_applies_each_change_once(
    stack_settings: OrionSettings,
    warehouse: psycopg.Connection,
    topic_name: Callable[[str], str],
    run_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another claimant of the group applies the first part of a batch this drain has read, and
    stores its positions, before this drain claims: the claim is fenced (compare-and-set), the
    transaction rolls back, the drain re-seeks to the stored positions and applies only the rest.
    The dimension ends as an undisturbed drain leaves it; the bad change is dead-lettered once."""
    warehouse.execute("TRUNCATE dim_clients RESTART IDENTITY CASCADE")
    warehouse.execute("TRUNCATE etl_dim_sync_state")
    a, b = uuid.uuid4(), uuid.uuid4()
    topic = topic_name("clients")
    ensure_topics(stack_settings.kafka, [topic])
    events = [
        ("r", None, client_row(a, "TIER_2", "A", ts(1), ts(1))),
        ("c", None, client_row(b, "TIER_3", "B", ts(1), ts(1))),
        ("u", None, client_row(a, "TIER_1", "A", ts(1), ts(2))),
        ("u", None, client_row(a, "TIER_1", "A renamed", ts(1), ts(3))),
        ("u", None, client_row(a, "TIER_3", "A again", ts(1), ts(4))),
        ("u", None, client_row(b, "TIER_3", "B\u0000", ts(1), ts(5))),  # dead-lettered INVALID_VALUE
        ("d", {"id": str(b)}, None),
    ]
    producer = make_producer(stack_settings.kafka)
    for i, (op, before, after) in enumerate(events):
        key = str((after or before)["id"])
        producer.produce(topic, key=key, value=envelope(op, before, after, 1704499200000 + i, schema=True))
    producer.flush(30)
    settings = with_dims(stack_settings, cdc_topics=DimsTopicSettings(client=topic), cdc_idle_timeout_s=1.0)
    group = f"dims-fence-{run_id}-{uuid.uuid4().hex[:6]}"
    suffix = settings.stream.dlq_suffix

    original = dims_cdc._Drain.apply_batch
    raced: list[int] = []
    reseeks: list[int] = []
    other_reports: list[dict[str, Any]] = []

    def apply_batch(self: dims_cdc._Drain, messages: list[Any]) -> dict[tuple[str, int], int]:
        if not raced:  # the other claimant takes the first half of what this drain read
            half = messages[: max(1, len(messages) // 2)]
            raced.append(len(half))
            publisher = DeadLetterPublisher(make_producer(settings.kafka), suffix, group)
            reader = DlqReader(settings.kafka, suffix)
            try:
                marks = reader.watermarks(topic + suffix)
                publisher.start_floors(topic + suffix, {p: high for p, (_, high) in marks.items()})
                other = dims_cdc._Drain(settings, self.specs, group, publisher, reader)
                other.expected = dict(self.expected)
                original(other, half)
                other_reports.extend(r.as_dict() for r in other.reports.values())
            finally:
                reader.close()
        return original(self, messages)

    def reseek(self: dims_cdc._Drain, consumer: Any) -> None:
        reseeks.append(1)
        original_reseek(self, consumer)

    original_reseek = dims_cdc._Drain.reseek
    with monkeypatch.context() as m:
        m.setattr(dims_cdc._Drain, "apply_batch", apply_batch)
        m.setattr(dims_cdc._Drain, "reseek", reseek)
        report = sync_cdc(settings, "client", group_id=group).dimensions[0].as_dict()
    assert raced and reseeks == [1]
    counts = ("read", "inserted", "scd2", "scd1", "closed", "undecodable")
    (theirs,) = other_reports
    together = tuple(report[k] + theirs[k] for k in counts)
    assert together == (6, 2, 2, 1, 1, 1), (report, theirs)  # each change applied once
    stored = warehouse.execute(
        "SELECT next_offset FROM etl_consumer_offsets WHERE consumer_group = %s AND topic = %s",
        (group, topic),
    ).fetchone()
    assert stored == (len(events),)
    raced_state = dimension_state(warehouse)
    letters = DlqReader(settings.kafka, suffix)
    try:
        low, high = letters.watermarks(topic + suffix)[0]
    finally:
        letters.close()
    assert high - low == 1  # one letter for the bad change

    # the same changes drained undisturbed by a fresh group give the same dimension
    warehouse.execute("TRUNCATE dim_clients RESTART IDENTITY CASCADE")
    warehouse.execute("TRUNCATE etl_dim_sync_state")
    plain = sync_cdc(settings, "client", group_id=group + "-plain").dimensions[0].as_dict()
    assert tuple(plain[k] for k in counts) == together
    assert dimension_state(warehouse) == raced_state
