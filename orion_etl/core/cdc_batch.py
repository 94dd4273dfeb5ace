"""The whole-batch fast path for CDC topics: `cdc_frame` decodes the common batch of Debezium
changes in one typed msgspec call (pure, no I/O).

It gives the frame `to_frame([decode_cdc(r) for r in records], ...)` gives (core/columns.py,
core/envelopes.py), or None when the batch is not the common one and must be decoded record by
record.
"""

from __future__ import annotations

import re
from decimal import Decimal
from itertools import repeat
from operator import itemgetter
from typing import Any, Literal, cast, get_args

import msgspec
import polars as pl
from msgspec.structs import astuple

from orion_etl.core.columns import RECORD_META, build_frame
from orion_etl.core.dead_letter_classes import DecodeError
from orion_etl.core.envelopes import _Payload, decode_cdc, known_envelope
from orion_etl.core.records import LOAD_OPS, FieldType, KafkaRecord, Kind, Tombstone

_NONE = type(None)
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
_batch_decoders: dict[tuple[str, bool, tuple[tuple[str, Kind], ...]], msgspec.json.Decoder[Any]] = {}
_SEQUENCE_RE = r'^\[\s*"(\d{1,18})"\s*,\s*"(\d{1,18})"\s*\]$'
_LoadOp = Literal["c", "u", "r"]
assert set(get_args(_LoadOp)) == LOAD_OPS
_EMPTY_FIELDS: dict[str, FieldType] = {}
_SCHEMA_FIRST = re.compile(rb'\{\s*"schema"\s*:')


def _batch_decoder(columns: dict[str, Kind], table: str, embedded: bool = True) -> msgspec.json.Decoder[Any]:
    """A decoder of a JSON array of Debezium payloads that all load a row of `table`, whose row
    images have exactly the JSON types `columns` expect (other fields of the row are skipped
    without being decoded).

    msgspec itself checks the batch is the common one: an op c/u/r, an `after` image and a
    `source` block of `table` (or none named) in every payload; anything else fails the decode.
    `embedded=False`: whole schemaless envelopes, whose other top-level fields are typed as the
    per-record decode (`envelopes._Top`) types them, so that what it refuses fails here too.
    """
    key = (table, embedded, tuple(columns.items()))
    decoder = _batch_decoders.get(key)
    if decoder is None:
        # (gc=False: instances the garbage collector does not track; they hold no cycles)
        row = msgspec.defstruct(
            "Row", [(name, _ROW_TYPES[kind], None) for name, kind in columns.items()], gc=False
        )
        source = msgspec.defstruct(
            "TypedSource",
            [
                ("ts_ms", int | None, None),
                ("lsn", int | None, None),
                ("sequence", str | None, None),
                ("table", Literal[table] | None, None),
            ],
            gc=False,
        )
        # `before` typed as the per-record decode types it (`envelopes._Payload`): a record it
        # refuses must not load just because it came in a common batch
        fields: list[Any] = [
            ("op", _LoadOp),
            ("after", row),
            ("source", source),
            ("ts_ms", int | None, None),  # (the first four are read by position below)
            ("before", dict[str, Any] | None, None),
        ]
        if not embedded:
            fields += [
                ("schema", msgspec.Raw, msgspec.Raw()),
                ("payload", _Payload | msgspec.UnsetType | None, msgspec.UNSET),
            ]
        payload = msgspec.defstruct("TypedPayload", fields, gc=False)
        decoder = msgspec.json.Decoder(list[payload], float_hook=Decimal)  # type: ignore[valid-type]
        _batch_decoders[key] = decoder
    return decoder


