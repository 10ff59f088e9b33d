"""Gantry angle -> beam direction has one implementation (mcproton.dicom.beam_direction_lps, IEC 61217 as
documented in mcproton/_io/rtplan.py); the plan optimiser's ``gantry_direction`` (phantom frame = LPS, HFS)
is that function.  Expected directions (LPS: +x left, +y posterior, +z superior) from IEC 61217: gantry 0
is the beam from above (travelling down, -Zf), gantry 90 from the +Xf side (travelling -Xf); couch angles
turn the table about the vertical Zf, counter-clockwise seen from above."""
from __future__ import annotations

import numpy as np
import pytest

from mcproton.dicom import beam_direction_lps
from mcproton.planning.raytrace import gantry_direction

# gantry 0, 90, 180, 270 -> direction of travel in LPS
IEC = {
    "HFS": [(0, 1, 0), (-1, 0, 0), (0, -1, 0), (1, 0, 0)],   # supine: 0 enters anteriorly, 90 from the left
    "HFP": [(0, -1, 0), (1, 0, 0), (0, 1, 0), (-1, 0, 0)],   # prone: 0 enters posteriorly, 90 from the right
    "FFS": [(0, 1, 0), (1, 0, 0), (0, -1, 0), (-1, 0, 0)],   # feet first supine: left and right swap with HFS
}


@pytest.mark.parametrize("pos", sorted(IEC))
def test_iec61217_cardinal_gantry_angles(pos):
    for gantry, want in zip((0.0, 90.0, 180.0, 270.0), IEC[pos]):
        np.testing.assert_allclose(beam_direction_lps(gantry, 0.0, pos), want, atol=1e-12,
                                   err_msg=f"{pos} gantry {gantry}")


@pytest.mark.parametrize("gantry", [0.0, 37.0, 90.0, 140.0, 180.0, 220.0, 270.0])
@pytest.mark.parametrize("couch", [0.0, 15.0, 90.0, 270.0])
def test_plan_optimiser_uses_the_same_function(gantry, couch):
    np.testing.assert_array_equal(gantry_direction(gantry, couch), beam_direction_lps(gantry, couch, "HFS"))


def test_couch_turns_the_table_about_the_vertical():
    """HFS: the vertical is the anterior-posterior axis (y).  A couch rotation cannot tilt a horizontal beam
    (gantry 90) out of the horizontal plane: its y component stays 0.  Couch 90 turns the head to -Xf, so the
    gantry-90 beam (travelling -Xf) travels towards the head (+z); couch 270 towards the feet."""
    for couch in (15.0, 90.0, 270.0):
        assert abs(gantry_direction(90.0, couch)[1]) < 1e-12
    np.testing.assert_allclose(gantry_direction(90.0, 90.0), (0, 0, 1), atol=1e-12)
    np.testing.assert_allclose(gantry_direction(90.0, 270.0), (0, 0, -1), atol=1e-12)
    np.testing.assert_allclose(gantry_direction(0.0, 90.0), (0, 1, 0), atol=1e-12)   # the vertical beam stays
