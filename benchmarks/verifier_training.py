"""Verifier fine-tuning throughput on CPU: BT pairs per minute, the reference's sampled pairs against ``--pairing all``.

    python benchmarks/verifier_training.py --rollouts RUN [--backbone NAME] [--problems 4] [--pairs 8]
                                           [--threads T] [--fp32]

Inputs: the first ``--problems`` problems with both labels of a rollout run (e.g. results/verifier/
rollouts-mbpp-train-a, gunzipped into a run folder). The backbone gets LoRA adapters as ``mucode verifier train
--lora`` does (rank 16 on every linear layer, the head in full), bf16 autocast where the CPU runs it faster.
Paths measured in the same run, forward + backward + AdamW step:
- sampled: the reference's pairs (``--pairs`` per problem drawn with replacement; a micro-batch of 2 pairs =
  4 sequences), what ``--pairing sampled`` trains on;
- all, unshared: one problem per micro-batch, every distinct code (at most 16) once, BT over all its pairs;
- all, shared prompt: the same with the problem's prompt run once (``--pairing all``, the default path).
"pairs/min" counts the pair terms a path's loss covers: the sampled path covers its drawn pairs, the all paths
every (correct, incorrect) pair of each problem (an exact mean, not a sample, so these are not independent
draws). "codes/s" counts sequences run forward and backward. One warm-up step per path is not timed.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from mucode.backends.auto import machine_fingerprint
from mucode.finetune import autocast, use_bf16, with_lora
from mucode.verifier import load_backbone, load_rollouts, make_pairs
from mucode.verifier.data import problem_sets
from mucode.verifier.model import InputFormat, sequence_scores
from mucode.verifier.train import Collator, all_pairs_bt_loss, bt_loss, pair_items, problem_scores, set_items


def timed(steps: list, run_step) -> float:
    """Seconds for ``run_step`` over ``steps`` after one untimed warm-up step."""
    run_step(steps[0])
    start = time.perf_counter()
    for step in steps:
        run_step(step)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", required=True)
    parser.add_argument("--backbone", default="qwen2.5-coder-0.5b-instruct")
    parser.add_argument("--problems", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    bf16 = not args.fp32 and use_bf16("auto")
    data = load_rollouts([args.rollouts])
    sets = problem_sets(data.examples)[:args.problems]
    tasks = {item.positives[0].task_id for item in sets}
    pairs = [pair for pair in make_pairs(data.examples, args.pairs) if pair.chosen.task_id in tasks]
    model, tokenizer, _ = load_backbone(args.backbone, seed=1)
    model = with_lora(model, "SEQ_CLS", 16, 32, 0.0, modules_to_save=["score"])
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    encoder = InputFormat(tokenizer)

    def encode(example):
        return encoder.encode(example.prompt, example.code)

    pad = tokenizer.pad_token_id or 0

    def update(loss: torch.Tensor) -> None:
        loss.backward()
        optimiser.step()
        optimiser.zero_grad()

    def sampled_step(batch) -> None:
        inputs = Collator("bt", pad)(batch)
        with autocast(bf16, torch.device("cpu")):
            scores = sequence_scores(model, inputs["input_ids"], inputs["attention_mask"])
        chosen, rejected = scores.chunk(2)
        update(bt_loss(chosen, rejected, 1e-3))

    def all_step(share: bool):
        def step(item) -> None:
            problem = Collator("bt", pad, share_prefix=share)([item])["problems"][0]
            scores = problem_scores(model, problem, bf16)
            update(all_pairs_bt_loss([(scores, problem["targets"])], 1e-3)[0])
        return step

    sampled_items = pair_items(pairs, encode)
    batches = [sampled_items[i:i + 2] for i in range(0, len(sampled_items), 2)]
    problem_items = set_items(sets, encode)
    codes = sum(len(item["codes"]) for item in problem_items)
    covered = sum(item.pairs for item in sets)
    tokens = sum(len(code) for item in problem_items for code in item["codes"]) / codes
    rows = [("sampled (reference)", timed(batches, sampled_step), len(pairs), 2 * len(pairs)),
            ("all, unshared", timed(problem_items, all_step(False)), covered, codes),
            ("all, shared prompt", timed(problem_items, all_step(True)), covered, codes)]
    print(f"Machine: {machine_fingerprint()}; {args.threads} threads; torch {torch.__version__}; "
          f"{'bf16 autocast' if bf16 else 'fp32'}; backbone {args.backbone} + LoRA r16; {len(sets)} problems, "
          f"{codes} distinct codes (mean {tokens:.0f} tokens with the prompt), {len(pairs)} sampled pairs.\n")
    print("| path | seconds | sequences | codes/s | pairs covered | pairs/min | × sampled |")
    print("|---|---|---|---|---|---|---|")
    base = rows[0][2] / rows[0][1]
    for name, seconds, covered_pairs, sequences in rows:
        rate = covered_pairs / seconds
        print(f"| {name} | {seconds:.1f} | {sequences} | {sequences / seconds:.2f} | {covered_pairs} "
              f"| {60 * rate:.1f} | {rate / base:.2f} |")


if __name__ == "__main__":
    main()
