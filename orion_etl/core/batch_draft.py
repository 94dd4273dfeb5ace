"""Phase A of a micro-batch: decode -> transform -> validate, a `Draft` (pure, no I/O).

A draft holds, per fact table, the rows that decoded, transformed and passed the row-level rules;
every record that did not as a `RowIssue` (reason, class, rule, record id and the record's Kafka
coordinates; warnings have the same shape); the batch's counters; and `Needs`, what only the
warehouse can tell: the stored values behind TOAST placeholders, the dimension members to gate
and key, the quote sampler state. Phase B (`orion_etl.adapters.batch_lookup`) fetches those in one
call, phase C (`orion_etl.core.batch_plan`) turns the draft into the batch's writes.

CDC rows that still carry a TOAST placeholder after the batch's own earlier changes filled what
they could (`fill_in_batch`) are kept decoded but unchecked (`TableDraft.pending`): their values,
and so their computed fields and rules, are only known once the stored values are (phase C runs
the same `check_*` functions on them then).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from itertools import compress, repeat
from operator import and_, attrgetter, eq
from typing import Any

import polars as pl

from orion_etl.core import facts
from orion_etl.core.cdc_batch import cdc_frame
from orion_etl.core.columns import to_frame
from orion_etl.core.dead_letter_classes import DecodeError, ErrorClass
from orion_etl.core.envelopes import decode_cdc, decode_event
from orion_etl.core.fact_model import FACT_MODELS, ROUTES, FactModel, Route
from orion_etl.core.quality import ERRORS_COLUMN, FAILED_RULES_COLUMN, WARNINGS_COLUMN, Rule, Severity
from orion_etl.core.records import Change, KafkaRecord, Kind, Tombstone
from orion_etl.core.sampling import SamplerKey, sampler_keys

Coordinates = tuple[str, int, int]  # topic, partition, offset of a Kafka record
TopicPartition = tuple[str, int]
_LABEL_RE = re.compile(r"^\[([^\]]+)\]")


class IssueSeverity(StrEnum):
    ERROR = "ERROR"  # the record is rejected: a dead letter and an ERROR issue row
    WARNING = "WARNING"  # the row loads; a WARNING issue row records the rule


@dataclass(frozen=True)
class RowIssue:
    """What went wrong with one record: a rejection (ERROR) or a rule warning, as data."""

    severity: IssueSeverity
    reason: str  # the message (`[rule] message` for rules)
    origin: Coordinates
    error_class: ErrorClass | None = None  # (rejections) the DLQ error class
    rule: str = ""  # rule name(s), comma-separated
    table: str | None = None  # the fact table it was meant for
    record_id: str | None = None


@dataclass
class BatchCounts:
    """What happened to a batch's records (besides the rows written)."""

    messages: int = 0
    tombstones: int = 0
    dlq: int = 0
    warnings: int = 0
    superseded: int = 0
    sampled_out: int = 0


@dataclass(frozen=True)
class BatchPolicy:
    """The settings a batch is drafted and planned with (built by the job from its settings)."""

    routes: dict[str, Route]  # topic -> route
    rules: list[Rule]  # the active rule catalogue (only row-level rules apply)
    timezone: str = "UTC"
    cutoff: str = "00:00"
    weekend_roll: bool = False
    gate: bool = False  # stream.missing_dimension = "dlq"
    sampling: bool = True  # False: every quote is kept, no sampler state (DLQ replay)
    sample_every: int = 1
    spread_change_bps: Decimal = Decimal(0)


@dataclass(frozen=True)
class StoredNeed:
    """Stored values of some fact columns for some keys (to replace TOAST placeholders)."""

    table: str
    key: str  # the fact table's key column
    columns: tuple[str, ...]  # fact columns
    ids: tuple[str, ...]


@dataclass
class Needs:
    """What phase C needs from the warehouse."""

    stored: list[StoredNeed] = field(default_factory=list)
    members: dict[str, list[str]] = field(default_factory=dict)  # dimension -> natural ids
    dimensions: set[str] = field(default_factory=set)  # dimensions whose key epochs to read
    sampler: list[SamplerKey] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.stored or self.members or self.dimensions or self.sampler)


