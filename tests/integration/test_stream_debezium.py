"""A real Debezium PostgreSQL connector (Kafka Connect REST) feeding the loader: snapshot reads,
inserts, updates and deletes of the source `trades` / `orders` become the right fact rows."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import sql

from orion_etl.adapters.connect import ConnectClient, ConnectError
from orion_etl.adapters.kafka import make_admin, make_consumer
from orion_etl.config.cdc_target import resolve_target
from orion_etl.config.models import CdcSettings, OrionSettings
from orion_etl.jobs import connectors
from tests.integration.stream_support import STREAM_TABLES, drain

pytestmark = pytest.mark.integration


@pytest.fixture
def wh(warehouse: psycopg.Connection) -> psycopg.Connection:
    warehouse.execute(
        sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(sql.Identifier(t) for t in STREAM_TABLES))
    )
    return warehouse


@pytest.fixture
def connector(
    stack_settings: OrionSettings, connect_client: ConnectClient, run_id: str, source: psycopg.Connection
) -> Iterator[tuple[str, OrionSettings]]:
    """A Debezium connector on this session's source DB, routed to unique topics; removed afterwards."""
    suffix = f"{run_id}_{uuid.uuid4().hex[:6]}"
    name, prefix, routed = f"orion-test-stream-{suffix}", f"orion_test_{suffix}", f"cdc_{suffix}"
    src = stack_settings.source
    for table in ("trades", "orders"):
        source.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY DEFAULT").format(sql.Identifier(table)))
    config = {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "database.hostname": src.host,
        "database.port": str(src.port),
        "database.user": src.user,
        "database.password": src.password.get_secret_value(),
        "database.dbname": src.dbname,
        "topic.prefix": prefix,
        "table.include.list": "public.trades,public.orders",
        "plugin.name": "pgoutput",
        "slot.name": f"slot_{suffix}",
        "publication.name": f"pub_{suffix}",
        "publication.autocreate.mode": "filtered",
        "decimal.handling.mode": "string",
        "snapshot.mode": "initial",
        "transforms": "route",
        "transforms.route.type": "org.apache.kafka.connect.transforms.RegexRouter",
        "transforms.route.regex": f"{prefix}\\.(.*)",
        "transforms.route.replacement": f"{routed}.$1",
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "true",
        "value.converter.schemas.enable": "true",
    }
    settings = _stream_settings(stack_settings, routed, suffix)
    connect_client.request("PUT", f"/connectors/{name}/config", json=config)
    try:
        yield name, settings
    finally:
        _remove(connect_client, source, settings, name, f"slot_{suffix}", f"pub_{suffix}", routed)


def _stream_settings(stack_settings: OrionSettings, routed: str, suffix: str) -> OrionSettings:
    """The loader reading the `<routed>.public.*` topics in a group of its own."""
    topics = stack_settings.stream.topics.model_copy(
        update={
            "trades_cdc": f"{routed}.public.trades",
            "orders_cdc": f"{routed}.public.orders",
            "trade_events": f"{routed}.trade.executed",
            "quote_events": f"{routed}.quote.received",
            "positions_cdc": f"{routed}.public.positions",
            "risk_events": f"{routed}.risk.snapshot",
        }
    )
    return stack_settings.model_copy(
        update={
            "stream": stack_settings.stream.model_copy(
                update={
                    "topics": topics,
                    "group_id": f"g-{suffix}",
                    "batch_max_ms": 200,
                    "assignment_timeout_s": 20,
                }
            )
        }
    )


def _remove(
    client: ConnectClient, source: psycopg.Connection, settings: OrionSettings,
    name: str, slot: str, pub: str, routed: str,
) -> None:  # fmt: skip
    """Delete the connector, its slot and publication and the routed topics."""
    with contextlib.suppress(ConnectError):
        client.request("DELETE", f"/connectors/{name}")
    time.sleep(1)
    source.execute(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
        "WHERE slot_name = %s AND NOT active",
        (slot,),
    )
    source.execute(sql.SQL("DROP PUBLICATION IF EXISTS {}").format(sql.Identifier(pub)))
    admin = make_admin(settings.kafka)
    mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(routed)]
    if mine:
        for future in admin.delete_topics(mine, operation_timeout=30).values():
            with contextlib.suppress(Exception):
                future.result()


