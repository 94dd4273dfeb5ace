"""What the commands print, read as a person (a terminal) and as a script (a pipe) would.

One deployment per module: a config file in its own folder with a relative `dq.rules_file`,
fresh topics with a good trade, a trade the rules file rejects and a payload that looks like rich
markup, a stream run from another folder, a failed job run with a long multi-line error, and an
audit that records issues. Then every listing command piped, and every command's JSON with a
terminal on stderr.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from orion_etl.adapters.jobruns import record_job_run
from orion_etl.adapters.postgres import connect
from orion_etl.config.models import OrionSettings
from tests.integration.conftest import WAREHOUSE_TABLES
from tests.integration.dq_builders import add_trade, clean_world
from tests.integration.stream_support import REPO, cli_env, produce, stream_settings
from tests.stream_builders import dumps, trade_event
from tests.terminal import BOX_CHARS, Screen, run_with_tty_stderr

pytestmark = pytest.mark.integration

MARKUP_PAYLOAD = b"[/] [bold]not json"
LONG_ERROR = "boom: " + "x" * 150 + "\nsecond line of the error"


@dataclass
class Deployment:
    settings: OrionSettings
    config: Path
    elsewhere: Path
    stream: subprocess.CompletedProcess[str]
    stream_tty: str
    failed_run: str


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value))


def write_config(folder: Path, settings: OrionSettings) -> Path:
    """A config file for `settings` whose rules file is named relative to the file's folder."""
    s = settings
    sections: dict[str, dict[str, Any]] = {
        "source": {"port": s.source.port, "dbname": s.source.dbname,
                   "password": s.source.password.get_secret_value()},
        "warehouse": {"port": s.warehouse.port, "dbname": s.warehouse.dbname,
                      "password": s.warehouse.password.get_secret_value()},
        "kafka": {"bootstrap_servers": s.kafka.bootstrap_servers},
        "connect": {"url": s.connect.url},
        "cdc": {"env": s.cdc.env, "slot_name": s.cdc.slot_name, "publication_name": s.cdc.publication_name},
        "stream": {"group_id": s.stream.group_id, "batch_max_ms": s.stream.batch_max_ms,
                   "assignment_timeout_s": s.stream.assignment_timeout_s},
        "stream.topics": dict(vars(s.stream.topics)),
        "dq": {"rules_file": "rules.toml"},
    }  # fmt: skip
    text = "\n".join(
        f"[{name}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in values.items())
        for name, values in sections.items()
    )
    (folder / "orion-etl.toml").write_text(text)
    (folder / "rules.toml").write_text(
        "[[rules]]\n"
        'table = "fact_trades"\nname = "known_currency"\nkind = "accepted_values"\ncolumn = "currency"\n'
        'values = ["USD", "EUR"]\nseverity = "error"\nmessage = "currency is not settled here"\n'
    )
    return folder / "orion-etl.toml"


def cli(
    dep: Deployment, *args: str, tty: bool = False, cwd: Path | None = None, **env: str
) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run the console script with the deployment's config (piped stdout; stderr on a pty if `tty`)."""
    cmd = [sys.executable, "-m", "orion_etl.cli.app", "--config", str(dep.config), *args]
    environ = cli_env(dep.settings, **{"COLUMNS": "60", **env})
    for key in [k for k in environ if k.startswith("ORION_ETL_WAREHOUSE__")]:
        del environ[key]  # everything comes from the config file
    if tty:
        return run_with_tty_stderr(cmd, environ, cwd=cwd or REPO)
    result = subprocess.run(
        cmd, env=environ, cwd=cwd or REPO, capture_output=True, text=True, timeout=180, check=False
    )
    return result, result.stderr


@pytest.fixture(scope="module")
def dep(stack_settings: OrionSettings, run_id: str, tmp_path_factory: pytest.TempPathFactory) -> Deployment:
    with connect(stack_settings.warehouse, autocommit=True) as conn:
        conn.execute(
            sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                sql.SQL(", ").join(sql.Identifier(t) for t in WAREHOUSE_TABLES)
            )
        )
    counter = iter(range(100))
    settings = stream_settings(
        stack_settings, lambda base: f"test.{run_id}.out.{base}.{next(counter)}.{uuid.uuid4().hex[:6]}"
    )
    folder = tmp_path_factory.mktemp("conf")
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    config = write_config(folder, settings)
    topic = settings.stream.topics.trade_events
    produce(
        settings,
        [
            (topic, None, dumps(trade_event(currency="USD"))),
            (topic, None, dumps(trade_event(currency="XXX"))),
            (topic, None, MARKUP_PAYLOAD),
        ],
    )
    partial = Deployment(settings, config, elsewhere, None, "", "")  # type: ignore[arg-type]
    # The loader from another working directory, stderr on a terminal: live view and log lines.
    stream, tty = cli(
        partial, "stream", "--until-caught-up", "--live", "--format", "json", tty=True, cwd=elsewhere,
        COLUMNS="160",
    )  # fmt: skip
    with pytest.raises(RuntimeError), record_job_run(settings.warehouse, "aggregate", "AGGREGATION") as run:
        raise RuntimeError(LONG_ERROR)
    with connect(settings.warehouse, autocommit=True) as conn:
        client, instrument = clean_world(conn)
        add_trade(conn, client, instrument, fees=Decimal("-2.10"))
    deployment = Deployment(settings, config, elsewhere, stream, tty, str(run.id))
    audit, _ = cli(deployment, "dq", "audit", "--format", "json")
    # fees_non_negative (warning) and known_currency (error: the fixture trades have no currency)
    assert audit.returncode == 4, audit.stdout + audit.stderr
    return deployment


