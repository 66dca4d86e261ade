"""Rollouts: N multi-turn episodes per problem → one trajectory record per line, resumable (METHOD.md §3).

`run_rollouts` drives episodes in batches: at each step the next-turn conversations of all active episodes go
to one `Backend.generate` call (n = 1 each) and their replies to one `step_episodes` call. Finished
trajectories are appended to ``<out_dir>/trajectories.jsonl`` as they finish. Each completion's seed is derived
from (base seed, task id, rollout index, turn) — never from its position in a batch — so a run resumed after
``kill -9`` regenerates exactly what an uninterrupted run would, and the records it skips are exactly the ones
already on disk.

The run-directory machinery here (`RecordLog`, `prepare_run_dir`, `generate_seeded`,
`select_problems`, `open_sandbox`, `progress_bar`) is shared with multi-turn Best-of-N (`mucode.search`).
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mucode.backends import DEFAULT_BACKEND, Backend, Completion, Conversation, SamplingParams, load_backend
from mucode.backends.base import derive_seed
from mucode.env import DEFAULT_TEMPLATE, Episode, EpisodeConfig, SandboxLike, step_episodes
from mucode.errors import BackendError, ConfigError, DataError
from mucode.metrics import DEFAULT_KS, mean_rate, pass_at_k_estimates, rate_within_turns
from mucode.problems import dataset_fingerprint, load_problems, normalize_task_id
from mucode.problems.evalplus import TEST_TIMEOUT as EVALPLUS_TEST_TIMEOUT
from mucode.problems.registry import EVALPLUS_DATASETS
from mucode.samples import write_atomic
from mucode.sandbox import Limits, Sandbox
from mucode.types import Problem

ROLLOUT_FORMAT = "mucode.rollout/1"
CONFIG_FILE = "config.json"
TRAJECTORIES_FILE = "trajectories.jsonl"
SUMMARY_FILE = "summary.json"
#: Episodes in flight at once. A finished episode's slot is refilled at the next step, so the batch stays
#: full; at most this many trajectories are lost (and regenerated) when a run is killed.
DEFAULT_BATCH_SIZE = 64


# ------------------------------------------------------------------------------------- config and entry


@dataclass(frozen=True)
class RolloutConfig:
    """One ``mucode rollout`` run. Defaults are the reference's data collection (METHOD.md §3).

    ``stop_on`` defaults to "oracle", the training env's rule (stop on public ∧ private success).
    """

    model: str
    dataset: str
    out: str
    backend: str = DEFAULT_BACKEND
    split: str | None = None
    policy: str | None = None
    rollouts: int = 15
    turns: int = 3
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: int = 1000
    seed: int = 0
    template: str = DEFAULT_TEMPLATE
    stop_on: str = "oracle"
    limit: int | None = None
    ids: tuple[str, ...] = ()
    workers: int | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    force: bool = False
    progress: bool | None = None  # None: a progress bar when stderr is a terminal
    #: Keyword options of the backend (e.g. ``{"dtype": "fp32"}`` for hf, ``{"kv_layout": "streams"}`` for llamacpp).
    backend_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_positive("rollouts", self.rollouts)
        check_positive("batch_size", self.batch_size)
        check_selection(self.limit, self.workers)
        self.episode()  # EpisodeConfig and SamplingParams validate their own fields
        self.sampling()

    def episode(self) -> EpisodeConfig:
        return EpisodeConfig(max_turns=self.turns, template=self.template, stop_on=self.stop_on)

    def sampling(self) -> SamplingParams:
        return SamplingParams(n=1, temperature=self.temperature, top_p=self.top_p, max_tokens=self.max_tokens,
                              seed=self.seed)


def rollout(config: RolloutConfig) -> dict[str, Any]:
    """What ``mucode rollout`` does: load the problems, the backend and a sandbox, run, return the summary."""
    all_problems = load_problems(config.dataset, config.split, policy=config.policy)
    problems = select_problems(all_problems, config.limit, config.ids)
    source = dataset_source(config.dataset, config.split, config.policy, all_problems)
    with load_backend(config.backend, config.model, **config.backend_options) as backend, \
            open_sandbox(config.workers, dataset_limits(config.dataset)) as sandbox:
        return run_rollouts(problems, backend, sandbox, rollouts=config.rollouts, turns=config.turns,
                            params=config.sampling(), template=config.template, stop_on=config.stop_on,
                            out_dir=config.out, progress=config.progress, batch_size=config.batch_size,
                            force=config.force, source=source)


def run_rollouts(problems: Sequence[Problem], backend: Backend, sandbox: SandboxLike, *, rollouts: int,
                 turns: int, params: SamplingParams, template: str = DEFAULT_TEMPLATE, stop_on: str = "oracle",
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
    episode_config = EpisodeConfig(max_turns=turns, template=template, stop_on=stop_on)
    # The rollout count is not part of the identity: records are keyed and seeded by their index, so a run
    # can be extended to more rollouts (or fewer summarised) without changing any record.
    identity = {"format": ROLLOUT_FORMAT, **backend_identity(backend), "sampling": params.to_dict(),
                "episode": episode_config.to_dict(), "source": dict(source or {})}
    run_dir = prepare_run_dir(out_dir, identity, force, [TRAJECTORIES_FILE, SUMMARY_FILE])
    log = RecordLog(run_dir / TRAJECTORIES_FILE)
    done = {(record["task_id"], record["rollout"]) for record in log.load()}
    todo = [(problem, index) for problem in problems for index in range(rollouts)
            if (problem.task_id, index) not in done]
    throughput = Throughput()
    context = {**backend_identity(backend), "sampling": params.to_dict(), "seed": params.seed}
    with progress_bar(len(todo), progress, "rollouts") as advance:
        for finished in _rollout_steps(todo, backend, sandbox, params, episode_config, batch_size, throughput):
            log.append([_trajectory_record(item, context) for item in finished])
            advance(len(finished))
    selected = {problem.task_id for problem in problems}
    records = [record for record in log.load()
               if record["task_id"] in selected and record["rollout"] < rollouts]
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
    episode: Episode
    index: int
    generation: list[dict[str, Any]] = field(default_factory=list)


def _rollout_steps(todo: Sequence[tuple[Problem, int]], backend: Backend, sandbox: SandboxLike,
                   params: SamplingParams, config: EpisodeConfig, batch_size: int,
                   throughput: Throughput) -> Iterator[list[_Rollout]]:
    """Yield the rollouts that finished at each step; up to ``batch_size`` episodes are in flight."""
    pending = deque(todo)
    active: list[_Rollout] = []
    while pending or active:
        while pending and len(active) < batch_size:
            problem, index = pending.popleft()
            active.append(_Rollout(Episode.start(problem, config), index))
        seeds = [derive_seed(params.seed, item.episode.problem.task_id, item.index, len(item.episode.turns) + 1)
                 for item in active]
        completions = generate_seeded(backend, [item.episode.messages for item in active], params, seeds,
                                      throughput)
        step_episodes([item.episode for item in active], [choices[0].text for choices in completions], sandbox)
        for item, choices, seed in zip(active, completions, seeds, strict=True):
            item.generation.append(generation_info(choices[0], seed))
        yield [item for item in active if item.episode.done]
        active = [item for item in active if not item.episode.done]


def _trajectory_record(item: _Rollout, context: Mapping[str, Any]) -> dict[str, Any]:
    """One JSONL line: the episode record (readable by `Episode.from_dict`) plus how it was generated."""
    episode = item.episode.to_dict()
    return {"task_id": episode.pop("task_id"), "rollout": item.index, **episode, **context,
            "generation": item.generation}


def generation_info(completion: Completion, seed: int) -> dict[str, Any]:
    """Per-turn generation facts kept next to the turn: its seed, token counts, finish reason, wall time."""
    return {"seed": seed, "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens, "finish_reason": completion.finish_reason,
            "seconds": round(completion.seconds, 4)}


# --------------------------------------------------------------------------------------------- summary


def summarize_trajectories(records: Sequence[Mapping[str, Any]], max_turns: int) -> dict[str, Any]:
    """Success by turn, pass@k over rollouts (k in DEFAULT_KS where every task has n >= k), mean turns.

    A trajectory "succeeded within k turns" when it ended in success after at most k turns; both stop rules
    end an episode at the turn that decides its label, so that turn is the length of the trajectory.
    """
    if not records:
        return {"trajectories": 0, "tasks": 0}
    by_task = group_by_task(records)
    within = rate_within_turns([[success_turn(record) for record in group] for group in by_task.values()],
                               max_turns)
    counts = [(len(group), sum(bool(record["success"]) for record in group)) for group in by_task.values()]
    smallest = min(n for n, _ in counts)
    return {
        "trajectories": len(records),
        "tasks": len(by_task),
        "success_rate": mean_rate([[bool(r["success"]) for r in group] for group in by_task.values()]).to_dict(),
        "success_within_turns": {str(k): estimate.to_dict() for k, estimate in within.items()},
        "pass_at_k": {f"pass@{k}": estimate.to_dict()
                      for k, estimate in pass_at_k_estimates(counts, DEFAULT_KS).items()},
        "pass_at_k_skipped": [f"pass@{k}" for k in DEFAULT_KS if k > smallest],
        "mean_turns": sum(len(record["turns"]) for record in records) / len(records),
        "completion_tokens": sum(turn["completion_tokens"] for record in records
                                 for turn in record.get("generation", [])),
    }


def success_turn(record: Mapping[str, Any]) -> int | None:
    """The turn at which a trajectory succeeded (its last), or None if it failed."""
    return len(record["turns"]) if record["success"] else None


def group_by_task(records: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Records grouped by task id, tasks in order of first appearance."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        groups.setdefault(record["task_id"], []).append(record)
    return groups


@dataclass
class Throughput:
    """Generation totals of this session (not of earlier, resumed sessions): tokens/s of the backend."""

    completion_tokens: int = 0
    seconds: float = 0.0

    def add(self, backend: Backend) -> None:
        self.completion_tokens += backend.last_stats.completion_tokens
        self.seconds += backend.last_stats.seconds

    def to_dict(self) -> dict[str, float]:
        rate = self.completion_tokens / self.seconds if self.seconds > 0 else 0.0
        return {"completion_tokens": self.completion_tokens, "seconds": round(self.seconds, 3),
                "tokens_per_second": round(rate, 2)}


# ------------------------------------------------------------------------------- seeds and generation


def generate_seeded(backend: Backend, conversations: Sequence[Conversation], params: SamplingParams,
                    seeds: Sequence[int], throughput: Throughput) -> list[list[Completion]]:
    """``params.n`` completions per conversation, conversation i sampled with ``seeds[i]``.

    A backend whose ``generate`` takes ``seeds=`` (one per conversation) gets one batched call. The base
    interface only has one seed per call, positional within the batch, which would make a resumed run differ
    from an uninterrupted one; such a backend is called once per conversation instead (same results, no
    batching). Greedy decoding needs no seeds, so it is always one call.
    """
    if params.greedy or takes_seeds(backend):
        options = {} if params.greedy else {"seeds": list(seeds)}
        completions = backend.generate(conversations, params, **options)
        throughput.add(backend)
    else:
        completions = []
        for conversation, seed in zip(conversations, seeds, strict=True):
            completions += backend.generate([conversation], replace(params, seed=seed))
            throughput.add(backend)
    if len(completions) != len(conversations) or any(len(choices) != params.n for choices in completions):
        raise BackendError(f"backend {backend.name or type(backend).__name__} returned a wrong number of "
                          f"completions for {len(conversations)} conversations × n={params.n}")
    return completions


def takes_seeds(backend: Backend) -> bool:
    """Whether ``backend.generate`` accepts one seed per conversation (``seeds=``), so batches stay batched."""
    return "seeds" in inspect.signature(backend.generate).parameters


def unbatched_warning(backend: Backend, params: SamplingParams) -> str | None:
    """The warning a run records when `generate_seeded` must call the backend once per conversation."""
    if params.greedy or takes_seeds(backend):
        return None
    return (f"backend {backend_identity(backend)['backend']!r} takes no per-conversation seeds (generate(..., "
            "seeds=)); to keep runs resumable exactly, each conversation is generated in its own call (slower)")


def backend_identity(backend: Backend) -> dict[str, str]:
    """What a run directory records about the model: the backend kind and the model's id (or path)."""
    return {"backend": backend.name or type(backend).__name__, "model_id": backend.model_id or backend.model}


