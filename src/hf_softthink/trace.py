"""A visual trace of soft thinking: what each concept token mixed, how uncertain it was, and why thinking ended.

`SoftThinkingTrace.from_generate_output(out, tokenizer)` reads a `return_dict_in_generate=True` output of a
soft-thinking `generate` (its `soft_topk_ids` / `soft_topk_weights`, `entropies` and `step_events`). Its HTML
view (`to_html`, `save_html`, and inline in Jupyter through `_repr_html_`) shows, per row:

* a summary line: soft steps, why thinking ended, the extracted answer and, given `gold_answers`, whether it is
  right;
* the entropy curve of the row (an inline SVG: soft steps shaded, the think-end step marked; hover a step of
  the curve for its token and entropy);
* the trace token by token: soft steps shaded by their full-vocabulary entropy (darker: more uncertain; a
  colour key gives the scale); hovering a step (or focusing it with the keyboard) shows its top-K tokens and
  weights, the weight left to the tokens not shown, its entropy and its event; explicit steps of switch mode
  outlined, forced tokens struck through in red, answer steps plain; markers where a row switched to explicit
  or back to soft, and where thinking ended and *why* (the model wrote the marker, the thinking budget, Cold
  Stop, the switch limit).

`to_html(compare=other)` / `save_html(..., compare=other)` puts another trace beside it, row by row: typically
the same prompt decoded with ordinary tokens (`SoftThinkingTrace.from_ordinary_output`, what
`hf-softthink generate --compare --html` writes). The page is self-contained (inline CSS and SVG, no script,
nothing fetched) and every token is HTML-escaped, so a token such as `<script>` is shown, never run. `plot()`
draws entropy and soft / explicit mode over the steps of every row, with each step's token on the x axis (a
matplotlib figure; `plot("trace.png")` saves it).

Example:

```python
>>> import torch
>>> from hf_softthink import SoftThinkingConfig, enable_soft_thinking
>>> from hf_softthink.models import tiny_model, tiny_tokenizer
>>> from hf_softthink.trace import SoftThinkingTrace
>>> model, tokenizer = enable_soft_thinking(tiny_model("llama")), tiny_tokenizer()
>>> prompt = tokenizer(["What is 2 + 2?"], return_tensors="pt")
>>> out = model.generate(**prompt, max_new_tokens=6, do_sample=False, return_dict_in_generate=True,
...                      soft_thinking=SoftThinkingConfig(max_thinking_tokens=4), tokenizer=tokenizer)
>>> trace = SoftThinkingTrace.from_generate_output(out, tokenizer, gold_answers="4")
>>> trace.rows[0].end_reason
'thinking budget'
>>> trace.rows[0].summary().startswith("4 soft steps · thinking ended at step 4: thinking budget")
True
>>> "</think>" in trace.to_html(), "<script" in trace.to_html()
(False, False)

```
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .evaluation_metrics import extract_answer, grade_completion
from .events import FORCED_EVENTS, StepEvent, thinking_end_reason
from .processors import full_entropy

#: why thinking ended, by the event that ended it
END_REASONS = {
    StepEvent.THINK_END: "the model wrote the think-end marker",
    StepEvent.FORCED_BUDGET: "thinking budget",
    StepEvent.FORCED_COLD_STOP: "Cold Stop",
    StepEvent.FORCED_SWITCH_LIMIT: "switch limit",
    StepEvent.STOP_DECISION: "a sampled stop decision (end of sequence or the think-end marker)",
}
#: short label of each event in the tooltip
EVENT_LABELS = {
    StepEvent.FINISHED: "finished",
    StepEvent.SOFT: "soft",
    StepEvent.EXPLICIT: "explicit",
    StepEvent.SWITCH_TO_EXPLICIT: "switch to explicit",
    StepEvent.SWITCH_TO_SOFT: "switch to soft",
    StepEvent.THINK_END: "think-end (natural)",
    StepEvent.FORCED_BUDGET: "think-end forced: thinking budget",
    StepEvent.FORCED_COLD_STOP: "think-end forced: Cold Stop",
    StepEvent.FORCED_SWITCH_LIMIT: "think-end forced: switch limit",
    StepEvent.FORCED_SPELLING: "forced: think-end marker",
    StepEvent.FORCED_FINAL_ANSWER: "forced: final answer",
    StepEvent.ANSWER: "answer",
    StepEvent.STOP_DECISION: "stop (sampled)",
}
_CSS_CLASS = {
    StepEvent.SOFT: "soft",
    StepEvent.SWITCH_TO_SOFT: "soft",
    StepEvent.EXPLICIT: "explicit",
    StepEvent.SWITCH_TO_EXPLICIT: "explicit",
    StepEvent.THINK_END: "marker",
    StepEvent.STOP_DECISION: "marker",
    StepEvent.ANSWER: "answer",
}
#: the shade of a soft step: alpha = SHADE_MIN + SHADE_RANGE * H / H_max (the colour key shows the scale)
SHADE_MIN, SHADE_RANGE = 0.12, 0.7
#: height of the inline entropy curve (px)
CURVE_HEIGHT = 44
#: the PNG labels at most this many steps of a row on its x axis (every n-th step beyond)
MAX_TOKEN_LABELS = 80
_STYLE = """
.hfst{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px;line-height:2.1;color:#1d1d1f}
.hfst h3{font-family:system-ui,sans-serif;font-size:14px;margin:10px 0 2px}
.hfst .hfst-trace{min-width:0}
.hfst .hfst-row{white-space:pre-wrap;word-break:break-word;padding:4px 0 14px;border-bottom:1px solid #ddd}
.hfst .hfst-why{font-family:system-ui,sans-serif;color:#555;font-size:12px}
.hfst .hfst-summary{font-family:system-ui,sans-serif;font-size:12px;line-height:1.5;color:#333}
.hfst .hfst-right{color:#2f855a;font-weight:bold}.hfst .hfst-wrong{color:#b00020;font-weight:bold}
.hfst .hfst-compare{display:grid;grid-template-columns:1fr 1fr;column-gap:24px}
.hfst .hfst-column{font-family:system-ui,sans-serif;font-size:15px;margin:8px 0 0;border-bottom:2px solid #999}
.hfst .hfst-curve{display:flex;align-items:stretch;gap:4px;margin:4px 0;line-height:1}
.hfst .hfst-axis{display:flex;flex-direction:column;justify-content:space-between;font-family:system-ui,sans-serif;
  font-size:10px;color:#777;text-align:right;min-width:44px}
.hfst .hfst-curve svg{flex:1;height:""" + str(CURVE_HEIGHT) + """px;background:#fafafa;border:1px solid #e2e2e2}
.hfst .hfst-step{position:relative;padding:2px 1px;border-radius:3px;cursor:default}
.hfst .hfst-soft{background:rgba(255,140,0,var(--h))}
.hfst .hfst-explicit{outline:1px solid #2b6cb0;background:rgba(43,108,176,.08)}
.hfst .hfst-ordinary{background:rgba(43,108,176,.08)}
.hfst .hfst-forced{color:#b00020;text-decoration:line-through;background:rgba(176,0,32,.08)}
.hfst .hfst-marker{color:#2f855a;font-weight:bold}
.hfst .hfst-answer{color:#333}
.hfst .hfst-finished{color:#aaa}
.hfst .hfst-flag{font-family:system-ui,sans-serif;font-size:10px;padding:1px 4px;margin:0 2px;border-radius:8px;
  color:#fff;vertical-align:super}
.hfst .hfst-flag-end{background:#2f855a}.hfst .hfst-flag-explicit{background:#2b6cb0}
.hfst .hfst-flag-soft{background:#dd6b20}
.hfst .hfst-tip{display:none;position:absolute;left:0;top:1.9em;z-index:10;min-width:190px;white-space:nowrap;
  background:#fff;border:1px solid #999;border-radius:4px;padding:6px 8px;box-shadow:0 2px 8px rgba(0,0,0,.25);
  font-size:12px;line-height:1.4;color:#1d1d1f;text-decoration:none}
.hfst .hfst-step:hover>.hfst-tip,.hfst .hfst-step:focus>.hfst-tip{display:block}
.hfst .hfst-tip table{border-collapse:collapse;margin-top:4px}
.hfst .hfst-tip td{padding:0 6px 0 0}
.hfst .hfst-others td{color:#777;font-style:italic}
.hfst .hfst-bar{display:inline-block;height:8px;background:#dd6b20;vertical-align:middle}
.hfst .hfst-others .hfst-bar{background:#aaa}
.hfst .hfst-legend span{margin-right:10px}
.hfst .hfst-key{white-space:nowrap}
.hfst .hfst-gradient{display:inline-block;width:120px;height:10px;margin:0 4px;vertical-align:middle;
  border:1px solid #ccc;background:linear-gradient(to right,rgba(255,140,0,.12),rgba(255,140,0,.82))}
"""


@dataclass
class TraceStep:
    """One generated step of one row.

    `candidates` are the top mixed tokens shown (text, weight); `other_weight` is the weight of the mixture left
    to the tokens not shown, `other_count` how many recorded tokens with weight > 0 that is (the whole mixture is
    recorded when the config bounds it; a full-vocabulary mixture records its 32 largest weights, and
    `other_weight` then also holds the unrecorded rest).
    """

    token: str
    event: StepEvent
    entropy: float | None
    candidates: list[tuple[str, float]] = field(default_factory=list)
    token_id: int | None = None
    other_weight: float = 0.0
    other_count: int = 0

    @property
    def soft(self) -> bool:
        return self.event in (StepEvent.SOFT, StepEvent.SWITCH_TO_SOFT)

    @property
    def forced(self) -> bool:
        return self.event in FORCED_EVENTS

    @property
    def mode(self) -> str:
        """'soft', 'explicit' (a discrete thinking token, the natural think-end included), 'forced' or 'answer'."""
        if self.forced:
            return "forced"
        if self.soft:
            return "soft"
        if self.event in (StepEvent.EXPLICIT, StepEvent.SWITCH_TO_EXPLICIT, StepEvent.THINK_END):
            return "explicit"
        return "answer"


@dataclass
class RowTrace:
    """The steps of one row, what ended its thinking (`end_step` is `None` if thinking never ended), and its answer.

    `answer_text` is the text after the think-end marker (`None` when thinking never ended), `answer` the answer
    extracted from it (`\\boxed{}`, else the last number, else the text), `gold` / `correct` the gold answer and
    the verdict when one was given. `ordinary` marks a row decoded with ordinary tokens (its thinking steps are
    `EXPLICIT`).
    """

    steps: list[TraceStep]
    end_step: int | None
    end_event: StepEvent | None
    prompt: str | None = None
    answer_text: str | None = None
    answer: str | None = None
    gold: str | None = None
    correct: bool | None = None
    ordinary: bool = False

    @property
    def end_reason(self) -> str | None:
        return END_REASONS[self.end_event] if self.end_event is not None else None

    @property
    def soft_steps(self) -> int:
        return sum(step.soft for step in self.steps)

    def summary(self) -> str:
        """One line: the thinking steps, why thinking ended, the answer and (with a gold answer) the verdict."""
        if self.ordinary:
            thinking = self.end_step if self.end_step is not None else len(self.steps)
            parts = [f"{thinking} ordinary thinking tokens"]
        else:
            explicit = sum(s.event in (StepEvent.EXPLICIT, StepEvent.SWITCH_TO_EXPLICIT) for s in self.steps)
            parts = [f"{self.soft_steps} soft steps" + (f", {explicit} explicit" if explicit else "")]
        if self.end_step is None:
            parts.append("thinking did not end: no answer")
        else:
            parts.append(f"thinking ended at step {self.end_step}: {self.end_reason}")
            shown = self.answer if self.answer is not None else "(empty)" if not (self.answer_text or "").strip() \
                else "(none found)"
            parts.append(f"answer: {_short(shown)}")
        if self.correct is not None:
            parts.append(("right" if self.correct else "wrong") + f" (gold {_short(self.gold)})")
        return " · ".join(parts)


def _short(text: str | None, limit: int = 40) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _visible(text: str) -> str:
    """Token text made visible: newlines and tabs as symbols, an empty token as a dot."""
    return text.replace("\n", "⏎\n").replace("\t", "⇥") or "·"


def _gold_per_row(gold_answers: Any, count: int) -> list[str | None]:
    if gold_answers is None or isinstance(gold_answers, str):
        return [gold_answers] * count
    golds = [None if g is None else str(g) for g in gold_answers]
    if len(golds) != count:
        raise ValueError(f"gold_answers has {len(golds)} entries for {count} rows: give one per row shown, or one "
                         "string for every row.")
    return golds


def _finish_row(steps: list[TraceStep], row_events: torch.Tensor, tokenizer: Any, gold: str | None,
                prompt: str | None, ordinary: bool = False) -> RowTrace:
    """A `RowTrace` with what ended its thinking, its answer text (after the marker and the marker pieces the
    decoder forced right after it) and, with a gold answer, the verdict."""
    end = thinking_end_reason(row_events[: len(steps)])
    answer_text = answer = correct = None
    if end is not None:
        start = end[0] + 1
        while start < len(steps) and steps[start].event == StepEvent.FORCED_SPELLING:
            start += 1
        ids = [s.token_id for s in steps[start:] if s.token_id is not None]
        answer_text = tokenizer.decode(ids, skip_special_tokens=True)
        if gold is not None:
            answer, correct = grade_completion(answer_text, gold, think_end=None)
        else:
            answer = extract_answer(answer_text, None, fallback="text")
    elif gold is not None:
        correct = False
    return RowTrace(steps, end[0] if end else None, end[1] if end else None, prompt, answer_text, answer, gold,
                    correct, ordinary)


def _prompt_text(tokenizer: Any, sequence: torch.Tensor, prompt_length: int) -> str:
    pad = getattr(tokenizer, "pad_token_id", None)
    return tokenizer.decode([int(t) for t in sequence[:prompt_length] if pad is None or int(t) != pad])


class SoftThinkingTrace:
    """The per-step view of a soft-thinking generation, renderable as HTML and as an entropy plot."""

    def __init__(self, rows: list[RowTrace], top_k: int):
        self.rows, self.top_k = rows, top_k
        entropies = [s.entropy for row in rows for s in row.steps if s.entropy is not None and s.soft]
        self.max_entropy = max(entropies, default=0.0) or 1.0

    def __repr__(self) -> str:
        steps = sum(len(r.steps) for r in self.rows)
        soft = sum(s.soft for r in self.rows for s in r.steps)
        return f"SoftThinkingTrace(rows={len(self.rows)}, steps={steps}, soft_steps={soft}, top_k={self.top_k})"

    @classmethod
    def from_generate_output(
        cls,
        output: Any,
        tokenizer: Any,
        *,
        top_k: int = 5,
        rows: Sequence[int] | None = None,
        show_prompt: bool = False,
        gold_answers: str | Sequence[str | None] | None = None,
    ) -> SoftThinkingTrace:
        """Build the trace of a soft-thinking `generate(..., return_dict_in_generate=True)` output.

        Args:
            output: the `SoftThinkingGenerateOutput`.
            tokenizer: decodes the token ids.
            top_k: candidates shown per soft step (at most the number recorded).
            rows: which batch rows to show (default: all).
            show_prompt: also show each row's prompt (without padding).
            gold_answers: the gold answer of each row shown (or one string for all): each row's summary then
                says whether its answer is right (math-verify comparison, as `hf-softthink eval` grades).
        """
        events = getattr(output, "step_events", None)
        if events is None or getattr(output, "soft_topk_ids", None) is None:
            raise ValueError(
                "SoftThinkingTrace needs the output of a soft-thinking generate with return_dict_in_generate=True "
                "(it reads step_events, soft_topk_ids, soft_topk_weights and entropies). Pass "
                "`return_dict_in_generate=True` and `soft_thinking=...` to generate."
            )
        events = events.as_subclass(torch.Tensor).cpu()
        new = events.shape[1]
        sequences = output.sequences
        prompt_length = sequences.shape[1] - new
        ids, weights = output.soft_topk_ids.cpu(), output.soft_topk_weights.float().cpu()
        entropies = output.entropies.float().cpu() if output.entropies is not None else None
        shown = min(top_k, ids.shape[-1])
        chosen = list(rows) if rows is not None else list(range(sequences.shape[0]))
        golds = _gold_per_row(gold_answers, len(chosen))
        traces = []
        for row, gold in zip(chosen, golds, strict=True):
            row_events = events[row]
            steps = []
            for step in range(new):
                event = StepEvent(int(row_events[step]))
                if event == StepEvent.FINISHED:
                    break
                candidates, other_weight, other_count = [], 0.0, 0
                if event in (StepEvent.SOFT, StepEvent.SWITCH_TO_SOFT) or (
                    event == StepEvent.SWITCH_TO_EXPLICIT and weights[row, step, 0] < 1
                ):
                    candidates = [
                        (tokenizer.decode([int(i)]), float(w))
                        for i, w in zip(ids[row, step, :shown], weights[row, step, :shown], strict=True)
                        if w > 0
                    ]
                    other_weight = max(0.0, 1.0 - sum(w for _, w in candidates))
                    other_count = int((weights[row, step, shown:] > 0).sum())
                token_id = int(sequences[row, prompt_length + step])
                steps.append(TraceStep(
                    token=tokenizer.decode([token_id]),
                    event=event,
                    entropy=float(entropies[row, step]) if entropies is not None else None,
                    candidates=candidates,
                    token_id=token_id,
                    other_weight=other_weight,
                    other_count=other_count,
                ))
            prompt = _prompt_text(tokenizer, sequences[row], prompt_length) if show_prompt else None
            traces.append(_finish_row(steps, row_events, tokenizer, gold, prompt))
        return cls(traces, shown)

    @classmethod
    def from_ordinary_output(
        cls,
        output: Any,
        tokenizer: Any,
        *,
        prompt_length: int,
        think_end: str,
        max_thinking_tokens: int | None = None,
        temperature: float = 1.0,
        rows: Sequence[int] | None = None,
        show_prompt: bool = False,
        gold_answers: str | Sequence[str | None] | None = None,
    ) -> SoftThinkingTrace:
        """The trace of an *ordinary* `generate` (no soft thinking) of a thinking prompt, to show beside a soft
        trace (`to_html(compare=...)`).

        Its steps are the tokens after the prompt, up to the first end-of-sequence token: thinking tokens
        (`EXPLICIT`) up to the first `think_end` (matched on the decoded text), the marker (`THINK_END` on its last
        piece when the model wrote it; `FORCED_BUDGET` then `FORCED_SPELLING` when it starts at
        `max_thinking_tokens`, where `hf_softthink.processors.HardThinkingBudgetProcessor` forces it), then the
        answer. With `output.logits` (`generate(..., output_logits=True, return_dict_in_generate=True)`) each step
        gets the full-vocabulary entropy of softmax(logits / `temperature`) as the soft decoder computes it
        (`hf_softthink.processors.full_entropy`), at the soft trace's thinking temperature for a like-for-like curve.

        Args:
            output: the `generate` output (with `return_dict_in_generate=True`) or its `sequences` tensor.
            prompt_length: the prompt's length in `sequences`.
            think_end / max_thinking_tokens: the marker and the thinking budget of that decoding.
            temperature: the temperature of the entropies.
            rows, show_prompt, gold_answers: as in `from_generate_output`.
        """
        from .evaluation.decoding import _think_end_span

        sequences = output if isinstance(output, torch.Tensor) else output.sequences
        logits = getattr(output, "logits", None)
        eos = getattr(tokenizer, "eos_token_id", None)
        chosen = list(rows) if rows is not None else list(range(sequences.shape[0]))
        golds = _gold_per_row(gold_answers, len(chosen))
        traces = []
        for row, gold in zip(chosen, golds, strict=True):
            new = sequences[row, prompt_length:].tolist()
            length = next((i + 1 for i, token in enumerate(new) if token == eos), len(new))
            new = new[:length]
            span = _think_end_span(tokenizer, new, think_end)
            events = [StepEvent.EXPLICIT] * length
            if span is not None:
                events[span[1]:] = [StepEvent.ANSWER] * (length - span[1])
                if max_thinking_tokens is not None and span[0] >= max_thinking_tokens:
                    events[span[0]:span[1]] = [StepEvent.FORCED_BUDGET] + [StepEvent.FORCED_SPELLING] * (
                        span[1] - span[0] - 1)
                else:
                    events[span[1] - 1] = StepEvent.THINK_END
            entropies: list[float | None] = [None] * length
            if logits:
                scored = min(length, len(logits))
                entropies[:scored] = full_entropy(torch.stack([s[row] for s in logits[:scored]]), temperature).tolist()
            steps = [TraceStep(tokenizer.decode([token]), event, entropy, token_id=token)
                     for token, event, entropy in zip(new, events, entropies, strict=True)]
            prompt = _prompt_text(tokenizer, sequences[row], prompt_length) if show_prompt else None
            traces.append(_finish_row(steps, torch.tensor([int(e) for e in events], dtype=torch.uint8), tokenizer,
                                      gold, prompt, ordinary=True))
        return cls(traces, 0)

    # ------------------------------------------------------------------------------------------------ html
    def _step_html(self, index: int, step: TraceStep, ordinary: bool) -> str:
        kind = "forced" if step.forced else _CSS_CLASS.get(step.event, "answer")
        if ordinary and step.event == StepEvent.EXPLICIT:
            kind = "ordinary"
        classes = ["hfst-step", "hfst-" + kind]
        style = ""
        if step.soft and step.entropy is not None:
            style = f' style="--h:{SHADE_MIN + SHADE_RANGE * min(step.entropy / self.max_entropy, 1.0):.3f}"'
        label = "ordinary thinking token" if kind == "ordinary" else EVENT_LABELS[step.event]
        header = f"step {index} · {label}"
        if step.entropy is not None:
            header += f" · H = {step.entropy:.3f} nats"
        rows = "".join(
            f'<tr><td>{html.escape(repr(text)[1:-1])}</td><td>{weight:.3f}</td>'
            f'<td><span class="hfst-bar" style="width:{round(60 * weight)}px"></span></td></tr>'
            for text, weight in step.candidates
        )
        if step.candidates and (step.other_count or step.other_weight >= 0.0005):
            count = f"{step.other_count} other" + ("s" if step.other_count != 1 else "")
            rows += (f'<tr class="hfst-others"><td>{count}</td><td>{step.other_weight:.3f}</td>'
                     f'<td><span class="hfst-bar" style="width:{round(60 * step.other_weight)}px"></span></td></tr>')
        table = f"<table>{rows}</table>" if rows else ""
        tip = f'<span class="hfst-tip" role="tooltip"><b>{html.escape(header)}</b>{table}</span>'
        token = html.escape(_visible(step.token))
        return (f'<span class="{" ".join(classes)}"{style} tabindex="0" data-step="{index}" '
                f'data-event="{step.event.name.lower()}">{token}{tip}</span>')

    @staticmethod
    def _curve_html(row: RowTrace, top: float) -> str:
        """The row's entropy per step as an inline SVG: soft steps shaded, the think-end step as a green line,
        each step's token and entropy in its hover title."""
        n = max(len(row.steps), 1)
        height = CURVE_HEIGHT
        shapes = []
        for index, step in enumerate(row.steps):
            if step.soft:
                shapes.append(f'<rect x="{index}" y="0" width="1" height="{height}" fill="rgba(255,140,0,.22)"/>')
        if row.end_step is not None:
            x = row.end_step + 0.5
            shapes.append(f'<line class="hfst-curve-end" x1="{x}" x2="{x}" y1="0" y2="{height}" stroke="#2f855a" '
                          'stroke-width="2" vector-effect="non-scaling-stroke"/>')
        points = " ".join(
            f"{index + 0.5},{height - (height - 2) * min(step.entropy / top, 1.0):.2f}"
            for index, step in enumerate(row.steps) if step.entropy is not None
        )
        if points:
            shapes.append(f'<polyline points="{points}" fill="none" stroke="#1a202c" stroke-width="1.5" '
                          'vector-effect="non-scaling-stroke"/>')
        for index, step in enumerate(row.steps):
            entropy = f" · H = {step.entropy:.3f} nats" if step.entropy is not None else ""
            title = html.escape(f"step {index} · {repr(step.token)[1:-1]}{entropy}")
            shapes.append(f'<rect x="{index}" y="0" width="1" height="{height}" fill="transparent">'
                          f"<title>{title}</title></rect>")
        svg = (f'<svg viewBox="0 0 {n} {height}" preserveAspectRatio="none" role="img" '
               f'aria-label="entropy per step" data-steps="{len(row.steps)}">{"".join(shapes)}</svg>')
        axis = f'<span>{top:.2f}</span><span>H (nats)</span><span>0</span>'
        return f'<div class="hfst-curve"><div class="hfst-axis">{axis}</div>{svg}</div>'

    def _row_html(self, number: int, row: RowTrace, top: float) -> str:
        why = f"thinking ended at step {row.end_step}: {row.end_reason}" if row.end_step is not None else (
            "thinking did not end")
        verdict = ""
        if row.correct is not None:
            verdict = (f' data-correct="{str(row.correct).lower()}"')
        parts = [f'<section class="hfst-trace" data-row="{number}">',
                 f'<h3>row {number} <span class="hfst-why">— {html.escape(why)}</span></h3>',
                 f'<div class="hfst-summary"{verdict}>{self._summary_html(row)}</div>']
        if row.prompt is not None:
            parts.append(f'<div class="hfst-why">prompt: {html.escape(row.prompt)}</div>')
        parts.append(self._curve_html(row, top))
        parts.append('<div class="hfst-row">')
        for index, step in enumerate(row.steps):
            if step.event == StepEvent.SWITCH_TO_EXPLICIT:
                parts.append('<span class="hfst-flag hfst-flag-explicit">→ explicit</span>')
            elif step.event == StepEvent.SWITCH_TO_SOFT:
                parts.append('<span class="hfst-flag hfst-flag-soft">→ soft</span>')
            if index == row.end_step:
                parts.append(f'<span class="hfst-flag hfst-flag-end">think-end: {html.escape(row.end_reason)}</span>')
            parts.append(self._step_html(index, step, row.ordinary))
        parts.append("</div></section>")
        return "".join(parts)

    @staticmethod
    def _summary_html(row: RowTrace) -> str:
        text = html.escape(row.summary())
        if row.correct is not None:  # the verdict in colour
            word = "right" if row.correct else "wrong"
            text = text.replace(f"· {word} (", f'· <span class="hfst-{word}">{word}</span> (', 1)
        return text

    def _legend_html(self) -> str:
        return (
            '<div class="hfst-legend hfst-why"><span class="hfst-step hfst-soft" style="--h:.6">soft</span>'
            f'<span class="hfst-key">shade = entropy: 0 <span class="hfst-gradient"></span> '
            f'{self.max_entropy:.2f} nats (hover a step for its mixture)</span>'
            '<span class="hfst-step hfst-explicit">explicit</span><span class="hfst-step hfst-ordinary">ordinary</span>'
            '<span class="hfst-step hfst-forced">forced</span><span class="hfst-step hfst-marker">think-end</span>'
            '<span class="hfst-step hfst-answer">answer</span></div>'
        )

    def to_html(
        self,
        title: str | None = None,
        *,
        compare: SoftThinkingTrace | None = None,
        labels: tuple[str, str] = ("soft thinking", "ordinary tokens"),
    ) -> str:
        """An HTML fragment (inline CSS and SVG, no script, no external resource) of every row of the trace.

        Args:
            title: a heading.
            compare: another trace (e.g. `from_ordinary_output` of the same prompts) shown beside this one, row
                by row; both share the entropy scale of their curves.
            labels: the two columns' headings when comparing.
        """
        heading = f"<h3>{html.escape(title)}</h3>" if title else ""
        traces = [self] if compare is None else [self, compare]
        top = max((s.entropy for t in traces for r in t.rows for s in r.steps if s.entropy is not None),
                  default=0.0) or 1.0
        if compare is None:
            body = "".join(self._row_html(number, row, top) for number, row in enumerate(self.rows))
        else:
            cells = [f'<h2 class="hfst-column">{html.escape(label)}</h2>' for label in labels]
            for number in range(max(len(self.rows), len(compare.rows))):
                for trace in traces:
                    row = trace.rows[number] if number < len(trace.rows) else None
                    cells.append(trace._row_html(number, row, top) if row is not None else "<div></div>")
            body = f'<div class="hfst-compare">{"".join(cells)}</div>'
        return f'<div class="hfst"><style>{_STYLE}</style>{heading}{self._legend_html()}{body}</div>'

    def _repr_html_(self) -> str:
        return self.to_html()

    def save_html(
        self,
        path: str | Path,
        title: str = "Soft-thinking trace",
        *,
        compare: SoftThinkingTrace | None = None,
        labels: tuple[str, str] = ("soft thinking", "ordinary tokens"),
    ) -> Path:
        """Write a standalone HTML page of the trace (beside `compare`, if given); returns its path."""
        path = Path(path)
        page = (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title></head><body>{self.to_html(title, compare=compare, labels=labels)}"
            "</body></html>\n"
        )
        path.write_text(page, encoding="utf-8")
        return path

    # ------------------------------------------------------------------------------------------------ plot
    def plot(self, path: str | Path | None = None):
        """Entropy per step of every row, with the soft / explicit / forced / answer mode shaded beneath and each
        step's token on the x axis (every n-th token on rows longer than `MAX_TOKEN_LABELS` steps).

        Returns a `matplotlib.figure.Figure` (no pyplot state is touched); with `path`, also saves it (PNG by
        the file suffix).
        """
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch

        colours = {"soft": "#f6ad55", "explicit": "#90cdf4", "forced": "#feb2b2", "answer": "#e2e8f0"}
        figure = Figure(figsize=(10, 2.9 * len(self.rows) + 0.6))
        axes = figure.subplots(len(self.rows), 1, squeeze=False)
        for number, (row, ax) in enumerate(zip(self.rows, axes[:, 0], strict=True)):
            for index, step in enumerate(row.steps):
                ax.axvspan(index - 0.5, index + 0.5, color=colours[step.mode], linewidth=0)
            entropy = [s.entropy if s.entropy is not None else float("nan") for s in row.steps]
            ax.plot(range(len(entropy)), entropy, color="#1a202c", linewidth=1.2, marker=".", markersize=3)
            length = max(len(row.steps), 1)
            if row.end_step is not None:
                ax.axvline(row.end_step, color="#2f855a", linewidth=1.5)
                right_half = row.end_step > length / 2  # the label goes on the side with room, inside the axes
                ax.annotate(f"think-end: {row.end_reason}", (row.end_step, 0.97), xycoords=("data", "axes fraction"),
                            xytext=(-4 if right_half else 4, 0), textcoords="offset points", fontsize=8,
                            color="#2f855a", ha="right" if right_half else "left", va="top", annotation_clip=True,
                            bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "none", "alpha": 0.8})
            every = -(-len(row.steps) // MAX_TOKEN_LABELS) or 1
            ticks = list(range(0, len(row.steps), every))
            ax.set_xticks(ticks)
            ax.set_xticklabels([_tick_label(row.steps[i].token) for i in ticks], rotation=90, fontsize=6,
                               fontfamily="monospace")
            ax.set_ylabel(f"row {number}\nH (nats)", fontsize=8)
            ax.set_xlim(-0.5, length - 0.5)
            ax.set_xlabel("generated step (its token)" + (f"; every {every}th labelled" if every > 1 else ""),
                          fontsize=8)
        handles = [Patch(color=c, label=k) for k, c in colours.items()]
        figure.legend(handles=handles, loc="upper right", ncol=4, fontsize=8, frameon=False)
        figure.suptitle("Soft-thinking trace: full-vocabulary entropy and mode per step", fontsize=10, x=0.3)
        figure.tight_layout(rect=(0, 0, 1, 0.95))
        if path is not None:
            figure.savefig(path, dpi=120)
        return figure


def _tick_label(token: str, limit: int = 10) -> str:
    """A token as an x-axis label: whitespace made visible, `$` escaped (matplotlib would read maths), cut short."""
    text = token.replace("\n", "⏎").replace("\t", "⇥").replace(" ", "␣") or "·"
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("$", r"\$")