@dataclass
class TableDraft:
    """One fact table's part of a draft."""

    model: FactModel
    rows: pl.DataFrame | None = None  # checked rows (no dimension gate, keys or dedup yet)
    pending: pl.DataFrame | None = None  # decoded CDC rows waiting for stored TOAST values
    toast_names: list[str] = field(default_factory=list)  # source columns placeholders were seen in
    deletes: pl.DataFrame | None = None  # trades / orders: delete changes (key + source position)
    issues: list[RowIssue] = field(default_factory=list)
    tombstones: int = 0  # position deletes with nothing to record


@dataclass
class Draft:
    """Phase A's result (module doc)."""

    records: dict[Coordinates, KafkaRecord]  # by coordinates: a letter re-publishes its record
    offsets: dict[TopicPartition, int]  # next offset to read
    watermarks: dict[str, tuple[int | None, int | None]]
    topic_counts: dict[str, int]
    tables: dict[str, TableDraft]  # in FACT_MODELS order
    issues: list[RowIssue]  # records that never reached a table (unknown topic, undecodable)
    counts: BatchCounts
    needs: Needs


# --- rejections and warnings -----------------------------------------------------------------


def rule_names(labels: Iterable[str]) -> str:
    """`positive_bid,crossed_quote` from `[positive_bid] ...` labels."""
    return ",".join(m.group(1) for label in labels if (m := _LABEL_RE.match(label)))


def _record_id(row: dict[str, Any]) -> Any:
    record_id = row.get("trade_id") or row.get("order_id") or row.get("position_id") or row.get("id")
    if record_id is None and row.get("client_id") is not None:
        record_id = row["client_id"]  # a risk snapshot: the client it is about
    return record_id


def rejections(frame: pl.DataFrame, table: str, error_class: ErrorClass) -> list[RowIssue]:
    """One ERROR `RowIssue` per row: the rules' labels (RULE) or `_error` (other classes).

    An `_error` that names a rule (`[name] ...`: a quote check, the dimension gate) carries the
    rule; as INVALID_VALUE it is then a RULE rejection.
    """
    out: list[RowIssue] = []
    if frame.is_empty():
        return out
    for row in frame.iter_rows(named=True):
        if error_class is ErrorClass.RULE:
            labels = row[ERRORS_COLUMN]
            message, rule = "; ".join(labels), rule_names(labels)
        else:
            message = row["_error"]
            rule = rule_names([message])
        cls = ErrorClass.RULE if rule and error_class is ErrorClass.INVALID_VALUE else error_class
        origin = (row["_topic"], row["_partition"], row["_offset"])
        out.append(RowIssue(IssueSeverity.ERROR, message, origin, cls, rule, table, _record_id(row)))
    return out


def _warnings(valid: pl.DataFrame, table: str, key: str) -> list[RowIssue]:
    """One WARNING `RowIssue` per warning label; the record id is the `key` column ("": none)."""
    out: list[RowIssue] = []
    record = pl.col(key) if key else pl.lit(None, pl.String)
    warned = valid.select(record, "_topic", "_partition", "_offset", WARNINGS_COLUMN).filter(
        pl.col(WARNINGS_COLUMN).list.len() > 0
    )
    for record_id, topic, partition, offset, labels in warned.iter_rows():
        for label in labels:
            out.append(
                RowIssue(
                    IssueSeverity.WARNING,
                    label,
                    (topic, partition, offset),
                    rule=rule_names([label]) or "rule",
                    table=table,
                    record_id=record_id,
                )
            )
    return out


def validate(
    frame: pl.DataFrame, table: str, key: str, rules: list[Rule]
) -> tuple[pl.DataFrame, list[RowIssue]]:
    """(rows that converted and pass every ERROR rule, their rejections and warnings)."""
    if frame.get_column("_error").null_count() == frame.height:  # the usual batch: no copy of its rows
        issues, checked = [], frame
    else:
        issues = rejections(frame.filter(pl.col("_error").is_not_null()), table, ErrorClass.INVALID_VALUE)
        checked = frame.filter(pl.col("_error").is_null())
    valid, failed = facts.check(checked, table, rules)
    issues += rejections(failed, table, ErrorClass.RULE)
    issues += _warnings(valid, table, key)
    dropped = [c for c in (ERRORS_COLUMN, WARNINGS_COLUMN, FAILED_RULES_COLUMN) if c in valid.columns]
    return valid.with_columns(pl.lit("u").alias("_op")).drop(dropped), issues


