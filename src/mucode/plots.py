"""Figures of run results, drawn with matplotlib's Agg backend (no display needed), imported lazily.

matplotlib is optional: without it a plot is skipped with a reason, never a failed run.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from typing import Any

from mucode.runs import write_atomic

#: (metrics key, legend label) of the curves on the success-vs-turn plot.
CURVES = (("success_within_turns", "success (public ∧ private)"), ("public_within_turns", "public tests pass"))


def plot_success_vs_turn(metrics: Mapping[str, Any], path: str | os.PathLike[str], title: str) -> str | None:
    """Success within k turns against k (docs/method.md §8), with the 95% Wilson intervals as error bars.

    ``metrics`` is `mucode.search.search_metrics`' output. Writes a PNG atomically; returns None, or the
    reason it could not (matplotlib missing).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        return "no plot: matplotlib is not installed (pip install matplotlib)"
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
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
    finally:
        pyplot.close(figure)
    write_atomic(path, buffer.getvalue())
    return None
