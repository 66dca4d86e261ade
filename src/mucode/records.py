"""Typed records of the JSONL files runs write: rollout trajectories and Best-of-N search records.

``trajectories.jsonl`` (`mucode.rollout`) holds one `Trajectory` per line and ``searches.jsonl``
(`mucode.search`) one `SearchRecord` per line. Writers build these records and serialise them with
``to_dict``; readers parse with ``from_dict``, which gives back exactly the JSON that was written
(``from_dict(line).to_dict() == line``, key order included) and refuses a line with a missing or unknown field
with a DataError naming the file and line. The turns themselves are the environment's own records
(`mucode.env.Turn`, `mucode.env.CandidateResult`), so a turn has one definition everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Self

from mucode.backends.base import Completion, SamplingParams
from mucode.env import CandidateResult, EpisodeConfig, Turn
from mucode.errors import DataError, MucodeError
from mucode.runs import RecordLog

#: The ``format`` of a rollout run folder's ``config.json`` (its trajectories are `Trajectory` lines).
ROLLOUT_FORMAT = "mucode.rollout/1"
TRAJECTORIES_FILE = "trajectories.jsonl"
SEARCHES_FILE = "searches.jsonl"

Message = dict[str, str]


def _check_fields(cls: type, data: Any, where: str) -> None:
    """DataError naming ``where`` (``file:line``) unless ``data`` is an object with exactly ``cls``'s fields."""
    if not isinstance(data, Mapping):
        raise DataError(f"{where}: not a {cls.__name__} record (a JSON {type(data).__name__}, not an object)")
    names = [item.name for item in fields(cls)]
    missing = [name for name in names if name not in data]
    unknown = [name for name in data if name not in names]
    if missing or unknown:
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unknown {', '.join(map(str, unknown))}"] if unknown else [])
        raise DataError(f"{where}: not a {cls.__name__} record ({'; '.join(problems)})")


def _parse(cls: type, where: str, build: Any) -> Any:
    """``build()``, with a malformed value (wrong type, bad status) turned into a DataError naming ``where``."""
    try:
        return build()
    except DataError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, MucodeError) as error:
        raise DataError(f"{where}: not a {cls.__name__} record ({type(error).__name__}: {error})") from None


@dataclass(frozen=True, slots=True)
class Generation:
    """How one reply was generated: its seed, token counts, finish reason and the wall time of its call."""

    seed: int
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    seconds: float

    @classmethod
    def of(cls, completion: Completion, seed: int) -> Generation:
        return cls(seed, completion.prompt_tokens, completion.completion_tokens, completion.finish_reason,
                   round(completion.seconds, 4))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "record") -> Generation:
        _check_fields(cls, data, f"{where}: generation")
        return cls(**data)


def _sampling_to_dict(params: SamplingParams) -> dict[str, Any]:
    return {**params.to_dict(), "stop": list(params.stop)}


def _sampling_from_dict(data: Mapping[str, Any], where: str) -> SamplingParams:
    _check_fields(SamplingParams, data, f"{where}: sampling")
    return SamplingParams(**{**data, "stop": tuple(data["stop"])})


@dataclass(frozen=True)
class Trajectory:
    """One rollout: an episode's record (readable by `mucode.env.Episode.from_dict`) and how it was generated.

    ``messages`` is the conversation (the problem prompt, then reply / feedback pairs, ending with the last
    reply); ``turns`` the committed turns (`mucode.env.Turn`: reply, code, public and private verdicts, ...);
    ``success`` the oracle label of the last turn; ``generation`` one `Generation` per turn.
    """

    task_id: str
    rollout: int
    config: EpisodeConfig
    messages: tuple[Message, ...]
    turns: tuple[Turn, ...]
    done: bool
    success: bool
    backend: str
    model_id: str
    sampling: SamplingParams
    seed: int
    generation: tuple[Generation, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "rollout": self.rollout, "config": self.config.to_dict(),
                "messages": [dict(message) for message in self.messages],
                "turns": [turn.to_dict() for turn in self.turns], "done": self.done, "success": self.success,
                "backend": self.backend, "model_id": self.model_id, "sampling": _sampling_to_dict(self.sampling),
                "seed": self.seed, "generation": [item.to_dict() for item in self.generation]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "record") -> Self:
        """The trajectory of one JSON line; DataError naming ``where`` (``file:line``) when it is not one."""
        _check_fields(cls, data, where)
        return _parse(cls, where, lambda: cls(
            task_id=data["task_id"], rollout=data["rollout"], config=EpisodeConfig.from_dict(data["config"]),
            messages=tuple(dict(message) for message in data["messages"]),
            turns=tuple(Turn.from_dict(turn) for turn in data["turns"]), done=data["done"],
            success=data["success"], backend=data["backend"], model_id=data["model_id"],
            sampling=_sampling_from_dict(data["sampling"], where), seed=data["seed"],
            generation=tuple(Generation.from_dict(item, where) for item in data["generation"])))

    @property
    def prompt(self) -> str:
        """The problem as the model saw it: the first user message."""
        return next(message["content"] for message in self.messages if message["role"] == "user")


