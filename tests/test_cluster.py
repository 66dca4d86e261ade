"""Episodes on a local Ray cluster (``ray.init(num_cpus=2)``) with SmolLM2: the same records as a run without
Ray, and killed backend and sandbox actors are replaced without losing or duplicating a record."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from mucode.backends import SamplingParams, load_backend  # noqa: E402
from mucode.cluster import RayBackend, RaySandbox  # noqa: E402
from mucode.rollout import open_sandbox, run_rollouts  # noqa: E402
from tests.scripted_backend import PROBLEMS  # noqa: E402

PARAMS = SamplingParams(n=1, temperature=0.7, max_tokens=48, seed=5)


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    yield
    ray.shutdown()


def keys(run: Path) -> list[tuple[str, int]]:
    lines = (run / "trajectories.jsonl").read_text().splitlines()
    return sorted((record["task_id"], record["rollout"]) for record in map(json.loads, lines))


def test_a_ray_run_writes_the_records_of_a_local_run_and_survives_killed_actors(cluster: None, smollm2_gguf: Path,
                                                                                 tmp_path: Path) -> None:
    settings = {"rollouts": 2, "turns": 2, "params": PARAMS, "progress": False}
    with load_backend("llamacpp", str(smollm2_gguf)) as backend, open_sandbox(1) as sandbox:
        run_rollouts(PROBLEMS, backend, sandbox, out_dir=tmp_path / "local", **settings)
        local_identity = (backend.name, backend.model_id)
    remote = RayBackend(str(smollm2_gguf), kind="llamacpp", replicas=2)
    remote_sandbox = RaySandbox(2, workers=1)
    try:
        assert (remote.name, remote.model_id) == local_identity  # a run resumes with or without Ray
        ray.kill(remote.actors[1])  # a lost worker: its chunk is sent to a new actor
        ray.kill(remote_sandbox.slots[0].actor)
        summary = run_rollouts(PROBLEMS, remote, remote_sandbox, out_dir=tmp_path / "ray", **settings)
    finally:
        remote_sandbox.close()
        remote.close()
    assert keys(tmp_path / "ray") == keys(tmp_path / "local") == sorted(
        (problem.task_id, index) for problem in PROBLEMS for index in range(2))
    assert remote.replaced >= 1 and remote_sandbox.replaced >= 1
    assert summary["trajectories"] == 2 * len(PROBLEMS)
    config = json.loads((tmp_path / "ray" / "config.json").read_text())
    assert config == json.loads((tmp_path / "local" / "config.json").read_text())  # the same run identity
