"""The one small interface every generation backend implements, at two levels.

- Blocking: `Backend.generate` takes a batch of chat conversations and returns ``n`` sampled completions for
  each, with token counts and timings.
- Request level: `Backend.submit` queues one `Request` (a conversation, its sampling parameters and seed) and
  `Backend.step` advances generation, returning the requests that completed. The episode driver
  (`mucode.driver`) works at this level so that a finished request's tests run while the engine decodes the
  others and the next turn's request joins the running batch at once. Engines with continuous batching
  (openvino) implement it natively; for the others the default `step` generates everything queued in one
  blocking call, which is correct and keeps the batch as full as that engine allows.

The chat template is the model's own (applied by the backend); the prompt and feedback texts come from
`mucode.env`.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import ClassVar

from mucode import defaults
from mucode.errors import BackendError, ConfigError

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}
Conversation = Sequence[Message]


@dataclass(frozen=True)
class SamplingParams:
    """How to sample. ``temperature == 0`` means greedy decoding (then ``n`` must be 1 to be useful).

    ``seed`` makes a call reproducible: completion j of conversation i uses a seed derived from
    (seed, i, j), so results do not depend on batch composition where the backend allows it.
    """

    n: int = 1
    temperature: float = defaults.TEMPERATURE
    top_p: float = defaults.TOP_P
    max_tokens: int = defaults.MAX_TOKENS
    seed: int | None = 0
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ConfigError(f"sampling n must be >= 1, got {self.n}")
        if self.temperature < 0:
            raise ConfigError(f"sampling temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"sampling top_p must be in (0, 1], got {self.top_p}")
        if self.max_tokens < 1:
            raise ConfigError(f"sampling max_tokens must be >= 1, got {self.max_tokens}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def to_dict(self) -> dict:
        return asdict(self)


def derive_seed(seed: int | None, *parts: object) -> int:
    """A seed derived from a base seed and coordinates (conversation and sample, or task, rollout and turn).

    A digest, not ``hash()``, so it is the same in every process and independent of how calls are batched;
    below 2**31 because servers keep seeds in (u)int32 fields. ``seed=None`` draws a fresh random seed.
    """
    if seed is None:
        return int.from_bytes(os.urandom(4), "big") % 2**31
    text = json.dumps([seed, *parts], ensure_ascii=False, separators=(",", ":"), default=str)
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % 2**31


def sample_seed(params: SamplingParams, seeds: Sequence[int] | None, conversation: int, sample: int) -> int:
    """The seed of sample ``sample`` of conversation ``conversation`` in one `Backend.generate` call.

    With per-conversation ``seeds`` (rollouts and searches pass one per episode so that a resumed run redraws
    exactly what an uninterrupted one drew) it is ``derive_seed(seeds[i], 0, j)``; otherwise it comes from
    ``params.seed`` and the conversation's position in the call. The two agree for a one-conversation call
    with ``params.seed == seeds[0]``.
    """
    if seeds is not None:
        return derive_seed(seeds[conversation], 0, sample)
    return derive_seed(params.seed, conversation, sample)


@dataclass(frozen=True)
class Completion:
    """One sampled reply. ``finish_reason`` is "stop" (end of turn or a stop string) or "length"."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = "stop"
    seconds: float = 0.0  # wall time of the call that produced it, shared by its batch


