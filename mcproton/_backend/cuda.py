"""CUDA backend: the kernel source compiled at run time by NVRTC through ``cupy.RawModule`` and launched on
CuPy arrays.  CuPy is an optional dependency (``pip install mcproton[cuda12]`` or ``[cuda13]``)."""
from __future__ import annotations

from typing import Any

import numpy as np

from .._kernels.layout import ENTRY_POINTS
from .._kernels.source import assemble
from .base import cast_scalar

CUDA_OPTIONS = ("-std=c++17", "--use_fast_math")
BLOCK = 128
#: the block sizes (threads per block) that MCPROTON_CUDA_BLOCK may give: the multiples of 32 measured or meant to be
#: (scripts/gpu_check.sh), not every multiple of 32 (160, 224, 768 are refused; the message lists these: it said "a
#: multiple of 32 up to 1024", and refused 160; the environment audit 19, F8)
CUDA_BLOCKS = (32, 64, 96, 128, 192, 256, 384, 512, 1024)


def tuning_from_env() -> tuple[tuple[str, ...], int]:
    """(extra NVRTC options, threads per block) from the occupancy-tuning knobs MCPROTON_CUDA_MAXREG (a register
    cap per thread: 128 registers and no spills by default on sm_90 since the range shifter's secondaries of 2026-12-07,
    94 before them, 182 for the kernel before the persistent loop; BENCHMARKS.md 2026-12-07),
    MCPROTON_CUDA_REFILL_MIN_IDLE (lanes of a warp that must want a new history before they fetch one together,
    1-32, default 1: kernels/transport.cu MCP_REFILL_MIN_IDLE) and MCPROTON_CUDA_BLOCK (default 128).  For
    measuring on a GPU (scripts/gpu_check.sh), not for production runs; all are recorded in the provenance
    (compile options, device)."""
    import os

    extra: tuple[str, ...] = ()
    block = BLOCK
    reg = os.environ.get("MCPROTON_CUDA_MAXREG", "").strip()
    if reg:
        if not reg.isdigit() or not 16 <= int(reg) <= 255:
            raise ValueError(f"MCPROTON_CUDA_MAXREG={reg!r}: give a register count between 16 and 255")
        extra = (f"--maxrregcount={int(reg)}",)
    idle = os.environ.get("MCPROTON_CUDA_REFILL_MIN_IDLE", "").strip()
    if idle:
        if not idle.isdigit() or not 1 <= int(idle) <= 32:
            raise ValueError(f"MCPROTON_CUDA_REFILL_MIN_IDLE={idle!r}: give a lane count between 1 and 32")
        extra += (f"-DMCP_REFILL_MIN_IDLE={int(idle)}",)
    blk = os.environ.get("MCPROTON_CUDA_BLOCK", "").strip()
    if blk:
        if not blk.isdigit() or int(blk) not in CUDA_BLOCKS:
            raise ValueError(f"MCPROTON_CUDA_BLOCK={blk!r}: give one of {', '.join(map(str, CUDA_BLOCKS))} (threads "
                             f"per block; default {BLOCK})")
        block = int(blk)
    return extra, block


def cuda_available() -> tuple[bool, str]:
    """(available, reason): CuPy importable and at least one CUDA device present."""
    try:
        import cupy  # noqa: F401
    except Exception as exc:  # ImportError or a broken CUDA install
        return False, f"CuPy not importable ({type(exc).__name__}: {exc})"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return False, f"no CUDA device ({exc})"
    if n < 1:
        return False, "no CUDA device"
    return True, f"{n} CUDA device(s)"


def device_count() -> int:
    import cupy

    return int(cupy.cuda.runtime.getDeviceCount())


