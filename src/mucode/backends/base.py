"""The one small interface every generation backend implements.

A batch of chat conversations goes in; for each conversation ``n`` sampled completions come out, with token
counts and timings. The chat template is the model's own (applied by the backend); the prompt and feedback
texts come from `mucode.env`.
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from mucode import defaults
from mucode.errors import ConfigError

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


@dataclass
class Backend(ABC):
    """Messages in, completions out. Subclasses load their model in ``__post_init__`` or lazily."""

    model: str  # a registry name, a local .gguf / HF directory, or a served model id
    model_id: str = field(init=False, default="")  # what records store: name + file digest or served id
    last_stats: GenerationStats = field(init=False, default_factory=GenerationStats)

    name: str = field(init=False, default="")

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
