"""Multi-turn episodes driven in batches: evaluate replies, commit one per turn (docs/method.md §1, §2.6).

Two levels, so that rollouts and multi-turn Best-of-N share one execution path:

- `evaluate_candidates` extracts and runs any number of (problem, reply) pairs in one sandbox call and
  returns `CandidateResult`s without touching an episode (Best-of-N scores N of them per state);
  `submit_candidates` starts them without waiting (the episode driver, `mucode.driver`, keeps generating);
- `Episode.advance` commits one candidate as the next `Turn`; `step_episodes` does both for one reply per
  episode (rollouts).

Every program runs against all of its problem's tests (public, then private) in one job; the private verdicts
are recorded for scoring and never shown to the model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol, Self

from mucode import defaults
from mucode.env.extract import NO_CODE_FEEDBACK, Extraction, extract_code
from mucode.env.feedback import DEFAULT_FEEDBACK_MAX_CHARS, MIN_FEEDBACK_MAX_CHARS, feedback_message
from mucode.env.prompts import DEFAULT_TEMPLATE, build_prompt, check_template
from mucode.errors import ConfigError, SandboxError
from mucode.sandbox import Job
from mucode.sandbox.core import DEFAULT_GRADING, GRADINGS
from mucode.types import ExecResult, Problem, TestStatus, TestVerdict

Message = dict[str, str]


class SandboxLike(Protocol):
    """What the episode needs from `mucode.sandbox.Sandbox` (tests pass a fake with canned results)."""

    def run_many(self, jobs: list[Job]) -> list[ExecResult]: ...


@dataclass(frozen=True, slots=True)
class CandidateResult:
    """One reply to one problem, extracted and executed; JSON-serialisable with to_dict/from_dict.

    ``feedback`` is the public tests' feedback in full (the message shown to the model is capped);
    ``private_feedback`` is for analysis only. A reply without code has failed verdicts and
    ``feedback == NO_CODE_FEEDBACK``, and was never run (``duration == 0``).
    """

    task_id: str
    reply: str
    extraction: str  # Extraction.method
    extraction_note: str
    code: str | None
    public: tuple[TestVerdict, ...]
    private: tuple[TestVerdict, ...]
    public_passed: bool
    private_passed: bool
    feedback: str
    private_feedback: str
    duration: float

    @property
    def passed(self) -> bool:
        """The oracle label C(x, y): public and private tests both pass."""
        return self.public_passed and self.private_passed

    def values(self) -> dict[str, Any]:
        """The candidate's own fields, shallow: what a record that extends it (`Turn`, a search's candidate)
        is built from."""
        return {item.name: getattr(self, item.name) for item in fields(CandidateResult)}

    def to_dict(self) -> dict[str, Any]:
        data = {item.name: getattr(self, item.name) for item in fields(self)}
        data["public"] = [_verdict_to_dict(verdict) for verdict in self.public]
        data["private"] = [_verdict_to_dict(verdict) for verdict in self.private]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        values = dict(data)
        values["public"] = tuple(_verdict_from_dict(item) for item in data["public"])
        values["private"] = tuple(_verdict_from_dict(item) for item in data["private"])
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Turn(CandidateResult):
    """A candidate committed to an episode as its turn ``number`` (1-based, as the paper's t)."""

    number: int

    @classmethod
    def from_candidate(cls, candidate: CandidateResult, number: int) -> Turn:
        return cls(**candidate.values(), number=number)


def passed_public(turn: CandidateResult) -> bool:
    """Stop rule "public": the paper's — stop at the first code that passes the public tests."""
    return turn.public_passed


def passed_oracle(turn: CandidateResult) -> bool:
    """Stop rule "oracle": the reference env's — stop only once public and private tests pass (training)."""
    return turn.passed


STOP_RULES: dict[str, Callable[[CandidateResult], bool]] = {"public": passed_public, "oracle": passed_oracle}


@dataclass(frozen=True, slots=True)
class EpisodeConfig:
    """How an episode runs. Defaults are the paper's: 3 turns, its prompt, stop at the first public pass."""

    max_turns: int = defaults.TURNS
    template: str = DEFAULT_TEMPLATE
    stop_on: str = "public"
    feedback_max_chars: int = DEFAULT_FEEDBACK_MAX_CHARS
    #: How programs are graded (`mucode.sandbox.Job`): "default" or "strict".
    grading: str = DEFAULT_GRADING

    def __post_init__(self) -> None:
        if not _is_int(self.max_turns) or self.max_turns < 1:
            raise ConfigError(f"EpisodeConfig.max_turns must be an integer >= 1, got {self.max_turns!r}")
        check_template(self.template)
        if self.stop_on not in STOP_RULES:
            raise ConfigError(f"EpisodeConfig.stop_on must be one of {', '.join(STOP_RULES)}, "
                              f"got {self.stop_on!r}")
        if self.grading not in GRADINGS:
            raise ConfigError(f"EpisodeConfig.grading must be one of {', '.join(GRADINGS)}, got {self.grading!r}")
        if not _is_int(self.feedback_max_chars) or self.feedback_max_chars < MIN_FEEDBACK_MAX_CHARS:
            raise ConfigError(f"EpisodeConfig.feedback_max_chars must be an integer >= "
                              f"{MIN_FEEDBACK_MAX_CHARS}, got {self.feedback_max_chars!r}")

    def to_dict(self) -> dict[str, Any]:
        """The fields; ``grading`` only when strict, so records and run identities from before it are unchanged."""
        data = asdict(self)
        if self.grading == DEFAULT_GRADING:
            del data["grading"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpisodeConfig:
        unknown = set(data) - {item.name for item in fields(cls)}
        if unknown:
            raise ConfigError(f"EpisodeConfig has no field(s) {', '.join(sorted(unknown))}")
        return cls(**data)


@dataclass
class Episode:
    """The state of one problem's interaction: s_t = {x, y_1, o_1, ..., y_{t-1}, o_{t-1}}.

    Create it with `Episode.start`. ``messages`` is what the model is sent for the next turn: the prompt,
    then alternating assistant replies and ``Feedback:`` user messages; it ends with a user message while
    the episode is running and with the last reply once it is done.
    """

    problem: Problem
    config: EpisodeConfig
    messages: list[Message]
    turns: list[Turn] = field(default_factory=list)
    done: bool = False

    @classmethod
    def start(cls, problem: Problem, config: EpisodeConfig | None = None) -> Episode:
        config = config or EpisodeConfig()
        return cls(problem, config, [{"role": "user", "content": build_prompt(problem, config.template)}])

    @property
    def success(self) -> bool:
        """Public and private tests pass for the scored code: the first public pass, or the last turn's."""
        return bool(self.turns) and self.turns[-1].passed

    @property
    def reward(self) -> int:
        """The oracle reward R(x, y) of the scored code, 0 or 1."""
        return int(self.success)

    def advance(self, candidate: CandidateResult) -> Turn:
        """Commit candidate (evaluated for this problem) as the next turn and update messages and done."""
        if self.done:
            raise ValueError(f"episode {self.problem.task_id!r} is done after {len(self.turns)} turn(s)")
        if candidate.task_id != self.problem.task_id:
            raise ValueError(f"candidate for {candidate.task_id!r} given to episode {self.problem.task_id!r}")
        turn = Turn.from_candidate(candidate, len(self.turns) + 1)
        self.turns.append(turn)
        self.messages.append({"role": "assistant", "content": turn.reply})
        self.done = STOP_RULES[self.config.stop_on](turn) or max_turns_reached(self)
        if not self.done:
            self.messages.append({"role": "user",
                                  "content": feedback_message(turn.feedback, self.config.feedback_max_chars)})
        return turn

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record; the problem is stored by id; ``success`` is derived (from_dict ignores it)."""
        return {"task_id": self.problem.task_id, "config": self.config.to_dict(),
                "messages": [dict(message) for message in self.messages],
                "turns": [turn.to_dict() for turn in self.turns], "done": self.done, "success": self.success}

    @classmethod
    def from_dict(cls, data: dict[str, Any], problem: Problem) -> Episode:
        if data["task_id"] != problem.task_id:
            raise ValueError(f"record for {data['task_id']!r} loaded with problem {problem.task_id!r}")
        return cls(problem, EpisodeConfig.from_dict(data["config"]),
                   [dict(message) for message in data["messages"]],
                   [Turn.from_dict(turn) for turn in data["turns"]], bool(data["done"]))


def max_turns_reached(episode: Episode) -> bool:
    return len(episode.turns) >= episode.config.max_turns


def evaluate_candidates(candidates: Sequence[tuple[Problem, str]], sandbox: SandboxLike,
                        grading: str = DEFAULT_GRADING) -> list[CandidateResult]:
    """Extract and run each (problem, reply) pair, all at once; order is preserved (`submit_candidates`)."""
    return submit_candidates(candidates, sandbox, grading).results()


@dataclass
class PendingCandidates:
    """Candidates whose programs are running in the sandbox: `done` says whether all have their verdicts."""

    candidates: Sequence[tuple[Problem, str]]
    extractions: list[Extraction]
    futures: dict[int, Future[ExecResult]]

    def done(self) -> bool:
        return all(future.done() for future in self.futures.values())

    def results(self) -> list[CandidateResult]:
        """The candidates' results (waiting for any still running), in order."""
        return [_candidate_result(problem, reply, extraction,
                                  self.futures[index].result() if index in self.futures else None)
                for index, ((problem, reply), extraction) in enumerate(zip(self.candidates, self.extractions,
                                                                               strict=True))]


def submit_candidates(candidates: Sequence[tuple[Problem, str]], sandbox: SandboxLike,
                      grading: str = DEFAULT_GRADING) -> PendingCandidates:
    """Extract each (problem, reply) pair's program and start it in the sandbox without waiting.

    Replies without code are not run. A sandbox with ``submit`` (the real one) runs them while the caller goes
    on; one with only ``run_many`` (test fakes) runs them now. A sandbox that returns the wrong number of results
    or verdicts is an infrastructure failure (SandboxError), never a candidate's.
    """
    extractions = [extract_code(reply) for _, reply in candidates]
    runnable = [index for index, extraction in enumerate(extractions) if extraction.code is not None]
    jobs = [_job(candidates[index][0], extractions[index].code or "", grading) for index in runnable]
    submit = getattr(sandbox, "submit", None)
    if submit is not None:
        futures = [submit(job) for job in jobs]
    else:
        results = sandbox.run_many(jobs) if jobs else []
        if len(results) != len(jobs):
            raise SandboxError(f"sandbox returned {len(results)} results for {len(jobs)} jobs")
        futures = [_resolved(result) for result in results]
    return PendingCandidates(candidates, extractions, dict(zip(runnable, futures, strict=True)))


def _resolved(result: ExecResult) -> Future[ExecResult]:
    future: Future[ExecResult] = Future()
    future.set_result(result)
    return future


def step_episodes(episodes: Sequence[Episode], replies: Sequence[str], sandbox: SandboxLike) -> list[Turn]:
    """Advance each running episode by its reply, one sandbox call for the batch; returns the new turns."""
    if len(episodes) != len(replies):
        raise ValueError(f"{len(episodes)} episodes but {len(replies)} replies")
    if len({id(episode) for episode in episodes}) != len(episodes):
        raise ValueError("an episode appears twice in one step")
    finished = [episode.problem.task_id for episode in episodes if episode.done]
    if finished:
        raise ValueError(f"episodes already done: {', '.join(finished)}")
    gradings = {episode.config.grading for episode in episodes}
    if len(gradings) > 1:
        raise ValueError("episodes graded differently in one step")
    results = evaluate_candidates([(episode.problem, reply) for episode, reply in zip(episodes, replies,
                                                                                       strict=True)], sandbox,
                                  *gradings)
    return [episode.advance(result) for episode, result in zip(episodes, results, strict=True)]


def _job(problem: Problem, code: str, grading: str) -> Job:
    return Job(code, problem.all_tests, prelude=problem.prelude, setup=problem.setup_code, grading=grading)


def _candidate_result(problem: Problem, reply: str, extraction: Extraction,
                      result: ExecResult | None) -> CandidateResult:
    """Split a program's result into the public and private halves (None: the reply had no code)."""
    if result is None:
        result = _no_code_result(problem)
    if len(result.verdicts) != len(problem.all_tests):
        raise SandboxError(f"{problem.task_id}: sandbox returned {len(result.verdicts)} verdicts "
                           f"for {len(problem.all_tests)} tests")
    public = result.select(0, len(problem.public_tests))
    private = result.select(len(problem.public_tests))
    return CandidateResult(
        task_id=problem.task_id, reply=reply, extraction=extraction.method, extraction_note=extraction.note,
        code=extraction.code, public=public.verdicts, private=private.verdicts,
        public_passed=public.passed, private_passed=private.passed,
        feedback=public.feedback, private_feedback=private.feedback, duration=result.duration)


def _no_code_result(problem: Problem) -> ExecResult:
    """The result a reply without code gets: a program error, so it fails even a problem without tests."""
    verdict = TestVerdict(TestStatus.FAILED, NO_CODE_FEEDBACK)
    return ExecResult((verdict,) * len(problem.all_tests), program_error=NO_CODE_FEEDBACK)


def _verdict_to_dict(verdict: TestVerdict) -> dict[str, Any]:
    return {"status": verdict.status.value, "error": verdict.error, "duration": verdict.duration}


def _verdict_from_dict(data: dict[str, Any]) -> TestVerdict:
    return TestVerdict(TestStatus(data["status"]), data.get("error", ""), data.get("duration", 0.0))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
