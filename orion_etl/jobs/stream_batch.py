"""One micro-batch, in four phases: records -> a `BatchWrite` and the batch's dead letters.

A. `core.batch_draft.draft_batch` (pure): route by topic, decode, transform, validate -> a draft:
   checked rows per fact table, rejections and warnings as `RowIssue`s (with the record's Kafka
   coordinates), counters, and the `Needs` only the warehouse can answer.
B. `adapters.batch_lookup.lookup` (one call, read connection): stored values behind TOAST
   placeholders, dimension epochs and versions, quote sampler state the job has not cached.
C. `core.batch_plan.plan_batch` (pure): TOAST fill, dimension gate, sampling, newest change per key
   -> the rows to write; then the one write before the transaction, inferred dimension members
   (`adapters.batch_lookup.write_inferred`), and the point-in-time keys (`core.batch_plan.with_keys`).
D. `WarehouseLoader.commit_batch` (the job calls it): one transaction.

Every record of the batch ends in exactly one place: a fact upsert/delete, a dead letter, an
acknowledged tombstone, a superseded/sampled-out change, and its offset is always committed.
`BatchPreparer` composes A-C for the stream job; `jobs.dlq_replay` composes the same phases with
its own policy (no sampling, no new letters).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

import polars as pl

from orion_etl.adapters import batch_lookup
from orion_etl.adapters.dlq import DeadLetter, letter_id
from orion_etl.adapters.warehouse_loader import BatchWrite, Rejection, WarehouseLoader
from orion_etl.config.dq import build_catalog
from orion_etl.config.models import OrionSettings
from orion_etl.core.batch_draft import BatchCounts, BatchPolicy, Coordinates, Draft, RowIssue, draft_batch
from orion_etl.core.batch_plan import Lookup, Plan, inferred_members, plan_batch, with_keys
from orion_etl.core.dead_letter_classes import ErrorClass
from orion_etl.core.fact_model import Route, model_of
from orion_etl.core.records import UNAVAILABLE, KafkaRecord
from orion_etl.core.sampling import SamplerKey, SamplerState

log = logging.getLogger(__name__)

__all__ = ["BatchPreparer", "PhasedBatch", "PreparedBatch", "Route", "fact_table_of", "policy_for", "routes"]


def routes(settings: OrionSettings) -> dict[str, Route]:
    """Topic name -> route, from `stream.topics`."""
    t = settings.stream.topics
    return {
        t.trades_cdc: Route.TRADES_CDC,
        t.orders_cdc: Route.ORDERS_CDC,
        t.trade_events: Route.TRADE_EVENTS,
        t.quote_events: Route.QUOTE_EVENTS,
        t.positions_cdc: Route.POSITIONS_CDC,
        t.risk_events: Route.RISK_EVENTS,
    }


def fact_table_of(settings: OrionSettings, topic: str) -> str | None:
    """The fact table a topic feeds (None: not a stream topic)."""
    route = routes(settings).get(topic)
    return None if route is None else model_of(route).table


def policy_for(settings: OrionSettings, *, sampling: bool = True) -> BatchPolicy:
    """The batch policy of `settings`: routes, trading day, the active rule catalogue (defaults +
    rules file + inline rules; only row-level rules apply to a batch), gate, sampler."""
    st, td = settings.stream, settings.trading_day
    return BatchPolicy(
        routes=routes(settings),
        rules=build_catalog(settings.dq).active,
        timezone=td.timezone,
        cutoff=td.cutoff,
        weekend_roll=td.weekend_roll,
        gate=st.missing_dimension == "dlq",
        sampling=sampling,
        sample_every=st.quote_sample_every,
        spread_change_bps=Decimal(str(st.quote_spread_change_bps)),
    )


@dataclass
class PreparedBatch:
    """A batch ready to commit, and what happened to each record."""

    write: BatchWrite
    letters: list[DeadLetter] = field(default_factory=list)
    counts: BatchCounts = field(default_factory=BatchCounts)
    latencies_ts_ms: list[int] = field(default_factory=list)
    topic_counts: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    # The batch's records by origin, for rows PostgreSQL refuses at commit time (their letters
    # re-publish the record verbatim), and those letters (set by the commit, `rejected_letters`).
    records: dict[tuple[str, int, int], KafkaRecord] = field(default_factory=dict)
    rejected: list[DeadLetter] = field(default_factory=list)


@dataclass
class PhasedBatch:
    """Phases A-C of one batch: the draft, the plan and the keyed rows (no issues or offsets)."""

    draft: Draft
    plan: Plan
    lookup: Lookup
    rows: dict[str, pl.DataFrame]  # fact table -> planned rows with dimension keys


def _raw_text(record: KafkaRecord) -> str:
    if record.value is None:
        return ""
    return record.value[:4000].decode("utf-8", errors="replace")


def letter_of(issue: RowIssue, records: dict[Coordinates, KafkaRecord]) -> DeadLetter:
    """The dead letter of a rejection: its record, looked up by the rejection's coordinates."""
    assert issue.error_class is not None
    record = records[issue.origin]
    return DeadLetter(record, issue.error_class, issue.reason, issue.rule, issue.table, issue.record_id)


def warning_row(issue: RowIssue) -> dict[str, Any]:
    """The WARNING issue row (`etl_data_quality_issues`) of a rule warning."""
    topic, partition, offset = issue.origin
    return {
        "source_table": issue.table,
        "record_id": issue.record_id,
        "rule_name": issue.rule,
        "severity": "WARNING",
        "error_message": issue.reason,
        "origin": {"topic": topic, "partition": partition, "offset": offset},
    }


