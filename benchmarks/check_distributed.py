#!/usr/bin/env python
"""Does `SoftGRPOTrainer` train the same on N processes as on one? Record the N-process run, replay it in one.

A distributed SoftGRPO step is right when the soft tensors of each completion (soft-step mask, K ids,
log-weights, noisy embeddings) travel with their completion through TRL's reward gathering, its per-process
slicing of the advantages, the shuffle and the gradient-accumulation split. This script checks that end to end:

1. ``record`` (under ``torchrun`` / ``accelerate launch``): N processes train a few steps. Each rank saves every
   ``generate`` output it got, the gradients before each optimizer step (after the all-reduce), the logged
   loss and grad norm, and the final trainable parameters.
2. ``replay`` (one process): the same steps with N times the per-device batch, so one process sees the rows of
   all N ranks in rank order; its ``generate`` returns the ranks' recorded outputs concatenated, so both runs
   train on the same rollouts (the decoder noise is replayed, not re-drawn).
3. the driver (no ``--role``) runs both and compares them step by step: loss, grad norm, every gradient and
   the final parameters must agree to float tolerance. It prints a Markdown table and writes ``summary.json``;
   the exit status is 0 only if every check passes.

With ``--misalign-soft-rows`` the replay rolls the soft tensors (K ids, log-weights, noisy embeddings) by one
row against their completions, a negative control: the comparison must then fail.

Examples (from the repository root):

    python benchmarks/check_distributed.py --out dist_check       # 2 CPU processes (torchrun), DDP over gloo
    python benchmarks/check_distributed.py --out dist_check --full-finetune
    python benchmarks/check_distributed.py --out dist_check --cpu-fsdp \\
        --launcher "accelerate launch --config_file examples/accelerate/fsdp_cpu.yaml"
    python benchmarks/check_distributed.py --out dist_check --model smollm2-135m --bf16 \\
        --launcher "accelerate launch --config_file examples/accelerate/deepspeed_zero2.yaml"

`benchmarks/check_multi_gpu.py` runs the DDP, FSDP2 and DeepSpeed ZeRO-2/3 configs of `examples/accelerate/`
on a GPU machine and writes their results for `benchmarks/RESULTS.md`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

#: per-step tensors of the decoder output that belong to a completion row
STEP_FIELDS = (
    "thinking_mask",
    "soft_topk_ids",
    "soft_topk_log_weights",
    "soft_input_embeddings",
    "entropies",
)
#: the fields the negative control misaligns (the mask stays, so every row still has its soft steps)
MISALIGNED_FIELDS = ("soft_topk_ids", "soft_topk_log_weights", "soft_input_embeddings")


# ------------------------------------------------------------------------------------------------ set-up
def model_path(args) -> Path:
    """The checkpoint folder every run loads (TRL loads it by path, so `beta > 0` can load a reference copy)."""
    from hf_softthink.models import PACKAGED_MODELS, packaged_model_path

    if args.model == "tiny":
        return Path(args.out) / "tiny_model"
    if args.model in PACKAGED_MODELS:
        return packaged_model_path(args.model)
    return Path(args.model)


def save_tiny_model(path: Path) -> None:
    """A random tiny Llama and its byte-level tokenizer, saved once for all runs of the check."""
    from hf_softthink.models import tiny_model, tiny_tokenizer

    if not (path / "config.json").exists():
        tiny_model("llama", seed=0).save_pretrained(path)
        tiny_tokenizer().save_pretrained(path)


def build_trainer(args, mode: str, per_device_batch: int, output_dir: Path):
    """A SoftGRPOTrainer of the check: fixed prompts, a reward that varies per completion, seeded LoRA init."""
    import datasets
    from peft import LoraConfig
    from transformers import AutoTokenizer

    from hf_softthink import SoftThinkingConfig
    from hf_softthink.trainer import SoftGRPOConfig, SoftGRPOTrainer

    path = model_path(args)
    tokenizer = AutoTokenizer.from_pretrained(path)
    words = ["apple", "be", "cloud", "do", "eagle", "fig", "gray", "hi", "ink", "jump", "kite", "lo"]
    dataset = datasets.Dataset.from_dict(
        {"prompt": [[{"role": "user", "content": f"{w} {i}"}] for i, w in enumerate(words)]}
    )

    def even_tokens(completions, completion_ids, **kwargs):
        """Fraction of even token ids in the completion: varies from row to row, so advantages are not 0."""
        return [sum(i % 2 == 0 for i in ids) / max(len(ids), 1) for ids in completion_ids]

    config = SoftGRPOConfig(
        output_dir=str(output_dir),
        use_cpu=not torch.cuda.is_available(),
        bf16=args.bf16,
        soft_rollout=mode,
        soft_thinking=SoftThinkingConfig(max_topk=4, max_thinking_tokens=3),
        per_device_train_batch_size=per_device_batch,
        gradient_accumulation_steps=args.grad_accum,
        num_generations=args.num_generations,
        num_iterations=args.num_iterations,  # > 1: later steps reuse the batch with stored old log-probs
        beta=args.beta,  # > 0: reference log-probs are scored with the soft tensors too
        max_completion_length=8,
        max_steps=args.steps,
        logging_steps=1,
        learning_rate=1e-3,
        report_to=[],
        save_strategy="no",
        seed=0,
        disable_tqdm=True,
    )
    # random B as well as A: the policy differs from the reference (adapters off) from the first step, and
    # every LoRA weight gets a gradient; seeded, so every run starts from the same adapter
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    torch.manual_seed(0)
    return SoftGRPOTrainer(
        model=str(path),
        reward_funcs=even_tokens,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=None if args.full_finetune else lora,
    )


def generation_model(trainer):
    """The transformers model whose `generate` the trainer's rollouts call (under PEFT and the wrappers)."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """A gradient / parameter as one plain CPU fp32 tensor (gathers FSDP2 DTensor shards)."""
    if hasattr(tensor, "full_tensor"):
        tensor = tensor.full_tensor()
    return tensor.detach().float().cpu().clone()


