"""Checks of user inputs made before the expensive work (loading a model, decoding, training).

Paths: each check raises an `OSError` subclass whose message names the path, what is wrong with it and the fix.

* `check_model_path`: a model argument written as a local path (`/models/x`, `./x`, `~/x`, `a/b/c`) must
  exist; otherwise it would reach the Hub client and fail with "Repo id must be in the form ...".
* `prepare_output_dir`: an output folder is created (parents too) and must take a file: not a file itself,
  not under a file, not in a place without write access.

Settings that cannot do what they say (a `UserWarning`, since a run with them is legal but wasted):

* `warn_if_budget_fills_length`: a thinking budget at least as long as the whole completion, so a row that
  does not end its thinking by itself is cut before the forced think-end and never answers;
* `warn_if_think_end_is_eos`: a think-end marker that is the end-of-sequence token, so generation stops where
  the answer phase should begin.

Example:

```python
>>> from hf_softthink.checks import looks_like_local_path
>>> looks_like_local_path("/models/qwen"), looks_like_local_path("Qwen/Qwen3-0.6B"), looks_like_local_path("smollm2-135m")
(True, False, False)

```
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = [
    "check_model_path",
    "looks_like_local_path",
    "prepare_output_dir",
    "warn_if_budget_fills_length",
    "warn_if_think_end_is_eos",
]


def looks_like_local_path(name: str | os.PathLike[str]) -> bool:
    """Whether a model argument is written as a local path, not as a Hub id (`org/name`) or a short name.

    A path: a `PathLike`, or a string that is absolute, starts with `.` or `~`, ends with a separator, holds a
    backslash, or has more than one `/` (a Hub id has exactly one).
    """
    if not isinstance(name, str):
        return True
    return (
        os.path.isabs(name)
        or name.startswith((".", "~"))
        or name.endswith(("/", os.sep))
        or "\\" in name
        or name.count("/") > 1
    )


def check_model_path(name: str | os.PathLike[str], what: str = "--model") -> None:
    """Raise `FileNotFoundError` if `name` is written as a local path (`looks_like_local_path`) and does not exist.

    Hub ids and short names are left to the loader (it knows the packaged models and the Hub cache).
    """
    if not looks_like_local_path(name) or os.path.exists(name):
        return
    text = os.fspath(name)
    hint = ""
    if text.startswith("~") and os.path.exists(os.path.expanduser(text)):
        hint = f" (`~` is not expanded here: write {os.path.expanduser(text)!r})"
    raise FileNotFoundError(
        f"{what} {text!r}: no such file or folder{hint}. Give an existing folder that holds a model "
        "(config.json and weights), a packaged short name (smollm2-135m, gemma3-270m) or a Hub id (org/name)."
    )


def prepare_output_dir(path: str | os.PathLike[str], what: str = "output folder") -> Path:
    """Create the folder `path` (and its parents) and check that a file can be written in it.

    Raises:
        NotADirectoryError: `path` is a file, or one of its parents is.
        PermissionError / OSError: the folder cannot be created or written (the message says why).
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(
            f"{what} {str(out)!r} is a file, not a folder: give the path of a folder (it is created if missing)."
        )
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise NotADirectoryError(
                    f"{what} {str(out)!r} cannot be created: {str(parent)!r} is a file. Give a folder path that "
                    "does not run through a file."
                )
            break
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out, prefix=".write-check-"):
            pass
    except OSError as error:
        refused = type(error)(
            f"{what} {str(out)!r} cannot be written ({error.strerror or error}): choose a folder you can write to."
        )
        refused.errno = error.errno
        raise refused from None
    return out


def warn_if_budget_fills_length(
    budget: int | None, length: int, *, budget_name: str, length_name: str, stacklevel: int = 3
) -> bool:
    """Warn (and return True) when the thinking budget leaves no room for think-end and an answer.

    With `length <= budget`, a completion that does not write think-end by itself is cut before the budget
    forces it: it has no answer phase (for training: reward 0 for every such rollout).
    """
    if budget is None or length > budget:
        return False
    warnings.warn(
        f"{length_name}={length} is not larger than the thinking budget {budget_name}={budget}: a completion "
        "that does not end its thinking by itself is cut before the budget forces think-end, so it never "
        f"answers. Raise {length_name} above the budget (with room for the answer) or lower {budget_name}.",
        UserWarning,
        stacklevel=stacklevel,
    )
    return True


def warn_if_think_end_is_eos(
    think_end: str | int, think_end_ids: Sequence[int], eos_ids: Iterable[int], *, stacklevel: int = 3
) -> bool:
    """Warn (and return True) when the think-end marker is one end-of-sequence token.

    Generation stops at end-of-sequence, so every completion ends where its answer phase should begin.
    """
    if len(think_end_ids) != 1 or int(think_end_ids[0]) not in {int(i) for i in eos_ids}:
        return False
    warnings.warn(
        f"think_end={think_end!r} is the end-of-sequence token (id {int(think_end_ids[0])}): generation stops "
        "at it, so no completion has an answer phase. Use a marker of its own (e.g. '</think>', added to the "
        "tokenizer if needed).",
        UserWarning,
        stacklevel=stacklevel,
    )
    return True
