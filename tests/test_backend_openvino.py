"""The openvino backend on a real model (SmolLM2-135M): the GGUF conversion and its cache, seeds, stop strings,
token counts, the request-level interface, and a search driven through it."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from mucode.backends import SamplingParams, load_backend
from mucode.backends.base import Request
from mucode.errors import ConfigError
from mucode.models.resolve import resolve_model
from mucode.sandbox import Limits, Sandbox
from mucode.search import SearchConfig, search_steps
from tests.scripted_backend import PROBLEMS

pytest.importorskip("openvino_genai")
from mucode.backends import openvino as ov_backend

CHAT = [{"role": "user", "content": "Write a Python function add(a, b) that returns their sum."}]


@pytest.fixture(scope="module")
def backend(smollm2_gguf: Path) -> Iterator[ov_backend.OpenVINOBackend]:
    with load_backend("openvino", str(smollm2_gguf)) as loaded:
        yield loaded  # type: ignore[misc]


def test_the_gguf_is_converted_once_into_the_cache_by_its_digest(smollm2_gguf: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    ref = resolve_model(str(smollm2_gguf))
    made = ov_backend.converted_gguf(ref, "int8", home=tmp_path)
    assert made.is_file() and made.parent.parent == tmp_path / "openvino" and made.name.endswith(".q8_0.gguf")
    assert not [path for path in made.parent.iterdir() if path.name.startswith(".")]  # no scratch left behind

    def no_second_conversion(*args: object) -> str:
        raise AssertionError("converted again")

    monkeypatch.setattr(importlib.import_module("mucode.models.pull"), "requantize", no_second_conversion)
    assert ov_backend.converted_gguf(ref, "int8", home=tmp_path) == made


def test_seeds_make_samples_reproducible_and_distinct(smollm2_gguf: Path) -> None:
    """A fresh engine given the same requests samples the same replies; other seeds give other replies. (A warm
    engine may differ after some tokens: a cached prefix and another batch change the order of floating-point
    sums; docs/backends.md.)"""
    params = SamplingParams(n=3, temperature=0.9, max_tokens=24, seed=0)
    runs = []
    for _ in range(2):
        with load_backend("openvino", str(smollm2_gguf)) as fresh:
            runs.append([[c.text for c in row] for row in fresh.generate([CHAT, CHAT], params, seeds=[11, 12])])
            config = fresh._config(params, 1234)  # type: ignore[attr-defined]
            assert config.rng_seed == 1234 and config.do_sample and config.temperature == pytest.approx(0.9)
    assert runs[0] == runs[1]
    assert len({text for row in runs[0] for text in row}) > 1


def test_greedy_budget_and_stop_strings(backend: ov_backend.OpenVINOBackend) -> None:
    greedy = SamplingParams(n=1, temperature=0, max_tokens=40)
    (full,), = backend.generate([CHAT], greedy)
    (short,), = backend.generate([CHAT], SamplingParams(n=1, temperature=0, max_tokens=5))
    assert short.finish_reason == "length" and short.completion_tokens == 5 and full.text.startswith(short.text)
    stop = full.text[len(full.text) // 2:][:4]
    (cut,), = backend.generate([CHAT], SamplingParams(n=1, temperature=0, max_tokens=40, stop=(stop,)))
    assert cut.finish_reason == "stop" and stop not in cut.text and full.text.startswith(cut.text)


def test_requests_complete_through_submit_and_step(backend: ov_backend.OpenVINOBackend) -> None:
    params = SamplingParams(n=2, temperature=0.7, max_tokens=16, seed=0)
    short = backend.submit(Request(CHAT, SamplingParams(n=1, temperature=0, max_tokens=2), 0))
    long = backend.submit(Request(CHAT, params, 5))
    assert backend.busy and type(backend).continuous
    order, results = [], {}
    while backend.busy:
        for ticket, completions in backend.step():
            order.append(ticket)
            results[ticket] = completions
    assert order == [short, long]  # the short request is reported without waiting for the long one
    assert [c.text for c in results[long]] == [c.text for c in backend.generate([CHAT], params, seeds=[5])[0]]


def test_a_search_runs_through_the_driver(backend: ov_backend.OpenVINOBackend) -> None:
    config = SearchConfig(n=2, turns=2, max_tokens=64, stop_at_code_end=True)
    with Sandbox(Limits(test_timeout=2.0, memory_mb=512), workers=2) as sandbox:
        records = [r for batch in search_steps([(p, 0) for p in PROBLEMS], backend, sandbox, config) for r in batch]
    assert sorted(r.task_id for r in records) == sorted(p.task_id for p in PROBLEMS)
    assert all(1 <= r.turns_used <= 2 and len(r.turns[0].candidates) == 2 for r in records)


def test_bad_weights_and_hf_folders_are_config_errors(smollm2_gguf: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="weights must be one of int8, int4"):
        load_backend("openvino", str(smollm2_gguf), weights="int3")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"reads \.gguf models"):
        load_backend("openvino", str(tmp_path))
