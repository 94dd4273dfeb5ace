"""Phase C of a micro-batch: a `Draft` and what the warehouse told -> the batch's writes (pure).

In order, per fact table: TOAST placeholders left after the batch's own changes are filled from
the stored values and those rows checked (`core.batch_draft.check_*`); `stream.missing_dimension =
"dlq"` rejects rows whose members have no dimension row (`core.dimension_gate`); quotes are
sampled (`core.sampling`); the newest change per key is kept (`core.facts.latest_per_key`, deletes
apart). The `Plan` lists the dimension members its rows reference: those without any version are
the inferred members to write (`inferred_members`) before `with_keys` resolves the point-in-time
dimension keys (`core.dimension_keys`) from the versions.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import polars as pl

from orion_etl.core import facts
from orion_etl.core.batch_draft import (
    BatchCounts,
    BatchPolicy,
    Draft,
    IssueSeverity,
    RowIssue,
    check_positions,
    check_trades_or_orders,
    rejections,
)
from orion_etl.core.dead_letter_classes import ErrorClass
from orion_etl.core.dimension_gate import split_missing
from orion_etl.core.dimension_keys import empty_versions, resolve_dimension_keys
from orion_etl.core.fact_model import FACT_MODELS, POSITION, FactModel
from orion_etl.core.sampling import SamplerKey, SamplerState, sample_quotes


@dataclass
class Lookup:
    """What the warehouse told about a draft's `Needs` (phase B, `adapters.batch_lookup`)."""

    stored: dict[str, pl.DataFrame] = field(default_factory=dict)  # fact table -> key + fact columns
    versions: dict[str, pl.DataFrame] = field(default_factory=dict)  # dimension -> VERSIONS_SCHEMA
    epochs: dict[str, int] = field(default_factory=dict)  # dimension -> key epoch read first
    sampler: dict[SamplerKey, SamplerState] = field(default_factory=dict)

    def existing(self, dimension: str) -> set[str]:
        """Natural ids of `dimension` that have a row (any version)."""
        versions = self.versions.get(dimension)
        return set() if versions is None else set(versions.get_column("natural_id").to_list())


@dataclass
class Plan:
    """Phase C's result: rows to write per fact table (without dimension keys), deletes, issues."""

    rows: dict[str, pl.DataFrame] = field(default_factory=dict)  # fact table -> rows, with lineage
    deletes: pl.DataFrame | None = None  # fact_table, natural_key, position columns, origin
    sampler_state: dict[SamplerKey, SamplerState] = field(default_factory=dict)
    issues: list[RowIssue] = field(default_factory=list)  # rejections and warnings, in batch order
    counts: BatchCounts = field(default_factory=BatchCounts)
    latencies_ts_ms: list[int] = field(default_factory=list)
    # dimension -> the members the rows reference (natural id, + tenant_id for clients), first seen
    members: dict[str, pl.DataFrame] = field(default_factory=dict)

    @property
    def rejections(self) -> list[RowIssue]:
        return [i for i in self.issues if i.severity is IssueSeverity.ERROR]

    @property
    def warnings(self) -> list[RowIssue]:
        return [i for i in self.issues if i.severity is IssueSeverity.WARNING]


def fill_from_stored(
    frame: pl.DataFrame, model: FactModel, names: list[str], stored: pl.DataFrame | None
) -> pl.DataFrame:
    """Replace the placeholders still listed in `_unavailable` by the stored values (null when the
    warehouse has no row for the key)."""
    if stored is None or stored.is_empty():
        return frame
    mapping = model.toast
    stored = stored.rename({mapping["id"]: "id", **{mapping.get(n, n): f"_stored_{n}" for n in names}})
    stored = stored.with_columns(pl.col("id").cast(pl.String))
    for n in names:
        stored = stored.with_columns(pl.col(f"_stored_{n}").cast(frame.schema[n], strict=False))
    frame = frame.join(stored, on="id", how="left")
    for n in names:
        missing = pl.col("_unavailable").list.contains(n)
        frame = frame.with_columns(
            pl.when(missing).then(pl.col(f"_stored_{n}")).otherwise(pl.col(n)).alias(n)
        )
    return frame.drop([f"_stored_{n}" for n in names])


