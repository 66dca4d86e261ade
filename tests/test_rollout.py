"""mucode.rollout: trajectory records, batching, seeds, resume after kill -9, config checks, summary."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mucode.backends import SamplingParams
from mucode.cli import main
from mucode.env import Episode, EpisodeConfig, Turn
from mucode.errors import ConfigError, DataError
from mucode.records import Generation, Trajectory
from mucode.rollout import (
    derive_seed,
    run_rollouts,
    select_problems,
    summarize_trajectories,
)
from mucode.runs import pin_run_dir
from mucode.sandbox import Limits, Sandbox
from tests.scripted_backend import PROBLEMS, RIGHT, TRAP, WRONG, PositionalBackend, ScriptedBackend

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = {
    ("inc", 1): [WRONG["inc"], RIGHT["inc"], TRAP["inc"]], ("inc", 2): [RIGHT["inc"], WRONG["inc"]],
    ("inc", 3): [RIGHT["inc"]],
    ("neg", 1): [RIGHT["neg"], TRAP["neg"]], ("neg", 2): [TRAP["neg"]], ("neg", 3): [RIGHT["neg"], WRONG["neg"]],
    ("half", 1): [TRAP["half"], WRONG["half"]], ("half", 2): [TRAP["half"], RIGHT["half"]],
    ("half", 3): [WRONG["half"]],
}
PARAMS = SamplingParams(n=1, temperature=0.7, max_tokens=100, seed=3)
BY_ID = {problem.task_id: problem for problem in PROBLEMS}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(Limits(test_timeout=2.0, memory_mb=512), workers=2) as box:
        yield box


def rollouts(out: Path, sandbox: Sandbox, backend: ScriptedBackend | None = None, **options: object) -> dict:
    settings = {"rollouts": 4, "turns": 3, "params": PARAMS, "batch_size": 5, "progress": False, **options}
    return run_rollouts(PROBLEMS, backend or ScriptedBackend("fake", SCRIPT), sandbox, out_dir=out, **settings)


def read_records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "trajectories.jsonl").read_text().splitlines()]


def outcome(records: list[dict]) -> dict[tuple[str, int], tuple[list[str], bool]]:
    return {(r["task_id"], r["rollout"]): ([t["reply"] for t in r["turns"]], r["success"]) for r in records}


def test_records_hold_every_turn_and_label(tmp_path: Path, sandbox: Sandbox) -> None:
    backend = ScriptedBackend("fake", SCRIPT)
    summary = rollouts(tmp_path, sandbox, backend)
    records = read_records(tmp_path)
    assert sorted((r["task_id"], r["rollout"]) for r in records) == sorted(
        (p.task_id, i) for p in PROBLEMS for i in range(4))
    for record in records:
        turns, generation = record["turns"], record["generation"]
        assert 1 <= len(turns) == len(generation) <= 3
        for number, (turn, info) in enumerate(zip(turns, generation, strict=True), start=1):
            seed = derive_seed(3, record["task_id"], record["rollout"], number)
            options = SCRIPT[record["task_id"], number]
            assert info["seed"] == seed and turn["reply"] == options[seed % len(options)]
            assert turn["extraction"] == "fenced-python" and turn["code"].startswith("def ")
            assert {"public", "private", "public_passed", "private_passed", "feedback"} <= turn.keys()
            assert info["completion_tokens"] == 10 and info["prompt_tokens"] == 50
        # oracle stop rule: only public ∧ private success ends an episode early
        assert record["success"] == (turns[-1]["public_passed"] and turns[-1]["private_passed"])
        assert all(not (t["public_passed"] and t["private_passed"]) for t in turns[:-1])
        assert record["config"] == {"max_turns": 3, "template": "paper", "stop_on": "oracle",
                                    "feedback_max_chars": 2000}
        assert record["model_id"] == "scripted:fake" and record["backend"] == "scripted"
        assert record["sampling"]["temperature"] == 0.7 and record["seed"] == 3
        episode = Episode.from_dict(record, BY_ID[record["task_id"]])
        assert episode.success == record["success"] and episode.done
    # one generate call per step for all active episodes, each with its own derived seed
    assert all(size <= 5 and len(seeds) == size for size, _, seeds in backend.calls)
    assert summary["trajectories"] == 12 and summary["tasks"] == 3
    assert summary["pass_at_k"].keys() == {"pass@1"} and summary["pass_at_k_skipped"] == ["pass@5", "pass@10"]
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["success_within_turns"] == summary["success_within_turns"]


def test_backend_without_per_conversation_seeds_gives_the_same_trajectories(tmp_path: Path,
                                                                             sandbox: Sandbox) -> None:
    assert rollouts(tmp_path / "seeded", sandbox)["warnings"] == []
    positional = PositionalBackend("fake", SCRIPT)
    summary = rollouts(tmp_path / "positional", sandbox, positional)
    assert outcome(read_records(tmp_path / "positional")) == outcome(read_records(tmp_path / "seeded"))
    assert {size for size, _, _ in positional.calls} == {1}  # exact seeds, one conversation per call
    assert "takes no per-conversation seeds" in summary["warnings"][0]


CHILD = """
import sys
from mucode.backends import SamplingParams
from mucode.rollout import run_rollouts
from mucode.sandbox import Sandbox
from tests import scripted_backend
from tests.scripted_backend import PROBLEMS
from tests.test_rollout import SCRIPT
backend = getattr(scripted_backend, sys.argv[2])("fake", SCRIPT, sleep=float(sys.argv[3]))
with Sandbox(workers=2) as sandbox:
    run_rollouts(PROBLEMS, backend, sandbox, rollouts=4, turns=3,
                 params=SamplingParams(n=1, temperature=0.7, max_tokens=100, seed=3), batch_size=2,
                 out_dir=sys.argv[1], progress=False)
