"""Contracts other tools build on: DLQ headers, ordering positions, the CLI surface."""

from __future__ import annotations

from typer.testing import CliRunner

from orion_etl.adapters.dlq import DeadLetter, dlq_headers, letter_id
from orion_etl.adapters.warehouse_loader import pos
from orion_etl.cli.app import app
from orion_etl.core.records import KafkaRecord


def test_dlq_headers_contract() -> None:
    record = KafkaRecord("cdc.public.trades", 3, 42, b"k", b"v", 1_700_000_000_123, [("trace", b"abc")])
    letter = DeadLetter(record, "RULE", "[valid_side] side must be BUY or SELL", "valid_side")
    headers = dlq_headers(letter, "loader", "run-1")
    as_dict = dict(headers)
    assert as_dict["trace"] == b"abc"  # original headers are kept
    assert as_dict["dlq.error_class"] == b"RULE"
    assert as_dict["dlq.rule"] == b"valid_side"
    assert as_dict["dlq.origin_topic"] == b"cdc.public.trades"
    assert as_dict["dlq.origin_partition"] == b"3" and as_dict["dlq.origin_offset"] == b"42"
    assert as_dict["dlq.origin_timestamp"] == b"1700000000123"
    assert as_dict["dlq.fingerprint"] == letter_id(record).encode() and len(letter_id(record)) == 32
    assert as_dict["dlq.consumer_group"] == b"loader" and as_dict["dlq.job_run_id"] == b"run-1"
    assert as_dict["dlq.failed_at"].endswith(b"+00:00")


def test_letter_id_is_stable_and_positional() -> None:
    a = KafkaRecord("t", 0, 1, None, b"x")
    assert letter_id(a) == letter_id(KafkaRecord("t", 0, 1, b"other", b"y"))
    assert letter_id(a) != letter_id(KafkaRecord("t", 0, 2, None, b"x"))


def test_position_expression_orders_origin_then_lsns_then_event_version() -> None:
    text = pos("f").as_string(None)
    assert text.index("src_origin") < text.index("src_commit_lsn") < text.index("src_lsn")
    assert text.index("src_lsn") < text.index("src_event_version") < text.index("src_event_ts")


def test_cli_help_lists_the_options() -> None:
    result = CliRunner().invoke(app, ["stream", "--help"])
    assert result.exit_code == 0
    for option in ("--until-caught-up", "--max-messages", "--group", "--format"):
        assert option in result.output
    assert CliRunner().invoke(app, ["stream", "--max-messages", "0"]).exit_code == 2
