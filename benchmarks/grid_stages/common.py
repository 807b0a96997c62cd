"""Helpers of every stage: JSON files written atomically, the log line, loading a saved model."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def log(message: str) -> None:
    print(f"[grid {time.strftime('%H:%M:%S')}] {message}", flush=True)


def clock() -> tuple[float, float]:
    """Now, as (wall seconds, CPU seconds of this process): the start of a timed stage."""
    return time.perf_counter(), time.process_time()


def since(start: tuple[float, float]) -> tuple[float, float]:
    """(wall, CPU) seconds since ``start`` (:func:`clock`). With one thread the CPU seconds are about what the
    stage takes on a quiet core; on cores shared with other jobs the wall time is longer."""
    return time.perf_counter() - start[0], time.process_time() - start[1]


def mean_or_nan(values: Sequence[float]) -> float:
    """The mean of ``values``; NaN for none."""
    return sum(values) / len(values) if values else float("nan")


def load_model(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
