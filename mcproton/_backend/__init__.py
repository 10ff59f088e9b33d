"""Backends: ``get_backend("auto" | "cpu" | "cuda")``."""
from __future__ import annotations

from functools import lru_cache

from .base import Backend
from .cuda import cuda_available


#: how the CPU backend is chosen, in the words of each caller, for the refusal of a cuda backend that cannot run here
#: (:func:`cuda_unavailable`): a command's option (check, bench, demo, validate, commission), mcproton run's config
#: key (:data:`mcproton._run.job.RunWording`), the Python API's argument.  Before (the error-message audit 27, F1),
#: every caller said "use --backend cpu", an option that ``mcproton run`` does not have.
CPU_BY_OPTION = "--backend cpu"
#: a command's option that is also its Python function's argument (mcproton check and check(), commission)
CPU_BY_OPTION_OR_ARGUMENT = f'{CPU_BY_OPTION} (Python: backend="cpu")'
CPU_BY_RUN_CONFIG = 'run.backend = "cpu" in the config (or --set run.backend="cpu")'
CPU_BY_SETTINGS = 'RunSettings(backend="cpu")'
#: the words where the caller did not say (a backend asked for by the Python API, or below a command that passes none)
CPU_BY_ANY = (f'{CPU_BY_SETTINGS} in Python; mcproton run: {CPU_BY_RUN_CONFIG}; mcproton check, bench, demo, '
              f'validate, commission: {CPU_BY_OPTION}')


def get_backend(name: str = "auto", threads: int | None = None, gpu: int | None = None, *,
                cpu_choice: str = CPU_BY_ANY) -> Backend:
    """The backend by name.  "auto" picks cuda when CuPy and a device are present, else cpu.  ``gpu``: the
    CUDA device index of the cuda backend (default 0).  The CPU backend's default thread count (``threads`` None:
    ``OMP_NUM_THREADS``, else the CPUs this process may run on) is read at each call, so that a long-lived process
    that lowers ``OMP_NUM_THREADS`` or its CPU affinity runs its next simulation with the new count (it was fixed at
    the first run in the process: the long-lived-process audit, F6); a backend per thread count is kept.
    ``cpu_choice``: how the caller's user chooses the CPU backend instead, said where cuda is asked for and cannot
    run here (:func:`cuda_unavailable`)."""
    ok = False   # whether "auto" found CUDA available (asked once)
    if name == "auto":
        ok, _ = cuda_available()
        name = "cuda" if ok else "cpu"
    if name == "cpu" and threads is None:
        from .._cpus import default_threads

        threads = default_threads()
    if name == "cuda" and not ok:   # said in the caller's words (backends are kept per name, threads and GPU only)
        ok, why = cuda_available()
        if not ok:
            raise cuda_unavailable(why, cpu_choice)
    return _get_backend(name, threads, gpu)


def _unknown(name: object) -> str:
    return f"unknown backend {name!r}; use 'auto', 'cpu' or 'cuda'"


def cuda_unavailable(why: str, cpu_choice: str) -> Exception:
    """The error of ``backend cuda`` asked for where it cannot run (``why``: no CuPy, no device), with what to do:
    install CuPy, or run on the CPU as the caller chooses it (``cpu_choice``, e.g. :data:`CPU_BY_OPTION`)."""
    from .._io.errors import BackendUnavailableError

    return BackendUnavailableError(f"backend 'cuda' requested but unavailable: {why}. Install CuPy for your CUDA "
                                   "version (pip install 'mcproton[cuda12]' or '[cuda13]'), or run on the CPU: "
                                   f"{cpu_choice}")


def refuse_unusable(name: str, threads: int | None = None, *, cpu_choice: str = CPU_BY_ANY) -> None:
    """Refuse, before a command's work, the backend ``name`` ("auto", "cpu", "cuda") where it cannot run here,
    without a CUDA call (a process that forks helpers after this has no GPU context yet): the CPU backend (asked
    for, or "auto" where CuPy is not installed) has its kernel loaded (built once per kernel source, compiler and
    CPU into the kernel cache; a compiler that cannot build it, such as one without OpenMP, is refused here), and
    ``cuda`` needs CuPy installed.  A CuPy without a GPU is found where the backend is made (:func:`get_backend`).
    ``cpu_choice``: as :func:`get_backend`'s."""
    from .._optional import present

    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(_unknown(name))
    if name == "cuda" or (name == "auto" and present("cupy")):
        if not present("cupy"):
            raise cuda_unavailable("CuPy is not installed", cpu_choice)
        return
    get_backend("cpu", threads).compile()


@lru_cache(maxsize=16)
def _get_backend(name: str, threads: int | None, gpu: int | None) -> Backend:
    """:func:`get_backend` of a resolved name (and thread count), kept: a backend holds its loaded kernels."""
    if name == "cpu":
        from .cpu import CpuBackend

        return CpuBackend(threads)
    if name == "cuda":   # available: get_backend asked first
        from .cuda import CudaBackend, device_count

        n = device_count()
        if gpu is not None and not 0 <= int(gpu) < n:
            from .._io.errors import BackendUnavailableError

            raise BackendUnavailableError(f"run.gpu = {gpu}: this machine has {n} CUDA device(s), numbered "
                                          f"0..{n - 1}; choose one of them or leave run.gpu unset (device 0)")
        return CudaBackend(int(gpu or 0))
    raise ValueError(_unknown(name))


get_backend.cache_clear = _get_backend.cache_clear  # type: ignore[attr-defined]   # the tests drop the kept backends


__all__ = ["Backend", "get_backend", "cuda_available", "cuda_unavailable", "refuse_unusable", "CPU_BY_OPTION",
           "CPU_BY_OPTION_OR_ARGUMENT", "CPU_BY_RUN_CONFIG", "CPU_BY_SETTINGS", "CPU_BY_ANY"]
