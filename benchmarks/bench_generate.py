"""Soft-thinking vs plain `generate`: throughput and peak memory, measured side by side in one run.

    python benchmarks/bench_generate.py [--model smollm2-135m] [--new-tokens 256] [--batches 1,8] [--repeats 3]
    python benchmarks/bench_generate.py --compile [--static] ...   # + static cache with a compiled forward

All decoders run the same prompt for exactly `--new-tokens` steps (EOS suppressed with
`min_new_tokens`), with `think_end=None`, so every step is a thinking step. Three soft modes: `soft` uses the
default thinking filters (max_topk=10, T=0.6, top_k=30, top_p=0.95, min_p=0.001); `soft-full` mixes the
whole vocabulary (max_topk=None, top_k=None, top_p=1, min_p=0: a (B, V) @ (V, d) product per step, as Soft
Tokens, Hard Truths and SwiReasoning use); `switch` is SwiReasoning's entropy switching with the same
full-vocabulary mixture (window 512, no blends: rows go explicit and stay so, where only the token is fed).
Runs alternate plain / soft / soft-full / switch (`--modes`);
the median and the best run are reported (on a shared CPU the best run is the least disturbed). The time
spent outside the model's forward passes (the decoding loop itself: processors, filters, mixing) is
measured per step with forward hooks, which isolates the soft loop's overhead from forward-pass noise.
Peak
memory: on CUDA `torch.cuda.max_memory_allocated`; on CPU the peak growth of the resident set during one
generation in a fresh process per (mode, batch), sampled every millisecond.

`--compile` also runs every mode with transformers' static cache and its compiled forward
(`cache_implementation="static"` with the default `CompileConfig()`: what `generate` does by itself on CUDA;
on CPU transformers compiles only when the config carries `_compile_all_devices`, which this script sets),
`--static` with the static cache uncompiled (`disable_compile=True`). Those runs are interleaved with the
dynamic-cache ones, and a second table gives the ratios compiled / dynamic (same mode) and compiled soft /
compiled plain, and whether each run's tokens equal the dynamic-cache run's. The first run of each (mode,
batch) with the compiled forward compiles it (reported as warm-up time, not timed). The forward hooks that
measure the loop overhead would be traced into the compiled forward, so with `--compile` they are not
installed and the loop-overhead columns are not measured.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time

import torch
from transformers import CompileConfig

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
    "switch": SoftThinkingConfig(mode="switch", think_end=None, max_topk=None, top_k=None, top_p=1.0, min_p=0.0,
                                 temperature=1.0),
}
MODES = ("plain", *SOFT_MODES)


def compile_config() -> CompileConfig:
    """transformers' default `CompileConfig`, flagged so that `generate` compiles on any device (it compiles by
    itself only on cuda / xpu / tpu / neuron: `GenerationMixin._valid_auto_compile_criteria`)."""
    config = CompileConfig()
    config._compile_all_devices = True
    return config


#: how the decode steps run: the cache and the forward
ENGINES = {
    "dynamic": {},
    "static": {"cache_implementation": "static", "disable_compile": True},
    "compiled": {"cache_implementation": "static", "compile_config": compile_config()},
}


def run(model, inputs, mode: str, new_tokens: int, engine: str = "dynamic") -> torch.Tensor:
    kwargs = dict(do_sample=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **ENGINES[engine])
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
    parser.add_argument("--compile", action="store_true",
                        help="also run every mode with a static cache and transformers' compiled forward")
    parser.add_argument("--static", action="store_true", help="also run every mode with a static cache, uncompiled")
    parser.add_argument("--skip-memory", action="store_true", help="do not measure peak memory (saves a process "
                        "per mode and batch)")
    parser.add_argument("--measure-memory", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.measure_memory:
        measure_memory_in_this_process(args)
        return

    model, tokenizer = prepare(args.model, args.device, args.dtype)
    engines = ["dynamic"] + ["static"] * args.static + ["compiled"] * args.compile
    print(f"model={args.model} device={args.device} dtype={args.dtype} new_tokens={args.new_tokens} "
          f"repeats={args.repeats} torch_threads={torch.get_num_threads()} engines={','.join(engines)} "
          f"load average at start {os.getloadavg()[0]:.1f}")
    modes = args.modes.split(",")
    if modes[0] != "plain" or not set(modes) <= set(MODES):
        parser.error(f"--modes must start with plain and name modes from {MODES}")
    rows, engine_rows = [], []
    timer = None if args.compile else ForwardTimer(model, args.device)  # hooks would be traced into a compiled call
    runs = [(mode, engine) for mode in modes for engine in engines]
    for batch in [int(b) for b in args.batches.split(",")]:
        inputs = batch_inputs(tokenizer, batch, args.device)
        reference = {}
        for mode, engine in runs:  # warm-up; a compiled forward is compiled here, at the timed runs' cache length
            start = time.perf_counter()
            out = run(model, inputs, mode, args.new_tokens if engine == "compiled" else 8, engine)
            if engine == "compiled":
                print(f"batch {batch} {mode} compiled: warm-up (compilation) {time.perf_counter() - start:.1f} s",
                      flush=True)
        seconds = {run_: [] for run_ in runs}
        loop_ms = {mode: [] for mode in modes}  # per step, outside the forward passes (dynamic cache)
        for _ in range(args.repeats):
            for mode, engine in runs:
                synchronize(args.device)
                if timer is not None:
                    timer.total = 0.0
                start = time.perf_counter()
                out = run(model, inputs, mode, args.new_tokens, engine)
                synchronize(args.device)
                seconds[mode, engine].append(time.perf_counter() - start)
                if timer is not None and engine == "dynamic":
                    loop_ms[mode].append(1000 * (seconds[mode, engine][-1] - timer.total) / args.new_tokens)
                assert out.shape[1] - inputs["input_ids"].shape[1] == args.new_tokens
                reference.setdefault(mode, {})[engine] = out
        rate = {run_: batch * args.new_tokens / statistics.median(times) for run_, times in seconds.items()}
        best = {run_: batch * args.new_tokens / min(times) for run_, times in seconds.items()}
        rates = {mode: rate[mode, "dynamic"] for mode in modes}
        bests = {mode: best[mode, "dynamic"] for mode in modes}
        memory = {mode: math.nan if args.skip_memory else peak_memory_mib(args, mode, batch) for mode in modes}
        loop = {mode: statistics.median(values) if values else math.nan for mode, values in loop_ms.items()}
        step_ms = 1000 * statistics.median(seconds["plain", "dynamic"]) / args.new_tokens
        for mode in modes[1:]:
            overhead_ratio = step_ms / (step_ms + loop[mode] - loop["plain"])
            rows.append((batch, mode, rates, bests, memory, loop, overhead_ratio))
            print(f"batch {batch} {mode}: plain {rates['plain']:.1f} tok/s, {mode} {rates[mode]:.1f} tok/s, ratio "
                  f"{rates[mode] / rates['plain']:.3f} (best runs {bests[mode] / bests['plain']:.3f}); loop outside "
                  f"forward {measured(loop['plain'], '.2f')} vs {measured(loop[mode], '.2f')} ms/step -> "
                  f"{measured(overhead_ratio, '.3f')}", flush=True)
        for mode in modes:
            for engine in engines[1:]:
                same = first_difference(reference[mode][engine], reference[mode]["dynamic"], inputs)
                engine_rows.append((batch, mode, engine, rate, best, same))
        print(f"raw seconds per run, batch {batch}: "
              f"{json.dumps({f'{mode}/{engine}': times for (mode, engine), times in seconds.items()})}", flush=True)

    print(f"\nload average at end {os.getloadavg()[0]:.1f}")
    print("\n| batch | mode | plain tok/s (median) | soft tok/s (median) | soft / plain (median) | soft / plain (best run) "
          "| loop ms/step plain | loop ms/step soft | soft / plain from loop overhead | plain peak MiB | soft peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for batch, mode, rates, bests, memory, loop, overhead_ratio in rows:
        print(f"| {batch} | {mode} | {rates['plain']:.1f} | {rates[mode]:.1f} | {rates[mode] / rates['plain']:.3f} | "
              f"{bests[mode] / bests['plain']:.3f} | {measured(loop['plain'], '.2f')} | {measured(loop[mode], '.2f')} | "
              f"{measured(overhead_ratio, '.3f')} | {measured(memory['plain'], '.0f')} | {measured(memory[mode], '.0f')} |")
    if engine_rows:
        print("\n| batch | mode | engine | dynamic tok/s (median) | engine tok/s (median) | engine / dynamic (median) "
              "| engine / dynamic (best run) | mode / plain, same engine (median) | mode / plain, same engine (best run) "
              "| tokens equal to dynamic |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for batch, mode, engine, rate, best, same in engine_rows:
            soft = mode != "plain"
            print(f"| {batch} | {mode} | {engine} | {rate[mode, 'dynamic']:.1f} | {rate[mode, engine]:.1f} | "
                  f"{rate[mode, engine] / rate[mode, 'dynamic']:.3f} | {best[mode, engine] / best[mode, 'dynamic']:.3f} | "
                  f"{measured(rate[mode, engine] / rate['plain', engine] if soft else math.nan, '.3f')} | "
                  f"{measured(best[mode, engine] / best['plain', engine] if soft else math.nan, '.3f')} | {same} |")


def measured(value: float, spec: str) -> str:
    """A table cell: the value, or a dash where it was not measured (NaN)."""
    return "–" if math.isnan(value) else format(value, spec)


def first_difference(tokens: torch.Tensor, reference: torch.Tensor, inputs) -> str:
    """'yes', or the first generated step at which some row's token differs from the reference run's."""
    prompt = inputs["input_ids"].shape[1]
    differs = (tokens[:, prompt:] != reference[:, prompt:]).any(0).nonzero()
    return "yes" if differs.numel() == 0 else f"from step {int(differs[0])}"


if __name__ == "__main__":
    main()
