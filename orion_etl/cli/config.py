"""`orion-etl config show|check`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from orion_etl.cli.context import state
from orion_etl.cli.render import (
    FormatOpt,
    OutputFormat,
    finish_report,
    print_json,
    print_rows,
    resolve_format,
    say,
)

if TYPE_CHECKING:
    pass

app = typer.Typer(help="Inspect and validate the configuration.", no_args_is_help=True)


def _to_toml(data: dict, prefix: str = "") -> list[str]:
    lines: list[str] = []
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    if prefix and scalars:
        lines.append(f"[{prefix}]")
    for key, value in scalars.items():
        lines.append(f"{key} = {_toml_value(value)}")
    if scalars:
        lines.append("")
    for key, value in tables.items():
        name = f"{prefix}.{key}" if prefix else key
        if not value:
            lines.extend([f"[{name}]", ""])
        else:
            lines.extend(_to_toml(value, name))
    return lines


def _toml_value(value: object) -> str:
    import json

    if value is None:
        return '"" # unset'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))


@app.command("show")
def show(ctx: typer.Context, fmt: FormatOpt = None) -> None:
    """Print the effective configuration (file + environment + defaults), secrets masked."""
    from orion_etl.config.loader import masked_dump

    app_state = state(ctx)
    data = masked_dump(app_state.settings())
    source = str(app_state.settings_source or "defaults")
    out = resolve_format(fmt)
    if out is OutputFormat.JSON:
        print_json({"source": source, "config": data})
        return
    if out is OutputFormat.CSV:
        print_rows(out, ["key", "value"], [[k, v] for k, v in _flatten(data)])
        return
    say(f"# effective configuration (file: {app_state.settings_source or 'none, defaults'})")
    say("\n".join(_to_toml(data)).rstrip())


def _flatten(data: dict, prefix: str = "") -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value:
            out += _flatten(value, name)
        else:
            out.append((name, value))
    return out


@app.command("check")
def check(ctx: typer.Context, fmt: FormatOpt = None) -> None:
    """Validate everything a command would: keys and values (file and environment, including file
    values an environment variable overrides), the DQ rules file and every rule, the CDC names of
    every environment. Lists every problem; exit 0 when valid, 2 otherwise."""
    from orion_etl.jobs.config_check import check_config

    report = check_config(state(ctx).config_path)
    problems, where = report.problems, report.where

    def human(out: OutputFormat) -> None:
        if out is OutputFormat.CSV:
            print_rows(out, ["problem"], [[p] for p in problems])
            return
        for problem in problems:
            say(f"error: {problem}")
        say(f"configuration OK ({where})" if not problems else f"{len(problems)} problem(s) in {where}")

    finish_report(fmt, report, human=human)