"""


@pytest.mark.parametrize(("backend", "sleep"), [("ScriptedBackend", "0.15"), ("ContinuousScriptedBackend", "0.05")])
def test_resume_after_kill_loses_and_duplicates_nothing(tmp_path: Path, sandbox: Sandbox, backend: str,
                                                        sleep: str) -> None:
    """A blocking backend (lockstep batches) and a continuous one (walks interleaved by the driver)."""
    rollouts(tmp_path / "whole", sandbox)
    killed = tmp_path / "killed"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(killed), backend, sleep], cwd=ROOT,
                             start_new_session=True)
    log = killed / "trajectories.jsonl"
    deadline = time.monotonic() + 30
    while not (log.exists() and log.read_text().count("\n") >= 3) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert child.poll() is None, "the child finished before it could be killed"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    partial = log.read_bytes()
    assert 3 <= partial.count(b"\n") < 12
    with log.open("ab") as stream:  # what a write cut short by the kill would leave
        stream.write(b'{"task_id": "inc", "rollout": 3, "tur')
    summary = rollouts(killed, sandbox)
    records = read_records(killed)
    assert len(records) == 12 and summary["run"]["resumed_from"] == partial.count(b"\n")
    assert outcome(records) == outcome(read_records(tmp_path / "whole"))
    assert log.read_bytes().startswith(partial)  # earlier records kept byte for byte


def test_resume_with_another_config_names_the_field(tmp_path: Path, sandbox: Sandbox) -> None:
    rollouts(tmp_path, sandbox, rollouts=1)
    hotter = SamplingParams(n=1, temperature=0.9, max_tokens=100, seed=3)
    with pytest.raises(ConfigError, match=r"sampling\.temperature was 0\.7, now 0\.9.*--force"):
        rollouts(tmp_path, sandbox, rollouts=1, params=hotter)
    with pytest.raises(ConfigError, match=r"episode\.stop_on was 'oracle', now 'public'"):
        rollouts(tmp_path, sandbox, rollouts=1, stop_on="public")
    summary = rollouts(tmp_path, sandbox, rollouts=1, params=hotter, force=True)
    assert summary["run"]["resumed_from"] == 0 and len(read_records(tmp_path)) == 3
    assert json.loads((tmp_path / "config.json").read_text())["sampling"]["temperature"] == 0.9


def test_resuming_a_finished_run_generates_nothing_and_more_rollouts_extend_it(tmp_path: Path,
                                                                              sandbox: Sandbox) -> None:
    rollouts(tmp_path, sandbox, rollouts=2)
    backend = ScriptedBackend("fake", SCRIPT)
    summary = rollouts(tmp_path, sandbox, backend, rollouts=2)
    assert backend.calls == [] and summary["trajectories"] == 6 and summary["run"]["generated"] == 0
    assert rollouts(tmp_path, sandbox, rollouts=4)["run"]["generated"] == 6
    rollouts(tmp_path / "whole", sandbox, rollouts=4)
    assert outcome(read_records(tmp_path)) == outcome(read_records(tmp_path / "whole"))
    assert rollouts(tmp_path, sandbox, rollouts=1)["trajectories"] == 3  # summarised over the first one


def test_run_dir_that_is_a_file_is_a_config_error(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("")
    with pytest.raises(ConfigError, match="is a file"):
        pin_run_dir(file, {}, False, [])


def trajectory(task_id: str, success: bool, turns: int, tokens: int = 10) -> Trajectory:
    turn = Turn(task_id, "reply", "fenced-python", "", "x = 1", (), (), True, success, "", "", 0.0, 1)
    return Trajectory(task_id, 0, EpisodeConfig(), (), (turn,) * turns, True, success, "fake", "fake", PARAMS, 3,
                      (Generation(3, 50, tokens, "stop", 0.0),) * turns)


def test_summary_metrics_on_hand_made_trajectories() -> None:
    records = [trajectory("a", True, 1), trajectory("a", True, 3), trajectory("a", False, 3), trajectory("a", False, 3),
               trajectory("a", True, 2),
               trajectory("b", False, 3), trajectory("b", False, 3), trajectory("b", False, 3),
               trajectory("b", False, 3), trajectory("b", True, 1)]
    summary = summarize_trajectories(records, 3)
    assert summary["trajectories"] == 10 and summary["tasks"] == 2
    within = {k: value["value"] for k, value in summary["success_within_turns"].items()}
    assert within == pytest.approx({"1": (1 / 5 + 1 / 5) / 2, "2": (2 / 5 + 1 / 5) / 2, "3": (3 / 5 + 1 / 5) / 2})
    assert summary["success_rate"]["value"] == pytest.approx(0.4)
    assert summary["pass_at_k"]["pass@1"]["value"] == pytest.approx(0.4)
    assert summary["pass_at_k"]["pass@5"]["value"] == 1.0
    assert summary["pass_at_k_skipped"] == ["pass@10"]
    low, high = summary["pass_at_k"]["pass@1"]["ci95"]
    assert 0 < low < 0.4 < high < 1
    assert summary["mean_turns"] == pytest.approx(25 / 10) and summary["completion_tokens"] == 250


def test_select_problems_by_ids_and_limit() -> None:
    assert [p.task_id for p in select_problems(PROBLEMS, ids=["half", "inc"])] == ["inc", "half"]
    assert [p.task_id for p in select_problems(PROBLEMS, limit=2)] == ["inc", "neg"]
    assert [p.task_id for p in select_problems(PROBLEMS, limit=1, ids=["half", "neg"])] == ["neg"]
    with pytest.raises(DataError, match="unknown task id 'nope'"):
        select_problems(PROBLEMS, ids=["nope"])
    with pytest.raises(ConfigError, match="limit must be an integer >= 1"):
        select_problems(PROBLEMS, limit=0)


def test_derive_seed_is_stable_and_31_bit() -> None:
    assert derive_seed(0, "11", 2, 1) == derive_seed(0, "11", 2, 1)
    assert len({derive_seed(0, "11", rollout, turn) for rollout in range(20) for turn in range(1, 4)}) == 60
    assert all(0 <= derive_seed(seed, "x", 0, 1) < 2**31 for seed in range(100))


@pytest.mark.parametrize(("args", "message"), [
    (["--rollouts", "0"], "rollouts must be an integer >= 1, got 0"),
    (["--stop-on", "never"], "EpisodeConfig.stop_on must be one of public, oracle"),
    (["--temperature", "-1"], "sampling temperature must be >= 0"),
    (["--backend", "nope"], "unknown backend 'nope'"),
])
def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                 message: str) -> None:
    problems = tmp_path / "problems.jsonl"
    problems.write_text(json.dumps({"task_id": "t", "prompt": "p", "entry_point": None,
                                    "public_tests": ["assert True"], "private_tests": []}) + "\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["rollout", "--model", "m", "--dataset", str(problems), "--out", str(tmp_path / "run"), *args])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error


def test_cli_rollout_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    from mucode.problems import write_custom

    write_custom(PROBLEMS, tmp_path / "problems.jsonl")
    monkeypatch.setattr("mucode.rollout.load_backend", lambda kind, model: ScriptedBackend(model, SCRIPT))
    with pytest.raises(SystemExit) as exit_info:
        main(["rollout", "--model", "m", "--dataset", str(tmp_path / "problems.jsonl"), "--rollouts", "2",
              "--ids", "inc,half", "--seed", "3", "--workers", "2", "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 0
    output = capsys.readouterr().out
    for text in ("trajectories", "4 (2 tasks)", "success within 3 turns", "pass@1", "mean turns", "tokens/s"):
        assert text in output
    assert {r["task_id"] for r in read_records(tmp_path / "run")} == {"inc", "half"}


@pytest.mark.slow
def test_real_model_rollouts_and_search(tmp_path: Path, sandbox: Sandbox, smollm2_gguf: Path) -> None:
    """SmolLM2-135M through llama.cpp on two MBPP prompt-split problems: records are complete and consistent."""
    from mucode.backends import load_backend
    from mucode.problems import load_problems
    from mucode.search import SearchConfig, search_steps

    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed")
    backend = load_backend("llamacpp", str(smollm2_gguf))
    problems = load_problems("mbpp", "prompt")[:2]
    with backend:
        summary = run_rollouts(problems, backend, sandbox, rollouts=2, turns=2, out_dir=tmp_path, progress=False,
                               params=SamplingParams(n=1, temperature=0.7, max_tokens=128, seed=0))
        [records] = [list(batch) for batch in search_steps([(problems[0], 0)], backend, sandbox,
                                                            SearchConfig(n=2, turns=1, max_tokens=128))]
    assert summary["trajectories"] == 4 and summary["completion_tokens"] > 0
    assert summary["throughput"]["tokens_per_second"] > 0
    for record in read_records(tmp_path):
        assert all(info["completion_tokens"] > 0 for info in record["generation"])
        assert Episode.from_dict(record, next(p for p in problems if p.task_id == record["task_id"])).done
    assert len(records[0].turns[0].candidates) == 2
