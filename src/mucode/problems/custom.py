"""User-written problems in a JSONL file, one object per line, in exactly the schema of `CustomRow`.

Unknown keys are errors, so a misspelt ``public_test`` fails loudly instead of leaving a problem untested.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from mucode.errors import DataError
from mucode.problems.datadir import PathArg
from mucode.problems.rows import read_rows
from mucode.types import Problem


class CustomRow(BaseModel):
    """One custom problem. ``setup_code`` runs after the candidate's code; ``prelude`` before it."""

    model_config = ConfigDict(strict=True, extra="forbid")

    task_id: str
    prompt: str
    entry_point: str | None
    public_tests: list[str]
    private_tests: list[str]
    setup_code: str = ""
    solution: str | None = None
    prelude: str = ""


def load_custom(path: PathArg) -> list[Problem]:
    """The problems of a custom JSONL file, in file order; blank lines are skipped."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"{file}: no such file")
    return [_problem(row, str(file)) for _, row in read_rows(file, CustomRow)]


def write_custom(problems: Iterable[Problem], path: PathArg) -> None:
    """Write ``problems`` in the custom schema, so that ``load_custom`` reads them back unchanged.

    Optional fields are written only when set, which keeps hand-edited files short. ``source`` is not
    written: on reading it becomes the file's path.
    """
    lines = [json.dumps(_row(problem), ensure_ascii=False) + "\n" for problem in problems]
    Path(path).expanduser().write_text("".join(lines), encoding="utf-8")


def _problem(row: CustomRow, source: str) -> Problem:
    return Problem(
        task_id=row.task_id,
        prompt=row.prompt,
        entry_point=row.entry_point,
        public_tests=tuple(row.public_tests),
        private_tests=tuple(row.private_tests),
        setup_code=row.setup_code,
        solution=row.solution,
        prelude=row.prelude,
        source=source,
    )


def _row(problem: Problem) -> dict[str, object]:
    row: dict[str, object] = {
        "task_id": problem.task_id,
        "prompt": problem.prompt,
        "entry_point": problem.entry_point,
        "public_tests": list(problem.public_tests),
        "private_tests": list(problem.private_tests),
    }
    if problem.setup_code:
        row["setup_code"] = problem.setup_code
    if problem.solution is not None:
        row["solution"] = problem.solution
    if problem.prelude:
        row["prelude"] = problem.prelude
    return row
