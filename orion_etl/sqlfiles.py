"""Locate the SQL shipped with orion-etl (repository `sql/`, or `orion_etl/_sql` in a wheel)."""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent


def sql_root() -> Path:
    """The directory holding `warehouse/` and `source/` migrations."""
    for candidate in (_PKG.parent / "sql", _PKG / "_sql"):
        if (candidate / "warehouse").is_dir():
            return candidate
    raise FileNotFoundError("orion-etl SQL files not found (expected sql/ beside the package)")


def read_sql(relative: str) -> str:
    """Text of one SQL file under the SQL root, e.g. `queries/aggregate_daily.sql`."""
    return (sql_root() / relative).read_text(encoding="utf-8")
