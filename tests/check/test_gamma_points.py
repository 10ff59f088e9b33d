"""The points a global gamma evaluates are the body's points at or above its lower dose cutoff, 10 % of the
normalisation, and the check counts them so (compare.gamma_evaluable_points, the time estimate; ``evaluable_points``
of each gamma row); the dose difference is in % of that same normalisation, not of each voxel's dose.  Mutation
audit 32 ("mutation2"): the cut at 1 % (C17), counted outside the body (C18) or the difference in % of the local
dose (C22) passed every test.  The gamma audit's box field, every point, no noise; deterministic."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pymedphys")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_check_gamma import _box_field  # noqa: E402 - the gamma audit's 2 Gy box field

from mcproton._check.compare import dose_difference, gamma_3d, gamma_evaluable_points  # noqa: E402


def test_the_points_evaluated_are_those_in_the_body_at_or_above_10_percent():
    axes, tps = _box_field()
    body = np.zeros(tps.shape, bool)
    body[:, :, :10] = True                    # half the field: dose >= 10 % outside the body too
    g = gamma_3d(axes, tps, tps, body, dose_pct=2.0, dist_mm=2.0, points=None)
    want = int(np.count_nonzero(body & (tps >= 0.1 * g["normalisation_gy"])))
    low = int(np.count_nonzero(body & (tps >= 0.01 * g["normalisation_gy"])))
    assert 0 < want < low and want < np.count_nonzero(tps >= 0.1 * g["normalisation_gy"])   # the case tells them apart
    assert g["points"] == g["evaluable_points"] == want
    assert gamma_evaluable_points(tps, body) == want
    assert g["subset"] is None and g["pass_rate"] == 1.0


def test_the_dose_difference_is_in_percent_of_the_normalisation_not_of_each_voxel():
    """An MC 0.02 Gy above the 2 Gy box field everywhere: 1 % of the normalisation (2 Gy) at every voxel the
    difference takes (at or above 10 % of it), from 1 % in the plateau to 5 % at the 10 % edge were it local."""
    _, tps = _box_field()
    body = np.ones(tps.shape, bool)
    dd = dose_difference(tps, tps + 0.02, body)
    assert dd["normalisation_gy"] == pytest.approx(2.0, rel=0.01)
    assert dd["voxels"] == np.count_nonzero(tps >= 0.1 * dd["normalisation_gy"])
    assert np.allclose(dd["values_pct"], 2.0 / dd["normalisation_gy"], rtol=0, atol=1e-9)
    assert dd["within_2pct"] == 1.0
