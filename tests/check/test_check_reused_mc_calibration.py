"""check(mc=...) with calibration= and physics left out: the given HU -> SPR calibration is converted with the reused
MC dose's own physics (its water model), as that MC dose's check read it, before its data are compared."""
from __future__ import annotations

from dataclasses import asdict
from types import SimpleNamespace

import pytest

from mcproton._check.api import _check_reused_mc_models
from mcproton._check.inputs import CheckInputError
from mcproton._check.record import calibration_record
from mcproton._io.hu_calibration import HUCalibration
from mcproton.settings import PhysicsSettings


def _mc_of(physics: PhysicsSettings) -> SimpleNamespace:
    """A reused MC dose's provenance as a check with ``physics`` and calibration='dcpt_spr_brain' (HU -> SPR)
    records it."""
    cal = HUCalibration.load_for_physics("dcpt_spr_brain", physics)
    return SimpleNamespace(provenance={"calibration_record": calibration_record(cal, "dcpt_spr_brain"),
                                       "calibration": cal.name, "physics": asdict(physics)})


def test_a_reused_mc_dose_is_matched_with_its_own_water_model_where_physics_is_left_out():
    """physics left out means the MC dose's own (PSTAR water): accepted.  Before (review D of 2026-12-07, R3) the
    calibration was converted in ICRU 90 water and refused, naming 'dcpt_spr_brain' on both sides."""
    pstar = PhysicsSettings(water_model="pstar")
    mc = _mc_of(pstar)
    _check_reused_mc_models(mc, "dcpt_spr_brain", None, None)
    _check_reused_mc_models(mc, "dcpt_spr_brain", None, pstar)
    _check_reused_mc_models(_mc_of(PhysicsSettings()), "dcpt_spr_brain", None, None)
    # another water model asked for: refused, saying the same calibration differs by the water it was converted in
    with pytest.raises(CheckInputError, match=r"'dcpt_spr_brain \(HU-SPR at 100 MeV\)' \(data SHA-256 \w+\) \(the same "
                                              r"name: a HU -> SPR table is converted in the physics' water, pstar for "
                                              r"the MC dose, icru90 here\): it is not the MC dose asked for; .* leave "
                                              r"out calibration= \(the reused MC dose's own\) and physics="):
        _check_reused_mc_models(mc, "dcpt_spr_brain", None, PhysicsSettings())
    # another calibration: refused as before, with no word on water
    with pytest.raises(CheckInputError, match=r"asks for 'schneider2000.*\(data SHA-256 \w+\): it is not") as e:
        _check_reused_mc_models(mc, "schneider2000", None, None)
    assert "water" not in str(e.value)
