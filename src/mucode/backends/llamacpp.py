"""llama.cpp backend (GGUF, via llama-cpp-python): the CPU default, with true batched decoding.

llama-cpp-python's high-level API decodes one sequence at a time. Here many sequences advance together:
each prompt is prefilled once and its KV cells are copied to the prompt's other samples
(`llama_memory_seq_cp`), and every step decodes the next token of all active sequences
in one `llama_decode` call, each with its own seeded sampler chain. Finished sequences free their slot and
waiting prompts are admitted (continuous batching). Loading, tokenization and the model's own chat template
(the GGUF's Jinja template, rendered as transformers renders it) come from llama-cpp-python.
"""

from __future__ import annotations

import ctypes
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

from mucode.backends.base import (
    Backend,
    Completion,
    Conversation,
    GenerationStats,
    SamplingParams,
    sample_seed,
)
from mucode.errors import BackendError, ConfigError
from mucode.models.resolve import resolve_gguf

KV_LAYOUTS = ("auto", "unified", "streams")
#: ``kv_layout="auto"`` uses one unified KV pool up to this prompt length and one stream per slot beyond it.
UNIFIED_MAX_PROMPT = 512


@dataclass
class _Request:
    """A prompt and the sample indices it still has to produce in one group of sequences."""

    conversation: int
    tokens: list[int]
    samples: list[int]


@dataclass
class _Sequence:
    """One sequence being decoded: its slot (llama seq id), sampler, position and output so far."""

    seq_id: int
    conversation: int
    sample: int
    sampler: object
    position: int
    prompt: list[int]
    next_token: int = -1
    tokens: list[int] = field(default_factory=list)
    text: bytearray = field(default_factory=bytearray)


