"""``mucode report``: compare methods across ``mucode eval`` runs, laid out like the μCode paper's Table 1.

Every ``results.json`` of format ``mucode.eval/1`` under the given run folders becomes one *run*: a method
(its ``config.label``, else ``config.model``), a dataset (``source.dataset`` and split) and a setting (greedy,
or BoN@N with its selector). The report is a methods × (dataset, setting) table of success within T turns
with 95% intervals, each number linking to the file it came from, a table of the runs, and two plots. It is
written as Markdown, as self-contained HTML (plots embedded), and as JSON for tools; all files atomically.

Numbers are read from the results files and never recomputed, so a report always agrees with ``mucode eval``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from mucode.errors import ConfigError
from mucode.evaluate import RESULT_PACKAGES
from mucode.problems.mbpp import HUB_PREFIX
from mucode.runs import versions, write_atomic, write_json, write_text
from mucode.search import EVAL_FORMAT, RESULTS_FILE

REPORT_FORMAT = "mucode.report/1"
#: Files that describe a training pipeline, looked for from a run's folder up to its RUN_DIR.
PIPELINE_CONFIGS = ("config.toml", "pipeline.json")
#: A pipeline run's choice of the generator it presents (written by `mucode.pipeline`, which sits above the report).
SELECTION_FILE = "selection.json"
#: Plot names (keys of report.json's ``plots``) and the suffix of their PNG after the report's stem.
PLOTS = {"success_vs_turn": "_success_vs_turn.png", "bon_vs_n": "_bon_vs_n.png"}
METRIC = ("success within T turns (the search's committed code passes the public and the private tests), % of "
          "tasks, with 95% Wilson intervals over tasks")
SETTINGS = ("greedy: one candidate per turn at temperature 0 (BoN@1); BoN@N (selector): N candidates per turn, "
            "one kept by the selector (pt: public tests, lv: learned verifier, pt+lv: both); T turns, a search "
            "stops at its first public pass")
NO_BON_PLOT = ("no Best-of-N against N plot: no method has results at several N for one dataset and selector "
               "(greedy counts as N = 1)")
NO_MATPLOTLIB = "no plots: matplotlib is not installed (pip install matplotlib)"


@dataclass(frozen=True)
class ReportConfig:
    """One ``mucode report``: the folders to search and the Markdown file to write (the HTML, the JSON and the
    plots go beside it, named after it: report.md → report.html, report.json, report_success_vs_turn.png)."""

    run_dirs: tuple[str, ...]
    out: str
    html: bool = True

    def __post_init__(self) -> None:
        if not self.run_dirs:
            raise ConfigError("no run folder given: pass one or more folders that hold mucode eval results")
        if Path(self.out).suffix.lower() != ".md":
            raise ConfigError(f"--out {self.out}: the report is a Markdown file, name it *.md (the .html, .json and "
                              "plots are written beside it)")


@dataclass(frozen=True)
class EvalRun:
    """One ``mucode eval`` results file, as the report sees it (paths are resolved)."""

    results: Path
    #: The RUN_DIR it was found under.
    root: Path
    #: ``config.label``, else ``config.model``.
    method: str
    model: str
    dataset: str
    setting: str
    selector: str
    n: int
    greedy: bool
    turns: int
    metrics: Mapping[str, Any]
    created: str
    #: The nearest config.toml or pipeline.json from the run's folder up to ``root``, if any.
    pipeline_config: Path | None
    #: The folder name `disambiguate` adds when another run has the same method, dataset and setting.
    tag: str | None = None

    @property
    def label(self) -> str:
        """The row of the main table: the method, with its tag if it has one (``Instruct (run-a)``)."""
        return f"{self.method} ({self.tag})" if self.tag else self.method

    @property
    def success(self) -> Mapping[str, Any]:
        """Success within the run's last turn: the Table 1 number."""
        return self.metrics["success_within_turns"][str(self.turns)]

    @property
    def public(self) -> Mapping[str, Any]:
        """Public-test pass within the last turn."""
        return self.metrics["public_within_turns"][str(self.turns)]


