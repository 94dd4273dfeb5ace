"""Output helpers shared by commands: JSON for scripts, rich tables for people."""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.table import Table

from orion_etl.logs import redactor


class OutputFormat(StrEnum):
    """`--format` choices."""

    TABLE = "table"
    JSON = "json"


def print_json(data: Any) -> None:
    """Write `data` as JSON to stdout, secrets redacted."""
    sys.stdout.write(redactor.redact(json.dumps(data, indent=2, default=str)) + "\n")


def print_table(console: Console, title: str, columns: list[str], rows: list[list[Any]]) -> None:
    """A rich table (plain text when stdout is not a terminal)."""
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(redactor.redact("" if v is None else str(v)) for v in row))
    console.print(table)
