"""The realized P&L delta chain of fact_positions against a reference model (real PostgreSQL).

Random position histories (creates, updates, deletes, re-creates) arrive in random order and in
random batches, duplicates included, through the loader's own prepare + commit path; after every
batch each stored change's `realized_pnl_delta` must equal the reference model applied to the
changes stored so far, in source order.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orion_etl.adapters.warehouse_loader import WarehouseLoader
from orion_etl.config.models import OrionSettings
from orion_etl.core.records import KafkaRecord
from orion_etl.jobs.stream_batch import BatchPreparer
from tests.stream_builders import cdc, position_row

pytestmark = pytest.mark.integration

TOPIC = "cdc.public.positions"
POSITIONS = [str(uuid.UUID(int=7000 + n)) for n in range(3)]


def reference(changes: list[tuple[str, int, str, str]]) -> dict[tuple[str, int], Decimal]:
    """(position, lsn, op, pnl) -> delta per (position, lsn), the rule documented in V050."""
    out: dict[tuple[str, int], Decimal] = {}
    previous: dict[str, tuple[str, Decimal]] = {}
    for position, lsn, op, pnl in sorted(changes, key=lambda c: (c[0], c[1])):
        before = previous.get(position)
        value = Decimal(pnl)
        if op == "d" or (before is None and op == "r"):  # a delete; a first snapshot read (baseline)
            delta = Decimal(0)
        elif before is None or before[0] == "d":
            delta = value
        else:
            delta = value - before[1]
        out[(position, lsn)] = delta
        previous[position] = (op, value)
    return out


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[tuple[str, int, str, str]], list[list[int]]]:
    changes: list[tuple[str, int, str, str]] = []
    lsn = 100
    for position in POSITIONS[: draw(st.integers(1, len(POSITIONS)))]:
        alive = False
        for _ in range(draw(st.integers(1, 6))):
            lsn += draw(st.integers(1, 5))
            op = draw(st.sampled_from(["u", "u", "d"] if alive else ["c", "r"]))
            alive = op != "d"
            pnl = str(draw(st.integers(-500, 500)))
            changes.append((position, lsn, op, pnl))
    order = draw(st.permutations(range(len(changes))))
    duplicates = draw(st.lists(st.sampled_from(range(len(changes))), max_size=3))
    arrival = list(order) + duplicates
    cuts = sorted(draw(st.lists(st.integers(1, max(1, len(arrival) - 1)), max_size=3, unique=True)))
    batches = [arrival[a:b] for a, b in zip([0, *cuts], [*cuts, len(arrival)], strict=True) if arrival[a:b]]
    return changes, batches


def record(change: tuple[str, int, str, str], partition: int, offset: int) -> KafkaRecord:
    position, lsn, op, pnl = change
    row = position_row(id=position, realized_pnl=pnl, quantity="10", avg_price="1.5",
                       updated_at=f"2024-05-{1 + lsn % 28:02d}T12:00:00Z")  # fmt: skip
    value = cdc("positions", None if op == "d" else row, op=op, lsn=lsn, commit_lsn=lsn,
                before=row if op == "d" else None, ts_ms=1714564800000 + lsn)  # fmt: skip
    return KafkaRecord(TOPIC, partition, offset, position.encode(), value)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=histories())
def test_stored_deltas_equal_the_reference_whatever_the_arrival_order(
    stack_settings: OrionSettings, warehouse: psycopg.Connection, case: tuple[list[Any], list[list[int]]]
) -> None:
    changes, batches = case
    warehouse.execute("TRUNCATE fact_positions, etl_consumer_offsets")
    group = f"chain-{uuid.uuid4().hex[:8]}"
    loader = WarehouseLoader(stack_settings.warehouse, group)
    preparer = BatchPreparer(stack_settings, loader)
    stored: set[int] = set()
    try:
        for partition, batch in enumerate(batches):
            records = [record(changes[i], partition, offset) for offset, i in enumerate(batch)]
            prepared = preparer.prepare(records)
            assert not prepared.letters
            loader.commit_batch(prepared.write, {}, None)
            stored |= set(batch)
            rows = warehouse.execute(
                "SELECT position_id::text, src_lsn, realized_pnl_delta FROM fact_positions"
            ).fetchall()
            expected = reference([changes[i] for i in sorted(stored)])
            assert {(p, lsn): d for p, lsn, d in rows} == expected
    finally:
        loader.close_all()
