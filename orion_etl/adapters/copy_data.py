"""COPY data for a polars frame: PostgreSQL's binary COPY format, encoded from Arrow by pgpq.

Why binary: with CSV, PostgreSQL parses every field with the column type's text input function
(`uuid_in`, `numeric_in`, `timestamptz_in` and its date/time parser, ...). The binary format hands
it each value in its own representation (a UUID's 16 bytes, a timestamp's microseconds), and a
`COPY fact_trades` of the loader's rows costs the server about a sixth less CPU per row
(docs/benchmarks.md, "Binary COPY"). The encoding runs in Rust (pgpq) over the Arrow buffers polars
hands over, about as fast as polars' CSV writer.

Binary COPY has no forgiving parse: each field must be exactly the column type's representation
(4 bytes for an `integer`, 16 for a `uuid`). So the frame is first cast to the column types the
warehouse reports (`column_types`), and a frame that cannot be cast exactly is sent as CSV instead
(`encode_copy`): a value out of the column type's range, a UUID not in the canonical text form,
a column type or frame type not listed below. PostgreSQL then judges those values as before, and a
row it refuses gets the same dead letter. The loader also falls back to CSV for a whole batch if
PostgreSQL ever calls a binary field malformed (the table changed under it): such an error is
about the encoding, never a reason to refuse rows (`WarehouseLoader.commit_batch`).
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import pgpq
import polars as pl
import psycopg
from psycopg import sql

CopyFormat = Literal["binary", "csv"]

# `atttypid::regtype` names -> how a frame column becomes that type's binary representation
_INTEGERS = {"smallint": pl.Int16, "integer": pl.Int32, "bigint": pl.Int64}
_TEXTS = {"text", "character varying"}
_UUID_TEXT = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_MAX_DECIMAL_PRECISION = 38  # Arrow's Decimal128, which pgpq encodes as numeric


@dataclass(frozen=True, slots=True)
class CopyData:
    """Encoded rows for `COPY table (columns) FROM STDIN`, in `format`."""

    format: CopyFormat
    data: bytes

    def statement(self, table: str, columns: list[str]) -> sql.Composed:
        return sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {})").format(
            sql.Identifier(table),
            sql.SQL(", ").join(sql.Identifier(c) for c in columns),
            sql.SQL(self.format),
        )


def column_types(conn: psycopg.Connection, tables: Iterable[str]) -> dict[str, dict[str, str]]:
    """table -> column -> base type name (`integer`, `character varying`, `uuid`, ...)."""
    rows = conn.execute(
        "SELECT c.relname, a.attname, a.atttypid::regtype::text FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid "
        "WHERE c.oid = ANY(%s::regclass[]) AND a.attnum > 0 AND NOT a.attisdropped",
        [list(tables)],
    ).fetchall()
    types: dict[str, dict[str, str]] = {}
    for table, column, type_name in rows:
        types.setdefault(table, {})[column] = type_name
    return types


def csv_data(frame: pl.DataFrame) -> CopyData:
    """CSV as PostgreSQL's COPY reads it: empty unquoted field = NULL, `""` = empty string."""
    buf = io.BytesIO()
    frame.write_csv(buf, include_header=False, null_value="", quote_style="necessary")
    return CopyData("csv", buf.getvalue())


def encode_copy(frame: pl.DataFrame, types: dict[str, str] | None) -> CopyData:
    """`frame` (its columns in COPY order) as binary COPY data when every column can be cast
    exactly to its column type in `types` (column -> type name), else as CSV (module doc)."""
    if types is None or frame.is_empty():
        return csv_data(frame)
    exprs = []
    for name, dtype in frame.schema.items():
        expr = _binary_column(name, dtype, types.get(name))
        if expr is None:
            return csv_data(frame)
        exprs.append(expr)
    try:
        cast = frame.select(exprs)
    except pl.exceptions.PolarsError:  # a value out of the column type's range (strict cast)
        return csv_data(frame)
    uuids = [n for n, dtype in frame.schema.items() if types.get(n) == "uuid" and dtype == pl.String]
    if uuids and not _canonical_uuids(frame, uuids):
        return csv_data(frame)
    table = cast.to_arrow(compat_level=pl.CompatLevel.oldest())
    encoder = pgpq.ArrowToPostgresBinaryEncoder(table.schema)
    parts = [encoder.write_header()]
    parts.extend(encoder.write_batch(batch) for batch in table.to_batches())
    parts.append(encoder.finish())
    return CopyData("binary", b"".join(parts))


def _canonical_uuids(frame: pl.DataFrame, columns: list[str]) -> bool:
    """Every non-null value of `columns` is a UUID in the 8-4-4-4-12 hex form."""
    checks = frame.select(
        [(pl.col(c).is_null() | pl.col(c).str.contains(_UUID_TEXT)).all().alias(c) for c in columns]
    )
    return all(checks.row(0))


def _binary_column(name: str, dtype: pl.DataType, type_name: str | None) -> pl.Expr | None:
    """The expression giving column `name` in the Arrow type pgpq encodes as `type_name`, or None
    when this column must go as CSV."""
    col = pl.col(name)
    if type_name is None:
        return None
    if dtype == pl.Null:  # all NULL: any column type, NULL has no representation to match
        target = _null_target(type_name)
        return None if target is None else col.cast(target)
    if type_name == "uuid":
        # canonical text (checked by _canonical_uuids) -> the UUID's 16 bytes
        return col.str.replace_all("-", "", literal=True).str.decode("hex") if dtype == pl.String else None
    if type_name in _TEXTS:
        return col if dtype == pl.String else None
    if type_name in _INTEGERS:
        return col.cast(_INTEGERS[type_name], strict=True) if dtype.is_integer() else None
    if type_name == "numeric":
        if isinstance(dtype, pl.Decimal):
            return col if (dtype.precision or _MAX_DECIMAL_PRECISION + 1) <= _MAX_DECIMAL_PRECISION else None
        return col.cast(pl.Decimal(_MAX_DECIMAL_PRECISION, 0), strict=True) if dtype.is_integer() else None
    if type_name == "boolean":
        return col if dtype == pl.Boolean else None
    if type_name == "date":
        return col if dtype == pl.Date else None
    if type_name == "timestamp with time zone":
        # an instant: any zone converts exactly; a naive value would depend on the session's zone
        # (nanoseconds go as CSV: PostgreSQL rounds them, a cast to microseconds would truncate)
        if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None and dtype.time_unit != "ns":
            return col.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
        return None
    if type_name == "timestamp without time zone":
        if isinstance(dtype, pl.Datetime) and dtype.time_zone is None and dtype.time_unit != "ns":
            return col.dt.cast_time_unit("us")
        return None
    if type_name == "double precision":
        return col.cast(pl.Float64) if dtype in (pl.Float32, pl.Float64) else None
    return None


def _null_target(type_name: str) -> pl.DataType | None:
    if type_name == "uuid":
        return pl.Binary()
    if type_name in _TEXTS:
        return pl.String()
    if type_name in _INTEGERS:
        return _INTEGERS[type_name]()
    return {
        "numeric": pl.Decimal(_MAX_DECIMAL_PRECISION, 0),
        "boolean": pl.Boolean(),
        "date": pl.Date(),
        "timestamp with time zone": pl.Datetime("us", "UTC"),
        "timestamp without time zone": pl.Datetime("us"),
        "double precision": pl.Float64(),
    }.get(type_name)
