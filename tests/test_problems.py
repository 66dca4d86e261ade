"""Loaders: data-dir resolution, MBPP splits and policies, custom files, EvalPlus mapping, the registry.

Real data comes from the shared data folder found the same way the loaders find it; nothing here runs
benchmark code (tests/test_problems_reference.py does, in the sandbox).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import http.server
import importlib.machinery
import json
import math
import shutil
import socket
import subprocess
import sys
import threading
import types
import zipfile
from pathlib import Path

import pytest

from mucode.errors import ConfigError, DataError
from mucode.problems import (
    BUNDLED_DIR,
    DATA_DIR_ENV,
    MBPP_KNOWN_BAD,
    datadir,
    dataset_fingerprint,
    dataset_source,
    fetch,
    fetch_release,
    find_data_dir,
    load_custom,
    load_humaneval_plus,
    load_mbpp,
    load_mbpp_plus,
    load_problems,
    normalize_task_id,
    resolve_data_file,
    write_custom,
)
from mucode.problems.evalplus import input_tests
from mucode.problems.mbpp import BUNDLED_MBPP
from mucode.problems.plus_inputs import mbpp_plus_args, python_literal
from mucode.types import Problem

MBPP_ROW = {"text": "Write a function to double x.", "code": "def double(x):\n    return 2 * x",
            "task_id": 11, "test_setup_code": "",
            "test_list": ["assert double(1) == 2", "assert double(2) == 4"],
            "challenge_test_list": ["assert double(-1) == -2"]}
CUSTOM_ROW = {"task_id": "t1", "prompt": "Double x.", "entry_point": "double",
              "public_tests": ["assert double(1) == 2"], "private_tests": ["assert double(3) == 6"]}


@pytest.fixture(scope="module")
def data_dir() -> Path:
    folder = find_data_dir()
    if folder is None:
        pytest.skip(f"no benchmark data: set {DATA_DIR_ENV} or check out next to shared/data")
    return folder


@pytest.fixture(scope="module")
def mbpp_all(data_dir: Path) -> dict[str, Problem]:
    return {problem.task_id: problem for problem in load_mbpp("all", path=data_dir)}


@pytest.fixture(scope="module")
def mbpp_plus(data_dir: Path) -> list[Problem]:
    return load_mbpp_plus(data_dir)


@pytest.fixture(scope="module")
def humaneval_plus(data_dir: Path) -> list[Problem]:
    return load_humaneval_plus(data_dir)


def write_lines(path: Path, *lines: object) -> Path:
    """Each item as one line: dicts as JSON, strings verbatim."""
    path.write_text("".join((json.dumps(line) if isinstance(line, dict) else line) + "\n" for line in lines))
    return path


def error_of(call, *args, **kwargs) -> str:
    with pytest.raises(DataError) as caught:
        call(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------------------------ data dir


def test_data_dir_found_by_walking_up_from_the_checkout(data_dir: Path) -> None:
    assert (data_dir / "mbpp.jsonl").is_file()
    assert resolve_data_file("mbpp.jsonl") == data_dir / "mbpp.jsonl"


def test_explicit_path_beats_env_var_which_beats_the_walk(tmp_path: Path, monkeypatch) -> None:
    env_dir, explicit_dir = tmp_path / "env", tmp_path / "explicit"
    for folder, task in ((env_dir, 11), (explicit_dir, 12)):
        folder.mkdir()
        write_lines(folder / "mbpp.jsonl", {**MBPP_ROW, "task_id": task})
    monkeypatch.setenv(DATA_DIR_ENV, str(env_dir))
    assert [p.task_id for p in load_mbpp()] == ["11"]
    assert [p.task_id for p in load_mbpp(path=explicit_dir)] == ["12"]
    assert [p.task_id for p in load_mbpp(path=explicit_dir / "mbpp.jsonl")] == ["12"]


def test_walk_starts_at_the_working_directory(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "shared" / "data").mkdir(parents=True)
    write_lines(tmp_path / "shared" / "data" / "mbpp.jsonl", MBPP_ROW)
    (tmp_path / "repo" / "sub").mkdir(parents=True)
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.chdir(tmp_path / "repo" / "sub")
    assert find_data_dir() == tmp_path / "shared" / "data"


def test_missing_files_name_every_way_to_provide_them(tmp_path: Path, monkeypatch) -> None:
    message = error_of(load_mbpp, path=tmp_path)  # an explicit folder never falls back to the bundled copy
    assert message.startswith(f"mbpp.jsonl not found: in {tmp_path};")
    assert DATA_DIR_ENV in message and "hf:google-research-datasets/mbpp" in message
    assert "does not exist" in error_of(load_mbpp_plus, tmp_path / "nowhere")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "typo"))
    assert error_of(find_data_dir) == f"{DATA_DIR_ENV}={tmp_path / 'typo'} is not a folder"


def test_a_glob_picks_the_highest_version(tmp_path: Path) -> None:
    for name in ("MbppPlus-v0.2.0.jsonl", "MbppPlus-v0.10.0.jsonl", "MbppPlus.jsonl"):
        (tmp_path / name).write_text("")
    assert resolve_data_file("MbppPlus*.jsonl", tmp_path).name == "MbppPlus-v0.10.0.jsonl"


# ---------------------------------------------------------------------------------------------- MBPP


@pytest.mark.parametrize(("split", "count", "first", "last"), [
    ("test", 500, "11", "510"), ("validation", 90, "511", "600"), ("train", 374, "601", "974"),
    ("prompt", 10, "1", "10"), ("all", 974, "1", "974"),
])
def test_mbpp_splits(data_dir: Path, split: str, count: int, first: str, last: str) -> None:
    problems = load_mbpp(split, path=data_dir)
    assert (len(problems), problems[0].task_id, problems[-1].task_id) == (count, first, last)


def test_mbpp_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="unknown split 'dev'; choose one of: prompt, test, validation"):
        load_mbpp("dev")
    with pytest.raises(ConfigError, match="unknown policy 'greedy'"):
        load_mbpp(policy="greedy")


def test_mbpp_eval_policy_runs_each_challenge_assert_as_its_own_snippet(data_dir: Path) -> None:
    raw = json.loads((data_dir / "mbpp.jsonl").read_text().splitlines()[10])
    problem = load_mbpp("test", "eval", path=data_dir)[0]
    assert raw["task_id"] == 11 and raw["challenge_test_list"]
    assert problem.public_tests == tuple(raw["test_list"][:1])
    assert problem.private_tests == tuple(raw["test_list"][1:] + raw["challenge_test_list"])
    for snippet in problem.private_tests:
        compile(snippet, "test.py", "exec")
        assert snippet.startswith("assert ")  # not the reference code's list-literal no-op


def test_mbpp_train_policy_makes_all_asserts_public(data_dir: Path) -> None:
    problem = load_mbpp("test", "train", path=data_dir)[0]
    assert len(problem.public_tests) == 3
    assert problem.private_tests == ('assert remove_Occ("hellolloll","l") == "helollol"',
                                     'assert remove_Occ("","l") == ""')


def test_mbpp_fields(mbpp_all: dict[str, Problem]) -> None:
    problem = mbpp_all["11"]
    assert problem.prompt.startswith("Write a python function to remove first and last occurrence")
    assert problem.solution.startswith("def remove_Occ(s,ch)")
    assert (problem.source, problem.prelude) == ("mbpp", "")
    assert [tid for tid, p in mbpp_all.items() if p.setup_code] == ["367", "927"]
    assert mbpp_all["367"].setup_code.startswith("root = Node(1)")
    assert {"341", "596", "642"} == MBPP_KNOWN_BAD


@pytest.mark.parametrize(("task_id", "entry_point"), [
    ("11", "remove_Occ"), ("367", "is_tree_balanced"), ("769", "Diff"), ("912", "lobb_num"),
    ("927", "max_height"),
])
def test_mbpp_entry_point_skips_wrappers(mbpp_all: dict[str, Problem], task_id: str,
                                         entry_point: str) -> None:
    assert mbpp_all[task_id].entry_point == entry_point


@pytest.mark.parametrize(("line", "message"), [
    ('{"task_id": 11,',
     "{file}:2: invalid JSON (Expecting property name enclosed in double quotes at column 16)"),
    ("[1, 2]", "{file}:2: expected a JSON object, got list"),
    (json.dumps({k: v for k, v in MBPP_ROW.items() if k != "code"}), "{file}:2: field 'code' is missing"),
    (json.dumps({**MBPP_ROW, "task_id": "12"}), "{file}:2: field 'task_id' must be an integer"),
    (json.dumps({**MBPP_ROW, "task_id": 12, "test_list": "assert f()"}),
     "{file}:2: field 'test_list' must be a list of strings"),
    (json.dumps({**MBPP_ROW, "task_id": 12, "test_list": []}),
     "{file}:2: field 'test_list' must not be empty"),
    (json.dumps(MBPP_ROW), "{file}:2: duplicate task_id '11' (first on line 1)"),
])
def test_malformed_mbpp_rows(tmp_path: Path, line: str, message: str) -> None:
    file = write_lines(tmp_path / "mbpp.jsonl", MBPP_ROW, line)
    assert error_of(load_mbpp, "all", path=file) == message.format(file=file)


def test_empty_file(tmp_path: Path) -> None:
    file = write_lines(tmp_path / "mbpp.jsonl", "", "  ")
    assert error_of(load_mbpp, path=file) == f"{file}: no problems (the file is empty)"


def fake_datasets(monkeypatch, load) -> list[tuple]:
    """Install a `datasets` module whose load_dataset returns ``load()``; returns the recorded calls."""
    calls: list[tuple] = []

    def load_dataset(*args):
        calls.append(args)
        return load()

    module = types.ModuleType("datasets")
    module.__spec__ = importlib.machinery.ModuleSpec("datasets", None)
    module.load_dataset = load_dataset
    monkeypatch.setitem(sys.modules, "datasets", module)
    return calls


def test_mbpp_hub_rows_map_like_local_rows(monkeypatch) -> None:
    rows = {"test": [{**MBPP_ROW, "task_id": 12}], "prompt": [{**MBPP_ROW, "task_id": 1, "source": "x"}]}
    calls = fake_datasets(monkeypatch, lambda: rows)
    problems = load_mbpp("all", path="hf:google-research-datasets/mbpp")
    assert calls == [("google-research-datasets/mbpp", "full")]
    assert [p.task_id for p in problems] == ["1", "12"]
    assert problems[1].private_tests == ("assert double(2) == 4", "assert double(-1) == -2")
    assert load_problems("hf:google-research-datasets/mbpp", "prompt")[0].task_id == "1"


def test_mbpp_without_local_data_reads_the_bundled_copy_not_the_hub(monkeypatch) -> None:
    calls = fake_datasets(monkeypatch, lambda: {"test": [MBPP_ROW]})
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(datadir, "find_data_dir", lambda: None)
    assert len(load_mbpp()) == 500 and calls == []


def test_mbpp_hub_errors_are_data_errors(monkeypatch) -> None:
    def offline():
        raise ConnectionError("Couldn't reach the hub\nretry later")

    fake_datasets(monkeypatch, offline)
    assert error_of(load_mbpp, path="hf:x/mbpp") == (
        "hf:x/mbpp: cannot load from the hub (ConnectionError: Couldn't reach the hub)")
    fake_datasets(monkeypatch, lambda: {"train": [{**MBPP_ROW, "code": None}]})
    assert error_of(load_mbpp, path="hf:x/mbpp") == (
        "hf:x/mbpp split 'train' row 0: field 'code' must be a string")


# -------------------------------------------------------------------------------------------- custom


def test_custom_round_trip(tmp_path: Path, mbpp_all: dict[str, Problem]) -> None:
    extra = Problem("extra", "Say hi.", None, ("assert hi() == 'hi'",), (), setup_code="x = 1", solution="",
                    prelude="import os\n", source="elsewhere")
    problems = [mbpp_all["367"], mbpp_all["11"], extra]
    file = tmp_path / "problems.jsonl"
    write_custom(problems, file)
    loaded = load_custom(file)
    assert loaded == [Problem(**{**_fields(p), "source": str(file)}) for p in problems]
    assert "source" not in file.read_text()


def _fields(problem: Problem) -> dict:
    return {name: getattr(problem, name) for name in Problem.__dataclass_fields__}


def test_custom_minimal_rows_and_blank_lines(tmp_path: Path) -> None:
    file = write_lines(tmp_path / "p.jsonl", "", CUSTOM_ROW, "   ", {**CUSTOM_ROW, "task_id": "t2",
                                                                    "entry_point": None})
    problems = load_custom(file)
    assert [(p.task_id, p.entry_point, p.setup_code, p.solution, p.prelude) for p in problems] == [
        ("t1", "double", "", None, ""), ("t2", None, "", None, "")]


@pytest.mark.parametrize(("row", "message"), [
    ({**CUSTOM_ROW, "public_tests": "assert double(1) == 2"},
     "field 'public_tests' must be a list of strings"),
    ({**CUSTOM_ROW, "private_tests": ["ok", 3]}, "field 'private_tests' must be a list of strings"),
    ({**CUSTOM_ROW, "task_id": 7}, "field 'task_id' must be a string"),
    ({**CUSTOM_ROW, "entry_point": 1}, "field 'entry_point' must be a string or null"),
    ({k: v for k, v in CUSTOM_ROW.items() if k != "entry_point"}, "field 'entry_point' is missing"),
    ({**CUSTOM_ROW, "public_test": []}, "unknown field 'public_test'"),
    ({**CUSTOM_ROW, "solution": ["def f(): pass"]}, "field 'solution' must be a string or null"),
])
def test_custom_schema_errors(tmp_path: Path, row: dict, message: str) -> None:
    file = write_lines(tmp_path / "p.jsonl", {**CUSTOM_ROW, "task_id": "t0"}, "", row)
    assert error_of(load_custom, file) == f"{file}:3: {message}"


def test_custom_file_errors(tmp_path: Path) -> None:
    file = write_lines(tmp_path / "p.jsonl", CUSTOM_ROW, CUSTOM_ROW)
    assert error_of(load_custom, file) == f"{file}:2: duplicate task_id 't1' (first on line 1)"
    assert error_of(load_custom, tmp_path / "none.jsonl") == f"{tmp_path / 'none.jsonl'}: no such file"
    empty = write_lines(tmp_path / "empty.jsonl")
    assert error_of(load_custom, empty) == f"{empty}: no problems (the file is empty)"


# ------------------------------------------------------------------------------------------ EvalPlus


def test_evalplus_counts_and_ids(mbpp_plus: list[Problem], humaneval_plus: list[Problem]) -> None:
    assert len(mbpp_plus) == 378 and mbpp_plus[0].task_id == "Mbpp/2"
    assert len(humaneval_plus) == 164 and humaneval_plus[0].task_id == "HumanEval/0"
    assert {p.source for p in mbpp_plus} == {"mbpp+"} and {p.source for p in humaneval_plus} == {"humaneval+"}


@pytest.mark.filterwarnings("ignore::SyntaxWarning", "ignore::DeprecationWarning")  # "\d" in solutions
def test_every_evalplus_snippet_compiles(mbpp_plus: list[Problem], humaneval_plus: list[Problem]) -> None:
    for problem in mbpp_plus + humaneval_plus:
        assert len(problem.public_tests) == 1 and problem.private_tests
        for code in (problem.prelude, problem.solution, problem.setup_code, *problem.all_tests):
            compile(code, problem.task_id, "exec")


def test_mbpp_plus_public_test_is_the_one_its_prompt_shows(mbpp_plus: list[Problem]) -> None:
    problem = mbpp_plus[0]
    assert problem.prompt == "Write a function to find the shared elements from the given two lists."
    shown = "assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))"
    assert problem.public_tests == (shown,)
    assert problem.private_tests[0] == "assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)"
    assert "oracle='set_eq'" in problem.private_tests[-1]
    assert "_mucode_reference" not in problem.setup_code + problem.prompt + problem.public_tests[0]


def test_mbpp_plus_asserts_that_use_math_get_it_imported(mbpp_plus: list[Problem]) -> None:
    by_id = {p.task_id: p for p in mbpp_plus}
    assert by_id["Mbpp/120"].setup_code == "import math"  # its assertion forgets the import
    assert by_id["Mbpp/82"].setup_code == "import math"
    assert by_id["Mbpp/2"].setup_code == ""
    assert sum(bool(p.setup_code) for p in mbpp_plus) == 13  # 10 with the import, 3 without


def test_humaneval_plus_mapping(data_dir: Path, humaneval_plus: list[Problem]) -> None:
    from mucode.problems.humaneval import load_humaneval

    plain = {p.task_id: p for p in load_humaneval()}
    lines = next(data_dir.glob("HumanEvalPlus*.jsonl")).read_text().splitlines()
    rows = {row["task_id"]: row for row in map(json.loads, lines)}
    for problem in humaneval_plus:
        row = rows[problem.task_id]
        assert problem.public_tests == plain[problem.task_id].public_tests
        assert problem.prelude + problem.solution == row["prompt"] + row["canonical_solution"]
        assert f"{row['test']}\ncheck({row['entry_point']})\n" in problem.private_tests
    find_zero = humaneval_plus[32]
    assert find_zero.entry_point == "find_zero" and "oracle='poly_root'" in find_zero.private_tests[-1]


def test_input_tests_cover_every_input_in_chunks() -> None:
    inputs = [[n] for n in range(60)]
    tests = input_tests("def f(x):\n    return 2 * x\n", "f", inputs, 0, "", per_test=25)
    assert len(tests) == 3 and all("_mucode_inputs = [[" in test for test in tests)
    assert tests[2].count("], [") == 9  # 10 inputs left for the last chunk


def run_input_tests(candidate_source: str, tests: list[str]) -> None:
    """Run snippets in one namespace as the sandbox does; only synthetic code, never benchmark code."""
    namespace: dict = {}
    exec(candidate_source, namespace)
    for test in tests:
        exec(compile(test, "test.py", "exec"), namespace)


@pytest.mark.parametrize(("reference", "candidate", "inputs", "atol", "oracle", "passes"), [
    ("def f(x): return 2 * x", "def f(x): return x + x", [[1], [2.5]], 0, "", True),
    ("def f(x): return 2 * x", "def f(x): return 2 * x + 1", [[1]], 0, "", False),
    ("def f(x): return x / 3", "def f(x): return x * (1 / 3)", [[1.0], [7.0]], 0, "", True),  # atol 1e-6
    ("def f(x): return x / 3", "def f(x): return x / 3 + 1e-3", [[1.0]], 1e-4, "", False),
    ("def f(x): return 1.0", "def f(x): return 1", [[0]], 1e-4, "", True),  # equal, so no type check
    ("def f(x): return [1.0]", "def f(x): return (1.0000001,)", [[0]], 1e-4, "", False),  # types differ
    ("def f(a): return tuple(sorted(a))", "def f(a): return tuple(a)", [[[2, 1]]], 0, "set_eq", True),
    ("import re\ndef f(s): return re.match('a', s)", "def f(s): return s.startswith('a')",
     [["ab"], ["b"]], 0, "not_none", True),
    ("def f(xs): return 1.0", "def f(xs): return 2.0", [[[-2, 1]]], 1e-4, "poly_root", True),
    ("def f(x): return x", "def f(x): return x", [[float("nan")]], 0, "", False),  # as EvalPlus: nan != nan
])
def test_plus_oracle(reference: str, candidate: str, inputs: list, atol: float, oracle: str,
                     passes: bool) -> None:
    tests = input_tests(reference, "f", inputs, atol, oracle)
    if passes:
        run_input_tests(candidate, tests)
    else:
        with pytest.raises(AssertionError, match=r"^input 1 of \d+: f\("):
            run_input_tests(candidate, tests)


def test_input_tests_do_not_let_the_reference_mutate_inputs() -> None:
    tests = input_tests("def f(a):\n    a.append(1)\n    return len(a)\n", "f", [[[]]], 0, "")
    run_input_tests("def f(a):\n    a.append(1)\n    return len(a)\n", tests)


@pytest.mark.parametrize("value", [
    [1, "a", None, True], (1,), (), {1, 2}, set(), {"k": (1, [2.5])}, complex(1, -2), float("inf"),
    -float("inf"), 10**40, 1e-30,
])
def test_python_literal_round_trips(value: object) -> None:
    assert eval(python_literal(value)) == value
    assert type(eval(python_literal(value))) is type(value)


def test_python_literal_nan() -> None:
    assert math.isnan(eval(python_literal(float("nan"))))


def test_mbpp_plus_inputs_get_their_python_types_back() -> None:
    assert mbpp_plus_args("Mbpp/2", [[[3, 4], [5]]]) == [[(3, 4), (5,)]]
    assert mbpp_plus_args("Mbpp/124", [["1.5", "1+2j"]]) == [[1.5, 1 + 2j]]
    assert mbpp_plus_args("Mbpp/580", [[[1, [2, 3]]]]) == [((1, (2, 3)),)]
    assert mbpp_plus_args("Mbpp/3", [[7]]) == [[7]]


PLUS_ROW = {"task_id": "Mbpp/9", "prompt": '"""\nDouble x.\nassert double(1) == 2\n"""\n',
            "entry_point": "double",
            "canonical_solution": "def double(x):\n    return 2 * x\n", "base_input": [[1], [2]], "atol": 0,
            "plus_input": {}, "contract": "", "assertion": "\nassert double(1) == 2\nassert double(2) == 4\n"}


def test_mbpp_plus_rows(tmp_path: Path) -> None:
    file = write_lines(tmp_path / "MbppPlus-v9.jsonl", PLUS_ROW)  # `{}` plus inputs, as Mbpp/793 has
    (problem,) = load_mbpp_plus(file)
    assert (problem.prompt, problem.public_tests) == ("Double x.", ("assert double(1) == 2",))
    assert problem.private_tests[0] == "assert double(2) == 4" and len(problem.private_tests) == 2
    bad = write_lines(tmp_path / "bad.jsonl", {**PLUS_ROW, "base_input": [1, 2]})
    assert error_of(load_mbpp_plus, bad) == f"{bad}:1: field 'base_input' must be a list of lists"


# ------------------------------------------------------------------------------------------ registry


def test_registry_names(data_dir: Path, mbpp_plus: list[Problem], humaneval_plus: list[Problem]) -> None:
    assert load_problems("mbpp", data_dir=data_dir) == load_mbpp(path=data_dir)
    assert len(load_problems("mbpp", "train", policy="train", data_dir=data_dir)) == 374
    assert load_problems("MBPP+", data_dir=data_dir) == mbpp_plus
    assert load_problems("mbppplus", "test", policy="eval", data_dir=data_dir) == mbpp_plus
    assert load_problems("humanevalplus", data_dir=data_dir) == humaneval_plus
    assert len(load_problems("humaneval")) == 164


def test_registry_loads_custom_files(tmp_path: Path) -> None:
    file = write_lines(tmp_path / "mine.jsonl", CUSTOM_ROW)
    assert [p.task_id for p in load_problems(str(file))] == ["t1"]


def test_registry_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown dataset 'apps'; choose one of: mbpp, mbpp\+, .*\.jsonl"):
        load_problems("apps")
    with pytest.raises(ConfigError, match="unknown split 'train'; choose one of: test"):
        load_problems("humaneval+", "train")
    with pytest.raises(ConfigError, match="unknown policy 'train'"):
        load_problems("mbpp+", policy="train")
    assert error_of(load_problems, str(tmp_path / "no.jsonl")) == f"{tmp_path / 'no.jsonl'}: no such file"


def test_fingerprint_is_stable_and_content_based(data_dir: Path, mbpp_all: dict[str, Problem]) -> None:
    problems = list(mbpp_all.values())
    fingerprint = dataset_fingerprint(problems)
    assert len(fingerprint) == 64 and fingerprint == dataset_fingerprint(load_mbpp("all", path=data_dir))
    moved = [Problem(**{**_fields(p), "source": "/elsewhere"}) for p in problems]
    assert dataset_fingerprint(moved) == fingerprint
    changed = [Problem(**{**_fields(problems[0]), "prompt": "x"}), *problems[1:]]
    assert dataset_fingerprint(changed) != fingerprint
    assert dataset_fingerprint(problems[::-1]) != fingerprint


@pytest.mark.parametrize(("raw", "ids", "expected"), [
    (11, ["11", "12"], "11"), ("11", ["11"], "11"), ("Mbpp/11", ["11"], "11"), (" mbpp/11 ", ["11"], "11"),
    (2, ["Mbpp/2"], "Mbpp/2"), ("2", ["Mbpp/2"], "Mbpp/2"), ("Mbpp/2", ["Mbpp/2"], "Mbpp/2"),
    ("Python/0", ["HumanEval/0"], "HumanEval/0"), ("HumanEval/0", ["Python/0"], "Python/0"),
    ("t1", ["t1"], "t1"),
])
def test_normalize_task_id(raw: object, ids: list[str], expected: str) -> None:
    assert normalize_task_id(raw, dict.fromkeys(ids)) == expected


@pytest.mark.parametrize(("raw", "ids", "message"), [
    (13, ["11"], "unknown task id 13: not among the 1 loaded problems"),
    ("HumanEval/11", ["11"], "unknown task id 'HumanEval/11': not among the 1 loaded problems"),
    (0, ["HumanEval/0"], "unknown task id 0: not among the 1 loaded problems"),
    (True, ["1"], "task id True must be an integer or a string"),
    (1.0, ["1"], "task id 1.0 must be an integer or a string"),
])
def test_normalize_task_id_errors(raw: object, ids: list[str], message: str) -> None:
    assert error_of(normalize_task_id, raw, dict.fromkeys(ids)) == message


# ------------------------------------------------------------------ the bundled MBPP, EvalPlus downloads

MBPP_SHA256 = "0b7004a79cd62d9ec7ecdd5a6e5f0ef1210ff00b286df3c5d5b57bf38c58e19a"
#: dataset.fingerprint of MBPP test (eval policy) in the committed record results/baselines/mbpp-greedy.
MBPP_TEST_FINGERPRINT = "92aed8e369df136785eed6e64460a2ab6a642bc07ccf0893eccb7dee5b2aab40"


def test_bundled_mbpp_is_the_original_file_with_its_licence() -> None:
    data = gzip.decompress(BUNDLED_MBPP.read_bytes())
    assert hashlib.sha256(data).hexdigest() == MBPP_SHA256 and len(data.splitlines()) == 974
    licence = (BUNDLED_DIR / "MBPP-LICENSE.md").read_text()
    assert "CC BY 4.0" in licence and MBPP_SHA256 in licence and "google-research/google-research" in licence


def test_mbpp_from_a_data_folder_without_it_is_the_bundled_copy(tmp_path: Path, monkeypatch) -> None:
    """MUCODE_DATA_DIR pointing at a folder without mbpp.jsonl (e.g. one with only EvalPlus files): the bundled
    copy, with the fingerprint the committed MBPP baseline recorded."""
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    problems = load_problems("mbpp", "test")
    assert len(problems) == 500 and problems[0].task_id == "11" and problems[-1].task_id == "510"
    assert dataset_fingerprint(problems) == MBPP_TEST_FINGERPRINT
    assert dataset_source("mbpp") == f"bundled copy {BUNDLED_MBPP}"
    with pytest.raises(DataError, match=r"mbpp\.jsonl not found"):
        dataset_source("mbpp", data_dir=tmp_path)  # an explicit folder must hold the file


def test_a_wheel_carries_the_bundled_mbpp_and_its_licence(tmp_path: Path) -> None:
    """Build a wheel from a copy of this checkout (pyproject's package-data) and look inside it."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():
        pytest.skip("not a checkout")
    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    source = tmp_path / "checkout"
    shutil.copytree(root / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, source / name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("mucode-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert archive.read("mucode/problems/bundled/mbpp.jsonl.gz") == BUNDLED_MBPP.read_bytes()
        assert b"CC BY 4.0" in archive.read("mucode/problems/bundled/MBPP-LICENSE.md")


def test_bundled_mbpp_equals_the_shared_file(data_dir: Path, mbpp_all: dict[str, Problem], monkeypatch) -> None:
    monkeypatch.setattr(datadir, "find_data_dir", lambda: None)
    bundled = load_mbpp("all")
    assert bundled == list(mbpp_all.values())
    for split, policy in (("test", "eval"), ("train", "train")):
        assert dataset_fingerprint(load_mbpp(split, policy)) == dataset_fingerprint(
            load_mbpp(split, policy, path=data_dir))


class _Server:
    """A local HTTP server on 127.0.0.1 serving the files in ``root``; ``paths`` lists the paths requested."""

    def __init__(self, root: Path) -> None:
        paths: list[str] = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs) -> None:
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self) -> None:
                paths.append(self.path)
                super().do_GET()

            def log_message(self, *args) -> None:
                pass

        self.paths = paths
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path: Path):
    root = tmp_path / "www"
    root.mkdir()
    served = _Server(root)
    yield root, served
    served.close()


