"""Verifier scoring throughput: candidates scored per second, N candidates per problem, as the search scores them.

    python benchmarks/verifier_throughput.py [--backbones A,B] [--problems 4] [--candidates 8] [--repeats 3]
                                              [--threads T] [--quick]

Inputs: MBPP test problems under the paper's prompt template; the candidates of a problem are MBPP reference
solutions (its own, then the next problems'), so prompt + code is about 250 tokens with the chat template (the
table prints the mean). Each backbone gets a fresh scalar head (speed does not depend on the weights).

Paths measured in the same run on the same inputs:
- plain: transformers' sequence-classification forward at batch 1 in fp32, one candidate at a time, no
  gradients — what scoring costs without batching or sharing;
- mucode, fp32: `Verifier.score` (one call per problem: batched, sorted by length, the shared prompt prefix run
  once per problem) in fp32;
- mucode: the same in the dtype `Verifier.load` picks by default ("auto": bf16 where the CPU runs it faster);
- mucode, int8: the same with the linear layers in int8 (`Verifier.load(dtype="int8")`, `mucode.int8`).
"rank agreement": the mean per-problem Spearman correlation of a path's scores with mucode fp32's (the random
head reads the features in a random direction, so this measures how far a path moves them; docs/verifier.md
has the same check for trained verifiers on held-out rollouts).
Each path's time is the best of ``--repeats`` passes (default 3: other tenants of a shared machine add noise).
The plain path is slow on 2 cores, so it runs on the first ``--baseline-problems`` problems only; candidates/s is a
rate and compares directly. ``--quick``: SmolLM2-135M only, 2 problems, 1 baseline problem.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Sequence

import numpy as np
import torch

from mucode.backends.hf import pick_dtype
from mucode.env import build_prompt
from mucode.int8 import quantize_linears
from mucode.problems import load_problems
from mucode.types import Problem
from mucode.verifier import Verifier, load_backbone
from mucode.verifier.model import InputFormat

DEFAULT_BACKBONES = "qwen2.5-coder-0.5b-instruct,smollm2-135m-instruct"


def workload(problems: int, candidates: int) -> list[tuple[Problem, list[str]]]:
    """(problem, N codes) pairs from the MBPP test split."""
    pool = [problem for problem in load_problems("mbpp", "test") if problem.solution]
    return [(pool[i], [pool[(i + j) % len(pool)].solution or "" for j in range(candidates)]) for i in range(problems)]


def mucode_path(verifier: Verifier, work: Sequence[tuple[Problem, list[str]]],
                repeats: int) -> tuple[float, list[list[float]]]:
    """Seconds for `Verifier.score` over the workload, one call per problem (after one warm-up call; the best of
    ``repeats`` passes), and the scores."""
    verifier.score(*work[0])
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        scores = [verifier.score(problem, codes) for problem, codes in work]
        seconds.append(time.perf_counter() - start)
    return min(seconds), scores


def rank_agreement(reference: Sequence[Sequence[float]], scores: Sequence[Sequence[float]]) -> float:
    """Mean over problems of the Spearman correlation between two paths' scores of the same candidates: a
    faster path is only useful if it ranks a problem's candidates as fp32 does."""
    def ranks(values: Sequence[float]) -> np.ndarray:
        return np.argsort(np.argsort(values)).astype(np.float64)
    return float(np.mean([np.corrcoef(ranks(a), ranks(b))[0, 1] for a, b in zip(reference, scores, strict=True)]))


def plain_path(verifier: Verifier, work: Sequence[tuple[Problem, list[str]]], repeats: int) -> float:
    """Seconds for transformers' own forward, batch 1, fp32, every candidate alone (the best of ``repeats``)."""
    inputs = [verifier.format.encode(build_prompt(problem, "paper"), code) for problem, codes in work for code in codes]
    seconds = []
    with torch.no_grad():
        verifier.model(input_ids=torch.tensor([inputs[0]]))
        for _ in range(repeats):
            start = time.perf_counter()
            for ids in inputs:
                verifier.model(input_ids=torch.tensor([ids]))
            seconds.append(time.perf_counter() - start)
    return min(seconds)


def mean_tokens(tokenizer: object, work: Sequence[tuple[Problem, list[str]]]) -> float:
    encode = InputFormat(tokenizer).encode
    lengths = [len(encode(build_prompt(problem, "paper"), code)) for problem, codes in work for code in codes]
    return sum(lengths) / len(lengths)


def measure(backbone: str, work: list[tuple[Problem, list[str]]], baseline_problems: int, batch_size: int,
            repeats: int) -> tuple[list[tuple[str, int, float, float | None]], float]:
    """(path, candidates, seconds, rank agreement with mucode fp32) rows for one backbone, and the mean input
    length in tokens. The fp32 paths run first: the faster ones convert the same weights in place."""
    model, tokenizer, _ = load_backbone(backbone, seed=0)
    verifier = Verifier(model.eval(), tokenizer, {}, template="paper", batch_size=batch_size)
    baseline = work[:baseline_problems]
    rows: list[tuple[str, int, float, float | None]] = [
        ("plain, fp32, batch 1", sum(len(codes) for _, codes in baseline), plain_path(verifier, baseline, repeats),
         None)]
    candidates = sum(len(codes) for _, codes in work)
    seconds, reference = mucode_path(verifier, work, repeats)
    rows.append(("mucode, fp32", candidates, seconds, 1.0))
    dtype = pick_dtype("auto", "cpu")
    rest = dtype.replace("bfloat16", "bf16").replace("float32", "fp32")
    conversions = [(f"mucode, {rest} (auto)", lambda: model.to(getattr(torch, dtype)))] if dtype != "float32" else []
    conversions.append((f"mucode, int8 (linear layers but down_proj; rest {rest})", lambda: quantize_linears(model)))
    for path, convert in conversions:
        convert()
        seconds, scores = mucode_path(verifier, work, repeats)
        rows.append((path, candidates, seconds, rank_agreement(reference, scores)))
    return rows, mean_tokens(tokenizer, work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", default=DEFAULT_BACKBONES, help="registry names or paths, comma-separated")
    parser.add_argument("--problems", type=int, default=4)
    parser.add_argument("--candidates", type=int, default=8, help="candidates per problem (N)")
    parser.add_argument("--baseline-problems", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per path; the table shows the best")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="SmolLM2-135M only, 2 problems, 1 baseline problem")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    backbones = ["smollm2-135m-instruct"] if args.quick else args.backbones.split(",")
    problems = 2 if args.quick else args.problems
    work = workload(problems, args.candidates)
    print(f"verifier scoring, {problems} MBPP problems × {args.candidates} candidates, best of "
          f"{1 if args.quick else args.repeats} passes; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} cores, {platform.processor() or platform.machine()}\n")
    print("| backbone | path | candidates | mean tokens | seconds | candidates/s | × plain | rank agreement |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for backbone in backbones:
        rows, tokens = measure(backbone, work, min(args.baseline_problems, problems), args.batch_size,
                               1 if args.quick else args.repeats)
        plain_rate = rows[0][1] / rows[0][2]
        for path, count, seconds, agreement in rows:
            rate = count / seconds
            print(f"| {backbone} | {path} | {count} | {tokens:.0f} | {seconds:.2f} | {rate:.2f} | "
                  f"{rate / plain_rate:.2f} | {'—' if agreement is None else f'{agreement:.3f}'} |")


if __name__ == "__main__":
    main()