@dataclass
class LlamaCppBackend(Backend):
    """GGUF models through llama.cpp. ``parallel`` sequences decode together (more: higher throughput).

    ``kv_layout``: ``unified`` (one KV pool: samples share their prompt's cells, but every token attends over
    the whole pool), ``streams`` (one KV stream per slot: attention reads only its own sequence) or ``auto``:
    unified while the longest prompt of a call is at most `UNIFIED_MAX_PROMPT` tokens, streams beyond. Measured
    on 2 cores (Q4_0, 32 slots): 8 MBPP prompts × 8 samples, 127 vs 80 tok/s for unified; 32 distinct
    conversations of ~700 tokens, 140 vs 230 s for streams; 32 distinct ~250-token prompts, a tie.
    """

    parallel: int = 32
    n_threads: int | None = None
    n_batch: int = 512
    kv_layout: str = "auto"
    verbose: bool = False

    def __post_init__(self) -> None:
        self.name = "llamacpp"
        try:
            import llama_cpp
        except ImportError as error:
            raise ConfigError("the llamacpp backend needs llama-cpp-python (pip install mucode[llamacpp])") \
                from error
        self._lc = llama_cpp
        ref = resolve_gguf(self.model, "llamacpp")
        path = str(ref.path)
        self.model_id = ref.model_id
        threads = self.n_threads or os.cpu_count() or 1
        self._model = _load_model(llama_cpp, path, verbose=self.verbose)
        self._threads = threads
        self._formatter = _chat_formatter(self._model)
        self._vocab = self._model.vocab
        if self.kv_layout not in KV_LAYOUTS:
            raise ConfigError(f"kv_layout must be one of {', '.join(KV_LAYOUTS)}, got {self.kv_layout!r}")
        self._ctx = None
        self._ctx_size = 0
        self._ctx_unified = False
        self._batch = None
        self._cached: list[list[int]] = []  # per slot: the tokens whose KV the slot still holds
        self._prefilled = 0

    # ------------------------------------------------------------------ public

    def generate(self, conversations: Sequence[Conversation], params: SamplingParams,
                 seeds: Sequence[int] | None = None) -> list[list[Completion]]:
        start = time.perf_counter()
        prompts = [self.tokenize_chat(conversation) for conversation in conversations]
        requests = self._requests(prompts, params.n)
        self._ensure_context(max(len(p) for p in prompts) if prompts else 0, params)
        outputs: list[list[Completion | None]] = [[None] * params.n for _ in prompts]
        self._prefilled = 0
        produced = self._run(requests, params, seeds, outputs)
        seconds = time.perf_counter() - start
        results = [[_with_seconds(c, seconds) for c in row] for row in outputs]
        self.last_stats = GenerationStats(sum(len(p) for p in prompts) * params.n, produced, seconds,
                                          self._prefilled)
        return results

    def tokenize_chat(self, conversation: Conversation) -> list[int]:
        """The conversation rendered with the model's chat template (generation prompt added), as tokens."""
        rendered = self._formatter(messages=list(conversation))
        return self._model.tokenize(rendered.prompt.encode(), add_bos=not rendered.added_special, special=True)

    def close(self) -> None:
        lc = self._lc
        if self._batch is not None:
            lc.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx is not None:
            lc.llama_free(self._ctx)
            self._ctx = None
        if getattr(self, "_model", None) is not None:
            self._model.close()
            self._model = None

    # ------------------------------------------------------------------ scheduling

    def _requests(self, prompts: list[list[int]], n: int) -> list[_Request]:
        """Split each prompt's n samples into groups that fit the parallel slots."""
        requests = []
        for index, tokens in enumerate(prompts):
            for first in range(0, n, self.parallel):
                requests.append(_Request(index, tokens, list(range(first, min(n, first + self.parallel)))))
        return requests

    def _ensure_context(self, longest_prompt: int, params: SamplingParams) -> None:
        """A context whose KV cache holds every slot at its longest; recreated only when it must grow."""
        lc = self._lc
        per_slot = (longest_prompt + params.max_tokens + 1 + 255) // 256 * 256  # llama.cpp pads each stream to 256
        need = self.parallel * per_slot
        unified = self._unified(longest_prompt)
        if self._ctx is not None and need <= self._ctx_size and unified == self._ctx_unified:
            return
        if self._ctx is not None:
            lc.llama_free(self._ctx)
            lc.llama_batch_free(self._batch)
        context = lc.llama_context_default_params()
        context.n_ctx = need
        context.n_batch = context.n_ubatch = max(self.n_batch, self.parallel)
        context.n_seq_max = self.parallel
        context.n_threads = context.n_threads_batch = self._threads
        context.kv_unified = unified
        context.no_perf = True
        self._ctx = lc.llama_init_from_model(self._model.model, context)
        if not self._ctx:
            raise BackendError(f"llama.cpp could not create a context of {need} tokens for {self.model_id}")
        self._ctx_size = need
        self._ctx_unified = unified
        self._cached = [[] for _ in range(self.parallel)]
        self._batch = lc.llama_batch_init(max(self.n_batch, self.parallel), 0, self.parallel)

    def _unified(self, longest_prompt: int) -> bool:
        if self.kv_layout == "auto":
            return longest_prompt <= UNIFIED_MAX_PROMPT
        return self.kv_layout == "unified"

    def _run(self, requests: list[_Request], params: SamplingParams, seeds: Sequence[int] | None,
             outputs: list[list[Completion | None]]) -> int:
        """Decode all requests with continuous batching; fill ``outputs``; return tokens generated."""
        free = list(range(self.parallel))
        active: dict[int, _Sequence] = {}
        pending = list(requests)
        produced = 0
        while pending or active:
            while pending and len(pending[0].samples) <= len(free):
                self._admit(pending.pop(0), free, active, params, seeds)
            for sequence in self._finished(active, params):
                self._retire(sequence, params, outputs, free, active)
            if active:
                produced += self._step(active, params)
        return produced

    def _admit(self, request: _Request, free: list[int], active: dict[int, _Sequence],
               params: SamplingParams, seeds: Sequence[int] | None) -> None:
        """Prefill the prompt once into the first slot, copy it to the others, sample first tokens.

        The first slot is the free one whose KV already holds the longest prefix of the prompt (the previous
        turn of the same episode leaves its prompt and reply there), so only the new tail is prefilled.
        """
        lc = self._lc
        tokens = request.tokens
        reuse = [min(_common_prefix(self._cached[slot], tokens), len(tokens) - 1) for slot in free]
        first = free.pop(max(range(len(free)), key=reuse.__getitem__))
        kept = max(reuse)
        others = sorted(free, key=lambda slot: len(self._cached[slot]))[:len(request.samples) - 1]
        for slot in others:
            free.remove(slot)
        memory = lc.llama_get_memory(self._ctx)
        lc.llama_memory_seq_rm(memory, first, kept, -1)
        self._prefill(tokens, first, start=kept)
        self._prefilled += len(tokens) - kept
        for slot in others:
            lc.llama_memory_seq_rm(memory, slot, -1, -1)
            lc.llama_memory_seq_cp(memory, first, slot, -1, -1)
        for slot, sample in zip([first, *others], request.samples, strict=True):
            self._cached[slot] = []  # until the sequence retires, what the slot holds is in flux
            sampler = self._sampler(params, sample_seed(params, seeds, request.conversation, sample))
            sequence = _Sequence(slot, request.conversation, sample, sampler, len(tokens), tokens)
            sequence.next_token = lc.llama_sampler_sample(sampler, self._ctx, -1)
            active[slot] = sequence

    def _prefill(self, tokens: list[int], seq_id: int, start: int = 0) -> None:
        """Decode ``tokens[start:]`` into ``seq_id`` (positions from ``start``), logits for the last one only."""
        for offset in range(start, len(tokens), self.n_batch):
            chunk = tokens[offset:offset + self.n_batch]
            self._fill_batch([(token, offset + i, seq_id, offset + i == len(tokens) - 1)
                              for i, token in enumerate(chunk)])
            self._decode()

    def _step(self, active: dict[int, _Sequence], params: SamplingParams) -> int:
        """Emit every active sequence's pending token; decode those that go on in one call; sample them."""
        lc = self._lc
        live, entries = [], []
        for sequence in active.values():
            position = sequence.position
            self._accept(sequence, sequence.next_token)
            if len(sequence.tokens) < params.max_tokens:  # a spent budget needs no next token
                live.append(sequence)
                entries.append((sequence.tokens[-1], position, sequence.seq_id, True))
        if live:
            self._fill_batch(entries)
            self._decode()
            for index, sequence in enumerate(live):
                sequence.next_token = lc.llama_sampler_sample(sequence.sampler, self._ctx, index)
        return len(active)

    def _accept(self, sequence: _Sequence, token: int) -> None:
        sequence.tokens.append(token)
        sequence.position += 1
        sequence.text += self._piece(token)

    def _finished(self, active: dict[int, _Sequence], params: SamplingParams) -> list[_Sequence]:
        return [s for s in active.values() if self._is_finished(s, params)]

    def _is_finished(self, sequence: _Sequence, params: SamplingParams) -> bool:
        """End of turn sampled, token budget spent, or a stop string produced."""
        if self._lc.llama_vocab_is_eog(self._vocab, sequence.next_token):
            return True
        if len(sequence.tokens) >= params.max_tokens:
            return True
        text = sequence.text.decode("utf-8", "ignore") if params.stop else ""
        return any(stop in text for stop in params.stop)

    def _retire(self, sequence: _Sequence, params: SamplingParams, outputs: list[list[Completion | None]],
                free: list[int], active: dict[int, _Sequence]) -> None:
        lc = self._lc
        text = sequence.text.decode("utf-8", "replace")
        reason = "stop"
        if lc.llama_vocab_is_eog(self._vocab, sequence.next_token):
            pass
        elif params.stop and any(stop in text for stop in params.stop):
            text = text[:min(text.index(stop) for stop in params.stop if stop in text)]
        else:
            reason = "length"
        outputs[sequence.conversation][sequence.sample] = Completion(text, len(sequence.prompt),
                                                                     len(sequence.tokens), reason)
        # The slot keeps its KV for the next call; a token sampled on the last budgeted step was never decoded.
        decoded = sequence.tokens if len(sequence.tokens) < params.max_tokens else sequence.tokens[:-1]
        self._cached[sequence.seq_id] = sequence.prompt + decoded
        lc.llama_sampler_free(sequence.sampler)
        del active[sequence.seq_id]
        free.append(sequence.seq_id)

    # ------------------------------------------------------------------ llama.cpp calls

    def _sampler(self, params: SamplingParams, seed: int):
        lc = self._lc
        chain = lc.llama_sampler_chain_init(lc.llama_sampler_chain_default_params())
        if params.greedy:
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_greedy())
            return chain
        if params.top_p < 1.0:
            lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_top_p(params.top_p, 1))
        lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_temp(params.temperature))
        lc.llama_sampler_chain_add(chain, lc.llama_sampler_init_dist(seed))
        return chain

    def _fill_batch(self, entries: list[tuple[int, int, int, bool]]) -> None:
        """entries: (token, position, seq id, wants logits)."""
        batch = self._batch
        batch.n_tokens = len(entries)
        for i, (token, position, seq_id, logits) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = position
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq_id
            batch.logits[i] = logits

    def _decode(self) -> None:
        status = self._lc.llama_decode(self._ctx, self._batch)
        if status != 0:
            raise BackendError(f"llama_decode failed with status {status} (KV cache of {self._ctx_size} tokens "
                               f"for {self.parallel} sequences)")

    def _piece(self, token: int) -> bytes:
        buffer = ctypes.create_string_buffer(64)
        size = self._lc.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, False)
        if size < 0:
            buffer = ctypes.create_string_buffer(-size)
            size = self._lc.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, False)
        return buffer.raw[:size]