def test_stream_from_another_folder_applies_the_relative_rules_file(dep: Deployment) -> None:
    assert dep.stream.returncode == 1, dep.stream_tty
    summary = json.loads(dep.stream.stdout)
    assert summary["dlq"] == 2 and summary["loaded"] == 1
    shown, _ = cli(dep, "dlq", "show", "--format", "json")
    letters = json.loads(shown.stdout)["items"]
    assert sorted(m["rule"] or "-" for m in letters) == ["-", "known_currency"]


def test_live_view_and_log_lines_share_stderr_without_fragments(dep: Deployment) -> None:
    screen = Screen()
    screen.feed(dep.stream_tty)
    lines = screen.text()
    words = " ".join(" ".join(lines).split())  # rich wraps long log lines; compare the words
    for logged in ("INFO started: group", "INFO assigned", "WARNING batch dead-lettered 2 record(s)",
                   "INFO stream finished: warnings"):  # fmt: skip
        assert logged in words, "\n".join(lines)
    # the live view is gone at the end and nothing of it is left between the log lines
    fragments = [ln for ln in lines if set(ln) & BOX_CHARS]
    assert not fragments, "\n".join(lines)
    assert "orion-etl stream" in dep.stream_tty  # it was drawn while running


LISTINGS: list[tuple[str, ...]] = [
    ("jobs", "list"),
    ("dq", "rules"),
    ("dq", "issues"),
    ("db", "status"),
    ("dlq", "show"),
    ("connectors", "list"),
    ("stream", "offsets", "show"),
]


@pytest.mark.parametrize("args", LISTINGS, ids=lambda a: " ".join(a))
def test_listing_piped_is_plain_one_row_per_line(dep: Deployment, args: tuple[str, ...]) -> None:
    plain, _ = cli(dep, *args)
    as_json, _ = cli(dep, *args, "--format", "json")
    assert plain.returncode == as_json.returncode, plain.stderr
    items = json.loads(as_json.stdout)["items"]
    lines = plain.stdout.splitlines()
    assert "…" not in plain.stdout and not set(plain.stdout) & BOX_CHARS, plain.stdout
    assert len(lines) == 1 + len(items), plain.stdout  # a header, then one line per row
    assert items or args == ("connectors", "list"), args  # the shared Connect may have none


def test_long_values_are_whole_on_their_line(dep: Deployment) -> None:
    jobs, _ = cli(dep, "jobs", "list", "--status", "failed")
    row = next(line for line in jobs.stdout.splitlines() if dep.failed_run in line)
    assert LONG_ERROR.replace("\n", "\\n") in row
    letters, _ = cli(dep, "dlq", "show", "--class", "UNDECODABLE")
    assert MARKUP_PAYLOAD.decode() in letters.stdout.splitlines()[1]
    listed, _ = cli(dep, "dlq", "list")
    assert "…" not in listed.stdout and dep.settings.stream.topics.trade_events + ".dlq" in listed.stdout


def test_data_that_looks_like_markup_is_shown_as_is(dep: Deployment) -> None:
    table, _ = cli(dep, "dlq", "show", "--format", "table", COLUMNS="200")
    assert table.returncode == 0, table.stderr
    assert MARKUP_PAYLOAD.decode() in table.stdout
    issues, _ = cli(dep, "dq", "issues", "--format", "table", COLUMNS="250")
    assert "[fees_non_negative]" in issues.stdout


