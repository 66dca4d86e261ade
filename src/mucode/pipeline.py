"""μCode's expert iteration (Algorithm 1, docs/method.md §7) as one resumable command: ``mucode train``.

Iteration k (1..K) with generator G_{k-1} (G_0 = the base model):

1. ``rollouts``: N rollouts × T turns of G_{k-1} on the training problems;
2. ``verifier``: a verifier trained on the rollouts of iterations 1..k (aggregated, as the paper does);
3. ``expert``: SFT examples from the aggregated rollouts (`mucode.expert`), verifier scores from the newest
   verifier (the paper relabels all data; ``expert.rescore = false`` keeps earlier examples as they were,
   as the reference does);
4. ``sft``: fine-tune from the base model (``sft.init``) on the examples (`mucode.training`);
5. ``export``: the fine-tuned model as GGUF for the GGUF engines, llamacpp and openvino (`mucode.export`); with
   ``sft.select = "validation"``, every epoch's model is exported and searched greedily on the validation
   split instead, and the best becomes G_k (the paper chooses its checkpoint on MBPP validation).

Each ``[[evals]]`` entry is a multi-turn search (`mucode.search`) run for the base model ("Instruct") and
the generator of every iteration (or only the last, ``evaluate = "last"``). A search that uses the verifier
gets the one trained on that generator's own rollouts ("the reward model trained with samples of the latest
generator", docs/method.md §7), so the last generator gets a final round of rollouts and verifier training when an
eval needs it. The baselines are methods of the same loop (`mucode.expert`); ``instruct`` trains nothing.

Every stage writes ``stage.json`` (its identity, key numbers, timings, versions) into its folder when it
finishes; a rerun skips finished stages and resumes the unfinished one (rollouts, searches and training all
resume from what is on disk), so ``kill -9`` at any moment loses at most the work in flight. The run folder's
``pipeline.json`` pins the config: rerunning with another one fails naming the changed fields.

Under ``accelerate launch`` (or ``torchrun``) with several processes, ``accelerate launch -m mucode train ...``,
the fine-tuning stages (verifier, SFT) train in every process (DDP, `mucode.finetune`); every other stage runs in
the main process while the others wait for its manifest (files, not a collective, so an hours-long rollout
stage meets no process-group timeout). Only the main process writes files and logs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import tomllib
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator, model_validator

from mucode.backends import DEFAULT_BACKEND, resolve_backend
from mucode.errors import ConfigError, MucodeError
from mucode.evaluate import RESULT_PACKAGES
from mucode.expert import METHODS, ExpertConfig, build_examples, summarize_examples
from mucode.jobs import SFTConfig, TrainConfig
from mucode.launch import Launch
from mucode.models import DEFAULT_MODEL
from mucode.problems.mbpp import HUB_PREFIX
from mucode.records import TRAJECTORIES_FILE, Trajectory, read_trajectories
from mucode.rollout import RolloutConfig, rollout
from mucode.runs import changed_fields, check_identity, versions, write_atomic, write_json
from mucode.search import EvalConfig, SearchConfig, run_eval

#: Version 2: the expert relabels every state by default, evals follow the rollouts' template, and a run
#: chooses the iteration it presents on validation; run folders of version 1 are not resumed.
PIPELINE_FORMAT = "mucode.pipeline/2"
RUN_FILE = "pipeline.json"
CONFIG_COPY = "config.toml"
STAGE_FILE = "stage.json"
#: Packages besides mucode and Python whose versions every stage manifest records: they can change its output.
STAGE_PACKAGES = (*RESULT_PACKAGES, "torch", "transformers", "peft", "accelerate", "llama_cpp_python", "gguf")
EXAMPLES_FILE = "examples.jsonl"
EXPORT_FILE = "model.gguf"
#: The GGUF engines and the type fine-tuned generators are exported in for each (``export_ftype`` unset).
EXPORT_FTYPES = {"llamacpp": "q4_k_m", "openvino": "q8_0"}
REPORT_FILE = "report.md"
#: How reports name each method's generators.
METHOD_LABELS = {"instruct": "Instruct", "mucode": "μCode", "mucode-ov": "μCode_OV", "mucode-lv": "μCode_LV",
                 "rft-single": "Single-turn RFT", "rft-multi": "Multi-turn RFT",
                 "rft-multi-hindsight": "Multi-turn RFT (hindsight)", "rft-lv": "RFT_LV"}
VERIFIER_SELECTORS = frozenset({"lv", "pt+lv"})
Log = Callable[[str], None]
#: Seconds between two looks at a stage's manifest by a process waiting for the main one.
STAGE_POLL_SECONDS = 1.0


# ----------------------------------------------------------------------------------------------- config


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _section(model_name: str, /, *sources: tuple[type, Sequence[str]], **extra: Any) -> type[_Section]:
    """A config section made of library config fields, with the library's types and defaults: the library
    declares each default once and validates it; the section only says which fields an experiment file may set.
    ``sources``: (library dataclass, field names) pairs; ``extra``: the section's own fields, or a default the
    pipeline overrides, as ``(type, default)``."""
    definitions: dict[str, Any] = {}
    for library, names in sources:
        hints = typing.get_type_hints(library)
        declared = {item.name: item for item in dataclasses.fields(library)}
        for field_name in names:
            item = declared[field_name]
            default = item.default if item.default is not dataclasses.MISSING else Field(
                default_factory=item.default_factory)  # type: ignore[arg-type]
            definitions[field_name] = (hints[field_name], default)
    return create_model(model_name, __base__=_Section, **(definitions | extra))


class GeneratorSection(_Section):
    """The model being trained and how it generates. ``backend = "auto"`` is resolved once per run (the
    fastest installed CPU engine, `mucode.backends.auto`). ``export_ftype`` is the GGUF type fine-tuned
    generators are written in for the GGUF engines; by default the engine's own: q4_k_m for llamacpp (matches
    the official base files), q8_0 for openvino (its int8 weights)."""

    base: str = DEFAULT_MODEL
    backend: Literal["auto", "llamacpp", "openvino", "hf"] = DEFAULT_BACKEND  # type: ignore[assignment]
    #: Keyword options of the backend: ``dtype`` for hf, ``n_ctx``/``kv_layout``/``threads`` for llamacpp,
    #: ``weights``/``cache_gb`` for openvino.
    options: dict[str, Any] = Field(default_factory=dict)
    export_ftype: str | None = None


class DataSection(_section("DataFields", (RolloutConfig, ["split", "policy", "limit", "ids"]),
                           dataset=(str, "mbpp"))):  # type: ignore[misc]
    """Training problems. For MBPP, ``split`` and ``policy`` default to "train": the reference trains on MBPP
    train with all of ``test_list`` public; other datasets have one split and one policy."""

    @model_validator(mode="before")
    @classmethod
    def _mbpp_trains_on_train(cls, data: Any) -> Any:
        dataset = str(data.get("dataset", "mbpp")) if isinstance(data, Mapping) else ""
        if dataset.lower() == "mbpp" or dataset.startswith(HUB_PREFIX):
            return {"split": "train", "policy": "train", **data}
        return data


class RolloutSection(_section("RolloutFields", (RolloutConfig, ["rollouts", "turns", "temperature", "top_p",
                                                                "max_tokens", "template", "grading", "stop_at_code_end",
                                                                "batch_size",
                                                                "workers"]))):  # type: ignore[misc]
    """Data collection (`mucode.rollout.RolloutConfig`, docs/method.md §3): 15 rollouts × 3 turns at
    temperature 0.7 in the paper."""

    def validate_with(self, data: DataSection) -> None:
        """The library's own checks, run when the experiment file is read rather than an hour in."""
        RolloutConfig(model="-", dataset=data.dataset, out="-", **self.model_dump())


