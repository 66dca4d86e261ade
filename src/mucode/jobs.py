"""The two fine-tuning jobs' configs: the learned verifier's training and the generator's SFT.

They live apart from the trainers (`mucode.verifier.train`, `mucode.training`) so that reading one, for the
CLI's options or an experiment file, imports no torch. Both jobs share the fields of `JobConfig` and its
checks; each declares only what is its own and the defaults that differ (the paper's per-job settings,
docs/method.md §4 and §6), so every default has one declaration.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from mucode import defaults
from mucode.errors import ConfigError, check_positive
from mucode.models import DEFAULT_MODEL

PRECISIONS = ("auto", "bf16", "fp32")
#: Fields every job config has that must be positive integers.
POSITIVE_FIELDS = ("lora_rank", "lora_alpha", "epochs", "batch_size", "micro_batch_size", "max_length", "save_steps",
                   "logging_steps")
#: Fields that say where a job writes and how it shows progress, not what it learns (left out of its identity).
RUN_FIELDS = ("out", "force", "progress", "save_steps", "logging_steps", "keep_checkpoints")

LOSSES = ("bt", "bce")
#: How BT pairs are formed: "sampled" (the reference: pairs_per_problem drawn with replacement) or "all" (every
#: (correct, incorrect) pair of a problem's distinct codes, `mucode.verifier.data.problem_sets`).
PAIRINGS = ("sampled", "all")
#: The reference draws 32 (correct, incorrect) pairs per problem (docs/method.md §4).
PAIRS_PER_PROBLEM = 32
#: Verifier learning rates when none is given. The reference's 1e-6 full fine-tuning is for a 1B model on 4 GPUs
#: with 12k pairs; on CPU, with fewer steps and a smaller model, a larger step is needed to move at all. A
#: head-only fit (`mucode.verifier.probe`) moves one linear layer on fixed features: a far larger step.
VERIFIER_LEARNING_RATE = {"full": 1e-5, "lora": 1e-4, "head": 1e-3}
#: Verifier epochs when none are given: fine-tuning follows the paper; a head-only epoch costs milliseconds.
VERIFIER_EPOCHS = {"full": 2, "lora": 2, "head": 30}
#: The paper's full fine-tuning rate for the generator (docs/method.md §6, a 1B model, batch 32); LoRA needs a
#: far larger step.
SFT_LEARNING_RATE = {"full": 5e-7, "lora": 1e-4}


@dataclass(frozen=True)
class Optimisation:
    """The optimiser and batching settings both jobs expose (names as in their configs)."""

    epochs: int
    batch_size: int
    micro_batch_size: int
    learning_rate: float
    weight_decay: float
    adam_epsilon: float
    max_grad_norm: float
    seed: int
    save_steps: int
    logging_steps: int

    def __post_init__(self) -> None:
        if self.batch_size % self.micro_batch_size:
            raise ConfigError(f"batch_size ({self.batch_size}) must be a multiple of micro_batch_size "
                              f"({self.micro_batch_size})")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate}")
        for name in ("weight_decay", "adam_epsilon", "max_grad_norm"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")

    @classmethod
    def of(cls, config: Any) -> Optimisation:
        """The settings of a job config that has fields of the same names (both jobs' configs do)."""
        return cls(**{name: getattr(config, name) for name in cls.__dataclass_fields__})

    def steps(self, items: int) -> int:
        """Optimiser steps of the whole run (the Trainer's count: a last partial accumulation makes a step)."""
        micro_batches = math.ceil(items / self.micro_batch_size)
        return max(1, math.ceil(micro_batches / (self.batch_size // self.micro_batch_size))) * self.epochs


@dataclass(frozen=True, kw_only=True)
class JobConfig:
    """What both fine-tuning jobs take. ``batch_size`` is reached by accumulating ``micro_batch_size`` items;
    ``learning_rate`` None: the job's default for its `training_mode`. ``precision`` "auto": bf16 autocast on a
    GPU with bf16 or a CPU where bf16 is measurably faster, else fp32 (weights and optimiser state stay fp32)."""

    out: str
    lora: bool = False
    lora_rank: int = defaults.LORA_RANK
    lora_alpha: int = defaults.LORA_ALPHA
    lora_dropout: float = defaults.LORA_DROPOUT
    learning_rate: float | None = None
    epochs: int | None = None
    batch_size: int
    micro_batch_size: int
    max_length: int
    weight_decay: float
    adam_epsilon: float
    max_grad_norm: float = 1.0
    seed: int
    precision: str = "auto"
    gradient_checkpointing: bool = False
    save_steps: int = 20
    logging_steps: int = 5
    keep_checkpoints: bool = False
    force: bool = False
    progress: bool | None = None  # None: progress bars when stderr is a terminal

    #: The job's learning rate per training mode, when none is given.
    LEARNING_RATES: ClassVar[Mapping[str, float]] = {}

    def _validate(self, positive: tuple[str, ...] = (), non_negative: tuple[str, ...] = ()) -> None:
        """The checks both jobs share, so a bad value gets the same message from either; fills in the
        learning rate's default, which depends on `training_mode` (LoRA wants a far larger step)."""
        check_precision(self.precision)
        for name in (*POSITIVE_FIELDS, *positive):
            check_positive(name, getattr(self, name))
        for name in ("lora_dropout", *non_negative):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.learning_rate is None:
            object.__setattr__(self, "learning_rate", self.LEARNING_RATES[training_mode(self)])
        self.optimisation()  # validates the batch sizes, learning rate and optimiser settings

    def optimisation(self) -> Optimisation:
        return Optimisation.of(self)

    def hyperparameters(self, *ignored: str) -> dict[str, Any]:
        """The fields that determine the trained weights (not where they go or how progress is shown)."""
        skip = {*RUN_FIELDS, *ignored}
        return {item.name: getattr(self, item.name) for item in fields(self) if item.name not in skip}


@dataclass(frozen=True, kw_only=True)
class TrainConfig(JobConfig):
    """One ``mucode verifier train`` run. Defaults follow docs/method.md §4's table where it applies to CPU
    training. ``batch_size`` counts pairs (bt) or examples (bce) per optimiser step. ``learning_rate`` None:
    1e-5 for full fine-tuning, 1e-4 with LoRA, 1e-3 with ``head_only`` (train the scalar head on the frozen
    backbone, `mucode.verifier.probe`); ``epochs`` None: 2, or 30 with ``head_only`` (a head-only run computes
    its features in bf16 under "auto" precision)."""

    LEARNING_RATES = VERIFIER_LEARNING_RATE

    rollouts: tuple[str, ...]
    loss: str = "bt"
    backbone: str = DEFAULT_MODEL
    head_only: bool = False
    batch_size: int = 64
    micro_batch_size: int = 2
    pairs_per_problem: int = PAIRS_PER_PROBLEM
    pairing: str = "sampled"
    max_length: int = 2048
    l2_coeff: float = 1e-3
    weight_decay: float = 0.01
    adam_epsilon: float = 1e-5
    seed: int = 1
    #: Held-out rollout runs scored during fine-tuning: the learning curve (`mucode.verifier.curve`).
    heldout: tuple[str, ...] = ()
    #: Items (pairs or examples) trained on between two held-out evaluations; 0: only at the end.
    eval_every: int = 0

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)}; got {self.loss!r}")
        if self.head_only and self.lora:
            raise ConfigError("head_only and lora exclude each other: head-only training changes no backbone weight")
        if self.pairing not in PAIRINGS:
            raise ConfigError(f"pairing must be one of {', '.join(PAIRINGS)}; got {self.pairing!r}")
        if self.pairing == "all" and (self.loss != "bt" or self.head_only):
            raise ConfigError("pairing 'all' applies to fine-tuning with the bt loss")
        if self.epochs is None:
            object.__setattr__(self, "epochs", VERIFIER_EPOCHS[training_mode(self)])
        self._validate(positive=("pairs_per_problem",), non_negative=("l2_coeff", "eval_every"))
        object.__setattr__(self, "rollouts", tuple(str(run) for run in self.rollouts))
        object.__setattr__(self, "heldout", tuple(str(run) for run in self.heldout))
        if self.eval_every and not self.heldout:
            raise ConfigError("eval_every needs held-out rollout runs to evaluate on (heldout)")

    def hyperparameters(self, *ignored: str) -> dict[str, Any]:
        # head_only is absent rather than False, so verifiers trained before the option keep their identity;
        # held-out evaluation only watches the training, so it is not part of the identity either
        # (pairing likewise: absent when it is the reference's "sampled")
        return super().hyperparameters("rollouts", "heldout", "eval_every", *ignored,
                                       *(() if self.head_only else ("head_only",)),
                                       *(() if self.pairing != "sampled" else ("pairing",)))


@dataclass(frozen=True, kw_only=True)
class SFTConfig(JobConfig):
    """One generator fine-tuning run. Defaults are the paper's (docs/method.md §6) where they apply.

    ``examples``: JSONL files of `SFTExample` lines (the expert stage's output), concatenated in order (data
    aggregated across iterations is just several files). ``base``: a registry name, GGUF file or transformers
    folder; training always starts from it. ``max_length``: longer examples are dropped and counted, never
    truncated (a truncated reply would teach the model to stop mid-code).
    """

    LEARNING_RATES = SFT_LEARNING_RATE

    examples: tuple[str, ...]
    base: str = DEFAULT_MODEL
    epochs: int = 2
    batch_size: int = 32
    micro_batch_size: int = 1
    max_length: int = 4096
    weight_decay: float = 0.0
    adam_epsilon: float = 1e-8
    seed: int = 42
    #: Also keep the model at the end of every earlier epoch (``OUT/epochs/epoch-E``), to choose one on a
    #: validation split (`mucode.training.epoch_models`).
    epoch_snapshots: bool = False

    def __post_init__(self) -> None:
        self._validate()
        object.__setattr__(self, "examples", tuple(str(path) for path in self.examples))
        if not self.examples:
            raise ConfigError("no example files given")

    def hyperparameters(self, *ignored: str) -> dict[str, Any]:
        return super().hyperparameters("examples", "epoch_snapshots", *ignored)


def training_mode(config: Any) -> str:
    """"head" (only a scalar head is trained: the verifier's ``head_only``), "lora" or "full"."""
    return "head" if getattr(config, "head_only", False) else "lora" if config.lora else "full"


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")

