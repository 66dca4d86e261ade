"""``mucode solve``: multi-turn Best-of-N on your own problem, printed turn by turn (see `mucode.solve`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from mucode.cli.console import console
from mucode.cli.eval import SEARCH_OPTIONS, pop
from mucode.cli.options import derived
from mucode.env import CandidateResult
from mucode.records import SearchRecord
from mucode.search import EvalConfig, SearchConfig
from mucode.solve import run_solve, user_problem
from mucode.types import Problem

UNSOLVED_EXIT = 1


@derived((EvalConfig, ["model", "backend"]), (SearchConfig, SEARCH_OPTIONS),
         (EvalConfig, ["verifier", "verifier_dtype", "workers"]))
def solve_command(
    problem: Annotated[Path | None, typer.Option(help="A problems .jsonl file (README's custom schema).")] = None,
    task_id: Annotated[str | None, typer.Option("--id", help="Which problem of --problem (needed if it holds "
                                                        "several).")] = None,
    prompt: Annotated[str | None, typer.Option(help="The task, in words (with --tests).")] = None,
    tests: Annotated[Path | None, typer.Option(help="A file of tests for --prompt: one assert per line, all "
                                                    "public.")] = None,
    entry_point: Annotated[str | None, typer.Option(help="The function to write (guessed from the tests).")]
    = None,
    **options: Any,
) -> None:
    """Solve one problem by multi-turn Best-of-N; print each turn; exit 0 if solved, 1 if not."""
    task = user_problem(problem_file=problem, task_id=task_id, prompt=prompt, tests_file=tests, entry_point=entry_point)
    record = run_solve(task, SearchConfig(**pop(options, SEARCH_OPTIONS)), **options)
    print_transcript(task, record)
    if not record.success:
        raise typer.Exit(UNSOLVED_EXIT)


def print_transcript(problem: Problem, record: SearchRecord) -> None:
    """Each turn: the selected code, a verdict per test, the feedback the model got; then the outcome."""
    for turn in record.turns:
        chosen = turn.chosen
        passed = sum(candidate.public_passed for candidate in turn.candidates)
        console.rule(f"turn {turn.number}: candidate {turn.selected + 1} of {len(turn.candidates)} "
                     f"selected ({record.selector}; {passed} passed the public tests)")
        code = chosen.code
        console.print(Syntax(code, "python", line_numbers=True) if code is not None
                      else Text(f"no code ({chosen.extraction_note or 'nothing parseable'})", style="red"))
        console.print(verdict_table(problem, chosen))
        if not chosen.public_passed:
            console.print(Panel(Text(chosen.feedback), title="feedback to the model", title_align="left",
                                border_style="yellow"))
    console.rule("[green]solved[/]" if record.success else "[red]not solved[/]")
    if record.final_code is not None:
        console.print(Syntax(record.final_code, "python"))


def verdict_table(problem: Problem, candidate: CandidateResult) -> Table:
    table = Table(show_header=True, box=None, pad_edge=False)
    for name in ("test", "kind", "verdict"):
        table.add_column(name)
    rows = [(test, "public", verdict) for test, verdict in zip(problem.public_tests, candidate.public, strict=True)]
    rows += [(test, "private (hidden)", verdict) for test, verdict in zip(problem.private_tests, candidate.private,
                                                                          strict=True)]
    for test, kind, verdict in rows:
        colour = "green" if verdict.passed else "red"
        table.add_row(Text(test), kind, Text(verdict.status.value, style=colour))
    return table
