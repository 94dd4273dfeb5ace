"""State shared by all commands: where the config is and the settings, loaded once on demand."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from orion_etl.logs import configure_logging, redactor, resolve_log_format

if TYPE_CHECKING:  # the config package imports pydantic: loaded when a command needs settings
    from rich.console import Console

    from orion_etl.config import OrionSettings


@dataclass
class AppState:
    """Options of the root command plus lazily loaded settings."""

    config_path: Path | None = None
    debug: bool = False
    log_format: str | None = None
    log_level: str | None = None
    _settings: OrionSettings | None = None
    _source: Path | None = None

    def settings(self) -> OrionSettings:
        """Load settings on first use (so `--help` never needs a config file)."""
        if self._settings is None:
            from orion_etl.config import load_settings

            self.adopt(*load_settings(self.config_path))
        assert self._settings is not None
        return self._settings

    def adopt(self, settings: OrionSettings, source: Path | None) -> None:
        """Use these settings: secrets registered for masking, logging configured."""
        from orion_etl.config.loader import secret_values

        self._settings, self._source = settings, source
        redactor.register(*secret_values(settings))
        configure_logging(
            self.log_level or ("DEBUG" if self.debug else settings.logging.level),
            self.log_format or settings.logging.format,
        )

    @property
    def settings_source(self) -> Path | None:
        self.settings()
        return self._source

    @property
    def json_logs(self) -> bool:
        """JSON log lines were asked for (--log-format json or logging.format = "json")."""
        fmt = self.log_format or self.settings().logging.format
        return resolve_log_format(fmt) == "json" and fmt.lower() == "json"

    @property
    def console(self) -> Console:
        """A console on stdout."""
        from orion_etl.cli.render import stdout_console

        return stdout_console()

    @property
    def err_console(self) -> Console:
        """The shared stderr console (log lines, progress, live views)."""
        from orion_etl.logs import stderr_console

        return stderr_console()


def state(ctx: typer.Context) -> AppState:
    """The AppState of the running command."""
    root = ctx.find_root()
    assert isinstance(root.obj, AppState)
    return root.obj