# ----------------------------------------------------------------------------------------- run folder


class RecordLog:
    """An append-only JSONL file that survives ``kill -9`` without losing or duplicating a record.

    Each `append` writes whole lines with one ``os.write`` (looping only on a short write) and fsyncs, so a
    crash can only leave a torn *last* line; `load` truncates that line away.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> list[dict[str, Any]]:
        """The records on disk, in order; a torn last line (no newline) is cut from the file first."""
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):
            os.truncate(self.path, end)
            data = data[:end]
        records = []
        for number, line in enumerate(data.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise DataError(f"{self.path}:{number}: not a JSON record ({error.msg}); the file was "
                                    "changed by something other than mucode") from None
        return records

    def append(self, records: Sequence[Mapping[str, Any]]) -> None:
        if not records:
            return
        data = memoryview("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)
                          .encode("utf-8"))
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            while data:
                data = data[os.write(descriptor, data):]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def prepare_run_dir(out_dir: str | os.PathLike[str], identity: Mapping[str, Any], force: bool,
                    outputs: Sequence[str]) -> Path:
    """Create or reopen a run folder whose ``config.json`` must equal ``identity`` (JSON-normalised).

    A different identity raises ConfigError naming each differing field; ``force`` instead deletes the
    earlier ``outputs`` and starts over. The config is written atomically before any record.
    """
    run_dir = Path(out_dir).expanduser()
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir} is a file; give a run folder")
    config_path = run_dir / CONFIG_FILE
    wanted = json.loads(json.dumps(identity))
    if config_path.exists() and not force:
        _check_same_config(config_path, wanted)
    if force:
        for name in outputs:
            (run_dir / name).unlink(missing_ok=True)
    write_json(config_path, wanted)
    return run_dir


def _check_same_config(path: Path, wanted: Mapping[str, Any]) -> None:
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise DataError(f"{path}: cannot read the run's config ({error})") from None
    old, new = _flatten(recorded), _flatten(wanted)
    differences = [f"{name} was {old.get(name)!r}, now {new.get(name)!r}"
                   for name in sorted(old.keys() | new.keys()) if old.get(name) != new.get(name)]
    if differences:
        raise ConfigError(f"{path.parent} was started with another config: {'; '.join(differences)} "
                          "(use --force to start over, or another --out)")


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Indented JSON, written atomically."""
    write_atomic(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


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


def _isolation(sandbox: SandboxLike) -> str:
    return getattr(sandbox, "isolation", "unknown")


def check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")


def check_selection(limit: int | None, workers: int | None) -> None:
    for name, value in (("limit", limit), ("workers", workers)):
        if value is not None:
            check_positive(name, value)


# ------------------------------------------------------------------------------------------- progress


@contextmanager
def progress_bar(total: int, enabled: bool | None, label: str) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr with rate and ETA; yields the function that advances it by n."""
    if not (sys.stderr.isatty() if enabled is None else enabled) or total == 0:
        yield lambda _: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    started = time.monotonic()
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=total, rate="")

        def advance(count: int) -> None:
            bar.advance(task, count)
            done = bar.tasks[0].completed
            bar.update(task, rate=f"{done / max(time.monotonic() - started, 1e-9):.2f}/s")

        yield advance

