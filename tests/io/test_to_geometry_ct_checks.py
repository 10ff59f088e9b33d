"""The Python route to a patient geometry (``HUCalibration.to_geometry``) makes the CT checks of ``mcproton run`` and
``mcproton check`` (Python-API audit 2026-12-06, F3): a phantom CT that mcproton wrote for another calibration (bone
~18 % low), a CT that says it is a stopping-power-ratio map read with an HU calibration (bone ~20 % too little
stopping power) and a CT without air (a wrong RescaleIntercept: every value ~1024 HU too high) gave a geometry
without a word.  A script names its calibration, so each is the warning that ``mcproton run`` gives for a given
calibration, kept in ``geometry.made_with_warnings`` and so in ``simulate``'s result; the command line keeps its own
refusals and says each warning once.  The phantom CT read with another calibration: tests/phantoms/
test_phantom_calibration_note.py."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from test_ct_without_air import _ct, _head

from mcproton._io.errors import McprotonWarning, recording_warnings
from mcproton.dicom import HUCalibration

SPR_MAP = (r"^the CT looks like a stopping-power-ratio map.*'SPR_map'.*the HU calibration 'schneider2000' .* would "
           r"give bone ~20 % too little stopping power")
NO_AIR = r"^the CT holds no air: its lowest value is 24 HU .*RescaleIntercept \(0028,1052\)"


def _converted(cal: str, ct):
    """The geometry, and the mcproton warnings said while making it (whatever the filters show)."""
    with recording_warnings() as said, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        g = HUCalibration.load(cal).to_geometry(ct)
    return g, said


def test_an_spr_map_read_with_an_hu_calibration_is_warned_about():
    ct = _ct(_head(), series_description="SPR_map")
    with pytest.warns(McprotonWarning, match=SPR_MAP):
        g = HUCalibration.load("schneider2000").to_geometry(ct)
    assert any("stopping-power-ratio map" in w for w in g.made_with_warnings), g.made_with_warnings
    g, said = _converted("dcpt_spr_brain", ct)   # the calibration for such a map: nothing
    assert said == [] and g.made_with_warnings == []


def test_a_ct_without_air_is_warned_about():
    with pytest.warns(McprotonWarning, match=NO_AIR):
        g = HUCalibration.load("schneider2000").to_geometry(_ct(_head(1024.0)))
    assert any("holds no air" in w for w in g.made_with_warnings), g.made_with_warnings


def test_a_patient_ct_in_hu_with_air_is_not():
    g, said = _converted("schneider2000", _ct(_head()))
    assert said == [] and g.made_with_warnings == []


def test_the_command_line_says_it_once(tmp_path):
    """mcproton run and mcproton check make these checks in their own terms (to_geometry's are off there): one
    warning each, not two (the phantom CT read with another calibration: in test_phantom_calibration_note.py)."""
    from mcproton._check.compute import build_geometry as check_geometry
    from mcproton._check.inputs import TPSDose
    from mcproton.config import build_geometry
    from mcproton.dicom import write_ct_series

    write_ct_series(_head(1024.0), (2.0, 2.0, 2.0), (-9.0, -9.0, 0.0), tmp_path / "ct")   # no air
    grid = TPSDose("RD.dcm", np.zeros((3, 4, 4)), (4.0, 4.0, 4.0), (-5.0, -5.0, 1.0), "", "PHYSICAL", "PLAN", None)
    for make in (lambda: check_geometry(tmp_path / "ct", "schneider2000", grid, given=True),
                 lambda: build_geometry({"phantom": {"type": "ct", "ct_dir": str(tmp_path / "ct"),
                                                     "calibration": "schneider2000"}})):
        with recording_warnings() as said, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            make()
        assert len([w for w in said if "holds no air" in w]) == 1, said