class BatchPreparer:
    """Records -> a `PreparedBatch` through phases A-C (module doc); keeps the sampler cache."""

    def __init__(self, settings: OrionSettings, loader: WarehouseLoader) -> None:
        self.settings = settings
        self.loader = loader
        self.policy = policy_for(settings)
        self.routes = self.policy.routes
        # Sampler state after the last *prepared* batch. The batch before may still be committing,
        # so the warehouse is only asked for keys this process has not seen since the cache was
        # last reset (on (re)assignment and after a failed batch).
        self.sampler_cache: dict[SamplerKey, SamplerState] = {}
        # Called before reading stored fact values (TOAST): waits for the in-flight commit.
        self.before_read: Callable[[], None] = lambda: None
        # False for a dry run: unknown dimension members are not created (their keys stay null)
        self.insert_inferred = True

    def phases(self, records: list[KafkaRecord], policy: BatchPolicy | None = None) -> PhasedBatch:
        """Phases A-C of `records` (module doc), with `policy` (default: the stream's)."""
        policy = policy or self.policy
        draft = draft_batch(records, policy)  # A
        keys = draft.needs.sampler
        state = {k: self.sampler_cache[k] for k in keys if k in self.sampler_cache}
        needs = replace(draft.needs, sampler=[k for k in keys if k not in state])
        looked = Lookup()
        if not needs.empty:
            if needs.stored:  # stored values must include the batches before this one
                self.before_read()
            looked = batch_lookup.lookup(self.loader.open_reader(), needs, self.loader.group)  # B
        state.update(looked.sampler)
        plan = plan_batch(draft, looked, policy, state)  # C
        if policy.sampling:
            self.sampler_cache.update(plan.sampler_state)
        versions = dict(looked.versions)
        inferred = inferred_members(plan, versions)
        if inferred and self.insert_inferred:  # the one write before the batch transaction
            for dim, found in batch_lookup.write_inferred(self.loader.open_reader(), inferred).items():
                known = versions.get(dim)
                versions[dim] = found if known is None else pl.concat([known, found], how="vertical_relaxed")
        return PhasedBatch(draft, plan, looked, with_keys(plan, versions))

    def write_of(self, phased: PhasedBatch, issues: list[dict[str, Any]]) -> BatchWrite:
        """The `BatchWrite` of a planned batch, with `issues` as its issue rows."""
        rows, plan, draft = phased.rows, phased.plan, phased.draft
        write = BatchWrite(
            trades=rows.get("fact_trades"),
            orders=rows.get("fact_orders"),
            deletes=plan.deletes,
            quotes=rows.get("fact_quotes"),
            positions=rows.get("fact_positions"),
            risk=rows.get("fact_risk_snapshots"),
            sampler_state=plan.sampler_state,
            issues=issues,
            offsets=draft.offsets,
            dim_epochs=dict(phased.lookup.epochs),
            watermarks=draft.watermarks,
        )
        for table in ("fact_trades", "fact_orders"):
            if table in rows:  # encoded here, so the commit thread only sends it
                write.payloads[table] = self.loader.copy_payload(table, rows[table])
        return write

    def prepare(self, records: list[KafkaRecord]) -> PreparedBatch:
        """Phases A-C, the dead letters of the rejections and the issue rows (warnings first)."""
        started = time.time()
        phased = self.phases(records)
        draft, plan = phased.draft, phased.plan
        letters = [letter_of(i, draft.records) for i in plan.rejections]
        issues = [warning_row(i) for i in plan.warnings] + [self.issue_for(lt) for lt in letters]
        return PreparedBatch(
            self.write_of(phased, issues),
            letters=letters,
            counts=plan.counts,
            latencies_ts_ms=plan.latencies_ts_ms,
            topic_counts=draft.topic_counts,
            started=started,
            records=draft.records,
        )

    def rejected_letters(self, prepared: PreparedBatch, rejections: list[Rejection]) -> list[DeadLetter]:
        """Dead letters (`LOAD_REJECTED`) of the fact rows PostgreSQL refused at commit time."""
        letters = []
        for r in rejections:
            rec = prepared.records.get((r.topic or "", r.partition or 0, r.offset or 0))
            if rec is None:  # (every fact row carries its origin; a guard, not a path)
                log.error("PostgreSQL refused a %s row of unknown origin: %s", r.part, r.error)
                continue
            letters.append(
                DeadLetter(
                    rec,
                    ErrorClass.LOAD_REJECTED,
                    f"the warehouse refused the row ({r.error})",
                    source_table=r.part,
                    record_id=r.key,
                    sqlstate=r.sqlstate,
                )
            )
        return letters

    def issue_for(self, letter: DeadLetter) -> dict[str, Any]:
        """The ERROR issue row of a dead letter."""
        r = letter.record
        text = _raw_text(r)
        return {
            "source_table": letter.source_table or r.topic,
            "record_id": letter.record_id,
            "rule_name": (letter.rule.split(",")[0] if letter.rule else letter.error_class.lower()),
            "severity": "ERROR",
            "error_message": letter.error,
            "record_data": {"raw": text.replace(UNAVAILABLE, "<unavailable>")} if text else None,
            "origin": {
                "topic": r.topic,
                "partition": r.partition,
                "offset": r.offset,
                "timestamp_ms": r.timestamp_ms,
                "fingerprint": letter_id(r),
                "error_class": letter.error_class,
                "dlq_topic": f"{r.topic}{self.settings.stream.dlq_suffix}",
            },
        }
