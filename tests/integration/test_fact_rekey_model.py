"""Property: whatever the order in which source changes, syncs and trades arrive, after draining
(a last sync) every trade's client key is the version the reference model says was valid at its
execution time (`tests.scd_model.ModelDimension` + the point-in-time rule)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orion_etl.config.models import OrionSettings
from orion_etl.core.scd import resolve_spec
from orion_etl.jobs.dims import sync_batch
from orion_etl.jobs.stream_batch import PreparedBatch
from tests.integration.dims_helpers import add_client, ts
from tests.integration.rekey_support import DirectLoader, mismatches, set_segment_at, trade_versions
from tests.scd_model import Change, ModelDimension

pytestmark = pytest.mark.integration

CLIENTS = 3
SEGMENTS = ("TIER_1", "TIER_2", "TIER_3")
BASE = ts(1)


@dataclass(frozen=True)
class Op:
    kind: str  # change | trade | delayed | sync | full
    client: int = 0
    minutes: int = 0  # change: minutes after the previous change; trade: minutes after BASE
    segment: str = "TIER_2"


ops = st.lists(
    st.one_of(
        st.builds(
            Op, st.just("change"), st.integers(0, CLIENTS - 1), st.integers(1, 120), st.sampled_from(SEGMENTS)
        ),
        st.builds(
            Op, st.sampled_from(["trade", "delayed"]), st.integers(0, CLIENTS - 1), st.integers(0, 1200)
        ),
        st.builds(Op, st.sampled_from(["sync", "sync", "full"])),
    ),
    min_size=1,
    max_size=16,
)


def model_version(model: ModelDimension, cid: uuid.UUID, at: datetime) -> int:
    """The point-in-time rule: highest version starting at or before `at`, else the first."""
    versions = sorted(model.rows[cid], key=lambda v: v.version)
    started = [v.version for v in versions if v.valid_from <= at]
    return max(started) if started else versions[0].version


class World:
    """The source, the warehouse and the model, driven by the same operations."""

    def __init__(
        self, stack: OrionSettings, warehouse: psycopg.Connection, source: psycopg.Connection
    ) -> None:
        self.stack, self.warehouse, self.source = stack, warehouse, source
        self.model = ModelDimension(resolve_spec("client", stack.dims))
        self.clients = [uuid.uuid4() for _ in range(CLIENTS)]
        self.state: dict[uuid.UUID, dict[str, Any]] = {}  # source rows: attrs, created, updated
        self.clock = BASE
        self.trades: dict[str, tuple[uuid.UUID, datetime]] = {}
        self.pending: list[tuple[PreparedBatch, list[tuple[uuid.UUID, datetime]], list[str]]] = []
        self.loader = DirectLoader(stack)

    def attrs(self, segment: str) -> dict[str, Any]:
        return {"segment": segment, "region": "EMEA", "status": "ACTIVE", "client_type": "INSTITUTIONAL"}

    def run(self, op: Op) -> None:
        cid = self.clients[op.client]
        if op.kind == "change":
            self.clock += timedelta(minutes=op.minutes)
            if cid in self.state:
                set_segment_at(self.source, cid, op.segment, self.clock)
                self.state[cid]["segment"], self.state[cid]["updated"] = op.segment, self.clock
            else:
                add_client(self.source, client_id=cid, segment=op.segment, at=self.clock)
                self.state[cid] = {"segment": op.segment, "created": self.clock, "updated": self.clock}
        elif op.kind in ("trade", "delayed"):
            trade = (cid, BASE + timedelta(minutes=op.minutes))
            if cid not in self.model.rows:
                self.model.add_inferred(cid)  # what the loader does for an unknown member
            prepared, ids = self.loader.prepare([trade])
            if op.kind == "delayed":  # committed only after the next sync
                self.pending.append((prepared, [trade], ids))
            else:
                self.commit(prepared, [trade], ids)
        else:
            self.sync(full=op.kind == "full")

    def commit(
        self, prepared: PreparedBatch, trades: list[tuple[uuid.UUID, datetime]], ids: list[str]
    ) -> None:
        self.loader.commit(prepared)
        self.trades.update(zip(ids, trades, strict=True))

    def sync(self, *, full: bool) -> None:
        sync_batch(self.stack, "client", full=full)
        for cid, row in self.state.items():  # a batch sync sees each member's latest state
            change = Change(self.attrs(row["segment"]), row["updated"], created_at=row["created"])
            self.model.apply_change(cid, change)
        for pending in self.pending:
            self.commit(*pending)
        self.pending = []


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=ops)
def test_every_trade_ends_on_the_models_point_in_time_version(
    stack_settings: OrionSettings,
    warehouse: psycopg.Connection,
    source: psycopg.Connection,
    history: list[Op],
) -> None:
    warehouse.execute(
        "TRUNCATE dim_clients, fact_trades, etl_dim_sync_state, etl_consumer_offsets, agg_dirty_buckets "
        "RESTART IDENTITY CASCADE"
    )
    source.execute("TRUNCATE clients CASCADE")
    world = World(stack_settings, warehouse, source)
    try:
        for op in history:
            world.run(op)
        world.sync(full=False)  # drain: the last changes reach the warehouse
    finally:
        world.loader.close()
    stored = trade_versions(warehouse)
    expected = {tid: model_version(world.model, cid, at) for tid, (cid, at) in world.trades.items()}
    assert stored == expected
    assert mismatches(stack_settings, "client") == {}
