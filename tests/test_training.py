"""mucode.training: loss only on the final reply and its end-of-turn token (real SmolLM2 tokenizer and template),
padding masked by length, training that learns to answer *and stop*, resume, reuse, one-line errors.

The generator is the random 2-layer Qwen2 of conftest.py (`tiny_qwen2`); it trains in seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from mucode.backends import SamplingParams, load_backend  # noqa: E402
from mucode.errors import ConfigError, DataError  # noqa: E402
from mucode.expert import SFTExample  # noqa: E402
from mucode.training import (  # noqa: E402
    IGNORE_INDEX,
    ChatEncoder,
    Collator,
    SFTConfig,
    epoch_models,
    load_examples,
    read_sft_info,
    train_generator,
    write_examples,
)
from tests.test_verifier_train import Interrupt  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

IM_END = 2  # <|im_end|>: SmolLM2's end of turn, and also its pad token
PROMPT = "Write a function add(a, b) that returns a + b."
STATE = ({"role": "user", "content": PROMPT},)
HISTORY = ({"role": "user", "content": PROMPT}, {"role": "assistant", "content": "def add(a, b):\n    return a - b"},
           {"role": "user", "content": "Feedback: assert add(1, 2) == 3 failed"})
TARGET = "```python\ndef add(a, b):\n    return a + b\n```"


def example(messages: tuple[dict[str, str], ...] = STATE, target: str = TARGET) -> SFTExample:
    return SFTExample("t/1", messages, target, "relabelled", "def add(a, b):\n    return a + b", True)


# ------------------------------------------------------------------------------------------- masking


def test_only_the_final_reply_and_its_end_of_turn_token_carry_loss(smollm2_tokenizer) -> None:
    encoder = ChatEncoder(smollm2_tokenizer)
    item = encoder.encode(HISTORY, TARGET)
    ids, labels = item["input_ids"], item["labels"]
    trained = [i for i, label in enumerate(labels) if label != IGNORE_INDEX]
    assert trained == list(range(trained[0], len(ids)))  # one block, at the end
    assert [ids[i] for i in trained] == [labels[i] for i in trained]
    assert smollm2_tokenizer.decode([ids[i] for i in trained]) == TARGET + "<|im_end|>"
    assert labels[-1] == IM_END  # the end of turn is trained although it is also the pad token
    history = smollm2_tokenizer.decode(ids[:trained[0]])
    assert "return a - b" in history and history.endswith("<|im_start|>assistant\n")  # the history is masked


def test_the_prompt_is_tokenised_as_generation_tokenises_it(smollm2_tokenizer) -> None:
    item = ChatEncoder(smollm2_tokenizer).encode(HISTORY, TARGET)
    text = smollm2_tokenizer.apply_chat_template(list(HISTORY), tokenize=False, add_generation_prompt=True)
    prompt = smollm2_tokenizer(text, add_special_tokens=False).input_ids  # what the hf backend feeds `generate`
    assert item["input_ids"][:len(prompt)] == prompt and item["labels"][len(prompt)] != IGNORE_INDEX
    assert "<|response|>" not in smollm2_tokenizer.decode(item["input_ids"])


def test_padding_is_masked_by_length_not_by_token_id(smollm2_tokenizer) -> None:
    encoder = ChatEncoder(smollm2_tokenizer)
    short, long = encoder.encode(STATE, "x = 1"), encoder.encode(HISTORY, TARGET)
    batch = Collator(pad_id=IM_END)([short, long])
    width, length = len(long["input_ids"]), len(short["input_ids"])
    assert batch["input_ids"].shape == batch["labels"].shape == (2, width)
    assert batch["attention_mask"][0].tolist() == [0] * (width - length) + [1] * length  # padded on the left
    assert batch["labels"][0, :width - length].eq(IGNORE_INDEX).all() and batch["labels"][0, -1].item() == IM_END
    assert batch["input_ids"][0, 0].item() == IM_END  # the pad id is the end-of-turn id, yet the last one trains
    replies = [sum(label != IGNORE_INDEX for label in item["labels"]) for item in (short, long)]
    assert int(batch["keep"]) == max(replies) + 1  # logits are needed for the longest reply and one before it


def test_the_loss_is_the_models_own_loss_over_the_reply_tokens(smollm2_tokenizer, tiny_qwen2: Path) -> None:
    """Logits of the last `keep` positions of a left-padded batch give the loss the full right-padded forward
    gives (transformers' own shifted cross-entropy), so the shortcut changes nothing but the cost."""
    from mucode.training import SFTTrainer

    encoder = ChatEncoder(smollm2_tokenizer)
    items = [encoder.encode(STATE, "x = 1"), encoder.encode(HISTORY, TARGET)]
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_qwen2, dtype=torch.float32)
    trainer = SFTTrainer.__new__(SFTTrainer)  # compute_loss needs no Trainer state when given the token count
    trainer.bf16 = False
    batch = Collator(pad_id=IM_END)(items)
    tokens = int(batch["labels"][:, 1:].ne(IGNORE_INDEX).sum())
    ours = trainer.compute_loss(model, batch, num_items_in_batch=tokens)
    theirs = [model(input_ids=torch.tensor([item["input_ids"]]), labels=torch.tensor([item["labels"]])).loss
              * sum(label != IGNORE_INDEX for label in item["labels"][1:]) for item in items]
    torch.testing.assert_close(ours, sum(theirs) / tokens, rtol=1e-5, atol=1e-5)


