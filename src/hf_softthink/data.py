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

import codecs
import difflib
import functools
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple

import datasets
import pyarrow as pa

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
#: the chat-templated prompt, added when a tokenizer is given
PROMPT_TEXT_COLUMN = "prompt_text"

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


#: a reasoning-gym build of at least this many problems shows a progress bar (with ``progress=True``)
PROGRESS_MIN_PROBLEMS = 5_000


def reasoning_gym_dataset(
    task: str,
    *,
    size: int,
    seed: int = 0,
    thinking_instruction: str | None = DEFAULT_THINKING_INSTRUCTION,
    instruction_role: InstructionRole = "system",
    tokenizer: Any = None,
    config: Mapping[str, Any] | None = None,
    progress: bool = False,
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
        progress: show a progress bar while building at least ``PROGRESS_MIN_PROBLEMS`` problems (about
            0.2 ms each for chain_sum: a million take minutes).

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

    from tqdm.auto import tqdm

    rows = []
    entries = tqdm(rg_data, total=size, desc=f"building {size} {task} problems", unit="problem",
                   disable=not progress or size < PROGRESS_MIN_PROBLEMS, dynamic_ncols=True)
    for entry in entries:
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
    return ds.add_column(PROMPT_TEXT_COLUMN, texts)


# --------------------------------------------------------------------------------------------
# user datasets
# --------------------------------------------------------------------------------------------

_FILE_SHAPES = (
    "a .jsonl file holds one JSON object per line; a .json file holds a list of such objects or one object "
    'of equal-length columns, e.g. {"question": ["1+1?", "2+2?"], "answer": ["2", "4"]}'
)


class _IntLiteral(str):
    """A JSON integer as written in the file: text columns keep its digits, other columns get ``int(self)``."""

    def number(self) -> int:
        return int(self)


class _FloatLiteral(str):
    """A JSON number with a fraction or exponent as written: text columns keep it, others get ``float(self)``."""

    def number(self) -> float:
        return float(self)


def _parse_json(text: str) -> Any:
    """``json.loads`` that keeps numbers as their literal text (so ``2**64`` or ``1.50`` stay exact)."""
    return json.loads(text, parse_int=_IntLiteral, parse_float=_FloatLiteral)


def _numbers(value: Any) -> Any:
    """``value`` with every number literal (nested too) turned into its int / float."""
    if isinstance(value, (_IntLiteral, _FloatLiteral)):
        return value.number()
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    return value


def _kind(value: Any) -> str:
    """The JSON kind of a value, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (_IntLiteral, _FloatLiteral, int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def _preview(value: Any, limit: int = 60) -> str:
    text = repr(str(value) if isinstance(value, (_IntLiteral, _FloatLiteral)) else value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _as_text(value: Any, column: str, where: str) -> str | None:
    """A question / answer value as text: strings as they are, numbers as written; refuse anything else."""
    if value is None or isinstance(value, str):
        return None if value is None else str(value)  # str(): a number literal becomes a plain string
    if isinstance(value, (bool, int, float)):
        return str(value)
    raise ValueError(
        f"load_prompts: {where}: {column!r} is {_kind(value)} ({_preview(value)}), not text. Write it as a "
        f"string, or point question_column= / answer_column= at the column that holds the text."
    )


def _check_text(value: str | None, column: str, where: str, required: bool) -> None:
    """Refuse a missing (when ``required``) or blank question / answer."""
    if value is None and required:
        raise ValueError(f"load_prompts: {where} has no {column!r} (null): fill it in or remove the row.")
    if value is not None and not value.strip():
        fix = "fill it in or remove the row" if required else "fill it in, or make it null (no gold answer)"
        raise ValueError(
            f"load_prompts: {where} has an empty {column!r} ({value!r}): no completion can answer it; {fix}."
        )


def _decode_utf8(data: bytes, path: str) -> str:
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        column = err.start - data.rfind(b"\n", 0, err.start)
        raise ValueError(
            f"load_prompts: {path}:{line} is not valid UTF-8 (byte 0x{data[err.start]:02x} at byte {column} of "
            "the line). Save the file as UTF-8, e.g. `iconv -f latin1 -t utf-8 old.jsonl > new.jsonl`."
        ) from None


class _Table(NamedTuple):
    """Rows read from a file or a list, as columns, and how messages name each row."""

    columns: dict[str, list[Any]]
    rows: list[str]


def _rows_table(rows: list[Mapping[str, Any]], names: list[str]) -> _Table:
    keys: dict[str, None] = {}
    for r in rows:
        keys.update(dict.fromkeys(r))
    return _Table({k: [r.get(k) for r in rows] for k in keys}, names)


def _columns_table(columns: Mapping[str, Any], where: str) -> _Table:
    """A mapping of column name -> list of values (one per row) as a table; unequal lengths are refused."""
    bad = [k for k, v in columns.items() if not isinstance(v, (list, tuple))]
    if bad:
        raise ValueError(
            f"load_prompts: {where} has columns that are not lists ({', '.join(repr(k) for k in bad)}): a table "
            "of columns needs a list of values (one per row) in every column."
        )
    lengths = {k: len(v) for k, v in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(
            f"load_prompts: the columns of {where} have different lengths {lengths}: give every column one "
            "value per row."
        )
    size = next(iter(lengths.values()), 0)
    return _Table({k: list(v) for k, v in columns.items()}, [f"row {i}" for i in range(size)])


def _read_json_table(path: str | os.PathLike) -> _Table:
    """The rows of a JSONL file, a JSON list of objects or a JSON object of columns."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_prompts: no such file {path!r}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"load_prompts: {path!r} is a folder, not a file: {_FILE_SHAPES}")
    with open(path, "rb") as fh:
        text = _decode_utf8(fh.read(), path)
    try:
        document = _parse_json(text)
    except json.JSONDecodeError as whole:
        return _read_jsonl(text, path, whole)
    if isinstance(document, list):
        bad = next((i for i, row in enumerate(document) if not isinstance(row, dict)), None)
        if bad is not None:
            raise ValueError(
                f"load_prompts: item {bad} of the list in {path} is {_kind(document[bad])}, not an object: "
                f"{_FILE_SHAPES}."
            )
        names = [f"row {i} (item {i} of the list in {path})" for i in range(len(document))]
        return _rows_table(document, names)
    if isinstance(document, dict):
        if document and all(isinstance(v, list) for v in document.values()):
            table = _columns_table(document, path)
            return table._replace(rows=[f"{name} of the columns in {path}" for name in table.rows])
        return _rows_table([document], [f"row 0 ({path}:1)"])  # a one-line JSONL file
    raise ValueError(f"load_prompts: {path} holds {_kind(document)}, not rows: {_FILE_SHAPES}.")


def _read_jsonl(text: str, path: str, whole: json.JSONDecodeError) -> _Table:
    """The rows of a JSONL file (``whole``: why the text is not one JSON document)."""
    rows, names = [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = _parse_json(line)
        except json.JSONDecodeError as err:
            if not rows:  # not even the first line is JSON on its own: a broken JSON document
                raise ValueError(
                    f"load_prompts: {path} is not valid JSON ({whole.msg} at line {whole.lineno}, column "
                    f"{whole.colno}): {_FILE_SHAPES}."
                ) from None
            raise ValueError(f"load_prompts: {path}:{lineno} is not valid JSON ({err})") from None
        if not isinstance(row, dict):
            raise ValueError(
                f"load_prompts: {path}:{lineno} is not a JSON object (got {_kind(row)}): {_FILE_SHAPES}."
            )
        rows.append(row)
        names.append(f"row {len(names)} ({path}:{lineno})")
    return _rows_table(rows, names)


def _table_dataset(table: _Table, text_columns: Sequence[str]) -> datasets.Dataset:
    """The table as a ``datasets.Dataset``: question / answer values as text, other columns as Arrow takes them.

    A column that mixes numbers, strings and booleans becomes strings (as written in the file); a value Arrow
    cannot store with the rest of its column (an object among strings, an integer beyond 64 bits) is refused,
    naming its column and row.
    """
    columns: dict[str, list[Any]] = {}
    for name, values in table.columns.items():
        if name in text_columns:
            columns[name] = [_as_text(v, name, table.rows[i]) for i, v in enumerate(values)]
            continue
        kinds = {_kind(v) for v in values if v is not None}
        if len(kinds) > 1 and kinds <= {"a number", "a string", "a boolean"}:
            columns[name] = [None if v is None else str(v) for v in values]
        else:
            columns[name] = [_numbers(v) for v in values]
    try:
        return datasets.Dataset.from_dict(columns)
    except (pa.ArrowException, OverflowError, TypeError, ValueError) as error:
        raise _unstorable(columns, table.rows, error) from None


def _unstorable(columns: dict[str, list[Any]], rows: list[str], error: Exception) -> ValueError:
    """The error naming the first column and row that ``datasets`` (Arrow) refuses."""

    def stores(values: list[Any]) -> bool:
        try:
            datasets.Dataset.from_dict({"column": values})
        except (pa.ArrowException, OverflowError, TypeError, ValueError):
            return False
        return True

    for name, values in columns.items():
        if stores(values):
            continue
        low, high = 0, len(values)  # the shortest failing prefix has length in (low, high]
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if stores(values[:middle]) else (low, middle)
        row = high - 1
        before = sorted({_kind(v) for v in values[:row] if v is not None})
        context = f" while the rows before it hold {' / '.join(before)}" if before else ""
        return ValueError(
            f"load_prompts: column {name!r} cannot be stored: {rows[row]} holds {_kind(values[row])} "
            f"({_preview(values[row])}){context} ({type(error).__name__}: {error}). Give the column one kind "
            "of value in every row (e.g. write it as a string), or drop the column."
        )
    return ValueError(
        f"load_prompts: the rows cannot be stored as a dataset ({type(error).__name__}: {error})"
    )


def _to_dataset(source: Any, text_columns: Sequence[str]) -> tuple[datasets.Dataset, list[str] | None]:
    """The source as a dataset, and how messages name its rows (None: ``row i``)."""
    if isinstance(source, datasets.DatasetDict):
        raise ValueError(
            f"load_prompts got a DatasetDict with splits {list(source)}; pass one split, e.g. source['train']"
        )
    if isinstance(source, datasets.Dataset):
        return source, None
    if isinstance(source, (str, os.PathLike)):
        table = _read_json_table(source)
        if not table.rows:
            raise ValueError(f"load_prompts: {os.fspath(source)!r} contains no rows")
    elif isinstance(source, Mapping):
        table = _columns_table(source, "the dict of columns")
    elif isinstance(source, Sequence) and not isinstance(source, (str, bytes)):
        rows = list(source)
        if not rows:
            raise ValueError("load_prompts: the list of rows is empty")
        bad = [i for i, r in enumerate(rows) if not isinstance(r, Mapping)]
        if bad:
            raise ValueError(
                f"load_prompts: rows must be dicts; row {bad[0]} is {type(rows[bad[0]]).__name__}"
            )
        table = _rows_table([dict(r) for r in rows], [f"row {i}" for i in range(len(rows))])
    else:
        raise TypeError(
            "load_prompts: source must be a datasets.Dataset, a path to a JSONL/JSON file, a list of dicts or a "
            f"dict of columns, got {type(source).__name__}"
        )
    return _table_dataset(table, text_columns), table.rows


def load_prompts(
    source: datasets.Dataset | str | os.PathLike | Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
    *,
    question_column: str = "question",
    answer_column: str | None = "answer",
    thinking_instruction: str | None = DEFAULT_THINKING_INSTRUCTION,
    instruction_role: InstructionRole = "system",
    tokenizer: Any = None,
) -> datasets.Dataset:
    """User data -> prompt dataset with the standard columns (module docstring).

    Args:
        source: a ``datasets.Dataset``, a path to a JSONL file (one object per line) or a ``.json`` file (a
            list of objects, or one object of equal-length column lists), a list of dicts, or a dict of
            column lists.
        question_column / answer_column: the source columns holding the problem and the gold
            answer (renamed to ``question`` / ``answer``). ``answer_column=None`` loads prompts
            without gold answers (they cannot be scored).
        thinking_instruction / instruction_role / tokenizer: as in :func:`reasoning_gym_dataset`.

    Questions and answers are text: numbers become their text as written in the file (``2**64``, ``1.50``);
    a list or an object there, a missing or empty question, or an empty answer is a ``ValueError`` naming
    the row. Other source columns are kept (TRL passes them to reward functions); a column whose values
    Arrow cannot store together is a ``ValueError`` naming it and the row. A source that already has
    ``task`` and ``entry`` columns (e.g. a saved :func:`reasoning_gym_dataset`) keeps them, so its rows are
    still scored by reasoning-gym. The source's own standard columns whose values change (e.g. its own
    ``prompt``, replaced by the one built from the question) are named in a ``UserWarning``.
    """
    text_columns = [c for c in (question_column, answer_column) if c is not None]
    ds, row_names = _to_dataset(source, text_columns)
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

    def convert(row: dict[str, Any], index: int) -> dict[str, Any]:
        where = row_names[index] if row_names is not None else f"row {index}"
        question = _as_text(row[question_column], question_column, where)
        _check_text(question, question_column, where, required=True)
        answer = None
        if answer_column is not None:
            answer = _as_text(row[answer_column], answer_column, where)
            _check_text(answer, answer_column, where, required=False)
        return {
            "question": question,
            "answer": answer,
            "task": row["task"] if has_rg else None,
            "entry": row["entry"] if has_rg else None,
            "prompt": build_prompt(question, thinking_instruction, instruction_role),
        }

    drop = [c for c in (question_column, answer_column) if c is not None and c not in STANDARD_COLUMNS]
    drop += [c for c in (*STANDARD_COLUMNS, PROMPT_TEXT_COLUMN) if c in present and c not in drop]
    extra = [c for c in present if c not in drop]
    features = datasets.Features({**{c: ds.features[c] for c in extra}, **STANDARD_FEATURES})
    out = ds.map(convert, with_indices=True, remove_columns=drop, features=features, desc=None)
    out = out.select_columns([*STANDARD_COLUMNS, *extra])
    changed = {
        c: _count_changed(ds[c], out[c]) for c in STANDARD_COLUMNS if c in present and c not in text_columns
    }
    if tokenizer is not None:
        out = _add_prompt_text(out, tokenizer)
        if PROMPT_TEXT_COLUMN in present:
            changed[PROMPT_TEXT_COLUMN] = _count_changed(ds[PROMPT_TEXT_COLUMN], out[PROMPT_TEXT_COLUMN])
    elif PROMPT_TEXT_COLUMN in present:
        if "prompt" in present and not changed["prompt"]:  # rendered from the very prompts kept: still valid
            out = out.add_column(PROMPT_TEXT_COLUMN, ds[PROMPT_TEXT_COLUMN])
        else:
            changed[PROMPT_TEXT_COLUMN] = len(ds)
    _warn_replaced(changed, len(ds), question_column, tokenizer is not None)
    return out


def _count_changed(old: Sequence[Any], new: Sequence[Any]) -> int:
    return sum(a != b for a, b in zip(old, new, strict=True))


def _warn_replaced(changed: Mapping[str, int], size: int, question_column: str, rendered: bool) -> None:
    """One warning naming the source's own standard columns whose values were replaced or dropped."""
    changed = {c: n for c, n in changed.items() if n}
    if not changed:
        return
    listed = ", ".join(f"{c!r} ({n} of {size} rows)" for c, n in changed.items())
    dropped = " (prompt_text is dropped: pass tokenizer= to render the new prompts)" if (
        PROMPT_TEXT_COLUMN in changed and not rendered
    ) else ""
    warnings.warn(
        f"load_prompts: the source's own column(s) {listed} were replaced by the standard columns built from "
        f"{question_column!r}{dropped}. "
        "To keep your values, rename those columns before loading (other columns are kept as they are), or pass "
        "a dataset that already has 'prompt' straight to evaluate_modes / SoftGRPOTrainer.",
        UserWarning,
        stacklevel=3,
    )


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
