"""Warehouse side of the streaming loader: one transaction per micro-batch.

This is phase D of a micro-batch (`orion_etl.jobs.stream_batch`): the batch arrives planned, its
dimension keys resolved and inferred members written (`orion_etl.adapters.batch_lookup`, while
the previous batch commits). Inside one transaction, in this order:

1. claim the Kafka positions of the batch in `etl_consumer_offsets` (compare-and-set against the
   positions this process started from: a process that lost its partitions in a rebalance cannot
   commit over the new owner; it gets `FencedError` and re-seeks);
2. facts: rows whose key has neither a fact row nor a tombstone are COPYed straight into the fact
   table; the others are COPYed into a temp staging table and upserted set-based, guarded by the
   source position (an older change never overwrites a newer one; a versioned tombstone of a
   delete blocks older changes too);
3. deletes: tombstones + soft delete; quotes: INSERT .. ON CONFLICT DO NOTHING on their Kafka
   coordinates; quote sampler state; position history (new changes inserted, P&L deltas chained,
   see `_positions`); risk snapshots (guarded upsert per client and time); data-quality issues;
   the CDC watermarks per source table (`etl_cdc_watermarks`: highest LSN and source commit time
   read, one statement, never moving back);
4. COMMIT. The rows, the issues, the sampler state and the positions become visible together, so
   a crash at any instant neither loses nor double-counts.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache, partial
from typing import Any, Protocol

import polars as pl
import psycopg
from psycopg import sql

from orion_etl.adapters import fact_rekey, positions
from orion_etl.adapters.copy_data import CopyData, column_types, csv_data, encode_copy
from orion_etl.adapters.positions import FencedError, Floors  # noqa: F401 - re-exported
from orion_etl.adapters.postgres import close_connection, connect
from orion_etl.config.models import WarehouseSettings
from orion_etl.core.fact_model import (
    FACT_MODELS,
    LINEAGE,
    ORDERS,
    POSITION,
    POSITIONS,
    QUOTES,
    RISK,
    TRADES,
    FactModel,
)
from orion_etl.core.pgtext import pg_json, storable
from orion_etl.core.sampling import SamplerKey, SamplerState
from orion_etl.sqlfiles import read_sql

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]

# What each fact table loads: the fact model (orion_etl.core.fact_model) is the one description.
FactSpec = FactModel

FACT_SPECS = FACT_MODELS
QUOTE_FACT_COLUMNS = list(QUOTES.columns)
POSITION_FACT_COLUMNS = list(POSITIONS.columns)
RISK_FACT_COLUMNS = list(RISK.columns)
DQ_COLUMNS = [
    "job_run_id", "source_table", "record_id", "rule_name", "severity", "error_message",
    "record_data", "origin",
]  # fmt: skip


def pos(alias: str) -> sql.Composed:
    """The comparable source position of a row: origin rank, commit LSN, LSN, event version, time.

    CDC ranks above domain events: the database change is the record, an event is a low-latency
    preview of it; within an origin the natural order applies. NULLs sort first.
    """
    a = sql.Identifier(alias)
    return sql.SQL(
        "ROW(({a}.src_origin = 'cdc')::int, COALESCE({a}.src_commit_lsn, -1), COALESCE({a}.src_lsn, -1), "
        "COALESCE({a}.src_event_version, -1), COALESCE({a}.src_event_ts, '-infinity'::timestamptz))"
    ).format(a=a)


@dataclass
class BatchWrite:
    """Everything one micro-batch writes."""

    trades: pl.DataFrame | None = None
    orders: pl.DataFrame | None = None
    deletes: pl.DataFrame | None = None  # fact_table, natural_key, position columns
    quotes: pl.DataFrame | None = None
    positions: pl.DataFrame | None = None  # fact_positions history rows (one per change)
    risk: pl.DataFrame | None = None  # fact_risk_snapshots rows, newest per (client, time)
    sampler_state: dict[SamplerKey, SamplerState] = field(default_factory=dict)
    issues: list[dict[str, Any]] = field(default_factory=list)
    # COPY data of all `trades` / `orders` rows by fact table (WarehouseLoader.copy_payload),
    # encoded by the preparing thread so the commit thread only sends it (when all rows are new)
    payloads: dict[str, CopyData] = field(default_factory=dict)
    offsets: dict[TopicPartition, int] = field(default_factory=dict)  # next offset to read
    # dimension -> `etl_dim_key_epoch` read before the keys of this batch were resolved (the
    # smallest, when read more than once); a dimension missing here counts as changed
    dim_epochs: dict[str, int] = field(default_factory=dict)
    # source table -> (highest LSN, highest source commit time in ms) of the batch's CDC changes
    watermarks: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)


@dataclass
class LoadCounts:
    """What a committed batch changed."""

    upserted: int = 0
    stale: int = 0
    duplicates: int = 0
    deleted: int = 0
    quotes: int = 0
    issues: int = 0
    rekeyed: int = 0  # facts re-keyed because a dims sync changed versions during the batch
    positions: int = 0  # position changes added to the history
    risk: int = 0  # risk snapshots written
    side_rows_dropped: int = 0  # sampler / issue rows PostgreSQL refused (logged, left out)
    rejections: list[Rejection] = field(default_factory=list)  # fact rows PostgreSQL refused

    def add(self, other: LoadCounts) -> None:
        for name, value in vars(other).items():
            setattr(self, name, getattr(self, name) + value)


# SQLSTATEs that belong to the data, not to the infrastructure: class 22 (data exception: invalid
# text representation, numeric overflow, value too long, untranslatable character, JSON errors),
# class 23 (integrity constraint violation: not null, foreign key, unique, check, exclusion) and
# 54000 (program limit exceeded: e.g. an index row or a value too large). Connection loss (08),
# operator intervention (57), insufficient resources (53), permission (42501), a missing table
# (42P01) and the rest are the infrastructure's or the code's: the batch is retried or the run stops.
DATA_SQLSTATE_CLASSES = ("22", "23")
DATA_SQLSTATES = frozenset({"54000"})


def is_data_rejection(exc: BaseException) -> bool:
    """Whether PostgreSQL refused a statement because of the values it was given."""
    if isinstance(exc, psycopg.DataError):  # class 22, or psycopg refusing a value (a NUL) itself
        return True
    state = exc.sqlstate if isinstance(exc, psycopg.Error) else None
    return state is not None and (state[:2] in DATA_SQLSTATE_CLASSES or state in DATA_SQLSTATES)


@dataclass(frozen=True)
class Rejection:
    """One row PostgreSQL refused, isolated: where it came from and PostgreSQL's reason."""

    part: str  # the table: fact_trades | fact_orders (upserts and deletes) | fact_quotes | sampler | issues
    topic: str | None
    partition: int | None
    offset: int | None
    sqlstate: str
    error: str  # PostgreSQL's message (one line, with its detail)
    key: str | None = None  # the fact's natural key, when it has one