def test_examples_round_trip_through_jsonl_and_bad_lines_name_their_place(tmp_path: Path) -> None:
    path = tmp_path / "examples.jsonl"
    write_examples(path, [example(), example(HISTORY)])
    assert load_examples([path]) == [example(), example(HISTORY)]
    path.write_text(path.read_text() + '{"task_id": "t/2"}\n')
    with pytest.raises(DataError, match=r"examples.jsonl:3: not an SFT example \(KeyError"):
        load_examples([path])
    with pytest.raises(ConfigError, match="does not exist"):
        load_examples([tmp_path / "missing.jsonl"])


# ------------------------------------------------------------------------------------------- training


def config(examples: Path, out: Path, base: Path, **overrides) -> SFTConfig:
    settings = {"epochs": 8, "batch_size": 2, "micro_batch_size": 2, "learning_rate": 3e-3, "precision": "fp32",
                "progress": False, "save_steps": 4, "logging_steps": 2, "seed": 3}
    return SFTConfig(examples=(str(examples),), out=str(out), base=str(base), **{**settings, **overrides})


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sft") / "examples.jsonl"
    write_examples(path, [example(), example(HISTORY)])
    return path


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_the_model_learns_the_reply_and_to_stop(data: Path, tiny_qwen2: Path, tmp_path: Path, lora: bool) -> None:
    overrides = ({"lora": True, "lora_rank": 8, "learning_rate": 2e-2, "epochs": 30} if lora
                 else {"learning_rate": 1e-2, "epochs": 30})
    result = train_generator(config(data, tmp_path / "sft", tiny_qwen2, **overrides))
    assert result.trained and (result.model_dir / "config.json").is_file()
    assert (tmp_path / "sft" / "adapter").is_dir() == lora
    history = result.info["training"]["log_history"]
    assert history[-1]["loss"] < 0.2 * history[0]["loss"]
    with load_backend("hf", str(result.model_dir), dtype="fp32") as backend:
        [[reply], [after_feedback]] = backend.generate([list(STATE), list(HISTORY)],
                                                       SamplingParams(temperature=0, max_tokens=48))
    for completion in (reply, after_feedback):
        assert completion.text == TARGET and completion.finish_reason == "stop"  # it stops: EOS was trained


