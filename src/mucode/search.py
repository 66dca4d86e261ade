"""Multi-turn Best-of-N search (docs/method.md §8, Alg. 2) and its selectors; ``mucode eval`` end to end.

At each turn a search samples N candidates for its current state, runs all of them (public and private
tests), lets a selector choose one from what it may see — the public
tests' outcome and, for ``lv``/``pt+lv``, a learned verifier's score — commits it with `Episode.advance`, and
stops at the first public pass or after T turns. The committed code that stopped it is scored on the private
tests. S independent searches per problem use different seeds; greedy mode is N = 1 at temperature 0.

Selectors never see private results: they receive `CandidateView`s, which have no private fields.
"""

from __future__ import annotations

import importlib
import math
import os
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from mucode import defaults
from mucode.backends import DEFAULT_BACKEND, Backend, Completion, SamplingParams
from mucode.backends.base import Request
from mucode.driver import drive
from mucode.env import CODE_BLOCK_END, DEFAULT_TEMPLATE, CandidateResult, Episode, EpisodeConfig, SandboxLike
from mucode.errors import ConfigError, check_positive
from mucode.evaluate import RESULT_PACKAGES
from mucode.metrics import mean_rate, pass_at_k_estimates, rate_within_turns
from mucode.problems import dataset_fingerprint, load_problems
from mucode.records import SEARCHES_FILE, Generation, SearchCandidate, SearchRecord, SearchTurn
from mucode.rollout import (
    Throughput,
    backend_identity,
    check_selection,
    dataset_limits,
    dataset_source,
    derive_seed,
    group_by_task,
    open_engines,
    select_problems,
    success_turn,
    unbatched_warning,
)
from mucode.runs import RecordLog, pin_run_dir, progress_bar, versions, write_json
from mucode.samples import Sample, write_samples
from mucode.sandbox.core import DEFAULT_GRADING
from mucode.types import Problem, TestVerdict

EVAL_FORMAT = "mucode.eval/1"
RESULTS_FILE = "results.json"
SAMPLES_FILE = "samples.jsonl"
PLOT_FILE = "success_vs_turn.png"
#: Searches in flight at once (each asks for N completions per step).
DEFAULT_BATCH_SIZE = 32
PASS_KS = (1, 5, 10)
#: Fields `SearchConfig.to_dict` leaves out at these values (they came later; older records lack them).
OMITTED_WHEN_DEFAULT = {("grading", DEFAULT_GRADING), ("stop_at_code_end", False)}


# ------------------------------------------------------------------------------------------- selectors


@dataclass(frozen=True, slots=True)
class CandidateView:
    """What a selector may see of a candidate: its reply, code and public-test outcome. No private field
    exists here, so no selector can peek at the oracle by mistake."""

    task_id: str
    reply: str
    code: str | None
    public: tuple[TestVerdict, ...]
    public_passed: bool
    feedback: str

    @classmethod
    def of(cls, candidate: CandidateResult) -> CandidateView:
        return cls(candidate.task_id, candidate.reply, candidate.code, candidate.public, candidate.public_passed,
                   candidate.feedback)


#: ``select(candidates, scores, rng) -> index``; ``scores`` are the verifier's (None without one).
Selector = Callable[[Sequence[CandidateView], Sequence[float] | None, random.Random], int]


def select_random(candidates: Sequence[CandidateView], scores: Sequence[float] | None,
                  rng: random.Random) -> int:
    """``random``: any candidate, uniformly (seeded, unlike the reference's unseeded ``sample(1)``)."""
    return rng.randrange(len(candidates))


def select_public_tests(candidates: Sequence[CandidateView], scores: Sequence[float] | None,
                        rng: random.Random) -> int:
    """``pt``: a candidate that passes the public tests if any does; ties are broken at random."""
    return _best([candidate.public_passed for candidate in candidates], rng)


def select_verifier(candidates: Sequence[CandidateView], scores: Sequence[float] | None,
                    rng: random.Random) -> int:
    """``lv``: the verifier's argmax (Alg. 2 as printed); ties are broken at random."""
    return _best(list(_need_scores(candidates, scores, "lv")), rng)