@dataclass(frozen=True, slots=True)
class SearchCandidate(CandidateResult):
    """One of the N candidates a search sampled at a turn: its executed result and how it was generated."""

    generation: Generation

    @classmethod
    def of(cls, candidate: CandidateResult, generation: Generation) -> SearchCandidate:
        return cls(**candidate.values(), generation=generation)

    def to_dict(self) -> dict[str, Any]:
        return {**CandidateResult.to_dict(self), "generation": self.generation.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "record") -> Self:
        _check_fields(cls, data, f"{where}: candidate")
        result = CandidateResult.from_dict({name: value for name, value in data.items() if name != "generation"})
        return cls.of(result, Generation.from_dict(data["generation"], where))  # type: ignore[return-value]


@dataclass(frozen=True)
class SearchTurn:
    """One turn of a search: the seed of its samples, the candidates, their verifier scores (None without a
    verifier; a candidate without code scores None) and the index of the one committed."""

    number: int
    seed: int
    selected: int
    scores: tuple[float | None, ...] | None
    candidates: tuple[SearchCandidate, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "seed": self.seed, "selected": self.selected,
                "scores": None if self.scores is None else list(self.scores),
                "candidates": [candidate.to_dict() for candidate in self.candidates]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "record") -> Self:
        _check_fields(cls, data, f"{where}: turn")
        return cls(number=data["number"], seed=data["seed"], selected=data["selected"],
                   scores=None if data["scores"] is None else tuple(data["scores"]),
                   candidates=tuple(SearchCandidate.from_dict(item, where) for item in data["candidates"]))

    @property
    def chosen(self) -> SearchCandidate:
        return self.candidates[self.selected]


@dataclass(frozen=True)
class SearchRecord:
    """One multi-turn Best-of-N search: the outcome first (what metrics read), then every turn."""

    task_id: str
    search: int
    success: bool
    public_passed: bool
    turns_used: int
    final_code: str | None
    selector: str
    n: int
    seed: int
    turns: tuple[SearchTurn, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "search": self.search, "success": self.success,
                "public_passed": self.public_passed, "turns_used": self.turns_used, "final_code": self.final_code,
                "selector": self.selector, "n": self.n, "seed": self.seed,
                "turns": [turn.to_dict() for turn in self.turns]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "record") -> Self:
        """The search of one JSON line; DataError naming ``where`` (``file:line``) when it is not one."""
        _check_fields(cls, data, where)
        return _parse(cls, where, lambda: cls(
            **{name: data[name] for name in ("task_id", "search", "success", "public_passed", "turns_used",
                                             "final_code", "selector", "n", "seed")},
            turns=tuple(SearchTurn.from_dict(turn, where) for turn in data["turns"])))


def read_trajectories(path: str | os.PathLike[str]) -> list[Trajectory]:
    """The trajectories of a ``trajectories.jsonl`` (a torn last line, left by a kill, is cut away)."""
    return RecordLog(path).load(Trajectory.from_dict)


def read_searches(path: str | os.PathLike[str]) -> list[SearchRecord]:
    """The searches of a ``searches.jsonl`` (a torn last line, left by a kill, is cut away)."""
    return RecordLog(path).load(SearchRecord.from_dict)
