"""How many CPUs mcproton's work may use: the CPU backend's OpenMP threads, the gamma workers of ``mcproton
check``, the HDF5 compression threads.  A light module (no numpy).

The default is the CPUs this *process* may run on, not those of the machine: under ``taskset``, a Slurm allocation
or a cgroup cpuset, ``os.cpu_count()`` counts every CPU of the node (the deployment audit, F8: 64 OpenMP threads on
a 4-core allocation of a 64-core node, slower than 4, and a provenance that records threads the job did not have).
``OMP_NUM_THREADS``, where set, gives the CPU backend's threads, as the OpenMP specification reads it (F9).

A CPU quota (``docker --cpus=2``, Kubernetes ``resources.limits.cpu``, systemd ``CPUQuota``: the cgroup's
``cpu.max``, or ``cpu.cfs_quota_us`` in cgroup v1) counts too: a container given 2 CPUs' time on a 64-core node
sees 64 CPUs in its affinity, and 64 OpenMP threads sharing 2 CPUs' time are throttled in every period, slower
than 2 threads (the fourteenth session's deployment note).  The count is the quota over the period, rounded up, as
the JVM, .NET and Go (1.25) read it.

The cgroup's memory limit is read here too (:func:`cgroup_memory`), along the same cgroup path: it is how Slurm
``--mem``, ``docker --memory`` and Kubernetes limits are enforced, and a run over it is killed by the kernel with no
message (the cluster audit, F1)."""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

#: the OpenMP specification's environment variable of the thread count (a comma-separated list: one per nesting level)
OMP_NUM_THREADS = "OMP_NUM_THREADS"


def affinity_cpus() -> int:
    """The CPUs this process may be scheduled on: ``os.process_cpu_count()`` (Python >= 3.13: its CPU affinity,
    or ``-X cpu_count``), else the size of its CPU affinity mask (``os.sched_getaffinity``, Linux), else
    ``os.cpu_count()``; at least 1."""
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


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:   # absent (no such controller, not Linux), or not readable: no quota known there
        return None


def _quota_cpus(quota: int, period: int) -> float | None:
    return quota / period if quota > 0 and period > 0 else None


def _v2_quota(folder: Path) -> float | None:
    """cgroup v2 ``cpu.max``: ``"max 100000"`` (no quota) or ``"<quota_us> <period_us>"``."""
    text = _read(folder / "cpu.max")
    if not text:
        return None
    parts = text.split()
    if len(parts) != 2 or not parts[0].isdigit() or not parts[1].isdigit():
        return None   # "max 100000", or something this reader does not know: no quota
    return _quota_cpus(int(parts[0]), int(parts[1]))


def _v1_quota(folder: Path) -> float | None:
    """cgroup v1 ``cpu.cfs_quota_us`` (-1: no quota) over ``cpu.cfs_period_us``."""
    quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
    try:
        return _quota_cpus(int(quota or "-1"), int(period or "0"))
    except ValueError:
        return None


def _folders(mount: Path, cgroup_path: str) -> list[Path]:
    """The cgroup's folder under ``mount`` and its ancestors up to ``mount`` (a quota on any of them limits the
    process), plus ``mount`` itself: in a container without a cgroup namespace, ``/proc/self/cgroup`` names the
    host's path (``/docker/<id>``) while the container's own cgroup is mounted at ``mount``."""
    folders = [mount]
    parts = [p for p in cgroup_path.strip("/").split("/") if p and p != ".."]
    for i in range(1, len(parts) + 1):
        folders.append(mount.joinpath(*parts[:i]))
    return folders


def _cgroup_values(root: str | os.PathLike[str], controller: str, v1_mounts: Callable[[str], list[str]],
                   v2: Callable[[Path], T | None], v1: Callable[[Path], T | None]) -> list[T]:
    """What ``v2`` (cgroup v2, unified; hybrid hosts mount it at unified/) or ``v1`` (the mounts ``v1_mounts`` of the
    hierarchy holding ``controller``) reads in each folder of this process's cgroups that may limit it
    (:func:`_folders`), where they read something; [] where ``/proc/self/cgroup`` cannot be read."""
    base = Path(root)
    text = _read(base / "proc/self/cgroup")
    if text is None:
        return []
    found: list[T] = []
    cgroup = base / "sys/fs/cgroup"
    for line in text.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        hierarchy, controllers, path = fields
        if hierarchy == "0" and controllers == "":
            mounts, read = [cgroup, cgroup / "unified"], v2
        elif controller in controllers.split(","):
            mounts, read = [cgroup / name for name in v1_mounts(controllers)], v1
        else:
            continue
        found += [v for mount in mounts for f in _folders(mount, path) if (v := read(f)) is not None]
    return found


