"""The resume log of an evaluation: one JSON line per finished (mode, problem) in ``samples.jsonl``.

A record is keyed by its run fingerprint (the model, the mode's settings, the number of samples, the token
limits, think-end and the seed) and its problem fingerprint (the prompt text and the gold answer or
verifier entry); a rerun skips the (run, problem) pairs already saved.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import grade_sample
from .decoding import _DecodeSettings
from .modes import DecodingMode

RECORDS_FILE = "samples.jsonl"


def _digest(value: Any) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]


def _problem_key(prompt: str, row: Mapping[str, Any]) -> str:
    """The fingerprint of one problem: its prompt text and its gold answer / verifier entry."""
    return _digest([prompt, row.get("answer"), row.get("task"), row.get("entry")])


def _run_key(model_label: str, mode: DecodingMode, settings: _DecodeSettings) -> str:
    """The fingerprint of one mode's run: every setting its completions depend on."""
    return _digest(
        {
            "model": str(model_label),
            "mode": mode.to_dict(),
            "samples": settings.samples,
            "max_new_tokens": settings.max_new_tokens,
            "hard_budget": settings.max_thinking_tokens if mode.soft_thinking is None else None,
            "think_end": settings.think_end,
            "seed": settings.seed,
        }
    )


@dataclass
class _RecordsLog:
    """The records of an evaluation by (run key, problem key): those an earlier run saved, and each new one,
    appended to the records file (when there is one) as soon as it is added."""

    path: Path | None
    saved: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def open(cls, output_dir: Path | None) -> _RecordsLog:
        """The log of ``output_dir/samples.jsonl`` (folder created, saved records read); without an output
        folder, an empty log that writes nothing."""
        if output_dir is None:
            return cls(None)
        output_dir.mkdir(parents=True, exist_ok=True)
        path = output_dir / RECORDS_FILE
        saved = _load_records(path)
        _end_with_newline(path)
        return cls(path, saved)

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self.saved

    def __getitem__(self, key: tuple[str, str]) -> dict[str, Any]:
        return self.saved[key]

    def add(self, record: dict[str, Any]) -> None:
        """Keep ``record`` and append it to the file at once (an interruption loses nothing added)."""
        self.saved[(record["run"], record["problem_key"])] = record
        if self.path is not None:
            _append_record(self.path, record)


def _load_records(path: Path) -> dict[tuple[str, str], dict[str, Any]]:
    saved: dict[tuple[str, str], dict[str, Any]] = {}
    if not path.exists():
        return saved
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:  # records are ASCII JSON: this is damage, not an interruption
                raise ValueError(
                    f"{path}:{lineno} is not valid UTF-8 (byte 0x{raw[err.start]:02x} at byte {err.start + 1} of "
                    "the line), so this resume log was damaged or not written by an evaluation. Delete that line "
                    "(its problem is then decoded again) or the whole file (to start over)."
                ) from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by an interruption: that problem is redone
                continue
            if isinstance(record, dict) and "run" in record and "problem_key" in record:
                saved[(record["run"], record["problem_key"])] = record
    return saved


def _end_with_newline(path: Path) -> None:
    """Close a last line cut short by an interruption, so the next record starts on its own line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) != b"\n":
            fh.write(b"\n")


def _append_record(path: Path, record: Mapping[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _question(row: Mapping[str, Any]) -> str | None:
    """The problem's question: its ``question`` column, else the last user message of its ``prompt``, else its
    ``prompt_text``."""
    if row.get("question") is not None:
        return str(row["question"])
    users = [m.get("content") for m in row.get("prompt") or [] if isinstance(m, Mapping) and m.get("role") == "user"]
    if users and isinstance(users[-1], str):
        return users[-1]
    return None if row.get("prompt_text") is None else str(row["prompt_text"])


def _finish_record(
    mode: DecodingMode,
    problem: int,
    row: Mapping[str, Any],
    outputs: list[dict[str, Any]],
    *,
    samples: int,
    seconds: float,
    run_key: str,
    problem_key: str,
    think_end: str | None,
    save_completions: bool,
) -> dict[str, Any]:
    generated = len(outputs)
    if generated < samples:  # a deterministic mode: one decoding stands for every sample
        outputs = [outputs[i % generated] for i in range(samples)]
    grades = [grade_sample(row, o["text"], think_end=think_end) for o in outputs]
    record: dict[str, Any] = {
        "run": run_key,
        "problem_key": problem_key,
        "mode": mode.name,
        "problem": problem,
        "generated": generated,
        "correct": [g.correct for g in grades],
        "scores": [g.score if math.isfinite(g.score) else 0.0 for g in grades],
        "answers": [g.answer for g in grades],
        "thinking_tokens": [o["thinking_tokens"] for o in outputs],
        "answer_tokens": [o["answer_tokens"] for o in outputs],
        "soft_steps": [o["soft_steps"] for o in outputs],
        "seconds": seconds,
        # what a reader of samples.jsonl needs without the dataset: the problem, its gold answer (None for a
        # verifier-only row) and how each completion ended (decoding.ENDINGS; absent from older records)
        "question": _question(row),
        "gold_answer": None if row.get("answer") is None else str(row["answer"]),
        "endings": [o["ending"] for o in outputs],
    }
    if save_completions:
        record["completions"] = [o["text"] for o in outputs]
    return record