def _merge(first: pl.DataFrame | None, later: pl.DataFrame | None) -> pl.DataFrame | None:
    """Rows checked in phase A and rows checked after the stored values, in the draft's order."""
    parts = [p for p in (first, later) if p is not None]
    if not parts:
        return None
    frame = pl.concat(parts, how="diagonal_relaxed")
    if "_seq" in frame.columns:
        frame = frame.sort("_seq", nulls_last=True, maintain_order=True).drop("_seq")
    return frame


def _lineage(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        pl.col("_topic").alias("src_topic"),  # the record that wrote the row (a refused row's letter)
        pl.col("_partition").alias("src_partition"),
        pl.col("_offset").alias("src_offset"),
    )


def plan_batch(
    draft: Draft,
    lookup: Lookup,
    policy: BatchPolicy,
    sampler_state: dict[SamplerKey, SamplerState] | None = None,
) -> Plan:
    """Phase C (module doc). `sampler_state`: the sampler's state of the batch's quote keys."""
    plan = Plan(counts=replace(draft.counts), issues=list(draft.issues))
    members: list[tuple[FactModel, pl.DataFrame]] = []
    deletes: list[pl.DataFrame] = []
    for table, t in draft.tables.items():
        model = t.model
        issues = list(t.issues)
        plan.counts.tombstones += t.tombstones
        frame = t.rows
        if t.pending is not None:
            filled = fill_from_stored(t.pending, model, t.toast_names, lookup.stored.get(table))
            if table == "fact_positions":
                more, more_issues, unknown = check_positions(filled, policy)
                plan.counts.tombstones += unknown
            else:
                more, more_issues = check_trades_or_orders(model, filled, None, policy)
            issues += more_issues
            frame = _merge(frame, more)
        if frame is not None and not frame.is_empty() and policy.gate:
            existing = {ref.table: lookup.existing(ref.dimension) for ref in model.dims}
            frame, missing = split_missing(frame, table, existing)
            issues += rejections(missing, table, ErrorClass.MISSING_DIMENSION)
        plan.issues += issues
        if table in ("fact_trades", "fact_orders"):
            if frame is not None and not frame.is_empty():
                members.append((model, frame))
            _newest(plan, model, frame, t.deletes, deletes)
        elif table == "fact_positions":
            if frame is None or frame.is_empty():
                continue
            members.append((model, frame))
            # one row per change: a change delivered twice in a batch is written once
            unique = frame.unique(
                subset=["position_id", "src_commit_lsn", "src_lsn"], keep="last", maintain_order=True
            )
            plan.counts.superseded += frame.height - unique.height
            plan.latencies_ts_ms.extend(unique.get_column("_ts_ms").drop_nulls().to_list())
            plan.rows[table] = _lineage(unique)
        elif table == "fact_risk_snapshots":
            if frame is None or frame.is_empty():
                continue
            members.append((model, frame))
            latest, superseded = facts.latest_per_key(frame, model.dedup_key)
            plan.counts.superseded += superseded
            plan.latencies_ts_ms.extend(latest.get_column("_kafka_ts_ms").drop_nulls().to_list())
            plan.rows[table] = _lineage(latest)
        elif table == "fact_quotes" and frame is not None:
            _sample(plan, frame, policy, sampler_state or {})
            kept = plan.rows.get(table)
            if kept is not None:
                members.append((model, kept))
    if deletes:
        plan.deletes = pl.concat(deletes, how="vertical_relaxed")
    plan.members = _members(members)
    plan.counts.dlq = len(plan.rejections)
    plan.counts.warnings = len(plan.warnings)
    return plan


