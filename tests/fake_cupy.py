"""A stand-in for CuPy that runs the CUDA backend's Python side on a machine without a GPU.

It provides only what mcproton's CUDA backend calls (device queries, ``RawModule``, ``asarray``/``zeros``/
``asnumpy``, memory pools) and is strict where CuPy is strict, so that the glue between mcproton and the GPU is
exercised in CI before any GPU run:

* a kernel launch must pass ``grid`` and ``block`` as tuples of positive ints (block <= 1024 threads) and one
  argument per parameter of the kernel's C signature, parsed from the very source string handed to
  ``RawModule``: device arrays for pointers, NumPy scalars of exactly the parameter's type for scalars (CuPy
  would pass a Python ``int`` as 64-bit and a Python ``float`` as a double, silently wrong for ``int32_t`` /
  ``float`` parameters);
* device arrays compute with each other (ufuncs, methods) but refuse NumPy functions and any mixing with host
  arrays (CuPy raises on implicit conversion to NumPy), so host code that treats a device array as a NumPy
  array fails here as it would on a GPU;
* it counts the bytes copied to the host (``bytes_to_host``; the shape of every copy: ``host_copies``) and to
  the device (``bytes_to_device``), to check what a batch or a beam's start and end cost.

The launched kernel itself runs on the CPU backend (the same source compiled by the host compiler): the emulation
tests the CUDA backend's data flow, not the GPU's arithmetic.
"""
from __future__ import annotations

import re
import types
from typing import Any

import numpy as np

# C parameter type -> NumPy scalar type CuPy needs for it
C_SCALARS = {"uint64_t": np.uint64, "int64_t": np.int64, "int32_t": np.int32, "uint32_t": np.uint32,
             "float": np.float32}
_KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)|MCP_KERNEL\s+void\s+(\w+)\s*\(([^)]*)\)')

DEVICE_NAME = "Emulated GPU (fake CuPy, kernels run on the CPU)"


def kernel_signatures(code: str) -> dict[str, list[str]]:
    """{kernel name: ["ptr" | C scalar type, ...]} for every entry point of an assembled source."""
    out = {}
    for m in _KERNEL.finditer(code):
        name, params = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        kinds = []
        for prm in params.split(","):
            prm = " ".join(prm.replace("MCP_RESTRICT", "").split())
            if "*" in prm:
                kinds.append("ptr")
            else:
                ctype = prm.rsplit(" ", 1)[0].replace("const ", "")
                if ctype not in C_SCALARS:
                    raise AssertionError(f"{name}: parameter type {ctype!r} unknown to the fake CuPy")
                kinds.append(ctype)
        out[name] = kinds
    return out


class _Ptr:
    def __init__(self, a: np.ndarray) -> None:
        self.ptr = int(a.ctypes.data)


class DeviceArray(np.ndarray):
    """A "device" array: host memory, but NumPy functions and implicit conversions are refused."""

    @property
    def data(self) -> _Ptr:  # CuPy: a MemoryPointer with .ptr
        return _Ptr(self)

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        """Arithmetic between device arrays (and scalars) stays on the "device", as in CuPy; a device array
        meeting a host (NumPy) array is an error, as in CuPy."""
        outs = kwargs.get("out", ())
        arrays = [x for x in (*inputs, *outs) if isinstance(x, np.ndarray)]
        if not all(isinstance(a, DeviceArray) for a in arrays):
            raise TypeError("fake CuPy: a device array met a host (NumPy) array in a NumPy ufunc (host code must "
                            "copy it with asnumpy first)")
        host_in = tuple(x.view(np.ndarray) if isinstance(x, DeviceArray) else x for x in inputs)
        if outs:
            kwargs["out"] = tuple(o.view(np.ndarray) for o in outs)
        result = getattr(ufunc, method)(*host_in, **kwargs)
        if outs:
            return outs[0] if len(outs) == 1 else outs
        return np.asarray(result).view(DeviceArray)

    def __array_function__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("fake CuPy: a device array was passed to a NumPy function (host code must copy it with "
                        "asnumpy first)")

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("fake CuPy: implicit conversion of a device array to NumPy is not allowed")

    def host_view(self) -> np.ndarray:
        return self.view(np.ndarray)


class OutOfMemoryError(MemoryError):
    pass


