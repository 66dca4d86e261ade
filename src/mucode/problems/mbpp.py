"""MBPP (full, 974 tasks) as Problems, under the two public/private policies of the reference code.

Policy "eval" (MBPPWrapperEnv): the first assert is public, the other two and the challenge asserts are
private. Policy "train" (MBPPTrainWrapperEnv): all three asserts are public, the challenge asserts private.
Each challenge assert is its own snippet, so it really runs; the reference code appended the list's repr,
a no-op expression (docs/method.md §2.3).
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from mucode.errors import DataError
from mucode.problems.datadir import BUNDLED_DIR, PathArg, resolve_data_file
from mucode.problems.options import check_choice
from mucode.problems.rows import read_rows, validate_row
from mucode.types import Problem

MBPP_FILE = "mbpp.jsonl"
#: The original-revision mbpp.jsonl, gzipped, shipped in the package (licence: bundled/MBPP-LICENSE.md).
BUNDLED_MBPP = BUNDLED_DIR / "mbpp.jsonl.gz"
HUB_PREFIX = "hf:"
HUB_NAME = "google-research-datasets/mbpp"
_HUB_HINT = f", or use --dataset {HUB_PREFIX}{HUB_NAME} when online (needs `pip install mucode[hub]`)"

#: task_id ranges: google-research's README (1-10 few-shot, 11-510 eval), the Hugging Face split for the rest.
MBPP_SPLITS: dict[str, range | None] = {
    "prompt": range(1, 11),
    "test": range(11, 511),
    "validation": range(511, 601),
    "train": range(601, 975),
    "all": None,
}
MBPP_POLICIES = ("eval", "train")

#: Tasks whose reference solution fails its own asserts in the original revision of mbpp.jsonl (the one
#: shipped in shared/data). The later revision on the hub fixed all three; see docs/datasets.md.
MBPP_KNOWN_BAD = frozenset({"341", "596", "642"})


class MbppRow(BaseModel):
    """One line of mbpp.jsonl (or one hub row; the hub's extra columns are ignored)."""

    model_config = ConfigDict(strict=True)

    task_id: int
    text: str
    code: str
    test_setup_code: str
    test_list: list[str] = Field(min_length=1)
    challenge_test_list: list[str]


def load_mbpp(split: str = "test", policy: str = "eval", path: PathArg | None = None) -> list[Problem]:
    """MBPP problems of one split, in task_id order.

    ``path``: the mbpp.jsonl file or its folder, or ``"hf:<hub name>"`` to read the hub's "full" config.
    With no path and no data folder holding mbpp.jsonl, the copy bundled in the package is read (the same
    original revision, so the same problems and the same `dataset_fingerprint`).
    """
    check_choice("split", split, MBPP_SPLITS)
    check_choice("policy", policy, MBPP_POLICIES)
    ids = MBPP_SPLITS[split]
    return [mbpp_problem(row, policy) for row in _read(path) if ids is None or row.task_id in ids]


def mbpp_problem(row: MbppRow, policy: str) -> Problem:
    """The Problem for one row under ``policy`` ("eval" or "train")."""
    asserts, challenge = tuple(row.test_list), tuple(row.challenge_test_list)
    public, private = (asserts[:1], asserts[1:] + challenge) if policy == "eval" else (asserts, challenge)
    return Problem(
        task_id=str(row.task_id),
        prompt=row.text,
        entry_point=mbpp_entry_point(row.code, asserts[0]),
        public_tests=public,
        private_tests=private,
        setup_code=row.test_setup_code,
        solution=row.code,
        source="mbpp",
    )


def mbpp_entry_point(code: str, test: str) -> str | None:
    """The function ``test`` exercises: the first called name that ``code`` defines, else the first one.

    Preferring defined names skips wrappers such as ``set(...)`` or ``math.isclose(...)`` around the call.
    """
    try:
        called = [node.func.id for node in ast.walk(ast.parse(test))
                  if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)]
    except SyntaxError:
        return None
    defined = _defined_names(code)
    return next((name for name in called if name in defined), called[0] if called else None)


def _defined_names(code: str) -> set[str]:
    try:
        with warnings.catch_warnings():  # old reference code has invalid escapes such as "\d"
            warnings.simplefilter("ignore", SyntaxWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            body = ast.parse(code).body
    except SyntaxError:
        return set()
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return {node.name for node in body if isinstance(node, kinds)}


def _read(path: PathArg | None) -> list[MbppRow]:
    if isinstance(path, str) and path.startswith(HUB_PREFIX):
        return _read_hub(path.removeprefix(HUB_PREFIX) or HUB_NAME)
    file = mbpp_file(path)
    return [row for _, row in read_rows(file, MbppRow)]


def mbpp_file(path: PathArg | None = None) -> Path:
    """The mbpp.jsonl that `load_mbpp` reads for ``path``: explicit, data folder, else the bundled copy."""
    return resolve_data_file(MBPP_FILE, path, hub_hint=_HUB_HINT, fallback=lambda: BUNDLED_MBPP)


def _read_hub(name: str) -> list[MbppRow]:
    """All rows of the hub dataset's "full" config (every split), validated like the local file.

    Note: the hub holds the later revision, in which tasks 341, 596 and 642 pass.
    """
    try:
        import datasets
    except ImportError as error:
        message = f"{HUB_PREFIX}{name} needs the `datasets` package: pip install 'mucode[hub]'"
        raise DataError(message) from error
    try:
        splits = datasets.load_dataset(name, "full")
    except Exception as error:  # network, auth and not-found errors have no common base class
        reason = next(iter(str(error).splitlines()), "")
        message = f"{HUB_PREFIX}{name}: cannot load from the hub ({type(error).__name__}: {reason})"
        raise DataError(message) from error
    rows = [validate_row(MbppRow, dict(record), f"{HUB_PREFIX}{name} split {split!r} row {index}")
            for split, table in splits.items() for index, record in enumerate(table)]
    return sorted(rows, key=lambda row: row.task_id)
