"""``mucode rollout``: N multi-turn rollouts per problem into a resumable run folder (see `mucode.rollout`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mucode.backends import BACKENDS, DEFAULT_BACKEND
from mucode.cli.console import console, print_warning
from mucode.env import TEMPLATES
from mucode.rollout import DEFAULT_BATCH_SIZE, RolloutConfig, rollout

# Option types shared by the commands that generate (rollout, eval, solve).
Model = Annotated[str, typer.Option(help="Model: a registry name, a local model file or folder, or a served id.")]
BackendKind = Annotated[str, typer.Option("--backend", help=f"Generation backend: {', '.join(BACKENDS)}.")]
Dataset = Annotated[str, typer.Option(help="mbpp, humaneval, mbpp+, humaneval+, hf:<hub name> or a problems "
                                           ".jsonl file.")]
Split = Annotated[str | None, typer.Option(help="MBPP split: test, train, validation, prompt or all.",
                                           show_default="test")]
Policy = Annotated[str | None, typer.Option(help="Which tests are public: eval (one) or train (all three; MBPP).",
                                            show_default="eval")]
Limit = Annotated[int | None, typer.Option(help="Only the first N problems of the split (after --ids).")]
Ids = Annotated[str | None, typer.Option(help="Only these task ids, comma-separated (e.g. 11,12 or "
                                              "HumanEval/0).")]
Workers = Annotated[int | None, typer.Option(help="Programs run at once in the sandbox.",
                                             show_default="2 × CPU cores")]
Template = Annotated[str, typer.Option(help=f"Prompt template: {', '.join(TEMPLATES)}.")]
Force = Annotated[bool, typer.Option("--force", help="Start the run folder over, deleting its earlier records.")]


def rollout_command(
    model: Model,
    dataset: Dataset,
    out: Annotated[Path, typer.Option(help="Run folder (config.json, trajectories.jsonl, summary.json); an "
                                           "existing one with the same config is resumed.")],
    backend: BackendKind = DEFAULT_BACKEND,
    split: Split = None,
    policy: Policy = None,
    rollouts: Annotated[int, typer.Option(help="Rollouts per problem.")] = 15,
    turns: Annotated[int, typer.Option(help="Turns per rollout (T).")] = 3,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.7,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass.")] = 1.0,
    max_tokens: Annotated[int, typer.Option(help="Tokens per reply.")] = 1000,
    seed: Annotated[int, typer.Option(help="Base seed; each turn's seed derives from it, the task, the rollout "
                                           "and the turn.")] = 0,
    template: Template = "paper",
    stop_on: Annotated[str, typer.Option(help="oracle: stop on public ∧ private success, as the training env "
                                              "does (METHOD.md §2.6); public: stop at the first public pass, "
                                              "the paper's rule.")] = "oracle",
    limit: Limit = None,
    ids: Ids = None,
    workers: Workers = None,
    batch_size: Annotated[int, typer.Option(help="Episodes in flight; a killed run redoes at most these.")]
    = DEFAULT_BATCH_SIZE,
    force: Force = False,
) -> None:
    """Collect multi-turn rollouts (training data): N episodes × T turns per problem, resumable."""
    config = RolloutConfig(model=model, dataset=dataset, out=str(out), backend=backend, split=split, policy=policy,
                           rollouts=rollouts, turns=turns, temperature=temperature, top_p=top_p,
                           max_tokens=max_tokens, seed=seed, template=template, stop_on=stop_on, limit=limit,
                           ids=split_ids(ids), workers=workers, batch_size=batch_size, force=force)
    summary = rollout(config)
    for warning in summary["warnings"]:
        print_warning(warning)
    console.print(summary_table(summary, f"mucode rollout: {dataset}"))


def split_ids(text: str | None) -> tuple[str, ...]:
    """``--ids A,B`` as a tuple; blanks dropped."""
    return tuple(part.strip() for part in (text or "").split(",") if part.strip())


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
