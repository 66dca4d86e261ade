"""mucode.search: selectors, the multi-turn BoN loop, its metrics, and ``mucode eval`` end to end."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from mucode.cli import main
from mucode.env import CandidateResult
from mucode.errors import ConfigError
from mucode.evaluate import EvaluateConfig, evaluate
from mucode.problems import write_custom
from mucode.records import SearchRecord, SearchTurn
from mucode.rollout import Throughput
from mucode.sandbox import Limits, Sandbox
from mucode.search import (
    SELECTORS,
    CandidateView,
    EvalConfig,
    SearchConfig,
    load_scorer,
    run_eval,
    search_metrics,
    search_steps,
    select_public_tests,
    select_public_then_verifier,
    select_random,
    select_verifier,
)
from mucode.types import Problem, TestStatus, TestVerdict
from tests.scripted_backend import PROBLEMS, RIGHT, TRAP, WRONG, ScriptedBackend

SCRIPT = {
    ("inc", 1): [WRONG["inc"]], ("inc", 2): [WRONG["inc"], RIGHT["inc"]], ("inc", 3): [RIGHT["inc"]],
    ("half", 1): [TRAP["half"], WRONG["half"]], ("half", 2): [RIGHT["half"]], ("half", 3): [RIGHT["half"]],
    # "neg" is missing: every reply is prose without code
}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(Limits(test_timeout=2.0, memory_mb=512), workers=2) as box:
        yield box


def view(public_passed: bool, code: str | None = "def f(): pass") -> CandidateView:
    verdict = TestVerdict(TestStatus.PASSED if public_passed else TestStatus.FAILED)
    return CandidateView("t", "reply", code, (verdict,), public_passed, "")


def run(problems: Sequence[Problem], sandbox: Sandbox, config: SearchConfig, backend: ScriptedBackend | None = None,
        scorer: object = None) -> list[dict]:
    backend = backend or ScriptedBackend("fake", SCRIPT)
    todo = [(problem, index) for problem in problems for index in range(config.searches)]
    return [record for batch in search_steps(todo, backend, sandbox, config, scorer, 8, Throughput())
            for record in batch]


# ------------------------------------------------------------------------------------------- selectors

def test_pt_never_picks_a_public_failure_when_a_pass_exists_and_breaks_ties_at_random() -> None:
    rng = random.Random(0)
    for _ in range(300):
        passes = [rng.random() < 0.3 for _ in range(5)]
        chosen = select_public_tests([view(flag) for flag in passes], None, rng)
        assert passes[chosen] or not any(passes)
    two_pass = [view(True), view(False), view(True), view(False)]
    assert {select_public_tests(two_pass, None, random.Random(seed)) for seed in range(40)} == {0, 2}
    all_fail = {select_public_tests([view(False)] * 4, None, random.Random(seed)) for seed in range(40)}
    assert all_fail == {0, 1, 2, 3}


def test_random_is_seeded() -> None:
    candidates = [view(False)] * 5
    first = [select_random(candidates, None, random.Random(7)) for _ in range(3)]
    assert first == [select_random(candidates, None, random.Random(7)) for _ in range(3)]
    assert {select_random(candidates, None, random.Random(seed)) for seed in range(50)} == set(range(5))


def test_lv_is_the_argmax_and_pt_lv_prefers_public_passers() -> None:
    rng = random.Random(0)
    assert select_verifier([view(False)] * 3, [0.1, 0.9, 0.5], rng) == 1
    candidates = [view(False), view(True), view(True), view(False)]
    assert select_public_then_verifier(candidates, [5.0, 0.2, 0.3, 9.0], rng) == 2
    assert select_public_then_verifier([view(False), view(False)], [0.1, 0.7], rng) == 1
    with pytest.raises(ConfigError, match="needs one verifier score per candidate"):
        select_verifier([view(True)], None, rng)


def test_selectors_see_no_private_results(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[CandidateView] = []

    def spy(candidates: Sequence[CandidateView], scores: Sequence[float] | None, rng: random.Random) -> int:
        seen.extend(candidates)
        return 0

    monkeypatch.setitem(SELECTORS, "random", spy)
    run(PROBLEMS, sandbox, SearchConfig(n=2, selector="random"))
    assert seen and all(type(candidate) is CandidateView for candidate in seen)
    private = {"private", "private_passed", "private_feedback", "passed"}
    assert not any(hasattr(candidate, name) for candidate in seen for name in private)
    assert not any(name.startswith("private") for name in CandidateView.__slots__)


# ------------------------------------------------------------------------------------------- the search

def test_search_stops_at_the_first_public_pass(sandbox: Sandbox) -> None:
    backend = ScriptedBackend("fake", SCRIPT)
    records = {r.task_id: r for r in run(PROBLEMS, sandbox, SearchConfig(n=3, selector="pt"), backend)}
    inc, half, neg = records["inc"], records["half"], records["neg"]
    assert (inc.turns_used, inc.public_passed, inc.success) == (2, True, True)
    assert inc.final_code == "def inc(x):\n    return x + 1"
    chosen = inc.turns[1].chosen
    assert chosen.public_passed and chosen.private_passed
    # a public pass that fails the private tests still ends the search, as a failure
    assert (half.turns_used, half.public_passed, half.success) == (1, True, False)
    assert (neg.turns_used, neg.public_passed, neg.success, neg.final_code) == (3, False, False, None)
    # one generate call per turn for all active searches, n = N each, a seed per search
    assert [(size, params.n) for size, params, _ in backend.calls] == [(3, 3), (2, 3), (1, 3)]
    assert all(len(turn.candidates) == 3 for record in records.values() for turn in record.turns)


def test_greedy_is_one_candidate_at_temperature_zero(sandbox: Sandbox) -> None:
    config = SearchConfig(greedy=True, selector="random")
    assert (config.n, config.temperature) == (1, 0.0)
    backend = ScriptedBackend("fake", SCRIPT)
    run(PROBLEMS[:1], sandbox, config, backend)
    assert all(params.n == 1 and params.temperature == 0 and seeds is None for _, params, seeds in backend.calls)
    with pytest.raises(ConfigError, match="n=5 contradicts"):
        SearchConfig(greedy=True, n=5)
    with pytest.raises(ConfigError, match=r"temperature=0\.7 contradicts"):
        SearchConfig(greedy=True, temperature=0.7)
    with pytest.raises(ConfigError, match="searches=3 would repeat it"):
        SearchConfig(greedy=True, searches=3)


def test_searches_differ_by_seed_and_repeat_exactly(sandbox: Sandbox) -> None:
    config = SearchConfig(n=1, selector="random", searches=4, seed=11)
    first = sorted(run(PROBLEMS[2:], sandbox, config), key=lambda record: record.search)
    assert [r.search for r in first] == [0, 1, 2, 3]
    assert len({r.turns[0].seed for r in first}) == 4
    again = sorted(run(PROBLEMS[2:], sandbox, config), key=lambda record: record.search)
    assert [essence(record) for record in again] == [essence(record) for record in first]


def essence(record: SearchRecord) -> tuple:
    """A search without its timings: replies, choices and outcome."""
    return (record.success, record.final_code,
            [(turn.seed, turn.selected, [c.reply for c in turn.candidates]) for turn in record.turns])


class KeywordScorer:
    """Scores 1 for codes containing a keyword; records what it was asked."""

    def __init__(self, keyword: str) -> None:
        self.keyword, self.calls = keyword, []

    def score(self, problem: Problem, codes: Sequence[str]) -> list[float]:
        self.calls.append((problem.task_id, list(codes)))
        return [float(self.keyword in code) for code in codes]


def test_lv_selector_uses_the_scorer_and_no_code_scores_none(sandbox: Sandbox) -> None:
    scorer = KeywordScorer("x / 2")
    script = {("half", 1): [WRONG["half"], RIGHT["half"], "no code here"]}
    [record] = run(PROBLEMS[2:], sandbox, SearchConfig(n=3, selector="lv"), ScriptedBackend("f", script), scorer)
    turn = record.turns[0]
    assert turn.chosen.code == "def half(x):\n    return x / 2"
    assert sorted(turn.scores or (), key=str) == [0.0, 1.0, None] and record.success
    assert len(scorer.calls[0][1]) == 2  # only candidates with code are scored


def test_scored_selectors_need_a_verifier(sandbox: Sandbox) -> None:
    with pytest.raises(ConfigError, match="selector 'pt\\+lv' needs a learned verifier: pass --verifier DIR"):
        run(PROBLEMS, sandbox, SearchConfig(selector="pt+lv"))
    with pytest.raises(ConfigError, match="some/dir is not a mucode verifier"):
        load_scorer("some/dir")


# ------------------------------------------------------------------------------------------- metrics

def search_record(task_id: str, success: bool, public_passed: bool, turns: int) -> SearchRecord:
    return SearchRecord(task_id, 0, success, public_passed, turns, None, "pt", 1, 0,
                        tuple(SearchTurn(number, 0, 0, None, ()) for number in range(1, turns + 1)))


def test_metrics_on_hand_made_search_records() -> None:
    records = [search_record("a", True, True, 1), search_record("a", False, True, 2),
               search_record("b", False, False, 3), search_record("b", True, True, 3)]
    metrics = search_metrics(records, 3)
    values = {key: {k: v["value"] for k, v in metrics[key].items()}
              for key in ("success_within_turns", "public_within_turns")}
    assert values["success_within_turns"] == {"1": 0.25, "2": 0.25, "3": 0.5}
    assert values["public_within_turns"] == {"1": 0.25, "2": 0.5, "3": 0.75}
    assert {name: v["value"] for name, v in metrics["pass_at_k"].items()} == {"pass@1": 0.5, "pass@2": 1.0}
    assert metrics["any_success"]["value"] == 1.0 and metrics["success"]["value"] == 0.5
    assert metrics["mean_turns"] == 2.25 and metrics["tasks"] == 2 and metrics["searches"] == 4
    low, high = metrics["success_within_turns"]["3"]["ci95"]
    assert 0 < low < 0.5 < high < 1


# ----------------------------------------------------------------------------------------- mucode eval

@pytest.fixture
def dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "problems.jsonl"
    write_custom(PROBLEMS, path)
    monkeypatch.setattr("mucode.rollout.load_backend", lambda kind, model: ScriptedBackend(model, SCRIPT))
    return path


def test_eval_writes_results_samples_and_plot_that_reevaluate_consistently(tmp_path: Path, dataset: Path) -> None:
    out = tmp_path / "run"
    config = EvalConfig(model="m", dataset=str(dataset), out=str(out), workers=2, progress=False,
                        search=SearchConfig(n=3, searches=2, seed=5))
    results = run_eval(config)
    saved = json.loads((out / "results.json").read_text())
    assert saved["metrics"] == results["metrics"] and saved["format"] == "mucode.eval/1"
    assert saved["config"]["search"]["n"] == 3 and saved["config"]["model_id"] == "scripted:m"
    assert len(saved["dataset"]["fingerprint"]) == 64 and saved["versions"]["mucode"]
    assert [(r["task_id"], r["search"]) for r in saved["searches"]] == [
        (p.task_id, s) for p in PROBLEMS for s in range(2)]
    assert (out / "success_vs_turn.png").read_bytes().startswith(b"\x89PNG")
    evaluated = evaluate(EvaluateConfig(dataset=str(dataset), samples=str(out / "samples.jsonl"),
                                        out=str(tmp_path / "evaluated.json"), workers=2, progress=False))
    verdicts = {(s["task_id"], s["completion_id"]): s["passed"] for s in evaluated["samples"]}
    assert verdicts == {(r["task_id"], r["search"]): r["success"] for r in saved["searches"]}
    assert evaluated["pass_at_k"]["pass@1"] == pytest.approx(results["metrics"]["success"]["value"])


def test_eval_resumes_from_its_search_log(tmp_path: Path, dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    config = EvalConfig(model="m", dataset=str(dataset), out=str(out), workers=2, progress=False,
                        search=SearchConfig(n=2, searches=2))
    first = run_eval(config)
    log = out / "searches.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:-1]) + lines[-1][:40])  # the last search lost, its line torn
    backend = ScriptedBackend("m", SCRIPT)
    monkeypatch.setattr("mucode.rollout.load_backend", lambda kind, model: backend)
    second = run_eval(config)
    assert backend.calls and all(size == 1 for size, _, _ in backend.calls)
    assert ([essence(SearchRecord.from_dict(r)) for r in second["searches"]]
            == [essence(SearchRecord.from_dict(r)) for r in first["searches"]])
    assert second["searches"][:-1] == first["searches"][:-1] and second["metrics"] == first["metrics"]


def test_cli_eval_end_to_end(tmp_path: Path, dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--model", "m", "--dataset", str(dataset), "--n", "2", "--ids", "inc", "--workers", "2",
              "--out", str(tmp_path / "run")])
    assert exit_info.value.code == 0
    output = capsys.readouterr().out
    for text in ("mucode eval", "N=2", "1 (1 searches)", "success within 2 turns", "public pass within 1 turn",
                 "pass@1 over searches", "isolation"):
        assert text in output
    assert (tmp_path / "run" / "samples.jsonl").read_text().count("\n") == 1


@pytest.mark.parametrize(("args", "message"), [
    (["--selector", "lv"], "selector 'lv' needs a learned verifier: pass --verifier DIR"),
    (["--selector", "pt+lv", "--verifier", "v"], "v is not a mucode verifier (no verifier.json)"),
    (["--greedy", "--n", "5"], "n=5 contradicts it"),
    (["--selector", "best"], "unknown selector 'best'; choose one of: random, pt, lv, pt+lv"),
    (["--ids", "nope"], "unknown task id 'nope'"),
])
def test_cli_eval_errors_are_one_line(tmp_path: Path, dataset: Path, capsys: pytest.CaptureFixture[str],
                                      args: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--model", "m", "--dataset", str(dataset), "--out", str(tmp_path / "run"), *args])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and message in error


def test_candidate_view_copies_only_public_fields() -> None:
    verdict = TestVerdict(TestStatus.PASSED)
    candidate = CandidateResult("t", "r", "fenced-python", "", "code", (verdict,), (verdict,), True, False,
                                "fb", "secret", 0.1)
    assert CandidateView.of(candidate) == CandidateView("t", "r", "code", (verdict,), True, "fb")
