"""The backend protocol: the same kernel source launched on the CPU (host compiler + OpenMP) or the GPU
(CuPy/NVRTC).  Arguments are cast from one specification (mcproton/_kernels/layout.py ENTRY_POINTS)."""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class Backend(Protocol):
    name: str          # "cpu" or "cuda"
    device: str        # human-readable device description
    compiler: str      # compiler and version
    compile_options: tuple[str, ...]
    xp: Any            # numpy or cupy

    def asarray(self, a: np.ndarray) -> Any: ...
    def zeros(self, shape: Any, dtype: Any) -> Any: ...
    def ptr(self, a: Any) -> int: ...
    def to_host(self, a: Any) -> np.ndarray: ...
    def launch(self, name: str, n_items: int, *args: Any) -> None: ...
    def synchronize(self) -> None: ...
    def compile(self) -> None: ...          # build (or load from the cache) the transport kernel
    def device_context(self) -> Any: ...    # a context manager in which this backend's device is current


def cast_scalar(kind: str, value: Any) -> Any:
    """Explicit scalar casts (a bare Python int would otherwise become whatever the binding guesses)."""
    if kind == "u64":
        return np.uint64(value)
    if kind == "i64":
        return np.int64(value)
    if kind == "i32":
        return np.int32(value)
    if kind == "f32":
        return np.float32(value)
    raise ValueError(f"unknown scalar kind {kind!r}")
