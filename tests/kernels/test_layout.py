"""The NumPy mirrors of the kernel structs (Params, Spot) match the compiled layout: the offset and size of
every role of Params and the offset of every field of Params and of Spot (the dtypes are built from the
X-macro lists of params.h and source/spot.h, which the probe expands too); and the headers' static_asserts
stop the compiler on implicit padding."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from mcproton._backend import get_backend
from mcproton._kernels.layout import LAYOUT_PROBE_FIELDS, expected_layout
from mcproton._kernels.source import kernels_dir


def test_params_and_spot_layout(backend):
    b = get_backend(backend)
    out = b.zeros(len(LAYOUT_PROBE_FIELDS), np.int64)
    b.launch("mcp_probe_layout", 1, out)
    got = b.to_host(out)[: len(LAYOUT_PROBE_FIELDS)].tolist()
    exp = expected_layout()
    bad = [(f, g, e) for f, g, e in zip(LAYOUT_PROBE_FIELDS, got, exp) if g != e]
    assert not bad, f"struct layout mismatch (field, kernel, numpy): {bad}"


def _syntax_check(tmp_path, header: str):
    """g++ -fsyntax-only of a translation unit that includes a copy of kernels/ with params.h replaced."""
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.skip("g++ not found (the CPU backend's usual compiler; install it to run this check)")
    k = tmp_path / "kernels"
    if not k.exists():
        shutil.copytree(kernels_dir(), k, ignore=shutil.ignore_patterns("__pycache__"))
    (k / "params.h").write_text(header)
    (tmp_path / "t.cpp").write_text('#include "kernels/params.h"\n')
    return subprocess.run([cxx, "-std=c++17", "-fsyntax-only", str(tmp_path / "t.cpp")], capture_output=True,
                          text=True)


PAD = '    X(int32_t, pad_grid, "padding (GridParams to a multiple of 8 bytes)")'


@pytest.mark.parametrize("old,new,message", [
    (PAD, "", "struct GridParams has implicit padding"),
    ('X(uint64_t, seed, "random seed")', 'X(float, seed, "random seed")',
     "struct Params has padding between"),
], ids=["role_struct_padding", "padding_between_roles"])
def test_static_asserts_refuse_padding_at_compile_time(tmp_path, old, new, message):
    """params.h's static_asserts stop the compiler on a layout the NumPy mirror could disagree with (the
    parser refuses the same edits, tests/kernels/test_contract.py)."""
    header = (kernels_dir() / "params.h").read_text()
    assert header.count(old) == 1
    ok = _syntax_check(tmp_path, header)
    assert ok.returncode == 0, ok.stderr[-3000:]
    bad = _syntax_check(tmp_path, header.replace(old, new))
    assert bad.returncode != 0 and message in bad.stderr, bad.stderr[-3000:]
