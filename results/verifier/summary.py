"""Write results/verifier/summary.json: the headline numbers of the verifier experiment, machine-readable.

    python results/verifier/summary.py --verifier results/verifier/NAME [--humaneval results/verifier/humaneval]

``--verifier``: a committed verifier folder (``verifier.json``, ``evaluation.json`` from `mucode verifier
evaluate` on the held-out runs). ``--humaneval``: the folder `benchmarks/paired_eval.py` wrote for the ``pt``
run (reference) against the ``pt+lv`` run on HumanEval. The sel@4 lead is the verifier's lead over a random pick
in points on independent first-turn samples of real code (the paper's Fig. 4 setting, docs/verifier.md), with
its 95% bootstrap interval over problems; AUROC is over every real code of the held-out runs. The learning
curve (held-out metrics after each number of training pairs) comes from the verifier's ``verifier.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
#: What summary.json keeps of each learning-curve point (`mucode.verifier.curve.curve_summary`).
CURVE_KEYS = ("items", "pairs", "auroc_real", "pairwise_real", "sel4_lead_real", "sel4_lead_real_ci95",
              "sel4_lead_first_turn", "sel4_lead_first_turn_ci95")


def training_mode(hyperparameters: dict[str, Any]) -> str:
    if hyperparameters.get("head_only"):
        return "head"
    return "lora" if hyperparameters.get("lora") else "full"


def verifier_numbers(folder: Path) -> dict[str, Any]:
    info = json.loads((folder / "verifier.json").read_text())
    metrics = json.loads((folder / "evaluation.json").read_text())["metrics"]
    first = metrics["first_turn"]
    at4 = first["selection"]["4"]
    return {"heldout_problems": metrics["real"]["problems"], "auroc_real": metrics["real"]["auroc"],
            "sel4_lead_real": at4["lead"], "sel4_lead_real_ci95": at4["lead_ci95"],
            "sel4_problems": at4["problems"], "backbone": info["backbone"]["name"],
            "training": training_mode(info["hyperparameters"]), "loss": info["loss"],
            "pairing": info["hyperparameters"].get("pairing", "sampled"), "pairs": info["data"]["pairs"],
            "verifier": folder.name,
            "learning_curve": [{key: row[key] for key in CURVE_KEYS} for row in info.get("heldout_curve", [])]}


def humaneval_numbers(folder: Path) -> dict[str, Any]:
    summary = json.loads((folder / "summary.json").read_text())
    [pair] = summary["pairs"]
    multi = pair["multi_turn"]
    return {"ptlv_minus_pt_humaneval": multi["difference"], "ptlv_minus_pt_humaneval_ci95": multi["difference_ci95"],
            "humaneval_tasks": multi["tasks"], "humaneval_mcnemar_p": multi["mcnemar_p"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verifier", type=Path, required=True)
    parser.add_argument("--humaneval", type=Path)
    args = parser.parse_args()
    summary = verifier_numbers(args.verifier)
    summary.update(humaneval_numbers(args.humaneval) if args.humaneval else
                   {"ptlv_minus_pt_humaneval": None, "ptlv_minus_pt_humaneval_ci95": None})
    (HERE / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
