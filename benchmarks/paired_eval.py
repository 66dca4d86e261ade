"""Paired comparison of `mucode eval` runs on the same tasks: success by turn, tokens, time, McNemar's test.

    python benchmarks/paired_eval.py RUN_A RUN_B [RUN_C ...] --out DIR [--title TEXT]

Each RUN is a `mucode eval` folder (results.json). The first run is the reference: every other run is paired
with it task by task (one search per task, as greedy runs have) at turn 1 (single-turn) and at the last turn
(multi-turn); the table lists the tasks only one of the two solved, the exact two-sided McNemar p-value
(binomial on the discordant tasks) and the success difference in points with a 95% bootstrap interval over
tasks. Writes ``DIR/summary.json`` and ``DIR/README.md``.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from math import comb
from pathlib import Path

import numpy as np

from mucode.backends.auto import machine_fingerprint
from mucode.metrics import bootstrap_ci


def load(run: Path) -> dict:
    results = json.loads((run / "results.json").read_text())
    searches = results["searches"]
    by_turn: dict[int, dict[str, bool]] = {}
    turns = results["config"]["search"]["turns"]
    for k in (1, turns):
        by_turn[k] = {}
        for record in searches:
            solved = record["success"] and record["turns_used"] <= k
            by_turn[k][record["task_id"]] = by_turn[k].get(record["task_id"], False) or solved
    tokens = sum(c["generation"]["completion_tokens"] for r in searches for t in r["turns"] for c in t["candidates"])
    return {"run": str(run), "label": run.name, "backend": results["config"]["backend"],
            "model_id": results["config"]["model_id"], "search": results["config"]["search"],
            "tasks": len({r["task_id"] for r in searches}), "completion_tokens": tokens,
            "generation_seconds": results["throughput"]["seconds"], "turns": turns, "by_turn": by_turn}


def mcnemar(only_first: int, only_second: int) -> float:
    """Exact two-sided McNemar p-value: the discordant tasks as a fair binomial."""
    n = only_first + only_second
    if n == 0:
        return 1.0
    tail = sum(comb(n, i) for i in range(min(only_first, only_second) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def compare(reference: dict, other: dict, k: int) -> dict:
    first, second = reference["by_turn"][k], other["by_turn"][k]
    tasks = sorted(set(first) & set(second))
    only_first = [t for t in tasks if first[t] and not second[t]]
    only_second = [t for t in tasks if second[t] and not first[t]]
    differences = np.array([100.0 * (second[t] - first[t]) for t in tasks])
    return {"turn": k, "tasks": len(tasks), "reference": sum(first[t] for t in tasks),
            "other": sum(second[t] for t in tasks), "only_reference": only_first, "only_other": only_second,
            "mcnemar_p": round(mcnemar(len(only_first), len(only_second)), 4),
            "difference": round(float(differences.mean()), 2),
            "difference_ci95": [round(x, 2) for x in bootstrap_ci(differences, 0, "paired", k)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--title", default="Paired comparison of mucode eval runs")
    args = parser.parse_args()
    runs = [load(run) for run in args.runs]
    reference = runs[0]
    pairs = [{"other": run["label"], "single_turn": compare(reference, run, 1),
              "multi_turn": compare(reference, run, run["turns"])} for run in runs[1:]]
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {"created": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine_fingerprint(),
               "reference": reference["label"],
               "runs": [{k: v for k, v in run.items() if k != "by_turn"} |
                        {"solved": {str(k): sum(v.values()) for k, v in run["by_turn"].items()}} for run in runs],
               "pairs": pairs}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    lines = [f"# {args.title}", "", f"Machine (where the runs were made and summarised): {machine_fingerprint()}.", "",
             "| run | backend | model | solved, turn 1 | solved, last turn | tokens | "
             "generation s |", "|---|---|---|---|---|---|---|"]
    for run in runs:
        t1, tl = sum(run["by_turn"][1].values()), sum(run["by_turn"][run["turns"]].values())
        lines.append(f"| {run['label']} | {run['backend']} | {run['model_id']} | {t1}/{run['tasks']} | "
                     f"{tl}/{run['tasks']} | {run['completion_tokens']} | {run['generation_seconds']:.0f} |")
    lines += ["", f"Paired with {reference['label']} (tasks solved by only one of the two; exact McNemar p):", ""]
    for pair in pairs:
        for name in ("single_turn", "multi_turn"):
            c = pair[name]
            lines.append(f"- {pair['other']}, {name.replace('_', '-')} (turn {c['turn']}): {c['other']} vs "
                         f"{c['reference']} of {c['tasks']}; only {reference['label']}: "
                         f"{', '.join(c['only_reference']) or 'none'}; only {pair['other']}: "
                         f"{', '.join(c['only_other']) or 'none'}; p = {c['mcnemar_p']}; difference "
                         f"{c['difference']:+.1f} points [{c['difference_ci95'][0]:+.1f}, "
                         f"{c['difference_ci95'][1]:+.1f}] (95% bootstrap over tasks)")
    (args.out / "README.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
