"""`--help` and TAB completion stay fast: the heavy libraries are imported where they are used."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json, sys
from orion_etl.cli.app import main
sys.argv = ["orion-etl", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
sys.stderr.write("\\n" + json.dumps(sorted(sys.modules)))
"""
HEAVY = {"polars", "psycopg", "confluent_kafka", "httpx", "orion_etl.config.models", "orion_etl.jobs"}
COMPLETION = {"_ORION_ETL_COMPLETE": "complete_bash", "COMP_WORDS": "orion-etl dq ", "COMP_CWORD": "2"}


@pytest.mark.parametrize(
    ("args", "env", "heavy"),
    [
        (["--help"], {}, HEAVY),
        (["dlq", "show", "--help"], {}, HEAVY),
        ([], COMPLETION, HEAVY | {"pydantic", "typer.rich_utils"}),
    ],
)
def test_help_and_completion_import_no_heavy_library(
    args: list[str], env: dict[str, str], heavy: set[str]
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    modules = json.loads(result.stderr.strip().splitlines()[-1])
    loaded = [m for m in modules if any(m == h or m.startswith(h + ".") for h in heavy)]
    assert loaded == [], loaded