@pytest.fixture
def no_data(tmp_path: Path, monkeypatch) -> Path:
    """An empty MUCODE_HOME (the download cache) and an empty MUCODE_DATA_DIR; the home folder."""
    (tmp_path / "empty-data").mkdir()
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "empty-data"))
    monkeypatch.setenv("MUCODE_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def serve_release(monkeypatch, server, dataset: str, data: bytes, *, name: str = "asset.jsonl.gz",
                  size: int | None = None, sha256: str | None = None) -> fetch.Release:
    """Serve ``data`` gzipped and point ``dataset``'s release at it (checks default to ``data``'s)."""
    root, served = server
    (root / name).write_bytes(gzip.compress(data))
    release = dataclasses.replace(fetch.RELEASES[dataset], url=f"{served.url}/{name}",
                                  size=len(data) if size is None else size,
                                  sha256=sha256 or hashlib.sha256(data).hexdigest())
    monkeypatch.setitem(fetch.RELEASES, dataset, release)
    return release


def cache_entries(home: Path) -> list[str]:
    folder = home / "datasets"
    return sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []


def test_mbpp_plus_is_downloaded_on_first_use_and_verified(data_dir: Path, no_data: Path, server, monkeypatch,
                                                           capsys) -> None:
    """The real MbppPlus-v0.2.0 file, gzipped as the release asset, from a local server with the release's own
    size and sha256 pins: downloaded once (progress on stderr), then read from the cache."""
    original = (data_dir / "MbppPlus-v0.2.0.jsonl").read_bytes()
    pinned = fetch.RELEASES["mbpp+"]
    release = serve_release(monkeypatch, server, "mbpp+", original, name="MbppPlus.jsonl.gz",
                            size=pinned.size, sha256=pinned.sha256)
    assert dataset_source("mbpp+").startswith(f"not downloaded yet: {release.url} into {no_data / 'datasets'}")
    problems = load_problems("mbpp+")
    assert problems == load_mbpp_plus(data_dir)
    assert server[1].paths == ["/MbppPlus.jsonl.gz"]
    assert "downloading MbppPlus-v0.2.0.jsonl" in capsys.readouterr().err
    assert cache_entries(no_data) == ["MbppPlus-v0.2.0.jsonl"]
    cached = no_data / "datasets" / "MbppPlus-v0.2.0.jsonl"
    assert cached.read_bytes() == original and oct(cached.stat().st_mode & 0o777) == "0o644"
    assert dataset_source("mbppplus") == f"user cache {cached}"
    assert load_problems("mbpp+") == problems and server[1].paths == ["/MbppPlus.jsonl.gz"]  # no second fetch


