"""mucode.verifier.metrics: pairwise accuracy, AUROC and selection accuracy at k, against hand counts and brute
force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mucode.verifier.data import Example, RolloutData, RunInfo
from mucode.verifier.evaluate import heldout_metrics
from mucode.verifier.metrics import (
    auroc,
    average_ranks,
    expected_picks,
    fig4_selection,
    pairwise_accuracy,
    selection_accuracy,
    verifier_metrics,
)


def group(scores: list[float], labels: list[int]) -> tuple[np.ndarray, np.ndarray]:
    return np.array(scores, dtype=float), np.array(labels, dtype=bool)


def test_pairwise_accuracy_counts_pairs_within_problems_with_ties_as_half() -> None:
    groups = {"a": group([3.0, 1.0, 2.0, 3.0], [1, 0, 0, 0]),  # pairs: 3>1, 3>2, 3=3 -> 2.5 of 3
              "b": group([0.0, 1.0], [1, 0]),  # 0 of 1
              "c": group([5.0, 6.0], [0, 0])}  # no positive: no pairs
    result = pairwise_accuracy(groups)
    assert result == {"micro": pytest.approx(2.5 / 4), "macro": pytest.approx((2.5 / 3 + 0) / 2), "pairs": 4,
                      "problems": 2}
    assert pairwise_accuracy({"c": groups["c"]}) == {"micro": None, "macro": None, "pairs": 0, "problems": 0}


def test_auroc_is_the_pooled_rank_statistic() -> None:
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, size=40).astype(float)  # many ties
    labels = rng.random(40) < 0.4
    positives, negatives = scores[labels], scores[~labels]
    brute = np.mean([(p > n) + 0.5 * (p == n) for p, n in itertools.product(positives, negatives)])
    assert auroc(scores, labels) == pytest.approx(brute)
    assert auroc(np.array([1.0, 2.0]), np.array([False, True])) == 1.0
    assert auroc(np.array([1.0, 2.0]), np.array([True, True])) is None
    assert average_ranks(np.array([10.0, 20.0, 10.0, 5.0])).tolist() == [2.5, 4.0, 2.5, 1.0]


def test_selection_accuracy_of_a_perfect_a_constant_and_an_inverted_verifier() -> None:
    labels = [1, 0, 0, 0, 1, 0]
    perfect = {"p": group([1, 0, 0, 0, 1, 0], labels), "q": group([0.1, 0.5, 0.2], [0, 1, 0])}
    result = selection_accuracy(perfect, k=2)
    assert result["problems"] == 2 and result["verifier"] == pytest.approx(result["oracle"])
    # random pick = the fraction correct; oracle = P(a 2-subset holds a correct code) = 1 - C(neg, 2) / C(n, 2)
    assert result["random"] == pytest.approx((2 / 6 + 1 / 3) / 2)
    assert result["oracle"] == pytest.approx((1 - 6 / 15 + 1 - 1 / 3) / 2)
    assert result["lead"] == pytest.approx(100 * (result["verifier"] - result["random"]))
    constant = selection_accuracy({"p": group([0.0] * 6, labels)}, k=4)
    assert constant["verifier"] == pytest.approx(constant["random"])  # ties broken uniformly
    inverted = selection_accuracy({"p": group([-x for x in labels], labels)}, k=2)
    assert inverted["verifier"] == pytest.approx(1 / 15)  # wrong unless both codes are right
    assert selection_accuracy(perfect, k=8) == {"verifier": None, "random": None, "oracle": None, "problems": 0,
                                                "lead": None, "lead_ci95": None}


def brute_force_picks(scores: np.ndarray, labels: np.ndarray, k: int) -> tuple[float, float, float]:
    """Every k-subset enumerated; the verifier's pick is uniform among the subset's top-scored codes."""
    verifier, random_pick, oracle = [], [], []
    for subset in itertools.combinations(range(len(scores)), k):
        best = max(scores[i] for i in subset)
        verifier.append(np.mean([labels[i] for i in subset if scores[i] == best]))
        random_pick.append(np.mean([labels[i] for i in subset]))
        oracle.append(any(labels[i] for i in subset))
    return float(np.mean(verifier)), float(np.mean(random_pick)), float(np.mean(oracle))


def test_exact_picks_equal_enumerating_every_subset_with_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(30):
        n = int(rng.integers(1, 9))
        scores, labels = rng.integers(0, 3, size=n).astype(float), rng.random(n) < 0.4  # many ties
        for k in range(1, n + 1):
            assert expected_picks(scores, labels, k) == pytest.approx(brute_force_picks(scores, labels, k))


def test_fig4_selection_uses_one_problem_set_for_every_k_on_a_hand_made_fixture() -> None:
    top_right = group([8, 7, 6, 5, 4, 3, 2, 1], [1, 0, 0, 0, 0, 0, 0, 0])  # the best-scored code is the right one
    all_wrong = group([1, 2, 3, 4, 5, 6, 7, 8], [0] * 8)
    tied = group([0.0] * 8, [1, 1, 1, 1, 0, 0, 0, 0])  # a constant verifier: a random pick
    small = group([1.0, 0.0, 0.5, 0.2], [1, 0, 0, 0])  # 4 candidates: not in the k <= 8 set
    result = fig4_selection({"a": top_right, "b": all_wrong, "c": small, "d": tied}, ks=(1, 2, 4, 8), seed=0)
    assert result["problems"] == ["a", "b", "d"] and result["min_candidates"] == 8
    assert result["problems_with_both_labels"] == 2
    # a: right iff the right code is in the subset, 1 - C(7, k) / C(8, k): 1/8, 1/4, 1/2, 1 at k = 1, 2, 4, 8
    for k, a in {"1": 1 / 8, "2": 1 / 4, "4": 1 / 2, "8": 1.0}.items():
        row = result["selection"][k]
        assert row["problems"] == 3
        assert row["verifier"] == pytest.approx((a + 0 + 1 / 2) / 3)
        assert row["random"] == pytest.approx((1 / 8 + 0 + 1 / 2) / 3)
        assert row["lead"] == pytest.approx(100 * (a - 1 / 8) / 3)
    assert result["selection"]["2"]["oracle"] == pytest.approx((1 / 4 + 0 + 1 - 6 / 28) / 3)
    assert result["selection_mixed"]["2"]["verifier"] == pytest.approx((1 / 4 + 1 / 2) / 2)


def test_lead_intervals_are_seeded_bootstraps_over_problems() -> None:
    rng = np.random.default_rng(1)
    groups = {f"p{i}": group(list(rng.random(6)), list(rng.random(6) < 0.5)) for i in range(40)}
    row = selection_accuracy(groups, k=4, seed=3)
    low, high = row["lead_ci95"]
    assert low < row["lead"] < high
    assert selection_accuracy(groups, k=4, seed=3) == row
    assert selection_accuracy(groups, k=4, seed=4)["lead_ci95"] != row["lead_ci95"]
    # one problem: every resample is that problem, so the interval is a point
    one = selection_accuracy({"p0": groups["p0"]}, k=4)
    assert one["lead_ci95"] == pytest.approx([one["lead"], one["lead"]])


def test_verifier_metrics_bundle_counts_and_every_k() -> None:
    groups = {"a": group([0.9, 0.1, 0.3, 0.2], [1, 0, 0, 0]), "b": group([0.5, 0.4], [0, 1])}
    metrics = verifier_metrics(groups, ks=(2, 4), seed=0)
    assert (metrics["examples"], metrics["positives"], metrics["problems"]) == (6, 2, 2)
    assert metrics["auroc"] == pytest.approx(7 / 8)  # pooled: 0.4 is below b's own 0.5, above a's negatives
    assert metrics["pairwise_accuracy"]["micro"] == pytest.approx(3 / 4)
    assert metrics["pairwise_accuracy"]["macro"] == pytest.approx(1 / 2)
    assert metrics["selection"]["2"]["verifier"] == pytest.approx((1 / 2 + 0) / 2)  # a: right iff 1 is drawn
    assert metrics["selection"]["4"] == {"verifier": 1.0, "random": 0.25, "oracle": 1.0, "problems": 1,
                                         "lead": 75.0, "lead_ci95": [75.0, 75.0]}
    assert metrics["selection_mixed"] == metrics["selection"]  # both problems have both labels
    with_easy = {**groups, "c": group([0.1, 0.2, 0.3, 0.4], [1, 1, 1, 1])}
    diluted = verifier_metrics(with_easy, ks=(2, 4), seed=0)
    assert diluted["selection_mixed"] == metrics["selection"]  # c, all correct, only enters `selection`
    assert diluted["selection"]["4"]["verifier"] == 1.0 and diluted["selection"]["4"]["random"] == 0.625


def test_heldout_metrics_leave_placeholder_echoes_and_later_turns_out_where_they_should() -> None:
    def code(task_id: str, rollout: int, turn: int, text: str, label: bool) -> Example:
        return Example(task_id=task_id, prompt=f"prompt {task_id}", code=text, label=label, run="r", rollout=rollout,
                       turn=turn)

    examples = [code("a", 0, 1, "def f(): return 1", True), code("a", 1, 1, "<CODE GOES HERE>", False),
                code("a", 2, 1, "def f(): return 0", False), code("a", 2, 2, "def f(): return 2", True),
                code("b", 0, 1, "  code\n", False), code("b", 1, 1, "def g(): pass", False)]
    run = RunInfo(path="r", sha256="0" * 64, source={}, template="paper", trajectories=5, examples=6, no_code=2)
    scores = [0.9, -5.0, 0.5, 0.7, -4.0, 0.1]
    metrics = heldout_metrics(RolloutData(tuple(examples), (run,)), scores, ks=(2,), seed=0)
    assert metrics["real"]["examples"] == 4 and metrics["all"]["examples"] == 6
    assert metrics["real"]["auroc"] == 1.0  # 0.9, 0.7 above 0.5, 0.1
    assert metrics["excluded"] == {"placeholder_echoes": {"count": 2, "mean_fraction_ranked_below": 0.0},
                                   "no_code_turns": 2}
    # three rollouts per problem at most, so Best-of-k for k = 1, 2; a has two real first-turn codes, b one
    first = metrics["first_turn"]
    assert first["min_candidates"] == 2 and first["problems"] == ["a"] and set(first["selection"]) == {"1", "2"}
    assert first["selection"]["2"]["verifier"] == 1.0  # 0.9 (right) above 0.5 (wrong); turn 2's 0.7 is not in
