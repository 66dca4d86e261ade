"""Rollouts: N multi-turn episodes per problem → one trajectory record per line, resumable (docs/method.md §3).

`run_rollouts` runs episodes with the asynchronous driver (`mucode.driver`): each episode's next-turn request
(n = 1) joins the backend's running batch as soon as its previous reply has been tested, and finished
trajectories are appended to ``<out_dir>/trajectories.jsonl`` as they finish. Each completion's seed is derived
from (base seed, task id, rollout index, turn) — never from its position in a batch — so a run resumed after
``kill -9`` regenerates exactly what an uninterrupted run would, and the records it skips are exactly the ones
already on disk.

The run-folder machinery (the record file, pinning the folder to its config, progress) is `mucode.runs`;
the record is `mucode.records.Trajectory`. `select_problems` and `open_sandbox` are shared with multi-turn
Best-of-N (`mucode.search`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mucode import defaults
from mucode.backends import DEFAULT_BACKEND, Backend, Completion, SamplingParams, load_backend
from mucode.backends.base import Request, derive_seed, takes_seeds
from mucode.driver import Throughput, drive
from mucode.env import CODE_BLOCK_END, DEFAULT_TEMPLATE, CandidateResult, Episode, EpisodeConfig, SandboxLike
from mucode.errors import ConfigError, check_positive
from mucode.metrics import DEFAULT_KS, mean_rate, pass_at_k_estimates, rate_within_turns
from mucode.problems import dataset_fingerprint, load_problems, normalize_task_id
from mucode.problems.evalplus import TEST_TIMEOUT as EVALPLUS_TEST_TIMEOUT
from mucode.problems.registry import EVALPLUS_DATASETS
from mucode.records import ROLLOUT_FORMAT, TRAJECTORIES_FILE, Generation, SearchRecord, Trajectory
from mucode.runs import RecordLog, pin_run_dir, progress_bar, write_json
from mucode.sandbox import Limits, Sandbox
from mucode.sandbox.core import DEFAULT_GRADING
from mucode.types import Problem

SUMMARY_FILE = "summary.json"
#: Episodes in flight at once. A finished episode's slot is refilled at once, so the batch stays full; at most
#: this many trajectories are lost (and regenerated) when a run is killed.
DEFAULT_BATCH_SIZE = 64

R = TypeVar("R", Trajectory, SearchRecord)


# ------------------------------------------------------------------------------------- config and entry


@dataclass(frozen=True)
class RolloutConfig:
    """One ``mucode rollout`` run. Defaults are the reference's data collection (docs/method.md §3).

    ``stop_on`` defaults to "oracle", the training env's rule (stop on public ∧ private success).
    """

    model: str
    dataset: str
    out: str
    backend: str = DEFAULT_BACKEND
    split: str | None = None
    policy: str | None = None
    rollouts: int = 15
    turns: int = defaults.TURNS
    temperature: float = defaults.TEMPERATURE
    top_p: float = defaults.TOP_P
    max_tokens: int = defaults.MAX_TOKENS
    seed: int = 0
    template: str = DEFAULT_TEMPLATE
    stop_on: str = "oracle"
    grading: str = DEFAULT_GRADING
    stop_at_code_end: bool = False
    limit: int | None = None
    ids: tuple[str, ...] = ()
    workers: int | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    force: bool = False
    progress: bool | None = None  # None: a progress bar when stderr is a terminal
    #: Keyword options of the backend (e.g. ``{"dtype": "fp32"}`` for hf, ``{"kv_layout": "streams"}`` for llamacpp).
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    #: A Ray cluster to run on ("local", "auto" or an address; `mucode.cluster`), its backend actors and sandbox
    #: actors; None: this process only.
    ray: str | None = None
    ray_replicas: int = 1
    ray_sandboxes: int = 1

    def __post_init__(self) -> None:
        for name in ("rollouts", "turns", "max_tokens", "batch_size", "ray_replicas", "ray_sandboxes"):
            check_positive(name, getattr(self, name))
        check_selection(self.limit, self.workers)
        self.episode()  # EpisodeConfig and SamplingParams validate their own fields
        self.sampling()

    def episode(self) -> EpisodeConfig:
        return EpisodeConfig(max_turns=self.turns, template=self.template, stop_on=self.stop_on,
                             grading=self.grading)

    def sampling(self) -> SamplingParams:
        return SamplingParams(n=1, temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens,
                              seed=self.seed, stop=(CODE_BLOCK_END,) if self.stop_at_code_end else ())


def rollout(config: RolloutConfig) -> dict[str, Any]:
    """What ``mucode rollout`` does: load the problems, the backend and a sandbox, run, return the summary."""
    all_problems = load_problems(config.dataset, config.split, policy=config.policy)
    problems = select_problems(all_problems, config.limit, config.ids)
    source = dataset_source(config.dataset, config.split, config.policy, all_problems)
    with open_engines(config.backend, config.model, config.backend_options, config.workers,
                      dataset_limits(config.dataset), config.ray, config.ray_replicas,
                      config.ray_sandboxes) as (backend, sandbox):
        return run_rollouts(problems, backend, sandbox, rollouts=config.rollouts, turns=config.turns,
                            params=config.sampling(), template=config.template, stop_on=config.stop_on,
                            grading=config.grading,
                            out_dir=config.out, progress=config.progress, batch_size=config.batch_size,
                            force=config.force, source=source)


def run_rollouts(problems: Sequence[Problem], backend: Backend, sandbox: SandboxLike, *, rollouts: int,
                 turns: int, params: SamplingParams, template: str = DEFAULT_TEMPLATE, stop_on: str = "oracle",
                 grading: str = DEFAULT_GRADING,
                 out_dir: str | os.PathLike[str], progress: bool | None = None,
                 batch_size: int = DEFAULT_BATCH_SIZE, force: bool = False,
                 source: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run ``rollouts`` episodes of up to ``turns`` turns per problem; append them; return the summary.

    Pairs (task_id, rollout) already in ``out_dir`` are skipped, so calling this again after an interruption
    completes the run, and a larger ``rollouts`` extends it. ``source`` names the dataset (see
    `dataset_source`); it is part of the run's identity in ``config.json`` together with the model, sampling
    and episode settings. A directory started with another identity raises ConfigError naming the field,
    unless ``force`` (start over).
    """
    check_positive("rollouts", rollouts)
    check_positive("batch_size", batch_size)
    if params.n != 1 or params.seed is None:
        raise ConfigError(f"rollouts sample n=1 with an integer seed, got n={params.n}, seed={params.seed}")
    episode_config = EpisodeConfig(max_turns=turns, template=template, stop_on=stop_on, grading=grading)
    # The rollout count is not part of the identity: records are keyed and seeded by their index, so a run
    # can be extended to more rollouts (or fewer summarised) without changing any record.
    identity = {"format": ROLLOUT_FORMAT, **backend_identity(backend), "sampling": params.to_dict(),
                "episode": episode_config.to_dict(), "source": dict(source or {})}
    run_dir = pin_run_dir(out_dir, identity, force, [TRAJECTORIES_FILE, SUMMARY_FILE])
    log = RecordLog(run_dir / TRAJECTORIES_FILE)
    done = {(record.task_id, record.rollout) for record in log.load(Trajectory.from_dict)}
    todo = [(problem, index) for problem in problems for index in range(rollouts)
            if (problem.task_id, index) not in done]
    throughput = Throughput()
    walks = (_Rollout(Episode.start(problem, episode_config), index, params) for problem, index in todo)
    with progress_bar(len(todo), progress, "rollouts") as advance:
        for finished in drive(walks, backend, sandbox, batch_size, throughput):
            log.append([_trajectory(item, backend, params).to_dict() for item in finished])
            advance(len(finished))
    selected = {problem.task_id for problem in problems}
    records = [record for record in log.load(Trajectory.from_dict)
               if record.task_id in selected and record.rollout < rollouts]
    warning = unbatched_warning(backend, params)
    summary = {**summarize_trajectories(records, turns), "throughput": throughput.to_dict(),
               "run": {"out_dir": str(run_dir), "problems": len(problems), "generated": len(todo),
                       "resumed_from": len(done), "isolation": _isolation(sandbox)},
               "warnings": [warning] if warning and todo else []}
    write_json(run_dir / SUMMARY_FILE, summary)
    return summary


