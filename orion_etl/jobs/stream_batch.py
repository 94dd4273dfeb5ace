"""One micro-batch: route records by topic, decode, transform, check, sample -> a `BatchWrite`.

Pure transformations come from `orion_etl.core`; the only reads are the two the batch needs from
the warehouse (stored values behind TOAST placeholders, quote sampler state), both through the
loader. Every record of the batch ends in exactly one place: a fact upsert/delete, a dead letter,
an acknowledged tombstone, a superseded/sampled-out change, and its offset is always committed.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

import polars as pl

from orion_etl.adapters.dimension_lookup import existing_ids
from orion_etl.adapters.dlq import DeadLetter, letter_id
from orion_etl.adapters.warehouse_loader import (
    FACT_SPECS,
    BatchWrite,
    Rejection,
    TopicPartition,
    WarehouseLoader,
)
from orion_etl.config.dq import build_catalog
from orion_etl.config.models import OrionSettings
from orion_etl.core import dimension_gate, facts
from orion_etl.core.cdc_batch import cdc_frame
from orion_etl.core.columns import to_frame
from orion_etl.core.dead_letter_classes import DecodeError, ErrorClass
from orion_etl.core.envelopes import decode_cdc, decode_event
from orion_etl.core.quality import ERRORS_COLUMN, WARNINGS_COLUMN
from orion_etl.core.records import UNAVAILABLE, Change, KafkaRecord, Kind, Tombstone
from orion_etl.core.sampling import SamplerKey, SamplerState, sample_quotes, sampler_keys

log = logging.getLogger(__name__)
_LABEL_RE = re.compile(r"^\[([^\]]+)\]")


class Route(StrEnum):
    """What a topic carries."""

    TRADES_CDC = "trades_cdc"
    ORDERS_CDC = "orders_cdc"
    TRADE_EVENTS = "trade_events"
    QUOTE_EVENTS = "quote_events"
    POSITIONS_CDC = "positions_cdc"
    RISK_EVENTS = "risk_events"


CDC_TABLE = {Route.TRADES_CDC: "trades", Route.ORDERS_CDC: "orders", Route.POSITIONS_CDC: "positions"}
EVENT_TYPE = {
    Route.TRADE_EVENTS: "trade.executed",
    Route.QUOTE_EVENTS: "quote.received",
    Route.RISK_EVENTS: "risk.snapshot",
}
FACT_COLUMNS = {
    Route.TRADES_CDC: (facts.TRADE_COLUMNS, facts.TRADE_REQUIRED),
    Route.ORDERS_CDC: (facts.ORDER_COLUMNS, facts.ORDER_REQUIRED),
    Route.POSITIONS_CDC: (facts.POSITION_ROW_COLUMNS, facts.POSITION_ROW_REQUIRED),
}
FACT_TABLE = {
    Route.TRADES_CDC: "fact_trades",
    Route.TRADE_EVENTS: "fact_trades",
    Route.ORDERS_CDC: "fact_orders",
    Route.QUOTE_EVENTS: "fact_quotes",
    Route.POSITIONS_CDC: "fact_positions",
    Route.RISK_EVENTS: "fact_risk_snapshots",
}
# Source column -> fact column where the names differ (for TOAST placeholder look-ups).
TOAST_MAP = {
    "fact_trades": {"id": "trade_id"},
    "fact_orders": {"id": "order_id", "status": "final_status", "created_at": "order_date"},
    "fact_positions": {"id": "position_id", "updated_at": "changed_at"},
}
# Columns a position delete takes from the position's previous change when its before image
# lacks them (a source table without REPLICA IDENTITY FULL sends only the key).
POSITION_CARRIED = [
    "tenant_id", "client_id", "instrument_id", "quantity", "avg_price", "realized_pnl",
    "unrealized_pnl", "opened_at",
]  # fmt: skip


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


@dataclass
class PreparedBatch:
    """A batch ready to commit, and what happened to each record."""

    write: BatchWrite
    letters: list[DeadLetter] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    latencies_ts_ms: list[int] = field(default_factory=list)
    topic_counts: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    # The batch's records by origin, for rows PostgreSQL refuses at commit time (their letters
    # re-publish the record verbatim), and those letters (set by the commit, `rejected_letters`).
    records: dict[tuple[str, int, int], KafkaRecord] = field(default_factory=dict)
    rejected: list[DeadLetter] = field(default_factory=list)


def _rule_names(labels: list[str]) -> str:
    return ",".join(m.group(1) for label in labels if (m := _LABEL_RE.match(label)))


def _raw_text(record: KafkaRecord) -> str:
    if record.value is None:
        return ""
    return record.value[:4000].decode("utf-8", errors="replace")


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if not k.startswith("_") and k != "_pos_sort"}


def _watermarks(
    by_route: dict[Route, list[Change]], decoded: dict[Route, pl.DataFrame]
) -> dict[str, tuple[int | None, int | None]]:
    """Per source table: the highest LSN and source commit time (ms) among the batch's CDC changes."""
    out: dict[str, tuple[int | None, int | None]] = {}
    for route, table in CDC_TABLE.items():
        lsns = [c.lsn for c in by_route[route] if c.lsn is not None]
        times = [c.ts_ms for c in by_route[route] if c.ts_ms is not None]
        frame = decoded.get(route)
        if frame is not None and not frame.is_empty():
            lsn, ts = frame.select(pl.col("_lsn").max(), pl.col("_ts_ms").max()).row(0)
            lsns += [lsn] if lsn is not None else []
            times += [ts] if ts is not None else []
        if lsns or times:
            out[table] = (max(lsns) if lsns else None, max(times) if times else None)
    return out