def _common_prefix(first: list[int], second: list[int]) -> int:
    """How many leading tokens the two lists share."""
    for index, (a, b) in enumerate(zip(first, second, strict=False)):
        if a != b:
            return index
    return min(len(first), len(second))


def _with_seconds(completion: Completion | None, seconds: float) -> Completion:
    assert completion is not None, "every sample of every conversation is produced"
    return Completion(completion.text, completion.prompt_tokens, completion.completion_tokens,
                      completion.finish_reason, seconds)


def _chat_formatter(model):
    """The GGUF's own chat template, rendered with Jinja as transformers does."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = model.metadata().get("tokenizer.chat_template")
    if not template:
        raise BackendError("the GGUF file has no chat template (tokenizer.chat_template)")
    eos = model.token_get_text(model.token_eos())
    bos = model.token_get_text(model.token_bos()) if model.token_bos() >= 0 else ""
    return Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)


def _load_model(llama_cpp, path: str, *, verbose: bool):
    """The GGUF's weights and vocabulary (no context: `_ensure_context` sizes that for the slots).

    llama.cpp repacks weights into "extra" buffer types for faster kernels. On a CPU with AMX, a native build puts
    them in its AMX buffer, whose kernel faults at its first tile instruction on some machines (SIGSEGV as soon as
    a batch holds two tokens; llama.cpp issue 20824). A build with AMX kernels therefore gets no extra buffers
    here: correct, about 20% slower; the README's install command builds without them (docs/backends.md).
    """
    from llama_cpp import _internals
    from llama_cpp._logger import set_verbose

    set_verbose(verbose)
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    if amx_build(llama_cpp):
        params.use_extra_bufts = False
        warnings.warn("llama-cpp-python was built with AMX kernels, which crash on some machines; running "
                      "without repacked weights (slower). Rebuild it as the README's install command does "
                      "(-mno-amx-int8) for full speed.", RuntimeWarning, stacklevel=5)
    try:
        return _internals.LlamaModel(path_model=path, params=params, verbose=verbose)
    except (ValueError, RuntimeError) as error:
        raise BackendError(f"llama.cpp could not load {path}: {error}") from error


def amx_build(llama_cpp) -> bool:
    """Whether this llama.cpp build has its AMX int8 kernels compiled in."""
    return b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()