# ------------------------------------------------------------------------------------------ the loop


@dataclass
class _Rollout:
    """One episode as a walk of the driver: one completion per turn, committed as it is."""

    episode: Episode
    index: int
    params: SamplingParams
    generation: list[Generation] = field(default_factory=list)

    def seed(self) -> int:
        """The seed of the current turn's completion: (base seed, task, rollout, turn)."""
        return derive_seed(self.params.seed, self.episode.problem.task_id, self.index, len(self.episode.turns) + 1)

    def request(self) -> Request:
        return Request(list(self.episode.messages), self.params, self.seed())

    def receive(self, completions: Sequence[Completion], results: Sequence[CandidateResult]) -> bool:
        (completion,), (result,) = completions, results
        self.generation.append(Generation.of(completion, self.seed()))
        self.episode.advance(result)
        return self.episode.done


def _trajectory(item: _Rollout, backend: Backend, params: SamplingParams) -> Trajectory:
    """The finished episode as a record: the episode (readable by `Episode.from_dict`) plus how it was generated."""
    episode, identity = item.episode, backend_identity(backend)
    return Trajectory(task_id=episode.problem.task_id, rollout=item.index, config=episode.config,
                      messages=tuple(dict(message) for message in episode.messages), turns=tuple(episode.turns),
                      done=episode.done, success=episode.success, backend=identity["backend"],
                      model_id=identity["model_id"], sampling=params, seed=params.seed,  # type: ignore[arg-type]
                      generation=tuple(item.generation))


