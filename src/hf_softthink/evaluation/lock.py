"""One evaluation at a time per output folder: an exclusive lock on the folder itself.

Two runs on the same folder would both decode every problem and append duplicate records. The lock is an
advisory ``fcntl.flock`` on the output folder (its directory), which the operating system releases when the
holding process ends, even when it is killed: nothing left behind by a dead run ever blocks. Locking the folder,
not a file in it, means deleting a file cannot defeat the lock (with a lock *file*, a second run that found it
deleted created a new one and locked that). ``<output_dir>/.lock`` records the holder's pid, host and start
time, which a refusal quotes; it is removed on release.

Within one process the lock is re-entrant (the command line takes it before loading the model,
:func:`~.run.evaluate_modes` again around the run) and always released when the ``with`` block ends, an error
included, so a retry in the same Python session is not refused by its own earlier run. It does not guard two
threads of one process.
"""

from __future__ import annotations

import contextlib
import errno
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
    descriptor = _acquire(key)
    _held[key] = [descriptor, 1]
    try:
        yield
    finally:
        del _held[key]
        try:
            with contextlib.suppress(OSError):  # a folder made read-only or removed: the lock is released anyway
                os.unlink(key / LOCK_FILE)
        finally:
            os.close(descriptor)  # releases the lock


def _acquire(folder: Path) -> int:
    """Lock ``folder`` (its directory) and record the holder in its lock file; refuse if another process holds
    it. Where directories cannot be locked (NFS emulates ``flock`` with byte-range locks, which need a file open
    for writing), the lock file itself is locked instead."""
    descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        _lock(descriptor, folder)
    except OSError as error:
        os.close(descriptor)
        if isinstance(error, OutputFolderLockedError) or error.errno not in _NO_DIRECTORY_LOCKS:
            raise
        return _acquire_file(folder)
    try:
        _record_holder(os.open(folder / LOCK_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), close=True)
    except OSError:
        os.close(descriptor)
        raise
    return descriptor


#: errors of ``flock`` on a file system that cannot lock a directory
_NO_DIRECTORY_LOCKS = (errno.EBADF, errno.EINVAL, errno.ENOLCK, errno.EOPNOTSUPP)


def _lock(descriptor: int, folder: Path) -> None:
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise
        raise OutputFolderLockedError(
            f"Another evaluation ({_holder(folder)}) is writing to {folder}: wait for it to finish (a rerun then "
            "resumes from what it saved) or choose another output folder. Its lock is freed when that process ends."
        ) from None


def _acquire_file(folder: Path) -> int:
    """The lock on the lock file, for file systems that cannot lock a directory."""
    path = folder / LOCK_FILE
    while True:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock(descriptor, folder)
        except OSError:
            os.close(descriptor)
            raise
        try:
            same_file = os.stat(path).st_ino == os.fstat(descriptor).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            _record_holder(descriptor, close=False)
            return descriptor
        os.close(descriptor)  # the previous holder removed the file between our open and our lock: retry


def _record_holder(descriptor: int, *, close: bool) -> None:
    """Write this process's pid, host and start time into the lock file (what a refused run quotes)."""
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"pid {os.getpid()} on {socket.gethostname()}, started {started}\n".encode(), 0)
    finally:
        if close:
            os.close(descriptor)


def _holder(folder: Path) -> str:
    try:
        return (folder / LOCK_FILE).read_text(encoding="utf-8", errors="replace").strip() or "a process"
    except OSError:
        return "a process"
