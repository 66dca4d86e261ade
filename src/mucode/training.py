"""Generator fine-tuning (docs/method.md §6): supervised learning of the expert's (state → reply) examples.

Each example is a conversation ending with a user message (the state) and the reply to learn (the expert's y*
or a trajectory's own reply, `mucode.expert.SFTExample`). The input is rendered with the model's own chat
template exactly as generation renders it, and the loss falls only on the reply and the template's
end-of-turn token:

- the prompt is ``apply_chat_template(state, add_generation_prompt=True)`` and is tokenised on its own, like
  the backends tokenise prompts, so training sees the token boundary inference sees (no ``<|response|>``
  marker between header and reply, the reference's mismatch);
- the completion is the rest of the rendered full conversation up to and including the end-of-turn token
  (``<|im_end|>`` for Qwen, ``<|eot_id|>`` for Llama); it is trained, because a model that never learns to
  stop writes until ``max_tokens`` (the reference masked it as padding: pad = eos);
- padding is masked by length, never by token id; the template's own BOS is not doubled
  (``add_special_tokens=False``).

Training runs through a transformers `Trainer` (resumable checkpoints, TensorBoard logs, the shared contract of
`mucode.finetune`), from the base model every time (the paper's choice; ``init`` picks another folder), fully
or with LoRA. The result is ``OUT/model``: a plain transformers folder with merged weights that the ``hf``
backend loads and `mucode.export` turns into GGUF for llama.cpp; with LoRA, ``OUT/adapter`` keeps the small
adapter too. ``OUT/sft.json`` is written last: its presence means the folder is complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, PreTrainedModel, Trainer, TrainerCallback, set_seed
from transformers.trainer_utils import get_last_checkpoint

from mucode.backends.hf import (
    HF_PACKAGES,
    dequantised_dir,
    disable_dropout,
    load_tokenizer,
    locate_model,
    quiet_peft,
    quiet_transformers,
    template_end_id,
)
from mucode.errors import ConfigError, DataError
from mucode.expert import SFTExample
from mucode.finetune import (
    autocast,
    checkpoint_dir,
    drop_checkpoints,
    final_metrics,
    finished_info,
    training_arguments,
    use_bf16,
    with_lora,
)
from mucode.jobs import SFTConfig
from mucode.launch import Launch
from mucode.runs import versions, write_json, write_jsonl

SFT_FORMAT = "mucode.sft/1"
INFO_FILE = "sft.json"
MODEL_DIR = "model"
ADAPTER_DIR = "adapter"
EPOCHS_DIR = "epochs"
IGNORE_INDEX = -100
@dataclass
class SFTResult:
    """What `train_generator` returns: the ``sft.json`` content and the folder of the merged model."""

    info: dict[str, Any]
    model_dir: Path
    trained: bool


# ------------------------------------------------------------------------------------------- the data


def load_examples(paths: Sequence[str | os.PathLike[str]]) -> list[SFTExample]:
    """Every example of the JSONL files, in order; DataError naming the file and line of a malformed one."""
    examples: list[SFTExample] = []
    for path in map(Path, paths):
        if not path.is_file():
            raise ConfigError(f"example file {path} does not exist")
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                examples.append(SFTExample.from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError) as error:
                raise DataError(f"{path}:{number}: not an SFT example ({type(error).__name__}: {error})") from None
    return examples


def write_examples(path: str | os.PathLike[str], examples: Iterable[SFTExample]) -> None:
    """The examples as JSONL, written atomically (the expert stage's output)."""
    write_jsonl(path, (example.to_dict() for example in examples))


class ChatEncoder:
    """Token ids and loss labels of (state → reply) with the tokenizer's chat template (see the module doc)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        end_id = template_end_id(tokenizer)
        self.end_text = tokenizer.decode([end_id]) if end_id is not None else None

    def encode(self, messages: Sequence[Mapping[str, str]], reply: str) -> dict[str, list[int]]:
        """``input_ids`` (prompt + reply + end-of-turn) and ``labels`` (IGNORE_INDEX over the prompt)."""
        prompt_text = self.tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        full_text = self.tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": reply}],
                                                       tokenize=False)
        if not full_text.startswith(prompt_text):
            raise DataError("the chat template renders the conversation differently once a reply follows it; "
                            "cannot separate prompt and reply")
        completion = self._completion(full_text[len(prompt_text):])
        prompt = self.tokenizer(prompt_text, add_special_tokens=False).input_ids
        target = self.tokenizer(completion, add_special_tokens=False).input_ids
        return {"input_ids": prompt + target, "labels": [IGNORE_INDEX] * len(prompt) + target}

    def _completion(self, rendered: str) -> str:
        """The reply and its end-of-turn token; what the template writes after that (a newline) is not trained."""
        if self.end_text is None:
            return rendered.rstrip() + (self.tokenizer.eos_token or "")
        cut = rendered.find(self.end_text)
        if cut < 0:
            raise DataError(f"the chat template did not close the reply with {self.end_text!r}")
        return rendered[:cut + len(self.end_text)]


def encode_examples(examples: Sequence[SFTExample], encoder: ChatEncoder,
                    max_length: int) -> tuple[list[dict[str, list[int]]], int]:
    """The Trainer's items and how many examples were longer than ``max_length`` (dropped)."""
    items = [encoder.encode(example.messages, example.target) for example in examples]
    kept = [item for item in items if len(item["input_ids"]) <= max_length]
    return kept, len(items) - len(kept)


class _Items(torch.utils.data.Dataset):
    def __init__(self, items: Sequence[dict[str, list[int]]]) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.items[index]


class Collator:
    """Left-pads a micro-batch, so every reply ends in the last column and the loss needs logits only for the
    last ``keep`` positions (the longest reply + 1): the output layer is a quarter of a small model's compute
    and its fp32 logits over a 150k vocabulary the largest activation. The attention mask comes from the
    lengths and padded labels are ignored, whatever the pad id (it may equal the end-of-turn id)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, items: Sequence[Mapping[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(item["input_ids"]) for item in items)
        ids = [[self.pad_id] * (width - len(item["input_ids"])) + item["input_ids"] for item in items]
        labels = [[IGNORE_INDEX] * (width - len(item["labels"])) + item["labels"] for item in items]
        mask = [[0] * (width - len(item["input_ids"])) + [1] * len(item["input_ids"]) for item in items]
        return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask), "labels": torch.tensor(labels),
                "keep": torch.tensor(max(_trained(item) for item in items) + 1)}


# -------------------------------------------------------------------------------------------- trainer


class SFTTrainer(Trainer):
    """Next-token cross-entropy on the reply tokens, from logits of the last ``keep`` positions only, under
    bf16 autocast where it pays (the verifier's trainer does the same)."""

    loss_is_scaled_for_ga = True  # compute_loss divides by the reply tokens of the whole accumulated batch

    def __init__(self, *args: Any, bf16: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bf16 = bf16

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | int | None = None) -> Any:
        keep = int(inputs["keep"])
        with autocast(self.bf16, inputs["input_ids"].device):
            outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                            logits_to_keep=keep)
        logits = outputs.logits[:, :-1].float()  # position p predicts token p + 1
        targets = inputs["labels"][:, -keep + 1:]
        total = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                ignore_index=IGNORE_INDEX, reduction="sum")
        # Summed over the micro-batch and divided by the reply tokens of the whole accumulated batch (the
        # Trainer's count), so every token weighs the same however the batch is split.
        if num_items_in_batch is None:  # the Trainer did not count: this micro-batch's share of the step
            loss = total / targets.ne(IGNORE_INDEX).sum().clamp(min=1) / self.current_gradient_accumulation_steps
        else:
            loss = total / num_items_in_batch
        return (loss, outputs) if return_outputs else loss


