"""EvalPlus (MBPP+ and HumanEval+) release files as Problems.

Public tests are the ones a model may see: MBPP+ the assert shown in the task's prompt (the sanitized-MBPP
``test_list[0]``, docs/method.md §2.3), HumanEval+ the same docstring example as plain HumanEval. Private tests
are the other asserts (MBPP+ ``assertion``; HumanEval+ examples and the official ``check``) plus the EvalPlus
inputs: each private input test compares the candidate with the canonical solution on up to
``INPUTS_PER_TEST`` inputs, so a task has a few dozen snippets rather than one per input. Input tests are
self-contained (they carry the reference and ``plus_oracle``'s checker), because ``setup_code`` is shown in
prompts and must not leak the reference.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

from mucode.errors import DataError
from mucode.problems import plus_oracle
from mucode.problems.datadir import PathArg, resolve_data_file
from mucode.problems.fetch import fetch_release
from mucode.problems.humaneval import humaneval_examples, load_humaneval
from mucode.problems.plus_inputs import mbpp_plus_args, python_literal
from mucode.problems.rows import read_rows
from mucode.types import Problem

MBPP_PLUS_PATTERN = "MbppPlus*.jsonl"
HUMANEVAL_PLUS_PATTERN = "HumanEvalPlus*.jsonl"
#: Inputs per private input test. Smaller means more snippets; larger means more work per test timeout.
INPUTS_PER_TEST = 25
_MAX_TEST_CHARS = 20_000
#: Per-test timeout (seconds) under which every canonical solution passes, with margin: Mbpp/255 has one input
#: that takes 9 s (candidate + reference) on a 2-core machine. EvalPlus itself allows max(1 s, 4x the
#: reference's time) per input.
TEST_TIMEOUT = 20.0
#: Tasks whose inputs take over 2 s in all (candidate + reference; measured with the canonical solution, one
#: input per test, on a 2-core machine; single inputs up to 9 s for Mbpp/255). One input per test keeps each
#: test within a per-test timeout and lets the sandbox's program budget grow with the number of inputs.
SLOW_TASKS = frozenset({
    "Mbpp/84", "Mbpp/123", "Mbpp/255", "Mbpp/271", "Mbpp/300", "Mbpp/389", "Mbpp/392", "Mbpp/583", "Mbpp/589",
    "Mbpp/592", "Mbpp/599", "Mbpp/603",
    "HumanEval/15", "HumanEval/36", "HumanEval/59", "HumanEval/83", "HumanEval/130", "HumanEval/139",
})

# EvalPlus's special oracles (evalplus/eval/_special_oracle.py), keyed by entry point as there.
_MBPP_ORACLES = {
    **dict.fromkeys(("check_str", "text_match_three", "text_starta_endb"), "not_none"),
    **dict.fromkeys(("similar_elements", "find_char_long", "common_in_nested_lists", "extract_singly",
                     "larg_nnum", "intersection_array", "find_dissimilar", "Diff"), "set_eq"),
    "surface_Area": "surface_area",
    "digit_distance_nums": "digit_distance",
}
_HUMANEVAL_ORACLES = {"find_zero": "poly_root"}


class _PlusRow(BaseModel):
    model_config = ConfigDict(strict=True)

    task_id: str
    prompt: str
    entry_point: str
    canonical_solution: str
    base_input: list[list[Any]]
    plus_input: list[list[Any]]
    atol: float

    @field_validator("plus_input", mode="before")
    @classmethod
    def _empty_object_means_none(cls, value: object) -> object:
        """MBPP+ v0.2.0 stores Mbpp/793's plus inputs as ``{}``."""
        return [] if value == {} else value


class MbppPlusRow(_PlusRow):
    assertion: str


class HumanEvalPlusRow(_PlusRow):
    test: str


