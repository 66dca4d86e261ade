"""The verifier model R_φ(x, y): a language-model backbone with a scalar head, its input format, batched scoring
with a shared prompt prefix, and saving and loading (docs/method.md §4).

Input: the model's chat template over [user: problem prompt, assistant: "```python\\n{code}\\n```"], cut right
after the assistant's end-of-turn token (e.g. ``<|im_end|>``; the template's trailing newline is dropped), so
the score is read at that token, as the reference reads it at ``<|eot_id|>``. Deviation from the reference: the
assistant message holds the *extracted* code, not the raw reply with its prose — the verifier judges what runs,
and the search passes extracted codes to `Verifier.score`.

The score is read at the last position whose attention mask is 1, computed here from the mask rather than from
``pad_token_id`` (transformers' sequence-classification forward looks for the last non-pad id, which is wrong
when the pad id is the end-of-turn id, as in SmolLM2).

Scoring shares work between the candidates of one problem: their token sequences share the prompt (up to the
code), so the longest common token prefix runs once, its key/value cache is repeated across the batch, and only
the code suffixes run per candidate. The prefix is the common prefix of the *token ids*, so it is exact whatever
the tokenizer does at the boundary.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification, DynamicCache, PreTrainedModel

from mucode.backends.hf import (
    CACHE_KEYWORD,
    dequantised_dir,
    disable_dropout,
    load_tokenizer,
    locate_model,
    pick_device,
    pick_dtype,
    quiet_transformers,
    template_end_id,
)
from mucode.env import build_prompt
from mucode.errors import ConfigError, DataError
from mucode.int8 import Int8Linear, quantize_linears
from mucode.models import ModelRef
from mucode.runs import write_json
from mucode.types import Problem

VERIFIER_FORMAT = "mucode.verifier/1"
INFO_FILE = "verifier.json"
#: Sequences per forward pass when scoring.
DEFAULT_BATCH_SIZE = 16
#: Padding a scoring batch may add, as a fraction of its real tokens (see `length_batches`). Fewer, larger
#: products pay for some padding on a CPU: 8 candidates of the 0.5B per problem scored 2-5% faster at 0.3 than
#: at 0.1, and 15% slower at 1.0 (bf16 and int8 alike).
MAX_PADDING = 0.3


# ------------------------------------------------------------------------------------------- input format


def code_message(code: str) -> str:
    """The assistant message a code is shown as (what a policy's reply looks like, without the prose)."""
    return f"```python\n{code}\n```"


class InputFormat:
    """Turns (prompt, code) into the token ids the verifier reads; the last id is the end-of-turn token."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        end_id = template_end_id(tokenizer)
        self.end_text: str | None = tokenizer.convert_ids_to_tokens(end_id) if end_id is not None else None

    def text(self, prompt: str, code: str) -> str:
        messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": code_message(code)}]
        rendered = self.tokenizer.apply_chat_template(messages, tokenize=False)
        cut = rendered.rfind(self.end_text) if self.end_text else -1
        return rendered[:cut + len(self.end_text)] if self.end_text and cut >= 0 else rendered.rstrip()

    def encode(self, prompt: str, code: str) -> list[int]:
        """Token ids of `text`; the template carries its own BOS where the model has one."""
        return self.tokenizer(self.text(prompt, code), add_special_tokens=False).input_ids


# ---------------------------------------------------------------------------------------------- forward


def sequence_scores(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, *,
                    past_key_values: DynamicCache | None = None, prefix_length: int = 0) -> torch.Tensor:
    """One float32 score per row: the scalar head on `last_hidden_states` (same arguments)."""
    hidden = last_hidden_states(model, input_ids, attention_mask, past_key_values=past_key_values,
                                prefix_length=prefix_length)
    return scalar_head(model)(hidden).squeeze(-1).float()


def last_hidden_states(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, *,
                       past_key_values: DynamicCache | None = None, prefix_length: int = 0) -> torch.Tensor:
    """The backbone's final hidden state of each row at its last attended position: what the head reads.

    ``model`` is a sequence-classification model (or a PEFT model wrapping one). With ``past_key_values`` of
    ``prefix_length`` unpadded tokens, ``input_ids`` are the rows' continuations; padding may be on either side.
    """
    backbone, _ = backbone_and_head(model)
    batch, width = input_ids.shape
    if prefix_length:
        prefix_mask = torch.ones(batch, prefix_length, dtype=attention_mask.dtype, device=attention_mask.device)
        full_mask = torch.cat([prefix_mask, attention_mask], dim=1)
        positions = (prefix_length + torch.arange(width, device=input_ids.device)).expand(batch, width)
    else:
        full_mask, positions = attention_mask, (attention_mask.cumsum(-1) - 1).clamp(min=0)
    hidden = backbone(input_ids=input_ids, attention_mask=full_mask, position_ids=positions,
                      use_cache=past_key_values is not None, **{CACHE_KEYWORD: past_key_values}).last_hidden_state
    columns = torch.arange(width, device=attention_mask.device)
    last = (columns * attention_mask).argmax(dim=-1)
    return hidden[torch.arange(batch, device=hidden.device), last]


def scalar_head(model: Any) -> torch.nn.Module:
    """The linear layer that maps the last hidden state to the score (``score`` in transformers)."""
    return backbone_and_head(model)[1]


def backbone_and_head(model: Any) -> tuple[torch.nn.Module, torch.nn.Module]:
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT wraps the model
    head = getattr(inner, "score", None)
    if head is None:
        raise ConfigError(f"{type(inner).__name__} has no scalar `score` head; the verifier needs a decoder "
                          "language model (Llama, Qwen2, ...)")
    return getattr(inner, inner.base_model_prefix), head


def right_pad(sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device | str
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids and attention mask padded on the right: under causal attention, real tokens never see the pads."""
    width = max(len(sequence) for sequence in sequences)
    ids = torch.tensor([list(s) + [pad_id] * (width - len(s)) for s in sequences], device=device)
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences], device=device)
    return ids, mask


