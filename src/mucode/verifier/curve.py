"""The learning curve of a verifier being fine-tuned: held-out metrics against the items trained on so far.

On 2 CPU cores a verifier sees a few thousand pairs in hours, so whether more data would help is the question a
run must answer. `HeldoutCurve` is a Trainer callback: every ``eval_every`` items (pairs for BT, examples for
BCE) and at the end, it scores the held-out runs' codes with the model as it is (eval mode, bf16 autocast when
training uses it) and appends one line to ``OUT/checkpoints/curve.jsonl``: the step, the items and
`mucode.verifier.evaluate.heldout_metrics` (real code, Fig. 4 first-turn, placeholder echoes apart). The file
is a `RecordLog`, so a killed run keeps its points and a resumed one skips the steps already recorded; the
finished verifier's ``verifier.json`` carries the points as ``heldout_curve``.

The Trainer's shuffled sampler makes the items seen by step s a uniform sample of the training set, so the
curve reads as "metric after N pairs"; ``epochs`` > 1 revisits them. Under ``pairing = "all"`` an item is a
problem's set of codes, and a point's ``pairs`` is the expected number of pairs in the items seen (items times
the mean pairs per item); with drawn pairs it equals ``items``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from mucode.finetune import autocast
from mucode.runs import RecordLog
from mucode.verifier.data import RolloutData
from mucode.verifier.evaluate import heldout_metrics
from mucode.verifier.model import Verifier

CURVE_FILE = "curve.jsonl"
#: The curve drawn (`mucode.plots.plot_learning_curve`), next to the verifier.
CURVE_PLOT = "curve.png"


class HeldoutCurve(TrainerCallback):
    """Scores ``heldout`` every ``every`` items (0: only at the end) of ``items_per_step`` per optimiser step."""

    def __init__(self, heldout: RolloutData, tokenizer: Any, *, every: int, items_per_step: int, total_items: int,
                 path: Path, bf16: bool, pairs_per_item: float | None = None) -> None:
        self.heldout = heldout
        self.tokenizer = tokenizer
        self.every = every
        self.items_per_step = items_per_step
        self.total_items = total_items
        self.log = RecordLog(path)
        self.bf16 = bf16
        self.pairs_per_item = pairs_per_item  # None: BCE, whose items are examples
        self.done = {row["step"] for row in self.log.load()}

    def items_at(self, step: int) -> int:
        return min(step * self.items_per_step, self.total_items)

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **_: Any) -> None:
        step = state.global_step
        if self.every and self.items_at(step) // self.every > self.items_at(step - 1) // self.every:
            self.evaluate(model, step)

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **_: Any) -> None:
        self.evaluate(model, state.global_step)

    def evaluate(self, model: Any, step: int) -> None:
        """Score the held-out codes with ``model`` as it is now and record the point (once per step)."""
        if step in self.done:
            return
        started = time.perf_counter()
        training = model.training
        verifier = Verifier(model, self.tokenizer, {}, template=self.heldout.template)  # puts it in eval mode
        try:
            with autocast(self.bf16, verifier.device), torch.inference_mode():
                scores = verifier.score_texts([(e.prompt, e.code) for e in self.heldout.examples])
        finally:
            model.train(training)
        items = self.items_at(step)
        pairs = {} if self.pairs_per_item is None else {"pairs": round(items * self.pairs_per_item)}
        self.log.append([{"step": step, "items": items, **pairs,
                          "seconds": round(time.perf_counter() - started, 1),
                          "metrics": heldout_metrics(self.heldout, scores)}])
        self.done.add(step)

    def points(self) -> list[dict[str, Any]]:
        return self.log.load()


def curve_summary(points: Sequence[dict[str, Any]], k: str = "4") -> list[dict[str, Any]]:
    """One compact row per point: items, AUROC and pairwise accuracy on real code, the sel@k lead on real code
    and on first-turn samples (each with its 95% interval)."""
    rows = []
    for point in points:
        real, first = point["metrics"]["real"], point["metrics"]["first_turn"]["selection"]
        rows.append({"step": point["step"], "items": point["items"], "pairs": point.get("pairs"),
                     "auroc_real": real["auroc"],
                     "pairwise_real": real["pairwise_accuracy"]["micro"],
                     f"sel{k}_lead_real": real["selection"][k]["lead"],
                     f"sel{k}_lead_real_ci95": real["selection"][k]["lead_ci95"],
                     f"sel{k}_lead_first_turn": first[k]["lead"] if k in first else None,
                     f"sel{k}_lead_first_turn_ci95": first[k]["lead_ci95"] if k in first else None})
    return rows
