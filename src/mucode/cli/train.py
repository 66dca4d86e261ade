"""``mucode train``: a whole μCode experiment from a TOML config, resumable (see `mucode.pipeline`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from mucode.cli.console import console, err_console


def train_command(
    config: Annotated[Path, typer.Option(help="Experiment file (TOML), e.g. configs/quickstart-cpu.toml.")],
    out: Annotated[Path, typer.Option(help="Run folder; rerunning the same command resumes it.")],
) -> None:
    """Expert iteration: rollouts → verifier → relabel → SFT → export → evaluation, then a report."""
    from mucode.launch import main_process
    from mucode.pipeline import load_config, train

    experiment = load_config(config)
    summary = train(experiment, out, config_file=config, log=_log)
    if not main_process():  # under accelerate launch: the main process prints
        return
    console.print(summary_table(summary))
    if summary.get("report"):
        console.print(f"report: {summary['report']}")


def _log(line: str) -> None:
    err_console.print(Text.assemble(("mucode train ", "bold"), line), soft_wrap=True)


def summary_table(summary: Mapping[str, Any]) -> Table:
    """Generators as rows, evaluations as columns: success at the last turn and its 95% interval. When the run
    chose among several trained generators (on validation), the choice is marked."""
    generators = summary["generators"].values()
    names = list(dict.fromkeys(name for generator in generators for name in generator["evals"]))
    table = Table(title=f"mucode train: {summary['name']} ({summary['method']})", title_justify="left")
    table.add_column("generator", style="bold")
    for name in names:
        table.add_column(name, justify="right")
    for generator in generators:
        cells = []
        for name in names:
            result = generator["evals"].get(name)
            cells.append(f"{result['success']:.1%} [{result['ci95'][0]:.1%}, {result['ci95'][1]:.1%}]"
                         if result else "")
        mark = {True: " (selected)", False: " (not selected)"}.get(generator.get("selected"), "")
        table.add_row(generator["label"] + mark, *cells)
    return table