class VerifierSection(_section("VerifierFields", (TrainConfig, ["loss", "lora", "lora_rank", "lora_alpha",
                                                                "head_only", "learning_rate", "epochs",
                                                                "batch_size", "micro_batch_size",
                                                                "pairs_per_problem", "pairing", "max_length",
                                                                "precision", "seed", "gradient_checkpointing"]),
                               backbone=(str | None, None), aggregate=(bool, True))):  # type: ignore[misc]
    """Verifier training (`mucode.verifier.TrainConfig`); ``backbone`` None = the generator's base model.
    ``aggregate``: train on the rollouts of every iteration so far (paper and reference) or the latest only."""

    def train_config(self, rollouts: Sequence[str], out: str, backbone: str, progress: bool | None) -> TrainConfig:
        return TrainConfig(rollouts=tuple(rollouts), out=out, backbone=self.backbone or backbone, progress=progress,
                           **self.model_dump(exclude={"backbone", "aggregate"}))


class ExpertSection(_section("ExpertFields", (ExpertConfig, ["beta_oracle", "beta_verifier", "candidates",
                                                              "relabel", "relabel_count", "top_k"]),
                             rescore=(bool, True))):  # type: ignore[misc]
    """Relabelling options (`mucode.expert.ExpertConfig`; the method is the top-level ``method``).
    ``rescore``: relabel all aggregated data with the newest verifier (paper) or keep old examples (reference)."""


