"""``mucode eval``: multi-turn Best-of-N on a dataset, with metrics, samples and a plot (see `mucode.search`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mucode.backends import DEFAULT_BACKEND
from mucode.cli.console import console, print_warning
from mucode.cli.rollout import (
    BackendKind,
    Dataset,
    Force,
    Ids,
    Limit,
    Model,
    Policy,
    Split,
    Template,
    Workers,
    rate,
    split_ids,
)
from mucode.search import DEFAULT_BATCH_SIZE, SELECTORS, EvalConfig, SearchConfig, run_eval

# Search options shared with ``mucode solve``.
N = Annotated[int | None, typer.Option("--n", help="Candidates per turn (N).", show_default="5; 1 with --greedy")]
Turns = Annotated[int, typer.Option(help="Turns per search (T); a search stops at its first public pass.")]
Selector = Annotated[str, typer.Option(help=f"How a candidate is chosen: {', '.join(SELECTORS)} (lv and pt+lv "
                                            "need --verifier).")]
Temperature = Annotated[float | None, typer.Option(help="Sampling temperature.", show_default="0.7; 0 with --greedy")]
TopP = Annotated[float, typer.Option(help="Nucleus sampling mass.")]
MaxTokens = Annotated[int, typer.Option(help="Tokens per reply.")]
Seed = Annotated[int, typer.Option(help="Base seed of sampling and of tie-breaking.")]
Greedy = Annotated[bool, typer.Option("--greedy", help="BoN@1: one candidate per turn at temperature 0.")]
Verifier = Annotated[str | None, typer.Option(help="Learned verifier folder, for --selector lv or pt+lv.")]
VerifierDtype = Annotated[str, typer.Option(help="The verifier's precision: auto (bf16 where faster), bf16, fp32, "
                                                 "or int8 (CPU; faster, see docs/verifier.md).")]


def eval_command(
    model: Model,
    dataset: Dataset,
    out: Annotated[Path, typer.Option(help="Run folder (results.json, samples.jsonl, success_vs_turn.png, "
                                           "searches.jsonl); an existing one with the same config is resumed.")],
    backend: BackendKind = DEFAULT_BACKEND,
    split: Split = None,
    policy: Policy = None,
    n: N = None,
    turns: Turns = 3,
    selector: Selector = "pt",
    searches: Annotated[int, typer.Option(help="Independent searches per problem (S).")] = 1,
    temperature: Temperature = None,
    top_p: TopP = 1.0,
    max_tokens: MaxTokens = 1000,
    seed: Seed = 0,
    greedy: Greedy = False,
    template: Template = "paper",
    limit: Limit = None,
    ids: Ids = None,
    verifier: Verifier = None,
    verifier_dtype: VerifierDtype = "auto",
    workers: Workers = None,
    batch_size: Annotated[int, typer.Option(help="Searches in flight; a killed run redoes at most these.")]
    = DEFAULT_BATCH_SIZE,
    force: Force = False,
    label: Annotated[str | None, typer.Option(help="How `mucode report` names this model (default: --model).")]
    = None,
) -> None:
    """Evaluate a model by multi-turn Best-of-N: success within k turns, pass@k over searches, with 95% CIs."""
    search = SearchConfig(n=n, turns=turns, selector=selector, searches=searches, temperature=temperature,
                          top_p=top_p, max_tokens=max_tokens, seed=seed, template=template, greedy=greedy)
    config = EvalConfig(model=model, dataset=dataset, out=str(out), search=search, backend=backend, split=split,
                        policy=policy, limit=limit, ids=split_ids(ids), verifier=verifier,
                        verifier_dtype=verifier_dtype, workers=workers,
                        batch_size=batch_size, force=force, label=label)
    results = run_eval(config)
    for warning in results["warnings"]:
        print_warning(warning)
    console.print(results_table(results, out))


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