@pytest.fixture
def schemaless_connector(
    stack_settings: OrionSettings, connect_client: ConnectClient, run_id: str, source: psycopg.Connection
) -> Iterator[tuple[str, OrionSettings]]:
    """A connector rendered and registered by orion-etl itself with `cdc.schemas = "none"`."""
    suffix = f"{run_id}_{uuid.uuid4().hex[:6]}"
    routed = f"cdc_{suffix}"
    for table in ("trades", "orders"):
        source.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY DEFAULT").format(sql.Identifier(table)))
    cdc = CdcSettings(
        env=f"t{suffix}",
        schemas="none",
        connector_name=f"orion-test-schemaless-{suffix}",
        topic_prefix=f"orion_test_{suffix}",
        routed_topic_prefix=routed,
        tables=["trades", "orders"],
        publication_name=f"pub_{suffix}",
        publication_autocreate_mode="filtered",  # no `cdc prepare`: Debezium creates it
        slot_name=f"slot_{suffix}",
        heartbeat_interval_ms=0,
        heartbeat_table="",
        signal_table="",
    )
    settings = _stream_settings(stack_settings.model_copy(update={"cdc": cdc}), routed, suffix)
    target = resolve_target(settings)
    try:
        result = connectors.register(connect_client, target)
        assert result.applied
        yield target.cdc.connector_name, settings
    finally:
        _remove(
            connect_client, source, settings, cdc.connector_name, cdc.slot_name, cdc.publication_name, routed
        )


