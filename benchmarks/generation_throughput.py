"""Generation throughput: aggregate tokens/s sampling 8 completions of up to 256 tokens for 8 MBPP prompts.

    python benchmarks/generation_throughput.py [--models A,B] [--openvino int8,int4] [--baseline-prompts 1]
                                               [--hf-batch 64]

Paths measured in the same run on the same prompts (the paper's prompt template, MBPP test split):
- the llamacpp backend (GGUF, batched multi-sequence decoding), once per model in ``--models``: by default
  the official Q4_K_M file and its Q4_0 requantisation (docs/models.md says why);
- the openvino backend (continuous batching, prefix caching) on the first model, once per weight format in
  ``--openvino`` (int8 = Q8_0, int4 = Q4_0 requantisations of that file; empty to skip);
- plain transformers `generate` at batch 1 in fp32 (the reference implementation's local path), one completion
  at a time;
- transformers `generate` batched (all samples of a prompt in one call) in bf16;
- with ``--hf-batch B``: mucode's `hf` backend in bf16 with ``batch_size=B`` on all prompts (the faster path on
  CPUs whose bf16 products run on AMX; docs/backends.md).
Both transformers paths load the first model's GGUF (dequantised). They are slow on 2 cores, so by default they run
on the first prompt only (`--baseline-prompts`); tokens/s is a rate and compares directly. Sampling is at
temperature 0.7, top_p 1.0; aggregate tok/s = generated tokens / wall seconds (prefill included).
"""

from __future__ import annotations

import argparse
import os
import time

from mucode.backends import SamplingParams, load_backend
from mucode.backends.auto import machine_fingerprint
from mucode.env import build_prompt
from mucode.models import resolve_model
from mucode.problems import load_problems


def mucode_path(backend: str, model: str, conversations: list, params: SamplingParams,
                **options: object) -> tuple[int, float]:
    """Tokens generated and seconds for one `generate` call of a mucode backend (after a warm-up call)."""
    with load_backend(backend, model, **options) as loaded:
        loaded.generate(conversations[:1], SamplingParams(n=1, max_tokens=4))  # warm-up (page cache, threads)
        start = time.perf_counter()
        outputs = loaded.generate(conversations, params)
        seconds = time.perf_counter() - start
    return sum(c.completion_tokens for row in outputs for c in row), seconds


def transformers_path(model: str, conversations: list, params: SamplingParams, *, batched: bool) -> tuple[int, float]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mucode.backends.hf import dense_gguf_options

    ref = resolve_model(model)
    directory, name = os.path.dirname(ref.path), os.path.basename(ref.path)
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    tokenizer.padding_side = "left"
    dtype = torch.bfloat16 if batched else torch.float32
    # Dense weights, as the reference runs a hub checkpoint (recent transformers keep GGUF blocks quantised).
    lm = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=dtype, **dense_gguf_options()).eval()
    torch.manual_seed(0)
    produced, start = 0, time.perf_counter()
    for conversation in conversations:
        text = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        rows = params.n if batched else 1
        for _ in range(1 if batched else params.n):
            inputs = tokenizer([text] * rows, return_tensors="pt", padding=True)
            with torch.no_grad():
                out = lm.generate(**inputs, do_sample=True, temperature=params.temperature, top_p=params.top_p,
                                  max_new_tokens=params.max_tokens, pad_token_id=tokenizer.eos_token_id)
            produced += sum(_generated_length(row, _end_ids(lm, tokenizer))
                            for row in out[:, inputs["input_ids"].shape[1]:].tolist())
    return produced, time.perf_counter() - start


def _end_ids(lm, tokenizer) -> set[int]:
    """Token ids that end a reply (the generation config's eos list and the tokenizer's eos and pad)."""
    eos = lm.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos])
    ids |= {tokenizer.eos_token_id, tokenizer.pad_token_id}
    return {i for i in ids if i is not None}


def _generated_length(row: list[int], end_ids: set[int]) -> int:
    """Tokens generated before the first end-of-reply token (padding after it is not generation)."""
    return next((index for index, token in enumerate(row) if token in end_ids), len(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="qwen2.5-coder-0.5b-instruct,qwen2.5-coder-0.5b-instruct-q4_0",
                        help="models for the mucode path, comma-separated; the first one also feeds the baselines")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--baseline-prompts", type=int, default=1, help="prompts for the transformers paths")
    parser.add_argument("--skip-baselines", action="store_true")
    parser.add_argument("--hf-batch", type=int, default=0, help="also measure the hf backend at this batch size")
    parser.add_argument("--openvino", default="int8,int4", help="openvino weight formats to measure (empty: none)")
    args = parser.parse_args()

    problems = load_problems("mbpp", "test")[: args.prompts]
    conversations = [[{"role": "user", "content": build_prompt(p, "paper")}] for p in problems]
    params = SamplingParams(n=args.samples, temperature=0.7, top_p=1.0, max_tokens=args.max_tokens, seed=0)

    models = args.models.split(",")
    rows = [(f"mucode llamacpp, {model}", args.prompts, *mucode_path("llamacpp", model, conversations, params))
            for model in models]
    for weights in filter(None, args.openvino.split(",")):
        rows.append((f"mucode openvino, {weights}, {models[0]}", args.prompts,
                     *mucode_path("openvino", models[0], conversations, params, weights=weights)))
    if args.hf_batch:
        rows.append((f"mucode hf, bf16, batch {args.hf_batch}, {models[0]}", args.prompts,
                     *mucode_path("hf", models[0], conversations, params, dtype="bf16",
                                  batch_size=args.hf_batch)))
    baselines = []
    if not args.skip_baselines:
        subset = conversations[: args.baseline_prompts]
        for name, batched in (("transformers generate, batch 1, fp32", False),
                              ("transformers generate, batched, bf16", True)):
            baselines.append((name, len(subset), *transformers_path(models[0], subset, params, batched=batched)))

    print(f"machine: {machine_fingerprint()}; {args.samples} samples x <= {args.max_tokens} "
          f"tokens per prompt, temperature 0.7; baselines load {models[0]}")
    print()
    header = "".join(f" vs {name.removeprefix('transformers generate, ')} |" for name, *_ in baselines)
    print(f"| path | prompts | tokens | seconds | tok/s | vs llamacpp {models[0]} |{header}")
    print("|---|---|---|---|---|---|" + "---|" * len(baselines))
    reference = rows[0][2] / rows[0][3]
    for name, prompts, tokens, seconds in rows + baselines:
        rate = tokens / seconds
        ratios = "".join(f" {rate / (b_tokens / b_seconds):.1f}x |" for _, _, b_tokens, b_seconds in baselines)
        print(f"| {name} | {prompts} | {tokens} | {seconds:.1f} | {rate:.1f} | {rate / reference:.2f}x |{ratios}")


if __name__ == "__main__":
    main()
