"""Stage 2: one `SoftGRPOTrainer` run from the SFT start per grid row (training recipe, ``grid_stages/rows.py``)
and seed. Reward: 1 when reasoning-gym's verifier gives full marks, else 0."""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path

from .common import clock, load_model, log, mean_or_nan, since, write_json
from .fingerprint import stage_code_digest
from .settings import RL_KEYS, GridSettings, settings_hash
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


#: `SoftGRPOConfig.to_dict()` entries that say where, not what
PLACE_FIELDS = ("output_dir", "logging_dir", "run_name")


def config_digest(args) -> str:
    """A digest of everything a run's `SoftGRPOConfig` sets (``to_dict()`` less :data:`PLACE_FIELDS`): the part
    of an RL folder's key that names the row's recipe (whatever code built the config)."""
    values = {k: v for k, v in args.to_dict().items() if k not in PLACE_FIELDS}
    return hashlib.sha1(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:12]


def rl_run_folder(settings: GridSettings, row: str, seed: int, sft_folder: Path, args) -> Path:
    """One RL run's folder: ``rl/<row>-s<seed>-<hash of RL_KEYS, the SFT folder, the run's config, the code>``."""
    tag = settings_hash(settings, RL_KEYS, sft_folder.name, config_digest(args), stage_code_digest("rl"))
    return Path(settings.out) / "rl" / f"{row}-s{seed}-{tag}"


def correct_reward(prompts, completions, **columns) -> list[float]:
    """1.0 when reasoning-gym's verifier gives the completion its full score, else 0.0 (no partial credit:
    countdown's 0.05 for a wrong expression would otherwise rank wrong answers inside a group)."""
    from hf_softthink.rewards import reasoning_gym_reward

    scores = reasoning_gym_reward(prompts, completions, think_end=THINK_END, **columns)
    return [1.0 if score is not None and score >= 1.0 else 0.0 for score in scores]


def run_rl(settings: GridSettings, row: str, seed: int, sft_folder: Path, splits, tokenizer, args) -> Path:
    """One RL run of grid row ``row`` with its `SoftGRPOConfig` ``args`` (``grid_stages/rows.py``), or reuse;
    returns its folder (the trained model and ``run.json``). ``args.output_dir`` is set to the run's folder."""
    from hf_softthink.trainer import SoftGRPOTrainer

    folder = rl_run_folder(settings, row, seed, sft_folder, args)
    if (folder / "run.json").exists():
        log(f"RL {row} seed {seed}: reusing {folder}")
        return folder
    args.output_dir = str(folder / "trainer")
    model = load_model(sft_folder).train()
    trainer = SoftGRPOTrainer(
        model=model,
        reward_funcs=[correct_reward],
        args=args,
        train_dataset=rl_dataset(settings, splits, seed),
        processing_class=tokenizer,
    )
    rollout = args.rollout_config()
    log(f"RL {row} (soft_rollout={args.soft_rollout!r}) seed {seed}: {settings.rl_steps} steps")
    start = clock()
    trainer.train()
    seconds, cpu_seconds = since(start)
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
            "mode": row,
            "soft_rollout": args.soft_rollout,
            "soft_density": args.soft_density,
            "rollout_config": None if rollout is None else rollout.to_dict(),
            "config": {k: v for k, v in args.to_dict().items() if k not in PLACE_FIELDS},
            "seed": seed,
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "code": stage_code_digest("rl"),
            "steps": settings.rl_steps,
            "rewards": rewards,
            "history": history,
        },
    )
    tail = max(1, len(rewards) // 5)
    log(
        f"RL {row} seed {seed}: {seconds:.0f} s, train reward {mean_or_nan(rewards[:tail]):.2f} "
        f"(first {tail} steps) -> {mean_or_nan(rewards[-tail:]):.2f} (last {tail})"
    )
    del trainer, model
    return folder
