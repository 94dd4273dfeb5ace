"""Secrets (the warehouse password, the Kafka SASL password) never appear in any output, log, DLQ
record or warehouse row: recognisable secret values are configured, the loader and other commands
run (successfully, with dead letters, with a wrong password, against a broker that rejects SASL,
with --debug), and everything they produced is scanned for the values."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from pydantic import SecretStr

from orion_etl.adapters.postgres import connect
from orion_etl.config.models import OrionSettings
from tests.integration.stream_support import STREAM_TABLES, produce
from tests.reliability_support import REPO, Loader, produce_workload, read_all, reliability_settings

pytestmark = pytest.mark.integration
TOKEN = uuid.uuid4().hex[:10]
PG_SECRET = f"PgS3cret-{TOKEN}-pw"
SASL_SECRET = f"SaslS3cret-{TOKEN}-pw"
WRONG_SECRET = f"WrongS3cret-{TOKEN}-pw"
SECRETS = (PG_SECRET, SASL_SECRET, WRONG_SECRET)


@pytest.fixture
def role(stack_settings: OrionSettings, warehouse: psycopg.Connection) -> Iterator[str]:
    """A login role of the session's warehouse whose password is PG_SECRET."""
    name = f"orion_rel_{TOKEN}"
    warehouse.execute(
        sql.SQL("TRUNCATE {}").format(sql.SQL(", ").join(sql.Identifier(t) for t in STREAM_TABLES))
    )
    warehouse.execute(
        sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(PG_SECRET))
    )
    for stmt in (
        "GRANT ALL ON ALL TABLES IN SCHEMA public TO {}",
        "GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO {}",
        "GRANT USAGE ON SCHEMA public TO {}",
    ):
        warehouse.execute(sql.SQL(stmt).format(sql.Identifier(name)))
    yield name
    warehouse.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
    warehouse.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def _stack_logs() -> dict[Path, int]:
    logs = Path(os.environ.get("ORION_STACK_HOME", REPO / ".stack")) / "logs"
    return {p: p.stat().st_size for p in logs.glob("*.log")} if logs.is_dir() else {}


def test_secrets_never_appear_in_outputs_logs_dlq_or_tables(
    stack_settings: OrionSettings,
    topic_name: Callable[[str], str],
    role: str,
    warehouse: psycopg.Connection,
    tmp_path: Path,
) -> None:
    stack_logs = _stack_logs()
    base = stack_settings.model_copy(
        update={
            "warehouse": stack_settings.warehouse.model_copy(
                update={"user": role, "password": SecretStr(PG_SECRET)}
            ),
            "kafka": stack_settings.kafka.model_copy(
                update={"sasl_username": "orion-rel", "sasl_password": SecretStr(SASL_SECRET)}
            ),
        }
    )
    settings = reliability_settings(base, topic_name("secrets"), batch_max_messages=500)
    truth = produce_workload(settings, 3000, seed=21)
    bad = [(settings.stream.topics.trades_cdc, None, f'{{"password": "{i}"'.encode()) for i in range(3)]
    produce(settings, bad)
    env = {"ORION_ETL_CDC__DATABASE_PASSWORD": PG_SECRET, "ORION_ETL_CONNECT__PASSWORD": SASL_SECRET}
    runs: list[tuple[Loader, set[int]]] = []

    def run(name: str, codes: set[int], *args: str, settle: float | None = None, **kw: str) -> None:
        loader = Loader(settings, tmp_path, name, *args, **env, **kw)  # type: ignore[arg-type]
        if settle is not None:  # a run that cannot finish: let it retry, then stop it
            time.sleep(settle)
            loader.stop(60)
        else:
            loader.proc.wait(180)
        runs.append((loader, codes))

    run("loads", {1}, "--until-caught-up")
    run("loads-debug", {0}, "--until-caught-up", command=("--debug", "stream", "--format", "json"))
    wrong = {"ORION_ETL_WAREHOUSE__PASSWORD": WRONG_SECRET}
    run("wrong-db-password", {3}, "--until-caught-up", **wrong)
    run("wrong-db-password-debug", {3}, command=("--debug", "stream"), **wrong)
    sasl = {
        "ORION_ETL_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "ORION_ETL_KAFKA__SASL_MECHANISM": "PLAIN",
    }
    run("sasl-rejected", {0, 1, 3}, "--until-caught-up", settle=8, **sasl)
    run("config-show", {0}, command=("config", "show"))
    run("config-show-json", {0}, command=("config", "show", "--format", "json"))
    run("jobs-list", {0}, command=("jobs", "list", "--format", "json"))
    run("dq-issues", {0}, command=("dq", "issues", "--format", "json"))

    problems = [
        f"{lo.name}: exit {lo.proc.returncode}" for lo, codes in runs if lo.proc.returncode not in codes
    ]
    assert not problems, [(p, lo.stderr_tail(600)) for p, (lo, _) in zip(problems, runs, strict=False)]
    # the secrets were really in use: the role logged in, and the masked config shows them hidden
    assert runs[0][0].summary()["messages"] == truth.messages + len(bad)
    assert "********" in runs[5][0].out_path.read_text()
    assert "error:" in runs[2][0].err_path.read_text() and runs[2][0].proc.returncode == 3

    scanned: dict[str, bytes] = {}
    for lo, _ in runs:
        scanned[lo.out_path.name] = lo.out_path.read_bytes()
        scanned[lo.err_path.name] = lo.err_path.read_bytes()
    letters = read_all(settings, settings.stream.topics.trades_cdc + settings.stream.dlq_suffix)
    assert len(letters) >= len(bad)
    for i, msg in enumerate(letters):
        parts = [msg.value() or b"", msg.key() or b"", *(v or b"" for _, v in msg.headers() or [])]
        scanned[f"dlq-{i}"] = b"\n".join(parts)
    with connect(stack_settings.warehouse, autocommit=True) as conn:
        for table in ("etl_job_runs", "etl_data_quality_issues", "etl_consumer_offsets"):
            rows = conn.execute(sql.SQL("SELECT t::text FROM {} t").format(sql.Identifier(table))).fetchall()
            scanned[table] = "\n".join(r[0] for r in rows).encode()
    for path, offset in stack_logs.items():
        with path.open("rb") as f:
            f.seek(offset)
            scanned[f"stack:{path.name}"] = f.read()
    leaks = [(name, s) for name, data in scanned.items() for s in SECRETS if s.encode() in data]
    assert not leaks, leaks
    assert sum(len(v) for v in scanned.values()) > 10_000  # the scan saw real output
