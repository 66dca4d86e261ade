"""Print the verifier tables (results/verifier/README.md), recomputed from the committed files alone.

    python results/verifier/table.py

For every verifier folder here (``evaluation.json`` + ``scores.jsonl.gz``), the held-out rollouts it was
evaluated on are found among the committed rollout folders by the sha256 its ``evaluation.json`` records, so
the codes are known; the metrics are then recomputed with `mucode.verifier.evaluate.heldout_metrics`: on real
code (placeholder echoes left out), with the echoes (the numbers first published), and in the Fig. 4 setting
(independent first-turn samples). Leads are verifier − random in points with 95% bootstrap intervals over
problems (docs/verifier.md).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mucode.verifier.data import RolloutData, load_rollouts
from mucode.verifier.evaluate import heldout_metrics

HERE = Path(__file__).parent


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def lead(row: dict[str, Any]) -> str:
    if row["lead"] is None:
        return "n/a"
    low, high = row["lead_ci95"]
    return f"{row['lead']:+.1f} [{low:+.1f}, {high:+.1f}]"


def committed_rollouts(scratch: Path) -> dict[str, Path]:
    """sha256 of each committed rollout folder's (gunzipped) trajectories → a run folder unpacked in scratch."""
    folders = {}
    for packed in sorted(HERE.glob("*/trajectories.jsonl.gz")):
        content = gzip.decompress(packed.read_bytes())
        folder = scratch / packed.parent.name
        folder.mkdir()
        shutil.copy(packed.parent / "config.json", folder / "config.json")
        (folder / "trajectories.jsonl").write_bytes(content)
        folders[hashlib.sha256(content).hexdigest()] = folder
    return folders


def heldout_of(evaluation: dict[str, Any], folders: dict[str, Path]) -> RolloutData:
    missing = [run["path"] for run in evaluation["runs"] if run["sha256"] not in folders]
    if missing:
        raise SystemExit(f"held-out rollouts {missing} are not committed here")
    return load_rollouts([folders[run["sha256"]] for run in evaluation["runs"]])


def scores_of(folder: Path, data: RolloutData) -> list[float]:
    """The committed scores, checked to be in the held-out examples' order."""
    with gzip.open(folder / "scores.jsonl.gz", "rt") as lines:
        rows = [json.loads(line) for line in lines]
    keys = [(row["task_id"], row["rollout"], row["turn"]) for row in rows]
    if keys != [(e.task_id, e.rollout, e.turn) for e in data.examples]:
        raise SystemExit(f"{folder}/scores.jsonl.gz does not follow its held-out rollouts' examples")
    return [row["score"] for row in rows]


def describe(folder: Path) -> str:
    info = json.loads((folder / "verifier.json").read_text())
    chosen = info["hyperparameters"]
    mode = "head only" if chosen.get("head_only") else ("LoRA" if chosen.get("lora") else "full")
    return f"{folder.name}: {info['loss'].upper()}, {info['backbone']['name']}, {mode}"


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        folders = committed_rollouts(Path(scratch))
        for path in sorted(HERE.glob("*/evaluation.json")):
            data = heldout_of(json.loads(path.read_text()), folders)
            rows.append((describe(path.parent), heldout_metrics(data, scores_of(path.parent, data))))
    print("| verifier | real codes (echoes) | pairwise acc., real | AUROC real (with echoes) "
          "| sel@4 real v / rand / oracle | sel@4 lead, real | Fig. 4: best k, problems | Fig. 4 lead at best k |")
    print("|---|---|---|---|---|---|---|---|")
    for name, metrics in rows:
        real, first = metrics["real"], metrics["first_turn"]
        top = max(first["selection"], key=int)
        at4 = real["selection"]["4"]
        print(f"| {name} | {real['examples']} ({metrics['excluded']['placeholder_echoes']['count']}) "
              f"| {percent(real['pairwise_accuracy']['micro'])} "
              f"| {real['auroc']:.3f} ({metrics['all']['auroc']:.3f}) "
              f"| {percent(at4['verifier'])} / {percent(at4['random'])} / {percent(at4['oracle'])} | {lead(at4)} "
              f"| k = {top}, {len(first['problems'])} | {lead(first['selection'][top])} |")


if __name__ == "__main__":
    main()
