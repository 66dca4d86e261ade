"""What the two fine-tuning jobs (the verifier and the generator) share around a transformers ``Trainer``.

Both follow one contract: a config's weight-determining fields form an *identity*; checkpoints go to
``OUT/checkpoints`` (whose ``config.json`` holds that identity), so running the same job again resumes from the
last checkpoint and a different config is refused with the changed fields named; the finished artefact is
written last and atomically, and is the "done" marker. The schedule is linear without warmup over the
Trainer's own count of optimiser steps (the reference double-counted epochs, docs/method.md §4). TensorBoard logs
go to ``OUT/checkpoints/runs`` when tensorboard is installed.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from mucode.backends.hf import cpu_bf16_is_faster, quiet_peft
from mucode.errors import ConfigError
from mucode.jobs import Optimisation
from mucode.runs import check_identity, pin_run_dir, progress_enabled

CHECKPOINTS_DIR = "checkpoints"


def training_arguments(optimisation: Optimisation, checkpoints: Path, items: int,
                       progress: bool | None, processes: int = 1) -> TrainingArguments:
    """TrainingArguments for ``items`` training items, checkpointing into ``checkpoints``. With ``processes``
    > 1 (DDP) each process accumulates its share, so an optimiser step still sees ``batch_size`` items."""
    per_step = optimisation.micro_batch_size * processes
    if optimisation.batch_size % per_step:
        raise ConfigError(f"batch_size ({optimisation.batch_size}) must be a multiple of micro_batch_size "
                          f"({optimisation.micro_batch_size}) × processes ({processes})")
    shown = progress_enabled(progress)
    return TrainingArguments(
        output_dir=str(checkpoints), per_device_train_batch_size=optimisation.micro_batch_size,
        gradient_accumulation_steps=optimisation.batch_size // per_step,
        num_train_epochs=optimisation.epochs, learning_rate=optimisation.learning_rate, lr_scheduler_type="linear",
        warmup_steps=0, weight_decay=optimisation.weight_decay, adam_epsilon=optimisation.adam_epsilon,
        max_grad_norm=optimisation.max_grad_norm, optim="adamw_torch", seed=optimisation.seed,
        data_seed=optimisation.seed, save_strategy="steps", save_steps=optimisation.save_steps, save_total_limit=1,
        logging_strategy="steps", logging_steps=min(optimisation.logging_steps, optimisation.steps(items)),
        report_to=["tensorboard"] if importlib.util.find_spec("tensorboard") else "none",
        disable_tqdm=not shown, remove_unused_columns=False, label_names=[], dataloader_num_workers=0,
        dataloader_pin_memory=False, use_cpu=not torch.cuda.is_available())


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


def checkpoint_dir(out: Path, identity: Mapping[str, Any], force: bool) -> Path:
    """``out/checkpoints``, whose config.json must match ``identity`` (``force`` deletes it first)."""
    checkpoints = out / CHECKPOINTS_DIR
    if force:
        shutil.rmtree(checkpoints, ignore_errors=True)
    return pin_run_dir(checkpoints, identity)


def finished_info(out: Path, info_file: str, identity: Mapping[str, Any], force: bool,
                  read: Callable[[Path], dict[str, Any]], holds: str) -> dict[str, Any] | None:
    """The info file of the artefact already in ``out`` when it was made with ``identity`` (a rerun is then a
    no-op); None when there is none, or with ``force`` (which deletes the info file, the "done" marker). Another
    identity is a ConfigError naming the changed fields: "OUT ``holds`` another config (...)"."""
    if not (out / info_file).is_file():
        return None
    if force:
        (out / info_file).unlink()
        return None
    info = read(out)
    check_identity(out, info.get("identity", {}), identity, holds=holds,
                   remedy="use --force to retrain, or another --out")
    return info


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
