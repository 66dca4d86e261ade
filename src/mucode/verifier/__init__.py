"""The learned verifier R_φ(x, y) of μCode (docs/method.md §4): training data from rollouts, a reward model with a
scalar head, Bradley-Terry and BCE training, scoring and evaluation. See docs/verifier.md.

    from mucode.verifier import TrainConfig, train_verifier, load_scorer
    train_verifier(TrainConfig(rollouts=("runs/r0",), out="runs/v0", backbone="smollm2-135m-instruct"))
    scorer = load_scorer("runs/v0")
    scorer.score(problem, ["def f(x):\\n    return x", "def f(x):\\n    return x + 1"])   # higher = better

`load_scorer` is the hook `mucode.search.load_scorer` calls for ``--verifier DIR``.
"""

from __future__ import annotations

import os

from mucode.jobs import LOSSES, TrainConfig
from mucode.verifier.data import (
    Example,
    Pair,
    RolloutData,
    RunInfo,
    examples_from_record,
    group_by_problem,
    load_rollouts,
    make_pairs,
)
from mucode.verifier.evaluate import EVALUATION_FILE, SCORES_FILE, evaluate_runs, score_rollouts, score_runs
from mucode.verifier.metrics import auroc, pairwise_accuracy, selection_accuracy, verifier_metrics
from mucode.verifier.model import INFO_FILE, VERIFIER_FORMAT, InputFormat, Verifier, load_backbone, read_info
from mucode.verifier.train import TrainResult, all_pairs_bt_loss, bce_loss, bt_loss, train_verifier

__all__ = [
    "EVALUATION_FILE",
    "INFO_FILE",
    "LOSSES",
    "SCORES_FILE",
    "VERIFIER_FORMAT",
    "Example",
    "InputFormat",
    "Pair",
    "RolloutData",
    "RunInfo",
    "TrainConfig",
    "TrainResult",
    "Verifier",
    "all_pairs_bt_loss",
    "auroc",
    "bce_loss",
    "bt_loss",
    "evaluate_runs",
    "examples_from_record",
    "group_by_problem",
    "load_backbone",
    "load_rollouts",
    "load_scorer",
    "make_pairs",
    "pairwise_accuracy",
    "read_info",
    "score_rollouts",
    "score_runs",
    "selection_accuracy",
    "train_verifier",
    "verifier_metrics",
]


def load_scorer(path: str | os.PathLike[str], dtype: str = "auto") -> Verifier:
    """The verifier saved in ``path``, as a `mucode.search.Scorer` (batched, no gradients; ``dtype`` "auto": bf16
    where faster, see `Verifier.load`)."""
    return Verifier.load(path, dtype=dtype)
