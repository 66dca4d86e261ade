"""The test tiers of tests/conftest.py: these tests are themselves in the fast tier, so building or loading a model,
reading a GGUF file or stepping an optimizer must fail them (with a message saying how to re-tier the test).

The libraries are imported here, at collection, as the other test modules import them: the guard wraps the
libraries imported before a fast test starts."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest


def optional(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


transformers, llama_cpp, gguf, torch = (optional(name) for name in ("transformers", "llama_cpp", "gguf", "torch"))
GUARDED = "is in the fast tier but"


def test_this_test_is_fast_and_not_model(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("fast") is not None
    assert request.node.get_closest_marker("model") is None


def test_building_a_transformers_model_fails_a_fast_test() -> None:
    if transformers is None:
        pytest.skip("transformers is not installed")
    config = transformers.Qwen2Config(vocab_size=8, hidden_size=8, intermediate_size=8, num_hidden_layers=1,
                                      num_attention_heads=1, num_key_value_heads=1)
    with pytest.raises(pytest.fail.Exception, match=f"{GUARDED} builds a transformers model.*pytest.mark.model"):
        transformers.Qwen2ForCausalLM(config)


def test_loading_a_gguf_through_llama_cpp_fails_a_fast_test(tmp_path: Path) -> None:
    if llama_cpp is None:
        pytest.skip("llama-cpp-python is not installed")
    with pytest.raises(pytest.fail.Exception, match=f"{GUARDED} loads a GGUF model through llama.cpp"):
        llama_cpp.llama_model_load_from_file(str(tmp_path / "missing.gguf").encode(),
                                             llama_cpp.llama_model_default_params())


def test_reading_a_gguf_file_fails_a_fast_test(tmp_path: Path) -> None:
    if gguf is None:
        pytest.skip("gguf is not installed")
    with pytest.raises(pytest.fail.Exception, match=f"{GUARDED} reads a GGUF file"):
        gguf.GGUFReader(tmp_path / "missing.gguf")


def test_an_optimizer_step_fails_a_fast_test() -> None:
    if torch is None:
        pytest.skip("torch is not installed")
    weight = torch.zeros(2, requires_grad=True)
    optimizer = torch.optim.SGD([weight], lr=0.1)
    weight.sum().backward()
    with pytest.raises(pytest.fail.Exception, match=f"{GUARDED} steps an optimizer \\(SGD\\)"):
        optimizer.step()
    assert torch.equal(weight, torch.zeros(2))
