"""CPU backend: the kernel source compiled by the host C++ compiler with OpenMP, cached as a shared
library keyed by SHA-256(source + options + compiler version + CPU), loaded with ctypes."""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .._cpus import default_threads
from .._kernels.layout import ENTRY_POINTS
from .._kernels.source import assemble
from .base import cast_scalar

# -ffast-math for speed, but keep IEEE infinities (the kernels use +inf as "no limit").
CPU_COMPILE_OPTIONS = ("-O3", "-march=native", "-ffast-math", "-fno-finite-math-only", "-fopenmp", "-fPIC",
                       "-std=c++17", "-x", "c++", "-c")
# Linked in a second step WITHOUT -ffast-math: with it, gcc < 13 links crtfastmath.o into the shared library,
# whose constructor switches the whole process to flush-to-zero / denormals-are-zero when the library is
# loaded - silently changing every later NumPy/SciPy result in the user's process (it sent scipy's cKDTree into
# endless recursion in the demo's planner).  tests/engine/test_cpu_backend_fp_env.py guards this.
CPU_LINK_OPTIONS = ("-shared", "-fopenmp")
CPU_OPTIONS = CPU_COMPILE_OPTIONS + ("&&",) + CPU_LINK_OPTIONS   # as recorded in the provenance

#: whether this process has launched a kernel on an OpenMP team of more than one thread: its OpenMP runtime then
#: keeps a pool of worker threads
_TEAM_RUN = False
#: whether this process was forked (multiprocessing's "fork" start method, the default on Linux before Python 3.14)
#: from one that had (or from such a child): the GNU OpenMP runtime (libgomp) is not fork-safe, and the child inherits
#: a pool whose threads do not exist in it, so the child's first team of more than one thread waits for them for
#: ever (the Python-API audit, F1: multiprocessing workers hung without a word).  Such a child runs on one thread.
_FORKED_AFTER_TEAM = False
_FORK_WARNED = False


def _after_fork_in_child() -> None:
    global _FORKED_AFTER_TEAM, _FORK_WARNED
    _FORKED_AFTER_TEAM = _FORKED_AFTER_TEAM or _TEAM_RUN
    _FORK_WARNED = False   # each process says it once


if hasattr(os, "register_at_fork"):   # POSIX; imported before the first kernel runs, so before any team exists
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _warn_forked(threads: int) -> None:
    """Say once per process why a forked child runs on one thread, and how to get its threads."""
    global _FORK_WARNED
    if _FORK_WARNED:
        return
    _FORK_WARNED = True
    from .._io.errors import McprotonRuntimeWarning, warn

    warn("this process was forked from one that had run the CPU backend on several OpenMP threads (multiprocessing's "
         "\"fork\" start method, the default on Linux before Python 3.14); the OpenMP runtime is not fork-safe, and a "
         "team of several threads here would wait for ever for the parent's threads, so the CPU backend runs on 1 "
         f"thread in this process instead of {threads}; for {threads} threads per worker, start the workers with "
         "multiprocessing.get_context(\"spawn\") or get_context(\"forkserver\") (e.g. "
         "ProcessPoolExecutor(mp_context=multiprocessing.get_context(\"spawn\"))); RunSettings(threads=1) in the "
         "workers runs them on 1 thread without this warning", McprotonRuntimeWarning)


def cache_dir() -> Path:
    d = os.environ.get("MCPROTON_CACHE_DIR")
    return Path(d) if d else Path.home() / ".cache" / "mcproton" / "kernels"


def find_compiler() -> str:
    for cand in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if cand and shutil.which(cand):
            return cand
    raise RuntimeError("no C++ compiler found for the CPU backend (looked for $CXX, g++, c++, clang++); "
                       "install one, e.g. `apt-get install g++`")


@lru_cache(maxsize=None)
def compiler_version(cxx: str) -> str:
    out = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0].strip() if out else cxx


