"""The kernel sources compile without a warning on g++ (-Wall -Werror, issue 16), as the CPU backend compiles
them but at -O1 (the flow-analysis warnings such as -Wmaybe-uninitialized need an optimiser; -O1 has them at a
third of -O3's compile time).  A warning there has found real defects (a constant
defined twice with two values: MCP_PROTON_MASS_MEV in physics/kinematics.h and physics/nuclear.h).

-Wno-unknown-pragmas: ``#pragma unroll`` is for nvcc/NVRTC; g++ ignores it by design.
"""
from __future__ import annotations

import shutil
import subprocess

import pytest

from mcproton._backend.cpu import CPU_COMPILE_OPTIONS
from mcproton._kernels.source import ENTRY_FILES, assemble

WARNING_FLAGS = ("-Wall", "-Werror", "-Wno-unknown-pragmas")


@pytest.mark.parametrize("entry", ENTRY_FILES)
def test_kernels_compile_without_warnings(entry, tmp_path):
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.skip("g++ not found (the CPU backend's usual compiler; install it to run this check)")
    src = tmp_path / f"{entry}.cpp"
    src.write_text(assemble(entry))
    opts = ["-O1" if o.startswith("-O") else o for o in CPU_COMPILE_OPTIONS if o not in ("-c", "-march=native")]
    proc = subprocess.run([cxx, *opts, *WARNING_FLAGS, "-c", str(src), "-o", str(tmp_path / "k.o")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, f"kernels/{entry} has compiler warnings (g++ {' '.join(WARNING_FLAGS)}):\n" \
                                 f"{proc.stderr[-6000:]}"
