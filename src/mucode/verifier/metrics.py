"""How well a verifier ranks codes: pairwise accuracy, AUROC and selection accuracy at k (docs/verifier.md).

All three take the candidates of each problem as (scores, labels) arrays:
- pairwise accuracy: over every (correct, incorrect) pair within a problem, the fraction with s⁺ > s⁻ (a tie
  counts ½); ``micro`` averages over all pairs, ``macro`` over problems (each problem's own fraction);
- AUROC: the same statistic with all examples pooled across problems (Mann-Whitney U with average ranks);
- selection accuracy at k: for each problem with at least k candidates, the expected correctness of the pick
  over *every* k-subset of its candidates, computed exactly (no sampling): the verifier picks its argmax (ties
  broken uniformly at random), a random pick is right with probability = the fraction correct, and the oracle
  is right when any candidate of the subset is — the BoN@k curve of the paper's Fig. 4, against its floor and
  its ceiling. Averaged over problems, with the verifier's lead over random and a 95% bootstrap interval of
  that lead over problems. Problems whose candidates are all correct or all incorrect give the same number to
  all three and dilute their differences, so the numbers are also given over the problems with both labels
  only (``selection_mixed``), where a pick can matter.
- the Fig. 4 setting (`fig4_selection`): the same, on one fixed set of problems for every k (those with at
  least max k candidates), meant for independent first-turn samples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from math import comb
from typing import Any

import numpy as np

from mucode.metrics import bootstrap_ci

DEFAULT_KS = (2, 4, 8)
#: The paper's Fig. 4 axis: Best-of-k over independent samples.
FIG4_KS = (1, 2, 4, 8)

Group = tuple[np.ndarray, np.ndarray]  # (scores: float, labels: bool) of one problem's candidates


def pairwise_accuracy(groups: Mapping[str, Group]) -> dict[str, Any]:
    """Pairwise accuracy over the problems that have both labels; values are None when no problem does."""
    wins, counts = [], []
    for scores, labels in groups.values():
        positives, negatives = scores[labels], scores[~labels]
        if len(positives) and len(negatives):
            difference = positives[:, None] - negatives[None, :]
            wins.append(float((difference > 0).sum() + 0.5 * (difference == 0).sum()))
            counts.append(difference.size)
    if not counts:
        return {"micro": None, "macro": None, "pairs": 0, "problems": 0}
    return {"micro": sum(wins) / sum(counts), "macro": float(np.mean(np.divide(wins, counts))),
            "pairs": int(sum(counts)), "problems": len(counts)}


def auroc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve: P(score of a random positive > that of a random negative), ties ½; None
    when one class is missing."""
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if not positives or not negatives:
        return None
    ranks = average_ranks(scores)
    u = ranks[labels].sum() - positives * (positives + 1) / 2
    return float(u / (positives * negatives))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of their ranks (scipy's ``rankdata(method="average")``)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2, ends - starts)
    return ranks


def expected_picks(scores: np.ndarray, labels: np.ndarray, k: int) -> tuple[float, float, float]:
    """(verifier, random, oracle) pick correctness of one problem, in expectation over all its k-subsets.

    The verifier's pick lies in the best score level present in the subset; levels are sorted descending, and
    level g (``size`` codes, ``above`` codes scoring higher) is the best one present with probability
    [C(n − above, k) − C(n − above − size, k)] / C(n, k). Given that, the pick is uniform among the subset's
    codes of that level, whose expected correctness is the level's fraction correct, by symmetry.
    """
    n, total = len(scores), comb(len(scores), k)
    verifier, above = 0.0, 0
    for level in np.unique(scores)[::-1]:
        members = scores == level
        size = int(members.sum())
        verifier += (comb(n - above, k) - comb(n - above - size, k)) / total * float(labels[members].mean())
        above += size
    negatives = int((~labels).sum())
    return verifier, float(labels.mean()), 1.0 - comb(negatives, k) / total


def selection_accuracy(groups: Mapping[str, Group], k: int, seed: int = 0) -> dict[str, Any]:
    """Verifier, random and oracle pick accuracy among k candidates over the problems with at least k, and the
    verifier's lead over random in points with its 95% bootstrap interval (see the module docstring). Values
    are None when no problem has k candidates."""
    rows = [expected_picks(scores, labels, k) for scores, labels in groups.values() if len(scores) >= k]
    if not rows:
        return {"verifier": None, "random": None, "oracle": None, "problems": 0, "lead": None, "lead_ci95": None}
    verifier, random_pick, oracle = (np.array(column) for column in zip(*rows, strict=True))
    leads = 100 * (verifier - random_pick)
    return {"verifier": float(verifier.mean()), "random": float(random_pick.mean()), "oracle": float(oracle.mean()),
            "problems": len(rows), "lead": float(leads.mean()), "lead_ci95": bootstrap_ci(leads, seed, k)}


def fig4_selection(groups: Mapping[str, Group], ks: Sequence[int] = FIG4_KS, seed: int = 0) -> dict[str, Any]:
    """Selection accuracy at every k in ``ks`` over one set of problems: those with at least max(ks)
    candidates (listed, so the set is explicit), as the paper's Fig. 4 plots BoN@k for independent samples."""
    need = max(ks)
    qualifying = {task_id: group for task_id, group in groups.items() if len(group[0]) >= need}
    mixed = {task_id: (s, y) for task_id, (s, y) in qualifying.items() if y.any() and not y.all()}
    return {"min_candidates": need, "problems": sorted(qualifying), "problems_with_both_labels": len(mixed),
            "selection": {str(k): selection_accuracy(qualifying, k, seed) for k in ks},
            "selection_mixed": {str(k): selection_accuracy(mixed, k, seed) for k in ks}}


def verifier_metrics(groups: Mapping[str, Group], ks: Sequence[int] = DEFAULT_KS, seed: int = 0) -> dict[str, Any]:
    """Every metric above, plus the counts they were computed on; selection accuracy both over every problem
    and over those with both labels."""
    scores = np.concatenate([group[0] for group in groups.values()]) if groups else np.zeros(0)
    labels = np.concatenate([group[1] for group in groups.values()]) if groups else np.zeros(0, dtype=bool)
    mixed = {task_id: (s, y) for task_id, (s, y) in groups.items() if y.any() and not y.all()}
    return {"examples": len(scores), "positives": int(labels.sum()), "problems": len(groups),
            "pairwise_accuracy": pairwise_accuracy(groups), "auroc": auroc(scores, labels),
            "selection": {str(k): selection_accuracy(groups, k, seed) for k in ks},
            "selection_mixed": {str(k): selection_accuracy(mixed, k, seed) for k in ks}, "seed": seed}
