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


def batch_rel_uncertainty(sum_x: Any, sum_x2: Any, batches: int) -> Any:
    """Relative standard error of each voxel's mean over ``batches`` batches, from the sums of the batch means
    and of their squares; 0 where there is no dose."""
    mean_x = sum_x / batches
    v = sum_x2 / batches - mean_x * mean_x
    var_mean = (v + abs(v)) / 2 / max(batches - 1, 1)   # max(v, 0) / (B - 1)
    has = mean_x > 0
    return var_mean ** 0.5 / (mean_x + ~has) * has


def mean_uncertainty_above_half_max(dose: Any, unc: Any, density: Any) -> float:
    """Mean relative uncertainty ``unc`` over the voxels of tissue (density >= 0.05 g/cm3) whose ``dose`` (or
    any quantity proportional to it) is >= 50 % of the tissue maximum.  NaN without dose.  ``density`` may be
    of any shape with as many elements as ``dose``."""
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


def mean_rel_uncertainty_50(acc: Any, inv_mass: np.ndarray, density: np.ndarray) -> float:
    """The figure of the running sums of ``acc`` (an Accumulator, or a DeviceAccumulator which evaluates it on
    the device), by the same rule as the result's ``mean_rel_uncertainty_50``; NaN before two batches or
    without dose."""
    if acc.batches < 2:
        return float("nan")
    return acc.mean_rel_uncertainty_50(inv_mass, np.asarray(density).reshape(-1))
