"""mucode.verifier.train: both losses train (full and LoRA), the saved verifier reloads identically, reruns resume
or refuse, verifier.json says how the verifier was made. Tiny random Qwen2 backbone, real rollout-format runs."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from transformers import TrainerCallback  # noqa: E402

from mucode.errors import ConfigError  # noqa: E402
from mucode.verifier import (  # noqa: E402
    TrainConfig,
    Verifier,
    all_pairs_bt_loss,
    bce_loss,
    bt_loss,
    load_backbone,
    load_rollouts,
    make_pairs,
    read_info,
    train_verifier,
)
from mucode.verifier.data import problem_sets  # noqa: E402
from mucode.verifier.model import InputFormat, right_pad, sequence_scores  # noqa: E402
from mucode.verifier.train import CHUNK_TOKENS, Collator, length_chunks, problem_scores, set_items  # noqa: E402
from tests.scripted_backend import PROBLEMS  # noqa: E402
from tests.test_verifier_data import SCRIPT, WRONG, write_run  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SETTINGS = {"epochs": 4, "batch_size": 8, "micro_batch_size": 4, "pairs_per_problem": 8, "precision": "fp32",
            "progress": False, "save_steps": 100, "logging_steps": 1}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_run(tmp_path_factory.mktemp("rollouts") / "run")


def config(run: Path, out: Path, backbone: Path, **overrides: object) -> TrainConfig:
    options = {**SETTINGS, "learning_rate": 3e-3 if overrides.get("lora") else 1e-3, **overrides}
    return TrainConfig(rollouts=(str(run),), out=str(out), backbone=str(backbone), **options)


def dataset_loss(verifier: Verifier, run: Path, loss: str) -> float:
    """The training objective over the whole training set (BT: its pairs; BCE: every example)."""
    examples = load_rollouts([run]).examples
    if loss == "bt":
        pairs = make_pairs(examples, SETTINGS["pairs_per_problem"], seed=1)
        chosen = verifier.score_texts([(pair.chosen.prompt, pair.chosen.code) for pair in pairs])
        rejected = verifier.score_texts([(pair.rejected.prompt, pair.rejected.code) for pair in pairs])
        return bt_loss(torch.tensor(chosen), torch.tensor(rejected), 1e-3).item()
    scores = verifier.score_texts([(example.prompt, example.code) for example in examples])
    return bce_loss(torch.tensor(scores), torch.tensor([float(e.label) for e in examples])).item()


def initial_verifier(backbone: Path) -> Verifier:
    model, tokenizer, _ = load_backbone(str(backbone), seed=1)  # what training starts from (seed 1)
    return Verifier(model, tokenizer, {}, template="paper")


# ------------------------------------------------------------------------------------------------ losses


def test_loss_values() -> None:
    chosen, rejected = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])
    expected = (-math.log(1 / (1 + math.exp(-1))) - math.log(1 / (1 + math.exp(2)))) / 2 + 1e-3 * (1 + 0 + 0 + 4) / 4
    assert bt_loss(chosen, rejected, 1e-3).item() == pytest.approx(expected, rel=1e-6)
    assert bce_loss(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0])).item() == pytest.approx(
        (math.log(2) + math.log(1 + math.exp(2))) / 2, rel=1e-6)


def test_all_pairs_loss_is_the_mean_over_each_problems_pairs() -> None:
    first = (torch.tensor([2.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 0.0]))  # one positive, two negatives
    second = (torch.tensor([3.0, -1.0]), torch.tensor([1.0, 0.0]))

    def term(difference: float) -> float:
        return -math.log(1 / (1 + math.exp(-difference)))

    loss, correct, seen = all_pairs_bt_loss([first, second], 1e-3)
    mean_square = (4 + 0 + 1 + 9 + 1) / 5
    assert loss.item() == pytest.approx(((term(2.0) + term(1.0)) / 2 + term(4.0)) / 2 + 1e-3 * mean_square, rel=1e-6)
    assert (correct, seen) == (3.0, 3)
    # the reference's sampled pairs estimate it: over a problem's every pair, the BT terms average to it
    assert all_pairs_bt_loss([first], 0.0)[0].item() == pytest.approx(
        bt_loss(torch.tensor([2.0, 2.0]), torch.tensor([0.0, 1.0]), 0.0).item())


def test_a_problems_codes_run_in_chunks_after_a_shared_prompt_with_plain_backpropagations_gradients(
        run: Path, tiny_qwen2: Path) -> None:
    """`problem_scores` (prompt once, length-sorted chunks, recomputed in the backward pass) gives the scores and
    gradients of one plain forward and backward over every full code."""
    model, tokenizer, _ = load_backbone(str(tiny_qwen2), seed=1)
    encode = InputFormat(tokenizer).encode
    [item] = set_items(problem_sets(load_rollouts([run]).examples)[:1], lambda e: encode(e.prompt, e.code))
    pad = tokenizer.pad_token_id or 0
    targets = torch.tensor(item["labels"])

    def backpropagate(scores_of: Any) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model.zero_grad()
        scores = scores_of()
        all_pairs_bt_loss([(scores, targets)], 1e-3)[0].backward()
        return scores.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]

    plain, plain_grads = backpropagate(lambda: sequence_scores(model, *right_pad(item["codes"], pad, "cpu")))
    for share, budget in [(True, CHUNK_TOKENS), (False, CHUNK_TOKENS), (True, 1)]:
        problem = Collator("bt", pad, share_prefix=share, chunk_tokens=budget)([item])["problems"][0]
        assert (problem["prefix"].shape[1] > 10) is share  # the prompt, run once
        assert len(problem["chunks"]) == (len(item["codes"]) if budget == 1 else 1)
        scores, grads = backpropagate(lambda problem=problem: problem_scores(model, problem, bf16=False))
        assert torch.allclose(scores, plain, atol=1e-5)
        assert len(grads) == len(plain_grads) > 0
        assert all(torch.allclose(a, b, atol=1e-5, rtol=1e-4) for a, b in zip(grads, plain_grads, strict=True))


def test_length_chunks_sort_by_length_and_keep_each_chunk_within_the_budget() -> None:
    assert length_chunks([5, 1, 3, 2, 9], 6) == [[1, 3], [2], [0], [4]]  # 2×2; 3×3 > 6, so 3 opens a chunk; …
    assert length_chunks([4, 4, 4], 100) == [[0, 1, 2]]


@pytest.mark.parametrize(("loss", "lora", "pairing"), [("bt", False, "sampled"), ("bce", False, "sampled"),
                                                       ("bt", True, "sampled"), ("bce", True, "sampled"),
                                                       ("bt", False, "all")])
def test_training_reduces_the_loss_and_the_saved_verifier_reloads_identically(
        run: Path, tiny_qwen2: Path, tmp_path: Path, loss: str, lora: bool, pairing: str) -> None:
    before = dataset_loss(initial_verifier(tiny_qwen2), run, loss)
    extra = {"pairing": pairing, "batch_size": 2, "micro_batch_size": 1, "epochs": 16} if pairing == "all" else {}
    result = train_verifier(config(run, tmp_path / "v", tiny_qwen2, loss=loss, lora=lora, **extra))
    after = dataset_loss(result.verifier, run, loss)
    assert result.trained and after < 0.5 * before, (before, after)
    loaded = Verifier.load(tmp_path / "v", dtype="fp32", batch_size=result.verifier.batch_size)
    examples = [(example.prompt, example.code) for example in load_rollouts([run]).examples]
    assert loaded.score_texts(examples) == result.verifier.score_texts(examples)
    assert not list((tmp_path / "v" / "checkpoints").glob("checkpoint-*"))  # removed once the verifier is written
    assert not any("lora" in name for name in loaded.model.state_dict())  # LoRA is merged into the weights


def test_verifier_json_records_how_it_was_made(run: Path, tiny_qwen2: Path, tmp_path: Path) -> None:
    train_verifier(config(run, tmp_path / "v", tiny_qwen2, epochs=1))
    info = read_info(tmp_path / "v")
    assert info["format"] == "mucode.verifier/1" and info["loss"] == "bt" and info["template"] == "paper"
    assert info["backbone"] == {"name": str(tiny_qwen2), "model_id": tiny_qwen2.name}
    assert info["hyperparameters"]["learning_rate"] == 1e-3 and info["hyperparameters"]["l2_coeff"] == 1e-3
    [recorded] = info["data"]["runs"]
    assert recorded["path"] == str(run) and len(recorded["sha256"]) == 64
    assert info["data"]["pairs"] == 16 == info["data"]["items"]  # 2 problems have both labels, 8 pairs each
    assert info["data"]["problems"] == 3 and info["data"]["problems_with_both_labels"] == 2
    assert info["training"]["steps"] == 2 and info["training"]["last_logged"]["loss"] > 0
    assert 0 <= info["training"]["last_logged"]["accuracy"] <= 1
    assert {"torch", "transformers", "peft", "mucode"} <= info["versions"].keys()
    assert info["precision"] == "fp32" and info["timings"]["seconds"] > 0


# ------------------------------------------------------------------------------------------- reruns


class Interrupt(TrainerCallback):
    """Stops training at a given step, as a kill would (the step's checkpoint is not written)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt


def test_an_interrupted_run_resumes_from_its_checkpoint(run: Path, tiny_qwen2: Path, tmp_path: Path) -> None:
    settings = {"save_steps": 1, "epochs": 2}
    reference = train_verifier(config(run, tmp_path / "reference", tiny_qwen2, **settings))
    with pytest.raises(KeyboardInterrupt):
        train_verifier(config(run, tmp_path / "v", tiny_qwen2, **settings), callbacks=[Interrupt(3)])
    assert [p.name for p in (tmp_path / "v" / "checkpoints").glob("checkpoint-*")] == ["checkpoint-2"]
    with pytest.raises(ConfigError, match="is not a mucode verifier"):
        Verifier.load(tmp_path / "v")  # nothing half-trained loads
    with pytest.raises(ConfigError, match=r"checkpoints was started with another config "
                                          r"\(hyperparameters.epochs was 2, now 3\); use --force"):
        train_verifier(config(run, tmp_path / "v", tiny_qwen2, **{**settings, "epochs": 3}))
    resumed = train_verifier(config(run, tmp_path / "v", tiny_qwen2, **settings))
    assert resumed.info["training"]["resumed_from"].endswith("checkpoint-2")
    assert resumed.info["training"]["steps"] == reference.info["training"]["steps"] == 4
    examples = [(example.prompt, example.code) for example in load_rollouts([run]).examples]
    assert resumed.verifier.score_texts(examples) == pytest.approx(reference.verifier.score_texts(examples), abs=1e-5)


def test_the_learning_curve_scores_held_out_runs_every_n_items_and_keeps_its_points_across_a_resume(
        tiny_qwen2: Path, tmp_path: Path) -> None:
    inc, neg, half = PROBLEMS
    train = write_run(tmp_path / "train", problems=[inc, half])  # inc has both labels: 8 pairs
    heldout = write_run(tmp_path / "heldout", problems=[neg], seed=5, rollouts=8)
    settings = {"batch_size": 4, "epochs": 2, "save_steps": 1, "heldout": (str(heldout),), "eval_every": 8}
    with pytest.raises(KeyboardInterrupt):  # 2 steps per epoch; points after 8 and 16 pairs: steps 2 and 4
        train_verifier(config(train, tmp_path / "v", tiny_qwen2, **settings), callbacks=[Interrupt(3)])
    curve = tmp_path / "v" / "checkpoints" / "curve.jsonl"
    assert [json.loads(line)["step"] for line in curve.read_text().splitlines()] == [2]
    result = train_verifier(config(train, tmp_path / "v", tiny_qwen2, **settings))
    points = [json.loads(line) for line in (tmp_path / "v" / "curve.jsonl").read_text().splitlines()]
    assert [(p["step"], p["items"], p["pairs"]) for p in points] == [(2, 8, 8), (4, 16, 16)]  # the end once
    real = points[-1]["metrics"]["real"]
    assert real["examples"] == len(load_rollouts([heldout]).examples) and 0 <= real["auroc"] <= 1
    assert set(points[-1]["metrics"]["first_turn"]["selection"]) == {"1", "2", "4", "8"}
    summary = result.info["heldout_curve"]
    assert [row["items"] for row in summary] == [8, 16] and summary[-1]["auroc_real"] == real["auroc"]
    assert result.info["heldout"][0]["path"] == str(heldout)
    assert (tmp_path / "v" / "curve.png").read_bytes().startswith(b"\x89PNG")
    assert "heldout" not in result.info["hyperparameters"]  # watching the training does not change its identity
    with pytest.raises(ConfigError, match=r"held-out runs share 2 problem\(s\) with the training runs"):
        train_verifier(config(train, tmp_path / "w", tiny_qwen2, heldout=(str(train),)))
    with pytest.raises(ConfigError, match="eval_every needs held-out rollout runs"):
        config(train, tmp_path / "w", tiny_qwen2, eval_every=8)


def test_a_pairing_all_curve_counts_the_pairs_its_problem_sets_hold(tiny_qwen2: Path, tmp_path: Path) -> None:
    inc, neg, half = PROBLEMS
    train = write_run(tmp_path / "train", problems=[inc, half])
    heldout = write_run(tmp_path / "heldout", problems=[neg], seed=5, rollouts=8)
    result = train_verifier(config(train, tmp_path / "v", tiny_qwen2, pairing="all", batch_size=1,
                                   micro_batch_size=1, epochs=1, heldout=(str(heldout),)))
    [point] = result.info["heldout_curve"]  # no eval_every: the end only
    sets, pairs = result.info["data"]["items"], result.info["data"]["pairs"]
    assert point["items"] == sets < pairs and point["pairs"] == pairs  # one pass over every set: all its pairs


def test_rerunning_reuses_the_verifier_and_another_config_needs_force(run: Path, tiny_qwen2: Path,
                                                                      tmp_path: Path) -> None:
    first = train_verifier(config(run, tmp_path / "v", tiny_qwen2, epochs=1))
    again = train_verifier(config(run, tmp_path / "v", tiny_qwen2, epochs=1))
    assert not again.trained and again.info == first.info
    with pytest.raises(ConfigError, match=r"trained with another config \(hyperparameters.epochs was 1, now 2\); use"):
        train_verifier(config(run, tmp_path / "v", tiny_qwen2, epochs=2))
    forced = train_verifier(config(run, tmp_path / "v", tiny_qwen2, epochs=2, force=True))
    assert forced.trained and forced.info["training"]["steps"] == 4


def test_nothing_to_train_on_and_bad_options_are_one_line_errors(tiny_qwen2: Path, tmp_path: Path) -> None:
    hopeless = {key: [WRONG[key[0]]] for key in SCRIPT}  # no problem is ever solved: no pairs
    run = write_run(tmp_path / "hopeless", script=hopeless, rollouts=2)
    with pytest.raises(ConfigError, match=r"no training pairs in .*: no problem has both a correct and an incorrect"):
        train_verifier(config(run, tmp_path / "v", tiny_qwen2))
    with pytest.raises(ConfigError, match="batch_size \\(10\\) must be a multiple of micro_batch_size \\(4\\)"):
        config(run, tmp_path / "v", tiny_qwen2, batch_size=10)
    with pytest.raises(ConfigError, match="loss must be one of bt, bce; got 'hinge'"):
        config(run, tmp_path / "v", tiny_qwen2, loss="hinge")
    with pytest.raises(ConfigError, match="pairing 'all' applies to fine-tuning with the bt loss"):
        config(run, tmp_path / "v", tiny_qwen2, loss="bce", pairing="all")
    with pytest.raises(ConfigError, match="pairing must be one of sampled, all"):
        config(run, tmp_path / "v", tiny_qwen2, pairing="every")
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is a file"):
        train_verifier(config(run, tmp_path / "file", tiny_qwen2))
