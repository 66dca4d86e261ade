"""Loaders: data-dir resolution, MBPP splits and policies, custom files, EvalPlus mapping, the registry.

Real data comes from the shared data folder found the same way the loaders find it; nothing here runs
benchmark code (tests/test_problems_reference.py does, in the sandbox).
"""

from __future__ import annotations

import importlib.machinery
import json
import math
import sys
import types
from pathlib import Path

import pytest

from mucode.errors import ConfigError, DataError
from mucode.problems import (
    DATA_DIR_ENV,
    MBPP_KNOWN_BAD,
    datadir,
    dataset_fingerprint,
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
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    message = error_of(load_mbpp)
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


def test_mbpp_falls_back_to_the_hub_only_without_local_data(monkeypatch) -> None:
    fake_datasets(monkeypatch, lambda: {"test": [MBPP_ROW]})
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(datadir, "find_data_dir", lambda: None)
    assert [p.task_id for p in load_mbpp()] == ["11"]


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
