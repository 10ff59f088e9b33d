"""The stopping-power tables' PCHIP (mcproton/_physics/stopping.py `_Pchip`, mcproton's own implementation of the
Fritsch-Carlson / Fritsch-Butland method): the method's properties, and agreement with SciPy's
PchipInterpolator (an independent implementation of the same method) on the two water tables and on random data
with extrema, flat runs and monotone runs of both signs.

Everything here is deterministic (fixed seeds), so the tolerances carry no false-positive rate.  The agreement with
SciPy is to rounding: the two evaluate the same cubics in different forms (Hermite basis here, power form there),
measured at most 6e-16 relative on the water tables and 1.3e-15 of the data's scale on the random data; the bound
is 4e-15.  A difference in the method (another slope formula, another end rule) shows as 1e-3 or more."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from mcproton._physics.stopping import WATER_MODELS, _Pchip, _table

#: |ours - SciPy| <= this x the data's scale (max |y|): a few rounding errors of a cubic evaluated in another form
SCIPY_REL_TOL = 4e-15


def _random_data(rng: np.random.Generator, trial: int) -> tuple[np.ndarray, np.ndarray]:
    n = int(rng.integers(3, 30))
    x = np.cumsum(rng.uniform(0.01, 1.0, n)) - 3.0
    kind = trial % 5
    if kind == 0:
        y = rng.normal(size=n)                               # extrema everywhere
    elif kind == 1:
        y = np.cumsum(rng.uniform(0.0, 1.0, n))              # increasing
    elif kind == 2:
        y = -np.cumsum(rng.uniform(0.0, 1.0, n))             # decreasing
    elif kind == 3:
        y = np.round(rng.normal(size=n))                     # flat runs (equal neighbours)
    else:
        y = np.cumsum(rng.uniform(0.0, 1.0, n) ** 6)         # increasing, steps of very different size
    return x, y


def _cases(n: int = 300, seed: int = 20261206):
    rng = np.random.default_rng(seed)
    return [_random_data(rng, trial) for trial in range(n)]


def _dense(x: np.ndarray, per_interval: int = 200) -> np.ndarray:
    """Points filling every interval (the nodes included)."""
    t = np.linspace(0.0, 1.0, per_interval + 1)[:-1]
    return np.append((x[:-1, None] + np.diff(x)[:, None] * t).ravel(), x[-1])


@pytest.mark.parametrize("model", sorted(WATER_MODELS))
def test_water_tables_agree_with_scipy(model):
    PchipInterpolator = pytest.importorskip("scipy.interpolate").PchipInterpolator
    e, s = _table(WATER_MODELS[model][0])
    lx, ly = np.log(e), np.log(s)
    q = np.concatenate([lx, np.linspace(lx[0], lx[-1], 50_001),
                        np.random.default_rng(7).uniform(lx[0], lx[-1], 50_000)])
    ours, ref = _Pchip(lx, ly)(q), PchipInterpolator(lx, ly, extrapolate=False)(q)
    assert np.all(np.abs(ref) > 0.5)   # ln S of water stays away from 0: a relative bound is meaningful
    rel = np.abs(ours - ref) / np.abs(ref)
    assert rel.max() <= SCIPY_REL_TOL, rel.max()


def test_random_data_agrees_with_scipy():
    PchipInterpolator = pytest.importorskip("scipy.interpolate").PchipInterpolator
    rng = np.random.default_rng(20261205)
    cubic = 0
    for trial, (x, y) in enumerate(_cases()):
        q = np.concatenate([x, rng.uniform(x[0], x[-1], 500)])
        ours, ref = _Pchip(x, y)(q), PchipInterpolator(x, y, extrapolate=False)(q)
        scale = max(float(np.max(np.abs(y))), 1e-300)
        assert np.max(np.abs(ours - ref)) <= SCIPY_REL_TOL * scale, (trial, x, y)
        cubic += int(np.any(np.abs(ours - np.interp(q, x, y)) > 1e-9 * scale))
    assert cubic > 200   # a cubic, not the piecewise-linear interpolant


@pytest.mark.parametrize("model", sorted(WATER_MODELS))
def test_nodes_reproduced_exactly(model):
    e, s = _table(WATER_MODELS[model][0])
    cases = [(np.log(e), np.log(s))] + _cases(100)
    for x, y in cases:
        assert np.array_equal(_Pchip(x, y)(x), y)


def test_monotone_data_give_a_monotone_interpolant():
    """Fritsch & Carlson (1980): no overshoot.  Increasing data (steps of very different sizes, where a cubic
    spline or central-difference slopes overshoot) give a non-decreasing interpolant, decreasing data a
    non-increasing one; with any data each interval's values stay between its two node values."""
    rng = np.random.default_rng(11)
    monotone = 0
    for x, y in _cases():
        f = _Pchip(x, y)
        tol = 4e-15 * max(float(np.max(np.abs(y))), 1e-300)   # rounding of the evaluation
        q = _dense(x)
        v = f(q)
        dy = np.diff(y)
        if np.all(dy >= 0) or np.all(dy <= 0):
            monotone += 1
            direction = 1.0 if dy.sum() >= 0 else -1.0
            assert np.all(direction * np.diff(v) >= -tol), (x, y)
        # every interval between its node values, at random points too
        k = rng.integers(0, x.size - 1, 2000)
        vq = f(x[k] + rng.uniform(0.0, 1.0, k.size) * np.diff(x)[k])
        lo, hi = np.minimum(y[k], y[k + 1]), np.maximum(y[k], y[k + 1])
        assert np.all(vq >= lo - tol) and np.all(vq <= hi + tol), (x, y)
    assert monotone >= 180   # kinds 1, 2 and 4 of _random_data (3 in 5 of 300)


def test_first_derivative_continuous_at_the_nodes():
    """C1: the one-sided difference quotients at each interior node agree (a jump in the slope, as a
    piecewise-linear or a wrongly joined interpolant has, is of the order of the secant slopes).  Step eps = 1e-6
    of the shortest interval: truncation <= 6e-6 x the largest secant slope, rounding ~ 4e-16 |y| / eps; bound
    1e-4 x (largest secant slope + |y|)."""
    for x, y in _cases():
        f = _Pchip(x, y)
        h = np.diff(x)
        eps = 1e-6 * h.min()
        xi = x[1:-1]
        right = (f(xi + eps) - f(xi)) / eps
        left = (f(xi) - f(xi - eps)) / eps
        bound = 1e-4 * (float(np.max(np.abs(np.diff(y) / h))) + float(np.max(np.abs(y))))
        assert np.max(np.abs(right - left)) <= bound, (x, y)


def test_pchip_refuses_bad_input():
    with pytest.raises(ValueError, match="increasing"):
        _Pchip(np.array([0.0, 2.0, 1.0]), np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="increasing"):
        _Pchip(np.array([0.0, 1.0, 1.0]), np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match=">= 3"):
        _Pchip(np.array([0.0, 1.0]), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="finite"):
        _Pchip(np.array([0.0, 1.0, 2.0]), np.array([1.0, np.nan, 3.0]))
    with pytest.raises(ValueError, match="finite"):
        _Pchip(np.array([0.0, 1.0, np.inf]), np.array([1.0, 2.0, 3.0]))


def test_physics_import_does_not_import_scipy_interpolate():
    code = "import sys, mcproton.physics, mcproton.demo; print('scipy.interpolate' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
