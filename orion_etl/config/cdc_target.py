"""Which CDC environment a command acts on: `[cdc]` + `[cdc.environments.<env>]` with `{env}` filled in.

Pure: takes the loaded settings and an environment name, returns the effective settings. Rules:

* the environment is ``--env``, else ``cdc.env``;
* the environment must be ``cdc.env`` or one of the names in ``cdc.environments``, so a typo
  such as ``--env prdo`` cannot register a brand-new connector;
* the overrides of that environment replace keys of ``[cdc]``; a ``source`` table in them replaces
  keys of ``[source]`` (the connection `cdc prepare|status` use);
* ``{env}`` in name-like keys is replaced by the environment name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from orion_etl.config.models import CdcSettings, OrionSettings, SourceSettings
from orion_etl.errors import ConfigError

# Keys in which "{env}" is substituted.
TEMPLATED_KEYS = (
    "connector_name",
    "topic_prefix",
    "routed_topic_prefix",
    "publication_name",
    "slot_name",
    "database_dbname",
    "database_password_ref",
    "heartbeat_table",
    "signal_table",
)
_TOPIC_RE = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
_IDENT_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_ENV_RE = re.compile(r"[A-Za-z0-9_-]{1,40}")


@dataclass(frozen=True)
class CdcTarget:
    """The effective CDC settings of one environment and the source connection that goes with them."""

    env: str
    cdc: CdcSettings
    source: SourceSettings

    @property
    def database_user(self) -> str:
        """The user the connector logs in as."""
        return self.cdc.database_user or self.source.user

    @property
    def captured_tables(self) -> list[str]:
        """Configured tables, de-duplicated, in configured order."""
        return list(dict.fromkeys(self.cdc.tables))

    @property
    def replica_identity_tables(self) -> list[str]:
        """Tables `cdc prepare` sets to REPLICA IDENTITY FULL."""
        wanted = self.cdc.replica_identity_full
        if "*" in wanted:
            return self.captured_tables
        return list(dict.fromkeys(wanted))


def resolve_target(settings: OrionSettings, env: str | None = None) -> CdcTarget:
    """Effective settings for `env` (default `cdc.env`); `ConfigError` naming the key when invalid."""
    base = settings.cdc
    name = env or base.env
    if not _ENV_RE.fullmatch(name):
        raise ConfigError(f"invalid environment name {name!r} (letters, digits, '_' and '-', at most 40)")
    if name not in base.environments and name != base.env:
        # Even with no [cdc.environments]: a typo such as `--env prdo` would otherwise plan a
        # second connector on the same replication slot, writing to the same topics.
        known = ", ".join(sorted({base.env, *base.environments}))
        raise ConfigError(
            f"unknown environment {name!r}: the configured environments are {known} "
            "(cdc.env and the tables of cdc.environments)"
        )
    overrides: dict[str, Any] = dict(base.environments.get(name, {}))
    source_overrides = overrides.pop("source", {}) or {}

    data = base.model_dump(exclude={"environments"})
    data.update(overrides)
    data["env"] = name
    # An empty environment variable (ORION_ETL_CDC__DATABASE_PASSWORD_REF=) means "not set".
    for key in ("database_hostname", "database_dbname", "database_user", "database_password_ref"):
        if data.get(key) == "":
            data[key] = None
    for key in TEMPLATED_KEYS:
        if isinstance(data.get(key), str):
            data[key] = data[key].replace("{env}", name)
    where = f"cdc.environments.{name}" if overrides else "cdc"
    try:
        cdc = CdcSettings.model_validate(data)
        source = SourceSettings.model_validate({**settings.source.model_dump(), **source_overrides})
    except ValidationError as exc:
        problems = [f"{where}: {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError.of(problems) from None
    _check_names(cdc, where)
    return CdcTarget(env=name, cdc=cdc, source=source)


def _check_names(cdc: CdcSettings, where: str) -> None:
    """Every name or setting `connectors register` would reject, all at once (ConfigError with `problems`)."""
    problems: list[str] = []
    for key in ("topic_prefix", "routed_topic_prefix"):
        value = getattr(cdc, key)
        if not _TOPIC_RE.fullmatch(value):
            problems.append(
                f"{where}.{key}: {value!r} is not a valid topic prefix "
                "(letters, digits, '_', '-', dot-separated)"
            )
    for key in ("slot_name", "publication_name"):
        value = getattr(cdc, key)
        if not _IDENT_RE.fullmatch(value):
            problems.append(
                f"{where}.{key}: {value!r} must be a lower-case PostgreSQL name ([a-z_][a-z0-9_]*, <= 63)"
            )
    if not cdc.tables:
        problems.append(f"{where}.tables: at least one table is required")
    for table in [*cdc.tables, *(t for t in cdc.replica_identity_full if t != "*")]:
        if not _IDENT_RE.fullmatch(table):
            problems.append(f"{where}.tables: {table!r} is not a plain lower-case table name")
    for key in ("heartbeat_table", "signal_table"):
        value = getattr(cdc, key)
        if value and not _IDENT_RE.fullmatch(value):
            problems.append(f"{where}.{key}: {value!r} is not a plain table name")
    if cdc.signal_table and cdc.signal_table in (cdc.heartbeat_table, *cdc.tables):
        problems.append(f"{where}.signal_table: {cdc.signal_table!r} is also a captured or heartbeat table")
    unknown = [t for t in cdc.replica_identity_full if t != "*" and t not in cdc.tables]
    if unknown:
        problems.append(f"{where}.replica_identity_full: {unknown[0]!r} is not one of cdc.tables")
    ref = cdc.database_password_ref
    if ref is not None and not re.fullmatch(r"\$\{[A-Za-z0-9_.-]+:[^{}]+\}", ref):
        problems.append(
            f"{where}.database_password_ref: expected a config-provider reference such as "
            "'${env:VAR}' or '${file:/path/secrets.properties:key}'"
        )
    problems += schemaless_problems(cdc, where)
    if problems:
        raise ConfigError.of(problems)


def schemaless_problems(cdc: CdcSettings, where: str) -> list[str]:
    """Settings a schemaless connector (`cdc.schemas = "none"`) cannot be read back with.

    Without the embedded schema the loader types each value by its own column contract: a decimal
    must be the exact string of `decimal.handling.mode=string` (a `precise` value is base64 bytes
    whose scale is only in the schema, a `double` has already lost digits), and an integer
    timestamp is read as epoch microseconds (Debezium's `adaptive` modes; `connect` sends millis).
    Refused rather than overridden: the operator asked for the other mode explicitly.
    """
    problems: list[str] = []
    extra = cdc.extra
    if cdc.schemas == "none":
        if cdc.decimal_handling_mode != "string":
            problems.append(
                f"{where}.decimal_handling_mode: must be 'string' when schemas = 'none' "
                f"(a {cdc.decimal_handling_mode!r} decimal cannot be read exactly without its schema)"
            )
        mode = extra.get("decimal.handling.mode")
        if mode is not None and mode != "string":
            problems.append(
                f"{where}.extra.decimal.handling.mode: must be 'string' when schemas = 'none' (is {mode!r})"
            )
        if extra.get("time.precision.mode") == "connect":
            problems.append(
                f"{where}.extra.time.precision.mode: 'connect' sends timestamps as epoch milliseconds, "
                "which a schemaless record cannot tell from the microseconds of the default mode"
            )
    wanted = "true" if cdc.schemas == "embedded" else "false"
    for key in ("key.converter.schemas.enable", "value.converter.schemas.enable"):
        if key in extra and extra[key].strip().lower() != wanted:
            problems.append(
                f"{where}.extra.{key}: contradicts schemas = {cdc.schemas!r}; set cdc.schemas instead"
            )
    return problems
