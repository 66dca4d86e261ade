"""Verifier training under ``accelerate launch`` with 2 CPU processes (DDP over gloo): the same losses as one
process with the same global batch, files written once, and ``python -m mucode`` as the launched module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")
from safetensors.torch import load_file  # noqa: E402

from tests.test_verifier_data import write_run  # noqa: E402

OPTIONS = ["--loss", "bt", "--epochs", "10", "--batch-size", "8", "--micro-batch-size", "2", "--pairs-per-problem",
           "8", "--precision", "fp32", "--learning-rate", "1e-3", "--save-steps", "100"]
CONFIG = Path(__file__).parents[1] / "configs" / "accelerate" / "ddp-cpu.yaml"  # the shipped one: tested here
LAUNCH = ["-m", "accelerate.commands.launch", "--config_file", str(CONFIG)]


def run(args: list[str], log: Path) -> None:
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    with log.open("wb") as sink:
        code = subprocess.call([sys.executable, *args], stdout=sink, stderr=subprocess.STDOUT, env=environment,
                               timeout=600)
    assert code == 0, log.read_text()[-3000:]


def losses(verifier: Path) -> list[float]:
    return [entry["loss"] for entry in json.loads((verifier / "verifier.json").read_text())["training"]["log_history"]]


@pytest.mark.parametrize("pairing", ["sampled", "all"])
def test_two_process_ddp_trains_like_one_process_with_the_same_global_batch(tiny_qwen2: Path, tmp_path: Path,
                                                                           pairing: str) -> None:
    """Drawn pairs, and problem sets (whose chunks run again in the backward pass): the same steps, losses and
    weights as one process."""
    rollouts = write_run(tmp_path / "run")
    options = OPTIONS if pairing == "sampled" else [*OPTIONS, "--pairing", "all", "--batch-size", "2",
                                                    "--micro-batch-size", "1"]
    common = ["verifier", "train", "--rollouts", str(rollouts), "--backbone", str(tiny_qwen2), *options]
    run(["-m", "mucode", *common, "--out", str(tmp_path / "one")], tmp_path / "one.log")
    run([*LAUNCH, "-m", "mucode", *common, "--out", str(tmp_path / "two")], tmp_path / "two.log")
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    steps = [json.loads((tmp_path / name / "verifier.json").read_text())["training"]["steps"]
             for name in ("one", "two")]
    assert steps[0] == steps[1] == {"sampled": 20, "all": 10}[pairing]  # the global batch is kept
    assert len(one) == len(two) > 1 and one == pytest.approx(two, rel=1e-3), (one, two)
    weights = [load_file(tmp_path / name / "model.safetensors") for name in ("one", "two")]
    assert all(torch.allclose(weights[0][name], weights[1][name], atol=1e-5) for name in weights[0])
    assert not list((tmp_path / "two" / "checkpoints").glob("checkpoint-*"))
