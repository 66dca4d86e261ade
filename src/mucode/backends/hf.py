"""Transformers backend: a local Hugging Face model directory or a GGUF file, on CPU or GPU, with LoRA adapters.

Why it exists next to the llama.cpp backend: it runs the exact weights a fine-tune produces (an HF directory,
optionally a PEFT adapter on top) without an export step, and it uses a GPU when there is one.

A GGUF file is dequantised by transformers (slow: ~30 s for a 0.5B model), so the result is saved once with
``save_pretrained`` under ``<MUCODE_HOME or ~/.cache/mucode>/hf-cache/<sha256 of the file>/`` and loaded from
there afterwards.

Sampling is reproducible per completion: completion j of conversation i draws its tokens from its own random
stream seeded from (seed, i, j) (see `_RowSampler`), so it does not depend on the batch it ran in — up to
floating-point differences between batched and unbatched kernels, which can move a draw across a boundary.
"""

from __future__ import annotations

import inspect
import os
import shutil
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

import torch
from jinja2 import TemplateError
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    DynamicCache,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)
from transformers import logging as transformers_logging
from transformers.models.llama.modeling_llama import LlamaModel

from mucode.backends.base import (
    Backend,
    Completion,
    Conversation,
    GenerationStats,
    SamplingParams,
    sample_seed,
    truncate_at_stop,
)
from mucode.errors import BackendError, ConfigError
from mucode.models import ModelRef, model_home, resolve_model
from mucode.runs import file_sha256

#: Packages whose versions a run of this stack records (`mucode.runs.versions`): they determine what a model
#: trained or scored here computes.
HF_PACKAGES = ("torch", "transformers", "peft", "accelerate")
DTYPES = {"fp32": "float32", "float32": "float32", "bf16": "bfloat16", "bfloat16": "bfloat16",
          "fp16": "float16", "float16": "float16"}
#: The keyword a KV cache goes by in model calls and ``generate``: transformers 5.25 renamed ``past_key_values``
#: to ``cache`` (the old name warns there and is dropped in 5.40); older versions know only ``past_key_values``.
CACHE_KEYWORD = "cache" if "cache" in inspect.signature(LlamaModel.forward).parameters else "past_key_values"
_MARK = "MUCODE_END_OF_TURN_PROBE"  # assistant text whose rendered suffix is the end-of-turn token
# End-of-text markers of common chat models; like llama.cpp's end-of-generation list, any that the vocabulary
# has as a special token also ends a turn (GGUF configs name one eos, e.g. Qwen's <|im_end|> but not <|endoftext|>).
END_MARKERS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "<|end|>", "<end_of_turn>", "<EOT>",
               "</s>")


@dataclass(frozen=True)
class _Row:
    """One completion to produce: sample ``sample`` of conversation ``conversation``."""

    conversation: int
    sample: int
    prompt: list[int]
    seed: int


