"""μCode's expert iteration (Algorithm 1, METHOD.md §7) as one resumable command: ``mucode train``.

Iteration k (1..K) with generator G_{k-1} (G_0 = the base model):

1. ``rollouts``: N rollouts × T turns of G_{k-1} on the training problems;
2. ``verifier``: a verifier trained on the rollouts of iterations 1..k (aggregated, as the paper does);
3. ``expert``: SFT examples from the aggregated rollouts (`mucode.expert`), verifier scores from the newest
   verifier (the paper relabels all data; ``expert.rescore = false`` keeps earlier examples as they were,
   as the reference does);
4. ``sft``: fine-tune from the base model (``sft.init``) on the examples (`mucode.training`);
5. ``export``: the fine-tuned model as GGUF for the llama.cpp backend (`mucode.export`); with
   ``sft.select = "validation"``, every epoch's model is exported and searched greedily on the validation
   split instead, and the best becomes G_k (the paper chooses its checkpoint on MBPP validation).

Each ``[[evals]]`` entry is a multi-turn search (`mucode.search`) run for the base model ("Instruct") and
the generator of every iteration (or only the last, ``evaluate = "last"``). A search that uses the verifier
gets the one trained on that generator's own rollouts ("the reward model trained with samples of the latest
generator", METHOD.md §7), so the last generator gets a final round of rollouts and verifier training when an
eval needs it. The baselines are methods of the same loop (`mucode.expert`); ``instruct`` trains nothing.

Every stage writes ``stage.json`` (its identity, key numbers, timings, versions) into its folder when it
finishes; a rerun skips finished stages and resumes the unfinished one (rollouts, searches and training all
resume from what is on disk), so ``kill -9`` at any moment loses at most the work in flight. The run folder's
``pipeline.json`` pins the config: rerunning with another one fails naming the changed fields.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError, field_validator, model_validator

from mucode.backends import DEFAULT_BACKEND
from mucode.errors import ConfigError, MucodeError
from mucode.evaluate import package_versions
from mucode.expert import METHODS, ExpertConfig, build_examples, summarize_examples
from mucode.models import DEFAULT_MODEL
from mucode.problems.mbpp import HUB_PREFIX
from mucode.rollout import TRAJECTORIES_FILE, RolloutConfig, rollout, write_json
from mucode.samples import write_atomic
from mucode.search import EvalConfig, SearchConfig, run_eval

PIPELINE_FORMAT = "mucode.pipeline/1"
RUN_FILE = "pipeline.json"
CONFIG_COPY = "config.toml"
STAGE_FILE = "stage.json"
EXAMPLES_FILE = "examples.jsonl"
EXPORT_FILE = "model.gguf"
REPORT_FILE = "report.md"
#: How reports name each method's generators.
METHOD_LABELS = {"instruct": "Instruct", "mucode": "μCode", "mucode-ov": "μCode_OV", "mucode-lv": "μCode_LV",
                 "rft-single": "Single-turn RFT", "rft-multi": "Multi-turn RFT",
                 "rft-multi-hindsight": "Multi-turn RFT (hindsight)", "rft-lv": "RFT_LV"}
VERIFIER_SELECTORS = frozenset({"lv", "pt+lv"})
Log = Callable[[str], None]


# ----------------------------------------------------------------------------------------------- config


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GeneratorSection(_Section):
    """The model being trained and how it generates. ``export_ftype`` is the GGUF type fine-tuned generators
    are written in for the llamacpp backend (q4_k_m matches the official base files)."""

    base: str = DEFAULT_MODEL
    backend: Literal["llamacpp", "hf"] = DEFAULT_BACKEND  # type: ignore[assignment]
    #: Keyword options of the backend: ``dtype`` for hf, ``n_ctx``/``kv_layout``/``threads`` for llamacpp.
    options: dict[str, Any] = Field(default_factory=dict)
    export_ftype: str = "q4_k_m"


class DataSection(_Section):
    """Training problems. For MBPP, ``split`` and ``policy`` default to "train": the reference trains on MBPP
    train with all of ``test_list`` public; other datasets have one split and one policy."""

    dataset: str = "mbpp"
    split: str | None = None
    policy: str | None = None
    limit: PositiveInt | None = None
    ids: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _mbpp_trains_on_train(cls, data: Any) -> Any:
        dataset = str(data.get("dataset", "mbpp")) if isinstance(data, Mapping) else ""
        if dataset.lower() == "mbpp" or dataset.startswith(HUB_PREFIX):
            return {"split": "train", "policy": "train", **data}
        return data


class RolloutSection(_Section):
    """Data collection (METHOD.md §3): 15 rollouts × 3 turns at temperature 0.7 in the paper."""

    rollouts: PositiveInt = 15
    turns: PositiveInt = 3
    temperature: float = 0.7
    top_p: float = 1.0
    max_tokens: PositiveInt = 1000
    template: str = "paper"
    batch_size: PositiveInt = 64
    workers: PositiveInt | None = None


class VerifierSection(_Section):
    """Verifier training (`mucode.verifier.TrainConfig`); ``backbone`` None = the generator's base model.
    ``aggregate``: train on the rollouts of every iteration so far (paper and reference) or the latest only."""

    loss: Literal["bt", "bce"] = "bt"
    backbone: str | None = None
    lora: bool = False
    lora_rank: PositiveInt = 16
    lora_alpha: PositiveInt = 32
    head_only: bool = False
    learning_rate: float | None = None
    epochs: PositiveInt | None = None
    batch_size: PositiveInt = 64
    micro_batch_size: PositiveInt = 2
    pairs_per_problem: PositiveInt = 32
    max_length: PositiveInt = 2048
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    seed: int = 1
    gradient_checkpointing: bool = False
    aggregate: bool = True


class ExpertSection(_Section):
    """Relabelling options (`mucode.expert.ExpertConfig`; the method is the top-level ``method``).
    ``rescore``: relabel all aggregated data with the newest verifier (paper) or keep old examples (reference)."""

    beta_oracle: float | None = None
    beta_verifier: float | None = None
    candidates: Literal["all", "final"] = "all"
    relabel: Literal["all", "top-scored"] = "all"
    relabel_count: PositiveInt = 3
    top_k: PositiveInt = 3
    rescore: bool = True


class EvalSection(_Section):
    """One multi-turn search per evaluated generator (`mucode.search.SearchConfig`), written to
    ``evals/<generator>/<name>``."""

    name: str
    dataset: str = "mbpp"
    split: str | None = "test"
    policy: str | None = None
    limit: PositiveInt | None = None
    ids: list[str] = Field(default_factory=list)
    greedy: bool = False
    n: PositiveInt | None = None
    turns: PositiveInt = 3
    selector: str = "pt"
    searches: PositiveInt = 1
    temperature: float | None = None
    max_tokens: PositiveInt = 1000
    seed: int = 0
    batch_size: PositiveInt = 64

    @field_validator("name")
    @classmethod
    def _folder_name(cls, name: str) -> str:
        if not name or any(char in name for char in "/\\") or name.startswith("."):
            raise ValueError(f"{name!r} cannot be a folder name")
        return name

    def search(self) -> SearchConfig:
        return SearchConfig(n=self.n, turns=self.turns, selector=self.selector, searches=self.searches,
                            temperature=self.temperature, max_tokens=self.max_tokens, seed=self.seed,
                            greedy=self.greedy)


class ValidationSection(EvalSection):
    """The search that picks an SFT epoch: greedy on MBPP validation unless told otherwise."""

    name: str = "validation"
    split: str | None = "validation"
    greedy: bool = True


class SFTSection(_Section):
    """Generator fine-tuning (`mucode.training.SFTConfig`). ``init``: start every iteration from the base
    model (paper) or from the previous iteration's model."""

    lora: bool = False
    lora_rank: PositiveInt = 16
    lora_alpha: PositiveInt = 32
    learning_rate: float | None = None
    epochs: PositiveInt = 2
    batch_size: PositiveInt = 32
    micro_batch_size: PositiveInt = 1
    max_length: PositiveInt = 4096
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    seed: int = 42
    gradient_checkpointing: bool = False
    init: Literal["base", "previous"] = "base"
    #: "validation": keep every epoch's model and take the one with the best greedy success on
    #: ``validation`` (MBPP validation by default); "last": the final epoch (the reference's choice).
    select: Literal["last", "validation"] = "last"
    validation: ValidationSection = Field(default_factory=ValidationSection)


