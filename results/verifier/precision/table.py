"""Print the scoring-precision table (results/verifier/README.md): the BT 0.5B verifier scored in fp32, bf16 and
int8 on the same held-out codes.

    python results/verifier/precision/table.py

"rank agreement" is the Spearman correlation of a precision's scores with fp32's over each problem's codes,
averaged over the problems (median and minimum beside it): what a faster precision costs a ranker.
"""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
RUNS = {"fp32": HERE / "bt-0.5b-head-fp32", "bf16 (auto)": HERE.parent / "bt-0.5b-head",
        "int8 (`--dtype int8`)": HERE / "bt-0.5b-head-int8"}


def scores(folder: Path) -> dict[tuple[str, int, int], float]:
    with gzip.open(folder / "scores.jsonl.gz", "rt") as lines:
        return {(row["task_id"], row["rollout"], row["turn"]): row["score"] for row in map(json.loads, lines)}


def ranks(values: list[float]) -> np.ndarray:
    return np.argsort(np.argsort(values)).astype(np.float64)


def agreement(reference: dict, other: dict) -> str:
    """Mean, median and minimum over problems of the per-problem Spearman correlation."""
    pairs: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for key, value in reference.items():
        pairs[key[0]].append((value, other[key]))
    rhos = [np.corrcoef(ranks([a for a, _ in rows]), ranks([b for _, b in rows]))[0, 1]
            for rows in pairs.values() if len(rows) >= 3]
    return f"{np.mean(rhos):.3f} / {np.median(rhos):.3f} / {np.min(rhos):.3f} ({len(rhos)} problems)"


def main() -> None:
    reference = scores(RUNS["fp32"])
    print("| precision | pairwise acc. | AUROC | sel@4 v / rand / oracle | rank agreement with fp32: mean / median / "
          "min | codes/s |")
    print("|---|---|---|---|---|---|")
    for name, folder in RUNS.items():
        evaluation = json.loads((folder / "evaluation.json").read_text())
        metrics, pick = evaluation["metrics"], evaluation["metrics"]["selection"]["4"]
        print(f"| {name} | {100 * metrics['pairwise_accuracy']['micro']:.1f} | {metrics['auroc']:.3f} | "
              f"{100 * pick['verifier']:.1f} / {100 * pick['random']:.1f} / {100 * pick['oracle']:.1f} | "
              f"{agreement(reference, scores(folder))} | {evaluation['scoring']['candidates_per_second']:.2f} |")


if __name__ == "__main__":
    main()
