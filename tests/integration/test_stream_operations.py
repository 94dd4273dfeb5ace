"""Operating the loader on the real stack: its metrics endpoint scraped and parsed, the CDC
watermarks it keeps, `stream status`, and `stream offsets show|reset` (issue 19)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from orion_etl.adapters import metrics
from orion_etl.adapters.warehouse_loader import lsn_text
from orion_etl.config.models import OrionSettings
from tests.integration.stream_support import cli_env, drain, produce, stream_settings
from tests.stream_builders import cdc, order_row, trade_row

pytestmark = pytest.mark.integration

# What became of each record read: the outcomes docs/operations.md documents (they add up to the
# records consumed).
RECORD_OUTCOMES = {"loaded", "stale", "duplicate", "superseded", "sampled_out", "tombstone", "dlq"}
BASE_TS_MS = 1_710_513_000_000  # 2024-03-15T14:30:00Z


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(settings: OrionSettings) -> dict[str, str]:
    t = settings.stream.topics
    return cli_env(
        settings,
        ORION_ETL_KAFKA__BOOTSTRAP_SERVERS=settings.kafka.bootstrap_servers,
        ORION_ETL_STREAM__GROUP_ID=settings.stream.group_id,
        ORION_ETL_STREAM__TOPICS__TRADES_CDC=t.trades_cdc,
        ORION_ETL_STREAM__TOPICS__ORDERS_CDC=t.orders_cdc,
        ORION_ETL_STREAM__TOPICS__TRADE_EVENTS=t.trade_events,
        ORION_ETL_STREAM__TOPICS__QUOTE_EVENTS=t.quote_events,
        ORION_ETL_STREAM__TOPICS__POSITIONS_CDC=t.positions_cdc,
        ORION_ETL_STREAM__TOPICS__RISK_EVENTS=t.risk_events,
        ORION_ETL_STREAM__BATCH_MAX_MS="200",
        ORION_ETL_LOGGING__FORMAT="plain",
        COLUMNS="200",
    )


def _cli(settings: OrionSettings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orion_etl.cli.app", *args],
        env=_env(settings), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _scrape(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def _value(families: dict[str, Any], sample_name: str, **labels: str) -> float:
    family = sample_name.removesuffix("_total")
    return sum(
        s.value
        for s in families[family].samples
        if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_loader_metrics_watermarks_status_and_offsets(
    stack_settings: OrionSettings, topic_name: Callable[[str], str], warehouse: psycopg.Connection
) -> None:
    settings = stream_settings(stack_settings, topic_name)
    t = settings.stream.topics
    trades = [trade_row() for _ in range(6)]
    orders = [order_row() for _ in range(3)]
    msgs = [
        (t.trades_cdc, r["id"].encode(), cdc("trades", r, lsn=5_000_000_000 + i, ts_ms=BASE_TS_MS + i * 1000))
        for i, r in enumerate(trades)
    ]
    msgs += [
        (t.orders_cdc, o["id"].encode(), cdc("orders", o, lsn=7000 + i, ts_ms=BASE_TS_MS))
        for i, o in enumerate(orders)
    ]
    msgs.append((t.trades_cdc, b"bad", b"{not json"))  # one dead letter
    produce(settings, msgs)
    time.sleep(1.1)
    between = datetime.now(UTC)  # Kafka timestamps: the 3 orders above are before, 2 below after
    time.sleep(1.1)
    late_orders = [order_row() for _ in range(2)]
    produce(
        settings,
        [(t.orders_cdc, o["id"].encode(), cdc("orders", o, lsn=8000 + i)) for i, o in enumerate(late_orders)],
    )

    port = _free_port()
    loader = subprocess.Popen(
        [sys.executable, "-m", "orion_etl.cli.app", "stream", "--metrics-addr", f"127.0.0.1:{port}",
         "--format", "json"],
        env=_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        families: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                families = _scrape(port)
            except OSError:
                families = {}
            if families and _value(families, "orion_etl_stream_consumed_messages_total") >= len(msgs) + 2:
                break
            assert loader.poll() is None, loader.communicate()[1]
            time.sleep(0.5)
        # the documented families, with their labels, and no `job` label anywhere
        exposed = set(families)
        for name in metrics.STREAM_FAMILIES:
            assert name.removesuffix("_total") in exposed, name
        assert all("job" not in s.labels for f in families.values() for s in f.samples)
        assert _value(families, "orion_etl_stream_consumed_messages_total", topic=t.trades_cdc) == 7
        assert _value(families, "orion_etl_stream_consumed_messages_total", topic=t.orders_cdc) == 5
        assert _value(families, "orion_etl_stream_records_total", outcome="loaded") == 11
        assert _value(families, "orion_etl_stream_records_total", outcome="dlq") == 1
        assert {
            s.labels["outcome"]
            for s in families["orion_etl_stream_records"].samples
            if s.name.endswith("_total")
        } <= RECORD_OUTCOMES
        assert _value(families, "orion_etl_stream_dead_letters_total", topic=t.trades_cdc) == 1
        assert (
            _value(families, "orion_etl_stream_source_commit_timestamp_seconds", source_table="trades")
            == (BASE_TS_MS + 5000) / 1000
        )
        lag_labels = {
            tuple(sorted(s.labels)) for s in families["orion_etl_stream_consumer_lag_messages"].samples
        }
        assert lag_labels == {("partition", "topic")}

        # the watermarks, written in the batch transactions
        rows = warehouse.execute(
            "SELECT source_table, last_processed_lsn, last_processed_timestamp FROM etl_cdc_watermarks"
        ).fetchall()
        marks = {table: (lsn, ts) for table, lsn, ts in rows}
        assert marks["trades"] == (
            lsn_text(5_000_000_005),
            datetime.fromtimestamp((BASE_TS_MS + 5000) / 1000, UTC),
        )
        assert marks["trades"][0] == "1/2A05F205"
        assert marks["orders"][0] == lsn_text(8001)

        # status while running; a reset is refused
        status = _cli(settings, "stream", "status", "--format", "json")
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert report["group_members"] and report["lag"] == 0 and len(report["running_loaders"]) == 1
        assert {p["topic"] for p in report["partitions"]} == set(vars(t).values())
        assert {w["source_table"] for w in report["cdc_watermarks"]} == {"trades", "orders"}
        refused = _cli(settings, "stream", "offsets", "reset", "--to-earliest")
        assert refused.returncode == 3 and "is running" in refused.stderr, refused.stderr
        table = _cli(settings, "stream", "status")
        assert "1/2A05F205" in table.stdout and t.trades_cdc in table.stdout
    finally:
        loader.send_signal(signal.SIGTERM)
        _out, err = loader.communicate(timeout=60)
    assert loader.returncode == 1, err  # the dead letter: exit 1 (warnings)

    def stored() -> dict[tuple[str, int], int]:
        rows = warehouse.execute(
            "SELECT topic, partition, next_offset FROM etl_consumer_offsets WHERE consumer_group = %s",
            (settings.stream.group_id,),
        ).fetchall()
        return {(tp, p): o for tp, p, o in rows}

    before = stored()
    assert before[(t.orders_cdc, 0)] == 5
    plan = _cli(settings, "stream", "offsets", "reset", "--to-earliest", "--dry-run", "--format", "json")
    assert plan.returncode == 0, plan.stderr
    planned = json.loads(plan.stdout)
    assert planned["dry_run"] and all(p["new"] == 0 for p in planned["partitions"])
    assert stored() == before  # a dry run changes nothing

    applied = _cli(
        settings, "stream", "offsets", "reset", "--to-datetime", between.isoformat(), "--topic", t.orders_cdc
    )
    assert applied.returncode == 0, applied.stderr
    assert stored()[(t.orders_cdc, 0)] == 3  # the first record at or after T
    one = _cli(
        settings,
        "stream",
        "offsets",
        "reset",
        "--to-offset",
        "1",
        "--topic",
        t.orders_cdc,
        "--partition",
        "0",
    )
    assert one.returncode == 0 and stored()[(t.orders_cdc, 0)] == 1
    assert _cli(settings, "stream", "offsets", "reset", "--to-earliest").returncode == 0
    assert set(stored().values()) == {0}
    shown = json.loads(_cli(settings, "stream", "offsets", "show", "--format", "json").stdout)["items"]
    assert sum(p["lag"] for p in shown) == len(msgs) + 2

    # the loader reads everything again and absorbs it: no fact changes, positions at the end
    facts_before = warehouse.execute("SELECT count(*), sum(quantity) FROM fact_trades").fetchone()
    replay = drain(settings)
    assert replay.stats.loaded == 0 and replay.stats.duplicates == 11, replay.stats.as_dict()
    assert warehouse.execute("SELECT count(*), sum(quantity) FROM fact_trades").fetchone() == facts_before
    after = stored()
    assert {k: v for k, v in after.items() if k in before} == before
    assert {v for k, v in after.items() if k not in before} == {0}  # the empty topics, now explicit
    latest = _cli(settings, "stream", "offsets", "reset", "--to-latest", "--format", "json")
    assert json.loads(latest.stdout)["changed"] == 0
