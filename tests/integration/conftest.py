"""Integration fixtures: real PostgreSQL, Kafka and Kafka Connect from `scripts/stack.sh up`.

Each test session works in its own freshly created warehouse and source databases (names carry a
random suffix) so that concurrent sessions and earlier runs cannot interfere. Services that are
not reachable fail the session loudly: integration tests are never skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql

from orion_etl.adapters import migrations
from orion_etl.adapters.connect import ConnectClient
from orion_etl.adapters.kafka import check_broker
from orion_etl.adapters.postgres import connect
from orion_etl.config.models import OrionSettings, PostgresSettings
from orion_etl.errors import OrionError

pytestmark = pytest.mark.integration

STACK_PG_PORT = int(os.environ.get("ORION_STACK_PG_PORT", "55432"))
STACK_KAFKA_PORT = int(os.environ.get("ORION_STACK_KAFKA_PORT", "19092"))
STACK_CONNECT_PORT = int(os.environ.get("ORION_STACK_CONNECT_PORT", "18083"))
STACK_PG_PASSWORD = os.environ.get("ORION_STACK_PG_PASSWORD", "orion-stack-pw")

# Tables emptied between tests (everything the jobs write; not migration history or dim_date).
WAREHOUSE_TABLES = [
    "etl_data_quality_issues",
    "etl_job_runs",
    "etl_cdc_watermarks",
    "etl_consumer_offsets",
    "fact_trades",
    "fact_orders",
    "fact_quotes",
    "fact_risk_snapshots",
    "fact_positions",
    "agg_daily_trade_summary",
    "agg_client_metrics",
    "agg_lp_performance",
    "dim_clients",
    "dim_instruments",
    "dim_liquidity_providers",
    "etl_dim_sync_state",
    "agg_dirty_buckets",
    "agg_intraday_state",
]
SOURCE_TABLES = ["trades", "orders", "positions", "clients", "instruments", "liquidity_providers"]


def _admin_settings() -> PostgresSettings:
    return PostgresSettings(port=STACK_PG_PORT, dbname="postgres", password=STACK_PG_PASSWORD)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def run_id() -> str:
    """Short random id that makes this session's databases, topics and slots unique."""
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def stack_settings(run_id: str) -> Iterator[OrionSettings]:
    """Settings pointing at the local stack with per-session databases, created and migrated."""
    admin = _admin_settings()
    try:
        admin_conn = connect(admin, autocommit=True)
    except OrionError as exc:
        pytest.fail(f"local stack not running ({exc.message}); start it with scripts/stack.sh up")
    warehouse_db = f"orion_wh_test_{run_id}"
    source_db = f"orion_src_test_{run_id}"
    with admin_conn:
        for db in (warehouse_db, source_db):
            admin_conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    settings = OrionSettings(
        source={"port": STACK_PG_PORT, "dbname": source_db, "password": STACK_PG_PASSWORD},
        warehouse={"port": STACK_PG_PORT, "dbname": warehouse_db, "password": STACK_PG_PASSWORD},
        kafka={"bootstrap_servers": f"127.0.0.1:{STACK_KAFKA_PORT}"},
        connect={"url": f"http://127.0.0.1:{STACK_CONNECT_PORT}"},
        cdc={
            "env": f"test{run_id}",
            "slot_name": f"orion_test_{run_id}",
            "publication_name": f"orion_test_{run_id}",
        },
        stream={"group_id": f"orion-test-{run_id}"},
    )
    for target, pg in (("warehouse", settings.warehouse), ("source", settings.source)):
        with connect(pg, autocommit=True) as conn:
            migrations.migrate(conn, target)
    try:
        check_broker(settings.kafka, timeout_s=15)
    except OrionError as exc:
        pytest.fail(f"local stack: {exc.message}")
    yield settings
    with connect(admin, autocommit=True) as conn:
        # Replication slots of this session's connectors must go before their database.
        conn.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE database = %s AND NOT active",
            (source_db,),
        )
        for db in (warehouse_db, source_db):
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))


@pytest.fixture
def warehouse(stack_settings: OrionSettings) -> Iterator[psycopg.Connection]:
    """An autocommit connection to this session's warehouse, emptied before the test."""
    with connect(stack_settings.warehouse, autocommit=True) as conn:
        conn.execute(
            sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in WAREHOUSE_TABLES)
            )
        )
        yield conn


@pytest.fixture
def source(stack_settings: OrionSettings) -> Iterator[psycopg.Connection]:
    """An autocommit connection to this session's source database, emptied before the test."""
    with connect(stack_settings.source, autocommit=True) as conn:
        conn.execute(
            sql.SQL("TRUNCATE {} CASCADE").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in SOURCE_TABLES)
            )
        )
        yield conn


@pytest.fixture
def topic_name(run_id: str) -> Callable[[str], str]:
    """Factory of topic names unique to this session and test."""
    counter = iter(range(1_000_000))

    def make(base: str) -> str:
        return f"test.{run_id}.{base}.{next(counter)}.{uuid.uuid4().hex[:6]}"

    return make


@pytest.fixture
def connect_client(stack_settings: OrionSettings) -> Iterator[ConnectClient]:
    """A Kafka Connect REST client for the local worker."""
    with ConnectClient(stack_settings.connect) as client:
        yield client