def make_fake_cupy(cpu_backend: Any, log: list | None = None) -> types.ModuleType:
    """A module object to install as ``sys.modules["cupy"]``; kernels run through ``cpu_backend``."""
    cp = types.ModuleType("cupy")
    cp.__version__ = "0.0-fake"
    cp.ndarray = DeviceArray
    launches = log if log is not None else []
    cp.launches = launches            # (kernel, grid, block) of every launch
    cp.transport_sizes = []           # n_histories of every mcp_transport launch
    cp.oom_above = None               # set to an int: mcp_transport launches above it raise OutOfMemoryError
    cp.bytes_to_host = 0              # bytes copied device -> host by asnumpy
    cp.host_copies = []               # (shape, dtype) of every asnumpy of a device array
    cp.bytes_to_device = 0            # bytes copied host -> device by asarray

    def asarray(a: Any) -> DeviceArray:
        if isinstance(a, DeviceArray):
            return a
        out = np.array(a, copy=True, order="C").view(DeviceArray)
        cp.bytes_to_device += out.nbytes
        return out

    def zeros(shape: Any, dtype: Any) -> DeviceArray:
        return np.zeros(shape, dtype).view(DeviceArray)

    def asnumpy(a: Any) -> np.ndarray:
        if isinstance(a, DeviceArray):
            cp.bytes_to_host += a.nbytes
            cp.host_copies.append((a.shape, a.dtype))
            return np.array(a.host_view(), copy=True)
        return np.asarray(a)

    def flatnonzero(a: Any) -> DeviceArray:
        """cupy.flatnonzero: the int64 indices of the non-zero elements of the flattened array, on the device
        (CuPy refuses a NumPy argument)."""
        if not isinstance(a, DeviceArray):
            raise TypeError(f"fake CuPy: flatnonzero needs a device array, got {type(a).__name__}")
        return np.flatnonzero(a.host_view()).astype(np.int64).view(DeviceArray)

    cp.asarray, cp.zeros, cp.asnumpy, cp.flatnonzero = asarray, zeros, asnumpy, flatnonzero

    class RawModule:
        def __init__(self, code: str, options: tuple = ()) -> None:
            if not isinstance(code, str) or not isinstance(options, tuple):
                raise TypeError("RawModule(code: str, options: tuple)")
            self.code, self.options = code, options
            self.signatures = kernel_signatures(code)

        def get_function(self, name: str) -> Any:
            if name not in self.signatures:
                raise AttributeError(f"fake CuPy: no kernel named {name!r} in the module")
            sig = self.signatures[name]

            def launch(grid: Any, block: Any, args: Any) -> None:
                for what, dims in (("grid", grid), ("block", block)):
                    if not (isinstance(dims, tuple) and 1 <= len(dims) <= 3
                            and all(isinstance(d, int) and d >= 1 for d in dims)):
                        raise TypeError(f"fake CuPy: {what} must be a tuple of positive ints, got {dims!r}")
                if int(np.prod(block)) > 1024:
                    raise ValueError(f"fake CuPy: {int(np.prod(block))} threads per block exceed 1024")
                if not isinstance(args, tuple) or len(args) != len(sig):
                    raise TypeError(f"fake CuPy: {name} takes {len(sig)} arguments, got {args!r}")
                host_args = []
                for i, (kind, a) in enumerate(zip(sig, args)):
                    if kind == "ptr":
                        if not isinstance(a, DeviceArray):
                            raise TypeError(f"fake CuPy: argument {i} of {name} is a pointer and needs a device "
                                            f"array, got {type(a).__name__}")
                        host_args.append(a.host_view())
                    else:
                        if type(a) is not C_SCALARS[kind]:
                            raise TypeError(f"fake CuPy: argument {i} of {name} is {kind} and needs "
                                            f"numpy.{C_SCALARS[kind].__name__}, got {type(a).__name__}")
                        host_args.append(a)
                launches.append((name, grid, block))
                if name == "mcp_transport":
                    n = int(args[-1])
                    cp.transport_sizes.append(n)
                    if cp.oom_above is not None and n > cp.oom_above:
                        raise OutOfMemoryError(f"Out of memory allocating {n * 4096:,} bytes (fake CuPy, "
                                               f"launches above {cp.oom_above} histories)")
                cpu_backend.launch(name, 0, *host_args)

            return launch

    cp.RawModule = RawModule

    class _Pool:
        def __init__(self) -> None:
            self.freed = 0

        def free_all_blocks(self) -> None:
            self.freed += 1

    pool, pinned = _Pool(), _Pool()
    cp.get_default_memory_pool = lambda: pool
    cp.get_default_pinned_memory_pool = lambda: pinned

    cp.n_devices = 1                  # how many GPUs the fake machine has
    cp.devices_used = []              # device ids made current (Device.use / with Device(i))

    class Device:
        def __init__(self, device_id: int = 0) -> None:
            if not 0 <= int(device_id) < cp.n_devices:
                raise RuntimeError(f"fake CuPy: no CUDA device {device_id} (the machine has {cp.n_devices})")
            self.id = int(device_id)

        def use(self) -> None:
            cp.devices_used.append(self.id)

        def __enter__(self) -> "Device":
            cp.devices_used.append(self.id)
            return self

        def __exit__(self, *exc: Any) -> None:
            pass

        def synchronize(self) -> None:
            pass

    def properties(i: int) -> dict:
        Device(i)  # checks the index
        return {"name": DEVICE_NAME.encode(), "multiProcessorCount": 2, "major": 9, "minor": 0}

    runtime = types.SimpleNamespace(
        getDeviceCount=lambda: cp.n_devices,
        getDeviceProperties=properties,
        driverGetVersion=lambda: 13000,
    )
    cp.cuda = types.SimpleNamespace(Device=Device, runtime=runtime,
                                    nvrtc=types.SimpleNamespace(getVersion=lambda: (13, 0)),
                                    memory=types.SimpleNamespace(OutOfMemoryError=OutOfMemoryError))
    return cp


def install_fake_cupy(monkeypatch):
    """Put the fake CuPy in sys.modules for one test (monkeypatch takes it out again); returns it.  The caller
    clears ``get_backend``'s cache at teardown."""
    import sys

    from mcproton._backend import get_backend
    from mcproton._backend.cpu import CpuBackend

    fake = make_fake_cupy(CpuBackend())
    monkeypatch.setitem(sys.modules, "cupy", fake)
    get_backend.cache_clear()
    return fake
