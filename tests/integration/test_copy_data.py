"""Binary COPY (adapters/copy_data.py) against the real PostgreSQL: whatever the frame holds, the
binary path stores exactly what the CSV path stores, or the frame goes as CSV."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import polars as pl
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from orion_etl.adapters import warehouse_loader
from orion_etl.adapters.copy_data import CopyData, column_types, csv_data, encode_copy
from orion_etl.adapters.warehouse_loader import _COPY_LINE
from orion_etl.config.models import OrionSettings
from tests.integration.stream_support import STREAM_TABLES, drain, produce, stream_settings
from tests.stream_builders import (
    cdc,
    dumps,
    order_row,
    position_row,
    quote_event,
    risk_event,
    trade_event,
    trade_row,
)

pytestmark = pytest.mark.integration

COLUMNS = {  # column -> (PostgreSQL type, polars type)
    "id": ("uuid", pl.String),
    "name": ("text", pl.String),
    "code": ("varchar(12)", pl.String),
    "small": ("smallint", pl.Int16),
    "count": ("integer", pl.Int32),
    "big": ("bigint", pl.Int64),
    "amount": ("numeric(38,10)", pl.Decimal(38, 10)),
    "price": ("numeric(28,10)", pl.Decimal(28, 10)),
    "flag": ("boolean", pl.Boolean),
    "day": ("date", pl.Date),
    "at": ("timestamptz", pl.Datetime("us", "UTC")),
    "local": ("timestamp", pl.Datetime("us")),
    "ratio": ("double precision", pl.Float64),
}
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)
DECIMALS = st.decimals(min_value=Decimal("-1e17"), max_value=Decimal("1e17"), places=10, allow_nan=False)
INSTANTS = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))


def _uuid_text(u: uuid.UUID, upper: bool) -> str:
    return str(u).upper() if upper else str(u)


ROW = st.fixed_dictionaries(
    {
        "id": st.none() | st.builds(_uuid_text, st.uuids(), st.booleans()),
        "name": st.none() | TEXT,
        "code": st.none() | st.text(max_size=12, alphabet=st.characters(blacklist_categories=("Cs",),
                                                                           blacklist_characters="\x00")),
        "small": st.none() | st.integers(-(2**15), 2**15 - 1),
        "count": st.none() | st.integers(-(2**31), 2**31 - 1),
        "big": st.none() | st.integers(-(2**63), 2**63 - 1),
        "amount": st.none() | DECIMALS,
        "price": st.none() | st.decimals(min_value=Decimal("-1e17"), max_value=Decimal("1e17"), places=10,
                                         allow_nan=False),
        "flag": st.none() | st.booleans(),
        "day": st.none() | st.dates(min_value=date(1, 1, 1), max_value=date(9999, 12, 31)),
        "at": st.none() | INSTANTS.map(lambda d: d.replace(tzinfo=UTC)),
        "local": st.none() | INSTANTS,
        "ratio": st.none() | st.floats(allow_nan=False, allow_infinity=False),
    }
)  # fmt: skip


@pytest.fixture
def conn(warehouse: psycopg.Connection) -> psycopg.Connection:
    for name in ("copy_csv", "copy_binary"):
        warehouse.execute(
            sql.SQL("CREATE TEMP TABLE {} ({})").format(
                sql.Identifier(name),
                sql.SQL(", ").join(
                    sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(t)) for c, (t, _) in COLUMNS.items()
                ),
            )
        )
    return warehouse


def _frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={c: t for c, (_, t) in COLUMNS.items()}, orient="row")


def _load(conn: psycopg.Connection, table: str, data: CopyData, columns: list[str]) -> list[tuple[Any, ...]]:
    conn.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(table)))
    with conn.cursor() as cur, cur.copy(data.statement(table, columns)) as copy:
        copy.write(data.data)
    return conn.execute(
        sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in columns), sql.Identifier(table)
        )
    ).fetchall()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(ROW, min_size=1, max_size=40))
def test_binary_copy_stores_what_csv_stores(conn: psycopg.Connection, rows: list[dict[str, Any]]) -> None:
    frame = _frame(rows)
    columns = list(COLUMNS)
    types = column_types(conn, ["copy_binary"])["copy_binary"]
    binary = encode_copy(frame, types)
    assert binary.format == "binary"
    by_csv = _load(conn, "copy_csv", csv_data(frame), columns)
    by_binary = _load(conn, "copy_binary", binary, columns)
    assert by_binary == by_csv
    # and both are the input (the reference model: the values themselves, UUIDs as UUIDs)
    expected = [
        tuple(uuid.UUID(row[c]) if c == "id" and row[c] is not None else row[c] for c in columns)
        for row in rows
    ]
    assert by_binary == expected


@pytest.mark.parametrize(
    ("column", "dtype", "value", "why"),
    [
        ("id", pl.String, "{12345678-1234-1234-1234-123456789abc}", "a UUID form only PostgreSQL parses"),
        ("id", pl.String, "not-a-uuid", "PostgreSQL refuses it: the row's dead letter says why"),
        ("count", pl.Int64, 2**40, "out of integer's range"),
        ("at", pl.Datetime("us"), datetime(2024, 1, 1), "naive time for an instant: session zone"),
        ("at", pl.Datetime("ns", "UTC"), datetime(2024, 1, 1, tzinfo=UTC), "PostgreSQL rounds nanoseconds"),
        ("amount", pl.Float64, 1.5, "a float for a numeric"),
        ("name", pl.Int64, 5, "a number for text"),
    ],
)
def test_what_cannot_be_encoded_exactly_goes_as_csv(
    conn: psycopg.Connection, column: str, dtype: pl.DataType, value: Any, why: str
) -> None:
    frame = pl.DataFrame({column: [value]}, schema={column: dtype})
    types = column_types(conn, ["copy_binary"])["copy_binary"]
    assert encode_copy(frame, types).format == "csv", why
    assert encode_copy(frame, None).format == "csv"


def test_all_null_columns_and_unknown_types(conn: psycopg.Connection) -> None:
    types = column_types(conn, ["copy_binary"])["copy_binary"]
    frame = pl.DataFrame({c: [None, None] for c in COLUMNS})  # every column of dtype Null
    data = encode_copy(frame, types)
    assert data.format == "binary"
    assert _load(conn, "copy_binary", data, list(COLUMNS)) == [(None,) * len(COLUMNS)] * 2
    assert encode_copy(pl.DataFrame({"doc": ['{"a": 1}']}), {"doc": "jsonb"}).format == "csv"


def test_a_refused_binary_row_is_named_by_its_line_like_csv(conn: psycopg.Connection) -> None:
    """The loader isolates a refused row by the COPY line PostgreSQL names (warehouse_loader._split)."""
    types = column_types(conn, ["copy_binary"])["copy_binary"]
    frame = pl.DataFrame({"code": ["ok", "fine", "far too long for twelve", "ok"]})
    data = encode_copy(frame, types)
    assert data.format == "binary"
    with pytest.raises(psycopg.errors.StringDataRightTruncation) as err:
        _load(conn, "copy_binary", data, ["code"])
    match = _COPY_LINE.match(err.value.diag.context or "")
    assert match is not None
    assert match.group(1) == "3"
    conn.rollback()


def test_timestamps_far_from_the_2000_epoch(conn: psycopg.Connection) -> None:
    types = column_types(conn, ["copy_binary"])["copy_binary"]
    instants = [datetime(1, 1, 1, tzinfo=UTC) + timedelta(days=1), datetime(9999, 12, 31, 23, 59, tzinfo=UTC)]
    frame = pl.DataFrame({"at": instants}, schema={"at": pl.Datetime("us", "UTC")})
    data = encode_copy(frame, types)
    assert data.format == "binary"
    assert [r[0] for r in _load(conn, "copy_binary", data, ["at"])] == instants


# --- the loader: binary COPY end to end ---------------------------------------------------------


def _workload(settings: OrionSettings) -> list[tuple[str, bytes | None, bytes | None]]:
    """Every fact table, inserts, updates, deletes, events, and rows PostgreSQL refuses."""
    t = settings.stream.topics
    out: list[tuple[str, bytes | None, bytes | None]] = []
    for n in range(40):
        row = trade_row(
            id=str(uuid.UUID(int=70_000 + n)),
            quantity=f"{n}.125",
            price=f"1.{n:04d}",
            trade_reference=f'ref,"{n}"\n\\;',
            execution_venue=None if n % 3 else "LMAX",
        )
        out.append((t.trades_cdc, row["id"].encode(), cdc("trades", row, lsn=10_000 + n)))
        if n % 4 == 0:
            row = {**row, "price": "2.5"}
            out.append((t.trades_cdc, row["id"].encode(), cdc("trades", row, op="u", lsn=20_000 + n)))
        if n % 10 == 0:
            out.append(
                (t.trades_cdc, row["id"].encode(), cdc("trades", None, op="d", before=row, lsn=30_000 + n))
            )
    bad = trade_row(id=str(uuid.UUID(int=79_999)), currency="TOO-LONG-CURRENCY")  # varchar(10): refused
    out.append((t.trades_cdc, bad["id"].encode(), cdc("trades", bad, lsn=40_000)))
    out += [
        (t.orders_cdc, None, cdc("orders", order_row(id=str(uuid.UUID(int=80_000 + n)), lsn=50_000 + n)))
        for n in range(10)
    ]
    out += [(t.trade_events, None, dumps(trade_event(tradeReference=f"ev-{n}"))) for n in range(10)]
    out += [(t.quote_events, None, dumps(quote_event(f"1.{n:03d}", f"1.{n + 2:03d}"))) for n in range(10)]
    out += [
        (t.positions_cdc, None, cdc("positions", position_row(quantity=str(n * 10)), lsn=60_000 + n))
        for n in range(5)
    ]
    out += [
        (t.risk_events, None, dumps(risk_event(sequence=n, snapshotTime=f"2024-03-15T12:0{n}:00Z")))
        for n in range(5)
    ]
    return out  # fmt: skip


_TABLES = ["fact_trades", "fact_orders", "fact_quotes", "fact_positions", "fact_risk_snapshots",
           "etl_fact_tombstones", "etl_data_quality_issues"]  # fmt: skip
_NOT_COMPARED = {
    "loaded_at",
    "updated_at",
    "load_xid",
    "created_at",
    "deleted_at",
    "id",
    "job_run_id",
    "detected_at",
}


def _contents(conn: psycopg.Connection) -> dict[str, list[tuple[Any, ...]]]:
    out = {}
    for table in _TABLES:
        cols = [
            r[0]
            for r in conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                "AND NOT attisdropped ORDER BY attnum",
                [table],
            ).fetchall()
            if r[0] not in _NOT_COMPARED
        ]
        rows = conn.execute(
            sql.SQL("SELECT {} FROM {}").format(
                sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in cols),
                sql.Identifier(table),
            )
        ).fetchall()
        out[table] = sorted(rows, key=repr)
    return out


def _empty(conn: psycopg.Connection) -> None:
    conn.execute(sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(sql.Identifier(t) for t in STREAM_TABLES)))
    conn.execute("TRUNCATE etl_data_quality_issues")


def test_the_loader_stores_the_same_warehouse_with_binary_and_csv_copy(
    stack_settings: OrionSettings,
    topic_name: Callable[[str], str],
    warehouse: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    warehouse.autocommit = True
    settings = stream_settings(stack_settings, topic_name)
    produce(settings, _workload(settings))
    formats: list[str] = []
    real_encode = warehouse_loader.encode_copy

    def spy(frame: pl.DataFrame, types: dict[str, str] | None) -> CopyData:
        data = real_encode(frame, types)
        formats.append(data.format)
        return data

    monkeypatch.setattr(warehouse_loader, "encode_copy", spy)
    contents = {}
    for fmt in ("binary", "csv"):
        _empty(warehouse)
        wh = settings.warehouse.model_copy(update={"copy_format": fmt})
        result = drain(settings.model_copy(update={"warehouse": wh}), group=topic_name(f"group-{fmt}"))
        assert result.exit_code == 1, result.stats.as_dict()  # the refused trade: a warning, not a failure
        assert result.stats.dlq == 1
        contents[fmt] = _contents(warehouse)
        if fmt == "binary":
            assert "binary" in formats
            assert len(contents[fmt]["fact_trades"]) == 40 + 10  # 4 deleted ones stay, soft-deleted
    assert contents["binary"] == contents["csv"]
    assert formats.count("binary") >= 5  # trades, orders, quotes, positions, risk (csv run: none)


def test_a_binary_copy_the_table_does_not_match_falls_back_to_csv_without_refusing_rows(
    stack_settings: OrionSettings,
    topic_name: Callable[[str], str],
    warehouse: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The loader's idea of the column types is wrong (an `integer` it believes `bigint`, as after a
    migration under a running loader): PostgreSQL calls the binary data malformed; that is no reason
    to dead-letter the rows. The batch goes again as CSV and so does every later one."""
    warehouse.autocommit = True
    _empty(warehouse)
    real_types = warehouse_loader.column_types

    def stale_types(conn: psycopg.Connection, tables: Any) -> dict[str, dict[str, str]]:
        types = real_types(conn, tables)
        types["fact_trades"]["fill_latency_ms"] = "bigint"  # really integer: 8 bytes where 4 belong
        return types

    monkeypatch.setattr(warehouse_loader, "column_types", stale_types)
    settings = stream_settings(stack_settings, topic_name)
    rows = [trade_row(id=str(uuid.UUID(int=90_000 + n))) for n in range(20)]
    produce(settings, [(settings.stream.topics.trades_cdc, None, cdc("trades", r, lsn=1000 + n))
                       for n, r in enumerate(rows)])  # fmt: skip
    with caplog.at_level("WARNING"):
        result = drain(settings)
    assert result.exit_code == 0, result.stats.as_dict()
    assert result.stats.loaded == 20 and result.stats.dlq == 0
    assert warehouse.execute("SELECT count(*) FROM fact_trades").fetchone() == (20,)
    assert "refused the binary COPY data" in caplog.text
    assert "SQLSTATE 22P03" in caplog.text
