"""``mucode rollout``: N multi-turn rollouts per problem into a resumable run folder (see `mucode.rollout`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mucode.cli.console import console, print_warning
from mucode.cli.options import Ids, derived, split_ids
from mucode.rollout import RolloutConfig, rollout


@derived((RolloutConfig, ["model", "dataset", "backend", "split", "policy", "rollouts", "turns", "temperature",
                          "top_p", "max_tokens", "seed", "template", "stop_on", "grading", "stop_at_code_end",
                          "limit", "workers", "batch_size", "force", "ray", "ray_replicas", "ray_sandboxes"]))
def rollout_command(
    out: Annotated[Path, typer.Option(help="Run folder (config.json, trajectories.jsonl, summary.json); an "
                                           "existing one with the same config is resumed.")],
    ids: Ids = None,
    **options: Any,
) -> None:
    """Collect multi-turn rollouts (training data): N episodes × T turns per problem, resumable."""
    summary = rollout(RolloutConfig(out=str(out), ids=split_ids(ids), **options))
    for warning in summary["warnings"]:
        print_warning(warning)
    console.print(summary_table(summary, f"mucode rollout: {options['dataset']}"))


def rate(estimate: Mapping[str, Any]) -> str:
    """A rate and its 95% interval as one cell: ``41.50% [36.02, 47.21]``."""
    low, high = estimate["ci95"]
    return f"{estimate['value']:.2%} [{low:.2%}, {high:.2%}]"


def summary_table(summary: Mapping[str, Any], title: str) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("trajectories", f"{summary['trajectories']} ({summary['tasks']} tasks)")
    if summary["trajectories"]:
        table.add_row("success", rate(summary["success_rate"]))
        for k, estimate in summary["success_within_turns"].items():
            table.add_row(f"success within {k} turn{'s' if k != '1' else ''}", rate(estimate))
        for name, estimate in summary["pass_at_k"].items():
            table.add_row(name, rate(estimate))
        table.add_row("mean turns", f"{summary['mean_turns']:.2f}")
    table.add_row("tokens/s (this session)", f"{summary['throughput']['tokens_per_second']:.1f}")
    table.add_row("run folder", summary["run"]["out_dir"])
    return table
