"""CPU and memory accounting of benchmark processes from /proc (Linux only; not a test).

* `LoaderProcess`: one `orion-etl stream` child; its CPU (user + system) from `wait4`'s rusage,
  its peak RSS from its own VmHWM (polled: `ru_maxrss` of a child carries the parent's
  high-water mark across fork + exec on Linux).
* `CpuWatch`: CPU seconds of other processes while a benchmark runs: the PostgreSQL backends
  serving one database (the loaders' connections; they exit with their loader, so they are
  sampled while alive), the server's auxiliary processes (WAL writer, checkpointer, background
  writer, autovacuum: shared with everything else on the server), the Kafka broker, and the
  machine as a whole (/proc/stat), to say how busy the cores were.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a live process (None when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _children(parent: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if parent_of(int(entry)) == parent:
                    out.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return out


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores since boot (/proc/stat)."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    return float(sum(parts) - idle), float(sum(parts))


def kafka_broker_pid(stack_home: str | None) -> int | None:
    """The broker of the local stack (`kafka.Kafka <stack>/conf/...`), if it runs on this machine."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            cmd = _cmdline(int(entry))
            if "kafka.Kafka" in cmd and (stack_home is None or stack_home in cmd):
                return int(entry)
    return None


@dataclass
class CpuWatch:
    """CPU seconds of the PostgreSQL backends of `dbname`, of the server's other processes, of the
    broker and of the whole machine between `start()` and `stop()`."""

    postmaster: int
    dbname: str
    broker: int | None = None
    exclude: set[int] = field(default_factory=set)  # e.g. the benchmark's own monitoring connection
    interval_s: float = 0.2
    backends: dict[int, tuple[float, float]] = field(default_factory=dict)  # pid -> (first, last)
    result: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _aux(self) -> dict[int, float]:
        out = {}
        for pid in _children(self.postmaster):
            cmd = _cmdline(pid)
            if pid in self.exclude or f" {self.dbname} " in cmd:
                continue
            if cmd.startswith("postgres: ") and not any(
                w in cmd for w in ("walwriter", "checkpointer", "background writer", "autovacuum")
            ):
                continue  # other databases' backends: other people's work
            cpu = cpu_seconds(pid)
            if cpu is not None:
                out[pid] = cpu
        return out

    def _sample(self) -> None:
        for pid in _children(self.postmaster):
            if pid in self.exclude or f" {self.dbname} " not in _cmdline(pid):
                continue
            cpu = cpu_seconds(pid)
            if cpu is None:
                continue
            first, _ = self.backends.get(pid, (cpu, cpu))
            self.backends[pid] = (first, cpu)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def start(self) -> None:
        self._sample()
        # a backend alive at the start has done work before: count only what it does from now
        self.backends = {pid: (last, last) for pid, (_, last) in self.backends.items()}
        self._aux0 = self._aux()
        self._broker0 = cpu_seconds(self.broker) if self.broker else None
        self._machine0 = machine_busy()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, float]:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self._sample()
        elapsed = time.monotonic() - self._t0
        aux1 = self._aux()
        busy1, total1 = machine_busy()
        busy0, total0 = self._machine0
        broker1 = cpu_seconds(self.broker) if self.broker else None
        self.result = {
            "elapsed_s": elapsed,
            "pg_backends_s": sum(last - first for first, last in self.backends.values()),
            "pg_aux_s": sum(cpu - self._aux0.get(pid, 0.0) for pid, cpu in aux1.items()),
            "broker_s": (broker1 - self._broker0)
            if broker1 is not None and self._broker0 is not None
            else 0.0,
            "machine_busy": (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0,
            "load1": os.getloadavg()[0],
        }
        return self.result


class ChildProcess:
    """A child process: its stdout, wall time, CPU seconds (wait4's rusage) and peak RSS (VmHWM)."""

    def __init__(self, cmd: list[str], env: dict[str, str], cwd: str) -> None:
        self.out = tempfile.TemporaryFile()  # noqa: SIM115 (closed in wait())
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.out, stderr=subprocess.DEVNULL, cwd=cwd)
        self.peak_kib = 0
        self.smaps_at_peak: dict[str, int] = {}
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        status = Path(f"/proc/{self.proc.pid}/status")
        top = 0
        while self.proc.returncode is None:
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):  # the kernel's own high-water mark
                        self.peak_kib = max(self.peak_kib, int(line.split()[1]))
                    elif line.startswith("VmRSS:") and int(line.split()[1]) > top:
                        top = int(line.split()[1])
                        self.smaps_at_peak = rss_by_kind(self.proc.pid) or self.smaps_at_peak
            except (OSError, ValueError):
                pass
            time.sleep(0.1)

    def wait(self) -> tuple[bytes, float, int, float, int]:
        """(stdout, wall seconds, peak RSS KiB sampled, CPU seconds, exit code)."""
        _, status, usage = os.wait4(self.proc.pid, 0)
        wall = time.monotonic() - self.t0
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self._watcher.join(1)
        self.out.seek(0)
        out = self.out.read()
        self.out.close()
        return out, wall, self.peak_kib, usage.ru_utime + usage.ru_stime, self.proc.returncode


def rss_by_kind(pid: int) -> dict[str, int]:
    """Resident KiB of a process by kind of mapping (/proc/<pid>/smaps): shared libraries and
    files, the brk heap (glibc's main arena: the Python thread's small objects), anonymous
    mappings of 64 MiB glibc thread arenas (librdkafka's and the other threads' malloc), and other
    anonymous mappings (large allocations, Python's object arenas, polars/jemalloc extents)."""
    out = {"files": 0, "heap": 0, "thread arenas": 0, "other anonymous": 0}
    try:
        text = Path(f"/proc/{pid}/smaps").read_text()
    except OSError:
        return {}
    kind = "other anonymous"
    start = end = 0
    for line in text.splitlines():
        head = line.split(None, 5)
        if "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
            start, end = (int(x, 16) for x in head[0].split("-"))
            name = head[5].strip() if len(head) > 5 else ""
            if name == "[heap]":
                kind = "heap"
            elif name.startswith("/") or name.startswith("[v"):
                kind = "files"
            elif start % (64 << 20) == 0 and end - start <= (64 << 20):
                kind = "thread arenas"  # glibc aligns each arena's heap to its 64 MiB size
            else:
                kind = "other anonymous"
        elif line.startswith("Rss:"):
            out[kind] += int(line.split()[1])
    return out


class LoaderProcess(ChildProcess):
    """One `orion-etl stream` process: its JSON summary, wall time, CPU seconds and peak RSS."""

    def __init__(self, env: dict[str, str], extra: list[str], python: str, cwd: str) -> None:
        cmd = [
            python,
            "-m",
            "orion_etl.cli.app",
            "--log-format",
            "json",
            "stream",
            "--format",
            "json",
            *extra,
        ]
        super().__init__(cmd, env, cwd)

    def wait_loader(self) -> tuple[dict[str, Any], float, int, float]:
        """(stats JSON, wall seconds, peak RSS KiB, CPU seconds); SystemExit when it failed."""
        out, wall, peak, cpu, code = super().wait()
        if code not in (0, 1):
            raise SystemExit(f"loader failed ({code}): {out[-2000:]!r}")
        return json.loads(out), wall, peak, cpu
