"""The run statistics, in one place: the per-voxel relative standard error over batches and the stopping /
summary figure "mean relative uncertainty over the voxels with dose >= 50 % of the maximum" (MCsquare's
stopping figure).

Operators only (plus boolean indexing, ``.max()``, ``.mean()``), so that the same code serves NumPy arrays
(the result, the host running sums) and CuPy arrays (DeviceAccumulator's running sums on the GPU).
"""
from __future__ import annotations

from typing import Any

import numpy as np

#: Voxels lighter than this (air, g/cm3) are left out of the 50 %-of-Dmax uncertainty figure: dose to medium
#: in air is large and noisy, and would otherwise set Dmax.
UNCERTAINTY_MIN_DENSITY = 0.05


def batch_rel_uncertainty(sum_x: Any, sum_x2: Any, batches: int, weight_sum: float | None = None) -> Any:
    """Relative standard error of each voxel's mean over ``batches`` batches, from the sums of the batch means
    and of their squares; 0 where there is no dose.

    Batches of unequal size: ``sum_x`` and ``sum_x2`` are then the sums of ``w_b x_b`` and ``w_b x_b^2``, the batch
    means ``x_b`` weighted by their sizes relative to a unit (``w_b = n_b / n_unit``; Accumulator.add), and
    ``weight_sum`` is the sum of the weights.  The size-weighted batch-means estimator of the variance of the
    mean is then (sum w_b x_b^2 / W - xbar^2) / (B - 1), with xbar = sum w_b x_b / W: each batch counts by its
    histories (a batch of n_b histories has variance sigma^2 / n_b).  With equal batches (every w_b = 1, W = B,
    the default) it is the usual estimator, bit for bit.  Before (the statistics audit of 2026-12-05, F1) every
    batch counted the same, and a short last batch (20,001 primaries in batches of 2,000) put the uncertainty at
    12.7 % where the spread over seeds was 2.8 %."""
    w = batches if weight_sum is None else weight_sum
    mean_x = sum_x / w
    v = sum_x2 / w - mean_x * mean_x
    var_mean = (v + abs(v)) / 2 / max(batches - 1, 1)   # max(v, 0) / (B - 1)
    has = mean_x > 0
    return var_mean ** 0.5 / (mean_x + ~has) * has


#: The largest relative standard error of a voxel's proton deposit (the LETd's denominator) at which the LETd's
#: uncertainty is estimated (stats.let_d_rel_uncertainty; Cochran, Sampling Techniques, 3rd ed. 1977, section 6.4:
#: the delta-method variance of a ratio is adequate where the denominator's coefficient of variation is below 0.1)
LET_D_MAX_DENOMINATOR_REL = 0.1


def let_d_rel_uncertainty(let_num: Any, edep_proton: Any, primaries: int, nn: Any, ne: Any, ee: Any,
                          batches: int, weight_sum: float | None = None) -> Any:
    """Relative standard error of each voxel's LETd, the ratio R = sum(let_num) / sum(edep_proton), from its batches:
    ``let_num`` and ``edep_proton`` are the integer running sums over all ``primaries`` histories, ``nn``, ``ne``,
    ``ee`` the sums over batches of ``w_b n_b^2``, ``w_b n_b e_b``, ``w_b e_b^2`` (engine.LET_MOMENTS: ``n_b``,
    ``e_b`` a batch's tallies per history, ``w_b`` its weight as in :func:`batch_rel_uncertainty`); 0 where no
    proton deposited, NaN where a moment is NaN (not known).

    The delta-method (linearised) variance of a ratio of means (Cochran, Sampling Techniques, 3rd ed., Wiley 1977,
    section 6.3, eq. 6.9; the batch means playing the sample units): with nbar = sum let_num / N and ebar = sum
    edep_proton / N (N the histories; = sum w_b n_b / W exactly, W = sum w_b), R = nbar / ebar and the batch residuals
    d_b = n_b - R e_b (whose weighted mean is 0), Var(R) = [sum w_b d_b^2 / W] / ((B - 1) ebar^2), and
    Var(R) / R^2 = [nn - 2 R ne + R^2 ee] / W / ((B - 1) nbar^2).  The residual form carries the covariance of the
    numerator and denominator: a voxel's LET numerator and proton deposit rise and fall together from batch to batch,
    so the LETd is far less noisy than either (without the covariance term the estimate is several times too large;
    tests/run/test_letd_uncertainty.py).  Weighted as the dose's (unequal batches count by their histories).

    NaN where the linearisation does not hold: where the relative standard error of the denominator's mean (the
    protons' deposit, from ``ee``) is LET_D_MAX_DENOMINATOR_REL or more (Cochran 1977, section 6.4: the approximation
    is adequate where the coefficient of variation of the denominator's mean is below 0.1).  There a voxel's
    deposits come from few protons, in few batches; a voxel scored in one batch only has residuals of exactly 0, so
    the formula would say 0 (a LETd without noise) where it is mostly noise."""
    w = batches if weight_sum is None else weight_sum
    nbar = let_num / max(primaries, 1)
    ebar = edep_proton / max(primaries, 1)
    has = (nbar > 0) & (ebar > 0)
    r = nbar / (ebar + ~has)
    v = (nn - 2.0 * r * ne + r * r * ee) / w
    b1 = max(batches - 1, 1)
    var_rel = (v + abs(v)) / 2 / b1 / (nbar * nbar + ~has)   # max(v, 0): rounding near 0
    ve = ee / w - ebar * ebar
    var_e_rel = (ve + abs(ve)) / 2 / b1 / (ebar * ebar + ~has)
    out = np.where(has, var_rel ** 0.5, 0.0)   # (host only: finish)
    return np.where(has & ~(var_e_rel < LET_D_MAX_DENOMINATOR_REL ** 2), np.nan, out)   # (a NaN moment: NaN)


