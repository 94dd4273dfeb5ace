"""The rendering module: plain rows, one escape function, the JSON convention, masking by field."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import redirect_stdout
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orion_etl.cli.app import hoist_global_options
from orion_etl.cli.render import Column, OutputFormat, cell, document, print_rows
from orion_etl.logs import REDACTED, JsonFormatter, RedactingFilter, SecretRedactor, redactor

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.decimals(allow_nan=False, allow_infinity=False),
    texts,
    st.datetimes(timezones=st.just(UTC)),
)


@pytest.fixture
def secrets() -> Iterator[SecretRedactor]:
    """The shared redactor, restored afterwards."""
    saved = set(redactor._secrets)
    yield redactor
    redactor._secrets = saved
    redactor._pattern = None


def render(fmt: OutputFormat, columns: list[Column | str], rows: list[dict[str, object]]) -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        print_rows(fmt, columns, rows, title="t")
    return out.getvalue()


@given(st.lists(st.fixed_dictionaries({"a": values, "b": values, "c": texts}), max_size=8))
def test_plain_is_one_line_per_row_never_cut(rows: list[dict[str, object]]) -> None:
    text = render(OutputFormat.PLAIN, ["a", "b", "c"], rows)
    lines = text.splitlines()
    assert len(lines) == 1 + len(rows)
    assert lines[0].split() == ["a", "b", "c"]
    for row, line in zip(rows, lines[1:], strict=True):
        for key in "abc":
            assert cell(row[key], key).rstrip() in line  # whole, escaped, on its row's line


@given(values, texts)
def test_cell_is_one_printable_line(value: object, key: str) -> None:
    text = cell(value, key)
    assert text and "\n" not in text and "\r" not in text and all(ch.isprintable() for ch in text)


def test_table_shows_markup_as_text() -> None:
    text = render(OutputFormat.TABLE, ["payload"], [{"payload": "[/] [bold]not json"}, {"payload": "[x]"}])
    assert "[/] [bold]not json" in text and "[x]" in text


def test_csv_round_trips() -> None:
    import csv

    rows = [{"a": 'quote " and, comma', "b": None}, {"a": "line\nbreak", "b": Decimal("1.10")}]
    parsed = list(csv.DictReader(io.StringIO(render(OutputFormat.CSV, ["a", "b"], rows))))
    assert parsed == [{"a": 'quote " and, comma', "b": ""}, {"a": "line\\nbreak", "b": "1.10"}]


def test_json_convention() -> None:
    when = datetime(2026, 3, 2, 14, 30, tzinfo=timezone(timedelta(hours=2)))
    doc = document({"job_run_id": "r1", "at": when, "amount": Decimal("0.10")}, exit_code=1)
    assert doc == {
        "schema_version": 1, "status": "warnings", "exit_code": 1,
        "run_id": "r1", "at": "2026-03-02T12:30:00Z", "amount": "0.10",
    }  # fmt: skip
    assert document([{"id": 1}])["items"] == [{"id": 1}]
    assert document({"status": "COMPLETED"})["result"] == {"status": "COMPLETED"}


@given(st.sampled_from(["2026", "null", "true", "12", "-", "a b"]))
def test_a_short_secret_cannot_corrupt_a_document(secret: str) -> None:
    masker = SecretRedactor()
    masker.register(secret)
    data = {
        "started_at": "2026-12-02T09:31:03Z",
        "error_message": None,
        "count": 2026,
        "ok": True,
        "password": "hunter2",
        "error": f"login with {secret} failed",
        "value": secret,
    }
    masked = masker.mask(data)
    assert json.loads(json.dumps(masked)) == masked
    assert masked["started_at"] == "2026-12-02T09:31:03Z" and masked["count"] == 2026
    assert masked["error_message"] is None and masked["ok"] is True
    assert masked["password"] == REDACTED and masked["value"] == REDACTED
    assert masked["error"] == f"login with {REDACTED} failed"


def test_free_text_masks_whole_tokens_only() -> None:
    masker = SecretRedactor()
    masker.register("s3cret")
    assert masker.redact("pw=s3cret; s3cretive") == f"pw={REDACTED}; s3cretive"


def test_json_log_lines_carry_real_fields(secrets: SecretRedactor) -> None:
    secrets.register("pw-123")
    record = logging.LogRecord(
        "orion_etl.jobs.dims", logging.INFO, __file__, 1, "dims %s: %s", ("client", 3), None
    )
    record.__dict__.update(event="dimension_synced", inserted=3, watermark=datetime(2026, 1, 1, tzinfo=UTC),
                           dsn="password=pw-123")  # fmt: skip
    RedactingFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["event"] == "dimension_synced" and line["inserted"] == 3
    assert line["watermark"] == "2026-01-01T00:00:00Z" and line["msg"] == "dims client: 3"
    assert line["dsn"] == f"password={REDACTED}"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["dims", "sync", "--debug"], ["--debug", "dims", "sync"]),
        (["jobs", "list", "-c", "x.toml", "-n", "5"], ["-c", "x.toml", "jobs", "list", "-n", "5"]),
        (["-c", "a", "db", "status", "--log-format=json"], ["--log-format=json", "-c", "a", "db", "status"]),
        (["dq", "audit", "--", "--debug"], ["dq", "audit", "--", "--debug"]),
    ],
)  # fmt: skip
def test_global_options_are_accepted_after_the_subcommand(argv: list[str], expected: list[str]) -> None:
    assert hoist_global_options(argv) == expected


def test_stream_rate_is_over_a_recent_window() -> None:
    from orion_etl.jobs.stream import RATE_WINDOW_S, StreamStats

    stats = StreamStats(started=0.0)
    stats.messages = 1000
    stats.mark(now=5.0)  # a burst at the start
    assert stats.rate(now=5.0) == pytest.approx(200.0)
    stats.messages = 1010
    stats.mark(now=100.0)
    # long after the burst: ten messages in the last window, not 1010 / 100 s
    assert stats.rate(now=100.0 + RATE_WINDOW_S / 2) < 10 / (RATE_WINDOW_S / 2) + 1e-9
    assert stats.rate(now=200.0) == 0.0


def test_a_provider_reference_is_not_a_secret() -> None:
    masker = SecretRedactor()
    assert masker.mask({"database.password": "${file:/etc/s.properties:pw}"}) == {
        "database.password": "${file:/etc/s.properties:pw}"
    }
    assert masker.mask({"database.password": "inline"}) == {"database.password": REDACTED}


def test_a_narrow_terminal_folds_instead_of_cutting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "40")
    run_id = "0b6e9a55-3f2c-4f5e-9d51-1c2b3a4d5e6f"
    text = render(OutputFormat.TABLE, ["run_id", "job", "error"], [{"run_id": run_id, "job": "dims-sync",
                                                                    "error": "x" * 60}])  # fmt: skip
    assert "…" not in text
    body = [ln for ln in text.splitlines() if "│" in ln]
    first_column = "".join(ln.split("│")[1].strip() for ln in body)
    assert first_column == run_id  # folded over several lines, every character there


def test_stream_progress_and_dead_letter_lines_carry_fields(caplog: pytest.LogCaptureFixture) -> None:
    from orion_etl.jobs.stream import StreamJob, StreamStats
    from orion_etl.jobs.stream_batch import PreparedBatch

    job = object.__new__(StreamJob)  # the two log methods read only stats and the run id
    job.stats = StreamStats(messages=120, lag=7, lag_by_partition={"t[0]": 5, "t[1]": 2})
    job.job_run_id = "r-1"
    letters = [
        SimpleNamespace(error_class=cls, record=SimpleNamespace(topic="t", partition=0, offset=off))
        for cls, off in (("DECODE", 4), ("RULE", 9), ("RULE", 6))
    ]
    with caplog.at_level(logging.INFO, logger="orion_etl"):
        job._log_progress()
        job._warn_dead_letters(PreparedBatch(write=None, letters=letters))  # type: ignore[arg-type]
    progress, warning = caplog.records
    assert progress.event == "progress" and progress.lag_by_partition == {"t[0]": 5, "t[1]": 2}  # type: ignore[attr-defined]
    assert progress.messages == 120 and "lag 7 (t[0]=5, t[1]=2)" in progress.getMessage()  # type: ignore[attr-defined]
    assert warning.levelno == logging.WARNING and warning.event == "dead_letters"  # type: ignore[attr-defined]
    assert warning.classes == {"DECODE": 1, "RULE": 2} and warning.origin_offsets == {"t[0]": "4..9"}  # type: ignore[attr-defined]
