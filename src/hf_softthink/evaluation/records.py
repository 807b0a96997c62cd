"""The resume log of an evaluation: one JSON line per finished (mode, problem) in ``samples.jsonl``.

A record is keyed by its run key and its problem key; a rerun skips the (run, problem) pairs already saved.

* The **run key** is a digest of the run's *fingerprint*, which each record also stores: the identity of the
  model (digests of its weights, adapter, tokenizer and generation config, :mod:`.identity`) and every
  setting its completions depend on (the mode's settings, samples, token limits, think-end, seed, batch
  size). A rerun whose fingerprint differs decodes again and says what changed.
* The **problem key** is a digest of the problem's index in the dataset, its prompt text and its gold answer
  or verifier entry: the same question twice in a dataset is two problems.

Record fields (one place for the schema; :func:`_finish_record` writes them, :func:`check_record` reads
them back): ``run``, ``problem_key``, ``fingerprint``, ``mode``, ``problem`` (the index), ``generated``
(sequences decoded: 1 for a deterministic mode), and per sample ``correct``, ``scores``, ``answers``,
``thinking_tokens``, ``answer_tokens``, ``soft_steps``, ``endings`` and (optionally) ``completions``;
``seconds``; the problem's ``question`` and ``gold_answer``. Other fields are kept and ignored.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data import grade_sample
from .decoding import ENDINGS, _DecodeSettings
from .identity import changed_parts
from .modes import DecodingMode

RECORDS_FILE = "samples.jsonl"


def _digest(value: Any) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]


def _problem_key(index: int, prompt: str, row: Mapping[str, Any]) -> str:
    """The fingerprint of one problem: its index in the dataset, prompt text and gold answer / verifier entry."""
    return _digest([index, prompt, row.get("answer"), row.get("task"), row.get("entry")])


def _run_fingerprint(identity: Mapping[str, Any], mode: DecodingMode, settings: _DecodeSettings) -> dict[str, Any]:
    """What one mode's completions depend on: the model's identity and every setting of the run."""
    return {
        "identity": dict(identity),
        "settings": {
            "mode": mode.to_dict(),
            "samples": settings.samples,
            "max_new_tokens": settings.max_new_tokens,
            "hard_budget": settings.max_thinking_tokens if mode.soft_thinking is None else None,
            "think_end": settings.think_end,
            "seed": settings.seed,
            "batch_size": settings.batch_size,  # the batches, and so the sampling streams, are fixed by it
            "thinking": settings.thinking,  # how a completion without the marker is read (its `endings`)
        },
    }


def _run_key(fingerprint: Mapping[str, Any]) -> str:
    """The key of one mode's run: a digest of its fingerprint."""
    return _digest(fingerprint)


