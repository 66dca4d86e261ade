"""mucode.verifier.metrics: pairwise accuracy, AUROC and selection accuracy at k, against hand counts and brute
force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mucode.verifier.metrics import auroc, average_ranks, pairwise_accuracy, selection_accuracy, verifier_metrics


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
    result = selection_accuracy(perfect, k=2, subsets=500, seed=3)
    assert result["problems"] == 2 and result["verifier"] == pytest.approx(result["oracle"])
    # random pick = the fraction correct (exactly, per subset); oracle = P(a subset holds a correct code)
    assert result["random"] == pytest.approx((2 / 6 + 1 / 3) / 2, abs=0.03)
    assert result["oracle"] == pytest.approx((1 - 6 / 15 + 1 - 1 / 3) / 2, abs=0.03)
    constant = selection_accuracy({"p": group([0.0] * 6, labels)}, k=4, subsets=2000, seed=0)
    assert constant["verifier"] == pytest.approx(constant["random"], abs=0.03)  # ties broken at random
    inverted = selection_accuracy({"p": group([-x for x in labels], labels)}, k=2, subsets=200, seed=0)
    assert inverted["verifier"] == pytest.approx(1 / 15, abs=0.04)  # wrong unless both codes are right
    assert selection_accuracy(perfect, k=8) == {"verifier": None, "random": None, "oracle": None, "problems": 0}
    assert selection_accuracy(perfect, k=2, subsets=50, seed=1) == selection_accuracy(perfect, k=2, subsets=50, seed=1)
    # a problem's draws do not depend on the other problems
    alone = selection_accuracy({"p": perfect["p"]}, k=2, subsets=50, seed=1)
    both = selection_accuracy({"q": perfect["q"], "p": perfect["p"]}, k=2, subsets=50, seed=1)
    assert both["random"] == pytest.approx((alone["random"] + selection_accuracy(
        {"q": perfect["q"]}, k=2, subsets=50, seed=1)["random"]) / 2)


def test_verifier_metrics_bundle_counts_and_every_k() -> None:
    groups = {"a": group([0.9, 0.1, 0.3, 0.2], [1, 0, 0, 0]), "b": group([0.5, 0.4], [0, 1])}
    metrics = verifier_metrics(groups, ks=(2, 4), subsets=10, seed=0)
    assert (metrics["examples"], metrics["positives"], metrics["problems"]) == (6, 2, 2)
    assert metrics["auroc"] == pytest.approx(7 / 8)  # pooled: 0.4 is below b's own 0.5, above a's negatives
    assert metrics["pairwise_accuracy"]["micro"] == pytest.approx(3 / 4)
    assert metrics["pairwise_accuracy"]["macro"] == pytest.approx(1 / 2)
    assert metrics["selection"]["2"]["oracle"] > metrics["selection"]["2"]["verifier"]  # b: always the wrong one
    assert metrics["selection"]["4"] == {"verifier": 1.0, "random": 0.25, "oracle": 1.0, "problems": 1}
    assert metrics["selection_mixed"] == metrics["selection"]  # both problems have both labels
    with_easy = {**groups, "c": group([0.1, 0.2, 0.3, 0.4], [1, 1, 1, 1])}
    diluted = verifier_metrics(with_easy, ks=(2, 4), subsets=10, seed=0)
    assert diluted["selection_mixed"] == metrics["selection"]  # c, all correct, only enters `selection`
    assert diluted["selection"]["4"] == {"verifier": 1.0, "random": 0.625, "oracle": 1.0, "problems": 2}
