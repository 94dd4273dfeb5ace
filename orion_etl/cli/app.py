"""The `orion-etl` root command: global options, sub-command groups, one error boundary."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from orion_etl import __version__
from orion_etl.cli import aggregate as aggregate_cmd
from orion_etl.cli import cdc as cdc_cmd
from orion_etl.cli import config as config_cmd
from orion_etl.cli import connectors as connectors_cmd
from orion_etl.cli import db as db_cmd
from orion_etl.cli import demo as demo_cmd
from orion_etl.cli import dims as dims_cmd
from orion_etl.cli import dlq as dlq_cmd
from orion_etl.cli import dq as dq_cmd
from orion_etl.cli import jobs as jobs_cmd
from orion_etl.cli import stream as stream_cmd
from orion_etl.cli.context import AppState
from orion_etl.errors import ExitCode, OrionError
from orion_etl.logs import redactor
from orion_etl.signals import exit_code_of, last_signal, raise_on_signals

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


def _version(value: bool) -> None:
    if value:
        typer.echo(f"orion-etl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="TOML config file (default: $ORION_ETL_CONFIG, ./orion-etl.toml)."
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Debug logs and full tracebacks.")] = False,
    log_format: Annotated[
        str | None, typer.Option("--log-format", help="auto | rich | json | plain (default from config).")
    ] = None,
    metrics_file: Annotated[
        Path | None,
        typer.Option(
            "--metrics-file",
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
    ctx.obj = AppState(config_path=config, debug=debug, log_format=log_format)
    if metrics_file is not None:
        words = [ctx.invoked_subcommand] if ctx.invoked_subcommand else []
        if words and words[0] in sys.argv:  # add the sub-command of a group: `dims sync` -> dims-sync
            following = sys.argv[sys.argv.index(words[0]) + 1 : sys.argv.index(words[0]) + 2]
            words += [w for w in following if not w.startswith("-")]
        _batch_metrics.update(path=metrics_file, job=metrics_job or "-".join(words) or "orion-etl")


# Set by the root callback when --metrics-file is given; written by main() once the exit code is known.
_batch_metrics: dict[str, object] = {}


def _write_batch_metrics(started: float, exit_code: int) -> None:
    if not _batch_metrics:
        return
    from orion_etl.adapters.jobruns import finished_runs
    from orion_etl.adapters.metrics import record_batch_job

    try:
        record_batch_job(
            str(_batch_metrics["path"]),
            str(_batch_metrics["job"]),
            started=started,
            exit_code=exit_code,
            records=sum(run.processed for run in finished_runs),
            failed=sum(run.failed for run in finished_runs),
        )
    except OSError as exc:
        Console(stderr=True).print(f"warning: could not write --metrics-file: {escape(str(exc))}")


def main() -> None:
    """Console-script entry point: run the app; report errors on one line with a documented exit code."""
    started = time.time()
    code = 0
    raise_on_signals()  # SIGTERM unwinds like Ctrl-C: the ledger records the run as INTERRUPTED
    try:
        _run()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if code == 130 and last_signal:  # typer turns any KeyboardInterrupt into exit 130
            code = 128 + last_signal[0]
            raise SystemExit(code) from exc
        raise
    finally:
        _write_batch_metrics(started, code)


def _run() -> None:
    debug = "--debug" in sys.argv
    err = Console(stderr=True)
    try:
        app()
    except OrionError as exc:
        text = escape(redactor.redact(exc.message))
        err.print(f"[bold red]error:[/] {text}", highlight=False, soft_wrap=True)
        if exc.hint:
            err.print(f"[dim]hint: {escape(redactor.redact(exc.hint))}[/]", highlight=False, soft_wrap=True)
        if debug:
            logging.getLogger("orion_etl").exception("details")
        sys.exit(int(exc.exit_code))
    except KeyboardInterrupt as exc:
        err.print("interrupted")
        sys.exit(exit_code_of(exc))
    except Exception as exc:  # the last line of defence: never a bare traceback for users
        if debug:
            raise
        message = redactor.redact(f"{type(exc).__name__}: {exc}".splitlines()[0])
        err.print(
            f"[bold red]error:[/] unexpected {escape(message)} (run with --debug for details)",
            highlight=False,
        )
        sys.exit(int(ExitCode.ERROR))


if __name__ == "__main__":
    main()
