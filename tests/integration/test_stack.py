"""The local stack's real services answer: Kafka round trip, Connect plugins, migrations."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import psycopg
import pytest

from orion_etl.adapters import migrations
from orion_etl.adapters.connect import ConnectClient
from orion_etl.adapters.kafka import ensure_topics, make_consumer, make_producer
from orion_etl.adapters.postgres import connect
from orion_etl.config.models import OrionSettings

pytestmark = pytest.mark.integration


def test_produce_and_consume_round_trip(
    stack_settings: OrionSettings, topic_name: Callable[[str], str]
) -> None:
    topic = topic_name("roundtrip")
    ensure_topics(stack_settings.kafka, [topic], partitions=3)
    producer = make_producer(stack_settings.kafka)
    sent = [{"n": i, "payload": "x" * i} for i in range(50)]
    for message in sent:
        producer.produce(topic, key=str(message["n"]).encode(), value=json.dumps(message).encode())
    assert producer.flush(30) == 0

    consumer = make_consumer(stack_settings.kafka, group_id=f"{topic}.reader")
    consumer.subscribe([topic])
    received: list[dict] = []
    deadline = time.monotonic() + 60
    try:
        while len(received) < len(sent) and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            received.append(json.loads(msg.value()))
    finally:
        consumer.close()
    assert sorted(received, key=lambda m: m["n"]) == sent


def test_connect_lists_debezium_postgres_connector(connect_client: ConnectClient) -> None:
    classes = {p["class"] for p in connect_client.connector_plugins()}
    assert "io.debezium.connector.postgresql.PostgresConnector" in classes
    assert connect_client.worker_info()["version"].startswith("4.")


def test_source_database_has_logical_wal(stack_settings: OrionSettings) -> None:
    with connect(stack_settings.source) as conn:
        row = conn.execute("SHOW wal_level").fetchone()
    assert row == ("logical",)


def _schema_fingerprint(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        """
        SELECT table_name, column_name, data_type, is_nullable
        FROM information_schema.columns WHERE table_schema = 'public'
        ORDER BY table_name, ordinal_position
        """
    ).fetchall()


def test_migrations_apply_to_an_empty_warehouse_and_are_idempotent(stack_settings: OrionSettings) -> None:
    from psycopg import sql

    empty = f"{stack_settings.warehouse.dbname}_empty"
    admin = stack_settings.warehouse.model_copy(update={"dbname": "postgres"})
    with connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(empty)))
    target = stack_settings.warehouse.model_copy(update={"dbname": empty})
    try:
        with connect(target, autocommit=True) as conn:
            first = migrations.migrate(conn, "warehouse")
            assert [m.version for m in first] == [m.version for m in migrations.discover("warehouse")]
            before = _schema_fingerprint(conn)
            history = conn.execute("SELECT version, applied_at FROM orion_schema_migrations").fetchall()
            assert migrations.migrate(conn, "warehouse") == []
            assert _schema_fingerprint(conn) == before
            assert (
                conn.execute("SELECT version, applied_at FROM orion_schema_migrations").fetchall() == history
            )
            tables = {r[0] for r in before}
            for table in (
                "dim_clients",
                "dim_instruments",
                "dim_liquidity_providers",
                "dim_date",
                "fact_trades",
                "fact_orders",
                "fact_quotes",
                "fact_risk_snapshots",
                "agg_daily_trade_summary",
                "agg_client_metrics",
                "agg_lp_performance",
                "etl_job_runs",
                "etl_data_quality_issues",
                "etl_cdc_watermarks",
                "etl_consumer_offsets",
            ):
                assert table in tables
            money = dict(
                conn.execute(
                    "SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_name = 'fact_trades' "
                    "AND column_name IN ('quantity', 'price', 'notional_value', 'fees')"
                ).fetchall()
            )
            assert set(money.values()) == {"numeric"}
            assert all(s.applied_at for s in migrations.status(conn, "warehouse"))
    finally:
        with connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(empty)))


def test_failed_migration_rolls_back_everything(stack_settings: OrionSettings, tmp_path, monkeypatch) -> None:
    from psycopg import sql

    (tmp_path / "warehouse").mkdir()
    (tmp_path / "warehouse" / "V001__ok.sql").write_text("CREATE TABLE ok_table (id int);")
    (tmp_path / "warehouse" / "V002__broken.sql").write_text("CREATE TABLE broken (id int; ")
    monkeypatch.setattr(migrations, "sql_root", lambda: tmp_path)
    dbname = f"{stack_settings.warehouse.dbname}_fail"
    admin = stack_settings.warehouse.model_copy(update={"dbname": "postgres"})
    with connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    try:
        with connect(stack_settings.warehouse.model_copy(update={"dbname": dbname}), autocommit=True) as conn:
            from orion_etl.errors import MigrationError

            with pytest.raises(MigrationError, match=r"V002__broken\.sql failed"):
                migrations.migrate(conn, "warehouse")
            assert conn.execute("SELECT to_regclass('ok_table')").fetchone() == (None,)
    finally:
        with connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
