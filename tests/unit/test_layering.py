"""The layers import downwards only: cli -> jobs -> adapters/config -> core -> errors.

Parsed with `ast` (every import, also inside functions and `if TYPE_CHECKING:`), so a lazy import
cannot hide an arrow back up.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "orion_etl"

# layer -> the layers it must never import
FORBIDDEN = {
    "core": {"config", "adapters", "jobs", "cli"},
    "config": {"adapters", "jobs", "cli"},
    "adapters": {"jobs", "cli"},
    "jobs": {"cli"},
}
# What a command module must leave to its job: connections, drivers, SQL.
CLI_FORBIDDEN_MODULES = ("orion_etl.adapters", "psycopg", "confluent_kafka", "httpx")


def _modules() -> dict[str, Path]:
    return {
        ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__"): path
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports (absolute names)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "orion_etl" else None


MODULES = _modules()


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) in FORBIDDEN))
def test_no_import_points_up_a_layer(module: str) -> None:
    forbidden = FORBIDDEN[_layer(module) or ""]
    wrong = sorted(i for i in imports_of(MODULES[module]) if _layer(i) in forbidden and i in MODULES)
    assert not wrong, f"{module} imports {wrong}: {_layer(module)} must not import {sorted(forbidden)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) == "cli"))
def test_commands_leave_connections_and_sql_to_jobs(module: str) -> None:
    wrong = sorted(
        i
        for i in imports_of(MODULES[module])
        if any(i == name or i.startswith(name + ".") for name in CLI_FORBIDDEN_MODULES)
    )
    assert not wrong, f"{module} imports {wrong}: a command calls a job, which owns connections and SQL"


def test_no_import_cycle_between_modules() -> None:
    graph = {m: {i for i in imports_of(p) if i in MODULES and i != m} for m, p in MODULES.items()}
    # A package's __init__ re-exporting its modules is not an arrow back (the module would load it).
    graph = {m: {i for i in deps if not m.startswith(i + ".")} for m, deps in graph.items()}
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_lazy_and_type_only_imports(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from orion_etl.config.models import OrionSettings\n"
        "def f():\n    from orion_etl.adapters import postgres\n    import psycopg\n"
    )
    found = imports_of(source)
    assert {
        "orion_etl.config.models",
        "orion_etl.adapters",
        "orion_etl.adapters.postgres",
        "psycopg",
    } <= found
