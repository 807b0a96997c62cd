"""Soft-thinking vs plain `generate`: throughput and peak memory, measured side by side in one run.

    python benchmarks/bench_generate.py [--model smollm2-135m] [--new-tokens 256] [--batches 1,8] [--repeats 3]

All decoders run the same prompt for exactly `--new-tokens` steps (EOS suppressed with
`min_new_tokens`), with `think_end=None`, so every step is a soft step. Two soft modes: `soft` uses the
default thinking filters (max_topk=10, T=0.6, top_k=30, top_p=0.95, min_p=0.001); `soft-full` mixes the
whole vocabulary (max_topk=None, top_k=None, top_p=1, min_p=0: a (B, V) @ (V, d) product per step, as Soft
Tokens, Hard Truths and SwiReasoning use). Runs alternate plain / soft / soft-full (`--modes`);
the median and the best run are reported (on a shared CPU the best run is the least disturbed). The time
spent outside the model's forward passes (the decoding loop itself: processors, filters, mixing) is
measured per step with forward hooks, which isolates the soft loop's overhead from forward-pass noise.
Peak
memory: on CUDA `torch.cuda.max_memory_allocated`; on CPU the peak growth of the resident set during one
generation in a fresh process per (mode, batch), sampled every millisecond.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import torch

from hf_softthink import SoftThinkingConfig, enable_soft_thinking
from hf_softthink.models import load_model

QUESTION = "Explain step by step why the sum of two odd numbers is even."


def prepare(model_name: str, device: str, dtype: str):
    model, tokenizer = load_model(model_name, dtype=getattr(torch, dtype), device=device)
    enable_soft_thinking(model, tokenizer=tokenizer)
    return model, tokenizer


def batch_inputs(tokenizer, batch: int, device: str):
    text = tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}], add_generation_prompt=True,
                                         tokenize=False)
    return tokenizer([text] * batch, return_tensors="pt").to(device)


SOFT_MODES = {
    "soft": SoftThinkingConfig(think_end=None),
    "soft-full": SoftThinkingConfig(think_end=None, max_topk=None, top_k=None, top_p=1.0, min_p=0.0),
}
MODES = ("plain", *SOFT_MODES)


def run(model, inputs, mode: str, new_tokens: int) -> torch.Tensor:
    kwargs = dict(do_sample=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    if mode != "plain":
        kwargs["soft_thinking"] = SOFT_MODES[mode]
    return model.generate(**inputs, **kwargs)


class ForwardTimer:
    """Total wall time spent inside `model.forward`, through forward hooks."""

    def __init__(self, model, device: str):
        self.device, self.total, self.started = device, 0.0, 0.0
        model.register_forward_pre_hook(self.start)
        model.register_forward_hook(self.stop)

    def start(self, *args) -> None:
        synchronize(self.device)
        self.started = time.perf_counter()

    def stop(self, *args) -> None:
        synchronize(self.device)
        self.total += time.perf_counter() - self.started


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_memory_mib(args, mode: str, batch: int) -> float:
    """Peak memory of one generation, measured in a fresh process (CPU) or with CUDA's allocator stats."""
    if args.device.startswith("cuda"):
        model, tokenizer = prepare(args.model, args.device, args.dtype)
        inputs = batch_inputs(tokenizer, batch, args.device)
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run(model, inputs, mode, args.new_tokens)
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    command = [sys.executable, __file__, "--measure-memory", mode, "--batches", str(batch), "--model", args.model,
               "--new-tokens", str(args.new_tokens), "--dtype", args.dtype, "--threads", str(torch.get_num_threads())]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure_memory_in_this_process(args) -> None:
    model, tokenizer = prepare(args.model, "cpu", args.dtype)
    inputs = batch_inputs(tokenizer, int(args.batches), "cpu")
    run(model, inputs, args.measure_memory, 4)  # warm allocator and caches
    before, peak, done = resident_bytes(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], resident_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    run(model, inputs, args.measure_memory, args.new_tokens)
    done.set()
    sampler.join()
    print(json.dumps(max(0, peak[0] - before) / 2**20))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, from {', '.join(MODES)}")
    parser.add_argument("--measure-memory", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.measure_memory:
        measure_memory_in_this_process(args)
        return

    model, tokenizer = prepare(args.model, args.device, args.dtype)
    print(f"model={args.model} device={args.device} dtype={args.dtype} new_tokens={args.new_tokens} "
          f"repeats={args.repeats} torch_threads={torch.get_num_threads()}")
    modes = args.modes.split(",")
    if modes[0] != "plain" or not set(modes) <= set(MODES):
        parser.error(f"--modes must start with plain and name modes from {MODES}")
    rows = []
    timer = ForwardTimer(model, args.device)
    for batch in [int(b) for b in args.batches.split(",")]:
        inputs = batch_inputs(tokenizer, batch, args.device)
        for mode in modes:
            run(model, inputs, mode, 8)  # warm-up
        seconds = {mode: [] for mode in modes}
        loop_ms = {mode: [] for mode in modes}  # per step, outside the forward passes
        for _ in range(args.repeats):
            for mode in modes:
                synchronize(args.device)
                timer.total = 0.0
                start = time.perf_counter()
                out = run(model, inputs, mode, args.new_tokens)
                synchronize(args.device)
                seconds[mode].append(time.perf_counter() - start)
                loop_ms[mode].append(1000 * (seconds[mode][-1] - timer.total) / args.new_tokens)
                assert out.shape[1] - inputs["input_ids"].shape[1] == args.new_tokens
        rates = {mode: batch * args.new_tokens / statistics.median(times) for mode, times in seconds.items()}
        best = {mode: batch * args.new_tokens / min(times) for mode, times in seconds.items()}
        memory = {mode: peak_memory_mib(args, mode, batch) for mode in modes}
        loop = {mode: statistics.median(values) for mode, values in loop_ms.items()}
        step_ms = 1000 * statistics.median(seconds["plain"]) / args.new_tokens
        for mode in modes[1:]:
            overhead_ratio = step_ms / (step_ms + loop[mode] - loop["plain"])
            rows.append((batch, mode, rates, best, memory, loop, overhead_ratio))
            print(f"batch {batch} {mode}: plain {rates['plain']:.1f} tok/s, {mode} {rates[mode]:.1f} tok/s, ratio "
                  f"{rates[mode] / rates['plain']:.3f} (best runs {best[mode] / best['plain']:.3f}); loop outside "
                  f"forward {loop['plain']:.2f} vs {loop[mode]:.2f} ms/step -> {overhead_ratio:.3f}", flush=True)
        print(f"raw seconds per run, batch {batch}: {json.dumps(seconds)}", flush=True)

    print("\n| batch | mode | plain tok/s (median) | soft tok/s (median) | soft / plain (median) | soft / plain (best run) "
          "| loop ms/step plain | loop ms/step soft | soft / plain from loop overhead | plain peak MiB | soft peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for batch, mode, rates, best, memory, loop, overhead_ratio in rows:
        print(f"| {batch} | {mode} | {rates['plain']:.1f} | {rates[mode]:.1f} | {rates[mode] / rates['plain']:.3f} | "
              f"{best[mode] / best['plain']:.3f} | {loop['plain']:.2f} | {loop[mode]:.2f} | {overhead_ratio:.3f} | "
              f"{memory['plain']:.0f} | {memory[mode]:.0f} |")


if __name__ == "__main__":
    main()
