"""Spot selection at the top of the uniform's range (code review, 2026-12-06).

The kernel's uniform (``kernels/random/rng.h``) is ``(k + 0.5) / 2^24`` in float32 for the top 24 bits k: k = 2^24 - 1
rounds to exactly 1.0, once in 2^24 draws.  ``select_spot`` (``kernels/source/sample.h``) returns the first spot whose
CDF entry exceeds u, and the last spot when none does: with a CDF ending in entries of exactly 1, u == 1 picked a
trailing zero-weight spot.  ``Beam.spot_cdf`` now ends just above 1 from the last positive weight on."""
from __future__ import annotations

import numpy as np

from mcproton.source import Beam, Spot


def _kernel_uniform(k: np.ndarray) -> np.ndarray:
    """The kernel's mcp_u32_to_uniform for top-24-bit values k, in float32 arithmetic as the kernel does it."""
    return (k.astype(np.float32) + np.float32(0.5)) * np.float32(5.9604644775390625e-08)


def _select_spot(cdf: np.ndarray, u: np.float32) -> int:
    """The kernel's select_spot: the first index whose entry exceeds u, else the last index."""
    return min(int(np.searchsorted(cdf, u, side="right")), len(cdf) - 1)


def test_the_kernel_uniform_reaches_exactly_one():
    top = _kernel_uniform(np.array([2**24 - 1, 2**24 - 2, 0]))
    assert top[0] == np.float32(1.0) and top[1] < 1.0 and top[2] > 0.0


def test_u_equal_to_one_never_picks_a_trailing_zero_weight_spot():
    beam = Beam([Spot(100.0, weight=1.0), Spot(120.0, weight=2.0), Spot(140.0, weight=0.0), Spot(150.0, weight=0.0)])
    cdf = beam.spot_cdf()
    assert cdf.dtype == np.float32
    assert _select_spot(cdf, np.float32(1.0)) == 1                     # the last spot with a positive weight
    for k, want in ((0, 0), (2**24 // 3 - 1, 0), (2**24 // 3 + 1, 1), (2**24 - 2, 1)):
        assert _select_spot(cdf, _kernel_uniform(np.array([k]))[0]) == want


def test_every_u_below_one_picks_what_a_cdf_ending_at_one_picks():
    """Only u == 1 may choose differently: for u < 1 the entries just above 1 select as entries of exactly 1."""
    rng = np.random.default_rng(7)
    w = rng.random(300)
    w[rng.random(300) < 0.2] = 0.0
    w[-5:] = 0.0
    beam = Beam([Spot(100.0 + 0.1 * i, weight=float(x)) for i, x in enumerate(w)])
    new = beam.spot_cdf()
    old = np.cumsum(w) / w.sum()
    old[-1] = 1.0
    old = old.astype(np.float32)
    u = _kernel_uniform(np.concatenate([rng.integers(0, 2**24 - 1, 20000), np.arange(2**24 - 4000, 2**24 - 1)]))
    assert u.max() < 1.0
    assert np.array_equal(np.minimum(np.searchsorted(new, u, side="right"), len(w) - 1),
                          np.minimum(np.searchsorted(old, u, side="right"), len(w) - 1))
    assert _select_spot(old, np.float32(1.0)) == len(w) - 1            # the old CDF: a zero-weight spot
    assert w[_select_spot(new, np.float32(1.0))] > 0
