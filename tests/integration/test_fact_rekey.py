"""Late dimension versions re-key facts (issue 15), on the real warehouse and loader.

Every sequence ends with `dims check` finding no fact keyed to another version than the one valid
at its event time; one test shows the check does find such a fact (exit 4 from the CLI).
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import psycopg
import pytest

from orion_etl.adapters.kafka import ensure_topics, make_producer
from orion_etl.config.models import DimsTopicSettings, OrionSettings
from orion_etl.jobs.aggregate import run_intraday
from orion_etl.jobs.dims import sync_batch
from orion_etl.jobs.dims_cdc import sync_cdc
from tests.integration.dims_helpers import add_client, ts, with_dims
from tests.integration.rekey_support import (
    DirectLoader,
    dirty_days,
    mismatches,
    set_segment_at,
    trade_versions,
)
from tests.integration.stream_support import cli_env
from tests.integration.test_dims_cdc import client_row, envelope

pytestmark = pytest.mark.integration


@pytest.fixture
def loader(stack_settings: OrionSettings, warehouse: psycopg.Connection) -> Iterator[DirectLoader]:
    warehouse.execute("TRUNCATE etl_dim_sync_state, etl_consumer_offsets, etl_fact_tombstones")
    direct = DirectLoader(stack_settings)
    try:
        yield direct
    finally:
        direct.close()


def test_sync_lag_trade_after_the_change_before_the_sync_is_rekeyed(
    stack_settings: OrionSettings,
    warehouse: psycopg.Connection,
    source: psycopg.Connection,
    loader: DirectLoader,
) -> None:
    """The issue's sequence: v1 synced; the source changes at t2; a trade at t3 > t2 is loaded
    before the next sync; that sync back-dates v2 to t2 and moves the trade (only it) to v2."""
    cid = add_client(source, segment="TIER_2", at=ts(1))
    sync_batch(stack_settings, "client", full=False)
    set_segment_at(source, cid, "TIER_1", ts(5))
    early, late = loader.load([(cid, ts(3)), (cid, ts(6))])
    assert trade_versions(warehouse) == {early: 1, late: 1}  # all the warehouse knew
    assert mismatches(stack_settings) == {}  # v1 is the only version: keys are right so far
    warehouse.execute("TRUNCATE agg_dirty_buckets")

    report = sync_batch(stack_settings, "client", full=False).dimensions[0].as_dict()

    assert report["scd2"] == 1 and report["rekeyed"]["fact_trades.client_key"] == 1
    assert trade_versions(warehouse) == {early: 1, late: 2}
    assert mismatches(stack_settings) == {}
    # the moved trade's day is dirty for `aggregate --intraday`; the untouched trade's day is not
    assert dirty_days(warehouse) == {ts(6).date()}
    warehouse.execute("TRUNCATE agg_intraday_state")
    repaired = run_intraday(stack_settings)
    assert f"daily {ts(6).date().isoformat()}" in repaired.buckets and repaired.issues == []
    assert dirty_days(warehouse) == set()  # claimed by the run
    epoch = warehouse.execute("SELECT epoch FROM etl_dim_key_epoch WHERE dimension = 'client'").fetchone()
    assert epoch is not None and epoch[0] >= 1


def test_inferred_member_completed_into_three_versions_from_cdc(
    stack_settings: OrionSettings,
    warehouse: psycopg.Connection,
    loader: DirectLoader,
    topic_name: Callable[[str], str],
    run_id: str,
) -> None:
    """Trades arrive before the member exists (inferred member, -infinity..infinity); the CDC sync
    then completes it and adds two versions in one transaction: each trade moves to its version."""
    cid = uuid.uuid4()
    t2, t4, t6 = loader.load([(cid, ts(2)), (cid, ts(4)), (cid, ts(6))])
    assert set(trade_versions(warehouse).values()) == {1}
    topic = topic_name("clients")
    ensure_topics(stack_settings.kafka, [topic])
    producer = make_producer(stack_settings.kafka)
    for i, (segment, at) in enumerate((("TIER_2", ts(1)), ("TIER_1", ts(3)), ("TIER_3", ts(5)))):
        value = envelope(
            "c" if i == 0 else "u", None, client_row(cid, segment, "A", ts(1), at), 0, schema=False
        )
        producer.produce(topic, key=str(cid), value=value)
    producer.flush(30)
    settings = with_dims(stack_settings, cdc_topics=DimsTopicSettings(client=topic), cdc_idle_timeout_s=1.0)

    report = sync_cdc(settings, "client", group_id=f"rekey-{run_id}-{uuid.uuid4().hex[:6]}")

    counts = report.dimensions[0].as_dict()
    assert (counts["completed_inferred"], counts["scd2"], counts["rekeyed_facts"]) == (1, 2, 2)
    assert trade_versions(warehouse) == {t2: 1, t4: 2, t6: 3}
    assert mismatches(stack_settings) == {}


def test_inferred_member_completed_then_split_by_batch_syncs(
    stack_settings: OrionSettings,
    warehouse: psycopg.Connection,
    source: psycopg.Connection,
    loader: DirectLoader,
) -> None:
    """Batch path: an inferred member completed by one sync, split by the next two (back-dated)."""
    cid = uuid.uuid4()
    trades = loader.load([(cid, ts(d)) for d in (2, 4, 6, 8)])
    add_client(source, client_id=cid, segment="TIER_2", at=ts(1))
    sync_batch(stack_settings, "client", full=False)
    set_segment_at(source, cid, "TIER_1", ts(3))
    sync_batch(stack_settings, "client", full=False)
    set_segment_at(source, cid, "TIER_3", ts(7))
    sync_batch(stack_settings, "client", full=True)
    assert [trade_versions(warehouse)[t] for t in trades] == [1, 2, 2, 3]
    assert mismatches(stack_settings) == {}


def test_source_delete_closes_a_version_and_a_recreation_rekeys_later_trades(
    stack_settings: OrionSettings,
    warehouse: psycopg.Connection,
    source: psycopg.Connection,
    loader: DirectLoader,
) -> None:
    """`--full` closes the deleted member's version (facts after it keep the last version: the
    point-in-time rule); the member re-created later gets a new version, and trades loaded in
    between but executed after the re-creation move to it."""
    cid = add_client(source, segment="TIER_2", at=ts(1))
    sync_batch(stack_settings, "client", full=True)
    source.execute("DELETE FROM clients WHERE id = %s", (cid,))
    report = sync_batch(stack_settings, "client", full=True).dimensions[0].as_dict()
    assert report["closed"] == 1
    closed = warehouse.execute("SELECT valid_to FROM dim_clients WHERE client_id = %s", (cid,)).fetchone()
    assert closed is not None
    back = closed[0] + timedelta(hours=1)
    before, after = loader.load([(cid, closed[0] - timedelta(minutes=1)), (cid, back + timedelta(hours=1))])
    assert trade_versions(warehouse) == {before: 1, after: 1}
    assert mismatches(stack_settings) == {}

    add_client(source, client_id=cid, segment="TIER_1", at=back)  # re-created
    sync_batch(stack_settings, "client", full=False)

    assert trade_versions(warehouse) == {before: 1, after: 2}
    assert mismatches(stack_settings) == {}


def test_a_sync_committed_while_a_batch_was_prepared_is_caught_at_commit(
    stack_settings: OrionSettings,
    warehouse: psycopg.Connection,
    source: psycopg.Connection,
    loader: DirectLoader,
) -> None:
    """The batch resolved its keys against v1; a sync creating v2 commits (and re-keys what was
    committed: nothing of this batch yet) before the batch commits. The commit sees the epoch moved
    and re-keys the batch's facts in its own transaction."""
    cid = add_client(source, segment="TIER_2", at=ts(1))
    sync_batch(stack_settings, "client", full=False)
    set_segment_at(source, cid, "TIER_1", ts(5))
    prepared, (early, late) = loader.prepare([(cid, ts(3)), (cid, ts(6))])
    sync_batch(stack_settings, "client", full=False)

    counts = loader.commit(prepared)

    assert counts.rekeyed == 1
    assert trade_versions(warehouse) == {early: 1, late: 2}
    assert mismatches(stack_settings) == {}
    # nothing changed since: the next batch commits without re-keying
    prepared, _ = loader.prepare([(cid, ts(7))])
    assert loader.commit(prepared).rekeyed == 0


