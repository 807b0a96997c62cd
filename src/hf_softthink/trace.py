"""A visual trace of soft thinking: what each concept token mixed, how uncertain it was, and why thinking ended.

`SoftThinkingTrace.from_generate_output(out, tokenizer)` reads a `return_dict_in_generate=True` output of a
soft-thinking `generate` (its `soft_topk_ids` / `soft_topk_weights`, `entropies` and `step_events`). Its HTML
view (`to_html`, `save_html`, and inline in Jupyter through `_repr_html_`) shows the trace token by token:

* soft steps shaded by their full-vocabulary entropy (darker: more uncertain); hovering a step (or focusing
  it with the keyboard) shows its top-K tokens and weights, its entropy and its event;
* explicit steps of switch mode outlined, forced tokens struck through in red, answer steps plain;
* markers where a row switched to explicit or back to soft, and where thinking ended and *why* (the model
  wrote the marker, the thinking budget, Cold Stop, the switch limit).

The page is self-contained (inline CSS, no script, nothing fetched) and every token is HTML-escaped, so a
token such as `<script>` is shown, never run. `plot()` draws entropy and soft / explicit mode over the steps
of every row (a matplotlib figure; `plot("trace.png")` saves it).

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
>>> trace = SoftThinkingTrace.from_generate_output(out, tokenizer)
>>> trace.rows[0].end_reason
'thinking budget'
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

from .events import FORCED_EVENTS, StepEvent, thinking_end_reason

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
_STYLE = """
.hfst{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px;line-height:2.1;color:#1d1d1f}
.hfst h3{font-family:system-ui,sans-serif;font-size:14px;margin:10px 0 2px}
.hfst .hfst-row{white-space:pre-wrap;word-break:break-word;padding:4px 0 14px;border-bottom:1px solid #ddd}
.hfst .hfst-why{font-family:system-ui,sans-serif;color:#555;font-size:12px}
.hfst .hfst-step{position:relative;padding:2px 1px;border-radius:3px;cursor:default}
.hfst .hfst-soft{background:rgba(255,140,0,var(--h))}
.hfst .hfst-explicit{outline:1px solid #2b6cb0;background:rgba(43,108,176,.08)}
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
.hfst .hfst-bar{display:inline-block;height:8px;background:#dd6b20;vertical-align:middle}
.hfst .hfst-legend span{margin-right:10px}
"""


@dataclass
class TraceStep:
    """One generated step of one row."""

    token: str
    event: StepEvent
    entropy: float | None
    candidates: list[tuple[str, float]] = field(default_factory=list)

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
    """The steps of one row, and what ended its thinking (`end_step` is `None` if thinking never ended)."""

    steps: list[TraceStep]
    end_step: int | None
    end_event: StepEvent | None
    prompt: str | None = None

    @property
    def end_reason(self) -> str | None:
        return END_REASONS[self.end_event] if self.end_event is not None else None


def _visible(text: str) -> str:
    """Token text made visible: newlines and tabs as symbols, an empty token as a dot."""
    return text.replace("\n", "⏎\n").replace("\t", "⇥") or "·"


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
    ) -> SoftThinkingTrace:
        """Build the trace of a soft-thinking `generate(..., return_dict_in_generate=True)` output.

        Args:
            output: the `SoftThinkingGenerateOutput`.
            tokenizer: decodes the token ids.
            top_k: candidates shown per soft step (at most the number recorded).
            rows: which batch rows to show (default: all).
            show_prompt: also show each row's prompt (without padding).
        """
        events = getattr(output, "step_events", None)
        if events is None or getattr(output, "soft_topk_ids", None) is None:
            raise ValueError(
                "SoftThinkingTrace needs the output of a soft-thinking generate with return_dict_in_generate=True "
                "(it reads step_events, soft_topk_ids, soft_topk_weights and entropies). Pass "
                "`return_dict_in_generate=True` and `soft_thinking=...` to generate."
            )
        new = events.shape[1]
        sequences = output.sequences
        prompt_length = sequences.shape[1] - new
        ids, weights = output.soft_topk_ids.cpu(), output.soft_topk_weights.float().cpu()
        entropies = output.entropies.float().cpu() if output.entropies is not None else None
        shown = min(top_k, ids.shape[-1])
        pad = getattr(tokenizer, "pad_token_id", None)
        traces = []
        for row in rows if rows is not None else range(sequences.shape[0]):
            row_events = events[row].cpu()
            steps = []
            for step in range(new):
                event = StepEvent(int(row_events[step]))
                if event == StepEvent.FINISHED:
                    break
                candidates = []
                if event in (StepEvent.SOFT, StepEvent.SWITCH_TO_SOFT) or (
                    event == StepEvent.SWITCH_TO_EXPLICIT and weights[row, step, 0] < 1
                ):
                    candidates = [
                        (tokenizer.decode([int(i)]), float(w))
                        for i, w in zip(ids[row, step, :shown], weights[row, step, :shown], strict=True)
                        if w > 0
                    ]
                steps.append(TraceStep(
                    token=tokenizer.decode([int(sequences[row, prompt_length + step])]),
                    event=event,
                    entropy=float(entropies[row, step]) if entropies is not None else None,
                    candidates=candidates,
                ))
            end = thinking_end_reason(row_events)
            prompt = None
            if show_prompt:
                prompt_ids = [int(t) for t in sequences[row, :prompt_length] if pad is None or int(t) != pad]
                prompt = tokenizer.decode(prompt_ids)
            traces.append(RowTrace(steps, end[0] if end else None, end[1] if end else None, prompt))
        return cls(traces, shown)

    # ------------------------------------------------------------------------------------------------ html
    def _step_html(self, index: int, step: TraceStep) -> str:
        classes = ["hfst-step", "hfst-" + ("forced" if step.forced else _CSS_CLASS.get(step.event, "answer"))]
        style = ""
        if step.soft and step.entropy is not None:
            style = f' style="--h:{0.12 + 0.7 * min(step.entropy / self.max_entropy, 1.0):.3f}"'
        header = f"step {index} · {EVENT_LABELS[step.event]}"
        if step.entropy is not None:
            header += f" · H = {step.entropy:.3f} nats"
        rows = "".join(
            f'<tr><td>{html.escape(repr(text)[1:-1])}</td><td>{weight:.3f}</td>'
            f'<td><span class="hfst-bar" style="width:{round(60 * weight)}px"></span></td></tr>'
            for text, weight in step.candidates
        )
        table = f"<table>{rows}</table>" if rows else ""
        tip = f'<span class="hfst-tip" role="tooltip"><b>{html.escape(header)}</b>{table}</span>'
        token = html.escape(_visible(step.token))
        return (f'<span class="{" ".join(classes)}"{style} tabindex="0" data-step="{index}" '
                f'data-event="{step.event.name.lower()}">{token}{tip}</span>')

    def _row_html(self, number: int, row: RowTrace) -> str:
        why = f"thinking ended at step {row.end_step}: {row.end_reason}" if row.end_step is not None else (
            "thinking did not end")
        parts = [f'<h3>row {number} <span class="hfst-why">— {html.escape(why)}</span></h3>']
        if row.prompt is not None:
            parts.append(f'<div class="hfst-why">prompt: {html.escape(row.prompt)}</div>')
        parts.append('<div class="hfst-row">')
        for index, step in enumerate(row.steps):
            if step.event == StepEvent.SWITCH_TO_EXPLICIT:
                parts.append('<span class="hfst-flag hfst-flag-explicit">→ explicit</span>')
            elif step.event == StepEvent.SWITCH_TO_SOFT:
                parts.append('<span class="hfst-flag hfst-flag-soft">→ soft</span>')
            if index == row.end_step:
                parts.append(f'<span class="hfst-flag hfst-flag-end">think-end: {html.escape(row.end_reason)}</span>')
            parts.append(self._step_html(index, step))
        parts.append("</div>")
        return "".join(parts)

    def to_html(self, title: str | None = None) -> str:
        """An HTML fragment (inline CSS, no script, no external resource) of every row of the trace."""
        legend = (
            '<div class="hfst-legend hfst-why"><span class="hfst-step hfst-soft" style="--h:.6">soft</span>'
            '(shade: entropy; hover for the mixture) <span class="hfst-step hfst-explicit">explicit</span>'
            '<span class="hfst-step hfst-forced">forced</span><span class="hfst-step hfst-marker">think-end</span>'
            '<span class="hfst-step hfst-answer">answer</span></div>'
        )
        heading = f"<h3>{html.escape(title)}</h3>" if title else ""
        rows = "".join(self._row_html(number, row) for number, row in enumerate(self.rows))
        return f'<div class="hfst"><style>{_STYLE}</style>{heading}{legend}{rows}</div>'

    def _repr_html_(self) -> str:
        return self.to_html()

    def save_html(self, path: str | Path, title: str = "Soft-thinking trace") -> Path:
        """Write a standalone HTML page of the trace; returns its path."""
        path = Path(path)
        page = (
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{html.escape(title)}</title></head><body>{self.to_html(title)}</body></html>\n"
        )
        path.write_text(page, encoding="utf-8")
        return path

    # ------------------------------------------------------------------------------------------------ plot
    def plot(self, path: str | Path | None = None):
        """Entropy per step of every row, with the soft / explicit / forced / answer mode shaded beneath.

        Returns a `matplotlib.figure.Figure` (no pyplot state is touched); with `path`, also saves it (PNG by
        the file suffix).
        """
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch

        colours = {"soft": "#f6ad55", "explicit": "#90cdf4", "forced": "#feb2b2", "answer": "#e2e8f0"}
        figure = Figure(figsize=(10, 1.9 * len(self.rows) + 0.6))
        axes = figure.subplots(len(self.rows), 1, sharex=True, squeeze=False)
        for number, (row, ax) in enumerate(zip(self.rows, axes[:, 0], strict=True)):
            for index, step in enumerate(row.steps):
                ax.axvspan(index - 0.5, index + 0.5, color=colours[step.mode], linewidth=0)
            entropy = [s.entropy if s.entropy is not None else float("nan") for s in row.steps]
            ax.plot(range(len(entropy)), entropy, color="#1a202c", linewidth=1.2, marker=".", markersize=3)
            if row.end_step is not None:
                ax.axvline(row.end_step, color="#2f855a", linewidth=1.5)
                ax.annotate(f"think-end: {row.end_reason}", (row.end_step, 1), xycoords=("data", "axes fraction"),
                            xytext=(3, -12), textcoords="offset points", fontsize=8, color="#2f855a")
            ax.set_ylabel(f"row {number}\nH (nats)", fontsize=8)
            ax.set_xlim(-0.5, max(len(row.steps), 1) - 0.5)
        axes[-1, 0].set_xlabel("generated step")
        handles = [Patch(color=c, label=k) for k, c in colours.items()]
        figure.legend(handles=handles, loc="upper right", ncol=4, fontsize=8, frameon=False)
        figure.suptitle("Soft-thinking trace: full-vocabulary entropy and mode per step", fontsize=10, x=0.3)
        figure.tight_layout(rect=(0, 0, 1, 0.95))
        if path is not None:
            figure.savefig(path, dpi=120)
        return figure

