"""Benchmark helper (not a test, not the product): PostgreSQL reached over a delayed network path.

Loopback flatters per-row code: a PostgreSQL round trip costs ~0.1 ms on this host, while a
database in the same data centre is typically 0.3-1 ms away. `delayed_port` puts a relay
(scripts/delayproxy.c, compiled with gcc on first use) in front of the stack's PostgreSQL that
delivers every byte DELAY after it arrived, in each direction, so every client connected through
it pays 2 x DELAY per round trip and nothing else changes. `tc qdisc ... netem` would be the
usual tool; this kernel is built without it (CONFIG_NET_SCH_NETEM is not set), hence userspace.
The relay listens on 127.0.0.1 only and is killed when the block ends (and after --max-seconds
in any case).

    with delayed_port(55432, delay_ms=0.25) as port:      # 0.5 ms added round trip
        rtt = measure_rtt(settings.warehouse, port)        # measured, reported with the results
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from orion_etl.adapters.postgres import connect
from orion_etl.config.models import WarehouseSettings

SOURCE = Path(__file__).with_name("delayproxy.c")


def _binary() -> Path:
    out = Path(tempfile.gettempdir()) / "orion-delayproxy"
    if not out.exists() or out.stat().st_mtime < SOURCE.stat().st_mtime:
        cc = shutil.which("gcc") or shutil.which("cc")
        if cc is None:
            raise SystemExit("--db-delay-ms needs a C compiler (gcc) to build scripts/delayproxy.c")
        subprocess.run([cc, "-O2", "-pthread", "-o", str(out), str(SOURCE)], check=True, timeout=120)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def delayed_port(target_port: int, delay_ms: float, max_seconds: int = 3600) -> Iterator[int]:
    """A 127.0.0.1 port relaying to `target_port` with `delay_ms` added in each direction."""
    port = _free_port()
    proc = subprocess.Popen(
        [
            "timeout",
            str(max_seconds),
            str(_binary()),
            str(port),
            str(target_port),
            str(round(delay_ms * 1000)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if proc.stdout is None or proc.stdout.readline().strip() != "ready":
            raise SystemExit("the delay relay did not start")
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def measure_rtt(settings: WarehouseSettings, port: int | None = None, n: int = 500) -> float:
    """Median round trip of `SELECT 1` in ms (autocommit, one connection), direct or via `port`."""
    target = settings if port is None else settings.model_copy(update={"port": port})
    with connect(target, autocommit=True) as conn:
        for _ in range(20):
            conn.execute("SELECT 1").fetchone()
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            conn.execute("SELECT 1").fetchone()
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


@contextlib.contextmanager
def calibrated_port(
    settings: WarehouseSettings, added_rtt_ms: float, max_seconds: int = 3600
) -> Iterator[tuple[int, dict[str, float]]]:
    """A relay whose measured round trip is the direct one + `added_rtt_ms` (the delay model).

    The relay itself costs some 0.1-0.2 ms per round trip here (four thread wake-ups and two extra
    loopback hops), so the per-direction delay is set to (added - relay overhead) / 2, measured
    first with a zero-delay relay, then corrected once from a measurement. Yields (port, figures
    in ms and us), all of them reported.
    """
    direct = measure_rtt(settings)
    with delayed_port(settings.port, 0, 120) as port:
        relay0 = measure_rtt(settings, port)
    delay_us = max(0.0, (added_rtt_ms - (relay0 - direct)) / 2 * 1000)
    with delayed_port(settings.port, delay_us / 1000, 120) as port:  # one correction step
        delay_us = max(0.0, delay_us + (added_rtt_ms - (measure_rtt(settings, port) - direct)) / 2 * 1000)
    with delayed_port(settings.port, delay_us / 1000, max_seconds) as port:
        measured = measure_rtt(settings, port)
        yield (
            port,
            {
                "direct_rtt_ms": direct,
                "relay_overhead_ms": relay0 - direct,
                "delay_us_each_way": delay_us,
                "relayed_rtt_ms": measured,
                "added_rtt_ms": measured - direct,
            },
        )