# ------------------------------------------------------------------------------------------- the backbone


def load_backbone(name: str, *, seed: int, dtype: torch.dtype = torch.float32,
                  cache_dir: str | None = None) -> tuple[PreTrainedModel, Any, ModelRef]:
    """A fresh reward model from a registry name, GGUF file or HF folder: backbone + new scalar head.

    A GGUF file is dequantised once and cached (`mucode.backends.hf.dequantised_dir`). The head is drawn from
    N(0, 1/√(H+1)) with ``seed`` (the reference's BT init), and dropout is off (docs/method.md §4).
    """
    ref = locate_model(name)
    directory = ref.path if ref.format == "hf" else dequantised_dir(ref, cache_dir)
    tokenizer = load_tokenizer(directory)
    model = _from_pretrained(directory, dtype, pad_token_id=safe_pad_id(tokenizer))
    disable_dropout(model)
    init_head(model, seed)
    return model, tokenizer, ref


def _from_pretrained(directory: Path, dtype: torch.dtype, **config: Any) -> PreTrainedModel:
    """AutoModelForSequenceClassification with one label, without the expected "score newly initialised" notice."""
    with quiet_transformers():
        return AutoModelForSequenceClassification.from_pretrained(directory, num_labels=1, dtype=dtype, **config)


def safe_pad_id(tokenizer: Any) -> int | None:
    """The pad id the saved config gets: the tokenizer's, unless it is the end-of-turn id the score is read at.

    Our scoring never uses it (`sequence_scores` reads the mask), but a plain transformers forward of the saved
    model does, and an embedding's ``padding_idx`` gets no gradient; None makes such a forward refuse batches
    instead of reading the wrong token.
    """
    pad = tokenizer.pad_token_id
    return None if pad is None or pad == template_end_id(tokenizer) else pad


