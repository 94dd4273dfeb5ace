"""Data-quality rules declared in configuration, and their merge with the shipped defaults.

Rules come from three layers, later layers winning by ``(table, name)``:

1. the shipped defaults (`orion_etl.core.quality.default_rules`, unless ``include_defaults = false``);
2. the TOML file named by ``dq.rules_file`` (``[[rules]]`` and ``[tables.<name>]``);
3. inline ``[[dq.rules]]`` / ``[dq.tables.<name>]`` in ``orion-etl.toml``.

A rule entry that gives ``kind`` defines (or replaces) a rule; an entry without ``kind`` patches a
rule of a lower layer, e.g. ``{table = "fact_trades", name = "trades_fresh", max_age_s = 3600}``
or ``enabled = false`` to switch a default off. Every entry is validated with pydantic (frozen,
unknown keys rejected) and errors name the rule and the key.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orion_etl.config.files import describe_validation_errors, read_toml
from orion_etl.core.quality import (
    DEFAULT_TABLES,
    ROW_LEVEL_KINDS,
    Rule,
    RuleKind,
    Severity,
    TableSpec,
    default_rules,
)
from orion_etl.errors import ConfigError

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def _identifier(value: str | None) -> str | None:
    if value is not None and not IDENTIFIER.fullmatch(value):
        raise ValueError(f"{value!r} is not a plain SQL identifier (letters, digits, _)")
    return value


class TableSpecSettings(BaseModel):
    """Per-table audit settings: the time column that --from/--to filter on, the row id column."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    time_column: str | None = None
    key_column: str | None = None

    @field_validator("time_column", "key_column")
    @classmethod
    def _ident(cls, value: str | None) -> str | None:
        return _identifier(value)


def check_table_names(tables: dict[str, TableSpecSettings]) -> dict[str, TableSpecSettings]:
    """Validator of `tables` mappings: every key is a plain identifier."""
    for name in tables:
        _identifier(name)
    return tables


