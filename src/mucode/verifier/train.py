"""Training the verifier on rollouts: Bradley-Terry pairs or pointwise BCE, with a transformers Trainer.

Losses (docs/method.md §4):
- ``bt``: −mean log σ(r⁺ − r⁻) + λ·mean(R²), the mean of R² taken over the chosen and the rejected scores
  together (λ = ``l2_coeff`` = 1e-3, the reference's ``rm_bt.py``); chosen and rejected run in one forward pass.
- ``bce``: pointwise ``BCEWithLogits(R, label)`` over every example (the paper's Eq. 2).
- ``bt`` with ``pairing = "all"``: the BT term averaged over every (correct, incorrect) pair of a problem's
  distinct codes (`all_pairs_bt_loss`), the exact value of what the reference's 32 sampled pairs estimate; an
  item is a problem (`mucode.verifier.data.problem_sets`), each code runs once.

Why not TRL's ``RewardTrainer``: its centering term is λ·mean((r⁺ + r⁻)²), which pulls the *sum* of a pair's
scores to zero rather than every score, and it has no pointwise BCE; both losses are a few lines here.

The schedule is linear without warmup over the true number of optimiser steps (the Trainer's own count); the
reference passes a step count that already includes the epochs times the epochs again, so its learning rate
only decays to about half (docs/method.md §4) — not repeated here. Checkpoints go to ``OUT/checkpoints`` every
``save_steps`` optimiser steps; running the same training again resumes from the last one, and a different
config is refused (ConfigError naming the field) unless ``force``. The final model is written by
`save_verifier`, which never leaves a half-written verifier that loads.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import DynamicCache, PreTrainedModel, Trainer, TrainerCallback, set_seed
from transformers.trainer_utils import get_last_checkpoint

from mucode.backends.hf import CACHE_KEYWORD, HF_PACKAGES, quiet_peft
from mucode.errors import ConfigError
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
from mucode.jobs import TrainConfig
from mucode.launch import Launch
from mucode.plots import plot_learning_curve
from mucode.runs import progress_bar, versions, write_jsonl
from mucode.verifier.curve import CURVE_FILE, CURVE_PLOT, HeldoutCurve, curve_summary
from mucode.verifier.data import (
    Example,
    Pair,
    ProblemCodes,
    RolloutData,
    data_summary,
    load_rollouts,
    make_pairs,
    problem_sets,
)
from mucode.verifier.model import (
    INFO_FILE,
    VERIFIER_FORMAT,
    InputFormat,
    Verifier,
    backbone_and_head,
    load_backbone,
    read_info,
    repeat_cache,
    right_pad,
    save_verifier,
    scalar_head,
    sequence_scores,
    shared_prefix_length,
)
from mucode.verifier.probe import FEATURES_FILE, compute_features, fit_head


@dataclass
class TrainResult:
    """What `train_verifier` returns: the ``verifier.json`` content and the verifier, in memory and ready to score.

    ``trained`` is False when ``out`` already held this exact verifier and nothing was run.
    """

    info: dict[str, Any]
    verifier: Verifier
    trained: bool


# ------------------------------------------------------------------------------------------------ losses


def bt_loss(chosen: torch.Tensor, rejected: torch.Tensor, l2_coeff: float) -> torch.Tensor:
    """Bradley-Terry: −mean log σ(r⁺ − r⁻) + λ·mean(R²) over the chosen and rejected scores together."""
    scores = torch.cat([chosen, rejected])
    return -F.logsigmoid(chosen - rejected).mean() + l2_coeff * scores.pow(2).mean()


def all_pairs_bt_loss(problems: Sequence[tuple[torch.Tensor, torch.Tensor]],
                      l2_coeff: float) -> tuple[torch.Tensor, float, int]:
    """Bradley-Terry over every (positive, negative) pair of each problem's (scores, labels), each problem's
    mean weighted equally, + λ·mean(R²) over all scores; also the pairs ranked right and the pair count."""
    terms, correct, seen = [], 0.0, 0
    for scores, labels in problems:
        difference = scores[labels > 0.5][:, None] - scores[labels < 0.5][None, :]
        terms.append(-F.logsigmoid(difference).mean())
        correct += (difference > 0).float().sum().item()
        seen += difference.numel()
    every = torch.cat([scores for scores, _ in problems])
    return torch.stack(terms).mean() + l2_coeff * every.pow(2).mean(), correct, seen


def bce_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Pointwise binary cross-entropy on the logit R (the paper's Eq. 2)."""
    return F.binary_cross_entropy_with_logits(scores, labels)