# ------------------------------------------------------------------------------------------- collecting


def collect_runs(run_dirs: Sequence[str | os.PathLike[str]]) -> list[EvalRun]:
    """The eval runs under ``run_dirs``: folders in the order given, files in natural path order within each
    (iter-2 before iter-10), each file once. Other results.json files (``mucode evaluate``'s) are skipped.

    Two runs with the same (label, dataset, setting) from different folders are both kept, their labels
    suffixed with the folder that tells them apart (see `disambiguate`). Raises ConfigError for a folder that
    does not exist, a results file that cannot be read, or when no eval results are found at all.
    """
    runs = [run for results, root in find_results(run_dirs) if (run := load_run(results, root)) is not None]
    if not runs:
        raise ConfigError(f"no mucode eval results ({RESULTS_FILE} of format {EVAL_FORMAT}) under "
                          f"{', '.join(str(path) for path in run_dirs)}")
    return disambiguate(runs)


def find_results(run_dirs: Sequence[str | os.PathLike[str]]) -> list[tuple[Path, Path]]:
    """(results.json, its RUN_DIR) pairs, resolved and without repeats; a RUN_DIR may also be the file itself."""
    found: dict[Path, Path] = {}
    for given in run_dirs:
        path = Path(given).expanduser()
        if not path.exists():
            raise ConfigError(f"{given}: no such run folder")
        root = path.resolve()
        if root.is_file():
            found.setdefault(root, root.parent)
            continue
        for results in sorted(root.rglob(RESULTS_FILE), key=lambda item: _natural_key(item.relative_to(root))):
            if results.is_file():
                found.setdefault(results.resolve(), root)
    return list(found.items())


def _natural_key(path: Path) -> tuple[list[str | int], ...]:
    """Sort key that orders digits by value in each path part: iter-2 < iter-10, and base < iter-1."""
    return tuple([int(chunk) if index % 2 else chunk for index, chunk in enumerate(re.split(r"(\d+)", part))]
                 for part in path.parts)


