"""One evaluation at a time per output folder: an exclusive lock on ``<output_dir>/.lock``.

Two runs on the same folder would both decode every problem and append duplicate records. The lock is an
advisory ``fcntl.flock`` on the lock file, which the operating system releases when the holding process ends,
even when it is killed: a lock file left behind by a dead run never blocks, the next run takes it over. The
file holds the holder's pid, host and start time, which the refusal quotes. Within one process the lock is
re-entrant (the command line takes it before loading the model, :func:`~.run.evaluate_modes` again around the
run); it does not guard two threads of one process.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # not a POSIX system
    fcntl = None

LOCK_FILE = ".lock"

# folders this process holds the lock of: resolved path -> [file descriptor, nesting depth]
_held: dict[Path, list[int]] = {}


class OutputFolderLockedError(BlockingIOError):
    """Another process holds the lock of the output folder (the message names it and the fix)."""


@contextlib.contextmanager
def output_folder_lock(output_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the lock of the existing folder ``output_dir`` for the duration of the ``with`` block.

    Raises:
        OutputFolderLockedError: another process holds it (the message quotes the holder).
    """
    key = Path(output_dir).resolve()
    if key in _held:
        _held[key][1] += 1
        try:
            yield
        finally:
            _held[key][1] -= 1
        return
    if fcntl is None:
        warnings.warn(
            "This system has no fcntl file locks: two evaluations on the same output folder are not prevented.",
            RuntimeWarning,
            stacklevel=3,
        )
        yield
        return
    path = key / LOCK_FILE
    descriptor = _acquire(path, key)
    _held[key] = [descriptor, 1]
    try:
        yield
    finally:
        del _held[key]
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # while still locked: a run waiting on this file retries on a fresh one
        os.close(descriptor)  # releases the lock


def _acquire(path: Path, folder: Path) -> int:
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 512, 0).decode("utf-8", "replace").strip() or "a process"
            os.close(descriptor)
            raise OutputFolderLockedError(
                f"Another evaluation ({holder}) is writing to {folder}: wait for it to finish (a rerun then "
                "resumes from what it saved) or choose another output folder. Its lock, "
                f"{path}, is freed when that process ends."
            ) from None
        try:
            same_file = os.stat(path).st_ino == os.fstat(descriptor).st_ino
        except FileNotFoundError:
            same_file = False
        if not same_file:  # the previous holder removed the file between our open and our lock
            os.close(descriptor)
            continue
        os.ftruncate(descriptor, 0)
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        os.pwrite(descriptor, f"pid {os.getpid()} on {socket.gethostname()}, started {started}\n".encode(), 0)
        return descriptor
