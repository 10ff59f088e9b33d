"""Levels and definitions of the commissioning metrics that every other test left free (mutation audit 32,
"mutation2"): the IDD gamma fails below its pass-rate tolerance (95 %) whatever the other checks say, and the
energy's verdict with it (mutants K3, the level 10 % lower, and K6, an energy passed where any check passed); the
DFO is R20 - R80 (K7: R20 - R90 passed, both curves changing alike); the chamber's weights are the area of its disc
(K11: a radius 10 % larger passed).  Synthetic curves, no transport; deterministic."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

from mcproton.commission import Tolerances, _compare_idd, _idd_metrics, chamber_weights


def _bragg(z_mm: np.ndarray, range_mm: float = 100.0) -> np.ndarray:
    """A Bragg-like curve: (R + 3 - z)^-0.45 cut at R, its fall-off smoothed by 1.2 mm (on a 0.05 mm grid)."""
    fine = np.arange(0.0, 130.0, 0.05)
    d = np.where(fine < range_mm, np.clip(range_mm + 3.0 - fine, 0.5, None) ** -0.45, 0.0)
    return np.interp(z_mm, fine, gaussian_filter1d(d, 1.2 / 0.05))


def test_a_gamma_pass_rate_below_the_tolerance_fails_the_energy():
    """The same curve 10 % high over 12 mm of its plateau (2 % of the peak dose): ranges, fall-off and peak/entrance
    agree (within 0.04 mm and 0.5 %), the gamma 1 %/1 mm passes 88 % of the points: the energy fails."""
    zc = np.arange(0.25, 125.0, 0.5)                      # the model's 0.5 mm bins
    zm = np.arange(1.0, 115.0, 1.0)                       # a chamber every 1 mm
    dm = _bragg(zm) * np.where((zm >= 30) & (zm < 42), 1.10, 1.0)
    tol = Tolerances()
    row, _ = _compare_idd(150.0, zm, dm, zc, _bragg(zc), tol, 150.0)
    checks = {c["quantity"].split(" (")[0].split(" ")[0]: c for c in row["checks"]}
    assert all(checks[k]["passed"] for k in ("R90", "R80", "DFO", "peak/entrance")), row["checks"]
    g = checks["gamma"]
    assert 0.8 < g["difference"] < tol.gamma_pass, g          # the case lies between the levels a slip would use
    assert g["tolerance"] == tol.gamma_pass                   # the level the row states is the one applied
    assert g["passed"] is False and row["passed"] is False


def test_the_distal_fall_off_is_r20_minus_r80():
    """A rise from 0.5 at the surface to 1 at 90 mm, then a linear fall-off to 0 at 100 mm: R90 = 91, R80 = 92,
    R20 = 98 mm, so the DFO R20 - R80 is 6 mm (R20 - R90 would be 7 mm)."""
    z = np.arange(0.0, 110.0, 0.25)
    d = np.where(z <= 90.0, 0.5 + z / 180.0, np.clip((100.0 - z) / 10.0, 0.0, 1.0))
    r, _ = _idd_metrics(z, d, 0.0, "a test curve")
    assert (r["R90"], r["R80"], r["R20"]) == pytest.approx((91.0, 92.0, 98.0), abs=0.02)
    assert r["falloff_80_20"] == pytest.approx(r["R20"] - r["R80"], abs=1e-12)
    assert r["falloff_80_20"] == pytest.approx(6.0, abs=0.03)


@pytest.mark.parametrize("radius_mm", [5.0, 40.8])
def test_the_chamber_weights_are_the_area_of_its_disc(radius_mm):
    """chamber_weights x the voxel area is the disc's area pi r^2, to the sub-sampling's 0.5 % (a radius 10 % larger,
    21 % more area, took more of the spot's halo into the chamber's IDD)."""
    n, voxel = 120, 1.0
    w = chamber_weights(n, voxel, radius_mm)
    assert w.sum() * voxel ** 2 == pytest.approx(np.pi * radius_mm ** 2, rel=0.005)
    assert 0.0 <= w.min() and w.max() == 1.0
