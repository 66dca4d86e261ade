"""mucode.expert on hand-made trajectories: the three μCode variants, the reference's options, the RFT baselines."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from mucode.backends.base import SamplingParams
from mucode.env import EpisodeConfig, Turn
from mucode.errors import ConfigError, DataError
from mucode.expert import ExpertConfig, SFTExample, build_examples, candidate_codes, pick_target, summarize_examples
from mucode.records import Trajectory

PROMPT = {"role": "user", "content": "Write f."}


def turn(code: str, passed: bool, public: bool | None = None) -> Turn:
    """A committed turn with the given code and oracle verdicts (the number is set by `trajectory`)."""
    return Turn(task_id="", reply=f"Here:\n```python\n{code}\n```", extraction="fenced", extraction_note="",
                code=code, public=(), private=(), public_passed=passed if public is None else public,
                private_passed=passed, feedback="", private_feedback="", duration=0.0, number=0)


def trajectory(task_id: str, rollout: int, *turns: Turn) -> Trajectory:
    messages = [PROMPT]
    for number, item in enumerate(turns, 1):
        messages.append({"role": "assistant", "content": item.reply})
        if number < len(turns):
            messages.append({"role": "user", "content": f"Feedback:\nerror {number}"})
    numbered = tuple(replace(item, task_id=task_id, number=number) for number, item in enumerate(turns, 1))
    return Trajectory(task_id=task_id, rollout=rollout, config=EpisodeConfig(), messages=tuple(messages),
                      turns=numbered, done=True, success=turns[-1].passed, backend="test", model_id="test",
                      sampling=SamplingParams(), seed=0, generation=())


# Task "1": rollout 0 fails twice then succeeds with "good"; rollout 1 fails three times ("bad1" passes the
# public test only); rollout 2 fails three times. Task "2": nothing correct.
RECORDS = [
    trajectory("1", 0, turn("a", False), turn("b", False), turn("good", True)),
    trajectory("1", 1, turn("bad1", False, public=True), turn("c", False), turn("d", False)),
    trajectory("1", 2, turn("e", False), turn("f", False), turn("g", False)),
    trajectory("2", 0, turn("x", False), turn("y", False), turn("z", False)),
    trajectory("2", 1, turn("w", False), turn("", False), turn("v", False)),
]
SCORES = {("1", code): score for code, score in
          {"a": 0.1, "b": 0.2, "good": 0.3, "bad1": 5.0, "c": 0.0, "d": 0.4, "e": -1.0, "f": 2.0, "g": 1.0}.items()}
SCORES |= {("2", code): score for code, score in {"x": 0.0, "y": 3.0, "z": 1.0, "w": 9.0, "v": -2.0}.items()}


def targets(examples: list[SFTExample], task_id: str) -> list[tuple[int, str, str]]:
    """(state length in messages, target code, kind) for one task."""
    return [(len(e.messages), e.target_code, e.kind) for e in examples if e.task_id == task_id]


def test_mucode_relabels_every_visited_state_with_the_oracle_first_target() -> None:
    examples = build_examples(RECORDS, ExpertConfig("mucode"), SCORES)
    # the paper (Eq. 5): all 3 trajectories get y* = "good" at all 3 states, although "bad1" has a far higher
    # verifier score (β_O = 1 outweighs 0.1 × 5.0 = 0.5)
    assert targets(examples, "1") == [(length, "good", "relabelled") for length in (1, 3, 5)] * 3
    # no correct code: the verifier's favourite incorrect code ("w", 9.0) is the target (dense signal)
    assert {e.target_code for e in examples if e.task_id == "2"} == {"w"}
    assert all(not e.target_passed for e in examples if e.task_id == "2")
    states = [e.messages for e in examples if e.task_id == "1" and e.kind == "relabelled"]
    assert states[4][-1]["content"] == "Feedback:\nerror 1" and states[4][1]["content"].endswith("bad1\n```")


def test_relabel_failed_keeps_the_successes_own_final_reply() -> None:
    examples = build_examples(RECORDS, ExpertConfig("mucode", relabel="failed"), SCORES)
    # the released code: the success keeps its own (correct) final reply at its 3 states, both failed
    # trajectories get y* at all 3
    assert targets(examples, "1") == [(1, "good", "own"), (3, "good", "own"), (5, "good", "own")] + \
        [(length, "good", "relabelled") for length in (1, 3, 5)] * 2
    assert {e.target_code for e in examples if e.task_id == "2"} == {"w"}


def test_relabel_all_and_failed_differ_where_a_success_took_other_replies() -> None:
    records = [trajectory("1", 0, turn("slow", True)), trajectory("1", 1, turn("x", False), turn("best", True))]
    scores = {("1", "slow"): 0.0, ("1", "x"): 0.0, ("1", "best"): 1.0}
    every = build_examples(records, ExpertConfig("mucode"), scores)
    assert {e.target_code for e in every} == {"best"} and len(every) == 3
    failed_only = build_examples(records, ExpertConfig("mucode", relabel="failed"), scores)
    assert [e.target_code for e in failed_only] == ["slow", "best", "best"]  # no failed trajectory: own replies


def test_target_reply_is_the_reply_that_carried_the_code() -> None:
    example = build_examples(RECORDS, ExpertConfig("mucode"), SCORES)[3]
    assert example.target == "Here:\n```python\ngood\n```" and example.messages == (PROMPT,)


def test_mucode_lv_follows_the_verifier_alone() -> None:
    examples = build_examples(RECORDS, ExpertConfig("mucode-lv"), SCORES)
    assert {e.target_code for e in examples if e.task_id == "1"} == {"bad1"}  # 5.0 beats the correct "good" (0.3)
    assert all(e.kind == "relabelled" for e in examples)  # the success, too: which one succeeded is not read


def flip_oracle(record: Trajectory) -> Trajectory:
    """The same trajectory with every oracle label inverted."""
    turns = tuple(replace(item, public_passed=not item.public_passed, private_passed=not item.private_passed)
                  for item in record.turns)
    return replace(record, turns=turns, success=not record.success)


def test_mucode_lv_never_reads_the_oracle() -> None:
    """Where oracle and verifier disagree, inverting every oracle label changes nothing LV trains on."""
    def trained_on(records: list[Trajectory]) -> list[tuple[Any, ...]]:
        return [(e.task_id, e.messages, e.target, e.kind)
                for e in build_examples(records, ExpertConfig("mucode-lv"), SCORES)]

    assert trained_on(RECORDS) == trained_on([flip_oracle(record) for record in RECORDS])
    # μCode itself does read it: the flipped labels move its target
    mucode = {e.target_code for e in build_examples([flip_oracle(r) for r in RECORDS], ExpertConfig("mucode"),
                                                    SCORES) if e.task_id == "1"}
    assert mucode != {"good"}


def test_mucode_ov_needs_no_scores_and_skips_tasks_without_a_correct_code() -> None:
    examples = build_examples(RECORDS, ExpertConfig("mucode-ov"))
    assert {e.target_code for e in examples if e.task_id == "1"} == {"good"}
    assert [e for e in examples if e.task_id == "2"] == []


def test_explicit_betas_override_the_method() -> None:
    examples = build_examples(RECORDS, ExpertConfig("mucode", beta_oracle=1.0, beta_verifier=1.0), SCORES)
    assert {e.target_code for e in examples if e.task_id == "1" and e.kind == "relabelled"} == {"bad1"}


def test_reference_options_final_candidates_and_top_scored_relabelling() -> None:
    config = ExpertConfig("mucode", beta_oracle=0.0, beta_verifier=1.0, candidates="final", relabel="top-scored",
                          relabel_count=1)
    examples = build_examples(RECORDS, config, SCORES)
    # candidates are final codes only ("good" 0.3, "d" 0.4, "g" 1.0): y* = "g"; only the best-scored failed
    # trajectory (rollout 2, final "g" = 1.0 > "d" = 0.4) is relabelled
    relabelled = [e for e in examples if e.task_id == "1" and e.kind == "relabelled"]
    assert {e.target_code for e in relabelled} == {"g"} and len(relabelled) == 3
    assert relabelled[1].messages[1]["content"].endswith("e\n```")  # rollout 2's states


def test_rft_baselines() -> None:
    single = build_examples(RECORDS, ExpertConfig("rft-single"))
    assert single == []  # no first turn passed
    first_turn_pass = [trajectory("3", 0, turn("ok", True))]
    assert [e.target_code for e in build_examples(first_turn_pass, ExpertConfig("rft-single"))] == ["ok"]
    paper = build_examples(RECORDS, ExpertConfig("rft-multi"))
    assert [(len(e.messages), e.target_code, e.target_passed) for e in paper] == [
        (1, "a", False), (3, "b", False), (5, "good", True)]  # its own actions, incorrect ones included
    hindsight = build_examples(RECORDS, ExpertConfig("rft-multi-hindsight"))
    assert [(len(e.messages), e.target_code) for e in hindsight] == [(1, "good"), (3, "good"), (5, "good")]
    top = build_examples(RECORDS, ExpertConfig("rft-lv", top_k=1), SCORES)
    assert {e.target_code for e in top if e.task_id == "1"} == {"e", "f", "g"}  # rollout 2: final "g" = 1.0


def test_scored_methods_need_every_candidate_scored() -> None:
    with pytest.raises(ConfigError, match="needs verifier scores"):
        build_examples(RECORDS, ExpertConfig("mucode"))
    partial = {key: value for key, value in SCORES.items() if key != ("1", "c")}
    with pytest.raises(DataError, match="no verifier score for a code of task 1"):
        build_examples(RECORDS, ExpertConfig("mucode"), partial)


def test_candidate_codes_are_distinct_and_skip_empty() -> None:
    codes = candidate_codes(RECORDS)
    assert codes["1"] == ["a", "b", "good", "bad1", "c", "d", "e", "f", "g"]
    assert codes["2"] == ["x", "y", "z", "w", "v"]
    assert candidate_codes(RECORDS, "final")["1"] == ["good", "d", "g"]


def test_pick_target_keeps_the_first_of_ties() -> None:
    from mucode.expert import Candidate

    first, second = Candidate("1", "p", "rp", True, 1.0), Candidate("1", "q", "rq", True, 1.0)
    assert pick_target([first, second], 1.0, 0.1) is first


@pytest.mark.parametrize(("fields", "message"), [
    ({"method": "star"}, "unknown method 'star'"),
    ({"candidates": "some"}, "expert.candidates"),
    ({"relabel_count": 0}, "relabel_count must be at least 1"),
    ({"relabel": "some"}, "expert.relabel: 'some' is not one of: all, failed, top-scored"),
    ({"method": "mucode-ov", "beta_verifier": 0.1}, "expert.beta_verifier: method mucode-ov does not take it"),
    ({"method": "mucode-lv", "beta_oracle": 1.0}, "expert.beta_oracle: method mucode-lv does not take it"),
    ({"method": "rft-multi", "beta_oracle": 1.0}, "expert.beta_oracle: method rft-multi does not take it"),
    ({"method": "mucode-lv", "relabel": "failed"}, "mucode-lv relabels every state"),
    ({"beta_verifier": -1.0}, "expert.beta_verifier must be >= 0"),
])
def test_config_errors_name_the_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ExpertConfig(**fields)


def test_examples_round_trip_and_summary() -> None:
    examples = build_examples(RECORDS, ExpertConfig("mucode"), SCORES)
    assert [SFTExample.from_dict(e.to_dict()) for e in examples] == examples
    assert len({e.key for e in examples}) < len(examples)  # the two failed trajectories share state s_1
    assert summarize_examples(examples) == {"examples": 15, "tasks": 2, "relabelled": 15, "own": 0,
                                            "correct_targets": 9}


def test_malformed_trajectory_is_a_data_error() -> None:
    broken = trajectory("1", 0, turn("a", False), turn("good", True))
    broken = replace(broken, messages=broken.messages[:1])
    with pytest.raises(DataError, match="trajectory 1/0: messages do not alternate"):
        build_examples([broken], ExpertConfig("rft-multi"))
