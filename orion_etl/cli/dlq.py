"""`orion-etl dlq list|show|replay`: inspect dead letters and replay them through the loader."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from orion_etl.cli.context import state
from orion_etl.cli.options import LimitOpt, RuleOpt, SinceOpt, TopicOpt, UntilOpt
from orion_etl.cli.render import (
    Column,
    FormatOpt,
    OutputFormat,
    finish,
    finish_report,
    print_rows,
    resolve_format,
    say,
)

if TYPE_CHECKING:
    from orion_etl.core.dead_letters import DlqMessage, Selection

app = typer.Typer(help="Dead-letter queues: list, show and replay (docs/dlq.md).", no_args_is_help=True)

PartitionOpt = Annotated[int | None, typer.Option("--partition", min=0, help="DLQ partition.")]
ClassOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--class",
        metavar="CLASS",
        help="undecodable | schema | rule | missing_dimension | transient | unknown (repeatable, any case).",
        show_default=False,
    ),
]
ErrorOpt = Annotated[str | None, typer.Option("--error", help="Error text contains (case-insensitive).")]
FingerprintOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--fingerprint",
        "-f",
        metavar="ID",
        help="Failure fingerprint or letter id (prefix; repeatable).",
        show_default=False,
    ),
]
KeyOpt = Annotated[str | None, typer.Option("--key", help="Record key contains this text (e.g. an id).")]
OffsetsOpt = Annotated[str | None, typer.Option("--offsets", help="DLQ offsets A..B, A.., ..B or A.")]
OriginOffsetsOpt = Annotated[
    str | None, typer.Option("--origin-offsets", help="Offsets in the origin topic (same forms).")
]


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
    from orion_etl.core.dead_letters import Selection, parse_classes, parse_range
    from orion_etl.core.timeparse import parse_time

    return Selection(
        topics=tuple(topic or ()),
        partition=partition,
        classes=parse_classes([k.lower() for k in klass or ()]),
        error=error,
        rules=tuple(rule or ()),
        fingerprints=tuple(f.lower() for f in fingerprint or ()),
        key=key,
        since=parse_time(since, "--since") if since else None,
        until=parse_time(until, "--until") if until else None,
        offsets=parse_range(offsets, "--offsets") if offsets else None,
        origin_offsets=parse_range(origin_offsets, "--origin-offsets") if origin_offsets else None,
    )


def _origin(m: DlqMessage) -> str:
    return f"{m.origin_topic}[{m.origin_partition}]@{m.origin_offset}"


@app.command("list")
def list_cmd(ctx: typer.Context, topic: TopicOpt = None, fmt: FormatOpt = None) -> None:
    """DLQ topics with message counts, and the letters grouped by class, fingerprint and rule."""
    from orion_etl.core.dead_letters import iso_ms
    from orion_etl.jobs.dlq import list_dead_letters

    app_state = state(ctx)
    result = list_dead_letters(app_state.settings(), tuple(topic or ()))
    out = resolve_format(fmt)
    if out is OutputFormat.JSON:
        finish_report(out, result)
    topic_rows = [
        {"topic": t.topic, "messages": t.messages, "read": t.scanned,
         "replayed": ", ".join(f"{k} {v}" for k, v in sorted(t.replays.items()))}
        for t in result.topics
    ]  # fmt: skip
    group_rows = [
        {"topic": g.dlq_topic, "class": g.letter_class, "fingerprint": g.fingerprint, "rule": g.rule,
         "count": g.count, "last": g.last_ms and iso_ms(g.last_ms), "error": g.sample_error}
        for g in result.groups
    ]  # fmt: skip
    if out is OutputFormat.CSV:  # one table per document: the groups (the topics are in their rows)
        print_rows(out, list(group_rows[0]) if group_rows else ["topic"], group_rows)
        return
    print_rows(out, ["topic", "messages", "read", "replayed"], topic_rows, title="DLQ topics", section=True)
    columns: list[Column | str] = ["topic", "class", "fingerprint", "rule", "count", "last"]
    columns.append(Column("error", "error (sample)"))
    print_rows(out, columns, group_rows, title="Dead letters by failure", section=True)


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
    limit: LimitOpt = 50,
    fmt: FormatOpt = None,
) -> None:
    """Dead letters with payload, error, rule, origin topic/partition/offset and time."""
    from orion_etl.jobs.dlq import show_dead_letters

    app_state = state(ctx)
    selection = _selection(
        topic, partition, klass, error, rule, fingerprint, key, since, until, offsets, origin_offsets
    )
    letters = show_dead_letters(app_state.settings(), selection, limit)
    if resolve_format(fmt) is OutputFormat.JSON:
        print_rows(fmt, [], [m.as_dict() for m in letters])
        return
    rows = []
    for m in letters:
        d = m.as_dict()
        payload = d["value"] if d["value"] is not None else f"<{len(m.value or b'')} bytes, not UTF-8>"
        rows.append(
            {"letter": f"{m.dlq_topic}[{m.dlq_partition}]@{m.dlq_offset}", "time": d["time"],
             "class": m.letter_class, "fingerprint": m.fingerprint, "rule": m.rule,
             "origin": _origin(m), "error": m.error,
             "payload": payload}
        )  # fmt: skip
    columns = ["letter", "time", "class", "fingerprint", "rule", "origin", "error", "payload"]
    print_rows(fmt, columns, rows, title=f"{len(letters)} dead letter(s)")


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
        bool, typer.Option("--from-start", help="Ignore what earlier replays did: re-attempt every letter.")
    ] = False,
    retry_failed: Annotated[
        bool,
        typer.Option("--retry-failed", help="Also re-attempt letters that failed again in earlier replays."),
    ] = False,
    fmt: FormatOpt = None,
) -> None:
    """Send selected dead letters through the loader's pipeline (decode, rules, guarded upserts).

    Exit 0: every selected letter loaded (or nothing to do); 1: some failed again (they stay in the
    DLQ, recorded in etl_dlq_replays) or cannot be replayed; 2: bad options; 3: could not run.
    """
    from rich.progress import Progress

    from orion_etl.jobs.dlq_replay import run_replay

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

    def human(out: OutputFormat) -> None:
        summary = result.summary()
        positions = summary.pop("positions")
        if out is OutputFormat.CSV:
            print_rows(out, list(summary), [summary])
            return
        title = "dlq replay (dry run: nothing written)" if dry_run else "dlq replay"
        print_rows(out, ["field", "value"], [[k, v] for k, v in summary.items()], title=title, section=True)
        if result.failures:
            rows = [{"class": g.letter_class, "fingerprint": g.fingerprint, "rule": g.rule, "count": g.count,
                     "error": g.sample_error} for g in result.failures.values()]  # fmt: skip
            print_rows(out, list(rows[0]), rows, title="failed again (stay in the DLQ)", section=True)
        if dry_run and result.items:
            rows = [{"letter": f"{i.message.dlq_topic}@{i.message.dlq_offset}", "origin": _origin(i.message),
                     "would": i.outcome, "table": i.table, "why": i.error} for i in result.items]  # fmt: skip
            print_rows(out, list(rows[0]), rows, title="per letter", section=True)
        if positions:
            say("replay positions: " + ", ".join(f"{k}={v}" for k, v in positions.items()))

    finish(
        fmt,
        result.as_dict(),
        exit_code=result.exit_code,
        human=human,
        summary_event="dlq-replay",
        json_logs_only=app_state.json_logs,
    )
