"""``mucode verifier train | score | evaluate`` end to end, their one-line errors, and a trained verifier driving
the ``lv`` and ``pt+lv`` selectors of the multi-turn search."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from mucode.cli import main
from mucode.rollout import Throughput
from mucode.search import SearchConfig, search_steps
from mucode.verifier import Verifier, load_rollouts
from tests.scripted_backend import PROBLEMS, ScriptedBackend
from tests.test_verifier_data import SCRIPT, OracleSandbox, write_run

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRAIN_OPTIONS = ["--loss", "bt", "--epochs", "1", "--batch-size", "8", "--micro-batch-size", "4",
                 "--pairs-per-problem", "4", "--precision", "fp32", "--learning-rate", "1e-3"]


def mucode(*args: str) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    return exit_info.value.code


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("verifier-cli")
    return {"a": write_run(base / "a", seed=3), "b": write_run(base / "b", seed=4),
            "held-out": write_run(base / "held-out", seed=5, rollouts=8)}


@pytest.fixture(scope="module")
def trained(runs: dict[str, Path], tiny_qwen2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("verifier-cli-out") / "v"
    assert mucode("verifier", "train", "--rollouts", f"{runs['a']},{runs['b']}", "--backbone", str(tiny_qwen2),
                  "--out", str(out), *TRAIN_OPTIONS) == 0
    return out


def test_train_aggregates_runs_and_prints_a_summary(trained: Path, runs: dict[str, Path], tiny_qwen2: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    info = json.loads((trained / "verifier.json").read_text())
    assert [run["path"] for run in info["data"]["runs"]] == [str(runs["a"]), str(runs["b"])]
    assert info["data"]["examples"] == len(load_rollouts([runs["a"], runs["b"]]).examples)
    assert mucode("verifier", "train", "--rollouts", f"{runs['a']},{runs['b']}", "--backbone", str(tiny_qwen2),
                  "--out", str(trained), *TRAIN_OPTIONS) == 0
    output = capsys.readouterr().out
    for text in ("mucode verifier train", "already trained", "examples", "pairs", "steps", "fp32", str(trained)):
        assert text in output


def test_score_and_evaluate_write_their_files(trained: Path, runs: dict[str, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    held_out = load_rollouts([runs["held-out"]]).examples
    assert mucode("verifier", "score", "--verifier", str(trained), "--rollouts", str(runs["held-out"]),
                  "--dtype", "fp32", "--out", str(tmp_path / "scored")) == 0
    lines = [json.loads(line) for line in (tmp_path / "scored" / "scores.jsonl").read_text().splitlines()]
    assert [(r["task_id"], r["rollout"], r["turn"], r["label"], r["first_turn"]) for r in lines] == [
        (e.task_id, e.rollout, e.turn, int(e.label), e.turn == 1) for e in held_out]
    assert all(r["real"] and len(r["code_sha256"]) == 64 for r in lines)
    assert "codes scored" in capsys.readouterr().out

    assert mucode("verifier", "evaluate", "--verifier", str(trained), "--rollouts", str(runs["held-out"]),
                  "--dtype", "fp32") == 0
    output = capsys.readouterr().out
    for text in ("pairwise accuracy", "AUROC", "selection accuracy", "verifier", "random", "oracle", "lead",
                 "both labels", "first turn", "placeholder echoes"):
        assert text in output
    evaluation = json.loads((trained / "evaluation.json").read_text())
    metrics = evaluation["metrics"]
    real = metrics["real"]
    assert real["examples"] == len(held_out) and set(real["selection"]) == {"2", "4", "8"}
    assert set(real["selection_mixed"]) == {"2", "4", "8"} and 0 <= real["auroc"] <= 1
    assert metrics["excluded"]["placeholder_echoes"]["count"] == 0
    first = metrics["first_turn"]  # 8 rollouts per problem: every problem has 8 first-turn samples
    assert set(first["selection"]) == {"1", "2", "4", "8"} and len(first["problems"]) == len(PROBLEMS)
    for row in [*real["selection"].values(), *first["selection"].values()]:
        assert row["random"] <= row["oracle"] and row["verifier"] <= row["oracle"]
    rescored = [json.loads(line)["score"] for line in (trained / "scores.jsonl").read_text().splitlines()]
    assert rescored == [line["score"] for line in lines]
    assert "int8" not in evaluation["verifier"]

    assert mucode("verifier", "evaluate", "--verifier", str(trained), "--rollouts", str(runs["held-out"]),
                  "--dtype", "int8", "--out", str(tmp_path / "int8")) == 0
    assert json.loads((tmp_path / "int8" / "evaluation.json").read_text())["verifier"]["int8"] is True
    int8 = [json.loads(line)["score"] for line in (tmp_path / "int8" / "scores.jsonl").read_text().splitlines()]
    spread = max(rescored) - min(rescored)
    assert max(abs(a - b) for a, b in zip(int8, rescored, strict=True)) < 0.1 * spread


def test_head_only_training_from_the_command_line(runs: dict[str, Path], tiny_qwen2: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert mucode("verifier", "train", "--rollouts", str(runs["a"]), "--backbone", str(tiny_qwen2), "--out",
                  str(tmp_path / "v"), "--head-only", "--loss", "bce", "--precision", "fp32") == 0
    assert "(bce, head" in capsys.readouterr().out  # the title wraps
    info = json.loads((tmp_path / "v" / "verifier.json").read_text())
    chosen = info["hyperparameters"]
    assert (chosen["head_only"], chosen["learning_rate"], chosen["epochs"]) == (True, 1e-3, 30)
    assert len(info["training"]["log_history"]) == 30


@pytest.mark.parametrize(("args", "message"), [
    (["score", "--verifier", "{tmp}/nothing", "--rollouts", "{run}"], "nothing is not a mucode verifier"),
    (["score", "--verifier", "{verifier}", "--rollouts", "{tmp}/nowhere"], "nowhere is not a rollout run folder"),
    (["evaluate", "--verifier", "{verifier}", "--rollouts", "{run}", "--ks", "2,x"], "--ks must be integers"),
    (["train", "--rollouts", "{run}", "--out", "{tmp}/v", "--loss", "hinge"], "loss must be one of bt, bce"),
    (["train", "--rollouts", "{run}", "--out", "{tmp}/v", "--batch-size", "6", "--micro-batch-size", "4"],
     "must be a multiple of micro_batch_size"),
    (["train", "--rollouts", "{run}", "--out", "{tmp}/v", "--head-only", "--lora"],
     "head_only and lora exclude each other"),
])
def test_errors_are_one_line(args: list[str], message: str, trained: Path, runs: dict[str, Path], tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    values = {"tmp": tmp_path, "run": runs["a"], "verifier": trained}
    assert mucode("verifier", *(arg.format(**values) for arg in args)) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error


@pytest.mark.parametrize("selector", ["lv", "pt+lv"])
def test_a_trained_verifier_drives_the_scored_selectors(selector: str, trained: Path) -> None:
    verifier = Verifier.load(trained, dtype="fp32")
    config = SearchConfig(n=4, turns=2, selector=selector, seed=2)
    records = [record for batch in search_steps([(problem, 0) for problem in PROBLEMS], ScriptedBackend("m", SCRIPT),
                                                OracleSandbox(), config, verifier, 8, Throughput())
               for record in batch]
    assert len(records) == len(PROBLEMS)
    for record in records:
        problem = next(p for p in PROBLEMS if p.task_id == record.task_id)
        for turn in record.turns:
            candidates, scores = turn.candidates, list(turn.scores or ())
            coded = [c.code for c in candidates if c.code is not None]
            expected = iter(verifier.score(problem, coded))
            assert scores == [None if c.code is None else pytest.approx(next(expected), abs=1e-5)
                              for c in candidates]
            keys = [(c.public_passed if selector == "pt+lv" else 0, -1e9 if s is None else s)
                    for c, s in zip(candidates, scores, strict=True)]
            assert keys[turn.selected] == max(keys)