def cdc_frame(
    records: list[KafkaRecord], table: str, columns: dict[str, Kind], required: tuple[str, ...] = ()
) -> pl.DataFrame | None:
    """`to_frame([decode_cdc(r) for r in records], ...)` for the common batch, in one decode.

    The common batch: every record is a create/update/snapshot read of `table`, either carrying
    the last seen embedded schema byte for byte or all schemaless (`schemas.enable=false`), with
    row values of the JSON types the columns expect and a `source.sequence` of two LSNs. The
    payloads are then decoded in a single msgspec call into typed structs (which also checks the
    ops, images and source table) and the columns taken out with C-level getters, instead of a
    Python decode, dict and `Change` per record. Anything else (a delete, a tombstone, another
    schema, a value of an unexpected type, a broken record) returns None and the caller decodes
    record by record, which also classifies every problem exactly as before. Tested to give the
    same frame as the per-record path (tests/unit/test_debezium_batch.py).
    """
    raw = [r.value for r in records]
    if not raw or None in raw:
        return None
    values = cast(list[bytes], raw)
    known = known_envelope(values[0])
    if known is None and _SCHEMA_FIRST.match(values[0]):
        # an embedded schema not seen yet (the first batch, a schema change): the full decode of
        # the first record learns its envelope, so the batch need not go record by record
        try:
            decode_cdc(records[0])
        except (DecodeError, Tombstone):
            return None
        known = known_envelope(values[0])
    try:
        # (C-level loops: no Python frame per record)
        if known is not None:  # embedded schema: the payload of each value
            head, fields = known
            if not all(map(bytes.startswith, values, repeat(head))) or not all(
                map(bytes.endswith, values, repeat(b"}"))
            ):
                return None
            # (slices of bytes join faster than memoryviews)
            parts: list[bytes] = list(map(itemgetter(slice(len(head), -1)), values))
        else:  # schemaless: whole values, each one JSON object
            fields = _EMPTY_FIELDS
            if not all(map(bytes.startswith, values, repeat(b"{"))) or not all(
                map(bytes.endswith, values, repeat(b"}"))
            ):
                return None
            decoder = _batch_decoder(columns, table, False)
            decoder.decode(b"[" + values[0] + b"]")  # (a cheap early no: e.g. an unknown schema)
            parts = list(values)
        parts[0] = b"[" + parts[0]
        parts[-1] = parts[-1] + b"]"
        payloads = _batch_decoder(columns, table, known is not None).decode(b",".join(parts))
    except (TypeError, msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None
    del parts
    n = len(records)
    if len(payloads) != n:
        return None
    ops, rows, sources, payload_ts, *_ = zip(*map(astuple, payloads), strict=True)
    source_ts, source_lsn, sequences, _ = zip(*map(astuple, sources), strict=True)
    sequence = pl.Series(sequences, dtype=pl.String).str.extract_groups(_SEQUENCE_RE)
    commit_lsn = sequence.struct.field("1").cast(pl.Int64)
    lsn = sequence.struct.field("2").cast(pl.Int64)
    if commit_lsn.null_count() != sequences.count(None) + sequences.count(""):
        return None  # a sequence of another shape: parse_sequence decides, record by record
    no_sequence = commit_lsn.is_null()
    lsn = lsn.zip_with(~no_sequence, pl.Series(source_lsn, dtype=pl.Int64)) if no_sequence.any() else lsn
    source_ts_ms = pl.Series(source_ts, dtype=pl.Int64)
    payload_ts_ms = pl.Series(payload_ts, dtype=pl.Int64)
    ts_ms = source_ts_ms.zip_with(source_ts_ms.fill_null(0) != 0, payload_ts_ms)  # `a or b`
    topics, partitions, offsets, kafka_ts = zip(*map(RECORD_META, records), strict=True)
    meta = {
        "_topic": topics,
        "_partition": partitions,
        "_offset": offsets,
        "_op": ops,
        "_commit_lsn": commit_lsn,
        "_lsn": lsn,
        "_ts_ms": ts_ms,
        "_event_version": pl.repeat(None, n, dtype=pl.Int64, eager=True),
        "_kafka_ts_ms": kafka_ts,
    }
    raw_columns = [list(col) for col in zip(*map(astuple, rows), strict=True)]

    def field_types(name: str) -> tuple[FieldType | None, list[FieldType | None]]:
        ft = fields.get(name)
        return ft, [ft] * n

    # the typed decode guarantees the Python types of single-type columns
    declared = {name: _DECODED_TYPES[kind] for name, kind in columns.items() if kind in _DECODED_TYPES}
    return build_frame(n, meta, raw_columns, columns, required, field_types, True, None, declared)