def test_a_sync_waiting_on_the_epoch_rekeys_the_batch_after_it_commits(
    stack_settings: OrionSettings,
    warehouse: psycopg.Connection,
    source: psycopg.Connection,
    loader: DirectLoader,
) -> None:
    """A sync that cannot bump the epoch yet (a loader transaction holds it FOR SHARE) waits; a
    batch committing meanwhile keeps its v1 keys (the epoch did not move); the sync then re-keys
    the committed batch in its own transaction."""
    cid = add_client(source, segment="TIER_2", at=ts(1))
    sync_batch(stack_settings, "client", full=False)
    set_segment_at(source, cid, "TIER_1", ts(5))
    prepared, (late,) = loader.prepare([(cid, ts(6))])
    with psycopg.connect(**_conninfo(stack_settings)) as holder:  # a loader's commit transaction
        holder.execute("SELECT 1 FROM etl_dim_key_epoch WHERE dimension = 'client' FOR SHARE")
        done = threading.Event()
        worker = threading.Thread(
            target=lambda: (sync_batch(stack_settings, "client", full=False), done.set()), daemon=True
        )
        worker.start()
        assert not done.wait(1.5)  # the sync waits for the epoch row
        counts = loader.commit(prepared)  # FOR SHARE does not wait for FOR SHARE
        assert counts.rekeyed == 0 and trade_versions(warehouse) == {late: 1}
        holder.rollback()
        worker.join(30)
    assert done.is_set()
    assert trade_versions(warehouse) == {late: 2}
    assert mismatches(stack_settings) == {}


