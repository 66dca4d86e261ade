"""The ``mucode`` command: a typer app whose commands parse options, call one library function, print.

Each command lives in its own module and is registered below; add a new one (rollout, eval, solve, verifier,
train, report) the same way. Errors that mucode raises on purpose are caught once, in `main`, and printed as
one red line: exit code 2 for bad input (ConfigError, DataError), 1 for infrastructure failures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer

from mucode import __version__
from mucode.cli import datasets, evaluate, export, models, report, rollout, solve, train, verifier
from mucode.cli import eval as eval_
from mucode.cli.console import print_error
from mucode.errors import ConfigError, DataError, MucodeError

INPUT_ERROR_EXIT = 2
FAILURE_EXIT = 1

app = typer.Typer(name="mucode", no_args_is_help=True, add_completion=False)
app.command("evaluate")(evaluate.evaluate_command)
app.command("datasets")(datasets.datasets_command)
app.command("rollout")(rollout.rollout_command)
app.command("eval")(eval_.eval_command)
app.command("solve")(solve.solve_command)
app.command("report")(report.report_command)
app.command("train")(train.train_command)
app.command("export")(export.export_command)
app.add_typer(models.app, name="models")
app.add_typer(verifier.app, name="verifier")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"mucode {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    """Multi-turn code generation from execution feedback (μCode)."""


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point; ``argv`` defaults to the command line."""
    try:
        app(args=list(argv) if argv is not None else None, prog_name="mucode")
    except MucodeError as error:
        print_error(str(error))
        code = INPUT_ERROR_EXIT if isinstance(error, ConfigError | DataError) else FAILURE_EXIT
        raise SystemExit(code) from None
