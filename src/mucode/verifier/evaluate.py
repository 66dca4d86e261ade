"""``mucode verifier score`` and ``mucode verifier evaluate``: a saved verifier over the codes of rollout runs.

``score`` writes one line per example to ``scores.jsonl`` (with the code's sha256, whether it is real code and
whether it is a first-turn sample, so every metric can be recomputed from the file); ``evaluate`` also computes
the metrics on held-out runs and writes ``evaluation.json``. Both files are written atomically into the output
folder (the verifier's folder by default).

``evaluation.json`` ``metrics`` holds (docs/verifier.md):
- ``real``: `verifier_metrics` over every real code of every turn (placeholder echoes left out) — the headline;
- ``first_turn``: `fig4_selection` over real first-turn codes, the paper's Fig. 4 setting (independent samples,
  one set of problems for every k);
- ``all``: `verifier_metrics` with the placeholder echoes in, for comparison with earlier numbers;
- ``excluded``: the placeholder echoes (count, and where the verifier ranked them) and the turns with no code,
  which no metric sees.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mucode.backends.hf import HF_PACKAGES
from mucode.runs import versions, write_json, write_jsonl
from mucode.verifier.data import Example, RolloutData, load_rollouts
from mucode.verifier.metrics import DEFAULT_KS, FIG4_KS, Group, fig4_selection, verifier_metrics
from mucode.verifier.model import Verifier

SCORES_FILE = "scores.jsonl"
EVALUATION_FILE = "evaluation.json"


def score_rollouts(verifier: Verifier, data: RolloutData) -> list[float]:
    """The verifier's score of every example, in the data's order."""
    return verifier.score_texts([(example.prompt, example.code) for example in data.examples])


def score_records(examples: Sequence[Example], scores: Sequence[float]) -> list[dict[str, Any]]:
    """``scores.jsonl`` lines: where each code came from, what it is, its label (0/1) and its score."""
    return [{"run": example.run, "task_id": example.task_id, "rollout": example.rollout, "turn": example.turn,
             "code_sha256": hashlib.sha256(example.code.encode()).hexdigest(), "label": int(example.label),
             "score": score, "real": example.real, "first_turn": example.first_turn}
            for example, score in zip(examples, scores, strict=True)]


def write_scores(path: str | os.PathLike[str], examples: Sequence[Example], scores: Sequence[float]) -> None:
    write_jsonl(path, score_records(examples, scores))


def score_runs(verifier_dir: str | os.PathLike[str], run_dirs: Sequence[str], out: str | os.PathLike[str] | None,
               *, dtype: str = "auto", batch_size: int | None = None) -> dict[str, Any]:
    """What ``mucode verifier score`` does; returns a summary (counts, file, candidates per second)."""
    data = load_rollouts(run_dirs)  # before the (slow) model, so a wrong folder fails at once
    verifier = _load(verifier_dir, dtype, batch_size)
    started = time.perf_counter()
    scores = score_rollouts(verifier, data)
    seconds = time.perf_counter() - started
    path = Path(out or verifier_dir).expanduser() / SCORES_FILE
    write_scores(path, data.examples, scores)
    return {"examples": len(scores), "problems": len(data.by_problem()), "file": str(path),
            "seconds": round(seconds, 2), "candidates_per_second": round(len(scores) / max(seconds, 1e-9), 2)}


def evaluate_runs(verifier_dir: str | os.PathLike[str], run_dirs: Sequence[str],
                  out: str | os.PathLike[str] | None, *, ks: Sequence[int] = DEFAULT_KS, seed: int = 0,
                  dtype: str = "auto", batch_size: int | None = None) -> dict[str, Any]:
    """What ``mucode verifier evaluate`` does: score the held-out runs, compute the metrics, write both files.

    Returns the ``evaluation.json`` content.
    """
    data = load_rollouts(run_dirs)  # before the (slow) model, so a wrong folder fails at once
    verifier = _load(verifier_dir, dtype, batch_size)
    started = time.perf_counter()
    scores = score_rollouts(verifier, data)
    seconds = time.perf_counter() - started
    folder = Path(out or verifier_dir).expanduser()
    write_scores(folder / SCORES_FILE, data.examples, scores)
    evaluation = {"verifier": {"path": str(verifier_dir), "backbone": verifier.info.get("backbone"),
                               "loss": verifier.info.get("loss"), "dtype": str(verifier.model.dtype),
                               **({"int8": True} if verifier.int8 else {})},
                  "runs": data.fingerprint(),
                  "metrics": heldout_metrics(data, scores, ks, seed),
                  "scoring": {"seconds": round(seconds, 2),
                              "candidates_per_second": round(len(scores) / max(seconds, 1e-9), 2)},
                  "files": {"scores": SCORES_FILE}, "versions": versions(*HF_PACKAGES)}
    write_json(folder / EVALUATION_FILE, evaluation)
    return evaluation


def heldout_metrics(data: RolloutData, scores: Sequence[float], ks: Sequence[int] = DEFAULT_KS,
                    seed: int = 0) -> dict[str, Any]:
    """The ``metrics`` of ``evaluation.json`` (see the module docstring) for the examples' scores."""
    scored = list(zip(data.examples, scores, strict=True))
    real = [(example, score) for example, score in scored if example.real]
    first_turn = problem_groups([(example, score) for example, score in real if example.first_turn])
    return {"real": verifier_metrics(problem_groups(real), ks, seed),
            "first_turn": fig4_selection(first_turn, fig4_ks(data), seed),
            "all": verifier_metrics(problem_groups(scored), ks, seed),
            "excluded": {"placeholder_echoes": placeholder_ranks(scored),
                         "no_code_turns": sum(run.no_code for run in data.runs)}}


def fig4_ks(data: RolloutData) -> tuple[int, ...]:
    """`FIG4_KS` up to the rollouts per problem (a run of 4 rollouts cannot show Best-of-8), at least (1,)."""
    rollouts = max((len({(e.run, e.rollout) for e in group}) for group in data.by_problem().values()), default=1)
    return tuple(k for k in FIG4_KS if k <= rollouts) or (1,)


def placeholder_ranks(scored: Sequence[tuple[Example, float]]) -> dict[str, Any]:
    """How many codes are placeholder echoes, and the mean fraction of their problem's real codes that the
    verifier scores strictly below them (0: always ranked last; None when there are none)."""
    real_scores: dict[str, list[float]] = {}
    for example, score in scored:
        if example.real:
            real_scores.setdefault(example.task_id, []).append(score)
    fractions = [float(np.mean(np.array(real_scores[example.task_id]) < score))
                 for example, score in scored if not example.real and example.task_id in real_scores]
    echoes = sum(not example.real for example, _ in scored)
    return {"count": echoes, "mean_fraction_ranked_below": float(np.mean(fractions)) if fractions else None}


def problem_groups(scored: Sequence[tuple[Example, float]]) -> dict[str, Group]:
    """Per problem, its candidates' (scores, labels) arrays, as the metrics take them."""
    columns: dict[str, tuple[list[float], list[bool]]] = {}
    for example, score in scored:
        values, labels = columns.setdefault(example.task_id, ([], []))
        values.append(score)
        labels.append(example.label)
    return {task_id: (np.array(values, dtype=np.float64), np.array(labels, dtype=bool))
            for task_id, (values, labels) in columns.items()}


def _load(verifier_dir: str | os.PathLike[str], dtype: str, batch_size: int | None) -> Verifier:
    options: Mapping[str, Any] = {"batch_size": batch_size} if batch_size else {}
    return Verifier.load(verifier_dir, dtype=dtype, **options)
