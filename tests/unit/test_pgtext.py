"""core.pgtext: every string becomes storable, and the escaping is done on values, not on JSON."""

from __future__ import annotations

import json
from typing import Any

import polars as pl
from hypothesis import given
from hypothesis import strategies as st

from orion_etl.core.pgtext import REFUSED, pg_json, refused_in, storable, storable_value

any_text = st.text(alphabet=st.characters(codec=None, categories=None))  # every code point
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=20,
)


def _utf8_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


@given(any_text)
def test_storable_text_encodes_and_keeps_what_is_storable(text: str) -> None:
    out = storable(text)
    assert _utf8_ok(out)
    if REFUSED.search(text) is None:
        assert out is text  # untouched, not even copied
    # reference model: each refused character -> its escape, every other character kept
    assert out == "".join(
        f"\\u{ord(c):04x}" if c == "\x00" or 0xD800 <= ord(c) <= 0xDFFF else c for c in text
    )


@given(json_values)
def test_pg_json_is_valid_json_without_refused_text(value: Any) -> None:
    text = pg_json(value)
    if value is None:
        assert text is None
        return
    assert text is not None and _utf8_ok(text)
    assert "\\u0000" not in text.replace("\\\\", "")  # no NUL escape jsonb would refuse
    assert json.loads(text) == json.loads(json.dumps(_model(value)))


def _model(value: Any) -> Any:
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, float) and (value != value or abs(value) == float("inf")):
        return str(value)
    if isinstance(value, dict):
        return {storable(k): _model(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_model(v) for v in value]
    return value


def test_literal_backslash_u0000_survives() -> None:
    # the old string replacement on serialised JSON turned this into the invalid escape "\\B"
    assert json.loads(pg_json({"raw": 'A\\u0000B "x\u0000"'}) or "") == {"raw": 'A\\u0000B "x\\u0000"'}
    assert storable_value(("a\x00", {"k\ud800": ["\udfff"]})) == ["a\\u0000", {"k\\ud800": ["\\udfff"]}]


def test_refused_in_marks_nul_text() -> None:
    frame = pl.DataFrame({"t": ["ok", "a\x00b", None, "\\u0000"]})
    assert frame.select(refused_in("t")).to_series().to_list() == [False, True, None, False]