# --- TOAST placeholders, within the batch ------------------------------------------------------


def has_placeholders(frame: pl.DataFrame) -> bool:
    return not frame.is_empty() and bool(frame.get_column("_unavailable").list.len().sum())


def fill_in_batch(frame: pl.DataFrame) -> tuple[pl.DataFrame, list[str]]:
    """Replace TOAST placeholders by the same row's value in an earlier change of the batch.

    Returns the frame sorted by (id, source position) and the column names that carried a
    placeholder; rows still listing names in `_unavailable` need the stored values.
    """
    names = sorted(set(frame.get_column("_unavailable").explode().drop_nulls().to_list()))
    order = [pl.col("_commit_lsn").fill_null(-1), pl.col("_lsn").fill_null(-1), pl.col("_offset")]
    frame = frame.sort(["id", *order])
    for name in names:
        missing = pl.col("_unavailable").list.contains(name)
        carried = pl.when(~missing).then(pl.struct(pl.col(name).alias("v"))).forward_fill().over("id")
        frame = frame.with_columns(
            pl.when(missing & carried.is_not_null())
            .then(carried.struct.field("v"))
            .otherwise(pl.col(name))
            .alias(name),
            pl.when(missing & carried.is_not_null())
            .then(pl.col("_unavailable").list.set_difference(pl.lit([name])))
            .otherwise(pl.col("_unavailable"))
            .alias("_unavailable"),
        )  # fmt: skip
    return frame, names


def _split_pending(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame | None, list[str]]:
    """(complete rows, rows needing stored values or None, placeholder names); `_seq` keeps the
    filled frame's row order for when phase C puts the two parts back together."""
    if not has_placeholders(frame):
        return frame, None, []
    frame, names = fill_in_batch(frame)
    waiting = pl.col("_unavailable").list.len() > 0
    if frame.select(waiting.any()).item():
        frame = frame.with_row_index("_seq")
        return frame.filter(~waiting), frame.filter(waiting), names
    return frame, None, names


# --- the checks of each table (phase A, and phase C on rows that waited for stored values) ------


def check_trades_or_orders(
    model: FactModel, cdc: pl.DataFrame | None, events: pl.DataFrame | None, policy: BatchPolicy
) -> tuple[pl.DataFrame | None, list[RowIssue]]:
    """Transform (computed fields, date keys, source position) and validate trade/order rows."""
    transform = facts.transform_trades if model.table == "fact_trades" else facts.transform_orders
    frames = [
        transform(frame, origin, policy.timezone, policy.cutoff, weekend_roll=policy.weekend_roll)
        for frame, origin in ((cdc, "cdc"), (events, "event"))
        if frame is not None
    ]
    if not frames:
        return None, []
    return validate(pl.concat(frames, how="diagonal_relaxed"), model.table, model.key, policy.rules)


def mark_carried(frame: pl.DataFrame, model: FactModel) -> pl.DataFrame:
    """Position deletes: the columns their before image lacks are placeholders of the previous change."""
    is_delete = pl.col("_op") == "d"
    carried = [pl.when(is_delete & pl.col(c).is_null()).then(pl.lit(c)) for c in model.carried_on_delete]
    return frame.with_columns(
        pl.concat_list(pl.col("_unavailable"), pl.concat_list(carried).list.drop_nulls())
        .list.unique(maintain_order=True)
        .alias("_unavailable")
    )


