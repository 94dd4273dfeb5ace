#!/usr/bin/env python
"""Reliability proof of `orion-etl stream` (not a test): faults under load, figures into docs.

    PYTHONPATH=. .venv/bin/python scripts/reliability.py --long      # 20 kills during 500,000 events
    PYTHONPATH=. .venv/bin/python scripts/reliability.py --medium    # 10 kills during 100,000 events
    PYTHONPATH=. .venv/bin/python scripts/reliability.py --fast      # the CI figures
        [--no-write] [--only kills,kafka,postgres,group,hostile]

Scenarios (tests/reliability_scenarios.py), each on its own topics and a fresh warehouse database:
  kills      N kill -9 of the loader subprocess at random instants, then one loader finishes;
  kafka      a broker restart (clean stop + start) and a hard kill -9 + start, mid-load;
  postgres   a PostgreSQL restart (fast shutdown) and an immediate shutdown (crash) + start, mid-load;
  group      loaders joining / leaving one consumer group (up to three at once; kill -9 and SIGTERM);
  hostile    hostile records (tests/hostile_records.py: NUL and lone surrogates, invalid UTF-8,
             non-finite and huge numbers, type swaps, deep nesting, rows the warehouse refuses,
             tombstones with odd keys) among good ones on CDC and event topics, one loader run:
             every good record loaded once verbatim, every bad one dead-lettered once (issue 14).
After each one the warehouse is compared with the source of truth built from the workload.

It RESTARTS KAFKA AND POSTGRESQL of the stack it points at: run it on your own stack instance
(ORION_STACK_HOME / ORION_STACK_*_PORT, see scripts/stack.sh), never on a shared one.
Writes the figures between the markers of docs/reliability.md (unless --no-write).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orion_etl.adapters import migrations  # noqa: E402
from orion_etl.adapters.postgres import connect  # noqa: E402
from orion_etl.config.models import OrionSettings  # noqa: E402
from tests.hostile_records import hostile_run  # noqa: E402
from tests.reliability_scenarios import group, kills, restarts  # noqa: E402
from tests.reliability_support import reliability_settings  # noqa: E402

MARK_START, MARK_END = "<!-- reliability:start -->", "<!-- reliability:end -->"
PRESETS = {  # events and kills per scenario
    "fast": {
        "kill_events": 30_000,
        "kills": 4,
        "restart_events": 20_000,
        "group_events": 30_000,
        "hostile_events": 20_000,
    },
    "medium": {
        "kill_events": 100_000,
        "kills": 10,
        "restart_events": 60_000,
        "group_events": 100_000,
        "hostile_events": 200_000,
    },
    "long": {
        "kill_events": 500_000,
        "kills": 20,
        "restart_events": 150_000,
        "group_events": 200_000,
        "hostile_events": 1_000_000,
    },
}


def log(msg: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {msg}", flush=True)


def base_settings(dbname: str) -> OrionSettings:
    pg_port = int(os.environ.get("ORION_STACK_PG_PORT", "55432"))
    kafka_port = int(os.environ.get("ORION_STACK_KAFKA_PORT", "19092"))
    password = os.environ.get("ORION_STACK_PG_PASSWORD", "orion-stack-pw")
    return OrionSettings(
        warehouse={"port": pg_port, "dbname": dbname, "password": password},
        kafka={"bootstrap_servers": f"127.0.0.1:{kafka_port}"},
    )


class Database:
    """A fresh, migrated warehouse database per scenario (dropped afterwards)."""

    def __init__(self, run_id: str, name: str) -> None:
        self.name = f"orion_rel_{run_id}_{name}"
        self.admin = base_settings("postgres").warehouse

    def __enter__(self) -> OrionSettings:
        with connect(self.admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        settings = base_settings(self.name)
        with connect(settings.warehouse, autocommit=True) as conn:
            migrations.migrate(conn, "warehouse")
        return settings

    def __exit__(self, *_: object) -> None:
        for _ in range(30):
            try:
                with connect(self.admin, autocommit=True) as conn:
                    conn.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name))
                    )
                return
            except (psycopg.Error, Exception):  # the database may be restarting
                time.sleep(1)


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    pg = subprocess.run(["psql", "--version"], capture_output=True, text=True, check=False).stdout.strip()
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, {pg or 'PostgreSQL 15'}, Kafka 4 (KRaft, 1 broker), "
        "shared with other work"
    )


def run(preset: str, only: set[str], log_root: Path) -> list[tuple[str, dict[str, Any]]]:
    p = PRESETS[preset]
    run_id = uuid.uuid4().hex[:6]
    results: list[tuple[str, dict[str, Any]]] = []

    def scenario(name: str, fn: Any) -> None:
        log(f"{name}: start")
        started = time.monotonic()
        with Database(run_id, name.split()[0].replace("-", "_")) as base:
            figures = fn(base)
        figures["wall_s"] = round(time.monotonic() - started, 1)
        log(f"{name}: OK {json.dumps(figures, default=str)}")
        results.append((name, figures))

    prefix = f"rel.{run_id}"
    if "kills" in only:
        scenario(
            "kills",
            lambda b: kills(
                reliability_settings(b, f"{prefix}.kills", batch_max_messages=2000),
                p["kill_events"],
                p["kills"],
                log_root / "kills",
                seed=101,
            ),
        )
    for service in ("kafka", "postgres"):
        if service not in only:
            continue
        for action in ("restart-service", "kill-service"):
            name = f"{service} {action.split('-')[0]}"
            scenario(
                name,
                lambda b, s=service, a=action: restarts(
                    reliability_settings(b, f"{prefix}.{s}.{a}", batch_max_messages=2000),
                    p["restart_events"],
                    log_root / f"{s}-{a}",
                    s,
                    a,
                    seed=102,
                ),
            )
    if "group" in only:
        scenario(
            "group",
            lambda b: group(
                reliability_settings(
                    b, f"{prefix}.group", trade_partitions=6, event_partitions=3, batch_max_messages=1000
                ),
                p["group_events"],
                log_root / "group",
                seed=103,
            ),
        )
    if "hostile" in only:
        scenario(
            "hostile",
            lambda b: hostile_run(
                reliability_settings(b, f"{prefix}.hostile", batch_max_messages=5000),
                p["hostile_events"],
                seed=104,
            ),
        )
    return results


def render(preset: str, results: list[tuple[str, dict[str, Any]]], total_s: float) -> str:
    lines = [
        MARK_START,
        f"Latest run: `scripts/reliability.py --{preset}`, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{total_s / 60:.1f} min in all.",
        "",
        f"Machine: {machine()}.",
        "",
        "| scenario | events | faults | load time | throughput | trades (live / deleted) | quotes | "
        "dead letters | result |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, f in results:
        if name == "kills":
            faults = (
                f"{f['kills']} x kill -9 (all mid-load)"
                if f["kills_mid_load"] == f["kills"]
                else (f"{f['kills']} x kill -9 ({f['kills_mid_load']} mid-load)")
            )
            rate = f"{f['throughput_msg_s']:,} msg/s"
        elif name == "hostile":
            faults = (
                f"{f['bad']:,} bad records ({f['rejected']:,} refused by the warehouse), "
                f"{f['tombstones']:,} tombstones; checks: "
                + ", ".join(k for k, ok in f["checks"].items() if ok)
            )
            rate = f"{f['throughput_msg_s']:,} msg/s"
        elif name == "group":
            faults = (
                "; ".join(f"{e[0]} at {e[1]:,}" for e in f["membership_changes"])
                + f" ({f['fenced_batches']} fenced)"
            )
            rate = f"{f['messages'] / f['load_s']:,.0f} msg/s"
        else:
            faults = (
                f"{f['action']} {f['service']} at {f['committed_at_restart']:,} committed, "
                f"healthy after {f['outage_s']} s, {f['retries']} retries"
            )
            rate = f"{f['messages'] / f['load_s']:,.0f} msg/s"
        lines.append(
            f"| {name} | {f['messages']:,} | {faults} | {f['load_s']} s | {rate} | "
            f"{f['live_trades']:,} / {f['deleted_trades']:,} | {f['quotes']:,} | {f['dead_letters']} | "
            f"{'exact' if f['ok'] else 'MISMATCH'} |"
        )
    first = next((f for n, f in results if n != "hostile"), None)
    lines += ["", "Checks after every scenario: " + (first["checks"] if first else "-") + ".", ""]
    kill = dict(results).get("kills")
    if kill:
        lines += [
            f"Kill scenario workload: {json.dumps(kill['workload'])}; committed positions at the kills: "
            f"{kill['committed_at_kills']}.",
            "",
        ]
    lines.append(MARK_END)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    size = parser.add_mutually_exclusive_group()
    for name in PRESETS:
        size.add_argument(f"--{name}", dest="preset", action="store_const", const=name)
    parser.add_argument("--only", default="kills,kafka,postgres,group,hostile")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--logs", type=Path, default=Path("/tmp/orion-reliability"))
    args = parser.parse_args()
    preset = args.preset or "medium"
    started = time.monotonic()
    results = run(preset, set(args.only.split(",")), args.logs)
    text = render(preset, results, time.monotonic() - started)
    print(text)
    if not args.no_write:
        doc = REPO / "docs" / "reliability.md"
        current = doc.read_text()
        head, rest = current.split(MARK_START, 1)
        doc.write_text(head + text + rest.split(MARK_END, 1)[1])
        log(f"wrote {doc}")


if __name__ == "__main__":
    main()