class PipelineConfig(_Section):
    """A whole experiment (``mucode train --config``). Sections default to the paper's settings."""

    name: str = "mucode"
    method: Literal["instruct", *METHODS] = "mucode"  # type: ignore[valid-type]
    iterations: int = Field(default=2, ge=0)
    evaluate: Literal["all", "last"] = "all"
    generator: GeneratorSection = Field(default_factory=GeneratorSection)
    data: DataSection = Field(default_factory=DataSection)
    rollouts: RolloutSection = Field(default_factory=RolloutSection)
    verifier: VerifierSection = Field(default_factory=VerifierSection)
    expert: ExpertSection = Field(default_factory=ExpertSection)
    sft: SFTSection = Field(default_factory=SFTSection)
    evals: list[EvalSection] = Field(default_factory=list)

    def model_post_init(self, context: Any) -> None:
        names = [entry.name for entry in self.evals]
        if len(set(names)) != len(names):
            raise ConfigError(f"evals: names must be unique, got {names}")
        for where, entry in [*((f"evals[{number}] ({entry.name})", entry) for number, entry in enumerate(self.evals)),
                             ("sft.validation", self.sft.validation)]:
            try:
                entry.search()
            except ConfigError as error:
                raise ConfigError(f"{where}: {error}") from None
        self.expert_config()

    @property
    def training_iterations(self) -> int:
        return 0 if self.method == "instruct" else self.iterations

    def expert_config(self) -> ExpertConfig:
        expert = self.expert.model_dump(exclude={"rescore"})
        return ExpertConfig(method="mucode" if self.method == "instruct" else self.method, **expert)

    def needs_verifier_for_training(self) -> bool:
        return self.training_iterations > 0 and self.expert_config().needs_scores

    def needs_verifier_for(self, entry: EvalSection) -> bool:
        return entry.selector in VERIFIER_SELECTORS and not entry.greedy