def trainable_state(trainer) -> dict[str, torch.Tensor]:
    """The trainable parameters, gathered to full tensors, keyed by name without wrapper prefixes (FSDP2 shards
    and DeepSpeed ZeRO-3 partitions are gathered; every process must call it)."""
    model = trainer.accelerator.unwrap_model(trainer.model)
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if any(hasattr(p, "ds_id") for _, p in named):  # ZeRO-3: the parameters are partitioned
        import deepspeed

        with deepspeed.zero.GatheredParameters([p for _, p in named]):
            return {clean_name(name): full_tensor(p) for name, p in named}
    return {clean_name(name): full_tensor(p) for name, p in named}


def clean_name(name: str) -> str:
    for prefix in ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "module."):
        name = name.replace(prefix, "")
    return name


def gradient_recorder(store: list):
    """A callback that saves the gradients right before each optimizer step (after all-reduce and clipping).

    DeepSpeed keeps gradients in its own partitioned buffers (`p.grad` is None): the record is then empty and the
    comparison falls back to the loss, the grad norm and the trained weights."""
    from transformers import TrainerCallback

    class GradientRecorder(TrainerCallback):
        def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
            store.append(
                {
                    clean_name(n): full_tensor(p.grad)
                    for n, p in model.named_parameters()
                    if p.grad is not None
                }
            )

    return GradientRecorder()


