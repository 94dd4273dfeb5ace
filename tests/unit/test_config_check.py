"""`config check` validates what commands would; bad input is exit 2 with one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orion_etl.config.loader import collect_problems, load_settings
from orion_etl.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ORION_ETL_")}
    return subprocess.run(
        [sys.executable, "-m", "orion_etl.cli.app", *args],
        env={**environ, "PYTHONPATH": str(REPO), **env},
        cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_config_check_lists_every_problem_with_did_you_mean(tmp_path: Path) -> None:
    (tmp_path / "rules.toml").write_text(
        '[[rules]]\ntable = "fact_trades"\nname = "r1"\nkind = "range"\ncolumn = "price"\nmxa = 3\n'
        '[[rules]]\ntable = "fact_trades"\nname = "r2"\nkind = "no_such_kind"\ncolumn = "price"\n'
    )
    config = tmp_path / "orion-etl.toml"
    config.write_text(
        "[warehouse]\nprot = 5432\n[stream]\nbatch_max_ms = 0\n"
        '[dq]\nrules_file = "rules.toml"\n'
        '[cdc]\nslot_name = "Bad-Slot"\ntopic_prefix = "bad prefix"\n'
    )
    result = cli("--config", str(config), "config", "check", "--format", "json")
    assert result.returncode == 2, result.stderr
    doc = json.loads(result.stdout)
    assert doc["status"] == "invalid" and doc["valid"] is False
    problems = "\n".join(doc["problems"])
    assert "warehouse.prot: unknown key (did you mean 'port'?)" in problems
    assert "stream.batch_max_ms" in problems
    # fix the model errors: the rules file and the CDC names are checked too, all at once
    config.write_text(
        '[dq]\nrules_file = "rules.toml"\n[cdc]\nslot_name = "Bad-Slot"\ntopic_prefix = "bad prefix"\n'
    )
    human = cli("--config", str(config), "config", "check", cwd=tmp_path.parent)
    assert human.returncode == 2, human.stderr
    lines = human.stdout.splitlines()
    assert any(
        "rules.toml: rules.0: rule fact_trades.r1: mxa: unknown key (did you mean 'max'?)" in ln
        for ln in lines
    ), lines
    assert any("rules.1: rule fact_trades.r2: kind: Input should be" in ln for ln in lines), lines
    assert any("cdc.slot_name: 'Bad-Slot'" in ln for ln in lines), lines
    assert any("cdc.topic_prefix: 'bad prefix'" in ln for ln in lines), lines
    assert lines[-1].startswith("4 problem(s) in")


def test_missing_rules_file_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "orion-etl.toml"
    config.write_text('[dq]\nrules_file = "nope.toml"\n')
    result = cli("--config", str(config), "config", "check")
    assert result.returncode == 2 and "rules file not found" in result.stdout


def test_a_value_hidden_by_an_environment_override_is_reported(tmp_path: Path) -> None:
    config = tmp_path / "orion-etl.toml"
    config.write_text("[warehouse]\nport = 0\n")
    hidden = cli("--config", str(config), "config", "check", ORION_ETL_WAREHOUSE__PORT="5432")
    assert hidden.returncode == 2
    assert "warehouse.port" in hidden.stdout and "overridden by the environment" in hidden.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("jobs", "list", "--since", "999999999d"),
        ("dlq", "show", "--until", "99999999999999d"),
        ("config", "check"),
        ("dq", "rules"),
    ],
)
def test_not_utf8_and_overflowing_input_is_exit_2_with_one_line(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    config = tmp_path / "orion-etl.toml"
    config.write_bytes(b'[logging]\nlevel = "INFO"\n# caf\xe9\n' if args[0] == "config" else b"")
    if args[0] == "dq":
        config.write_text('[dq]\nrules_file = "rules.toml"\n')
        (tmp_path / "rules.toml").write_bytes(b"# r\xe8gles\n")
    result = cli("--config", str(config), *args)
    assert result.returncode == 2, result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "unexpected" not in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_relative_rules_file_resolves_against_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "rules.toml").write_text("")
    config = tmp_path / "conf" / "orion-etl.toml"
    config.write_text('[dq]\nrules_file = "rules.toml"\n')
    settings, _ = load_settings(config)
    assert settings.dq.rules_file == str((tmp_path / "conf" / "rules.toml").resolve())


def test_unknown_env_section_suggests_the_right_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORION_ETL_WAREHOSE__PORT", "1")
    _, _, problems = collect_problems(None)
    assert any("no section 'warehose' (did you mean 'warehouse'?)" in p for p in problems)
    with pytest.raises(ConfigError):
        load_settings(None)


def test_unknown_environment_names_the_known_ones() -> None:
    result = cli("connectors", "render", "--env", "prdo", ORION_ETL_CDC__ENV="dev")
    assert result.returncode == 2
    assert "unknown environment 'prdo': the configured environments are dev" in result.stderr


def test_global_options_after_the_subcommand_and_choices_in_any_case(tmp_path: Path) -> None:
    config = tmp_path / "orion-etl.toml"
    config.write_text('[logging]\nlevel = "INFO"\n')
    result = cli("config", "show", "--config", str(config), "-o", "JSON", "--log-format", "JSON")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["source"] == str(config)
    bad = cli("--log-format", "foo", "config", "show")
    assert bad.returncode == 2


@pytest.mark.parametrize(
    "args",
    [
        ("dims", "sync", "--bogus"),
        ("aggregate", "--period"),
        ("jobs", "list", "--format", "yaml"),
        ("no-such-command",),
    ],
)
def test_usage_errors_are_one_line_exit_2(args: tuple[str, ...]) -> None:
    result = cli(*args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0].startswith("error: "), result.stderr
    assert all(line.startswith(("error: ", "hint: ")) for line in lines), result.stderr
    assert not any(ch in result.stderr for ch in "╭│╰"), result.stderr
    assert result.stdout == ""


def test_usage_error_under_json_is_a_json_document() -> None:
    result = cli("dims", "sync", "--bogus", "--format", "json")
    assert result.returncode == 2
    doc = json.loads(result.stdout)
    assert doc["exit_code"] == 2 and "--bogus" in doc["error"]


def test_a_schemaless_connector_with_precise_decimals_is_a_config_problem(tmp_path: Path) -> None:
    config = tmp_path / "orion-etl.toml"
    config.write_text('[cdc]\nschemas = "none"\ndecimal_handling_mode = "precise"\n')
    result = cli("--config", str(config), "config", "check")
    assert result.returncode == 2, result.stderr
    assert "cdc.decimal_handling_mode: must be 'string' when schemas = 'none'" in result.stdout
    config.write_text('[cdc]\nschemas = "none"\n')
    assert cli("--config", str(config), "config", "check").returncode == 0