def load_mbpp_plus(path: PathArg | None = None) -> list[Problem]:
    """MBPP+ (378 tasks in v0.2.0). ``path``: the file or its folder; default the newest in the data dir, else
    v0.2.0 from the user cache, downloaded on first use (`mucode.problems.fetch`)."""
    file = evalplus_file("mbpp+", path)
    return [mbpp_plus_problem(row) for _, row in read_rows(file, MbppPlusRow)]


def load_humaneval_plus(path: PathArg | None = None) -> list[Problem]:
    """HumanEval+ (164 tasks). ``path``: the file or its folder; default the newest in the data dir, else
    v0.1.10 from the user cache, downloaded on first use (`mucode.problems.fetch`)."""
    file = evalplus_file("humaneval+", path)
    rows = [row for _, row in read_rows(file, HumanEvalPlusRow)]
    fallback = _PlainHumanEvalPublic()
    return [humaneval_plus_problem(row, fallback) for row in rows]


def evalplus_file(dataset: str, path: PathArg | None = None) -> Path:
    """The release file of ``dataset`` ("mbpp+" or "humaneval+"): ``path`` (the file or its folder), else the
    newest in the data folder, else the pinned release in the user cache, downloaded there on first use."""
    return resolve_data_file(evalplus_pattern(dataset), path, fallback=lambda: fetch_release(dataset))


def evalplus_pattern(dataset: str) -> str:
    return MBPP_PLUS_PATTERN if dataset == "mbpp+" else HUMANEVAL_PLUS_PATTERN


def mbpp_plus_problem(row: MbppPlusRow) -> Problem:
    """Prompt = the task text; public = the prompt's assert; ``import math`` in setup when asserts use it."""
    text, shown = _split_mbpp_plus_prompt(row.prompt)
    imports, asserts = _split_assertion(row.assertion, row.task_id)
    if "math." in row.assertion + (shown or "") and "import math" not in imports:
        imports.append("import math")  # Mbpp/120, 293, 742 rely on the solution importing it
    public = shown or asserts[0]
    inputs = mbpp_plus_args(row.task_id, row.base_input + row.plus_input)
    oracle = _MBPP_ORACLES.get(row.entry_point, "")
    return Problem(
        task_id=row.task_id,
        prompt=text,
        entry_point=row.entry_point,
        public_tests=(public,),
        private_tests=(*(test for test in asserts if test != public),
                       *input_tests(row.canonical_solution, row.entry_point, inputs, row.atol, oracle,
                                    per_test=_inputs_per_test(row.task_id))),
        setup_code="\n".join(imports),
        solution=row.canonical_solution,
        source="mbpp+",
    )


def humaneval_plus_problem(row: HumanEvalPlusRow, fallback: Callable[[str], str]) -> Problem:
    """The plain-HumanEval split of the examples, then the official check, then the EvalPlus inputs.

    ``fallback(task_id)`` gives the public test of a task whose docstring has no usable example.
    """
    examples = humaneval_examples(row.prompt, row.entry_point)
    public, other_examples = (examples[0], examples[1:]) if examples else (fallback(row.task_id), [])
    prelude = _prelude(row.prompt, row.entry_point)
    reference = row.prompt + row.canonical_solution
    oracle = _HUMANEVAL_ORACLES.get(row.entry_point, "")
    return Problem(
        task_id=row.task_id,
        prompt=row.prompt,
        entry_point=row.entry_point,
        public_tests=(public,),
        private_tests=(*other_examples, f"{row.test}\ncheck({row.entry_point})\n",
                       *input_tests(reference, row.entry_point, row.base_input + row.plus_input, row.atol,
                                    oracle, per_test=_inputs_per_test(row.task_id))),
        solution=reference[len(prelude):],
        prelude=prelude,
        source="humaneval+",
    )