def load_run(results: Path, root: Path) -> EvalRun | None:
    """The run in ``results``; None for a JSON file of another format. ConfigError naming the file and the
    field for one that is not valid JSON or lacks what the report needs."""
    try:
        data = json.loads(results.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{results}: cannot read ({error.strerror or error})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ConfigError(f"{results}: not valid JSON ({error})") from None
    if not isinstance(data, dict) or data.get("format") != EVAL_FORMAT:
        return None
    field = _field_reader(data, results)
    search = field("config.search", dict)
    n, turns, greedy = field("config.search.n", int), field("config.search.turns", int), bool(search.get("greedy"))
    selector = field("config.search.selector", str)
    for name in ("success_within_turns", "public_within_turns"):
        field(f"metrics.{name}.{turns}.value", float)
        field(f"metrics.{name}.{turns}.ci95", list)
    for name in ("tasks", "searches", "mean_turns"):
        field(f"metrics.{name}", float)
    label = data["config"].get("label")
    model = field("config.model", str)
    method = label if isinstance(label, str) and label.strip() else model
    return EvalRun(results=results, root=root, method=method + selection_mark(results.parent, root),
                   model=model, dataset=dataset_name(field("config.source.dataset", str), data["config"]["source"]),
                   setting=setting_name(greedy, n, selector), selector=selector, n=n, greedy=greedy, turns=turns,
                   metrics=data["metrics"], created=str(data.get("created") or ""),
                   pipeline_config=find_pipeline_config(results.parent, root))


def _field_reader(data: Mapping[str, Any], results: Path) -> Callable[[str, type], Any]:
    """``field("a.b.c", kind)``: the nested value, or a ConfigError naming the file and the dotted field."""
    def field(dotted: str, kind: type) -> Any:
        value: Any = data
        for name in dotted.split("."):
            value = value.get(name) if isinstance(value, dict) else None
        numeric = kind is float and isinstance(value, int | float) and not isinstance(value, bool)
        if not (numeric or (isinstance(value, kind) and not isinstance(value, bool))):
            raise ConfigError(f"{results}: not a valid {EVAL_FORMAT} result: {dotted} is missing or not a "
                              f"{kind.__name__}")
        return value

    return field


def dataset_name(dataset: str, source: Mapping[str, Any]) -> str:
    """``mbpp/test``; ``humaneval`` alone, since only MBPP (and ``hf:`` MBPP copies) has several splits and
    the others always record ``test``; `` (train policy)`` appended when all of MBPP's tests were public."""
    split, policy = source.get("split"), source.get("policy")
    several_splits = dataset.lower() == "mbpp" or dataset.startswith(HUB_PREFIX)
    name = f"{dataset}/{split}" if split and several_splits else dataset
    return f"{name} ({policy} policy)" if policy not in (None, "eval") else name


def setting_name(greedy: bool, n: int, selector: str) -> str:
    """``greedy``, or ``BoN@5 (pt)``: how a column of the main table is named."""
    return "greedy" if greedy else f"BoN@{n} ({selector})"


def selection_mark(folder: Path, root: Path) -> str:
    """`` · selected on validation`` / `` · not selected`` for a trained generator's search in a pipeline run
    that chose among several (its ``selection.json``); empty for anything else."""
    for candidate in (folder, *folder.parents):
        file = candidate / SELECTION_FILE
        if file.is_file():
            try:
                selection = json.loads(file.read_text(encoding="utf-8"))
                parts = folder.relative_to(candidate).parts
            except (OSError, ValueError):
                return ""
            if not isinstance(selection, dict) or len(selection.get("candidates") or ()) < 2:
                return ""
            key = parts[1] if len(parts) > 1 and parts[0] == "evals" else None
            if key not in selection["candidates"]:
                return ""
            return f" · selected on {selection.get('by')}" if key == selection.get("selected") else " · not selected"
        if candidate == root:
            break
    return ""


def find_pipeline_config(folder: Path, root: Path) -> Path | None:
    """The nearest pipeline config (`PIPELINE_CONFIGS`) from ``folder`` up to ``root``, both included."""
    for candidate in (folder, *folder.parents):
        for name in PIPELINE_CONFIGS:
            if (candidate / name).is_file():
                return candidate / name
        if candidate == root:
            break
    return None


def disambiguate(runs: Sequence[EvalRun]) -> list[EvalRun]:
    """Runs whose (label, dataset, setting) collide get the folder that tells them apart appended to the label:
    ``Instruct (run-a)`` and ``Instruct (run-b)``. Only colliding runs are tagged; order is kept."""
    groups: dict[tuple[str, str, str], list[int]] = {}
    for index, run in enumerate(runs):
        groups.setdefault((run.method, run.dataset, run.setting), []).append(index)
    tagged = list(runs)
    for indices in groups.values():
        if len(indices) > 1:
            tags = distinguishing_tags([runs[index].results.parent for index in indices])
            for index, tag in zip(indices, tags, strict=True):
                tagged[index] = replace(runs[index], tag=tag)
    clashes = Counter((run.label, run.dataset, run.setting) for run in tagged)  # a tag equal to another label
    return [replace(run, tag=str(run.results.parent)) if clashes[run.label, run.dataset, run.setting] > 1 else run
            for run in tagged]


def distinguishing_tags(folders: Sequence[Path]) -> list[str]:
    """Short names that tell distinct folders apart: their common trailing parts dropped, then as few of the
    last remaining parts as make the names distinct (run-a/evals/x, run-b/evals/x → run-a, run-b)."""
    parts = [folder.parts for folder in folders]
    common = 0
    while all(len(item) > common + 1 for item in parts) and len({item[-1 - common] for item in parts}) == 1:
        common += 1
    heads = [item[:len(item) - common] for item in parts]
    for depth in range(1, max(len(head) for head in heads) + 1):
        tags = ["/".join(head[-depth:]) for head in heads]
        if len(set(tags)) == len(tags):
            return tags
    return [str(folder) for folder in folders]


# ------------------------------------------------------------------------------------------- table data


def report_data(runs: Sequence[EvalRun], out_dir: Path, inputs: Sequence[str]) -> dict[str, Any]:
    """What report.json holds and the Markdown and HTML render: methods (rows, in order of first appearance),
    columns (`_columns`), cells and runs (both ordered as the table reads: by method, then column).

    Rates are fractions as in results.json; paths are relative to ``out_dir`` (the report's folder).
    """
    out_dir = out_dir.resolve()
    methods, columns = list(dict.fromkeys(run.label for run in runs)), _columns(runs)
    runs = sorted(runs, key=lambda run: (methods.index(run.label), columns.index((run.dataset, run.setting))))
    return {
        "format": REPORT_FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": versions(*RESULT_PACKAGES),
        "inputs": list(inputs),
        "metric": METRIC,
        "methods": methods,
        "columns": [{"dataset": dataset, "setting": setting} for dataset, setting in columns],
        "cells": [{"method": run.label, "dataset": run.dataset, "setting": run.setting, "value": run.success["value"],
                   "ci95": list(run.success["ci95"]), "tasks": run.metrics["tasks"], "turns": run.turns,
                   "results": _relative(run.results, out_dir)} for run in runs],
        "runs": [_run_row(run, out_dir) for run in runs],
    }


def _columns(runs: Sequence[EvalRun]) -> list[tuple[str, str]]:
    """Datasets in order of first appearance; within one, greedy first, then by N, then by selector."""
    datasets = list(dict.fromkeys(run.dataset for run in runs))
    settings = {(run.dataset, run.setting): (not run.greedy, run.n, run.selector) for run in runs}
    return sorted(settings, key=lambda column: (datasets.index(column[0]), settings[column]))


def _run_row(run: EvalRun, out_dir: Path) -> dict[str, Any]:
    return {"method": run.label, "model": run.model, "dataset": run.dataset, "setting": run.setting,
            "selector": run.selector, "n": run.n, "greedy": run.greedy, "turns": run.turns,
            "tasks": run.metrics["tasks"], "searches": run.metrics["searches"], "mean_turns": run.metrics["mean_turns"],
            "success": dict(run.success), "public": dict(run.public),
            "success_within_turns": dict(run.metrics["success_within_turns"]),
            "results": _relative(run.results, out_dir),
            "pipeline_config": None if run.pipeline_config is None else _relative(run.pipeline_config, out_dir),
            "created": run.created}


def _relative(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path, start)).as_posix()


