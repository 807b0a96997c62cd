"""Trainer callbacks of `hf-softthink train`, usable with any `transformers.Trainer`: a reward progress bar
with one compact log line per logged step, and a Ctrl-C that finishes the step, saves and stops.

Example:

```python
from hf_softthink.trainer.callbacks import InterruptCallback, RewardProgressCallback
from transformers import PrinterCallback, ProgressCallback

trainer.remove_callback(ProgressCallback)            # transformers' bar prints each log as a dict
trainer.remove_callback(PrinterCallback)
trainer.add_callback(RewardProgressCallback())
interrupt = InterruptCallback()
trainer.add_callback(interrupt)
with interrupt.catch_sigint():
    trainer.train()
if interrupt.stopped_at_step is not None:
    print("stopped by Ctrl-C after step", interrupt.stopped_at_step)
```
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

from tqdm.auto import tqdm
from transformers import TrainerCallback

__all__ = ["InterruptCallback", "RewardProgressCallback", "format_log_line"]

# (logged key, label, format) of the compact log line, in order; keys a run does not log are left out
_LOG_FIELDS = (
    ("loss", "loss", "{:.4g}"),
    ("grad_norm", "grad_norm", "{:.3g}"),
    ("frac_reward_zero_std", "zero_std", "{:.2f}"),
    ("completions/mean_length", "len", "{:.1f}"),
    ("soft/frac_soft_steps", "soft", "{:.2f}"),
    ("kl", "kl", "{:.3g}"),
)


def format_log_line(step: int, max_steps: int, logs: dict[str, Any], seconds_per_step: float | None = None) -> str:
    """One line for a logged training step: the mean reward (± its std over the step's completions), then
    loss, pre-clip gradient norm, the fraction of groups whose completions all scored alike (no learning
    signal: TRL's `frac_reward_zero_std`), mean completion length, the fraction of soft steps, KL, time per
    step and the time left at that pace.

    Example:
        >>> format_log_line(3, 30, {"reward": 0.375, "reward_std": 0.5, "loss": 0.01, "grad_norm": 0.8,
        ...                         "frac_reward_zero_std": 0.0, "completions/mean_length": 27.0}, 10.25)
        'step 3/30 | reward 0.38 ± 0.50 | loss 0.01 | grad_norm 0.8 | zero_std 0.00 | len 27.0 | 10.2 s/step, ETA 4m37s'
    """
    parts = [f"step {step}/{max_steps}"]
    if "reward" in logs:
        reward = f"reward {logs['reward']:.2f}"
        if "reward_std" in logs:
            reward += f" ± {logs['reward_std']:.2f}"
        parts.append(reward)
    for key, label, template in _LOG_FIELDS:
        value = logs.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            parts.append(f"{label} {template.format(value)}" if math.isfinite(value) else f"{label} {value}")
    if seconds_per_step is not None:
        left = max(max_steps - step, 0) * seconds_per_step
        parts.append(f"{seconds_per_step:.1f} s/step" + (f", ETA {_duration(left)}" if left else ""))
    return " | ".join(parts)


def _duration(seconds: float) -> str:
    """`42s`, `3m05s`, `1h02m`."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class RewardProgressCallback(TrainerCallback):
    """A tqdm bar over the training steps (elapsed, ETA, s/step) showing the last step's mean reward, and one
    compact line per logged step (:func:`format_log_line`) in place of transformers' printed dicts.

    Replace transformers' own `ProgressCallback` / `PrinterCallback` with it (they print every log as a dict).

    Args:
        progress: show the bar; without it only the log lines are printed.
        stream: where bar and lines go (default: stderr for the bar and stdout for the lines, as tqdm and
            transformers do).
    """

    def __init__(self, progress: bool = True, stream: TextIO | None = None):
        self.progress = progress
        self.stream = stream
        self.bar: Any = None
        self._last_time: float | None = None
        self._last_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        self.bar = tqdm(
            total=state.max_steps, initial=state.global_step, desc="training", unit="step", dynamic_ncols=True,
            disable=not self.progress, file=self.stream or sys.stderr,
        )
        self._last_time, self._last_step = time.perf_counter(), state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if "reward" in logs:
            now = time.perf_counter()
            steps = state.global_step - self._last_step
            per_step = (now - self._last_time) / steps if steps > 0 and self._last_time is not None else None
            self._last_time, self._last_step = now, state.global_step
            if self.bar is not None:
                self.bar.set_postfix_str(f"reward {logs['reward']:.2f}", refresh=True)
            self._write(format_log_line(state.global_step, state.max_steps, logs, per_step))
        elif "train_runtime" in logs:
            steps = max(state.global_step, 1)
            self._write(
                f"trained {state.global_step} step{'s' if state.global_step != 1 else ''} in "
                f"{logs['train_runtime']:.0f} s ({logs['train_runtime'] / steps:.1f} s/step)"
            )

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _write(self, line: str) -> None:
        if self.bar is not None and not self.bar.disable:
            self.bar.write(line, file=self.stream or sys.stdout)
        else:
            print(line, file=self.stream or sys.stdout, flush=True)


class InterruptCallback(TrainerCallback):
    """Ctrl-C (SIGINT) stops training cleanly: the step in progress finishes, the trainer saves a checkpoint
    (`output_dir/checkpoint-N`, resumable with `resume_from_checkpoint`) and `train()` returns. A second
    Ctrl-C raises `KeyboardInterrupt` at once, without saving.

    Install the handler around `train()` with :meth:`catch_sigint`; afterwards `stopped_at_step` is the step
    at which training stopped (None: it ran to the end).
    """

    def __init__(self) -> None:
        self.requested = False
        self.stopped_at_step: int | None = None
        self._step = 0
        self._previous: Any = None

    @contextlib.contextmanager
    def catch_sigint(self) -> Iterator[InterruptCallback]:
        """Handle SIGINT as above while the block runs (left alone where SIGINT is ignored, e.g. a background
        job of a non-interactive shell, or outside the main thread)."""
        try:
            previous = signal.getsignal(signal.SIGINT)
        except ValueError:  # pragma: no cover - not the main thread
            yield self
            return
        if previous is signal.SIG_IGN:
            yield self
            return
        self._previous = previous
        try:
            signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: signals cannot be handled here
            yield self
            return
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)

    def _handle(self, signum, frame) -> None:
        if self.requested:
            signal.signal(signal.SIGINT, self._previous)
            raise KeyboardInterrupt
        self.requested = True
        message = (
            f"\nCtrl-C: finishing step {self._step + 1}, then saving a checkpoint and stopping (Ctrl-C again to "
            "stop at once without saving)\n"
        )
        try:  # a signal handler must not re-enter buffered stdio (tqdm may be writing): write to the descriptor
            os.write(sys.stderr.fileno(), message.encode())
        except (AttributeError, OSError, ValueError):  # a stream without a descriptor (captured output)
            sys.stderr.write(message)

    def on_step_begin(self, args, state, control, **kwargs):
        self._step = state.global_step

    def on_step_end(self, args, state, control, **kwargs):
        if self.requested and self.stopped_at_step is None:
            self.stopped_at_step = state.global_step
            control.should_save = True
            control.should_training_stop = True
        return control