def cpu_quota(root: str | os.PathLike[str] = "/") -> float | None:
    """The CPU time this process may use per unit of wall time, from its cgroup's CPU quota (cgroup v2
    ``cpu.max``, v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us``; the smallest along the cgroup's path), or None
    where there is none (or it cannot be read, or this is not Linux).  ``root`` is the file system's root (tests
    give a folder laid out like ``/proc`` and ``/sys/fs/cgroup``)."""
    quotas = _cgroup_values(root, "cpu", lambda c: sorted({c, "cpu", "cpu,cpuacct", "cpuacct,cpu"}), _v2_quota,
                            _v1_quota)
    return min(quotas) if quotas else None


#: cgroup v1 writes "no limit" as the largest multiple of the page size below 2**63 (9223372036854771712 with 4 kB
#: pages); any limit at or above 2**62 bytes (4 EiB) is taken as none
_NO_MEMORY_LIMIT = 2 ** 62


def _number(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None


def _inactive_file(folder: Path, key: str) -> int:
    """The page cache the kernel can drop before it kills (``memory.stat``'s ``key``), bytes; 0 where unknown."""
    for line in (_read(folder / "memory.stat") or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return 0


def _memory_left(folder: Path, limit_file: str, usage_file: str, stat_key: str) -> tuple[float, str] | None:
    """(bytes left under the memory limit of cgroup ``folder``, a description naming it) or None where it has none:
    the limit less its usage, less the page cache the kernel reclaims first (as ``docker stats`` and the kubelet
    count the working set)."""
    limit = _number(_read(folder / limit_file))   # v2 "max", v1 the huge "unlimited": None / >= 2**62
    if limit is None or limit >= _NO_MEMORY_LIMIT:
        return None
    used = _number(_read(folder / usage_file)) or 0
    used = max(0, used - _inactive_file(folder, stat_key))
    return (float(max(0, limit - used)),
            f"the cgroup memory limit of {limit / 1e9:.1f} GB ({folder / limit_file}; Slurm --mem, docker --memory or "
            f"a Kubernetes limit), {used / 1e9:.1f} GB of it in use")


def cgroup_memory(root: str | os.PathLike[str] = "/") -> tuple[float, str] | None:
    """The memory this process may still allocate under its cgroup's memory limit, bytes, with a description of that
    limit, or None where there is none (or it cannot be read, or this is not Linux): cgroup v2 ``memory.max`` less
    ``memory.current``, v1 ``memory.limit_in_bytes`` less ``memory.usage_in_bytes`` (the page cache not counted);
    the smallest along the cgroup's path.  ``root`` as for :func:`cpu_quota`."""
    found = _cgroup_values(root, "memory", lambda c: ["memory"],
                           lambda f: _memory_left(f, "memory.max", "memory.current", "inactive_file"),
                           lambda f: _memory_left(f, "memory.limit_in_bytes", "memory.usage_in_bytes",
                                                  "total_inactive_file"))
    return min(found) if found else None


def machine_cpus() -> int:
    """The machine's CPUs (``os.cpu_count()``, at least 1), whatever this process may use: a bound on what a setting may
    ask for (``settings.thread_limit``), never the size of work (:func:`usable_cpus`)."""
    return os.cpu_count() or 1


def usable_cpus() -> int:
    """The CPUs this process may use: those of its CPU affinity (:func:`affinity_cpus`: ``taskset``, a Slurm
    allocation, a cgroup cpuset), and no more than its CPU quota (:func:`cpu_quota`: ``docker --cpus``, a
    Kubernetes CPU limit), rounded up; at least 1."""
    return _capped(affinity_cpus(), cpu_quota())


def _capped(affinity: int, quota: float | None) -> int:
    """``affinity`` CPUs, no more than a ``quota`` of CPU time rounded up (at least 1)."""
    return affinity if quota is None else min(affinity, max(1, math.ceil(quota - 1e-9)))


def cpu_status() -> dict[str, object]:
    """What ``mcproton info`` shows of the CPUs: those usable (:func:`usable_cpus`), the affinity's count, the CPU
    quota (or "none"), the machine's count and ``OMP_NUM_THREADS``."""
    quota, affinity = cpu_quota(), affinity_cpus()   # each read once
    return {"usable": _capped(affinity, quota), "affinity": affinity,
            "quota": "none" if quota is None else f"{quota:g} CPUs' time (cgroup CPU quota)",
            "machine": os.cpu_count() or "unknown", OMP_NUM_THREADS: os.environ.get(OMP_NUM_THREADS) or "not set"}


def omp_num_threads(environ: Mapping[str, str] | None = None) -> int | None:
    """The thread count that ``OMP_NUM_THREADS`` sets, or None where it is not set (or empty).  A list (``4,1``:
    4 threads, then 1 in nested regions; some HPC modules set one) gives its first element.  A value that is not a
    positive whole number (or a list of them) is ignored with a warning naming the variable: before, ``4,1``,
    ``abc`` or ``-1`` stopped every command with ``invalid literal for int()``, or ran on "-1 threads"."""
    env = os.environ if environ is None else environ
    raw = env.get(OMP_NUM_THREADS, "").strip()
    if not raw:
        return None
    n = _parsed_omp(raw)
    if n is not None:
        return n
    from ._io.errors import McprotonWarning, warn

    warn(f"{OMP_NUM_THREADS}={raw!r} is ignored: it is not a positive whole number (or a list of them, such as "
         f"4,1); the CPU backend uses the {usable_cpus()} CPU(s) this process may run on (set {OMP_NUM_THREADS} to "
         "a positive number, or unset it)", McprotonWarning, stacklevel=2)
    return None


def _parsed_omp(raw: str) -> int | None:
    """The thread count of an ``OMP_NUM_THREADS`` value (stripped, not blank): its first element where it is a
    positive whole number or a list of them, else None."""
    parts = [p.strip() for p in raw.split(",")]
    if all(p.isascii() and p.isdigit() and int(p) > 0 for p in parts):
        return int(parts[0])
    return None


def refuse_too_many_omp_threads(environ: Mapping[str, str] | None = None) -> None:
    """ValueError where ``OMP_NUM_THREADS`` asks for more threads than mcproton accepts (``settings.thread_limit``,
    as it caps run.threads): 40000 made libgomp abort the process ("Thread creation failed", exit status 1, which
    means a FAIL to a script) and 99999999999 ran out of memory, with no mcproton message, the locks left behind and no
    record of a check (the concurrency audit 25, F6).  A value that is not a thread count is :func:`omp_num_threads`'s
    to warn of."""
    env = os.environ if environ is None else environ
    raw = env.get(OMP_NUM_THREADS, "").strip()
    n = _parsed_omp(raw) if raw else None
    if n is None:
        return
    from .settings import MAX_THREADS_PER_CPU, MIN_THREAD_LIMIT, thread_limit

    limit = thread_limit()
    if n > limit:
        raise ValueError(f"{OMP_NUM_THREADS}={raw} asks for {n:,} CPU threads, more than mcproton accepts here "
                         f"({limit}: {MAX_THREADS_PER_CPU} per CPU of this machine's {machine_cpus()} CPUs, never "
                         f"fewer than {MIN_THREAD_LIMIT}); each thread needs its own stack, and thousands make the "
                         "OpenMP runtime abort the run (\"libgomp: Thread creation failed\") with no result: set "
                         f"{OMP_NUM_THREADS} to at most the {usable_cpus()} CPU(s) this process may use, or unset it")


def unset_unusable_omp_num_threads() -> None:
    """Remove ``OMP_NUM_THREADS`` from this process's environment where it is not a thread count (empty, blank,
    ``abc``, ``0``, ``-1``, ``2.5``: :func:`omp_num_threads` ignores it, with a warning), before the OpenMP runtime
    (libgomp, loaded with the CPU kernel) reads it: libgomp printed "libgomp: Invalid value for environment variable
    OMP_NUM_THREADS" beside mcproton's own word, or with none for a blank one (``export OMP_NUM_THREADS=$N`` with N
    unset; the environment audit 19, F8; the concurrency audit 25, F6).  Unset and ignored mean the same to both
    then."""
    raw = os.environ.get(OMP_NUM_THREADS)
    if raw is not None and (not raw.strip() or _parsed_omp(raw.strip()) is None):
        del os.environ[OMP_NUM_THREADS]


#: the OMP_NUM_THREADS values already warned of as more than the CPUs (once per value and process outside a run or
#: check; in one, once per run or check: errors.said_in_this_call)
_OVERSUBSCRIBED: set[tuple[int, int]] = set()


def default_threads() -> int:
    """The CPU backend's default OpenMP thread count: ``OMP_NUM_THREADS`` (:func:`omp_num_threads`), else
    :func:`usable_cpus`.  An ``OMP_NUM_THREADS`` above the CPUs this process may use is taken as given (the user's
    choice), with a warning once per value in each run or check (its record holds it: in-process audit 25, F4), and
    once per value and process outside one: 64 threads on 2 CPUs ran 2.2-2.6 x slower than 2, with no word (the
    automation audit of 2026-12-06, F7: a value copied from a larger server, or a container's host count).  One above
    what mcproton accepts (:func:`refuse_too_many_omp_threads`) is refused with a ValueError."""
    from ._io.errors import McprotonWarning, said_in_this_call, warn

    refuse_too_many_omp_threads()
    omp, usable = omp_num_threads(), usable_cpus()
    said = f"{OMP_NUM_THREADS}={omp} is more than the {usable} CPU(s) this process may use"
    if omp is not None and omp > usable and not said_in_this_call(said, _OVERSUBSCRIBED, (omp, usable),
                                                                  at_start=True):
        warn(f"{said} (its CPU affinity and quota): the threads take turns on them, which is slower than {usable} "
             f"thread(s) (2.2-2.6 x with 64 threads on 2 CPUs); set {OMP_NUM_THREADS} to at most {usable}, or unset "
             "it", McprotonWarning, stacklevel=2)
    return omp or usable
