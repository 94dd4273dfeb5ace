"""`orion-etl stream` with Kafka unreachable at start: it retries; SIGTERM stops it cleanly.

A real process (signals), the session's real warehouse, a Kafka address where nothing listens.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid

import psycopg
import pytest

from orion_etl.config.models import OrionSettings
from tests.integration.stream_support import REPO, cli_env

pytestmark = pytest.mark.integration


def _stderr_lines(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def test_sigterm_while_kafka_is_unreachable_is_a_clean_stop(
    stack_settings: OrionSettings, warehouse: psycopg.Connection
) -> None:
    secret = f"pw-{uuid.uuid4().hex}"
    env = cli_env(
        stack_settings,
        ORION_ETL_KAFKA__BOOTSTRAP_SERVERS="127.0.0.1:1",
        # the secret also lands in every librdkafka log line (client id): it must come out redacted
        ORION_ETL_KAFKA__CLIENT_ID=f"loader-{secret}",
        ORION_ETL_KAFKA__SASL_PASSWORD=secret,
        ORION_ETL_STREAM__GROUP_ID=f"{stack_settings.stream.group_id}-unreachable",
    )
    cmd = [sys.executable, "-m", "orion_etl.cli.app", "--log-format", "json", "stream", "--format", "json"]
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        lines = _stderr_lines(proc)
        seen: list[str] = []
        # Signal handlers are installed before "started"; the librdkafka line shows it is trying.
        while not (any('"started: ' in s for s in seen) and any("orion_etl.librdkafka" in s for s in seen)):
            seen.append(lines.get(timeout=max(0.1, 12 - (time.monotonic() - started))))
        proc.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        code = proc.wait(timeout=10)
        assert time.monotonic() - stopping < 3, "SIGTERM must not wait for a Kafka timeout"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stdout is not None
    summary = json.loads(proc.stdout.read())
    time.sleep(0.2)  # the pump thread drains what is left
    while not lines.empty():
        seen.append(lines.get_nowait())
    err = "".join(seen)

    assert code == 0, err
    assert summary["messages"] == 0
    records = [json.loads(s) for s in seen if s.strip()]  # JSON lines only: no traceback, no %3|...
    stops = [r["msg"] for r in records if "stopped before consuming anything" in r["msg"]]
    assert len(stops) == 1, err
    assert stops[0].startswith("stopped before consuming anything: Kafka at 127.0.0.1:1 unreachable: "), err
    ours = [r for r in records if r["logger"] != "orion_etl.librdkafka"]
    assert not [r for r in ours if r["level"] in ("error", "critical")], err
    assert secret not in err and "********" in err
    row = warehouse.execute(
        "SELECT status, records_processed FROM etl_job_runs WHERE id = %s", (summary["run_id"],)
    ).fetchone()
    assert row == ("COMPLETED", 0)