def check_positions(
    frame: pl.DataFrame, policy: BatchPolicy
) -> tuple[pl.DataFrame | None, list[RowIssue], int]:
    """Every change of a position becomes a history row (fact_positions, see V050).

    Deletes are history rows too (`is_deleted`, P&L-neutral). Returns (rows, issues, deletes of
    positions never loaded, which have nothing to record: counted as tombstones).
    """
    frame = facts.transform_positions(frame, policy.timezone, policy.cutoff, weekend_roll=policy.weekend_roll)
    deletes = frame.filter(pl.col("is_deleted") & pl.col("_error").is_null())
    unknown = deletes.filter(
        pl.any_horizontal(pl.col(c).is_null() for c in ("tenant_id", "client_id", "instrument_id"))
    )
    if not unknown.is_empty():
        deletes = deletes.join(unknown.select("_topic", "_partition", "_offset"),
                               on=["_topic", "_partition", "_offset"], how="anti")  # fmt: skip
    upserts = frame.filter(~pl.col("is_deleted") | pl.col("_error").is_not_null())
    issues: list[RowIssue] = []
    valid = None
    if not upserts.is_empty():
        valid, issues = validate(upserts, "fact_positions", "position_id", policy.rules)
    parts = [p for p in (valid, deletes.with_columns(pl.lit("d").alias("_op"))) if p is not None]
    rows = pl.concat(parts, how="diagonal_relaxed") if parts else None
    return rows, issues, unknown.height


# --- the draft ---------------------------------------------------------------------------------


def _watermarks(
    by_route: dict[Route, list[Change]], decoded: dict[Route, pl.DataFrame]
) -> dict[str, tuple[int | None, int | None]]:
    """Per source table: the highest LSN and source commit time (ms) among the batch's CDC changes."""
    out: dict[str, tuple[int | None, int | None]] = {}
    for route, (_, source) in ROUTES.items():
        if source.origin != "cdc":
            continue
        lsns = [c.lsn for c in by_route[route] if c.lsn is not None]
        times = [c.ts_ms for c in by_route[route] if c.ts_ms is not None]
        frame = decoded.get(route)
        if frame is not None and not frame.is_empty():
            lsn, ts = frame.select(pl.col("_lsn").max(), pl.col("_ts_ms").max()).row(0)
            lsns += [lsn] if lsn is not None else []
            times += [ts] if ts is not None else []
        if lsns or times:
            out[source.name] = (max(lsns) if lsns else None, max(times) if times else None)
    return out


def _decode(rec: KafkaRecord, route: Route) -> Change | RowIssue | None:
    """One record's change, or its rejection, or None for a tombstone."""
    model, source = ROUTES[route]
    try:
        if source.origin == "cdc":
            change = decode_cdc(rec)
            if change.table is not None and change.table != source.name:
                raise DecodeError(
                    ErrorClass.UNKNOWN_TOPIC, f"change of table {change.table!r} on the {source.name} topic"
                )
            return change
        return decode_event(rec, source.name)
    except Tombstone:
        return None
    except DecodeError as exc:
        origin = (rec.topic, rec.partition, rec.offset)
        return RowIssue(IssueSeverity.ERROR, exc.message, origin, exc.error_class, table=model.table)


def _frame(model: FactModel, route: Route, changes: list[Change]) -> pl.DataFrame:
    return to_frame(changes, model.decoded, model.required, rename=model.source(route).rename)


def _delete_frame(model: FactModel, changes: list[Change]) -> tuple[pl.DataFrame, list[RowIssue]]:
    frame = to_frame(changes, {"id": Kind.UUID}, ("id",))
    issues = rejections(frame.filter(pl.col("_error").is_not_null()), model.table, ErrorClass.INVALID_VALUE)
    good = frame.filter(pl.col("_error").is_null())
    return good.with_columns(pl.col("id").alias(model.key), *facts.positions("cdc")), issues


_TOPIC = attrgetter("topic")
_PARTITION = attrgetter("partition")
_OFFSET = attrgetter("offset")
_COORDINATES = attrgetter("topic", "partition", "offset")


