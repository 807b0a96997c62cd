"""Seconds per training step of `hf-softthink train` with torch's default CPU threads vs the command's default.

    python benchmarks/bench_threads.py --pairs 3 --steps 3

Runs the quickstart's training (SmolLM2-135M, gumbel rollouts, LoRA r16, 8 completions of up to 32 tokens per step:
the command's defaults) in fresh processes, alternating A (`--threads T`, T = torch's own default in a clean
environment: one thread per core) and B (no --threads: `hf_softthink.threads.default_cpu_threads`, the cores the
load average leaves idle), so that both see the same load; OMP_NUM_THREADS / MKL_NUM_THREADS are removed from the
children's environment. Each run's s/step is the median of its steps after the first (the first includes warm-up);
the ratio A/B is taken pair by pair. Prints one row per run and the median ratio.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

STEP = re.compile(r"^step (\d+)/\d+ \|.* \| ([0-9.]+) s/step", re.M)
THREADS = re.compile(r"CPU, (\d+) torch threads?")


def torch_default_threads(env: dict[str, str]) -> int:
    code = "import torch; print(torch.get_num_threads())"
    return int(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                              check=True).stdout)


def run(threads: int | None, steps: int, env: dict[str, str], out: str) -> tuple[float, int, float, float]:
    """(median s/step after the first step, threads used, load average at the start, wall seconds)."""
    load = os.getloadavg()[0]
    argv = ["hf-softthink", "train", "--max-steps", str(steps), "--output-dir", out, "--no-progress"]
    if threads is not None:
        argv += ["--threads", str(threads)]
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr[-3000:]}")
    per_step = [float(seconds) for _, seconds in STEP.findall(done.stdout)]
    used = int(THREADS.search(done.stderr).group(1))
    return statistics.median(per_step[1:] or per_step), used, load, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3, help="A/B pairs")
    parser.add_argument("--steps", type=int, default=3, help="training steps per run (the first is not counted)")
    options = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    torch_threads = torch_default_threads(env)
    print(f"cores {os.cpu_count()}, torch's default threads {torch_threads}, {options.steps} steps per run "
          f"(median of steps 2..{options.steps})")
    print("| pair | run | threads | load avg at start | s/step | wall s |")
    print("|---:|---|---:|---:|---:|---:|")
    ratios = []
    with tempfile.TemporaryDirectory() as folder:
        for pair in range(1, options.pairs + 1):
            results = {}
            for label, threads in (("A torch default", torch_threads), ("B new default", None)):
                per_step, used, load, wall = run(threads, options.steps, env, os.path.join(folder, f"{pair}{label[0]}"))
                results[label[0]] = per_step
                print(f"| {pair} | {label} | {used} | {load:.2f} | {per_step:.1f} | {wall:.0f} |", flush=True)
            ratios.append(results["A"] / results["B"])
            print(f"| {pair} | A/B | | | {ratios[-1]:.2f} | |", flush=True)
    print(f"median ratio A/B (torch default / new default): {statistics.median(ratios):.2f} over {len(ratios)} pairs")


if __name__ == "__main__":
    main()
