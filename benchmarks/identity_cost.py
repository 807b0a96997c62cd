"""Cost of the issue-17 checks on a real model: the evaluation identity digests and the token-id checks.

    python benchmarks/identity_cost.py [--model smollm2-135m] [--threads 1] [--repeats 7]

* identity: `model_identity` (weights, adapter, tokenizer, generation config) once per `evaluate_modes` call.
  The first call after loading reads the weights from the memory-mapped checkpoint (page faults the first
  forward would pay anyway); later calls hash memory. Printed: first call, then the median of the repeats, and
  each digest apart.
* token ids: the pre-flight `check_soft_thinking` (a whole plan, once per mode of an evaluation and at trainer
  construction), and what every soft `generate` call adds: `check_plan_token_ids` plus the prompt's min / max.
  Printed next to one soft `generate` call of 32 new tokens at batch 8, timed in the same loop (interleaved).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def timed(function, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from hf_softthink import SoftThinkingConfig, enable_soft_thinking
    from hf_softthink.evaluation.identity import (
        generation_config_digest,
        model_identity,
        tokenizer_digest,
        weights_digests,
    )
    from hf_softthink.generation import check_plan_token_ids, check_soft_thinking
    from hf_softthink.models import load_model
    from hf_softthink.token_ids import check_token_ids

    model, tok = load_model(args.model)
    size = sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 1e6
    start = time.perf_counter()
    model_identity(model, tok, args.model)
    first = time.perf_counter() - start
    rows = {
        "model_identity (all parts)": timed(lambda: model_identity(model, tok, args.model), args.repeats),
        "  weights": timed(lambda: weights_digests(model), args.repeats),
        "  tokenizer": timed(lambda: tokenizer_digest(tok), args.repeats),
        "  generation config": timed(lambda: generation_config_digest(model.generation_config), args.repeats),
    }
    print(f"{args.model}: {size:.0f} MB of state dict, {args.threads} thread(s); first model_identity after "
          f"loading {first * 1e3:.0f} ms (reads the weights in)")
    print("| digest | median ms | min ms |\n|---|---:|---:|")
    for name, values in rows.items():
        print(f"| {name} | {statistics.median(values) * 1e3:.2f} | {min(values) * 1e3:.2f} |")

    enable_soft_thinking(model, tokenizer=tok)
    config = SoftThinkingConfig(max_thinking_tokens=16)
    prompts = ["What is 8 + 7? Think step by step."] * 8
    tok.padding_side = "left"
    inputs = tok(prompts, return_tensors="pt", padding=True)
    plan = check_soft_thinking(model, config, tok)
    ids = inputs["input_ids"]
    costs = {"pre-flight check_soft_thinking": [], "per generate: plan ids + prompt ids": [], "soft generate, 32 tokens": []}
    for _ in range(args.repeats):  # interleaved, so the machine's load falls on all three alike
        costs["pre-flight check_soft_thinking"] += timed(lambda: check_soft_thinking(model, config, tok), 1)
        costs["per generate: plan ids + prompt ids"] += timed(
            lambda: (check_plan_token_ids(model, plan, tok),
                     check_token_ids(model, {"prompt": sorted({int(ids.min()), int(ids.max())})})), 1)
        with torch.inference_mode():
            costs["soft generate, 32 tokens"] += timed(
                lambda: model.generate(**inputs, max_new_tokens=32, soft_thinking=config), 1)
    print("\n| token-id check | median ms | min ms |\n|---|---:|---:|")
    for name, values in costs.items():
        print(f"| {name} | {statistics.median(values) * 1e3:.2f} | {min(values) * 1e3:.2f} |")
    share = statistics.median(costs["per generate: plan ids + prompt ids"]) / statistics.median(
        costs["soft generate, 32 tokens"])
    print(f"\nper-generate checks / one 32-token soft generate at batch 8: {share:.2e}")


if __name__ == "__main__":
    main()
