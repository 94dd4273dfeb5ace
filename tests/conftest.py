"""Shared test helpers."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep a developer's ORION_ETL_* variables and ./orion-etl.toml out of tests."""
    import os

    for name in list(os.environ):
        if name.upper().startswith("ORION_ETL_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