def input_tests(reference: str, entry_point: str, inputs: list[Any], atol: float, oracle: str, *,
                per_test: int = INPUTS_PER_TEST) -> list[str]:
    """Test snippets that each check ``entry_point`` against ``reference`` on up to ``per_test`` inputs."""
    if not entry_point.isidentifier():
        raise DataError(f"entry point {entry_point!r} is not a Python identifier")
    head = f"{_oracle_source()}\n_mucode_reference = {reference!r}\n"
    call = (f"_mucode_check({entry_point}, _mucode_reference, {entry_point!r}, _mucode_inputs, "
            f"atol={atol!r}, oracle={oracle!r})\n")
    return [f"{head}_mucode_inputs = {chunk}\n{call}" for chunk in _literal_chunks(inputs, per_test)]


def _inputs_per_test(task_id: str) -> int:
    return 1 if task_id in SLOW_TASKS else INPUTS_PER_TEST


@functools.cache
def _oracle_source() -> str:
    """``plus_oracle``'s code without docstrings and comments: it is repeated in every input test."""
    tree = ast.parse(Path(plus_oracle.__file__).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and len(body) > 1 and _is_docstring(body[0]):
            del body[0]
    return ast.unparse(tree) + "\n"


def _is_docstring(statement: ast.stmt) -> bool:
    return (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)
            and isinstance(statement.value.value, str))


def _literal_chunks(inputs: list[Any], per_test: int) -> Iterator[str]:
    """List literals of consecutive inputs, at most ``per_test`` each and about _MAX_TEST_CHARS long."""
    chunk: list[str] = []
    size = 0
    for args in inputs:
        literal = python_literal(list(args))
        if chunk and (len(chunk) == per_test or size + len(literal) > _MAX_TEST_CHARS):
            yield "[" + ", ".join(chunk) + "]"
            chunk, size = [], 0
        chunk.append(literal)
        size += len(literal)
    if chunk:
        yield "[" + ", ".join(chunk) + "]"


def _split_mbpp_plus_prompt(prompt: str) -> tuple[str, str | None]:
    """The task text and the assert an MBPP+ prompt (a docstring: text, then one assert) shows."""
    body = prompt.strip()
    if body.startswith('"""') and body.endswith('"""'):
        body = body[3:-3].strip()
    lines = body.splitlines()
    shown = [line.strip() for line in lines if line.startswith("assert ")]
    text = "\n".join(line for line in lines if not line.startswith("assert ")).strip()
    return text, (shown[0] if shown else None)


def _split_assertion(assertion: str, task_id: str) -> tuple[list[str], list[str]]:
    """The import statements and the assert statements of an MBPP+ ``assertion`` field, as source."""
    try:
        body = ast.parse(assertion).body
    except SyntaxError as error:
        raise DataError(f"{task_id}: field 'assertion' is not valid Python ({error.msg})") from None
    imports = [ast.get_source_segment(assertion, node) or "" for node in body
               if isinstance(node, ast.Import | ast.ImportFrom)]
    asserts = [ast.get_source_segment(assertion, node) or "" for node in body if isinstance(node, ast.Assert)]
    if not asserts:
        raise DataError(f"{task_id}: field 'assertion' has no assert")
    return imports, asserts


def _prelude(prompt: str, entry_point: str) -> str:
    """The prompt's text before ``def <entry_point>``: imports and helpers the candidate's code may need."""
    try:
        body = ast.parse(prompt).body
    except SyntaxError:
        return ""
    lines = [node.lineno for node in body if isinstance(node, ast.FunctionDef) and node.name == entry_point]
    if not lines:
        return ""
    text = "".join(prompt.splitlines(keepends=True)[: lines[-1] - 1])
    return text.rstrip() + "\n" if text.strip() else ""


class _PlainHumanEvalPublic:
    """Public test of the plain HumanEval loader for a task id; loaded on the first task without examples."""

    def __init__(self) -> None:
        self._public: dict[str, str] | None = None

    def __call__(self, task_id: str) -> str:
        if self._public is None:
            self._public = {problem.task_id: problem.public_tests[0] for problem in load_humaneval()}
        if task_id not in self._public:
            raise DataError(f"{task_id}: no docstring example and no such task in plain HumanEval")
        return self._public[task_id]