class EvalSection(_section("EvalFields", (SearchConfig, ["greedy", "n", "turns", "selector", "searches",
                                                         "temperature", "max_tokens", "seed", "grading",
                                                         "stop_at_code_end"]),
                           (EvalConfig, ["policy", "limit", "ids", "batch_size"]),
                           name=(str, ...), dataset=(str, "mbpp"), split=(str | None, "test"),
                           template=(str | None, None))):  # type: ignore[misc]
    """One multi-turn search per evaluated generator, written to ``evals/<generator>/<name>``: the fields of
    `mucode.search.SearchConfig` and where the problems come from. ``template`` None: the rollouts' template,
    so that a generator is evaluated on the prompt it was trained on (the paper's no-tests setting is
    ``[rollouts] template = "testless"``)."""

    @field_validator("name")
    @classmethod
    def _folder_name(cls, name: str) -> str:
        if not name or any(char in name for char in "/\\") or name.startswith("."):
            raise ValueError(f"{name!r} cannot be a folder name")
        return name

    def search(self, template: str) -> SearchConfig:
        """The search; ``template`` is used when the section names none (the rollouts' template)."""
        options = self.model_dump(exclude={"name", "dataset", "split", "policy", "limit", "ids", "batch_size"})
        return SearchConfig(**{**options, "template": self.template or template})


class ValidationSection(EvalSection):
    """The search that picks an SFT epoch (``sft.select``) and the reported iteration (``select``): greedy on
    MBPP validation unless told otherwise."""

    name: str = "validation"
    split: str | None = "validation"
    greedy: bool = True


class SFTSection(_section("SFTFields", (SFTConfig, ["lora", "lora_rank", "lora_alpha", "learning_rate", "epochs",
                                                    "batch_size", "micro_batch_size", "max_length", "precision",
                                                    "seed", "gradient_checkpointing"]))):  # type: ignore[misc]
    """Generator fine-tuning (`mucode.training.SFTConfig`). ``init``: start every iteration from the base
    model (paper) or from the previous iteration's model."""

    init: Literal["base", "previous"] = "base"
    #: "validation": keep every epoch's model and take the one with the best greedy success on
    #: ``validation`` (MBPP validation by default); "last": the final epoch (the reference's choice).
    select: Literal["last", "validation"] = "last"
    validation: ValidationSection = Field(default_factory=ValidationSection)

    def sft_config(self, examples: Sequence[str], out: str, base: str, progress: bool | None) -> SFTConfig:
        return SFTConfig(examples=tuple(examples), out=out, base=base, progress=progress,
                         epoch_snapshots=self.select == "validation",
                         **self.model_dump(exclude={"init", "select", "validation"}))


#: Options added after runs were made, left out of ``pipeline.json``'s config at their default, so those runs
#: still resume: (section, field) -> default.
OMITTED_WHEN_DEFAULT = {("verifier", "pairing"): "sampled"}


