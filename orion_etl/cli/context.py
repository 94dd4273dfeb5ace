"""State shared by all commands: where the config is and the settings, loaded once on demand."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import typer
from rich.console import Console

from orion_etl.config import OrionSettings, load_settings
from orion_etl.config.loader import secret_values
from orion_etl.logs import configure_logging, redactor


@dataclass
class AppState:
    """Options of the root command plus lazily loaded settings."""

    config_path: Path | None = None
    debug: bool = False
    log_format: str | None = None
    log_level: str | None = None
    _settings: OrionSettings | None = None
    _source: Path | None = None
    console: Console = field(default_factory=Console)
    err_console: Console = field(default_factory=lambda: Console(stderr=True))

    def settings(self) -> OrionSettings:
        """Load settings on first use (so `--help` never needs a config file)."""
        if self._settings is None:
            self._settings, self._source = load_settings(self.config_path)
            redactor.register(*secret_values(self._settings))
            configure_logging(
                self.log_level or ("DEBUG" if self.debug else self._settings.logging.level),
                self.log_format or self._settings.logging.format,
            )
        return self._settings

    @property
    def settings_source(self) -> Path | None:
        self.settings()
        return self._source


def state(ctx: typer.Context) -> AppState:
    """The AppState of the running command."""
    root = ctx.find_root()
    assert isinstance(root.obj, AppState)
    return root.obj
