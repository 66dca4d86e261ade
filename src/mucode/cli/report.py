"""``mucode report``: compare methods across ``mucode eval`` runs in one table, as Table 1 (see `mucode.report`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from mucode.cli.console import console
from mucode.report import ReportConfig, main_table, write_report


def report_command(
    run_dirs: Annotated[list[Path], typer.Argument(
        metavar="RUN_DIR", help="Folders searched recursively for `mucode eval` results.json files: one eval "
                                   "run, or a whole training pipeline.", show_default=False)],
    out: Annotated[Path, typer.Option(help="The Markdown report; report.html, report.json and the plots "
                                           "(report_*.png) are written beside it.")],
    html: Annotated[bool, typer.Option("--html/--no-html", help="Also write a self-contained HTML report "
                                                                 "(plots embedded).")] = True,
) -> None:
    """Compare methods × settings × datasets: success at the last turn with 95% CIs, runs, plots."""
    report = write_report(ReportConfig(run_dirs=tuple(str(path) for path in run_dirs), out=str(out), html=html))
    console.print(report_table(report))
    for note in report["notes"]:
        console.print(Text(f"note: {note}", style="dim"), soft_wrap=True)
    for kind, path in report["files"].items():
        console.print(Text(f"{kind}: {path}"), soft_wrap=True)


def report_table(report: Mapping[str, Any]) -> Table:
    """The main table as the report has it, without the links; two-line headers and cells keep it narrow."""
    _, rows = main_table(report)
    header = ["method", *(f"{column['dataset']}\n{column['setting']}" for column in report["columns"])]
    table = Table(title="mucode report: success at the last turn (%, 95% CI)", title_justify="left",
                  caption=f"{len(report['runs'])} runs", caption_justify="left")
    for index, name in enumerate(header):
        table.add_column(name, justify="left" if index == 0 else "right", style="bold" if index == 0 else None)
    for row in rows:
        table.add_row(*(Text("\n".join(text.strip() for text, _ in cell)) for cell in row))
    return table
