"""CPU threads for torch: a default that does not oversubscribe a busy machine, and a warning when it is busy.

torch starts one OpenMP thread per core. When other processes already keep some cores busy, those threads
wait for each other at every parallel region (OpenMP spins, then sleeps), and a training step can get ten
times slower than with fewer threads: on a shared 2-core machine (load average 4-11), a step of the SoftGRPO
quickstart took 398-785 s with torch's default 2 threads against 31-83 s with one, a median 12x over 3
interleaved pairs (`benchmarks/bench_threads.py`, `benchmarks/RESULTS_train.md`). :func:`default_cpu_threads`
therefore counts only the cores the 1-minute load average leaves idle; on an idle machine that is torch's own
default.

Example:

```python
>>> default_cpu_threads(cores=8, load=0.2, torch_default=8)
8
>>> default_cpu_threads(cores=2, load=1.6, torch_default=2)   # another job keeps about one core busy
1
>>> cpu_threads_warning(threads=1, cores=2, load=3.5)
'this machine is busier than its cores (load average 3.5 on 2 cores): 1 torch thread, steps will be slower than on an idle machine'

```
"""

from __future__ import annotations

import os

import torch

__all__ = ["available_cores", "configure_cpu_threads", "cpu_threads_warning", "default_cpu_threads", "load_average"]

#: environment variables that already fix torch's CPU threads: when one is set, the default leaves torch alone
THREAD_ENVIRONMENT = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity; `os.cpu_count()` where affinity is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def load_average() -> float | None:
    """The 1-minute load average: processes running or waiting for a core (None where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def default_cpu_threads(
    cores: int | None = None, load: float | None = None, torch_default: int | None = None
) -> int:
    """torch threads for a CPU run: torch's default (one per core), less the cores other processes keep busy.

    Args:
        cores: cores available (default: :func:`available_cores`).
        load: the 1-minute load average (default: :func:`load_average`; None: unknown, the machine is taken to
            be idle).
        torch_default: torch's thread count (default: `torch.get_num_threads()`).

    Returns:
        `min(torch_default, round(cores - load))`, at least 1.
    """
    cores = available_cores() if cores is None else cores
    load = load_average() if load is None else load
    torch_default = torch.get_num_threads() if torch_default is None else torch_default
    idle = cores - (load or 0.0)
    return max(1, min(torch_default, round(idle)))


def cpu_threads_warning(threads: int, cores: int | None = None, load: float | None = None) -> str | None:
    """A one-line warning when the machine is busier than its cores, or `threads` exceeds its idle cores.

    None when neither: the load is below the core count and the threads fit in the idle cores (or the load is
    unknown).
    """
    cores = available_cores() if cores is None else cores
    load = load_average() if load is None else load
    if load is None:
        return None
    plural = "s" if threads != 1 else ""
    if load >= cores:
        return (
            f"this machine is busier than its cores (load average {load:.1f} on {cores} cores): {threads} torch "
            f"thread{plural}, steps will be slower than on an idle machine"
        )
    idle = max(1, round(cores - load))
    if threads > idle:
        return (
            f"{threads} torch threads but only about {idle} idle core{'s' if idle != 1 else ''} (load average "
            f"{load:.1f} on {cores} cores): threads that wait for each other can make each step several times "
            f"slower; try --threads {idle}"
        )
    return None


def configure_cpu_threads(threads: int | None = None, *, on_gpu: bool = False) -> tuple[int, str | None]:
    """Set torch's CPU threads for a run; return `(threads, warning or None)`.

    `threads` is the user's choice (`--threads`), applied as given. Without it: on a GPU, and when
    `OMP_NUM_THREADS` / `MKL_NUM_THREADS` is set, torch's own setting stays; on a CPU,
    :func:`default_cpu_threads`. The warning (:func:`cpu_threads_warning`) is for CPU runs only.
    """
    if threads is not None:
        if threads < 1:
            raise ValueError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    elif not on_gpu and not any(os.environ.get(name) for name in THREAD_ENVIRONMENT):
        torch.set_num_threads(default_cpu_threads())
    chosen = torch.get_num_threads()
    return chosen, None if on_gpu else cpu_threads_warning(chosen)
