"""The shipped systemd units, crontab and logrotate file are valid, hardened and behave.

Real tools check them: `systemd-analyze verify` and `systemd-analyze security --offline=true`
(systemd), `logrotate`, `flock` and bash running the crontab's command lines with a stand-in
for orion-etl that exits with a chosen code.
"""

from __future__ import annotations

import fcntl
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orion_etl.cli.app import app

CONFIG = Path(__file__).resolve().parents[2] / "config"
UNITS = sorted((CONFIG / "systemd").glob("orion-etl-*"))
SERVICES = [u for u in UNITS if u.suffix == ".service"]
ONESHOTS = [u for u in SERVICES if "Type=oneshot" in u.read_text()]
TEMPLATE = CONFIG / "systemd" / "orion-etl-stream@.service"
INSTANCE_ENV = CONFIG / "orion-etl-stream-instance.example.env"
MAX_EXPOSURE = 4.0


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        # A developer machine without the tool may skip; CI (scripts/test.sh installs it) must not.
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool} is required in CI (scripts/test.sh installs it)")
        pytest.skip(f"{tool} not installed")
    return path


def _env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if re.match(r"^[A-Z_]+=", line))
    return {k: v.strip('"') for k, v in pairs}


def _orion_args(command_line: str) -> list[str]:
    """The orion-etl arguments of a command line (global options included)."""
    words = shlex.split(command_line)
    start = next(i for i, w in enumerate(words) if w.endswith("orion-etl") or w == "$OE") + 1
    args = words[start:]
    cut = next((i for i, w in enumerate(args) if w.startswith(">>") or w in {"||", ";", "&&"}), len(args))
    return args[:cut]


def _exec_lines() -> list[str]:
    stream_args = _env_file(INSTANCE_ENV)["ORION_STREAM_ARGS"]
    lines = []
    for unit in UNITS:
        for m in re.finditer(r"^ExecStart=(.+)$", unit.read_text(), re.M):
            lines.append(m.group(1).replace("$ORION_STREAM_ARGS", stream_args))
    return lines


def _cron_entries() -> list[str]:
    text = (CONFIG / "crontab").read_text()
    return [line for line in text.splitlines() if re.match(r"^[\d*/,-]+\s", line)]


def _cron_command(entry: str) -> str:
    """The shell command of a crontab entry (after the five time fields)."""
    return re.split(r"\s+", entry.strip(), maxsplit=5)[5]


def _directives(unit: Path, key: str) -> list[str]:
    return re.findall(rf"^{re.escape(key)}=(.*)$", unit.read_text(), re.M)


def test_every_scheduled_command_exists_and_parses() -> None:
    runner = CliRunner()
    commands = [_orion_args(line) for line in _exec_lines()]
    commands += [_orion_args(_cron_command(e).replace("$OE", "orion-etl")) for e in _cron_entries()]
    assert len(commands) >= 16
    for args in commands:
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0, (args, result.output)


def test_timers_cover_the_required_schedule() -> None:
    calendars = {
        unit.stem: re.search(r"^OnCalendar=(.+)$", unit.read_text(), re.M).group(1)  # type: ignore[union-attr]
        for unit in UNITS
        if unit.suffix == ".timer"
    }
    assert calendars == {
        "orion-etl-aggregate-intraday": "*:0/15",
        "orion-etl-aggregate-daily": "*-*-* 01:00:00",
        "orion-etl-aggregate-weekly": "Mon *-*-* 02:00:00",
        "orion-etl-aggregate-monthly": "*-*-01 03:00:00",
        "orion-etl-dims-sync": "*:0/5",
        "orion-etl-dq-audit": "*-*-* *:30:00",
        "orion-etl-cdc-status": "*:0/5",
    }
    for unit in UNITS:
        if unit.suffix == ".timer":
            assert _directives(unit, "Unit") == [unit.stem + ".service"]


def test_exit_1_is_success_and_every_job_writes_its_metrics() -> None:
    """Exit 1 (warnings: dead letters, DQ warnings) and 143 (SIGTERM) never leave a unit failed."""
    assert len(SERVICES) == 9
    for unit in SERVICES:
        assert _directives(unit, "SuccessExitStatus") == ["1 143"], unit.name
    jobs = {}
    for unit in ONESHOTS:
        exec_start = _directives(unit, "ExecStart")[0]
        job = unit.name.removeprefix("orion-etl-").removesuffix(".service")
        assert f"--metrics-job {job} " in exec_start, unit.name
        assert f"/orion-etl-{job}.prom " in exec_start, unit.name
        assert _directives(unit, "TimeoutStartSec"), unit.name
        jobs[job] = exec_start
    cron_jobs = {re.search(r"--metrics-job (\S+)", _cron_command(e)).group(1) for e in _cron_entries()}  # type: ignore[union-attr]
    assert cron_jobs == set(jobs), "cron and systemd run the same jobs under the same metrics names"


def test_template_unit_reads_a_per_instance_environment_file() -> None:
    text = TEMPLATE.read_text()
    files = _directives(TEMPLATE, "EnvironmentFile")
    assert files[-1] == "-/etc/orion-etl/stream-%i.env", "the instance file is read last and wins"
    assert _directives(TEMPLATE, "Environment") == [
        "ORION_ETL_CONFIG=/etc/orion-etl/orion-etl.toml",
        "ORION_STREAM_ARGS=",
    ]
    assert " stream $ORION_STREAM_ARGS" in text  # unbraced: split into words, empty -> no argument


