"""The ``mucode`` command: evaluate end to end, one-line errors with exit code 2, --version, datasets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mucode import __version__
from mucode.cli import app, main
from mucode.problems import write_custom
from mucode.types import Problem

PROBLEMS = [
    Problem(task_id="inc", prompt="Write inc(x).", entry_point="inc", public_tests=("assert inc(1) == 2",),
            private_tests=("assert inc(-1) == 0",)),
    Problem(task_id="neg", prompt="Write neg(x).", entry_point="neg", public_tests=("assert neg(1) == -1",),
            private_tests=()),
]
SAMPLES = [
    {"task_id": "inc", "solution": "def inc(x):\n    return x + 1\n"},
    {"task_id": "inc", "solution": "def inc(x):\n    return abs(x) + 1\n"},
    {"task_id": "neg", "solution": "def neg(x):\n    return -x\n"},
    {"task_id": "neg", "solution": "def neg(x):\n    return x\n"},
]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    dataset, samples = tmp_path / "problems.jsonl", tmp_path / "samples.jsonl"
    write_custom(PROBLEMS, dataset)
    samples.write_text("".join(json.dumps(row) + "\n" for row in SAMPLES))
    return {"dataset": dataset, "samples": samples, "out": tmp_path / "results.json"}


def evaluate_args(files: dict[str, Path], **overrides: object) -> list[str]:
    options = {**files, "workers": 2, **overrides}
    return ["evaluate", *(item for name, value in options.items() for item in (f"--{name}", str(value)))]


def run_mucode(*args: str) -> subprocess.CompletedProcess[str]:
    """``mucode ARGS`` in a fresh interpreter, through the console script's entry point."""
    return subprocess.run([sys.executable, "-c", "from mucode.cli import main; main()", *args],
                          capture_output=True, text=True, timeout=60)


def test_evaluate_end_to_end(files: dict[str, Path]) -> None:
    result = CliRunner().invoke(app, evaluate_args(files, **{"test-timeout": 2, "memory-mb": 1024}))
    assert result.exit_code == 0, result.output
    for text in ("tasks", "2 of 2", "samples", "pass@1", "50.00%", "pass@5", "n/a", "public pass rate",
                 "75.00%", "isolation"):
        assert text in result.stdout
    results = json.loads(files["out"].read_text())
    assert results["pass_at_k"] == {"pass@1": 0.5}
    assert results["config"]["limits"]["memory_mb"] == 1024
    assert results["config"]["isolation"] in result.stdout


def test_missing_samples_file_is_one_line_and_exit_2(files: dict[str, Path]) -> None:
    missing = files["samples"].with_name("absent.jsonl")
    done = run_mucode(*evaluate_args({**files, "samples": missing}))
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {missing}: no such file"
    assert "Traceback" not in done.stderr + done.stdout
    assert not files["out"].exists()


@pytest.mark.parametrize(("overrides", "message"), [
    ({"dataset": "nope"}, "unknown dataset 'nope'"),
    ({"dataset": "mbpp", "split": "dev"}, "unknown split 'dev'"),
    ({"workers": 0}, "workers must be >= 1"),
    ({"out": Path(__file__).parent}, "is a folder"),
])
def test_bad_options_exit_2_with_one_red_line(files: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                              overrides: dict[str, object], message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(evaluate_args(files, **overrides))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_malformed_samples_name_file_and_line(files: dict[str, Path],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    files["samples"].write_text('{"task_id": "inc", "solution": "x"}\n{"task_id": "inc"}\n')
    with pytest.raises(SystemExit) as exit_info:
        main(evaluate_args(files))
    assert exit_info.value.code == 2
    expected = f"error: {files['samples']}:2: needs a 'completion' or a 'solution' field\n"
    assert capsys.readouterr().err == expected


def test_missing_required_option_is_a_usage_error(files: dict[str, Path]) -> None:
    result = CliRunner().invoke(app, ["evaluate", "--dataset", "mbpp"])
    assert result.exit_code == 2
    assert "--samples" in result.output


def test_version() -> None:
    done = run_mucode("--version")
    assert (done.returncode, done.stdout) == (0, f"mucode {__version__}\n")


def test_datasets_lists_splits_and_counts() -> None:
    result = CliRunner().invoke(app, ["datasets"])
    assert result.exit_code == 0, result.output
    cells = [[cell.strip() for cell in line.split("│")[1:-1]] for line in result.stdout.splitlines()]
    counts = {(row[0], row[1]): row[3] for row in cells if len(row) == 5 and row[0]}
    assert counts[("mbpp", "test")] == "500" and counts[("mbpp", "train")] == "374"
    assert counts[("mbpp", "all")] == "974"
    assert counts[("humaneval", "test")] == "164"