def percent(estimate: Mapping[str, Any]) -> tuple[str, str]:
    """A rate as the paper prints it: (``56.7``, ``[49.1, 64.1]``)."""
    low, high = estimate["ci95"]
    return f"{100 * estimate['value']:.1f}", f"[{100 * low:.1f}, {100 * high:.1f}]"


# ------------------------------------------------------------------------------------------------ tables

#: A table cell: text fragments, each with a link target (relative URL) or None.
Cell = tuple[tuple[str, str | None], ...]


def main_table(data: Mapping[str, Any]) -> tuple[list[str], list[list[Cell]]]:
    """Methods × (dataset, setting): the success cell links to its results.json; "—" where no run exists."""
    columns = [(column["dataset"], column["setting"]) for column in data["columns"]]
    cells = {(cell["method"], cell["dataset"], cell["setting"]): cell for cell in data["cells"]}
    header = ["method", *(f"{dataset}, {setting}" for dataset, setting in columns)]
    rows = []
    for method in data["methods"]:
        row: list[Cell] = [((method, None),)]
        for dataset, setting in columns:
            cell = cells.get((method, dataset, setting))
            if cell is None:
                row.append((("—", None),))
            else:
                value, interval = percent(cell)
                row.append(((value, _url(cell["results"])), (f" {interval}", None)))
        rows.append(row)
    return header, rows