def describe_changes(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """How the fingerprint of saved records differs from the current one, in words."""
    changes = changed_parts(saved.get("identity") or {}, current["identity"])
    saved_settings, settings = saved.get("settings") or {}, current["settings"]
    for key, value in settings.items():
        if saved_settings.get(key) != value:
            if key == "mode":
                changes.append("the decoding mode's settings")
            else:
                changes.append(f"{key} ({saved_settings.get(key)!r} -> {value!r})")
    return changes


@dataclass
class _RecordsLog:
    """The records of an evaluation by (run key, problem key): those an earlier run saved (with the line each
    was read from), and each new one, appended to the records file (when there is one) as soon as it is
    added."""

    path: Path | None
    saved: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    lines: dict[tuple[str, str], int] = field(default_factory=dict)

    @classmethod
    def open(cls, output_dir: Path | None) -> _RecordsLog:
        """The log of ``output_dir/samples.jsonl`` (folder created, saved records read); without an output
        folder, an empty log that writes nothing."""
        if output_dir is None:
            return cls(None)
        output_dir.mkdir(parents=True, exist_ok=True)
        path = output_dir / RECORDS_FILE
        saved, lines = _load_records(path)
        _end_with_newline(path)
        return cls(path, saved, lines)

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self.saved

    def __getitem__(self, key: tuple[str, str]) -> dict[str, Any]:
        return self.saved[key]

    def where(self, key: tuple[str, str]) -> str:
        """``file:line`` of a saved record (``"this run"`` for one added by this run)."""
        line = self.lines.get(key)
        return f"{self.path}:{line}" if line is not None else "this run"

    def add(self, record: dict[str, Any]) -> None:
        """Keep ``record`` and append it to the file at once (an interruption loses nothing added)."""
        key = (record["run"], record["problem_key"])
        self.saved[key] = record
        self.lines.pop(key, None)
        if self.path is not None:
            _append_record(self.path, record)


def _load_records(path: Path) -> tuple[dict[tuple[str, str], dict[str, Any]], dict[tuple[str, str], int]]:
    saved: dict[tuple[str, str], dict[str, Any]] = {}
    lines: dict[tuple[str, str], int] = {}
    if not path.exists():
        return saved, lines
    with _naming(path, "read"), open(path, "rb") as fh:
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
            if isinstance(record, dict) and isinstance(record.get("run"), str) and isinstance(
                record.get("problem_key"), str
            ):
                key = (record["run"], record["problem_key"])
                saved[key] = record
                lines[key] = lineno
    return saved, lines


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


#: per-sample fields of a record: what each element must be
_PER_SAMPLE = {
    "correct": (lambda v: isinstance(v, bool), "true or false"),
    "scores": (_is_finite_number, "a finite number"),
    "answers": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "thinking_tokens": (_is_count, "an integer >= 0"),
    "answer_tokens": (_is_count, "an integer >= 0"),
    "soft_steps": (_is_count, "an integer >= 0"),
    "completions": (lambda v: isinstance(v, str), "a string"),
    "endings": (lambda v: v in ENDINGS, f"one of {sorted(ENDINGS)}"),
}
#: per-sample fields a record may lack: saved without completions, or by a version without endings
_OPTIONAL = ("completions", "endings")


def check_record(record: Mapping[str, Any], *, mode: DecodingMode, problem: int, samples: int) -> str | None:
    """What is wrong with a saved record of ``mode`` and ``problem`` (None: it fits and can be trusted)."""
    fingerprint = record.get("fingerprint")
    if not isinstance(fingerprint, dict) or _run_key(fingerprint) != record.get("run"):
        return "its fingerprint does not match its run key"
    if record.get("mode") != mode.name:
        return f"'mode' is {record.get('mode')!r}, not {mode.name!r}"
    if record.get("problem") != problem or isinstance(record.get("problem"), bool):
        return f"'problem' is {record.get('problem')!r}, not {problem}"
    generated = 1 if mode.deterministic else samples
    if record.get("generated") != generated or isinstance(record.get("generated"), bool):
        return f"'generated' is {record.get('generated')!r}, not {generated}"
    if not _is_finite_number(record.get("seconds")) or record["seconds"] < 0:
        return f"'seconds' is {record.get('seconds')!r}, not a number >= 0"
    for name, (fits, what) in _PER_SAMPLE.items():
        values = record.get(name)
        if values is None and name in _OPTIONAL:
            continue
        if not isinstance(values, list) or len(values) != samples:
            return f"{name!r} is {_short(values)}, not a list of {samples} values"
        bad = next((i for i, v in enumerate(values) if not fits(v)), None)
        if bad is not None:
            return f"{name!r}[{bad}] is {_short(values[bad])}, not {what}"
    return None


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _end_with_newline(path: Path) -> None:
    """Close a last line cut short by an interruption, so the next record starts on its own line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with _naming(path, "append to"), open(path, "rb+") as fh:
        fh.seek(-1, os.SEEK_END)
        if fh.read(1) != b"\n":
            fh.write(b"\n")


class _naming:
    """Re-raise an `OSError` of a file operation with the file named (a full disk or a file-size limit raises
    ``[Errno 28]`` / ``[Errno 27]`` from ``write`` with no file name) and what to do."""

    def __init__(self, path: Path, action: str):
        self.path, self.action = path, action

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        if error is None or not isinstance(error, OSError) or error.filename not in (None, str(self.path)):
            return False
        if error.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            fix = "free space (or raise the file-size limit) and rerun: the results saved so far are kept"
        elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            fix = "make the folder writable again (or choose another output folder) and rerun"
        else:
            fix = "rerun once the folder can be written: the results saved so far are kept"
        raise type(error)(error.errno, f"cannot {self.action} {self.path}: {error.strerror or error}; {fix}") from None


def _append_record(path: Path, record: Mapping[str, Any]) -> None:
    with _naming(path, "append a result to"), open(path, "a", encoding="utf-8") as fh:
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
    fingerprint: Mapping[str, Any],
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
        "correct": [bool(g.correct) for g in grades],
        "scores": [float(g.score) if math.isfinite(g.score) else 0.0 for g in grades],
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
    record["fingerprint"] = fingerprint
    return record
