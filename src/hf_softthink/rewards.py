r"""Verifiable rewards for soft-thinking RL, with TRL's reward-function signature.

Every reward here is a plain function ``f(prompts, completions, **kwargs) -> list[float | None]``
that ``trl.GRPOTrainer`` (and :class:`hf_softthink.SoftGRPOTrainer`) accept in ``reward_funcs``.
TRL passes every dataset column (except ``prompt``/``completion``) as a keyword argument holding
one value per completion, plus ``completion_ids``, ``trainer_state``, ``log_extra``,
``log_metric``; unknown keywords are ignored. Completions may be plain strings or chat message
lists (``[{"role": "assistant", "content": "..."}]``); both are handled. A ``None`` reward
means "no verdict" (TRL turns it into NaN and ignores it).

* :func:`math_answer_reward` -- ``math_verify`` equivalence with the ``answer`` column.
* :func:`reasoning_gym_reward` -- the task's own ``score_answer`` from reasoning-gym, rebuilt
  from the ``entry`` column (or ``metadata`` + ``answer``).
* :func:`format_reward` -- 1.0 when the completion thinks, closes with ``think_end`` and answers.
* :func:`extract_answer`, :func:`completion_text` -- the final answer / text of a completion
  (re-exported from :mod:`hf_softthink.evaluation_metrics`, which holds the one implementation
  that rewards, data scoring and evaluation share).
* :func:`configure_reward` -- fix options (e.g. ``think_end``) while keeping a loggable name.

Example:
    >>> math_answer_reward(["Q"], ["<think>7+8</think> \\boxed{15}"], answer=["15"])
    [1.0]
    >>> format_reward(["Q"], ["I add.</think>15"])
    [1.0]
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .data import decode_entry, grade_sample, reasoning_gym_scorer
from .evaluation_metrics import completion_text, extract_answer, grade_completion

__all__ = [
    "completion_text",
    "configure_reward",
    "extract_answer",
    "format_reward",
    "math_answer_reward",
    "reasoning_gym_reward",
]

# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _check_batch(func: str, prompts: Any, completions: Any) -> list:
    if isinstance(completions, (str, bytes)) or not isinstance(completions, Sequence):
        raise TypeError(
            f"{func}: `completions` must be a list (one entry per completion), "
            f"got {type(completions).__name__}."
        )
    completions = list(completions)
    if prompts is not None:
        if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence):
            raise TypeError(f"{func}: `prompts` must be a list, got {type(prompts).__name__}.")
        if len(prompts) != len(completions):
            raise ValueError(
                f"{func}: got {len(prompts)} prompts but {len(completions)} completions; "
                "they must have the same length (one prompt per completion)."
            )
    return completions


def _column(func: str, name: str, values: Any, n: int, how_to_add: str) -> list:
    if values is None:
        raise ValueError(f"{func} needs the dataset column `{name}`, which is missing. {how_to_add}")
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(
            f"{func}: column `{name}` must be a list with one value per completion, "
            f"got {type(values).__name__}."
        )
    if len(values) != n:
        raise ValueError(
            f"{func}: column `{name}` has {len(values)} values but there are {n} completions; "
            "pass one value per completion (TRL repeats dataset columns for each generation)."
        )
    return list(values)


# --------------------------------------------------------------------------------------------
# math-verify
# --------------------------------------------------------------------------------------------


def math_answer_reward(
    prompts: Sequence | None,
    completions: Sequence,
    answer: Sequence | None = None,
    *,
    think_end: str | None = "</think>",
    **kwargs,
) -> list[float | None]:
    r"""1.0 if the completion's final answer is mathematically equal to the gold ``answer``, else 0.0.

    This is :func:`hf_softthink.evaluation_metrics.grade_completion`, the comparison that
    evaluation and :func:`hf_softthink.data.score_sample` use too. The answer region is the text
    after the last ``think_end`` (the whole completion if it does not occur); its answer is the
    last ``\boxed{}``, else the last ``<answer>`` tag, else the last number (numeric golds) or the
    whole region (other golds). It is compared with the gold as normalised strings, then with
    ``math_verify``, so ``"1,000"`` == ``1000``, ``\frac{1}{2}`` == ``0.5``, ``"15.0"`` == ``15``;
    plain-word answers (``"yes"``) are compared as strings only. A GSM8K-style gold
    ``"... #### 72"`` is reduced to ``72``. A gold of ``None`` gives a ``None`` reward (no verdict).

    Dataset column: ``answer`` (str or number, one per row). TRL passes it automatically.

    Args:
        prompts: the prompts (only their count is checked).
        completions: strings or chat message lists.
        answer: the gold answers, one per completion.
        think_end: end-of-thinking marker (``None``: the whole completion is the answer).

    Example:
        >>> math_answer_reward(None, ["The answer is 1,000.", "\\boxed{999}"], answer=["1000", "1000"])
        [1.0, 0.0]
        >>> math_answer_reward(None, [[{"role": "assistant", "content": "</think>\\boxed{0.5}"}]],
        ...                    answer=["\\frac{1}{2}"])
        [1.0]
    """
    name = "math_answer_reward"
    completions = _check_batch(name, prompts, completions)
    golds = _column(
        name,
        "answer",
        answer,
        len(completions),
        "Add a column with the gold answer to the training dataset, e.g. "
        "`ds = ds.map(lambda ex: {'answer': str(ex['solution'])})`.",
    )
    rewards: list[float | None] = []
    for completion, gold in zip(completions, golds, strict=True):
        if gold is None:
            rewards.append(None)
            continue
        _, correct = grade_completion(completion, gold, think_end=think_end)
        rewards.append(1.0 if correct else 0.0)
    return rewards


# --------------------------------------------------------------------------------------------
# reasoning-gym
# --------------------------------------------------------------------------------------------


def _check_rg_task(task: str, task_config: Mapping[str, Any] | None) -> None:
    # hf_softthink.data owns the entry format and the scorer (rebuilt with the config the data was
    # generated with, cached): building it here first turns an unknown task into a hint about columns.
    try:
        reasoning_gym_scorer(task, task_config)
    except ValueError as e:
        raise ValueError(
            f"reasoning_gym_reward: {e} Check the `task` column or entry['metadata']['source_dataset']."
        ) from None


def _as_dict(func: str, column: str, value: Any) -> dict:
    if isinstance(value, str):
        try:  # JSON with tagged tuples / sets (hf_softthink.data.encode_entry) or plain JSON
            value = decode_entry(value)
        except json.JSONDecodeError as e:
            raise ValueError(
                f"{func}: column `{column}` holds a string that is not valid JSON ({e})."
            ) from None
    if not isinstance(value, Mapping):
        raise TypeError(
            f"{func}: column `{column}` must hold dicts or JSON strings, got {type(value).__name__}."
        )
    return dict(value)


_RG_HOW_TO = (
    "Build the dataset with `hf_softthink.data.reasoning_gym_dataset(task, size=...)` (it has the "
    "`task` and `entry` columns), or give it an `entry` column holding each reasoning-gym entry "
    "(the dict `{'question', 'answer', 'metadata'}` from `reasoning_gym.create_dataset(...)[i]`, "
    "or `hf_softthink.data.encode_entry(entry)`), or `answer` + `metadata` columns (metadata must "
    "include `source_dataset`, else add a `task` column)."
)


def reasoning_gym_reward(
    prompts: Sequence | None,
    completions: Sequence,
    entry: Sequence | None = None,
    metadata: Sequence | None = None,
    answer: Sequence | None = None,
    task: Sequence | None = None,
    question: Sequence | None = None,
    *,
    think_end: str | None = "</think>",
    **kwargs,
) -> list[float | None]:
    r"""Score completions with the reasoning-gym task's own ``score_answer(answer, entry)``.

    Dataset columns (one of two layouts; TRL passes them automatically):

    * ``entry`` -- what :func:`hf_softthink.data.reasoning_gym_dataset` produces: the
      reasoning-gym entry ``{"question", "answer", "metadata"[, "task_config"]}`` as a JSON
      string from :func:`hf_softthink.data.encode_entry` (lossless: tuples survive) or as a
      plain JSON string or dict. Rows whose ``entry`` is ``None`` (user data mixed in) get a
      ``None`` reward (no verdict), so combine this reward with :func:`math_answer_reward`.
    * or ``metadata`` (dict or JSON string) plus ``answer`` (the gold), optionally
      ``question``.

    The task is the ``task`` column when present and not ``None``, else
    ``entry["metadata"]["source_dataset"]``. The scorer is
    :func:`hf_softthink.data.reasoning_gym_scorer` (``score_answer`` of the task built with
    ``entry["task_config"]`` when present; cached), so mixed-task datasets work.

    The grading is :func:`hf_softthink.data.grade_sample` (the same as evaluation's): the answer
    is taken from the text after the last ``think_end``: the ``\boxed{}`` / ``<answer>`` content if
    there is one, else the last number when the oracle answer is a number, else the whole stripped
    text (tasks with non-numeric answers, e.g. countdown expressions). A numeric answer is also
    tried in plain form (``"1,000"`` -> ``"1000"``, ``"12.0"`` -> ``"12"``), since several scorers
    compare strings. The reward is the best of these scores: the task's own score in ``[0, 1]``,
    partial credit included (e.g. countdown gives 0.01 for a well-formed wrong expression).

    Example:
        >>> import reasoning_gym
        >>> e = reasoning_gym.create_dataset("chain_sum", seed=1, size=1)[0]  # 4 - 1 - 7 = -4
        >>> reasoning_gym_reward(None, ["</think><answer>-4</answer>", "</think>3"], entry=[e, e])
        [1.0, 0.0]
    """
    name = "reasoning_gym_reward"
    completions = _check_batch(name, prompts, completions)
    n = len(completions)
    entries: list[dict | None]
    if entry is not None:
        entries = [
            None if e is None else _as_dict(name, "entry", e)
            for e in _column(name, "entry", entry, n, _RG_HOW_TO)
        ]
    elif metadata is not None:
        metas = _column(name, "metadata", metadata, n, _RG_HOW_TO)
        golds = _column(name, "answer", answer, n, _RG_HOW_TO)
        questions = _column(name, "question", question, n, _RG_HOW_TO) if question is not None else [""] * n
        entries = [
            None
            if m is None
            else {
                "question": q,
                "answer": None if a is None else str(a),
                "metadata": _as_dict(name, "metadata", m),
            }
            for q, a, m in zip(questions, golds, metas, strict=True)
        ]
    else:
        raise ValueError(f"{name} needs the dataset column `entry` (or `metadata` + `answer`). {_RG_HOW_TO}")
    tasks = _column(name, "task", task, n, _RG_HOW_TO) if task is not None else [None] * n

    rewards: list[float | None] = []
    for completion, e, t in zip(completions, entries, tasks, strict=True):
        if e is None:
            rewards.append(None)
            continue
        meta = e.get("metadata")
        if not t:
            t = meta.get("source_dataset") if isinstance(meta, Mapping) else None
        if not t:
            raise ValueError(
                f"{name}: cannot tell the reasoning-gym task of an entry: its metadata has no "
                f"`source_dataset`. Add a `task` column. {_RG_HOW_TO}"
            )
        if "answer" not in e:
            raise ValueError(f"{name}: the entry has no `answer` key. {_RG_HOW_TO}")
        _check_rg_task(str(t), e.get("task_config"))
        rewards.append(grade_sample({"task": str(t), "entry": e}, completion, think_end=think_end).score)
    return rewards


# --------------------------------------------------------------------------------------------
# format
# --------------------------------------------------------------------------------------------


def format_reward(
    prompts: Sequence | None,
    completions: Sequence,
    think_end: str = "</think>",
    *,
    think_start: str | None = "<think>",
    **kwargs,
) -> list[float | None]:
    """1.0 if the completion is ``[think_start] thinking think_end answer``, else 0.0.

    Required: ``think_end`` occurs exactly once; the text before it (minus a leading
    ``think_start``, which is optional because chat templates often put it in the prompt)
    is not blank; the text after it is not blank. Chat completions whose reasoning sits in a
    separate ``reasoning_content`` field are put back together first.

    Example:
        >>> format_reward(None, ["<think>8+7=15</think>15", "15", "</think>15", "a</think>  "])
        [1.0, 0.0, 0.0, 0.0]
    """
    name = "format_reward"
    if not isinstance(think_end, str) or not think_end:
        raise ValueError(f"{name}: `think_end` must be a non-empty string, got {think_end!r}.")
    completions = _check_batch(name, prompts, completions)
    rewards: list[float | None] = []
    for completion in completions:
        text = completion_text(completion, think_end)
        if text.count(think_end) != 1:
            rewards.append(0.0)
            continue
        thinking, answer_part = text.split(think_end)
        thinking = thinking.strip()
        if think_start and thinking.startswith(think_start):
            thinking = thinking[len(think_start) :].strip()
        rewards.append(1.0 if thinking and answer_part.strip() else 0.0)
    return rewards


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------


def configure_reward(func: Callable[..., list], *, name: str | None = None, **options) -> Callable[..., list]:
    """A copy of a reward function with some keyword options fixed and a loggable ``__name__``.

    TRL logs each reward under ``func.__name__`` (``functools.partial`` has none). Options
    given here override same-named keywords at call time.

    Example:
        >>> r = configure_reward(format_reward, think_end="<|end_think|>")
        >>> r.__name__, r(None, ["hm<|end_think|>4"])
        ('format_reward', [1.0])
    """
    if not callable(func):
        raise TypeError("configure_reward: `func` must be callable.")

    @functools.wraps(func)
    def wrapper(prompts=None, completions=None, **kwargs):
        return func(prompts, completions, **{**kwargs, **options})

    wrapper.__name__ = name or getattr(func, "__name__", "reward")
    wrapper.__qualname__ = wrapper.__name__
    return wrapper
