"""The asynchronous episode driver: every episode or search advances on its own (docs/backends.md).

Rollouts (`mucode.rollout`) and multi-turn Best-of-N (`mucode.search`) are both *walks*: a walk asks the
backend for completions of its current conversation (`Walk.request`), its candidates run in the sandbox, and it
judges the results (`Walk.receive`): commit one and go on, or finish. `drive` keeps up to ``capacity`` walks
in flight:

- requests go to the backend's request-level interface (`Backend.submit` / `Backend.step`); with a
  continuous-batching engine a walk's next turn joins the running batch at once instead of waiting for the
  slowest reply of a lockstep step;
- a request's completions start in the sandbox as soon as it completes (`mucode.env.submit_candidates`) while
  the engine keeps decoding the others; the driver only waits on the sandbox when the engine has nothing to do;
- a backend without continuous batching (`Backend.continuous` False: its `step` generates the whole queue in
  one blocking call) is stepped only once every walk's tests are back, and the walks go back into its queue in
  a fixed order, so its batches are exactly a lockstep loop's (same members, same order, whatever the timing);
- a finished walk's slot is refilled at once, and finished walks are yielded as they finish, so callers append
  their records immediately (at most ``capacity`` walks are lost, and redone, when a run is killed).

Seeds come from each walk's coordinates (task, rollout or search index, turn), never from batch positions or
timing, so a resumed run draws what an uninterrupted one would. Records are not bit-identical across batch
compositions on every engine: a token's logits are floating-point sums whose order can depend on what else is
in the batch, and a different token changes the rest of the reply.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

from mucode.backends import Backend, Completion
from mucode.backends.base import Request
from mucode.env import (
    CandidateResult,
    Episode,
    PendingCandidates,
    SandboxLike,
    restore_closing_fence,
    submit_candidates,
)


class Walk(Protocol):
    """One episode (a rollout) or one search, as the driver sees it."""

    episode: Episode

    def request(self) -> Request:
        """The completions wanted for the current state (called once per turn, before `receive`)."""

    def receive(self, completions: Sequence[Completion], results: Sequence[CandidateResult]) -> bool:
        """Judge this turn's completions and their test results; True when the walk has finished."""


W = TypeVar("W", bound=Walk)


@dataclass
class Throughput:
    """What this session generated: completion tokens over the wall time of the run (generation, tests and
    selection together, overlapped), i.e. end-to-end tokens/s, not the engine's alone."""

    completion_tokens: int = 0
    seconds: float = 0.0

    def count(self, completions: Sequence[Completion]) -> None:
        self.completion_tokens += sum(completion.completion_tokens for completion in completions)

    def to_dict(self) -> dict[str, float]:
        rate = self.completion_tokens / self.seconds if self.seconds > 0 else 0.0
        return {"completion_tokens": self.completion_tokens, "seconds": round(self.seconds, 3),
                "tokens_per_second": round(rate, 2)}


@dataclass
class _Testing:
    walk: Walk
    completions: list[Completion]
    running: PendingCandidates


def drive(walks: Iterable[W], backend: Backend, sandbox: SandboxLike, capacity: int,
          throughput: Throughput | None = None) -> Iterator[list[W]]:
    """Run ``walks`` to the end, at most ``capacity`` at a time; yield the ones that finished, as they finish."""
    throughput = throughput if throughput is not None else Throughput()
    began = time.perf_counter() - throughput.seconds
    pending: deque[W] = deque(walks)
    generating: dict[int, tuple[W, Request]] = {}
    testing: list[_Testing] = []

    def launch(walk: W) -> None:
        request = walk.request()
        generating[backend.submit(request)] = (walk, request)

    while pending or generating or testing:
        while pending and len(generating) + len(testing) < capacity:
            launch(pending.popleft())
        if generating and (backend.continuous or not testing):
            for ticket, completions in backend.step():
                walk, request = generating.pop(ticket)
                throughput.count(completions)
                completions = [_restored(completion, request) for completion in completions]
                candidates = [(walk.episode.problem, completion.text) for completion in completions]
                testing.append(_Testing(walk, completions,
                                        submit_candidates(candidates, sandbox, walk.episode.config.grading)))
        elif testing:
            _wait_for_any(testing)
        finished: list[W] = []
        running: list[_Testing] = []
        # A blocking backend's batch is the queue in submission order; taking the walks back only once all are
        # tested keeps that order independent of which program finished first.
        ready = backend.continuous or all(entry.running.done() for entry in testing)
        for entry in testing:
            if not ready or not entry.running.done():
                running.append(entry)
            elif entry.walk.receive(entry.completions, entry.running.results()):
                finished.append(entry.walk)  # type: ignore[arg-type]
            else:
                launch(entry.walk)  # type: ignore[arg-type]
        testing = running
        throughput.seconds = time.perf_counter() - began
        if finished:
            yield finished


def _restored(completion: Completion, request: Request) -> Completion:
    """The completion with the closing fence that a `CODE_BLOCK_END` stop dropped put back (`mucode.env`)."""
    text = restore_closing_fence(completion.text, completion.finish_reason, request.params.stop)
    return completion if text == completion.text else replace(completion, text=text)


def _wait_for_any(testing: Sequence[_Testing]) -> None:
    """Block until some running program has its verdicts (the engine is idle: nothing else to do)."""
    futures = [future for entry in testing for future in entry.running.futures.values() if not future.done()]
    if futures and not any(entry.running.done() for entry in testing):
        wait(futures, return_when=FIRST_COMPLETED)
