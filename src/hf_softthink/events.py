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
    * `SOFT` (1): a thinking step that fed a concept token.
    * `EXPLICIT` (2): switch mode: a thinking step in an explicit block, fed its (discrete) token.
    * `SWITCH_TO_EXPLICIT` (3): switch mode: the step on which the row switched soft -> explicit (entropy
      fell below the block's reference); it feeds its token, or beta*concept + (1-beta)*E[think_end].
    * `SWITCH_TO_SOFT` (4): switch mode: the step on which the row switched explicit -> soft (entropy rose
      above the reference after `switch_window` explicit steps); it feeds the concept token, or
      alpha*concept + (1-alpha)*E[think_start].
    * `THINK_END` (5): natural think-end: the model itself chose the (last piece of the) think-end marker.
    * `FORCED_BUDGET` (6): think-end forced because `max_thinking_tokens` was spent.
    * `FORCED_COLD_STOP` (7): think-end forced by Cold Stop (`cold_stop_patience` low-entropy steps).
    * `FORCED_SWITCH_LIMIT` (8): think-end forced on the step after the `max_switches`-th soft -> explicit
      switch.
    * `FORCED_SPELLING` (9): a further piece of a multi-token think-end marker whose first piece was forced.
    * `FORCED_FINAL_ANSWER` (10): a piece of `final_answer`, forced once a row kept switching past
      2 * `max_switches` (SwiReasoning's final-answer forcing).
    * `ANSWER` (11): an answer-phase step, decoded with the caller's own settings.
    * `STOP_DECISION` (12): with `SoftThinkingConfig(stop_decision="sample")`, a thinking step that drew a stop
      token from the thinking distribution: EOS (the completion ends while thinking), or the first piece of a
      multi-token think-end marker (its other pieces follow as `FORCED_SPELLING`). A drawn one-token marker is
      `THINK_END`. A choice of the model, fed as its token.

    The codes 6-10 are the *forced* steps (`forced_mask`): tokens the decoder wrote, not the model's choice.
    `str(event)` and `f"{event}"` give the name (`"SOFT"`); `int(event)` and `f"{event:d}"` the code.
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

    def __str__(self) -> str:
        return self.name

    def __format__(self, spec: str) -> str:
        if spec and spec[-1] in "bcdoxXneEfFgGn%":  # a numeric format: the code
            return int.__format__(int(self), spec)
        return format(self.name, spec)


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


#: tensor methods whose result is still a tensor of event codes (same values, moved, copied or indexed)
_KEEPS_CODES = frozenset({
    torch.Tensor.__getitem__, torch.Tensor.to, torch.Tensor.cpu, torch.Tensor.cuda, torch.Tensor.clone,
    torch.Tensor.detach, torch.Tensor.contiguous,
})
#: runs shown per row by `StepEvents.__repr__` before it elides the rest
_RUNS_SHOWN = 40


def _event_name(code: int) -> str:
    try:
        return StepEvent(code).name
    except ValueError:  # not one of ours: show the number
        return str(code)


def event_names(step_events: torch.Tensor) -> str | list:
    """The `StepEvent` names of a tensor of event codes, nested like `tolist()`: `[["SOFT", "SOFT", ...], ...]`."""
    def names(value):
        return [names(v) for v in value] if isinstance(value, list) else _event_name(value)

    with torch._C.DisableTorchFunctionSubclass():
        return names(step_events.tolist())


def event_runs(row_events: torch.Tensor | list[int]) -> str:
    """One row's events as runs of names: `"SOFT×6, FORCED_BUDGET, FORCED_SPELLING×2, ANSWER×3"`."""
    if isinstance(row_events, torch.Tensor):
        with torch._C.DisableTorchFunctionSubclass():
            row_events = row_events.tolist()
    runs: list[list] = []
    for code in row_events:
        if runs and runs[-1][0] == code:
            runs[-1][1] += 1
        else:
            runs.append([code, 1])
    shown = [_event_name(code) + (f"×{count}" if count > 1 else "") for code, count in runs[:_RUNS_SHOWN]]
    if len(runs) > _RUNS_SHOWN:
        shown.append(f"… {len(runs) - _RUNS_SHOWN} more runs")
    return ", ".join(shown)


class StepEvents(torch.Tensor):
    """`SoftThinkingGenerateOutput.step_events`: the `(batch, new_tokens)` uint8 tensor of `StepEvent` codes,
    printed as names.

    It is an ordinary tensor in everything but its `repr`: `print(out.step_events)` shows each row as runs of
    event names (`SOFT×6, FORCED_BUDGET, FORCED_SPELLING×2, ANSWER×3`); indexing, `.to()`, `.cpu()`, `.clone()`
    and `.detach()` keep the names; any other operation (`==`, `torch.isin`, arithmetic, `forced_mask`) returns
    a plain tensor, and `tolist()` / `int()` give the codes. It pickles (`torch.save`) as a plain uint8 tensor, so
    `torch.load(..., weights_only=True)` reads it back. `event_names(t)` gives the names as nested lists.
    """

    @staticmethod
    def of(codes: torch.Tensor) -> StepEvents:
        """View a tensor of event codes as `StepEvents` (no copy)."""
        return codes.as_subclass(StepEvents)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        with torch._C.DisableTorchFunctionSubclass():
            result = func(*args, **(kwargs or {}))
        if func in _KEEPS_CODES and isinstance(result, torch.Tensor) and result.dtype == torch.uint8:
            return result.as_subclass(cls)
        return result

    def __repr__(self, *, tensor_contents=None) -> str:
        with torch._C.DisableTorchFunctionSubclass():
            plain = self.as_subclass(torch.Tensor)
        where = "" if plain.device.type == "cpu" else f", device='{plain.device}'"
        if plain.dim() == 0:
            return f"StepEvents({_event_name(int(plain))}{where})"
        if plain.dim() == 1:
            return f"StepEvents([{event_runs(plain)}]{where})"
        if plain.dim() == 2:
            rows = "".join(f"\n  [{row}] {event_runs(plain[row])}" for row in range(plain.shape[0]))
            return f"StepEvents(shape={tuple(plain.shape)}{where}; each row as runs of StepEvent names:{rows})"
        return "StepEvents(" + repr(plain) + ")"

    def __deepcopy__(self, memo) -> StepEvents:
        with torch._C.DisableTorchFunctionSubclass():
            return StepEvents.of(self.as_subclass(torch.Tensor).clone())

    def __reduce_ex__(self, protocol):
        with torch._C.DisableTorchFunctionSubclass():
            return self.as_subclass(torch.Tensor).__reduce_ex__(protocol)


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
