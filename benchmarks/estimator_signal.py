"""Signal of each soft-RL estimator: the cosine between the policy gradients of independent rollout batches.

    python benchmarks/estimator_signal.py                  # every estimator, 32 batches of 64 rollouts each
    python benchmarks/estimator_signal.py --smoke          # seconds: the grid's smoke SFT, 4 batches of 8 rollouts
    python benchmarks/estimator_signal.py --estimators hard,gumbel_max,softgrpo --batches 16

From the grid's SFT start (``benchmarks/grid.py``'s SFT stage, built or reused under the grid's ``--out``), for
each estimator (a `SoftGRPOConfig`: a rollout kind, a score of the soft steps, an advantage estimator) and each
of ``--batches`` independent batches (``--prompts`` training prompts x ``--generations`` rollouts each, the same
prompts and seeds for every estimator), the script generates the batch with `SoftGRPOTrainer` and takes the
gradient of the trainer's own loss at the start parameters (on-policy: the update the first step would follow).
Per estimator it reports the mean, over all pairs of distinct batches, of the cosine between the two batches'
gradients, with a jackknife standard error (leave one batch out), and the same for its difference from hard
GRPO's cosine on the same pairs of prompt batches (paired). Two unbiased estimates of one gradient from
independent batches have a positive expected cosine that grows with the signal-to-noise ratio of one batch's
estimate; a cosine of zero means one batch's update is noise at this batch size.

Each estimator also reports the norm of its gradient (mean over batches). Results go to ``--out`` as JSON and
print as a Markdown table (one run, one process, ``--threads`` torch threads).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the grid_stages package next to this script
from embedding_rms import task_ids as token_ids  # noqa: E402
from grid_stages.cli import parse_args  # noqa: E402
from grid_stages.common import load_model, log, write_json  # noqa: E402
from grid_stages.settings import REPO  # noqa: E402
from grid_stages.sft import run_sft  # noqa: E402
from grid_stages.task import THINK_END, build_splits, completion_text, prompt_text  # noqa: E402


def estimators(settings, task_token_ids: list[int]) -> dict[str, dict[str, Any]]:
    """name -> `SoftGRPOConfig` keyword arguments (a preset name under "preset"), at the grid's RL settings."""
    grid_soft = dict(
        max_topk=settings.rl_max_topk, temperature=settings.rl_temperature, top_k=None, top_p=1.0,
        gaussian_sigma=settings.rl_sigma, gumbel_tau=settings.rl_gumbel_tau,
        dirichlet_alpha=settings.rl_dirichlet_alpha,
    )
    return {
        "hard": dict(soft_rollout="hard"),
        "gaussian": dict(soft_rollout="gaussian", soft_thinking=grid_soft),
        "gaussian_used_rows": dict(
            soft_rollout="gaussian", soft_thinking={**grid_soft, "gaussian_rms_token_ids": task_token_ids}
        ),
        "fuzzy": dict(soft_rollout="fuzzy", soft_thinking=grid_soft),
        "dirichlet": dict(soft_rollout="dirichlet", soft_thinking=grid_soft),
        **{
            f"logistic_normal_s{sigma:g}": dict(
                soft_rollout="logistic_normal", soft_thinking={**grid_soft, "logistic_normal_sigma": sigma}
            )
            for sigma in (0.25, 1.0, 3.0, 10.0)
        },
        "gumbel": dict(soft_rollout="gumbel", soft_thinking=grid_soft),
        "gumbel_max": dict(soft_rollout="gumbel", soft_density="gumbel_max", soft_thinking=grid_soft),
        "gumbel_max_r0.1": dict(
            soft_rollout="gumbel", soft_density="gumbel_max", soft_density_residual=0.1, soft_thinking=grid_soft
        ),
        "softgrpo": dict(preset="softgrpo"),
        "softgrpo_gumbel_max": dict(preset="softgrpo", soft_density="gumbel_max", soft_thinking={"gumbel_noise_clamp": None}),
        "stht": dict(preset="stht"),
        "stht_used_rows": dict(preset="stht", soft_thinking={"gaussian_rms_token_ids": task_token_ids}),
        "stht_fuzzy": dict(preset="stht-fuzzy"),
    }