def select_public_then_verifier(candidates: Sequence[CandidateView], scores: Sequence[float] | None,
                                rng: random.Random) -> int:
    """``pt+lv``: public passers first, then the verifier's score (the camera-ready Table 1 setting)."""
    scored = _need_scores(candidates, scores, "pt+lv")
    return _best([(candidate.public_passed, score) for candidate, score in zip(candidates, scored, strict=True)],
                 rng)


SELECTORS: dict[str, Selector] = {"random": select_random, "pt": select_public_tests, "lv": select_verifier,
                                  "pt+lv": select_public_then_verifier}
SCORED_SELECTORS = frozenset({"lv", "pt+lv"})


def _best(keys: Sequence[Any], rng: random.Random) -> int:
    top = max(keys)
    return rng.choice([index for index, key in enumerate(keys) if key == top])


def _need_scores(candidates: Sequence[CandidateView], scores: Sequence[float] | None,
                 name: str) -> Sequence[float]:
    if scores is None or len(scores) != len(candidates):
        raise ConfigError(f"selector {name!r} needs one verifier score per candidate")
    return scores


# --------------------------------------------------------------------------------------------- scorers


class Scorer(Protocol):
    """A learned verifier R_φ(x, y): one score per code for one problem, higher is better (batched)."""

    def score(self, problem: Problem, codes: Sequence[str]) -> list[float]: ...


def load_scorer(path: str | os.PathLike[str], dtype: str = "auto") -> Scorer:
    """The verifier saved in ``path``, scoring in ``dtype`` (`mucode.verifier.Verifier.load`; imported here so that
    searches without one never load torch)."""
    try:
        verifier = importlib.import_module("mucode.verifier")
    except ImportError as error:
        raise ConfigError(f"--verifier {path}: learned verifiers need torch and transformers "
                          f"({error}); install them with `pip install 'mucode[hf]'`") from error
    return verifier.load_scorer(path, dtype)


def check_scorer(selector: str, scorer: Scorer | None) -> None:
    if selector in SCORED_SELECTORS and scorer is None:
        raise ConfigError(f"selector {selector!r} needs a learned verifier: pass --verifier DIR "
                          "(or use --selector pt or random)")


def _scores(scorer: Scorer, problem: Problem, candidates: Sequence[CandidateResult]) -> list[float | None]:
    """Verifier scores; a candidate without code gets None (ranked below every scored one)."""
    with_code = [index for index, candidate in enumerate(candidates) if candidate.code is not None]
    values = scorer.score(problem, [candidates[index].code or "" for index in with_code]) if with_code else []
    if len(values) != len(with_code):
        raise ValueError(f"the verifier returned {len(values)} scores for {len(with_code)} codes")
    by_index = dict(zip(with_code, (float(value) for value in values), strict=True))
    return [by_index.get(index) for index in range(len(candidates))]


# ----------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class SearchConfig:
    """Hyperparameters of multi-turn BoN. Defaults are the paper's: N = 5, T = 3, temperature 0.7, PT.

    ``greedy`` is BoN@1: N = 1 at temperature 0 (``n`` and ``temperature`` left as None take those values;
    anything else is an error, and so is more than one search). The selector is irrelevant with one candidate.
    """

    n: int | None = None
    turns: int = defaults.TURNS
    selector: str = "pt"
    searches: int = 1
    temperature: float | None = None
    top_p: float = defaults.TOP_P
    max_tokens: int = defaults.MAX_TOKENS
    seed: int = 0
    template: str = DEFAULT_TEMPLATE
    greedy: bool = False
    grading: str = DEFAULT_GRADING
    stop_at_code_end: bool = False

    def __post_init__(self) -> None:
        if self.greedy and self.n not in (None, 1):
            raise ConfigError(f"greedy search samples one candidate per turn; n={self.n} contradicts it")
        if self.greedy and self.temperature not in (None, 0):
            raise ConfigError(f"greedy search decodes at temperature 0; temperature={self.temperature} "
                              "contradicts it")
        if self.greedy and self.searches != 1:
            raise ConfigError(f"greedy search is deterministic; searches={self.searches} would repeat it")
        object.__setattr__(self, "n", self.n or (1 if self.greedy else 5))
        object.__setattr__(self, "temperature", 0.0 if self.greedy else
                           (defaults.TEMPERATURE if self.temperature is None else self.temperature))
        for name in ("n", "searches", "turns", "max_tokens"):
            check_positive(name, getattr(self, name))
        if self.selector not in SELECTORS:
            raise ConfigError(f"unknown selector {self.selector!r}; choose one of: {', '.join(SELECTORS)}")
        self.episode()
        self.sampling()

    def episode(self) -> EpisodeConfig:
        """Search always stops at the first public pass (the paper's rule, docs/method.md §2.6)."""
        return EpisodeConfig(max_turns=self.turns, template=self.template, stop_on="public", grading=self.grading)

    def sampling(self) -> SamplingParams:
        return SamplingParams(n=self.n or 1, temperature=self.temperature or 0.0, top_p=self.top_p,
                              max_tokens=self.max_tokens, seed=self.seed,
                              stop=(CODE_BLOCK_END,) if self.stop_at_code_end else ())

    def to_dict(self) -> dict[str, Any]:
        """The fields; ``grading`` only when strict and ``stop_at_code_end`` only when set, so results and run
        identities from before them are unchanged."""
        return {item.name: getattr(self, item.name) for item in fields(self)
                if (item.name, getattr(self, item.name)) not in OMITTED_WHEN_DEFAULT}


