"""The run/resume loop of an evaluation: :func:`evaluate_modes`.

Its steps: check the sizes, resolve the modes, read the problems and build their prompts, open the resume
log (:mod:`.records`), decode what is not saved yet mode by mode (:mod:`.decoding`), then summarise
(:mod:`.results`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..checks import prepare_output_dir, warn_if_budget_fills_length, warn_if_think_end_is_eos
from ..completion import completion_prompt, default_think_end, has_chat_template
from ..data import DEFAULT_THINKING_INSTRUCTION, apply_chat_template, build_prompt
from ..evaluation_metrics import parse_ks
from ..token_ids import check_token_ids, check_tokenizer_fits, embedding_sizes
from .decoding import (
    CUT_THINKING,
    EMPTY_ANSWER,
    STOPPED_THINKING,
    _decode_mode,
    _DecodeSettings,
    _eos_ids,
    _sequences_to_decode,
)
from .identity import model_identity
from .lock import output_folder_lock
from .modes import DecodingMode, resolve_modes
from .records import (
    _finish_record,
    _problem_key,
    _RecordsLog,
    _run_fingerprint,
    _run_key,
    check_record,
    describe_changes,
)
from .results import EvaluationResult, _summarize_mode

#: default thinking budget of an evaluation: small models must reach an answer phase
DEFAULT_MAX_THINKING_TOKENS = 64


class EvaluationInterrupted(KeyboardInterrupt):
    """Ctrl-C (KeyboardInterrupt) during :func:`evaluate_modes`, with what was saved before it.

    Attributes:
        saved: (mode, problem) results of this evaluation in the records file, earlier runs' included.
        total: (mode, problem) results the evaluation needs.
        new: how many of ``saved`` this run added.
        records_file: the resume log (``None`` without ``output_dir``: nothing was saved).
    """

    def __init__(self, saved: int, total: int, new: int, records_file: Path | None):
        self.saved, self.total, self.new, self.records_file = saved, total, new, records_file
        if records_file is None:
            message = (
                f"evaluation interrupted after {new} of {total} (mode, problem) results; nothing was saved "
                "(no output_dir), so a rerun starts over"
            )
        else:
            message = (
                f"evaluation interrupted: {saved} of {total} (mode, problem) results are saved in {records_file} "
                f"({new} by this run); rerunning with the same settings and output folder resumes from them"
            )
        super().__init__(message)


def _one_run_per_output_dir(evaluate: Callable[..., EvaluationResult]) -> Callable[..., EvaluationResult]:
    """``evaluate`` with its ``output_dir`` checked (:func:`hf_softthink.checks.prepare_output_dir`) and locked
    (:func:`.lock.output_folder_lock`) for the whole run, before anything else: two evaluations never write one
    folder."""

    @functools.wraps(evaluate)
    def locked(*args: Any, output_dir: str | os.PathLike[str] | None = None, **kwargs: Any) -> EvaluationResult:
        if output_dir is None:
            return evaluate(*args, **kwargs)
        out = prepare_output_dir(output_dir, "output_dir")
        with output_folder_lock(out):
            return evaluate(*args, output_dir=out, **kwargs)

    return locked


@_one_run_per_output_dir
def evaluate_modes(
    model: Any,
    tokenizer: Any,
    dataset: Any,
    modes: Any = ("hard-greedy", "soft-greedy"),
    *,
    samples: int = 1,
    ks: int | str | Iterable[int] | None = None,
    batch_size: int = 8,
    max_new_tokens: int = 128,
    max_thinking_tokens: int | None = DEFAULT_MAX_THINKING_TOKENS,
    think_end: str | None = None,
    thinking_instruction: str | None = DEFAULT_THINKING_INSTRUCTION,
    seed: int = 0,
    output_dir: str | os.PathLike[str] | None = None,
    model_name: str | None = None,
    task_name: str | None = None,
    save_completions: bool = True,
    progress: bool = True,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> EvaluationResult:
    """Decode every problem ``samples`` times in each mode, score, and summarise.

    Args:
        model / tokenizer: a causal LM and its tokenizer. Soft modes call
            :func:`hf_softthink.enable_soft_thinking` on the model (in place, idempotent).
        dataset: a ``datasets.Dataset`` (or list of row dicts) with the columns of
            :mod:`hf_softthink.data`: ``prompt`` (chat messages) or ``question``, and ``task`` + ``entry``
            (reasoning-gym verifier) or ``answer`` (math-verify). A ``prompt_text`` column is used as is.
        modes: preset names (list or ``"hard-greedy,soft-sample"``), :class:`DecodingMode` objects or
            ``SoftThinkingConfig`` objects (:func:`resolve_modes`).
        samples: completions per problem (``n`` of pass@k).
        ks: the k of pass@k / maj@k (default ``[1, samples]``); each must be <= ``samples``.
        batch_size: sequences per ``generate`` call; a problem's samples are the same prompt repeated,
            split over calls when ``samples > batch_size``.
        max_new_tokens: generated tokens per completion, thinking and answer together.
        max_thinking_tokens: thinking budget of every mode (``None``: none); see the module docstring.
        think_end: the end-of-thinking marker (a string, matched on decoded text). ``None``: ``"</think>"``
            for a tokenizer with a chat template, ``"\nAnswer:"`` for the completion-style prompts of a
            model without one (:mod:`hf_softthink.completion`).
        thinking_instruction: system prompt for rows without a ``prompt`` column (the dataset's own
            prompts, built by :mod:`hf_softthink.data`, already carry the instruction). A tokenizer without
            a chat template gets the completion prompt ``"Question: ...\nReasoning:"`` instead (or
            ``"Question: ...\nAnswer:"`` when there is neither an instruction nor a thinking budget), and
            each row stops at the end of its answer line.
        seed: seeds the sampling (each batch is seeded from it, the mode and the batch's first problem and
            sample; the batches are fixed by the dataset and ``batch_size``, so a resumed run decodes the same
            completions as an uninterrupted one; the caller's global RNG state is restored afterwards).
        output_dir: where ``samples.jsonl`` (resume log), ``results.json``, ``results.md`` and
            ``pass_at_k.png`` go; ``None`` writes nothing and resumes nothing.
        model_name / task_name: labels for the results (default: ``model.config._name_or_path``). The resume
            key holds digests of the model's weights, adapter, tokenizer and generation config instead
            (:mod:`.identity`); the name stands in only for a model without a ``state_dict``.
        save_completions: keep the completion texts in the records.
        progress: show a tqdm progress bar (sequences generated).
        on_record: called with each finished (mode, problem) record right after it is saved.

    Warns:
        UserWarning: the output folder holds results of a mode from a run with another model, adapter,
            tokenizer or setting (named): they are not reused.

    Raises:
        ValueError: unknown mode, k larger than samples, empty dataset, a problem without gold answer or
            verifier, bad sizes; a saved record that does not fit (named by file and line).
        EvaluationInterrupted: a KeyboardInterrupt (Ctrl-C) while decoding; it says how many results were
            saved (a rerun resumes from them).
        OSError: ``output_dir`` is a file, lies under a file or cannot be written
            (:func:`hf_softthink.checks.prepare_output_dir`), or another process is evaluating into it
            (:class:`~.lock.OutputFolderLockedError`); both before anything else.
    """
    if think_end is None:
        think_end = default_think_end(tokenizer)
    _check_sizes(samples, batch_size, max_new_tokens, max_thinking_tokens, think_end)
    ks_list = parse_ks(ks if ks is not None else sorted({1, samples}), samples)
    mode_list = resolve_modes(modes, max_thinking_tokens=max_thinking_tokens, think_end=think_end)
    rows = _rows(dataset)
    _warn_on_settings(model, tokenizer, mode_list, max_new_tokens, max_thinking_tokens, think_end)
    if any(m.soft_thinking is not None for m in mode_list):
        from ..generation import enable_soft_thinking

        enable_soft_thinking(model, tokenizer=tokenizer)
    _check_token_ids(model, tokenizer, mode_list, think_end)
    model_label = _model_label(model, model_name)
    thinking = thinking_instruction is not None or max_thinking_tokens is not None
    prompts = [_prompt_text(row, tokenizer, thinking_instruction, thinking=thinking) for row in rows]
    problem_keys = [_problem_key(i, text, row) for i, ((text, _), row) in enumerate(zip(prompts, rows, strict=True))]
    decode = _DecodeSettings(samples, batch_size, max_new_tokens, max_thinking_tokens, think_end, seed, thinking)
    identity = model_identity(model, tokenizer, model_label)
    settings = {
        "model": str(model_label),
        "task": task_name,
        "num_problems": len(rows),
        "samples": samples,
        "ks": ks_list,
        "max_new_tokens": max_new_tokens,
        "max_thinking_tokens": max_thinking_tokens,
        "think_end": think_end,
        "seed": seed,
        "batch_size": batch_size,
        "modes": [m.name for m in mode_list],
        "identity": identity,
    }
    out_dir = Path(output_dir) if output_dir is not None else None
    log = _RecordsLog.open(out_dir)
    fingerprints = {m.name: _run_fingerprint(identity, m, decode) for m in mode_list}
    run_keys = {name: _run_key(fingerprint) for name, fingerprint in fingerprints.items()}
    pending = {
        m.name: _pending_problems(log, m, run_keys[m.name], problem_keys, samples, save_completions)
        for m in mode_list
    }
    _warn_on_other_runs(log, mode_list, fingerprints, run_keys, pending)
    try:
        _decode_pending(
            model,
            tokenizer,
            mode_list,
            pending,
            rows,
            prompts,
            decode,
            problem_keys=problem_keys,
            run_keys=run_keys,
            fingerprints=fingerprints,
            log=log,
            save_completions=save_completions,
            progress=progress,
            on_record=on_record,
        )
    except KeyboardInterrupt:
        total = len(mode_list) * len(rows)
        saved = sum((run_keys[m.name], key) in log for m in mode_list for key in problem_keys)
        resumed = total - sum(len(p) for p in pending.values())
        raise EvaluationInterrupted(saved, total, saved - resumed, log.path) from None
    records = {m.name: [log[(run_keys[m.name], key)] for key in problem_keys] for m in mode_list}
    summary = {m.name: _summarize_mode(m, records[m.name], ks_list) for m in mode_list}
    for m in mode_list:  # their seconds were measured by the earlier run that saved them
        summary[m.name]["resumed_problems"] = len(rows) - len(pending[m.name])
    result = EvaluationResult(summary=summary, ks=ks_list, records=records, settings=settings)
    if out_dir is not None:
        result.save(out_dir)
    if thinking:
        _warn_on_missing_answers(result, think_end, max_new_tokens, max_thinking_tokens)
    return result


#: warn when at least this share of a mode's decoded completions gave no answer
NO_ANSWER_WARNING_SHARE = 0.5
#: how that warning starts (for `warnings.filterwarnings`)
NO_ANSWER_WARNING = "Most completions gave no answer"


def _warn_on_missing_answers(
    result: EvaluationResult, think_end: str, max_new_tokens: int, max_thinking_tokens: int | None
) -> None:
    """Warn when most completions of a mode never reached an answer: their scores then grade the thinking text
    (or nothing), which is not what the table seems to say."""
    silent = [
        name for name, s in result.summary.items()
        if s.get("generated_sequences")
        and s.get("no_answer_phase", 0) + s.get("empty_answers", 0) >= NO_ANSWER_WARNING_SHARE * s["generated_sequences"]
    ]
    if not silent:
        return
    notes = [note for note in result.no_answer_notes() if note.split(":", 1)[0] in silent]
    endings = Counter()
    for name in silent:
        endings.update(result.summary[name].get("endings", {}))
    def budget_of(name: str) -> int | None:  # a soft mode's own budget wins over the evaluation's
        soft = result.summary[name]["mode"].get("soft_thinking") or {}
        return soft.get("max_thinking_tokens") or max_thinking_tokens

    cut = [name for name in silent if result.summary[name]["endings"].get(CUT_THINKING)]
    budgets = ", ".join(f"{name}: {budget_of(name) if budget_of(name) is not None else 'none'}" for name in cut)
    hints = []
    if endings[STOPPED_THINKING]:
        hints.append(f"end-of-sequence while thinking: the model did not follow the prompt's request to write "
                     f"{think_end!r}, and a smaller thinking budget forces the marker sooner")
    if endings[CUT_THINKING]:
        hints.append(f"out of tokens while thinking: max_new_tokens (now {max_new_tokens}; thinking budget "
                     f"{budgets}) must leave room after the budget for the marker and the answer")
    if endings[EMPTY_ANSWER]:
        hints.append("nothing after the marker: the model ended right after it (small models often do after a "
                     "forced marker)")
    advice = "; ".join(hints)
    warnings.warn(
        f"{NO_ANSWER_WARNING}, so their grades say little: " + "; ".join(notes) + ". A completion "
        f"that ends before {think_end!r} is graded on its thinking text. " + advice[:1].upper() + advice[1:]
        + ". Each sample's ending is in the records ('endings').",
        UserWarning,
        stacklevel=4,  # warnings.warn < this < evaluate_modes < its output-folder wrapper < the caller
    )


def _check_sizes(
    samples: int, batch_size: int, max_new_tokens: int, max_thinking_tokens: int | None, think_end: str
) -> None:
    """Raise a ValueError naming the first bad size (or think-end marker) and what it must be."""
    for name, value, low in (
        ("samples", samples, 1),
        ("batch_size", batch_size, 1),
        ("max_new_tokens", max_new_tokens, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if max_thinking_tokens is not None and (
        isinstance(max_thinking_tokens, bool)
        or not isinstance(max_thinking_tokens, int)
        or max_thinking_tokens < 0
    ):
        raise ValueError(f"max_thinking_tokens must be None or an integer >= 0, got {max_thinking_tokens!r}")
    if not isinstance(think_end, str) or not think_end:
        raise ValueError(f"think_end must be a non-empty string such as '</think>', got {think_end!r}")


def _check_token_ids(model: Any, tokenizer: Any, modes: list[DecodingMode], think_end: str) -> None:
    """Every token id of the evaluation, before its first batch (:mod:`hf_softthink.token_ids`): the tokenizer
    fits the model's embedding, the think-end marker the hard modes' budget forces, and everything each soft
    mode's ``generate`` would resolve (:func:`hf_softthink.generation.check_soft_thinking`)."""
    from ..generation import check_soft_thinking

    sizes = embedding_sizes(model)
    if sizes is None:  # a stand-in without embeddings: nothing to check against
        return
    check_tokenizer_fits(model, tokenizer, sizes=sizes)
    marker = tokenizer.encode(think_end, add_special_tokens=False)
    check_token_ids(model, {f"think_end={think_end!r}": marker}, tokenizer=tokenizer, sizes=sizes)
    for mode in modes:
        if mode.soft_thinking is not None:
            try:
                check_soft_thinking(model, mode.soft_thinking, tokenizer)
            except ValueError as error:
                raise ValueError(f"Decoding mode {mode.name!r}: {error}") from None


def _pending_problems(
    log: _RecordsLog,
    mode: DecodingMode,
    run_key: str,
    problem_keys: list[str],
    samples: int,
    save_completions: bool,
) -> set[int]:
    """The problems of ``mode`` without a usable saved record. A saved record that does not fit (damaged or
    edited) stops the run, naming its file and line: it is never trusted."""
    pending = set()
    for problem, problem_key in enumerate(problem_keys):
        key = (run_key, problem_key)
        if key not in log:
            pending.add(problem)
            continue
        record = log[key]
        wrong = check_record(record, mode=mode, problem=problem, samples=samples)
        if wrong is not None:
            raise ValueError(
                f"{log.where(key)}: the saved result of mode {mode.name!r} for problem {problem} cannot be trusted: "
                f"{wrong}. The resume log was damaged or edited: delete that line (the problem is then decoded "
                "again) or the whole file (to start over)."
            )
        if save_completions and "completions" not in record:  # saved without its texts: decoded again
            pending.add(problem)
    return pending


def _warn_on_other_runs(
    log: _RecordsLog,
    modes: list[DecodingMode],
    fingerprints: dict[str, dict[str, Any]],
    run_keys: dict[str, str],
    pending: dict[str, set[int]],
) -> None:
    """Say when the output folder holds results of a mode from a run that differs from this one (another
    model, adapter, tokenizer or setting): they are not reused, and what differs is named."""
    for mode in modes:
        if not pending[mode.name]:
            continue
        others: dict[str, tuple[dict[str, Any], int]] = {}
        for (run, _), record in log.saved.items():
            if run != run_keys[mode.name] and record.get("mode") == mode.name:
                fingerprint, count = others.get(run, (record.get("fingerprint") or {}, 0))
                others[run] = (fingerprint, count + 1)
        if not others:
            continue
        # the earlier run closest to this one: the fewest differences
        changes, count = min(
            ((describe_changes(fp, fingerprints[mode.name]) if fp else [], n) for fp, n in others.values()),
            key=lambda c: len(c[0]),
        )
        what = "; ".join(changes) if changes else "how its results were keyed (an older hf_softthink)"
        warnings.warn(
            f"{log.path} holds {count} result(s) of mode {mode.name!r} from an earlier run that differs from this "
            f"one in: {what}. They are kept in the file but not reused: this run decodes the mode's "
            f"{len(pending[mode.name])} problem(s) again. Use an output folder per model to keep results apart.",
            UserWarning,
            stacklevel=4,
        )


def _warn_on_settings(
    model: Any,
    tokenizer: Any,
    modes: list[DecodingMode],
    max_new_tokens: int,
    max_thinking_tokens: int | None,
    think_end: str,
) -> None:
    """Warn about settings that cannot do what they say: a thinking budget (the evaluation's or a soft mode's
    own) that fills ``max_new_tokens``, a think-end marker that is the end-of-sequence token."""
    budgets = [max_thinking_tokens] + [m.soft_thinking.max_thinking_tokens for m in modes if m.soft_thinking]
    budgets = [b for b in budgets if b is not None]
    stacklevel = 5  # warnings.warn < check < this < evaluate_modes < its output-folder wrapper < the caller
    if budgets:
        warn_if_budget_fills_length(
            max(budgets),
            max_new_tokens,
            budget_name="max_thinking_tokens",
            length_name="max_new_tokens",
            stacklevel=stacklevel,
        )
    marker_ids = tokenizer.encode(think_end, add_special_tokens=False)
    warn_if_think_end_is_eos(think_end, marker_ids, _eos_ids(model, tokenizer), stacklevel=stacklevel)


def _model_label(model: Any, model_name: str | None) -> str:
    """``model_name``, else the model's ``_name_or_path``, else its class name."""
    return (
        model_name or getattr(getattr(model, "config", None), "_name_or_path", None) or type(model).__name__
    )


@contextlib.contextmanager
def _left_padding(tokenizer: Any) -> Iterator[None]:
    """Left padding (batched decoder-only generation) and a pad token while decoding; restored after."""
    padding_side, pad_token = tokenizer.padding_side, tokenizer.pad_token
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    try:
        yield
    finally:
        tokenizer.padding_side = padding_side
        if pad_token is None:
            tokenizer.pad_token = None


def _decode_pending(
    model: Any,
    tokenizer: Any,
    modes: list[DecodingMode],
    pending: dict[str, set[int]],
    rows: list[dict[str, Any]],
    prompts: list[tuple[str, bool]],
    decode: _DecodeSettings,
    *,
    problem_keys: list[str],
    run_keys: dict[str, str],
    fingerprints: dict[str, dict[str, Any]],
    log: _RecordsLog,
    save_completions: bool,
    progress: bool,
    on_record: Callable[[dict[str, Any]], None] | None,
) -> None:
    """Decode the ``pending`` problems of every mode; each finished (mode, problem) record is added to the
    ``log`` (saved at once) and handed to ``on_record``.

    The sampling runs in a forked RNG (the caller's global state is restored afterwards).
    """
    total = sum(_sequences_to_decode(m, pending[m.name], len(prompts), decode) for m in modes)
    eos_ids = _eos_ids(model, tokenizer)
    with _left_padding(tokenizer):
        bar = tqdm(
            total=total, unit="seq", desc="eval", disable=not progress or total == 0, dynamic_ncols=True
        )
        try:
            device = getattr(model, "device", torch.device("cpu"))
            rng_devices = [device.index or 0] if device.type == "cuda" else []
            with torch.random.fork_rng(devices=rng_devices):
                for mode in modes:
                    bar.set_postfix_str(mode.name)
                    finished = _decode_mode(
                        model,
                        tokenizer,
                        mode,
                        pending[mode.name],
                        prompts,
                        decode,
                        eos_ids=eos_ids,
                        progress=bar.update,
                    )
                    for problem, outputs, seconds in finished:
                        record = _finish_record(
                            mode,
                            problem,
                            rows[problem],
                            outputs,
                            samples=decode.samples,
                            seconds=seconds,
                            run_key=run_keys[mode.name],
                            fingerprint=fingerprints[mode.name],
                            problem_key=problem_keys[problem],
                            think_end=decode.think_end,
                            save_completions=save_completions,
                        )
                        log.add(record)
                        if on_record is not None:
                            on_record(record)
        finally:
            bar.close()


def _rows(dataset: Any) -> list[dict[str, Any]]:
    if dataset is None:
        raise ValueError("The dataset is empty (None): pass a datasets.Dataset or a list of rows")
    if hasattr(dataset, "to_list"):
        rows = dataset.to_list()
    elif isinstance(dataset, Sequence) and not isinstance(dataset, (str, bytes)):
        rows = [dict(r) for r in dataset]
    else:
        raise TypeError(
            f"dataset must be a datasets.Dataset or a list of dict rows, got {type(dataset).__name__}"
        )
    if not rows:
        raise ValueError(
            "The dataset is empty (0 problems): give at least one problem (e.g. --num-problems >= 1, or a "
            "JSONL file with rows)"
        )
    for i, row in enumerate(rows):
        if not row.get("prompt") and not row.get("prompt_text") and row.get("question") is None:
            raise ValueError(
                f"Problem {i} has no 'question' (nor 'prompt'); build the dataset with "
                "hf_softthink.data.load_prompts(..., question_column=<name>) or reasoning_gym_dataset(...)"
            )
        has_verifier = bool(row.get("task")) and bool(row.get("entry"))
        if not has_verifier and row.get("answer") is None:
            raise ValueError(
                f"Problem {i} has no gold answer: the 'answer' column is missing or empty and it is not a "
                "reasoning-gym row (task/entry). Load the data with an answer column "
                "(load_prompts(..., answer_column=<name>), --answer-column NAME on the command line)."
            )
    return rows


def _prompt_text(
    row: Mapping[str, Any], tokenizer: Any, thinking_instruction: str | None, *, thinking: bool = True
) -> tuple[str, bool]:
    """(prompt text, whether it is chat-templated, i.e. already holds the special tokens).

    Without a chat template: the completion prompt of the question (or of the last user message), which
    ends in ``"Reasoning:"`` when ``thinking``, else in ``"Answer:"``.
    """
    if row.get("prompt_text"):
        return str(row["prompt_text"]), True
    if has_chat_template(tokenizer):
        messages = row.get("prompt") or build_prompt(str(row["question"]), thinking_instruction)
        return apply_chat_template(tokenizer, messages), True
    question = row.get("question")
    if question is None:
        question = next(m["content"] for m in reversed(row["prompt"]) if m.get("role", "user") == "user")
    return completion_prompt(str(question), thinking=thinking), False
