"""Checks of what `SoftGRPOTrainer` is given, made before the expensive work and named in every message.

* **Reward outputs** (`checked_reward_funcs`): TRL turns each reward function's output into a float tensor.
  `None` is TRL's "no verdict" for a completion (as is NaN), exactly as in `GRPOTrainer`, so a function may
  leave every completion unscored. An output that is not a list (a bare `None`, a number, a string, a dict),
  or an element that is not a real number or `None` (a string, a list, a dict), raises a `TypeError` naming the
  function, the completion and the fix. A list of the wrong length is TRL's own `ValueError`, which names the
  function too. An infinite reward, or one beyond float32 (|r| > 3.4e38, which TRL's float32 tensor turns into
  inf; `10**400` made TRL raise an `OverflowError` naming nothing), raises a `ValueError` naming the function
  and the completion: one infinite reward makes its group's standard deviation inf and every advantage 0 or
  NaN, so nothing would train, silently.
* **Combined rewards** (`check_combined_rewards`, after every reward function and reward model ran): an
  infinite reward of a reward model, or a weighted sum that overflows float32, names the function(s) and the
  row. Infinite or NaN `reward_weights` are refused by `SoftGRPOConfig`.
* **Prompts and the output folder** (`check_trainer_inputs`): the train and eval datasets need rows and a
  `prompt` column, and no row may have an empty prompt (a blank string, no messages, or only blank user
  messages) or a malformed one (a number, a single message dict, a message without a role or with `None`
  content); the row is named. An `IterableDataset` is checked row by row as training reads it. `output_dir`
  must be a folder that can be created and written (not a file, not under a file).
* **Rollout settings** (`warn_on_rollout_settings`): a `UserWarning` when `max_completion_length` does not
  exceed the thinking budget (every rollout that does not end its thinking by itself is cut mid-thought and
  earns no answer reward), and when the think-end marker is an end-of-sequence token (no answer phase).
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from trl.trainer.utils import get_callable_name, is_async_callable

from ..checks import prepare_output_dir, warn_if_budget_fills_length, warn_if_think_end_is_eos
from ..config import SoftThinkingConfig

if TYPE_CHECKING:
    from ..generation import ThinkEnd

__all__ = [
    "check_combined_rewards",
    "check_prompt_datasets",
    "check_reward_output",
    "check_reward_weights",
    "check_trainer_inputs",
    "checked_reward_funcs",
    "warn_on_rollout_settings",
]


# ------------------------------------------------------------------------------------------------ rewards
def _is_reward(value: Any) -> bool:
    """A real number (NaN included: TRL's unscored), a 0-d tensor, or None."""
    if value is None or isinstance(value, (numbers.Real, np.bool_)):  # bool, int, float, numpy scalars
        return True
    return isinstance(value, torch.Tensor) and value.ndim == 0 and not value.is_complex()


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


#: the largest reward TRL's float32 reward tensor holds
FLOAT32_MAX = float(np.finfo(np.float32).max)
_NOT_TRAINING = (
    "one infinite reward makes its group's reward standard deviation inf and every advantage 0 or NaN, so "
    "nothing trains"
)


def _out_of_float32(value: Any) -> str | None:
    """``"infinite"`` or ``"beyond float32 ..."`` for a real number TRL's float32 rewards cannot hold, else None
    (NaN is TRL's "no verdict": not out of range)."""
    if value is None:
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float, e.g. 10**400
        return "beyond float32 (|r| > 3.4e38)"
    if math.isinf(number):
        return "infinite"
    return "beyond float32 (|r| > 3.4e38)" if abs(number) > FLOAT32_MAX else None


def check_reward_output(output: Any, name: str) -> list[Any]:
    """The rewards `output` of the reward function `name` as a list; a `TypeError` naming what is wrong, a
    `ValueError` for an infinite reward or one beyond float32.

    `None` and NaN elements are kept: TRL treats them as "no verdict" for that completion.
    """
    if (
        output is None
        or isinstance(output, (str, bytes, Mapping, numbers.Number))
        or not isinstance(output, Iterable)
    ):
        raise TypeError(
            f"The reward function {name!r} returned {_describe(output)} instead of a list with one reward per "
            "completion. Return a list of numbers; to leave completions unscored, return None for each of them "
            "(e.g. [None] * len(completions))."
        )
    values = list(output)
    for index, value in enumerate(values):
        if not _is_reward(value):
            raise TypeError(
                f"The reward function {name!r} returned {_describe(value)} for completion {index} of "
                f"{len(values)}. A reward must be a real number, or None for a completion the function does "
                "not score (TRL then leaves it out, as GRPOTrainer does): convert it, e.g. float(...)."
            )
        kind = _out_of_float32(value)
        if kind is not None:
            raise ValueError(
                f"The reward function {name!r} returned {_describe(value)} for completion {index} of "
                f"{len(values)}: a reward {kind}. TRL holds rewards in float32, where {_NOT_TRAINING}. Return a "
                "finite number (clip it), or None (or NaN) to leave the completion unscored."
            )
    return values


def check_reward_weights(weights: Any) -> None:
    """Raise a `ValueError` for a reward weight that is NaN, infinite or beyond float32 (`reward_weights`)."""
    for index, weight in enumerate(weights or []):
        if isinstance(weight, numbers.Real) and not isinstance(weight, bool) and (
            _out_of_float32(weight) is not None or math.isnan(float(weight))
        ):
            raise ValueError(
                f"SoftGRPOConfig.reward_weights[{index}]={weight!r} is not a finite float32 number: every reward "
                f"of that function would be NaN or inf after weighting, and {_NOT_TRAINING}. Give finite weights."
            )


def check_combined_rewards(
    rewards_per_func: torch.Tensor, weights: torch.Tensor, names: Sequence[str], num_generations: int
) -> None:
    """Raise a `ValueError` when the `(N, F)` rewards of the batch (every function and reward model, gathered)
    hold an infinite value, or their weighted sum per row overflows float32: names the function and the row."""
    infinite = torch.isinf(rewards_per_func)
    weighted = rewards_per_func * weights.to(rewards_per_func.device)[None, :]
    total = weighted.nansum(dim=1)
    if not infinite.any() and torch.isfinite(total).all():
        return

    def where(row: int) -> str:
        return f"row {row} of the batch (prompt {row // num_generations}, completion {row % num_generations})"

    if infinite.any():
        row, column = (int(i) for i in infinite.nonzero()[0])
        raise ValueError(
            f"The reward function {names[column]!r} gave {float(rewards_per_func[row, column])} for {where(row)}: "
            f"{_NOT_TRAINING}. Make it return finite rewards (a reward model: check its outputs), or None to leave "
            "a completion unscored."
        )
    row = int((~torch.isfinite(total)).nonzero()[0])
    parts = ", ".join(f"{names[j]!r}: {float(rewards_per_func[row, j]):.3g} x {float(weights[j]):.3g}"
                      for j in range(len(names)))
    raise ValueError(
        f"The weighted sum of the rewards for {where(row)} overflows float32 ({parts}): {_NOT_TRAINING}. Scale the "
        "rewards or reward_weights down."
    )


def _checked(func: Callable, name: str) -> Callable:
    if is_async_callable(func):

        async def checked_async(*args, **kwargs):
            return check_reward_output(await func(*args, **kwargs), name)

        wrapper = checked_async
    else:

        def checked(*args, **kwargs):
            return check_reward_output(func(*args, **kwargs), name)

        wrapper = checked
    functools.update_wrapper(wrapper, func, assigned=("__module__", "__doc__"), updated=())
    wrapper.__name__ = name  # what TRL logs the function as (`get_callable_name`)
    wrapper.__wrapped__ = func
    return wrapper


def checked_reward_funcs(reward_funcs: Any) -> Any:
    """`reward_funcs` (as `GRPOTrainer` takes them) with every Python function's output checked.

    Reward models (an `nn.Module` or a model id string) are left as they are.
    """
    if reward_funcs is None:
        return None
    funcs = reward_funcs if isinstance(reward_funcs, list) else [reward_funcs]
    checked = [
        f if isinstance(f, (str, nn.Module)) or not callable(f) else _checked(f, get_callable_name(f))
        for f in funcs
    ]
    return checked if isinstance(reward_funcs, list) else checked[0]


# ------------------------------------------------------------------------------------------------ prompts
def _is_empty_prompt(prompt: Any) -> bool:
    """A blank string, no messages, or messages whose user turns (all turns, without one) are all blank."""
    if prompt is None:
        return True
    if isinstance(prompt, str):
        return not prompt.strip()
    if isinstance(prompt, Sequence):
        messages = [m for m in prompt if isinstance(m, Mapping)]
        if not messages:
            return len(prompt) == 0
        user = [m for m in messages if m.get("role") == "user"] or messages
        # non-text content (e.g. a list of multimodal parts) counts as given
        return all(isinstance(m.get("content"), str) and not m["content"].strip() for m in user)
    return False


_MESSAGE = "{'role': 'user', 'content': '...'}"


def _malformed_prompt(prompt: Any) -> str | None:
    """What is wrong with the form of a prompt (None: a string, or a list of chat messages each with a role and
    text or multimodal content)."""
    if isinstance(prompt, str):
        return None
    if isinstance(prompt, Mapping):
        return f"a single message {_short(prompt)}, not a list of messages: wrap it in a list, [{_MESSAGE}]"
    if isinstance(prompt, bytes) or not isinstance(prompt, Sequence):
        return (
            f"{_describe(prompt)}: a prompt is a string or a list of chat messages such as [{_MESSAGE}]"
        )
    for index, message in enumerate(prompt):
        if not isinstance(message, Mapping):
            return f"message {index} is {_describe(message)}, not a chat message such as {_MESSAGE}"
        role = message.get("role")
        if not isinstance(role, str) or not role.strip():
            return f"message {index} has no 'role' (got {_short(message)}); give each message a role such as 'user'"
        content = message.get("content")
        if content is None and not message.get("tool_calls"):
            return f"message {index} ({role}) has no content (None): an empty {role} turn"
        if content is not None and not isinstance(content, (str, Sequence)) or isinstance(content, bytes):
            return f"message {index} ({role}) has {_describe(content)} as content, not text"
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _prompt_error(name: str, index: int, prompt: Any) -> ValueError | None:
    """The error for row `index` of dataset `name`, or None when its prompt is usable."""
    wrong = _malformed_prompt(prompt) if prompt is not None else None
    if wrong is not None:
        return ValueError(
            f"SoftGRPOTrainer: {name} row {index} has a malformed prompt: {wrong}. Fix that row or drop it, e.g. "
            "dataset.filter(...)."
        )
    if _is_empty_prompt(prompt):
        return ValueError(
            f"SoftGRPOTrainer: {name} row {index} has an empty prompt ({_short(prompt)}): there is nothing to "
            "answer. Fill it in or drop the row, e.g. dataset.filter(lambda row: bool(row['prompt']))."
        )
    return None


def _checked_rows(dataset: Any, name: str) -> Any:
    """An `IterableDataset` whose rows are checked as they are read: an error names the row when training
    reaches it (its rows cannot be read before training without consuming it)."""

    def check(row: dict[str, Any], index: int) -> dict[str, Any]:
        if "prompt" not in row:
            raise ValueError(
                f"SoftGRPOTrainer: {name} row {index} has no 'prompt' (columns: {sorted(row)}); GRPO samples "
                "completions for the 'prompt' of each row."
            )
        error = _prompt_error(name, index, row["prompt"])
        if error is not None:
            raise error
        return row

    return dataset.map(check, with_indices=True)


def _check_prompts(dataset: Any, name: str) -> Any:
    """Check `dataset` (see `check_prompt_datasets`); returns it, or an `IterableDataset` checked row by row."""
    import datasets

    if isinstance(dataset, Mapping) and not isinstance(dataset, datasets.Dataset):  # named eval datasets
        return {key: _check_prompts(value, f"{name}[{key!r}]") for key, value in dataset.items()}
    if isinstance(dataset, datasets.IterableDataset):
        return _checked_rows(dataset, name)
    if isinstance(dataset, datasets.Dataset):
        columns = list(dataset.column_names)
        prompts = dataset["prompt"] if "prompt" in columns else None
    elif isinstance(dataset, Sequence) and all(isinstance(row, Mapping) for row in dataset):
        columns = sorted({key for row in dataset for key in row})
        prompts = [row.get("prompt") for row in dataset] if "prompt" in columns else None
    else:  # a custom dataset: its rows cannot be read here without consuming them
        return dataset
    if len(dataset) == 0:
        raise ValueError(
            f"SoftGRPOTrainer: {name} has 0 rows, so there is nothing to "
            f"{'train on' if name == 'train_dataset' else 'evaluate'}: give it prompts (check a filter or a split "
            "that left none)."
        )
    if prompts is None:
        raise ValueError(
            f"SoftGRPOTrainer: {name} has no 'prompt' column (columns: {columns}); GRPO samples completions "
            "for the 'prompt' of each row. Build it with hf_softthink.data.load_prompts(...) or "
            "reasoning_gym_dataset(...), or rename your column: dataset.rename_column(<name>, 'prompt')."
        )
    for index, prompt in enumerate(prompts):
        error = _prompt_error(name, index, prompt)
        if error is not None:
            raise error
    return dataset


def check_prompt_datasets(train_dataset: Any = None, eval_dataset: Any = None) -> tuple[Any, Any]:
    """Raise a `ValueError` for a dataset of 0 rows, without a `prompt` column, or with a row whose prompt is
    empty or malformed (not a string or a list of messages with a role and content), naming the row.

    Returns the datasets: an `IterableDataset` comes back wrapped so that each row is checked as training reads
    it (the error then names the row; before, an empty prompt was an `IndexError`).
    """
    if train_dataset is not None:
        train_dataset = _check_prompts(train_dataset, "train_dataset")
    if eval_dataset is not None:
        eval_dataset = _check_prompts(eval_dataset, "eval_dataset")
    return train_dataset, eval_dataset


def check_trainer_inputs(args: Any, train_dataset: Any = None, eval_dataset: Any = None) -> tuple[Any, Any]:
    """Check the output folder (on the process that saves) and the prompts, before the model loads; returns the
    datasets (`check_prompt_datasets`)."""
    if args.should_save:
        prepare_output_dir(args.output_dir, "SoftGRPOConfig.output_dir")
    return check_prompt_datasets(train_dataset, eval_dataset)


# ------------------------------------------------------------------------------------------------ settings
def warn_on_rollout_settings(
    config: SoftThinkingConfig,
    max_completion_length: int,
    think_end: ThinkEnd | None,
    eos_ids: Iterable[int],
) -> None:
    """Warn when the rollouts cannot do what the settings say (module docstring); `think_end` is the config's
    marker as the trainer resolved it (`hf_softthink.generation.resolve_think_end`)."""
    warn_if_budget_fills_length(
        config.max_thinking_tokens,
        max_completion_length,
        budget_name="soft_thinking.max_thinking_tokens",
        length_name="max_completion_length",
        stacklevel=4,
    )
    if think_end is not None:
        warn_if_think_end_is_eos(config.think_end, think_end.token_ids, eos_ids, stacklevel=4)