# ------------------------------------------------------------------------------------------- datasets


class _Encoded:
    """Token ids per (prompt, code), each encoded once however many pairs reuse it."""

    def __init__(self, input_format: InputFormat) -> None:
        self.format = input_format
        self.cache: dict[tuple[str, str], list[int]] = {}

    def __call__(self, example: Example) -> list[int]:
        key = (example.prompt, example.code)
        if key not in self.cache:
            self.cache[key] = self.format.encode(example.prompt, example.code)
        return self.cache[key]


class ItemDataset(torch.utils.data.Dataset):
    """A list of ready items (token ids and targets) for the Trainer's sampler."""

    def __init__(self, items: Sequence[Mapping[str, Any]]) -> None:
        self.items = list(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Mapping[str, Any]:
        return self.items[index]


def pair_items(pairs: Sequence[Pair], encode: _Encoded) -> list[dict[str, Any]]:
    """BT items ``{"chosen": ids, "rejected": ids}``."""
    return [{"chosen": encode(pair.chosen), "rejected": encode(pair.rejected)} for pair in pairs]


def set_items(sets: Sequence[ProblemCodes], encode: _Encoded) -> list[dict[str, Any]]:
    """BT items under ``pairing = "all"``: ``{"codes": [ids, ...], "labels": [1., ..., 0., ...]}``."""
    return [{"codes": [encode(example) for example in (*item.positives, *item.negatives)],
             "labels": [1.0] * len(item.positives) + [0.0] * len(item.negatives)} for item in sets]


def example_items(examples: Sequence[Example], encode: _Encoded) -> list[dict[str, Any]]:
    """BCE items ``{"ids": ids, "label": 0. or 1.}``."""
    return [{"ids": encode(example), "label": float(example.label)} for example in examples]


#: Padded tokens per forward pass over a problem's codes (``pairing = "all"``). Small runs waste little padding,
#: bound activation memory (a few MB per token on a 0.5B model), and on CPU cost less per token than long ones
#: (LoRA 0.5B, 2 AVX-512 cores: 3.2 ms per token at 1,024 tokens, 6 ms at 4,096).
CHUNK_TOKENS = 1024


class Collator:
    """Pads a micro-batch on the right. BT: the chosen rows, then the rejected rows, in one batch. Problem sets
    (``pairing = "all"``): one entry per problem, its codes' continuations after their shared prefix (the
    prompt, run once; none when ``share_prefix`` is off) in length-sorted chunks of at most ``chunk_tokens``
    padded tokens (`length_chunks`)."""

    def __init__(self, loss: str, pad_id: int, share_prefix: bool = True, chunk_tokens: int = CHUNK_TOKENS) -> None:
        self.loss, self.pad_id, self.share_prefix, self.chunk_tokens = loss, pad_id, share_prefix, chunk_tokens

    def __call__(self, items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        if "codes" in items[0]:
            return {"problems": [self._problem(item) for item in items]}
        if self.loss == "bt":
            ids, mask = right_pad([item["chosen"] for item in items] + [item["rejected"] for item in items],
                                  self.pad_id, "cpu")
            return {"input_ids": ids, "attention_mask": mask}
        ids, mask = right_pad([item["ids"] for item in items], self.pad_id, "cpu")
        return {"input_ids": ids, "attention_mask": mask,
                "targets": torch.tensor([item["label"] for item in items], dtype=torch.float32)}

    def _problem(self, item: Mapping[str, Any]) -> dict[str, Any]:
        codes = item["codes"]
        shared = shared_prefix_length(codes) if self.share_prefix and len(codes) > 1 else 0
        chunks = []
        for index in length_chunks([len(code) - shared for code in codes], self.chunk_tokens):
            ids, mask = right_pad([codes[i][shared:] for i in index], self.pad_id, "cpu")
            chunks.append({"index": torch.tensor(index), "input_ids": ids, "attention_mask": mask})
        return {"prefix": torch.tensor([codes[0][:shared]], dtype=torch.long), "chunks": chunks,
                "targets": torch.tensor(item["labels"])}


def length_chunks(lengths: Sequence[int], budget: int) -> list[list[int]]:
    """Indices of ``lengths`` sorted by length and cut into runs whose padded size (rows × longest) stays within
    ``budget`` tokens (a longer sequence runs alone): little padding, and activation memory bounded per run."""
    chunks: list[list[int]] = []
    for index in sorted(range(len(lengths)), key=lengths.__getitem__):
        if chunks and (len(chunks[-1]) + 1) * lengths[index] <= budget:
            chunks[-1].append(index)
        else:
            chunks.append([index])
    return chunks


def problem_scores(model: torch.nn.Module, problem: Mapping[str, Any], bf16: bool) -> torch.Tensor:
    """The scores of one problem's codes (a `Collator` problem entry), in the item's order, differentiable.

    The shared prefix (the prompt) runs once and the codes' continuations run in length-sorted chunks. To keep
    memory to one chunk's activations, whatever the problem's size, the forward pass keeps no graph: the backward
    pass runs the prefix and each chunk again with gradients and pushes the scores' gradients through them (as
    gradient checkpointing does, at the cost of one more forward pass). The prefix's keys and values collect every
    chunk's gradient before their own backward, so the result equals plain backpropagation.
    """
    anchor = torch.ones((), requires_grad=torch.is_grad_enabled())  # puts the scores into the autograd graph
    return _RecomputedScores.apply(anchor, model, problem, bf16)


class _RecomputedScores(torch.autograd.Function):
    """`problem_scores`: forward without a graph; backward recomputes the prefix, then each chunk, with one."""

    @staticmethod
    def forward(ctx: Any, anchor: torch.Tensor, model: torch.nn.Module, problem: Mapping[str, Any],
                bf16: bool) -> torch.Tensor:
        ctx.model, ctx.problem, ctx.bf16 = model, problem, bf16
        with torch.no_grad():
            prefix = _prefix_cache(model, problem["prefix"], bf16)
            return _chunk_scores(model, problem, prefix, bf16)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, None, None, None]:
        model, problem, bf16 = ctx.model, ctx.problem, ctx.bf16
        with torch.enable_grad():
            prefix = _prefix_cache(model, problem["prefix"], bf16)
            leaves = [(keys.detach().requires_grad_(), values.detach().requires_grad_()) for keys, values in prefix]
            for chunk in problem["chunks"]:
                scores = _run_chunk(model, chunk, leaves, problem["prefix"].shape[1], bf16)
                torch.autograd.backward(scores, grad[chunk["index"]].to(scores.dtype))
            if prefix:
                tensors = [tensor for pair in prefix for tensor in pair]
                grads = [leaf.grad for pair in leaves for leaf in pair]
                kept = [(tensor, g) for tensor, g in zip(tensors, grads, strict=True) if g is not None]
                torch.autograd.backward([tensor for tensor, _ in kept], [g for _, g in kept])
        return None, None, None, None


def _prefix_cache(model: torch.nn.Module, prefix: torch.Tensor, bf16: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The keys and values of every layer for the shared prefix (none when it is empty)."""
    if not prefix.shape[1]:
        return []
    backbone, _ = backbone_and_head(model)
    cache = DynamicCache(config=backbone.config)
    with autocast(bf16, prefix.device):
        backbone(input_ids=prefix, use_cache=True, **{CACHE_KEYWORD: cache})
    return [(layer.keys, layer.values) for layer in cache.layers]


def _run_chunk(model: torch.nn.Module, chunk: Mapping[str, torch.Tensor],
               prefix: list[tuple[torch.Tensor, torch.Tensor]], prefix_length: int, bf16: bool) -> torch.Tensor:
    ids, mask = chunk["input_ids"], chunk["attention_mask"]
    with autocast(bf16, ids.device):
        if not prefix:
            return sequence_scores(model, ids, mask)
        backbone, _ = backbone_and_head(model)
        return sequence_scores(model, ids, mask, past_key_values=repeat_cache(prefix, len(ids), backbone.config),
                               prefix_length=prefix_length)


def _chunk_scores(model: torch.nn.Module, problem: Mapping[str, Any],
                  prefix: list[tuple[torch.Tensor, torch.Tensor]], bf16: bool) -> torch.Tensor:
    """Every chunk's scores, put back in the item's order."""
    scores = torch.empty(len(problem["targets"]))
    for chunk in problem["chunks"]:
        scores[chunk["index"]] = _run_chunk(model, chunk, prefix, problem["prefix"].shape[1], bf16).float()
    return scores


# -------------------------------------------------------------------------------------------- trainer


class VerifierTrainer(Trainer):
    """A Trainer whose loss is `bt_loss` or `bce_loss` on `sequence_scores`; logs accuracy next to the loss
    (BT: r⁺ > r⁻; BCE: sign of R agrees with the label)."""

    loss_is_scaled_for_ga = False  # compute_loss returns a per-micro-batch mean: the Trainer divides by the steps

    def __init__(self, *args: Any, loss_name: str, l2_coeff: float, bf16: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.loss_name, self.l2_coeff, self.bf16 = loss_name, l2_coeff, bf16
        self._correct, self._seen = 0.0, 0

    def compute_loss(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor], return_outputs: bool = False,
                     num_items_in_batch: torch.Tensor | int | None = None) -> Any:
        if "problems" in inputs:
            problems = [(problem_scores(model, problem, self.bf16), problem["targets"])
                        for problem in inputs["problems"]]
            loss, correct, seen = all_pairs_bt_loss(problems, self.l2_coeff)
            self._correct += correct
            self._seen += seen
            scores = torch.cat([scores for scores, _ in problems])
            return (loss, {"scores": scores}) if return_outputs else loss
        with autocast(self.bf16, inputs["input_ids"].device):
            scores = sequence_scores(model, inputs["input_ids"], inputs["attention_mask"])
        if self.loss_name == "bt":
            chosen, rejected = scores.chunk(2)
            loss = bt_loss(chosen, rejected, self.l2_coeff)
            correct, seen = (chosen > rejected).float().sum().item(), len(chosen)
        else:
            targets = inputs["targets"]
            loss = bce_loss(scores, targets)
            correct, seen = ((scores > 0).float() == targets).float().sum().item(), len(scores)
        self._correct += correct
        self._seen += seen
        return (loss, {"scores": scores}) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._seen:
            logs = {**logs, "accuracy": round(self._correct / self._seen, 4)}
            self._correct, self._seen = 0.0, 0
        super().log(logs, start_time)



# --------------------------------------------------------------------------------------------- entry


def train_verifier(config: TrainConfig, callbacks: Sequence[TrainerCallback] = ()) -> TrainResult:
    """What ``mucode verifier train`` does: load the rollouts, build the model, train, save to ``config.out``.

    ``callbacks`` are passed to the Trainer (tests use one to interrupt a run). Raises ConfigError when ``out``
    holds a verifier or checkpoints of another config (unless ``config.force``) or there is nothing to train on.
    """
    started = time.time()
    out = Path(config.out).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the verifier")
    data = load_rollouts(config.rollouts)
    bf16 = use_bf16(config.precision)
    identity = {"format": VERIFIER_FORMAT, "hyperparameters": config.hyperparameters(), "bf16": bf16,
                "data": [run.sha256 for run in data.runs]}
    launch = Launch()
    if config.head_only and launch.processes > 1:
        raise ConfigError("head-only training runs in one process; launch it without accelerate/torchrun")
    force = config.force and launch.main
    with launch.main_first():
        finished = finished_info(out, INFO_FILE, identity, force, read_info, "holds a verifier trained with")
    if finished is not None:
        return TrainResult(finished, Verifier.load(out, dtype="fp32"), trained=False)
    selected, data_info = _training_data(config, data)
    heldout = _heldout(config, data) if launch.main else None  # the main process scores the learning curve
    with launch.main_first():
        checkpoints = checkpoint_dir(out, identity, force)
    set_seed(config.seed)
    model, tokenizer, ref = load_backbone(config.backbone, seed=config.seed)
    encode = _Encoded(InputFormat(tokenizer))
    kept = _within_length(config, selected, encode)
    curve = HeldoutCurve(heldout, tokenizer, every=config.eval_every, items_per_step=config.batch_size,
                         total_items=len(kept) * config.epochs, path=checkpoints / CURVE_FILE, bf16=bf16,
                         pairs_per_item=_pairs_per_item(config, kept)) if heldout else None
    if config.head_only:
        final, training = _train_head(config, model, tokenizer, kept, checkpoints, bf16, data.template)
        if curve:
            curve.evaluate(final, step=0)
    else:
        final, training = _fine_tune(config, model, tokenizer, kept, encode, checkpoints, bf16,
                                     [*callbacks, *([curve] if curve else [])], launch.processes)
    info = {"identity": identity, "backbone": {"name": config.backbone, "model_id": ref.model_id},
            "loss": config.loss, "template": data.template, "hyperparameters": config.hyperparameters(),
            "precision": "bf16" if bf16 else "fp32",
            "data": {**data_info, "items": len(kept), "dropped_too_long": len(selected) - len(kept),
                     "runs": data.fingerprint()},
            "training": training,
            **({"heldout": heldout.fingerprint(), "heldout_curve": curve_summary(curve.points())} if curve else {}),
            "timings": {"seconds": round(time.time() - started, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")},
            "versions": versions(*HF_PACKAGES)}
    if launch.main:
        save_verifier(final, tokenizer, out, info)
        if curve:
            write_jsonl(out / CURVE_FILE, curve.points())
            plot_learning_curve(info["heldout_curve"], out / CURVE_PLOT, f"{config.backbone} ({config.loss})")
        if not config.keep_checkpoints:
            drop_checkpoints(checkpoints)
            (checkpoints / FEATURES_FILE).unlink(missing_ok=True)
    launch.wait()
    return TrainResult(read_info(out), Verifier(final, tokenizer, info, template=data.template), trained=True)


def _fine_tune(config: TrainConfig, model: PreTrainedModel, tokenizer: Any, kept: Sequence[Any], encode: _Encoded,
               checkpoints: Path, bf16: bool, callbacks: Sequence[TrainerCallback], processes: int = 1
               ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Full or LoRA fine-tuning with the Trainer, resumed from the last checkpoint in ``checkpoints``: the final
    model (LoRA merged) and the training record (with the checkpoint resumed from)."""
    items = (set_items if config.pairing == "all" else pair_items if config.loss == "bt" else example_items)(
        kept, encode)
    if config.gradient_checkpointing:  # enabled here: the TrainingArguments field is being renamed
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if config.lora:
        model = _with_lora(model, config)
    args = training_arguments(config.optimisation(), checkpoints, len(items), config.progress, processes)
    trainer = VerifierTrainer(model=model, args=args,
                              train_dataset=ItemDataset(items),
                              data_collator=Collator(config.loss, tokenizer.pad_token_id or 0,
                                                     share_prefix=not config.gradient_checkpointing),
                              callbacks=list(callbacks), loss_name=config.loss, l2_coeff=config.l2_coeff, bf16=bf16)
    resume = get_last_checkpoint(str(checkpoints))
    with quiet_peft():
        output = trainer.train(resume_from_checkpoint=resume)
    final = trainer.model.merge_and_unload() if config.lora else trainer.model
    return final, {**final_metrics(trainer, output.metrics, ("loss", "accuracy")), "resumed_from": resume}


def _train_head(config: TrainConfig, model: PreTrainedModel, tokenizer: Any, kept: Sequence[Any],
                checkpoints: Path, bf16: bool, template: str) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Head-only training (`mucode.verifier.probe`): the features of every code, then the head fitted on them.
    Returns the model with its fitted head and the training record (the feature cache makes a rerun resume
    without a checkpoint, so ``resumed_from`` is None)."""
    keys = list(dict.fromkeys((example.prompt, example.code) for item in kept for example in _sides(item)))
    scoring = copy.deepcopy(model).to(torch.bfloat16) if bf16 else model  # the precision it will score in
    with progress_bar(len(keys), config.progress, "features") as advance:
        features = compute_features(Verifier(scoring, tokenizer, {}, template=template), keys,
                                    checkpoints / FEATURES_FILE, advance)
    del scoring

    def rows(examples: Sequence[Example]) -> torch.Tensor:
        return torch.stack([features[(example.prompt, example.code)] for example in examples])

    if config.loss == "bt":
        inputs = [rows([pair.chosen for pair in kept]), rows([pair.rejected for pair in kept])]
    else:
        inputs = [rows(kept), torch.tensor([float(example.label) for example in kept])]
    training = fit_head(scalar_head(model), inputs, partial(_head_objective, config.loss, config.l2_coeff),
                        optimisation=config.optimisation())
    return model, {**training, "resumed_from": None}


def _head_objective(loss: str, l2_coeff: float, head: torch.nn.Module,
                    batch: Sequence[torch.Tensor]) -> tuple[torch.Tensor, float]:
    """`fit_head`'s objective: the loss of a batch of feature rows and how many items it gets right."""
    if loss == "bt":
        chosen, rejected = (head(rows).squeeze(-1) for rows in batch)
        return bt_loss(chosen, rejected, l2_coeff), (chosen > rejected).float().sum().item()
    scores, labels = head(batch[0]).squeeze(-1), batch[1]
    return bce_loss(scores, labels), ((scores > 0).float() == labels).float().sum().item()


def _pairs_per_item(config: TrainConfig, kept: Sequence[Any]) -> float | None:
    """The pairs one training item holds on average (a problem's set under ``pairing = "all"``, else 1 pair);
    None for BCE, which trains on examples."""
    if config.loss != "bt":
        return None
    return sum(item.pairs for item in kept) / len(kept) if config.pairing == "all" else 1.0


def _heldout(config: TrainConfig, data: RolloutData) -> RolloutData | None:
    """The held-out runs of the learning curve (read before any model loads), in the training runs' template;
    ConfigError when they share a problem with the training runs (the curve would not be held out)."""
    if not config.heldout:
        return None
    heldout = load_rollouts(config.heldout)
    if heldout.template != data.template:
        raise ConfigError(f"held-out runs use template {heldout.template!r}, the training runs {data.template!r}")
    shared = sorted(set(heldout.by_problem()) & set(data.by_problem()))
    if shared:
        raise ConfigError(f"held-out runs share {len(shared)} problem(s) with the training runs (e.g. task "
                          f"{shared[0]!r}); hold out other problems")
    return heldout


def _training_data(config: TrainConfig, data: RolloutData) -> tuple[list[Any], dict[str, Any]]:
    """BT: the pairs; BCE: every example; with the counts verifier.json records. ConfigError when there are none,
    checked before any model is loaded."""
    if config.pairing == "all":
        sets = problem_sets(data.examples, seed=config.seed)
        if not sets:
            raise ConfigError(f"no training pairs in {', '.join(config.rollouts)}: no problem has both a correct "
                              "and an incorrect code")
        return sets, data_summary(data.examples, sets=sets)
    if config.loss == "bt":
        pairs = make_pairs(data.examples, config.pairs_per_problem, config.seed)
        if not pairs:
            raise ConfigError(f"no training pairs in {', '.join(config.rollouts)}: no problem has both a correct "
                              "and an incorrect code")
        return pairs, data_summary(data.examples, pairs)
    if not data.examples:
        raise ConfigError(f"no training examples in {', '.join(config.rollouts)}")
    return list(data.examples), data_summary(data.examples)


def _within_length(config: TrainConfig, selected: Sequence[Pair] | Sequence[Example],
                   encode: _Encoded) -> list[Any]:
    """The pairs or examples none of whose inputs is longer than ``max_length`` tokens (the rest are left out of
    training and counted); ConfigError when nothing is left."""
    kept = [item for item in selected if max(len(encode(example)) for example in _sides(item)) <= config.max_length]
    if not kept:
        raise ConfigError(f"every training input is longer than max_length {config.max_length} tokens")
    return kept


def _sides(item: Pair | ProblemCodes | Example) -> tuple[Example, ...]:
    if isinstance(item, ProblemCodes):
        return (*item.positives, *item.negatives)
    return (item.chosen, item.rejected) if isinstance(item, Pair) else (item,)


def _with_lora(model: torch.nn.Module, config: TrainConfig) -> torch.nn.Module:
    """LoRA adapters on every linear layer of the backbone; the scalar head is trained in full."""
    return with_lora(model, "SEQ_CLS", config.lora_rank, config.lora_alpha, config.lora_dropout,
                     modules_to_save=["score"])