class BatchPreparer:
    """Turns records into a `BatchWrite` (stateless apart from settings and the loader)."""

    def __init__(self, settings: OrionSettings, loader: WarehouseLoader) -> None:
        self.settings = settings
        self.loader = loader
        self.routes = routes(settings)
        self._index: dict[tuple[str, int, int], KafkaRecord] = {}
        # Sampler state after the last *prepared* batch. The batch before may still be committing,
        # so the warehouse is only asked for keys this process has not seen since the cache was
        # last reset (on (re)assignment and after a failed batch).
        self.sampler_cache: dict[SamplerKey, SamplerState] = {}
        # Called before reading fact rows from the warehouse: waits for the in-flight commit.
        self.before_read: Callable[[], None] = lambda: None
        td = settings.trading_day
        self.tz, self.cutoff, self.weekend_roll = td.timezone, td.cutoff, td.weekend_roll
        # One rule engine for stream and audit: the configured catalogue (defaults + rules file +
        # inline rules); only its row-level rules apply to a batch.
        self.rules = build_catalog(settings.dq).active
        # False for a dry run: unknown dimension members are not created (their keys stay null)
        self.insert_inferred = True

    def prepare(self, records: list[KafkaRecord]) -> PreparedBatch:
        out = PreparedBatch(BatchWrite())
        # by coordinates: dead letters re-publish the original record verbatim
        self._index = {(r.topic, r.partition, r.offset): r for r in records}
        counts = dict.fromkeys(["messages", "tombstones", "dlq", "warnings", "superseded", "sampled_out"], 0)
        counts["messages"] = len(records)
        by_route: dict[Route, list[Change]] = {r: [] for r in Route}
        routed: dict[Route, list[KafkaRecord]] = {r: [] for r in Route}
        offsets: dict[TopicPartition, int] = {}
        for rec in records:
            out.topic_counts[rec.topic] = out.topic_counts.get(rec.topic, 0) + 1
            tp = (rec.topic, rec.partition)
            offsets[tp] = max(offsets.get(tp, -1), rec.offset + 1)
            route = self.routes.get(rec.topic)
            if route is None:
                out.letters.append(
                    DeadLetter(rec, ErrorClass.UNKNOWN_TOPIC, f"no handler for topic {rec.topic}")
                )
                continue
            routed[route].append(rec)
        # The usual CDC batch decodes in one go (core.cdc_batch.cdc_frame); any other batch of a
        # route, record by record.
        decoded: dict[Route, pl.DataFrame] = {}
        for route, table in CDC_TABLE.items():
            columns, required = FACT_COLUMNS[route]
            frame = cdc_frame(routed[route], table, columns, required) if routed[route] else None
            if frame is not None:
                decoded[route] = frame
                routed[route] = []
        for route, route_records in routed.items():
            for rec in route_records:
                self._decode_into(rec, route, by_route, counts, out)
        out.write.offsets = offsets
        out.write.watermarks = _watermarks(by_route, decoded)
        self._facts(out, by_route, decoded, counts)
        self._positions(out, by_route[Route.POSITIONS_CDC], decoded.get(Route.POSITIONS_CDC), counts)
        self._risk(out, by_route[Route.RISK_EVENTS], counts)
        self._quotes(out, by_route[Route.QUOTE_EVENTS], counts)
        for letter in out.letters:
            out.write.issues.append(self.issue_for(letter))
        counts["dlq"] = len(out.letters)
        counts["warnings"] = sum(1 for i in out.write.issues if i["severity"] == "WARNING")
        out.counts = counts
        out.records, self._index = self._index, {}
        return out

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

    def _decode_into(
        self,
        rec: KafkaRecord,
        route: Route,
        by_route: dict[Route, list[Change]],
        counts: dict[str, int],
        out: PreparedBatch,
    ) -> None:
        """Decode one record onto its route, or count it as a tombstone, or dead-letter it."""
        try:
            if route in CDC_TABLE:
                change = decode_cdc(rec)
                if change.table is not None and change.table != CDC_TABLE[route]:
                    raise DecodeError(
                        ErrorClass.UNKNOWN_TOPIC,
                        f"change of table {change.table!r} on the {CDC_TABLE[route]} topic",
                    )
            else:
                change = decode_event(rec, EVENT_TYPE[route])
        except Tombstone:
            counts["tombstones"] += 1
            return
        except DecodeError as exc:
            out.letters.append(DeadLetter(rec, exc.error_class, exc.message, source_table=FACT_TABLE[route]))
            return
        by_route[route].append(change)

    # --- trades and orders -----------------------------------------------------------------

    def _facts(
        self,
        out: PreparedBatch,
        by_route: dict[Route, list[Change]],
        decoded: dict[Route, pl.DataFrame],
        counts: dict[str, int],
    ) -> None:
        deletes: list[pl.DataFrame] = []
        specs = (
            ("fact_trades", "trade_id", Route.TRADES_CDC, Route.TRADE_EVENTS, facts.TRADE_COLUMNS,
             facts.TRADE_REQUIRED, facts.transform_trades),
            ("fact_orders", "order_id", Route.ORDERS_CDC, None, facts.ORDER_COLUMNS,
             facts.ORDER_REQUIRED, facts.transform_orders),
        )  # fmt: skip
        for table, key, cdc_route, event_route, columns, required, transform in specs:
            cdc = by_route[cdc_route]
            upserts = [c for c in cdc if c.op != "d"]
            frames: list[pl.DataFrame] = []
            if upserts or cdc_route in decoded:
                frame = decoded[cdc_route] if cdc_route in decoded else to_frame(upserts, columns, required)
                frame = self._fill_unavailable(frame, table)
                frames.append(transform(frame, "cdc", self.tz, self.cutoff, weekend_roll=self.weekend_roll))
            if event_route is not None and by_route[event_route]:
                frame = to_frame(by_route[event_route], columns, required, rename=facts.TRADE_EVENT_RENAME)
                frames.append(transform(frame, "event", self.tz, self.cutoff, weekend_roll=self.weekend_roll))
            dels = self._delete_frame([c for c in cdc if c.op == "d"], table, key, out)
            valid = (
                self._validate(pl.concat(frames, how="diagonal_relaxed"), table, key, out) if frames else None
            )
            if valid is not None:
                valid = self._dimension_keys(self._gate_dimensions(valid, table, out), table, out)
            # Upserts and deletes are deduplicated separately and both applied (upsert first, then the
            # delete, each guarded by position): the warehouse then ends the same whether a create and
            # its delete arrive in one batch or in two, which keeps crash/restart runs identical.
            for part in (valid, dels):
                if part is None or part.is_empty():
                    continue
                latest, superseded = facts.latest_per_key(part, key)
                counts["superseded"] += superseded
                out.latencies_ts_ms.extend(latest.get_column("_ts_ms").drop_nulls().to_list())
                if part is dels:
                    deletes.append(
                        latest.select(
                            pl.lit(table).alias("fact_table"),
                            pl.col(key).alias("natural_key"),
                            *facts.POSITION_COLUMNS,
                            pl.col("_topic").alias("src_topic"),  # origin (a refused row's letter)
                            pl.col("_partition").alias("src_partition"),
                            pl.col("_offset").alias("src_offset"),
                        )
                    )
                    continue
                ups = latest.with_columns(
                    pl.col("_topic").alias("src_topic"),
                    pl.col("_partition").alias("src_partition"),
                    pl.col("_offset").alias("src_offset"),
                )
                setattr(out.write, "trades" if table == "fact_trades" else "orders", ups)
                out.write.payloads[table] = self.loader.copy_payload(table, ups)
        if deletes:
            out.write.deletes = pl.concat(deletes, how="vertical_relaxed")

    def _delete_frame(
        self, changes: list[Change], table: str, key: str, out: PreparedBatch
    ) -> pl.DataFrame | None:
        if not changes:
            return None
        frame = to_frame(changes, {"id": Kind.UUID}, ("id",))
        bad = frame.filter(pl.col("_error").is_not_null())
        self._letters_from(bad, changes, table, ErrorClass.INVALID_VALUE, out)
        good = frame.filter(pl.col("_error").is_null())
        return good.with_columns(pl.col("id").alias(key), *facts.positions("cdc"))

    def _validate(self, frame: pl.DataFrame, table: str, key: str, out: PreparedBatch) -> pl.DataFrame:
        """Dead-letter rows that did not convert or fail an ERROR rule; record WARNING issues."""
        invalid = frame.filter(pl.col("_error").is_not_null())
        self._letters_from(invalid, None, table, ErrorClass.INVALID_VALUE, out)
        valid, failed = facts.check(frame.filter(pl.col("_error").is_null()), table, self.rules)
        self._letters_from(failed, None, table, ErrorClass.RULE, out)
        warned = valid.filter(pl.col(WARNINGS_COLUMN).list.len() > 0)
        for row in warned.select(key, "_topic", "_partition", "_offset", WARNINGS_COLUMN).iter_rows():
            record_id, topic, partition, offset, labels = row
            for label in labels:
                out.write.issues.append(
                    {
                        "source_table": table,
                        "record_id": record_id,
                        "rule_name": _rule_names([label]) or "rule",
                        "severity": "WARNING",
                        "error_message": label,
                        "origin": {"topic": topic, "partition": partition, "offset": offset},
                    }
                )
        return valid.with_columns(pl.lit("u").alias("_op")).drop(
            [c for c in (ERRORS_COLUMN, WARNINGS_COLUMN, "_dq_failed_rules") if c in valid.columns]
        )

    def _letters_from(
        self,
        frame: pl.DataFrame,
        _changes: list[Change] | None,
        table: str,
        error_class: ErrorClass,
        out: PreparedBatch,
    ) -> None:
        if frame.is_empty():
            return
        records = self._index
        for row in frame.iter_rows(named=True):
            rec = records[(row["_topic"], row["_partition"], row["_offset"])]
            if error_class is ErrorClass.RULE:
                labels = row[ERRORS_COLUMN]
                message, rule = "; ".join(labels), _rule_names(labels)
            else:
                message = row["_error"]
                rule = _rule_names([message])
            cls = ErrorClass.RULE if rule and error_class is ErrorClass.INVALID_VALUE else error_class
            record_id = row.get("trade_id") or row.get("order_id") or row.get("position_id") or row.get("id")
            if record_id is None and row.get("client_id") is not None:
                record_id = row["client_id"]  # a risk snapshot: the client it is about
            out.letters.append(DeadLetter(rec, cls, message, rule, table, record_id))

    def _gate_dimensions(self, frame: pl.DataFrame, table: str, out: PreparedBatch) -> pl.DataFrame:
        """`stream.missing_dimension = "dlq"`: dead-letter rows whose ids have no dimension row."""
        if self.settings.stream.missing_dimension != "dlq" or frame.is_empty():
            return frame
        found = existing_ids(self.loader.open_reader(), dimension_gate.wanted_ids(frame, table))
        kept, missing = dimension_gate.split_missing(frame, table, found)
        self._letters_from(missing, None, table, ErrorClass.MISSING_DIMENSION, out)
        return kept

    def _dimension_keys(self, frame: pl.DataFrame, table: str, out: PreparedBatch) -> pl.DataFrame:
        """Add the point-in-time dimension keys (inferred members first, unless a dry run)."""
        if frame.is_empty():
            return frame
        spec = FACT_SPECS[table]
        return self.loader.dimension_keys(
            frame,
            spec.dims,
            spec.time_column,
            insert_inferred=self.insert_inferred,
            epochs=out.write.dim_epochs,
        )

    def _fill_unavailable(self, frame: pl.DataFrame, table: str) -> pl.DataFrame:
        """Replace TOAST placeholders by the previous value: earlier in the batch, else stored."""
        if frame.is_empty() or frame.get_column("_unavailable").list.len().sum() == 0:
            return frame
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
        pending = frame.filter(pl.col("_unavailable").list.len() > 0)
        if pending.is_empty():
            return frame
        mapping = TOAST_MAP[table]
        fact_cols = [mapping.get(n, n) for n in names]
        self.before_read()
        stored = self.loader.stored_values(
            table, mapping["id"], fact_cols, pending.get_column("id").unique().to_list()
        )
        if stored.is_empty():
            return frame
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
        log.debug("filled %s TOAST placeholder row(s) from the warehouse", pending.height)
        return frame.drop([f"_stored_{n}" for n in names])

    # --- positions and risk snapshots ----------------------------------------------------------

    def _positions(
        self, out: PreparedBatch, changes: list[Change], decoded: pl.DataFrame | None, counts: dict[str, int]
    ) -> None:
        """Every change of a position becomes a history row (fact_positions, see V050).

        Deletes are history rows too (`is_deleted`, P&L-neutral); their before image is completed
        from the position's previous change when the source sends only the key.
        """
        table = "fact_positions"
        columns, required = FACT_COLUMNS[Route.POSITIONS_CDC]
        if decoded is not None:
            frame = decoded
        elif changes:
            frame = to_frame(changes, columns, required)
        else:
            return
        is_delete = pl.col("_op") == "d"
        carried = [pl.when(is_delete & pl.col(c).is_null()).then(pl.lit(c)) for c in POSITION_CARRIED]
        frame = frame.with_columns(
            pl.concat_list(pl.col("_unavailable"), pl.concat_list(carried).list.drop_nulls())
            .list.unique(maintain_order=True)
            .alias("_unavailable")
        )
        frame = facts.transform_positions(
            self._fill_unavailable(frame, table), self.tz, self.cutoff, weekend_roll=self.weekend_roll
        )
        deletes = frame.filter(pl.col("is_deleted") & pl.col("_error").is_null())
        unknown = deletes.filter(
            pl.any_horizontal(pl.col(c).is_null() for c in ("tenant_id", "client_id", "instrument_id"))
        )
        if not unknown.is_empty():
            # a delete of a position never loaded, without a full before image: nothing to record
            counts["tombstones"] += unknown.height
            deletes = deletes.join(unknown.select("_topic", "_partition", "_offset"),
                                   on=["_topic", "_partition", "_offset"], how="anti")  # fmt: skip
        upserts = frame.filter(~pl.col("is_deleted") | pl.col("_error").is_not_null())
        valid = self._validate(upserts, table, "position_id", out) if not upserts.is_empty() else None
        parts = [p for p in (valid, deletes.with_columns(pl.lit("d").alias("_op"))) if p is not None]
        rows = pl.concat(parts, how="diagonal_relaxed") if parts else None
        if rows is None or rows.is_empty():
            return
        rows = self._dimension_keys(self._gate_dimensions(rows, table, out), table, out)
        if rows.is_empty():
            return
        # one row per change: a change delivered twice in a batch is written once
        unique = rows.unique(
            subset=["position_id", "src_commit_lsn", "src_lsn"], keep="last", maintain_order=True
        )
        counts["superseded"] += rows.height - unique.height
        out.latencies_ts_ms.extend(unique.get_column("_ts_ms").drop_nulls().to_list())
        out.write.positions = unique.with_columns(
            pl.col("_topic").alias("src_topic"),
            pl.col("_partition").alias("src_partition"),
            pl.col("_offset").alias("src_offset"),
        )

    def _risk(self, out: PreparedBatch, changes: list[Change], counts: dict[str, int]) -> None:
        """`risk.snapshot` events -> fact_risk_snapshots rows, the newest per (client, time)."""
        if not changes:
            return
        table = "fact_risk_snapshots"
        frame = to_frame(changes, facts.RISK_COLUMNS, facts.RISK_REQUIRED, rename=facts.RISK_EVENT_RENAME)
        frame = facts.transform_risk(frame, self.tz, self.cutoff, weekend_roll=self.weekend_roll)
        valid = self._validate(frame, table, "_risk_key", out)
        valid = self._dimension_keys(self._gate_dimensions(valid, table, out), table, out)
        if valid.is_empty():
            return
        latest, superseded = facts.latest_per_key(valid, "_risk_key")
        counts["superseded"] += superseded
        out.latencies_ts_ms.extend(latest.get_column("_kafka_ts_ms").drop_nulls().to_list())
        out.write.risk = latest.with_columns(
            pl.col("_topic").alias("src_topic"),
            pl.col("_partition").alias("src_partition"),
            pl.col("_offset").alias("src_offset"),
        )

    # --- quotes --------------------------------------------------------------------------------

    def _quotes(self, out: PreparedBatch, changes: list[Change], counts: dict[str, int]) -> None:
        if not changes:
            return
        frame = to_frame(changes, facts.QUOTE_COLUMNS, facts.QUOTE_REQUIRED, rename=facts.QUOTE_EVENT_RENAME)
        frame = facts.transform_quotes(frame, self.tz, self.cutoff, weekend_roll=self.weekend_roll)
        self._letters_from(frame.filter(pl.col("_error").is_not_null()), None, "fact_quotes",
                           ErrorClass.INVALID_VALUE, out)  # fmt: skip
        valid = self._gate_dimensions(frame.filter(pl.col("_error").is_null()), "fact_quotes", out)
        st = self.settings.stream
        keys = sampler_keys(valid) if not valid.is_empty() else []
        missing = [k for k in keys if k not in self.sampler_cache]
        state = {k: self.sampler_cache[k] for k in keys if k in self.sampler_cache}
        if missing:
            state.update(self.loader.sampler_state(missing))
        kept, updated = sample_quotes(
            valid, state, st.quote_sample_every, Decimal(str(st.quote_spread_change_bps))
        )
        self.sampler_cache.update(updated)
        counts["sampled_out"] += valid.height - kept.height
        out.write.sampler_state = updated
        if not kept.is_empty():
            out.write.quotes = self._dimension_keys(kept, "fact_quotes", out).with_columns(
                pl.col("_topic").alias("src_topic"),
                pl.col("_partition").alias("src_partition"),
                pl.col("_offset").alias("src_offset"),
            )
        out.latencies_ts_ms.extend(valid.get_column("_kafka_ts_ms").drop_nulls().to_list())

    # --- issues ----------------------------------------------------------------------------------

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
