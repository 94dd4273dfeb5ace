"""Configuration: one frozen pydantic model tree, loaded from TOML plus environment overrides."""

from orion_etl.config.loader import load_settings, resolve_config_path
from orion_etl.config.models import OrionSettings

__all__ = ["OrionSettings", "load_settings", "resolve_config_path"]
