"""A set-up error for a robustness study in one call: ``plan_to_beams(..., isocentre_shift_mm=(dx, dy, dz))`` moves
every beam's isocentre, and the dose with it, by the shift (robustness audit 2026-12-06, F1: no documented way; the
audit verified the isocentre method by hand to 0.02 mm)."""
from __future__ import annotations

import numpy as np
import pytest

import mcproton as mcp
from mcproton._io.beam_model import load_beam_model
from mcproton._io.rtplan import load_rtplan, plan_to_beams

from dicom_factories import make_plan

SHIFT = (6.0, 0.0, -4.0)   # LPS mm; gantry 0 HFS travels +y, so x and z are transverse


def _plan():
    return load_rtplan(make_plan([{"gantry": 0.0, "couch": 0.0, "iso": (0.0, 0.0, 20.0),
                                   "layers": [(70.0, [(0.0, 0.0), (6.0, 0.0)], [1.0, 1.0])], "meterset": 5.0}]))


def test_every_spot_moves_by_the_shift_and_the_shifted_isocentre_is_recorded():
    model = load_beam_model("dcpt_v2")
    (nom,) = plan_to_beams(_plan(), model)
    (up,) = plan_to_beams(_plan(), model, isocentre_shift_mm=SHIFT)
    for a, b in zip(nom.spots, up.spots):
        np.testing.assert_allclose(np.subtract(b.position_mm, a.position_mm), SHIFT, atol=1e-9)
        np.testing.assert_array_equal(b.direction, a.direction)
    assert up.meta["isocenter_mm"] == (6.0, 0.0, 16.0) and up.meta["isocentre_shift_mm"] == SHIFT
    assert "isocentre_shift_mm" not in nom.meta
    with pytest.raises(ValueError, match="isocentre_shift_mm"):
        plan_to_beams(_plan(), model, isocentre_shift_mm=(1.0, 2.0))


def test_the_dose_moves_by_the_transverse_shift():
    """2000 protons per run, the same seed (correlated sampling): the dose centroid moves by the shift's transverse
    components to within 0.1 mm (the audit saw 0.02 mm at 20 000 primaries)."""
    model = load_beam_model("dcpt_v2")
    g = mcp.box_phantom("water", size_mm=(60, 60, 80), voxel_mm=(2, 2, 2), origin_mm=(-29, -29, -19))
    settings = mcp.RunSettings(primaries=2000, seed=5, backend="cpu", threads=1)
    cents = []
    for shift in (None, SHIFT):
        (beam,) = plan_to_beams(_plan(), model, isocentre_shift_mm=shift)
        res = mcp.simulate(g, beam, settings, log=None)
        d = np.asarray(res.dose_gy_zyx)
        cents.append([float(np.average(g.axis_mm(ax), weights=d.sum(axis=tuple(i for i in range(3) if i != 2 - k))))
                      for k, ax in enumerate("xyz")])
        if shift is not None:
            assert tuple(res.provenance["beam"]["isocentre_shift_mm"]) == SHIFT
    moved = np.subtract(cents[1], cents[0])
    assert moved[0] == pytest.approx(SHIFT[0], abs=0.1) and moved[2] == pytest.approx(SHIFT[2], abs=0.1), moved
    assert abs(moved[1]) < 0.5, moved   # along the beam: the range stays tied to the surface


def test_a_scenarios_rt_dose_says_it_is_one(tmp_path):
    """Review A 2026-12-06, F5: a scenario's RT Dose (isocentre shifted, calibration scaled) had the header of the
    nominal plan dose: imported into a planning system or a PACS, a +3 mm / +3.5 % scenario looked like the plan's
    dose.  Its DoseComment (SCENARIO, with what DICOM cannot say kept), SeriesDescription and ImageComments say so
    now; the nominal's do not."""
    import pydicom

    from mcproton._io.rtdose import scenario_note

    model = load_beam_model("dcpt_v2")
    g = mcp.box_phantom("water", size_mm=(40, 40, 60), voxel_mm=(4, 4, 4), origin_mm=(-18, -18, -8))
    settings = mcp.RunSettings(primaries=200, seed=5, backend="cpu", threads=1)
    for name, shift in (("nominal", None), ("scenario", SHIFT)):
        (beam,) = plan_to_beams(_plan(), model, isocentre_shift_mm=shift)
        mcp.write_result_rtdose(mcp.simulate(g, beam, settings, log=None), tmp_path / f"{name}.dcm")
    nom, scen = (pydicom.dcmread(tmp_path / f"{n}.dcm", stop_before_pixels=True) for n in ("nominal", "scenario"))
    assert "SCENARIO" not in nom.DoseComment and "scenario" not in str(nom.get("ImageComments", ""))
    assert scen.DoseComment.startswith("SCENARIO; ") and scen.DoseComment.endswith("to medium, physical")
    assert scen.SeriesDescription == "mcproton dose scenario iso +6,+0,-4 mm"
    assert "robustness scenario: isocentre shifted by (+6, +0, -4) mm (LPS)" in scen.ImageComments
    # a calibration changed in Python, with a shift, in a sum of beams; a zero shift and the calibration as named: none
    prov = {"calibration": "schneider2000 (modified)",
            "summed_beams": [{"isocentre_shift_mm": (3.0, 0.0, 0.0)}, {"isocentre_shift_mm": (3.0, 0.0, 0.0)}]}
    assert scenario_note(prov) == ("robustness scenario: isocentre shifted by (+3, +0, +0) mm (LPS), HU calibration "
                                   "schneider2000 (modified)")
    assert scenario_note(prov, short=True) == "scenario iso +3,+0,+0 mm, cal. modified"
    assert scenario_note({"calibration": "schneider2000", "beam": {"isocentre_shift_mm": (0.0, 0.0, 0.0)}}) == ""
