"""Start-up time of the CLI: `orion-etl --help` and a TAB completion, as whole processes.

    .venv/bin/python scripts/bench_startup.py [--runs 15] [--baseline /path/to/other/orion-etl]

Each command is started `--runs` times (after one warm-up); wall time is read around the child,
CPU time (user + system) from the kernel's accounting of the reaped child (`os.wait4`). Medians
are printed; with `--baseline` the two executables run alternately and the ratio is taken pair by
pair, which keeps it meaningful on a busy machine. Figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COMPLETION_ENV = {"_ORION_ETL_COMPLETE": "complete_bash", "COMP_WORDS": "orion-etl dq ", "COMP_CWORD": "2"}


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall s, cpu s) of one run."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{argv} exited {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def measure(exe: str, baseline: str | None, runs: int) -> None:
    cases = {"--help": ([exe, "--help"], {}), "completion (orion-etl dq <TAB>)": ([exe], COMPLETION_ENV)}
    for name, (argv, env) in cases.items():
        other = [baseline, *argv[1:]] if baseline else None
        run_once(argv, env)
        if other:
            run_once(other, env)
        mine: list[tuple[float, float]] = []
        theirs: list[tuple[float, float]] = []
        for _ in range(runs):
            mine.append(run_once(argv, env))
            if other:
                theirs.append(run_once(other, env))
        line = (
            f"{name}: wall {statistics.median(w for w, _ in mine):.3f} s, "
            f"cpu {statistics.median(c for _, c in mine):.3f} s"
        )
        if theirs:
            ratio = statistics.median(m[1] / t[1] for m, t in zip(mine, theirs, strict=True))
            line += (
                f"; baseline wall {statistics.median(w for w, _ in theirs):.3f} s, "
                f"cpu {statistics.median(c for _, c in theirs):.3f} s; cpu ratio {ratio:.2f} x"
            )
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--exe", default=str(REPO / ".venv" / "bin" / "orion-etl"))
    parser.add_argument(
        "--baseline", help="another orion-etl executable to compare with (e.g. an older checkout)"
    )
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpu(s), load {os.getloadavg()[0]:.1f}")
    measure(args.exe, args.baseline, args.runs)


if __name__ == "__main__":
    main()
