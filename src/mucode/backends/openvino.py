"""GGUF models through OpenVINO GenAI: continuous batching with prefix caching, the fastest CPU engine here.

OpenVINO GenAI reads GGUF files itself (``ContinuousBatchingPipeline(path.gguf)`` builds the OpenVINO model,
tokenizer and detokenizer from the file), but only some tensor types: F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K and
Q6_K. The official "Q4_K_M" Qwen2.5-Coder files are mostly Q5_0, so the model is first requantised by llama.cpp
(`mucode.models.pull.requantize`, a few seconds) to ``weights``: ``int8`` (Q8_0, the default) or ``int4``
(Q4_0). The result is cached under ``<MUCODE_HOME>/openvino/<sha256 of the source>/`` (written under a
temporary name and renamed, so a crash never leaves a half file), so each source file is converted once.

Why not optimum-intel's exporter (HF folder → IR): it pins transformers < 5.6 and torchvision, which pull
another torch build, and the IR it makes holds the same int8 weights. Fine-tuned generators of the pipeline
reach this backend as the GGUF that the ``export`` stage writes (``export_ftype = "q8_0"``).

Every sample is its own request with its own seed (``derive_seed(seed, 0, j)``); samples of one prompt share
its KV through prefix caching, so the prompt is computed once. Sampled tokens depend on the batch only
through floating-point sums (see docs/backends.md).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import ClassVar

import numpy as np

from mucode.backends.base import (
    Backend,
    Completion,
    Conversation,
    Finished,
    GenerationStats,
    Request,
    SamplingParams,
    sample_seed,
    truncate_at_stop,
)
from mucode.errors import BackendError, ConfigError, check_positive
from mucode.models.cache import model_home
from mucode.models.resolve import ModelRef, resolve_gguf
from mucode.runs import file_sha256

#: ``weights`` → the llama.cpp type the GGUF is requantised to before OpenVINO reads it.
WEIGHTS = {"int8": "Q8_0", "int4": "Q4_0"}
DEFAULT_WEIGHTS = "int8"


@dataclass
class _Pending:
    """One submitted request: its per-sample generation handles and when it was submitted."""

    request: Request
    prompt_tokens: int
    handles: list


@dataclass
class OpenVINOBackend(Backend):
    """Continuous batching on OpenVINO's CPU plugin. ``cache_gb``: the paged KV cache in GB (the 0.5B needs at
    most 12 kB a token: 4 GB hold 32 searches × 5 samples × 2,000 tokens; when full, the engine preempts).

    ``weights``: ``int8`` (default) or ``int4``: the source GGUF is requantised to Q8_0 or Q4_0, whatever its
    own types (the reader takes only some, and one rule makes the model id say what runs). ``n_threads``:
    inference threads (default: OpenVINO's choice, all cores). ``max_batched_tokens``: tokens one engine step
    may compute (every running sequence's next token, then prefill chunks); on 2 cores 1024 ran 10% faster than
    256 (80 HumanEval samples, 248 vs 226 tok/s).
    """

    weights: str = DEFAULT_WEIGHTS
    cache_gb: int = 4
    n_threads: int | None = None
    max_batched_tokens: int = 1024

    _pending: dict[int, _Pending] = field(init=False, repr=False, default_factory=dict)
    continuous: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self.name = "openvino"
        try:
            import openvino_genai
        except ImportError as error:
            raise ConfigError("the openvino backend needs openvino-genai (pip install 'mucode[openvino]')") \
                from error
        if self.weights not in WEIGHTS:
            raise ConfigError(f"openvino weights must be one of {', '.join(WEIGHTS)}, got {self.weights!r}")
        check_positive("cache_gb", self.cache_gb)
        self._og = openvino_genai
        ref = resolve_gguf(self.model, "openvino")
        path = converted_gguf(ref, self.weights)
        self.model_id = f"{ref.model_id}+{WEIGHTS[self.weights].lower()}"
        scheduler = openvino_genai.SchedulerConfig()
        scheduler.cache_size = self.cache_gb
        scheduler.enable_prefix_caching = True
        scheduler.max_num_batched_tokens = self.max_batched_tokens
        properties = {"INFERENCE_NUM_THREADS": self.n_threads} if self.n_threads else {}
        try:
            self._pipe = openvino_genai.ContinuousBatchingPipeline(str(path), scheduler, "CPU", properties)
        except RuntimeError as error:
            raise BackendError(f"OpenVINO GenAI could not load {path}: {_first_line(error)}") from error
        self._tokenizer = self._pipe.get_tokenizer()
        self._next_id = 0

    # ------------------------------------------------------------------ request level

    def submit(self, request: Request) -> int:
        seeds = [sample_seed(request.params, [request.seed], 0, j) for j in range(request.params.n)]
        return self._enqueue(request, seeds)

    @property
    def busy(self) -> bool:
        return bool(self._pending)

    def step(self) -> list[Finished]:
        """One engine step (a decode for every running sequence, a prefill chunk for new ones)."""
        if self._pipe.has_non_finished_requests():
            self._pipe.step()
        finished = [ticket for ticket, pending in self._pending.items()
                    if all(not _running(self._og, handle) for handle in pending.handles)]
        return [(ticket, self._collect(self._pending.pop(ticket))) for ticket in finished]

    # ------------------------------------------------------------------ blocking

    def generate(self, conversations: Sequence[Conversation], params: SamplingParams,
                 seeds: Sequence[int] | None = None) -> list[list[Completion]]:
        start = time.perf_counter()
        tickets = [self._enqueue(Request(conversation, params, 0),
                                 [sample_seed(params, seeds, index, j) for j in range(params.n)])
                   for index, conversation in enumerate(conversations)]
        done: dict[int, list[Completion]] = {}
        while len(done) < len(tickets):
            done.update(self.step())
        seconds = time.perf_counter() - start
        results = [[replace(c, seconds=seconds) for c in done[ticket]] for ticket in tickets]
        self.last_stats = GenerationStats(sum(c.prompt_tokens for row in results for c in row),
                                          sum(c.completion_tokens for row in results for c in row), seconds)
        return results

    def tokenize_chat(self, conversation: Conversation) -> list[int]:
        """The conversation rendered with the model's chat template (generation prompt added), as tokens."""
        rendered = self._tokenizer.apply_chat_template(list(conversation), add_generation_prompt=True)
        encoded = self._tokenizer.encode(rendered, add_special_tokens=False)
        return [int(token) for token in encoded.input_ids.data[0]]

    def close(self) -> None:
        self._pending.clear()
        self._pipe = None
        self._tokenizer = None

    # ------------------------------------------------------------------ helpers

    def _enqueue(self, request: Request, seeds: list[int]) -> int:
        """Add one engine request per sample, sample j seeded with ``seeds[j]``; the ticket `step` reports."""
        import openvino

        ticket = next(self._tickets)
        tokens = self.tokenize_chat(request.conversation)
        prompt = openvino.Tensor(np.asarray([tokens], dtype=np.int64))
        handles = []
        for seed in seeds:
            handles.append(self._pipe.add_request(self._next_id, prompt, self._config(request.params, seed)))
            self._next_id += 1
        self._pending[ticket] = _Pending(request, len(tokens), handles)
        return ticket

    def _config(self, params: SamplingParams, seed: int):
        config = self._og.GenerationConfig()
        config.max_new_tokens = params.max_tokens
        config.do_sample = not params.greedy
        if not params.greedy:
            config.temperature = params.temperature
            config.top_p = params.top_p
            config.top_k = 0
        config.rng_seed = seed
        if params.stop:
            config.stop_strings = set(params.stop)
            config.include_stop_str_in_output = False
        return config

    def _collect(self, pending: _Pending) -> list[Completion]:
        completions = []
        for handle in pending.handles:
            outputs = handle.read_all()
            if len(outputs) != 1:
                raise BackendError(f"OpenVINO GenAI returned {len(outputs)} outputs for one sample")
            output = outputs[0]
            tokens = list(output.generated_ids)
            text, hit_stop = truncate_at_stop(self._tokenizer.decode(tokens, skip_special_tokens=True),
                                              pending.request.params.stop)
            length = output.finish_reason == self._og.GenerationFinishReason.LENGTH and not hit_stop
            completions.append(Completion(text, pending.prompt_tokens, len(tokens),
                                          "length" if length else "stop"))
        return completions


def _running(og, handle) -> bool:
    return handle.get_status() == og.GenerationStatus.RUNNING


def _first_line(error: BaseException) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def converted_gguf(ref: ModelRef, weights: str, home: str | os.PathLike[str] | None = None) -> Path:
    """The GGUF OpenVINO loads for ``ref`` with ``weights``: requantised once into the cache, keyed by the source's
    sha256 (computed for unregistered files), written atomically."""
    digest = ref.sha256 or file_sha256(ref.path)
    ftype = WEIGHTS[weights]
    folder = model_home(home) / "openvino" / digest
    target = folder / f"{ref.path.stem}.{ftype.lower()}.gguf"
    if target.is_file():
        return target
    from mucode.models.pull import requantize

    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".convert-") as scratch:
        made = Path(scratch) / target.name
        requantize(ref.path, made, ftype)
        os.chmod(made, 0o644)
        os.replace(made, target)
    return target
