"""What each decoding step of a soft-thinking `generate` was, and why thinking ended.

The decoder records one `StepEvent` per row and generated step in `SoftThinkingGenerateOutput.step_events`
(a `(batch, new_tokens)` `torch.uint8` tensor). Exactly one code per step, chosen by priority: a finished
row's padding, then a forced token (and what forced it), then a natural think-end, then the kind of
thinking step (switch, soft, explicit), then the answer.

Example:

```python
>>> import torch
>>> from hf_softthink.events import StepEvent, forced_mask, thinking_end_reason
>>> events = torch.tensor([[StepEvent.SOFT, StepEvent.SOFT, StepEvent.FORCED_BUDGET, StepEvent.ANSWER]])
>>> forced_mask(events).tolist()
[[False, False, True, False]]
>>> thinking_end_reason(events[0])
(2, <StepEvent.FORCED_BUDGET: 6>)

```
"""

from __future__ import annotations

import enum

import torch


class StepEvent(enum.IntEnum):
    """Per-step event codes of `SoftThinkingGenerateOutput.step_events`.

    * `FINISHED` (0): the row had already finished (EOS, a stopping criterion); the step is padding.
    * `SOFT` (1): a step that fed a concept token (a thinking step; with `switch_after_think_end`, possibly an
      answer step).
    * `EXPLICIT` (2): switch mode: a thinking step that fed its (discrete) token: in an explicit block, or a math
      token in a soft block (`explicit_math_tokens`).
    * `SWITCH_TO_EXPLICIT` (3): switch mode: the step on which the row switched soft -> explicit (entropy
      fell below the block's reference); it feeds its token, or beta*concept + (1-beta)*E[think_end].
    * `SWITCH_TO_SOFT` (4): switch mode: the step on which the row switched explicit -> soft (entropy rose
      above the reference after `switch_window` explicit steps); it feeds the concept token, or
      alpha*concept + (1-alpha)*E[think_start].
    * `THINK_END` (5): natural think-end: the model itself chose the (last piece of the) think-end marker.
    * `FORCED_BUDGET` (6): the first piece of the end text (`forced_end_text`, or the think-end marker) forced
      because `max_thinking_tokens` was spent.
    * `FORCED_COLD_STOP` (7): the same, forced by Cold Stop (`cold_stop_patience` low-entropy steps).
    * `FORCED_SWITCH_LIMIT` (8): the same, forced on the step after the `max_switches`-th soft -> explicit
      switch (with `switch_after_think_end`, after every one up to the `2 * max_switches`-th).
    * `FORCED_SPELLING` (9): a further piece of the forced end text, or of a multi-token think-end marker whose
      first piece a stop decision drew.
    * `FORCED_FINAL_ANSWER` (10): a piece of `final_answer`, forced once a row kept switching past
      2 * `max_switches` (SwiReasoning's final-answer forcing).
    * `ANSWER` (11): an answer-phase step, decoded with the caller's own settings.
    * `STOP_DECISION` (12): with `SoftThinkingConfig(stop_decision="sample")`, a thinking step that drew a stop
      token from the thinking distribution: EOS (the completion ends while thinking), or the first piece of a
      multi-token think-end marker (its other pieces follow as `FORCED_SPELLING`). A drawn one-token marker is
      `THINK_END`. A choice of the model, fed as its token.

    The codes 6-10 are the *forced* steps (`forced_mask`): tokens the decoder wrote, not the model's choice.
    """

    FINISHED = 0
    SOFT = 1
    EXPLICIT = 2
    SWITCH_TO_EXPLICIT = 3
    SWITCH_TO_SOFT = 4
    THINK_END = 5
    FORCED_BUDGET = 6
    FORCED_COLD_STOP = 7
    FORCED_SWITCH_LIMIT = 8
    FORCED_SPELLING = 9
    FORCED_FINAL_ANSWER = 10
    ANSWER = 11
    STOP_DECISION = 12


#: codes of the steps whose token the decoder forced
FORCED_EVENTS = (
    StepEvent.FORCED_BUDGET,
    StepEvent.FORCED_COLD_STOP,
    StepEvent.FORCED_SWITCH_LIMIT,
    StepEvent.FORCED_SPELLING,
    StepEvent.FORCED_FINAL_ANSWER,
)
#: the events that end the thinking phase (the first step of a forced marker, or a natural one)
THINKING_END_EVENTS = (
    StepEvent.THINK_END,
    StepEvent.STOP_DECISION,
    StepEvent.FORCED_BUDGET,
    StepEvent.FORCED_COLD_STOP,
    StepEvent.FORCED_SWITCH_LIMIT,
)


def _is_in(events: torch.Tensor, codes: tuple[StepEvent, ...]) -> torch.Tensor:
    return torch.isin(events, torch.tensor([int(c) for c in codes], dtype=events.dtype, device=events.device))


def forced_mask(step_events: torch.Tensor) -> torch.Tensor:
    """Bool mask of the steps whose token the decoder forced (budget, Cold Stop, switch limit, spelling)."""
    return _is_in(step_events, FORCED_EVENTS)


def thinking_end_reason(row_events: torch.Tensor) -> tuple[int, StepEvent] | None:
    """`(step, event)` of what ended one row's thinking (`None` if it never ended).

    `event` is `THINK_END` (natural), `FORCED_BUDGET`, `FORCED_COLD_STOP` or `FORCED_SWITCH_LIMIT`; `step` is
    the index of the marker's first (forced) or last (natural) piece.
    """
    hits = _is_in(row_events, THINKING_END_EVENTS).nonzero()
    if hits.numel() == 0:
        return None
    step = int(hits[0, 0])
    return step, StepEvent(int(row_events[step]))