def load_config(path: str | os.PathLike[str]) -> PipelineConfig:
    """A TOML experiment file, validated; ConfigError naming the file and the first bad field."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {file} does not exist")
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{file}: not valid TOML ({error})") from None
    return parse_config(data, str(file))


def parse_config(data: Mapping[str, Any], origin: str = "config") -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ConfigError(f"{origin}: {where}: {first['msg']}") from None
    except ConfigError as error:
        raise ConfigError(f"{origin}: {error}") from None


# ------------------------------------------------------------------------------------------------ stages


@dataclass(frozen=True)
class Stage:
    """A unit of work with a folder: done when its ``stage.json`` exists with the same identity."""

    name: str
    folder: Path
    identity: Mapping[str, Any]
    work: Callable[[], Mapping[str, Any]]
    summary: Callable[[Mapping[str, Any]], str]


def run_stage(stage: Stage, log: Log) -> dict[str, Any]:
    """The stage's result: read from its manifest when it already finished, else computed and recorded."""
    manifest = stage.folder / STAGE_FILE
    if manifest.is_file():
        recorded = json.loads(manifest.read_text(encoding="utf-8"))
        if recorded.get("identity") == json.loads(json.dumps(stage.identity)):
            log(f"{stage.name}: done earlier · {stage.summary(recorded['result'])}")
            return recorded["result"]
        manifest.unlink()  # the inputs changed (an earlier stage was redone): redo this one
    started = time.time()
    result = dict(stage.work())
    seconds = round(time.time() - started, 1)
    write_json(manifest, {"stage": stage.name, "identity": stage.identity, "result": result,
                          "timings": {"seconds": seconds, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")},
                          "versions": stage_versions()})
    log(f"{stage.name}: {stage.summary(result)} · {_duration(seconds)}")
    return result


def stage_versions() -> dict[str, str | None]:
    """mucode, Python and the platform, and the packages that can change a stage's output."""
    found = dict(package_versions())
    for package in ("torch", "transformers", "peft", "accelerate", "llama_cpp_python", "gguf"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    return found


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{seconds:.1f}s"


# ------------------------------------------------------------------------------------------- the pipeline


@dataclass
class Generator:
    """A generator of the expert iteration: what generates (a GGUF file or a transformers folder) and how
    reports name it."""

    key: str  # "base", "iter-1", …: its folder under evals/
    model: str
    label: str


class Pipeline:
    """One run folder and its config; `run` executes (or resumes) every stage in order."""

    def __init__(self, config: PipelineConfig, out: str | os.PathLike[str], *, config_file: str | os.PathLike[str]
                 | None = None, progress: bool | None = None, log: Log = print) -> None:
        self.config, self.out, self.progress, self.log = config, Path(out).expanduser(), progress, log
        self.config_file = Path(config_file) if config_file else None
        self._check_generator()

    def run(self) -> dict[str, Any]:
        """All stages; returns (and writes to ``summary.json``) every evaluated generator's key numbers."""
        from mucode.verifier.model import quiet_transformers

        with quiet_transformers():  # transformers' save/load bars and notices would drown the stage lines
            return self._run()

    def _run(self) -> dict[str, Any]:
        self._pin_config()
        config, results = self.config, {}
        generator = Generator("base", self.config.generator.base, METHOD_LABELS["instruct"])
        for k in range(1, config.training_iterations + 1):
            self._rollouts(k, generator)
            verifier = self._verifier(k) if self._verifier_needed() else None
            if config.evaluate == "all":
                results[generator.key] = self._evaluate(generator, verifier)
            self._expert(k, verifier)
            generator = self._train(k)
        results[generator.key] = self._final_evaluation(generator, config.training_iterations + 1)
        summary = {"format": PIPELINE_FORMAT, "name": config.name, "method": config.method, "generators": results,
                   "report": self._report() if config.evals else None}
        write_json(self.out / "summary.json", summary)
        return summary

    # ------------------------------------------------------------------------------ per-iteration stages

    def _rollouts(self, k: int, generator: Generator) -> dict[str, Any]:
        section, data = self.config.rollouts, self.config.data
        folder = self._iteration(k) / "rollouts"
        rollout_config = RolloutConfig(
            model=generator.model, dataset=data.dataset, out=str(folder), backend=self.config.generator.backend,
            split=data.split, policy=data.policy, rollouts=section.rollouts, turns=section.turns,
            temperature=section.temperature, top_p=section.top_p, max_tokens=section.max_tokens,
            seed=_iteration_seed(k), template=section.template, limit=data.limit, ids=tuple(data.ids),
            workers=section.workers, batch_size=section.batch_size, progress=self.progress,
            backend_options=self.config.generator.options)

        def work() -> dict[str, Any]:
            summary = rollout(rollout_config)
            return {"trajectories": summary["trajectories"], "problems": summary["run"]["problems"],
                    "success": summary.get("success_rate", {}).get("value", 0.0),
                    "generated": summary["run"]["generated"]}

        return run_stage(Stage(f"iter-{k}/rollouts", folder, {"generator": generator.model,
                                                               "options": self.config.generator.options,
                                                               "rollouts": section.model_dump(),
                                                               "data": data.model_dump(), "seed": _iteration_seed(k)},
                               work, lambda r: f"{r['trajectories']} trajectories on {r['problems']} problems, "
                                               f"success {r['success']:.1%}"), self.log)

    def _verifier(self, k: int) -> Path:
        from mucode.verifier import TrainConfig, train_verifier

        section = self.config.verifier
        folder = self._iteration(k) / "verifier"
        runs = self._rollout_dirs(k) if section.aggregate else [self._iteration(k) / "rollouts"]
        options = section.model_dump(exclude={"backbone", "aggregate"})
        train_config = TrainConfig(rollouts=tuple(str(run) for run in runs), out=str(folder),
                                   backbone=section.backbone or self.config.generator.base, progress=self.progress,
                                   **options)

        def work() -> dict[str, Any]:
            info = train_verifier(train_config).info
            return {"examples": info["data"].get("examples"), "pairs": info["data"].get("pairs"),
                    "steps": info["training"]["steps"], "train_loss": info["training"]["train_loss"]}

        run_stage(Stage(f"iter-{k}/verifier", folder, {"verifier": section.model_dump(),
                                                        "rollouts": [str(run) for run in runs]},
                        work, lambda r: f"{section.loss} on {r['pairs'] or r['examples']} "
                                        f"{'pairs' if r['pairs'] else 'examples'}, {r['steps']} steps, "
                                        f"loss {r['train_loss']:.3f}"), self.log)
        return folder

    def _expert(self, k: int, verifier: Path | None) -> Path:
        folder = self._iteration(k) / "expert"
        expert = self.config.expert_config()
        rescore = self.config.expert.rescore
        runs = self._rollout_dirs(k) if rescore else [self._iteration(k) / "rollouts"]

        def work() -> dict[str, Any]:
            from mucode.training import load_examples, write_examples

            records = [record for run in runs for record in _trajectories(run)]
            scores = _verifier_scores(verifier, runs) if expert.needs_scores else None
            examples = build_examples(records, expert, scores)
            if not rescore and k > 1:
                examples = load_examples([self._iteration(k - 1) / "expert" / EXAMPLES_FILE]) + examples
            write_examples(folder / EXAMPLES_FILE, examples)
            return summarize_examples(examples)

        run_stage(Stage(f"iter-{k}/expert", folder, {"expert": self.config.expert.model_dump(),
                                                      "method": self.config.method,
                                                      "rollouts": [str(run) for run in runs],
                                                      "verifier": str(verifier) if verifier else None},
                        work, lambda r: ", ".join(f"{value} {key}" for key, value in r.items())), self.log)
        return folder

    def _train(self, k: int) -> Generator:
        from mucode.training import SFTConfig, train_generator

        section = self.config.sft
        folder = self._iteration(k) / "sft"
        base = self.config.generator.base
        if section.init == "previous" and k > 1:
            base = str(self._iteration(k - 1) / "sft" / "model")
        options = section.model_dump(exclude={"init", "select", "validation"})
        sft_config = SFTConfig(examples=(str(self._iteration(k) / "expert" / EXAMPLES_FILE),), out=str(folder),
                               base=base, progress=self.progress, epoch_snapshots=section.select == "validation",
                               **options)

        def work() -> dict[str, Any]:
            info = train_generator(sft_config).info
            return {"examples": info["data"]["items"], "steps": info["training"]["steps"],
                    "train_loss": info["training"]["train_loss"]}

        run_stage(Stage(f"iter-{k}/sft", folder, {"sft": section.model_dump(), "base": base}, work,
                        lambda r: f"{r['examples']} examples, {r['steps']} steps, loss {r['train_loss']:.3f}"),
                  self.log)
        label = f"{METHOD_LABELS[self.config.method]} (iter {k})"
        if section.select == "validation":
            return Generator(f"iter-{k}", self._select(k, folder, label), label)
        return Generator(f"iter-{k}", self._runnable(folder / "model", self._iteration(k) / "export",
                                                     f"iter-{k}/export"), label)

    def _select(self, k: int, sft: Path, label: str) -> str:
        """The epoch whose model does best on the validation searches (the later epoch on ties)."""
        from mucode.training import epoch_models

        scored = []
        for epoch, model in epoch_models(sft):
            folder = self._iteration(k) / "select" / f"epoch-{epoch}"
            runnable = self._runnable(model, folder, f"iter-{k}/select/epoch-{epoch}/export")
            result = self._search(Generator(f"iter-{k}", runnable, f"{label}, epoch {epoch}"),
                                  self.config.sft.validation, None, folder / "validation",
                                  f"iter-{k}/select/epoch-{epoch}/validation")
            scored.append({"epoch": epoch, "success": result["success"], "model": runnable})

        def work() -> dict[str, Any]:
            best = max(scored, key=lambda item: (item["success"], item["epoch"]))
            return {**best, "epochs": len(scored)}

        chosen = run_stage(Stage(f"iter-{k}/select", self._iteration(k) / "select", {"candidates": scored}, work,
                                 lambda r: f"epoch {r['epoch']} of {r['epochs']} ({r['success']:.1%} on validation)"),
                           self.log)
        return chosen["model"]

    def _runnable(self, model: Path, folder: Path, name: str) -> str:
        """What the generation backend loads: the transformers folder itself (hf) or its GGUF export."""
        if self.config.generator.backend != "llamacpp":
            return str(model)
        from mucode.export import export_gguf
        from mucode.models.resolve import resolve_model

        target = folder / EXPORT_FILE
        ftype = self.config.generator.export_ftype
        template = resolve_model(self.config.generator.base).path

        def work() -> dict[str, Any]:
            manifest = export_gguf(model, template, target, ftype=ftype)
            return {"ftype": ftype, "bytes": manifest.get("size"), "sha256": manifest.get("sha256")}

        run_stage(Stage(name, folder, {"model": str(model), "template": str(template), "ftype": ftype},
                        work, lambda r: f"{r['ftype']} GGUF, {(r['bytes'] or 0) / 2**20:.0f} MiB"), self.log)
        return str(target)

    # ------------------------------------------------------------------------------------------ evaluation

    def _final_evaluation(self, generator: Generator, k: int) -> dict[str, Any]:
        """The last generator's searches, after its own rollouts and verifier when a search needs one."""
        verifier = None
        if any(self.config.needs_verifier_for(entry) for entry in self.config.evals):
            self._rollouts(k, generator)
            verifier = self._verifier(k)
        return self._evaluate(generator, verifier)

    def _evaluate(self, generator: Generator, verifier: Path | None) -> dict[str, Any]:
        """Every configured search with ``generator``: {"label", "model", "evals": {name: key numbers}}."""
        results = {entry.name: self._search(generator, entry, verifier if self.config.needs_verifier_for(entry)
                                            else None, self.out / "evals" / generator.key / entry.name,
                                            f"evals/{generator.key}/{entry.name}")
                   for entry in self.config.evals}
        return {"label": generator.label, "model": generator.model, "evals": results}

    def _search(self, generator: Generator, entry: EvalSection, verifier: Path | None, folder: Path,
                name: str) -> dict[str, Any]:
        """One search stage: `mucode eval` of ``generator`` into ``folder``; its key numbers."""
        eval_config = EvalConfig(model=generator.model, dataset=entry.dataset, out=str(folder), search=entry.search(),
                                 backend=self.config.generator.backend, split=entry.split, policy=entry.policy,
                                 limit=entry.limit, ids=tuple(entry.ids), verifier=str(verifier) if verifier else None,
                                 batch_size=entry.batch_size, progress=self.progress, label=generator.label,
                                 backend_options=self.config.generator.options)

        def work() -> dict[str, Any]:
            metrics = run_eval(eval_config)["metrics"]
            return {"tasks": metrics["tasks"], "success": metrics["success"]["value"],
                    "ci95": metrics["success"]["ci95"], "mean_turns": metrics["mean_turns"]}

        identity = {"generator": generator.model, "options": self.config.generator.options,
                    "eval": entry.model_dump(), "verifier": eval_config.verifier, "label": generator.label}
        return run_stage(Stage(name, folder, identity, work,
                               lambda r: f"success {r['success']:.1%} [{r['ci95'][0]:.1%}, {r['ci95'][1]:.1%}] "
                                         f"on {r['tasks']} tasks"), self.log)

    def _report(self) -> str:
        """``report.md`` (+ HTML, JSON, plots) over this run's evaluations; rewritten on every run (cheap)."""
        from mucode.report import ReportConfig, write_report

        write_report(ReportConfig(run_dirs=(str(self.out),), out=str(self.out / REPORT_FILE)))
        return str(self.out / REPORT_FILE)

    # ---------------------------------------------------------------------------------------------- helpers

    def _verifier_needed(self) -> bool:
        """Within an iteration: for the expert, or for searching with the generator the iteration started from."""
        return self.config.needs_verifier_for_training() or (
            self.config.evaluate == "all" and any(self.config.needs_verifier_for(entry) for entry in self.config.evals))

    def _iteration(self, k: int) -> Path:
        return self.out / f"iter-{k}"

    def _rollout_dirs(self, k: int) -> list[Path]:
        return [self._iteration(i) / "rollouts" for i in range(1, k + 1)]

    def _pin_config(self) -> None:
        """Write ``pipeline.json`` on the first run; later runs must have the same config."""
        from mucode.finetune import changed_fields

        wanted = self.config.model_dump(mode="json")
        path = self.out / RUN_FILE
        if path.is_file():
            pinned = json.loads(path.read_text(encoding="utf-8")).get("config", {})
            if changed := changed_fields(pinned, wanted):
                raise ConfigError(f"{self.out} was started with another config ({', '.join(changed[:5])} changed); "
                                  "use another --out")
            return
        self.out.mkdir(parents=True, exist_ok=True)
        if self.config_file:  # the file as written, comments included, for people reading the run
            write_atomic(self.out / CONFIG_COPY, self.config_file.read_bytes())
        write_json(path, {"format": PIPELINE_FORMAT, "name": self.config.name, "method": self.config.method,
                          "label": METHOD_LABELS[self.config.method], "config": wanted,
                          "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "versions": stage_versions()})

    def _check_datasets(self) -> None:
        """Every dataset, split and policy the run will read loads now, not an hour in."""
        from mucode.problems import load_problems

        config = self.config
        reads = [("data", config.data.dataset, config.data.split, config.data.policy),
                 *((f"evals.{e.name}", e.dataset, e.split, e.policy) for e in config.evals)]
        if config.sft.select == "validation" and config.training_iterations:
            validation = config.sft.validation
            reads.append(("sft.validation", validation.dataset, validation.split, validation.policy))
        for where, dataset, split, policy in reads:
            try:
                load_problems(dataset, split, policy=policy)
            except MucodeError as error:
                raise ConfigError(f"{where}: {error}") from None

    def _check_generator(self) -> None:
        """Fail before any work when the generator cannot be trained or exported as configured; registry
        models are pulled (and verified) first, so a fresh install needs no separate step."""
        from mucode.models import REGISTRY, pull
        from mucode.models.resolve import resolve_model

        for name in {self.config.generator.base, self.config.verifier.backbone}:
            if name in REGISTRY:
                pull(name)
        self._check_datasets()
        ref = resolve_model(self.config.generator.base)
        if self.config.generator.backend == "llamacpp" and ref.format != "gguf" and self.config.training_iterations:
            raise ConfigError(f"generator.base {self.config.generator.base!r} is not a GGUF file: fine-tuned "
                              "models are exported to GGUF using the base file as template; use backend = \"hf\"")


def _iteration_seed(k: int) -> int:
    """Each iteration's rollouts draw fresh samples (the seed derives per task, rollout and turn from it)."""
    return k - 1


def _trajectories(run: Path) -> list[dict[str, Any]]:
    with (run / TRAJECTORIES_FILE).open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def _verifier_scores(verifier: Path | None, runs: Sequence[Path]) -> dict[tuple[str, str], float]:
    """The verifier's score of every code in the runs, by (task id, code)."""
    from mucode.verifier import Verifier, load_rollouts, score_rollouts

    if verifier is None:
        raise ConfigError("this expert method needs a verifier, but none was trained")
    data = load_rollouts([str(run) for run in runs])
    scores = score_rollouts(Verifier.load(verifier), data)
    return {(example.task_id, example.code): score for example, score in zip(data.examples, scores, strict=True)}


def train(config: PipelineConfig, out: str | os.PathLike[str], *, config_file: str | os.PathLike[str] | None = None,
          progress: bool | None = None, log: Log = print) -> dict[str, Any]:
    """What ``mucode train`` does (see the module doc). ``config_file`` is copied into the run folder."""
    return Pipeline(config, out, config_file=config_file, progress=progress, log=log).run()
