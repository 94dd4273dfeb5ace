"""Decoding Kafka records: Debezium change envelopes and orion domain events (pure, no I/O).

Two steps, both batch-oriented:

1. `decode_cdc` / `decode_event` turn one record's bytes into a `Change` (or raise `DecodeError`).
   msgspec decodes the envelope; an embedded Kafka Connect schema (`{"schema":..,"payload":..}`,
   `value.converter.schemas.enable=true`) is kept as raw bytes and parsed once per distinct
   schema (cached), so the per-record cost of schemas is a memcmp-speed skip, not a parse.
   JSON numbers in untyped positions become `Decimal` (exact), never float.
2. `to_frame` converts the rows of many changes column by column into a polars frame with exact
   types (Decimal(28,10), UTC Datetime, Date, UUID text, ...). Each field is converted by its
   Debezium logical type when the record carried a schema, else by the column's expected kind:

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
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import StrEnum
from itertools import repeat
from operator import attrgetter, itemgetter
from typing import Any

import msgspec
import polars as pl
from msgspec.structs import astuple

UNAVAILABLE = "__debezium_unavailable_value"
UNAVAILABLE_B64 = base64.b64encode(UNAVAILABLE.encode()).decode()
_PLACEHOLDERS = (UNAVAILABLE, UNAVAILABLE_B64)
SCALE = 10
MAX_ABS = Decimal(10) ** 18  # NUMERIC(28, 10): 18 integer digits
CALENDAR = (date(2000, 1, 1), date(2060, 12, 31))  # dim_date's range
_TS_FORMAT = "%Y-%m-%dT%H:%M:%S%.f%#z"
_UUID_RE = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_EXCESS_SCALE_RE = r"\.\d{10}\d*[1-9]"
_INVALID = "\x00invalid"  # marker text that never parses


class ErrorClass(StrEnum):
    """Why a record was dead-lettered (the DLQ `dlq.error_class` header)."""

    DECODE = "DECODE"  # not UTF-8 / not JSON / wrong JSON types in the envelope
    MISSING_PAYLOAD = "MISSING_PAYLOAD"
    UNKNOWN_OP = "UNKNOWN_OP"
    UNKNOWN_TOPIC = "UNKNOWN_TOPIC"  # no handler for the topic or the CDC source table
    INVALID_VALUE = "INVALID_VALUE"  # a field that does not convert to its column type
    RULE = "RULE"  # an error-severity data-quality rule failed
    MISSING_DIMENSION = "MISSING_DIMENSION"  # no dimension row (only with stream.missing_dimension="dlq")
    LOAD_REJECTED = "LOAD_REJECTED"  # PostgreSQL refused the row (dlq.sqlstate says why)


class DecodeError(Exception):
    """A record that cannot be decoded; carries its DLQ error class."""

    def __init__(self, error_class: ErrorClass, message: str) -> None:
        super().__init__(message)
        self.error_class = error_class
        self.message = message


class Kind(StrEnum):
    """Target type of a column."""

    UUID = "uuid"
    STRING = "string"
    DECIMAL = "decimal"
    TIMESTAMP = "timestamp"
    DATE = "date"
    INT = "int"
    BOOL = "bool"


@dataclass(frozen=True, slots=True)
class FieldType:
    """A field of an embedded Kafka Connect schema: its type, logical name and parameters."""

    type: str
    name: str | None = None
    parameters: dict[str, str] | None = None


@dataclass(slots=True)
class KafkaRecord:
    """One consumed Kafka record (what the DLQ needs to re-publish it verbatim)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None
    headers: list[tuple[str, bytes]] | None = None


@dataclass(slots=True)
class Change:
    """A decoded change: operation, row image and ordering position."""

    record: KafkaRecord
    op: str  # c | u | r | d  (events are c)
    row: dict[str, Any]
    commit_lsn: int | None = None
    lsn: int | None = None
    ts_ms: int | None = None  # source commit time (CDC) or event time in ms (events)
    event_version: int | None = None
    event_time: Any = None  # raw occurredAt of events (converted with the frame)
    table: str | None = None
    fields: dict[str, FieldType] | None = field(default=None)


# --- envelope structs -----------------------------------------------------------------------


class _Source(msgspec.Struct):
    ts_ms: int | None = None
    lsn: int | None = None
    sequence: str | None = None
    table: str | None = None


class _Payload(msgspec.Struct):
    op: str | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    source: _Source | None = None
    ts_ms: int | None = None


