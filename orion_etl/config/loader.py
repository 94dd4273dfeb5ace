"""Find, read and validate the configuration; turn every problem into one `ConfigError` line."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError

from orion_etl.config.models import ENV_NESTED_DELIMITER, ENV_PREFIX, OrionSettings
from orion_etl.errors import ConfigError

CONFIG_ENV_VAR = "ORION_ETL_CONFIG"
DEFAULT_CONFIG_FILE = "orion-etl.toml"
# Variables with the prefix that are not settings.
_NON_SETTING_VARS = {CONFIG_ENV_VAR}


def resolve_config_path(explicit: str | Path | None = None) -> Path | None:
    """The file to read: --config, then $ORION_ETL_CONFIG, then ./orion-etl.toml if present."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file not found: {path} (from --config)")
        return path
    from_env = os.environ.get(CONFIG_ENV_VAR)
    if from_env:
        path = Path(from_env).expanduser()
        if not path.is_file():
            raise ConfigError(f"config file not found: {path} (from ${CONFIG_ENV_VAR})")
        return path
    default = Path.cwd() / DEFAULT_CONFIG_FILE
    return default if default.is_file() else None


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file, reporting syntax errors with file and position."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None


def _unknown_env_vars(environ: dict[str, str]) -> list[str]:
    """ORION_ETL_* variables whose section does not exist (typos would otherwise be ignored)."""
    sections = set(OrionSettings.model_fields)
    unknown = []
    for name in environ:
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in _NON_SETTING_VARS:
            continue
        section = upper[len(ENV_PREFIX) :].split(ENV_NESTED_DELIMITER, 1)[0].lower()
        if section not in sections:
            unknown.append(name)
    return unknown


def _describe_location(loc: tuple[int | str, ...], from_file: dict[str, Any]) -> str:
    key = ".".join(str(p) for p in loc)
    env_name = ENV_PREFIX + ENV_NESTED_DELIMITER.join(str(p).upper() for p in loc)
    if env_name in {k.upper() for k in os.environ}:
        return f"{key} (from environment {env_name})"
    return key


def load_settings(config_path: str | Path | None = None) -> tuple[OrionSettings, Path | None]:
    """Load the effective settings and the file they came from (None: defaults + environment)."""
    path = resolve_config_path(config_path)
    data = read_toml(path) if path else {}
    where = str(path) if path else "configuration"
    unknown = _unknown_env_vars(dict(os.environ))
    if unknown:
        raise ConfigError(
            f"unknown environment setting {unknown[0]}: no section "
            f"'{unknown[0][len(ENV_PREFIX) :].split(ENV_NESTED_DELIMITER)[0].lower()}' "
            f"(sections: {', '.join(OrionSettings.model_fields)})"
        )
    try:
        settings = OrionSettings(**data)
    except ValidationError as exc:
        err = exc.errors()[0]
        location = _describe_location(tuple(err["loc"]), data)
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{where}: {location}: {message}{more}") from None
    return settings, path


def secret_values(settings: OrionSettings) -> list[str]:
    """Every secret value in the settings, for redaction of logs and error messages."""
    found: list[str] = []

    def walk(obj: Any) -> None:
        if isinstance(obj, SecretStr):
            value = obj.get_secret_value()
            if value:
                found.append(value)
        elif isinstance(obj, BaseModel):
            for name in type(obj).model_fields:
                walk(getattr(obj, name))
        elif isinstance(obj, dict):
            for key, value in obj.items():
                # librdkafka passthrough keys that carry secrets
                if isinstance(value, str) and any(s in key.lower() for s in ("password", "secret", "token")):
                    found.append(value)
                else:
                    walk(value)

    walk(settings)
    return sorted(set(found), key=len, reverse=True)


def masked_dump(settings: OrionSettings) -> dict[str, Any]:
    """The effective configuration as plain data with every secret replaced by '********'."""
    secrets = set(secret_values(settings))

    def mask(obj: Any) -> Any:
        if isinstance(obj, SecretStr):
            return "********" if obj.get_secret_value() else ""
        if isinstance(obj, BaseModel):
            return {name: mask(getattr(obj, name)) for name in type(obj).model_fields}
        if isinstance(obj, dict):
            return {
                k: ("********" if isinstance(v, str) and v in secrets else mask(v)) for k, v in obj.items()
            }
        if isinstance(obj, list):
            return [mask(v) for v in obj]
        return obj

    return mask(settings)
