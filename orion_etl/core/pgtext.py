"""Text the warehouse can store: the one place that decides it (pure, no I/O).

A UTF-8 PostgreSQL database refuses two kinds of Python text: the NUL character (`text` cannot
hold it; `jsonb` refuses the `\\u0000` escape) and lone surrogates (U+D800..U+DFFF have no UTF-8
encoding; psycopg cannot even send them). Everything else, noncharacters and private-use
code points included, is accepted.

Two policies, by what the text is:

* **Diagnostics** (a DQ issue's `record_data` / `error_message`, dead-letter headers, the job
  ledger's metadata and error) are *escaped*: each refused character becomes the six characters of
  its JSON escape (`\\u0000`, `\\ud800`), readable and stable. `storable` does it on a string,
  `storable_value` recursively on the strings (and keys) of dicts/lists/tuples *before* they are
  serialised: escaping is never done by replacing text in serialised JSON (that breaks a literal
  backslash followed by `u0000` into an invalid escape). `pg_json` is the serialiser every
  writer of a jsonb column uses.
* **Fact columns** are not altered: a fact text value holding a refused character makes its record
  `INVALID_VALUE` (dead-lettered with its reason) rather than silently loading different data.
  `refused_in` is that test for polars columns (polars strings are UTF-8, so only NUL can occur).
"""

from __future__ import annotations

import json
import re
from typing import Any

import polars as pl

REFUSED = re.compile("[\x00\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def storable(text: str) -> str:
    """`text` with every character PostgreSQL refuses replaced by its `\\uXXXX` escape text."""
    if REFUSED.search(text) is None:  # the usual case: one C-level scan, no copy
        return text
    return REFUSED.sub(_escape, text)


def storable_value(value: Any) -> Any:
    """`value` with `storable` applied to every string in it, dict keys included (recursively)."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable_value(k) if isinstance(k, str) else k: storable_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable_value(v) for v in value]
    return value


def _default(value: Any) -> str:
    # Decimals, UUIDs, dates and anything else JSON has no type for: their text, escaped
    return storable(str(value))


def pg_json(value: Any) -> str | None:
    """`value` serialised for a `json`/`jsonb` column (None stays SQL NULL).

    Non-finite floats become JSON strings ("NaN", "Infinity"): jsonb refuses the bare tokens.
    """
    if value is None:
        return None
    return json.dumps(_finite(storable_value(value)), default=_default, ensure_ascii=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def refused_in(column: str) -> pl.Expr:
    """True where a text column holds a character a fact column cannot store (NUL)."""
    return pl.col(column).str.contains("\x00", literal=True)
