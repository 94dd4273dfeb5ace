"""The streaming loader end to end: Kafka topics -> warehouse facts on the real stack."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal

import psycopg
import pytest
from psycopg import sql

from orion_etl.config.models import OrionSettings
from tests.integration.stream_support import (
    STREAM_TABLES,
    drain,
    fact_snapshot,
    produce,
    stream_settings,
    totals,
)
from tests.stream_builders import (
    UNAVAILABLE_PLACEHOLDER,
    cdc,
    dumps,
    order_row,
    quote_event,
    trade_event,
    trade_row,
)

pytestmark = pytest.mark.integration

CLIENT = str(uuid.UUID(int=101))
INSTRUMENT = str(uuid.UUID(int=201))
LP = str(uuid.UUID(int=301))
TENANT = str(uuid.UUID(int=1))


@pytest.fixture
def wh(warehouse: psycopg.Connection) -> psycopg.Connection:
    warehouse.execute(
        sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(sql.Identifier(t) for t in STREAM_TABLES))
    )
    return warehouse


def seed_dimensions(conn: psycopg.Connection) -> dict[str, int]:
    """Client with two SCD2 versions (segment change on 2024-03-10), instrument v1; no LP."""
    keys = {}
    for version, start, end, current, segment in (
        (1, "2024-01-01", "2024-03-10", False, "TIER_2"),
        (2, "2024-03-10", "infinity", True, "TIER_1"),
    ):
        row = conn.execute(
            "INSERT INTO dim_clients (client_id, tenant_id, client_name, segment, valid_from, valid_to, "
            "is_current, version) VALUES (%s, %s, 'Acme', %s, %s, %s, %s, %s) RETURNING client_key",
            (CLIENT, TENANT, segment, start, end, current, version),
        ).fetchone()
        assert row
        keys[f"client_v{version}"] = row[0]
    row = conn.execute(
        "INSERT INTO dim_instruments (instrument_id, symbol, valid_from) VALUES (%s, 'EURUSD', '2024-01-01') "
        "RETURNING instrument_key",
        (INSTRUMENT,),
    ).fetchone()
    assert row
    keys["instrument"] = row[0]
    return keys


def test_trades_orders_events_quotes_load_with_point_in_time_keys(
    stack_settings: OrionSettings, topic_name: Callable[[str], str], wh: psycopg.Connection
) -> None:
    settings = stream_settings(stack_settings, topic_name, quote_sample_every=2)
    t = settings.stream.topics
    keys = seed_dimensions(wh)
    before = trade_row(trade_date="2024-03-05T12:00:00Z", quantity="100.5", price="1.085", fees="2.5")
    after = trade_row(
        trade_date="2024-03-15T12:00:00Z", side="SELL", quantity="3", price="0.3333333333", fees="0.1"
    )
    early = trade_row(trade_date="2023-12-01T12:00:00Z")
    event = trade_event(quantity="1000", price="1.2345", fees="1.5", side="SELL")
    orders = [order_row(status=s) for s in ("FILLED", "REJECTED", "CANCELLED")]
    orders[1].update(requested_quantity="5", filled_quantity="0")
    quotes = [quote_event("1.0850", "1.0852", ts=f"2024-03-15T14:30:0{i}Z") for i in range(5)]
    msgs = [
        (t.trades_cdc, r["id"].encode(), cdc("trades", r, lsn=1000 + i, commit_lsn=900 + i))
        for i, r in enumerate((before, after, early))
    ]
    msgs.append(
        (t.trades_cdc, before["id"].encode(), cdc("trades", before, schema=False, lsn=1000, commit_lsn=900))
    )
    msgs.append((t.trade_events, None, dumps(event)))
    msgs += [(t.orders_cdc, o["id"].encode(), cdc("orders", o, lsn=2000 + i)) for i, o in enumerate(orders)]
    msgs += [(t.quote_events, None, dumps(q)) for q in quotes]
    produce(settings, msgs)

    result = drain(settings)
    assert result.exit_code == 0, result.stats.as_dict()
    assert result.stats.messages == len(msgs) and result.stats.dlq == 0

    rows = {
        r[0]: r[1:]
        for r in wh.execute(
            "SELECT trade_id::text, client_key, instrument_key, lp_key, notional_value, net_amount, "
            "trade_date_key, src_origin FROM fact_trades"
        ).fetchall()
    }
    assert len(rows) == 4
    assert rows[before["id"]][0] == keys["client_v1"]
    assert rows[after["id"]][0] == keys["client_v2"]
    assert rows[early["id"]][0] == keys["client_v1"]  # before the first version: version 1
    assert rows[before["id"]][1] == keys["instrument"]
    assert rows[before["id"]][3:5] == (Decimal("109.0425000000"), Decimal("111.5425000000"))
    assert rows[after["id"]][3:6] == (Decimal("0.9999999999"), Decimal("0.8999999999"), 20240315)
    ev = rows[event["payload"]["tradeId"]]
    assert ev[3:5] == (Decimal("1234.5000000000"), Decimal("1233.0000000000")) and ev[6] == "event"
    lp = wh.execute(
        "SELECT lp_key, is_inferred, is_current, version, valid_from::text FROM dim_liquidity_providers"
    ).fetchall()
    assert len(lp) == 1 and lp[0][1:] == (True, True, 1, "-infinity")
    assert {r[2] for r in rows.values()} == {lp[0][0]}

    got_orders = dict(wh.execute("SELECT final_status, fill_rate FROM fact_orders").fetchall())
    assert got_orders == {"FILLED": Decimal("0.75"), "REJECTED": Decimal("0"), "CANCELLED": Decimal("0.75")}
    assert wh.execute("SELECT count(*) FROM fact_orders WHERE was_rejected").fetchone() == (1,)
    quote_rows = wh.execute("SELECT src_offset, mid_price, spread_bps FROM fact_quotes ORDER BY 1").fetchall()
    assert [r[0] for r in quote_rows] == [0, 2, 4]  # first, then every 2nd
    assert quote_rows[0][1:] == (Decimal("1.0851000000"), Decimal("1.843318"))
    offsets = dict(
        wh.execute("SELECT topic || ':' || partition, next_offset FROM etl_consumer_offsets").fetchall()
    )
    assert sum(offsets.values()) == len(msgs)
    job = wh.execute("SELECT status, job_type, records_processed FROM etl_job_runs").fetchall()
    assert job == [("COMPLETED", "STREAM", len(msgs))]

    # consuming everything again (another group) and again (same group) changes nothing
    first = fact_snapshot(wh), totals(wh)
    again = drain(settings, group=settings.stream.group_id + "-replay")
    assert again.stats.messages == len(msgs) and again.stats.loaded == 0
    assert again.stats.duplicates + again.stats.stale >= 4
    assert (fact_snapshot(wh), totals(wh)) == first
    assert drain(settings).stats.messages == 0
    assert (fact_snapshot(wh), totals(wh)) == first


def test_ordering_guard_deletes_tombstones_and_toast(
    stack_settings: OrionSettings, topic_name: Callable[[str], str], wh: psycopg.Connection
) -> None:
    settings = stream_settings(stack_settings, topic_name, batch_max_messages=1)
    topic = settings.stream.topics.trades_cdc
    x, y, z = trade_row(price="1"), trade_row(), trade_row()
    ev_id = str(uuid.uuid4())
    msgs = [
        cdc("trades", x, lsn=100, commit_lsn=90),
        cdc("trades", {**x, "price": "3"}, op="u", lsn=150, commit_lsn=140),  # newer transaction, lower LSN
        cdc("trades", {**x, "price": "2"}, op="u", lsn=300, commit_lsn=120),  # older transaction: stale
        cdc(
            "trades",
            {**x, "price": "3", "execution_venue": UNAVAILABLE_PLACEHOLDER},
            op="u",
            lsn=160,
            commit_lsn=155,
        ),
        cdc("trades", None, op="d", before={"id": y["id"]}, lsn=500, commit_lsn=490),
        cdc("trades", y, op="u", lsn=400, commit_lsn=390),  # late update of a deleted row: no resurrection
        cdc("trades", z, lsn=600, commit_lsn=590),
        cdc("trades", None, op="d", before={"id": z["id"]}, lsn=700, commit_lsn=690),
        None,  # Kafka tombstone after the delete
        cdc("trades", z, op="u", lsn=650, commit_lsn=640),  # older than the delete
    ]
    keys = [x["id"]] * 4 + [y["id"]] * 2 + [z["id"]] * 4
    produce(settings, [(topic, k.encode(), v) for k, v in zip(keys, msgs, strict=True)])
    # a trade.executed event then a CDC change for the same trade: CDC wins; an older event is stale
    ev = lambda seq, price: dumps(trade_event(tradeId=ev_id, sequence=seq, price=price))  # noqa: E731
    produce(
        settings,
        [
            (settings.stream.topics.trade_events, None, ev(2, "7")),
            (settings.stream.topics.trade_events, None, ev(1, "6")),
        ],
    )

    result = drain(settings)
    s = result.stats
    assert s.dlq == 0 and s.tombstones == 1
    assert s.stale == 4, s.as_dict()  # x@lsn300, y@400 (tombstoned), z@650, event seq 1
    got = {
        r[0]: r[1:]
        for r in wh.execute(
            "SELECT trade_id::text, price, execution_venue, is_deleted, src_lsn FROM fact_trades"
        ).fetchall()
    }
    assert got[x["id"]] == (Decimal("3.0000000000"), "LP1", False, 160)  # TOAST kept the stored venue
    assert y["id"] not in got
    assert got[z["id"]][2:] == (True, 700)
    assert got[ev_id][0] == Decimal("7.0000000000")
    tomb = wh.execute(
        "SELECT natural_key::text, src_lsn FROM etl_fact_tombstones ORDER BY src_lsn"
    ).fetchall()
    assert tomb == [(y["id"], 500), (z["id"], 700)]


def test_a_consumer_that_lost_its_partition_cannot_commit(
    stack_settings: OrionSettings, wh: psycopg.Connection
) -> None:
    from orion_etl.adapters.warehouse_loader import BatchWrite, FencedError, WarehouseLoader

    loader = WarehouseLoader(stack_settings.warehouse, "fence-group")
    try:
        first = BatchWrite(offsets={("t", 0): 10})
        loader.commit_batch(first, {("t", 0): None}, None)
        loader.commit_batch(BatchWrite(offsets={("t", 0): 20}), {("t", 0): 10}, None)
        # a process still believing the partition is at 10 (it lost it in a rebalance) is fenced
        with pytest.raises(FencedError):
            loader.commit_batch(BatchWrite(offsets={("t", 0): 15}), {("t", 0): 10}, None)
        with pytest.raises(FencedError):  # and one that believes it was never committed
            loader.commit_batch(BatchWrite(offsets={("t", 0): 5}), {("t", 0): None}, None)
    finally:
        loader.close_all()
    assert wh.execute(
        "SELECT next_offset FROM etl_consumer_offsets WHERE consumer_group = 'fence-group'"
    ).fetchall() == [(20,)]


def test_new_keys_are_appended_and_existing_ones_upserted(
    stack_settings: OrionSettings, wh: psycopg.Connection
) -> None:
    """New keys are COPYed straight into the fact table. While batches bring only new keys, keys are
    not even looked up: a batch with an existing key then fails on the primary key, reruns through
    the guarded upsert, and keys are looked up until a batch is all new again. Same rows either way."""
    from orion_etl.adapters.warehouse_loader import WarehouseLoader
    from orion_etl.core.records import KafkaRecord
    from orion_etl.jobs.stream_batch import BatchPreparer

    topic = stack_settings.stream.topics.trades_cdc
    loader = WarehouseLoader(stack_settings.warehouse, f"append-{uuid.uuid4().hex[:6]}")
    preparer = BatchPreparer(stack_settings, loader)
    offsets = iter(range(1_000))
    positions: dict[tuple[str, int], int | None] = {}

    def commit(*changes: tuple[dict[str, object], int]) -> tuple[int, int, int]:
        records = [
            KafkaRecord(
                topic, 0, next(offsets), None, cdc("trades", row, lsn=lsn, ts_ms=1_710_000_000_000), None
            )
            for row, lsn in changes
        ]
        prepared = preparer.prepare(records)
        assert not prepared.letters
        expected = {tp: positions.get(tp) for tp in prepared.write.offsets}
        counts = loader.commit_batch(prepared.write, expected, None)
        positions.update(prepared.write.offsets)
        return counts.upserted, counts.stale, counts.duplicates

    a, b, c, d = trade_row(), trade_row(price="1.5"), trade_row(price="1.6"), trade_row(price="1.7")
    try:
        assert commit((a, 100), (b, 110)) == (2, 0, 0)  # new keys: appended
        assert "fact_trades" in loader.appending
        # `a` exists: the direct COPY fails on the primary key and the batch reruns as an upsert
        assert commit(({**a, "price": "2.0"}, 200), (c, 210)) == (2, 0, 0)
        assert "fact_trades" not in loader.appending
        assert commit(({**b, "price": "3.0"}, 90)) == (0, 1, 0)  # older than stored: stale
        assert "fact_trades" not in loader.appending  # keys were looked up, one existed
        assert commit((d, 300)) == (1, 0, 0)  # looked up, all new: appended
        assert "fact_trades" in loader.appending
        assert commit((d, 300)) == (0, 0, 1)  # a replay: COPY fails again, the upsert sees the same position
    finally:
        loader.close_all()
    rows = dict(wh.execute("SELECT trade_id::text, price FROM fact_trades").fetchall())
    assert rows == {
        a["id"]: Decimal("2"),
        b["id"]: Decimal("1.5"),
        c["id"]: Decimal("1.6"),
        d["id"]: Decimal("1.7"),
    }
    keys = wh.execute(
        "SELECT count(*) FROM fact_trades WHERE client_key IS NULL OR instrument_key IS NULL"
    ).fetchone()
    assert keys == (0,)