def make_args(name: str, spec: dict[str, Any], settings, batch_rows: int, out: Path):
    """The estimator's `SoftGRPOConfig` with the measurement's batch and the grid's lengths and reward setup."""
    from hf_softthink.trainer import SoftGRPOConfig

    spec = dict(spec)
    preset = spec.pop("preset", None)
    soft = {"think_end": THINK_END, "max_thinking_tokens": settings.max_thinking_tokens, **spec.pop("soft_thinking", {})}
    common = dict(
        output_dir=str(out / "trainer" / name), num_generations=settings.rl_generations,
        per_device_train_batch_size=batch_rows, gradient_accumulation_steps=1,
        max_completion_length=settings.max_new_tokens, use_cpu=True, bf16=False, report_to="none",
        disable_tqdm=True, activation_checkpointing=False, logging_steps=1, save_strategy="no",
    )
    if preset is not None:
        build = SoftGRPOConfig.softgrpo if preset == "softgrpo" else SoftGRPOConfig.stht
        extra = {"fuzzy": True} if preset == "stht-fuzzy" else {}
        # beta=0: the gradient of the policy term alone (the KL's is 0 at the start parameters anyway)
        return build(**extra, **common, beta=0.0, soft_thinking=soft, **spec)
    grid = dict(temperature=settings.rl_temperature, scale_rewards=settings.rl_scale_rewards, beta=0.0)
    if spec.get("soft_rollout") == "hard":
        return SoftGRPOConfig(**common, **grid, **spec)
    return SoftGRPOConfig(**common, **grid, soft_thinking=soft, **spec)


def batch_gradient(trainer, rows: list[dict[str, Any]], seed: int) -> tuple[torch.Tensor, dict[str, float]]:
    """One batch: rollouts, then the flattened gradient of the trainer's loss at the current parameters."""
    model = trainer.model
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    batch = trainer._generate_and_score_completions(rows)
    trainer.current_gradient_accumulation_steps = 1
    loss = trainer.compute_loss(model, batch)
    loss.backward()
    grad = torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros(p.numel()) for p in model.parameters()])
    mask = batch["completion_mask"].bool()
    info = {
        "loss": loss.item(),
        "grad_norm": grad.norm().item(),
        "soft_steps": float(batch["soft_mask"].sum()) if "soft_mask" in batch else 0.0,
        "tokens": float(mask.sum()),
        "advantage_abs_mean": batch["advantages"].abs().mean().item(),
    }
    model.zero_grad(set_to_none=True)
    return grad, info


def pair_cosines(grads: list[torch.Tensor]) -> torch.Tensor:
    """`(n, n)` cosines between the batches' gradients (the diagonal is unused)."""
    stacked = torch.stack(grads)
    unit = stacked / stacked.norm(dim=1, keepdim=True).clamp_min(1e-30)
    return unit @ unit.T