# ------------------------------------------------------------------------------------------ the search


@dataclass
class _Search:
    """One search as a walk of the driver: N completions per turn, one selected and committed."""

    episode: Episode
    index: int
    rng: random.Random
    config: SearchConfig
    scorer: Scorer | None
    turns: list[SearchTurn] = field(default_factory=list)

    def seed(self) -> int:
        """The seed of the current turn's N completions: (base seed, task, search, turn)."""
        return derive_seed(self.config.seed, self.episode.problem.task_id, self.index, len(self.episode.turns) + 1)

    def request(self) -> Request:
        return Request(list(self.episode.messages), self.config.sampling(), self.seed())

    def receive(self, completions: Sequence[Completion], candidates: Sequence[CandidateResult]) -> bool:
        """Score (with a verifier), select from what a selector may see, commit; True at the search's end."""
        scores = _scores(self.scorer, self.episode.problem, candidates) if self.scorer is not None else None
        visible = None if scores is None else [-math.inf if score is None else score for score in scores]
        chosen = SELECTORS[self.config.selector]([CandidateView.of(c) for c in candidates], visible, self.rng)
        if not 0 <= chosen < len(candidates):
            raise ValueError(f"selector {self.config.selector!r} chose {chosen} of {len(candidates)} candidates")
        seed = self.seed()
        self.episode.advance(candidates[chosen])
        self.turns.append(SearchTurn(
            number=len(self.episode.turns), seed=seed, selected=chosen,
            scores=None if scores is None else tuple(scores),
            candidates=tuple(SearchCandidate.of(candidate, Generation.of(completion, seed))
                             for candidate, completion in zip(candidates, completions, strict=True))))
        return self.episode.done


def search_steps(todo: Sequence[tuple[Problem, int]], backend: Backend, sandbox: SandboxLike,
                 config: SearchConfig, scorer: Scorer | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
                 throughput: Throughput | None = None) -> Iterator[list[SearchRecord]]:
    """Run the (problem, search index) searches in ``todo`` with the asynchronous driver (`mucode.driver`), at
    most ``batch_size`` at a time; yield the records of those that finished, as they finish."""
    check_scorer(config.selector, scorer)
    searches = (_Search(Episode.start(problem, config.episode()), index,
                        random.Random(derive_seed(config.seed, problem.task_id, index, "select")), config, scorer)
                for problem, index in todo)
    for finished in drive(searches, backend, sandbox, batch_size, throughput):
        yield [_search_record(item, config) for item in finished]


def _search_record(item: _Search, config: SearchConfig) -> SearchRecord:
    """The finished search: the outcome first (what metrics read), then every turn's candidates and choice."""
    last = item.episode.turns[-1]
    return SearchRecord(task_id=item.episode.problem.task_id, search=item.index, success=item.episode.success,
                        public_passed=last.public_passed, turns_used=len(item.episode.turns), final_code=last.code,
                        selector=config.selector, n=config.n or 1, seed=config.seed, turns=tuple(item.turns))


