"""The statistical noise of a plan's Monte Carlo figures over its target, from the run's own per-voxel uncertainty,
for the tests that hold the demo plan's MC dose to its prescription (tests/test_demo.py, tests/phantoms/test_plans.py).

Measured on the demo plan (posterior-fossa boost, 5-year-old head phantom, 4 mm voxels, dcpt_v5, CPU, 10 batches,
seeds from 1; tests audit 21 F1/F2, 2026-12-06), at 20,000 / 50,000 / 100,000 / 200,000 primaries (80 / 50 / 25 / 8
seeds):

- target mean / prescription: mean 0.9972 / 0.9985 / 0.9984 / 0.9974, seed-to-seed sd 0.67 / 0.41 / 0.32 / 0.15 %
  (lowest of 80 at 20,000: 0.983).  :func:`target_mean_sd` without its factor (the voxels taken as independent)
  gives 0.41 / 0.26 / 0.18 / 0.13 %: one proton doses many target voxels, so their errors are correlated and the
  true sd is 1.62 / 1.58 / 1.74 / 1.17 x that figure; :data:`CORRELATION` takes 2.
- D95 / prescription: 0.79 / 0.86 / 0.90 / 0.92 with the noise (the target's mean relative uncertainty per voxel
  12.5 / 7.9 / 5.6 / 4.0 %); with its shift taken back (:func:`d95_rel_without_noise`) 0.991 / 0.990 / 0.989 / 0.988,
  sd 1.0 / 0.69 / 0.43 / 0.22 %, lowest 0.965 / 0.973 / 0.981 / 0.985, against the plan model's 0.995.
"""
from __future__ import annotations

import numpy as np

#: the sd of a target's mean dose over that of independent voxels (the module docstring: 1.17-1.74 measured, 1.6 from
#: the 155 seeds at 20,000-100,000 primaries)
CORRELATION = 2.0


def target_mean_sd(dose: np.ndarray, rel_uncertainty: np.ndarray, mask: np.ndarray) -> float:
    """The statistical sd of the mean of ``dose`` over ``mask`` (same unit as ``dose``): the voxels' standard errors
    (``rel_uncertainty`` x dose, the run's batch estimate) added in quadrature, divided by the voxel count, times
    :data:`CORRELATION`."""
    d = np.asarray(dose, float)[mask]
    s = np.asarray(rel_uncertainty, float)[mask] * d
    return CORRELATION * float(np.sqrt(np.sum(s**2))) / d.size


def d95_rel_without_noise(d95_rel: float, mean_rel_uncertainty: float, mean_rel: float) -> float:
    """A target's D95 / prescription with the noise's shift taken back: noise of relative sd u on a nearly uniform dose
    lowers D95 by :data:`mcproton.demo.D95_NOISE_SHIFT_SIGMA` x u x the mean (``mean_rel``: mean / prescription)."""
    from mcproton.demo import D95_NOISE_SHIFT_SIGMA

    return float(d95_rel + D95_NOISE_SHIFT_SIGMA * mean_rel_uncertainty * mean_rel)
