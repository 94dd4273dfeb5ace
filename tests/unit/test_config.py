"""Configuration loading: TOML + environment, one-line errors naming the key, masking."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from orion_etl.cli.app import app
from orion_etl.config import load_settings
from orion_etl.config.loader import masked_dump, secret_values
from orion_etl.errors import ConfigError

runner = CliRunner()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "orion-etl.toml"
    path.write_text(text)
    return path


def test_defaults_point_at_the_local_stack() -> None:
    settings, path = load_settings()
    assert path is None
    assert settings.warehouse.port == 55432
    assert settings.kafka.bootstrap_servers == "127.0.0.1:19092"
    assert settings.connect.url == "http://127.0.0.1:18083"
    assert settings.dims.client.scd2 == ["segment", "region", "status", "client_type"]


def test_toml_then_environment_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(
        tmp_path, '[warehouse]\nhost = "db.internal"\nport = 6543\n[stream]\nbatch_max_messages = 100\n'
    )
    monkeypatch.setenv("ORION_ETL_WAREHOUSE__PORT", "7000")
    monkeypatch.setenv("ORION_ETL_STREAM__TOPICS__QUOTE_EVENTS", "quotes.v2")
    settings, used = load_settings(path)
    assert used == path
    assert settings.warehouse.host == "db.internal"
    assert settings.warehouse.port == 7000
    assert settings.stream.batch_max_messages == 100
    assert settings.stream.topics.quote_events == "quotes.v2"


def test_config_file_from_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, '[kafka]\nclient_id = "from-env-file"\n')
    monkeypatch.setenv("ORION_ETL_CONFIG", str(path))
    settings, used = load_settings()
    assert used == path and settings.kafka.client_id == "from-env-file"


def test_default_file_in_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, '[kafka]\nclient_id = "cwd"\n')
    monkeypatch.chdir(tmp_path)
    assert load_settings()[0].kafka.client_id == "cwd"


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[warehouse]\nprot = 1\n", "warehouse.prot: unknown key"),
        ("[nosuchsection]\na = 1\n", "nosuchsection: unknown key"),
        ('[warehouse]\nport = "abc"\n', "warehouse.port: Input should be a valid integer"),
        ("[warehouse\nport = 1\n", "invalid TOML"),
        ('[trading_day]\ntimezone = "Mars/Olympus"\n', "trading_day.timezone"),
        ('[trading_day]\ncutoff = "25:00"\n', "trading_day.cutoff"),
    ],
)
def test_bad_config_is_one_line_naming_the_key(tmp_path: Path, toml: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, toml))
    assert expected in info.value.message
    assert "\n" not in info.value.message
    assert info.value.exit_code == 2


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml")


def test_unknown_environment_section(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORION_ETL_WAREHOUS__PORT", "1")
    with pytest.raises(ConfigError, match="ORION_ETL_WAREHOUS__PORT"):
        load_settings()


def test_bad_environment_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORION_ETL_WAREHOUSE__PORT", "eighty")
    with pytest.raises(ConfigError, match="from environment ORION_ETL_WAREHOUSE__PORT"):
        load_settings()


def test_secrets_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORION_ETL_WAREHOUSE__PASSWORD", "wh-secret-1")
    monkeypatch.setenv("ORION_ETL_KAFKA__SASL_PASSWORD", "sasl-secret-2")
    monkeypatch.setenv("ORION_ETL_KAFKA__EXTRA", '{"sasl.oauthbearer.client.secret": "oauth-secret-3"}')
    settings, _ = load_settings()
    assert {"wh-secret-1", "sasl-secret-2", "oauth-secret-3"} <= set(secret_values(settings))
    dumped = repr(masked_dump(settings))
    for secret in ("wh-secret-1", "sasl-secret-2", "oauth-secret-3"):
        assert secret not in dumped


def test_cli_config_show_masks_and_check_exits_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORION_ETL_SOURCE__PASSWORD", "src-secret-xyz")
    shown = runner.invoke(app, ["config", "show"])
    assert shown.exit_code == 0
    assert "src-secret-xyz" not in shown.output and "********" in shown.output
    as_json = runner.invoke(app, ["config", "show", "--format", "json"])
    assert as_json.exit_code == 0 and "src-secret-xyz" not in as_json.output
    assert runner.invoke(app, ["config", "check"]).exit_code == 0


def test_cli_bad_config_exit_code(tmp_path: Path) -> None:
    import subprocess
    import sys

    bad = write(tmp_path, "[warehouse]\nprot = 1\n")
    result = subprocess.run(
        [sys.executable, "-m", "orion_etl.cli.app", "--config", str(bad), "config", "check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "warehouse.prot: unknown key (did you mean 'port'?)" in result.stdout
    assert "Traceback" not in result.stderr + result.stdout


def _keys(data: dict, prefix: str = "") -> set[str]:
    out: set[str] = set()
    for key, value in data.items():
        name = f"{prefix}{key}"
        out.add(name)
        if isinstance(value, dict) and key != "extra":
            out |= _keys(value, f"{name}.")
    return out


def test_example_config_is_valid_and_documents_every_key() -> None:
    import re

    from orion_etl.config.models import OrionSettings

    example = Path(__file__).resolve().parents[2] / "config" / "orion-etl.example.toml"
    settings, _ = load_settings(example)
    documented = example.read_text()
    # every key of the model appears in the example, set or commented out
    for key in _keys(OrionSettings().model_dump()):
        leaf = key.rsplit(".", 1)[-1]
        pattern = rf"^(# )?{re.escape(leaf)}\b|\[{re.escape(key)}[\].]"
        assert re.search(pattern, documented, re.M), key
    assert settings == OrionSettings()