@dataclass(kw_only=True)
class HFBackend(Backend):
    """Generation with transformers ``generate``; see the module docstring and docs/backends.md ("hf").

    ``device``: "auto" (cuda when available, else cpu), "cpu", "cuda", "cuda:1", ...
    ``dtype``: "auto" (bf16 on GPUs that support it, else fp16; on CPU bf16 when a quick matmul probe shows it
    faster than fp32), "fp32", "bf16" or "fp16".
    ``adapter``: a PEFT LoRA adapter directory, merged into the weights at load time.
    ``batch_size``: rows (conversation × sample) decoded together.
    ``cache_dir``: where dequantised GGUF models are kept (default ``<MUCODE_HOME>/hf-cache``).
    """

    device: str = "auto"
    dtype: str = "auto"
    adapter: str | None = None
    batch_size: int = 16
    cache_dir: str | None = None
    _model: object = field(init=False, repr=False, default=None)
    _tokenizer: object = field(init=False, repr=False, default=None)
    _stop_ids: list[int] = field(init=False, repr=False, default_factory=list)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ConfigError(f"hf backend batch_size must be >= 1, got {self.batch_size}")
        self.name = "hf"
        self.device = pick_device(self.device)
        torch_dtype = getattr(torch, pick_dtype(self.dtype, self.device))
        self.dtype = str(torch_dtype).removeprefix("torch.")
        source = locate_model(self.model)
        directory = source.path if source.format == "hf" else dequantised_dir(source, self.cache_dir)
        self._tokenizer = load_tokenizer(directory)
        self._model = load_model(directory, torch_dtype, self.device, self.adapter)
        self._stop_ids = end_of_turn_ids(self._tokenizer, self._model.generation_config)
        self._model.generation_config = _neutral_generation_config(self._model.generation_config, self._stop_ids)
        self.model_id = source.model_id + (_adapter_id(Path(self.adapter)) if self.adapter else "")

    def generate(self, conversations: Sequence[Conversation], params: SamplingParams,
                 seeds: Sequence[int] | None = None) -> list[list[Completion]]:
        """For each conversation ``params.n`` completions. Greedy decoding runs each conversation once and
        repeats the result; ``last_stats`` counts the tokens actually computed."""
        if self._model is None:
            raise BackendError("hf backend is closed")
        start = time.perf_counter()
        prompts = [self._encode(conversation) for conversation in conversations]
        samples = 1 if params.greedy else params.n
        rows = [_Row(i, j, prompt, sample_seed(params, seeds, i, j)) for i, prompt in enumerate(prompts)
                for j in range(samples)]
        rows.sort(key=lambda row: len(row.prompt))  # similar lengths together: less padding
        done: dict[tuple[int, int], Completion] = {}
        for chunk in _chunks(rows, self.batch_size):
            done.update(self._generate_chunk(chunk, params))
        self.last_stats = GenerationStats(prompt_tokens=sum(c.prompt_tokens for c in done.values()),
                                          completion_tokens=sum(c.completion_tokens for c in done.values()),
                                          seconds=time.perf_counter() - start)
        return [[done[i, j % samples] for j in range(params.n)] for i in range(len(conversations))]

    def close(self) -> None:
        """Drop the weights (and the GPU memory they hold)."""
        self._model = self._tokenizer = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _encode(self, conversation: Conversation) -> list[int]:
        """Prompt token ids: the model's chat template with the assistant turn opened (it adds BOS if needed)."""
        text = self._tokenizer.apply_chat_template(list(conversation), tokenize=False, add_generation_prompt=True)
        return self._tokenizer(text, add_special_tokens=False).input_ids

    def _generate_chunk(self, chunk: list[_Row], params: SamplingParams) -> dict[tuple[int, int], Completion]:
        input_ids, attention_mask = left_pad([row.prompt for row in chunk], self._pad_id(), self.device)
        config = GenerationConfig(max_new_tokens=params.max_tokens, do_sample=False, eos_token_id=self._stop_ids,
                                  pad_token_id=self._stop_ids[0], stop_strings=list(params.stop) or None)
        processors = LogitsProcessorList() if params.greedy else _sampling_processors(params, chunk, self.device)
        start = time.perf_counter()
        with torch.inference_mode():
            cache = self._shared_prefill(chunk, input_ids, attention_mask)
            output = self._model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config,
                                          logits_processor=processors, **{CACHE_KEYWORD: cache},
                                          tokenizer=self._tokenizer if params.stop else None)
        seconds = time.perf_counter() - start
        new_tokens = output[:, input_ids.shape[1]:].tolist()
        return {(row.conversation, row.sample): self._completion(row.prompt, tokens, params.stop, seconds)
                for row, tokens in zip(chunk, new_tokens, strict=True)}

    def _shared_prefill(self, chunk: list[_Row], input_ids: torch.Tensor,
                        attention_mask: torch.Tensor) -> DynamicCache | None:
        """The KV cache of each distinct prompt, computed once and copied to every row that shares it (the n
        samples of a conversation), for all but the last prompt token, which `generate` feeds itself. Without it
        each sample recomputes its prompt: 16 samples of a 221-token prompt cost 15× the prefill of one.
        None when no two rows share a prompt (then `generate` prefills as usual)."""
        slots: dict[tuple[int, ...], int] = {}
        row_slot = [slots.setdefault(tuple(row.prompt), len(slots)) for row in chunk]
        if len(slots) == len(chunk) or input_ids.shape[1] < 2:
            return None
        firsts = torch.tensor([row_slot.index(slot) for slot in range(len(slots))], device=input_ids.device)
        ids, mask = input_ids[firsts, :-1], attention_mask[firsts, :-1]
        cache = DynamicCache(config=self._model.config)
        self._model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                    use_cache=True, logits_to_keep=1, **{CACHE_KEYWORD: cache})
        cache.reorder_cache(torch.tensor(row_slot, device=input_ids.device))
        return cache

    def _completion(self, prompt: list[int], tokens: list[int], stop: Sequence[str], seconds: float) -> Completion:
        """Cut the generated ids at the first end-of-turn id (rows that finished early are padded with it) and the
        text at the first stop string; ``completion_tokens`` counts the ids before the end-of-turn id."""
        length = next((k for k, token in enumerate(tokens) if token in self._stop_ids), len(tokens))
        text, hit_stop = truncate_at_stop(self._tokenizer.decode(tokens[:length], skip_special_tokens=True), stop)
        finished = hit_stop or length < len(tokens)
        return Completion(text=text, prompt_tokens=len(prompt), completion_tokens=length,
                          finish_reason="stop" if finished else "length", seconds=seconds)

    def _pad_id(self) -> int:
        """Left-padding id: the tokenizer's pad token, else an end-of-turn id (masked out either way)."""
        pad = self._tokenizer.pad_token_id
        return pad if pad is not None else self._stop_ids[0]


