"""Reliability under faults (fast variant of scripts/reliability.py; figures in docs/reliability.md).

kill -9 of loader processes, a Kafka broker restart and a PostgreSQL restart mid-load, and
loaders joining and leaving one consumer group: afterwards the warehouse equals the source of
truth built from the produced workload (row counts, values, per-tenant sums, no duplicate keys,
no gap). The restart test restarts services of the stack it runs on, and waits until they are
healthy again; later tests use fresh connections.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from orion_etl.config.models import OrionSettings
from tests.integration.stream_support import STREAM_TABLES
from tests.reliability_scenarios import group, kills, restarts
from tests.reliability_support import reliability_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def wh(warehouse: psycopg.Connection) -> psycopg.Connection:
    warehouse.execute(
        sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(sql.Identifier(t) for t in STREAM_TABLES))
    )
    return warehouse


def test_kill_9_at_random_instants_loses_and_duplicates_nothing(
    stack_settings: OrionSettings, topic_name: Callable[[str], str], wh: psycopg.Connection, tmp_path: Path
) -> None:
    settings = reliability_settings(stack_settings, topic_name("rel-kill"), batch_max_messages=1000)
    figures = kills(settings, 30_000, 4, tmp_path, seed=11)
    assert figures["kills_mid_load"] == 4, figures
    assert figures["deleted_trades"] > 0 and figures["dead_letters"] > 0


def test_broker_and_database_restarts_mid_load(
    stack_settings: OrionSettings, topic_name: Callable[[str], str], wh: psycopg.Connection, tmp_path: Path
) -> None:
    kafka = reliability_settings(stack_settings, topic_name("rel-kafka"), batch_max_messages=1000)
    figures = restarts(kafka, 20_000, tmp_path, "kafka", seed=12)
    assert 0 < figures["committed_at_restart"] < figures["messages"], figures
    wh.execute(
        sql.SQL("TRUNCATE {}").format(
            sql.SQL(", ").join(
                sql.Identifier(t)
                for t in [*STREAM_TABLES, "fact_trades", "fact_quotes", "etl_data_quality_issues"]
            )
        )
    )
    pg = reliability_settings(stack_settings, topic_name("rel-pg"), batch_max_messages=1000)
    figures = restarts(pg, 20_000, tmp_path, "postgres", seed=13)
    assert 0 < figures["committed_at_restart"] < figures["messages"], figures
    assert figures["retries"] >= 1


def test_three_loaders_join_and_leave_one_group(
    stack_settings: OrionSettings, topic_name: Callable[[str], str], wh: psycopg.Connection, tmp_path: Path
) -> None:
    settings = reliability_settings(
        stack_settings,
        topic_name("rel-group"),
        trade_partitions=6,
        event_partitions=3,
        batch_max_messages=500,
    )
    figures = group(settings, 100_000, tmp_path, seed=14)
    assert figures["changes_mid_load"] >= 3, figures