class CudaBackend:
    name = "cuda"
    to_host_is_copy = True   # cupy.asnumpy returns a new host array

    def __init__(self, device_id: int = 0) -> None:
        import cupy

        self.xp = cupy
        self._cupy = cupy
        self.device_id = int(device_id)
        # every call below runs with this device current: CUDA's current device is per thread, and a Dask
        # worker or a caller may run batches from another thread than the one that built the backend
        self._device = cupy.cuda.Device(self.device_id)
        self._device.use()
        props = cupy.cuda.runtime.getDeviceProperties(device_id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        self._sm = int(props["multiProcessorCount"])
        # the architecture NVRTC compiles for (CuPy builds for the current device's compute capability)
        self.compute_capability = (f"{props['major']}.{props['minor']}" if "major" in props and "minor" in props
                                   else "unknown")
        extra, self.block = tuning_from_env()
        self.device = (f"GPU {device_id}: {name} ({self._sm} SMs, driver {cupy.cuda.runtime.driverGetVersion()}, "
                       f"{self.block} threads/block)")
        self.compiler = f"NVRTC {'.'.join(map(str, cupy.cuda.nvrtc.getVersion()))} (CuPy {cupy.__version__})"
        self.compile_options = CUDA_OPTIONS + extra
        self._modules: dict[str, Any] = {}

    def build_identity(self) -> dict[str, str]:
        """What decides the bits of the transport kernel this backend runs, for a checkpoint's record
        (checkpoint.kernel_build): NVRTC's version (with CuPy's, which chooses the options it adds), the compile
        options (MCPROTON_CUDA_MAXREG and MCPROTON_CUDA_REFILL_MIN_IDLE among them) and the GPU architecture it is
        compiled for (compute capability).  Not the GPU's index, SM count or driver, nor the threads per block: those
        decide where and how fast the histories run, not their arithmetic; every history's random numbers depend on
        the seed and its index only, and the tallies are 64-bit integers, so that the dose is the same whichever
        thread runs which history (tests/engine/test_work_distribution.py, test_transport.py: any split, thread
        count and launch).  The device text was recorded, and a job resumed on GPU 1 of an identical node, or after
        a driver update, was warned about as another build (review 2 of 2026-12-06, F6)."""
        return {"compiler": self.compiler, "options": " ".join(self.compile_options),
                "compute_capability": self.compute_capability}

    def device_context(self) -> Any:
        """A context in which this backend's GPU is the current device."""
        return self._device

    def _module(self, entry: str) -> Any:
        if entry not in self._modules:
            with self._device:
                self._modules[entry] = self._cupy.RawModule(code=assemble(entry), options=self.compile_options)
        return self._modules[entry]

    def compile(self) -> None:
        with self._device:
            self._module("transport.cu").get_function("mcp_transport")

    def asarray(self, a: np.ndarray) -> Any:
        with self._device:
            return self._cupy.asarray(np.ascontiguousarray(a))

    def zeros(self, shape: Any, dtype: Any) -> Any:
        with self._device:
            return self._cupy.zeros(shape, dtype)

    def ptr(self, a: Any) -> int:
        return int(a.data.ptr)

    def to_host(self, a: Any) -> np.ndarray:
        with self._device:
            return self._cupy.asnumpy(a)

    def synchronize(self) -> None:
        self._device.synchronize()

    def launch(self, name: str, n_items: int, *args: Any) -> None:
        file, spec = ENTRY_POINTS[name]
        if len(args) != len(spec):
            raise TypeError(f"{name} takes {len(spec)} arguments, got {len(args)}")
        cargs = [a if kind == "p" else cast_scalar(kind, a) for kind, a in zip(spec, args)]
        for kind, a in zip(spec, cargs):
            if kind == "p" and not isinstance(a, self._cupy.ndarray):
                raise TypeError(f"{name}: pointer arguments must be CuPy arrays on the CUDA backend")
        blk = self.block
        grid = max(1, min((int(n_items) + blk - 1) // blk, self._sm * 64 * BLOCK // blk))
        with self._device:
            self._module(file).get_function(name)((grid,), (blk,), tuple(cargs))