JSON_COMMANDS: list[tuple[str, ...]] = [
    ("jobs", "list"),
    ("dq", "rules"),
    ("dq", "issues"),
    ("dq", "audit"),
    ("db", "status"),
    ("db", "migrate"),
    ("config", "show"),
    ("config", "check"),
    ("dims", "check"),
    ("dims", "sync"),
    ("aggregate", "--date", "2026-03-02"),
    ("aggregate", "validate", "--date", "2026-03-02"),
    ("connectors", "list"),
    ("cdc", "status"),
    ("dlq", "list"),
    ("dlq", "show"),
    ("dlq", "replay", "--dry-run"),
    ("stream", "--until-caught-up"),
    ("stream", "status"),
    ("stream", "offsets", "show"),
    ("stream", "offsets", "reset", "--to-latest", "--dry-run"),
    ("jobs", "list", "--status", "warning", "--status", "FAILED"),
    ("doctor",),
]
RUNS = {"dq audit", "dims sync", "aggregate --date 2026-03-02", "stream --until-caught-up"}


@pytest.mark.parametrize("args", JSON_COMMANDS, ids=lambda a: " ".join(a))
def test_json_with_a_terminal_on_stderr(dep: Deployment, args: tuple[str, ...]) -> None:
    result, tty = cli(dep, *args, "--format", "json", tty=True)
    doc = json.loads(result.stdout)  # the whole of stdout is one document: no log line in it
    assert doc["schema_version"] == 1, doc
    assert doc["exit_code"] == result.returncode, (doc, tty)
    assert doc["status"] == {0: "ok", 1: "warnings", 2: "invalid", 3: "error", 4: "failed"}[result.returncode]
    if " ".join(args) in RUNS:
        uuid.UUID(doc["run_id"])
    assert "job_run_id" not in json.dumps(doc)


def test_jobs_show_json(dep: Deployment) -> None:
    result, _ = cli(dep, "jobs", "show", dep.failed_run[:8], "--format", "json", tty=True)
    doc = json.loads(result.stdout)
    assert doc["run_id"] == dep.failed_run and doc["run"]["status"] == "FAILED"
    assert doc["run"]["started_at"].endswith("Z")


def test_dq_samples_keep_exact_decimals(dep: Deployment) -> None:
    result, _ = cli(dep, "dq", "issues", "--rule", "fees_non_negative", "--format", "json")
    sample = json.loads(result.stdout)["items"][0]["sample_rows"][0]
    assert isinstance(sample["fees"], str) and Decimal(sample["fees"]) == Decimal("-2.10")  # not a float


@pytest.mark.parametrize("secret", [str(datetime.now(UTC).year), "null"])
def test_a_short_secret_cannot_corrupt_output(dep: Deployment, secret: str) -> None:
    env = {"ORION_ETL_CONNECT__USERNAME": "u", "ORION_ETL_CONNECT__PASSWORD": secret}
    result, _ = cli(dep, "jobs", "list", "--format", "json", **env)
    runs = json.loads(result.stdout)["items"]
    assert runs and all(r["started_at"].startswith(str(datetime.now(UTC).year)) for r in runs)
    assert any(r["error_message"] is None for r in runs)
    plain, _ = cli(dep, "jobs", "list", **env)
    assert f"{datetime.now(UTC).year}-" in plain.stdout and "********-" not in plain.stdout
    rules, _ = cli(dep, "dq", "issues", "--format", "json", **env)
    assert json.loads(rules.stdout)["items"]


def test_a_batch_job_under_json_logs_ends_with_one_summary_line(dep: Deployment) -> None:
    result, _ = cli(dep, "dims", "check", "--log-format", "json")
    assert result.returncode == 0, result.stderr
    synced, _ = cli(dep, "dims", "sync", "--log-format", "json")
    assert synced.stdout == ""  # no box table for the journal
    summary = json.loads(synced.stderr.strip().splitlines()[-1])
    assert summary["event"] == "dims-sync" and summary["outcome"] == "ok" and summary["exit_code"] == 0
    uuid.UUID(summary["run_id"])
    records = [json.loads(line) for line in synced.stderr.splitlines()]  # every line is JSON
    assert all(isinstance(r["msg"], str) and "{'" not in r["msg"] for r in records)


def test_doctor_checks_the_live_system(dep: Deployment) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result, _ = cli(dep, "doctor", "--format", "json", "--metrics-port", port)
    checks = {c["check"]: c for c in json.loads(result.stdout)["checks"]}
    for name in (
        "config",
        "source",
        "kafka",
        "connect",
        "connect plugin",
        "warehouse",
        "warehouse migrations",
    ):
        assert checks[name]["level"] == "ok", checks[name]
    assert checks["source wal_level"]["level"] == "ok"
    assert checks["connector"]["level"] == "warning"  # this deployment registered none
    assert checks["metrics port"]["level"] == "warning"
    assert result.returncode == 4  # the session's slot does not exist: a failure to fix
    plain, _ = cli(dep, "doctor")
    assert len(plain.stdout.splitlines()) == 1 + len(checks)  # a line per check
