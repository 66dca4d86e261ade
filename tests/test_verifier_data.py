"""mucode.verifier.data: examples from trajectory records, seeded BT pairs, aggregation of rollout runs.

The run folders here are written by the real `run_rollouts` (scripted replies, a sandbox that knows which codes
are right), so the records have exactly the format `mucode rollout` writes. Other verifier tests import
`write_run` and `OracleSandbox` from this module.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from mucode.backends import SamplingParams
from mucode.env import build_prompt, extract_code
from mucode.errors import ConfigError, DataError
from mucode.problems import dataset_fingerprint
from mucode.records import read_trajectories
from mucode.rollout import run_rollouts
from mucode.types import ExecResult, Problem, TestStatus, TestVerdict
from mucode.verifier import Example, examples_from_record, load_rollouts, make_pairs
from mucode.verifier.data import data_summary, problem_sets
from tests.scripted_backend import PROBLEMS, RIGHT, TRAP, WRONG, ScriptedBackend, fenced

NO_CODE = "I am not sure how to do this."
SCRIPT = {
    ("inc", 1): [WRONG["inc"], RIGHT["inc"], TRAP["inc"]], ("inc", 2): [RIGHT["inc"], NO_CODE],
    ("inc", 3): [RIGHT["inc"], WRONG["inc"]],
    ("neg", 1): [RIGHT["neg"], TRAP["neg"], WRONG["neg"]], ("neg", 2): [TRAP["neg"], RIGHT["neg"]],
    ("neg", 3): [RIGHT["neg"], WRONG["neg"]],
    ("half", 1): [TRAP["half"], WRONG["half"]], ("half", 2): [fenced("def half(x):\n    return x - 1")],
    ("half", 3): [WRONG["half"]],
}
SOURCE = {"dataset": "scripted", "split": "test", "policy": "eval", "fingerprint": dataset_fingerprint(PROBLEMS)}


def code_of(reply: str) -> str:
    code = extract_code(reply).code
    assert code is not None
    return code


class OracleSandbox:
    """Stands in for the sandbox: RIGHT codes pass every test, TRAP codes only the (first, public) one."""

    isolation = "none"

    def __init__(self) -> None:
        self.right = {code_of(reply) for reply in RIGHT.values()}
        self.trap = {code_of(reply) for reply in TRAP.values()}

    def run_many(self, jobs: list) -> list[ExecResult]:
        return [self._result(job.code, len(job.tests)) for job in jobs]

    def _result(self, code: str, tests: int) -> ExecResult:
        passing = tests if code in self.right else 1 if code in self.trap else 0
        verdicts = [TestVerdict(TestStatus.PASSED)] * passing
        verdicts += [TestVerdict(TestStatus.FAILED, "AssertionError")] * (tests - passing)
        return ExecResult(tuple(verdicts), isolation=self.isolation)


def write_run(out: Path, *, rollouts: int = 6, seed: int = 3, script: Mapping | None = None,
              source: Mapping | None = None, template: str = "paper", problems: Sequence[Problem] = PROBLEMS) -> Path:
    """A rollout run folder over the scripted problems, written by `run_rollouts`."""
    run_rollouts(problems, ScriptedBackend("scripted", script or SCRIPT), OracleSandbox(), rollouts=rollouts, turns=3,
                 params=SamplingParams(n=1, temperature=0.7, max_tokens=100, seed=seed), template=template,
                 out_dir=out, progress=False, source=source or SOURCE)
    return out


def records_of(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "trajectories.jsonl").read_text().splitlines()]


def example(task_id: str, label: bool, code: str) -> Example:
    return Example(task_id=task_id, prompt=f"prompt of {task_id}", code=code, label=label, run="r", rollout=0, turn=1)


# ---------------------------------------------------------------------------------------------- examples


def test_every_code_is_an_example_and_only_the_final_one_can_be_positive(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    records = records_of(run)
    data = load_rollouts([run])
    assert len(data.examples) == data.runs[0].examples
    for record in records:
        mine = [e for e in data.examples if (e.task_id, e.rollout) == (record["task_id"], record["rollout"])]
        coded = [turn for turn in record["turns"] if turn["code"] is not None]
        assert [e.code for e in mine] == [turn["code"] for turn in coded]
        assert [e.turn for e in mine] == [turn["number"] for turn in coded]
        assert all(e.prompt == record["messages"][0]["content"] for e in mine)
        for e in mine:  # intermediate codes fail; the last one carries the trajectory's label
            assert e.label == (record["success"] and e.turn == len(record["turns"]))
    assert any(e.label for e in data.examples) and not all(e.label for e in data.examples)
    no_code = sum(turn["code"] is None for record in records for turn in record["turns"])
    assert no_code > 0 and data.runs[0].no_code == no_code  # no-code turns are skipped, and counted
    problem = next(p for p in PROBLEMS if p.task_id == "inc")
    assert next(e for e in data.examples if e.task_id == "inc").prompt == build_prompt(problem, "paper")


def test_hand_made_record_gives_intermediate_failures_and_a_labelled_final_code(tmp_path: Path) -> None:
    real = read_trajectories(write_run(tmp_path / "run", rollouts=1) / "trajectories.jsonl")[0]
    turns = tuple(replace(real.turns[0], code=code, number=number)
                  for number, code in enumerate(["def f(): return 0", None, "def f(): return 1"], start=1))
    record = replace(real, task_id="7", rollout=2, success=True, turns=turns,
                     messages=({"role": "user", "content": "Write f."}, {"role": "assistant", "content": "..."}))
    assert examples_from_record(record, "runs/a") == [
        Example("7", "Write f.", "def f(): return 0", False, "runs/a", 2, 1),
        Example("7", "Write f.", "def f(): return 1", True, "runs/a", 2, 3)]
    assert [e.label for e in examples_from_record(replace(record, success=False), "runs/a")] == [False, False]


def test_a_malformed_trajectory_line_names_its_file_and_line(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", rollouts=1)
    log = run / "trajectories.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text(lines[0] + json.dumps({"task_id": "7"}) + "\n")
    with pytest.raises(DataError, match=r"run/trajectories.jsonl:2: not a Trajectory record \(missing rollout, "):
        load_rollouts([run])


# ------------------------------------------------------------------------------------------------- pairs


def test_pairs_are_positive_negative_within_a_problem_seeded_and_deterministic() -> None:
    examples = ([example("a", True, f"a+{i}") for i in range(2)] + [example("a", False, f"a-{i}") for i in range(5)]
                + [example("b", True, "b+0"), example("b", False, "b-0")])
    pairs = make_pairs(examples, pairs_per_problem=32, seed=1)
    assert Counter(pair.chosen.task_id for pair in pairs) == {"a": 32, "b": 32}
    assert all(pair.chosen.label and not pair.rejected.label for pair in pairs)
    assert all(pair.chosen.task_id == pair.rejected.task_id for pair in pairs)
    assert make_pairs(examples, 32, seed=1) == pairs
    assert make_pairs(examples, 32, seed=2) != pairs
    # with replacement and uniform: every negative of "a" shows up among 32 draws
    assert {pair.rejected.code for pair in pairs if pair.chosen.task_id == "a"} == {f"a-{i}" for i in range(5)}
    # a problem's pairs do not depend on the other problems
    assert [p for p in pairs if p.chosen.task_id == "b"] == make_pairs(examples[-2:], 32, seed=1)


def test_problems_without_a_positive_or_a_negative_give_no_pairs() -> None:
    examples = [example("only-wrong", False, "x"), example("only-wrong", False, "y"), example("only-right", True, "z"),
                example("both", True, "r"), example("both", False, "w")]
    pairs = make_pairs(examples, pairs_per_problem=4, seed=0)
    assert {pair.chosen.task_id for pair in pairs} == {"both"} and len(pairs) == 4
    assert make_pairs(examples[:3], 4) == []
    assert data_summary(examples, pairs) == {"examples": 5, "positives": 2, "problems": 3,
                                             "problems_with_both_labels": 1, "pairs": 4}
    with pytest.raises(ConfigError, match="pairs_per_problem must be an integer >= 1"):
        make_pairs(examples, 0)


def test_pairs_are_drawn_per_iteration_and_concatenated() -> None:
    """The reference draws 32 pairs per problem from each iteration's rollouts and concatenates the sets: a
    problem rolled out in two iterations gives 64 pairs, and no pair mixes codes of two iterations."""
    def iteration(run: str) -> list[Example]:
        return [replace(example("a", label, f"{run}{'+' if label else '-'}{i}"), run=run)
                for i, label in enumerate([True, False, False])]

    first, second = iteration("iteration-0"), iteration("iteration-1")
    pairs = make_pairs(first + second, pairs_per_problem=32, seed=1)
    assert Counter(pair.chosen.run for pair in pairs) == {"iteration-0": 32, "iteration-1": 32}
    assert all(pair.chosen.run == pair.rejected.run for pair in pairs)
    # an iteration whose codes are all wrong adds nothing; the first iteration's pairs do not depend on later ones
    all_wrong = [replace(e, label=False, run="iteration-2") for e in second]
    assert make_pairs(first + all_wrong, 32, seed=1) == make_pairs(first, 32, seed=1) == pairs[:32]


def test_problem_sets_hold_each_runs_distinct_codes_of_problems_with_both_labels() -> None:
    codes = [example("a", True, "right"), example("a", True, "right"), example("a", False, "wrong"),
             example("a", False, "other"), example("b", False, "x"), replace(example("a", True, "later"), run="s")]
    sets = problem_sets(codes)
    assert [([e.code for e in s.positives], [e.code for e in s.negatives]) for s in sets] == [
        (["right"], ["wrong", "other"])]  # b has no positive; run s has no negative
    assert sets[0].pairs == 2
    assert data_summary(codes, sets=sets) == {"examples": 6, "positives": 3, "problems": 2,
                                              "problems_with_both_labels": 1, "problem_sets": 1, "codes": 3,
                                              "pairs": 2}
    many = [example("c", i < 2, f"code {i}") for i in range(30)]
    [capped] = problem_sets(many, max_codes=5, seed=1)
    assert len(capped.positives) + len(capped.negatives) == 5 and capped.positives and capped.negatives
    assert problem_sets(many, max_codes=5, seed=1) == [capped] != problem_sets(many, max_codes=5, seed=2)


# ------------------------------------------------------------------------------------------------- runs


def test_runs_aggregate_and_record_their_fingerprint(tmp_path: Path) -> None:
    first, second = write_run(tmp_path / "a", seed=3), write_run(tmp_path / "b", seed=4)
    one, two = load_rollouts([first]), load_rollouts([second])
    both = load_rollouts([first, second])
    assert both.examples == one.examples + two.examples
    assert {e.run for e in both.examples} == {str(first), str(second)}
    assert [run["path"] for run in both.fingerprint()] == [str(first), str(second)]
    assert both.runs[0].sha256 != both.runs[1].sha256 and len(both.runs[0].sha256) == 64
    assert both.runs[0].source == SOURCE and both.template == "paper"
    # the pairs of the aggregate draw from both runs' codes
    pairs = make_pairs(both.examples, 64, seed=1)
    assert {pair.rejected.run for pair in pairs} == {str(first), str(second)}


def test_runs_of_different_datasets_may_not_share_task_ids(tmp_path: Path) -> None:
    first = write_run(tmp_path / "a")
    other = write_run(tmp_path / "b", source={**SOURCE, "dataset": "elsewhere", "fingerprint": "f" * 64})
    with pytest.raises(ConfigError, match=r"are from different datasets but share task id 'half'"):
        load_rollouts([first, other])


def test_bad_run_folders_are_one_line_errors(tmp_path: Path) -> None:
    base = write_run(tmp_path / "base")
    cases = [([tmp_path / "missing"], r"missing is not a rollout run folder \(no trajectories.jsonl\)"),
             ([base, base], "is given twice"),
             ([base, write_run(tmp_path / "short", template="short")], "different prompt templates")]
    for runs, message in cases:
        with pytest.raises(ConfigError, match=message) as error:
            load_rollouts(runs)
        assert "\n" not in str(error.value)


def test_a_run_folder_that_is_not_a_rollout_run_is_refused(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    (run / "config.json").write_text(json.dumps({"format": "mucode.eval/1"}))
    with pytest.raises(ConfigError, match=r"is not a rollout run folder \(config.json format is 'mucode.eval/1'"):
        load_rollouts([run])
    with pytest.raises(ConfigError, match="no rollout run folders given"):
        load_rollouts([])
