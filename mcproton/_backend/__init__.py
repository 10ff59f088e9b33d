"""Backends: ``get_backend("auto" | "cpu" | "cuda")``."""
from __future__ import annotations

from functools import lru_cache

from .base import Backend
from .cuda import cuda_available


def get_backend(name: str = "auto", threads: int | None = None, gpu: int | None = None) -> Backend:
    """The backend by name.  "auto" picks cuda when CuPy and a device are present, else cpu.  ``gpu``: the
    CUDA device index of the cuda backend (default 0).  The CPU backend's default thread count (``threads`` None:
    ``OMP_NUM_THREADS``, else the CPUs this process may run on) is read at each call, so that a long-lived process
    that lowers ``OMP_NUM_THREADS`` or its CPU affinity runs its next simulation with the new count (it was fixed at
    the first run in the process: the long-lived-process audit, F6); a backend per thread count is kept."""
    if name == "auto":
        ok, _ = cuda_available()
        name = "cuda" if ok else "cpu"
    if name == "cpu" and threads is None:
        from .._cpus import default_threads

        threads = default_threads()
    return _get_backend(name, threads, gpu)


def _unknown(name: object) -> str:
    return f"unknown backend {name!r}; use 'auto', 'cpu' or 'cuda'"


def cuda_unavailable(why: str) -> Exception:
    """The error of ``backend cuda`` asked for where it cannot run (``why``: no CuPy, no device), with what to do."""
    from .._io.errors import BackendUnavailableError

    return BackendUnavailableError(f"backend 'cuda' requested but unavailable: {why}. Install CuPy for your CUDA "
                                   "version (pip install 'mcproton[cuda12]' or '[cuda13]') or use --backend cpu")


def refuse_unusable(name: str, threads: int | None = None) -> None:
    """Refuse, before a command's work, the backend ``name`` ("auto", "cpu", "cuda") where it cannot run here,
    without a CUDA call (a process that forks helpers after this has no GPU context yet): the CPU backend (asked
    for, or "auto" where CuPy is not installed) has its kernel loaded (built once per kernel source, compiler and
    CPU into the kernel cache; a compiler that cannot build it, such as one without OpenMP, is refused here), and
    ``cuda`` needs CuPy installed.  A CuPy without a GPU is found where the backend is made (:func:`get_backend`)."""
    from .._optional import present

    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(_unknown(name))
    if name == "cuda" or (name == "auto" and present("cupy")):
        if not present("cupy"):
            raise cuda_unavailable("CuPy is not installed")
        return
    get_backend("cpu", threads).compile()


@lru_cache(maxsize=16)
def _get_backend(name: str, threads: int | None, gpu: int | None) -> Backend:
    """:func:`get_backend` of a resolved name (and thread count), kept: a backend holds its loaded kernels."""
    if name == "cpu":
        from .cpu import CpuBackend

        return CpuBackend(threads)
    if name == "cuda":
        ok, why = cuda_available()
        if not ok:
            raise cuda_unavailable(why)
        from .cuda import CudaBackend, device_count

        n = device_count()
        if gpu is not None and not 0 <= int(gpu) < n:
            from .._io.errors import BackendUnavailableError

            raise BackendUnavailableError(f"run.gpu = {gpu}: this machine has {n} CUDA device(s), numbered "
                                          f"0..{n - 1}; choose one of them or leave run.gpu unset (device 0)")
        return CudaBackend(int(gpu or 0))
    raise ValueError(_unknown(name))


get_backend.cache_clear = _get_backend.cache_clear  # type: ignore[attr-defined]   # the tests drop the kept backends


__all__ = ["Backend", "get_backend", "cuda_available", "cuda_unavailable", "refuse_unusable"]
