"""The one place command output is rendered: data on stdout, in the format asked for.

Every command that prints results takes ``--format table|json|plain|csv`` (`FormatOpt`):

* ``table``: rich tables for a terminal. Cells are `Text`, never markup, and long values fold
  instead of being cut with an ellipsis.
* ``plain``: the default off a terminal. One row per line, columns aligned with two spaces, nothing
  truncated, no box drawing: what `grep`, `awk` and `cut -c` can use.
* ``csv``: rows as RFC 4180 CSV with a header (commands whose result is rows).
* ``json``: one top-level object per run (the convention in the README): ``schema_version``,
  ``status`` (ok | warnings | failed | invalid | error | interrupted: `errors.status_word`),
  ``exit_code``, the command's fields, a list under ``items``; ``run_id`` for the job run;
  ISO-8601 UTC timestamps; decimals as strings. A job's result reaches it as a `Report`
  (`orion_etl/report.py`) through `finish_report`.

`cell` is the single function that turns a value into display text (escaping control characters,
masking secrets by field); every table, plain or CSV cell goes through it.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum, StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orion_etl.errors import exit_code_for, status_word
from orion_etl.logs import json_value, redactor, safe_extra, stderr_console

if TYPE_CHECKING:
    from rich.console import Console

    from orion_etl.report import Report

SCHEMA_VERSION = 1
# Keys renamed in every JSON document so one name means one thing across commands.
_RENAMED_KEYS = {"job_run_id": "run_id"}
_RESERVED = ("schema_version", "status", "exit_code")

log = logging.getLogger("orion_etl.cli")


class OutputFormat(StrEnum):
    """`--format` choices."""

    TABLE = "table"
    JSON = "json"
    PLAIN = "plain"
    CSV = "csv"


FormatOpt = Annotated[
    OutputFormat | None,
    typer.Option(
        "--format",
        "-o",
        case_sensitive=False,
        help="table | json | plain | csv (default: table on a terminal, plain when piped).",
        show_default=False,
    ),
]


def resolve_format(fmt: OutputFormat | str | None) -> OutputFormat:
    """The format asked for, or table on a terminal and plain otherwise."""
    if fmt is None:
        return OutputFormat.TABLE if sys.stdout.isatty() else OutputFormat.PLAIN
    return OutputFormat(str(fmt).lower())


# --- JSON ------------------------------------------------------------------------------------


def _normalise(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {_RENAMED_KEYS.get(str(k), str(k)): _normalise(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_normalise(v) for v in data]
    if isinstance(data, set | frozenset):
        return [_normalise(v) for v in sorted(data, key=str)]
    if data is None or isinstance(data, bool | int | float | str):
        return data
    return json_value(data)


def document(data: Any, exit_code: int = 0) -> dict[str, Any]:
    """`data` wrapped in the JSON convention (a list goes under `items`)."""
    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "status": status_word(int(exit_code)),
        "exit_code": int(exit_code),
    }
    body = _normalise(data)
    if isinstance(body, dict):
        clash = any(k in body and body[k] != doc[k] for k in _RESERVED)
        if clash:
            doc["result"] = body
        else:
            doc.update(body)
            doc["exit_code"] = int(exit_code)
    else:
        doc["items"] = body
    return redactor.mask(doc)


def print_json(data: Any, exit_code: int = 0) -> None:
    """Write `data` as one JSON document (the convention above) to stdout."""
    sys.stdout.write(json.dumps(document(data, exit_code), indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


# --- cells -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Styled:
    """A cell value with a rich style for tables (plain and CSV show only the text)."""

    value: Any
    style: str


_CONTROL = {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t", 0x1B: "\\x1b"}


def cell(value: Any, key: str = "", *, empty: str = "-") -> str:
    """Display text of one value: one line, secrets masked, never markup.

    The single escape function of every table, plain and CSV output.
    """
    if isinstance(value, Styled):
        value = value.value
    if value is None or value == "":
        return empty
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    if isinstance(value, date | Decimal | int | float):
        return str(value)
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(cell(v, key, empty=empty) for v in value) or empty
    if isinstance(value, Mapping):
        text = json.dumps(redactor.mask(_normalise(value)), ensure_ascii=False, separators=(",", ":"))
    else:
        text = redactor.mask_text(str(value), key)
    return "".join(ch if ch.isprintable() else _CONTROL.get(ord(ch), f"\\x{ord(ch):02x}") for ch in text)


@dataclass(frozen=True)
class Column:
    """A column: the key of the row dicts (and JSON) and the header people read."""

    key: str
    header: str = ""
    justify: str = "left"

    @property
    def title(self) -> str:
        return self.header or self.key


Columns = Sequence[Column | str]
Row = Mapping[str, Any] | Sequence[Any]


def _columns(columns: Columns) -> list[Column]:
    return [c if isinstance(c, Column) else Column(c) for c in columns]


def _values(row: Row, cols: list[Column]) -> list[Any]:
    if isinstance(row, Mapping):
        return [row.get(c.key) for c in cols]
    return list(row)


def stdout_console() -> Console:
    """A console on stdout (tables for people)."""
    from rich.console import Console

    return Console()


def print_rows(
    fmt: OutputFormat | None,
    columns: Columns,
    rows: Sequence[Row],
    *,
    title: str | None = None,
    section: bool = False,
    exit_code: int = 0,
) -> None:
    """Rows as a table, plain aligned text, CSV or JSON (`items`).

    `section` marks one of several tables of a command: plain output then starts it with a
    `# title` line so the parts stay apart.
    """
    fmt = resolve_format(fmt)
    cols = _columns(columns)
    if fmt is OutputFormat.JSON:
        items = [
            dict(r) if isinstance(r, Mapping) else dict(zip([c.key for c in cols], r, strict=False))
            for r in rows
        ]
        print_json(items, exit_code)
        return
    if fmt is OutputFormat.CSV:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow([c.key for c in cols])
        for row in rows:
            writer.writerow(
                [cell(v, c.key, empty="") for v, c in zip(_values(row, cols), cols, strict=False)]
            )
        return
    texts = [[cell(v, c.key) for v, c in zip(_values(row, cols), cols, strict=False)] for row in rows]
    if fmt is OutputFormat.PLAIN:
        if section and title:
            sys.stdout.write(f"# {cell(title)}\n")
        header = [c.title for c in cols]
        widths = [max(len(h), *(len(t[i]) for t in texts)) if texts else len(h) for i, h in enumerate(header)]
        for line in [header, *texts]:
            padded = [
                t.rjust(w) if c.justify == "right" else t.ljust(w)
                for t, w, c in zip(line, widths, cols, strict=False)
            ]
            sys.stdout.write("  ".join(padded).rstrip() + "\n")
        if section:
            sys.stdout.write("\n")
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(title) if title else None, title_justify="left")
    for c in cols:
        table.add_column(Text(c.title), overflow="fold", justify=c.justify)  # type: ignore[arg-type]
    for row, line in zip(rows, texts, strict=False):
        raw = _values(row, cols)
        table.add_row(
            *(
                Text(t, style=v.style) if isinstance(v, Styled) else Text(t)
                for t, v in zip(line, raw, strict=False)
            )
        )
    stdout_console().print(table)


def print_record(fmt: OutputFormat | None, data: Mapping[str, Any], *, title: str | None = None) -> None:
    """One record as `key  value` lines (table/plain) or a JSON document."""
    fmt = resolve_format(fmt)
    if fmt is OutputFormat.JSON:
        print_json(dict(data))
        return
    print_rows(fmt, [Column("field"), Column("value")], [[k, v] for k, v in data.items()], title=title)


def say(text: str) -> None:
    """A line for people on stdout (plain text: never markup, secrets masked)."""
    sys.stdout.write(redactor.redact(text) + "\n")


def note(text: str) -> None:
    """A remark for people on stderr (never mixed with data)."""
    stderr_console().print(redactor.redact(text), markup=False, highlight=False, soft_wrap=True)


def finish(
    fmt: OutputFormat | None,
    data: Mapping[str, Any],
    *,
    exit_code: int = 0,
    human: Callable[[OutputFormat], None] | None = None,
    summary_event: str | None = None,
    json_logs_only: bool = False,
) -> None:
    """The end of a command: render `data` (JSON, or `human` for the other formats), then exit.

    `summary_event` logs one machine-readable line with the result's scalar fields (a batch
    job's summary); with `json_logs_only` (JSON logs asked for, no --format) that line replaces the
    table on stdout, so a journal gets one parseable line instead of a box.
    """
    if summary_event:
        fields = {
            k: v
            for k, v in document(data, exit_code).items()
            if k != "schema_version" and (v is None or isinstance(v, bool | int | float | str))
        }
        fields.pop("status", None)
        outcome = status_word(int(exit_code))
        extra = safe_extra({"event": summary_event, "outcome": outcome, **fields})
        log.info("%s finished: %s", summary_event, outcome, extra=extra)
    if not (json_logs_only and fmt is None):
        resolved = resolve_format(fmt)
        if resolved is OutputFormat.JSON:
            print_json(data, exit_code)
        elif human is not None:
            human(resolved)
        else:
            print_record(resolved, data)
    raise typer.Exit(int(exit_code))


def finish_report(
    fmt: OutputFormat | None,
    report: Report,
    *,
    human: Callable[[OutputFormat], None] | None = None,
    summary_event: str | None = None,
    json_logs_only: bool = False,
) -> None:
    """The end of a command that ran a job: render its `Report`, exit with its verdict's code."""
    finish(
        fmt,
        report.to_document(),
        exit_code=exit_code_for(report),
        human=human,
        summary_event=summary_event,
        json_logs_only=json_logs_only,
    )
