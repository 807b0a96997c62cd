"""Stage 2: one `SoftGRPOTrainer` run from the SFT start per training mode and seed."""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path

from .common import load_model, log, mean_or_nan, write_json
from .fingerprint import stage_code_digest
from .settings import RL_KEYS, TRAIN_MODES, GridSettings, settings_hash
from .task import THINK_END


def rl_dataset(settings: GridSettings, splits, seed: int):
    """``rl_steps * rl_prompts`` training prompts (each used once), shuffled by the seed."""
    import datasets

    rows = list(splits["train"])
    random.Random(1000 + seed).shuffle(rows)
    needed = settings.rl_steps * settings.rl_prompts
    rows = (rows * (needed // max(len(rows), 1) + 1))[:needed]
    return datasets.Dataset.from_list(
        [
            {"prompt": [{"role": "user", "content": r["content"]}], "task": r["task"], "entry": r["entry"]}
            for r in rows
        ]
    )


def rl_run_folder(settings: GridSettings, mode: str, seed: int, sft_folder: Path) -> Path:
    """One RL run's folder: ``rl/<mode>-s<seed>-<hash of RL_KEYS, the SFT folder, the rollout, the code>``."""
    tag = settings_hash(settings, RL_KEYS, sft_folder.name, TRAIN_MODES[mode], stage_code_digest("rl"))
    return Path(settings.out) / "rl" / f"{mode}-s{seed}-{tag}"


def run_rl(settings: GridSettings, mode: str, seed: int, sft_folder: Path, splits, tokenizer) -> Path:
    """One RL run (or reuse); returns its folder (the trained model and ``run.json``)."""
    from hf_softthink import SoftThinkingConfig
    from hf_softthink.rewards import reasoning_gym_reward
    from hf_softthink.trainer import SoftGRPOConfig, SoftGRPOTrainer

    folder = rl_run_folder(settings, mode, seed, sft_folder)
    if (folder / "run.json").exists():
        log(f"RL {mode} seed {seed}: reusing {folder}")
        return folder
    model = load_model(sft_folder).train()
    soft = SoftThinkingConfig(
        max_topk=settings.rl_max_topk,
        temperature=settings.rl_temperature,
        top_k=None,
        top_p=1.0,
        gaussian_sigma=settings.rl_sigma,
        gumbel_tau=settings.rl_gumbel_tau,
        dirichlet_alpha=settings.rl_dirichlet_alpha,
        think_end=THINK_END,
        max_thinking_tokens=settings.max_thinking_tokens,
    )
    args = SoftGRPOConfig(
        output_dir=str(folder / "trainer"),
        soft_rollout=TRAIN_MODES[mode],
        soft_thinking=soft,
        num_generations=settings.rl_generations,
        per_device_train_batch_size=settings.rl_prompts * settings.rl_generations,
        gradient_accumulation_steps=1,
        max_completion_length=settings.max_new_tokens,
        temperature=settings.rl_temperature,
        learning_rate=settings.rl_lr,
        lr_scheduler_type="constant",
        max_steps=settings.rl_steps,
        beta=0.0,
        scale_rewards=settings.rl_scale_rewards,
        seed=seed,
        use_cpu=True,
        bf16=False,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        gradient_checkpointing=False,
        optim="adamw_torch",
    )
    trainer = SoftGRPOTrainer(
        model=model,
        reward_funcs=[reasoning_gym_reward],
        args=args,
        train_dataset=rl_dataset(settings, splits, seed),
        processing_class=tokenizer,
    )
    log(f"RL {mode} (soft_rollout={TRAIN_MODES[mode]!r}) seed {seed}: {settings.rl_steps} steps")
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    tmp = folder / "model.partial"
    trainer.save_model(str(tmp))
    shutil.rmtree(folder / "model", ignore_errors=True)
    tmp.replace(folder / "model")
    rewards = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    keep = (
        "step",
        "reward",
        "reward_std",
        "loss",
        "grad_norm",
        "entropy",
        "completions/mean_length",
        "soft/frac_soft_steps",
        "soft/mixture_entropy",
        "soft/think_end_rate",
        "soft/thinking_length",
        "soft/eos_in_thinking_rate",
    )
    history = [{k: h[k] for k in keep if k in h} for h in trainer.state.log_history if "reward" in h]
    write_json(
        folder / "run.json",
        {
            "mode": mode,
            "soft_rollout": TRAIN_MODES[mode],
            "seed": seed,
            "seconds": seconds,
            "code": stage_code_digest("rl"),
            "steps": settings.rl_steps,
            "rewards": rewards,
            "history": history,
        },
    )
    tail = max(1, len(rewards) // 5)
    log(
        f"RL {mode} seed {seed}: {seconds:.0f} s, train reward {mean_or_nan(rewards[:tail]):.2f} "
        f"(first {tail} steps) -> {mean_or_nan(rewards[-tail:]):.2f} (last {tail})"
    )
    del trainer, model
    return folder
