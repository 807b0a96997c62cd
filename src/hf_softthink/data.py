"""Prompt datasets: reasoning-gym tasks and user datasets -> ``datasets.Dataset``.

Every dataset built here has the standard columns

* ``question`` (str): the problem text;
* ``answer`` (str | None): the gold answer (reasoning-gym's oracle answer; ``None`` for the
  few reasoning-gym tasks that have no single oracle answer and are scored by a verifier);
* ``task`` (str | None): the reasoning-gym task name, ``None`` for user data;
* ``entry`` (str | None): the reasoning-gym entry as a JSON string (see :func:`encode_entry`),
  so a scorer can call the task's ``score_answer(answer, entry)``; ``None`` for user data;
* ``prompt`` (list of ``{"role", "content"}``): TRL's conversational format, an optional
  system message with the thinking instruction followed by the user question.

:func:`grade_sample` / :func:`score_sample` score a completion against a row (reasoning-gym's
verifier, or math-verify against the ``answer`` column); the answer extraction itself is
:func:`hf_softthink.evaluation_metrics.extract_answer`.
"""

from __future__ import annotations

import difflib
import functools
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple

import datasets

from .evaluation_metrics import (
    DEFAULT_THINK_END,
    answer_fallback,
    completion_text,
    extract_answer,
    grade_completion,
    is_number,
    normalize_answer,
)

__all__ = [
    "DEFAULT_THINKING_INSTRUCTION",
    "STANDARD_COLUMNS",
    "list_reasoning_gym_tasks",
    "reasoning_gym_dataset",
    "load_prompts",
    "build_prompt",
    "apply_chat_template",
    "encode_entry",
    "decode_entry",
    "reasoning_gym_scorer",
    "SampleGrade",
    "grade_sample",
    "score_sample",
]

DEFAULT_THINKING_INSTRUCTION = (
    "You are a careful problem solver. First think through the problem step by step. "
    "When you are done thinking, write </think> and then give only the final answer, "
    "in the form \\boxed{answer}."
)

STANDARD_COLUMNS = ("question", "answer", "task", "entry", "prompt")

_MESSAGE = {"role": datasets.Value("string"), "content": datasets.Value("string")}
STANDARD_FEATURES = datasets.Features(
    {
        "question": datasets.Value("string"),
        "answer": datasets.Value("string"),
        "task": datasets.Value("string"),
        "entry": datasets.Value("string"),
        "prompt": datasets.List(_MESSAGE),
    }
)

InstructionRole = Literal["system", "user"]

# Score at or above which a reasoning-gym answer counts as correct. reasoning-gym scores are
# floats in [0, 1]; 1.0 is an exact answer, anything lower is partial credit (e.g. the default
# scorer gives len(oracle)/len(answer) when the oracle is a substring of the answer, countdown
# gives 0.01 for a well-formed wrong expression).
_RG_CORRECT_THRESHOLD = 1.0 - 1e-9


# --------------------------------------------------------------------------------------------
# prompts
# --------------------------------------------------------------------------------------------


def build_prompt(
    question: str,
    thinking_instruction: str | None = DEFAULT_THINKING_INSTRUCTION,
    instruction_role: InstructionRole = "system",
) -> list[dict[str, str]]:
    """Chat messages for one question (TRL's conversational prompt format).

    ``instruction_role="system"`` puts the instruction in a system message; ``"user"`` prepends
    it to the user message (for chat templates without a system role).
    ``thinking_instruction=None`` gives just the user message.
    """
    if instruction_role not in ("system", "user"):
        raise ValueError(f"instruction_role must be 'system' or 'user', got {instruction_role!r}")
    if not thinking_instruction:
        return [{"role": "user", "content": question}]
    if instruction_role == "system":
        return [{"role": "system", "content": thinking_instruction}, {"role": "user", "content": question}]
    return [{"role": "user", "content": f"{thinking_instruction}\n\n{question}"}]


