"""librdkafka's own log lines go through Python logging: our format, redaction, no repeats.

The clients point at 127.0.0.1:1, where nothing listens: librdkafka logs a connection failure at
once, no broker needed.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from orion_etl.adapters import kafka
from orion_etl.config.models import KafkaSettings
from orion_etl.errors import ServiceUnavailableError
from orion_etl.logs import REDACTED, configure_logging

LIB = "orion_etl.librdkafka"


@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Installs the CLI's JSON logging for the test; restores the `orion_etl` logger after."""
    root = logging.getLogger("orion_etl")
    saved = (root.handlers[:], root.level, root.propagate)
    monkeypatch.setattr(kafka.repeat_filter, "_seen", {})  # earlier tests' lines do not count
    yield lambda level: configure_logging(level, "json")
    root.handlers[:], root.level, root.propagate = saved


def unreachable(secret: str) -> KafkaSettings:
    """A SASL config whose secret also ends up in librdkafka's log lines (via the client id)."""
    return KafkaSettings(
        bootstrap_servers="127.0.0.1:1",
        client_id=f"loader-{secret}",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_username="orion",
        sasl_password=secret,  # type: ignore[arg-type]
    )


def lines(text: str) -> list[dict[str, Any]]:
    """Every stderr line must be one of our JSON log lines (a raw `%3|...` line fails here)."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def drive(kind: str, settings: KafkaSettings, capfd: pytest.CaptureFixture[str]) -> str:
    """Make a client of `kind` and use it the way the loader does until it has logged; stderr."""
    err = ""
    deadline = time.monotonic() + 10
    if kind == "consumer":
        consumer: Consumer = kafka.make_consumer(settings, "g", **{"debug": "broker"})
        consumer.subscribe(["t"])
        while LIB not in err and time.monotonic() < deadline:
            consumer.consume(timeout=0.2)
            err += capfd.readouterr().err
        consumer.close()
    elif kind == "producer":
        producer: Producer = kafka.make_producer(settings)
        while LIB not in err and time.monotonic() < deadline:
            time.sleep(0.1)
            producer.poll(0)
            err += capfd.readouterr().err
        producer.purge()
        producer.flush(1)
    else:
        with pytest.raises(ServiceUnavailableError, match=r"Kafka at 127\.0\.0\.1:1 unreachable"):
            kafka.ensure_topics(settings, ["t"], timeout_s=0.5)
    return err + capfd.readouterr().err


@pytest.mark.parametrize("kind", ["consumer", "producer", "admin"])
def test_librdkafka_lines_are_our_json_logs_and_redacted(
    kind: str, json_logs: Callable[[str], None], capfd: pytest.CaptureFixture[str]
) -> None:
    secret = f"pw-{uuid.uuid4().hex}"
    json_logs("INFO")
    settings = unreachable(secret)
    err = drive(kind, settings, capfd)
    records = lines(err)
    fails = [r for r in records if r["logger"] == LIB and "Connect to ipv4#127.0.0.1:1 failed" in r["msg"]]
    assert fails, err
    assert fails[0]["level"] == "error"  # librdkafka LOG_ERR
    assert f"[loader-{REDACTED}#" in fails[0]["msg"]
    assert secret not in err
    assert "[thrd:" not in err
    # the consumer ran with debug=broker: LOG_DEBUG lines exist but stay below INFO
    assert all(r["level"] != "debug" for r in records)


def test_debug_lines_map_to_debug(
    json_logs: Callable[[str], None], capfd: pytest.CaptureFixture[str]
) -> None:
    json_logs("DEBUG")
    err = drive("consumer", unreachable(f"pw-{uuid.uuid4().hex}"), capfd)  # runs with debug=broker
    assert any(r["logger"] == LIB and r["level"] == "debug" for r in lines(err)), err


def test_failure_and_error_cb_of_one_event_give_one_line(
    json_logs: Callable[[str], None], capfd: pytest.CaptureFixture[str]
) -> None:
    """librdkafka logs a failed connection on every attempt (~20/s) and also reports it to error_cb."""
    json_logs("INFO")
    settings = unreachable(f"pw-{uuid.uuid4().hex}")
    consumer = kafka.make_consumer(settings, "g")
    consumer.subscribe(["t"])
    err = ""
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        consumer.consume(timeout=0.2)
        err += capfd.readouterr().err
    consumer.close()
    err += capfd.readouterr().err
    fails = [r for r in lines(err) if "Connect to ipv4#127.0.0.1:1 failed" in r["msg"]]
    assert len(fails) == 1, err


def _record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord(LIB, logging.ERROR, "", 0, msg, args, None)


def test_repeat_filter_writes_a_message_once_per_window_and_counts_the_rest() -> None:
    now = [0.0]
    f = kafka.RepeatFilter(window_s=60, clock=lambda: now[0])
    text = "[thrd:b/bootstrap]: b/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused"
    first = _record("%s [%s] %s", "FAIL", "c#consumer-1", f"{text} (after 0ms in state CONNECT)")
    assert f.filter(first)
    assert first.getMessage() == (
        "FAIL [c#consumer-1] b/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused "
        "(after 0ms in state CONNECT)"
    )
    for ms in range(1, 40):
        now[0] = ms
        rec = _record("%s [%s] %s", "FAIL", "c#producer-2", f"{text} (after {ms}ms in state CONNECT)")
        assert not f.filter(rec)
    # the same event through error_cb (no thread prefix) is the same message
    assert not f.filter(_record("%s [%s] %s", "_TRANSPORT", "c", text.split("]: ", 1)[1]))
    assert f.filter(_record("%s [%s] %s", "_ALL_BROKERS_DOWN", "c", "1/1 brokers are down"))
    now[0] = 61
    again = _record("%s [%s] %s", "FAIL", "c#consumer-1", f"{text} (after 3ms in state CONNECT)")
    assert f.filter(again)
    assert again.getMessage().endswith("(40 more like it in the last 61 s)")