class _Top(msgspec.Struct):
    # One pass over the bytes: the schema is kept raw (not parsed; an empty Raw means absent,
    # JSON null is Raw(b"null")), the payload decoded; UNSET tells an absent payload from null.
    schema: msgspec.Raw = msgspec.Raw()
    payload: _Payload | msgspec.UnsetType | None = msgspec.UNSET
    op: str | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    source: _Source | None = None
    ts_ms: int | None = None


class _Event(msgspec.Struct):
    schema: msgspec.Raw = msgspec.Raw()
    eventId: str | None = None  # noqa: N815 - the wire names of the event envelope
    eventType: str | None = None  # noqa: N815
    eventVersion: int | None = None  # noqa: N815
    occurredAt: str | int | None = None  # noqa: N815
    sequence: int | None = None
    payload: dict[str, Any] | None = None


_top_decoder = msgspec.json.Decoder(_Top, float_hook=Decimal)
_payload_decoder = msgspec.json.Decoder(_Payload | None, float_hook=Decimal)
_SCHEMA_OPEN = re.compile(rb'\{\s*"schema"\s*:\s*')
_PAYLOAD_OPEN = re.compile(rb'\s*,\s*"payload"\s*:\s*')
# The bytes that open envelopes with recently seen embedded schemas (most recent first), and their
# row field types. Debezium repeats the same schema in every record of a table, so a record that
# starts with such bytes only needs its payload decoded (a memcmp instead of parsing kilobytes of
# schema JSON). A few entries: one per table a loader reads, plus a schema change or two.
_known_envelopes: list[tuple[bytes, dict[str, FieldType]]] = []
_MAX_KNOWN_ENVELOPES = 8


def _known_envelope_of(value: bytes) -> tuple[bytes, dict[str, FieldType]] | None:
    """The known envelope opening `value` (and closed by its last byte), if any."""
    if not value.endswith(b"}"):
        return None
    for known in _known_envelopes:
        if value.startswith(known[0]):
            return known
    return None


def _envelope_head(value: bytes, schema: bytes) -> bytes | None:
    """The bytes of `value` up to its payload, when it is `{"schema": <schema>, "payload": ...}`."""
    opening = _SCHEMA_OPEN.match(value)
    if opening is None or not value.startswith(schema, opening.end()):
        return None
    separator = _PAYLOAD_OPEN.match(value, opening.end() + len(schema))
    return value[: separator.end()] if separator is not None else None


def _remember_envelope(head: bytes, fields: dict[str, FieldType]) -> None:
    for i, (known, _) in enumerate(_known_envelopes):
        if known == head:
            del _known_envelopes[i]
            break
    _known_envelopes.insert(0, (head, fields))
    del _known_envelopes[_MAX_KNOWN_ENVELOPES:]


_event_decoder = msgspec.json.Decoder(_Event, float_hook=Decimal)
_schema_cache: dict[bytes, dict[str, FieldType]] = {}
LOAD_OPS = frozenset({"c", "u", "r"})


class Tombstone(Exception):  # noqa: N818 - a signal, not an error
    """A record with a null value (Kafka compaction tombstone): acknowledged, no effect."""


def _msg(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]


def parse_sequence(sequence: str | None, lsn: int | None) -> tuple[int | None, int | None]:
    """Debezium `source.sequence` '["<last commit lsn>","<lsn>"]' -> (commit_lsn, lsn).

    Compared as a tuple this orders changes correctly across concurrent transactions, which the
    bare LSN does not. Without a sequence (old connectors), (None, source.lsn).
    """
    if not sequence:
        return None, lsn
    if sequence.startswith('["') and sequence.endswith('"]'):  # the usual '["123","456"]'
        commit_text, sep, lsn_text = sequence[2:-2].partition('","')
        if (
            sep
            and commit_text.isascii()
            and commit_text.isdigit()
            and lsn_text.isascii()
            and lsn_text.isdigit()
        ):
            return int(commit_text), int(lsn_text)
    try:
        parts = msgspec.json.decode(sequence)
        commit, current = parts[0], parts[1]
        return (int(commit) if commit is not None else None), (int(current) if current is not None else lsn)
    except (msgspec.DecodeError, ValueError, TypeError, IndexError, KeyError) as exc:
        raise DecodeError(ErrorClass.DECODE, f"invalid source.sequence {sequence[:80]!r}") from exc


