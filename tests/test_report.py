"""mucode.report: the Table 1 comparison of eval runs (Markdown, HTML, JSON, plots) and ``mucode report``."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote

import pytest

from mucode.cli import main
from mucode.errors import ConfigError
from mucode.records import SearchRecord, SearchTurn
from mucode.report import (
    ReportConfig,
    bon_series,
    collect_runs,
    distinguishing_tags,
    write_report,
)
from mucode.rollout import Throughput
from mucode.search import SearchConfig, write_eval_outputs
from mucode.types import Problem

PNG = b"\x89PNG\r\n\x1a\n"
BASELINES = Path(__file__).resolve().parents[1] / "results" / "baselines"
PROBLEMS = [Problem(f"t{index}", "Write f.", "f", ("assert True",), ()) for index in range(5)]


def make_eval(folder: Path, successes: Sequence[int | None], *, model: str = "qwen", label: str | None = None,
              dataset: str = "mbpp", split: str | None = "test", n: int | None = None, greedy: bool = True,
              selector: str = "pt", turns: int = 3) -> dict:
    """A real results.json (via write_eval_outputs) where search i succeeds at turn ``successes[i]`` (None: it
    never passes the public tests in ``turns`` turns)."""
    records = [SearchRecord(problem.task_id, 0, turn is not None, turn is not None, turn or turns, "def f(): pass",
                            selector, n or 1, 0,
                            tuple(SearchTurn(k, 0, 0, None, ()) for k in range(1, (turn or turns) + 1)))
               for problem, turn in zip(PROBLEMS, successes, strict=True)]
    search = SearchConfig(n=n, greedy=greedy, selector=selector, turns=turns)
    run = {"model": model, "label": label, "search": search.to_dict(), "verifier": None,
           "source": {"dataset": dataset, "split": split, "policy": "eval", "fingerprint": "f" * 64}}
    return write_eval_outputs(folder, PROBLEMS, records, run, Throughput(), plot=False)


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    """A training-pipeline folder: base model and iteration 1 on MBPP (greedy, BoN@2, BoN@4) and HumanEval."""
    root = tmp_path / "pipeline"
    make_eval(root / "evals/base/mbpp-test-greedy", [1, None, None, 2, None], label="Instruct")
    make_eval(root / "evals/base/mbpp-test-bon2", [1, 1, None, 2, None], label="Instruct", n=2, greedy=False)
    make_eval(root / "evals/base/mbpp-test-bon4", [1, 1, 3, 2, None], label="Instruct", n=4, greedy=False)
    make_eval(root / "evals/iter-1/mbpp-test-greedy", [1, 1, 1, 2, None], label="μCode (iter 1)")
    make_eval(root / "evals/iter-1/humaneval-greedy", [1, 1, 1, 1, None], label="μCode (iter 1)",
              dataset="humaneval")
    (root / "pipeline.json").write_text("{}")
    (root / "evals/iter-1/config.toml").write_text("")
    return root


def table_lines(markdown: str, heading: str) -> list[str]:
    """The rows (header and separator left out) of the Markdown table under ``## heading``."""
    section = markdown.split(f"## {heading}\n\n", 1)[1]
    return section.split("\n\n", 1)[0].splitlines()[2:]


def report(tmp_path: Path, *run_dirs: Path, html: bool = True) -> tuple[dict, str, Path]:
    out = tmp_path / "reports" / "report.md"
    data = write_report(ReportConfig(run_dirs=tuple(map(str, run_dirs)), out=str(out), html=html))
    return data, out.read_text(), out


# ------------------------------------------------------------------------------------------- the table


def test_table_cells_equal_the_metrics_and_link_to_their_results(tmp_path: Path, pipeline: Path) -> None:
    _, markdown, out = report(tmp_path, pipeline)
    rows = table_lines(markdown, "Success at the last turn (%, 95% CI)")
    header = markdown.split("## Success at the last turn (%, 95% CI)\n\n", 1)[1].splitlines()[0]
    assert header == ("| method | mbpp/test, greedy | mbpp/test, BoN@2 (pt) | mbpp/test, BoN@4 (pt) | "
                      "humaneval, greedy |")
    assert [row.split(" | ")[0] for row in rows] == ["| Instruct", "| μCode (iter 1)"]
    linked = 0
    for row in rows:
        method = row.split(" | ")[0][2:]
        for text in re.findall(r"\[[^\]]*\]\([^)]*\) \[[^\]]*\]", row):
            value, href, low, high = re.fullmatch(r"\[(.*)\]\((.*)\) \[(.*), (.*)\]", text).groups()
            results_file = out.parent / unquote(href)
            assert results_file.is_file() and results_file.name == "results.json"
            results = json.loads(results_file.read_text())
            estimate = results["metrics"]["success_within_turns"][str(results["config"]["search"]["turns"])]
            assert value == f"{100 * estimate['value']:.1f}"
            assert (low, high) == tuple(f"{100 * bound:.1f}" for bound in estimate["ci95"])
            assert results["config"]["label"] == method
            linked += 1
    assert linked == 5 and rows[1].count("—") == 2  # μCode has no BoN runs
    assert "[40.0](" in rows[0] and "[80.0](" in rows[1]  # 2 of 5 and 4 of 5 tasks


