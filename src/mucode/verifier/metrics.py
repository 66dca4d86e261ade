"""How well a verifier ranks codes: pairwise accuracy, AUROC and selection accuracy at k (docs/verifier.md).

All three take the candidates of each problem as (scores, labels) arrays:
- pairwise accuracy: over every (correct, incorrect) pair within a problem, the fraction with s⁺ > s⁻ (a tie
  counts ½); ``micro`` averages over all pairs, ``macro`` over problems (each problem's own fraction);
- AUROC: the same statistic with all examples pooled across problems (Mann-Whitney U with average ranks);
- selection accuracy at k: for each problem with at least k candidates, M random k-subsets; the verifier picks
  its argmax (ties broken at random), a random pick is right with probability = the subset's fraction correct,
  and the oracle is right when any candidate of the subset is — the BoN@k curve of the paper's Fig. 4, against
  its floor and its ceiling. Averaged over subsets, then over problems. Problems whose candidates are all
  correct or all incorrect give the same number to all three and dilute their differences, so the numbers are
  also given over the problems with both labels only (``selection_mixed``), where a pick can matter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mucode.backends.base import derive_seed

DEFAULT_KS = (2, 4, 8)
#: Random k-subsets drawn per problem and k.
DEFAULT_SUBSETS = 200

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


def selection_accuracy(groups: Mapping[str, Group], k: int, subsets: int = DEFAULT_SUBSETS,
                       seed: int = 0) -> dict[str, Any]:
    """Verifier, random and oracle pick accuracy among k candidates (see the module docstring).

    Each problem's subsets and tie-breaks come from a generator seeded by (seed, task id, k), so a problem's
    numbers do not depend on the others. Values are None when no problem has k candidates.
    """
    verifier, random_pick, oracle = [], [], []
    for task_id, (scores, labels) in groups.items():
        if len(scores) < k:
            continue
        rng = np.random.default_rng(derive_seed(seed, "verifier-selection", task_id, k))
        chosen = np.argsort(rng.random((subsets, len(scores))), axis=1)[:, :k]  # uniform k-subsets
        subset_scores, subset_labels = scores[chosen], labels[chosen]
        tie_break = rng.random(chosen.shape)
        pick = np.lexsort((tie_break, subset_scores), axis=-1)[:, -1]  # argmax score, then random among ties
        verifier.append(subset_labels[np.arange(subsets), pick].mean())
        random_pick.append(subset_labels.mean())
        oracle.append(subset_labels.any(axis=1).mean())
    if not verifier:
        return {"verifier": None, "random": None, "oracle": None, "problems": 0}
    return {"verifier": float(np.mean(verifier)), "random": float(np.mean(random_pick)),
            "oracle": float(np.mean(oracle)), "problems": len(verifier)}


def verifier_metrics(groups: Mapping[str, Group], ks: Sequence[int] = DEFAULT_KS, subsets: int = DEFAULT_SUBSETS,
                     seed: int = 0) -> dict[str, Any]:
    """Every metric above, plus the counts they were computed on; selection accuracy both over every problem
    and over those with both labels."""
    scores = np.concatenate([group[0] for group in groups.values()]) if groups else np.zeros(0)
    labels = np.concatenate([group[1] for group in groups.values()]) if groups else np.zeros(0, dtype=bool)
    mixed = {task_id: (s, y) for task_id, (s, y) in groups.items() if y.any() and not y.all()}
    return {"examples": len(scores), "positives": int(labels.sum()), "problems": len(groups),
            "pairwise_accuracy": pairwise_accuracy(groups), "auroc": auroc(scores, labels),
            "selection": {str(k): selection_accuracy(groups, k, subsets, seed) for k in ks},
            "selection_mixed": {str(k): selection_accuracy(mixed, k, subsets, seed) for k in ks},
            "subsets": subsets, "seed": seed}
