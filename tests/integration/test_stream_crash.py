"""kill -9 of a loader process mid-run, then a restart, leaves the same warehouse as one
uninterrupted run (effectively-once: positions commit with the rows)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable

import psycopg
import pytest
from psycopg import sql

from orion_etl.config.models import OrionSettings
from tests.integration.stream_support import (
    REPO,
    STREAM_TABLES,
    cli_env,
    drain,
    fact_snapshot,
    produce,
    stream_settings,
    totals,
)
from tests.stream_builders import cdc, dumps, order_row, quote_event, trade_row

pytestmark = pytest.mark.integration
RESET = [*STREAM_TABLES, "fact_trades", "fact_orders", "fact_quotes", "etl_consumer_offsets",
         "dim_clients", "dim_instruments", "dim_liquidity_providers"]  # fmt: skip


@pytest.fixture
def wh(warehouse: psycopg.Connection) -> psycopg.Connection:
    warehouse.execute(
        sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(sql.Identifier(t) for t in STREAM_TABLES))
    )
    return warehouse


def _env(settings: OrionSettings) -> dict[str, str]:
    st = settings.stream
    return cli_env(
        settings,
        ORION_ETL_KAFKA__BOOTSTRAP_SERVERS=settings.kafka.bootstrap_servers,
        ORION_ETL_STREAM__GROUP_ID=st.group_id,
        # the killed member blocks the group's rebalance until its session times out
        ORION_ETL_KAFKA__EXTRA='{"session.timeout.ms": "6000", "heartbeat.interval.ms": "1000"}',
        ORION_ETL_STREAM__BATCH_MAX_MESSAGES=str(st.batch_max_messages),
        ORION_ETL_STREAM__QUOTE_SAMPLE_EVERY=str(st.quote_sample_every),
        **{f"ORION_ETL_STREAM__TOPICS__{k.upper()}": v for k, v in vars(st.topics).items()},
    )


def _loader(settings: OrionSettings) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "orion_etl.cli.app", "--log-format", "json", "stream", "--until-caught-up",
           "--format", "json"]  # fmt: skip
    return subprocess.Popen(cmd, env=_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)


def _workload(settings: OrionSettings) -> list[tuple[str, bytes | None, bytes | None]]:
    t = settings.stream.topics
    msgs: list[tuple[str, bytes | None, bytes | None]] = []
    lsn = 10_000
    for i in range(2500):
        row = trade_row(quantity=f"{i % 97 + 1}.25", price=f"1.{i:04d}")
        lsn += 10
        msgs.append((t.trades_cdc, row["id"].encode(), cdc("trades", row, lsn=lsn, commit_lsn=lsn - 5)))
        if i % 5 == 0:  # an update, and for some an older (stale) update after it
            lsn += 10
            upd = {**row, "price": f"2.{i:04d}"}
            msgs.append(
                (t.trades_cdc, row["id"].encode(), cdc("trades", upd, op="u", lsn=lsn, commit_lsn=lsn - 5))
            )
            if i % 10 == 0:
                msgs.append(
                    (
                        t.trades_cdc,
                        row["id"].encode(),
                        cdc("trades", row, op="u", lsn=lsn - 1, commit_lsn=lsn - 20),
                    )
                )
        if i % 25 == 0:
            lsn += 10
            msgs.append(
                (
                    t.trades_cdc,
                    row["id"].encode(),
                    cdc("trades", None, op="d", before={"id": row["id"]}, lsn=lsn, commit_lsn=lsn - 5),
                )
            )
        if i % 3 == 0:
            msgs.append((t.orders_cdc, None, cdc("orders", order_row(), lsn=lsn)))
        spread = "1.0001" if i % 7 else "1.0050"
        msgs.append((t.quote_events, None, dumps(quote_event("1.0000", spread))))
        if i % 400 == 0:
            msgs.append((t.trades_cdc, None, b"{garbage"))
    return msgs


def test_kill_9_mid_run_then_restart_equals_uninterrupted_run(
    stack_settings: OrionSettings, topic_name: Callable[[str], str], wh: psycopg.Connection
) -> None:
    settings = stream_settings(stack_settings, topic_name, batch_max_messages=150, quote_sample_every=4)
    total = produce(settings, _workload(settings))

    proc = _loader(settings)
    deadline = time.monotonic() + 60
    loaded = 0
    while time.monotonic() < deadline and proc.poll() is None:
        row = wh.execute("SELECT count(*) FROM fact_trades").fetchone()
        loaded = row[0] if row else 0
        if loaded >= 600:
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"loader ended before the kill: {proc.stderr.read() if proc.stderr else ''!r}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    partial = wh.execute("SELECT coalesce(sum(next_offset), 0) FROM etl_consumer_offsets").fetchone()
    assert partial and 0 < partial[0] < total

    restarted = _loader(settings)
    _out, err = restarted.communicate(timeout=120)
    assert restarted.returncode in (0, 1), err.decode()[-2000:]
    done = wh.execute("SELECT sum(next_offset) FROM etl_consumer_offsets").fetchone()
    assert done == (total,)
    after_crash = fact_snapshot(wh), totals(wh)
    assert after_crash[1][0] > 2000

    wh.execute(
        sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
            sql.SQL(", ").join(sql.Identifier(t) for t in RESET)
        )
    )
    clean = drain(settings, group=settings.stream.group_id + "-clean")
    assert clean.stats.messages == total
    clean_snapshot = fact_snapshot(wh), totals(wh)
    for part in after_crash[0]:
        a, b = after_crash[0][part], clean_snapshot[0][part]
        diff = [(x, y) for x, y in zip(a, b, strict=False) if x != y][:2]
        assert len(a) == len(b) and not diff, (part, len(a), len(b), diff)
    assert clean_snapshot[1] == after_crash[1]
    assert clean_snapshot == after_crash


def test_sigterm_finishes_the_batch_and_records_the_run(
    stack_settings: OrionSettings, topic_name: Callable[[str], str], wh: psycopg.Connection
) -> None:
    settings = stream_settings(stack_settings, topic_name, batch_max_messages=50)
    t = settings.stream.topics
    produce(settings, [(t.trades_cdc, None, cdc("trades", trade_row())) for _ in range(300)])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cmd = [sys.executable, "-m", "orion_etl.cli.app", "--log-format", "json", "stream", "--format", "json",
           "--metrics-port", str(port)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        row = wh.execute("SELECT count(*) FROM fact_trades").fetchone()
        if row and row[0] == 300:
            break
        time.sleep(0.05)
    # metrics are updated when the commit thread's result is collected, a moment after the commit
    want = f'orion_etl_stream_consumed_messages_total{{topic="{t.trades_cdc}"}} 300.0'
    exposed = ""
    while want not in exposed and time.monotonic() < deadline:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            exposed = response.read().decode()
        time.sleep(0.1)
    assert want in exposed and "orion_etl_stream_batches_total" in exposed
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b'"messages": 300' in out
    runs = wh.execute(
        "SELECT status, records_processed FROM etl_job_runs WHERE job_type = 'STREAM'"
    ).fetchall()
    assert runs == [("COMPLETED", 300)]
    assert wh.execute("SELECT sum(next_offset) FROM etl_consumer_offsets").fetchone() == (300,)
