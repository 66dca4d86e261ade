"""Figures of run results, drawn with matplotlib's Agg backend (no display needed), imported lazily.

matplotlib is optional: without it a plot is skipped with a reason, never a failed run.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from typing import Any

from mucode.runs import write_atomic

#: (metrics key, legend label) of the curves on the success-vs-turn plot.
CURVES = (("success_within_turns", "success (public ∧ private)"), ("public_within_turns", "public tests pass"))


def plot_success_vs_turn(metrics: Mapping[str, Any], path: str | os.PathLike[str], title: str) -> str | None:
    """Success within k turns against k (docs/method.md §8), with the 95% Wilson intervals as error bars.

    ``metrics`` is `mucode.search.search_metrics`' output. Writes a PNG atomically; returns None, or the
    reason it could not (matplotlib missing).
    """
    pyplot = _pyplot()
    if pyplot is None:
        return NO_MATPLOTLIB
    figure, axes = pyplot.subplots(figsize=(5, 3.6), dpi=120)
    try:
        for offset, (key, label) in zip((-0.04, 0.04), CURVES, strict=True):  # offsets keep the bars apart
            turns = sorted(metrics[key], key=int)
            values = [metrics[key][k]["value"] for k in turns]
            errors = [[value - metrics[key][k]["ci95"][0] for k, value in zip(turns, values, strict=True)],
                      [metrics[key][k]["ci95"][1] - value for k, value in zip(turns, values, strict=True)]]
            axes.errorbar([int(k) + offset for k in turns], values, yerr=errors, marker="o", capsize=4, label=label)
        axes.set(xlabel="turns k", ylabel="rate within k turns", ylim=(0, 1),
                 title=f"{title} ({metrics['tasks']} tasks, 95% CI)")
        axes.set_xticks([int(k) for k in metrics["success_within_turns"]])
        axes.grid(alpha=0.3)
        axes.legend(loc="best")
        _save(pyplot, figure, path)
    finally:
        pyplot.close(figure)
    return None


def plot_learning_curve(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str], title: str) -> str | None:
    """A verifier's held-out AUROC (real code) and sel@4 lead over random (points, 95% interval) against the
    pairs (BT) or examples (BCE) trained on; ``rows`` are `mucode.verifier.curve.curve_summary` rows. None, or why
    there is no plot."""
    pyplot = _pyplot()
    if pyplot is None:
        return NO_MATPLOTLIB
    figure, (left, right) = pyplot.subplots(1, 2, figsize=(8, 3.4), dpi=120)
    def seen(row: Mapping[str, Any]) -> int:
        return row["items"] if row.get("pairs") is None else row["pairs"]

    unit = "examples" if rows and rows[0].get("pairs") is None else "pairs"
    try:
        scored = [row for row in rows if row["auroc_real"] is not None]  # None: one class only
        left.plot([seen(row) for row in scored], [row["auroc_real"] for row in scored], marker="o")
        left.axhline(0.5, color="grey", linewidth=0.8)
        left.set(xlabel=f"{unit} trained on", ylabel="AUROC, real code", title="held-out AUROC")
        led = [row for row in rows if row["sel4_lead_real"] is not None]  # None: no problem has 4 codes
        leads = [row["sel4_lead_real"] for row in led]
        errors = [[lead - row["sel4_lead_real_ci95"][0] for lead, row in zip(leads, led, strict=True)],
                  [row["sel4_lead_real_ci95"][1] - lead for lead, row in zip(leads, led, strict=True)]]
        right.errorbar([seen(row) for row in led], leads, yerr=errors, marker="o", capsize=4)
        right.axhline(0.0, color="grey", linewidth=0.8)
        right.set(xlabel=f"{unit} trained on", ylabel="points over random", title="sel@4 lead, real code (95% CI)")
        for axes in (left, right):
            axes.grid(alpha=0.3)
        figure.suptitle(title)
        _save(pyplot, figure, path)
    finally:
        pyplot.close(figure)
    return None


NO_MATPLOTLIB = "no plot: matplotlib is not installed (pip install matplotlib)"


def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend, or None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        return None
    return pyplot


def _save(pyplot: Any, figure: Any, path: str | os.PathLike[str]) -> None:
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    write_atomic(path, buffer.getvalue())