def test_report_json_holds_the_table_data(tmp_path: Path, pipeline: Path) -> None:
    data, _, out = report(tmp_path, pipeline)
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["format"] == "mucode.report/1" and saved["methods"] == ["Instruct", "μCode (iter 1)"]
    assert saved["columns"][0] == {"dataset": "mbpp/test", "setting": "greedy"}
    cell = next(c for c in saved["cells"] if c["method"] == "Instruct" and c["setting"] == "BoN@4 (pt)")
    assert cell["value"] == pytest.approx(0.8) and cell["tasks"] == 5 and cell["turns"] == 3
    assert (out.parent / cell["results"]).is_file()
    assert {key: data[key] for key in saved} == saved


def test_runs_table_names_the_nearest_pipeline_config(tmp_path: Path, pipeline: Path) -> None:
    data, markdown, _ = report(tmp_path, pipeline)
    configs = {(run["method"], run["setting"], run["dataset"]): run["pipeline_config"] for run in data["runs"]}
    assert configs[("Instruct", "greedy", "mbpp/test")] == "../pipeline/pipeline.json"
    assert configs[("μCode (iter 1)", "greedy", "humaneval")] == "../pipeline/evals/iter-1/config.toml"
    rows = table_lines(markdown, "Runs")
    assert len(rows) == 5
    first = rows[0].split(" | ")
    assert first[1:8] == ["qwen", "mbpp/test", "greedy", "3", "5", "5", "2.40"]  # turns 1, 3, 3, 2, 3
    assert "[../pipeline/pipeline.json](../pipeline/pipeline.json)" in rows[0]
    assert data["runs"][0]["created"][:10] in rows[0]


def test_label_falls_back_to_the_model_and_runs_keep_natural_order(tmp_path: Path) -> None:
    for iteration in (10, 2):
        make_eval(tmp_path / f"run/iter-{iteration}", [1, None, None, None, None], model=f"model-{iteration}.gguf",
                  dataset="humaneval")
    runs = collect_runs([tmp_path / "run"])
    assert [run.label for run in runs] == ["model-2.gguf", "model-10.gguf"]
    assert {run.dataset for run in runs} == {"humaneval"}  # one split only: not named


def test_committed_baselines_with_labels(tmp_path: Path) -> None:
    for name, label in (("humaneval-greedy", "Instruct (Q4_K_M)"), ("humaneval-greedy-q4_0", None)):
        results = json.loads((BASELINES / name / "results.json").read_text())
        results["config"]["label"] = label
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "results.json").write_text(json.dumps(results))
    _, markdown, _ = report(tmp_path, tmp_path / "runs")
    rows = table_lines(markdown, "Success at the last turn (%, 95% CI)")
    assert rows[0].startswith("| Instruct (Q4_K_M) | [56.7](") and rows[0].endswith(" [49.1, 64.1] |")
    assert rows[1].startswith("| qwen2.5-coder-0.5b-instruct-q4_0 | [54.9](")
    assert "| 73.8 [66.6, 79.9] |" in table_lines(markdown, "Runs")[0]  # public pass @ 3, as in the README


# ------------------------------------------------------------------------------------- plots and HTML


def test_plots_are_pngs_and_bon_vs_n_appears_when_n_varies(tmp_path: Path, pipeline: Path) -> None:
    data, markdown, out = report(tmp_path, pipeline)
    assert data["plots"] == {"success_vs_turn": "report_success_vs_turn.png", "bon_vs_n": "report_bon_vs_n.png"}
    for name in data["plots"].values():
        assert (out.parent / name).read_bytes().startswith(PNG)
        assert f"]({name})" in markdown
    series = bon_series(collect_runs([pipeline]))
    assert list(series) == [("Instruct", "mbpp/test", "pt")]
    assert list(series["Instruct", "mbpp/test", "pt"]) == [1, 2, 4]  # greedy is N = 1


def test_bon_plot_is_skipped_with_a_note_when_n_does_not_vary(tmp_path: Path, pipeline: Path) -> None:
    report(tmp_path, pipeline)  # leaves a BoN plot behind
    single = tmp_path / "single"
    make_eval(single / "greedy", [1, None, None, None, None])
    data, markdown, out = report(tmp_path, single)
    assert data["plots"]["bon_vs_n"] is None and not (out.parent / "report_bon_vs_n.png").exists()
    assert "no Best-of-N against N plot" in markdown and "bon_vs_n" not in markdown
    assert (out.parent / "report_success_vs_turn.png").read_bytes().startswith(PNG)


