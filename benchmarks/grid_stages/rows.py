"""The grid's rows: row name -> how its `SoftGRPOConfig` is built (:data:`ROWS`).

Each row is one training recipe. Its builder gets two dicts and returns the row's `SoftGRPOConfig`:

* ``run``: how every run is sized, the same for every row (steps, prompts x generations, seed, completion
  length, CPU, logging); pass it whole (the RL stage sets ``output_dir``: the run's own folder);
* ``recipe``: the grid's shared recipe (``--rl-*`` flags: learning rate, beta 0, sampling temperature, reward
  scaling, and ``soft_thinking``: the soft rollouts' support and noise scales), with the row's own learning rate
  (:attr:`Row.learning_rate`, chosen on the dev split) unless ``--rl-lr`` sets every row's. The rows of the
  grid's recipe take it whole; a preset row keeps the preset's own values and takes only the learning rate.

After the build the grid sets the task's limits in ``soft_thinking`` (its think-end marker and the thinking
budget: facts of the task, not of a recipe; :func:`training_config`). Adding a row is one entry, e.g. another
estimator of a family (``soft_density`` names an option of `SoftGRPOConfig`)::

    "gumbel-<estimator>": Row("soft (gumbel, <estimator>)", _grid_recipe("gumbel", soft_density="<estimator>")),

then ``--train-modes hard,gumbel-<estimator>,...`` (or add the name to :data:`DEFAULT_ROWS`). Nothing else
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
    """One row of the grid: its label in tables and plots, the builder of its config, and its learning rate
    (chosen on the dev split; ``--rl-lr`` replaces it in every row, e.g. for a sweep on dev)."""

    label: str
    build: Callable[[dict[str, Any], dict[str, Any]], SoftGRPOConfig]  # (run, recipe) -> the run's config
    learning_rate: float = 1e-4


def _grid_recipe(soft_rollout: str, **fields: Any) -> Callable[[dict[str, Any], dict[str, Any]], SoftGRPOConfig]:
    """A row with the grid's shared recipe whole (``--rl-*``), ``soft_rollout`` and the other ``fields`` set."""
    return lambda run, recipe: SoftGRPOConfig(soft_rollout=soft_rollout, **fields, **run, **recipe)


def _preset(preset: Callable[..., SoftGRPOConfig], **fields: Any) -> Callable[..., SoftGRPOConfig]:
    """A preset row: the preset's own settings, the run's size, and of the recipe only the learning rate (the
    presets' own, e.g. ``softgrpo()``'s 1e-6 for a 1.5B model, does not move the grid's 0.7M-parameter model in
    120 steps: each preset row's is chosen on dev like every row's)."""
    return lambda run, recipe: preset(**fields, **run, learning_rate=recipe["learning_rate"])


#: the rows run when ``--train-modes`` is not given: issue 16's grid (hard, the two papers' presets, the
#: paper's fuzzy tokens, and the lower-variance estimator of each noise family that had a signal on the
#: grid's SFT start, ``docs/soft_rl.md`` §10)
DEFAULT_ROWS = ("hard", "softgrpo", "stht", "stht-fuzzy", "gumbel-max", "logistic-normal")
#: row name -> Row. The order is the order of the tables. The learning rates of the default rows are those chosen
#: on the dev split (``benchmarks/RESULTS_grid.md``, "Issue 16: learning rates chosen on the dev split");
#: ``gumbel-max-r0.1`` (the exact density's residual added to ``gumbel_max``) is an option not run in that grid;
#: the last four are the rows of the grid before issue 16 (chain_sum, the recipe at 1e-4, ``grid.py --help``).
ROWS: dict[str, Row] = {
    "hard": Row("hard", _grid_recipe("hard")),
    "softgrpo": Row("SofT-GRPO preset", _preset(SoftGRPOConfig.softgrpo), learning_rate=3e-5),
    "stht": Row("STHT preset", _preset(SoftGRPOConfig.stht), learning_rate=3e-5),
    "stht-fuzzy": Row("STHT fuzzy preset", _preset(SoftGRPOConfig.stht, fuzzy=True), learning_rate=3e-5),
    "gumbel-max": Row("soft (gumbel, gumbel_max)", _grid_recipe("gumbel", soft_density="gumbel_max")),
    "logistic-normal": Row(
        "soft (logistic-normal s 3)",
        lambda run, recipe: _grid_recipe("logistic_normal")(
            run, {**recipe, "soft_thinking": {**recipe["soft_thinking"], "logistic_normal_sigma": 3.0}}
        ),
    ),
    "gumbel-max-r0.1": Row(
        "soft (gumbel, gumbel_max + 0.1 residual)",
        _grid_recipe("gumbel", soft_density="gumbel_max", soft_density_residual=0.1),
    ),
    "gumbel": Row("soft (gumbel)", _grid_recipe("gumbel")),
    "dirichlet": Row("soft (dirichlet)", _grid_recipe("dirichlet")),
    "gaussian": Row("soft (gaussian)", _grid_recipe("gaussian")),
    "fuzzy": Row("fuzzy", _grid_recipe("fuzzy")),
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


def recipe_kwargs(settings: GridSettings, row: str) -> dict[str, Any]:
    """The ``recipe`` dict of ``row``: the grid's shared training recipe (the ``--rl-*`` flags), with the row's
    own learning rate unless ``--rl-lr`` sets every row's."""
    return {
        "learning_rate": ROWS[row].learning_rate if settings.rl_lr is None else settings.rl_lr,
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
    args = ROWS[row].build(run_kwargs(settings, seed), recipe_kwargs(settings, row))
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
