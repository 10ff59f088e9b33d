"""Loading the CPU kernel library must not change the floating-point environment of the user's process.

A shared library linked with -ffast-math (gcc < 13) carries crtfastmath.o, whose constructor sets
flush-to-zero / denormals-are-zero for the whole process: every later NumPy/SciPy computation then loses its
subnormal numbers (this made scipy's cKDTree recurse without end in the demo's planner after a simulation).
Checked in a fresh interpreter so that nothing else loaded by the test session can mask or cause it.
"""
from __future__ import annotations

import subprocess
import sys

# Compared through the bit pattern: with denormals-are-zero even `0.0 == 3e-310` is True.
CODE = """
import numpy as np
a = np.array([1e-310])
def bits(v):
    return int(np.asarray(v, np.float64).view(np.uint64))
assert bits((a * 3.0)[0]) != 0, "denormals already flushed before loading the kernel"
from mcproton._backend import get_backend
b = get_backend("cpu")
b.compile()
from mcproton.geometry import box_phantom
from mcproton.run import simulate
from mcproton.settings import RunSettings
from mcproton.source import Beam
simulate(box_phantom("water", (20, 20, 40), 2.0), Beam.pencil(50.0, position_mm=(0, 0, -1)),
         RunSettings(primaries=200, backend="cpu", batches=2), progress=False)
x = (a * 3.0)[0]
assert bits(x) != 0, f"the CPU kernel library switched the process to flush-to-zero: 3e-310 became {x!r}"
print("ok")
"""


def test_loading_the_cpu_kernel_keeps_ieee_denormals():
    r = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stdout + r.stderr
