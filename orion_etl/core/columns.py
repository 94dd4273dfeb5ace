"""Typed columns from decoded rows: `to_frame` turns the rows of many changes into a polars frame
with exact types (pure, no I/O).

Rows are converted column by column into Decimal(28,10), UTC Datetime, Date, UUID text, ... Each
field is converted by its Debezium logical type when the record carried a schema, else by the
column's expected kind:

============================================  =========================================
logical type / JSON value                      result
============================================  =========================================
string decimal (decimal.handling.mode=string)  Decimal (our default connector setting)
org.apache.kafka.connect.data.Decimal          base64 big-endian two's-complement unscaled
                                               bytes, `scale` parameter -> Decimal
io.debezium.data.VariableScaleDecimal          {"scale": s, "value": base64} -> Decimal
JSON number (double mode, events)              Decimal of the literal text (exact)
io.debezium.time.ZonedTimestamp / ISO string   UTC Datetime(us)
io.debezium.time.MicroTimestamp / Timestamp    epoch micros / millis -> UTC Datetime
io.debezium.time.NanoTimestamp                 epoch nanos -> UTC Datetime (us)
integer timestamp without a schema             epoch micros (Debezium's adaptive default)
io.debezium.time.Date / integer date           days since epoch -> Date
io.debezium.data.Uuid / UUID string            validated canonical text
============================================  =========================================

Without an embedded schema a base64 `Decimal` cannot be told apart from a decimal string, so
schemaless topics must use decimal.handling.mode=string (the default) or `precise` with
variable scale. A value that does not convert (wrong JSON type, unparsable text, more than 10
decimal places, out of NUMERIC(28,10) range, a date outside the warehouse calendar) marks its
row invalid with a message naming the column; the caller dead-letters that row only.

The unchanged-TOAST placeholder `__debezium_unavailable_value` becomes NULL and the column name is
listed in `_unavailable`, so the loader can keep the stored value instead of overwriting it.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import lru_cache
from operator import attrgetter, itemgetter
from typing import Any

import polars as pl

from orion_etl.core.records import UNAVAILABLE, UNAVAILABLE_B64, Change, FieldType, Kind

_PLACEHOLDERS = (UNAVAILABLE, UNAVAILABLE_B64)
SCALE = 10
MAX_ABS = Decimal(10) ** 18  # NUMERIC(28, 10): 18 integer digits
CALENDAR = (date(2000, 1, 1), date(2060, 12, 31))  # dim_date's range
_TS_FORMAT = "%Y-%m-%dT%H:%M:%S%.f%#z"
_UUID_RE = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_EXCESS_SCALE_RE = r"\.\d{10}\d*[1-9]"
_INVALID = "\x00invalid"  # marker text that never parses


def _b64_decimal(text: str, scale: int) -> str:
    unscaled = int.from_bytes(base64.b64decode(text, validate=True), "big", signed=True)
    return str(Decimal(unscaled).scaleb(-scale))


def _decimal_text(value: Any, ft: FieldType | None) -> str | None:
    """Normalize one raw decimal value to text (None stays None; junk becomes `_INVALID`)."""
    if value is None:
        return None
    try:
        if type(value) is str:
            if ft is not None and ft.name == "org.apache.kafka.connect.data.Decimal":
                return _b64_decimal(value, int((ft.parameters or {}).get("scale", "0")))
            return value
        if type(value) is Decimal or type(value) is int:
            return str(value) if not (type(value) is Decimal and not value.is_finite()) else _INVALID
        if type(value) is dict and "value" in value and "scale" in value:  # VariableScaleDecimal
            return _b64_decimal(value["value"], int(value["scale"]))
    except (ValueError, TypeError, ArithmeticError):
        return _INVALID
    return _INVALID


def _ts_unit(ft: FieldType | None) -> str:
    if ft is None:
        return "us"
    return {
        "io.debezium.time.Timestamp": "ms",
        "org.apache.kafka.connect.data.Timestamp": "ms",
        "io.debezium.time.NanoTimestamp": "ns",
    }.get(ft.name or "", "us")


_NONE = type(None)
_B64_DECIMAL = "org.apache.kafka.connect.data.Decimal"
_I32 = (-(2**31), 2**31 - 1)


def _int64(values: list[Any]) -> pl.Series:
    """Python ints as Int64; a value beyond 64 bits becomes null (then flagged invalid), not a crash."""
    return pl.Series(values, dtype=pl.Int64, strict=False)


def _typed_column(
    kind: Kind, raw: list[Any], ft: FieldType | None, uniform: bool, types: set[type] | None = None
) -> pl.Series | None:
    """The column as one typed series when every value already has the JSON type its kind expects.

    This is the common case (a well-formed topic), built in one pass in Rust instead of value by
    value in Python. Returns None when any value needs the per-value conversion, which gives the
    same result for the values handled here. `uniform` says every row has field type `ft`;
    `types`, when given, are the only Python types the values can have (a typed decode).
    """
    if types is None:
        types = set(map(type, raw))
    if kind in (Kind.UUID, Kind.STRING) and types <= {_NONE, str}:
        return pl.Series(raw, dtype=pl.String)
    if kind is Kind.DECIMAL and uniform and types <= {_NONE, str} and (ft is None or ft.name != _B64_DECIMAL):
        return pl.Series(raw, dtype=pl.String)
    if kind is Kind.BOOL and types <= {_NONE, bool}:
        return pl.Series(raw, dtype=pl.Boolean)
    if kind in (Kind.DATE, Kind.TIMESTAMP) and types <= {_NONE, str}:
        return pl.Series(raw, dtype=pl.String)
    # integer timestamps take their unit from the field type: only when all rows share it
    if (kind in (Kind.INT, Kind.DATE) or (kind is Kind.TIMESTAMP and uniform)) and types <= {_NONE, int}:
        return _int64(raw)
    return None


def _has_placeholder(raw: list[Any], typed: pl.Series | None) -> bool:
    """Whether a value of the column is the TOAST placeholder (text, so never in a typed column
    of another type; compared in polars when the column is typed text)."""
    if typed is None:
        return UNAVAILABLE in raw or UNAVAILABLE_B64 in raw
    if typed.dtype != pl.String:
        return False
    return bool((typed == UNAVAILABLE).any() or (typed == UNAVAILABLE_B64).any())


@dataclass(frozen=True, slots=True)
class _ColumnInputs:
    """What one column is computed from: typed input series named `name#part`, and the unit of
    integer timestamps (ms | us | ns; None when there are no integer values)."""

    series: list[pl.Series]
    unit: str | None = None

    @property
    def parts(self) -> frozenset[str]:
        return frozenset(s.name.rsplit("#", 1)[1] for s in self.series)


def _column_inputs(
    name: str,
    kind: Kind,
    raw: list[Any],
    fts: list[FieldType | None],
    ft: FieldType | None,
    uniform: bool,
    unavailable: dict[str, list[int]] | None = None,
    types: set[type] | None = None,
) -> _ColumnInputs:
    """Raw values -> typed input series, the per-value Python work (only where values need it).

    Parts: per kind `text` (decimal text), `iso` / `int` (timestamps, dates), `str`, `int`, `bool`,
    and `present` (a value was given) when that is not simply "the part is not null". A part that
    would be all null is left out. The conversion itself is `_column_exprs`.
    """
    typed = _typed_column(kind, raw, ft, uniform, types)
    # Debezium's unchanged-TOAST placeholder is text in a column of any type: the value is unknown
    # (NULL here, listed in `_unavailable`) and the loader keeps the stored one.
    if unavailable is not None and _has_placeholder(raw, typed):
        placeholders = [i for i, v in enumerate(raw) if type(v) is str and v in _PLACEHOLDERS]
        unavailable[name] = placeholders
        for i in placeholders:
            raw[i] = None
        typed = _typed_column(kind, raw, ft, uniform)

    def part(suffix: str, values: pl.Series | list[Any], dtype: Any = None) -> pl.Series:
        series = values if isinstance(values, pl.Series) else pl.Series(values, dtype=dtype)
        return series.alias(f"{name}#{suffix}")

    # a text or bool series is null exactly where the value is None; a 65-bit int is a null Int64
    exact = typed is not None and (typed.dtype != pl.Int64 or typed.null_count() == raw.count(None))
    parts = [] if exact else [part("present", [v is not None for v in raw], pl.Boolean)]
    unit: str | None = None
    if kind is Kind.DECIMAL:
        if typed is None:
            typed = pl.Series([_decimal_text(v, f) for v, f in zip(raw, fts, strict=True)], dtype=pl.String)
        parts.append(part("text", typed))
    elif kind in (Kind.TIMESTAMP, Kind.DATE):
        if typed is not None and typed.dtype == pl.String:
            parts.append(part("iso", typed))
        elif typed is not None:
            parts.append(part("int", typed))
            if kind is Kind.TIMESTAMP and typed.null_count() < len(raw):
                unit = _ts_unit(ft)
        else:
            parts.append(part("iso", [v if type(v) is str else None for v in raw], pl.String))
            parts.append(part("int", _int64([v if type(v) is int else None for v in raw])))
            if kind is Kind.TIMESTAMP:
                units = {_ts_unit(f) for v, f in zip(raw, fts, strict=True) if type(v) is int}
                unit = (units.pop() if len(units) == 1 else "us") if units else None
    elif kind in (Kind.UUID, Kind.STRING):
        if typed is None:
            typed = pl.Series([v if type(v) is str else (_INVALID if v is not None else None) for v in raw])
        parts.append(part("str", typed, pl.String).cast(pl.String))
    elif kind is Kind.INT:
        parts.append(
            part("int", typed if typed is not None else _int64([v if type(v) is int else None for v in raw]))
        )
    else:
        parts.append(
            part(
                "bool",
                typed if typed is not None else [v if type(v) is bool else None for v in raw],
                pl.Boolean,
            )
        )
    return _ColumnInputs(parts, unit)


@lru_cache(maxsize=1024)
def _column_exprs(name: str, kind: Kind, unit: str | None, parts: frozenset[str]) -> tuple[pl.Expr, pl.Expr]:
    """(converted value, true where a given value did not convert), from `_column_inputs`' parts.

    Cached: a topic's batches build the same expressions (polars expressions are immutable).
    """

    def col(suffix: str, dtype: Any) -> pl.Expr:
        return pl.col(f"{name}#{suffix}") if suffix in parts else pl.lit(None, dtype)

    out_of_calendar: pl.Expr | None = None
    if kind is Kind.DECIMAL:
        text = col("text", pl.String)
        dec = text.str.to_decimal(scale=SCALE).cast(pl.Decimal(28, SCALE), strict=False)
        too_fine = text.str.contains(_EXCESS_SCALE_RE).fill_null(False)
        too_big = (dec.abs() >= MAX_ABS).fill_null(False)
        value = pl.when(too_fine | too_big).then(None).otherwise(dec)
        given = text.is_not_null()
    elif kind is Kind.TIMESTAMP:
        iso, ints = col("iso", pl.String), col("int", pl.Int64)
        value = iso.str.to_datetime(_TS_FORMAT, time_zone="UTC", time_unit="us", strict=False)
        if unit is not None:
            micros = ints * {"ms": 1000, "us": 1}[unit] if unit != "ns" else ints // 1000
            value = pl.coalesce(value, pl.from_epoch(micros, time_unit="us").dt.replace_time_zone("UTC"))
        day = value.dt.date()
        out_of_calendar = ((day < CALENDAR[0]) | (day > CALENDAR[1])).fill_null(False)
        given = iso.is_not_null() | ints.is_not_null()
    elif kind is Kind.DATE:
        iso, ints = col("iso", pl.String), col("int", pl.Int64)
        days = ints.cast(pl.Int32, strict=False).cast(pl.Date)
        value = pl.coalesce(days, iso.str.to_date("%Y-%m-%d", strict=False))
        out_of_calendar = ((value < CALENDAR[0]) | (value > CALENDAR[1])).fill_null(False)
        given = iso.is_not_null() | ints.is_not_null()
    elif kind is Kind.UUID:
        text = col("str", pl.String)
        value = pl.when(text.str.contains(_UUID_RE)).then(text.str.to_lowercase()).otherwise(None)
        given = text.is_not_null()
    elif kind is Kind.STRING:
        text = col("str", pl.String)
        value = pl.when(text == _INVALID).then(None).otherwise(text)
        given = text.is_not_null()
    elif kind is Kind.INT:
        ints = col("int", pl.Int64)
        value = pl.when(ints.is_between(*_I32)).then(ints).otherwise(None).cast(pl.Int32)
        given = ints.is_not_null()
    else:
        value = col("bool", pl.Boolean)
        given = value.is_not_null()
    if "present" in parts:
        given = pl.col(f"{name}#present")
    bad = given & value.is_null()
    if out_of_calendar is not None:
        value = pl.when(out_of_calendar).then(None).otherwise(value)
        bad = bad | out_of_calendar
    return value.alias(name), bad


@lru_cache(maxsize=1024)
def _invalid(name: str, kind: Kind) -> pl.Expr:
    """The `_error` message of a value of column `name` that did not convert (else null)."""
    return pl.when(pl.col(f"{name}#bad")).then(pl.lit(f"{name}: invalid {kind.value} value"))


def _columns_of(images: list[dict[str, Any]], names: list[str]) -> list[list[Any]]:
    """The values of `names` in every row image, column by column (None where a row lacks one).

    Debezium row images carry every column, so one C-level getter per row and a transposition do
    the work; a row without some column (a dropped source column, an event's optional field)
    falls back to looking each value up.
    """
    if len(names) > 1 and images:
        try:
            return [list(col) for col in zip(*map(itemgetter(*names), images), strict=True)]
        except KeyError:
            pass
    return [[image.get(name) for image in images] for name in names]


_META = attrgetter("op", "commit_lsn", "lsn", "ts_ms", "event_version")
RECORD_META = attrgetter("topic", "partition", "offset", "timestamp_ms")


def to_frame(
    changes: list[Change],
    columns: dict[str, Kind],
    required: tuple[str, ...] = (),
    rename: dict[str, str] | None = None,
) -> pl.DataFrame:
    """Rows of `changes` as a typed frame with metadata columns and `_error` (None when valid).

    Metadata: `_topic`, `_partition`, `_offset`, `_op`, `_commit_lsn`, `_lsn`, `_ts_ms`,
    `_event_version`, `_event_ts`, `_kafka_ts_ms`, `_unavailable` (columns that carried the TOAST
    placeholder). `rename` maps wire names (e.g. an event's camelCase) to column names.

    Python touches each value once at most (to extract it, and to convert it only when it is not
    of the JSON type its column expects); all conversions run in one polars pass.
    """
    rows = changes
    n = len(rows)
    if rename:
        images = [{rename.get(k, k): v for k, v in c.row.items()} for c in rows]
    else:
        images = [c.row for c in rows]
    names = list(columns)
    field_maps = {id(c.fields): c.fields for c in rows}
    uniform = len(field_maps) <= 1  # every row carried the same embedded schema (or none did)
    shared_fields = next(iter(field_maps.values())) if uniform and field_maps else None

    def field_types(name: str) -> tuple[FieldType | None, list[FieldType | None]]:
        if uniform:
            ft = shared_fields.get(name) if shared_fields else None
            return ft, [ft] * n
        return None, [c.fields.get(name) if c.fields else None for c in rows]

    ops, commit_lsns, lsns, ts_ms, versions = zip(*map(_META, rows), strict=True) if rows else ((),) * 5
    topics, partitions, offsets, kafka_ts = (
        zip(*map(RECORD_META, (c.record for c in rows)), strict=True) if rows else ((),) * 4
    )
    meta = {
        "_topic": topics,
        "_partition": partitions,
        "_offset": offsets,
        "_op": ops,
        "_commit_lsn": commit_lsns,
        "_lsn": lsns,
        "_ts_ms": ts_ms,
        "_event_version": versions,
        "_kafka_ts_ms": kafka_ts,
    }
    raw_columns = _columns_of(images, names)
    event_times = [c.event_time for c in rows]
    return build_frame(n, meta, raw_columns, columns, required, field_types, uniform, event_times)


_META_TYPES: dict[str, pl.DataType] = {
    "_topic": pl.String(),
    "_partition": pl.Int32(),
    "_offset": pl.Int64(),
    "_op": pl.String(),
    "_commit_lsn": pl.Int64(),
    "_lsn": pl.Int64(),
    "_ts_ms": pl.Int64(),
    "_event_version": pl.Int64(),
    "_kafka_ts_ms": pl.Int64(),
}


def build_frame(
    n: int,
    meta: dict[str, Any],
    raw_columns: list[list[Any]],
    columns: dict[str, Kind],
    required: tuple[str, ...],
    field_types: Callable[[str], tuple[FieldType | None, list[FieldType | None]]],
    uniform: bool,
    event_times: list[Any] | None,
    declared: dict[str, set[type]] | None = None,
) -> pl.DataFrame:
    """The frame `to_frame` documents, from metadata values (sequences or series, by _META_TYPES
    name), the raw values of each column, and the rows' field types."""
    names = list(columns)
    unavailable: dict[str, list[int]] = {}  # column -> rows that carried the TOAST placeholder
    inputs: list[pl.Series] = []
    values: list[pl.Expr] = []
    errors: list[pl.Expr] = []
    for name, raw in zip(names, raw_columns, strict=True):
        kind = columns[name]
        ft, fts = field_types(name)
        column = _column_inputs(name, kind, raw, fts, ft, uniform, unavailable, (declared or {}).get(name))
        inputs += column.series
        value, bad = _column_exprs(name, kind, column.unit, column.parts)
        values += [value, bad.alias(f"{name}#bad")]
        errors.append(_invalid(name, kind))
        if name in required:
            missing = pl.col(name).is_null()
            if name in unavailable:
                missing = missing & ~pl.int_range(pl.len()).is_in(unavailable[name])
            errors.append(pl.when(missing).then(pl.lit(f"{name}: required value missing")))
    if event_times is not None:
        event = _column_inputs("_event_ts", Kind.TIMESTAMP, event_times, [None] * n, None, True)
        inputs += event.series
        event_value, event_bad = _column_exprs("_event_ts", Kind.TIMESTAMP, event.unit, event.parts)
        values += [event_value, event_bad.alias("_event_ts#bad")]
        errors.append(pl.when(pl.col("_event_ts#bad")).then(pl.lit("occurredAt: invalid timestamp value")))
    else:  # no event times at all (CDC)
        values.append(pl.lit(None, pl.Datetime("us", "UTC")).alias("_event_ts"))
    listed = [""] * n
    for name, rows_with in unavailable.items():  # rare: only rows with unchanged TOASTed values
        for i in rows_with:
            listed[i] = f"{listed[i]},{name}" if listed[i] else name
    series = [
        values_ if isinstance(values_, pl.Series) else pl.Series(name, values_, dtype=_META_TYPES[name])
        for name, values_ in meta.items()
    ]
    # built from joined text: a list-of-lists Series costs one Python Series per row
    series.append(
        pl.Series("_unavailable", listed, dtype=pl.String)
        if unavailable
        else pl.repeat("", n, dtype=pl.String, eager=True)  # (no Python list of n texts)
    )
    return (
        pl.DataFrame([*(s.alias(n_) for s, n_ in zip(series, [*meta, "_unavailable"], strict=True)), *inputs])
        .lazy()
        .with_columns(
            pl.col("_unavailable").str.split(",").list.eval(pl.element().filter(pl.element() != ""))
        )
        .with_columns(values)
        .with_columns(pl.coalesce(errors).alias("_error"))
        .select(*meta, "_unavailable", *names, "_event_ts", "_error")
        .collect()
    )