def next_offsets(records: list[KafkaRecord]) -> dict[TopicPartition, int]:
    """The next offset to read of each partition of `records` (in the order first seen).

    C-level passes (no Python frame per record): one per partition when there are a few.
    """
    if not records:
        return {}
    topics = list(map(_TOPIC, records))
    partitions = list(map(_PARTITION, records))
    offsets = list(map(_OFFSET, records))
    n = len(records)
    if topics.count(topics[0]) == n and partitions.count(partitions[0]) == n:
        return {(topics[0], partitions[0]): max(-1, max(offsets) + 1)}
    tps = dict.fromkeys(zip(topics, partitions, strict=True))
    out: dict[TopicPartition, int] = {}
    if len(tps) <= 8:
        for tp in tps:
            topic, partition = tp
            mine = map(and_, map(eq, topics, repeat(topic)), map(eq, partitions, repeat(partition)))
            out[tp] = max(-1, max(compress(offsets, mine)) + 1)
        return out
    for tp, offset in zip(zip(topics, partitions, strict=True), offsets, strict=True):
        out[tp] = max(out.get(tp, -1), offset + 1)
    return out


def _route(
    records: list[KafkaRecord], routes: dict[str, Route], issues: list[RowIssue]
) -> tuple[dict[str, int], dict[Route, list[KafkaRecord]]]:
    """(records per topic, records per route); records of unknown topics become `issues`."""
    topics = list(map(_TOPIC, records))
    topic_counts = dict(Counter(topics))
    routed: dict[Route, list[KafkaRecord]] = {r: [] for r in Route}
    if len(topic_counts) == 1 and topics[0] in routes:  # the usual batch: one topic
        routed[routes[topics[0]]] = list(records)
        return topic_counts, routed
    for topic, rec in zip(topics, records, strict=True):
        route = routes.get(topic)
        if route is None:
            origin = (rec.topic, rec.partition, rec.offset)
            reason = f"no handler for topic {rec.topic}"
            issues.append(RowIssue(IssueSeverity.ERROR, reason, origin, ErrorClass.UNKNOWN_TOPIC))
            continue
        routed[route].append(rec)
    return topic_counts, routed


def draft_batch(records: list[KafkaRecord], policy: BatchPolicy) -> Draft:
    """Phase A (module doc)."""
    counts = BatchCounts(messages=len(records))
    issues: list[RowIssue] = []
    offsets = next_offsets(records)
    topic_counts, routed = _route(records, policy.routes, issues)
    # The usual CDC batch decodes in one go (core.cdc_batch.cdc_frame); any other batch of a
    # route, record by record.
    decoded: dict[Route, pl.DataFrame] = {}
    for route, (model, source) in ROUTES.items():
        if source.origin == "cdc" and routed[route]:
            frame = cdc_frame(routed[route], source.name, model.decoded, model.required)
            if frame is not None:
                decoded[route] = frame
                routed[route] = []
    by_route: dict[Route, list[Change]] = {r: [] for r in Route}
    for route in Route:
        for rec in routed[route]:
            result = _decode(rec, route)
            if result is None:
                counts.tombstones += 1
            elif isinstance(result, RowIssue):
                issues.append(result)
            else:
                by_route[route].append(result)
    tables = {t: TableDraft(m) for t, m in FACT_MODELS.items()}
    _draft_trades_or_orders(tables["fact_trades"], by_route, decoded, policy)
    _draft_trades_or_orders(tables["fact_orders"], by_route, decoded, policy)
    _draft_positions(tables["fact_positions"], by_route, decoded, policy)
    _draft_events(tables["fact_risk_snapshots"], by_route[Route.RISK_EVENTS], policy)
    _draft_events(tables["fact_quotes"], by_route[Route.QUOTE_EVENTS], policy)
    return Draft(
        records=dict(zip(map(_COORDINATES, records), records, strict=True)),
        offsets=offsets,
        watermarks=_watermarks(by_route, decoded),
        topic_counts=topic_counts,
        tables=tables,
        issues=issues,
        counts=counts,
        needs=_needs(tables, policy),
    )


def _draft_trades_or_orders(
    t: TableDraft,
    by_route: dict[Route, list[Change]],
    decoded: dict[Route, pl.DataFrame],
    policy: BatchPolicy,
) -> None:
    model = t.model
    cdc_route = next(s.route for s in model.sources if s.origin == "cdc")
    event_route = next((s.route for s in model.sources if s.origin == "event"), None)
    changes = by_route[cdc_route]
    upserts = [c for c in changes if c.op != "d"]
    cdc = None
    if cdc_route in decoded:
        cdc = decoded[cdc_route]
    elif upserts:
        cdc = _frame(model, cdc_route, upserts)
    if cdc is not None:
        cdc, t.pending, t.toast_names = _split_pending(cdc)
    events = None
    if event_route is not None and by_route[event_route]:
        events = _frame(model, event_route, by_route[event_route])
    deletes = [c for c in changes if c.op == "d"]
    if deletes:
        t.deletes, t.issues = _delete_frame(model, deletes)
    t.rows, checked = check_trades_or_orders(model, cdc, events, policy)
    t.issues += checked


