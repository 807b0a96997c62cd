"""Checkpoints a resumed `SoftGRPOTrainer` run can trust.

* **Complete or skipped.** `Trainer` writes `trainer_state.json` last, so a checkpoint whose save failed (a full
  disk, a kill) lacks it. `resume_from_checkpoint=True` takes the newest *complete* checkpoint
  (`newest_complete_checkpoint`) and warns, naming each newer one it skipped and why; before, it took the newest
  folder and stopped with a `FileNotFoundError`.
* **Damage named.** Before anything loads, `checkpoint_problem` reads what is cheap to read: `trainer_state.json`
  parses, the weights are there (`hub`'s saved-folder check: adapter or model files, safetensors headers and
  sizes, JSON files), and every torch file (`optimizer.pt`, `scheduler.pt`, `rng_state*.pth`, `*.bin`) has its
  zip directory (a file cut short loses it). A damaged file is named, with the fix; a resume from an explicit
  path stops, `True` falls back to an earlier complete checkpoint. Damage the cheap check cannot see (a file
  corrupted in its middle) is named when loading fails (`naming_checkpoint_files`).
* **Buffered rollouts.** With `num_iterations > 1` (or `steps_per_generation` above the gradient accumulation)
  GRPO reuses a batch of rollouts over several optimizer steps. TRL keeps them in memory only, so a resumed run
  generated new rollouts where the uninterrupted run reused the old ones (and restarted its regeneration
  schedule): its weights differed. `SoftGRPOTrainer` saves the buffer with each checkpoint that falls inside a
  reuse window (`ROLLOUTS_FILE`, per process) and restores it with TRL's step counter, so the resumed run
  reproduces the uninterrupted one. A checkpoint without it (saved by `trl.GRPOTrainer`, or an older version)
  resumes on the same schedule with fresh rollouts, and a warning says the run then differs.
"""

from __future__ import annotations

import contextlib
import json
import re
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TRAINER_STATE = "trainer_state.json"
#: the buffered rollouts of a checkpoint inside a reuse window, one file per process
ROLLOUTS_FILE = "grpo_rollouts-{process}.pt"
_CHECKPOINT = re.compile(r"checkpoint-(\d+)")
_FIX = "resume from an earlier checkpoint (resume_from_checkpoint=<its folder>) or delete this one"


def checkpoint_problem(folder: str | Path) -> str | None:
    """What makes ``folder`` unusable for resuming, naming the file (None: it is complete and readable)."""
    from ..hub import _check_saved_folder

    folder = Path(folder)
    state = folder / TRAINER_STATE
    if not state.is_file():
        return f"{state} is missing: the save did not finish (a full disk, or the run was killed while saving)"
    try:
        values = json.loads(state.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        return f"{state} cannot be read ({error}): the file is damaged or was cut short"
    if not isinstance(values, dict) or not isinstance(values.get("global_step"), int):
        return f"{state} holds no global_step: the file is damaged"
    try:
        _check_saved_folder(folder)
    except (OSError, ValueError) as error:
        return str(error)
    for file in sorted([*folder.glob("*.pt"), *folder.glob("*.pth"), *folder.glob("*.bin")]):
        if not zipfile.is_zipfile(file):
            return f"{file} is damaged or was cut short (it is not a complete torch file)"
    return None


def newest_complete_checkpoint(output_dir: str | Path) -> tuple[Path, list[str]]:
    """The newest checkpoint of ``output_dir`` that `checkpoint_problem` accepts, and why each newer one was
    skipped. Raises a `ValueError` when there is none."""
    output = Path(output_dir)
    folders = sorted(
        (int(match.group(1)), path)
        for path in (output.iterdir() if output.is_dir() else [])
        if (match := _CHECKPOINT.fullmatch(path.name)) and path.is_dir()
    )
    skipped = []
    for _, folder in reversed(folders):
        problem = checkpoint_problem(folder)
        if problem is None:
            return folder, skipped
        skipped.append(f"{folder.name}: {problem}")
    if not folders:
        raise ValueError(f"No checkpoint found in output_dir {str(output)!r}: nothing to resume from.")
    raise ValueError(
        f"No complete checkpoint in {str(output)!r} to resume from: " + "; ".join(skipped) + ". Start without "
        "resume_from_checkpoint, or copy an intact checkpoint there."
    )


def resolve_resume_checkpoint(output_dir: str | Path, resume_from_checkpoint: Any) -> str:
    """The checkpoint to resume from: for ``True`` the newest complete one (warning about the newer ones it
    skipped), for a path that folder, checked. A `ValueError` names a damaged file."""
    if resume_from_checkpoint is True:
        folder, skipped = newest_complete_checkpoint(output_dir)
        if skipped:
            warnings.warn(
                f"Resuming from {folder}, the newest complete checkpoint; skipped: " + "; ".join(skipped) + ".",
                UserWarning,
                stacklevel=3,
            )
        return str(folder)
    problem = checkpoint_problem(resume_from_checkpoint) if Path(resume_from_checkpoint).is_dir() else None
    if problem is not None:
        raise ValueError(f"Cannot resume from {resume_from_checkpoint}: {problem}; {_FIX}.")
    return str(resume_from_checkpoint)


@contextlib.contextmanager
def naming_checkpoint_files(checkpoint: str | Path, files: str) -> Iterator[None]:
    """Re-raise an error of loading ``files`` from ``checkpoint`` as a `ValueError` that names them and the fix
    (torch's own errors name no file)."""
    try:
        yield
    except (RuntimeError, OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise ValueError(
            f"Cannot resume from {checkpoint}: loading {files} failed ({type(error).__name__}: {error}); the file "
            f"is damaged; {_FIX}."
        ) from error


def rollouts_needed(global_step: int, gradient_accumulation_steps: int, generate_every: int) -> bool:
    """Whether a checkpoint at ``global_step`` falls inside a rollout-reuse window (the next step reuses them)."""
    return (global_step * gradient_accumulation_steps) % generate_every != 0
