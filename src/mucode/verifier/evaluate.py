"""``mucode verifier score`` and ``mucode verifier evaluate``: a saved verifier over the codes of rollout runs.

``score`` writes one line per example to ``scores.jsonl``; ``evaluate`` also computes `verifier_metrics` on a
held-out run (every code of a problem is a candidate) and writes ``evaluation.json``. Both files are written
atomically into the output folder (the verifier's folder by default).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mucode.backends.hf import HF_PACKAGES
from mucode.runs import versions, write_json, write_jsonl
from mucode.verifier.data import Example, RolloutData, load_rollouts
from mucode.verifier.metrics import DEFAULT_KS, DEFAULT_SUBSETS, Group, verifier_metrics
from mucode.verifier.model import Verifier

SCORES_FILE = "scores.jsonl"
EVALUATION_FILE = "evaluation.json"


def score_rollouts(verifier: Verifier, data: RolloutData) -> list[float]:
    """The verifier's score of every example, in the data's order."""
    return verifier.score_texts([(example.prompt, example.code) for example in data.examples])


def score_records(examples: Sequence[Example], scores: Sequence[float]) -> list[dict[str, Any]]:
    """``scores.jsonl`` lines: where each code came from, its label and its score."""
    return [{"run": example.run, "task_id": example.task_id, "rollout": example.rollout, "turn": example.turn,
             "label": example.label, "score": score} for example, score in zip(examples, scores, strict=True)]


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
                  out: str | os.PathLike[str] | None, *, ks: Sequence[int] = DEFAULT_KS,
                  subsets: int = DEFAULT_SUBSETS, seed: int = 0, dtype: str = "auto",
                  batch_size: int | None = None) -> dict[str, Any]:
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
                  "metrics": verifier_metrics(problem_groups(data.examples, scores), ks, subsets, seed),
                  "scoring": {"seconds": round(seconds, 2),
                              "candidates_per_second": round(len(scores) / max(seconds, 1e-9), 2)},
                  "files": {"scores": SCORES_FILE}, "versions": versions(*HF_PACKAGES)}
    write_json(folder / EVALUATION_FILE, evaluation)
    return evaluation


def problem_groups(examples: Sequence[Example], scores: Sequence[float]) -> dict[str, Group]:
    """Per problem, its candidates' (scores, labels) arrays, as `verifier_metrics` takes them."""
    columns: dict[str, tuple[list[float], list[bool]]] = {}
    for example, score in zip(examples, scores, strict=True):
        values, labels = columns.setdefault(example.task_id, ([], []))
        values.append(score)
        labels.append(example.label)
    return {task_id: (np.array(values, dtype=np.float64), np.array(labels, dtype=bool))
            for task_id, (values, labels) in columns.items()}


def _load(verifier_dir: str | os.PathLike[str], dtype: str, batch_size: int | None) -> Verifier:
    options: Mapping[str, Any] = {"batch_size": batch_size} if batch_size else {}
    return Verifier.load(verifier_dir, dtype=dtype, **options)
