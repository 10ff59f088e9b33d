"""The target D95 verdict on real MC noise at the default 1 % target (statistics audit 2026-12-06, F1).

Before the fix a correct plan FAILed the D95 level in 6 of 22 seeds (27 %, 95 % interval 11-50 %) at 1 %, every time
on the MC-corrected value: its MC-side noise shift came from 4 noise draws multiplied by 1 / (sqrt(2) - 1) = 2.41,
and read +1.1 to +2.4 % in all six, the wrong sign for noise.  Now the targets' metrics get 64 draws
(compare.TARGET_NOISE_REALISATIONS), the MC-corrected value fails only beyond the level + 2 of its standard errors
(compare.d95_limits) and an MC-side shift of the wrong sign is taken as 0 (compare.NOISE_SHIFT_SIGN).

The data (tests/data/check_d95_noise/README.md): the PTV voxels of 9 real check MCs at 1 % of the audit's correct
plan, six of them the audit's false FAILs.  Only compare.structure_stats and compare.d95_verdict run, 4 noise-draw
seeds per MC.  Measured (2026-12-06), per verdict: before the fix 20 of 54 FAILed (37 %; these MCs are enriched in
the audit's failures), after it 0 of 54 and 0 of 180 (95 % upper bound 1.7 %); in the audit's full checks of the
same plan the fixed check passes seeds 4, 10, 11, 12, 15 and 19.  The bound asserted, at most 1 FAIL in 36, is
broken before the fix (14 of 36); the seeds are fixed, so the test is deterministic; with fresh seeds, at the
measured 0 of 180, it would break with probability below 15 % even at the 1.7 % upper bound (and ~0 at the rate
measured).  The deliberate errors x 1.04 and x 1.05 (issue 13's size) still FAIL D95 on every MC."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1] / "data" / "check_d95_noise" / "mc_1pct.npz"


@pytest.fixture(scope="module")
def mcs():
    return np.load(DATA)


def _d95(mcs, i: int, scale: float, seed: int):
    from mcproton._check.compare import d95_verdict, structure_stats

    every = np.ones(mcs["tps"].size, bool)
    st = structure_stats(mcs["tps"] * scale, mcs["mc"][i], {"PTV": every}, {"PTV": "PTV"}, 0.064, 2.0,
                         noise_rel=mcs["unc"][i], seed=seed)
    return d95_verdict(st["PTV"]["metrics"]["D95"], 3.0), st["PTV"]["metrics"]["D95"]


def test_a_correct_plan_at_1_percent_seldom_fails_d95_from_the_estimators_noise(mcs):
    assert mcs["u50"].min() > 0.0098 and mcs["u50"].max() < 0.0101   # the default 1 % target, reached
    fails, mets = [], []
    for i, s in enumerate(mcs["seeds"]):
        for k in range(4):
            (ok, value, vals), m = _d95(mcs, i, 1.0, 1000 * k + int(s))
            mets.append(m)
            if not ok:
                fails.append((int(s), k, vals))
    assert len(fails) <= 1, fails
    # the MC-side shift has a standard error; one of the wrong sign (noise lowers D95) is taken as 0
    for m in mets:
        assert 0 < m["mc_noise_shift_se_pct"] < 0.6 and m["mc_noise_shift_pct"] <= 0.0, m
        assert m["noise_realisations"] == 64


@pytest.mark.parametrize("scale", [1.04, 1.05])
def test_a_4_or_5_percent_dose_error_still_fails_d95_on_every_mc(mcs, scale):
    for i, s in enumerate(mcs["seeds"]):
        (ok, value, vals), _ = _d95(mcs, i, scale, int(s))
        assert not ok and value < -3.0, (int(s), vals)