def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    _require("systemd-analyze")
    # verify checks that ExecStart exists: point it at this interpreter's orion-etl script
    executable = Path(sys.executable).with_name("orion-etl")
    for unit in UNITS:
        text = unit.read_text().replace("/opt/orion-etl/.venv/bin/orion-etl", str(executable))
        (tmp_path / unit.name).write_text(text)
    # a template is verified through an instance of it
    shutil.copy(tmp_path / TEMPLATE.name, tmp_path / "orion-etl-stream@2.service")
    (tmp_path / TEMPLATE.name).unlink()
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *sorted(str(p) for p in tmp_path.iterdir())],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    problems = [line for line in (result.stdout + result.stderr).splitlines() if "orion-etl" in line]
    assert result.returncode == 0 and not problems, problems


@pytest.mark.parametrize("unit", SERVICES, ids=lambda u: u.name)
def test_systemd_analyze_security_rates_every_unit_ok(unit: Path, tmp_path: Path) -> None:
    _require("systemd-analyze")
    name = unit.name.replace("@.service", "@1.service")
    shutil.copy(unit, tmp_path / name)
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", name],
        capture_output=True, text=True, check=False, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout + result.stderr)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, result.stdout


def _stub_orion_etl(tmp_path: Path) -> Path:
    """A stand-in for orion-etl: records its arguments, exits with $STUB_EXIT."""
    stub = tmp_path / "orion-etl"
    stub.write_text('#!/bin/bash\necho "$*" >> "$STUB_CALLS"\necho "a log line"\nexit "${STUB_EXIT:-0}"\n')
    stub.chmod(0o755)
    return stub


def _cron_env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, **_env_file(CONFIG / "crontab")}
    for var in ("LOG", "LOCKS", "PROM"):
        env[var] = str(tmp_path / var.lower())
        Path(env[var]).mkdir(exist_ok=True)
    env["OE"] = f"{_stub_orion_etl(tmp_path)} --log-format json"
    env["STUB_CALLS"] = str(tmp_path / "calls")
    return env


@pytest.mark.parametrize("entry", _cron_entries(), ids=lambda e: _cron_command(e).split()[3])
def test_cron_lines_mail_only_failures_and_skip_overlaps(entry: str, tmp_path: Path) -> None:
    """Cron mails any output: exit 0/1 and a run skipped by flock print nothing, 2/3/4 print one line."""
    _require("flock")
    env = _cron_env(tmp_path)
    command = _cron_command(entry)
    assert env["SHELL"] == "/bin/bash"

    def run(code: int) -> str:
        result = subprocess.run(
            ["/bin/bash", "-c", command], env={**env, "STUB_EXIT": str(code)},
            capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip
        assert result.returncode == 0 or code >= 2
        return result.stdout + result.stderr

    for code in (0, 1):
        assert run(code) == "", code
    for code in (2, 3, 4):
        mail = run(code).strip().splitlines()
        assert len(mail) == 1 and mail[0].endswith(f"exit {code}"), mail
    calls = Path(env["STUB_CALLS"]).read_text().splitlines()
    assert len(calls) == 5 and all("--metrics-file" in c for c in calls), calls
    assert any(Path(env["LOG"]).glob("*.log")), "output goes to the log, not to cron mail"

    lock = re.search(r"flock -n -E 0 (\S+)", command).group(1).replace("$LOCKS", env["LOCKS"])  # type: ignore[union-attr]
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # the previous run is still going
        assert run(3) == ""
    assert len(Path(env["STUB_CALLS"]).read_text().splitlines()) == 5, "the overlapping run was skipped"


def test_logrotate_accepts_and_rotates_the_shipped_file(tmp_path: Path) -> None:
    logrotate = _require("logrotate")
    shipped = (CONFIG / "logrotate" / "orion-etl").read_text()
    logs = tmp_path / "log"
    logs.mkdir()
    user, group = (
        subprocess.run(["id", flag], capture_output=True, text=True, check=True).stdout.strip()
        for flag in ("-un", "-gn")
    )
    conf = tmp_path / "orion-etl"
    conf.write_text(
        shipped.replace("/var/log/orion-etl", str(logs)).replace("orion-etl orion-etl", f"{user} {group}")
    )
    assert conf.read_text() != shipped
    state = tmp_path / "state"
    check = subprocess.run(
        [logrotate, "-d", "-s", str(state), str(conf)], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0 and "error" not in check.stderr.lower(), check.stderr
    (logs / "dims.log").write_text('{"msg": "one run"}\n')
    subprocess.run([logrotate, "-f", "-s", str(state), str(conf)], check=True, capture_output=True)
    names = sorted(p.name for p in logs.iterdir())
    assert "dims.log" in names and any(n.startswith("dims.log-") for n in names), names
    assert (logs / "dims.log").stat().st_size == 0
    assert oct((logs / "dims.log").stat().st_mode & 0o777) == "0o640"
