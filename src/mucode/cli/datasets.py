"""``mucode datasets``: the datasets mucode can load, their splits and task counts."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table

from mucode.cli.console import console
from mucode.errors import MucodeError
from mucode.problems import MBPP_POLICIES, MBPP_SPLITS, dataset_source, load_problems

#: (dataset, split, policies) as `load_problems` takes them; the other names in DATASETS are aliases.
LISTED = (
    *(("mbpp", split, MBPP_POLICIES) for split in MBPP_SPLITS),
    ("mbpp+", "test", ("eval",)),
    ("humaneval", "test", ("eval",)),
    ("humaneval+", "test", ("eval",)),
)


def datasets_command() -> None:
    """List the datasets with their splits, task counts and where each is read from. An EvalPlus file that is not
    downloaded yet is not fetched for this listing: it is fetched on its first use."""
    table = Table(title="datasets", title_justify="left",
                  caption="also: --dataset hf:<hub name> (MBPP schema) or a problems .jsonl file",
                  caption_justify="left")
    for name in ("dataset", "split", "policies", "tasks", "source"):
        table.add_column(name, justify="right" if name == "tasks" else "left")
    for dataset, split, policies in LISTED:
        source = _source(dataset)
        table.add_row(dataset, split, ", ".join(policies), _count(dataset, split, source), escape(source))
    console.print(table)


def _source(dataset: str) -> str:
    try:
        return dataset_source(dataset)
    except MucodeError as error:
        return f"unavailable: {error}"


def _count(dataset: str, split: str, source: str) -> str:
    """The number of tasks as text, or why the dataset cannot be loaded here ("-" before its first download)."""
    if source.startswith("not downloaded yet"):
        return "-"
    try:
        return str(len(load_problems(dataset, split)))
    except MucodeError as error:
        return f"[red]unavailable: {escape(str(error))}[/]"
