"""The NumPy mirrors of the kernel structs (Params, Spot) match the compiled layout: every field of Params
(PARAMS_DTYPE is built from params.h's MCP_PARAMS_FIELDS, which the probe expands too) and a few of Spot."""
from __future__ import annotations

import numpy as np

from mcproton._backend import get_backend
from mcproton._kernels.layout import LAYOUT_PROBE_FIELDS, expected_layout


def test_params_and_spot_layout(backend):
    b = get_backend(backend)
    out = b.zeros(len(LAYOUT_PROBE_FIELDS), np.int64)
    b.launch("mcp_probe_layout", 1, out)
    got = b.to_host(out)[: len(LAYOUT_PROBE_FIELDS)].tolist()
    exp = expected_layout()
    bad = [(f, g, e) for f, g, e in zip(LAYOUT_PROBE_FIELDS, got, exp) if g != e]
    assert not bad, f"struct layout mismatch (field, kernel, numpy): {bad}"
