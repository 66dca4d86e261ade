"""mucode.pipeline / ``mucode train``: a whole expert iteration on real components, its manifests, reruns that do
nothing, kill -9 at several stages followed by a rerun that ends with the same artefacts, and config errors.

The generator is a tiny Qwen2 first taught (with mucode's own SFT) to answer three toy problems with a mix of
right, wrong and public-only-right codes, so that rollouts at temperature 0.7 hold successes and failures;
generation, execution (the real sandbox), the verifier, relabelling, SFT and the searches are all real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from mucode.env import build_prompt  # noqa: E402
from mucode.errors import ConfigError  # noqa: E402
from mucode.expert import SFTExample  # noqa: E402
from mucode.pipeline import STAGE_FILE, load_config, parse_config, pinned_config, train  # noqa: E402
from mucode.problems.custom import write_custom  # noqa: E402
from mucode.records import Trajectory, read_trajectories  # noqa: E402
from mucode.training import SFTConfig, train_generator, write_examples  # noqa: E402
from tests.scripted_backend import PROBLEMS, RIGHT, TRAP, WRONG  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="session")
def tiny_coder(tiny_qwen2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`tiny_qwen2` fine-tuned to answer each toy problem right, wrong or with a trap (one example each)."""
    folder = tmp_path_factory.mktemp("tiny-coder")
    examples = [SFTExample(problem.task_id, ({"role": "user", "content": build_prompt(problem, "paper")},), reply,
                           "own", "", False)
                for problem in PROBLEMS
                for reply in (RIGHT[problem.task_id], WRONG[problem.task_id], TRAP[problem.task_id])]
    write_examples(folder / "examples.jsonl", examples)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train_generator(SFTConfig(examples=(str(folder / "examples.jsonl"),), out=str(folder / "sft"),
                                           base=str(tiny_qwen2), epochs=20, batch_size=9, micro_batch_size=9,
                                           learning_rate=2e-2, precision="fp32", progress=False))
    finally:
        torch.set_num_threads(threads)
    return result.model_dir


@pytest.fixture(scope="session")
def problems_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("problems") / "toy.jsonl"
    write_custom(PROBLEMS, path)
    return path


