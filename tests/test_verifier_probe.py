"""Head-only verifier training (mucode.verifier.probe): both losses fit the head, the backbone is left untouched,
the feature cache resumes and is exact, the options are checked. Tiny random Qwen2 backbone, real runs."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from mucode.errors import ConfigError  # noqa: E402
from mucode.verifier import TrainConfig, Verifier, load_rollouts, read_info, train_verifier  # noqa: E402
from mucode.verifier.probe import FEATURES_FILE, compute_features, load_features  # noqa: E402
from tests.test_verifier_data import write_run  # noqa: E402
from tests.test_verifier_train import dataset_loss, initial_verifier  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SETTINGS = {"head_only": True, "batch_size": 8, "pairs_per_problem": 8, "precision": "fp32", "progress": False,
            "learning_rate": 3e-2, "epochs": 40}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_run(tmp_path_factory.mktemp("rollouts") / "run")


def config(run: Path, out: Path, backbone: Path, **overrides: object) -> TrainConfig:
    return TrainConfig(rollouts=(str(run),), out=str(out), backbone=str(backbone), **{**SETTINGS, **overrides})


@pytest.mark.parametrize("loss", ["bt", "bce"])
def test_head_only_training_fits_the_head_and_leaves_the_backbone(run: Path, tiny_qwen2: Path, tmp_path: Path,
                                                                  loss: str) -> None:
    start = initial_verifier(tiny_qwen2)
    before = dataset_loss(start, run, loss)
    result = train_verifier(config(run, tmp_path / "v", tiny_qwen2, loss=loss))
    after = dataset_loss(result.verifier, run, loss)
    assert result.trained and after < 0.5 * before, (before, after)
    trained = result.verifier.model.state_dict()
    changed = {name for name, value in start.model.state_dict().items() if not torch.equal(value, trained[name])}
    assert changed == {"score.weight"}
    loaded = Verifier.load(tmp_path / "v", dtype="fp32")
    saved = loaded.model.state_dict()
    assert {name for name, value in start.model.state_dict().items() if not torch.equal(value, saved[name])} == {
        "score.weight"}
    examples = [(example.prompt, example.code) for example in load_rollouts([run]).examples]
    assert loaded.score_texts(examples) == result.verifier.score_texts(examples)
    assert not (tmp_path / "v" / "checkpoints" / FEATURES_FILE).exists()  # the cache goes with the checkpoints
    info = read_info(tmp_path / "v")
    assert info["hyperparameters"]["head_only"] is True
    assert info["training"]["steps"] == 40 * -(-info["data"]["items"] // 8)  # epochs × batches per epoch
    assert [entry["epoch"] for entry in info["training"]["log_history"]] == list(range(1, 41))
    assert info["training"]["log_history"][-1]["loss"] < info["training"]["log_history"][0]["loss"]


def test_scores_are_the_head_applied_to_the_features(tiny_qwen2: Path, run: Path) -> None:
    verifier = initial_verifier(tiny_qwen2)
    examples = [(example.prompt, example.code) for example in load_rollouts([run]).examples]
    features = verifier.embed_texts(examples)
    assert features.shape == (len(examples), verifier.head.weight.shape[-1])
    expected = verifier.head(features).squeeze(-1).tolist()
    assert verifier.score_texts(examples) == pytest.approx(expected, abs=1e-6)


def test_the_feature_cache_is_reused_and_completed(tiny_qwen2: Path, run: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = initial_verifier(tiny_qwen2)
    keys = list(dict.fromkeys((example.prompt, example.code) for example in load_rollouts([run]).examples))
    cache = tmp_path / FEATURES_FILE
    first = compute_features(verifier, keys[:3], cache)
    assert set(load_features(cache)) == set(keys[:3])
    embedded: list[int] = []
    full = compute_features(verifier, keys, cache, embedded.append)
    assert sum(embedded) == len(keys) - 3  # only the missing codes ran
    assert all(torch.equal(full[key], first[key]) for key in keys[:3])
    fresh = compute_features(verifier, keys, tmp_path / "other.pt")
    assert all(torch.allclose(full[key], fresh[key], atol=1e-5) for key in keys)
    monkeypatch.setattr(Verifier, "embed_texts", lambda *args: pytest.fail("the cache should have answered"))
    assert compute_features(verifier, keys, cache).keys() == full.keys()


def test_options_are_checked_and_defaulted(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="head_only and lora exclude each other"):
        TrainConfig(rollouts=("r",), out=str(tmp_path), head_only=True, lora=True)
    head = TrainConfig(rollouts=("r",), out=str(tmp_path), head_only=True)
    assert (head.learning_rate, head.epochs) == (1e-3, 30)
    full = TrainConfig(rollouts=("r",), out=str(tmp_path))
    assert (full.learning_rate, full.epochs) == (1e-5, 2)
    assert "head_only" not in full.hyperparameters()  # verifiers trained before the option keep their identity

