"""The `orion-etl` root command: global options, sub-command groups, one error boundary."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from orion_etl import __version__
from orion_etl.cli import aggregate as aggregate_cmd
from orion_etl.cli import cdc as cdc_cmd
from orion_etl.cli import config as config_cmd
from orion_etl.cli import connectors as connectors_cmd
from orion_etl.cli import db as db_cmd
from orion_etl.cli import demo as demo_cmd
from orion_etl.cli import dims as dims_cmd
from orion_etl.cli import dlq as dlq_cmd
from orion_etl.cli import doctor as doctor_cmd
from orion_etl.cli import dq as dq_cmd
from orion_etl.cli import jobs as jobs_cmd
from orion_etl.cli import stream as stream_cmd
from orion_etl.cli.context import AppState
from orion_etl.errors import ExitCode, OrionError, exit_code_for, status_word
from orion_etl.logs import redactor, stderr_console
from orion_etl.signals import last_signal, raise_on_signals


def _help_fixes() -> None:
    """Two corrections to Typer 0.2x help output.

    * `--dry-run`, not `--dry-run <bool>`: a flag takes no value, so it shows no type.
    * Paragraphs after the first are re-flowed: Typer keeps the docstring's line breaks there,
      so the exit codes of `stream --help` came out as ragged half-lines.
    """
    from typer.core import TyperCommand, TyperGroup, TyperOption

    def fix_linebreaks(paragraphs: list[str], markup_mode: Any) -> str:
        return "\n\n".join(p if p.startswith("\b") else " ".join(p.split()) for p in paragraphs)

    def with_reflow(format_help: Any) -> Any:
        def patched(self: Any, ctx: Any, formatter: Any) -> None:
            from typer import rich_utils  # only when help is shown: it costs ~0.06 s to import

            rich_utils._fix_linebreaks = fix_linebreaks
            format_help(self, ctx, formatter)

        return patched

    for cls in (TyperCommand, TyperGroup):
        cls.format_help = with_reflow(cls.format_help)  # type: ignore[method-assign]

    original = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else original(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_help_fixes()


def _fast_plain_options() -> None:
    """str and bool options without a pydantic TypeAdapter.

    Typer 0.2x coerces every parameter through pydantic, so a TAB completion (which parses the
    root's options) imported pydantic: ~0.15 s of a 0.4 s start. Click already hands str options a
    str and flags a bool; for those the adapter only checks the type again.
    """
    try:  # Typer internals (0.2x): without them the options still work, only a little slower
        from typer import _coercion, core

        original = core.build_runtime_param
    except (ImportError, AttributeError):
        return

    def build_runtime_param(descriptor: Any) -> Any:
        if descriptor.file_annotation is None and descriptor.annotation in (str, bool):
            return _coercion.PassThroughRuntimeParam(
                annotation=descriptor.annotation, parameter_info=descriptor.parameter_info
            )
        return original(descriptor)

    core.build_runtime_param = build_runtime_param


_fast_plain_options()


def _one_line_usage_errors() -> None:
    """Click's usage errors (unknown option, bad choice, missing argument) on one line, exit 2.

    Typer draws them as a multi-line panel under the usage text; every other error of orion-etl is
    one `error:` line (plus a JSON document under `--format json`), which is what cron mail, the
    journal and scripts expect. Typer's `_main` only uses its markup mode to pick that panel, so it
    is run without one, and the plain path (`ClickException.show`) prints through `_report`.
    """
    try:  # Typer internals (0.2x vendors click as typer._click); without them errors stay boxed
        from typer import core

        click_exceptions = core._click.exceptions
        original = core._main
    except (ImportError, AttributeError):
        return

    def _main(self: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["rich_markup_mode"] = None
        return original(self, *args, **kwargs)

    def show(self: Any, file: Any = None) -> None:
        ctx = getattr(self, "ctx", None)
        hint = f"see '{ctx.command_path} --help'" if ctx is not None else None
        _report(self.format_message(), hint, self.exit_code, _json_requested(sys.argv[1:]))

    core._main = _main
    for cls in (click_exceptions.ClickException, click_exceptions.UsageError):
        setattr(cls, "show", show)  # noqa: B010 - a method replaced on the class


_one_line_usage_errors()

app = typer.Typer(
    name="orion-etl",
    help="CDC-to-warehouse ETL toolkit: Debezium/Kafka streams into a PostgreSQL star schema.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(config_cmd.app, name="config")
app.add_typer(db_cmd.app, name="db")
app.add_typer(cdc_cmd.app, name="cdc")
app.add_typer(connectors_cmd.app, name="connectors")
app.add_typer(stream_cmd.app, name="stream")
app.add_typer(dims_cmd.app, name="dims")
app.add_typer(aggregate_cmd.app, name="aggregate")
app.add_typer(dq_cmd.app, name="dq")
app.add_typer(dlq_cmd.app, name="dlq")
app.add_typer(jobs_cmd.app, name="jobs")
app.add_typer(demo_cmd.app, name="demo")
app.command("doctor")(doctor_cmd.doctor)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"orion-etl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    # The root's options are plain str/bool (see _fast_plain_options): TAB completion parses them.
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            "-c",
            metavar="PATH",
            help="TOML config file (default: $ORION_ETL_CONFIG, ./orion-etl.toml).",
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Debug logs and full tracebacks.")] = False,
    log_format: Annotated[
        str | None,
        typer.Option(
            "--log-format",
            metavar="auto|rich|json|plain",
            help="Log lines on stderr, any case (default: logging.format).",
            show_default=False,
        ),
    ] = None,
    metrics_file: Annotated[
        str | None,
        typer.Option(
            "--metrics-file",
            metavar="PATH",
            help="Write this run's outcome as a Prometheus textfile (node-exporter collector) on exit.",
        ),
    ] = None,
    metrics_job: Annotated[
        str | None,
        typer.Option(
            "--metrics-job",
            help="The orion_job label of --metrics-file (default: the command, e.g. dims-sync).",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Global options shared by every command."""
    from orion_etl.logs import resolve_log_format

    if log_format is not None:
        resolve_log_format(log_format)  # an unknown format is exit 2 before anything runs
    ctx.obj = AppState(
        config_path=Path(config) if config else None,
        debug=debug,
        log_format=log_format.lower() if log_format else None,
    )
    if metrics_file is not None:
        words = [ctx.invoked_subcommand] if ctx.invoked_subcommand else []
        if words and words[0] in sys.argv:  # add the sub-command of a group: `dims sync` -> dims-sync
            following = sys.argv[sys.argv.index(words[0]) + 1 : sys.argv.index(words[0]) + 2]
            words += [w for w in following if not w.startswith("-")]
        _batch_metrics.update(path=Path(metrics_file), job=metrics_job or "-".join(words) or "orion-etl")


# Set by the root callback when --metrics-file is given; written by main() once the exit code is known.
_batch_metrics: dict[str, object] = {}


def _write_batch_metrics(started: float, exit_code: int) -> None:
    if not _batch_metrics:
        return
    from orion_etl.jobs.ledger import write_batch_metrics

    try:
        write_batch_metrics(
            str(_batch_metrics["path"]), str(_batch_metrics["job"]), started=started, exit_code=exit_code
        )
    except OSError as exc:
        stderr_console().print(
            f"warning: could not write --metrics-file: {exc}", markup=False, highlight=False
        )


def main() -> None:
    """Console-script entry point: run the app; report errors on one line with a documented exit code."""
    started = time.time()
    code = 0
    raise_on_signals()  # SIGTERM unwinds like Ctrl-C: the ledger records the run as INTERRUPTED
    try:
        _run()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if code == ExitCode.INTERRUPTED and last_signal:  # typer turns any KeyboardInterrupt into exit 130
            code = 128 + last_signal[0]
            raise SystemExit(code) from exc
        raise
    finally:
        _write_batch_metrics(started, code)


# Options of the root command, accepted anywhere on the line: name -> takes a value.
_GLOBAL_OPTIONS = {
    "--config": True,
    "-c": True,
    "--log-format": True,
    "--metrics-file": True,
    "--metrics-job": True,
    "--debug": False,
}


def hoist_global_options(argv: list[str]) -> list[str]:
    """Move root options written after the sub-command in front of it (`dims sync --debug`).

    Click only accepts a group's options before its sub-command; people and units write them
    anywhere. Everything after `--` is left alone.
    """
    hoisted: list[str] = []
    rest: list[str] = []
    i = 0
    seen_command = False
    while i < len(argv):
        word = argv[i]
        if word == "--":
            rest.extend(argv[i:])
            break
        name = word.split("=", 1)[0]
        if name in _GLOBAL_OPTIONS and seen_command:
            if _GLOBAL_OPTIONS[name] and "=" not in word and i + 1 < len(argv):
                hoisted += [word, argv[i + 1]]
                i += 2
                continue
            hoisted.append(word)
        else:
            if not word.startswith("-") and not (i > 0 and _GLOBAL_OPTIONS.get(argv[i - 1], False)):
                seen_command = True
            rest.append(word)
        i += 1
    return hoisted + rest


def _json_requested(argv: list[str]) -> bool:
    for i, word in enumerate(argv):
        if word in ("--format", "-o") and i + 1 < len(argv) and argv[i + 1].lower() == "json":
            return True
        if word.lower() in ("--format=json", "-ojson"):
            return True
    return False


def _report(message: str, hint: str | None, code: int, as_json: bool) -> None:
    """The error on one stderr line (plus a hint); under --format json also a JSON document."""
    err = stderr_console()
    err.print(f"error: {message}", style="bold red", markup=False, highlight=False, soft_wrap=True)
    if hint:
        err.print(f"hint: {hint}", style="dim", markup=False, highlight=False, soft_wrap=True)
    if as_json:
        from orion_etl.cli.render import SCHEMA_VERSION

        doc = {"schema_version": SCHEMA_VERSION, "status": status_word(code),
               "exit_code": code, "error": message}  # fmt: skip
        sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")


def _run() -> None:
    argv = hoist_global_options(sys.argv[1:])
    debug = "--debug" in argv
    as_json = _json_requested(argv)
    try:
        app(args=argv, prog_name="orion-etl")
    except OrionError as exc:
        hint = redactor.redact(exc.hint) if exc.hint else None
        _report(redactor.redact(exc.message), hint, exit_code_for(exc), as_json)
        if debug:
            logging.getLogger("orion_etl").exception("details")
        sys.exit(exit_code_for(exc))
    except KeyboardInterrupt as exc:
        stderr_console().print("interrupted")
        sys.exit(exit_code_for(exc))
    except Exception as exc:  # the last line of defence: never a bare traceback for users
        if debug:
            raise
        message = redactor.redact(f"{type(exc).__name__}: {exc}".splitlines()[0])
        _report(f"unexpected {message} (run with --debug for details)", None, exit_code_for(exc), as_json)
        sys.exit(exit_code_for(exc))


if __name__ == "__main__":
    main()