def _row_fields(schema_raw: bytes) -> dict[str, FieldType]:
    """Field types of the row struct ('after', else 'before') of an envelope schema (cached)."""
    cached = _schema_cache.get(schema_raw)
    if cached is not None:
        return cached
    out: dict[str, FieldType] = {}
    try:
        schema = msgspec.json.decode(schema_raw)
        for part in schema.get("fields") or []:
            if part.get("field") in ("after", "before") and part.get("fields"):
                for f in part["fields"]:
                    out[f["field"]] = FieldType(f.get("type", ""), f.get("name"), f.get("parameters"))
                break
    except (msgspec.DecodeError, AttributeError, KeyError, TypeError, RecursionError) as exc:
        raise DecodeError(ErrorClass.DECODE, f"invalid embedded schema: {_msg(exc)}") from exc
    if len(_schema_cache) > 256:
        _schema_cache.clear()
    _schema_cache[bytes(schema_raw)] = out
    return out


def decode_cdc(record: KafkaRecord) -> Change:
    """Decode one Debezium change envelope (with or without embedded schema).

    Raises `Tombstone` for a null value and `DecodeError` for anything that cannot be loaded.
    """
    value = record.value
    if value is None:
        raise Tombstone()
    # Fast path: the record opens with a known schema, byte for byte; decode its payload only.
    # Anything else (no schema, another schema, a payload that does not decode) takes the full
    # decode, which also reports any problem exactly as it would have.
    known = _known_envelope_of(value)
    payload: _Payload | msgspec.UnsetType | None = msgspec.UNSET
    fields: dict[str, FieldType] | None = None
    if known is not None:
        head, fields = known
        try:
            payload = _payload_decoder.decode(memoryview(value)[len(head) : -1])
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError, RecursionError):
            payload = msgspec.UNSET
        if payload is None:
            raise Tombstone()
    if payload is msgspec.UNSET:
        payload, fields = _decode_envelope(value)
    return _change_of(record, payload, fields)  # type: ignore[arg-type]


def _decode_envelope(value: bytes) -> tuple[_Payload, dict[str, FieldType] | None]:
    """Full decode of an envelope, with or without embedded schema (raises Tombstone/DecodeError)."""
    try:
        top = _top_decoder.decode(value)
        fields = None
        if top.op is None and (top.payload is not msgspec.UNSET or top.schema):
            if top.payload is msgspec.UNSET:
                raise DecodeError(ErrorClass.MISSING_PAYLOAD, "envelope with a schema but no payload")
            if top.payload is None:
                raise Tombstone()
            payload = top.payload
            if top.schema and bytes(top.schema) != b"null":
                schema = bytes(top.schema)
                fields = _row_fields(schema)
                head = _envelope_head(value, schema)
                if head is not None:
                    _remember_envelope(head, fields)
        else:
            payload = _Payload(top.op, top.before, top.after, top.source, top.ts_ms)
    except msgspec.ValidationError as exc:
        raise DecodeError(ErrorClass.DECODE, f"envelope has wrong types: {_msg(exc)}") from exc
    except msgspec.DecodeError as exc:
        raise DecodeError(ErrorClass.DECODE, f"not valid JSON: {_msg(exc)}") from exc
    except UnicodeDecodeError as exc:
        raise DecodeError(ErrorClass.DECODE, f"not valid UTF-8: {_msg(exc)}") from exc
    except RecursionError as exc:  # hostile nesting depth: a dead letter, not a crash of the loader
        raise DecodeError(ErrorClass.DECODE, "JSON nested too deeply") from exc
    return payload, fields


def _change_of(record: KafkaRecord, payload: _Payload, fields: dict[str, FieldType] | None) -> Change:
    op = payload.op
    if op is None:
        raise DecodeError(ErrorClass.MISSING_PAYLOAD, "no Debezium payload (op missing)")
    if op in LOAD_OPS:
        row = payload.after
    elif op == "d":
        row = payload.before
    else:
        raise DecodeError(ErrorClass.UNKNOWN_OP, f"unsupported op {op!r} (expected c, u, r or d)")
    if row is None:
        raise DecodeError(
            ErrorClass.MISSING_PAYLOAD, f"op {op!r} without {'after' if op != 'd' else 'before'} image"
        )
    source = payload.source or _Source()
    commit_lsn, lsn = parse_sequence(source.sequence, source.lsn)
    ts_ms = source.ts_ms or payload.ts_ms
    return Change(record, op, row, commit_lsn, lsn, ts_ms, table=source.table, fields=fields)