def test_humaneval_plus_download_reports_progress(data_dir: Path, no_data: Path, server, monkeypatch) -> None:
    original = (data_dir / "HumanEvalPlus-v0.1.10.jsonl").read_bytes()
    pinned = fetch.RELEASES["humaneval+"]
    serve_release(monkeypatch, server, "humaneval+", original, size=pinned.size, sha256=pinned.sha256)
    reports: list[tuple[str, int, int]] = []
    path = fetch_release("humaneval+", progress=lambda *report: reports.append(report))
    assert path == no_data / "datasets" / "HumanEvalPlus-v0.1.10.jsonl" and path.read_bytes() == original
    assert reports[-1] == ("downloading HumanEvalPlus-v0.1.10.jsonl", pinned.size, pinned.size) and len(reports) > 1
    assert fetch_release("humaneval+") == path and len(server[1].paths) == 1


def test_a_cached_file_with_other_bytes_is_an_error_not_a_download(no_data: Path, server, monkeypatch) -> None:
    release = serve_release(monkeypatch, server, "mbpp+", json.dumps(PLUS_ROW).encode() + b"\n")
    (no_data / "datasets").mkdir(parents=True)
    placed = no_data / "datasets" / release.file
    placed.write_text("{}\n")  # put there by hand
    message = error_of(load_mbpp_plus)
    assert message.startswith(f"{placed} is not MbppPlus-v0.2.0.jsonl as released (sha256 ")
    assert "delete it to download it again" in message and server[1].paths == []
    placed.unlink()
    assert [p.task_id for p in load_mbpp_plus()] == [PLUS_ROW["task_id"]]


