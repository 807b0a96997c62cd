"""The evaluation folder and the command line (issue 17): a lock that deleting a file cannot defeat and that is
released in-process on failure; the failing file named on read-only and full disks; out-of-range numbers named
and long dataset builds shown before the model loads.
"""

from __future__ import annotations

import errno
import os
import pathlib

import datasets
import pytest

from hf_softthink.cli import main
from hf_softthink.evaluation import RECORDS_FILE, RESULTS_FILE, evaluate_modes
from hf_softthink.evaluation import lock as lock_module
from hf_softthink.evaluation.lock import LOCK_FILE, OutputFolderLockedError, output_folder_lock
from hf_softthink.models import tiny_model, tiny_tokenizer

datasets.disable_progress_bars()
ROWS = [{"question": f"{i} + 1?", "answer": str(i + 1)} for i in range(3)]
SETTINGS = dict(max_new_tokens=4, max_thinking_tokens=2, progress=False)

def test_deleting_the_lock_file_does_not_defeat_the_lock(held_lock):
    out, holder = held_lock
    (out / LOCK_FILE).unlink()  # before, a second run then created a new lock file, locked it and appended
    model = tiny_model("llama")
    model.generate = lambda *a, **k: pytest.fail("decoded")
    with pytest.raises(OutputFolderLockedError, match=f"Another evaluation .* is writing to {out}"):
        evaluate_modes(model, tiny_tokenizer(), ROWS, "hard-greedy", output_dir=out, **SETTINGS)
    assert not (out / RECORDS_FILE).exists()


def test_the_folder_lock_falls_back_to_the_lock_file_where_folders_cannot_be_locked(tmp_path, monkeypatch):
    lock = lock_module._lock

    def no_directory_locks(descriptor, folder):  # as on NFS: flock on a directory fails with EBADF
        if os.path.isdir(f"/proc/self/fd/{descriptor}"):
            raise OSError(errno.EBADF, "Bad file descriptor")
        lock(descriptor, folder)

    monkeypatch.setattr(lock_module, "_lock", no_directory_locks)
    with output_folder_lock(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text().startswith(f"pid {os.getpid()} ")
        with pytest.raises(OutputFolderLockedError):  # a second open file description of the lock file
            lock_module._acquire_file(tmp_path)
    assert not (tmp_path / LOCK_FILE).exists()
    with output_folder_lock(tmp_path):  # released: taken again
        pass


DISK_ERRORS = {
    "a full disk": (OSError(errno.ENOSPC, "No space left on device"), "free space"),
    "a file-size limit": (OSError(errno.EFBIG, "File too large"), "free space (or raise the file-size limit)"),
    "a folder made read-only": (PermissionError(errno.EACCES, "Permission denied"), "make the folder writable"),
    "a read-only file system": (OSError(errno.EROFS, "Read-only file system"), "make the folder writable"),
}


@pytest.mark.parametrize("error,fix", DISK_ERRORS.values(), ids=DISK_ERRORS.keys())
def test_a_write_failure_names_the_file_and_the_lock_is_released(error, fix, tmp_path, monkeypatch):
    """The records file is named (not `.lock`, whose removal fails too), and a retry in the same process is not
    refused as 'another evaluation' with this process's own pid."""
    out = tmp_path / "out"
    real_fsync, real_unlink = os.fsync, os.unlink
    written = []

    def fsync(descriptor):  # write() and fsync() report a full disk without a file name
        if written:
            raise error
        written.append(descriptor)
        real_fsync(descriptor)

    def unlink(path, *args, **kwargs):  # a read-only folder refuses to remove the lock file too
        if str(path).endswith(LOCK_FILE):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "unlink", unlink)
    model, tok = tiny_model("llama"), tiny_tokenizer()
    with pytest.raises(OSError) as raised:
        evaluate_modes(model, tok, ROWS, "hard-greedy", output_dir=out, batch_size=1, **SETTINGS)
    message = str(raised.value)
    assert raised.value.errno == error.errno
    assert f"cannot append a result to {out / RECORDS_FILE}" in message and fix in message, message
    assert LOCK_FILE not in message
    monkeypatch.setattr(os, "fsync", real_fsync)
    monkeypatch.setattr(os, "unlink", real_unlink)
    result = evaluate_modes(model, tok, ROWS, "hard-greedy", output_dir=out, batch_size=1, **SETTINGS)
    assert result.summary["hard-greedy"]["resumed_problems"] >= 1  # what was saved before the failure is kept


def test_a_results_file_that_cannot_be_written_is_named(tmp_path, monkeypatch):
    write_text = pathlib.Path.write_text

    def full(self, *args, **kwargs):
        if self.name == RESULTS_FILE:
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", full)
    with pytest.raises(OSError, match=f"cannot write {tmp_path / RESULTS_FILE}: No space left on device; free space"):
        evaluate_modes(tiny_model("llama"), tiny_tokenizer(), ROWS, "hard-greedy", output_dir=tmp_path, **SETTINGS)


# ------------------------------------------------------------------------------------------ command line

OUT_OF_RANGE = {
    "eval --seed beyond 64 bits": (["eval", "--seed", str(2**70)], f"--seed must be at most {2**64 - 1}"),
    "generate --seed beyond 64 bits": (["generate", "q", "--seed", str(2**70)], "--seed must be at most"),
    "a negative seed": (["eval", "--seed", "-1"], "--seed must be at least 0, got -1"),
    "no samples": (["eval", "--samples", "0"], "--samples must be at least 1, got 0"),
    "a batch of 0": (["eval", "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    "no new tokens": (["eval", "--max-new-tokens", "0"], "--max-new-tokens must be at least 1"),
    "a negative budget": (["eval", "--max-thinking-tokens", "-1"], "--max-thinking-tokens must be at least 0"),
    "too many problems": (["eval", "--num-problems", str(2**40)], "--num-problems must be at most 2147483647"),
    "generate: a negative top-k": (["generate", "q", "--top-k", "-2"], "--top-k must be at least 0, got -2"),
    "demo: no patience": (["demo", "--cold-stop-patience", "0"], "--cold-stop-patience must be at least 1"),
    "demo: no new tokens": (["demo", "--max-new-tokens", "0"], "--max-new-tokens must be at least 1"),
}


@pytest.mark.parametrize("argv,fragment", OUT_OF_RANGE.values(), ids=OUT_OF_RANGE.keys())
def test_out_of_range_numbers_are_named_before_the_model_loads(argv, fragment, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("hf_softthink.models.load_model", lambda *a, **k: pytest.fail("model loaded"))
    if argv[0] == "eval":
        argv = [*argv, "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("hf-softthink: error:") and fragment in err and "Traceback" not in err, err


def test_a_long_dataset_build_shows_its_progress_before_the_model_loads(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("hf_softthink.data.PROGRESS_MIN_PROBLEMS", 30)

    def loaded(*args, **kwargs):
        assert "building 40 chain_sum problems" in capsys.readouterr().err  # shown before loading
        raise ValueError("stop here")

    monkeypatch.setattr("hf_softthink.models.load_model", loaded)
    assert main(["eval", "--num-problems", "40", "--out", str(tmp_path / "out")]) == 2
    assert "stop here" in capsys.readouterr().err