def locate_model(spec: str) -> ModelRef:
    """A registry name, a .gguf file or an HF directory (`mucode.models.resolve_model`); GGUF files outside the
    registry are hashed here (~1 s for 500 MB) because the digest keys the dequantised cache."""
    ref = resolve_model(spec)
    if ref.format == "gguf" and not ref.sha256:
        ref = replace(ref, sha256=file_sha256(ref.path))
    return ref


def default_cache_root() -> Path:
    """``<MUCODE_HOME or ~/.cache/mucode>/hf-cache``, next to the registry's model files."""
    return model_home() / "hf-cache"


def dequantised_dir(source: ModelRef, cache_dir: str | None = None) -> Path:
    """The HF directory holding ``source`` (a GGUF file) dequantised to fp32, converted on first use.

    Written to a temporary sibling and renamed, so a crash or a concurrent conversion never leaves half a model.
    """
    target = (Path(cache_dir) if cache_dir else default_cache_root()) / (source.sha256 or file_sha256(source.path))
    if (target / "config.json").is_file():
        return target

    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        where = {"pretrained_model_name_or_path": source.path.parent, "gguf_file": source.path.name}
        AutoTokenizer.from_pretrained(**where).save_pretrained(scratch)
        model = AutoModelForCausalLM.from_pretrained(**where, dtype=torch.float32, **dense_gguf_options())
        model.save_pretrained(scratch)
        scratch.rename(target)
    except OSError:
        if not (target / "config.json").is_file():  # not a lost race with another process
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return target


def dense_gguf_options() -> dict:
    """Recent transformers keep GGUF weights in quantised blocks by default and then refuse to save the model;
    ask for plain dense weights (older versions always dequantise and have no ``GgufConfig``)."""
    try:
        from transformers import GgufConfig
    except ImportError:
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


def load_tokenizer(directory: Path):
    tokenizer = AutoTokenizer.from_pretrained(directory)
    if not tokenizer.chat_template:
        raise BackendError(f"{directory} has no chat template (tokenizer_config.json / chat_template.jinja)")
    return tokenizer


def load_model(directory: Path, dtype: torch.dtype, device: str, adapter: str | None):
    """A causal LM in eval mode on ``device``, with ``adapter`` (a PEFT folder) merged in when given."""
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype)
    if adapter:
        model = _merge_adapter(model, Path(adapter))
    return model.to(device).eval()


def _merge_adapter(model, adapter: Path):
    """Merge a PEFT adapter into the weights, so generation runs at the base model's speed."""
    if not (adapter / "adapter_config.json").is_file():
        raise BackendError(f"{adapter} is not a PEFT adapter directory (no adapter_config.json)")
    try:
        from peft import PeftModel
    except ImportError as error:
        raise ConfigError(f"LoRA adapters need peft: {error} (install it with `pip install mucode[hf]`)") from error
    with quiet_peft():
        return PeftModel.from_pretrained(model, adapter).merge_and_unload()


@contextmanager
def quiet_peft() -> Iterator[None]:
    """Silences the FutureWarning PEFT triggers by asking a model ``is_gradient_checkpointing``, an attribute
    transformers 5 renamed: it is about PEFT's code, and the user can do nothing about it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """transformers' warnings and its loading/saving progress bars off (our commands print their own output)."""
    verbosity, bars = transformers_logging.get_verbosity(), transformers_logging.is_progress_bar_enabled()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        transformers_logging.set_verbosity(verbosity)
        if bars:
            transformers_logging.enable_progress_bar()


def disable_dropout(model: torch.nn.Module) -> None:
    """Dropout off everywhere: config fields (read by attention at run time) and Dropout modules."""
    for name in list(vars(model.config)):
        if "dropout" in name and isinstance(getattr(model.config, name), float):
            setattr(model.config, name, 0.0)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0


def _adapter_id(adapter: Path) -> str:
    weights = next((adapter / name for name in ("adapter_model.safetensors", "adapter_model.bin")
                    if (adapter / name).is_file()), None)
    return f"+{adapter.resolve().name}" + (f"@{file_sha256(weights)[:12]}" if weights else "")


