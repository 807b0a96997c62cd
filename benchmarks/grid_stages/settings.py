"""Every knob of the grid (:class:`GridSettings`), the command line, the ``--smoke`` sizes, and the
settings each stage's cache key covers (the rule is in ``benchmarks/grid.py``'s docstring)."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

#: the first line of ``--help``
DESCRIPTION = 'Train x inference grid of "Soft Tokens, Hard Truths" (arXiv:2509.19170) at the scale of a CPU.'
REPO = Path(__file__).resolve().parents[2]
#: the rows (training recipes) run by default; the table of every row and how its SoftGRPOConfig is built is
#: ``grid_stages/rows.py`` (kept out of this module so that editing a row never touches the SFT stage's key)
DEFAULT_ROWS = ("hard", "gumbel", "dirichlet", "gaussian", "fuzzy")
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
    train_modes: tuple[str, ...] = DEFAULT_ROWS
    seeds: tuple[int, ...] = (0, 1, 2)
    rl_steps: int = 120
    rl_prompts: int = 8
    rl_generations: int = 8
    rl_lr: float = 1e-4
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


SMOKE = {
    "terms": 2,
    "pool_size": 400,
    "test_problems": 4,
    "dev_problems": 8,
    "hidden": 32,
    "layers": 1,
    "sft_batch": 16,
    "sft_max_steps": 20,
    "sft_min_steps": 20,
    "sft_eval_every": 10,
    "sft_target": 1.1,
    "seeds": (0,),
    "rl_steps": 2,
    "rl_prompts": 2,
    "rl_generations": 4,
    "samples": 4,
    "ks": (1, 4),
    "eval_batch": 16,
    "max_new_tokens": 24,
    "max_thinking_tokens": 16,
    "ood_size": 8,
}


#: what a flag means, where its name does not say it (``--help``)
HELP = {
    "task": "the reasoning-gym task: countdown (thinking with real alternatives) or chain_sum (the grid "
    "before issue 16)",
    "terms": "countdown: how many numbers; chain_sum: how many terms",
    "max_value": "countdown: the largest source number (1..max-value)",
    "max_target": "countdown: the largest target (1..max-target)",
    "pool_size": "draws of the generator whose distinct problems are split into test, dev and train",
    "sft_target": "stop SFT at the first dev greedy accuracy at or above this",
    "samples": "completions per problem of a sampled mode (pass@1 is their mean: mean@samples)",
    "eval_split": "the problems the models are evaluated on: test (the grid) or dev (to choose settings on)",
}
#: flags with a fixed set of values
CHOICES = {"eval_split": EVAL_SPLITS, "rl_scale_rewards": SCALE_REWARDS, "task": TASKS}


def _int_list(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(",") if part.strip())


def _name_list(allowed: Iterable[str]):
    allowed = tuple(allowed)

    def parse(text: str) -> tuple[str, ...]:
        names = tuple(part.strip() for part in text.split(",") if part.strip())
        bad = [name for name in names if name not in allowed]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)} (got {text!r})")
        return names

    return parse


def parse_args(
    argv: Sequence[str] | None = None, *, row_names: Iterable[str] = DEFAULT_ROWS, epilog: str | None = None
) -> GridSettings:
    """CLI flags -> `GridSettings` (``--smoke`` first applies the small settings, explicit flags win).

    ``row_names``: the rows ``--train-modes`` may name (``benchmarks/grid.py`` passes every row of
    ``grid_stages/rows.py``); ``epilog``: the text at the end of ``--help``.
    """
    defaults = GridSettings()
    row_names = tuple(row_names)
    parser = argparse.ArgumentParser(
        description=DESCRIPTION, epilog=epilog, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny end-to-end run (~1 min); outputs under --out"
    )
    kinds = {int: int, float: float, str: str}
    for f in dataclasses.fields(GridSettings):
        if f.name == "smoke":
            continue
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        elif f.name == "train_modes":
            parser.add_argument(
                flag,
                type=_name_list(row_names),
                default=None,
                help=f"the rows (training recipes) to run, from {','.join(row_names)}; default {','.join(default)}",
            )
        elif f.name == "inference_modes":
            parser.add_argument(
                flag,
                type=_name_list(INFERENCE_MODES),
                default=None,
                help=f"from {','.join(INFERENCE_MODES)}; default {','.join(default)}",
            )
        elif f.name in CHOICES:
            parser.add_argument(
                flag, choices=CHOICES[f.name], default=None, help=f"{HELP.get(f.name, '')}; default {default}".lstrip("; ")
            )
        elif f.name == "section":
            parser.add_argument(
                flag,
                default=None,
                help="name of the generated block of --results to write (default: the grid's main block);\n"
                "e.g. a tuned run next to the main grid: --section tuned",
            )
        elif isinstance(default, tuple):
            parser.add_argument(
                flag, type=_int_list, default=None, help=f"default {','.join(map(str, default))}"
            )
        else:
            parser.add_argument(
                flag, type=kinds[type(default)], default=None, help=f"{HELP.get(f.name, '')}; default {default}".lstrip("; ")
            )
    namespace = vars(parser.parse_args(argv))
    values = dataclasses.asdict(defaults)
    if namespace.pop("smoke"):
        values.update(SMOKE, smoke=True, out=str(REPO / "runs" / "grid-smoke"))
        values["results"] = str(Path(namespace["out"] or values["out"]) / "RESULTS_grid.md")
        values["plot"] = str(Path(namespace["out"] or values["out"]) / "grid_results.png")
    values.update({key: value for key, value in namespace.items() if value is not None})
    settings = GridSettings(**values)
    if max(settings.ks) > settings.samples:
        parser.error(f"--ks {settings.ks} has a k larger than --samples {settings.samples}")
    if OWN in settings.inference_modes and len(settings.inference_modes) == 1:
        parser.error(
            f"--inference-modes {OWN}: add a preset (e.g. hard-sample), the SFT start and the hard row have no "
            "own noise to decode with"
        )
    return settings


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
    "rl_lr",
    "rl_temperature",
    "rl_sigma",
    "rl_max_topk",
    "rl_gumbel_tau",
    "rl_dirichlet_alpha",
    "rl_scale_rewards",
    "max_new_tokens",
    "max_thinking_tokens",
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