def _conninfo(settings: OrionSettings) -> dict[str, object]:
    wh = settings.warehouse
    return {
        "host": wh.host,
        "port": wh.port,
        "dbname": wh.dbname,
        "user": wh.user,
        "password": wh.password.get_secret_value(),
    }


def test_concurrent_loader_and_syncs_end_with_no_mismatched_key(
    stack_settings: OrionSettings,
    warehouse: psycopg.Connection,
    source: psycopg.Connection,
    loader: DirectLoader,
) -> None:
    """Randomized interleavings: one thread prepares and commits trade batches (random pauses
    between preparing and committing), another changes clients in the source and syncs (batch and
    --full), many times. After the loop, without any further sync: no mismatched key."""
    rng = random.Random(1515)
    clients = [add_client(source, segment="TIER_2", at=ts(1)) for _ in range(6)]
    sync_batch(stack_settings, "client", full=False)
    clock = {"t": ts(2)}  # source change times move forward; trades fall around them
    stop = threading.Event()
    errors: list[BaseException] = []
    rekeyed = {"loader": 0, "sync": 0}

    def syncer() -> None:
        try:
            local = random.Random(rng.random())
            for i in range(25):
                for cid in local.sample(clients, 2):
                    clock["t"] += timedelta(minutes=local.randint(1, 30))
                    set_segment_at(source, cid, local.choice(["TIER_1", "TIER_2", "TIER_3"]), clock["t"])
                report = sync_batch(stack_settings, "client", full=i % 5 == 4)
                rekeyed["sync"] += report.dimensions[0].as_dict()["rekeyed_facts"]
                stop.wait(local.uniform(0, 0.05))
        except BaseException as exc:  # surfaced by the main thread
            errors.append(exc)
        finally:
            stop.set()

    thread = threading.Thread(target=syncer, daemon=True)
    thread.start()
    batches = 0
    while not stop.is_set() or batches < 10:
        trades = [
            (rng.choice(clients), clock["t"] + timedelta(minutes=rng.randint(-90, 60)))
            for _ in range(rng.randint(1, 8))
        ]
        prepared, _ = loader.prepare(trades)
        if rng.random() < 0.5:
            stop.wait(rng.uniform(0, 0.08))  # let a sync commit between preparing and committing
        rekeyed["loader"] += loader.commit(prepared).rekeyed
        batches += 1
    thread.join(60)
    assert not errors, errors
    assert batches >= 10
    assert mismatches(stack_settings) == {}
    assert rekeyed["sync"] > 0  # the syncs did move committed facts
    versions = set(trade_versions(warehouse).values())
    assert max(v for v in versions if v is not None) > 3


