"""`orion-etl config check`: everything a command would reject in the configuration, at once."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orion_etl.config.loader import collect_problems
from orion_etl.errors import ConfigError, Verdict

if TYPE_CHECKING:
    from orion_etl.config.models import OrionSettings


@dataclass
class ConfigCheckReport:
    """The problems found (none: valid); `settings` when the file itself loaded."""

    source: Path | None
    problems: list[str] = field(default_factory=list)
    settings: OrionSettings | None = None

    @property
    def where(self) -> str:
        return str(self.source) if self.source else "defaults + environment"

    @property
    def verdict(self) -> Verdict:
        """Invalid configuration is exit 2 (as for every command), not a failed check (4)."""
        return Verdict.INVALID if self.problems else Verdict.OK

    def to_document(self) -> dict[str, Any]:
        return {"source": self.where, "valid": not self.problems, "problems": self.problems}


def config_problems(settings: OrionSettings, source: Path | None) -> list[str]:
    """What commands would reject beyond the model: the rules file and every rule, CDC names
    of every environment."""
    from orion_etl.config.cdc_target import resolve_target
    from orion_etl.config.dq import build_catalog

    problems: list[str] = []
    try:
        build_catalog(settings.dq, base_dir=source.parent if source else Path.cwd())
    except ConfigError as exc:
        problems += exc.problems
    for env in dict.fromkeys([settings.cdc.env, *settings.cdc.environments]):
        try:
            resolve_target(settings, env)
        except ConfigError as exc:
            problems += [p for p in exc.problems if p not in problems]
    return problems


def check_config(config_path: Path | None) -> ConfigCheckReport:
    """Load the configuration and validate everything a command would; collects every problem."""
    settings, source, problems = collect_problems(config_path)
    if settings is not None:
        problems += config_problems(settings, source)
    return ConfigCheckReport(source, problems, settings)
