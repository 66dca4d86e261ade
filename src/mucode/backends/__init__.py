"""Generation backends behind one interface (`Backend.generate`), each imported only when chosen.

    from mucode.backends import SamplingParams, load_backend
    with load_backend("llamacpp", "smollm2-135m-instruct") as backend:
        completions = backend.generate([[{"role": "user", "content": "Hi"}]], SamplingParams(n=4))

Kinds: ``llamacpp`` (GGUF via llama-cpp-python; the CPU default), ``hf`` (transformers; CPU or GPU; GGUF or
HF directory; LoRA adapters), ``openai`` (any OpenAI-compatible server: vLLM, SGLang, llama.cpp, Ollama).
"""

from __future__ import annotations

from importlib import import_module

from mucode.backends.base import Backend, Completion, Conversation, GenerationStats, Message, SamplingParams
from mucode.errors import ConfigError

BACKENDS = {
    "llamacpp": ("mucode.backends.llamacpp", "LlamaCppBackend", "llama-cpp-python"),
    "hf": ("mucode.backends.hf", "HFBackend", "transformers torch"),
    "openai": ("mucode.backends.openai", "OpenAIBackend", "openai"),
}
DEFAULT_BACKEND = "llamacpp"


def load_backend(kind: str, model: str, **options) -> Backend:
    """Create the backend ``kind`` for ``model`` (a registry name, a local path, or a served model id)."""
    try:
        module_name, class_name, packages = BACKENDS[kind]
    except KeyError:
        raise ConfigError(f"unknown backend {kind!r}; choose one of: {', '.join(BACKENDS)}") from None
    try:
        module = import_module(module_name)
    except ImportError as error:
        raise ConfigError(f"backend {kind!r} needs {packages}: {error} "
                          f"(install it with `pip install mucode[{kind}]`)") from error
    return getattr(module, class_name)(model, **options)


__all__ = ["BACKENDS", "DEFAULT_BACKEND", "Backend", "Completion", "Conversation", "GenerationStats", "Message",
           "SamplingParams", "load_backend"]
