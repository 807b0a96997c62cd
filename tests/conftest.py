"""Shared fixtures: the packaged SmolLM2 model is loaded once per test session; an output folder locked by
another process; a counter of the sequences `generate` decodes."""

import subprocess
import sys
import textwrap

import pytest


@pytest.fixture(scope="session")
def smollm2():
    """(model, tokenizer) of the embedded SmolLM2-135M-Instruct (converted once into the user cache)."""
    from hf_softthink.models import load_model

    return load_model("smollm2-135m")


# the lock module alone (standard library only), so the holder starts in milliseconds, not after importing torch
_HOLD_LOCK = textwrap.dedent(
    """
    import importlib.util, sys, time
    spec = importlib.util.spec_from_file_location("lock", sys.argv[2])
    lock = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lock)
    with lock.output_folder_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(120)
    """
)


@pytest.fixture
def held_lock(tmp_path):
    """An output folder whose lock another process holds (killed afterwards): (folder, process)."""
    from hf_softthink.evaluation import lock as lock_module

    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(out), lock_module.__file__], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
    yield out, holder
    if holder.poll() is None:
        holder.kill()
    holder.wait()


def _count_generate(model):
    """Record the number of sequences of each `model.generate` call (the returned list grows per call)."""
    calls = []
    generate = model.generate

    def counted(*args, **kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        return generate(*args, **kwargs)

    model.generate = counted
    return calls


@pytest.fixture
def count_generate():
    """`count_generate(model)` -> a list that records the sequences of each of the model's `generate` calls."""
    return _count_generate
