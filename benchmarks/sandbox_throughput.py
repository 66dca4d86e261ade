"""Sandbox throughput: MBPP test-split reference solutions with all their tests, mucode vs the reference runner.

    python benchmarks/sandbox_throughput.py [--limit 500] [--reference-limit 500] [--workers N]

Both runners execute the same programs in the same run: mucode's sandbox with full isolation (namespaces,
cgroups, rlimits; every test its own verdict, all tests of a program in one child) and a re-creation of the
reference implementation's runner (../shared/baselines/reference_runner.py: a fresh `python3` per test
group, public then private, no isolation). Prints programs/s for each and the ratio.

Wall-clock rate over a set is bounded by its slowest program: MBPP task 123's own tests need about 3.5 s of
single-threaded CPU, so no runner finishes all 500 in under ~3.5 s on any number of cores. The table therefore
also gives the rate over the programs whose tests take under 1 s ("short"), which measures the runner rather
than one slow solution. Both runners are measured on exactly the same programs in each row.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time
from pathlib import Path

from mucode.problems.datadir import find_data_dir
from mucode.problems.mbpp import load_mbpp
from mucode.sandbox import Job, Sandbox
from mucode.types import Problem


def load_reference_runner():
    """Import the baseline by path: it is a benchmark opponent, never a dependency of the package."""
    data_dir = find_data_dir()
    candidates = [Path(__file__).resolve().parents[2] / "shared/baselines/reference_runner.py"]
    if data_dir is not None:
        candidates.append(data_dir.parent / "baselines/reference_runner.py")
    path = next((p for p in candidates if p.exists()), None)
    if path is None:
        sys.exit("reference_runner.py not found next to the data (expected ../shared/baselines/)")
    spec = importlib.util.spec_from_file_location("reference_runner", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_mucode(sandbox: Sandbox, problems: list[Problem]) -> tuple[float, int, list[float]]:
    """Wall seconds, programs passed, and each program's test time."""
    jobs = [Job(p.solution or "", p.all_tests, p.prelude, p.setup_code) for p in problems]
    start = time.perf_counter()
    results = sandbox.run_many(jobs)
    elapsed = time.perf_counter() - start
    return elapsed, sum(r.passed for r in results), [sum(v.duration for v in r.verdicts) for r in results]


def run_reference(runner, problems: list[Problem]) -> tuple[float, int]:
    start = time.perf_counter()
    passed = 0
    for problem in problems:
        public = f"{problem.setup_code}\n" + "\n".join(problem.public_tests)
        private = f"{problem.setup_code}\n" + "\n".join(problem.private_tests)
        public_ok, private_ok, _ = runner.run_problem(problem.solution or "", public, private)
        passed += public_ok and private_ok
    return time.perf_counter() - start, passed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=500, help="MBPP test-split programs (first N)")
    parser.add_argument("--workers", type=int, default=None, help="sandbox slots (default: 2 x cores)")
    parser.add_argument("--skip-reference", action="store_true", help="measure mucode only")
    args = parser.parse_args()

    problems = load_mbpp("test")[: args.limit]
    with Sandbox(workers=args.workers, isolation="full") as sandbox:
        sandbox.run("", ["assert True"])  # start-up is not part of the measurement
        all_s, all_passed, test_times = run_mucode(sandbox, problems)
        short = [p for p, t in zip(problems, test_times, strict=True) if t < 1.0]
        short_s, short_passed, _ = run_mucode(sandbox, short)
        layers, workers = sandbox.isolation, sandbox.workers
    rows = [("all", problems, all_s, all_passed), ("short", short, short_s, short_passed)]

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"mucode: {workers} slots, isolation {layers}")
    print(f"short = programs whose tests take < 1 s ({len(short)}/{len(problems)}; excluded: "
          f"{', '.join(p.task_id for p in problems if p not in short) or 'none'})")
    print()
    print("| programs | n | reference passed | reference s | reference prog/s | mucode passed | mucode s "
          "| mucode prog/s | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    runner = None if args.skip_reference else load_reference_runner()
    for name, subset, ours_s, ours_passed in rows:
        ours_rate = len(subset) / ours_s
        if runner is None:
            print(f"| {name} | {len(subset)} | - | - | - | {ours_passed} | {ours_s:.2f} | {ours_rate:.1f} | - |")
            continue
        theirs_s, theirs_passed = run_reference(runner, subset)
        theirs_rate = len(subset) / theirs_s
        print(f"| {name} | {len(subset)} | {theirs_passed} | {theirs_s:.1f} | {theirs_rate:.2f} | {ours_passed} "
              f"| {ours_s:.2f} | {ours_rate:.1f} | {ours_rate / theirs_rate:.0f}x |", flush=True)


if __name__ == "__main__":
    main()
