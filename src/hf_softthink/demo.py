"""The built-in demo: soft thinking against ordinary decoding on a small set of questions with known answers.

`hf-softthink demo` (the README's first command) decodes the questions of :data:`DEMO_QUESTIONS` three
ways, each in one batch, through :func:`hf_softthink.evaluation.evaluate_modes` (the presets, grading and
pass@k of ``hf-softthink eval``):

* *standard*: the question alone, ordinary greedy decoding;
* *hard thinking*: the thinking prompt and budget of :data:`DEMO_THINKING_PROMPT` /
  :data:`DEMO_MAX_THINKING_TOKENS`, ordinary tokens (the ``hard-greedy`` preset);
* *soft thinking*: the same prompt and budget, concept tokens while thinking, then a greedy answer.

It prints per-mode accuracy, thinking/answer tokens and time side by side, each question's answers, and
the concept-token trace of the first question. Every figure is measured in that run; the decoding is
greedy, so a rerun on the same machine prints the same answers.

The thinking settings were chosen with ``benchmarks/demo_settings.py`` on template questions that are not
in the demo's set (``benchmarks/RESULTS_demo.md`` has the measurements): the prompt and budget with the
best mean accuracy of hard and soft thinking (the package's thinking instruction, 64 tokens), then the Cold
Stop that did best for soft thinking (entropy below 0.1 nats for 4 steps).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import LogitsProcessorList, StoppingCriteriaList

from .completion import (
    AnswerLineStoppingCriteria,
    answer_marker,
    completion_prompt,
    default_think_end,
    has_chat_template,
)
from .config import SoftThinkingConfig
from .data import DEFAULT_THINKING_INSTRUCTION, build_prompt
from .evaluation import DecodingMode, evaluate_modes
from .evaluation.decoding import ANSWERED, _eos_ids, _think_end_span
from .evaluation.run import NO_ANSWER_WARNING, _model_label
from .events import StepEvent, thinking_end_reason
from .processors import HardThinkingBudgetProcessor

__all__ = [
    "DEMO_ANSWER_TOKENS",
    "DEMO_COLD_STOP_ENTROPY",
    "DEMO_COLD_STOP_PATIENCE",
    "DEMO_MAX_THINKING_TOKENS",
    "DEMO_QUESTIONS",
    "DEMO_THINKING_PROMPT",
    "DemoReport",
    "TraceResult",
    "render_trace",
    "run_demo",
    "trace_soft_thinking",
]

#: the demo's questions and their answers: everyday arithmetic a 135M chat model half-solves
DEMO_QUESTIONS: tuple[tuple[str, str], ...] = (
    ("What is 8 + 7?", "15"),
    ("What is 23 + 19?", "42"),
    ("What is 15 - 6?", "9"),
    ("What is 7 times 6?", "42"),
    ("What is 100 - 37?", "63"),
    ("What is half of 30?", "15"),
    ("What is 45 divided by 5?", "9"),
    ("What is 9 + 8 + 3?", "20"),
    ("Sam has 5 apples and buys 4 more. How many apples does Sam have?", "9"),
    ("A pack has 6 eggs. How many eggs are in 3 packs?", "18"),
    ("There are 12 birds on a tree. 5 fly away. How many birds are left?", "7"),
    ("A week has 7 days. How many days are in 4 weeks?", "28"),
    ("Anna read 8 pages on Monday and 11 pages on Tuesday. How many pages did she read?", "19"),
    ("A ticket costs 4 dollars. How much do 5 tickets cost?", "20"),
    ("Tom is 9 years old. How old will he be in 6 years?", "15"),
    ("A car has 4 wheels. How many wheels do 3 cars have?", "12"),
)
#: the demo's thinking prompt (system message of a chat model): the package's thinking instruction, chosen
#: on held-out questions (benchmarks/demo_settings.py)
DEMO_THINKING_PROMPT = DEFAULT_THINKING_INSTRUCTION
#: the demo's thinking budget: </think> is forced after this many thinking tokens
DEMO_MAX_THINKING_TOKENS = 64
#: the demo's Cold Stop (soft thinking only): think-end is forced once the entropy stays below this many
#: nats for DEMO_COLD_STOP_PATIENCE consecutive steps
DEMO_COLD_STOP_ENTROPY = 0.1
DEMO_COLD_STOP_PATIENCE = 4
#: tokens allowed after the thinking budget, for the answer (every mode gets budget + this many tokens)
DEMO_ANSWER_TOKENS = 48
#: a mixture whose top weight is below this is shown with its runner-up in the trace
UNCERTAIN_TOP_WEIGHT = 0.6
#: the row labels of the demo's table, in order
MODE_LABELS = ("standard", "hard thinking", "soft thinking")
_LEGEND = {
    "standard": "the question alone, greedy decoding, no thinking prompt",
    "hard thinking": "thinking prompt and budget, ordinary tokens, greedy",
    "soft thinking": "the same prompt and budget, concept tokens while thinking, greedy answer",
}


@dataclass
class TraceResult:
    """One soft-thinking decoding of one prompt, for printing."""

    trace: str
    answer: str
    thinking_tokens: int
    answer_tokens: int
    seconds: float
    output: Any = None  # the generate output (for hf_softthink.trace views)
    end_event: StepEvent | None = None  # what ended thinking (THINK_END, FORCED_...); None: it never ended
    marker_tokens: int = 0  # tokens of the think-end marker, counted in thinking_tokens
    soft_steps: int = 0  # thinking steps that fed a concept token

    @property
    def tokens(self) -> int:
        return self.thinking_tokens + self.answer_tokens

    def describe_thinking(self, config: SoftThinkingConfig, *, soft: bool = True) -> str:
        """How long thinking ran and why it ended: ``67 tokens (64 soft steps), ended by "</think>" (3 tokens)
        forced when the thinking budget of 64 tokens was spent``."""
        length = f"{self.thinking_tokens} tokens" + (f" ({self.soft_steps} soft steps)" if soft else "")
        if self.end_event is None:
            return (f"{length}; thinking never ended (the model wrote end-of-sequence while thinking, or the token "
                    "limit came first), so there is no answer")
        marker = f'"{_escaped(config.think_end)}"' if isinstance(config.think_end, str) else "the think-end marker"
        if self.marker_tokens > 1:
            marker += f" ({self.marker_tokens} tokens)"
        why = {
            StepEvent.THINK_END: f"the model writing {marker}",
            StepEvent.FORCED_BUDGET: f"{marker} forced when the thinking budget of {config.max_thinking_tokens} "
            "tokens was spent",
            StepEvent.FORCED_COLD_STOP: f"{marker} forced by Cold Stop (entropy below {config.cold_stop_entropy} "
            f"nats for {config.cold_stop_patience} steps)",
            StepEvent.FORCED_SWITCH_LIMIT: f"{marker} forced at the switch limit ({config.max_switches} switches)",
            StepEvent.STOP_DECISION: "a stop token drawn from the thinking distribution",
        }[self.end_event]
        return f"{length}, ended by {why}"


def _escaped(text: str) -> str:
    """``text`` on one line: newlines shown as ``\\n``."""
    return text.replace("\n", "\\n")


def render_trace(tokenizer: Any, ids: torch.Tensor, weights: torch.Tensor, soft: torch.Tensor) -> str:
    """The thinking trace; an uncertain mixture shows as ``⟨top|runner-up 0.42⟩`` (newlines in it as ``\\n``)."""
    pieces = []
    for step in range(ids.shape[0]):
        top = tokenizer.decode(ids[step, :1])
        if soft[step] and ids.shape[1] > 1 and weights[step, 0] < UNCERTAIN_TOP_WEIGHT:
            runner_up = _escaped(tokenizer.decode(ids[step, 1:2])).strip()
            pieces.append(f"⟨{_escaped(top)}|{runner_up} {weights[step, 1]:.2f}⟩")
        else:
            pieces.append(top)
    return "".join(pieces)


def prompt_inputs(tokenizer: Any, question: str, system: str | None, *, thinking: bool = True) -> dict[str, Any]:
    """Tokenised prompt of one question: the chat template with ``system`` as system message, or, for a
    model without a chat template, the completion prompt of :mod:`hf_softthink.completion`."""
    if has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(
            build_prompt(question, system), add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
    return tokenizer(completion_prompt(question, thinking=thinking), return_tensors="pt")


def _stopping(tokenizer: Any, inputs: dict[str, Any], think_end: Any) -> dict[str, Any]:
    """The answer-line stop of a completion prompt (nothing for a chat prompt)."""
    if has_chat_template(tokenizer):
        return {}
    prompt = tokenizer.decode(inputs["input_ids"][0])
    marker = answer_marker(prompt, think_end if isinstance(think_end, str) else None)
    length = inputs["input_ids"].shape[1]
    return {"stopping_criteria": StoppingCriteriaList([AnswerLineStoppingCriteria(tokenizer, length, marker)])}


def trace_soft_thinking(
    model: Any, tokenizer: Any, inputs: dict[str, Any], config: SoftThinkingConfig, max_new_tokens: int
) -> TraceResult:
    """Decode one prompt with soft thinking (greedy answer) and render its concept-token trace."""
    start = time.perf_counter()
    out = model.generate(
        **inputs, do_sample=False, max_new_tokens=max_new_tokens, soft_thinking=config, tokenizer=tokenizer,
        return_dict_in_generate=True, pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
        **_stopping(tokenizer, inputs, config.think_end),
    )
    seconds = time.perf_counter() - start
    new = out.sequences[0, inputs["input_ids"].shape[1]:]
    eos = _eos_ids(model, tokenizer)
    new = new[: next((i for i, token in enumerate(new.tolist()) if token in eos), len(new))]
    soft = out.thinking_mask[0, : len(new)]
    thinking_steps = int(soft.sum())
    # the trace runs up to and including think-end (as evaluate_modes counts it); every later step is the answer
    span = None
    if isinstance(config.think_end, str):
        span = _think_end_span(tokenizer, new.tolist(), config.think_end)
        thinking_end = span[1] if span is not None else len(new)  # never reached think-end: everything is thinking
    else:  # a marker given as a token id: thinking is the soft steps
        thinking_end = int(soft.nonzero().max()) + 1 if thinking_steps else 0
    trace = render_trace(tokenizer, out.soft_topk_ids[0, :thinking_end], out.soft_topk_weights[0, :thinking_end],
                         soft[:thinking_end])
    answer = tokenizer.decode(new[thinking_end:], skip_special_tokens=True)
    end = thinking_end_reason(out.step_events[0, : len(new)])
    marker_tokens = 0
    if end is not None:
        marker_tokens = span[1] - span[0] if span is not None else 1
    return TraceResult(trace, answer.strip(), thinking_end, len(new) - thinking_end, seconds, out,
                       end_event=end[1] if end else None, marker_tokens=marker_tokens, soft_steps=thinking_steps)


def decode_hard(
    model: Any, tokenizer: Any, inputs: dict[str, Any], max_new_tokens: int, *,
    think_end: str | None = None, max_thinking_tokens: int | None = None, output_logits: bool = False,
) -> TraceResult:
    """Decode one prompt greedily with ordinary tokens; with ``max_thinking_tokens`` the think-end marker is
    forced after that many tokens, as soft thinking's budget does. ``output_logits``: keep each step's logits in
    the output (for the entropy curve of a trace)."""
    kwargs = _stopping(tokenizer, inputs, think_end)
    prompt_length = inputs["input_ids"].shape[1]
    if max_thinking_tokens is not None and think_end:
        kwargs["logits_processor"] = LogitsProcessorList(
            [HardThinkingBudgetProcessor(tokenizer, think_end, max_thinking_tokens, prompt_length)]
        )
    start = time.perf_counter()
    out = model.generate(
        **inputs, do_sample=False, max_new_tokens=max_new_tokens, return_dict_in_generate=True,
        output_logits=output_logits, pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id, **kwargs,
    )
    seconds = time.perf_counter() - start
    new = out.sequences[0, prompt_length:].tolist()
    eos = _eos_ids(model, tokenizer)
    new = new[: next((i for i, token in enumerate(new) if token in eos), len(new))]
    span = _think_end_span(tokenizer, new, think_end)
    end = 0 if span is None else span[1]
    answer = tokenizer.decode(new[end:], skip_special_tokens=True).strip()
    end_event = None
    if span is not None:  # the budget processor forces the marker exactly when the budget is spent
        forced = max_thinking_tokens is not None and span[0] >= max_thinking_tokens
        end_event = StepEvent.FORCED_BUDGET if forced else StepEvent.THINK_END
    return TraceResult(tokenizer.decode(new[:end]), answer, end, len(new) - end, seconds, out,
                       end_event=end_event, marker_tokens=span[1] - span[0] if span else 0)


@dataclass
class DemoReport:
    """What :func:`run_demo` measured; :meth:`to_text` is what ``hf-softthink demo`` prints."""

    model_name: str
    settings: dict[str, Any]
    summary: dict[str, dict[str, Any]]
    answers: dict[str, list[tuple[str | None, bool]]]
    questions: list[tuple[str, str]]
    trace_question: str
    trace: TraceResult
    trace_thinking: str = ""  # how long the trace's thinking ran and what ended it
    unanswered: dict[str, list[bool]] = field(default_factory=dict)  # per mode and question: gave no answer

    def correct(self, label: str) -> int:
        return sum(ok for _, ok in self.answers[label])

    def no_answer(self, label: str) -> int:
        """Questions of a mode whose completion ended while thinking or wrote nothing after the marker."""
        m = self.summary[label]
        return m.get("no_answer_phase", 0) + m.get("empty_answers", 0)

    def to_text(self) -> str:
        n = len(self.questions)
        s = self.settings
        cold_stop = (
            "off" if s["cold_stop_entropy"] is None
            else f"entropy < {s['cold_stop_entropy']} nats for {s['cold_stop_patience']} steps"
        )
        lines = [
            f"hf-softthink demo: {self.model_name}, {n} built-in questions with known answers, greedy decoding.",
            f"Thinking: prompt \"{_escaped(s['prompt'])}\"; budget {s['max_thinking_tokens']} thinking "
            f"tokens, then \"{_escaped(s['think_end'])}\" is forced; Cold Stop {cold_stop}; every mode may "
            f"write {s['max_new_tokens']} tokens.",
            f"Soft thinking mixes the top-{s['max_topk']} tokens (temperature {s['temperature']}, top-p "
            f"{s['top_p']}, min-p {s['min_p']}) into each concept token.",
            "",
            "| decoding | correct | no answer | thinking tokens | answer tokens | seconds |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for label in MODE_LABELS:
            m = self.summary[label]
            lines.append(
                f"| {label} | {self.correct(label)}/{n} | {self.no_answer(label)}/{n} | "
                f"{m['mean_thinking_tokens']:.1f} | {m['mean_answer_tokens']:.1f} | {m['wall_seconds']:.1f} |"
            )
        lines += ["", *(f"{label}: {_LEGEND[label]}." for label in MODE_LABELS)]
        lines += [
            "no answer: questions whose completion ended while thinking (end-of-sequence or the token limit before "
            f"\"{_escaped(s['think_end'])}\") or wrote nothing after it; marked † below, with the answer read from "
            "the thinking, if any (\"-\": none).",
            "",
        ]
        lines += [
            "| question | answer | " + " | ".join(MODE_LABELS) + " |",
            "|---|---:|" + "---|" * len(MODE_LABELS),
        ]
        for i, (question, gold) in enumerate(self.questions):
            cells = []
            for label in MODE_LABELS:
                answer, ok = self.answers[label][i]
                shown = "-" if answer is None else answer if len(answer) <= 12 else answer[:11] + "…"
                mark = " †" if label in self.unanswered and self.unanswered[label][i] else ""
                cells.append(f"{'✓' if ok else '✗'} {shown}{mark}")
            lines.append(f"| {question} | {gold} | " + " | ".join(cells) + " |")
        lines += [
            "",
            f"Soft-thinking trace of {self.trace_question!r} "
            "(the top token of each concept token; ⟨a|b p⟩: runner-up b had weight p):",
            self.trace.trace,
            f"[thinking, {self.trace_thinking}]",
            f"[answer, {self.trace.answer_tokens} tokens] {self.trace.answer or '(empty)'}",
            "",
            f"What to expect: each question is {100 / n:.0f} points of accuracy, so a difference of a question or "
            "two is noise. Soft thinking's reported gains are on 7B-32B reasoning models trained to think "
            "(arXiv:2505.15778); a small chat model such as SmolLM2-135M was never taught to think, so expect "
            "little or no gain from it here. Try a larger model with --model, or measure a task with "
            "`hf-softthink eval`.",
        ]
        return "\n".join(lines)


def run_demo(
    model: Any,
    tokenizer: Any,
    *,
    config: SoftThinkingConfig | None = None,
    prompt: str | None = DEMO_THINKING_PROMPT,
    max_new_tokens: int | None = None,
    questions: tuple[tuple[str, str], ...] | list[tuple[str, str]] = DEMO_QUESTIONS,
    model_name: str | None = None,
    progress: bool = True,
) -> DemoReport:
    """Run the demo: three decodings of ``questions``, scored, plus the soft trace of the first question.

    Args:
        model / tokenizer: a causal LM and its tokenizer (soft thinking is enabled on the model in place).
        config: the soft-thinking config; default: the budget and Cold Stop of this module, with the
            think-end marker of the prompt style (``"</think>"``, or ``"\\nAnswer:"`` without a chat
            template). Its ``max_thinking_tokens`` is the budget of hard thinking too.
        prompt: the thinking prompt (system message); ignored by completion-style prompts.
        max_new_tokens: tokens per completion in every mode (default: budget + :data:`DEMO_ANSWER_TOKENS`).
        questions: ``(question, answer)`` pairs.
        model_name: the label printed (default ``model.config._name_or_path``).
        progress: show progress bars.
    """
    think_end = default_think_end(tokenizer)
    if config is None:
        config = SoftThinkingConfig(
            max_thinking_tokens=DEMO_MAX_THINKING_TOKENS, cold_stop_entropy=DEMO_COLD_STOP_ENTROPY,
            cold_stop_patience=DEMO_COLD_STOP_PATIENCE, think_end=think_end,
        )
    if config.max_thinking_tokens is None or not isinstance(config.think_end, str):
        raise ValueError(
            "the demo needs a thinking budget and a think-end string: set max_thinking_tokens and think_end "
            f"in the SoftThinkingConfig (got max_thinking_tokens={config.max_thinking_tokens!r}, "
            f"think_end={config.think_end!r})"
        )
    budget = config.max_thinking_tokens
    if max_new_tokens is None:
        max_new_tokens = budget + DEMO_ANSWER_TOKENS
    rows = [{"question": q, "answer": a} for q, a in questions]
    common = {
        "samples": 1, "batch_size": len(rows), "max_new_tokens": max_new_tokens, "think_end": config.think_end,
        "progress": progress, "model_name": model_name,
    }
    standard = evaluate_modes(
        model, tokenizer, rows, [DecodingMode("standard")], thinking_instruction=None, max_thinking_tokens=None,
        **common,
    )
    with warnings.catch_warnings():  # the table below reports the questions without an answer
        warnings.filterwarnings("ignore", message=NO_ANSWER_WARNING, category=UserWarning)
        thinking = evaluate_modes(
            model, tokenizer, rows, [DecodingMode("hard thinking"), DecodingMode("soft thinking", config)],
            thinking_instruction=prompt, max_thinking_tokens=budget, **common,
        )
    summary = {**standard.summary, **thinking.summary}
    records = {**standard.records, **thinking.records}
    answers = {label: [(r["answers"][0], r["correct"][0]) for r in records[label]] for label in MODE_LABELS}
    unanswered = {label: [r["endings"][0] != ANSWERED for r in records[label]] for label in MODE_LABELS}
    inputs = prompt_inputs(tokenizer, questions[0][0], prompt)
    trace = trace_soft_thinking(model, tokenizer, inputs, config, max_new_tokens)
    settings = {
        "prompt": prompt if has_chat_template(tokenizer) else completion_prompt("<question>"),
        "max_new_tokens": max_new_tokens,
        **{key: getattr(config, key) for key in (
            "max_thinking_tokens", "think_end", "cold_stop_entropy", "cold_stop_patience", "max_topk",
            "temperature", "top_p", "min_p",
        )},
    }
    return DemoReport(_model_label(model, model_name), settings, summary, answers, list(questions), questions[0][0], trace,
                      trace.describe_thinking(config), unanswered)
