"""mucode.backends.hf: a tiny random Llama with SmolLM2's real tokenizer and chat template, then the real SmolLM2."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("gguf")

from mucode.backends import SamplingParams, load_backend  # noqa: E402
from mucode.backends.hf import (  # noqa: E402
    HFBackend,
    dequantised_dir,
    end_of_turn_ids,
    left_pad,
    locate_model,
    truncate_at_stop,
)
from mucode.errors import BackendError, ConfigError, MucodeError  # noqa: E402

SMOLLM2_ID = "SmolLM2-135M-Instruct.Q4_1.gguf@b179c9523d0e"  # file name @ first 12 hex digits of its sha256
IM_END = 2  # <|im_end|> in SmolLM2's vocabulary

SHORT = [{"role": "user", "content": "Hi"}]
MEDIUM = [{"role": "user", "content": "Write a function that reverses a string."}]
LONG = [{"role": "system", "content": "You write Python."},
        {"role": "user", "content": "Write a function `add(a, b)` returning a + b, then explain it in one line."},
        {"role": "assistant", "content": "def add(a, b):\n    return a + b"},
        {"role": "user", "content": "Now make it add three numbers."}]

# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smollm2_tokenizer) -> Path:
    """A random 2-layer Llama (hidden size 64) over SmolLM2's vocabulary, saved with SmolLM2's tokenizer.

    The large init spreads the logits, so greedy decoding has no near-ties that batching noise could flip.
    """
    directory = tmp_path_factory.mktemp("tiny-llama")
    config = transformers.LlamaConfig(vocab_size=len(smollm2_tokenizer), hidden_size=64, intermediate_size=128,
                                      num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                      max_position_embeddings=1024, initializer_range=0.3, tie_word_embeddings=True,
                                      bos_token_id=smollm2_tokenizer.bos_token_id, eos_token_id=IM_END)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(directory)
    smollm2_tokenizer.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def tiny(tiny_model_dir) -> HFBackend:
    return HFBackend(str(tiny_model_dir), dtype="fp32", batch_size=4)


def _texts(completions) -> list[list[str]]:
    return [[completion.text for completion in row] for row in completions]


# ------------------------------------------------------------------------------------------------ tiny model


def test_loads_through_the_backend_registry(tiny_model_dir):
    with load_backend("hf", str(tiny_model_dir), dtype="fp32") as backend:
        assert backend.name == "hf"
        assert backend.model_id == tiny_model_dir.name
        assert (backend.device, backend.dtype) == ("cpu", "float32")


def test_n_completions_per_conversation_with_token_counts(tiny):
    params = SamplingParams(n=3, temperature=1.0, max_tokens=6, seed=1)
    completions = tiny.generate([SHORT, LONG], params)
    assert [len(row) for row in completions] == [3, 3]
    for conversation, row in zip([SHORT, LONG], completions, strict=True):
        assert {c.prompt_tokens for c in row} == {len(tiny._encode(conversation))}
        assert all(c.completion_tokens == 6 and c.finish_reason == "length" for c in row)
    assert len({c.text for row in completions for c in row}) == 6  # near-uniform logits: all samples differ
    stats = tiny.last_stats
    assert stats.completion_tokens == 36
    assert stats.prompt_tokens == 3 * (len(tiny._encode(SHORT)) + len(tiny._encode(LONG)))
    assert stats.seconds > 0 and stats.tokens_per_second > 0


def test_left_padding_gives_the_batch_of_one_result(tiny):
    params = SamplingParams(temperature=0, max_tokens=12)
    batched = tiny.generate([SHORT, LONG, MEDIUM], params)
    alone = [tiny.generate([conversation], params)[0] for conversation in (SHORT, LONG, MEDIUM)]
    assert _texts(batched) == _texts(alone)
    assert len({row[0].prompt_tokens for row in batched}) == 3


def test_greedy_is_deterministic_and_repeats_for_n(tiny):
    params = SamplingParams(n=2, temperature=0, max_tokens=8)
    first, second = tiny.generate([MEDIUM], params), tiny.generate([MEDIUM], params)
    assert _texts(first) == _texts(second)
    assert first[0][0] == first[0][1]
    assert tiny.last_stats.completion_tokens == 8  # computed once, returned twice


def test_sampling_depends_on_seed_not_on_batch_composition(tiny):
    """Batched, the two samples of a conversation also share one prefill; at batch size 1 nothing is shared."""
    params = SamplingParams(n=2, temperature=1.0, top_p=0.9, max_tokens=8, seed=123)
    batched = _texts(tiny.generate([SHORT, LONG], params))
    tiny.batch_size = 1
    try:
        alone = _texts(tiny.generate([SHORT, LONG], params))
    finally:
        tiny.batch_size = 4
    assert batched == alone
    assert _texts(tiny.generate([SHORT, LONG], SamplingParams(n=2, temperature=1.0, max_tokens=8, seed=124))) \
        != batched


def test_max_tokens_ends_with_length(tiny):
    [[completion]] = tiny.generate([SHORT], SamplingParams(temperature=0, max_tokens=5))
    assert (completion.finish_reason, completion.completion_tokens) == ("length", 5)


def test_stop_string_truncates_and_stops(tiny):
    params = SamplingParams(temperature=0, max_tokens=24)
    [[full]] = tiny.generate([MEDIUM], params)
    stop = next(full.text[k:k + 2] for k in range(len(full.text) // 2, len(full.text) - 1)
                if full.text[k:k + 2].strip())
    [[cut]] = tiny.generate([MEDIUM], SamplingParams(temperature=0, max_tokens=24, stop=("\x00never", stop)))
    assert cut.text == full.text[:full.text.find(stop)]
    assert cut.finish_reason == "stop"
    assert cut.completion_tokens <= full.completion_tokens


def test_completion_ends_at_the_end_of_turn_token(tiny):
    completion = tiny._completion([1, 2, 3], [28120, 216, IM_END, IM_END], (), 0.5)
    assert (completion.text, completion.completion_tokens, completion.finish_reason) == ("hello ", 2, "stop")
    assert completion.prompt_tokens == 3


def test_end_of_turn_ids_include_the_chat_template_end(smollm2_tokenizer):
    config = transformers.GenerationConfig(eos_token_id=0)  # GGUF configs often name only <|endoftext|>
    assert end_of_turn_ids(smollm2_tokenizer, config) == [0, IM_END]


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")  # inside peft
@pytest.mark.parametrize("init_lora_weights", [False, True])
def test_lora_adapter_is_merged(tmp_path, tiny, tiny_model_dir, init_lora_weights):
    peft = pytest.importorskip("peft")
    base = transformers.AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = peft.LoraConfig(r=8, lora_alpha=32, target_modules=["q_proj", "v_proj", "up_proj"],
                             init_lora_weights=init_lora_weights)  # False: random B, so the adapter does something
    torch.manual_seed(1)
    peft.get_peft_model(base, config).save_pretrained(tmp_path / "adapter")
    params = SamplingParams(temperature=0, max_tokens=10)
    with HFBackend(str(tiny_model_dir), dtype="fp32", adapter=str(tmp_path / "adapter")) as tuned:
        assert tuned.model_id.startswith(f"{tiny_model_dir.name}+adapter@")
        changed = _texts(tuned.generate([MEDIUM], params)) != _texts(tiny.generate([MEDIUM], params))
    assert changed is not init_lora_weights  # a freshly initialised LoRA (B = 0) is the identity


# ------------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize("make", [lambda root: root / "nowhere.gguf", lambda root: root,
                                  lambda root: root / "weights.bin"], ids=["missing", "no-config", "not-gguf"])
def test_unusable_model_path_is_named(tmp_path, make):
    (tmp_path / "weights.bin").write_bytes(b"\0")
    path = make(tmp_path)
    with pytest.raises(MucodeError, match=re.escape(str(path))):
        HFBackend(str(path))


def test_plain_paths_are_located_through_the_registry(tmp_path, tiny_model_dir, smollm2_gguf):
    assert locate_model(str(tiny_model_dir)).format == "hf"
    assert locate_model(str(smollm2_gguf)).model_id == SMOLLM2_ID  # hashed: the digest keys the cache
    with pytest.raises(MucodeError, match=re.escape(str(tmp_path))):
        locate_model(str(tmp_path))


def test_bad_adapter_is_rejected(tmp_path, tiny_model_dir):
    with pytest.raises(BackendError, match=re.escape(f"{tmp_path} is not a PEFT adapter")):
        HFBackend(str(tiny_model_dir), dtype="fp32", adapter=str(tmp_path))


@pytest.mark.parametrize(("options", "field"), [({"dtype": "int3"}, "dtype"), ({"batch_size": 0}, "batch_size")])
def test_bad_options_are_config_errors(tiny_model_dir, options, field):
    with pytest.raises(ConfigError, match=field):
        HFBackend(str(tiny_model_dir), **options)


def test_closed_backend_refuses_to_generate(tiny_model_dir):
    backend = HFBackend(str(tiny_model_dir), dtype="fp32")
    backend.close()
    with pytest.raises(BackendError, match="closed"):
        backend.generate([SHORT], SamplingParams())


# ------------------------------------------------------------------------------------------------ helpers


def test_left_pad_puts_padding_first():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0, device="cpu")
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


@pytest.mark.parametrize(("text", "stop", "expected"), [
    ("abc\n```\nrest", ("```",), ("abc\n", True)),
    ("a STOP b END", ("END", "STOP"), ("a ", True)),
    ("nothing here", ("END", ""), ("nothing here", False)),
])
def test_truncate_at_stop(text, stop, expected):
    assert truncate_at_stop(text, stop) == expected


# ------------------------------------------------------------------------------------------------ real model


@pytest.mark.slow
def test_smollm2_writes_a_function(smollm2_gguf):
    """The real SmolLM2-135M: dequantised once into the hf-cache (≈30 s), then loaded from there (≈2 s)."""
    with HFBackend("smollm2-135m-instruct") as backend:
        assert backend.model_id == SMOLLM2_ID
        question = [{"role": "user", "content": "Write a Python function add(a, b) that returns a + b."}]
        [[completion]] = backend.generate([question], SamplingParams(temperature=0, max_tokens=200))
    assert "def " in completion.text
    assert completion.finish_reason == "stop" and 0 < completion.completion_tokens < 200
    assert (dequantised_dir(locate_model("smollm2-135m-instruct")) / "model.safetensors").is_file()
