"""``mucode solve``: multi-turn Best-of-N on one problem of the user's own, with a transcript to print.

The problem is either one row of a custom problems file (README's schema) or a prompt plus a file of tests,
one assert per line, all public. The search is `mucode.search`'s, with one search.
"""

from __future__ import annotations

import ast
import builtins
import os
from collections.abc import Sequence
from pathlib import Path

from mucode.backends import DEFAULT_BACKEND, Backend, load_backend
from mucode.env import SandboxLike
from mucode.errors import ConfigError, DataError
from mucode.problems import load_custom, normalize_task_id
from mucode.records import SearchRecord
from mucode.rollout import open_sandbox
from mucode.search import Scorer, SearchConfig, check_scorer, load_scorer, search_steps
from mucode.types import Problem

PROMPT_TASK_ID = "prompt"


def user_problem(*, problem_file: str | os.PathLike[str] | None = None, task_id: str | None = None,
                 prompt: str | None = None, tests_file: str | os.PathLike[str] | None = None,
                 entry_point: str | None = None) -> Problem:
    """The problem to solve: ``problem_file`` (+ ``task_id`` when it holds several), or ``prompt`` + tests."""
    if (problem_file is None) == (prompt is None):
        raise ConfigError("give either --problem FILE or --prompt TEXT with --tests FILE")
    if problem_file is not None:
        if tests_file is not None or entry_point is not None:
            raise ConfigError("--tests and --entry-point go with --prompt; a --problem file has its own")
        return _problem_from_file(problem_file, task_id)
    if tests_file is None:
        raise ConfigError("--prompt needs --tests FILE (one assert per line)")
    if task_id is not None:
        raise ConfigError("--id selects a problem of a --problem file")
    tests = read_tests(tests_file)
    return Problem(task_id=PROMPT_TASK_ID, prompt=prompt or "", entry_point=entry_point or guess_entry_point(tests),
                   public_tests=tuple(tests), private_tests=(), source=str(tests_file))


def _problem_from_file(path: str | os.PathLike[str], task_id: str | None) -> Problem:
    problems = load_custom(path)
    by_id = {problem.task_id: problem for problem in problems}
    if task_id is not None:
        return by_id[normalize_task_id(task_id, by_id)]
    if len(problems) != 1:
        shown = ", ".join(list(by_id)[:5]) + (", ..." if len(by_id) > 5 else "")
        raise ConfigError(f"{path} holds {len(problems)} problems ({shown}); choose one with --id")
    return problems[0]


def read_tests(path: str | os.PathLike[str]) -> list[str]:
    """The tests of a tests file: one Python statement per line; blank lines and ``#`` comments skipped."""
    file = Path(path).expanduser()
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{file}: cannot read ({getattr(error, 'strerror', None) or error})") from None
    tests = []
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            ast.parse(line.strip())
        except SyntaxError as error:
            raise DataError(f"{file}:{number}: not a Python statement ({error.msg})") from None
        tests.append(line.strip())
    if not tests:
        raise DataError(f"{file}: no tests (one assert per line)")
    return tests


def guess_entry_point(tests: Sequence[str]) -> str | None:
    """The first non-builtin function the tests call (``assert add(1, 2) == 3`` → ``add``), if any.

    Only the ``testless`` template needs an entry point; a wrong guess there is fixed with --entry-point.
    """
    for test in tests:
        for node in ast.walk(ast.parse(test)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not hasattr(builtins,
                                                                                               node.func.id):
                return node.func.id
    return None


def solve(problem: Problem, backend: Backend, sandbox: SandboxLike, config: SearchConfig,
          scorer: Scorer | None = None) -> SearchRecord:
    """One multi-turn BoN search on ``problem``; returns its record (see `mucode.search.search_steps`)."""
    records = [record for finished in search_steps([(problem, 0)], backend, sandbox, config, scorer)
               for record in finished]
    return records[0]


def run_solve(problem: Problem, config: SearchConfig, *, model: str, backend: str = DEFAULT_BACKEND,
              verifier: str | None = None, verifier_dtype: str = "auto", workers: int | None = None
              ) -> SearchRecord:
    """What ``mucode solve`` does: load the verifier (scoring in ``verifier_dtype``), the model and a sandbox, then
    `solve`."""
    scorer = load_scorer(verifier, verifier_dtype) if verifier else None
    check_scorer(config.selector, scorer)  # before the model loads
    with load_backend(backend, model) as loaded, open_sandbox(workers) as sandbox:
        return solve(problem, loaded, sandbox, config, scorer)
