"""The option vocabulary shared by every command (the table in the README lists it).

One meaning per name and short flag, the same defaults everywhere, repeatable filters, choices in
any case. A command declares `since: SinceOpt = None` rather than its own `typer.Option`.
"""

from __future__ import annotations

from typing import Annotated

import typer

SinceOpt = Annotated[
    str | None,
    typer.Option(
        "--since",
        metavar="TIME",
        help="At or after: ISO 8601 (UTC if no offset) or a duration ago (30m, 2h, 7d).",
    ),
]
UntilOpt = Annotated[
    str | None, typer.Option("--until", metavar="TIME", help="At or before (same forms as --since).")
]
LimitOpt = Annotated[int, typer.Option("--limit", "-n", min=1, max=100_000, help="At most this many rows.")]
TableOpt = Annotated[
    list[str] | None,
    typer.Option("--table", metavar="TABLE", help="Only this table (repeatable).", show_default=False),
]
RuleOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--rule", metavar="RULE", help="Only this rule: name or table.name (repeatable).", show_default=False
    ),
]
EnvOpt = Annotated[
    str | None,
    typer.Option("--env", "-e", help="CDC environment (default: cdc.env; others in cdc.environments)."),
]
TopicOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--topic", "-t", metavar="TOPIC",
        help="Origin or DLQ topic or glob (repeatable; default: this deployment's configured topics).",
        show_default=False,
    ),
]  # fmt: skip
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show what would change; change nothing.")]
YesOpt = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
