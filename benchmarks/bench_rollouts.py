"""SoftGRPOTrainer rollouts, eager vs compiled: seconds per rollout, paired, in one process.

    python benchmarks/bench_rollouts.py [--model smollm2-135m] [--mode gumbel] [--completions 8] [--tokens 32]
                                        [--thinking 24] [--repeats 5] [--threads 1] [--device cpu]

Two trainers on two copies of the same model and LoRA adapter (r16, all linear layers; B = 0 at init, so both
decode the base model): one with the default engine (dynamic cache, eager forward), one asking for compiled
rollouts (`cache_implementation="static"` and `generation_kwargs={"compile_config": CompileConfig()}`, flagged to
compile on CPU too: docs/design.md §8). Each call is the trainer's own rollout seam (`_generate_single_turn`) on
one generation batch: `--completions` completions of one chat prompt, exactly `--tokens` new tokens (EOS
suppressed), `--thinking` soft steps then the answer. The two engines alternate, same seed per pair, after one
warm-up each (the compiled engine compiles in its warm-up, reported). Reported: the median seconds per rollout
of each engine, the ratio of the medians, the median of the per-pair ratios, and whether the two engines'
completions were equal (float32 soft traces may part from the dynamic cache's after some steps: §8).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch


def build(args, compiled: bool):
    import datasets
    from peft import LoraConfig
    from transformers import CompileConfig

    from hf_softthink import SoftThinkingConfig
    from hf_softthink.models import load_model
    from hf_softthink.trainer import SoftGRPOConfig, SoftGRPOTrainer

    model, tokenizer = load_model(args.model, device=args.device if args.device != "cpu" else None)
    generation = {"min_new_tokens": args.tokens}
    engine = {}
    if compiled:
        config = CompileConfig()
        config._compile_all_devices = True  # transformers compiles by itself only on GPUs
        generation["compile_config"] = config
        engine["cache_implementation"] = "static"
    dataset = datasets.Dataset.from_dict({"prompt": [[{"role": "user", "content": "What is 8 + 7?"}]]})
    trainer = SoftGRPOTrainer(
        model=model,
        reward_funcs=lambda completions, **kwargs: [0.0] * len(completions),
        args=SoftGRPOConfig(
            output_dir=f"/tmp/bench_rollouts_{'compiled' if compiled else 'eager'}", use_cpu=args.device == "cpu",
            bf16=args.device != "cpu", per_device_train_batch_size=args.completions,
            num_generations=args.completions, max_completion_length=args.tokens, generation_kwargs=generation,
            soft_rollout=args.mode, report_to=[], save_strategy="no", disable_tqdm=True, seed=0,
            soft_thinking=SoftThinkingConfig(max_topk=10, max_thinking_tokens=args.thinking), **engine,
        ),
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=LoraConfig(r=16, lora_alpha=32, target_modules="all-linear"),
    )  # fmt: skip
    trainer.model.train()  # as in a training step
    text = tokenizer.apply_chat_template(dataset[0]["prompt"], add_generation_prompt=True, tokenize=False)
    return trainer, [tokenizer(text)["input_ids"]] * args.completions


def rollout(trainer, prompt_ids, seed: int, device: str):
    torch.manual_seed(seed)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    completions, _ = trainer._generate_single_turn(prompt_ids, None, None, len(prompt_ids))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return completions, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--mode", default="gumbel", help="soft_rollout kind")
    parser.add_argument("--completions", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--thinking", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    engines = {"eager": build(args, compiled=False), "compiled": build(args, compiled=True)}
    print(f"model={args.model} mode={args.mode} device={args.device} completions={args.completions} "
          f"tokens={args.tokens} thinking={args.thinking} torch_threads={torch.get_num_threads()} "
          f"load average at start {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
    for name, (trainer, prompt_ids) in engines.items():
        _, seconds = rollout(trainer, prompt_ids, 0, args.device)
        print(f"warm-up {name}: {seconds:.1f} s" + (" (compiles)" if name == "compiled" else ""), flush=True)
    times = {name: [] for name in engines}
    same = []
    for repeat in range(args.repeats):
        outputs = {}
        for name, (trainer, prompt_ids) in engines.items():
            outputs[name], seconds = rollout(trainer, prompt_ids, repeat + 1, args.device)
            times[name].append(seconds)
        same.append(outputs["eager"] == outputs["compiled"])
        print(f"pair {repeat + 1}: eager {times['eager'][-1]:.2f} s, compiled {times['compiled'][-1]:.2f} s, "
              f"completions equal: {same[-1]}", flush=True)  # fmt: skip
    eager, compiled = (statistics.median(times[name]) for name in ("eager", "compiled"))
    pairs = statistics.median(e / c for e, c in zip(times["eager"], times["compiled"], strict=True))
    tokens = args.completions * args.tokens
    print(f"\nload average at end {os.getloadavg()[0]:.1f}")
    print("| engine | s/rollout (median) | tok/s | eager / compiled (medians) | eager / compiled (median of pairs) "
          "| completions equal |")
    print("|---|---|---|---|---|---|")
    print(f"| eager (dynamic cache) | {eager:.2f} | {tokens / eager:.0f} | – | – | – |")
    print(f"| compiled (static cache) | {compiled:.2f} | {tokens / compiled:.0f} | {eager / compiled:.3f} | "
          f"{pairs:.3f} | {sum(same)} of {len(same)} |")


if __name__ == "__main__":
    main()