def test_dims_check_reports_a_wrong_key_with_samples_and_exit_2(
    stack_settings: OrionSettings,
    warehouse: psycopg.Connection,
    source: psycopg.Connection,
    loader: DirectLoader,
) -> None:
    cid = add_client(source, segment="TIER_2", at=ts(1))
    sync_batch(stack_settings, "client", full=False)
    set_segment_at(source, cid, "TIER_1", ts(5))
    sync_batch(stack_settings, "client", full=False)
    (late,) = loader.load([(cid, ts(6))])
    v1 = warehouse.execute("SELECT client_key FROM dim_clients WHERE client_id = %s AND version = 1", (cid,))
    row = v1.fetchone()
    assert row is not None
    warehouse.execute("UPDATE fact_trades SET client_key = %s WHERE trade_id = %s", (row[0], late))
    assert mismatches(stack_settings) == {"fact_keys:fact_trades.client_key": 1}

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "orion_etl.cli.app",
            "dims",
            "check",
            "--dimension",
            "client",
            "--format",
            "json",
        ],
        env=cli_env(stack_settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 4, done.stderr
    assert f"trade_id={late}" in done.stdout and '"fact_keys:fact_trades.client_key"' in done.stdout


def test_cdc_delete_closes_and_a_recreation_rekeys_trades_executed_after_it(
    stack_settings: OrionSettings,
    warehouse: psycopg.Connection,
    loader: DirectLoader,
    topic_name: Callable[[str], str],
    run_id: str,
) -> None:
    """`--from-cdc`: a delete (commit time ts(3)) closes v1; trades loaded meanwhile keep v1; the
    member's re-creation at ts(5) opens v2 and moves the trades executed after it."""
    cid = uuid.uuid4()
    topic = topic_name("clients")
    ensure_topics(stack_settings.kafka, [topic])
    settings = with_dims(stack_settings, cdc_topics=DimsTopicSettings(client=topic), cdc_idle_timeout_s=1.0)
    group = f"rekey-{run_id}-{uuid.uuid4().hex[:6]}"
    producer = make_producer(stack_settings.kafka)

    def send(op: str, before: object, after: object, ts_ms: int) -> None:
        producer.produce(topic, key=str(cid), value=envelope(op, before, after, ts_ms, schema=False))
        producer.flush(30)

    send("c", None, client_row(cid, "TIER_2", "A", ts(1), ts(1)), 0)
    send("d", {"id": str(cid)}, None, int(ts(3).timestamp() * 1000))
    report = sync_cdc(settings, "client", group_id=group).dimensions[0].as_dict()
    assert (report["inserted"], report["closed"]) == (1, 1)
    before, between, after = loader.load([(cid, ts(2)), (cid, ts(4)), (cid, ts(6))])
    assert trade_versions(warehouse) == {before: 1, between: 1, after: 1}  # after a closed history: v1

    send("c", None, client_row(cid, "TIER_1", "A", ts(5), ts(5)), 0)
    report = sync_cdc(settings, "client", group_id=group).dimensions[0].as_dict()

    assert report["inserted"] == 1 and report["rekeyed_facts"] == 1
    assert trade_versions(warehouse) == {before: 1, between: 1, after: 2}
    assert mismatches(stack_settings) == {}
