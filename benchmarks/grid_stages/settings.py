"""Every knob of the grid (:class:`GridSettings`) and the settings each stage's cache key covers (the rule is
in ``benchmarks/grid.py``'s docstring).

Every stage imports this module, so its source is in every stage's code digest: it holds only what the stages
read. The command line (``grid_stages/cli.py``) and the rows (``grid_stages/rows.py``, with the default rows)
live elsewhere, so that editing them recomputes nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
#: the tasks of ``--task`` (``grid_stages/task.py``)
TASKS = ("countdown", "chain_sum")
#: the problems an evaluation decodes: the grid's held-out test problems, or the dev split (to choose settings
#: on, so that the test problems choose nothing)
EVAL_SPLITS = ("test", "dev")
#: TRL's GRPOConfig.scale_rewards values ("none": advantages centred by the group mean, not scaled, as RLOO
#: and Dr. GRPO do)
SCALE_REWARDS = ("group", "batch", "none")
#: the evaluation presets of `hf_softthink.evaluation`, plus ``own``: each soft-trained model decoded with its own
#: training noise (the rollout config of its row, `grid_stages/evaluate.py:own_noise_mode`); rows without soft
#: rollouts (hard, the SFT start) have no ``own`` column
PRESET_MODES = ("hard-greedy", "hard-sample", "soft-greedy", "soft-sample", "fuzzy-greedy", "fuzzy-sample")
OWN = "own"
INFERENCE_MODES = (*PRESET_MODES, OWN)
#: the inference columns the comparison needs: greedy, the papers' sampled protocol, each model's own noise
DEFAULT_INFERENCE_MODES = ("hard-greedy", "hard-sample", OWN)
START = "sft"  # the row of the SFT start


@dataclasses.dataclass
class GridSettings:
    """Every knob of the grid (the CLI flags)."""

    out: str = str(REPO / "runs" / "grid")
    results: str = str(REPO / "benchmarks" / "RESULTS_grid.md")
    plot: str = str(REPO / "benchmarks" / "grid_results.png")
    threads: int = 1
    # task
    task: str = "countdown"
    terms: int = 3
    max_value: int = 12
    max_target: int = 99
    full_question: bool = False
    pool_size: int = 8000
    test_problems: int = 500
    dev_problems: int = 300
    # model
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    model_seed: int = 0
    # SFT
    sft_batch: int = 32
    sft_lr: float = 2e-3
    sft_max_steps: int = 4000
    sft_min_steps: int = 200
    sft_eval_every: int = 50
    sft_target: float = 0.4
    # RL
    train_modes: tuple[str, ...] = ()  # the rows to run; the command line's default: rows.DEFAULT_ROWS
    seeds: tuple[int, ...] = (0, 1, 2)
    rl_steps: int = 120
    rl_prompts: int = 8
    rl_generations: int = 8
    rl_lr: float | None = None  # None: each row's own learning rate, chosen on dev (rows.py); a number: every row's
    rl_temperature: float = 1.0
    rl_sigma: float = 0.33
    rl_max_topk: int = 10
    rl_gumbel_tau: float = 0.5
    rl_dirichlet_alpha: float = 1.0
    rl_scale_rewards: str = "group"
    # inference / evaluation
    inference_modes: tuple[str, ...] = DEFAULT_INFERENCE_MODES
    samples: int = 32
    ks: tuple[int, ...] = (1, 32)
    eval_batch: int = 128
    max_new_tokens: int = 48
    max_thinking_tokens: int = 40
    eval_seed: int = 0
    eval_split: str = "test"
    # out-of-domain drift
    ood_size: int = 200
    # report
    section: str = ""
    smoke: bool = False


def settings_hash(settings: GridSettings, keys: Iterable[str], *extra: Any) -> str:
    """Short hash of the named settings (and extra values): the name suffix of a stage folder."""
    payload = {key: getattr(settings, key) for key in keys}
    text = json.dumps([payload, *extra], sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:10]


# The settings each stage reads (tests/test_grid.py checks that a stage module reads no other). The splits
# (task settings) are made once and shared: they are in SFT_KEYS, and the RL and evaluation keys hold the SFT
# folder's name. `threads` and the output paths are in no key: they change how fast and where, not what.
SFT_KEYS = (
    "task",
    "terms",
    "max_value",
    "max_target",
    "full_question",
    "pool_size",
    "test_problems",
    "dev_problems",
    "hidden",
    "layers",
    "heads",
    "model_seed",
    "sft_batch",
    "sft_lr",
    "sft_max_steps",
    "sft_min_steps",
    "sft_eval_every",
    "sft_target",
    "max_new_tokens",
    "eval_batch",
)
RL_KEYS = (
    "rl_steps",
    "rl_prompts",
    "rl_generations",
    "max_new_tokens",
    "max_thinking_tokens",
)
#: the grid's shared recipe (the ``--rl-*`` flags a row may take: ``rows.recipe_kwargs``). No stage reads them:
#: they reach a run only through the config its row builds, which is in the RL key (``rl.config_digest``), so
#: a flag that a row ignores (a preset's own temperature, another row's noise scale) does not rerun that row,
#: and a learning rate given with ``--rl-lr`` keys the same folder as the row's own equal learning rate
RECIPE_KEYS = (
    "rl_lr",
    "rl_temperature",
    "rl_sigma",
    "rl_max_topk",
    "rl_gumbel_tau",
    "rl_dirichlet_alpha",
    "rl_scale_rewards",
)
EVAL_KEYS = (
    "inference_modes",
    "samples",
    "ks",
    "eval_batch",
    "max_new_tokens",
    "max_thinking_tokens",
    "eval_seed",
    "eval_split",
    "ood_size",
)