def mean_uncertainty_above_half_max(dose: Any, unc: Any, density: Any) -> float:
    """Mean relative uncertainty ``unc`` over the voxels of tissue (density >= 0.05 g/cm3) whose ``dose`` (or
    any quantity proportional to it) is >= 50 % of the tissue maximum.  NaN without dose.  ``density`` may be
    of any shape with as many elements as ``dose``.

    The mean of per-voxel standard deviations, each estimated from B batch means (:func:`batch_rel_uncertainty`,
    whose variance is unbiased), so it reads low by c4(B) (E[s] = c4 sigma): 2.7 % at 10 batches, 1.3 % at 20
    (statistics audit 2026-12-07, F2: 0.970 +- 0.02 of the spread over 40 seeds at 10 batches).  The stop rule
    (streaming.stream) stops at the first batch whose figure is at or below run.target_uncertainty, so the true figure
    of a stopped run scatters about the target (README, run.target_uncertainty)."""
    tissue = density.reshape(dose.shape) >= UNCERTAINTY_MIN_DENSITY
    d = dose * tissue
    if d.size == 0:
        return float("nan")
    dmax = float(d.max())
    if not dmax > 0:
        return float("nan")
    hi = d >= 0.5 * dmax
    return float(unc[hi].mean())


def inverse_mass(geometry: Any) -> np.ndarray:
    """1 / voxel mass (1/g) of each voxel (flat), 0 for voxels without mass."""
    mass_g = geometry.density_g_cm3_zyx.astype(np.float64).reshape(-1) * geometry.voxel_volume_cm3
    with np.errstate(divide="ignore"):
        return np.where(mass_g > 0, 1.0 / mass_g, 0.0)


class InverseMass:
    """:func:`inverse_mass` computed where it is read: ``inv[idx]`` is bitwise ``inverse_mass(geometry)[idx]``
    (the same float64 operations per voxel), without the whole grid's float64 array (8 bytes per voxel: 420 MB
    on a 512 x 512 x 200 grid, and 1.2 s per beam to make) when the stopping rule reads the voxels with dose
    only.  ``np.asarray(inv)`` gives the whole array (what DeviceAccumulator copies to the GPU once)."""

    def __init__(self, geometry: Any) -> None:
        self.density = np.asarray(geometry.density_g_cm3_zyx).reshape(-1)
        self.voxel_volume_cm3 = geometry.voxel_volume_cm3

    def __getitem__(self, idx: Any) -> np.ndarray:
        mass_g = self.density[idx].astype(np.float64) * self.voxel_volume_cm3
        with np.errstate(divide="ignore"):
            return np.where(mass_g > 0, 1.0 / mass_g, 0.0)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        whole = self[slice(None)]
        return whole if dtype is None else whole.astype(dtype)


def mean_rel_uncertainty_50(acc: Any, inv_mass: np.ndarray | InverseMass, density: np.ndarray) -> float:
    """The figure of the running sums of ``acc`` (an Accumulator, or a DeviceAccumulator which evaluates it on
    the device), by the same rule as the result's ``mean_rel_uncertainty_50``; NaN before two batches or
    without dose."""
    if acc.batches < 2:
        return float("nan")
    return acc.mean_rel_uncertainty_50(inv_mass, np.asarray(density).reshape(-1))


#: Fewer batches than this, and a run's uncertainty is warned about as reading low (mcproton/_run/job.py): the
#: quoted figure is a mean of per-voxel standard deviations, and E[s] = c4(B) sigma for B batch means (Gaussian):
#: c4 = 0.80, 0.89, 0.94, 0.97 for B = 2, 3, 5, 10.  Measured (statistics audit 2026-12-05, F2; 40 seeds of 20,000
#: primaries): the quoted figure was 20 %, 15 %, 5.5 % and 1.6 % below the spread over seeds for those B.  10 is
#: also where the stopping rule starts to judge (streaming.MIN_BATCHES_FOR_TARGET).
FEW_BATCHES = 10


def c4(batches: int) -> float:
    """E[s] / sigma for the sample standard deviation s of ``batches`` Gaussian values (the c4 constant of
    statistical quality control: sqrt(2 / (n - 1)) Gamma(n / 2) / Gamma((n - 1) / 2))."""
    from math import exp, lgamma, sqrt

    n = int(batches)
    return sqrt(2.0 / (n - 1)) * exp(lgamma(n / 2) - lgamma((n - 1) / 2)) if n >= 2 else float("nan")


def batch_weight(acc: Any, n: int) -> float:
    """The weight of a new batch of ``n`` histories in ``acc``'s float sums (see :func:`batch_rel_uncertainty`):
    its size relative to the accumulator's unit, the size of its first batch (set here); 1.0 exactly for a batch of
    that size, so that equal batches give the sums, and the uncertainty, bit for bit as without weights.  Adds the
    weight to ``acc.batch_weight_sum``."""
    if not getattr(acc, "batch_unit", 0):
        acc.batch_unit = int(n)
    w = 1.0 if n == acc.batch_unit else n / acc.batch_unit
    acc.batch_weight_sum = weight_sum_of(acc) + w
    return w


def weight_sum_of(acc: Any) -> float:
    """``acc``'s sum of batch weights; its number of batches where it has none (sums written before weights
    existed, which were all unweighted)."""
    w = getattr(acc, "batch_weight_sum", None)
    return float(acc.batches) if w is None else float(w)