class CommitHooks(Protocol):
    """What the consumer does inside a batch's transaction (dead letters, their floors)."""

    def floors(self) -> dict[str, Floors] | None:
        """DLQ floors to store with the positions, by consumed topic (positions.claim)."""

    def rejected(self, rejections: list[Rejection]) -> list[dict[str, Any]]:
        """Fact rows PostgreSQL refused; returns the issue rows to write for them."""

    def before_commit(self) -> None:
        """Everything is written; the transaction commits when this returns (publish letters)."""


def _describe(exc: psycopg.Error) -> str:
    diag = exc.diag
    parts = [diag.message_primary or str(exc), diag.message_detail or ""]
    text = " ".join(" ".join(p for p in parts if p).split())
    return f"SQLSTATE {exc.sqlstate}: {text}"[:1000]


_COPY_LINE = re.compile(r"^COPY \S+, line (\d+)")


def _split(rows: Any, exc: psycopg.Error) -> list[Any]:
    """`rows` in smaller pieces: around the COPY line PostgreSQL named, else two halves."""
    n = len(rows)
    m = _COPY_LINE.match(exc.diag.context or "")
    line = int(m.group(1)) if m else 0
    if 1 <= line <= n and n > 1:
        pieces = [rows[: line - 1], rows[line - 1 : line], rows[line:]]
    else:
        pieces = [rows[: n // 2], rows[n // 2 :]]
    return [p for p in pieces if len(p)]


def _rejection(part: str, row: Any, exc: psycopg.Error) -> Rejection:
    """The `Rejection` of a one-row piece (a frame with origin columns, or a list item)."""
    topic = partition = offset = key = None
    if isinstance(row, pl.DataFrame):
        first = row.row(0, named=True)
        topic = first.get("src_topic", first.get("_topic"))
        partition = first.get("src_partition", first.get("_partition"))
        offset = first.get("src_offset", first.get("_offset"))
        key = first.get("trade_id") or first.get("order_id") or first.get("natural_key")
        part = first.get("fact_table", part)  # a delete: the table it deletes from
    elif part == "issues":
        origin = row[0].get("origin") or {}
        topic, partition, offset = origin.get("topic"), origin.get("partition"), origin.get("offset")
    return Rejection(part, topic, partition, offset, exc.sqlstate or "", _describe(exc), key)


# The tables the loader COPYs into (directly or through a staging table of the same columns).
COPY_TABLES = ("fact_trades", "fact_orders", "fact_quotes", "fact_positions", "fact_risk_snapshots",
               "etl_fact_tombstones")  # fmt: skip
# What PostgreSQL says when binary COPY data does not match the column types: a fault of the
# encoding (the table changed under the loader, say), never of the rows.
BINARY_FORMAT_SQLSTATES = frozenset({"22P03", "08P01"})  # invalid_binary_representation, protocol


def _copy_target(table: str) -> str:
    """The table whose column types a COPY into `table` (maybe a staging table) must match."""
    if table == "stg_deletes":
        return "etl_fact_tombstones"
    return table.removeprefix("stg_")


class WarehouseLoader:
    """Owns the loader's warehouse connection and temp staging tables."""

    def __init__(self, settings: WarehouseSettings, group: str) -> None:
        self.settings = settings
        self.group = group
        self.conn: psycopg.Connection | None = None
        self.reader: psycopg.Connection | None = None
        # Fact tables whose last batch had only new keys: the next one is COPYed without first
        # looking its keys up in the fact table (a duplicate then fails the COPY, see commit_batch).
        self.appending: set[str] = {"fact_trades", "fact_orders"}
        self._part = ""  # the part of the batch being written (where a refused batch failed)
        self._isolating = False  # (staging tables are emptied before each piece)
        # table -> column -> type name, for binary COPY (read when a connection opens; until then,
        # and with copy_format = "csv", rows go as CSV)
        self.binary = settings.copy_format == "binary"
        self.copy_types: dict[str, dict[str, str]] = {}

    # --- connection ----------------------------------------------------------------------

    def open(self) -> psycopg.Connection:
        """(Re)connect and create the session's staging tables."""
        if self.conn is not None and not self.conn.closed and not self.conn.broken:
            return self.conn
        self.close()
        conn = connect(self.settings)
        with conn.transaction():
            for table in (
                "fact_trades",
                "fact_orders",
                "fact_quotes",
                "fact_positions",
                "fact_risk_snapshots",
            ):
                conn.execute(
                    sql.SQL("CREATE TEMP TABLE {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS").format(
                        sql.Identifier(f"stg_{table}"), sql.Identifier(table)
                    )
                )
            conn.execute(
                "CREATE TEMP TABLE stg_deletes (LIKE etl_fact_tombstones INCLUDING DEFAULTS) "
                "ON COMMIT DELETE ROWS"
            )
            self._read_copy_types(conn)
        self.conn = conn
        return conn

    def _read_copy_types(self, conn: psycopg.Connection) -> None:
        if self.binary:
            self.copy_types = column_types(conn, COPY_TABLES)

    def close(self) -> None:
        """Close the write connection (a failed batch's retry reconnects)."""
        conn, self.conn = self.conn, None
        close_connection(conn)

    def close_all(self) -> None:
        self.close()
        self.close_reader()

    def close_reader(self) -> None:
        reader, self.reader = self.reader, None
        close_connection(reader)

    def open_reader(self) -> psycopg.Connection:
        """The read connection: batch preparation reads while the previous batch commits."""
        if self.reader is not None and not self.reader.closed and not self.reader.broken:
            return self.reader
        self.reader = connect(self.settings, autocommit=True)
        self._read_copy_types(self.reader)
        return self.reader

    # --- reads outside the batch transaction ---------------------------------------------

    def stored_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Positions stored for this group (absent: never committed)."""
        return positions.stored(self.open_reader(), self.group, partitions)

    def stored_floors(
        self, partitions: Iterable[TopicPartition]
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, tuple[int, Floors]]]:
        """Stored positions (absent: never committed), and for the DLQ recall each partition's
        (first offset that will be re-read, floor), where a floor is known."""
        return positions.stored_floors(self.open_reader(), self.group, partitions)

    def note_first_floors(self, floors: dict[TopicPartition, Floors]) -> None:
        """`positions.note_first_floors` on the (autocommit) read connection."""
        positions.note_first_floors(self.open_reader(), self.group, floors)

    # --- the batch transaction -----------------------------------------------------------

    def commit_batch(
        self,
        batch: BatchWrite,
        expected: dict[TopicPartition, int | None],
        job_run_id: str | None,
        hooks: CommitHooks | None = None,
    ) -> LoadCounts:
        """Write one batch and its positions atomically; raises `FencedError` when fenced.

        When PostgreSQL refuses the batch for a reason of the data (`is_data_rejection`), the
        refused rows are isolated (`_commit_isolating`) and the rest commits; `hooks` hear of
        them. Any other error propagates (the caller retries or stops).
        """
        try:
            try:
                return self._commit_appending(batch, expected, job_run_id, hooks)
            except psycopg.Error as exc:
                if not (self.binary and exc.sqlstate in BINARY_FORMAT_SQLSTATES):
                    raise
                # not the rows' fault: the binary data did not match the table (module copy_data)
                log.warning(
                    "PostgreSQL refused the binary COPY data (%s); this loader COPYs CSV from now on",
                    _describe(exc),
                )
                self.binary = False
                self.copy_types = {}
                return self._commit_appending(batch, expected, job_run_id, hooks)
        except psycopg.Error as exc:
            if not is_data_rejection(exc):
                raise
            log.info("PostgreSQL refused a row of the batch (%s); isolating it", _describe(exc))
            return self._commit_isolating(batch, expected, job_run_id, hooks, exc)

    def _commit_appending(
        self,
        batch: BatchWrite,
        expected: dict[TopicPartition, int | None],
        job_run_id: str | None,
        hooks: CommitHooks | None,
    ) -> LoadCounts:
        try:
            return self._commit_batch(batch, expected, job_run_id, hooks, append=True)
        except psycopg.errors.UniqueViolation:
            # A key this batch appended exists after all (an update after a run of inserts, or a
            # concurrent writer): the attempt was rolled back as a whole; all rows of this batch
            # go through the guarded upsert, and the next batches look their keys up first.
            log.debug("a fact key to append exists; loading the batch through the upsert path")
            self.appending.clear()
            return self._commit_batch(batch, expected, job_run_id, hooks, append=False)

    def _commit_batch(
        self,
        batch: BatchWrite,
        expected: dict[TopicPartition, int | None],
        job_run_id: str | None,
        hooks: CommitHooks | None,
        *,
        append: bool,
    ) -> LoadCounts:
        conn = self.open()
        counts = LoadCounts()
        with conn.transaction():
            positions.claim(conn, self.group, batch.offsets, expected, hooks.floors() if hooks else None)
            keyed = self._keyed(batch)
            moved = self._dimensions_changed(conn, batch, keyed)
            for spec, frame in keyed:
                if spec in (TRADES, ORDERS):
                    payload = batch.payloads.get(spec.table)
                    self._part = spec.table
                    counts.add(self._upsert(conn, spec, frame, append=append, payload=payload))
            if batch.deletes is not None and not batch.deletes.is_empty():
                self._part = "deletes"
                counts.add(self._deletes(conn, batch.deletes))
            if batch.quotes is not None and not batch.quotes.is_empty():
                self._part = "fact_quotes"
                counts.quotes += self._quotes(conn, batch.quotes)
            if batch.sampler_state:
                self._part = "sampler"
                self._save_sampler(conn, batch.sampler_state)
            if batch.positions is not None and not batch.positions.is_empty():
                self._part = "fact_positions"
                counts.add(self._positions(conn, batch.positions))
            if batch.risk is not None and not batch.risk.is_empty():
                self._part = "fact_risk_snapshots"
                counts.add(self._risk(conn, batch.risk))
            if batch.issues:
                self._part = "issues"
                counts.issues += self._issues(conn, batch.issues, job_run_id)
            if moved:
                # a dims sync changed versions after this batch's keys were resolved and committed
                # before this transaction locked the epochs: re-key the batch's facts (set-based)
                for spec, frame in keyed:
                    counts.rekeyed += fact_rekey.rekey_frame(conn, spec.table, moved, frame)
            if hooks:  # (dead letters: before the shared watermark rows are locked)
                hooks.before_commit()
            if batch.watermarks:  # last: its rows are shared by every loader process, lock briefly
                self._watermarks(conn, batch.watermarks)
        return counts

    @staticmethod
    def _keyed(batch: BatchWrite) -> list[tuple[FactSpec, pl.DataFrame]]:
        """The batch's non-empty frames of facts with dimension keys."""
        frames = (
            (TRADES, batch.trades),
            (ORDERS, batch.orders),
            (QUOTES, batch.quotes),
            (POSITIONS, batch.positions),
            (RISK, batch.risk),
        )
        return [(spec, frame) for spec, frame in frames if frame is not None and not frame.is_empty()]

    @staticmethod
    def _dimensions_changed(
        conn: psycopg.Connection, batch: BatchWrite, keyed: list[tuple[FactSpec, pl.DataFrame]]
    ) -> set[str]:
        """Dimensions of the batch whose versions changed since its keys were resolved.

        Locks the epoch rows FOR SHARE until the commit (before any fact row is written, so a sync
        waiting for them holds no fact row this transaction needs): a sync that has not bumped an
        epoch yet waits for this commit and then re-keys these facts itself. One short query per
        batch when nothing changed.
        """
        dims = {d for spec, _ in keyed for d in spec.dimension_names}
        if not dims:
            return set()
        now = fact_rekey.read_epochs(conn, dims, lock=True)
        return {d for d in dims if batch.dim_epochs.get(d) != now[d]}

    # --- isolating rows PostgreSQL refuses ------------------------------------------------

    def _commit_isolating(
        self,
        batch: BatchWrite,
        expected: dict[TopicPartition, int | None],
        job_run_id: str | None,
        hooks: CommitHooks | None,
        first: psycopg.Error,
    ) -> LoadCounts:
        """The batch again, each part in savepoints split until every refused row stands alone.

        One transaction, like any batch: positions, the rows PostgreSQL accepts, the issue rows of
        the refused ones (from `hooks.rejected`) and the dead letters (`hooks.before_commit`) commit
        together. Refused fact rows (trades, orders, deletes, quotes) become `Rejection`s; a refused
        side row (sampler state, DQ issue) is logged and left out so that it never blocks the facts.
        The split point is the COPY line PostgreSQL names when it names one (one bad row then
        costs a prefix, the row and a suffix), else the middle (bisection).
        """
        conn = self.open()
        counts = LoadCounts()
        failed_part, self._part = self._part, ""
        self._isolating = True
        self.appending.clear()  # an existing key must take the upsert path, not look refused
        try:
            with conn.transaction():
                conn.execute("SET CONSTRAINTS ALL IMMEDIATE")  # deferred checks fail their statement
                positions.claim(conn, self.group, batch.offsets, expected, hooks.floors() if hooks else None)
                keyed = self._keyed(batch)
                moved = self._dimensions_changed(conn, batch, keyed)
                hint = {failed_part: first}
                rejected: list[Rejection] = []
                dropped: list[Rejection] = []

                def facts(spec: FactSpec) -> Callable[[pl.DataFrame], LoadCounts]:
                    return lambda f: self._upsert(conn, spec, f)

                def quotes(f: pl.DataFrame) -> LoadCounts:
                    return LoadCounts(quotes=self._quotes(conn, f))

                def sampler(items: list[tuple[SamplerKey, SamplerState]]) -> LoadCounts:
                    self._save_sampler(conn, dict(items))
                    return LoadCounts()

                def issue_rows(part: list[dict[str, Any]]) -> LoadCounts:
                    return LoadCounts(issues=self._issues(conn, part, job_run_id))

                for spec, frame in ((TRADES, batch.trades), (ORDERS, batch.orders)):
                    if frame is not None and not frame.is_empty():
                        counts.add(self._isolate(conn, spec.table, frame, hint, rejected, facts(spec)))
                if batch.deletes is not None and not batch.deletes.is_empty():
                    write_deletes = partial(self._deletes, conn)
                    counts.add(self._isolate(conn, "deletes", batch.deletes, hint, rejected, write_deletes))
                if batch.quotes is not None and not batch.quotes.is_empty():
                    counts.add(self._isolate(conn, "fact_quotes", batch.quotes, hint, rejected, quotes))
                # (position changes: pieces are applied in order, so each position's chain is too)
                for part, frame, write in (
                    ("fact_positions", batch.positions, partial(self._positions, conn)),
                    ("fact_risk_snapshots", batch.risk, partial(self._risk, conn)),
                ):
                    if frame is not None and not frame.is_empty():
                        counts.add(self._isolate(conn, part, frame, hint, rejected, write))
                issues = list(batch.issues)
                if hooks is not None and rejected:
                    issues += hooks.rejected(rejected)
                if batch.sampler_state:
                    self._isolate(conn, "sampler", list(batch.sampler_state.items()), hint, dropped, sampler)
                if issues:
                    counts.add(self._isolate(conn, "issues", issues, hint, dropped, issue_rows))
                for d in dropped:
                    log.warning("PostgreSQL refused a %s row; it is left out: %s", d.part, d.error)
                counts.rejections = rejected
                counts.side_rows_dropped = len(dropped)
                for spec, frame in keyed if moved else []:  # refused rows are simply not there
                    counts.rekeyed += fact_rekey.rekey_frame(conn, spec.table, moved, frame)
                if hooks:
                    hooks.before_commit()
                if batch.watermarks:
                    self._watermarks(conn, batch.watermarks)
        finally:
            self._isolating = False
        return counts

    def _isolate(
        self,
        conn: psycopg.Connection,
        part: str,
        rows: Any,
        hint: dict[str, psycopg.Error],
        rejected: list[Rejection],
        write: Callable[[Any], LoadCounts],
    ) -> LoadCounts:
        """Write `rows` (a frame or a list) in savepoints, splitting what PostgreSQL refuses."""
        counts = LoadCounts()
        todo: list[Any] = []
        known = hint.pop(part, None)  # this part failed the first attempt: split at once
        if known is not None and len(rows) > 1:
            todo.extend(reversed(_split(rows, known)))
        else:
            todo.append(rows)
        while todo:
            piece = todo.pop()
            try:
                with conn.transaction():
                    counts.add(write(piece))
            except psycopg.Error as exc:
                if not is_data_rejection(exc):
                    raise
                if len(piece) > 1:
                    todo.extend(reversed(_split(piece, exc)))
                else:
                    rejected.append(_rejection(part, piece, exc))
        return counts

    def _copy(self, conn: psycopg.Connection, table: str, frame: pl.DataFrame, columns: list[str]) -> None:
        self._copy_data(conn, table, columns, self._encode(table, frame.select(columns)))

    def _encode(self, table: str, frame: pl.DataFrame) -> CopyData:
        """Binary COPY data when this loader COPYs binary and the frame allows it, else CSV.

        Rows being isolated after a refusal always go as CSV: PostgreSQL then judges each value
        exactly as it did before binary COPY existed, so a refused row's reason never depends on
        the encoding.
        """
        if not self.binary or self._isolating:
            return csv_data(frame)
        return encode_copy(frame, self.copy_types.get(_copy_target(table)))

    @staticmethod
    def _copy_data(conn: psycopg.Connection, table: str, columns: list[str], data: CopyData) -> None:
        with conn.cursor() as cur, cur.copy(data.statement(table, columns)) as copy:
            copy.write(data.data)

    def copy_payload(self, table: str, frame: pl.DataFrame) -> CopyData:
        """The COPY data of fact rows of `fact_trades` / `fact_orders`, as `_upsert` loads them."""
        return self._encode(table, frame.select(FACT_SPECS[table].load_columns))

    def _existing_keys(
        self, conn: psycopg.Connection, spec: FactSpec, keys: list[str], *, facts: bool = True
    ) -> set[str]:
        """Which natural keys have a delete tombstone, or (with `facts`) already a fact row."""
        wanted = "{" + ",".join(keys) + "}"  # canonical UUID text: a safe array literal
        # `= ANY(array)` index scans: several times faster than a per-key EXISTS over unnest
        query: sql.SQL | sql.Composed = sql.SQL(
            "SELECT natural_key::text FROM etl_fact_tombstones WHERE fact_table = %s "
            "AND natural_key = ANY(%s::uuid[])"
        )
        params: list[Any] = [spec.table, wanted]
        if facts:
            query = (
                sql.SQL("SELECT {key}::text FROM {table} WHERE {key} = ANY(%s::uuid[]) UNION ALL ").format(
                    table=sql.Identifier(spec.table), key=sql.Identifier(spec.key)
                )
                + query
            )
            params.insert(0, wanted)
        return {r[0] for r in conn.execute(query, params).fetchall()}

    def _upsert(
        self,
        conn: psycopg.Connection,
        spec: FactSpec,
        frame: pl.DataFrame,
        *,
        append: bool = True,
        payload: CopyData | None = None,
    ) -> LoadCounts:
        """Load one fact table's rows of the batch (one row per natural key, the newest change).

        Rows whose key has neither a fact row nor a tombstone are COPYed straight into the fact
        table (`append`, the common case of a stream of new trades); the others go through staging
        and a set-based upsert guarded by the source position. While batches keep bringing only
        new keys, the fact table is not even asked (`appending`): its unique index rejects an
        existing key during the COPY. That, or a concurrent writer inserting one of the "new"
        keys, fails the COPY with a unique violation; the caller then runs the batch again with
        `append=False`, and keys are looked up first until a batch is all new again.
        """
        target_cols = spec.load_columns
        written = 0
        if append:
            # After a batch of only new keys, only tombstones are looked up (the fact table's
            # unique index catches an existing key during the COPY); otherwise both.
            optimistic = spec.table in self.appending
            keys = frame.get_column(spec.key).to_list()
            existing = self._existing_keys(conn, spec, keys, facts=not optimistic)
            if not optimistic and not existing:
                self.appending.add(spec.table)  # all new again: the next batch appends directly
            if payload is not None and payload.format == "binary" and not self.binary:
                payload = None  # encoded before this loader went back to CSV
            if not existing and payload is not None:  # all new (the usual case): data encoded already
                self._copy_data(conn, spec.table, target_cols, payload)
                return LoadCounts(upserted=frame.height)
            is_new = ~pl.col(spec.key).is_in(list(existing)) if existing else pl.lit(True)
            fresh = frame.filter(is_new)
            if not fresh.is_empty():
                self._copy(conn, spec.table, fresh, target_cols)
                written = fresh.height
            frame = frame.filter(~is_new)
            if frame.is_empty():
                return LoadCounts(upserted=written)
        stage = f"stg_{spec.table}"
        self._empty_stage(conn, stage)
        self._copy(conn, stage, frame, target_cols)
        updates = [
            sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in target_cols if c != spec.key
        ]
        cur = conn.execute(
            sql.SQL(
                "INSERT INTO {table} AS f ({targets}) SELECT {selects} FROM {stage} s "
                "WHERE NOT EXISTS (SELECT 1 FROM etl_fact_tombstones t WHERE t.fact_table = {tname} "
                "AND t.natural_key = s.{key} AND {pt} >= {ps}) "
                "ON CONFLICT ({key}) DO UPDATE SET {updates}, is_deleted = false, updated_at = now() "
                "WHERE {pe} > {pf}"
            ).format(
                table=sql.Identifier(spec.table),
                targets=sql.SQL(", ").join(sql.Identifier(c) for c in target_cols),
                selects=sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(c)) for c in target_cols),
                stage=sql.Identifier(stage),
                tname=sql.Literal(spec.table),
                key=sql.Identifier(spec.key),
                pt=pos("t"),
                ps=pos("s"),
                updates=sql.SQL(", ").join(updates),
                pe=pos("excluded"),
                pf=pos("f"),
            )
        )
        upserted = max(cur.rowcount, 0)
        duplicates = 0
        if upserted < frame.height:  # some were not applied: tell replays (same position) from stale
            same = conn.execute(
                sql.SQL(
                    "SELECT count(*) FROM {stage} s JOIN {table} f USING ({key}) WHERE {ps} = {pf}"
                ).format(
                    stage=sql.Identifier(stage),
                    table=sql.Identifier(spec.table),
                    key=sql.Identifier(spec.key),
                    ps=pos("s"),
                    pf=pos("f"),
                )
            ).fetchone()
            duplicates = (int(same[0]) if same else 0) - upserted  # rows just written match too
        stale = frame.height - upserted - duplicates
        return LoadCounts(upserted=written + upserted, duplicates=duplicates, stale=stale)

    def _empty_stage(self, conn: psycopg.Connection, stage: str) -> None:
        """While isolating, a staging table may hold an earlier piece's rows of the transaction."""
        if self._isolating:
            conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(stage)))

    def _deletes(self, conn: psycopg.Connection, deletes: pl.DataFrame) -> LoadCounts:
        cols = ["fact_table", "natural_key", *POSITION]
        self._empty_stage(conn, "stg_deletes")
        self._copy(conn, "stg_deletes", deletes, cols)
        cur = conn.execute(
            sql.SQL(
                "INSERT INTO etl_fact_tombstones AS t ({cols}) SELECT {cols} FROM stg_deletes "
                "ON CONFLICT (fact_table, natural_key) DO UPDATE SET src_origin = EXCLUDED.src_origin, "
                "src_commit_lsn = EXCLUDED.src_commit_lsn, src_lsn = EXCLUDED.src_lsn, "
                "src_event_version = EXCLUDED.src_event_version, src_event_ts = EXCLUDED.src_event_ts, "
                "deleted_at = now() WHERE {pe} > {pt}"
            ).format(
                cols=sql.SQL(", ").join(sql.Identifier(c) for c in cols), pe=pos("excluded"), pt=pos("t")
            )
        )
        applied = max(cur.rowcount, 0)
        for spec in (TRADES, ORDERS):
            conn.execute(
                sql.SQL(
                    "UPDATE {table} f SET is_deleted = true, src_origin = s.src_origin, "
                    "src_commit_lsn = s.src_commit_lsn, src_lsn = s.src_lsn, "
                    "src_event_version = s.src_event_version, src_event_ts = s.src_event_ts, "
                    "updated_at = now() FROM stg_deletes s WHERE s.fact_table = {tname} "
                    "AND s.natural_key = f.{key} AND {ps} > {pf}"
                ).format(
                    table=sql.Identifier(spec.table),
                    tname=sql.Literal(spec.table),
                    key=sql.Identifier(spec.key),
                    ps=pos("s"),
                    pf=pos("f"),
                )
            )
        return LoadCounts(deleted=applied, stale=deletes.height - applied)

    def _quotes(self, conn: psycopg.Connection, quotes: pl.DataFrame) -> int:
        stage = "stg_fact_quotes"
        self._empty_stage(conn, stage)
        targets = [*QUOTE_FACT_COLUMNS, "instrument_key", "lp_key"]
        self._copy(conn, stage, quotes, targets)
        cur = conn.execute(
            sql.SQL(
                "INSERT INTO fact_quotes ({targets}) SELECT {targets} FROM {stage} ON CONFLICT DO NOTHING"
            ).format(
                targets=sql.SQL(", ").join(sql.Identifier(c) for c in targets), stage=sql.Identifier(stage)
            )
        )
        return max(cur.rowcount, 0)

    def _positions(self, conn: psycopg.Connection, rows: pl.DataFrame) -> LoadCounts:
        """Add changes to the position history and chain their realized P&L deltas.

        1. stage the batch's changes; drop those already stored (same position and source
           position: a redelivery or replay) and count them as duplicates;
        2. per position, from the change just before the batch's earliest new one, in source
           order: delta = realized_pnl - previous realized_pnl (0 for a delete; from 0 after a
           delete or for a first create; 0 for a first snapshot read, the baseline);
        3. insert the new changes with their deltas; update stored later changes whose delta the
           new ones changed (only when a change arrived out of order, e.g. a DLQ replay).
        In source order a CDC stream only appends, so step 2 reads one stored row per position.
        Two writers of the same position (the loader and a DLQ replay) take a transaction lock per
        position first, so one chains after the other's commit.
        """
        targets = [*POSITION_FACT_COLUMNS, "client_key", "instrument_key", *POSITION, *LINEAGE]
        self._empty_stage(conn, "stg_fact_positions")
        self._copy(conn, "stg_fact_positions", rows, targets)
        cur = conn.execute(
            "DELETE FROM stg_fact_positions s USING fact_positions f WHERE f.position_id = s.position_id "
            "AND f.src_commit_lsn = s.src_commit_lsn AND f.src_lsn = s.src_lsn"
        )
        duplicates = max(cur.rowcount, 0)
        if duplicates == rows.height:
            return LoadCounts(duplicates=duplicates)
        # Chains of one position are computed one transaction at a time (the loader and a DLQ
        # replay may both add changes to it): transaction locks per position, in a fixed order.
        conn.execute(
            "SELECT count(pg_advisory_xact_lock(hashtextextended('fact_positions:' || p::text, 0))) "
            "FROM (SELECT DISTINCT position_id AS p FROM stg_fact_positions ORDER BY 1) s"
        )
        conn.execute(read_position_chain_sql())
        cols = sql.SQL(", ").join(sql.Identifier(c) for c in [*targets, "realized_pnl_delta"])
        cur = conn.execute(
            sql.SQL("INSERT INTO fact_positions ({cols}) SELECT {cols} FROM stg_fact_positions").format(
                cols=cols
            )
        )
        added = max(cur.rowcount, 0)
        return LoadCounts(positions=added, upserted=added, duplicates=duplicates)

    def _risk(self, conn: psycopg.Connection, rows: pl.DataFrame) -> LoadCounts:
        """Upsert risk snapshots on (client, snapshot time), guarded by the event position."""
        targets = [*RISK_FACT_COLUMNS, "client_key", *POSITION, *LINEAGE]
        self._empty_stage(conn, "stg_fact_risk_snapshots")
        self._copy(conn, "stg_fact_risk_snapshots", rows, targets)
        updates = [
            sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c))
            for c in targets
            if c not in ("client_id", "snapshot_time")
        ]
        cur = conn.execute(
            sql.SQL(
                "INSERT INTO fact_risk_snapshots AS f ({cols}) SELECT {cols} FROM stg_fact_risk_snapshots "
                "ON CONFLICT (client_id, snapshot_time) DO UPDATE SET {updates}, updated_at = now() "
                "WHERE {pe} > {pf}"
            ).format(
                cols=sql.SQL(", ").join(sql.Identifier(c) for c in targets),
                updates=sql.SQL(", ").join(updates),
                pe=pos("excluded"),
                pf=pos("f"),
            )
        )
        written = max(cur.rowcount, 0)
        same = conn.execute(
            sql.SQL(
                "SELECT count(*) FROM stg_fact_risk_snapshots s JOIN fact_risk_snapshots f "
                "USING (client_id, snapshot_time) WHERE {ps} = {pf}"
            ).format(ps=pos("s"), pf=pos("f"))
        ).fetchone()
        duplicates = (int(same[0]) if same else 0) - written
        stale = rows.height - written - duplicates
        return LoadCounts(risk=written, upserted=written, duplicates=duplicates, stale=stale)

    def _save_sampler(self, conn: psycopg.Connection, state: dict[SamplerKey, SamplerState]) -> None:
        keys = list(state)
        cols: list[list[Any]] = [list(c) for c in zip(*keys, strict=True)]
        cols.append([state[k].seen_since_kept for k in keys])
        cols.append([state[k].last_kept_spread_bps for k in keys])
        cols.append([state[k].last_kept_offset for k in keys])
        conn.execute(
            "INSERT INTO etl_quote_sampler_state AS s (consumer_group, topic, partition, tenant_id, "
            "instrument_id, lp_id, seen_since_kept, last_kept_spread_bps, last_kept_offset) "
            "SELECT %s, * FROM unnest(%s::text[], %s::int[], %s::uuid[], %s::uuid[], %s::uuid[], %s::int[], "
            "%s::numeric[], %s::bigint[]) "
            "ON CONFLICT (consumer_group, topic, partition, tenant_id, instrument_id, lp_id) DO UPDATE SET "
            "seen_since_kept = EXCLUDED.seen_since_kept, "
            "last_kept_spread_bps = EXCLUDED.last_kept_spread_bps, "
            "last_kept_offset = EXCLUDED.last_kept_offset, updated_at = now()",
            [self.group, *cols],
        )

    @staticmethod
    def _watermarks(conn: psycopg.Connection, marks: dict[str, tuple[int | None, int | None]]) -> None:
        """Advance `etl_cdc_watermarks` (never backwards: a replay or a slower process keeps the max)."""
        tables = sorted(marks)  # one lock order for every process
        conn.execute(
            "INSERT INTO etl_cdc_watermarks AS w "
            "(source_table, last_processed_lsn, last_processed_timestamp) "
            "SELECT t, l, to_timestamp(ms / 1000.0) FROM unnest(%s::text[], %s::text[], %s::bigint[]) "
            "AS m(t, l, ms) ON CONFLICT (source_table) DO UPDATE SET "
            "last_processed_lsn = CASE WHEN w.last_processed_lsn IS NULL OR "
            "EXCLUDED.last_processed_lsn::pg_lsn > w.last_processed_lsn::pg_lsn "
            "THEN EXCLUDED.last_processed_lsn ELSE w.last_processed_lsn END, "
            "last_processed_timestamp = "
            "GREATEST(w.last_processed_timestamp, EXCLUDED.last_processed_timestamp), "
            "updated_at = now()",
            (tables, [lsn_text(marks[t][0]) for t in tables], [marks[t][1] for t in tables]),
        )

    def _issues(self, conn: psycopg.Connection, issues: list[dict[str, Any]], job_run_id: str | None) -> int:
        stmt = sql.SQL("COPY etl_data_quality_issues ({}) FROM STDIN").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in DQ_COLUMNS)
        )
        with conn.cursor() as cur, cur.copy(stmt) as copy:
            for issue in issues:
                copy.write_row(issue_row(issue, job_run_id))
        return len(issues)


def issue_row(issue: dict[str, Any], job_run_id: str | None) -> list[Any]:
    """The `DQ_COLUMNS` values of one issue, every text made storable (core.pgtext)."""
    record_id = issue.get("record_id")
    return [
        job_run_id,
        storable(str(issue["source_table"])),
        None if record_id is None else storable(str(record_id)),
        storable(str(issue["rule_name"])),
        issue["severity"],
        storable(str(issue["error_message"])),
        pg_json(issue.get("record_data")),
        pg_json(issue.get("origin")),
    ]


@cache
def read_position_chain_sql() -> str:
    """The P&L delta chain statement (sql/queries/position_pnl_chain.sql)."""
    return read_sql("queries/position_pnl_chain.sql")


def lsn_text(lsn: int | None) -> str | None:
    """A Debezium LSN (an integer) in PostgreSQL's `pg_lsn` text form, e.g. 22/B374D848."""
    return None if lsn is None else f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"
