"""``--backend auto``: the fastest installed CPU engine for this machine and model, measured, not guessed.

Machines of one kind differ (AVX-512 only vs AMX, memory bandwidth, how llama.cpp was built), so the choice is
a short probe rather than a rule on CPU names: each installed candidate engine (`CANDIDATES`) loads the model
and samples `PROBE_PROMPTS` coding prompts × `PROBE_SAMPLES` completions of up to `PROBE_TOKENS` tokens, the
shape of a Best-of-N turn; the most generated tokens per second wins. The outcome is cached in
``<MUCODE_HOME>/auto-backend.json`` per (model, machine, engine versions), so the probe runs once (about half
a minute for the 0.5B) and `mucode models list` shows what was chosen and why.

A Hugging Face folder has one engine that loads it (hf); a served model is never chosen automatically (name
``--backend openai``).
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import metadata, util
from pathlib import Path

from mucode.errors import ConfigError
from mucode.models.cache import Home, model_home
from mucode.models.resolve import resolve_model
from mucode.runs import write_json

AUTO = "auto"
#: Engines the probe compares, each with the distribution that makes it importable; hf is left out (several
#: times slower on CPU, measured in benchmarks/generation_throughput.py) and openai needs a server.
CANDIDATES = {"openvino": ("openvino_genai", "openvino-genai"), "llamacpp": ("llama_cpp", "llama-cpp-python")}
CACHE_FILE = "auto-backend.json"
PROBE_PROMPTS = 2
PROBE_SAMPLES = 8
PROBE_TOKENS = 96
_PROMPTS = ("Write a Python function that returns the n-th Fibonacci number. Return it in a ```python block.",
            "Write a Python function that checks whether a string is a palindrome, ignoring case. Return it in a "
            "```python block.")


@dataclass(frozen=True)
class Choice:
    """The engine ``auto`` runs for one model on this machine, and why (``measured``: tokens/s per engine)."""

    backend: str
    reason: str
    measured: dict[str, float]
    model: str
    machine: str
    time: str


def installed_candidates() -> list[str]:
    """The candidate engines whose Python package is importable here, in `CANDIDATES` order."""
    return [name for name, (module, _) in CANDIDATES.items() if util.find_spec(module) is not None]


def choose_backend(model: str, *, home: Home = None, probe: Callable[[str, str], float] | None = None,
                   announce: Callable[[str], None] | None = None) -> Choice:
    """The engine for ``model`` (cached; probed when two or more candidates are installed and none is cached).

    ``probe(backend, model) -> tokens/s`` defaults to `probe_backend`; ``announce`` is told (one line) before a
    probe runs, since it takes a while.
    """
    ref = resolve_model(model)
    machine = machine_fingerprint()
    if ref.format != "gguf":
        return Choice("hf", "a Hugging Face folder: only the hf backend loads it", {}, ref.model_id, machine, _now())
    installed = installed_candidates()
    if not installed:
        raise ConfigError("--backend auto found no CPU engine: install one with `pip install 'mucode[openvino]'` "
                          "or `pip install 'mucode[llamacpp]'`")
    if len(installed) == 1:
        return Choice(installed[0], "the only installed engine", {}, ref.model_id, machine, _now())
    key = _cache_key(ref.model_id, machine, installed)
    cached = _read_cache(home).get(key)
    if cached is not None:
        return Choice(**cached)
    if announce is not None:
        announce(f"--backend auto: measuring {', '.join(installed)} on {ref.model_id} (once per machine and model)")
    measure = probe or probe_backend
    measured = {name: round(measure(name, model), 1) for name in installed}
    best = max(measured, key=measured.__getitem__)
    rates = ", ".join(f"{name} {rate:g} tok/s" for name, rate in measured.items())
    choice = Choice(best, f"fastest in a {PROBE_PROMPTS}×{PROBE_SAMPLES}-sample probe: {rates}", measured,
                    ref.model_id, machine, _now())
    _write_cache(home, key, choice)
    return choice


def probe_backend(backend: str, model: str) -> float:
    """Generated tokens per second of ``backend`` on a small Best-of-N-shaped workload (after a warm-up)."""
    from mucode.backends import SamplingParams, load_backend

    conversations = [[{"role": "user", "content": prompt}] for prompt in _PROMPTS[:PROBE_PROMPTS]]
    params = SamplingParams(n=PROBE_SAMPLES, max_tokens=PROBE_TOKENS, seed=0)
    with load_backend(backend, model) as engine:
        engine.generate(conversations[:1], SamplingParams(n=1, max_tokens=4))
        start = time.perf_counter()
        outputs = engine.generate(conversations, params, seeds=[0] * len(conversations))
        seconds = time.perf_counter() - start
    return sum(c.completion_tokens for row in outputs for c in row) / seconds


def cached_choices(home: Home = None) -> list[Choice]:
    """Every choice cached on this machine (for `mucode models list`)."""
    machine = machine_fingerprint()
    return [Choice(**entry) for entry in _read_cache(home).values() if entry.get("machine") == machine]


def machine_fingerprint() -> str:
    """CPU model, core count and the vector/matrix extensions that change which engine is fastest."""
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())  # the first CPU's lines
    except OSError:
        pass
    model = info.get("model name") or platform.processor() or "unknown CPU"
    wanted = sorted(flag for flag in info.get("flags", "").split() if flag.startswith(("amx", "avx512", "avx2")))
    return f"{model}; {os.cpu_count()} cores; {' '.join(wanted)}"


def _cache_key(model_id: str, machine: str, installed: list[str]) -> str:
    engines = ",".join(f"{name}={_version(CANDIDATES[name][1])}" for name in installed)
    return f"{model_id} | {machine} | {engines}"


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "?"


def _read_cache(home: Home) -> dict[str, dict]:
    try:
        data = json.loads((model_home(home) / CACHE_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(home: Home, key: str, choice: Choice) -> None:
    entries = _read_cache(home)
    entries[key] = asdict(choice)
    path = model_home(home) / CACHE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, entries)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