def pinned_config(config: PipelineConfig) -> dict[str, Any]:
    """The config a run pins (``pipeline.json``): everything but the placement (``cluster``: a resumed run may
    use another cluster) and the options in `OMITTED_WHEN_DEFAULT` at their default."""
    pinned = config.model_dump(mode="json", exclude={"cluster"})
    for (section, name), default in OMITTED_WHEN_DEFAULT.items():
        if pinned[section].get(name) == default:
            del pinned[section][name]
    return pinned


class ClusterSection(_Section):
    """Where the rollouts and evaluations run: this process (``ray`` unset), or a Ray cluster (``"local"``,
    ``"auto"`` or an address) with ``replicas`` backend actors and ``sandboxes`` sandbox actors
    (`mucode.cluster`, docs/scaling.md). Placement only: no stage's identity depends on it."""

    ray: str | None = None
    replicas: int = Field(default=1, ge=1)
    sandboxes: int = Field(default=1, ge=1)

    def options(self) -> dict[str, Any]:
        return {"ray": self.ray, "ray_replicas": self.replicas, "ray_sandboxes": self.sandboxes}


class PipelineConfig(_Section):
    """A whole experiment (``mucode train --config``). Sections default to the paper's settings."""

    name: str = "mucode"
    method: Literal["instruct", *METHODS] = "mucode"  # type: ignore[valid-type]
    iterations: int = Field(default=2, ge=0)
    evaluate: Literal["all", "last"] = "all"
    #: Which trained generator the report presents: the best on ``sft.validation`` (the paper picks the
    #: generator/verifier pair on MBPP validation, never on test) or the last one. Every evaluated generator's
    #: test numbers stay in the run; the others are marked as not selected.
    select: Literal["validation", "last"] = "validation"
    generator: GeneratorSection = Field(default_factory=GeneratorSection)
    data: DataSection = Field(default_factory=DataSection)
    rollouts: RolloutSection = Field(default_factory=RolloutSection)
    verifier: VerifierSection = Field(default_factory=VerifierSection)
    expert: ExpertSection = Field(default_factory=ExpertSection)
    sft: SFTSection = Field(default_factory=SFTSection)
    evals: list[EvalSection] = Field(default_factory=list)
    cluster: ClusterSection = Field(default_factory=ClusterSection)

    def model_post_init(self, context: Any) -> None:
        names = [entry.name for entry in self.evals]
        if len(set(names)) != len(names):
            raise ConfigError(f"evals: names must be unique, got {names}")
        for where, entry in [*((f"evals[{number}] ({entry.name})", entry) for number, entry in enumerate(self.evals)),
                             ("sft.validation", self.sft.validation)]:
            try:
                entry.search(self.rollouts.template)
            except ConfigError as error:
                raise ConfigError(f"{where}: {error}") from None
        try:
            self.expert_config()
        except ConfigError as error:
            raise ConfigError(f"{error} (method = {self.method!r})") from None
        for where, check in [("rollouts", lambda: self.rollouts.validate_with(self.data)),
                             ("verifier", lambda: self.verifier.train_config(["-"], "-", "-", False)),
                             ("sft", lambda: self.sft.sft_config(["-"], "-", "-", False))]:
            try:
                check()
            except ConfigError as error:
                raise ConfigError(f"{where}: {error}") from None

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


def run_stage(stage: Stage, log: Log, launch: Launch | None = None, *, everywhere: bool = False) -> dict[str, Any]:
    """The stage's result: read from its manifest when it already finished, else computed and recorded.

    With several processes (``launch``), the main process computes and records; the others wait for its manifest,
    unless the stage runs ``everywhere`` (fine-tuning: every process trains), in which case they compute with it.
    """
    main = launch is None or launch.main
    if not main and not everywhere:
        return _wait_for(stage)
    recorded = _finished(stage, drop_stale=main)
    if recorded is not None:
        log(f"{stage.name}: done earlier · {stage.summary(recorded)}")
        return recorded
    started = time.time()
    result = dict(stage.work())
    seconds = round(time.time() - started, 1)
    if main:
        write_json(stage.folder / STAGE_FILE, {
            "stage": stage.name, "identity": stage.identity, "result": result,
            "timings": {"seconds": seconds, "finished": time.strftime("%Y-%m-%dT%H:%M:%S")},
            "versions": versions(*STAGE_PACKAGES)})
        log(f"{stage.name}: {stage.summary(result)} · {_duration(seconds)}")
    return result


