"""`orion-etl dlq list|show|replay`: inspect dead letters and replay them through the loader."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import Progress

from orion_etl.cli.context import state
from orion_etl.cli.render import OutputFormat, print_json, print_table
from orion_etl.core.dead_letters import Selection, iso_ms, parse_classes, parse_range
from orion_etl.core.timeparse import parse_time
from orion_etl.jobs.dlq import list_dead_letters, show_dead_letters
from orion_etl.jobs.dlq_replay import run_replay

app = typer.Typer(help="Dead-letter queues: list, show and replay (docs/dlq.md).", no_args_is_help=True)

TopicOpt = Annotated[
    list[str] | None, typer.Option("--topic", "-t", help="Origin or DLQ topic (repeatable; default: all).")
]
PartitionOpt = Annotated[int | None, typer.Option("--partition", min=0, help="DLQ partition.")]
ClassOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--class", help="undecodable | schema | rule | missing_dimension | transient | unknown (repeatable)."
    ),
]
ErrorOpt = Annotated[str | None, typer.Option("--error", help="Error text contains (case-insensitive).")]
RuleOpt = Annotated[list[str] | None, typer.Option("--rule", help="Failed rule name (repeatable).")]
FingerprintOpt = Annotated[
    list[str] | None,
    typer.Option("--fingerprint", "-f", help="Failure fingerprint or letter id (prefix; repeatable)."),
]
KeyOpt = Annotated[str | None, typer.Option("--key", help="Record key contains this text (e.g. an id).")]
SinceOpt = Annotated[
    str | None, typer.Option("--since", help="Dead-lettered at/after: ISO 8601 or a duration ago (2h, 7d).")
]
UntilOpt = Annotated[str | None, typer.Option("--until", help="Dead-lettered at/before (same forms).")]
OffsetsOpt = Annotated[str | None, typer.Option("--offsets", help="DLQ offsets A..B, A.., ..B or A.")]
OriginOffsetsOpt = Annotated[
    str | None, typer.Option("--origin-offsets", help="Offsets in the origin topic (same forms).")
]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", help="table or json.")]


def _selection(
    topic: list[str] | None,
    partition: int | None,
    klass: list[str] | None,
    error: str | None,
    rule: list[str] | None,
    fingerprint: list[str] | None,
    key: str | None,
    since: str | None,
    until: str | None,
    offsets: str | None,
    origin_offsets: str | None,
) -> Selection:
    return Selection(
        topics=tuple(topic or ()),
        partition=partition,
        classes=parse_classes(klass or ()),
        error=error,
        rules=tuple(rule or ()),
        fingerprints=tuple(f.lower() for f in fingerprint or ()),
        key=key,
        since=parse_time(since, "--since") if since else None,
        until=parse_time(until, "--until") if until else None,
        offsets=parse_range(offsets, "--offsets") if offsets else None,
        origin_offsets=parse_range(origin_offsets, "--origin-offsets") if origin_offsets else None,
    )


@app.command("list")
def list_cmd(ctx: typer.Context, topic: TopicOpt = None, fmt: FormatOpt = OutputFormat.TABLE) -> None:
    """DLQ topics with message counts, and the letters grouped by class, fingerprint and rule."""
    app_state = state(ctx)
    result = list_dead_letters(app_state.settings(), tuple(topic or ()))
    if fmt is OutputFormat.JSON:
        print_json(result.as_dict())
        raise typer.Exit(0)
    console = app_state.console
    topic_rows = [
        [t.topic, t.messages, t.scanned, ", ".join(f"{k} {v}" for k, v in sorted(t.replays.items())) or "-"]
        for t in result.topics
    ]
    print_table(console, "DLQ topics", ["topic", "messages", "read", "replayed"], topic_rows)
    group_rows = [
        [g.dlq_topic, g.letter_class, g.fingerprint, g.rule or "-", g.count, g.last_ms and iso_ms(g.last_ms),
         g.sample_error[:100]]
        for g in result.groups
    ]  # fmt: skip
    columns = ["topic", "class", "fingerprint", "rule", "count", "last", "error (sample)"]
    print_table(console, "Dead letters by failure", columns, group_rows)


@app.command("show")
def show_cmd(
    ctx: typer.Context,
    topic: TopicOpt = None,
    partition: PartitionOpt = None,
    klass: ClassOpt = None,
    error: ErrorOpt = None,
    rule: RuleOpt = None,
    fingerprint: FingerprintOpt = None,
    key: KeyOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    offsets: OffsetsOpt = None,
    origin_offsets: OriginOffsetsOpt = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many letters.")] = 50,
    fmt: FormatOpt = OutputFormat.TABLE,
) -> None:
    """Dead letters with payload, error, rule, origin topic/partition/offset and time."""
    app_state = state(ctx)
    selection = _selection(
        topic, partition, klass, error, rule, fingerprint, key, since, until, offsets, origin_offsets
    )
    letters = show_dead_letters(app_state.settings(), selection, limit)
    if fmt is OutputFormat.JSON:
        print_json([m.as_dict() for m in letters])
        raise typer.Exit(0)
    rows = []
    for m in letters:
        d = m.as_dict()
        payload = d["value"] if d["value"] is not None else f"<{len(m.value or b'')} bytes, not UTF-8>"
        origin = f"{m.origin_topic}[{m.origin_partition}]@{m.origin_offset}"
        rows.append(
            [f"{m.dlq_topic}[{m.dlq_partition}]@{m.dlq_offset}", d["time"], m.letter_class, m.fingerprint,
             m.rule or "-", origin, m.error[:120], (payload or "")[:160]]
        )  # fmt: skip
    columns = ["letter", "time", "class", "fingerprint", "rule", "origin", "error", "payload"]
    print_table(app_state.console, f"{len(letters)} dead letter(s)", columns, rows)


@app.command("replay")
def replay_cmd(
    ctx: typer.Context,
    topic: TopicOpt = None,
    partition: PartitionOpt = None,
    klass: ClassOpt = None,
    error: ErrorOpt = None,
    rule: RuleOpt = None,
    fingerprint: FingerprintOpt = None,
    key: KeyOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    offsets: OffsetsOpt = None,
    origin_offsets: OriginOffsetsOpt = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Decode and check again; show what would load/fail. No writes.")
    ] = False,
    from_start: Annotated[
        bool,
        typer.Option(
            "--from-start", "--all", help="Ignore what earlier replays did: re-attempt every letter."
        ),
    ] = False,
    retry_failed: Annotated[
        bool,
        typer.Option("--retry-failed", help="Also re-attempt letters that failed again in earlier replays."),
    ] = False,
    fmt: FormatOpt = OutputFormat.TABLE,
) -> None:
    """Send selected dead letters through the loader's pipeline (decode, rules, guarded upserts).

    Exit 0: every selected letter loaded (or nothing to do); 1: some failed again (they stay in the
    DLQ, recorded in etl_dlq_replays) or cannot be replayed; 2: bad options; 3: could not run.
    """
    app_state = state(ctx)
    selection = _selection(
        topic, partition, klass, error, rule, fingerprint, key, since, until, offsets, origin_offsets
    )
    settings = app_state.settings()
    console = app_state.err_console
    with Progress(console=console, disable=not console.is_terminal, transient=True) as progress:
        task = progress.add_task("replaying dead letters", total=None)
        result = run_replay(
            settings,
            selection,
            dry_run=dry_run,
            from_start=from_start,
            retry_failed=retry_failed,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    if fmt is OutputFormat.JSON:
        print_json({**result.as_dict(), "exit_code": result.exit_code})
        raise typer.Exit(result.exit_code)
    out = app_state.console
    summary = result.summary()
    positions = summary.pop("positions")
    title = "dlq replay (dry run: nothing written)" if dry_run else "dlq replay"
    print_table(out, title, ["", "value"], [[k, v] for k, v in summary.items()])
    if result.failures:
        rows = [[g.letter_class, g.fingerprint, g.rule or "-", g.count, g.sample_error[:120]]
                for g in result.failures.values()]  # fmt: skip
        print_table(
            out, "failed again (stay in the DLQ)", ["class", "fingerprint", "rule", "count", "error"], rows
        )
    if dry_run and result.items:
        rows = [[f"{i.message.dlq_topic}@{i.message.dlq_offset}",
                 f"{i.message.origin_topic}[{i.message.origin_partition}]@{i.message.origin_offset}",
                 i.outcome, i.table or "-", (i.error or "")[:120]] for i in result.items]  # fmt: skip
        print_table(out, "per letter", ["letter", "origin", "would", "table", "why"], rows)
    if positions:
        out.print("replay positions: " + ", ".join(f"{k}={v}" for k, v in positions.items()))
    raise typer.Exit(result.exit_code)
