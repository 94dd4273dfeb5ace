"""`orion-etl config show|check`."""

from __future__ import annotations

from typing import Annotated

import typer

from orion_etl.cli.context import state
from orion_etl.cli.render import OutputFormat, print_json
from orion_etl.config.loader import masked_dump

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
def show(
    ctx: typer.Context,
    fmt: Annotated[
        OutputFormat, typer.Option("--format", help="toml-like table or json")
    ] = OutputFormat.TABLE,
) -> None:
    """Print the effective configuration (file + environment + defaults), secrets masked."""
    app_state = state(ctx)
    data = masked_dump(app_state.settings())
    if fmt is OutputFormat.JSON:
        print_json({"source": str(app_state.settings_source or "defaults"), "config": data})
        return
    typer.echo(f"# effective configuration (file: {app_state.settings_source or 'none, defaults'})")
    typer.echo("\n".join(_to_toml(data)).rstrip())


@app.command("check")
def check(ctx: typer.Context) -> None:
    """Validate the configuration; exit 0 when valid, 2 with one line naming the bad key otherwise."""
    app_state = state(ctx)
    app_state.settings()
    typer.echo(f"configuration OK ({app_state.settings_source or 'defaults + environment'})")