def experiment(coder: Path, problems: Path, **overrides: Any) -> dict[str, Any]:
    """A complete μCode iteration small enough for a test: 3 problems × 4 rollouts × 2 turns."""
    search = {"dataset": str(problems), "split": None, "turns": 2, "max_tokens": 40, "batch_size": 2}
    config = {
        "name": "toy", "method": "mucode", "iterations": 1,
        "generator": {"base": str(coder), "backend": "hf", "options": {"dtype": "fp32"}},
        "data": {"dataset": str(problems), "split": None, "policy": None},
        "rollouts": {"rollouts": 4, "turns": 2, "max_tokens": 40, "batch_size": 4},
        "verifier": {"loss": "bt", "backbone": str(coder), "epochs": 1, "batch_size": 4, "micro_batch_size": 2,
                     "pairs_per_problem": 4, "precision": "fp32", "learning_rate": 1e-3},
        "sft": {"epochs": 2, "batch_size": 4, "micro_batch_size": 2, "precision": "fp32", "learning_rate": 1e-3,
                "select": "validation", "validation": {**search, "split": "test"}},
        "evals": [{"name": "greedy", "greedy": True, **search},
                  {"name": "bon", "n": 2, "selector": "pt+lv", **search}],
    }
    for key, value in overrides.items():
        config[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return config


def run_quietly(config: dict[str, Any], out: Path) -> tuple[dict[str, Any], list[str]]:
    lines: list[str] = []
    summary = train(parse_config(config), out, progress=False, log=lines.append)
    return summary, lines


@pytest.fixture(scope="module")
def finished(tiny_coder: Path, problems_file: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("pipeline") / "run"
    summary, lines = run_quietly(experiment(tiny_coder, problems_file), out)
    return out, summary, lines


# ------------------------------------------------------------------------------------------ one run


STAGES = ["iter-1/rollouts", "iter-1/verifier", "evals/base/greedy", "evals/base/bon", "iter-1/expert",
          "iter-1/sft", "iter-1/select/epoch-1/validation", "iter-1/select/epoch-2/validation", "iter-1/select",
          "iter-2/rollouts", "iter-2/verifier", "evals/iter-1/greedy", "evals/iter-1/bon"]


def test_an_iteration_runs_every_stage_in_order_and_logs_one_line_each(finished) -> None:
    out, summary, lines = finished
    assert [line.split(":")[0] for line in lines] == STAGES
    for stage in STAGES:
        manifest = json.loads((out / stage / STAGE_FILE).read_text())
        assert manifest["stage"] == stage and manifest["timings"]["seconds"] >= 0 and manifest["versions"]["mucode"]
    assert "trajectories on 3 problems" in lines[0] and "success" in lines[-1]
    pinned = json.loads((out / "pipeline.json").read_text())
    assert pinned["method"] == "mucode" and pinned["config"]["rollouts"]["rollouts"] == 4
    assert {generator["label"] for generator in summary["generators"].values()} == {"Instruct", "μCode (iter 1)"}


def test_the_stages_hand_their_outputs_on(finished, tiny_coder: Path) -> None:
    out, summary, _ = finished
    examples = [json.loads(line) for line in (out / "iter-1/expert/examples.jsonl").read_text().splitlines()]
    assert examples and {example["kind"] for example in examples} <= {"relabelled", "own"}
    sft = json.loads((out / "iter-1/sft/sft.json").read_text())
    assert sft["data"]["examples"] == len(examples) and sft["base"]["path"] == str(tiny_coder)
    late = json.loads((out / "evals/iter-1/bon/results.json").read_text())
    chosen = max((json.loads((out / f"iter-1/select/epoch-{e}/validation/stage.json").read_text())["result"]["success"],
                  e) for e in (1, 2))[1]
    model = out / ("iter-1/sft/model" if chosen == 2 else "iter-1/sft/epochs/epoch-1")
    assert late["config"]["model"] == str(model) and late["config"]["label"] == "μCode (iter 1)"
    assert late["config"]["verifier"] == str(out / "iter-2/verifier")  # the verifier of its own rollouts
    early = json.loads((out / "evals/base/bon/results.json").read_text())
    assert early["config"]["verifier"] == str(out / "iter-1/verifier")
    assert summary["generators"]["base"]["evals"]["greedy"]["tasks"] == 3
    report = (out / "report.md").read_text()
    assert summary["report"] == str(out / "report.md") and "| Instruct |" in report and "μCode (iter 1)" in report


def test_a_rerun_does_no_work_and_another_config_is_refused(finished, tiny_coder: Path, problems_file: Path) -> None:
    out, summary, _ = finished
    again, lines = run_quietly(experiment(tiny_coder, problems_file), out)
    assert again == summary and all("done earlier" in line for line in lines)
    with pytest.raises(ConfigError, match=r"another config \(rollouts.rollouts was 4, now 5\); use another"):
        run_quietly(experiment(tiny_coder, problems_file, rollouts={"rollouts": 5}), out)


@pytest.mark.parametrize(("method", "stages"), [
    ("instruct", ["evals/base/greedy"]),
    ("rft-multi", ["iter-1/rollouts", "evals/base/greedy", "iter-1/expert", "iter-1/sft", "evals/iter-1/greedy"]),
])
def test_baselines_run_only_the_stages_they_need(tiny_coder: Path, problems_file: Path, tmp_path: Path,
                                                  method: str, stages: list[str]) -> None:
    """Instruct trains nothing; multi-turn RFT needs no verifier when no search uses one."""
    config = experiment(tiny_coder, problems_file, method=method, sft={"epochs": 1, "select": "last"})
    config["evals"] = config["evals"][:1]  # greedy only
    summary, lines = run_quietly(config, tmp_path / "run")
    assert [line.split(":")[0] for line in lines] == stages
    label = {"instruct": "Instruct", "rft-multi": "Multi-turn RFT (iter 1)"}[method]
    assert list(summary["generators"].values())[-1]["label"] == label


# --------------------------------------------------------------------------------------- kill and resume

KILLER = textwrap.dedent("""
    import os, sys
    where, count = sys.argv[1], int(sys.argv[2])
    calls = [0]

    def die_on(owner, name, when=lambda *args: True):
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            result = original(*args, **kwargs)
            if when(*args):
                calls[0] += 1
                if calls[0] == count:
                    os._exit(9)  # like kill -9: no cleanup, no finally blocks, buffers not flushed
            return result

        setattr(owner, name, wrapper)

    import mucode.runs, mucode.training, mucode.verifier.train
    if where == "rollouts":
        die_on(mucode.runs.RecordLog, "append", lambda log, records: log.path.name == "trajectories.jsonl")
    elif where == "searches":
        die_on(mucode.runs.RecordLog, "append", lambda log, records: log.path.name == "searches.jsonl")
    elif where == "verifier":
        die_on(mucode.verifier.train.VerifierTrainer, "training_step")
    elif where == "sft":
        die_on(mucode.training.SFTTrainer, "training_step")
    from mucode.cli import main
    main(["train", "--config", sys.argv[3], "--out", sys.argv[4]])
""")


def killed_run(config_file: Path, out: Path, where: str, count: int) -> None:
    done = subprocess.run([sys.executable, "-c", KILLER, where, str(count), str(config_file), str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 9, done.stderr[-2000:]


def artefacts(out: Path) -> dict[str, Any]:
    """What a run produced, without timings: trajectories, examples, model weights, search outcomes."""
    def trajectories(path: Path) -> list[Any]:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        return sorted(((row["task_id"], row["rollout"]), row["messages"], row["success"]) for row in rows)

    def searches(path: Path) -> list[Any]:
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        return sorted(((row["task_id"], row["search"]), row["final_code"], row["success"],
                       [turn["candidates"][turn["selected"]]["reply"] for turn in row["turns"]]) for row in rows)

    from safetensors.torch import load_file

    return {
        "rollouts": [trajectories(out / f"iter-{k}/rollouts/trajectories.jsonl") for k in (1, 2)],
        "examples": (out / "iter-1/expert/examples.jsonl").read_text(),
        "verifiers": [load_file(out / f"iter-{k}/verifier/model.safetensors") for k in (1, 2)],
        "generator": load_file(out / "iter-1/sft/model/model.safetensors"),
        "searches": [searches(out / f"evals/{g}/{name}/searches.jsonl")
                     for g in ("base", "iter-1") for name in ("greedy", "bon")],
    }


def assert_same(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert got["rollouts"] == expected["rollouts"]
    assert got["examples"] == expected["examples"]
    assert got["searches"] == expected["searches"]
    # Weights agree up to rounding. A resumed process may round a product differently (BLAS kernels can pick code
    # paths by buffer alignment), and Adam divides by the root of tiny second moments, so a rare element can move
    # by up to about a step (2.7e-5 seen on one VM, in 1 of 4096 elements). A lost or repeated optimizer step
    # moves nearly every element by about the learning rate (1e-3): the mean difference tells the two apart.
    for weights, reference in [(got["generator"], expected["generator"]),
                               *zip(got["verifiers"], expected["verifiers"], strict=True)]:
        assert weights.keys() == reference.keys()
        for name in weights:
            difference = (weights[name] - reference[name]).abs()
            assert difference.mean() < 1e-7 and difference.max() < 1e-2, \
                f"{name}: mean difference {difference.mean():.2e}, max {difference.max():.2e}"


@pytest.mark.slow
def test_kill_9_at_several_stages_then_rerun_gives_the_uninterrupted_result(finished, tiny_coder: Path,
                                                                           problems_file: Path,
                                                                           tmp_path: Path) -> None:
    reference = artefacts(finished[0])
    config_file = tmp_path / "toy.toml"
    config_file.write_text(toml(experiment(tiny_coder, problems_file)))
    out = tmp_path / "run"
    for where, count in [("rollouts", 1), ("verifier", 2), ("searches", 1), ("sft", 1), ("rollouts", 3)]:
        killed_run(config_file, out, where, count)
    done = subprocess.run([sys.executable, "-c", "from mucode.cli import main; main()", "train", "--config",
                           str(config_file), "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert_same(artefacts(out), reference)


DDP_CPU = Path(__file__).parents[1] / "configs" / "accelerate" / "ddp-cpu.yaml"


@pytest.mark.slow
def test_under_accelerate_launch_both_processes_fine_tune_and_the_other_stages_run_once(finished, tiny_coder: Path,
                                                                                        problems_file: Path,
                                                                                        tmp_path: Path) -> None:
    """``accelerate launch -m mucode train`` with 2 CPU processes: the verifier and SFT train with DDP (the same
    losses as one process with the same global batch), every other stage runs once in the main process (the
    same rollouts as a single-process run), and each stage is logged and the summary printed once."""
    config_file = tmp_path / "toy.toml"
    config_file.write_text(toml(experiment(tiny_coder, problems_file)))
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(DDP_CPU), "-m",
                           "mucode", "train", "--config", str(config_file), "--out", str(out)],
                          capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    logged = [line.removeprefix("mucode train ").split(":")[0] for line in done.stderr.splitlines()
              if line.startswith("mucode train ")]
    assert logged == STAGES and done.stdout.count("mucode train: toy") == 1
    reference = finished[0]
    assert artefacts(out)["rollouts"][0] == artefacts(reference)["rollouts"][0]
    for stage, info in [("iter-1/verifier", "verifier.json"), ("iter-1/sft", "sft.json")]:
        losses = [[entry["loss"] for entry in json.loads((run / stage / info).read_text())["training"]["log_history"]]
                  for run in (out, reference)]
        assert losses[0] and losses[0] == pytest.approx(losses[1], rel=1e-3), (stage, losses)
    assert json.loads((out / "summary.json").read_text())["generators"].keys() == {"base", "iter-1"}


def toml(config: dict[str, Any]) -> str:
    """A TOML rendering of the test configs (tables of scalars and lists, and the array of eval tables)."""
    def value(item: Any) -> str:
        if isinstance(item, dict):
            return "{" + ", ".join(f"{name} = {value(inner)}" for name, inner in item.items()) + "}"
        return json.dumps(item) if not isinstance(item, bool) else str(item).lower()

    lines = [f"{key} = {value(item)}" for key, item in config.items() if not isinstance(item, dict | list)]
    for key, table in config.items():
        if isinstance(table, dict):
            lines += [f"\n[{key}]", *(f"{name} = {value(item)}" for name, item in table.items() if item is not None)]
    for entry in config["evals"]:
        lines += ["\n[[evals]]", *(f"{name} = {value(item)}" for name, item in entry.items() if item is not None)]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ config errors


@pytest.mark.parametrize("preset", sorted(path.name for path in (Path(__file__).parents[1] / "configs").glob("*.toml")))
def test_the_presets_are_valid(preset: str) -> None:
    config = load_config(Path(__file__).parents[1] / "configs" / preset)
    assert config.method == "mucode" and config.evals and config.iterations >= 1


def test_config_files_are_validated_before_any_work(tmp_path: Path, tiny_coder: Path, problems_file: Path) -> None:
    good = experiment(tiny_coder, problems_file)
    path = tmp_path / "x.toml"
    path.write_text(toml(good))
    assert load_config(path).rollouts.rollouts == 4
    path.write_text(toml({**good, "sft": {**good["sft"], "epoch": 2}}))
    with pytest.raises(ConfigError, match=r"x.toml: sft.epoch: Extra inputs are not permitted"):
        load_config(path)
    path.write_text(toml({**good, "rollouts": {**good["rollouts"], "turns": 0}}))
    with pytest.raises(ConfigError, match=r"x.toml: rollouts: turns must be an integer >= 1, got 0"):
        load_config(path)
    path.write_text(toml({**good, "method": "star"}))
    with pytest.raises(ConfigError, match=r"method: Input should be 'instruct', 'mucode'"):
        load_config(path)
    bad_eval = {**good, "evals": [{"name": "g", "greedy": True, "n": 3}]}
    with pytest.raises(ConfigError, match=r"evals\[0\] \(g\): greedy search samples one candidate per turn"):
        parse_config(bad_eval)
    path.write_text("name = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="is not a GGUF file"):
        train(parse_config({**good, "generator": {"base": str(tiny_coder), "backend": "llamacpp"}}),
              tmp_path / "never", log=lambda line: None)
    typo = {**good, "evals": [{**good["evals"][0], "dataset": "humaneval", "split": "train"}]}
    with pytest.raises(ConfigError, match=r"evals.greedy: unknown split 'train'; choose one of: test"):
        train(parse_config(typo), tmp_path / "never", log=lambda line: None)
    assert not (tmp_path / "never").exists()  # nothing was started


# ------------------------------------------------------------------------------------------ two iterations


def records_of(run: Path) -> list[Trajectory]:
    return read_trajectories(run / "trajectories.jsonl")


def test_two_iterations_aggregate_rollouts_rescore_and_select_on_validation(tiny_coder: Path, problems_file: Path,
                                                                           tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Iteration 2's verifier and expert read both iterations' rollouts, its SFT starts from iteration 1's model
    (``init = "previous"``), and the run presents the iteration that does best on validation."""
    from mucode.expert import build_examples
    from mucode.pipeline import _verifier_scores, parse_config

    config = experiment(tiny_coder, problems_file, iterations=2, evaluate="last",
                        sft={"epochs": 1, "select": "last", "init": "previous"})
    config["evals"] = config["evals"][:1]  # greedy only
    out = tmp_path / "run"
    summary, lines = run_quietly(config, out)
    runs = [out / "iter-1/rollouts", out / "iter-2/rollouts"]
    first, second = records_of(runs[0]), records_of(runs[1])
    assert first and second and first != second
    # the verifier of iteration 2 is trained on both iterations' rollouts (aggregate = true)
    verifier = json.loads((out / "iter-2/verifier/stage.json").read_text())
    assert verifier["identity"]["rollouts"] == [str(run) for run in runs]
    # the expert of iteration 2 relabels both iterations' records with the newest verifier's scores (rescore)
    expert = json.loads((out / "iter-2/expert/stage.json").read_text())
    assert expert["identity"]["rollouts"] == [str(run) for run in runs]
    scores = _verifier_scores(out / "iter-2/verifier", runs)
    wanted = build_examples(first + second, parse_config(config).expert_config(), scores)
    alone = build_examples(second, parse_config(config).expert_config(), scores)
    written = [json.loads(line) for line in (out / "iter-2/expert/examples.jsonl").read_text().splitlines()]
    assert len(wanted) > len(alone) and [example.to_dict() for example in wanted] == written
    # SFT of iteration 2 continues from iteration 1's model
    sft = json.loads((out / "iter-2/sft/stage.json").read_text())
    assert sft["identity"]["base"] == str(out / "iter-1/sft/model")
    # both trained generators were searched on validation; the better one (the later on ties) is presented
    selection = json.loads((out / "selection.json").read_text())
    validation = {key: json.loads((out / key / "validation/stage.json").read_text())["result"]["success"]
                  for key in ("iter-1", "iter-2")}
    assert selection["by"] == "validation" and selection["validation"] == validation
    assert selection["selected"] == max(("iter-1", "iter-2"), key=lambda key: (validation[key], key))
    assert summary["selection"] == selection and "iter-1/validation" in [line.split(":")[0] for line in lines]
    # evaluate = "last": the last generator on test, and the selected one when it is another
    assert set(summary["generators"]) == {"iter-2", selection["selected"]}
    assert [summary["generators"][key]["selected"] for key in ("iter-1", "iter-2") if key in summary["generators"]] \
        == [key == selection["selected"] for key in ("iter-1", "iter-2") if key in summary["generators"]]
    # the report marks which generator was presented
    report = (out / "report.md").read_text()
    assert f"μCode (iter {selection['selected'][-1]}) · selected on validation" in report
    assert ("not selected" in report) == (selection["selected"] == "iter-1")  # iter-1 is on test only if chosen
    # when validation prefers iteration 1, it is searched on test too (evaluate = "last" asked for the last only)
    from mucode.pipeline import Pipeline

    monkeypatch.setattr(Pipeline, "_validation", lambda self, generator: {"iter-1": 1.0, "iter-2": 0.0}[generator.key])
    again, _ = run_quietly(config, out)
    assert again["selection"]["selected"] == "iter-1" and set(again["generators"]) == {"iter-1", "iter-2"}
    assert [again["generators"][key]["selected"] for key in ("iter-1", "iter-2")] == [True, False]
    searched = json.loads((out / "evals/iter-1/greedy/results.json").read_text())["config"]
    assert searched["model"] == str(out / "iter-1/sft/model") and searched["label"] == "μCode (iter 1)"
    report = (out / "report.md").read_text()
    assert "μCode (iter 1) · selected on validation" in report and "μCode (iter 2) · not selected" in report


def test_rescore_false_keeps_earlier_examples(tiny_coder: Path, problems_file: Path, tmp_path: Path) -> None:
    """The released code's aggregation: old examples kept as they were, new ones from the newest rollouts only."""
    config = experiment(tiny_coder, problems_file, method="mucode-ov", iterations=2, select="last",
                        expert={"rescore": False}, sft={"epochs": 1, "select": "last"})
    config["evals"] = config["evals"][:1]
    out = tmp_path / "run"
    run_quietly(config, out)
    examples = [(out / f"iter-{k}/expert/examples.jsonl").read_text().splitlines() for k in (1, 2)]
    assert examples[0] and examples[1][:len(examples[0])] == examples[0]
    from mucode.expert import build_examples
    from mucode.pipeline import parse_config

    new = build_examples(records_of(out / "iter-2/rollouts"), parse_config(config).expert_config())
    assert new and [json.loads(line) for line in examples[1][len(examples[0]):]] == [e.to_dict() for e in new]
    selection = json.loads((out / "selection.json").read_text())
    assert selection["by"] == "last" and selection["selected"] == "iter-2" and selection["validation"] == {}


def test_evals_use_the_rollouts_template_unless_they_name_one(tiny_coder: Path, problems_file: Path,
                                                               tmp_path: Path) -> None:
    """A run that trains on another prompt (here ``short``) is evaluated on it too."""
    config = experiment(tiny_coder, problems_file, method="instruct", rollouts={"template": "short"})
    config["evals"] = [config["evals"][0], {**config["evals"][0], "name": "paper-prompt", "template": "paper"}]
    out = tmp_path / "run"
    run_quietly(config, out)
    for name, template in (("greedy", "short"), ("paper-prompt", "paper")):
        results = json.loads((out / f"evals/base/{name}/results.json").read_text())
        assert results["config"]["search"]["template"] == template


def test_a_run_folder_of_an_older_format_is_not_resumed(tiny_coder: Path, problems_file: Path,
                                                       tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    config = experiment(tiny_coder, problems_file, method="instruct")
    (out / "pipeline.json").write_text(json.dumps({"format": "mucode.pipeline/1", "config": config}))
    with pytest.raises(ConfigError, match=r"started by another mucode version \(run format 'mucode.pipeline/1'"):
        run_quietly(config, out)


# ------------------------------------------------------------------------------------------ backend auto

def test_backend_auto_is_resolved_once_per_run(problems_file: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from mucode import pipeline

    base = tmp_path / "base.gguf"
    base.write_bytes(b"GGUF" + bytes(64))
    calls: list[tuple[str, str]] = []

    def resolve(kind: str, model: str) -> str:
        calls.append((kind, model))
        return "openvino"

    monkeypatch.setattr(pipeline, "resolve_backend", resolve)
    config = parse_config(experiment(base, problems_file, generator={"base": str(base), "backend": "auto",
                                                                     "options": {}}))
    run = pipeline.Pipeline(config, tmp_path / "run", log=lambda line: None)
    assert run.engine == "openvino" and run.engine == "openvino"
    assert calls == [("auto", str(base))]
    assert pipeline.EXPORT_FTYPES[run.engine] == "q8_0" and config.generator.export_ftype is None


def test_the_pinned_config_leaves_out_placement_and_options_at_their_old_default(tiny_coder: Path,
                                                                                problems_file: Path) -> None:
    good = experiment(tiny_coder, problems_file)
    local = parse_config(good)
    on_ray = parse_config({**good, "cluster": {"ray": "local", "replicas": 2, "sandboxes": 3}})
    assert on_ray.cluster.options() == {"ray": "local", "ray_replicas": 2, "ray_sandboxes": 3}
    assert pinned_config(on_ray) == pinned_config(local)  # a run resumes on another cluster
    assert "cluster" not in pinned_config(local) and "pairing" not in pinned_config(local)["verifier"]
    every_pair = parse_config({**good, "verifier": {**good.get("verifier", {}), "pairing": "all"}})
    assert pinned_config(every_pair)["verifier"]["pairing"] == "all"
    with pytest.raises(ConfigError, match=r"cluster\.replicas"):
        parse_config({**good, "cluster": {"replicas": 0}})
