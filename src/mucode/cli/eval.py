"""``mucode eval``: multi-turn Best-of-N on a dataset, with metrics, samples and a plot (see `mucode.search`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mucode.cli.console import console, print_warning
from mucode.cli.options import Ids, derived, split_ids
from mucode.cli.rollout import rate
from mucode.search import EvalConfig, SearchConfig, run_eval

#: The search options `mucode eval` and `mucode solve` share.
SEARCH_OPTIONS = ["n", "turns", "selector", "temperature", "top_p", "max_tokens", "seed", "greedy", "template",
                  "grading", "stop_at_code_end"]


@derived((EvalConfig, ["model", "dataset", "backend", "split", "policy"]),
         (SearchConfig, ["searches", *SEARCH_OPTIONS]),
         (EvalConfig, ["limit", "verifier", "verifier_dtype", "workers", "batch_size", "force", "label", "ray",
                       "ray_replicas", "ray_sandboxes"]))
def eval_command(
    out: Annotated[Path, typer.Option(help="Run folder (results.json, samples.jsonl, success_vs_turn.png, "
                                           "searches.jsonl); an existing one with the same config is resumed.")],
    ids: Ids = None,
    **options: Any,
) -> None:
    """Evaluate a model by multi-turn Best-of-N: success within k turns, pass@k over searches, with 95% CIs."""
    search = SearchConfig(**pop(options, ["searches", *SEARCH_OPTIONS]))
    results = run_eval(EvalConfig(out=str(out), search=search, ids=split_ids(ids), **options))
    for warning in results["warnings"]:
        print_warning(warning)
    console.print(results_table(results, out))


def pop(options: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """The named options, taken out of ``options`` (the rest go to another config)."""
    return {name: options.pop(name) for name in names}


def results_table(results: Mapping[str, Any], out: Path) -> Table:
    metrics, search = results["metrics"], results["config"]["search"]
    title = (f"mucode eval: {results['config']['source']['dataset']} "
             f"({search['selector']}, N={search['n']}, T={search['turns']}, S={search['searches']})")
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("tasks", f"{metrics['tasks']} ({metrics['searches']} searches)")
    for k, estimate in metrics["success_within_turns"].items():
        table.add_row(f"success within {k} turn{'s' if k != '1' else ''}", rate(estimate))
    for k, estimate in metrics["public_within_turns"].items():
        table.add_row(f"public pass within {k} turn{'s' if k != '1' else ''}", rate(estimate))
    for name, estimate in metrics["pass_at_k"].items():
        table.add_row(f"{name} over searches", rate(estimate))
    table.add_row("mean turns", f"{metrics['mean_turns']:.2f}")
    table.add_row("tokens/s (this session)", f"{results['throughput']['tokens_per_second']:.1f}")
    table.add_row("isolation", results["config"]["isolation"])
    table.add_row("run folder", str(out))
    return table
