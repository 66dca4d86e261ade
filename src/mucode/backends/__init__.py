"""Generation backends behind one interface (`Backend.generate`), each imported only when chosen.

    from mucode.backends import SamplingParams, load_backend
    with load_backend("llamacpp", "smollm2-135m-instruct") as backend:
        completions = backend.generate([[{"role": "user", "content": "Hi"}]], SamplingParams(n=4))

Kinds: ``auto`` (the default: the fastest installed CPU engine here, measured once; `mucode.backends.auto`),
``llamacpp`` (GGUF via llama-cpp-python), ``hf`` (transformers; CPU or GPU; GGUF or
HF directory; LoRA adapters), ``openai`` (any OpenAI-compatible server: vLLM, SGLang, llama.cpp, Ollama),
``openvino`` (OpenVINO GenAI continuous batching; GGUF requantised to int8 or int4; the fastest on CPU here).
"""

from __future__ import annotations

import sys
from importlib import import_module

from mucode.backends.base import (
    Backend,
    Completion,
    Conversation,
    GenerationStats,
    Message,
    Request,
    SamplingParams,
)
from mucode.errors import ConfigError

BACKENDS = {
    "llamacpp": ("mucode.backends.llamacpp", "LlamaCppBackend", "llama-cpp-python"),
    "hf": ("mucode.backends.hf", "HFBackend", "transformers torch"),
    "openai": ("mucode.backends.openai", "OpenAIBackend", "openai"),
    "openvino": ("mucode.backends.openvino", "OpenVINOBackend", "openvino-genai"),
}
#: ``auto``: the fastest installed CPU engine for this machine and model, from a measured probe
#: (`mucode.backends.auto`).
DEFAULT_BACKEND = "auto"
CHOICES = ("auto", *BACKENDS)


def resolve_backend(kind: str, model: str) -> str:
    """``kind`` itself, or for ``auto`` the engine `mucode.backends.auto.choose_backend` picks for ``model``."""
    if kind != "auto":
        return kind
    from mucode.backends.auto import choose_backend

    return choose_backend(model, announce=_announce).backend


def load_backend(kind: str, model: str, **options) -> Backend:
    """Create the backend ``kind`` (or the one ``auto`` picks) for ``model`` (a registry name, a local path, or
    a served model id)."""
    kind = resolve_backend(kind, model)
    try:
        module_name, class_name, packages = BACKENDS[kind]
    except KeyError:
        raise ConfigError(f"unknown backend {kind!r}; choose one of: {', '.join(CHOICES)}") from None
    try:
        module = import_module(module_name)
    except ImportError as error:
        raise ConfigError(f"backend {kind!r} needs {packages}: {error} "
                          f"(install it with `pip install mucode[{kind}]`)") from error
    try:
        return getattr(module, class_name)(model, **options)
    except TypeError as error:
        if not options or "argument" not in str(error):
            raise
        raise ConfigError(f"backend {kind!r} does not take the options {sorted(options)} ({error})") from None


def _announce(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


__all__ = ["BACKENDS", "CHOICES", "DEFAULT_BACKEND", "Backend", "Completion", "Conversation", "GenerationStats",
           "Message", "Request", "SamplingParams", "load_backend", "resolve_backend"]
