"""The dose the check compares its gammas' normalisation with is the HIGHEST target dose (compare.target_dose_of_plan:
a simultaneous boost's, not the elective volume's), a stated prescription where the target's TPS median agrees with
it within 5 %, else the target's near-maximum.  Mutation audit 32 ("mutation2"): the lowest target taken (C29)
passed every test, which had one target: a boost plan 1.3 x its elective dose would then fail the 1.2 x limit.
Synthetic arrays, no transport; deterministic."""
from __future__ import annotations

import numpy as np
import pytest

from mcproton._check.compare import target_dose_of_plan


def _two_targets():
    dose = np.full((10, 10, 10), 0.5)
    boost = np.zeros(dose.shape, bool)
    boost[2:5, 2:5, 2:5] = True
    elective = np.zeros(dose.shape, bool)
    elective[5:9, 5:9, 5:9] = True
    dose[boost], dose[elective] = 2.6, 2.0
    return dose, np.ones(dose.shape, bool), {"PTV_boost": boost, "PTV_elective": elective}


def test_the_highest_target_dose_is_the_one_compared():
    dose, body, masks = _two_targets()
    for order in (["PTV_boost", "PTV_elective"], ["PTV_elective", "PTV_boost"]):
        v, what = target_dose_of_plan(dose, body, masks, order, {})
        assert v == pytest.approx(2.6) and "PTV_boost" in what, (order, v, what)


def test_a_consistent_prescription_is_taken_and_an_inconsistent_one_is_not():
    dose, body, masks = _two_targets()
    v, what = target_dose_of_plan(dose, body, masks, ["PTV_boost"], {"PTV_boost": 2.55})   # median 2 % off: taken
    assert v == 2.55 and "prescription" in what
    v, what = target_dose_of_plan(dose, body, masks, ["PTV_boost"], {"PTV_boost": 2.2})    # 18 % off: near-maximum
    assert v == pytest.approx(2.6) and "near-maximum" in what