# --------------------------------------------------------------------------------------------- summary


def summarize_trajectories(records: Sequence[Trajectory], max_turns: int) -> dict[str, Any]:
    """Success by turn, pass@k over rollouts (k in DEFAULT_KS where every task has n >= k), mean turns.

    A trajectory "succeeded within k turns" when it ended in success after at most k turns; both stop rules
    end an episode at the turn that decides its label, so that turn is the length of the trajectory.
    """
    if not records:
        return {"trajectories": 0, "tasks": 0}
    by_task = group_by_task(records)
    within = rate_within_turns([[success_turn(record) for record in group] for group in by_task.values()],
                               max_turns)
    counts = [(len(group), sum(record.success for record in group)) for group in by_task.values()]
    smallest = min(n for n, _ in counts)
    return {
        "trajectories": len(records),
        "tasks": len(by_task),
        "success_rate": mean_rate([[r.success for r in group] for group in by_task.values()]).to_dict(),
        "success_within_turns": {str(k): estimate.to_dict() for k, estimate in within.items()},
        "pass_at_k": {f"pass@{k}": estimate.to_dict()
                      for k, estimate in pass_at_k_estimates(counts, DEFAULT_KS).items()},
        "pass_at_k_skipped": [f"pass@{k}" for k in DEFAULT_KS if k > smallest],
        "mean_turns": sum(len(record.turns) for record in records) / len(records),
        "completion_tokens": sum(turn.completion_tokens for record in records for turn in record.generation),
    }


def success_turn(record: Trajectory | SearchRecord) -> int | None:
    """The turn at which a trajectory or search succeeded (its last), or None if it failed."""
    return len(record.turns) if record.success else None


def group_by_task(records: Iterable[R]) -> dict[str, list[R]]:
    """Records (trajectories or searches) grouped by task id, tasks in order of first appearance."""
    groups: dict[str, list[R]] = {}
    for record in records:
        groups.setdefault(record.task_id, []).append(record)
    return groups


