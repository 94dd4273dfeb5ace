"""`scripts/demo.sh --external` runs the whole demo against an already-running stack (here the
local one, standing in for Docker Compose or a remote stack) without starting the Java stack:
`scripts/stack.sh` is pointed at a PostgreSQL that does not exist, so starting it would fail.
Fresh databases, connector, slot, topics and consumer group keep it apart from everyone else.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from psycopg import sql

from orion_etl.adapters.connect import ConnectClient, ConnectError
from orion_etl.adapters.kafka import make_admin
from orion_etl.adapters.postgres import connect
from orion_etl.config.models import ConnectSettings, KafkaSettings, PostgresSettings
from tests.integration.conftest import STACK_CONNECT_PORT, STACK_KAFKA_PORT, STACK_PG_PASSWORD, STACK_PG_PORT

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def external_env(run_id: str, tmp_path: Path) -> Iterator[dict[str, str]]:
    """ORION_ETL_* variables naming a fresh source/warehouse, connector, slot, topics and group."""
    tag = f"demo{run_id}"
    admin = PostgresSettings(port=STACK_PG_PORT, dbname="postgres", password=STACK_PG_PASSWORD)  # type: ignore[arg-type]
    dbs = (f"orion_src_{tag}", f"orion_wh_{tag}")
    with connect(admin, autocommit=True) as conn:
        for db in dbs:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    routed = f"cdc{tag}"
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("ORION_ETL_", "ORION_STACK_"))}
    env |= {
        # were the script to start the local stack, it would fail on these
        "ORION_STACK_HOME": str(tmp_path / "no-stack"),
        "ORION_STACK_PG_BIN": str(tmp_path / "no-postgres-here"),
        "ORION_ETL_SOURCE__PORT": str(STACK_PG_PORT),
        "ORION_ETL_SOURCE__DBNAME": dbs[0],
        "ORION_ETL_SOURCE__PASSWORD": STACK_PG_PASSWORD,
        "ORION_ETL_WAREHOUSE__PORT": str(STACK_PG_PORT),
        "ORION_ETL_WAREHOUSE__DBNAME": dbs[1],
        "ORION_ETL_WAREHOUSE__PASSWORD": STACK_PG_PASSWORD,
        "ORION_ETL_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{STACK_KAFKA_PORT}",
        "ORION_ETL_CONNECT__URL": f"http://127.0.0.1:{STACK_CONNECT_PORT}",
        "ORION_ETL_CDC__ENV": tag,
        "ORION_ETL_CDC__ROUTED_TOPIC_PREFIX": routed,
        "ORION_ETL_CDC__SLOT_NAME": f"orion_{tag}",
        "ORION_ETL_CDC__PUBLICATION_NAME": f"orion_{tag}",
        "ORION_ETL_CDC__WARN_RETAINED_WAL_BYTES": str(1024**4),
        "ORION_ETL_CDC__MAX_RETAINED_WAL_BYTES": str(1024**4),
        "ORION_ETL_STREAM__GROUP_ID": f"orion-{tag}",
        "ORION_ETL_STREAM__TOPICS__TRADES_CDC": f"{routed}.public.trades",
        "ORION_ETL_STREAM__TOPICS__ORDERS_CDC": f"{routed}.public.orders",
        "ORION_ETL_STREAM__TOPICS__TRADE_EVENTS": f"{tag}.trade.executed",
        "ORION_ETL_STREAM__TOPICS__QUOTE_EVENTS": f"{tag}.quote.received",
        "ORION_ETL_STREAM__TOPICS__POSITIONS_CDC": f"{routed}.public.positions",
        "ORION_ETL_STREAM__TOPICS__RISK_EVENTS": f"{tag}.risk.snapshot",
        "ORION_ETL_DIMS__CDC_GROUP_ID": f"orion-dims-{tag}",
    }
    try:
        yield env
    finally:
        connect_settings = ConnectSettings(url=env["ORION_ETL_CONNECT__URL"])
        with ConnectClient(connect_settings) as client, contextlib.suppress(ConnectError):
            client.delete(f"orion-cdc-{tag}")
        deadline = time.monotonic() + 30
        with connect(admin, autocommit=True) as conn:
            while time.monotonic() < deadline:
                row = conn.execute(
                    "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (f"orion_{tag}",)
                ).fetchone()
                if row is None:
                    break
                if not row[0]:
                    conn.execute("SELECT pg_drop_replication_slot(%s)", (f"orion_{tag}",))
                    break
                time.sleep(0.5)
            for db in dbs:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
        kafka = make_admin(KafkaSettings(bootstrap_servers=env["ORION_ETL_KAFKA__BOOTSTRAP_SERVERS"]))
        mine = [t for t in kafka.list_topics(timeout=15).topics if tag in t]
        if mine:
            for future in kafka.delete_topics(mine, operation_timeout=30).values():
                with contextlib.suppress(Exception):
                    future.result()


def test_demo_external_runs_against_a_running_stack_without_starting_one(
    external_env: dict[str, str],
) -> None:
    result = subprocess.run(
        ["scripts/demo.sh", "--external", "--orders", "80", "--quotes-per-pair", "4", "--seed", "19"],
        env=external_env, cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "the local stack is not started" in output
    assert "[stack]" not in output, "scripts/stack.sh was run"
    assert "facts loaded" in output
    assert "Traceback" not in output


def test_demo_external_fails_with_one_line_when_the_stack_is_not_there(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("ORION_ETL_", "ORION_STACK_"))}
    env |= {
        "ORION_DEMO_EXTERNAL": "1",  # the environment switch instead of --external
        "ORION_STACK_HOME": str(tmp_path / "no-stack"),
        "ORION_ETL_WAREHOUSE__PORT": "1",
        "ORION_ETL_SOURCE__PORT": "1",
        "ORION_ETL_WAREHOUSE__CONNECT_TIMEOUT_S": "2",
        "ORION_ETL_SOURCE__CONNECT_TIMEOUT_S": "2",
    }
    result = subprocess.run(
        ["scripts/demo.sh"], env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert "[stack]" not in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
