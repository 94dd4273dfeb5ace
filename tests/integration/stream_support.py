"""Helpers for the streaming-loader integration tests (real Kafka + PostgreSQL)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import Consumer, TopicPartition

from orion_etl.adapters.kafka import ensure_topics, make_consumer, make_producer
from orion_etl.config.models import OrionSettings
from orion_etl.jobs.stream import StreamResult, run_stream

STREAM_TABLES = ["etl_fact_tombstones", "etl_quote_sampler_state"]
POSITION_TABLES = ["fact_positions", "fact_risk_snapshots", "agg_client_metrics", "agg_dirty_buckets"]
REPO = Path(__file__).resolve().parents[2]


def cli_env(settings: OrionSettings, **overrides: str) -> dict[str, str]:
    """Environment for an `orion-etl` subprocess on the test warehouse (no ORION_ETL_* leaks in)."""
    wh = settings.warehouse
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("ORION_ETL_")}
    env.update(
        PYTHONPATH=str(REPO),
        ORION_ETL_WAREHOUSE__PORT=str(wh.port),
        ORION_ETL_WAREHOUSE__DBNAME=wh.dbname,
        ORION_ETL_WAREHOUSE__PASSWORD=wh.password.get_secret_value(),
        **overrides,
    )
    return env


def stream_settings(base: OrionSettings, topic_name: Callable[[str], str], **stream: Any) -> OrionSettings:
    """Settings with fresh topics (created, 2 partitions for CDC trades) and a unique group."""
    topics = {
        "trades_cdc": topic_name("cdc.public.trades"),
        "orders_cdc": topic_name("cdc.public.orders"),
        "trade_events": topic_name("trade.executed"),
        "quote_events": topic_name("quote.received"),
        "positions_cdc": topic_name("cdc.public.positions"),
        "risk_events": topic_name("risk.snapshot"),
    }
    ensure_topics(base.kafka, [topics["trades_cdc"]], partitions=2)
    ensure_topics(
        base.kafka,
        [topics[t] for t in ("orders_cdc", "trade_events", "quote_events", "positions_cdc", "risk_events")],
    )
    update = {
        "topics": topics,
        "group_id": topic_name("group"),
        "batch_max_ms": 200,
        "assignment_timeout_s": 20,
        **stream,
    }
    new_stream = base.stream.model_copy(
        update={
            "topics": base.stream.topics.model_copy(update=topics),
            **{k: v for k, v in update.items() if k != "topics"},
        }
    )
    return base.model_copy(update={"stream": new_stream})


def produce(settings: OrionSettings, messages: Iterable[tuple[str, bytes | None, bytes | None]]) -> int:
    """Produce (topic, key, value) messages and wait for all of them."""
    producer = make_producer(settings.kafka, **{"linger.ms": 20})
    count = 0
    for topic, key, value in messages:
        producer.produce(topic, value=value, key=key)
        count += 1
        if count % 5000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0
    return count


def drain(settings: OrionSettings, group: str | None = None, **kw: Any) -> StreamResult:
    return run_stream(settings, group=group, until_caught_up=True, **kw)


def read_topic(settings: OrionSettings, topic: str, expected: int, timeout_s: float = 20.0) -> list[Any]:
    """All messages of a (DLQ) topic, waiting until `expected` arrived."""
    import time

    consumer: Consumer = make_consumer(settings.kafka, f"reader-{topic}")
    consumer.assign([TopicPartition(topic, 0, 0)])
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < expected and time.monotonic() < deadline:
        for msg in consumer.consume(500, timeout=0.5):
            if msg.error() is None:
                out.append(msg)
    consumer.close()
    return out


def fact_snapshot(conn: psycopg.Connection) -> dict[str, Any]:
    """Facts with dimension keys replaced by natural ids, timestamps of loading removed."""
    trades = conn.execute(
        "SELECT f.trade_id, f.tenant_id, f.trade_date, f.trade_date_key, f.side, f.quantity, f.price, "
        "f.notional_value, f.fees, f.net_amount, f.execution_venue, f.is_deleted, f.src_commit_lsn, "
        "f.src_lsn, "
        "c.client_id, c.version, i.instrument_id, l.lp_id FROM fact_trades f "
        "LEFT JOIN dim_clients c USING (client_key) LEFT JOIN dim_instruments i USING (instrument_key) "
        "LEFT JOIN dim_liquidity_providers l USING (lp_key) ORDER BY trade_id"
    ).fetchall()
    orders = conn.execute(
        "SELECT order_id, final_status, requested_quantity, filled_quantity, fill_rate, is_deleted, src_lsn "
        "FROM fact_orders ORDER BY order_id"
    ).fetchall()
    quotes = conn.execute(
        "SELECT src_topic, src_partition, src_offset, bid_price, ask_price, spread_bps FROM fact_quotes "
        "ORDER BY 1, 2, 3"
    ).fetchall()
    tombstones = conn.execute(
        "SELECT fact_table, natural_key, src_lsn FROM etl_fact_tombstones ORDER BY 1, 2"
    ).fetchall()
    return {"trades": trades, "orders": orders, "quotes": quotes, "tombstones": tombstones}


def totals(conn: psycopg.Connection) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT count(*), sum(notional_value), sum(net_amount), count(*) FILTER (WHERE is_deleted) "
        "FROM fact_trades"
    ).fetchone()
    orders = conn.execute("SELECT count(*), sum(filled_quantity) FROM fact_orders").fetchone()
    quotes = conn.execute("SELECT count(*), sum(mid_price) FROM fact_quotes").fetchone()
    assert row and orders and quotes
    return (*row, *orders, *quotes)


def jdump(doc: Any) -> bytes:
    return json.dumps(doc, default=str).encode()