def runs_table(data: Mapping[str, Any]) -> tuple[list[str], list[list[Cell]]]:
    """One row per run: what it is, its size, mean turns, public pass rate, and where its config lives."""
    header = ["method", "model", "dataset", "setting", "T", "tasks", "searches", "mean turns", "success @ T",
              "public pass @ T", "results", "pipeline config", "created"]
    rows = []
    for run in data["runs"]:
        config = run["pipeline_config"]
        values = [run["method"], run["model"], run["dataset"], run["setting"], str(run["turns"]), str(run["tasks"]),
                  str(run["searches"]), f"{run['mean_turns']:.2f}", " ".join(percent(run["success"])),
                  " ".join(percent(run["public"]))]
        rows.append([*(((value, None),) for value in values), ((run["results"], _url(run["results"])),),
                     ((config, _url(config)),) if config else (("—", None),), ((run["created"][:10] or "—", None),)])
    return header, rows


def _url(path: str) -> str:
    return quote(path, safe="/")


def _intro(data: Mapping[str, Any]) -> list[str]:
    """The paragraphs that say how every number was obtained."""
    return [f"Generated by `mucode report` (mucode {data['versions']['mucode']}) on {data['created']} from "
            f"{len(data['runs'])} `mucode eval` runs under {', '.join(f'`{path}`' for path in data['inputs'])}.",
            f"Cells: {METRIC}, at each run's last turn T. Each number links to the results.json it was read from.",
            f"Settings: {SETTINGS}."]


def _plot_sections() -> list[tuple[str, str]]:
    """(heading, plot key) of the figures, in report order."""
    return [("Success within k turns", "success_vs_turn"), ("Best-of-N against N", "bon_vs_n")]


# ------------------------------------------------------------------------------------------------ render


def render_markdown(data: Mapping[str, Any]) -> str:
    """report.md: the intro, the main table, the runs table, the plots (PNG files beside it), the notes."""
    lines = ["# mucode report", "", *(line for paragraph in _intro(data) for line in (paragraph, "")),
             "## Success at the last turn (%, 95% CI)", "", *_markdown_table(*main_table(data)), "",
             "## Runs", "", *_markdown_table(*runs_table(data)), ""]
    for heading, key in _plot_sections():
        file = data["plots"].get(key)
        if file is not None:
            lines += [f"## {heading}", "", f"![{heading}]({_url(file)})", ""]
    if data["notes"]:
        lines += ["## Notes", "", *(f"- {_markdown_text(note)}" for note in data["notes"]), ""]
    return "\n".join(lines)


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[Cell]]) -> list[str]:
    def cell(fragments: Cell) -> str:
        return "".join(f"[{_markdown_text(text)}]({href})" if href else _markdown_text(text)
                       for text, href in fragments)

    return [f"| {' | '.join(_markdown_text(name) for name in header)} |", f"|{'---|' * len(header)}",
            *(f"| {' | '.join(cell(item) for item in row)} |" for row in rows)]


def _markdown_text(text: str) -> str:
    """Text that cannot break a table row: pipes escaped, newlines flattened."""
    return " ".join(text.split("\n")).replace("|", "\\|")


STYLE = ("body{font-family:system-ui,sans-serif;margin:2em auto;max-width:80em;padding:0 1em;color:#222}"
         "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:.3em .6em;"
         "text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
         "img{max-width:100%;display:block;margin:1em 0}code{background:#f3f3f3;padding:0 .2em}")


def render_html(data: Mapping[str, Any], images: Mapping[str, bytes]) -> str:
    """report.html: the Markdown's content with every plot embedded as a base64 data URI, so the file stands
    alone (its only links are to the results files, relative like the Markdown's)."""
    body = ["<h1>mucode report</h1>", *(f"<p>{_html_text(paragraph)}</p>" for paragraph in _intro(data)),
            "<h2>Success at the last turn (%, 95% CI)</h2>", _html_table(*main_table(data)),
            "<h2>Runs</h2>", _html_table(*runs_table(data))]
    for heading, key in _plot_sections():
        if key in images:
            encoded = base64.b64encode(images[key]).decode("ascii")
            body += [f"<h2>{html.escape(heading)}</h2>",
                     f'<img alt="{html.escape(heading)}" src="data:image/png;base64,{encoded}">']
    if data["notes"]:
        body += ["<h2>Notes</h2>", "<ul>", *(f"<li>{html.escape(note)}</li>" for note in data["notes"]), "</ul>"]
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>mucode report</title>\n"
            f"<style>{STYLE}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n")


