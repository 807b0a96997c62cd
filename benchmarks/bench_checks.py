"""Per-step cost of the soft loop's non-finite checks, at a model's sizes.

    python benchmarks/bench_checks.py [--vocab 49152] [--hidden 576] [--batches 1,8] [--threads 1]

Each step of `soft_thinking_sample` ends with one host sync (`.tolist()`) that it needs anyway (is any row
still running, still thinking); the checks add four reductions to what that sync reads: the row maximum of
the processed scores (B, V), and finiteness of the entropy (B,), the mixture total (B,) and the fed embedding
(B, d). This times the step's end with and without them, interleaved, at SmolLM2-135M's sizes by default,
and prints the difference per step next to the loop's own per-step cost from `bench_generate.py`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def end_of_step(still, thinking, processed, entropy, total, fed, checks: bool) -> list:
    flags = []
    if checks:
        live = still
        bad_scores = live & ~torch.isfinite(processed.amax(-1))
        bad_entropy = thinking & ~torch.isfinite(entropy)
        bad_mixture = thinking & ~torch.isfinite(total)
        bad_embeds = live & ~torch.isfinite(fed).all(-1)
        flags = [torch.stack([bad_scores, bad_entropy, bad_mixture, bad_embeds]).any(-1)]
    return torch.cat([torch.stack([still.any(), (still & thinking).any(), (still & ~thinking).any()]), *flags]).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=49152)
    parser.add_argument("--hidden", type=int, default=576)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"vocab={args.vocab} hidden={args.hidden} threads={args.threads} steps={args.steps}")
    print("| batch | end of step, no checks (µs) | with checks (µs) | checks cost (µs/step) |")
    print("|---|---|---|---|")
    for batch in [int(b) for b in args.batches.split(",")]:
        processed = torch.randn(batch, args.vocab)
        entropy, total = torch.rand(batch), torch.ones(batch)
        fed = torch.randn(batch, args.hidden)
        still = torch.ones(batch, dtype=torch.bool)
        thinking = torch.ones(batch, dtype=torch.bool)
        times = {False: [], True: []}
        for _ in range(5):  # rounds, alternating
            for checks in (False, True):
                start = time.perf_counter()
                for _ in range(args.steps):
                    end_of_step(still, thinking, processed, entropy, total, fed, checks)
                times[checks].append((time.perf_counter() - start) / args.steps * 1e6)
        plain, checked = statistics.median(times[False]), statistics.median(times[True])
        print(f"| {batch} | {plain:.1f} | {checked:.1f} | {checked - plain:.1f} |")


if __name__ == "__main__":
    main()