def _newest(
    plan: Plan,
    model: FactModel,
    valid: pl.DataFrame | None,
    dels: pl.DataFrame | None,
    deletes: list[pl.DataFrame],
) -> None:
    """Trades / orders: the newest upsert and the newest delete of each key.

    Upserts and deletes are deduplicated separately and both applied (upsert first, then the
    delete, each guarded by position): the warehouse then ends the same whether a create and its
    delete arrive in one batch or in two, which keeps crash/restart runs identical.
    """
    for part, is_delete in ((valid, False), (dels, True)):
        if part is None or part.is_empty():
            continue
        latest, superseded = facts.latest_per_key(part, model.key)
        plan.counts.superseded += superseded
        plan.latencies_ts_ms.extend(latest.get_column("_ts_ms").drop_nulls().to_list())
        if is_delete:
            deletes.append(
                latest.select(
                    pl.lit(model.table).alias("fact_table"),
                    pl.col(model.key).alias("natural_key"),
                    *POSITION,
                    pl.col("_topic").alias("src_topic"),
                    pl.col("_partition").alias("src_partition"),
                    pl.col("_offset").alias("src_offset"),
                )
            )
        else:
            plan.rows[model.table] = _lineage(latest)


def _sample(
    plan: Plan, valid: pl.DataFrame, policy: BatchPolicy, state: dict[SamplerKey, SamplerState]
) -> None:
    """Quotes: the deterministic sampler (`core.sampling`); off, every quote is kept."""
    if policy.sampling:
        kept, updated = sample_quotes(valid, state, policy.sample_every, policy.spread_change_bps)
        plan.sampler_state = updated
    else:
        kept, _ = sample_quotes(valid, {}, 1, policy.spread_change_bps)
    plan.counts.sampled_out += valid.height - kept.height
    if not kept.is_empty():
        plan.rows["fact_quotes"] = _lineage(kept)
    plan.latencies_ts_ms.extend(valid.get_column("_kafka_ts_ms").drop_nulls().to_list())


def _members(frames: list[tuple[FactModel, pl.DataFrame]]) -> dict[str, pl.DataFrame]:
    """Per dimension: the distinct natural ids the rows reference (with the first row's tenant for
    clients), in the order the rows come."""
    parts: dict[str, list[pl.DataFrame]] = {}
    for model, frame in frames:
        for ref in model.dims:
            cols = [pl.col(ref.column).cast(pl.String).alias("natural_id")]
            if ref.has_tenant:
                cols.append(pl.col("tenant_id").cast(pl.String))
            parts.setdefault(ref.dimension, []).append(frame.select(cols).drop_nulls("natural_id"))
    out = {}
    for dim, frames_ in parts.items():
        members = pl.concat(frames_, how="vertical_relaxed")
        out[dim] = members.unique(subset=["natural_id"], keep="first", maintain_order=True)
    return {dim: m for dim, m in out.items() if not m.is_empty()}


def inferred_members(plan: Plan, versions: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """Members the plan's rows reference that have no dimension row at all: each gets an inferred
    member (Kimball's late-arriving dimension, completed later by `dims sync`)."""
    out = {}
    for dim, members in plan.members.items():
        known = versions.get(dim)
        if known is not None and not known.is_empty():
            members = members.join(known.select("natural_id").unique(), on="natural_id", how="anti")
        if not members.is_empty():
            out[dim] = members
    return out


def with_keys(plan: Plan, versions: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """The plan's rows with the key of each dimension version valid at their event time (null for
    a member without any version: a dry run does not write inferred members)."""
    out = {}
    for table, frame in plan.rows.items():
        model = FACT_MODELS[table]
        for ref in model.dims:
            known = versions.get(ref.dimension)
            known = empty_versions() if known is None else known
            frame = resolve_dimension_keys(frame, ref.column, model.time_column, known, ref.key_column)
        out[table] = frame
    return out