def decode_event(record: KafkaRecord, expected_type: str | None = None) -> Change:
    """Decode one domain event (`trade.executed`, `quote.received`); see docs/stream.md.

    Envelope: {"eventId", "eventType", "eventVersion", "occurredAt", "sequence", "payload": {...}},
    optionally wrapped in a Kafka Connect `{"schema":..,"payload":..}`.
    """
    if record.value is None:
        raise Tombstone()
    try:
        event = _event_decoder.decode(record.value)
        if event.schema and event.payload is not None and "payload" in event.payload:
            event = msgspec.convert(event.payload, _Event)
    except msgspec.ValidationError as exc:
        raise DecodeError(ErrorClass.DECODE, f"event has wrong types: {_msg(exc)}") from exc
    except msgspec.DecodeError as exc:
        raise DecodeError(ErrorClass.DECODE, f"not valid JSON: {_msg(exc)}") from exc
    except UnicodeDecodeError as exc:
        raise DecodeError(ErrorClass.DECODE, f"not valid UTF-8: {_msg(exc)}") from exc
    except RecursionError as exc:
        raise DecodeError(ErrorClass.DECODE, "JSON nested too deeply") from exc
    if event.payload is None:
        raise DecodeError(ErrorClass.MISSING_PAYLOAD, "event without payload")
    if expected_type and event.eventType and event.eventType != expected_type:
        raise DecodeError(
            ErrorClass.UNKNOWN_TOPIC, f"event type {event.eventType!r} on a {expected_type} topic"
        )
    if event.eventVersion not in (None, 1):
        raise DecodeError(ErrorClass.DECODE, f"unsupported eventVersion {event.eventVersion}")
    return Change(
        record,
        "c",
        event.payload,
        event_version=event.sequence or 0,
        event_time=event.occurredAt,
        ts_ms=record.timestamp_ms,
    )


# --- column conversion ----------------------------------------------------------------------


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


@dataclass(frozen=True, slots=True)
class _ColumnInputs:
    """What one column is computed from: typed input series named `name#part`, and the unit of
    integer timestamps (ms | us | ns; None when there are no integer values)."""

    series: list[pl.Series]
    unit: str | None = None

    @property
    def parts(self) -> set[str]:
        return {s.name.rsplit("#", 1)[1] for s in self.series}


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
    text_possible = typed is None or typed.dtype == pl.String
    if unavailable is not None and text_possible and (UNAVAILABLE in raw or UNAVAILABLE_B64 in raw):
        placeholders = [i for i, v in enumerate(raw) if type(v) is str and v in _PLACEHOLDERS]
        unavailable[name] = placeholders
        for i in placeholders:
            raw[i] = None
        typed = _typed_column(kind, raw, ft, uniform)

    def part(suffix: str, values: pl.Series | list[Any], dtype: Any = None) -> pl.Series:
        series = values if isinstance(values, pl.Series) else pl.Series(values, dtype=dtype)
        return series.alias(f"{name}#{suffix}")

    exact = typed is not None and typed.null_count() == raw.count(None)  # (a 65-bit int is a null Int64)
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


def _column_exprs(name: str, kind: Kind, unit: str | None, parts: set[str]) -> tuple[pl.Expr, pl.Expr]:
    """(converted value, true where a given value did not convert), from `_column_inputs`' parts."""

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
_RECORD_META = attrgetter("topic", "partition", "offset", "timestamp_ms")


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
        zip(*map(_RECORD_META, (c.record for c in rows)), strict=True) if rows else ((),) * 4
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
    return _build_frame(n, meta, raw_columns, columns, required, field_types, uniform, event_times)


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


