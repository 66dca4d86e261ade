"""Print the baseline table (README, results/baselines/README.md) from the committed results.json files.

    python results/baselines/table.py
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent
#: folder, dataset label, setting label, model label
RUNS = [
    ("humaneval-greedy", "HumanEval (164)", "greedy", "Q4_K_M"),
    ("humaneval-greedy-q4_0", "HumanEval (164)", "greedy", "Q4_0 (requantised)"),
    ("mbpp-greedy", "MBPP test (500)", "greedy", "Q4_K_M"),
    ("humaneval-bon5-pt", "HumanEval (164)", "BoN@5, pt", "Q4_K_M"),
]


def cell(estimate: dict) -> str:
    low, high = estimate["ci95"]
    return f"{100 * estimate['value']:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def main() -> None:
    print("| dataset | setting | weights | single-turn (success @ turn 1) | multi-turn T=3 (success @ turn 3) "
          "| public pass @ turn 3 | mean turns |")
    print("|---|---|---|---|---|---|---|")
    for folder, dataset, setting, weights in RUNS:
        path = HERE / folder / "results.json"
        if not path.is_file():
            continue
        metrics = json.loads(path.read_text())["metrics"]
        within, public = metrics["success_within_turns"], metrics["public_within_turns"]
        print(f"| {dataset} | {setting} | {weights} | {cell(within['1'])} | {cell(within['3'])} "
              f"| {cell(public['3'])} | {metrics['mean_turns']:.2f} |")


if __name__ == "__main__":
    main()
