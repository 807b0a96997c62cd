"""The grid's rows: row name -> how its `SoftGRPOConfig` is built (:data:`ROWS`).

Each row is one training recipe. Its builder gets two dicts and returns the row's `SoftGRPOConfig`:

* ``run``: how every run is sized, the same for every row (steps, prompts x generations, seed, completion
  length, CPU, logging); pass it whole (the RL stage sets ``output_dir``: the run's own folder);
* ``recipe``: the grid's shared recipe (``--rl-*`` flags: learning rate, beta 0, sampling temperature, reward
  scaling, and ``soft_thinking``: the soft rollouts' support and noise scales). Today's rows take it whole; a
  preset row keeps the preset's own values and takes from ``recipe`` only what it chooses to.

After the build the grid sets the task's limits in ``soft_thinking`` (its think-end marker and the thinking
budget: facts of the task, not of a recipe; :func:`training_config`). Adding a row is one entry, e.g. the
presets of issue 16 once ``SoftGRPOConfig.softgrpo`` / ``.stht`` exist, or another estimator of a family
(``soft_density`` names an option of `SoftGRPOConfig`)::

    "softgrpo": Row("SofT-GRPO preset", lambda run, recipe: SoftGRPOConfig.softgrpo(**run)),
    "stht": Row("STHT preset", lambda run, recipe: SoftGRPOConfig.stht(**run)),
    "gumbel-<estimator>": Row("soft (gumbel, <estimator>)", lambda run, recipe: SoftGRPOConfig(
        soft_rollout="gumbel", soft_density="<estimator>", **run, **recipe)),

then ``--train-modes hard,softgrpo,stht,...`` (or add the name to :data:`DEFAULT_ROWS`). Nothing else
changes: the RL folder of a run is keyed by the config its row builds (``rl.config_digest``, not by this
file's source, so adding or editing one row reruns only that row), and the evaluation decodes each soft-trained
model with its own rollout noise read from the built config (``SoftGRPOConfig.rollout_config()``).

Only the driver (``benchmarks/grid.py``) and the report import this module: no stage module does, so its source
is in no stage's code digest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hf_softthink.trainer import SoftGRPOConfig

from .settings import START, GridSettings
from .task import THINK_END


@dataclass(frozen=True)
class Row:
    """One row of the grid: its label in tables and plots, and the builder of its config."""

    label: str
    build: Callable[[dict[str, Any], dict[str, Any]], SoftGRPOConfig]  # (run, recipe) -> the run's config


#: the rows run when ``--train-modes`` is not given
DEFAULT_ROWS = ("hard", "gumbel", "dirichlet", "gaussian", "fuzzy")
#: row name -> Row. The order is the order of the tables.
ROWS: dict[str, Row] = {
    "hard": Row("hard", lambda run, recipe: SoftGRPOConfig(soft_rollout="hard", **run, **recipe)),
    "gumbel": Row("soft (gumbel)", lambda run, recipe: SoftGRPOConfig(soft_rollout="gumbel", **run, **recipe)),
    "dirichlet": Row(
        "soft (dirichlet)", lambda run, recipe: SoftGRPOConfig(soft_rollout="dirichlet", **run, **recipe)
    ),
    "gaussian": Row(
        "soft (gaussian)", lambda run, recipe: SoftGRPOConfig(soft_rollout="gaussian", **run, **recipe)
    ),
    "fuzzy": Row("fuzzy", lambda run, recipe: SoftGRPOConfig(soft_rollout="fuzzy", **run, **recipe)),
}


def run_kwargs(settings: GridSettings, seed: int) -> dict[str, Any]:
    """The ``run`` dict: what every row's run shares (sizes, seed, device, logging)."""
    return {
        "num_generations": settings.rl_generations,
        "per_device_train_batch_size": settings.rl_prompts * settings.rl_generations,
        "gradient_accumulation_steps": 1,
        "max_completion_length": settings.max_new_tokens,
        "max_steps": settings.rl_steps,
        "seed": seed,
        "use_cpu": True,
        "bf16": False,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "activation_checkpointing": False,
        "optim": "adamw_torch",
    }


def recipe_kwargs(settings: GridSettings) -> dict[str, Any]:
    """The ``recipe`` dict: the grid's shared training recipe (the ``--rl-*`` flags)."""
    return {
        "learning_rate": settings.rl_lr,
        "lr_scheduler_type": "constant",
        "beta": 0.0,
        "temperature": settings.rl_temperature,
        "scale_rewards": settings.rl_scale_rewards,
        "soft_thinking": {
            "max_topk": settings.rl_max_topk,
            "temperature": settings.rl_temperature,
            "top_k": None,
            "top_p": 1.0,
            "gaussian_sigma": settings.rl_sigma,
            "gumbel_tau": settings.rl_gumbel_tau,
            "dirichlet_alpha": settings.rl_dirichlet_alpha,
        },
    }


def training_config(settings: GridSettings, row: str, seed: int) -> SoftGRPOConfig:
    """The `SoftGRPOConfig` of one run: the row's builder, then the task's limits in ``soft_thinking``
    (think-end marker, thinking budget), validated (``rollout_config()``)."""
    if row not in ROWS:
        raise KeyError(f"unknown grid row {row!r}; the rows are {', '.join(ROWS)} (grid_stages/rows.py)")
    args = ROWS[row].build(run_kwargs(settings, seed), recipe_kwargs(settings))
    args.soft_thinking = {
        **(args.soft_thinking or {}),
        "think_end": THINK_END,
        "max_thinking_tokens": settings.max_thinking_tokens,
    }
    args.rollout_config()  # the soft settings with the limits still make a valid rollout
    return args


def row_label(row: str) -> str:
    """The table label of a row (the SFT start: ``"SFT start (no RL)"``; an unknown name as itself)."""
    if row == START:
        return "SFT start (no RL)"
    return ROWS[row].label if row in ROWS else row
