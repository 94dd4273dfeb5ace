"""Find, read and validate the configuration; turn every problem into `ConfigError` lines.

Relative paths in the file (``dq.rules_file``) are resolved against the file's folder here, once,
so every command finds the same file whatever its working directory (a systemd unit has none).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from orion_etl.config.files import describe_validation_errors, did_you_mean, read_toml
from orion_etl.config.models import ENV_NESTED_DELIMITER, ENV_PREFIX, OrionSettings
from orion_etl.errors import ConfigError

CONFIG_ENV_VAR = "ORION_ETL_CONFIG"
DEFAULT_CONFIG_FILE = "orion-etl.toml"
# Variables with the prefix that are not settings.
_NON_SETTING_VARS = {CONFIG_ENV_VAR}


class _FileOnlySettings(OrionSettings):
    """The settings model without the environment: what the file alone says."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


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


def _unknown_env_vars(environ: dict[str, str]) -> list[str]:
    """Problems for ORION_ETL_* variables whose section does not exist (typos would be ignored)."""
    sections = list(OrionSettings.model_fields)
    problems = []
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in _NON_SETTING_VARS:
            continue
        section = upper[len(ENV_PREFIX) :].split(ENV_NESTED_DELIMITER, 1)[0].lower()
        if section not in sections:
            hint = did_you_mean(section, sections)
            problems.append(f"unknown environment setting {name}: no section {section!r}{hint}")
    return problems


def _env_name(loc: tuple[int | str, ...]) -> str:
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(str(p).upper() for p in loc)


def describe_errors(exc: ValidationError, where: str, *, from_env: bool = True) -> list[str]:
    """One line per validation error: file, key (or the variable that set it), what is wrong."""
    environ = {k.upper() for k in os.environ}

    def variable(loc: tuple[int | str, ...]) -> str | None:
        return _env_name(loc) if from_env and _env_name(loc) in environ else None

    return describe_validation_errors(exc, where, OrionSettings, variable)


def _resolve_paths(settings: OrionSettings, data: dict[str, Any], path: Path | None) -> OrionSettings:
    """Relative `dq.rules_file`: against the config file's folder when the file set it, else cwd."""
    rules_file = settings.dq.rules_file
    if not rules_file:
        return settings
    expanded = Path(rules_file).expanduser()
    if expanded.is_absolute():
        resolved = expanded
    else:
        in_file = (data.get("dq") or {}).get("rules_file") == rules_file
        base = path.parent if (path is not None and in_file) else Path.cwd()
        resolved = (base / expanded).resolve()
    if str(resolved) == rules_file:
        return settings
    dq = settings.dq.model_copy(update={"rules_file": str(resolved)})
    return settings.model_copy(update={"dq": dq})


def collect_problems(
    config_path: str | Path | None = None,
) -> tuple[OrionSettings | None, Path | None, list[str]]:
    """Every problem of the configuration at once: file, environment, and the file's own values
    that an environment variable overrides (so a bad value cannot hide behind an override)."""
    path = resolve_config_path(config_path)
    data = read_toml(path) if path else {}
    where = str(path) if path else "configuration"
    problems = _unknown_env_vars(dict(os.environ))
    settings: OrionSettings | None = None
    try:
        settings = OrionSettings(**data)
    except ValidationError as exc:
        problems += describe_errors(exc, where)
    if path is not None:
        try:
            _FileOnlySettings(**data)
        except ValidationError as exc:
            for problem in describe_errors(exc, where, from_env=False):
                if problem not in problems:
                    hidden = any(problem.startswith(f"{where}: {k}:") for k in _overridden(exc))
                    problems.append(problem + (" (overridden by the environment)" if hidden else ""))
    if settings is not None:
        settings = _resolve_paths(settings, data, path)
    return (settings if not problems else None), path, problems


def _overridden(exc: ValidationError) -> list[str]:
    environ = {k.upper() for k in os.environ}
    return [".".join(str(p) for p in e["loc"]) for e in exc.errors() if _env_name(tuple(e["loc"])) in environ]


def load_settings(config_path: str | Path | None = None) -> tuple[OrionSettings, Path | None]:
    """Load the effective settings and the file they came from (None: defaults + environment)."""
    settings, path, problems = collect_problems(config_path)
    if problems or settings is None:
        raise ConfigError.of(problems or ["configuration: invalid"])
    return settings, path


def secret_values(settings: OrionSettings) -> list[str]:
    """Every secret value in the settings, for masking in logs, errors and output."""
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
