"""Episodes on Ray against the local path, same machine, same run: `mucode rollout` with 0, 1 and 2 workers.

    python benchmarks/ray_scaling.py [--paths local,ray-1,ray-2] [--problems 8] [--rollouts 4] [--turns 2]
                                     [--backend auto] [--out results/ray_scaling]

Each path is the whole command a user runs, timed from start to exit: ``mucode rollout --dataset mbpp --split
train --policy train --ids <the first PROBLEMS train tasks> --rollouts R --turns T`` into a fresh folder.
``local`` is the one-process path; ``ray-N`` adds ``--ray local --ray-replicas N --ray-sandboxes N`` (N backend
actors, each with its own engine, and N sandbox actors on a Ray cluster started on this machine). The table gives
episodes (trajectories) per minute, programs run per second (turns with code) and generated tokens per second
over the wall time, with the ratio to ``local``. On one machine every engine shares the same cores, so more
workers can only split them: the measurement says what Ray costs here, not what a cluster gains (docs/scaling.md
has the cost model for that). Results go to ``<out>/summary.json`` and ``<out>/README.md`` with the machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from mucode.backends.auto import machine_fingerprint

REPO = Path(__file__).resolve().parent.parent
MODEL = "qwen2.5-coder-0.5b-instruct"
FIRST_TRAIN_TASK = 601  # MBPP train is task ids 601-974


def run_path(path: str, args: argparse.Namespace, scratch: Path) -> dict:
    out = scratch / f"run-{path}"
    ids = ",".join(str(FIRST_TRAIN_TASK + index) for index in range(args.problems))
    command = [sys.executable, "-m", "mucode", "rollout", "--model", args.model, "--dataset", "mbpp", "--split",
               "train", "--policy", "train", "--ids", ids, "--rollouts", str(args.rollouts), "--turns",
               str(args.turns), "--max-tokens", str(args.max_tokens), "--backend", args.backend, "--out", str(out),
               "--force"]
    if path != "local":
        workers = path.removeprefix("ray-")
        command += ["--ray", "local", "--ray-replicas", workers, "--ray-sandboxes", workers]
    start = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if completed.returncode != 0:
        raise SystemExit(f"{path}: mucode rollout failed ({completed.returncode}): {completed.stderr[-2000:]}")
    rows = [json.loads(line) for line in (out / "trajectories.jsonl").read_text().splitlines()]
    programs = sum(1 for row in rows for turn in row["turns"] if turn["code"])
    tokens = sum(generation["completion_tokens"] for row in rows for generation in row["generation"])
    return {"path": path, "wall_seconds": round(wall, 1), "episodes": len(rows), "programs": programs,
            "completion_tokens": tokens, "episodes_per_minute": round(60 * len(rows) / wall, 2),
            "programs_per_second": round(programs / wall, 3), "tokens_per_second": round(tokens / wall, 1),
            "success": round(sum(row["success"] for row in rows) / len(rows), 3)}


def write_report(out: Path, rows: list[dict], machine: str, args: argparse.Namespace) -> None:
    base = next((row for row in rows if row["path"] == "local"), rows[0])
    lines = [f"# Episodes on Ray against the local path ({datetime.now(UTC):%Y-%m-%d})", "",
             f"Machine: {machine}. `mucode rollout`, MBPP train tasks {FIRST_TRAIN_TASK}-"
             f"{FIRST_TRAIN_TASK + args.problems - 1}, {args.rollouts} rollouts, T = {args.turns}, at most "
             f"{args.max_tokens} tokens a reply, backend {args.backend}, model {args.model}.", "",
             "| path | wall s | episodes | programs | episodes/min | programs/s | tok/s | success | vs local |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['path']} | {row['wall_seconds']} | {row['episodes']} | {row['programs']} | "
                     f"{row['episodes_per_minute']} | {row['programs_per_second']} | {row['tokens_per_second']} | "
                     f"{row['success']:.3f} | {base['wall_seconds'] / row['wall_seconds']:.2f}× |")
    lines += ["", "vs local: the local path's wall time / this path's (above 1: faster). Sampled replies differ "
              "between paths only through batch-dependent floating point, so the work is close but not equal; "
              "tok/s is the work-normalised rate."]
    (out / "README.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paths", default="local,ray-1,ray-2")
    parser.add_argument("--problems", type=int, default=8)
    parser.add_argument("--rollouts", type=int, default=4)
    parser.add_argument("--turns", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=384)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--out", default=str(REPO / "results" / "ray_scaling"))
    parser.add_argument("--scratch", default="/tmp/mucode-ray-scaling")
    args = parser.parse_args()
    out, scratch = Path(args.out), Path(args.scratch)
    out.mkdir(parents=True, exist_ok=True)
    scratch.mkdir(parents=True, exist_ok=True)
    machine = machine_fingerprint()
    rows = []
    for path in args.paths.split(","):
        rows.append(run_path(path, args, scratch))
        print(json.dumps(rows[-1]), flush=True)
        summary = {"created": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine,
                   "platform": platform.platform(), "config": vars(args), "rows": rows}
        (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    write_report(out, rows, machine, args)
    print((out / "README.md").read_text())


if __name__ == "__main__":
    main()