# -------------------------------------------------------------------------------------- backends


def unbatched_warning(backend: Backend, params: SamplingParams) -> str | None:
    """The warning a run records when `mucode.backends.base.generate_seeded` calls the backend once per
    conversation."""
    if params.greedy or takes_seeds(backend):
        return None
    return (f"backend {backend_identity(backend)['backend']!r} takes no per-conversation seeds (generate(..., "
            "seeds=)); to keep runs resumable exactly, each conversation is generated in its own call (slower)")


def backend_identity(backend: Backend) -> dict[str, str]:
    """What a run directory records about the model: the backend kind and the model's id (or path)."""
    return {"backend": backend.name or type(backend).__name__, "model_id": backend.model_id or backend.model}


# ------------------------------------------------------------------------------- problems and sandbox


def select_problems(problems: Sequence[Problem], limit: int | None = None,
                    ids: Sequence[str] = ()) -> list[Problem]:
    """The problems named by ``ids`` (any spelling `normalize_task_id` accepts), in dataset order, then the
    first ``limit`` of them. Unknown ids raise DataError; an empty selection raises ConfigError."""
    chosen = list(problems)
    if ids:
        by_id = {problem.task_id: problem for problem in problems}
        wanted = {normalize_task_id(task_id, by_id) for task_id in ids}
        chosen = [problem for problem in chosen if problem.task_id in wanted]
    if limit is not None:
        check_positive("limit", limit)
        chosen = chosen[:limit]
    if not chosen:
        raise ConfigError("no problems selected")
    return chosen


def dataset_source(dataset: str, split: str | None, policy: str | None,
                   problems: Sequence[Problem]) -> dict[str, Any]:
    """How a run names its dataset: name, split, policy and the fingerprint of the *whole* split, so that
    resuming with another --limit or --ids is the same run while an edited problem file is not."""
    return {"dataset": dataset, "split": split or "test", "policy": policy or "eval",
            "fingerprint": dataset_fingerprint(problems)}


def dataset_limits(dataset: str) -> Limits:
    """Sandbox limits for a dataset: EvalPlus tests pack many inputs, so they get the EvalPlus timeout."""
    return Limits(test_timeout=EVALPLUS_TEST_TIMEOUT) if dataset.lower() in EVALPLUS_DATASETS else Limits()


@contextmanager
def open_sandbox(workers: int | None = None, limits: Limits | None = None) -> Iterator[Sandbox]:
    """A started sandbox, closed on exit; its fallback warning is kept in ``sandbox.warning``."""
    sandbox = Sandbox(limits, workers)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # callers report sandbox.warning
            sandbox.start()
        yield sandbox
    finally:
        sandbox.close()


@contextmanager
def open_engines(kind: str, model: str, options: Mapping[str, Any], workers: int | None, limits: Limits,
                 ray: str | None = None, replicas: int = 1, sandboxes: int = 1) -> Iterator[tuple[Backend, Any]]:
    """The backend and sandbox a run uses: local ones, or with ``ray`` (an address) actors on a Ray cluster
    (`mucode.cluster`: ``replicas`` backend actors, ``sandboxes`` sandbox actors of ``workers`` each)."""
    if ray is None:
        with load_backend(kind, model, **options) as backend, open_sandbox(workers, limits) as sandbox:
            yield backend, sandbox
        return
    try:
        from mucode.cluster import ray_engines
    except ImportError as error:
        raise ConfigError(f"--ray needs Ray: {error} (install it with `pip install mucode[ray]`)") from None
    with ray_engines(ray, kind, model, replicas=replicas, sandboxes=sandboxes, backend_options=options,
                     limits=limits, workers=workers) as engines:
        yield engines


def _isolation(sandbox: SandboxLike) -> str:
    return getattr(sandbox, "isolation", "unknown")


def check_selection(limit: int | None, workers: int | None) -> None:
    for name, value in (("limit", limit), ("workers", workers)):
        if value is not None:
            check_positive(name, value)


