"""How many CPUs mcproton's work may use: the CPU backend's OpenMP threads, the gamma workers of ``mcproton
check``, the HDF5 compression threads.  A light module (no numpy).

The default is the CPUs this *process* may run on, not those of the machine: under ``taskset``, a Slurm allocation
or a cgroup cpuset, ``os.cpu_count()`` counts every CPU of the node (the deployment audit, F8: 64 OpenMP threads on
a 4-core allocation of a 64-core node, slower than 4, and a provenance that records threads the job did not have).
``OMP_NUM_THREADS``, where set, gives the CPU backend's threads, as the OpenMP specification reads it (F9)."""
from __future__ import annotations

import os
from collections.abc import Mapping

#: the OpenMP specification's environment variable of the thread count (a comma-separated list: one per nesting level)
OMP_NUM_THREADS = "OMP_NUM_THREADS"


def usable_cpus() -> int:
    """The CPUs this process may run on: ``os.process_cpu_count()`` (Python >= 3.13: its CPU affinity, or
    ``-X cpu_count``), else the size of its CPU affinity mask (``os.sched_getaffinity``, Linux), else
    ``os.cpu_count()``; at least 1.  A CPU quota (``docker --cpus``, cgroup ``cpu.max``) is not counted: it
    limits the time, not the CPUs."""
    count = getattr(os, "process_cpu_count", None)
    n: int | None = None
    if count is not None:
        n = count()
    elif hasattr(os, "sched_getaffinity"):
        try:
            n = len(os.sched_getaffinity(0))
        except OSError:   # not allowed to read it (some sandboxes): the machine's count
            n = None
    return max(1, n or os.cpu_count() or 1)


def omp_num_threads(environ: Mapping[str, str] | None = None) -> int | None:
    """The thread count that ``OMP_NUM_THREADS`` sets, or None where it is not set (or empty).  A list (``4,1``:
    4 threads, then 1 in nested regions; some HPC modules set one) gives its first element.  A value that is not a
    positive whole number (or a list of them) is ignored with a warning naming the variable: before, ``4,1``,
    ``abc`` or ``-1`` stopped every command with ``invalid literal for int()``, or ran on "-1 threads"."""
    env = os.environ if environ is None else environ
    raw = env.get(OMP_NUM_THREADS, "").strip()
    if not raw:
        return None
    parts = [p.strip() for p in raw.split(",")]
    if all(p.isascii() and p.isdigit() and int(p) > 0 for p in parts):
        return int(parts[0])
    from ._io.errors import McprotonWarning, warn

    warn(f"{OMP_NUM_THREADS}={raw!r} is ignored: it is not a positive whole number (or a list of them, such as "
         f"4,1); the CPU backend uses the {usable_cpus()} CPU(s) this process may run on (set {OMP_NUM_THREADS} to "
         "a positive number, or unset it)", McprotonWarning, stacklevel=2)
    return None


def default_threads() -> int:
    """The CPU backend's default OpenMP thread count: ``OMP_NUM_THREADS`` (:func:`omp_num_threads`), else
    :func:`usable_cpus`."""
    return omp_num_threads() or usable_cpus()