def run_searches(problems: Sequence[Problem], backend: Backend, sandbox: SandboxLike, config: SearchConfig, *,
                 out_dir: str | os.PathLike[str], scorer: Scorer | None = None,
                 identity: Mapping[str, Any] | None = None, progress: bool | None = None,
                 batch_size: int = DEFAULT_BATCH_SIZE, force: bool = False
                 ) -> tuple[list[SearchRecord], Throughput]:
    """Run ``config.searches`` searches per problem into ``out_dir/searches.jsonl``, resumably.

    Searches already recorded are skipped (a run killed at any point completes on the next call, and a larger
    ``config.searches`` extends it); the folder's
    ``config.json`` must match (ConfigError naming the field otherwise, unless ``force``: start over).
    Returns the records of ``problems`` in dataset order, then search index, and this session's throughput.
    """
    check_scorer(config.selector, scorer)
    check_positive("batch_size", batch_size)
    search = {name: value for name, value in config.to_dict().items() if name != "searches"}  # S may grow
    full_identity = {"format": EVAL_FORMAT, **backend_identity(backend), "search": search, **dict(identity or {})}
    run_dir = pin_run_dir(out_dir, full_identity, force, [SEARCHES_FILE, RESULTS_FILE, SAMPLES_FILE, PLOT_FILE])
    log = RecordLog(run_dir / SEARCHES_FILE)
    done = {(record.task_id, record.search) for record in log.load(SearchRecord.from_dict)}
    todo = [(problem, index) for problem in problems for index in range(config.searches)
            if (problem.task_id, index) not in done]
    throughput = Throughput()
    with progress_bar(len(todo), progress, "searches") as advance:
        for finished in search_steps(todo, backend, sandbox, config, scorer, batch_size, throughput):
            log.append([record.to_dict() for record in finished])
            advance(len(finished))
    by_key = {(record.task_id, record.search): record for record in log.load(SearchRecord.from_dict)}
    return ([by_key[problem.task_id, index] for problem in problems for index in range(config.searches)],
            throughput)


# --------------------------------------------------------------------------------------------- metrics


def search_metrics(records: Sequence[SearchRecord], max_turns: int) -> dict[str, Any]:
    """docs/method.md §8's metrics with 95% Wilson intervals over tasks.

    ``success_within_turns`` ("true success @ turn k", the BoN@N number at k = T): a search succeeds within k
    turns when its first public pass is at turn <= k and that code passes the private tests, averaged over
    searches per task, then over tasks. ``public_within_turns``: the public pass alone. ``pass_at_k``: the
    unbiased estimator over the S searches of each task (k <= S); ``any_success`` = pass@S.
    """
    if not records:
        raise ConfigError("no search records to summarise")
    groups = list(group_by_task(records).values())
    counts = [(len(group), sum(record.success for record in group)) for group in groups]
    smallest = min(n for n, _ in counts)
    ks = sorted({k for k in (*PASS_KS, smallest) if k <= smallest})
    public_turns = [[len(r.turns) if r.public_passed else None for r in group] for group in groups]
    return {
        "tasks": len(groups),
        "searches": len(records),
        "success": mean_rate([[r.success for r in group] for group in groups]).to_dict(),
        "success_within_turns": _by_turn(rate_within_turns([[success_turn(r) for r in g] for g in groups],
                                                           max_turns)),
        "public_within_turns": _by_turn(rate_within_turns(public_turns, max_turns)),
        "pass_at_k": {f"pass@{k}": estimate.to_dict() for k, estimate in pass_at_k_estimates(counts, ks).items()},
        "any_success": mean_rate([[any(r.success for r in group)] for group in groups]).to_dict(),
        "mean_turns": sum(len(record.turns) for record in records) / len(records),
    }


def _by_turn(estimates: Mapping[int, Any]) -> dict[str, Any]:
    return {str(k): estimate.to_dict() for k, estimate in estimates.items()}


# -------------------------------------------------------------------------------------------- mucode eval


