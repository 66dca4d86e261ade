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
                        "learning_rate", "epochs", "batch_size", "micro_batch_size", "pairs_per_problem", "pairing",
                        "max_length",
                        "l2_coeff", "weight_decay", "adam_epsilon", "max_grad_norm", "seed", "precision",
                        "gradient_checkpointing", "save_steps", "keep_checkpoints", "eval_every", "force"]))
def train_command(
    rollouts: Rollouts,
    out: Annotated[Path, typer.Option(help="Verifier folder (weights, tokenizer, verifier.json); checkpoints go "
                                           "to OUT/checkpoints and the same command resumes from them.")],
    heldout: Annotated[str, typer.Option(help="Held-out rollout runs, comma-separated, scored during training "
                                              "(the learning curve: OUT/curve.jsonl).")] = "",
    **options: Any,
) -> None:
    """Train a verifier on the codes of rollout runs (every code labelled by the oracle)."""
    from mucode.launch import main_process
    from mucode.verifier.train import train_verifier

    config = TrainConfig(rollouts=split_ids(rollouts), out=str(out), heldout=split_ids(heldout) if heldout else (),
                         **options)
    result = train_verifier(config)
    if main_process():  # under accelerate launch: the main process prints
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
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap intervals.")] = 0,
    batch_size: BatchSize = None,
    dtype: Dtype = "auto",
) -> None:
    """Pairwise accuracy, AUROC and selection accuracy at k (verifier vs random vs oracle) on held-out runs' real
    code, and Best-of-k over independent first-turn samples (the paper's Fig. 4)."""
    from mucode.verifier.evaluate import evaluate_runs

    options = {"ks": _ks(ks)} if ks else {}
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
    if info.get("heldout_curve"):
        point = info["heldout_curve"][-1]
        area = "n/a" if point["auroc_real"] is None else f"{point['auroc_real']:.4f}"
        lead = "n/a" if point["sel4_lead_real"] is None else f"{point['sel4_lead_real']:+.1f} points"
        table.add_row("held-out, real code", f"AUROC {area}, sel@4 lead {lead} ({len(info['heldout_curve'])} "
                                             f"points in {out / 'curve.jsonl'})")
    table.add_row("time", f"{info['timings']['seconds']:.0f} s")
    table.add_row("verifier", str(out))
    return table


def evaluation_tables(evaluation: Mapping[str, Any], title: str) -> list[Table]:
    metrics = evaluation["metrics"]
    real, everything, excluded = metrics["real"], metrics["all"], metrics["excluded"]
    summary = _table(title)
    summary.add_row("real codes", f"{real['examples']} ({real['positives']} correct, {real['problems']} problems)")
    echoes = excluded["placeholder_echoes"]
    summary.add_row("left out", f"{echoes['count']} placeholder echoes, {excluded['no_code_turns']} turns without code")
    for name, bundle in (("real code", real), ("with echoes", everything)):
        pairwise = bundle["pairwise_accuracy"]
        summary.add_row(f"pairwise accuracy, {name}", f"{_percent(pairwise['micro'])} over {pairwise['pairs']} pairs "
                                                       f"({_percent(pairwise['macro'])} per problem)")
        area = bundle["auroc"]
        summary.add_row(f"AUROC, {name}", "n/a (one class only)" if area is None else f"{area:.4f}")
    summary.add_row("codes per second", f"{evaluation['scoring']['candidates_per_second']:.2f}")
    first = metrics["first_turn"]
    selection = Table(title="selection accuracy: pick 1 of k (exact over all k-subsets); lead = verifier - random, "
                            "points, 95% bootstrap interval over problems", title_justify="left")
    for column in ("candidates", "problems", "k", "n", "verifier", "random", "oracle", "lead"):
        selection.add_column(column, justify="right")
    fig4 = f"first turn (Fig. 4, >= {first['min_candidates']})"
    every = "real, every turn"
    rows = [(every, "all", real["selection"]), (every, "both labels", real["selection_mixed"]),
            (fig4, "all", first["selection"]), (fig4, "both labels", first["selection_mixed"])]
    for candidates, problems, by_k in rows:
        for k, row in by_k.items():
            selection.add_row(candidates, problems, k, str(row["problems"]),
                              *(_percent(row[name]) for name in ("verifier", "random", "oracle")), _lead(row))
    return [summary, selection]


def _lead(row: Mapping[str, Any]) -> str:
    if row["lead"] is None:
        return "n/a"
    low, high = row["lead_ci95"]
    return f"{row['lead']:+.1f} [{low:+.1f}, {high:+.1f}]"


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
