"""End-to-end `mucode eval` throughput: today's default against a baseline commit, same machine, same run.

    python benchmarks/eval_throughput.py [--baseline-commit c716ace] [--paths baseline,openvino,llamacpp]
                                         [--problems 40] [--out results/eval_throughput]

Each path is the whole command a user runs, timed from start to exit (model load, sandbox, every turn):
``mucode eval --dataset humaneval --ids <fixed subset> --n 5 --turns 3 --selector pt`` (BoN@5, T = 3, the
paper's setting). The subset is every fourth HumanEval task (HumanEval/0, 4, ..., 156 for 40 problems), fixed so
that runs compare. Paths:

- ``baseline``: the code at ``--baseline-commit`` (a git worktree), its default backend (llamacpp Q4_K_M) and its
  lockstep loop;
- ``openvino``, ``llamacpp``, ``auto``: this checkout's asynchronous driver with that backend.

Work is not identical across paths (sampling differs, so replies and turns differ); the table therefore
reports generated tokens, tokens per second and searches per minute beside the wall time, and the success
rates with the tasks on which two paths disagree (paired, over tasks). Results go to ``<out>/summary.json`` and
``<out>/README.md`` with the CPU flags of the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MODEL = "qwen2.5-coder-0.5b-instruct"


def task_ids(problems: int) -> list[str]:
    return [f"HumanEval/{4 * index}" for index in range(problems)]


def source_tree(path: str, commit: str, scratch: Path) -> Path:
    """The ``src`` folder the path runs: this checkout's, or a worktree of ``commit``."""
    if path != "baseline":
        return REPO / "src"
    tree = scratch / f"baseline-{commit}"
    if not tree.exists():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), commit], check=True,
                       capture_output=True)
    return tree / "src"


def run_path(path: str, args: argparse.Namespace, scratch: Path) -> dict:
    src = source_tree(path, args.baseline_commit, scratch)
    out = scratch / f"run-{path}"
    command = [sys.executable, "-c", "from mucode.cli import main; main()", "eval", "--model", args.model,
               "--dataset", "humaneval", "--ids", ",".join(task_ids(args.problems)), "--n", str(args.n),
               "--turns", str(args.turns), "--selector", "pt", "--out", str(out), "--force"]
    if path != "baseline":
        command += ["--backend", path]
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    completed = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if completed.returncode != 0:
        raise SystemExit(f"{path}: mucode eval failed ({completed.returncode}): {completed.stderr[-2000:]}")
    results = json.loads((out / "results.json").read_text())
    searches = results["searches"]
    tokens = sum(candidate["generation"]["completion_tokens"] for record in searches for turn in record["turns"]
                 for candidate in turn["candidates"])
    return {"path": path, "backend": results["config"]["backend"], "model_id": results["config"]["model_id"],
            "wall_seconds": round(wall, 1), "completion_tokens": tokens,
            "tokens_per_second": round(tokens / wall, 2),
            "searches_per_minute": round(60 * len(searches) / wall, 2),
            "mean_turns": results["metrics"]["mean_turns"],
            "success": results["metrics"]["success"]["value"],
            "per_task": {record["task_id"]: record["success"] for record in searches}}


def cpu_flags() -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return "unknown"
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Model name")), "")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("Flags")), [])
    wanted = sorted({flag for flag in flags if flag.startswith(("amx", "avx512_bf16", "avx512f", "avx512_vnni"))})
    return f"{model}; {os.cpu_count()} cores; {' '.join(wanted) or 'no AVX-512'}"


def paired(first: dict, second: dict) -> dict:
    """Tasks where one path succeeded and the other did not (the discordant pairs of McNemar's test)."""
    only_first = sorted(t for t, ok in first["per_task"].items() if ok and not second["per_task"].get(t))
    only_second = sorted(t for t, ok in second["per_task"].items() if ok and not first["per_task"].get(t))
    return {"only_" + first["path"]: only_first, "only_" + second["path"]: only_second}


def write_report(out: Path, rows: list[dict], machine: str, args: argparse.Namespace) -> None:
    base = next((row for row in rows if row["path"] == "baseline"), rows[0])
    lines = [f"# End-to-end `mucode eval` throughput ({datetime.now(UTC):%Y-%m-%d})", "",
             f"Machine: {machine}. HumanEval, {args.problems} tasks (every fourth), BoN@{args.n}, T = {args.turns}, "
             f"selector pt, model {args.model}. Baseline: commit {args.baseline_commit} (lockstep loop, llamacpp).",
             "", "| path | backend | wall s | tokens | tok/s | searches/min | mean turns | success | speed-up |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['path']} | {row['backend']} | {row['wall_seconds']} | {row['completion_tokens']} | "
                     f"{row['tokens_per_second']} | {row['searches_per_minute']} | {row['mean_turns']:.2f} | "
                     f"{row['success']:.3f} | {base['wall_seconds'] / row['wall_seconds']:.2f}× |")
    lines += ["", "Speed-up: baseline wall time / this path's wall time (the work differs slightly: sampled replies "
              "differ, so tokens and turns do too; tok/s is the work-normalised rate).", ""]
    for row in rows:
        if row is not base:
            lines.append(f"- Paired with baseline, {row['path']}: {json.dumps(paired(base, row))}")
    (out / "README.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-commit", default="c716ace")
    parser.add_argument("--paths", default="baseline,openvino,llamacpp")
    parser.add_argument("--problems", type=int, default=40)
    parser.add_argument("--n", type=int, default=5)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--out", default=str(REPO / "results" / "eval_throughput"))
    parser.add_argument("--scratch", default="/tmp/mucode-eval-throughput")
    args = parser.parse_args()
    out, scratch = Path(args.out), Path(args.scratch)
    out.mkdir(parents=True, exist_ok=True)
    scratch.mkdir(parents=True, exist_ok=True)
    machine = cpu_flags()
    rows = []
    for path in args.paths.split(","):
        rows.append(run_path(path, args, scratch))
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "per_task"}), flush=True)
        summary = {"created": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine,
                   "platform": platform.platform(), "config": vars(args), "rows": rows}
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    write_report(out, rows, machine, args)
    print((out / "README.md").read_text())


if __name__ == "__main__":
    main()