def test_a_data_folder_file_is_used_before_the_cache(tmp_path: Path, no_data: Path, server, monkeypatch) -> None:
    serve_release(monkeypatch, server, "mbpp+", b"not used\n")
    write_lines(tmp_path / "empty-data" / "MbppPlus-v0.2.0.jsonl", PLUS_ROW)
    assert [p.task_id for p in load_problems("mbpp+")] == [PLUS_ROW["task_id"]]
    assert server[1].paths == [] and cache_entries(no_data) == []


@pytest.mark.parametrize("wrong", ["digest", "size"])
def test_a_download_with_other_bytes_leaves_nothing(no_data: Path, server, monkeypatch, wrong: str) -> None:
    data = json.dumps(PLUS_ROW).encode() + b"\n"
    checks = {"sha256": "ab" * 32} if wrong == "digest" else {"size": len(data) + 1}
    release = serve_release(monkeypatch, server, "mbpp+", data, **checks)
    message = error_of(load_problems, "mbpp+")
    expected = f"sha256 mismatch: expected {'ab' * 32}, got " if wrong == "digest" else "expected"
    assert message.startswith(f"MbppPlus-v0.2.0.jsonl from {release.url}: {expected}")
    assert f"decompress that file to {no_data / 'datasets' / release.file}" in message and DATA_DIR_ENV in message
    assert cache_entries(no_data) == []  # no partial file, no unverified file