def apply_chat_template(
    tokenizer: Any,
    messages: Sequence[Mapping[str, str]] | Sequence[Sequence[Mapping[str, str]]],
    *,
    add_generation_prompt: bool = True,
    **kwargs: Any,
) -> str | list[str]:
    """Render prompt messages (one conversation, or a list of them) to text with ``tokenizer``.

    Uses ``tokenizer.apply_chat_template(..., tokenize=False, add_generation_prompt=True)``.
    Raises ``ValueError`` if the tokenizer has no chat template (base models): set
    ``tokenizer.chat_template`` or build plain-text prompts yourself.
    """
    if not getattr(tokenizer, "chat_template", None):
        name = getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
        raise ValueError(
            f"Tokenizer {name!r} has no chat template, so chat prompts cannot be rendered. "
            "Use an instruct/chat model's tokenizer, set `tokenizer.chat_template` to a Jinja "
            "template, or pass plain-text prompts instead."
        )
    batched = len(messages) > 0 and not isinstance(messages[0], Mapping)
    convs = list(messages) if batched else [messages]
    texts = [
        tokenizer.apply_chat_template(
            [dict(m) for m in conv], tokenize=False, add_generation_prompt=add_generation_prompt, **kwargs
        )
        for conv in convs
    ]
    return texts if batched else texts[0]


# --------------------------------------------------------------------------------------------
# reasoning-gym entries: lossless JSON
# --------------------------------------------------------------------------------------------

_TUPLE_TAG = "__tuple__"
_SET_TAG = "__set__"
_ITEMS_TAG = "__dict_items__"


