"""What the two fine-tuning jobs (the verifier and the generator) share around a transformers ``Trainer``.

Both follow one contract: a config's weight-determining fields form an *identity*; checkpoints go to
``OUT/checkpoints`` (whose ``config.json`` holds that identity), so running the same job again resumes from the
last checkpoint and a different config is refused with the changed fields named; the finished artefact is
written last and atomically, and is the "done" marker. The schedule is linear without warmup over the
Trainer's own count of optimiser steps (the reference double-counted epochs, METHOD.md §4). TensorBoard logs
go to ``OUT/checkpoints/runs`` when tensorboard is installed.
"""

from __future__ import annotations

import importlib.util
import math
import shutil
import sys
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from mucode.backends.hf import cpu_bf16_is_faster, quiet_peft
from mucode.errors import ConfigError
from mucode.rollout import check_positive, prepare_run_dir

CHECKPOINTS_DIR = "checkpoints"
PRECISIONS = ("auto", "bf16", "fp32")
# Fields every fine-tuning job config has that must be positive integers.
POSITIVE_FIELDS = ("lora_rank", "lora_alpha", "epochs", "batch_size", "micro_batch_size", "max_length", "save_steps",
                   "logging_steps")


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

    def arguments(self, checkpoints: Path, items: int, progress: bool | None) -> TrainingArguments:
        """TrainingArguments for ``items`` training items, checkpointing into ``checkpoints``."""
        shown = sys.stderr.isatty() if progress is None else progress
        return TrainingArguments(
            output_dir=str(checkpoints), per_device_train_batch_size=self.micro_batch_size,
            gradient_accumulation_steps=self.batch_size // self.micro_batch_size, num_train_epochs=self.epochs,
            learning_rate=self.learning_rate, lr_scheduler_type="linear", warmup_steps=0,
            weight_decay=self.weight_decay, adam_epsilon=self.adam_epsilon, max_grad_norm=self.max_grad_norm,
            optim="adamw_torch", seed=self.seed, data_seed=self.seed,
            save_strategy="steps", save_steps=self.save_steps, save_total_limit=1,
            logging_strategy="steps", logging_steps=min(self.logging_steps, self.steps(items)),
            report_to=["tensorboard"] if importlib.util.find_spec("tensorboard") else "none",
            disable_tqdm=not shown, remove_unused_columns=False, label_names=[], dataloader_num_workers=0,
            dataloader_pin_memory=False, use_cpu=not torch.cuda.is_available())


def validate_job(config: Any, default_learning_rate: Mapping[str, float], positive: tuple[str, ...] = (),
                 non_negative: tuple[str, ...] = ()) -> None:
    """Checks a (frozen) job config's shared fields and fills in its learning rate's default.

    One place for the rules both trainers share, so a bad value gets the same message from either. The
    default learning rate depends on `training_mode` (a LoRA adapter wants a far larger step than full weights).
    """
    check_precision(config.precision)
    for name in (*POSITIVE_FIELDS, *positive):
        check_positive(name, getattr(config, name))
    for name in ("lora_dropout", *non_negative):
        if getattr(config, name) < 0:
            raise ConfigError(f"{name} must be >= 0, got {getattr(config, name)}")
    if config.learning_rate is None:
        object.__setattr__(config, "learning_rate", default_learning_rate[training_mode(config)])
    Optimisation.of(config)  # validates the batch sizes, learning rate and optimiser settings


def training_mode(config: Any) -> str:
    """"head" (only a scalar head is trained: the verifier's ``head_only``), "lora" or "full"."""
    return "head" if getattr(config, "head_only", False) else "lora" if config.lora else "full"


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")


def use_bf16(precision: str) -> bool:
    """Whether to autocast to bf16: asked for, or "auto" on hardware where it pays."""
    if precision != "auto":
        return precision == "bf16"
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_bf16_is_faster()


def autocast(bf16: bool, device: torch.device) -> AbstractContextManager[Any]:
    """bf16 autocast for the forward pass (weights and optimiser state stay fp32), or nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


def changed_fields(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the fields that differ between two (nested) configs."""
    changed: list[str] = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if isinstance(before, Mapping) and isinstance(after, Mapping):
            changed += changed_fields(before, after, f"{prefix}{name}.")
        elif before != after:
            changed.append(f"{prefix}{name}")
    return changed


def checkpoint_dir(out: Path, identity: Mapping[str, Any], force: bool) -> Path:
    """``out/checkpoints``, whose config.json must match ``identity`` (``force`` deletes it first)."""
    checkpoints = out / CHECKPOINTS_DIR
    if force:
        shutil.rmtree(checkpoints, ignore_errors=True)
    return prepare_run_dir(checkpoints, identity, force=False, outputs=[])


def drop_checkpoints(checkpoints: Path) -> None:
    """Delete the weights and optimiser states of finished training; the TensorBoard logs in runs/ stay."""
    for checkpoint in checkpoints.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        shutil.rmtree(checkpoint, ignore_errors=True)


def final_metrics(trainer: Trainer, metrics: Mapping[str, Any], logged: tuple[str, ...]) -> dict[str, Any]:
    """The Trainer's totals, the last logged values of ``logged`` and the logged loss history."""
    last = next((entry for entry in reversed(trainer.state.log_history) if "loss" in entry), {})
    return {"steps": trainer.state.global_step, "epochs": trainer.state.epoch,
            "train_loss": metrics.get("train_loss"), "train_runtime": metrics.get("train_runtime"),
            "last_logged": {name: last[name] for name in ("step", *logged, "learning_rate") if name in last},
            "log_history": [entry for entry in trainer.state.log_history if "loss" in entry]}


def with_lora(model: torch.nn.Module, task_type: str, rank: int, alpha: int, dropout: float,
              **extra: Any) -> torch.nn.Module:
    """``model`` with PEFT LoRA adapters on every linear layer; ConfigError when peft is missing."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as error:
        raise ConfigError(f"LoRA needs peft: {error} (install it with `pip install mucode[hf]`)") from error
    lora = LoraConfig(task_type=task_type, r=rank, lora_alpha=alpha, lora_dropout=dropout,
                      target_modules="all-linear", **extra)
    with quiet_peft():
        return get_peft_model(model, lora)
