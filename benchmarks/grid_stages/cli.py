"""The grid's command line: flags -> `GridSettings` (:func:`parse_args`), the ``--smoke`` sizes, the help texts.

No stage imports this module (the stages read `GridSettings`), so editing it recomputes nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path

from .settings import EVAL_SPLITS, INFERENCE_MODES, OWN, REPO, SCALE_REWARDS, TASKS, GridSettings

#: the first line of ``--help``
DESCRIPTION = 'Train x inference grid of "Soft Tokens, Hard Truths" (arXiv:2509.19170) at the scale of a CPU.'

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
    "train_modes": "the rows (training recipes) to run, comma-separated",
    "inference_modes": "comma-separated",
    "task": "the reasoning-gym task: countdown (thinking with real alternatives) or chain_sum (the grid "
    "before issue 16)",
    "terms": "countdown: how many numbers; chain_sum: how many terms",
    "max_value": "countdown: the largest source number (1..max-value)",
    "max_target": "countdown: the largest target (1..max-target)",
    "pool_size": "draws of the generator whose distinct problems are split into test, dev and train",
    "sft_target": "stop SFT at the first dev greedy accuracy at or above this",
    "samples": "completions per problem of a sampled mode (pass@1 is their mean: mean@samples)",
    "eval_split": "the problems the models are evaluated on: test (the grid) or dev (to choose settings on)",
    "rl_lr": "the learning rate of every row (e.g. a sweep on dev); default: each row's own, chosen on dev "
    "(grid_stages/rows.py)",
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
    argv: Sequence[str] | None = None,
    *,
    row_names: Iterable[str] | None = None,
    default_rows: Sequence[str] | None = None,
    epilog: str | None = None,
) -> GridSettings:
    """CLI flags -> `GridSettings` (``--smoke`` first applies the small settings, explicit flags win).

    ``row_names``: the rows ``--train-modes`` may name, ``default_rows`` those it runs when not given (default:
    ``rows.ROWS`` and ``rows.DEFAULT_ROWS``); ``epilog``: the end of ``--help``.
    """
    from .rows import DEFAULT_ROWS, ROWS

    row_names = tuple(ROWS if row_names is None else row_names)
    default_rows = tuple(DEFAULT_ROWS if default_rows is None else default_rows)
    defaults = dataclasses.replace(GridSettings(), train_modes=default_rows)
    parser = argparse.ArgumentParser(
        description=DESCRIPTION, epilog=epilog, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny end-to-end run (~1 min); outputs under --out"
    )
    kinds = {int: int, float: float, str: str}
    names = {"train_modes": row_names, "inference_modes": INFERENCE_MODES}  # flags that take names from a list

    def text(name: str, default: str) -> str:
        return "; ".join(part for part in (HELP.get(name), f"default {default}") if part)

    for f in dataclasses.fields(GridSettings):
        if f.name == "smoke":
            continue
        flag = "--" + f.name.replace("_", "-")
        default = getattr(defaults, f.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        elif f.name in names:
            allowed = ", ".join(names[f.name])
            parser.add_argument(
                flag, type=_name_list(names[f.name]), default=None, help=text(f.name, ",".join(default)) + f"; from {allowed}"
            )
        elif f.name in CHOICES:
            parser.add_argument(flag, choices=CHOICES[f.name], default=None, help=text(f.name, default))
        elif f.name == "rl_lr":
            parser.add_argument(flag, type=float, default=None, help=HELP[f.name])
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
            parser.add_argument(flag, type=kinds[type(default)], default=None, help=text(f.name, default))
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