def test_html_is_self_contained(tmp_path: Path, pipeline: Path) -> None:
    _, _, out = report(tmp_path, pipeline)
    page = out.with_suffix(".html").read_text()
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 2 and all(source.startswith("data:image/png;base64,") for source in sources)
    assert "<link" not in page and "<script" not in page and "url(" not in page
    assert page.count("<table>") == 2 and ">40.0</a> [11.8, 76.9]" in page
    for href in re.findall(r'href="([^"]*)"', page):
        assert (out.parent / unquote(href)).is_file()


# ------------------------------------------------------------------------------------ duplicates, errors


def test_duplicates_from_different_folders_are_kept_and_tagged(tmp_path: Path) -> None:
    for run, successes in (("run-a", [1, None, None, None, None]), ("run-b", [1, 1, None, None, None])):
        make_eval(tmp_path / run / "evals/base/mbpp-test-greedy", successes, label="Instruct")
    data, markdown, _ = report(tmp_path, tmp_path / "run-a", tmp_path / "run-b")
    assert data["methods"] == ["Instruct (run-a)", "Instruct (run-b)"]
    rows = table_lines(markdown, "Success at the last turn (%, 95% CI)")
    assert rows[0].startswith("| Instruct (run-a) | [20.0](") and rows[1].startswith("| Instruct (run-b) | [40.0](")
    assert "several runs are 'Instruct' on mbpp/test, greedy" in markdown


def test_a_tag_that_equals_another_label_falls_back_to_the_full_folder(tmp_path: Path) -> None:
    for run, label in (("run-a", "Instruct"), ("run-b", "Instruct"), ("run-c", "Instruct (run-a)")):
        make_eval(tmp_path / run / "greedy", [1, None, None, None, None], label=label)
    labels = [run.label for run in collect_runs([tmp_path])]
    assert labels[1] == "Instruct (run-b)" and len(set(labels)) == 3
    assert labels[0] == f"Instruct ({(tmp_path / 'run-a/greedy').resolve()})"


def test_distinguishing_tags() -> None:
    assert distinguishing_tags([Path("/r/a/evals/x"), Path("/r/b/evals/x")]) == ["a", "b"]
    assert distinguishing_tags([Path("/r/a/p/x"), Path("/r/b/p/x"), Path("/r/c/q/x")]) == ["a/p", "b/p", "c/q"]


def test_other_formats_are_skipped_and_malformed_results_rejected(tmp_path: Path) -> None:
    make_eval(tmp_path / "runs/good", [1, None, None, None, None])
    (tmp_path / "runs/evaluate").mkdir()
    (tmp_path / "runs/evaluate/results.json").write_text(json.dumps({"format": "mucode.evaluate/1"}))
    assert len(collect_runs([tmp_path / "runs"])) == 1
    broken = tmp_path / "runs/broken/results.json"
    broken.parent.mkdir()
    broken.write_text('{"format": "mucode.eval/1", ')
    with pytest.raises(ConfigError, match=r"broken/results.json: not valid JSON"):
        collect_runs([tmp_path / "runs"])
    results = json.loads((tmp_path / "runs/good/results.json").read_text())
    del results["metrics"]["success_within_turns"]["3"]
    broken.write_text(json.dumps(results))
    with pytest.raises(ConfigError, match=r"broken/results.json: .*metrics.success_within_turns.3.value is missing"):
        collect_runs([tmp_path / "runs"])


def test_errors_for_missing_and_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such run folder"):
        collect_runs([tmp_path / "nowhere"])
    (tmp_path / "empty/sub").mkdir(parents=True)
    with pytest.raises(ConfigError, match="no mucode eval results"):
        collect_runs([tmp_path / "empty"])
    with pytest.raises(ConfigError, match=r"name it \*.md"):
        ReportConfig(run_dirs=(str(tmp_path),), out=str(tmp_path / "report.html"))


# ------------------------------------------------------------------------------------------------- CLI


def test_cli_report_end_to_end(tmp_path: Path, pipeline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli" / "table.md"
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(pipeline), "--out", str(out), "--no-html"])
    assert exit_info.value.code == 0
    output = capsys.readouterr().out
    for text in ("mucode report", "Instruct", "μCode (iter 1)", "40.0", "[11.8, 76.9]", "BoN@4 (pt)", "5 runs",
                 f"markdown: {out}", "table_bon_vs_n.png"):
        assert text in output
    assert out.is_file() and out.with_suffix(".json").is_file() and not out.with_suffix(".html").exists()
    shutil.rmtree(tmp_path / "cli")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["report", str(tmp_path / "empty"), "--out", str(out)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "no mucode eval results" in error and len(error.strip().splitlines()) == 1