def test_sft_json_records_how_it_was_made(data: Path, tiny_qwen2: Path, tmp_path: Path) -> None:
    train_generator(config(data, tmp_path / "sft", tiny_qwen2, epochs=1))
    info = read_sft_info(tmp_path / "sft")
    assert info["data"]["examples"] == info["data"]["items"] == 2 and info["data"]["dropped_too_long"] == 0
    assert info["data"]["trained_tokens"] > 2 * len(TARGET) // 8
    assert info["base"]["path"] == str(tiny_qwen2) and info["base"]["format"] == "hf"
    assert info["hyperparameters"]["learning_rate"] == 3e-3 and info["precision"] == "fp32"
    assert {"torch", "transformers", "mucode"} <= info["versions"].keys()
    assert not list((tmp_path / "sft" / "checkpoints").glob("checkpoint-*"))  # weights of finished runs dropped
    assert list((tmp_path / "sft" / "checkpoints").rglob("events.out.tfevents.*"))  # TensorBoard logs stay


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_epoch_snapshots_give_one_model_per_epoch(data: Path, tiny_qwen2: Path, tmp_path: Path, lora: bool) -> None:
    train_generator(config(data, tmp_path / "sft", tiny_qwen2, epochs=3, lora=lora, epoch_snapshots=True))
    models = epoch_models(tmp_path / "sft")
    assert [epoch for epoch, _ in models] == [1, 2, 3] and models[-1][1] == tmp_path / "sft" / "model"
    first, second, last = (weights(model) for _, model in models)
    assert first.keys() == last.keys()  # LoRA snapshots come back merged into full models
    name = "model.layers.0.mlp.down_proj.weight"
    assert not torch.equal(first[name], second[name]) and not torch.equal(second[name], last[name])
    assert epoch_models(tmp_path / "sft")[0][1] == models[0][1]  # merged once, then reused


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def test_an_interrupted_run_resumes_to_the_same_weights(data: Path, tiny_qwen2: Path, tmp_path: Path) -> None:
    settings = {"epochs": 6, "save_steps": 2}
    reference = train_generator(config(data, tmp_path / "reference", tiny_qwen2, **settings))
    with pytest.raises(KeyboardInterrupt):
        train_generator(config(data, tmp_path / "sft", tiny_qwen2, **settings), callbacks=[Interrupt(3)])
    assert not (tmp_path / "sft" / "sft.json").exists() and not (tmp_path / "sft" / "model").exists()
    resumed = train_generator(config(data, tmp_path / "sft", tiny_qwen2, **settings))
    assert resumed.info["training"]["resumed_from"].endswith("checkpoint-2")
    expected, got = weights(reference.model_dir), weights(resumed.model_dir)
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-6)


def test_rerunning_reuses_the_model_and_another_config_needs_force(data: Path, tiny_qwen2: Path,
                                                                   tmp_path: Path) -> None:
    first = train_generator(config(data, tmp_path / "sft", tiny_qwen2, epochs=1))
    again = train_generator(config(data, tmp_path / "sft", tiny_qwen2, epochs=1))
    assert not again.trained and again.info == first.info
    with pytest.raises(ConfigError, match=r"another config \(hyperparameters.epochs was 1, now 2\); use --force"):
        train_generator(config(data, tmp_path / "sft", tiny_qwen2, epochs=2))
    assert train_generator(config(data, tmp_path / "sft", tiny_qwen2, epochs=2, force=True)).trained


def test_bad_settings_and_inputs_are_one_line_errors(data: Path, tiny_qwen2: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"batch_size \(3\) must be a multiple of micro_batch_size \(2\)"):
        config(data, tmp_path / "sft", tiny_qwen2, batch_size=3)
    with pytest.raises(ConfigError, match="precision must be one of auto, bf16, fp32; got 'fp16'"):
        config(data, tmp_path / "sft", tiny_qwen2, precision="fp16")
    with pytest.raises(ConfigError, match="every training example is longer than max_length 8 tokens"):
        train_generator(config(data, tmp_path / "sft", tiny_qwen2, max_length=8))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ConfigError, match="no training examples"):
        train_generator(config(empty, tmp_path / "sft2", tiny_qwen2))