@lru_cache(maxsize=None)
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _build(entry: str, cxx: str) -> Path:
    src = assemble(entry)
    key = hashlib.sha256("\0".join([src, " ".join(CPU_OPTIONS), compiler_version(cxx), cpu_model()])
                         .encode()).hexdigest()[:24]
    out = cache_dir() / f"{Path(entry).stem}-{key}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        cpp = Path(tmp) / f"{Path(entry).stem}.cpp"
        cpp.write_text(src)
        tmp_o, tmp_so = Path(tmp) / "k.o", Path(tmp) / "k.so"
        proc = subprocess.run([cxx, *CPU_COMPILE_OPTIONS, str(cpp), "-o", str(tmp_o)], capture_output=True, text=True)
        if proc.returncode == 0:
            proc = subprocess.run([cxx, *CPU_LINK_OPTIONS, str(tmp_o), "-o", str(tmp_so)], capture_output=True,
                                  text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"compiling kernels/{entry} for the CPU failed:\n{proc.stderr[-6000:]}")
        os.replace(tmp_so, out)  # atomic: concurrent builders never see a partial library
    return out


_CTYPES = {"p": ctypes.c_void_p, "u64": ctypes.c_uint64, "i64": ctypes.c_int64, "i32": ctypes.c_int32,
           "f32": ctypes.c_float}


class CpuBackend:
    name = "cpu"
    xp = np

    def __init__(self, threads: int | None = None) -> None:
        self._cxx = find_compiler()
        self.compiler = compiler_version(self._cxx)
        self.compile_options = CPU_OPTIONS
        self._libs: dict[str, ctypes.CDLL] = {}
        # default: OMP_NUM_THREADS, else the CPUs this process may run on (its affinity: taskset, Slurm), not the
        # machine's (mcproton/_cpus.py; the deployment audit, F8, F9)
        self.threads = threads or default_threads()
        self.device = f"CPU: {cpu_model()} ({self.threads} OpenMP threads)"

    def _lib(self, entry: str) -> ctypes.CDLL:
        if entry not in self._libs:
            lib = ctypes.CDLL(str(_build(entry, self._cxx)))
            for name, (file, spec) in ENTRY_POINTS.items():
                if file == entry:
                    fn = getattr(lib, name)
                    fn.argtypes = [_CTYPES[k] for k in spec]
                    fn.restype = None
            self._libs[entry] = lib
        return self._libs[entry]

    def compile(self) -> None:
        self._lib("transport.cu")

    def asarray(self, a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a)

    def zeros(self, shape: Any, dtype: Any) -> np.ndarray:
        return np.zeros(shape, dtype)

    def ptr(self, a: np.ndarray) -> int:
        return int(a.ctypes.data)

    def to_host(self, a: np.ndarray) -> np.ndarray:
        return a

    def synchronize(self) -> None:
        pass

    def device_context(self) -> Any:
        return contextlib.nullcontext()

    def launch(self, name: str, n_items: int, *args: Any) -> None:
        file, spec = ENTRY_POINTS[name]
        if len(args) != len(spec):
            raise TypeError(f"{name} takes {len(spec)} arguments, got {len(args)}")
        cargs = []
        for kind, a in zip(spec, args):
            if kind == "p":
                if not isinstance(a, np.ndarray) or not a.flags.c_contiguous:
                    raise TypeError(f"{name}: pointer arguments must be C-contiguous numpy arrays")
                cargs.append(ctypes.c_void_p(a.ctypes.data))
            else:
                cargs.append(cast_scalar(kind, a).item())
        lib = self._lib(file)
        threads = self._team_size()
        # through the kernel library's own handle: the OpenMP runtime it was linked with (libgomp, libomp).  The
        # calling thread's OpenMP thread count is put back afterwards: it is the script's too (every other OpenMP
        # library in the process, and a limit the script set with threadpoolctl; the Python-API audit, F7)
        before = int(lib.omp_get_max_threads())
        lib.omp_set_num_threads(ctypes.c_int(threads))
        try:
            getattr(lib, name)(*cargs)
        finally:
            lib.omp_set_num_threads(ctypes.c_int(before))

    def _team_size(self) -> int:
        """The OpenMP threads of the next launch: ``threads``, or 1 in a process forked after its parent ran a team
        of several (_FORKED_AFTER_TEAM; said once, and in ``device``)."""
        global _TEAM_RUN
        n = max(1, int(self.threads))
        if n > 1 and _FORKED_AFTER_TEAM:
            _warn_forked(n)
            self.device = f"CPU: {cpu_model()} (1 OpenMP thread: forked after the parent used {n})"
            return 1
        if n > 1:
            _TEAM_RUN = True   # before the launch: a fork from another thread during it inherits the pool
        return n
