"""Decoding one Kafka record's envelope into a `Change`: Debezium change envelopes and orion domain
events (pure, no I/O).

`decode_cdc` / `decode_event` turn one record's bytes into a `Change` (or raise `Tombstone` for a
null value, `DecodeError` with its error class for anything that cannot be loaded). msgspec decodes
the envelope; an embedded Kafka Connect schema (`{"schema":..,"payload":..}`,
`value.converter.schemas.enable=true`) is kept as raw bytes and parsed once per distinct schema
(cached), so the per-record cost of schemas is a memcmp-speed skip, not a parse. JSON numbers in
untyped positions become `Decimal` (exact), never float. The row values stay as decoded; their
conversion to typed columns is core/columns.py, the whole-batch decode of the common CDC batch
core/cdc_batch.py (which reuses the envelope cache kept here).
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import msgspec

from orion_etl.core.dead_letter_classes import DecodeError, ErrorClass
from orion_etl.core.records import LOAD_OPS, Change, FieldType, KafkaRecord, Tombstone


class Source(msgspec.Struct):
    """The `source` block of a Debezium payload (the fields the loader orders changes by)."""

    ts_ms: int | None = None
    lsn: int | None = None
    sequence: str | None = None
    table: str | None = None


class _Payload(msgspec.Struct):
    op: str | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    source: Source | None = None
    ts_ms: int | None = None


class _Top(msgspec.Struct):
    # One pass over the bytes: the schema is kept raw (not parsed; an empty Raw means absent,
    # JSON null is Raw(b"null")), the payload decoded; UNSET tells an absent payload from null.
    schema: msgspec.Raw = msgspec.Raw()
    payload: _Payload | msgspec.UnsetType | None = msgspec.UNSET
    op: str | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    source: Source | None = None
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


def known_envelope(value: bytes) -> tuple[bytes, dict[str, FieldType]] | None:
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
    known = known_envelope(value)
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
    source = payload.source or Source()
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