def pair_mean_jackknife(cosines: torch.Tensor) -> tuple[float, float]:
    """Mean over the pairs i < j of `cosines`, and its jackknife standard error over the batches."""
    n = cosines.size(0)
    upper = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)
    mean = cosines[upper].mean().item()
    leave_out = []
    for k in range(n):
        keep = upper.clone()
        keep[k, :] = False
        keep[:, k] = False
        leave_out.append(cosines[keep].mean().item())
    centre = sum(leave_out) / n
    se = math.sqrt((n - 1) / n * sum((v - centre) ** 2 for v in leave_out))
    return mean, se


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1].strip(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="the grid's smoke SFT, 4 batches of 8 rollouts")
    parser.add_argument("--batches", type=int, default=None, help="independent batches (default 32)")
    parser.add_argument("--prompts", type=int, default=None, help="prompts per batch (default 8)")
    parser.add_argument("--generations", type=int, default=None, help="rollouts per prompt (default: the grid's, 8)")
    parser.add_argument("--estimators", default=None, help="comma-separated names (default: all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--grid-out", default=None, help="the grid's --out, where its SFT stage lives")
    parser.add_argument("--out", default=str(REPO / "runs" / "estimator_signal"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    grid_argv = ["--smoke"] if args.smoke else []
    if args.grid_out:
        grid_argv += ["--out", args.grid_out]
    if args.generations:
        grid_argv += ["--rl-generations", str(args.generations)]
    settings = parse_args(grid_argv)
    n_batches = args.batches or (4 if args.smoke else 32)
    prompts = args.prompts or (2 if args.smoke else 8)

    from hf_softthink.models import tiny_tokenizer
    from hf_softthink.rewards import reasoning_gym_reward
    from hf_softthink.trainer import SoftGRPOTrainer

    tokenizer = tiny_tokenizer()
    splits = build_splits(settings)
    sft_folder = run_sft(settings, splits, tokenizer)
    start_model = load_model(sft_folder)
    # the rows of the task's chats (prompt, trace, answer), as benchmarks/embedding_rms.py counts them
    task_ids = token_ids(tokenizer, [prompt_text(tokenizer, r["content"]) + completion_text(r)
                                     for r in splits["train"][:2000]])
    table = start_model.get_input_embeddings().weight
    rms_all, rms_used = table.square().mean().sqrt().item(), table[task_ids].square().mean().sqrt().item()
    log(f"embedding rms: all {table.shape[0]} rows {rms_all:.4f}, the {len(task_ids)} rows of the task {rms_used:.4f}")

    specs = estimators(settings, task_ids)
    names = args.estimators.split(",") if args.estimators else list(specs)
    unknown = sorted(set(names) - set(specs))
    if unknown:
        parser.error(f"unknown estimators {unknown}; choose from {', '.join(specs)}")
    generations = settings.rl_generations
    needed = n_batches * prompts
    train = splits["train"]
    batches = []
    for b in range(n_batches):
        chosen = [train[(b * prompts + j) % len(train)] for j in range(prompts)]
        rows = [
            {"prompt": [{"role": "user", "content": r["content"]}], "task": r["task"], "entry": r["entry"]}
            for r in chosen
            for _ in range(generations)
        ]
        batches.append(rows)
    log(f"{len(names)} estimators x {n_batches} batches of {prompts} prompts x {generations} rollouts "
        f"({needed} prompts), {args.threads} thread(s)")

    import datasets

    out = Path(args.out)
    results: dict[str, Any] = {}
    for name in names:
        started = time.perf_counter()
        config = make_args(name, specs[name], settings, prompts * generations, out)
        trainer = SoftGRPOTrainer(
            model=copy.deepcopy(start_model), reward_funcs=[reasoning_gym_reward], args=config,
            train_dataset=datasets.Dataset.from_list(batches[0][:: generations]), processing_class=tokenizer,
        )
        grads, infos = [], []
        for b, rows in enumerate(batches):
            grad, info = batch_gradient(trainer, rows, seed=1000 + b)
            grads.append(grad)
            infos.append(info)
        cosines = pair_cosines(grads)
        mean, se = pair_mean_jackknife(cosines)
        results[name] = {
            "cosines": cosines.tolist(),
            "mean_cosine": mean,
            "se": se,
            "grad_norm": sum(i["grad_norm"] for i in infos) / len(infos),
            "soft_steps_per_batch": sum(i["soft_steps"] for i in infos) / len(infos),
            "recipe": config.recipe,
            "seconds": time.perf_counter() - started,
        }
        if "hard" in results and name != "hard":
            diff, diff_se = pair_mean_jackknife(cosines - torch.tensor(results["hard"]["cosines"]))
            results[name].update(minus_hard=diff, minus_hard_se=diff_se)
        log(f"{name}: cosine {mean:+.3f} +- {se:.3f} (grad norm {results[name]['grad_norm']:.3g}, "
            f"{results[name]['seconds']:.0f} s)")
        del trainer, grads

    lines = [
        "| estimator | mean cosine | s.e. | minus hard's (paired) | s.e. | grad norm | soft steps per batch |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        diff = f"{r['minus_hard']:+.3f} | {r['minus_hard_se']:.3f}" if "minus_hard" in r else "- | -"
        lines.append(
            f"| {name} | {r['mean_cosine']:+.3f} | {r['se']:.3f} | {diff} | {r['grad_norm']:.3g} | "
            f"{r['soft_steps_per_batch']:.0f} |"
        )
    report = "\n".join(lines)
    meta = {
        "batches": n_batches, "prompts_per_batch": prompts, "generations": generations, "threads": args.threads,
        "sft_folder": str(sft_folder), "embedding_rms_all_rows": rms_all, "embedding_rms_task_rows": rms_used,
        "task_rows": len(task_ids), "command": "python benchmarks/estimator_signal.py " + " ".join(argv or sys.argv[1:]),
    }
    write_json(out / "signal.json", {"meta": meta, "results": results})
    print(report)
    print(json.dumps(meta))
    return {"meta": meta, "results": results, "report": report}


if __name__ == "__main__":
    main()
