"""Decoding the problems of one mode: jobs split into batches, one ``generate`` call per batch, and the
thinking/answer token counts of each completion."""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessorList, StoppingCriteriaList

from ..completion import AnswerLineStoppingCriteria, answer_marker
from ..processors import HardThinkingBudgetProcessor
from .modes import DecodingMode


@dataclass(frozen=True)
class _DecodeSettings:
    """What every batch of an evaluation is decoded with (the arguments of :func:`evaluate_modes`)."""

    samples: int
    batch_size: int
    max_new_tokens: int
    max_thinking_tokens: int | None
    think_end: str
    seed: int
    thinking: bool = True  # the prompts ask for thinking (else a completion without the marker is all answer)


#: how a completion ended, one code per sample in a record's ``endings``
ANSWERED = "answer"
EMPTY_ANSWER = "empty_answer"
STOPPED_THINKING = "stop_in_thinking"
CUT_THINKING = "length_in_thinking"
ENDINGS = {
    ANSWERED: "wrote an answer after the think-end marker (or, without a thinking prompt, any text)",
    EMPTY_ANSWER: "wrote nothing after the think-end marker (written by the model or forced)",
    STOPPED_THINKING: "wrote end-of-sequence before the think-end marker: no answer phase",
    CUT_THINKING: "ran out of max_new_tokens before the think-end marker: no answer phase",
}


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        return set()
    return {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])}


def _think_end_span(tokenizer: Any, ids: list[int], think_end: str | None) -> tuple[int, int] | None:
    """(start, end) token positions of the first ``think_end`` in the decoded ids, or None.

    ``end`` is the smallest prefix length whose text contains the marker, ``start`` the largest position
    such that ``ids[start:end]`` still spells it (a marker may span several tokens).
    """
    if not think_end or not ids or think_end not in tokenizer.decode(ids):
        return None
    lo, hi = 1, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if think_end in tokenizer.decode(ids[:mid]):
            hi = mid
        else:
            lo = mid + 1
    end = lo
    lo, hi = 0, end - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if think_end in tokenizer.decode(ids[mid:end]):
            lo = mid
        else:
            hi = mid - 1
    return lo, end


@dataclass
class _Job:
    problem: int
    count: int


def _batches(jobs: list[_Job], batch_size: int) -> list[list[_Job]]:
    out: list[list[_Job]] = []
    current: list[_Job] = []
    size = 0
    for job in jobs:
        remaining = job.count
        while remaining > 0:
            take = min(remaining, batch_size - size)
            current.append(_Job(job.problem, take))
            size += take
            remaining -= take
            if size == batch_size:
                out.append(current)
                current, size = [], 0
    if current:
        out.append(current)
    return out


def _generate(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    templated: bool,
    mode: DecodingMode,
    *,
    max_new_tokens: int,
    max_thinking_tokens: int | None,
    think_end: str | None,
    eos_ids: set[int],
    thinking: bool = True,
) -> list[dict[str, Any]]:
    """Decode one batch of prompts; per sequence: text, thinking/answer token counts, soft steps, and how it
    ended (a code of :data:`ENDINGS`)."""
    inputs = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=not templated)
    inputs = {k: v.to(model.device) for k, v in inputs.items()}
    prompt_length = inputs["input_ids"].shape[1]
    kwargs = mode.generate_kwargs()
    if mode.soft_thinking is None and max_thinking_tokens is not None and think_end:
        kwargs["logits_processor"] = LogitsProcessorList([HardThinkingBudgetProcessor(
            tokenizer, think_end, max_thinking_tokens, prompt_length, forced_text=mode.forced_end_text
        )])
    if not templated:  # completion prompts: a base model would go on inventing questions after its answer
        kwargs["stopping_criteria"] = StoppingCriteriaList(
            [AnswerLineStoppingCriteria(tokenizer, prompt_length, answer_marker(prompts[0], think_end))]
        )
    pad = tokenizer.pad_token_id
    with torch.inference_mode():
        out = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            return_dict_in_generate=True,
            pad_token_id=pad,
            tokenizer=tokenizer,
            **kwargs,
        )
    new = out.sequences[:, prompt_length:].tolist()
    mask = getattr(out, "thinking_mask", None)
    marker = think_end
    if mode.soft_thinking is not None and isinstance(mode.soft_thinking.think_end, str):
        marker = mode.soft_thinking.think_end
    forced_prefix = _forced_prefix(mode, marker)
    results = []
    for row, ids in enumerate(new):
        length = next((i for i, t in enumerate(ids) if t in eos_ids), len(ids))
        stopped = length < len(ids)
        ids = ids[:length]
        span = _think_end_span(tokenizer, ids, marker)
        if span is not None:
            thinking_tokens, answer = span[0], length - span[1]
        else:  # no marker: unclosed thinking where the prompt asked for thinking, else all answer
            thinking_tokens, answer = (length, 0) if thinking else (0, length)
        text = tokenizer.decode(ids, skip_special_tokens=True)
        if span is not None or not thinking:
            answer_text = text if span is None else tokenizer.decode(ids[span[1]:], skip_special_tokens=True)
            ending = ANSWERED if answer_text.strip() not in ("", forced_prefix) else EMPTY_ANSWER
        else:
            ending = STOPPED_THINKING if stopped else CUT_THINKING
        results.append(
            {
                "text": text,
                "thinking_tokens": thinking_tokens,
                "answer_tokens": answer,
                "soft_steps": int(mask[row, :length].sum()) if mask is not None else 0,
                "ending": ending,
            }
        )
    return results