@dataclass(frozen=True)
class GenerationStats:
    """Totals of one `Backend.generate` call.

    ``prefilled_tokens`` counts prompt tokens the backend actually computed (None where it cannot tell): fewer
    than ``prompt_tokens`` when a prompt's prefix was still cached from an earlier call or shared by samples.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    prefilled_tokens: int | None = None

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Request:
    """One conversation to complete ``params.n`` times. Sample j is seeded with ``derive_seed(seed, 0, j)``
    (`sample_seed`), whatever else is being generated at the same time."""

    conversation: Conversation
    params: SamplingParams
    seed: int


#: What `Backend.step` returns for each request that completed: its ticket and its ``n`` completions.
Finished = tuple[int, list[Completion]]


@dataclass
class Backend(ABC):
    """Messages in, completions out. Subclasses load their model in ``__post_init__`` or lazily."""

    model: str  # a registry name, a local .gguf / HF directory, or a served model id
    model_id: str = field(init=False, default="")  # what records store: name + file digest or served id
    last_stats: GenerationStats = field(init=False, default_factory=GenerationStats)

    name: str = field(init=False, default="")
    #: Whether `step` returns as soon as some request completes, new requests joining the running batch
    #: (continuous batching). When False, `step` generates the whole queue at once, so the driver gathers a
    #: full queue (every walk's tests done) before calling it, as a lockstep loop would.
    continuous: ClassVar[bool] = False
    _tickets: itertools.count = field(init=False, repr=False, default_factory=itertools.count)
    _queued: dict[int, Request] = field(init=False, repr=False, default_factory=dict)

    # ------------------------------------------------------------------ request level

    def submit(self, request: Request) -> int:
        """Queue ``request``; returns its ticket, which `step` reports when the request has completed."""
        ticket = next(self._tickets)
        self._queued[ticket] = request
        return ticket

    @property
    def busy(self) -> bool:
        """Whether submitted requests are still to be reported by `step`."""
        return bool(self._queued)

    def step(self) -> list[Finished]:
        """Advance generation; return the requests that completed since the last call (possibly none).

        This default generates every queued request now, one blocking `generate` call per sampling setting.
        """
        queued, self._queued = self._queued, {}
        by_params: dict[SamplingParams, list[int]] = {}
        for ticket, request in queued.items():
            by_params.setdefault(request.params, []).append(ticket)
        finished: list[Finished] = []
        for params, tickets in by_params.items():
            completions = generate_seeded(self, [queued[t].conversation for t in tickets], params,
                                          [queued[t].seed for t in tickets])
            finished += zip(tickets, completions, strict=True)
        return finished

    # ------------------------------------------------------------------ blocking

    @abstractmethod
    def generate(self, conversations: Sequence[Conversation], params: SamplingParams,
                 seeds: Sequence[int] | None = None) -> list[list[Completion]]:
        """For each conversation, ``params.n`` completions (in order). Sets ``last_stats``.

        ``seeds``: optional, one per conversation; sample seeds then follow `sample_seed`.
        """

    def close(self) -> None:  # noqa: B027 (optional hook: backends without resources need not override it)
        """Release the model (weights, server connections); the backend is unusable afterwards."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def generate_seeded(backend: Backend, conversations: Sequence[Conversation], params: SamplingParams,
                    seeds: Sequence[int]) -> list[list[Completion]]:
    """``params.n`` completions per conversation, conversation i sampled with ``seeds[i]`` (`sample_seed`).

    A backend whose ``generate`` takes ``seeds=`` gets one batched call. The bare interface only has one seed
    per call, positional within the batch, which would make a resumed run differ from an uninterrupted one;
    such a backend is called once per conversation instead (same results, no batching). Greedy decoding needs
    no seeds, so it is always one call. ``backend.last_stats`` totals the calls.
    """
    start = time.perf_counter()
    if params.greedy or takes_seeds(backend):
        options = {} if params.greedy else {"seeds": list(seeds)}
        completions = backend.generate(conversations, params, **options)
    else:
        completions, stats = [], []
        for conversation, seed in zip(conversations, seeds, strict=True):
            completions += backend.generate([conversation], replace(params, seed=seed))
            stats.append(backend.last_stats)
        backend.last_stats = GenerationStats(sum(s.prompt_tokens for s in stats),
                                             sum(s.completion_tokens for s in stats),
                                             time.perf_counter() - start)
    if len(completions) != len(conversations) or any(len(choices) != params.n for choices in completions):
        raise BackendError(f"backend {backend.name or type(backend).__name__} returned a wrong number of "
                           f"completions for {len(conversations)} conversations × n={params.n}")
    return completions


def takes_seeds(backend: Backend) -> bool:
    """Whether ``backend.generate`` accepts one seed per conversation (``seeds=``), so batches stay batched."""
    return "seeds" in inspect.signature(backend.generate).parameters


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` up to (excluding) the earliest stop string, and whether one was found."""
    cut = min((index for index in (text.find(s) for s in stop if s) if index >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