def _draft_positions(
    t: TableDraft,
    by_route: dict[Route, list[Change]],
    decoded: dict[Route, pl.DataFrame],
    policy: BatchPolicy,
) -> None:
    frame = decoded.get(Route.POSITIONS_CDC)
    if frame is None and by_route[Route.POSITIONS_CDC]:
        frame = _frame(t.model, Route.POSITIONS_CDC, by_route[Route.POSITIONS_CDC])
    if frame is None:
        return
    frame, t.pending, t.toast_names = _split_pending(mark_carried(frame, t.model))
    if not frame.is_empty():
        t.rows, t.issues, t.tombstones = check_positions(frame, policy)


def _draft_events(t: TableDraft, changes: list[Change], policy: BatchPolicy) -> None:
    """Risk snapshots and quotes: domain events only, never TOASTed."""
    if not changes:
        return
    route = t.model.sources[0].route
    frame = _frame(t.model, route, changes)
    tz, cutoff, roll = policy.timezone, policy.cutoff, policy.weekend_roll
    if t.model.table == "fact_risk_snapshots":
        frame = facts.transform_risk(frame, tz, cutoff, weekend_roll=roll)
        t.rows, t.issues = validate(frame, t.model.table, t.model.dedup_key, policy.rules)
        return
    # quotes: the catalogue's ERROR rules of fact_quotes set `_error` (core.facts.transform_quotes);
    # WARNING rules, if any are configured, are recorded like every table's
    frame = facts.transform_quotes(frame, tz, cutoff, weekend_roll=roll, rules=policy.rules)
    t.issues = rejections(
        frame.filter(pl.col("_error").is_not_null()), "fact_quotes", ErrorClass.INVALID_VALUE
    )
    valid = frame.filter(pl.col("_error").is_null())
    warning_rules = [r for r in policy.rules if r.table == "fact_quotes" and r.severity is Severity.WARNING]
    if warning_rules and not valid.is_empty():
        valid, _ = facts.check(valid, "fact_quotes", warning_rules)
        t.issues += _warnings(valid, "fact_quotes", t.model.key)
        valid = valid.drop(ERRORS_COLUMN, WARNINGS_COLUMN, FAILED_RULES_COLUMN)
    t.rows = valid


def member_ids(frame: pl.DataFrame, model: FactModel) -> dict[str, set[str]]:
    """Distinct non-null natural ids per dimension referenced by fact rows."""
    out: dict[str, set[str]] = {}
    for ref in model.dims:
        if ref.column in frame.columns:
            ids = frame.get_column(ref.column).drop_nulls().unique().cast(pl.String).to_list()
            out.setdefault(ref.dimension, set()).update(ids)
    return out


def _needs(tables: dict[str, TableDraft], policy: BatchPolicy) -> Needs:
    needs = Needs()
    members: dict[str, set[str]] = {}
    for t in tables.values():
        model = t.model
        for frame in (t.rows, t.pending):
            if frame is None or frame.is_empty():
                continue
            needs.dimensions.update(model.dimension_names)
            for dim, ids in member_ids(frame, model).items():
                members.setdefault(dim, set()).update(ids)
        if t.pending is not None:
            key = model.toast["id"]
            needs.stored.append(
                StoredNeed(
                    model.table,
                    key,
                    tuple(model.toast.get(n, n) for n in t.toast_names),
                    tuple(t.pending.get_column("id").unique().to_list()),
                )
            )
    needs.members = {dim: sorted(ids) for dim, ids in members.items()}
    quotes = tables["fact_quotes"].rows
    if policy.sampling and quotes is not None and not quotes.is_empty():
        needs.sampler = sampler_keys(quotes)
    return needs
