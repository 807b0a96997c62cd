"""SoftGRPOTrainer (gaussian, gumbel) vs trl.GRPOTrainer: step time and peak memory, one run, side by side.

    python benchmarks/bench_train.py [--model smollm2-135m] [--steps 3] [--warmup 1] [--completions 8]
                                     [--tokens 32] [--thinking 24] [--lora-r 16] [--device cpu] [--qlora]
                                     [--threads N] [--json results.json]

Same model, batch and LoRA adapter for every trainer: `--completions` completions of exactly `--tokens` new
tokens per step (EOS suppressed with `min_new_tokens`, so every trainer does the same amount of work), one
prompt group per step. The soft rollouts think for `--thinking` soft steps (the thinking budget forces the
think-end marker), then answer with ordinary tokens. Each trainer runs in a fresh process: `--warmup` steps,
then `--steps` timed steps (median reported). Peak memory: on CUDA `torch.cuda.max_memory_allocated` over the
timed steps; on CPU the peak resident set of the process (it holds the model, the optimizer state and the
activations of one step). The size of the stored soft rollout data (per generation batch) is reported too.

`--qlora` loads the base model in 4-bit NF4 with bf16 compute (bitsandbytes; meant for CUDA).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

MODES = ("hard", "gaussian", "gumbel")


def build_trainer(args, mode: str):
    import datasets
    from peft import LoraConfig
    from transformers import BitsAndBytesConfig, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from hf_softthink import SoftThinkingConfig
    from hf_softthink.models import load_model
    from hf_softthink.trainer import SoftGRPOConfig, SoftGRPOTrainer

    quantization = None
    if args.qlora:
        quantization = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
        )
    model, tokenizer = load_model(
        args.model, device=args.device if args.device != "cpu" else None, quantization_config=quantization
    )
    questions = [f"What is {a} + {b}?" for a in range(1, 10) for b in range(1, 10)]
    dataset = datasets.Dataset.from_dict(
        {"prompt": [[{"role": "user", "content": q}] for q in questions], "answer": ["0"] * len(questions)}
    )

    def length_reward(completions, **kwargs):
        return [len(c[0]["content"]) % 7 / 7 for c in completions]

    common = dict(
        output_dir=f"/tmp/bench_train_{mode}",
        use_cpu=args.device == "cpu",
        bf16=args.device != "cpu",
        per_device_train_batch_size=args.completions,
        num_generations=args.completions,
        max_completion_length=args.tokens,
        generation_kwargs={"min_new_tokens": args.tokens},
        max_steps=args.warmup + args.steps,
        learning_rate=1e-5,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        seed=0,
    )
    peft_config = LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r, target_modules="all-linear")
    if mode == "hard":
        config, trainer_class = GRPOConfig(**common), GRPOTrainer
    else:
        soft = SoftThinkingConfig(max_topk=args.topk, max_thinking_tokens=args.thinking)
        config = SoftGRPOConfig(soft_rollout=mode, soft_thinking=soft, **common)
        trainer_class = SoftGRPOTrainer

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times, self.start = [], None

        def on_step_begin(self, *a, **k):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            self.start = time.perf_counter()

        def on_step_end(self, *a, **k):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self.start)
            if len(self.times) == args.warmup and args.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()

    timer = StepTimer()
    trainer = trainer_class(
        model=model,
        reward_funcs=length_reward,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[timer],
    )
    return trainer, timer


def soft_data_bytes(trainer) -> tuple[int, list]:
    """Bytes of the soft tensors stored for the last generation batch, and their shapes."""
    from hf_softthink.trainer import SOFT_BATCH_KEYS

    total, shapes = 0, []
    for batch in trainer._buffered_inputs or []:
        for key in SOFT_BATCH_KEYS:
            if key in batch:
                total += batch[key].numel() * batch[key].element_size()
                shapes.append((key, list(batch[key].shape)))
    return total, shapes


def single(args, mode: str) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    trainer, timer = build_trainer(args, mode)
    trainer.train()
    timed = timer.times[args.warmup :]
    soft_bytes, shapes = soft_data_bytes(trainer) if mode != "hard" else (0, [])
    if args.device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    logs = [h for h in trainer.state.log_history if "loss" in h]
    return {
        "mode": mode,
        "step_s": statistics.median(timed),
        "step_times": timed,
        "peak_mib": peak,
        "soft_data_bytes": soft_bytes,
        "soft_shapes": shapes,
        "mean_length": statistics.mean(h["completions/mean_length"] for h in logs),
        "frac_soft": statistics.mean(h.get("soft/frac_soft_steps", 0.0) for h in logs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--completions", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--thinking", type=int, default=24)
    parser.add_argument("--topk", type=int, default=10)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--qlora", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--single", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = parser.parse_args()

    if args.single:
        print("RESULT " + json.dumps(single(args, args.single)), flush=True)
        return

    results = {}
    passthrough = []
    for key, value in vars(args).items():
        if key in ("single", "json", "modes") or value in (None, False):
            continue
        passthrough += [f"--{key.replace('_', '-')}"] + ([] if value is True else [str(value)])
    for mode in args.modes.split(","):
        command = [sys.executable, __file__, *passthrough, "--single", mode]
        out = subprocess.run(command, capture_output=True, text=True)
        line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            sys.stderr.write(out.stdout[-3000:] + out.stderr[-3000:])
            raise SystemExit(f"the {mode} run failed")
        results[mode] = json.loads(line[len("RESULT ") :])
        r = results[mode]
        print(
            f"{mode:>9}: {r['step_s']:.2f} s/step (steps {[round(t, 2) for t in r['step_times']]}), "
            f"peak {r['peak_mib']:.0f} MiB",
            flush=True,
        )

    hard = results.get("hard")
    print(
        f"\nmodel {args.model}, LoRA r{args.lora_r}{' (QLoRA 4-bit)' if args.qlora else ''}, "
        f"{args.completions} completions x {args.tokens} tokens ({args.thinking} soft thinking steps), "
        f"device {args.device}, {args.threads or torch.get_num_threads()} CPU threads"
    )
    print("| trainer | s/step | x hard | peak MiB | x hard | soft steps | stored soft data |")
    print("|---|---|---|---|---|---|---|")
    for mode, r in results.items():
        time_ratio = f"{r['step_s'] / hard['step_s']:.2f}" if hard else "-"
        mem_ratio = f"{r['peak_mib'] / hard['peak_mib']:.2f}" if hard else "-"
        stored = f"{r['soft_data_bytes'] / 1024:.0f} KiB" if mode != "hard" else "-"
        name = "GRPOTrainer" if mode == "hard" else f"SoftGRPO {mode}"
        print(
            f"| {name} | {r['step_s']:.2f} | {time_ratio} | {r['peak_mib']:.0f} | {mem_ratio} | "
            f"{r['frac_soft']:.2f} | {stored} |"
        )
    for mode, r in results.items():
        if r["soft_shapes"]:
            print(f"{mode} stored tensors: {r['soft_shapes']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
