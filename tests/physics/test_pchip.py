"""The stopping-power tables' PCHIP (mcproton/_physics/stopping.py `_Pchip`) against SciPy's PchipInterpolator,
which it replaces so that a job need not import scipy.interpolate: bitwise the same values (so the physics tables,
and with them every dose, are unchanged), on the two water tables and on random data with extrema, flat runs and
monotone runs of both signs."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from mcproton._physics.stopping import WATER_MODELS, _Pchip, _table

PchipInterpolator = pytest.importorskip("scipy.interpolate").PchipInterpolator


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, np.float64).view(np.int64)


@pytest.mark.parametrize("model", sorted(WATER_MODELS))
def test_water_tables_bitwise(model):
    e, s = _table(WATER_MODELS[model][0])
    lx, ly = np.log(e), np.log(s)
    q = np.concatenate([lx, np.linspace(lx[0], lx[-1], 50_001),
                        np.random.default_rng(7).uniform(lx[0], lx[-1], 50_000)])
    assert np.array_equal(_bits(_Pchip(lx, ly)(q)), _bits(PchipInterpolator(lx, ly, extrapolate=False)(q)))


def test_random_data_bitwise():
    rng = np.random.default_rng(20261205)
    shapes = 0
    for trial in range(240):
        n = int(rng.integers(3, 30))
        x = np.cumsum(rng.uniform(0.01, 1.0, n)) - 3.0
        kind = trial % 4
        if kind == 0:
            y = rng.normal(size=n)                               # extrema everywhere
        elif kind == 1:
            y = np.cumsum(rng.uniform(0.0, 1.0, n))              # increasing
        elif kind == 2:
            y = -np.cumsum(rng.uniform(0.0, 1.0, n))             # decreasing
        else:
            y = np.round(rng.normal(size=n))                     # flat runs (equal neighbours)
        q = np.concatenate([x, rng.uniform(x[0], x[-1], 500)])
        ours, ref = _Pchip(x, y)(q), PchipInterpolator(x, y, extrapolate=False)(q)
        assert np.array_equal(_bits(ours), _bits(ref)), (trial, x, y)
        shapes += int(np.any(ours != np.interp(q, x, y)))
    assert shapes > 200   # a cubic, not the piecewise-linear interpolant


def test_pchip_refuses_bad_input():
    with pytest.raises(ValueError, match="increasing"):
        _Pchip(np.array([0.0, 2.0, 1.0]), np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match=">= 3"):
        _Pchip(np.array([0.0, 1.0]), np.array([1.0, 2.0]))


def test_physics_import_does_not_import_scipy_interpolate():
    code = "import sys, mcproton.physics, mcproton.demo; print('scipy.interpolate' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
