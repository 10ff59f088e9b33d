"""verify_plan(normalise=True) rescales everything that holds the plan's dose by the one factor prescription / MC
target mean: the dose to medium, the dose to water (an RT Dose written "to water" from the result) and the spot
weights (the RT Ion Plan's MU written after it).  Mutation audit 32 ("mutation2"): leaving the dose to water (P2) or
the weights (P3) unscaled passed every planning test, whose checks read the dose to medium only.  The Monte Carlo
is replaced by a fixed dose (no transport); deterministic."""
from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
import pytest

from mcproton.planning.verify import verify_plan


@dataclasses.dataclass
class _Result:
    dose_gy_zyx: np.ndarray
    dose_to_water_gy_zyx: np.ndarray
    normalisation: str = "Gy for 3 protons"


def test_normalise_scales_the_dose_to_water_and_the_weights_too(monkeypatch):
    import mcproton.run

    mask = np.zeros((4, 4, 4), bool)
    mask[1:3, 1:3, 1:3] = True
    medium = np.full(mask.shape, 0.1)
    medium[1:3, 1:3, 1] = 1.5
    medium[1:3, 1:3, 2] = 1.7                             # the target mean 1.6 Gy (D50 1.7) for a prescription of 2 Gy
    water = 1.01 * medium
    monkeypatch.setattr(mcproton.run, "simulate", lambda *a, **k: _Result(medium.copy(), water.copy()))
    field = SimpleNamespace(weights=np.array([1.0, 2.0]))
    plan = SimpleNamespace(beam=lambda: None, fields=[field], total_protons=3.0, target_mask_zyx=mask,
                           prescription_gy=2.0, prescription_gy_rbe=2.2)
    res, st = verify_plan(plan, SimpleNamespace(voxel_volume_cm3=0.008), normalise=True)
    f = 2.0 / 1.6
    assert st["normalisation_factor"] == pytest.approx(f) and st["mc_over_model_mean"] == pytest.approx(0.8)
    assert np.allclose(res.dose_gy_zyx, f * medium, rtol=1e-12)
    assert np.allclose(res.dose_to_water_gy_zyx, f * water, rtol=1e-12)
    assert np.allclose(field.weights, [f, 2 * f], rtol=1e-12)
    assert st["dmean"] == pytest.approx(2.0) and st["d95_rel"] == pytest.approx(1.5 * f / 2.0)   # of Gy, not Gy(RBE)


def test_the_optimisers_target_figures_are_each_their_own():
    """The plan's model_stats on doses 1..100 Gy for a prescription of 50 Gy: D95 6 Gy, D98 3 Gy, D2 99 Gy, the
    mean 50.5 Gy, 5 % within +-5 % (48-52 Gy) (mutation audit 32, P6: D95 read from D98 passed every planning test)."""
    from mcproton.planning.optimiser import _target_stats

    st = _target_stats(np.arange(1.0, 101.0), 50.0)
    assert (st["d95_rel"], st["d98_rel"], st["d2_rel"], st["dmean_rel"]) == (6 / 50, 3 / 50, 99 / 50, 50.5 / 50)
    assert st["within_5pct"] == pytest.approx(0.05)