def _forced_prefix(mode: DecodingMode, marker: str | None) -> str:
    """The answer prefix a mode forces after the marker (stripped; ``""`` for none): an answer that is only this
    text is empty. Hard modes: ``DecodingMode.forced_end_text``; soft modes: the ``forced_end_text`` of their
    ``SoftThinkingConfig``, when the config has that field."""
    text = mode.forced_end_text if mode.soft_thinking is None else getattr(mode.soft_thinking, "forced_end_text", None)
    if not text or not marker or not text.startswith(marker):
        return ""
    return text[len(marker):].strip()


def _batch_seed(seed: int, mode: str, batch: list[_Job], offset: int) -> int:
    return zlib.crc32(f"{seed}:{mode}:{batch[0].problem}:{offset}:{len(batch)}".encode()) & 0x7FFFFFFF


def _plan(problems: int, per_problem: int, batch_size: int) -> list[tuple[list[_Job], int]]:
    """The batches of every problem of the dataset, each with the sample offset of its first job.

    The plan depends only on the number of problems, the samples per problem and the batch size (a longer
    dataset only appends batches), never on what a resumed run still has to do: a batch is decoded from the
    same prompts with the same seed whether or not the run was interrupted, so it gives the same completions.
    """
    plan, done = [], [0] * problems
    for batch in _batches([_Job(p, per_problem) for p in range(problems)], batch_size):
        plan.append((batch, done[batch[0].problem]))
        for job in batch:
            done[job.problem] += job.count
    return plan


def _decode_mode(
    model: Any,
    tokenizer: Any,
    mode: DecodingMode,
    pending: set[int],
    prompts: list[tuple[str, bool]],
    settings: _DecodeSettings,
    *,
    eos_ids: set[int],
    progress: Callable[[int], Any],
) -> Iterator[tuple[int, list[dict[str, Any]], float]]:
    """Decode the ``pending`` problems in one mode, in the batches of the whole dataset's plan (:func:`_plan`);
    yield ``(problem, outputs, seconds)`` as each pending problem completes.

    A deterministic mode decodes one sequence per problem, a stochastic one ``settings.samples``. A batch of
    the plan is decoded when it holds a pending problem; the completions of saved problems that share it
    are discarded. ``seconds`` is the problem's share of its batches' wall time.
    """
    buffers: dict[int, list[dict[str, Any]]] = {}
    seconds: dict[int, float] = {}
    for batch, offset in _mode_batches(mode, pending, len(prompts), settings):
        texts = [prompts[job.problem][0] for job in batch for _ in range(job.count)]
        torch.manual_seed(_batch_seed(settings.seed, mode.name, batch, offset))
        start = time.perf_counter()
        generated = _generate(
            model,
            tokenizer,
            texts,
            all(prompts[job.problem][1] for job in batch),
            mode,
            max_new_tokens=settings.max_new_tokens,
            max_thinking_tokens=settings.max_thinking_tokens,
            think_end=settings.think_end,
            eos_ids=eos_ids,
            thinking=settings.thinking,
        )
        elapsed = time.perf_counter() - start
        progress(len(texts))
        cursor = 0
        for job in batch:
            outputs = generated[cursor : cursor + job.count]
            cursor += job.count
            if job.problem not in pending:
                continue
            buffers.setdefault(job.problem, []).extend(outputs)
            seconds[job.problem] = seconds.get(job.problem, 0.0) + elapsed * job.count / len(texts)
            if len(buffers[job.problem]) == (1 if mode.deterministic else settings.samples):
                yield job.problem, buffers.pop(job.problem), seconds.pop(job.problem)


def _mode_batches(
    mode: DecodingMode, pending: set[int], problems: int, settings: _DecodeSettings
) -> list[tuple[list[_Job], int]]:
    """The batches of the plan that hold a pending problem."""
    per_problem = 1 if mode.deterministic else settings.samples
    plan = _plan(problems, per_problem, settings.batch_size)
    return [(batch, offset) for batch, offset in plan if any(job.problem in pending for job in batch)]


def _sequences_to_decode(mode: DecodingMode, pending: set[int], problems: int, settings: _DecodeSettings) -> int:
    """How many sequences :func:`_decode_mode` generates (the progress bar's total)."""
    return sum(job.count for batch, _ in _mode_batches(mode, pending, problems, settings) for job in batch)
