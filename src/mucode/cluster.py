"""Episodes on a Ray cluster: generation in backend actors, program execution in sandbox actors.

Ray is the transport, not a new episode loop: the driver (`mucode.driver`, the one writer of the records) runs
where the command runs, exactly as without Ray, and sees two local objects:

- `RayBackend`, a `Backend` whose ``generate`` splits a batch into contiguous chunks, one per backend actor
  (each actor holds a backend loaded by `load_backend`: llama.cpp or OpenVINO on CPU nodes, transformers on
  GPU nodes), and joins the answers in order. Every conversation keeps its own seed (rollouts and searches pass
  one per episode), so the records are those of a run without Ray up to the engines' batch-dependent floating
  point (docs/backends.md); its ``name`` and ``model_id`` are the inner backend's, so a run started without
  Ray resumes with it and back.
- `RaySandbox`, with the sandbox's ``submit(job) -> Future`` and ``run_many``: each job goes to the sandbox
  actor with the fewest jobs in flight; each actor runs a `mucode.sandbox.Sandbox` on its node, whose
  isolation, limits and unforgeable verdicts are unchanged.

A dead actor (node lost, process killed) is replaced by a new one and its unfinished chunks or jobs are run
again there; since only the driver writes records, a re-run never duplicates one. OpenAI-compatible servers
(vLLM, SGLang) need no actors: use the ``openai`` backend with several base URLs, with `RaySandbox` or without.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import RayActorError

from mucode.backends import load_backend, resolve_backend
from mucode.backends.base import Backend, Completion, Conversation, GenerationStats, SamplingParams
from mucode.errors import BackendError, ConfigError, SandboxError
from mucode.sandbox import Job, Limits, Sandbox
from mucode.types import ExecResult

#: Times a chunk or job is sent again after its actor died, before the run fails.
MAX_REPLACEMENTS = 3


def connect(address: str) -> None:
    """Join the Ray cluster at ``address`` ("local": start one on this machine with its CPUs; "auto": the
    cluster this machine belongs to; else a ``ray://`` or ``host:port`` address). Idempotent."""
    if ray.is_initialized():
        return
    ray.init(address=None if address == "local" else address, ignore_reinit_error=True, log_to_driver=False,
             include_dashboard=False)


@ray.remote
class _BackendActor:
    """One backend on one worker."""

    def __init__(self, kind: str, model: str, options: Mapping[str, Any]) -> None:
        self.backend = load_backend(kind, model, **options)

    def identity(self) -> tuple[str, str]:
        return self.backend.name, self.backend.model_id or self.backend.model

    def generate(self, conversations: Sequence[Conversation], params: SamplingParams,
                 seeds: Sequence[int] | None) -> tuple[list[list[Completion]], GenerationStats | None]:
        rows = self.backend.generate(conversations, params, seeds)
        return rows, self.backend.last_stats


@dataclass
class RayBackend(Backend):
    """``replicas`` actors each holding ``load_backend(kind, model, **options)``; ``actor_options`` go to Ray
    (default ``{"num_cpus": 1}``: one reserved CPU each, so a cluster never holds more actors than it has CPUs
    for; e.g. ``{"num_gpus": 1}`` for a transformers backend on a GPU node)."""

    kind: str = "auto"
    replicas: int = 1
    options: Mapping[str, Any] = field(default_factory=dict)
    actor_options: Mapping[str, Any] = field(default_factory=dict)
    actors: list[Any] = field(init=False, default_factory=list)
    replaced: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ConfigError(f"ray backend: replicas must be >= 1, got {self.replicas}")
        self.kind = resolve_backend(self.kind, self.model)  # measured here once, not in every actor
        self.actors = [self._new_actor() for _ in range(self.replicas)]
        self.name, self.model_id = ray.get(self.actors[0].identity.remote())

    def _new_actor(self) -> Any:
        options = {"num_cpus": 1, **self.actor_options}
        return _BackendActor.options(**options).remote(self.kind, self.model, dict(self.options))

    def generate(self, conversations: Sequence[Conversation], params: SamplingParams,
                 seeds: Sequence[int] | None = None) -> list[list[Completion]]:
        """The batch split into one contiguous chunk per actor (the whole batch to one actor without per-
        conversation ``seeds``, whose seeds depend on positions in the call), answers joined in order."""
        if not conversations:
            return []
        parts = len(self.actors) if seeds is not None else 1
        size = -(-len(conversations) // parts)
        chunks = [(start, min(start + size, len(conversations))) for start in range(0, len(conversations), size)]
        pending = {index: self._send(index, conversations, params, seeds, chunk) for index, chunk in
                   enumerate(chunks)}
        results: dict[int, tuple[list[list[Completion]], GenerationStats | None]] = {}
        for index, chunk in enumerate(chunks):
            for attempt in range(MAX_REPLACEMENTS + 1):
                try:
                    results[index] = ray.get(pending[index])
                    break
                except RayActorError as error:
                    if attempt == MAX_REPLACEMENTS:
                        raise BackendError(f"ray backend: actor died {attempt + 1} times on one chunk ({error})") \
                            from error
                    self.actors[index] = self._new_actor()
                    self.replaced += 1
                    pending[index] = self._send(index, conversations, params, seeds, chunk)
        stats = [stat for _, stat in results.values() if stat is not None]
        self.last_stats = GenerationStats(sum(s.prompt_tokens for s in stats), sum(s.completion_tokens for s in stats),
                                          max((s.seconds for s in stats), default=0.0))
        return [row for index in range(len(chunks)) for row in results[index][0]]

    def _send(self, index: int, conversations: Sequence[Conversation], params: SamplingParams,
              seeds: Sequence[int] | None, chunk: tuple[int, int]) -> Any:
        start, end = chunk
        return self.actors[index].generate.remote(list(conversations[start:end]), params,
                                                  None if seeds is None else list(seeds[start:end]))

    def close(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []


@ray.remote
class _SandboxActor:
    """One `Sandbox` on one worker; runs up to its workers' count of jobs at once (a threaded actor)."""

    def __init__(self, limits: Limits | None, workers: int | None) -> None:
        self.sandbox = Sandbox(limits, workers)
        self.sandbox.start()
        self.lock = threading.Lock()

    def run(self, job: Job) -> ExecResult:
        with self.lock:
            future = self.sandbox.submit(job)
        return future.result()


@dataclass
class _SandboxSlot:
    actor: Any
    in_flight: int = 0


class RaySandbox:
    """``actors`` sandbox actors of ``workers`` programs each; the `mucode.sandbox.Sandbox` interface the
    episodes use (``submit``, ``run_many``, ``close``)."""

    def __init__(self, actors: int = 1, limits: Limits | None = None, workers: int | None = None,
                 actor_options: Mapping[str, Any] | None = None) -> None:
        if actors < 1:
            raise ConfigError(f"ray sandbox: actors must be >= 1, got {actors}")
        self.limits, self.workers = limits, workers
        # No CPU reserved by default: the programs are short and bursty, and the backend actors hold the CPUs
        self.actor_options = {"max_concurrency": workers or 4, "num_cpus": 0, **(actor_options or {})}
        self.slots = [_SandboxSlot(self._new_actor()) for _ in range(actors)]
        self.replaced = 0
        self.warning: str | None = None
        self._lock = threading.Lock()

    def _new_actor(self) -> Any:
        return _SandboxActor.options(**self.actor_options).remote(self.limits, self.workers)

    def submit(self, job: Job) -> Future[ExecResult]:
        """Run ``job`` on the least busy actor; the future resolves with its result (re-run elsewhere if the
        actor dies first)."""
        outer: Future[ExecResult] = Future()
        self._dispatch(job, outer, 0)
        return outer

    def run_many(self, jobs: Iterable[Job]) -> list[ExecResult]:
        return [future.result() for future in [self.submit(job) for job in jobs]]

    def _dispatch(self, job: Job, outer: Future[ExecResult], attempt: int) -> None:
        with self._lock:
            slot = min(self.slots, key=lambda s: s.in_flight)
            slot.in_flight += 1
            actor = slot.actor
        inner = actor.run.remote(job).future()

        def finished(done: Future[ExecResult]) -> None:
            with self._lock:
                slot.in_flight -= 1
            try:
                outer.set_result(done.result())
            except RayActorError:
                if attempt == MAX_REPLACEMENTS:
                    outer.set_exception(SandboxError(f"ray sandbox: actor died {attempt + 1} times on one job"))
                    return
                self._replace(slot, actor)
                self._dispatch(job, outer, attempt + 1)
            except BaseException as error:  # the sandbox's own errors reach the caller unchanged
                outer.set_exception(error)

        inner.add_done_callback(finished)

    def _replace(self, slot: _SandboxSlot, dead: Any) -> None:
        with self._lock:
            if slot.actor is dead:  # several jobs of one dead actor: replace it once
                slot.actor = self._new_actor()
                self.replaced += 1

    def close(self) -> None:
        for slot in self.slots:
            ray.kill(slot.actor)
        self.slots = []


@contextmanager
def ray_engines(address: str, kind: str, model: str, *, replicas: int, sandboxes: int,
                backend_options: Mapping[str, Any], limits: Limits | None,
                workers: int | None) -> Iterator[tuple[Backend, RaySandbox]]:
    """A `RayBackend` (or, for the ``openai`` backend, the plain one: servers need no actors) and a
    `RaySandbox` on the cluster at ``address``, closed on exit."""
    connect(address)
    if kind == "openai":
        backend: Backend = load_backend(kind, model, **backend_options)
    else:
        backend = RayBackend(model, kind=kind, replicas=replicas, options=dict(backend_options))
    sandbox = RaySandbox(sandboxes, limits, workers)
    try:
        yield backend, sandbox
    finally:
        sandbox.close()
        backend.close()