def _wait_running(client: ConnectClient, name: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            status = client.request("GET", f"/connectors/{name}/status")
            if (
                status["connector"]["state"] == "RUNNING"
                and all(t["state"] == "RUNNING" for t in status.get("tasks", []))
                and status.get("tasks")
            ):
                return
            if any(t["state"] == "FAILED" for t in status.get("tasks", [])):
                pytest.fail(f"connector failed: {status['tasks'][0].get('trace', '')[:1000]}")
        except ConnectError:
            pass
        time.sleep(0.5)
    pytest.fail("connector did not start")


def _drain_until(settings: OrionSettings, conn: psycopg.Connection, query: str, expected: object) -> None:
    deadline = time.monotonic() + 60
    got = None
    while time.monotonic() < deadline:
        drain(settings)
        got = conn.execute(query).fetchall()
        if got == expected:
            return
        time.sleep(0.5)
    assert got == expected


def _client_and_instrument(source: psycopg.Connection, tenant: uuid.UUID) -> tuple[Any, Any]:
    """A source client of `tenant` and an instrument, for trades to refer to (their ids)."""
    client = source.execute(
        "INSERT INTO clients (tenant_id, client_code, name, client_type) VALUES (%s, 'C1', 'Acme', 'CORP') "
        "RETURNING id",
        (tenant,),
    ).fetchone()[0]  # type: ignore[index]
    instrument = source.execute(
        "INSERT INTO instruments (symbol, name, asset_class, instrument_type) VALUES "
        "('EURUSD', 'Euro', 'FX', 'SPOT') RETURNING id"
    ).fetchone()[0]  # type: ignore[index]
    return client, instrument


def test_real_debezium_connector_to_facts(
    stack_settings: OrionSettings,
    connector: tuple[str, OrionSettings],
    connect_client: ConnectClient,
    source: psycopg.Connection,
    wh: psycopg.Connection,
) -> None:
    name, settings = connector
    tenant = uuid.uuid4()
    client, instrument = _client_and_instrument(source, tenant)
    insert_trade = (
        "INSERT INTO trades (tenant_id, trade_reference, client_id, instrument_id, trade_date, side, "
        "quantity, price, fees) VALUES (%s, %s, %s, %s, '2024-03-15 14:30:00.5+00', %s, %s, %s, %s) "
        "RETURNING id"
    )
    snap = source.execute(
        insert_trade, (tenant, "SNAP", client, instrument, "BUY", "100.5", "1.085", "2.5")
    ).fetchone()[0]  # type: ignore[index]
    order = source.execute(
        "INSERT INTO orders (tenant_id, client_id, instrument_id, order_type, side, status, "
        "requested_quantity, filled_quantity) VALUES (%s, %s, %s, 'LIMIT', 'BUY', 'REJECTED', 10, 0) "
        "RETURNING id",
        (tenant, client, instrument),
    ).fetchone()[0]  # type: ignore[index]
    _wait_running(connect_client, name)
    _drain_until(
        settings,
        wh,
        "SELECT trade_reference, notional_value FROM fact_trades",
        [("SNAP", Decimal("109.0425000000"))],
    )

    live = source.execute(
        insert_trade, (tenant, "LIVE", client, instrument, "SELL", "3", "0.3333333333", "0.1")
    ).fetchone()[0]  # type: ignore[index]
    source.execute("UPDATE trades SET price = 2 WHERE id = %s", (snap,))
    source.execute("DELETE FROM trades WHERE id = %s", (live,))
    _drain_until(
        settings, wh,
        "SELECT trade_reference, price, notional_value, is_deleted FROM fact_trades ORDER BY trade_reference",
        [("LIVE", Decimal("0.3333333333"), Decimal("0.9999999999"), True),
         ("SNAP", Decimal("2.0000000000"), Decimal("201.0000000000"), False)],
    )  # fmt: skip
    row = wh.execute(
        "SELECT final_status, was_rejected FROM fact_orders WHERE order_id = %s", (order,)
    ).fetchone()
    assert row == ("REJECTED", True)
    keys = wh.execute(
        "SELECT count(*) FROM fact_trades WHERE client_key IS NULL OR instrument_key IS NULL"
    ).fetchone()
    assert keys == (0,)
    assert wh.execute("SELECT count(*) FROM etl_data_quality_issues").fetchone() == (0,)


def _raw_records(settings: OrionSettings, topic: str, expected: int) -> list[tuple[bytes, bytes]]:
    """(key, value) of the first `expected` non-tombstone records of every partition of `topic`."""
    from confluent_kafka import TopicPartition

    consumer = make_consumer(settings.kafka, f"raw-{uuid.uuid4().hex[:6]}")
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    out: list[tuple[bytes, bytes]] = []
    deadline = time.monotonic() + 30
    while len(out) < expected and time.monotonic() < deadline:
        for msg in consumer.consume(100, timeout=0.5):
            if msg.error() is None and msg.value() is not None:
                out.append((msg.key() or b"", msg.value() or b""))
    consumer.close()
    return out


def test_schemaless_connector_rendered_by_orion_loads_the_same_facts(
    schemaless_connector: tuple[str, OrionSettings],
    connect_client: ConnectClient,
    source: psycopg.Connection,
    wh: psycopg.Connection,
) -> None:
    """`cdc.schemas = "none"`: records without the embedded schema (a fraction of the size) load
    with exact decimals, the trade time and settlement date typed by the loader's own contract."""
    name, settings = schemaless_connector
    config = connect_client.request("GET", f"/connectors/{name}/config")
    assert config["value.converter.schemas.enable"] == config["key.converter.schemas.enable"] == "false"
    tenant = uuid.uuid4()
    client, instrument = _client_and_instrument(source, tenant)
    insert_trade = (
        "INSERT INTO trades (tenant_id, trade_reference, client_id, instrument_id, trade_date, "
        "settlement_date, side, quantity, price, fees) "
        "VALUES (%s, %s, %s, %s, '2024-03-15 14:30:00.5+00', '2024-03-19', %s, %s, %s, %s) RETURNING id"
    )
    snap = source.execute(
        insert_trade, (tenant, "SNAP", client, instrument, "BUY", "100.5", "1.085", "2.5")
    ).fetchone()[0]  # type: ignore[index]
    _wait_running(connect_client, name)
    _drain_until(
        settings,
        wh,
        "SELECT trade_reference, notional_value, trade_date, settlement_date::text FROM fact_trades",
        [("SNAP", Decimal("109.0425000000"), datetime(2024, 3, 15, 14, 30, 0, 500000, UTC), "2024-03-19")],
    )
    key, value = _raw_records(settings, settings.stream.topics.trades_cdc, 1)[0]
    envelope = json.loads(value)
    assert "schema" not in envelope and envelope["op"] in ("r", "c"), envelope
    assert envelope["after"]["price"] == "1.0850000000"  # decimal.handling.mode=string: exact text
    assert set(json.loads(key)) == {"id"}  # the key without its schema too
    assert len(value) < 1500, len(value)  # embedded, the same change is ~4-5 KB

    live = source.execute(
        insert_trade, (tenant, "LIVE", client, instrument, "SELL", "3", "0.3333333333", "0.1")
    ).fetchone()[0]  # type: ignore[index]
    source.execute("UPDATE trades SET price = 2 WHERE id = %s", (snap,))
    source.execute("DELETE FROM trades WHERE id = %s", (live,))
    _drain_until(
        settings, wh,
        "SELECT trade_reference, price, notional_value, is_deleted FROM fact_trades ORDER BY trade_reference",
        [("LIVE", Decimal("0.3333333333"), Decimal("0.9999999999"), True),
         ("SNAP", Decimal("2.0000000000"), Decimal("201.0000000000"), False)],
    )  # fmt: skip
    assert wh.execute("SELECT count(*) FROM etl_data_quality_issues").fetchone() == (0,)
    assert wh.execute("SELECT count(*) FROM fact_trades WHERE client_key IS NULL").fetchone() == (0,)