def _to_jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) for k in obj):
            return {k: _to_jsonable(v) for k, v in obj.items()}
        return {_ITEMS_TAG: [[_to_jsonable(k), _to_jsonable(v)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {_TUPLE_TAG: [_to_jsonable(v) for v in obj]}
    if isinstance(obj, (set, frozenset)):
        try:
            items = sorted(obj)
        except TypeError:
            items = list(obj)
        return {_SET_TAG: [_to_jsonable(v) for v in items]}
    if isinstance(obj, list):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, str):
        return str(obj)  # numpy.str_ -> str
    if isinstance(obj, bool) or obj is None:
        return obj
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy arrays
        return obj.tolist()
    if isinstance(obj, (int, float)):
        return obj
    return repr(obj)


def _from_jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        if len(obj) == 1:
            ((key, value),) = obj.items()
            if key == _TUPLE_TAG:
                return tuple(_from_jsonable(v) for v in value)
            if key == _SET_TAG:
                return {_from_jsonable(v) for v in value}
            if key == _ITEMS_TAG:
                return {_from_jsonable(k): _from_jsonable(v) for k, v in value}
        return {k: _from_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_from_jsonable(v) for v in obj]
    return obj


def encode_entry(entry: Mapping[str, Any]) -> str:
    """JSON string for a reasoning-gym entry that :func:`decode_entry` restores exactly.

    Plain ``json.dumps`` is lossy for reasoning-gym metadata: tuples become lists (ARC scorers
    compare the parsed board with a tuple of tuples and fail) and int dict keys become strings
    (graph_color). Tuples, sets and non-string-keyed dicts are tagged here.
    """
    return json.dumps(_to_jsonable(entry), ensure_ascii=False)


def decode_entry(text: str | Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`encode_entry` (a mapping is returned as a dict unchanged)."""
    if isinstance(text, Mapping):
        return dict(text)
    return _from_jsonable(json.loads(text))


# --------------------------------------------------------------------------------------------
# reasoning-gym datasets
# --------------------------------------------------------------------------------------------


def _registry() -> dict[str, Any]:
    import reasoning_gym  # noqa: F401  (importing registers every task)
    from reasoning_gym.factory import DATASETS

    return DATASETS


def list_reasoning_gym_tasks() -> list[str]:
    """Sorted names of every registered reasoning-gym task (``reasoning_gym.factory.DATASETS``)."""
    return sorted(_registry())


def _check_task(task: str) -> None:
    names = list_reasoning_gym_tasks()
    if task in names:
        return
    close = difflib.get_close_matches(str(task), names, n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    examples = [
        n
        for n in ("chain_sum", "basic_arithmetic", "gsm_symbolic", "countdown", "leg_counting")
        if n in names
    ]
    raise ValueError(
        f"Unknown reasoning-gym task {task!r}.{hint} Valid names include {', '.join(examples)} "
        f"({len(names)} in all); list them with hf_softthink.data.list_reasoning_gym_tasks() "
        "(reasoning_gym.factory.DATASETS)."
    )


def _config_key(config: Mapping[str, Any] | None) -> str:
    return json.dumps(_to_jsonable(dict(config or {})), sort_keys=True)


@functools.lru_cache(maxsize=64)
def _scorer_cached(task: str, config_key: str):
    from reasoning_gym.factory import DATASETS

    _check_task(task)
    dataset_cls, config_cls = DATASETS[task]
    config = _from_jsonable(json.loads(config_key))
    return dataset_cls(config=config_cls(**config)).score_answer


def reasoning_gym_scorer(task: str, config: Mapping[str, Any] | None = None):
    """The task's ``score_answer(answer: str | None, entry: dict) -> float`` (cached per config).

    A few reasoning-gym scorers read the dataset config (decimal_arithmetic, time_intervals,
    polynomial_equations, puzzle24): pass the config the data was generated with.
    """
    return _scorer_cached(task, _config_key(config))


def reasoning_gym_dataset(
    task: str,
    *,
    size: int,
    seed: int = 0,
    thinking_instruction: str | None = DEFAULT_THINKING_INSTRUCTION,
    instruction_role: InstructionRole = "system",
    tokenizer: Any = None,
    config: Mapping[str, Any] | None = None,
) -> datasets.Dataset:
    """Generate ``size`` problems of a reasoning-gym ``task`` as a prompt dataset.

    Args:
        task: any registered reasoning-gym task (``chain_sum``, ``basic_arithmetic``,
            ``gsm_symbolic``, ``countdown``, ...; see :func:`list_reasoning_gym_tasks`).
        size: number of problems.
        seed: reasoning-gym seed. Problem ``i`` is generated from ``seed + i`` for most tasks,
            so ``(seed=0, size=100)`` and ``(seed=1, size=100)`` share 99 problems: for a
            held-out split use a seed at least ``size`` away (e.g. train seed 0, eval seed 10**6).
        thinking_instruction: the instruction (system message by default); ``None`` for none.
        instruction_role: ``"system"`` or ``"user"`` (prepended to the question).
        tokenizer: if given, a ``prompt_text`` column holds the chat-templated prompt.
        config: task configuration (difficulty) passed to the task's config dataclass, e.g.
            ``{"min_terms": 2, "max_terms": 2, "max_digits": 1}`` for chain_sum. It is stored
            in each ``entry`` under ``"task_config"`` so :func:`score_sample` rebuilds the same scorer.

    Returns:
        A ``datasets.Dataset`` with the standard columns (module docstring).
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    _check_task(task)
    import reasoning_gym

    cfg = dict(config or {})
    clash = {"size", "seed"} & set(cfg)
    if clash:
        raise ValueError(f"config must not contain {sorted(clash)}: pass size= and seed= as arguments")
    try:
        rg_data = reasoning_gym.create_dataset(task, size=size, seed=seed, **cfg)
    except (TypeError, AssertionError, ValueError) as err:
        raise ValueError(f"Could not create reasoning-gym task {task!r} with config {cfg}: {err}") from err

    rows = []
    for entry in rg_data:
        stored = dict(entry)
        if cfg:
            stored["task_config"] = cfg
        answer = entry.get("answer")
        rows.append(
            {
                "question": entry["question"],
                "answer": None if answer is None else str(answer),
                "task": task,
                "entry": encode_entry(stored),
                "prompt": build_prompt(entry["question"], thinking_instruction, instruction_role),
            }
        )
    ds = datasets.Dataset.from_list(rows, features=STANDARD_FEATURES)
    if tokenizer is not None:
        ds = _add_prompt_text(ds, tokenizer)
    return ds


def _add_prompt_text(ds: datasets.Dataset, tokenizer: Any) -> datasets.Dataset:
    texts = apply_chat_template(tokenizer, ds["prompt"])
    return ds.add_column("prompt_text", texts)


# --------------------------------------------------------------------------------------------
# user datasets
# --------------------------------------------------------------------------------------------


def _read_json_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_prompts: no such file {path!r}")
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    stripped = text.lstrip()
    if path.endswith(".json") and stripped.startswith("["):
        rows = json.loads(text)
    else:
        rows = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"load_prompts: {path}:{lineno} is not valid JSON ({err})") from err
            if not isinstance(row, dict):
                raise ValueError(
                    f"load_prompts: {path}:{lineno} is not a JSON object (got {type(row).__name__})"
                )
            rows.append(row)
    return rows


def _to_dataset(source: Any) -> datasets.Dataset:
    if isinstance(source, datasets.DatasetDict):
        raise ValueError(
            f"load_prompts got a DatasetDict with splits {list(source)}; pass one split, e.g. source['train']"
        )
    if isinstance(source, datasets.Dataset):
        return source
    if isinstance(source, (str, os.PathLike)):
        rows = _read_json_rows(source)
        if not rows:
            raise ValueError(f"load_prompts: {os.fspath(source)!r} contains no rows")
        return _rows_to_dataset(rows)
    if isinstance(source, Sequence) and not isinstance(source, (str, bytes)):
        rows = list(source)
        if not rows:
            raise ValueError("load_prompts: the list of rows is empty")
        bad = [i for i, r in enumerate(rows) if not isinstance(r, Mapping)]
        if bad:
            raise ValueError(
                f"load_prompts: rows must be dicts; row {bad[0]} is {type(rows[bad[0]]).__name__}"
            )
        return _rows_to_dataset([dict(r) for r in rows])
    raise TypeError(
        "load_prompts: source must be a datasets.Dataset, a path to a JSONL/JSON file or a list of dicts, "
        f"got {type(source).__name__}"
    )


def _rows_to_dataset(rows: list[dict[str, Any]]) -> datasets.Dataset:
    keys: dict[str, None] = {}
    for r in rows:
        keys.update(dict.fromkeys(r))
    columns = {k: [r.get(k) for r in rows] for k in keys}
    # Answers may be numbers in one row and strings in another: make them strings so Arrow accepts them.
    for k, values in columns.items():
        kinds = {type(v) for v in values if v is not None}
        if len(kinds) > 1 and kinds <= {int, float, str, bool}:
            columns[k] = [None if v is None else str(v) for v in values]
    return datasets.Dataset.from_dict(columns)


def load_prompts(
    source: datasets.Dataset | str | os.PathLike | Sequence[Mapping[str, Any]],
    *,
    question_column: str = "question",
    answer_column: str | None = "answer",
    thinking_instruction: str | None = DEFAULT_THINKING_INSTRUCTION,
    instruction_role: InstructionRole = "system",
    tokenizer: Any = None,
) -> datasets.Dataset:
    """User data -> prompt dataset with the standard columns (module docstring).

    Args:
        source: a ``datasets.Dataset``, a path to a JSONL file (or a ``.json`` list of
            objects), or a list of dicts.
        question_column / answer_column: the source columns holding the problem and the gold
            answer (renamed to ``question`` / ``answer``). ``answer_column=None`` loads prompts
            without gold answers (they cannot be scored).
        thinking_instruction / instruction_role / tokenizer: as in :func:`reasoning_gym_dataset`.

    Other source columns are kept (TRL passes them to reward functions). A source that already
    has ``task`` and ``entry`` columns (e.g. a saved :func:`reasoning_gym_dataset`) keeps them,
    so its rows are still scored by reasoning-gym.
    """
    ds = _to_dataset(source)
    if len(ds) == 0:
        raise ValueError("load_prompts: the dataset is empty (0 rows)")
    present = list(ds.column_names)
    if question_column not in present:
        raise ValueError(
            f"load_prompts: question column {question_column!r} not found; columns present: {present}. "
            "Set question_column=<name> to the column that holds the problem text."
        )
    if answer_column is not None and answer_column not in present:
        raise ValueError(
            f"load_prompts: answer column {answer_column!r} not found; columns present: {present}. "
            "Set answer_column=<name> to the column that holds the gold answer "
            "(or answer_column=None to load prompts without answers, which cannot be scored)."
        )
    has_rg = "task" in present and "entry" in present

    def convert(row: dict[str, Any]) -> dict[str, Any]:
        question = row[question_column]
        if question is None:
            raise ValueError(f"load_prompts: a row has no {question_column!r} (None)")
        question = str(question)
        answer = row[answer_column] if answer_column is not None else None
        return {
            "question": question,
            "answer": None if answer is None else str(answer),
            "task": row["task"] if has_rg else None,
            "entry": row["entry"] if has_rg else None,
            "prompt": build_prompt(question, thinking_instruction, instruction_role),
        }

    drop = [c for c in (question_column, answer_column) if c is not None and c not in STANDARD_COLUMNS]
    drop += [c for c in STANDARD_COLUMNS if c in present and c not in drop]
    extra = [c for c in present if c not in drop]
    features = datasets.Features({**{c: ds.features[c] for c in extra}, **STANDARD_FEATURES})
    out = ds.map(convert, remove_columns=drop, features=features, desc=None)
    out = out.select_columns([*STANDARD_COLUMNS, *extra])
    if tokenizer is not None:
        out = _add_prompt_text(out, tokenizer)
    return out


# --------------------------------------------------------------------------------------------
# scoring
# --------------------------------------------------------------------------------------------


class SampleGrade(NamedTuple):
    """How one completion did on one row: the extracted ``answer``, the ``score`` in [0, 1]
    (reasoning-gym's own, partial credit included; 1.0 / 0.0 for math-verify rows) and whether it
    is ``correct`` (a score of 1.0)."""

    answer: str | None
    score: float
    correct: bool


def _reasoning_gym_grade(
    text: str, task: str, entry: Mapping[str, Any], think_end: str | None
) -> SampleGrade:
    scorer = reasoning_gym_scorer(task, entry.get("task_config"))
    answer = extract_answer(text, think_end, fallback=answer_fallback(entry.get("answer")))
    if answer is None:
        return SampleGrade(None, 0.0, False)
    candidates = [answer]
    if is_number(answer):
        # Many reasoning-gym scorers compare strings or take the first number:
        # basic_arithmetic rejects "1,000" and "1000.0", gsm_symbolic reads "28,080" as 28.
        plain = normalize_answer(answer)
        if plain and plain != answer:
            candidates.append(plain)
    best = 0.0
    for cand in candidates:
        try:
            score = scorer(cand, dict(entry))
        except Exception:  # a scorer choking on a malformed answer: not correct
            continue
        if score is not None:
            best = max(best, float(score))
    return SampleGrade(answer, best, best >= _RG_CORRECT_THRESHOLD)


def grade_sample(
    row: Mapping[str, Any], completion: Any, *, think_end: str | None = DEFAULT_THINK_END
) -> SampleGrade:
    """Grade a completion against a row: ``SampleGrade(answer, score, correct)``.

    * Rows with ``task`` and ``entry`` (reasoning-gym; ``entry`` a dict or an :func:`encode_entry`
      string): the answer is :func:`~hf_softthink.evaluation_metrics.extract_answer` (falling back to
      the last number when the oracle answer is a number, else to the whole text after
      ``think_end``), scored by the task's ``score_answer``; correct means a score of 1.0
      (reasoning-gym gives partial credit below 1.0). A numeric answer is also tried in plain
      form (``"1,000"`` -> ``"1000"``, ``"12.0"`` -> ``"12"``), since several reasoning-gym scorers
      compare strings or read only the first digits; the best score counts.
    * Other rows: :func:`~hf_softthink.evaluation_metrics.grade_completion` against ``row["answer"]``
      (normalised strings, then math-verify), score 1.0 or 0.0.

    ``completion`` may be a string or a TRL conversational completion (list of messages).

    Raises:
        ValueError: the row has neither a gold ``answer`` nor a reasoning-gym ``task``/``entry``.
    """
    text = completion_text(completion, think_end)
    task, entry = row.get("task"), row.get("entry")
    if task and entry:
        return _reasoning_gym_grade(text, str(task), decode_entry(entry), think_end)
    gold = row.get("answer")
    if gold is None:
        raise ValueError(
            "score_sample: the row has no gold 'answer' and no reasoning-gym 'task'/'entry'; "
            "load the data with an answer column (load_prompts(..., answer_column=<name>))"
        )
    answer, correct = grade_completion(text, gold, think_end=think_end)
    return SampleGrade(answer, 1.0 if correct else 0.0, correct)


def score_sample(
    row: Mapping[str, Any], completion: Any, *, think_end: str | None = DEFAULT_THINK_END
) -> bool:
    """Whether a completion answers the row's problem correctly: :func:`grade_sample`'s ``correct``."""
    return grade_sample(row, completion, think_end=think_end).correct