def end_of_turn_ids(tokenizer, generation_config) -> list[int]:
    """Ids that end an assistant turn: the generation config's eos ids, the tokenizer's eos, the special token
    the chat template writes right after an assistant message (e.g. ``<|im_end|>``), and the `END_MARKERS` the
    vocabulary has as added tokens."""
    eos = generation_config.eos_token_id
    ids = list(eos) if isinstance(eos, list | tuple) else [eos]
    ids += [tokenizer.eos_token_id, template_end_id(tokenizer)]
    added = tokenizer.get_added_vocab()
    ids += [added.get(marker) for marker in END_MARKERS]
    unique = list(dict.fromkeys(i for i in ids if i is not None))
    if not unique:
        raise BackendError("the model defines no end-of-turn token (no eos_token_id, none in the chat template)")
    return unique


def template_end_id(tokenizer) -> int | None:
    messages = [{"role": "user", "content": "x"}, {"role": "assistant", "content": _MARK}]
    try:
        rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    except TemplateError:
        return None
    _, _, tail = rendered.partition(_MARK)
    ids = tokenizer(tail.lstrip(), add_special_tokens=False).input_ids
    special = set(tokenizer.get_added_vocab().values()) | set(tokenizer.all_special_ids)
    return ids[0] if ids and ids[0] in special else None


def _neutral_generation_config(original, stop_ids: list[int]):
    """A generation config with only token ids: `generate` fills every option we leave unset from the model's
    own config (e.g. Qwen's repetition_penalty 1.05, top_k 20), which would make results depend on the model
    directory rather than on `SamplingParams`."""

    return GenerationConfig(bos_token_id=original.bos_token_id, eos_token_id=stop_ids, pad_token_id=stop_ids[0])


def left_pad(prompts: list[list[int]], pad_id: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask, padded on the left so every row's next token is in the last column."""
    width = max(len(prompt) for prompt in prompts)
    ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    return ids, mask


def _chunks(rows: list[_Row], size: int) -> Iterator[list[_Row]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def _sampling_processors(params: SamplingParams, chunk: list[_Row], device: str):
    processors = LogitsProcessorList([TemperatureLogitsWarper(params.temperature)])
    if params.top_p < 1:
        processors.append(TopPLogitsWarper(params.top_p))
    processors.append(_RowSampler([row.seed for row in chunk], device))
    return processors


class _RowSampler(LogitsProcessor):
    """Sampling with one random stream per row, so a row's draw depends only on its own seed and tokens
    (`generate`'s own sampling uses one stream for the whole batch). Each row draws one uniform number and takes
    the token where it falls in the cumulative distribution (inverse-CDF); the returned scores keep only that
    token, and `generate` runs greedy on them. One number per row and step keeps this cheap at large vocabularies
    (per-token Gumbel noise cost ~30 ms a step for 16 rows × 152k tokens)."""

    def __init__(self, seeds: list[int], device: str) -> None:
        self._generators = [torch.Generator(device=device).manual_seed(seed) for seed in seeds]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        uniform = torch.cat([torch.rand(1, generator=generator, device=scores.device)
                             for generator in self._generators])
        cdf = scores.float().softmax(dim=-1).cumsum(dim=-1)
        # 1 - u lies in (0, 1], so the chosen token always has a non-zero probability.
        target = (1 - uniform).unsqueeze(1) * cdf[:, -1:]
        choice = torch.searchsorted(cdf, target).clamp_(max=scores.shape[1] - 1)
        return torch.full_like(scores, -torch.inf).scatter_(1, choice, 0.0)


def pick_device(device: str) -> str:
    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_dtype(dtype: str, device: str) -> str:
    """A torch dtype name. "auto": bf16/fp16 on GPU; on CPU bf16 only where it is measurably faster (CPUs with
    native bf16 run batched decoding ~1.4× faster; others emulate it and run slower than fp32)."""
    if dtype != "auto":
        try:
            return DTYPES[dtype]
        except KeyError:
            raise ConfigError(f"hf backend dtype must be auto or one of {', '.join(DTYPES)}; got {dtype!r}") from None
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "bfloat16" if device == "cpu" and cpu_bf16_is_faster() else "float32"


@cache
def cpu_bf16_is_faster() -> bool:
    """Time a decoding-sized matmul (16 rows × a 0.5B model's MLP) in bf16 and fp32 (~0.15 s, once a process)."""
    def best_seconds(dtype: torch.dtype) -> float:
        left, right = torch.randn(16, 896, dtype=dtype), torch.randn(896, 4864, dtype=dtype)
        times = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(4):
                left @ right
            times.append(time.perf_counter() - start)
        return min(times)

    return best_seconds(torch.bfloat16) < 0.8 * best_seconds(torch.float32)