def _html_table(header: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    def cell(fragments: Cell) -> str:
        return "".join(f'<a href="{html.escape(href)}">{html.escape(text)}</a>' if href else html.escape(text)
                       for text, href in fragments)

    head = "".join(f"<th>{html.escape(name)}</th>" for name in header)
    body = "".join(f"<tr>{''.join(f'<td>{cell(item)}</td>' for item in row)}</tr>\n" for row in rows)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"


def _html_text(text: str) -> str:
    """Escaped text with Markdown's `code` spans as <code>."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


# ------------------------------------------------------------------------------------------------- plots


def plot_images(runs: Sequence[EvalRun]) -> tuple[dict[str, bytes], list[str]]:
    """The PNGs (by `PLOTS` key) that have something to draw, and a note for each one left out."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        return {}, [NO_MATPLOTLIB]
    images = {"success_vs_turn": _success_vs_turn(pyplot, runs)}
    series = bon_series(runs)
    if series:
        images["bon_vs_n"] = _bon_vs_n(pyplot, series)
    return images, [] if series else [NO_BON_PLOT]


def bon_series(runs: Sequence[EvalRun]) -> dict[tuple[str, str, str], dict[int, EvalRun]]:
    """(method, dataset, selector) → {N: run} for the series with at least two N.

    A greedy run of the method and dataset is N = 1 of every selector's series (the selector does not matter
    with one candidate) unless that series has a sampled N = 1 run of its own.
    """
    greedy: dict[tuple[str, str], EvalRun] = {}
    sampled: dict[tuple[str, str, str], dict[int, EvalRun]] = {}
    for run in runs:
        if run.greedy:
            greedy.setdefault((run.label, run.dataset), run)
        else:
            sampled.setdefault((run.label, run.dataset, run.selector), {}).setdefault(run.n, run)
    for (label, dataset, _), points in sampled.items():
        if 1 not in points and (label, dataset) in greedy:
            points[1] = greedy[label, dataset]
    return {key: dict(sorted(points.items())) for key, points in sampled.items() if len(points) > 1}


def _success_vs_turn(pyplot: Any, runs: Sequence[EvalRun]) -> bytes:
    """One panel per (dataset, setting), one line per method: success within k turns with 95% error bars."""
    columns = _columns(runs)
    colours = _colours(run.label for run in runs)
    figure, panels = _panels(pyplot, len(columns))
    try:
        for axes, (dataset, setting) in zip(panels, columns, strict=False):
            chosen = [run for run in runs if (run.dataset, run.setting) == (dataset, setting)]
            for position, run in enumerate(chosen):
                estimates = run.metrics["success_within_turns"]
                turns = sorted(estimates, key=int)
                offset = 0.06 * (position - (len(chosen) - 1) / 2)  # keeps overlapping error bars apart
                _errorbar(axes, [int(k) + offset for k in turns], [estimates[k] for k in turns], run.label,
                          colours[run.label])
                axes.set_xticks([int(k) for k in turns])
            axes.set(title=f"{dataset}, {setting}", xlabel="turns k", ylabel="success within k turns (%)")
        return _finish(pyplot, figure, panels)
    finally:
        pyplot.close(figure)


def _bon_vs_n(pyplot: Any, series: Mapping[tuple[str, str, str], Mapping[int, EvalRun]]) -> bytes:
    """One panel per dataset, one line per (method, selector): success at the last turn against N (log2)."""
    datasets = list(dict.fromkeys(dataset for _, dataset, _ in series))
    colours = _colours(f"{label} ({selector})" for label, _, selector in series)
    figure, panels = _panels(pyplot, len(datasets))
    try:
        for axes, dataset in zip(panels, datasets, strict=False):
            ns: set[int] = set()
            for (label, name, selector), points in series.items():
                if name == dataset:
                    ns.update(points)
                    _errorbar(axes, list(points), [run.success for run in points.values()], f"{label} ({selector})",
                              colours[f"{label} ({selector})"])
            axes.set_xscale("log", base=2)
            axes.set_xticks(sorted(ns), [str(n) for n in sorted(ns)])
            axes.minorticks_off()
            axes.set(title=f"{dataset}: Best-of-N", xlabel="N (candidates per turn; greedy at N = 1)",
                     ylabel="success at the last turn (%)")
        return _finish(pyplot, figure, panels)
    finally:
        pyplot.close(figure)


def _colours(names: Iterable[str]) -> dict[str, str]:
    """One colour per name across all panels, so a method looks the same everywhere."""
    return {name: f"C{index % 10}" for index, name in enumerate(dict.fromkeys(names))}


def _panels(pyplot: Any, count: int) -> tuple[Any, list[Any]]:
    columns = min(count, 3)
    rows = math.ceil(count / columns)
    figure, axes = pyplot.subplots(rows, columns, figsize=(5 * columns, 3.8 * rows), dpi=110, squeeze=False)
    return figure, [item for row in axes for item in row]


def _errorbar(axes: Any, xs: Sequence[float], estimates: Sequence[Mapping[str, Any]], label: str,
              colour: str) -> None:
    values = [100 * estimate["value"] for estimate in estimates]
    errors = [[value - 100 * estimate["ci95"][0] for value, estimate in zip(values, estimates, strict=True)],
              [100 * estimate["ci95"][1] - value for value, estimate in zip(values, estimates, strict=True)]]
    axes.errorbar(xs, values, yerr=errors, marker="o", capsize=4, label=label, color=colour)


def _finish(pyplot: Any, figure: Any, panels: Sequence[Any]) -> bytes:
    for axes in panels:
        if axes.has_data():
            axes.set_ylim(0, 100)
            axes.grid(alpha=0.3)
            axes.legend(loc="best", fontsize="small")
        else:
            axes.set_visible(False)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------- write


def report_paths(out: str | os.PathLike[str]) -> dict[str, Path]:
    """Where each file of the report goes: ``markdown``, ``html``, ``json`` and one per plot (`PLOTS` keys)."""
    markdown = Path(out).expanduser()
    return {"markdown": markdown, "html": markdown.with_suffix(".html"), "json": markdown.with_suffix(".json"),
            **{key: markdown.with_name(markdown.stem + suffix) for key, suffix in PLOTS.items()}}


def write_report(config: ReportConfig) -> dict[str, Any]:
    """What ``mucode report`` does: collect the runs, draw the plots, write report.md, .json and (unless
    ``config.html`` is false) .html, all atomically. Returns report.json's content plus ``files`` (what was
    written). A plot with nothing to draw is left out with a note, and an older PNG of that name removed."""
    runs = collect_runs(config.run_dirs)
    paths = report_paths(config.out)
    data = report_data(runs, paths["markdown"].parent, config.run_dirs)
    images, notes = plot_images(runs)
    data["notes"] = [*_collision_notes(runs, paths["markdown"].parent), *notes]
    data["plots"] = {key: paths[key].name if key in images else None for key in PLOTS}
    for key in PLOTS:
        if key in images:
            write_atomic(paths[key], images[key])
        else:
            paths[key].unlink(missing_ok=True)
    write_json(paths["json"], data)
    write_text(paths["markdown"], render_markdown(data))
    written = ["markdown", "json", *(key for key in PLOTS if key in images)]
    if config.html:
        write_text(paths["html"], render_html(data, images))
        written.insert(1, "html")
    return {**data, "files": {key: str(paths[key]) for key in written}}


def _collision_notes(runs: Sequence[EvalRun], out_dir: Path) -> list[str]:
    """Say which labels `disambiguate` tagged, so a reader knows the suffix is a folder, not a method."""
    return [f"{run.label}: several runs are {run.method!r} on {run.dataset}, {run.setting}; the folder that tells "
            f"them apart is added in parentheses ({_relative(run.results, out_dir.resolve())})"
            for run in runs if run.tag]