@pytest.mark.parametrize("failure", ["offline", "404", "not gzip"])
def test_a_failed_download_is_one_line_saying_how_to_provide_the_file(no_data: Path, server, monkeypatch,
                                                                      failure: str) -> None:
    root, served = server
    release = serve_release(monkeypatch, server, "humaneval+", b"{}\n")
    if failure == "offline":
        with socket.socket() as probe:  # a port that nothing listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        url, reason = f"http://127.0.0.1:{port}/x.gz", "Connection refused"
    elif failure == "404":
        url, reason = f"{served.url}/missing.gz", "HTTP 404"
    else:
        (root / "plain.gz").write_text("{}\n")
        url, reason = f"{served.url}/plain.gz", "Not a gzipped file"
    monkeypatch.setitem(fetch.RELEASES, "humaneval+", dataclasses.replace(release, url=url))
    message = error_of(load_humaneval_plus)
    assert message.startswith(f"HumanEvalPlus-v0.1.10.jsonl is not in the data folder or the cache, and "
                              f"downloading {url} failed (")
    assert reason in message and f"set {DATA_DIR_ENV}" in message
    assert cache_entries(no_data) == []


def test_an_explicit_folder_without_the_file_does_not_download(tmp_path: Path, no_data: Path, server,
                                                               monkeypatch) -> None:
    serve_release(monkeypatch, server, "mbpp+", b"{}\n")
    assert error_of(load_mbpp_plus, tmp_path).startswith(f"MbppPlus*.jsonl not found: in {tmp_path};")
    assert server[1].paths == []