def _build_frame(
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
        errors.append(pl.when(pl.col(f"{name}#bad")).then(pl.lit(f"{name}: invalid {kind.value} value")))
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
    series.append(pl.Series("_unavailable", listed, dtype=pl.String))
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


# --- whole-batch fast path for CDC topics --------------------------------------------------


_ROW_TYPES: dict[Kind, Any] = {
    Kind.UUID: str | None,
    Kind.STRING: str | None,
    Kind.DECIMAL: str | None,  # decimal.handling.mode=string, or base64 bytes (converted per value)
    Kind.TIMESTAMP: str | int | None,
    Kind.DATE: int | str | None,
    Kind.INT: int | None,
    Kind.BOOL: bool | None,
}
_DECODED_TYPES: dict[Kind, set[type]] = {
    Kind.UUID: {_NONE, str},
    Kind.STRING: {_NONE, str},
    Kind.DECIMAL: {_NONE, str},
    Kind.INT: {_NONE, int},
    Kind.BOOL: {_NONE, bool},
}
_batch_decoders: dict[tuple[tuple[str, Kind], ...], msgspec.json.Decoder[Any]] = {}
_SEQUENCE_RE = r'^\[\s*"(\d{1,18})"\s*,\s*"(\d{1,18})"\s*\]$'


def _batch_decoder(columns: dict[str, Kind]) -> msgspec.json.Decoder[Any]:
    """A decoder of a JSON array of Debezium payloads whose row images have exactly the JSON
    types `columns` expect (other fields of the row are skipped without being decoded)."""
    key = tuple(columns.items())
    decoder = _batch_decoders.get(key)
    if decoder is None:
        row = msgspec.defstruct("Row", [(name, _ROW_TYPES[kind], None) for name, kind in columns.items()])
        payload = msgspec.defstruct(
            "TypedPayload",
            [
                ("op", str | None, None),
                ("after", row | None, None),
                ("source", _Source | None, None),
                ("ts_ms", int | None, None),
            ],
        )
        decoder = msgspec.json.Decoder(list[payload])  # type: ignore[valid-type]
        _batch_decoders[key] = decoder
    return decoder


def cdc_frame(
    records: list[KafkaRecord], table: str, columns: dict[str, Kind], required: tuple[str, ...] = ()
) -> pl.DataFrame | None:
    """`to_frame([decode_cdc(r) for r in records], ...)` for the common batch, in one decode.

    The common batch: every record is a create/update/snapshot read of `table` carrying the
    last seen embedded schema byte for byte, with row values of the JSON types the columns
    expect and a `source.sequence` of two LSNs. The payloads are then decoded in a single
    msgspec call into typed structs and the columns taken out with C-level getters, instead of a
    Python decode, dict and `Change` per record. Anything else (a delete, a tombstone, another
    schema, a value of an unexpected type, a broken record) returns None and the caller decodes
    record by record, which also classifies every problem exactly as before. Tested to give the
    same frame as the per-record path (tests/unit/test_debezium_batch.py).
    """
    values = [r.value for r in records]
    if not values or None in values:
        return None
    known = _known_envelope_of(values[0])  # type: ignore[arg-type]
    if known is None:
        return None
    head, fields = known
    end = len(head)
    try:
        # (C-level loops: no Python frame per record)
        if not all(map(bytes.startswith, values, repeat(head))) or not all(  # type: ignore[arg-type]
            map(bytes.endswith, values, repeat(b"}"))  # type: ignore[arg-type]
        ):
            return None
        body = b",".join([memoryview(v)[end:-1] for v in values])  # type: ignore[arg-type]
        payloads = _batch_decoder(columns).decode(b"[" + body + b"]")
    except (TypeError, msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    if None in payloads:  # a null payload: a tombstone
        return None
    ops = list(map(attrgetter("op"), payloads))
    if not set(ops) <= LOAD_OPS:
        return None
    rows = list(map(attrgetter("after"), payloads))
    sources = list(map(attrgetter("source"), payloads))
    if None in rows or None in sources:
        return None
    source_ts, source_lsn, sequences, tables = zip(
        *map(attrgetter("ts_ms", "lsn", "sequence", "table"), sources), strict=True
    )
    if not set(tables) <= {table, None}:
        return None
    sequence = pl.Series(sequences, dtype=pl.String).str.extract_groups(_SEQUENCE_RE)
    commit_lsn = sequence.struct.field("1").cast(pl.Int64)
    lsn = sequence.struct.field("2").cast(pl.Int64)
    if commit_lsn.null_count() != sum(1 for s in sequences if not s):
        return None  # a sequence of another shape: parse_sequence decides, record by record
    no_sequence = commit_lsn.is_null()
    lsn = lsn.zip_with(~no_sequence, pl.Series(source_lsn, dtype=pl.Int64)) if no_sequence.any() else lsn
    source_ts_ms = pl.Series(source_ts, dtype=pl.Int64)
    payload_ts_ms = pl.Series(list(map(attrgetter("ts_ms"), payloads)), dtype=pl.Int64)
    ts_ms = source_ts_ms.zip_with(source_ts_ms.fill_null(0) != 0, payload_ts_ms)  # `a or b`
    n = len(records)
    topics, partitions, offsets, kafka_ts = zip(*map(_RECORD_META, records), strict=True)
    meta = {
        "_topic": topics,
        "_partition": partitions,
        "_offset": offsets,
        "_op": ops,
        "_commit_lsn": commit_lsn,
        "_lsn": lsn,
        "_ts_ms": ts_ms,
        "_event_version": pl.Series([None] * n, dtype=pl.Int64),
        "_kafka_ts_ms": kafka_ts,
    }
    raw_columns = [list(col) for col in zip(*map(astuple, rows), strict=True)]

    def field_types(name: str) -> tuple[FieldType | None, list[FieldType | None]]:
        ft = fields.get(name)
        return ft, [ft] * n

    # the typed decode guarantees the Python types of single-type columns
    declared = {name: _DECODED_TYPES[kind] for name, kind in columns.items() if kind in _DECODED_TYPES}
    return _build_frame(n, meta, raw_columns, columns, required, field_types, True, None, declared)
