"""``mucode verifier train | score | evaluate``: the learned verifier (see `mucode.verifier`, docs/verifier.md)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mucode.cli.console import console
from mucode.cli.options import derived, split_ids
from mucode.errors import ConfigError
from mucode.jobs import TrainConfig

app = typer.Typer(name="verifier", help="Train, apply and evaluate a learned verifier (reward model).",
                  no_args_is_help=True)

Rollouts = Annotated[str, typer.Option(help="Rollout run folders (written by `mucode rollout`), comma-separated.")]
VerifierDir = Annotated[Path, typer.Option("--verifier", help="A verifier folder written by `mucode verifier train`.")]
BatchSize = Annotated[int | None, typer.Option(help="Sequences per forward pass.", show_default="16")]
Dtype = Annotated[str, typer.Option(help="auto (bf16 where faster), bf16, fp32 (the training-time numbers) or "
                                          "int8 (CPU: faster, see docs/verifier.md).")]


@app.command("train")
@derived((TrainConfig, ["loss", "backbone", "lora", "lora_rank", "lora_alpha", "lora_dropout", "head_only",
                        "learning_rate", "epochs", "batch_size", "micro_batch_size", "pairs_per_problem", "max_length",
                        "l2_coeff", "weight_decay", "adam_epsilon", "max_grad_norm", "seed", "precision",
                        "gradient_checkpointing", "save_steps", "keep_checkpoints", "force"]))
def train_command(
    rollouts: Rollouts,
    out: Annotated[Path, typer.Option(help="Verifier folder (weights, tokenizer, verifier.json); checkpoints go "
                                           "to OUT/checkpoints and the same command resumes from them.")],
    **options: Any,
) -> None:
    """Train a verifier on the codes of rollout runs (every code labelled by the oracle)."""
    from mucode.verifier.train import train_verifier

    result = train_verifier(TrainConfig(rollouts=split_ids(rollouts), out=str(out), **options))
    console.print(train_table(result.info, out, result.trained))


@app.command("score")
def score_command(
    verifier: VerifierDir,
    rollouts: Rollouts,
    out: Annotated[Path | None, typer.Option(help="Folder for scores.jsonl.", show_default="the verifier folder")]
    = None,
    batch_size: BatchSize = None,
    dtype: Dtype = "auto",
) -> None:
    """Score every code of rollout runs: one line per code in scores.jsonl (run, task, rollout, turn, label)."""
    from mucode.verifier.evaluate import score_runs

    summary = score_runs(verifier, split_ids(rollouts), out, dtype=dtype, batch_size=batch_size)
    table = _table(f"mucode verifier score: {verifier}")
    table.add_row("codes scored", f"{summary['examples']} ({summary['problems']} problems)")
    table.add_row("codes per second", f"{summary['candidates_per_second']:.2f}")
    table.add_row("scores", summary["file"])
    console.print(table)


@app.command("evaluate")
def evaluate_command(
    verifier: VerifierDir,
    rollouts: Annotated[str, typer.Option(help="Held-out rollout run folders, comma-separated.")],
    out: Annotated[Path | None, typer.Option(help="Folder for evaluation.json and scores.jsonl.",
                                             show_default="the verifier folder")] = None,
    ks: Annotated[str | None, typer.Option(help="Candidate counts k for selection accuracy, comma-separated.",
                                           show_default="2,4,8")] = None,
    subsets: Annotated[int | None, typer.Option(help="Random k-subsets drawn per problem.", show_default="200")]
    = None,
    seed: Annotated[int, typer.Option(help="Seed of the subsets and of tie-breaking.")] = 0,
    batch_size: BatchSize = None,
    dtype: Dtype = "auto",
) -> None:
    """Pairwise accuracy, AUROC and selection accuracy at k (verifier vs random vs oracle) on held-out runs."""
    from mucode.verifier.evaluate import evaluate_runs

    options = {name: value for name, value in (("ks", _ks(ks) if ks else None), ("subsets", subsets)) if value}
    evaluation = evaluate_runs(verifier, split_ids(rollouts), out, seed=seed, dtype=dtype, batch_size=batch_size,
                               **options)
    folder = out or verifier
    for table in evaluation_tables(evaluation, f"mucode verifier evaluate: {verifier} on {rollouts}"):
        console.print(table)
    console.print(f"written: {folder / 'evaluation.json'}, {folder / 'scores.jsonl'}")


# ---------------------------------------------------------------------------------------------- tables


def train_table(info: Mapping[str, Any], out: Path, trained: bool) -> Table:
    data, training = info["data"], info["training"]
    mode = ", head only" if info["hyperparameters"].get("head_only") else ""
    title = f"mucode verifier train: {info['backbone']['name']} ({info['loss']}{mode})"
    table = _table(title if trained else f"{title}, already trained")
    table.add_row("examples", f"{data['examples']} ({data['positives']} correct, {data['problems']} problems, "
                              f"{data['problems_with_both_labels']} with both labels)")
    if "pairs" in data:
        table.add_row("pairs", str(data["pairs"]))
    table.add_row("trained on", f"{data['items']} ({data['dropped_too_long']} longer than max length left out)")
    table.add_row("steps", f"{training['steps']} ({training['epochs']:.2f} epochs, {info['precision']})")
    last = training["last_logged"]
    if "loss" in last:
        table.add_row("last logged loss", f"{last['loss']:.4f} (step {last.get('step')})")
    if "accuracy" in last:
        table.add_row("last logged accuracy", f"{last['accuracy']:.2%}")
    table.add_row("time", f"{info['timings']['seconds']:.0f} s")
    table.add_row("verifier", str(out))
    return table


def evaluation_tables(evaluation: Mapping[str, Any], title: str) -> list[Table]:
    metrics = evaluation["metrics"]
    summary = _table(title)
    summary.add_row("codes", f"{metrics['examples']} ({metrics['positives']} correct, {metrics['problems']} problems)")
    pairwise = metrics["pairwise_accuracy"]
    summary.add_row("pairwise accuracy", f"{_percent(pairwise['micro'])} over {pairwise['pairs']} pairs")
    summary.add_row("pairwise accuracy (per problem)",
                    f"{_percent(pairwise['macro'])} over {pairwise['problems']} problems")
    summary.add_row("AUROC", "n/a (one class only)" if metrics["auroc"] is None else f"{metrics['auroc']:.4f}")
    summary.add_row("codes per second", f"{evaluation['scoring']['candidates_per_second']:.2f}")
    selection = Table(title=f"selection accuracy: pick 1 of k ({metrics['subsets']} random subsets per problem)",
                      title_justify="left")
    for column in ("problems", "k", "n", "verifier", "random", "oracle"):
        selection.add_column(column, justify="right")
    for label, key in (("all", "selection"), ("with both labels", "selection_mixed")):
        for k, row in metrics[key].items():
            selection.add_row(label, k, str(row["problems"]),
                              *(_percent(row[name]) for name in ("verifier", "random", "oracle")))
    return [summary, selection]


def _table(title: str) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    return table


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(part) for part in split_ids(text))
    except ValueError:
        raise ConfigError(f"--ks must be integers, comma-separated; got {text!r}") from None
    if not ks or min(ks) < 1:
        raise ConfigError(f"--ks must be integers >= 1; got {text!r}")
    return ks
