"""mucode.solve and ``mucode solve``: the user's problem, the search, the transcript and the exit code."""

from __future__ import annotations

from pathlib import Path

import pytest

from mucode.cli import main
from mucode.errors import ConfigError, DataError
from mucode.problems import write_custom
from mucode.solve import guess_entry_point, read_tests, user_problem
from tests.scripted_backend import PROBLEMS, RIGHT, TRAP, WRONG, ScriptedBackend

HALF = PROBLEMS[2]


@pytest.fixture
def tests_file(tmp_path: Path) -> Path:
    path = tmp_path / "tests.txt"
    path.write_text("# the examples\nassert half(4) == 2\n\nassert half(3) == 1.5\n")
    return path


def use_script(monkeypatch: pytest.MonkeyPatch, script: dict) -> ScriptedBackend:
    backend = ScriptedBackend("m", script)
    monkeypatch.setattr("mucode.solve.load_backend", lambda kind, model: backend)
    return backend


def solve_cli(*args: str) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(["solve", "--model", "m", "--workers", "2", *args])
    return exit_info.value.code


def test_prompt_and_tests_file_make_an_all_public_problem(tests_file: Path) -> None:
    problem = user_problem(prompt=HALF.prompt, tests_file=tests_file)
    assert problem.public_tests == ("assert half(4) == 2", "assert half(3) == 1.5")
    assert problem.private_tests == () and problem.entry_point == "half"
    assert user_problem(prompt="p", tests_file=tests_file, entry_point="other").entry_point == "other"


def test_guess_entry_point_skips_builtins() -> None:
    assert guess_entry_point(["assert abs(f(1)) == 2"]) == "f"
    assert guess_entry_point(["assert len([1]) == 1"]) is None


def test_problem_file_needs_an_id_when_it_holds_several(tmp_path: Path) -> None:
    path = tmp_path / "problems.jsonl"
    write_custom(PROBLEMS, path)
    assert user_problem(problem_file=path, task_id="neg").task_id == "neg"
    with pytest.raises(ConfigError, match=r"holds 3 problems \(inc, neg, half\); choose one with --id"):
        user_problem(problem_file=path)
    write_custom(PROBLEMS[:1], path)
    assert user_problem(problem_file=path).task_id == "inc"


def test_bad_tests_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "tests.txt"
    path.write_text("assert f(1) == 1\nassert f(2) ==\n")
    with pytest.raises(DataError, match=r"tests\.txt:2: not a Python statement"):
        read_tests(path)


def test_solve_prints_each_turn_and_exits_0_when_solved(tests_file: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    use_script(monkeypatch, {("half", 1): [WRONG["half"]], ("half", 2): [RIGHT["half"]]})
    assert solve_cli("--prompt", HALF.prompt, "--tests", str(tests_file), "--n", "2") == 0
    output = capsys.readouterr().out
    assert output.index("turn 1") < output.index("feedback to the model") < output.index("turn 2")
    assert "AssertionError" in output and "assert half(3) == 1.5" in output and "solved" in output
    assert "not solved" not in output and output.rstrip().endswith("return x / 2")


def test_solve_exits_1_when_not_solved_and_private_tests_decide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "problems.jsonl"
    write_custom(PROBLEMS, path)
    backend = use_script(monkeypatch, {("half", 1): [TRAP["half"]]})
    assert solve_cli("--problem", str(path), "--id", "half", "--turns", "2") == 1
    output = capsys.readouterr().out
    assert "private (hidden)" in output and "not solved" in output
    assert len(backend.calls) == 1  # the public pass ended the search at turn 1


@pytest.mark.parametrize(("args", "message"), [
    (["--prompt", "p"], "--prompt needs --tests FILE"),
    (["--prompt", "p", "--problem", "x.jsonl"], "give either --problem FILE or --prompt TEXT"),
    ([], "give either --problem FILE or --prompt TEXT"),
    (["--prompt", "p", "--tests", "absent.txt"], "absent.txt: cannot read"),
])
def test_solve_input_errors_are_one_line(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert solve_cli(*args) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error