def init_head(model: PreTrainedModel, seed: int) -> None:
    """Re-draw the scalar head from N(0, 1/√(H+1)) with its own seeded generator."""
    _, head = backbone_and_head(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        weight = torch.empty(head.weight.shape, dtype=torch.float32).normal_(
            0.0, 1.0 / (head.weight.shape[-1] + 1) ** 0.5, generator=generator)
        head.weight.copy_(weight)
        if getattr(head, "bias", None) is not None:
            head.bias.zero_()


# -------------------------------------------------------------------------------------------- scoring


@dataclass(slots=True)
class _Group:
    """The candidates of one prompt: their positions in the caller's list and their token ids."""

    positions: list[int] = field(default_factory=list)
    sequences: list[list[int]] = field(default_factory=list)


class Verifier:
    """A trained (or freshly built) reward model that scores codes; higher is better.

    ``score(problem, codes)`` is the `mucode.search.Scorer` interface: the prompt is rebuilt from the problem
    with ``template`` (the training runs' template by default), as the rollouts showed it to the policy.
    Scoring runs under ``torch.inference_mode`` in batches of up to ``batch_size`` codes of similar length.
    """

    def __init__(self, model: PreTrainedModel, tokenizer: Any, info: Mapping[str, Any], *, template: str,
                 batch_size: int = DEFAULT_BATCH_SIZE, share_prefix: bool = True) -> None:
        if batch_size < 1:
            raise ConfigError(f"verifier batch_size must be >= 1, got {batch_size}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.info = dict(info)
        self.template = template
        self.batch_size = batch_size
        self.share_prefix = share_prefix
        self.format = InputFormat(tokenizer)
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, dtype: str = "auto", device: str = "auto",
             batch_size: int = DEFAULT_BATCH_SIZE, template: str | None = None) -> Verifier:
        """The verifier saved in ``path`` by `save_verifier`. ``dtype`` "auto": bf16 where it is faster (GPU, or
        a CPU with native bf16), else fp32; "fp32" reproduces training-time scores; "int8" (CPU): the linear
        layers in int8 (`mucode.int8`), the rest as "auto" picks: faster, scores close to bf16's."""
        info = read_info(path)
        device = pick_device(device)
        int8 = dtype == "int8"
        if int8 and device != "cpu":
            raise ConfigError(f"verifier dtype int8 runs on CPU only, not {device}; use auto or bf16")
        torch_dtype = getattr(torch, pick_dtype("auto" if int8 else dtype, device))
        model = _from_pretrained(Path(path), torch_dtype).to(device)
        if int8:
            quantize_linears(model)
        return cls(model, load_tokenizer(Path(path)), info, template=template or info["template"],
                   batch_size=batch_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def int8(self) -> bool:
        """Whether the linear layers run in int8 (``dtype="int8"``); the rest runs in ``model.dtype``."""
        return any(isinstance(module, Int8Linear) for module in self.model.modules())

    def score(self, problem: Problem, codes: Sequence[str]) -> list[float]:
        """One score per code for ``problem`` (the Scorer protocol of `mucode.search`)."""
        prompt = build_prompt(problem, self.template)
        return self.score_texts([(prompt, code) for code in codes])

    def score_texts(self, items: Sequence[tuple[str, str]]) -> list[float]:
        """One score per (prompt, code); items with the same prompt share its forward pass."""
        if not items:
            return []
        with torch.inference_mode():
            return self.head(self.embed_texts(items)).squeeze(-1).float().tolist()

    @property
    def head(self) -> torch.nn.Module:
        """The scalar head: a linear map of `embed_texts`' rows to scores."""
        return scalar_head(self.model)

    def embed_texts(self, items: Sequence[tuple[str, str]]) -> torch.Tensor:
        """The head's input for each (prompt, code), ``[len(items), hidden size]`` in the model's dtype.

        What `score_texts` scores; head-only training (`mucode.verifier.probe`) computes it once per code.
        """
        groups: dict[str, _Group] = {}
        for position, (prompt, code) in enumerate(items):
            group = groups.setdefault(prompt, _Group())
            group.positions.append(position)
            group.sequences.append(self.format.encode(prompt, code))
        rows = self._rows(len(items))
        with torch.inference_mode():
            for group in groups.values():
                rows[group.positions] = self._embed_group(group.sequences)
        return rows

    def _rows(self, count: int) -> torch.Tensor:
        """An uninitialised ``[count, hidden size]`` tensor for head inputs."""
        return torch.empty(count, self.head.weight.shape[-1], dtype=self.model.dtype, device=self.device)

    def _embed_group(self, sequences: list[list[int]]) -> torch.Tensor:
        shared = shared_prefix_length(sequences) if self.share_prefix and len(sequences) > 1 else 0
        prefix = self._prefill(sequences[0][:shared]) if shared else None
        rows = self._rows(len(sequences))
        for chunk in length_batches([len(sequence) - shared for sequence in sequences], self.batch_size):
            ids, mask = right_pad([sequences[index][shared:] for index in chunk], self._pad_id, self.device)
            cache = repeat_cache(prefix, len(chunk), self.model.config) if prefix else None
            rows[chunk] = last_hidden_states(self.model, ids, mask, past_key_values=cache, prefix_length=shared)
        return rows

    def _prefill(self, ids: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The key/value tensors of the shared prefix, computed once for the group."""
        backbone, _ = backbone_and_head(self.model)
        cache = DynamicCache(config=self.model.config)
        backbone(input_ids=torch.tensor([ids], device=self.device), use_cache=True, **{CACHE_KEYWORD: cache})
        return [(layer.keys, layer.values) for layer in cache.layers]


def length_batches(lengths: Sequence[int], max_rows: int, max_padding: float = MAX_PADDING) -> list[list[int]]:
    """Indices grouped into batches of similar length: sorted by length, a batch grows while it has at most
    ``max_rows`` rows and its padding stays within ``max_padding`` of its real tokens.

    On a CPU a batch costs about its padded token count, so one long code among short ones would multiply the
    cost of the batch, and the codes of one problem often differ in length by 10× (MBPP's own solutions do).
    """
    batches: list[list[int]] = []
    tokens = 0
    for index in sorted(range(len(lengths)), key=lambda position: lengths[position]):
        batch = batches[-1] if batches else []
        if batch and len(batch) < max_rows and (len(batch) + 1) * lengths[index] <= (1 + max_padding) * (
                tokens + lengths[index]):
            batch.append(index)
            tokens += lengths[index]
        else:
            batches.append([index])
            tokens = lengths[index]
    return batches


def shared_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Tokens every sequence starts with, leaving at least one token of each to run (its score is read there)."""
    shortest = min(len(sequence) for sequence in sequences)
    length = 0
    while length < shortest - 1 and all(sequence[length] == sequences[0][length] for sequence in sequences):
        length += 1
    return length


def repeat_cache(prefix: list[tuple[torch.Tensor, torch.Tensor]], rows: int, config: Any) -> DynamicCache:
    """A fresh cache holding the prefix for each of ``rows`` rows (a forward pass appends to its cache)."""
    return DynamicCache(ddp_cache_data=[(keys.expand(rows, -1, -1, -1), values.expand(rows, -1, -1, -1))
                                        for keys, values in prefix], config=config)


# ------------------------------------------------------------------------------------------ save / load


def save_verifier(model: PreTrainedModel, tokenizer: Any, out: str | os.PathLike[str],
                  info: Mapping[str, Any]) -> None:
    """Write the model, tokenizer and ``verifier.json`` into ``out``, so that no killed run leaves a verifier that
    loads half-written.

    Everything is written to a temporary folder inside ``out`` first, then moved into ``out`` file by file with
    ``verifier.json`` last: `read_info` (every load) needs ``verifier.json``, and an earlier ``verifier.json`` is
    removed before anything is replaced. ``out`` keeps other entries (the training checkpoints).
    """
    target = Path(out).expanduser()
    scratch = target / f".final.{os.getpid()}.tmp"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        with quiet_transformers():
            model.save_pretrained(scratch)
            tokenizer.save_pretrained(scratch)
        write_json(scratch / INFO_FILE, {"format": VERIFIER_FORMAT, **info})
        (target / INFO_FILE).unlink(missing_ok=True)
        for entry in sorted(scratch.iterdir(), key=lambda item: item.name == INFO_FILE):
            os.replace(entry, target / entry.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def read_info(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``verifier.json`` of a saved verifier; ConfigError naming ``path`` when it is not one."""
    info_path = Path(path).expanduser() / INFO_FILE
    if not info_path.is_file():
        raise ConfigError(f"{path} is not a mucode verifier (no {INFO_FILE}); train one with `mucode verifier train`")
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise DataError(f"{info_path}: cannot read ({error})") from None
    if not isinstance(info, dict) or info.get("format") != VERIFIER_FORMAT:
        found = info.get("format") if isinstance(info, dict) else None
        raise ConfigError(f"{path} is not a mucode verifier of this version ({INFO_FILE} format {found!r}, "
                          f"expected {VERIFIER_FORMAT!r})")
    return info



