"""Print the verifier table (results/verifier/README.md) from the committed evaluation.json and scores files.

    python results/verifier/table.py

The last column is the verifier's lead over a random pick at k = 4, per problem then averaged, with a 95%
bootstrap interval over problems (the held-out set is small: the interval says how much the lead could be noise).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

from mucode.verifier.metrics import selection_accuracy

HERE = Path(__file__).parent
RESAMPLES = 10_000


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def selection(row: dict) -> str:
    """verifier / random / oracle, and the verifier's lead over random in points."""
    if row["verifier"] is None:
        return "n/a"
    lead = 100 * (row["verifier"] - row["random"])
    return f"{percent(row['verifier'])} / {percent(row['random'])} / {percent(row['oracle'])} ({lead:+.1f})"


def lead_interval(folder: Path, k: int = 4, subsets: int = 200, seed: int = 0) -> str:
    """Mean per-problem (verifier − random) at k over problems with ≥ k codes, with a bootstrap 95% interval."""
    groups: dict[str, tuple[list[float], list[bool]]] = {}
    with gzip.open(folder / "scores.jsonl.gz", "rt") as lines:
        for line in lines:
            row = json.loads(line)
            scores, labels = groups.setdefault(row["task_id"], ([], []))
            scores.append(row["score"])
            labels.append(row["label"])
    leads = []
    for task_id, (scores, labels) in groups.items():
        result = selection_accuracy({task_id: (np.array(scores), np.array(labels))}, k, subsets, seed)
        if result["problems"]:
            leads.append(result["verifier"] - result["random"])
    draws = np.random.default_rng(0).choice(leads, size=(RESAMPLES, len(leads))).mean(axis=1)
    low, high = np.percentile(draws, [2.5, 97.5])
    return f"{100 * np.mean(leads):+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]"


def main() -> None:
    print("| verifier | pairwise acc. | AUROC | sel@2 v / rand / oracle | sel@4 | sel@8 "
          "| sel@4, problems with both labels | sel@4 lead, 95% CI |")
    print("|---|---|---|---|---|---|---|---|")
    for path in sorted(HERE.glob("*/evaluation.json")):
        evaluation = json.loads(path.read_text())
        metrics, info = evaluation["metrics"], json.loads((path.parent / "verifier.json").read_text())
        mode = "head only" if info["hyperparameters"].get("head_only") else (
            "LoRA" if info["hyperparameters"]["lora"] else "full")
        name = f"{path.parent.name}: {info['loss'].upper()}, {info['backbone']['name']}, {mode}"
        picks = metrics["selection"]
        auroc = "n/a" if metrics["auroc"] is None else f"{metrics['auroc']:.3f}"
        print(f"| {name} | {percent(metrics['pairwise_accuracy']['micro'])} | {auroc} | {selection(picks['2'])} "
              f"| {selection(picks['4'])} | {selection(picks['8'])} | {selection(metrics['selection_mixed']['4'])} "
              f"| {lead_interval(path.parent)} |")


if __name__ == "__main__":
    main()