def _finished(stage: Stage, *, drop_stale: bool) -> dict[str, Any] | None:
    """The recorded result when the stage finished with the same identity; a manifest of other inputs (an earlier
    stage was redone) is deleted when ``drop_stale``, so the stage is redone."""
    manifest = stage.folder / STAGE_FILE
    if not manifest.is_file():
        return None
    recorded = json.loads(manifest.read_text(encoding="utf-8"))
    # a field added since the stage ran, with a None default, leaves the identity unchanged
    if not changed_fields(recorded.get("identity") or {}, json.loads(json.dumps(stage.identity))):
        return recorded["result"]
    if drop_stale:
        manifest.unlink()
    return None


def _wait_for(stage: Stage) -> dict[str, Any]:
    """A non-main process: the stage's result once the main process has recorded it. A failing main process
    ends the launch (the launcher stops every process), so this does not wait forever."""
    while (recorded := _finished(stage, drop_stale=False)) is None:
        time.sleep(STAGE_POLL_SECONDS)
    return recorded


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
    #: Success on the validation search, when the SFT epoch was chosen by it (then it need not run again).
    validation: float | None = None


class Pipeline:
    """One run folder and its config; `run` executes (or resumes) every stage in order."""

    def __init__(self, config: PipelineConfig, out: str | os.PathLike[str], *, config_file: str | os.PathLike[str]
                 | None = None, progress: bool | None = None, log: Log = print) -> None:
        self.config, self.out, self.progress = config, Path(out).expanduser(), progress
        self.launch = Launch()
        self.log = log if self.launch.main else _quiet  # one line per stage, from the main process
        self.config_file = Path(config_file) if config_file else None
        with self.launch.main_first():  # the main process pulls the models, the others then find them
            self._check_generator()
        self._engine: str | None = None

    @property
    def engine(self) -> str:
        """The generation backend every stage uses: the configured one, ``auto`` resolved once per run."""
        if self._engine is None:
            self._engine = resolve_backend(self.config.generator.backend, self.config.generator.base)
        return self._engine

    def run(self) -> dict[str, Any]:
        """All stages; returns (and writes to ``summary.json``) every evaluated generator's key numbers."""
        from mucode.backends.hf import quiet_transformers

        with quiet_transformers():  # transformers' save/load bars and notices would drown the stage lines
            return self._run()

    def _run(self) -> dict[str, Any]:
        with self.launch.main_first():
            self._pin_config()
            self.engine  # noqa: B018  (resolves ``auto`` once; the main process first, which caches its choice)
        config, results = self.config, {}
        generator = Generator("base", self.config.generator.base, METHOD_LABELS["instruct"])
        trained: list[Generator] = []
        for k in range(1, config.training_iterations + 1):
            self._rollouts(k, generator)
            verifier = self._verifier(k) if self._verifier_needed() else None
            if config.evaluate == "all":
                results[generator.key] = self._evaluate(generator, verifier)
            self._expert(k, verifier)
            generator = self._train(k)
            trained.append(generator)
        results[generator.key] = self._final_evaluation(generator, config.training_iterations + 1)
        selection = self._selection(trained)
        if selection is not None and selection["selected"] not in results:  # evaluate = "last" chose an earlier one
            chosen = trained[selection["candidates"].index(selection["selected"])]
            results[chosen.key] = self._final_evaluation(chosen, selection["candidates"].index(chosen.key) + 2)
        for key, result in results.items():
            chose = selection is not None and selection["by"] != "only" and key != "base"
            result["selected"] = key == selection["selected"] if chose else None
        summary = {"format": PIPELINE_FORMAT, "name": config.name, "method": config.method, "generators": results,
                   "selection": selection, "report": str(self.out / REPORT_FILE) if config.evals else None}
        if self.launch.main:
            if config.evals:
                self._report()
            write_json(self.out / "summary.json", summary)
        self.launch.wait()
        return summary

    # ------------------------------------------------------------------------------ per-iteration stages

    def _rollouts(self, k: int, generator: Generator) -> dict[str, Any]:
        section, data = self.config.rollouts, self.config.data
        folder = self._iteration(k) / "rollouts"
        # Every field of the section (grading and stop_at_code_end included) reaches the library's config.
        rollout_config = RolloutConfig(
            model=generator.model, dataset=data.dataset, out=str(folder), backend=self.engine, split=data.split,
            policy=data.policy, seed=_iteration_seed(k), limit=data.limit, ids=tuple(data.ids),
            progress=self.progress, backend_options=self.config.generator.options, **self.config.cluster.options(),
            **section.model_dump())

        def work() -> dict[str, Any]:
            summary = rollout(rollout_config)
            return {"trajectories": summary["trajectories"], "problems": summary["run"]["problems"],
                    "success": summary.get("success_rate", {}).get("value", 0.0),
                    "generated": summary["run"]["generated"]}

        return self._stage(Stage(f"iter-{k}/rollouts", folder, {"generator": generator.model,
                                                               "options": self.config.generator.options,
                                                               "rollouts": section.model_dump(),
                                                               "data": data.model_dump(), "seed": _iteration_seed(k)},
                               work, lambda r: f"{r['trajectories']} trajectories on {r['problems']} problems, "
                                               f"success {r['success']:.1%}"))

    def _verifier(self, k: int) -> Path:
        from mucode.verifier import train_verifier

        section = self.config.verifier
        folder = self._iteration(k) / "verifier"
        runs = self._rollout_dirs(k) if section.aggregate else [self._iteration(k) / "rollouts"]
        train_config = section.train_config([str(run) for run in runs], str(folder), self.config.generator.base,
                                            self.progress)

        def work() -> dict[str, Any]:
            info = train_verifier(train_config).info
            return {"examples": info["data"].get("examples"), "pairs": info["data"].get("pairs"),
                    "steps": info["training"]["steps"], "train_loss": info["training"]["train_loss"]}

        # pairing is left out at its default ("sampled"), so stages trained before the option keep their identity
        recorded = section.model_dump(exclude={"pairing"} if section.pairing == "sampled" else set())
        self._stage(Stage(f"iter-{k}/verifier", folder, {"verifier": recorded, "rollouts": [str(run) for run in runs]},
                        work, lambda r: f"{section.loss} on {r['pairs'] or r['examples']} "
                                        f"{'pairs' if r['pairs'] else 'examples'}, {r['steps']} steps, "
                                        f"loss {r['train_loss']:.3f}"), everywhere=True)
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

        self._stage(Stage(f"iter-{k}/expert", folder, {"expert": self.config.expert.model_dump(),
                                                      "method": self.config.method,
                                                      "rollouts": [str(run) for run in runs],
                                                      "verifier": str(verifier) if verifier else None},
                        work, lambda r: ", ".join(f"{value} {key}" for key, value in r.items())))
        return folder

    def _train(self, k: int) -> Generator:
        from mucode.training import train_generator

        section = self.config.sft
        folder = self._iteration(k) / "sft"
        base = self.config.generator.base
        if section.init == "previous" and k > 1:
            base = str(self._iteration(k - 1) / "sft" / "model")
        sft_config = section.sft_config([str(self._iteration(k) / "expert" / EXAMPLES_FILE)], str(folder), base,
                                        self.progress)

        def work() -> dict[str, Any]:
            info = train_generator(sft_config).info
            return {"examples": info["data"]["items"], "steps": info["training"]["steps"],
                    "train_loss": info["training"]["train_loss"]}

        self._stage(Stage(f"iter-{k}/sft", folder, {"sft": section.model_dump(), "base": base}, work,
                        lambda r: f"{r['examples']} examples, {r['steps']} steps, loss {r['train_loss']:.3f}"),
                    everywhere=True)
        label = f"{METHOD_LABELS[self.config.method]} (iter {k})"
        if section.select == "validation":
            chosen = self._select(k, folder, label)
            return Generator(f"iter-{k}", chosen["model"], label, validation=chosen["success"])
        return Generator(f"iter-{k}", self._runnable(folder / "model", self._iteration(k) / "export",
                                                     f"iter-{k}/export"), label)

    def _select(self, k: int, sft: Path, label: str) -> dict[str, Any]:
        """The epoch whose model does best on the validation searches (the later epoch on ties)."""
        from mucode.training import epoch_models

        scored: list[dict[str, Any]] = []
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

        chosen = self._stage(Stage(f"iter-{k}/select", self._iteration(k) / "select", {"candidates": scored}, work,
                                 lambda r: f"epoch {r['epoch']} of {r['epochs']} ({r['success']:.1%} on validation)"))
        return chosen

    def _runnable(self, model: Path, folder: Path, name: str) -> str:
        """What the generation backend loads: the transformers folder itself (hf) or its GGUF export."""
        if self.engine not in EXPORT_FTYPES:
            return str(model)
        from mucode.export import export_gguf
        from mucode.models.resolve import resolve_model

        target = folder / EXPORT_FILE
        ftype = self.config.generator.export_ftype or EXPORT_FTYPES[self.engine]
        template = resolve_model(self.config.generator.base).path

        def work() -> dict[str, Any]:
            manifest = export_gguf(model, template, target, ftype=ftype)
            return {"ftype": ftype, "bytes": manifest.get("size"), "sha256": manifest.get("sha256")}

        self._stage(Stage(name, folder, {"model": str(model), "template": str(template), "ftype": ftype},
                        work, lambda r: f"{r['ftype']} GGUF, {(r['bytes'] or 0) / 2**20:.0f} MiB"))
        return str(target)

    # ------------------------------------------------------------------------------------------ selection

    def _selection(self, evaluated: Sequence[Generator]) -> dict[str, Any] | None:
        """The trained generator the run presents, written to ``selection.json``: the best on the validation
        search (the later iteration on ties), the last one with ``select = "last"``, or the only one. With
        ``evaluate = "last"`` a chosen earlier generator is then searched on test too, with its own verifier."""
        if not evaluated:
            return None
        scores: dict[str, float] = {}
        if self.config.select == "validation" and len(evaluated) > 1:
            scores = {generator.key: self._validation(generator) for generator in evaluated}
            chosen = max(evaluated, key=lambda generator: (scores[generator.key], evaluated.index(generator)))
            by = "validation"
        else:
            chosen, by = evaluated[-1], "last" if len(evaluated) > 1 else "only"
        selection = {"selected": chosen.key, "label": chosen.label, "by": by, "validation": scores,
                     "candidates": [generator.key for generator in evaluated]}
        from mucode.report import SELECTION_FILE

        if self.launch.main:
            write_json(self.out / SELECTION_FILE, selection)  # `mucode report` marks the generators not chosen
        return selection

    def _validation(self, generator: Generator) -> float:
        """The generator's success on ``sft.validation``: from its epoch selection, else a search of its own."""
        if generator.validation is not None:
            return generator.validation
        folder = self.out / generator.key / "validation"
        return self._search(generator, self.config.sft.validation, None, folder,
                            f"{generator.key}/validation")["success"]

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
        eval_config = EvalConfig(model=generator.model, dataset=entry.dataset, out=str(folder),
                                 search=entry.search(self.config.rollouts.template),
                                 backend=self.engine, split=entry.split, policy=entry.policy,
                                 limit=entry.limit, ids=tuple(entry.ids), verifier=str(verifier) if verifier else None,
                                 batch_size=entry.batch_size, progress=self.progress, label=generator.label,
                                 backend_options=self.config.generator.options, **self.config.cluster.options())

        def work() -> dict[str, Any]:
            metrics = run_eval(eval_config)["metrics"]
            return {"tasks": metrics["tasks"], "success": metrics["success"]["value"],
                    "ci95": metrics["success"]["ci95"], "mean_turns": metrics["mean_turns"]}

        identity = {"generator": generator.model, "options": self.config.generator.options,
                    "eval": entry.model_dump(), "verifier": eval_config.verifier, "label": generator.label}
        return self._stage(Stage(name, folder, identity, work,
                               lambda r: f"success {r['success']:.1%} [{r['ci95'][0]:.1%}, {r['ci95'][1]:.1%}] "
                                         f"on {r['tasks']} tasks"))

    def _report(self) -> None:
        """``report.md`` (+ HTML, JSON, plots) over this run's evaluations; rewritten on every run (cheap)."""
        from mucode.report import ReportConfig, write_report

        write_report(ReportConfig(run_dirs=(str(self.out),), out=str(self.out / REPORT_FILE)))

    # ---------------------------------------------------------------------------------------------- helpers

    def _stage(self, stage: Stage, *, everywhere: bool = False) -> dict[str, Any]:
        """`run_stage` in this run's processes: the fine-tuning stages run ``everywhere`` (DDP)."""
        return run_stage(stage, self.log, self.launch, everywhere=everywhere)

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
        wanted = pinned_config(self.config)
        path = self.out / RUN_FILE
        if path.is_file():
            run = json.loads(path.read_text(encoding="utf-8"))
            if run.get("format") != PIPELINE_FORMAT:
                raise ConfigError(f"{self.out} was started by another mucode version (run format "
                                  f"{run.get('format')!r}, this one writes {PIPELINE_FORMAT!r}: the stages' meaning "
                                  "changed); use another --out")
            check_identity(self.out, run.get("config", {}), wanted, remedy="use another --out")
            return
        self.out.mkdir(parents=True, exist_ok=True)
        if self.config_file:  # the file as written, comments included, for people reading the run
            write_atomic(self.out / CONFIG_COPY, self.config_file.read_bytes())
        write_json(path, {"format": PIPELINE_FORMAT, "name": self.config.name, "method": self.config.method,
                          "label": METHOD_LABELS[self.config.method], "config": wanted,
                          "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "versions": versions(*STAGE_PACKAGES)})

    def _check_datasets(self) -> None:
        """Every dataset, split and policy the run will read loads now, not an hour in."""
        from mucode.problems import load_problems

        config = self.config
        reads = [("data", config.data.dataset, config.data.split, config.data.policy),
                 *((f"evals.{e.name}", e.dataset, e.split, e.policy) for e in config.evals)]
        if config.training_iterations and (config.sft.select == "validation" or (
                config.select == "validation" and config.training_iterations > 1)):
            validation = config.sft.validation
            reads.append(("sft.validation", validation.dataset, validation.split, validation.policy))
        for where, dataset, split, policy in reads:
            try:
                load_problems(dataset, split, policy=policy)
            except MucodeError as error:
                raise ConfigError(f"{where}: {error}") from None

    def _check_generator(self) -> None:
        """Fail before any work when the generator cannot be trained or exported as configured; registry
        models are pulled (and verified) first, with a progress bar, so a fresh install needs no separate step."""
        from mucode.models.resolve import resolve_model

        ref = resolve_model(self.config.generator.base)
        verifier_used = self._verifier_needed() or any(map(self.config.needs_verifier_for, self.config.evals))
        if self.config.verifier.backbone and verifier_used:
            resolve_model(self.config.verifier.backbone)
        self._check_datasets()
        if self.config.generator.backend in EXPORT_FTYPES and ref.format != "gguf" and self.config.training_iterations:
            raise ConfigError(f"generator.base {self.config.generator.base!r} is not a GGUF file: fine-tuned "
                              "models are exported to GGUF using the base file as template; use backend = \"hf\"")


def _quiet(line: str) -> None:
    """The log of a process other than the main one: its lines would repeat the main process's."""


def _iteration_seed(k: int) -> int:
    """Each iteration's rollouts draw fresh samples (the seed derives per task, rollout and turn from it)."""
    return k - 1


def _trajectories(run: Path) -> list[Trajectory]:
    """The run's trajectories, parsed (and checked) as `mucode.records.Trajectory`."""
    return read_trajectories(run / TRAJECTORIES_FILE)


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
