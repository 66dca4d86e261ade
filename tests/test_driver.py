"""mucode.driver: walks advance on their own, the engine keeps decoding while programs run, records do not depend
on batching, selectors still see no private result. (Resuming after kill -9 under the driver, with a blocking
and a continuous backend: tests/test_rollout.py.)"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path

import pytest

from mucode.backends import Completion
from mucode.backends.base import Request
from mucode.driver import Throughput, drive
from mucode.env import CODE_BLOCK_END, CandidateResult, Episode, EpisodeConfig
from mucode.sandbox import Job, Limits, Sandbox
from mucode.search import SELECTORS, CandidateView, SearchConfig, search_steps
from mucode.types import ExecResult
from tests.scripted_backend import PROBLEMS, ContinuousScriptedBackend, ScriptedBackend
from tests.test_rollout import SCRIPT, outcome, read_records, rollouts


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(Limits(test_timeout=2.0, memory_mb=512), workers=2) as box:
        yield box


class SyncSandbox:
    """The real sandbox without ``submit``: programs run as soon as their reply is complete and the driver gets
    their verdicts at once, so what the engine does meanwhile no longer depends on timing."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    def run_many(self, jobs: list[Job]) -> list[ExecResult]:
        return self.sandbox.run_many(jobs)


def test_a_next_turn_joins_while_other_requests_still_generate(tmp_path: Path, sandbox: Sandbox) -> None:
    backend = ContinuousScriptedBackend("fake", SCRIPT)
    rollouts(tmp_path / "async", SyncSandbox(sandbox), backend)  # type: ignore[arg-type]
    rollouts(tmp_path / "lockstep", sandbox, ScriptedBackend("fake", SCRIPT))
    in_flight: set[tuple[str, int]] = set()
    interleaved = False
    for event, task, turn in backend.log:
        if event == "submit":
            interleaved |= turn > 1 and any(other_turn < turn for _, other_turn in in_flight)
            in_flight.add((task, turn))
        else:
            in_flight.discard((task, turn))
    assert interleaved, "no second-turn request ever ran beside an earlier turn's"
    # same seeds, same replies: the records do not depend on how requests were batched or interleaved
    assert outcome(read_records(tmp_path / "async")) == outcome(read_records(tmp_path / "lockstep"))


def test_records_do_not_depend_on_capacity(tmp_path: Path, sandbox: Sandbox) -> None:
    for capacity in (1, 3, 12):
        rollouts(tmp_path / str(capacity), sandbox, ContinuousScriptedBackend("fake", SCRIPT), batch_size=capacity)
    assert outcome(read_records(tmp_path / "1")) == outcome(read_records(tmp_path / "3")) \
        == outcome(read_records(tmp_path / "12"))
    assert len(read_records(tmp_path / "12")) == 12


class SlowSandbox:
    """The real sandbox, every program first sleeping up to ``delay`` seconds (later ones often less, so they
    finish out of order); counts the jobs still running."""

    def __init__(self, sandbox: Sandbox, delay: float) -> None:
        self.sandbox, self.delay, self.futures = sandbox, delay, []

    def submit(self, job: Job) -> Future[ExecResult]:
        pause = self.delay * (3 - len(self.futures) % 4) / 3
        slow = Job(f"import time\ntime.sleep({pause})\n{job.code}", job.tests, job.prelude, job.setup)
        future = self.sandbox.submit(slow)
        self.futures.append(future)
        return future

    def run_many(self, jobs: list[Job]) -> list[ExecResult]:
        return [future.result() for future in [self.submit(job) for job in jobs]]

    def running(self) -> int:
        return sum(not future.done() for future in self.futures)


def test_the_engine_keeps_decoding_while_programs_run(tmp_path: Path, sandbox: Sandbox) -> None:
    slow = SlowSandbox(sandbox, 0.3)
    steps_beside_tests = []
    backend = ContinuousScriptedBackend("fake", SCRIPT, sleep=0.02)
    backend.on_step = lambda: steps_beside_tests.append(slow.running())
    rollouts(tmp_path, slow, backend, batch_size=6)  # type: ignore[arg-type]
    assert sum(count > 0 for count in steps_beside_tests) >= 5
    assert outcome(read_records(tmp_path)) == outcome(read_records(_lockstep(tmp_path, sandbox)))


def _lockstep(tmp_path: Path, sandbox: Sandbox) -> Path:
    rollouts(tmp_path / "lockstep", sandbox, ScriptedBackend("fake", SCRIPT))
    return tmp_path / "lockstep"


def test_a_backend_without_continuous_batching_gets_full_batches(tmp_path: Path, sandbox: Sandbox) -> None:
    backend = ScriptedBackend("fake", SCRIPT)
    rollouts(tmp_path / "slow", SlowSandbox(sandbox, 0.1), backend, batch_size=12)  # type: ignore[arg-type]
    sizes = [size for size, _, _ in backend.calls]
    assert sizes[0] == 12 and sizes == sorted(sizes, reverse=True)  # every walk's tests back before a call
    # whatever order the programs finish in, the batches are the same (members and order): a resumed or
    # repeated run feeds a batch-sensitive engine exactly what an uninterrupted one did
    again = ScriptedBackend("fake", SCRIPT)
    rollouts(tmp_path / "fast", sandbox, again, batch_size=12)
    assert again.calls == backend.calls


def test_selectors_see_no_private_result_under_the_driver(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[object] = []

    def spy(candidates: Sequence[CandidateView], scores: object, rng: object) -> int:
        seen.extend(candidates)
        return 0

    monkeypatch.setitem(SELECTORS, "random", spy)
    script = {(task, 1): [reply] for (task, turn), replies in SCRIPT.items() for reply in replies if turn == 1}
    records = [r for batch in search_steps([(p, 0) for p in PROBLEMS], ContinuousScriptedBackend("fake", script),
                                           sandbox, SearchConfig(n=3, selector="random")) for r in batch]
    assert len(records) == 3 and seen and all(type(candidate) is CandidateView for candidate in seen)
    assert not any(hasattr(candidate, name) for candidate in seen for name in ("private", "private_passed"))


class _OneTurn:
    """A walk that asks for one completion with the code-block stop and records what it received."""

    def __init__(self) -> None:
        self.episode = Episode.start(PROBLEMS[0], EpisodeConfig(max_turns=1))
        self.received: list[CandidateResult] = []

    def request(self) -> Request:
        from mucode.backends import SamplingParams

        return Request(list(self.episode.messages), SamplingParams(stop=(CODE_BLOCK_END,)), 0)

    def receive(self, completions: Sequence[Completion], results: Sequence[CandidateResult]) -> bool:
        self.received.extend(results)
        return True


class _CutBackend(ScriptedBackend):
    """Replies as a backend that stopped at CODE_BLOCK_END does: the stop string dropped."""

    def generate(self, conversations, params, seeds=None):  # type: ignore[no-untyped-def]
        reply = "Sure:\n```python\ndef inc(x):\n    return x + 1"
        return [[Completion(reply, 10, 12, "stop")] for _ in conversations]


def test_a_reply_stopped_at_the_end_of_its_code_block_gets_its_closing_fence_back(sandbox: Sandbox) -> None:
    walk = _OneTurn()
    throughput = Throughput()
    assert [finished for finished in drive([walk], _CutBackend("fake"), sandbox, 4, throughput)] == [[walk]]
    (result,) = walk.received
    assert result.reply.endswith("return x + 1\n```") and result.extraction == "fenced-python"
    assert result.passed and throughput.completion_tokens == 12 and throughput.seconds > 0