class RuleSpec(BaseModel):
    """One `[[rules]]` entry. With `kind`: a complete rule. Without: a patch of an existing rule."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    table: str
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
    kind: RuleKind | None = None
    message: str | None = None
    severity: Literal["error", "warning"] | None = None
    column: str | None = None
    columns: list[str] | None = None
    values: list[str] | None = None
    min: Decimal | None = None
    max: Decimal | None = None
    inclusive_max: bool | None = None
    other_column: str | None = None
    to_table: str | None = None
    to_column: str | None = None
    max_age_s: int | None = Field(None, ge=1)
    # custom_sql: a SQL boolean expression over the table (alias `t`) that is TRUE on failing rows.
    sql: str | None = None
    enabled: bool | None = None

    @field_validator("severity", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("values", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [
                str(v) if isinstance(v, int | float | Decimal) and not isinstance(v, bool) else v
                for v in value
            ]
        return value

    @field_validator("table", "column", "other_column", "to_table", "to_column")
    @classmethod
    def _ident(cls, value: str | None) -> str | None:
        return _identifier(value)

    @field_validator("columns")
    @classmethod
    def _idents(cls, value: list[str] | None) -> list[str] | None:
        for item in value or []:
            _identifier(item)
        return value

    @field_validator("sql")
    @classmethod
    def _predicate(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip():
            raise ValueError("sql must be a non-empty SQL predicate")
        if ";" in value or "--" in value or "/*" in value:
            raise ValueError("sql must be one predicate: no ';' and no comments")
        if value.count("(") != value.count(")"):
            raise ValueError("sql has unbalanced parentheses")
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _name_the_rule(cls, data: Any, handler: Any) -> Any:
        """Prefix every problem with the rule it belongs to: `rule <table>.<name>: <key>: <problem>`."""
        try:
            return handler(data)
        except ValidationError as exc:
            who = f"{data.get('table', '?')}.{data.get('name', '?')}" if isinstance(data, dict) else "?"
            err = exc.errors()[0]
            msg = str(err["msg"]).removeprefix("Value error, ")
            if msg.startswith("rule "):
                raise ValueError(msg) from None
            key = ".".join(str(p) for p in err["loc"])
            problem = msg
            if err["type"] == "extra_forbidden":
                close = difflib.get_close_matches(str(err["loc"][-1]), list(cls.model_fields), n=1)
                problem = f"unknown key (did you mean {close[0]!r}?)" if close else "unknown key"
            raise ValueError(f"rule {who}: {key + ': ' if key else ''}{problem}") from None

    @model_validator(mode="after")
    def _complete(self) -> RuleSpec:
        if self.kind is not None:
            problem = _missing_for_kind(self)
            if problem:
                raise ValueError(f"rule {self.table}.{self.name}: {problem}")
        return self


def _missing_for_kind(spec: RuleSpec) -> str | None:
    """Why a complete rule is not usable, or None."""
    kind = spec.kind
    if not spec.message:
        return "message is required"
    needs_column = kind in ROW_LEVEL_KINDS or kind in (RuleKind.RELATIONSHIPS, RuleKind.FRESHNESS)
    if needs_column and not spec.column:
        return f"column is required for kind {kind}"
    if kind is RuleKind.ACCEPTED_VALUES and not spec.values:
        return "values is required for kind accepted_values"
    if kind is RuleKind.RANGE and spec.min is None and spec.max is None:
        return "min and/or max is required for kind range"
    if kind is RuleKind.LESS_OR_EQUAL and not spec.other_column:
        return "other_column is required for kind less_or_equal"
    if kind is RuleKind.UNIQUE and not (spec.columns or spec.column):
        return "columns (or column) is required for kind unique"
    if kind is RuleKind.RELATIONSHIPS and not (spec.to_table and spec.to_column):
        return "to_table and to_column are required for kind relationships"
    if kind is RuleKind.FRESHNESS and spec.max_age_s is None:
        return "max_age_s is required for kind freshness"
    if kind is RuleKind.CUSTOM_SQL and not spec.sql:
        return "sql is required for kind custom_sql"
    return None


class RulesFile(BaseModel):
    """The document named by `dq.rules_file`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tables: dict[str, TableSpecSettings] = Field(default_factory=dict)
    rules: list[RuleSpec] = Field(default_factory=list)

    @field_validator("tables")
    @classmethod
    def _table_names(cls, value: dict[str, TableSpecSettings]) -> dict[str, TableSpecSettings]:
        return check_table_names(value)


@dataclass(frozen=True)
class RuleCatalog:
    """The active rules and table settings after merging all layers."""

    rules: list[Rule]
    tables: dict[str, TableSpec]
    origins: dict[str, str]  # rule key -> "default" | "file <name>" | "config"

    @property
    def active(self) -> list[Rule]:
        return [r for r in self.rules if r.enabled]

    def table(self, name: str) -> TableSpec:
        return self.tables.get(name, TableSpec(name))


def rule_to_spec_data(rule: Rule) -> dict[str, Any]:
    """A rule as the keys of a `[[rules]]` entry (only the ones it uses)."""
    data: dict[str, Any] = {
        "table": rule.table,
        "name": rule.name,
        "kind": rule.kind,
        "message": rule.message,
        "severity": rule.severity.value.lower(),
        "enabled": rule.enabled,
    }
    optional = {
        "column": rule.column,
        "columns": list(rule.columns) or None,
        "values": list(rule.values) or None,
        "min": rule.min,
        "max": rule.max,
        "inclusive_max": rule.inclusive_max or None,
        "other_column": rule.other_column,
        "to_table": rule.to_table,
        "to_column": rule.to_column,
        "max_age_s": rule.max_age_s,
        "sql": rule.sql,
    }
    data.update({k: v for k, v in optional.items() if v is not None})
    return data


