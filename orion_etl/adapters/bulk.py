"""Bulk loading of polars frames into PostgreSQL with COPY (one round trip per table, not per row)."""

from __future__ import annotations

import io

import polars as pl
import psycopg
from psycopg import sql


def copy_frame(conn: psycopg.Connection, table: str | sql.Composable, frame: pl.DataFrame) -> int:
    """COPY `frame` into `table` (columns by name) as CSV; returns the number of rows sent.

    Decimals and timestamps are written in their exact text forms; nulls as unquoted empty fields.
    """
    if frame.is_empty():
        return 0
    target = sql.Identifier(table) if isinstance(table, str) else table
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in frame.columns)
    buffer = io.BytesIO()
    frame.write_csv(buffer, include_header=False, null_value="", datetime_format="%Y-%m-%dT%H:%M:%S%.f%z")
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv, NULL '')").format(target, columns)
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.write(buffer.getvalue())
    return frame.height
