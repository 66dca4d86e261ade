"""Verifier training data from rollout runs: labelled examples and Bradley-Terry pairs (docs/method.md §4).

Every code of a trajectory is an example (x, y, label): the intermediate codes are failures (the episode would
have stopped on a success), and the final code carries the trajectory's label (``success``: public ∧ private).
x is the problem prompt, i.e. the first user message of the trajectory; no history is kept.

A turn whose reply had no extractable code is skipped: the search never scores such candidates (they rank
below every scored one), so the verifier never has to rank them, and counting them as negatives would only
add trivially easy pairs that inflate pairwise accuracy. They are counted in `RunInfo.no_code`.

Problems are keyed by task id. Runs on different datasets (their ``config.json`` ``source`` differs) may be
aggregated only when their task ids do not collide; otherwise the same key would mix two different problems.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mucode.backends.base import derive_seed
from mucode.env import echoes_placeholder
from mucode.errors import ConfigError, DataError, check_positive
from mucode.jobs import PAIRS_PER_PROBLEM
from mucode.records import ROLLOUT_FORMAT, TRAJECTORIES_FILE, Trajectory, read_trajectories
from mucode.runs import CONFIG_FILE, file_sha256, read_json


@dataclass(frozen=True, slots=True)
class Example:
    """One code a policy wrote for a problem, and whether it is correct.

    ``run`` is the run folder it came from; (run, task_id, rollout, turn) identifies it.
    """

    task_id: str
    prompt: str
    code: str
    label: bool
    run: str
    rollout: int
    turn: int

    @property
    def real(self) -> bool:
        """False when the code is a prompt placeholder echoed back: every verifier ranks those last, so
        counting them makes any verifier look better than random (docs/verifier.md)."""
        return not echoes_placeholder(self.code)

    @property
    def first_turn(self) -> bool:
        """Turn-1 codes of a problem's rollouts are independent samples (the paper's Fig. 4 candidates);
        later turns revise them."""
        return self.turn == 1


@dataclass(frozen=True, slots=True)
class Pair:
    """A Bradley-Terry training pair of one problem: a correct code and an incorrect one."""

    chosen: Example
    rejected: Example


@dataclass(frozen=True, slots=True)
class ProblemCodes:
    """The distinct codes of one problem in one run, split by label: a BT item under ``pairing = "all"``, whose
    loss is the mean over every (positive, negative) pair of them."""

    positives: tuple[Example, ...]
    negatives: tuple[Example, ...]

    @property
    def pairs(self) -> int:
        return len(self.positives) * len(self.negatives)


@dataclass(frozen=True)
class RunInfo:
    """What a verifier records about one rollout run it read: enough to tell whether the data changed."""

    path: str
    sha256: str
    source: Mapping[str, Any]
    template: str
    trajectories: int
    examples: int
    no_code: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "source": dict(self.source), "template": self.template,
                "trajectories": self.trajectories, "examples": self.examples, "no_code_turns_skipped": self.no_code}


@dataclass(frozen=True)
class RolloutData:
    """The examples of one or more rollout runs, in run order, then file order."""

    examples: tuple[Example, ...]
    runs: tuple[RunInfo, ...]

    def by_problem(self) -> dict[str, list[Example]]:
        return group_by_problem(self.examples)

    @property
    def template(self) -> str:
        """The prompt template of the runs (`load_rollouts` checks they agree)."""
        return self.runs[0].template

    def fingerprint(self) -> list[dict[str, Any]]:
        """The runs' paths, sources and trajectory-file digests: the training data's identity."""
        return [run.to_dict() for run in self.runs]


def load_rollouts(run_dirs: Sequence[str | os.PathLike[str]]) -> RolloutData:
    """The examples of every run folder in ``run_dirs`` (written by ``mucode rollout``), aggregated.

    Raises ConfigError for a folder that is not a rollout run, a folder given twice, runs with different prompt
    templates, or runs of different datasets whose task ids collide; DataError for a malformed record.
    """
    if not run_dirs:
        raise ConfigError("no rollout run folders given")
    seen: dict[Path, str] = {}
    owners: dict[str, tuple[str, Mapping[str, Any]]] = {}  # task id -> (run, source) that first had it
    examples: list[Example] = []
    runs: list[RunInfo] = []
    for run_dir in run_dirs:
        path = Path(run_dir).expanduser()
        if path.resolve() in seen:
            raise ConfigError(f"rollout run {run_dir} is given twice (also as {seen[path.resolve()]})")
        seen[path.resolve()] = str(run_dir)
        config = _run_config(path)
        records = read_trajectories(path / TRAJECTORIES_FILE)  # cuts a torn last line, so hash afterwards
        run_examples = [example for record in records for example in examples_from_record(record, str(run_dir))]
        _claim_task_ids(owners, {record.task_id for record in records}, str(run_dir), config["source"])
        turns = sum(len(record.turns) for record in records)
        runs.append(RunInfo(path=str(run_dir), sha256=file_sha256(path / TRAJECTORIES_FILE),
                            source=config["source"], template=config["episode"]["template"],
                            trajectories=len(records), examples=len(run_examples), no_code=turns - len(run_examples)))
        examples += run_examples
    templates = {run.template for run in runs}
    if len(templates) > 1:
        raise ConfigError(f"rollout runs use different prompt templates ({', '.join(sorted(templates))}); a verifier "
                          "sees the prompt, so train it on runs of one template")
    return RolloutData(tuple(examples), tuple(runs))


def examples_from_record(record: Trajectory, run: str) -> list[Example]:
    """The examples of one trajectory: one per turn with code; only the last turn can be positive."""
    last = len(record.turns)
    return [Example(task_id=record.task_id, prompt=record.prompt, code=turn.code,
                    label=record.success and number == last, run=run, rollout=record.rollout, turn=number)
            for number, turn in enumerate(record.turns, start=1) if turn.code is not None]


def group_by_problem(examples: Iterable[Example]) -> dict[str, list[Example]]:
    """Examples grouped by task id, problems in order of first appearance."""
    groups: dict[str, list[Example]] = {}
    for example in examples:
        groups.setdefault(example.task_id, []).append(example)
    return groups


def by_run(examples: Iterable[Example]) -> list[list[Example]]:
    """The examples of each run (one iteration's rollouts), runs in order of first appearance."""
    runs: dict[str, list[Example]] = {}
    for example in examples:
        runs.setdefault(example.run, []).append(example)
    return list(runs.values())


def make_pairs(examples: Iterable[Example], pairs_per_problem: int = PAIRS_PER_PROBLEM,
               seed: int = 1) -> list[Pair]:
    """``pairs_per_problem`` (positive, negative) pairs per problem *and run*, each side drawn uniformly with
    replacement from that run's codes of the problem, concatenated in run order.

    A run is one iteration's rollouts: the reference draws 32 pairs per problem from each iteration's data and
    concatenates the iterations' pair sets (``merge_datasets``), so a problem rolled out in three iterations
    gives 96 pairs, none mixing two iterations' codes. The draws of (run, problem) come from their own
    generator, seeded from (seed, task id, the run's position among the runs), so a problem's pairs do not
    depend on which other problems are present. A (run, problem) without a positive or a negative gives none.
    """
    if isinstance(pairs_per_problem, bool) or not isinstance(pairs_per_problem, int) or pairs_per_problem < 1:
        raise ConfigError(f"pairs_per_problem must be an integer >= 1, got {pairs_per_problem!r}")
    pairs: list[Pair] = []
    for position, run_examples in enumerate(by_run(examples)):
        for task_id, group in group_by_problem(run_examples).items():
            positives = [example for example in group if example.label]
            negatives = [example for example in group if not example.label]
            if not positives or not negatives:
                continue
            rng = random.Random(derive_seed(seed, "verifier-pairs", task_id, position))
            pairs += [Pair(rng.choice(positives), rng.choice(negatives)) for _ in range(pairs_per_problem)]
    return pairs


def problem_sets(examples: Iterable[Example], max_codes: int = 16, seed: int = 1) -> list[ProblemCodes]:
    """One `ProblemCodes` per (run, problem) with both labels: its distinct codes (by text), at most
    ``max_codes`` of them, the rest dropped at random (seeded by (seed, task id, the run's position)) keeping at
    least one code of each label.

    The reference's loss, 32 pairs drawn uniformly with replacement, is an unbiased estimate of the mean loss over
    every (positive, negative) pair of the problem; computing that mean exactly needs one forward and backward
    pass per distinct code instead of two per drawn pair (64 for 32 pairs), so it costs several times less and
    has no sampling noise. Each problem still weighs the same, as with 32 pairs each.
    """
    check_positive("max_codes", max_codes)
    sets: list[ProblemCodes] = []
    for position, run_examples in enumerate(by_run(examples)):
        for task_id, group in group_by_problem(run_examples).items():
            distinct = list({example.code: example for example in group}.values())
            positives = [example for example in distinct if example.label]
            negatives = [example for example in distinct if not example.label]
            if not positives or not negatives:
                continue
            if len(distinct) > max_codes:
                rng = random.Random(derive_seed(seed, "verifier-codes", task_id, position))
                kept = [rng.choice(positives), rng.choice(negatives)]
                rest = [example for example in distinct if example not in kept]
                kept += rng.sample(rest, max_codes - 2)
                positives = [example for example in kept if example.label]
                negatives = [example for example in kept if not example.label]
            sets.append(ProblemCodes(tuple(positives), tuple(negatives)))
    return sets


def data_summary(examples: Sequence[Example], pairs: Sequence[Pair] | None = None,
                 sets: Sequence[ProblemCodes] | None = None) -> dict[str, int]:
    """Counts a training run records: examples, positives, problems, problems with both labels, and the pairs
    drawn (``pairs``) or the problem sets and the pairs they hold (``sets``)."""
    groups = group_by_problem(examples)
    both = sum(1 for group in groups.values() if len({example.label for example in group}) == 2)
    summary = {"examples": len(examples), "positives": sum(example.label for example in examples),
               "problems": len(groups), "problems_with_both_labels": both}
    if pairs is not None:
        summary["pairs"] = len(pairs)
    if sets is not None:
        summary["problem_sets"] = len(sets)
        summary["codes"] = sum(len(s.positives) + len(s.negatives) for s in sets)
        summary["pairs"] = sum(s.pairs for s in sets)
    return summary


def _run_config(path: Path) -> dict[str, Any]:
    """The run's config.json, checked to be a rollout run's."""
    if not (path / TRAJECTORIES_FILE).is_file():
        raise ConfigError(f"{path} is not a rollout run folder (no {TRAJECTORIES_FILE}); make one with "
                          "`mucode rollout --out`")
    config = read_json(path / CONFIG_FILE, "run's config")
    if not isinstance(config, dict) or config.get("format") != ROLLOUT_FORMAT:
        raise ConfigError(f"{path} is not a rollout run folder ({CONFIG_FILE} format is "
                          f"{config.get('format') if isinstance(config, dict) else None!r}, not {ROLLOUT_FORMAT!r})")
    if not isinstance(config.get("source"), dict) or "template" not in config.get("episode", {}):
        raise DataError(f"{path / CONFIG_FILE}: no source or episode template")
    return config


def _claim_task_ids(owners: dict[str, tuple[str, Mapping[str, Any]]], task_ids: Iterable[str], run: str,
                    source: Mapping[str, Any]) -> None:
    """Record which run (and dataset) each task id comes from; a task id of another dataset is an error."""
    for task_id in sorted(task_ids):
        first_run, first_source = owners.setdefault(task_id, (run, source))
        if first_source != source:
            raise ConfigError(f"rollout runs {first_run} ({_describe(first_source)}) and {run} "
                              f"({_describe(source)}) are from different datasets but share task id {task_id!r}; "
                              "train on runs of one dataset")


def _describe(source: Mapping[str, Any]) -> str:
    fingerprint = str(source.get("fingerprint", ""))[:12]
    return (f"{source.get('dataset')} {source.get('split')} policy={source.get('policy')} "
            f"fingerprint={fingerprint}")