def train_generator(config: SFTConfig, callbacks: Sequence[TrainerCallback] = ()) -> SFTResult:
    """Fine-tune ``config.base`` on the examples; save the merged model to ``OUT/model``; return the result.

    Running it again with the same config and data returns the finished folder without training, or resumes
    from the last checkpoint of an interrupted run; another config is refused naming the changed fields
    (unless ``force``). ``callbacks`` go to the Trainer (tests use one to interrupt a run).
    """
    started = time.time()
    out = Path(config.out).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the fine-tuned model")
    examples = load_examples(config.examples)
    if not examples:
        raise ConfigError(f"no training examples in {', '.join(config.examples)}")
    bf16 = use_bf16(config.precision)
    identity = {"format": SFT_FORMAT, "hyperparameters": config.hyperparameters(), "bf16": bf16,
                "data": _digest(example.key for example in examples)}
    launch = Launch()
    force = config.force and launch.main
    with launch.main_first():
        finished = finished_info(out, INFO_FILE, identity, force, read_sft_info, "holds a model fine-tuned with")
    if finished is not None:
        return SFTResult(finished, out / MODEL_DIR, trained=False)
    with launch.main_first():
        checkpoints = checkpoint_dir(out, identity, force)
    set_seed(config.seed)
    model, tokenizer, base = load_base(config.base)
    items, dropped = encode_examples(examples, ChatEncoder(tokenizer), config.max_length)
    if not items:
        raise ConfigError(f"every training example is longer than max_length {config.max_length} tokens")
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.lora:
        model = with_lora(model, "CAUSAL_LM", config.lora_rank, config.lora_alpha, config.lora_dropout)
    arguments = training_arguments(config.optimisation(), checkpoints, len(items), config.progress, launch.processes)
    snapshots = _snapshots(config, out, tokenizer) if launch.main else []
    trainer = SFTTrainer(model=model, args=arguments,
                         train_dataset=_Items(items), data_collator=Collator(_pad_id(tokenizer)),
                         callbacks=[*callbacks, *snapshots], bf16=bf16)
    resume = get_last_checkpoint(str(checkpoints))
    with quiet_peft():
        output = trainer.train(resume_from_checkpoint=resume)
    info = {"format": SFT_FORMAT, "identity": identity, "base": base,
            "hyperparameters": config.hyperparameters(), "precision": "bf16" if bf16 else "fp32",
            "data": {"files": list(config.examples), "examples": len(examples), "items": len(items),
                     "dropped_too_long": dropped, "trained_tokens": sum(_trained(item) for item in items)},
            "training": {**final_metrics(trainer, output.metrics, ("loss",)), "resumed_from": resume},
            "timings": {"seconds": round(time.time() - started, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")},
            "versions": versions(*HF_PACKAGES)}
    if launch.main:
        save_generator(trainer.model, tokenizer, out, info, lora=config.lora)
        if not config.keep_checkpoints:
            drop_checkpoints(checkpoints)
    launch.wait()
    return SFTResult(read_sft_info(out), out / MODEL_DIR, trained=True)


class EpochSnapshots(TrainerCallback):
    """Saves the model (the adapter, with LoRA) at the end of every epoch but the last, atomically."""

    def __init__(self, folder: Path, epochs: int, tokenizer: Any) -> None:
        self.folder, self.epochs, self.tokenizer = folder, epochs, tokenizer

    def on_epoch_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        epoch = round(state.epoch or 0)
        if model is None or not 0 < epoch < self.epochs:
            return

        def save(path: Path) -> None:
            model.save_pretrained(path)
            self.tokenizer.save_pretrained(path)

        with quiet_transformers():
            _replace_dir(self.folder / f"epoch-{epoch}", save)


def _snapshots(config: SFTConfig, out: Path, tokenizer: Any) -> list[TrainerCallback]:
    return [EpochSnapshots(out / EPOCHS_DIR, config.epochs, tokenizer)] if config.epoch_snapshots else []


def epoch_models(out: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """(epoch, transformers folder) of every snapshot of a finished run with ``epoch_snapshots``, and of the
    final model; a LoRA snapshot is merged into the base once (``epoch-E/model``).

    A snapshot missing because a kill fell between an epoch's last checkpoint and its end is skipped.
    """
    folder = Path(out)
    info = read_sft_info(folder)
    epochs = int(info["hyperparameters"]["epochs"])
    models: list[tuple[int, Path]] = []
    for epoch in range(1, epochs):
        snapshot = folder / EPOCHS_DIR / f"epoch-{epoch}"
        if (snapshot / "adapter_config.json").is_file():
            models.append((epoch, _merged(snapshot, info["base"]["name"])))
        elif (snapshot / "config.json").is_file():
            models.append((epoch, snapshot))
    return [*models, (epochs, folder / MODEL_DIR)]


def _merged(adapter: Path, base: str) -> Path:
    """``adapter/model``: the base with the adapter merged in, written once."""
    target = adapter / MODEL_DIR
    if (target / "config.json").is_file():
        return target
    from mucode.backends.hf import load_model

    ref = locate_model(base)
    model = load_model(ref.path if ref.format == "hf" else dequantised_dir(ref), torch.float32, "cpu", str(adapter))

    def save(path: Path) -> None:
        model.save_pretrained(path)
        load_tokenizer(adapter).save_pretrained(path)

    with quiet_transformers():
        _replace_dir(target, save)
    return target


def load_base(name: str, dtype: torch.dtype = torch.float32) -> tuple[PreTrainedModel, Any, dict[str, Any]]:
    """The base causal LM (GGUF weights dequantised once and cached), its tokenizer, and where it came from.

    ``base`` in the returned dict records the source file, so `mucode.export` can take the original GGUF as
    the template (tokenizer, chat template, hyperparameters) of the fine-tuned model's GGUF.
    """
    ref = locate_model(name)
    directory = ref.path if ref.format == "hf" else dequantised_dir(ref)
    tokenizer = load_tokenizer(directory)
    with quiet_transformers():
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype)
    disable_dropout(model)
    model.config.use_cache = False  # no KV cache while training
    return model, tokenizer, {"name": name, "model_id": ref.model_id, "format": ref.format, "path": str(ref.path)}


def save_generator(model: torch.nn.Module, tokenizer: Any, out: Path, info: Mapping[str, Any], *, lora: bool) -> None:
    """``OUT/model`` (merged weights, tokenizer), ``OUT/adapter`` with LoRA, then ``OUT/sft.json``.

    Folders are written under temporary names and renamed, and sft.json comes last, so a killed save leaves
    no folder that looks finished.
    """
    if lora:
        _replace_dir(out / ADAPTER_DIR, lambda path: model.save_pretrained(path))
        model = model.merge_and_unload()
    model.config.use_cache = True

    def save_model(path: Path) -> None:
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)

    with quiet_transformers():
        _replace_dir(out / MODEL_DIR, save_model)
    write_json(out / INFO_FILE, dict(info))


def read_sft_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """``sft.json`` of a fine-tuned folder; ConfigError when the folder is not one (or is incomplete)."""
    file = Path(path) / INFO_FILE
    if not file.is_file():
        raise ConfigError(f"{path} is not a finished fine-tuning folder (no {INFO_FILE})")
    return json.loads(file.read_text(encoding="utf-8"))


def _replace_dir(target: Path, write: Any) -> None:
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    write(partial)
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)


def _pad_id(tokenizer: Any) -> int:
    """Any id works for padding (the mask and the labels ignore it); the pad token if there is one."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def _digest(keys: Iterable[str]) -> str:
    """One digest of the examples in order (order matters: it decides the batches)."""
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()


def _trained(item: Mapping[str, list[int]]) -> int:
    return sum(label != IGNORE_INDEX for label in item["labels"])