# ------------------------------------------------------------------------------------------------- roles
def allow_fsdp_on_cpu() -> None:
    """Let accelerate run FSDP on CPU processes (gloo), which it otherwise silently turns into DDP.

    accelerate 1.15 sets `DistributedType.FSDP` only for GPU-like devices (`AcceleratorState.__init__`): with
    `use_cpu` the run is MULTI_CPU and the FSDP plugin is dropped. torch's FSDP2 (`fully_shard`) itself runs on
    CPU tensors with gloo, so for a CPU check of our code under sharded parameters this switches the state to
    FSDP when accelerate launched with an FSDP config. Not for production use: a test harness only.
    """
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    original = AcceleratorState.__init__
    if getattr(original, "_hf_softthink_cpu_fsdp", False):
        return

    def init(self, *args, fsdp_plugin=None, **kwargs):
        original(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            # both shared states: every AcceleratorState() copies PartialState's distributed_type again
            PartialState._shared_state["distributed_type"] = DistributedType.FSDP
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin

    init._hf_softthink_cpu_fsdp = True
    AcceleratorState.__init__ = init


def record(args) -> None:
    """One rank of the N-process run: train, and save what it generated and the gradients it stepped with."""
    if args.cpu_fsdp:
        allow_fsdp_on_cpu()
    out = Path(args.out)
    for mode in args.modes.split(","):
        trainer = build_trainer(args, mode, args.per_device_batch, out / mode / "trainer")
        target = generation_model(trainer)
        calls: list[dict] = []

        def recording_generate(*call_args, _target=target, _calls=calls, **kwargs):
            result = type(_target).generate(_target, *call_args, **kwargs)
            saved = {"input_ids": kwargs["input_ids"].cpu(), "attention_mask": kwargs["attention_mask"].cpu()}
            saved["tensor"] = isinstance(result, torch.Tensor)  # plain GRPO ("hard") gets the sequences only
            saved["sequences"] = (result if saved["tensor"] else result.sequences).cpu()
            for field in STEP_FIELDS:
                value = getattr(result, field, None)
                saved[field] = value.cpu() if value is not None else None
            _calls.append(saved)
            return result

        target.generate = recording_generate
        grads: list = []
        trainer.add_callback(gradient_recorder(grads))
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        state = trainer_record(trainer, grads, seconds)
        state["generate"] = calls
        rank = trainer.accelerator.process_index
        (out / mode).mkdir(parents=True, exist_ok=True)
        torch.save(state, out / mode / f"rank{rank}.pt")
        trainer.accelerator.wait_for_everyone()


def trainer_record(trainer, grads, seconds) -> dict:
    logs = [
        {"loss": e["loss"], "grad_norm": float(e["grad_norm"]), "reward": e.get("reward")}
        for e in trainer.state.log_history
        if "loss" in e
    ]
    return {
        "logs": logs,
        "grads": grads,
        "params": trainable_state(trainer),
        "seconds": seconds,
        "num_processes": trainer.accelerator.num_processes,
        "distributed_type": str(trainer.accelerator.distributed_type),
    }


def _right_pad(tensor: torch.Tensor, length: int, value) -> torch.Tensor:
    if tensor.size(1) >= length:
        return tensor
    shape = (tensor.size(0), length - tensor.size(1), *tensor.shape[2:])
    return torch.cat([tensor, tensor.new_full(shape, value)], dim=1)


def _prompt_rows(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[list[int]]:
    return [ids[mask.bool()].tolist() for ids, mask in zip(input_ids, attention_mask, strict=True)]


def replay(args) -> None:
    """The single-process run over the same rows: `generate` returns the ranks' recorded outputs."""
    from hf_softthink import SoftThinkingGenerateOutput

    out = Path(args.out)
    for mode in args.modes.split(","):
        ranks = sorted((out / mode).glob("rank*.pt"), key=lambda p: int(p.stem[4:]))
        recorded = [torch.load(p, weights_only=False)["generate"] for p in ranks]
        trainer = build_trainer(args, mode, args.per_device_batch * len(ranks), out / mode / "replay_trainer")
        target = generation_model(trainer)
        pad_id = trainer.processing_class.pad_token_id
        position = [0]

        def replaying_generate(*call_args, _recorded=recorded, _position=position, _pad=pad_id, **kwargs):
            parts = [calls[_position[0]] for calls in _recorded]
            _position[0] += 1
            input_ids, attention_mask = kwargs["input_ids"], kwargs["attention_mask"]
            expected = [row for p in parts for row in _prompt_rows(p["input_ids"], p["attention_mask"])]
            if _prompt_rows(input_ids.cpu(), attention_mask.cpu()) != expected:
                raise RuntimeError(
                    "replay: the single-process batch does not hold the recorded ranks' prompts in rank order"
                )
            new = [p["sequences"][:, p["input_ids"].size(1) :] for p in parts]
            length = max(n.size(1) for n in new)
            completions = torch.cat([_right_pad(n, length, _pad) for n in new])
            fields = {}
            for field in STEP_FIELDS:
                if parts[0][field] is None:
                    continue
                value = torch.cat([_right_pad(p[field], length, 0) for p in parts])
                if args.misalign_soft_rows and field in MISALIGNED_FIELDS:
                    value = value.roll(1, dims=0)
                fields[field] = value.to(input_ids.device)
            sequences = torch.cat([input_ids, completions.to(input_ids.device)], dim=1)
            if parts[0]["tensor"]:
                return sequences
            return SoftThinkingGenerateOutput(sequences=sequences, **fields)

        target.generate = replaying_generate
        grads: list = []
        trainer.add_callback(gradient_recorder(grads))
        start = time.perf_counter()
        trainer.train()
        state = trainer_record(trainer, grads, time.perf_counter() - start)
        if position[0] != len(recorded[0]):
            raise RuntimeError(f"replay used {position[0]} of {len(recorded[0])} recorded generate calls")
        torch.save(state, out / mode / "replay.pt")


# ------------------------------------------------------------------------------------------------ compare
def relative_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """max |a - b| / max |b| over all tensors (inf if the names or shapes differ)."""
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        return math.inf
    scale = max(float(t.abs().max()) for t in b.values())
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    return diff / max(scale, 1e-30)


def compare(args) -> dict:
    """Step-by-step comparison of the N-process record and the 1-process replay of every mode."""
    out = Path(args.out)
    rtol = args.rtol if args.rtol is not None else (2e-2 if args.bf16 else 1e-4)
    report = {"rtol": rtol, "modes": {}, "passed": True}
    for mode in args.modes.split(","):
        ranks = [torch.load(p, weights_only=False) for p in sorted((out / mode).glob("rank*.pt"))]
        single = torch.load(out / mode / "replay.pt", weights_only=False)
        multi = ranks[0]
        steps = []
        for step, (m_log, s_log) in enumerate(zip(multi["logs"], single["logs"], strict=True)):
            has_grads = bool(multi["grads"] and multi["grads"][step])  # DeepSpeed: none recorded
            grad_diff = (
                relative_difference(multi["grads"][step], single["grads"][step]) if has_grads else None
            )
            rank_diff = max(
                (relative_difference(r["grads"][step], multi["grads"][step]) for r in ranks[1:] if has_grads),
                default=0.0,
            )
            steps.append(
                {
                    "step": step + 1,
                    "loss_multi": m_log["loss"],
                    "loss_single": s_log["loss"],
                    "grad_norm_multi": m_log["grad_norm"],
                    "grad_norm_single": s_log["grad_norm"],
                    "grad_rel_diff": grad_diff,
                    "rank_grad_rel_diff": rank_diff,
                }
            )
        param_diff = relative_difference(multi["params"], single["params"])
        ok = bool(steps) and param_diff <= rtol
        for s in steps:
            # the GRPO loss is ~0 at an on-policy step (advantages sum to 0 per group): absolute floor 1e-6
            s["loss_close"] = abs(s["loss_multi"] - s["loss_single"]) <= rtol * abs(s["loss_single"]) + 1e-6
            norm_scale = max(abs(s["grad_norm_single"]), 1e-12)
            s["grad_norm_close"] = abs(s["grad_norm_multi"] - s["grad_norm_single"]) <= rtol * norm_scale
            grads_ok = s["grad_rel_diff"] is None or s["grad_rel_diff"] <= rtol
            ok = (
                ok
                and s["loss_close"]
                and s["grad_norm_close"]
                and grads_ok
                and s["rank_grad_rel_diff"] <= rtol
            )
        report["modes"][mode] = {
            "steps": steps,
            "param_rel_diff": param_diff,
            "passed": ok,
            "num_processes": multi["num_processes"],
            "distributed_type": multi["distributed_type"],
            "seconds_multi": multi["seconds"],
            "seconds_single": single["seconds"],
        }
        report["passed"] = report["passed"] and ok
    return report


def markdown(report: dict) -> str:
    lines = [
        "| mode | step | loss N-proc | loss 1-proc | grad norm N-proc | grad norm 1-proc | grad rel. diff | ok |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode, result in report["modes"].items():
        for s in result["steps"]:
            grad = "n/a" if s["grad_rel_diff"] is None else f"{s['grad_rel_diff']:.1e}"
            ok = s["loss_close"] and s["grad_norm_close"] and (s["grad_rel_diff"] or 0.0) <= report["rtol"]
            lines.append(
                f"| {mode} | {s['step']} | {s['loss_multi']:.6g} | {s['loss_single']:.6g} | "
                f"{s['grad_norm_multi']:.6g} | {s['grad_norm_single']:.6g} | {grad} | {'yes' if ok else 'NO'} |"
            )
    for mode, result in report["modes"].items():
        lines.append(
            f"\n{mode}: {result['num_processes']} processes ({result['distributed_type']}), final parameters "
            f"rel. diff {result['param_rel_diff']:.1e}; train time {result['seconds_multi']:.1f} s "
            f"({result['num_processes']} processes) vs {result['seconds_single']:.1f} s (1 process, replayed "
            f"rollouts); {'PASS' if result['passed'] else 'FAIL'}"
        )
    return "\n".join(lines)


def role_arguments(args) -> list[str]:
    flags = [
        "--out", args.out, "--modes", args.modes, "--model", args.model, "--steps", str(args.steps),
        "--per-device-batch", str(args.per_device_batch), "--grad-accum", str(args.grad_accum),
        "--num-generations", str(args.num_generations), "--num-iterations", str(args.num_iterations),
        "--beta", str(args.beta),
    ]  # fmt: skip
    for name in ("full_finetune", "bf16", "misalign_soft_rows", "cpu_fsdp"):
        if getattr(args, name):
            flags.append("--" + name.replace("_", "-"))
    return flags


def drive(args) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.model == "tiny":
        save_tiny_model(model_path(args))
    else:
        model_path(args)  # converts a packaged model once, before the processes start
    for mode in args.modes.split(","):
        stale = (out / mode).glob("replay.pt" if args.skip_record else "*.pt")
        for path in stale:
            path.unlink()
    script = str(Path(__file__).resolve())
    launcher = shlex.split(args.launcher) if args.launcher else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.nproc),
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    commands = [] if args.skip_record else [[*launcher, script, "--role", "record", *role_arguments(args)]]
    commands.append([sys.executable, script, "--role", "replay", *role_arguments(args)])
    for command in commands:
        print("$", shlex.join(command), flush=True)
        subprocess.run(command, check=True, env=env)
    report = compare(args)
    (out / "summary.json").write_text(json.dumps(report, indent=2))
    print(markdown(report))
    return 0 if report["passed"] else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=["drive", "record", "replay"], default="drive")
    parser.add_argument("--out", default="dist_check", help="folder for the records and summary.json")
    parser.add_argument("--modes", default="gumbel,gaussian", help="comma-separated soft_rollout kinds")
    parser.add_argument("--model", default="tiny", help="'tiny' (random Llama) or a load_model name / path")
    parser.add_argument("--full-finetune", action="store_true", help="train every weight (default: LoRA r=4)")
    parser.add_argument("--bf16", action="store_true", help="bf16 mixed precision (looser tolerance)")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps")
    parser.add_argument(
        "--per-device-batch", type=int, default=3, help="per-device batch of the N-process run"
    )
    parser.add_argument("--grad-accum", type=int, default=2, help="gradient accumulation steps")
    parser.add_argument("--num-generations", type=int, default=4, help="GRPO group size")
    parser.add_argument("--num-iterations", type=int, default=2, help="GRPO updates per generation batch")
    parser.add_argument("--beta", type=float, default=0.1, help="KL coefficient (needs a reference model)")
    parser.add_argument("--nproc", type=int, default=2, help="processes (default launcher: torchrun)")
    parser.add_argument("--launcher", default=None, help="launcher command instead of torchrun")
    parser.add_argument("--rtol", type=float, default=None, help="tolerance (default 1e-4, 2e-2 with --bf16)")
    parser.add_argument("--misalign-soft-rows", action="store_true", help="negative control: must FAIL")
    parser.add_argument("--skip-record", action="store_true", help="reuse the N-process records in --out")
    parser.add_argument(
        "--cpu-fsdp",
        action="store_true",
        help="with an FSDP accelerate config on CPU: run FSDP (accelerate otherwise falls back to DDP on CPU)",
    )
    args = parser.parse_args(argv)
    if args.role == "record":
        record(args)
        return 0
    if args.role == "replay":
        replay(args)
        return 0
    return drive(args)


if __name__ == "__main__":
    sys.exit(main())
