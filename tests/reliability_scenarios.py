"""The fault scenarios of the reliability proof (docs/reliability.md), shared by the CI tests
(small figures) and scripts/reliability.py (long figures). Each returns a dict of figures and
raises AssertionError when the warehouse differs from the source of truth afterwards."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from orion_etl.adapters.postgres import connect
from orion_etl.config.models import OrionSettings
from tests.reliability_support import (
    Loader,
    Stack,
    Truth,
    produce_workload,
    progress,
    verify,
    wait_progress,
    wait_until,
)


def _finish(settings: OrionSettings, truth: Truth, loaders: list[Loader], timeout: float) -> list[int]:
    """Wait until everything is committed, then SIGTERM the loaders; returns their exit codes."""
    wait_progress(settings, truth.messages, timeout, loaders)
    for lo in loaders:  # a SIGTERM before the signal handlers are installed would just kill it
        wait_until(
            lambda lo=lo: "assigned" in lo.stderr_tail(100_000) or not lo.alive(), 120, f"{lo.name} up"
        )
    codes = [lo.stop() for lo in loaders]
    for lo, code in zip(loaders, codes, strict=True):
        assert code in (0, 1), f"{lo.name} exited {code}: {lo.stderr_tail()}"
    return codes


def kills(settings: OrionSettings, n: int, kill_count: int, log_dir: Path, seed: int = 1) -> dict[str, Any]:
    """`kill_count` kill -9 of the loader at random instants while it loads `n` messages.

    Kill points are random fractions of the load (sorted, between 3 % and 80 %): each loader runs
    until it has committed at least one batch and the group is past its point, then a further
    random 0..0.2 s (a random instant
    of the decode / DLQ flush / commit cycle), and is killed with SIGKILL; a new one starts at
    once. After the last kill one more loader finishes the load and is stopped with SIGTERM.
    """
    rng = random.Random(seed)
    started = time.monotonic()
    truth = produce_workload(settings, n, seed)
    produced_s = time.monotonic() - started
    load_started = time.monotonic()
    points = sorted(int(truth.messages * rng.uniform(0.03, 0.8)) for _ in range(kill_count))
    at_kill: list[int] = []
    for i, point in enumerate(points):
        before = max(progress(settings), 0)
        loader = Loader(settings, log_dir, f"kill-{i:02d}")
        wait_progress(settings, max(point, before + 1), 300, [loader])  # it loads, then dies
        time.sleep(rng.uniform(0, 0.2))
        loader.kill9()
        at_kill.append(progress(settings))
    last = Loader(settings, log_dir, "kill-final")
    codes = _finish(settings, truth, [last], 600)
    load_s = time.monotonic() - load_started
    with connect(settings.warehouse, autocommit=True) as conn:
        figures = verify(conn, truth, [settings])
    mid = [p for p in at_kill if 0 < p < truth.messages]
    assert len(at_kill) == kill_count, f"only {len(at_kill)} kills happened before the load finished"
    return {
        **figures,
        "kills": len(at_kill),
        "kills_mid_load": len(mid),
        "committed_at_kills": at_kill,
        "final_exit": codes[0],
        "produce_s": round(produced_s, 1),
        "load_s": round(load_s, 1),
        "throughput_msg_s": round(truth.messages / load_s),
        "workload": truth.kinds,
    }


def restarts(
    settings: OrionSettings,
    n: int,
    log_dir: Path,
    service: str,
    action: str = "restart-service",
    seed: int = 2,
) -> dict[str, Any]:
    """Restart (or hard-kill and start) one stack service while a running loader is mid-load.

    The loader is not restarted: it must ride out the outage (retries) and finish the load.
    """
    stack = Stack()
    truth = produce_workload(settings, n, seed)
    started = time.monotonic()
    loader = Loader(settings, log_dir, f"{action}-{service}")
    at = wait_progress(settings, max(1, truth.messages // 6), 180, [loader])
    assert at < truth.messages, "the load finished before the restart"
    outage_s = stack.run(action, service)
    after = progress(settings)
    codes = _finish(settings, truth, [loader], 600)
    elapsed = time.monotonic() - started
    summary = loader.summary()
    with connect(settings.warehouse, autocommit=True) as conn:
        figures = verify(conn, truth, [settings])
    assert summary.get("retries", 0) >= 1 or service == "kafka", summary  # PG down: batches retried
    return {
        **figures,
        "service": service,
        "action": action,
        "committed_at_restart": at,
        "committed_after_restart": after,
        "outage_s": round(outage_s, 1),
        "load_s": round(elapsed, 1),
        "retries": summary.get("retries"),
        "loader_exit": codes[0],
    }


def group(settings: OrionSettings, n: int, log_dir: Path, seed: int = 3) -> dict[str, Any]:
    """Loaders join and leave one consumer group during a load (at most three at once).

    A starts; B joins; C joins (three members); B is killed -9 (leaves without notice);
    A is stopped with SIGTERM (leaves cleanly); D joins; C and D finish the load.
    """
    truth = produce_workload(settings, n, seed)
    total = truth.messages
    started = time.monotonic()
    events: list[tuple[str, int]] = []

    def mark(what: str) -> None:
        events.append((what, max(progress(settings), 0)))

    a = Loader(settings, log_dir, "group-a")
    wait_progress(settings, 1, 120, [a])
    b = Loader(settings, log_dir, "group-b")
    mark("B joins")
    wait_progress(settings, total // 5, 300, [a, b])
    c = Loader(settings, log_dir, "group-c")
    mark("C joins (3 members)")
    wait_progress(settings, total * 2 // 5, 300, [a, b, c])
    b.kill9()
    mark("B killed -9")
    wait_progress(settings, total // 2, 300, [a, c])
    code_a = a.stop()
    mark("A leaves (SIGTERM)")
    d = Loader(settings, log_dir, "group-d")
    mark("D joins")
    codes = _finish(settings, truth, [c, d], 600)
    elapsed = time.monotonic() - started
    assert code_a in (0, 1), a.stderr_tail()
    with connect(settings.warehouse, autocommit=True) as conn:
        figures = verify(conn, truth, [settings])
    mid = [e for e in events if e[1] < total]
    fenced = sum(int(lo.summary().get("fenced") or 0) for lo in (a, c, d))
    return {
        **figures,
        "membership_changes": events,
        "changes_mid_load": len(mid),
        "exit_codes": {"A": code_a, "C": codes[0], "D": codes[1]},
        "fenced_batches": fenced,
        "load_s": round(elapsed, 1),
    }
