"""Hostile and malformed input: every record is loaded (verbatim), dead-lettered with a reason, or
acknowledged as documented; every hostile command line is refused with a clear one-line error or
runs harmlessly. Nothing is executed that was not meant to be: no table dropped, no rows appear
or vanish outside what the inputs should do."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import sql

from orion_etl.cli import app as cli
from orion_etl.config.models import OrionSettings
from tests.integration.stream_support import STREAM_TABLES, drain
from tests.reliability_support import loader_env, read_all, reliability_settings
from tests.stream_builders import b64_decimal, cdc, envelope_schema, quote_event, trade_event, trade_row

pytestmark = pytest.mark.integration

LOAD, ACK = "LOAD", "ACK"
INJECT = "'); DROP TABLE fact_trades; --"


@pytest.fixture
def wh(warehouse: psycopg.Connection) -> psycopg.Connection:
    warehouse.execute(
        sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(sql.Identifier(t) for t in STREAM_TABLES))
    )
    return warehouse


def _t(**after: Any) -> tuple[bytes, dict[str, Any]]:
    row = trade_row(**after)
    return cdc("trades", row, schema=False), row


def _with_schema(
    row: dict[str, Any], overrides: Any = None, drop: str | None = None, add: str | None = None
) -> bytes:
    schema = envelope_schema("trades", overrides)
    for part in schema["fields"][:2]:
        if drop:
            part["fields"] = [f for f in part["fields"] if f["field"] != drop]
        if add:
            part["fields"].append({"type": "string", "optional": True, "field": add})
    doc = json.loads(cdc("trades", row, schema=False))
    return json.dumps({"schema": schema, "payload": doc}).encode()


def _nested(depth: int) -> bytes:
    value, row = _t()
    return value.replace(b'"currency"', b'"deep": ' + b"[" * depth + b"]" * depth + b', "currency"'), row


def corpus(t: Any) -> list[tuple[str, str, bytes | None, bytes | None, str, dict[str, Any] | None]]:
    """(name, topic, key, value, expected: LOAD | ACK | <DLQ error class>, row expected in fact_trades)."""
    out: list[tuple[str, str, bytes | None, bytes | None, str, dict[str, Any] | None]] = []

    def add(
        name: str,
        value: bytes | None,
        expected: str,
        row: dict[str, Any] | None = None,
        topic: str | None = None,
        key: bytes | None = None,
    ) -> None:
        out.append((name, topic or t.trades_cdc, key, value, expected, row))

    good, _ = _t()
    add("invalid UTF-8 inside a JSON string", good.replace(b"USD", b"\xff\xfeD"), "DECODE")
    v, r = _t()
    add("invalid UTF-8 in the record key", v, LOAD, r, key=b"\xff\xfe\x00key")
    add("truncated JSON", good[: len(good) // 2], "DECODE")
    add("empty value", b"", "DECODE")
    add("JSON array", b"[1, 2, 3]", "DECODE")
    add("JSON string", b'"hello"', "DECODE")
    add("JSON null", b"null", "DECODE")
    add("NaN literal", _t(quantity="__X__")[0].replace(b'"__X__"', b"NaN"), "DECODE")
    add("Infinity literal", _t(price="__X__")[0].replace(b'"__X__"', b"Infinity"), "DECODE")
    add("-Infinity literal", _t(fees="__X__")[0].replace(b'"__X__"', b"-Infinity"), "DECODE")
    add("'NaN' as a decimal string", _t(quantity="NaN")[0], "INVALID_VALUE")
    add("'Infinity' as a decimal string", _t(price="Infinity")[0], "INVALID_VALUE")
    add("1e400 number literal", _t(quantity="__X__")[0].replace(b'"__X__"', b"1e400"), "INVALID_VALUE")
    add("far-future date 9999-12-31", _t(trade_date="9999-12-31T00:00:00Z")[0], "INVALID_VALUE")
    add("pre-epoch date 1969-12-31", _t(trade_date="1969-12-31T23:59:59Z")[0], "INVALID_VALUE")
    add("negative epoch micros", _t(trade_date=-1)[0], "INVALID_VALUE")
    add("year 0001", _t(trade_date="0001-01-01T00:00:00Z")[0], "INVALID_VALUE")
    add("impossible date 2024-02-30", _t(trade_date="2024-02-30T10:00:00Z")[0], "INVALID_VALUE")
    add("settlement date 10^9 days", _t(settlement_date=10**9)[0], "INVALID_VALUE")
    add("oversized message (5 MB reference)", _t(trade_reference="x" * 5_000_000)[0], "INVALID_VALUE")
    v, r = _t(trade_reference=INJECT)
    add("SQL injection in a text field", v, LOAD, r)
    v, r = _t(execution_venue='"; DELETE FROM dim_clients; --')
    add("SQL injection (double quote) in a text field", v, LOAD, r)
    add("SQL injection as the trade id", _t(id=f"1{INJECT}")[0], "INVALID_VALUE")
    add(
        "SQL injection in source.table",
        good.replace(b'"table": "trades"', b'"table": "trades; DROP TABLE x"'),
        "UNKNOWN_TOPIC",
    )
    add(
        "SQL injection as op",
        good.replace(b'"op": "c"', b'"op": "c\'; DROP TABLE fact_trades; --"'),
        "UNKNOWN_OP",
    )
    add("unknown op t (truncate)", good.replace(b'"op": "c"', b'"op": "t"'), "UNKNOWN_OP")
    add("unknown op m (message)", good.replace(b'"op": "c"', b'"op": "m"'), "UNKNOWN_OP")
    r = trade_row(extra_column="new")
    add("schema change: column added", _with_schema(r, add="extra_column"), LOAD, r)
    r = trade_row()
    del r["fees"]
    add("schema change: column dropped", _with_schema(r, drop="fees"), LOAD, {**r, "fees": "0"})
    r = trade_row(quantity=b64_decimal(Decimal("12.5"), 4))
    v = _with_schema(r, {"quantity": ("bytes", "org.apache.kafka.connect.data.Decimal", {"scale": "4"})})
    add("schema change: decimal becomes base64 bytes", v, LOAD, {**r, "quantity": "12.5"})
    r = trade_row(quantity=7)
    add("schema change: decimal becomes int64", _with_schema(r, {"quantity": ("int64", None, None)}), LOAD, r)
    add("NUL character in a text field", _t(trade_reference="a\u0000b")[0], "INVALID_VALUE")
    v, r = _t(execution_venue='a,"b"\nc\\N\r\t')
    add("CSV/COPY control characters in text", v, LOAD, r)
    v, r = _t(execution_venue="😀 مرحبا \u200b\u202e")
    add("emoji, RTL and zero-width text", v, LOAD, r)
    v, r = _t(trade_reference="")
    add("empty string (not NULL)", v, LOAD, r)
    v, r = _nested(50)
    add("nested JSON in an unknown field", v, LOAD, r)
    add("JSON nested 100,000 deep", _nested(100_000)[0], "DECODE")
    v, r = _t(quantity="1")
    add(
        "duplicate JSON keys (last wins)",
        v.replace(b'"quantity": "1"', b'"quantity": "9", "quantity": "1"'),
        LOAD,
        r,
    )
    add("Kafka tombstone (null value)", None, ACK)
    add("text longer than the column", _t(currency="USD" * 10)[0], "INVALID_VALUE")
    e = t.trade_events
    add("event: eventVersion 2", json.dumps({**trade_event(), "eventVersion": 2}).encode(), "DECODE", topic=e)
    add(
        "event: occurredAt not a time",
        json.dumps(trade_event(occurred_at="yesterday")).encode(),
        "INVALID_VALUE",
        topic=e,
    )
    add(
        "event: sequence as injection text",
        json.dumps({**trade_event(), "sequence": "1; DROP TABLE x"}).encode(),
        "DECODE",
        topic=e,
    )
    add(
        "event: eventType injection",
        json.dumps({**trade_event(), "eventType": "trade.executed'--"}).encode(),
        "UNKNOWN_TOPIC",
        topic=e,
    )
    add("event: tradeId missing", json.dumps(trade_event(tradeId=None)).encode(), "INVALID_VALUE", topic=e)
    q = t.quote_events
    add("quote: zero bid", json.dumps(quote_event("0", "1.1")).encode(), "RULE", topic=q)
    add("quote: negative bid", json.dumps(quote_event("-1.1", "1.1")).encode(), "RULE", topic=q)
    add(
        "quote: NaN bid literal",
        json.dumps(quote_event("__X__", "1.1")).encode().replace(b'"__X__"', b"NaN"),
        "DECODE",
        topic=q,
    )
    return out


def test_hostile_records_are_loaded_verbatim_or_dead_lettered_with_a_reason(
    stack_settings: OrionSettings, topic_name: Callable[[str], str], wh: psycopg.Connection
) -> None:
    settings = reliability_settings(
        stack_settings, topic_name("hostile"), trade_partitions=1, event_partitions=1
    )
    t = settings.stream.topics
    items = corpus(t)
    assert len(items) >= 30
    tables_before = _tables(wh)
    from orion_etl.adapters.kafka import make_producer

    producer = make_producer(settings.kafka, **{"message.max.bytes": 8_000_000})
    spoofed = [("dlq.error_class", b"FAKE"), ("dlq.fingerprint", b"spoof")]
    where: dict[tuple[str, int], int] = {}
    counters: dict[str, int] = {}
    for i, (_name, topic, key, value, _exp, _row) in enumerate(items):
        producer.produce(topic, value=value, key=key, headers=spoofed if i == 0 else None)
        where[(topic, counters.get(topic, 0))] = i
        counters[topic] = counters.get(topic, 0) + 1
    assert producer.flush(60) == 0

    result = drain(settings)
    expected_dlq = {i for i, it in enumerate(items) if it[4] not in (LOAD, ACK)}
    s = result.stats
    assert s.messages == len(items) and s.tombstones == 1, s.as_dict()

    letters: dict[int, dict[str, str]] = {}
    for topic in (t.trades_cdc, t.trade_events, t.quote_events):
        for msg in read_all(settings, topic + settings.stream.dlq_suffix):
            headers = {k: v.decode() for k, v in msg.headers()}
            origin = (headers["dlq.origin_topic"], int(headers["dlq.origin_offset"]))
            letters[where[origin]] = headers
    got = {i: letters[i]["dlq.error_class"] if i in letters else None for i in range(len(items))}
    want = {i: (it[4] if i in expected_dlq else None) for i, it in enumerate(items)}
    mismatch = [
        (items[i][0], want[i], got[i], letters.get(i, {}).get("dlq.error")) for i in got if got[i] != want[i]
    ]
    assert not mismatch, mismatch
    assert all(h["dlq.error"].strip() for h in letters.values()), "every dead letter carries a reason"
    assert letters[0]["dlq.error_class"] == "DECODE" and letters[0]["dlq.fingerprint"] != "spoof"
    assert s.dlq == len(expected_dlq) and result.exit_code == 1

    loaded = [it for it in items if it[4] == LOAD]
    rows = {
        r[0]: r
        for r in wh.execute(
            "SELECT trade_id::text, trade_reference, execution_venue, quantity, fees, currency "
            "FROM fact_trades"
        ).fetchall()
    }
    assert len(rows) == len(loaded), (len(rows), [it[0] for it in loaded])
    for name, *_, expected in loaded:
        assert expected is not None
        got_row = rows[expected["id"]]
        assert got_row[1:3] == (expected["trade_reference"], expected["execution_venue"]), name
        assert got_row[3] == Decimal(str(expected["quantity"])), name
        assert got_row[4] == Decimal(str(expected.get("fees", "0"))), name
    issues = wh.execute("SELECT count(*) FROM etl_data_quality_issues WHERE severity = 'ERROR'").fetchone()
    assert issues == (len(expected_dlq),)
    assert _tables(wh) == tables_before
    assert wh.execute("SELECT count(*) FROM dim_clients").fetchone() == (1,)  # the one inferred client


def _tables(conn: psycopg.Connection) -> list[str]:
    return [
        r[0]
        for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1"
        ).fetchall()
    ]


# --- command lines ----------------------------------------------------------------------------

CLI_CASES: list[tuple[list[str], set[int]]] = [
    (["aggregate", "--date", "2024-01-01'; DROP TABLE fact_trades; --"], {2}),
    (["aggregate", "--date", "9999-99-99"], {2}),
    (["aggregate", "--date", "1969-12-31"], {0}),  # a day without data: runs, changes nothing
    (["aggregate", "--period", "daily; DROP TABLE agg_daily_trade_summary"], {2}),
    (["aggregate", "--from", "2024-01-01", "--to", "2024-01-02' OR '1'='1"], {2}),
    (["aggregate", "validate", "--date", "'; DELETE FROM fact_trades; --"], {2}),
    (["dq", "audit", "--table", "fact_trades; DROP TABLE fact_trades"], {2}),
    (["dq", "audit", "--from", "2024-01-01'; DROP TABLE fact_trades; --"], {2}),
    (["dq", "audit", "--rule", "x'; DROP TABLE fact_trades; --"], {2}),
    (["dq", "issues", "--table", "x' OR '1'='1"], {0}),
    (["dq", "issues", "--severity", "ERROR' OR 1=1 --"], {2}),
    (["dq", "issues", "--run", "1; DROP TABLE etl_job_runs"], {2}),
    (
        ["dq", "rules", "--table", 'fact_trades"; DROP TABLE fact_trades; --'],
        {0, 2},
    ),  # only filters the catalog listing; no SQL
    (["dims", "sync", "--dimension", "client; DROP TABLE dim_clients"], {2}),
    (["dims", "check", "--dimension", "lp'--"], {2}),
    (["jobs", "show", "1; DROP TABLE etl_job_runs"], {2}),
    (["jobs", "show", "00000000-0000-0000-0000-000000000000"], {2}),
    (["jobs", "list", "--job", "'; DROP TABLE etl_job_runs; --"], {0}),
    (["jobs", "list", "--type", "STREAM' OR 'a'='a"], {0}),
    (["jobs", "list", "--since", "1d'; DROP TABLE etl_job_runs; --"], {2}),
    (["db", "migrate", "--target", "warehouse; DROP SCHEMA public CASCADE"], {2}),
    (["stream", "--max-messages", "0"], {2}),
    (["stream", "--max-messages", "1; DROP TABLE etl_consumer_offsets"], {2}),
    (["config", "show", "--format", "json; rm -rf /"], {2}),
    (["--config", "/nonexistent/orion.toml", "jobs", "list"], {2}),
    (["drop-table"], {2}),
]


def _cli(
    argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["orion-etl", *argv])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = int(exc.code or 0) if not isinstance(exc.code, str) else 2
    out = capsys.readouterr()
    return code, out.out + out.err


def test_hostile_command_lines_are_refused_or_harmless(
    stack_settings: OrionSettings,
    topic_name: Callable[[str], str],
    wh: psycopg.Connection,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = reliability_settings(stack_settings, topic_name("hostile-cli"))
    for key, value in loader_env(settings).items():
        if key.startswith("ORION_ETL_"):
            monkeypatch.setenv(key, value)
    monkeypatch.chdir("/")  # no orion-etl.toml of a checkout
    wh.execute(
        "INSERT INTO dim_instruments (instrument_id, symbol, valid_from) VALUES (%s, 'EURUSD', '2024-01-01')",
        (str(uuid.uuid4()),),
    )
    tables_before = _tables(wh)
    bad = []
    for argv, codes in CLI_CASES:
        code, text = _cli(argv, capsys, monkeypatch)
        clear = "error" in text.lower() or "usage" in text.lower() or "invalid" in text.lower()
        if code not in codes or "Traceback" in text or (code == 2 and not clear):
            bad.append((argv, code, text[-400:]))
    # a hostile consumer group name is only ever a value: it runs and is stored verbatim
    group = "g'; DROP TABLE etl_consumer_offsets; --"
    code, text = _cli(
        ["stream", "--group", group, "--until-caught-up", "--format", "json"], capsys, monkeypatch
    )
    if code != 0:
        bad.append((["stream", "--group", group], code, text[-400:]))
    assert not bad, bad
    assert _tables(wh) == tables_before
    assert wh.execute("SELECT count(*) FROM dim_instruments").fetchone() == (1,)
    assert wh.execute("SELECT metadata->>'group' FROM etl_job_runs WHERE job_name = 'stream'").fetchall() == [
        (group,)
    ]
