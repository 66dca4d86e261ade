"""mucode.verifier.model: input format, score position, prefix sharing, head init, save/load, the Scorer hook.

A random 2-layer Qwen2 (hidden size 64) over SmolLM2's real tokenizer and chat template stands in for a real
backbone; one slow test runs the real SmolLM2-135M. Other verifier tests import `tiny_qwen2` and `one_thread`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("gguf")

import mucode.search  # noqa: E402
from mucode.env import build_prompt  # noqa: E402
from mucode.errors import ConfigError  # noqa: E402
from mucode.verifier import INFO_FILE, InputFormat, Verifier, load_backbone, load_scorer, read_info  # noqa: E402
from mucode.verifier.model import length_batches, right_pad, safe_pad_id, save_verifier, sequence_scores  # noqa: E402
from tests.scripted_backend import PROBLEMS  # noqa: E402

IM_END = 2  # <|im_end|> in SmolLM2's vocabulary, also its pad token
PROMPT = ("Write a function add(a, b) that returns a + b.\n\nYour code should satisfy these tests:\n\n"
          "assert add(1, 2) == 3")
CODES = ["def add(a, b):\n    return a + b", "def add(a, b):\n    return a - b",
         "import operator\n\ndef add(a, b):\n    return operator.add(a, b)", "add = lambda a, b: a + b", ""]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def verifier(tiny_qwen2: Path) -> Verifier:
    model, tokenizer, _ = load_backbone(str(tiny_qwen2), seed=1)
    return Verifier(model, tokenizer, {"template": "paper"}, template="paper", batch_size=2)


# ------------------------------------------------------------------------------------------ input format


def test_input_is_the_prompt_and_the_fenced_code_ending_at_the_end_of_turn_token(verifier: Verifier) -> None:
    text = verifier.format.text(PROMPT, CODES[0])
    assert text.endswith("<|im_start|>assistant\n```python\ndef add(a, b):\n    return a + b\n```<|im_end|>")
    assert f"<|im_start|>user\n{PROMPT}<|im_end|>" in text and text.count("<|im_start|>user") == 1
    ids = verifier.format.encode(PROMPT, CODES[0])
    assert ids[-1] == IM_END and ids.count(IM_END) == 3  # system, user, assistant turns
    assert InputFormat(verifier.tokenizer).encode(PROMPT, "")[-1] == IM_END


def test_the_saved_pad_id_is_never_the_end_of_turn_id(verifier: Verifier) -> None:
    assert verifier.tokenizer.pad_token_id == IM_END  # SmolLM2 pads with <|im_end|>: reading pads would be wrong
    assert safe_pad_id(verifier.tokenizer) is None and verifier.model.config.pad_token_id is None


# ------------------------------------------------------------------------------------------------ scores


def test_score_is_read_at_the_last_real_token_whatever_the_padding(verifier: Verifier) -> None:
    sequences = [verifier.format.encode(PROMPT, code) for code in CODES[:3]]
    with torch.inference_mode():
        alone = [sequence_scores(verifier.model, torch.tensor([s]), torch.ones(1, len(s), dtype=torch.long)).item()
                 for s in sequences]
        right = sequence_scores(verifier.model, *right_pad(sequences, 0, "cpu")).tolist()
        width = max(map(len, sequences))
        left_ids = torch.tensor([[0] * (width - len(s)) + s for s in sequences])
        left_mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in sequences])
        left = sequence_scores(verifier.model, left_ids, left_mask).tolist()
        builtin = [verifier.model(input_ids=torch.tensor([s])).logits.item() for s in sequences]
    assert right == pytest.approx(alone, abs=1e-5) and left == pytest.approx(alone, abs=1e-5)
    assert builtin == pytest.approx(alone, abs=1e-5)  # transformers' own forward reads the same token at batch 1
    assert max(alone) - min(alone) > 1e-2  # the codes are told apart


def test_shared_prefix_scores_equal_unshared_ones(verifier: Verifier) -> None:
    other = "Write a function sub(a, b)."
    items = [(PROMPT, code) for code in CODES] + [(other, code) for code in CODES[:2]] + [(PROMPT, CODES[1])]
    shared = verifier.score_texts(items)
    verifier.share_prefix = False
    try:
        unshared = verifier.score_texts(items)
    finally:
        verifier.share_prefix = True
    assert shared == pytest.approx(unshared, abs=1e-4)
    assert shared[1] == pytest.approx(shared[-1], abs=1e-5)  # same input, same score, wherever it sits
    assert verifier.score_texts([]) == []


def test_batches_group_similar_lengths_and_bound_padding() -> None:
    assert length_batches([10, 100, 11, 12, 300, 105], max_rows=8, max_padding=0.1) == [[0, 2, 3], [1, 5], [4]]
    assert length_batches([5, 5, 5, 5, 5], max_rows=2) == [[0, 1], [2, 3], [4]]
    assert length_batches([], max_rows=4) == []


def test_score_builds_the_prompt_from_the_problem_with_the_template(verifier: Verifier) -> None:
    problem = PROBLEMS[0]
    codes = ["def inc(x):\n    return x + 1", "def inc(x):\n    return x"]
    expected = verifier.score_texts([(build_prompt(problem, "paper"), code) for code in codes])
    assert verifier.score(problem, codes) == pytest.approx(expected, abs=1e-6)
    short = Verifier(verifier.model, verifier.tokenizer, {}, template="short")
    assert short.score(problem, codes) != pytest.approx(expected, abs=1e-6)


def test_head_is_seeded_scaled_and_dropout_is_off(tiny_qwen2: Path) -> None:
    first, _, ref = load_backbone(str(tiny_qwen2), seed=7)
    again, _, _ = load_backbone(str(tiny_qwen2), seed=7)
    other, _, _ = load_backbone(str(tiny_qwen2), seed=8)
    assert torch.equal(first.score.weight, again.score.weight)
    assert not torch.equal(first.score.weight, other.score.weight)
    assert first.score.weight.shape == (1, 64) and first.score.bias is None
    assert 0.5 / 65**0.5 < first.score.weight.std().item() < 1.5 / 65**0.5
    assert first.config.attention_dropout == 0.0 and ref.format == "hf"


# ------------------------------------------------------------------------------------------- save / load


def test_saved_verifier_reloads_and_scores_identically(verifier: Verifier, tmp_path: Path) -> None:
    save_verifier(verifier.model, verifier.tokenizer, tmp_path / "v", {"template": "paper", "loss": "bt"})
    loaded = Verifier.load(tmp_path / "v", dtype="fp32", batch_size=verifier.batch_size)
    items = [(PROMPT, code) for code in CODES]
    assert loaded.score_texts(items) == verifier.score_texts(items)
    assert read_info(tmp_path / "v")["format"] == "mucode.verifier/1"
    assert not list((tmp_path / "v").glob(".final*"))  # the staging folder is gone
    scorer = mucode.search.load_scorer(tmp_path / "v")  # what --verifier DIR goes through
    assert isinstance(scorer, Verifier) and len(scorer.score(PROBLEMS[0], CODES[:2])) == 2
    assert isinstance(load_scorer(tmp_path / "v"), Verifier)


def test_a_folder_that_is_not_a_verifier_is_a_one_line_error(verifier: Verifier, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"{tmp_path} is not a mucode verifier \\(no verifier.json\\)"):
        Verifier.load(tmp_path)
    with pytest.raises(ConfigError, match="not a mucode verifier"):
        mucode.search.load_scorer(tmp_path / "missing")
    save_verifier(verifier.model, verifier.tokenizer, tmp_path / "v", {"template": "paper"})
    (tmp_path / "v" / INFO_FILE).write_text(json.dumps({"format": "mucode.verifier/0"}))
    with pytest.raises(ConfigError, match=r"format 'mucode.verifier/0', expected 'mucode.verifier/1'") as error:
        Verifier.load(tmp_path / "v")
    assert "\n" not in str(error.value)


# -------------------------------------------------------------------------------------------- real model


@pytest.mark.slow
def test_real_smollm2_backbone_scores_with_and_without_prefix_sharing(smollm2_gguf: Path) -> None:
    model, tokenizer, ref = load_backbone("smollm2-135m-instruct", seed=1)
    assert ref.model_id == "SmolLM2-135M-Instruct.Q4_1.gguf@b179c9523d0e"
    real = Verifier(model, tokenizer, {}, template="paper", batch_size=4)
    items = [(PROMPT, code) for code in CODES]
    shared = real.score_texts(items)
    real.share_prefix = False
    assert real.score_texts(items) == pytest.approx(shared, abs=1e-4)
    assert real.format.encode(PROMPT, CODES[0])[-1] == IM_END