@dataclass(frozen=True)
class EvalConfig:
    """One ``mucode eval`` run: where the problems and the model come from, the search, and the run folder."""

    model: str
    dataset: str
    out: str
    search: SearchConfig = field(default_factory=SearchConfig)
    backend: str = DEFAULT_BACKEND
    split: str | None = None
    policy: str | None = None
    limit: int | None = None
    ids: tuple[str, ...] = ()
    verifier: str | None = None
    #: The verifier's scoring precision: auto, bf16, fp32 or int8 (`mucode.verifier.Verifier.load`).
    verifier_dtype: str = "auto"
    workers: int | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    force: bool = False
    progress: bool | None = None
    plot: bool = True
    #: Keyword options of the backend (e.g. ``{"dtype": "fp32"}`` for hf, ``{"kv_layout": "streams"}`` for llamacpp).
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    #: How reports name the generator ("Instruct", "μCode (iter 1)"); None: the model name.
    label: str | None = None
    #: A Ray cluster to run on, its backend and sandbox actors (see `mucode.rollout.RolloutConfig`).
    ray: str | None = None
    ray_replicas: int = 1
    ray_sandboxes: int = 1

    def __post_init__(self) -> None:
        check_selection(self.limit, self.workers)
        for name in ("batch_size", "ray_replicas", "ray_sandboxes"):
            check_positive(name, getattr(self, name))
        if self.verifier is None:
            check_scorer(self.search.selector, None)


def run_eval(config: EvalConfig) -> dict[str, Any]:
    """What ``mucode eval`` does: search every selected problem, then write results.json, samples.jsonl
    (EvalPlus ``solution`` lines, one per search, readable by ``mucode evaluate``) and the success plot."""
    all_problems = load_problems(config.dataset, config.split, policy=config.policy)
    problems = select_problems(all_problems, config.limit, config.ids)
    scorer = load_scorer(config.verifier, config.verifier_dtype) if config.verifier else None
    source = {"source": dataset_source(config.dataset, config.split, config.policy, all_problems),
              "verifier": config.verifier,
              **({"verifier_dtype": config.verifier_dtype} if config.verifier_dtype != "auto" else {})}
    with open_engines(config.backend, config.model, config.backend_options, config.workers,
                      dataset_limits(config.dataset), config.ray, config.ray_replicas,
                      config.ray_sandboxes) as (backend, sandbox):
        records, throughput = run_searches(problems, backend, sandbox, config.search, out_dir=config.out,
                                           scorer=scorer, identity=source, progress=config.progress,
                                           batch_size=config.batch_size, force=config.force)
        notes = [note for note in (f"sandbox: {sandbox.warning}" if sandbox.warning else None,
                                   unbatched_warning(backend, config.search.sampling())) if note]
        run = {**backend_identity(backend), "model": config.model, "backend_options": dict(config.backend_options),
               "label": config.label,
               "search": config.search.to_dict(), **source,
               "limit": config.limit, "ids": list(config.ids), "workers": sandbox.workers,
               "batch_size": config.batch_size, **({"ray": config.ray} if config.ray else {}),
               "limits": asdict(sandbox.limits) if sandbox.limits else None,
               "isolation": getattr(sandbox, "isolation", "ray actors")}
    return write_eval_outputs(Path(config.out), problems, records, run, throughput, config.plot, notes)


def write_eval_outputs(run_dir: Path, problems: Sequence[Problem], records: Sequence[SearchRecord],
                       run: Mapping[str, Any], throughput: Throughput, plot: bool = True,
                       warnings: Sequence[str] = ()) -> dict[str, Any]:
    """results.json, samples.jsonl and (with matplotlib) the plot; returns the results dict, in which
    ``warnings`` about the run are recorded."""
    max_turns = run["search"]["turns"]
    metrics = search_metrics(records, max_turns)
    write_samples([Sample(record.task_id, record.search, record.final_code or "", "solution")
                   for record in records], run_dir / SAMPLES_FILE)
    files = {"samples": SAMPLES_FILE, "searches": SEARCHES_FILE}
    notes = list(warnings)
    if plot:
        from mucode.plots import plot_success_vs_turn

        title = f"{run['source']['dataset']}: {run['search']['selector']} BoN@{run['search']['n']}"
        if (problem := plot_success_vs_turn(metrics, run_dir / PLOT_FILE, title)) is None:
            files["plot"] = PLOT_FILE
        else:
            notes.append(problem)
    results = {"format": EVAL_FORMAT, "created": datetime.now(UTC).isoformat(timespec="seconds"),
               "config": dict(run), "dataset": {"fingerprint": dataset_fingerprint(problems), "tasks": len(problems)},
               "versions": versions(*RESULT_PACKAGES), "metrics": metrics, "throughput": throughput.to_dict(),
               "files": files, "warnings": notes, "searches": [record.to_dict() for record in records]}
    write_json(run_dir / RESULTS_FILE, results)
    return results
