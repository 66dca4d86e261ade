"""How often the generator echoes the prompt's placeholder, per prompt template, and what the template costs.

    python results/verifier/placeholder.py RUN_A [RUN_B ...] [--json OUT.json]

Each RUN is a rollout run folder (or one of the committed ``*/trajectories.jsonl.gz`` folders here). Only the
first turn of each rollout is used: the reply to the template's prompt, an independent sample. Per run it
reports replies, placeholder echoes (`mucode.env.echoes_placeholder`), replies without code, and first-turn
success (public and private tests); with two runs on the same problems, the per-problem success difference
(second minus first, in points) with a 95% bootstrap interval over problems.
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np

from mucode.env import echoes_placeholder
from mucode.metrics import bootstrap_ci


def first_turns(run: Path) -> tuple[str, list[dict[str, Any]]]:
    """The run's template and its rollouts' first turns, each with the rollout's task id and whether that first
    turn solved the problem (it was the last turn of a successful trajectory)."""
    config = json.loads((run / "config.json").read_text())
    path = run / "trajectories.jsonl"
    packed = run / "trajectories.jsonl.gz"
    lines = path.read_text() if path.exists() else gzip.decompress(packed.read_bytes()).decode()
    rows = []
    for line in lines.splitlines():
        record = json.loads(line)
        turn = record["turns"][0]
        rows.append({"task_id": record["task_id"], "code": turn["code"],
                     "solved": bool(turn["public_passed"] and turn["private_passed"])})
    return config["episode"]["template"], rows


def summary(template: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    echoes = sum(row["code"] is not None and echoes_placeholder(row["code"]) for row in rows)
    return {"template": template, "replies": len(rows), "problems": len({row["task_id"] for row in rows}),
            "placeholder_echoes": echoes, "echo_rate": echoes / len(rows),
            "no_code": sum(row["code"] is None for row in rows),
            "first_turn_success": sum(row["solved"] for row in rows) / len(rows)}


def per_problem_success(rows: list[dict[str, Any]]) -> dict[str, float]:
    solved: dict[str, list[bool]] = {}
    for row in rows:
        solved.setdefault(row["task_id"], []).append(row["solved"])
    return {task_id: float(np.mean(values)) for task_id, values in solved.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    loaded = [first_turns(run) for run in args.runs]
    result: dict[str, Any] = {"runs": [{"path": str(run), **summary(*data)}
                                       for run, data in zip(args.runs, loaded, strict=True)]}
    if len(loaded) == 2:
        first, second = (per_problem_success(rows) for _, rows in loaded)
        shared = sorted(set(first) & set(second))
        differences = np.array([100 * (second[task] - first[task]) for task in shared])
        result["paired"] = {"problems": len(shared), "success_difference": float(differences.mean()),
                            "success_difference_ci95": bootstrap_ci(differences, 0, "templates")}
    print("| template | replies | problems | placeholder echoes | no code | first-turn success |")
    print("|---|---|---|---|---|---|")
    for row in result["runs"]:
        print(f"| {row['template']} | {row['replies']} | {row['problems']} | {row['placeholder_echoes']} "
              f"({100 * row['echo_rate']:.1f}%) | {row['no_code']} | {100 * row['first_turn_success']:.1f}% |")
    if "paired" in result:
        paired = result["paired"]
        low, high = paired["success_difference_ci95"]
        print(f"\nsecond − first, per problem: {paired['success_difference']:+.1f} points [{low:+.1f}, {high:+.1f}] "
              f"over {paired['problems']} problems")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