def spec_to_rule(spec: RuleSpec) -> Rule:
    """A complete spec as a `Rule` (unique with `column` only becomes `columns=(column,)`)."""
    assert spec.kind is not None and spec.message is not None
    columns = tuple(spec.columns or ())
    if spec.kind is RuleKind.UNIQUE and not columns and spec.column:
        columns = (spec.column,)
    return Rule(
        name=spec.name,
        table=spec.table,
        kind=spec.kind,
        message=spec.message,
        severity=Severity((spec.severity or "error").upper()),
        column=spec.column,
        columns=columns,
        values=tuple(spec.values or ()),
        min=spec.min,
        max=spec.max,
        inclusive_max=bool(spec.inclusive_max),
        other_column=spec.other_column,
        to_table=spec.to_table,
        to_column=spec.to_column,
        max_age_s=spec.max_age_s,
        sql=spec.sql,
        enabled=True if spec.enabled is None else spec.enabled,
    )


def _describe(exc: ValidationError, where: str) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    msg = "unknown key" if err["type"] == "extra_forbidden" else str(err["msg"]).removeprefix("Value error, ")
    return f"{where}: {loc + ': ' if loc else ''}{msg}"


def read_rules_file(path: Path) -> RulesFile:
    """Parse and validate a rules file; problems become one `ConfigError` line naming the key."""
    data = read_toml(path)
    try:
        return RulesFile(**data)
    except ValidationError as exc:
        raise ConfigError.of(describe_validation_errors(exc, str(path), RulesFile)) from None


def merge_rules(
    layers: list[tuple[str, str, list[RuleSpec]]], *, include_defaults: bool = True
) -> tuple[list[Rule], dict[str, str]]:
    """Apply `(origin, where, rules)` layers over the defaults; `(table, name)` identifies a rule."""
    rules: dict[str, Rule] = {}
    origins: dict[str, str] = {}
    if include_defaults:
        for rule in default_rules():
            rules[rule.key] = rule
            origins[rule.key] = "default"
    for origin, where, specs in layers:
        for spec in specs:
            key = f"{spec.table}.{spec.name}"
            if spec.kind is not None:
                rules[key] = spec_to_rule(spec)
            else:
                base = rules.get(key)
                if base is None:
                    raise ConfigError(
                        f"{where}: rule {key}: kind is required (no rule of that name to modify)"
                    )
                if spec.model_fields_set <= {"table", "name", "enabled"}:
                    rules[key] = replace(base, enabled=True if spec.enabled is None else spec.enabled)
                else:
                    merged = rule_to_spec_data(base) | {
                        f: getattr(spec, f) for f in spec.model_fields_set if f not in ("table", "name")
                    }
                    try:
                        rules[key] = spec_to_rule(RuleSpec(**merged))
                    except ValidationError as exc:
                        raise ConfigError(_describe(exc, where)) from None
            origins[key] = origin
    return list(rules.values()), origins


def build_catalog(dq: Any, base_dir: Path | None = None) -> RuleCatalog:
    """The effective rules of a `DqSettings`: defaults, then `rules_file`, then inline rules."""
    layers: list[tuple[str, str, list[RuleSpec]]] = []
    tables: dict[str, TableSpec] = dict(DEFAULT_TABLES)

    def add_tables(specs: dict[str, TableSpecSettings]) -> None:
        for name, spec in specs.items():
            old = tables.get(name, TableSpec(name))
            tables[name] = TableSpec(
                name,
                spec.time_column if "time_column" in spec.model_fields_set else old.time_column,
                spec.key_column if "key_column" in spec.model_fields_set else old.key_column,
            )

    if dq.rules_file:
        path = Path(dq.rules_file).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.is_file():
            raise ConfigError(f"dq.rules_file: rules file not found: {path}")
        parsed = read_rules_file(path)
        add_tables(parsed.tables)
        layers.append((f"file {path.name}", str(path), parsed.rules))
    add_tables(dq.tables)
    layers.append(("config", "dq.rules", list(dq.rules)))
    rules, origins = merge_rules(layers, include_defaults=dq.include_defaults)
    return RuleCatalog(rules, tables, origins)
