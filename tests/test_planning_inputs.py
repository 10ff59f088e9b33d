"""What ``mcproton.planning`` refuses or warns about before it plans (the planning audit of 2026-12-06, F1-F7): a mask
from another grid, inputs that ended in raw NumPy errors, a target beyond the reach of the machine's energies, a
prone or feet-first patient's gantry angles, a dose matrix larger than the memory budget, and the public ROI masks of
an RT Structure Set on a CT's grid.  Small water boxes and a 4-voxel target: each plan takes well under a second."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import mcproton as mcp
from mcproton._io.rtplan import PATIENT_POSITIONS
from mcproton.dicom import StudyReference, load_rtplan, write_rtplan
from mcproton.planning import gantry_direction, generate_field_spots, optimise_plan, relative_stopping_power, \
    voxel_centres_mm


def _box(size_mm=(80, 80, 80), voxel_mm=4.0):
    return mcp.box_phantom("water", size_mm, voxel_mm)


def _cube(g, lo_mm, hi_mm, half_width_mm=6.0):
    """A target: |x|, |y| < half_width_mm and lo_mm < z < hi_mm (a box's z runs from 0, x and y about 0)."""
    z = g.axis_mm("z")[:, None, None]
    y = g.axis_mm("y")[None, :, None]
    x = g.axis_mm("x")[None, None, :]
    return np.broadcast_to((z > lo_mm) & (z < hi_mm) & (np.abs(x) < half_width_mm) & (np.abs(y) < half_width_mm),
                           g.shape_zyx).copy()


def _field(**kw):
    return {"name": "F", "direction": [0.0, 0.0, 1.0], "beam_model": "dcpt_v5", **kw}


# ---- F1: a mask from another grid ----

def test_a_target_mask_from_another_grid_is_refused_naming_both_shapes():
    g = _box()
    tgt = _cube(g, 34, 46)
    for bad in (tgt[:-1], tgt[::2, ::2, ::2]):
        with pytest.raises(ValueError, match=re.escape(f"shape (z, y, x) {bad.shape}, but the geometry's grid is "
                                                       f"{g.shape_zyx}")):
            optimise_plan("p", g, bad, [_field()], iterations=5)


def test_keep_points_and_field_masks_from_another_grid_are_refused():
    g = _box()
    tgt = _cube(g, 34, 46)
    with pytest.raises(ValueError, match="keep_points_mask has shape"):
        optimise_plan("p", g, tgt, [_field()], iterations=5, keep_points_mask=tgt[1:])
    with pytest.raises(ValueError, match="field 'F''s target_mask has shape"):
        optimise_plan("p", g, tgt, [_field(target_mask=tgt[:, 1:])], iterations=5)


def test_write_rtplan_refuses_a_plan_whose_target_is_not_on_its_grid_or_whose_ct_is_another(tmp_path):
    g = _box()
    plan = optimise_plan("p", g, _cube(g, 34, 46), [_field(direction=gantry_direction(180.0))], iterations=10)
    assert plan.meta["grid"]["shape_zyx"] == g.shape_zyx
    write_rtplan(plan, tmp_path / "ok.dcm", study=StudyReference())
    plan.target_mask_zyx = plan.target_mask_zyx[::2, ::2, ::2]
    with pytest.raises(ValueError, match="target is from another grid"):
        write_rtplan(plan, tmp_path / "bad.dcm", study=StudyReference())
    plan.target_mask_zyx = _cube(g, 34, 46)
    plan.meta["grid"]["frame_of_reference_uid"] = "1.2.3.4"
    with pytest.raises(ValueError, match="FrameOfReferenceUID 1.2.3.4"):
        write_rtplan(plan, tmp_path / "bad.dcm", study=StudyReference(frame_of_reference_uid="1.2.3.5"))
    assert not (tmp_path / "bad.dcm").exists()


# ---- F4: bad inputs end in clear ValueErrors ----

@pytest.mark.parametrize("kw, match", [
    ({"prescription_gy_rbe": 0.0}, "prescription_gy_rbe must be a finite number > 0"),
    ({"prescription_gy_rbe": -2.0}, "prescription_gy_rbe must be a finite number > 0"),
    ({"prescription_gy_rbe": float("nan")}, "prescription_gy_rbe must be a finite number > 0"),
    ({"prescription_gy_rbe": float("inf")}, "prescription_gy_rbe must be a finite number > 0"),
    ({"max_points": 0}, "max_points must be a whole number >= 1"),
    ({"iterations": 0}, "iterations must be a whole number >= 1"),
])
def test_bad_numbers_are_refused(kw, match):
    g = _box()
    with pytest.raises(ValueError, match=match):
        optimise_plan("p", g, _cube(g, 34, 46), [_field()], **kw)


@pytest.mark.parametrize("specs, match", [
    ([], "non-empty list of fields"),
    ({"name": "F", "direction": [0, 0, 1]}, "non-empty list of fields"),
    ([{"direction": [0, 0, 1]}], r"field_specs\[0\] must be a dict with 'name' and 'direction'"),
    ([_field(direction=[0.0, 0.0, 0.0])], "field 'F': the direction must be 3 finite numbers"),
    ([_field(direction=[0.0, float("nan"), 1.0])], "field 'F': the direction must be 3 finite numbers"),
    ([_field(direction=[0.0, 1.0])], "field 'F': the direction must be 3 finite numbers"),
])
def test_bad_field_specs_are_refused(specs, match):
    g = _box()
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # no RuntimeWarning from a division by a zero length
        with pytest.raises(ValueError, match=match):
            optimise_plan("p", g, _cube(g, 34, 46), specs)


def test_generate_field_spots_refuses_a_zero_direction():
    g = _box()
    pts = voxel_centres_mm(g, _cube(g, 34, 46))
    with pytest.raises(ValueError, match="non-zero length"):
        generate_field_spots(g, relative_stopping_power(g), pts, [0, 0, 0], beam_model="dcpt_v5")


# ---- F2, F3: targets beyond the reach of the layers ----

def test_a_target_partly_deeper_than_the_highest_energy_is_warned_of_with_its_depth():
    """dcpt_v5's 244 MeV reaches about 366 mm in water; the box's 340-380 mm target lies partly beyond."""
    g = _box((40, 40, 400), 5.0)
    with pytest.warns(mcp.McprotonWarning, match=r"deeper \(to 37\d\.\d mm WET\) than the residual range of the "
                                                 r"highest energy, 36\d\.\d mm for 244 MeV"):
        optimise_plan("deep", g, _cube(g, 340, 380, 8), [_field()], iterations=10)


def test_a_target_wholly_beyond_the_highest_energy_is_refused_without_nan():
    g = _box((40, 40, 480), 5.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"of \d+ target points lie deeper .*no layer reaches the target"):
            optimise_plan("deep", g, _cube(g, 420, 450, 8), [_field()], iterations=10)


def test_a_zero_influence_matrix_is_a_clear_error_not_a_nan():
    from mcproton.planning import optimise_weights

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="dose-influence matrix is zero"):
            optimise_weights(np.zeros((5, 3), np.float32), 1.0, iterations=3)


def test_a_shallow_target_without_a_range_shifter_is_warned_of_with_the_fix():
    """A target 0-12 mm deep: the lowest energy (70 MeV, about 41 mm) without a shifter cannot reach it; 'auto'
    picks a shifter and says nothing."""
    g = _box((40, 40, 100), 4.0)
    tgt = _cube(g, 0, 12, 8)
    with pytest.warns(mcp.McprotonWarning, match=r"shallower \(from \d\.\d mm WET\) than the residual range of the "
                                                 r"lowest energy, 4\d\.\d mm for 70 MeV without a range shifter.*"
                                                 r"range_shifter='auto'"):
        optimise_plan("skin", g, tgt, [_field(range_shifter=None)], iterations=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan = optimise_plan("skin", g, tgt, [_field()], iterations=10)
    assert plan.fields[0].machine.shifter is not None


# ---- F5: the memory budget ----

def test_a_dose_matrix_over_the_memory_budget_is_refused_with_an_estimate():
    g = _box()
    with pytest.raises(ValueError, match=r"spots on \d+ points .* GB dose-influence matrix .* more than "
                                         r"memory_budget_gb=1e-06.*spot_spacing_mm"):
        optimise_plan("p", g, _cube(g, 34, 46), [_field()], iterations=5, memory_budget_gb=1e-6)
    optimise_plan("p", g, _cube(g, 34, 46), [_field()], iterations=5, memory_budget_gb=None)


# ---- F6: gantry angles of every patient position round-trip through the RT Ion Plan ----

@pytest.mark.parametrize("position", PATIENT_POSITIONS)
def test_the_gantry_angle_asked_for_is_the_one_written_for_every_patient_position(position, tmp_path):
    g = _box()
    tgt = _cube(g, 34, 46)
    angles = (37.3, 180.0, 270.0)
    specs = [{"name": f"G{a:g}", "direction": gantry_direction(a, patient_position=position),
              "beam_model": "dcpt_v5"} for a in angles]
    plan = optimise_plan("p", g, tgt, specs, iterations=10)
    written = write_rtplan(plan, tmp_path / "rp.dcm", study=StudyReference(patient_position=position))
    assert [b["gantry_angle_deg"] for b in written["beams"]] == list(angles)
    back = load_rtplan(tmp_path / "rp.dcm")
    assert [b.gantry_angle_deg for b in back.beams] == list(angles)
    assert {b.patient_position for b in back.beams} == {position}


def test_gantry_direction_defaults_to_hfs_and_refuses_an_unknown_position():
    np.testing.assert_array_equal(gantry_direction(90.0), gantry_direction(90.0, patient_position="HFS"))
    np.testing.assert_allclose(gantry_direction(0.0, patient_position="HFP"), [0, -1, 0], atol=1e-12)
    with pytest.raises(ValueError, match="patient_position 'XYZ'"):
        gantry_direction(0.0, patient_position="XYZ")


# ---- F7: the public ROI masks of an RT Structure Set on a CT's grid, and a plan on a DICOM CT ----

def test_plan_on_a_dicom_ct_and_rt_struct(tmp_path):
    """The README's "plan on your own CT" example on the OpenTPS head case (CT 109 x 99 x 81 at 2 mm)."""
    import tarfile
    from pathlib import Path

    from mcproton import dicom
    from mcproton._io.rtstruct import rasterise, read_rtstruct

    data = Path(__file__).resolve().parent / "data" / "dicom" / "opentps_head" / "opentps_head.tar.gz"
    with tarfile.open(data) as tf:
        tf.extractall(tmp_path, filter="data")
    ct = dicom.load_ct_series(tmp_path / "ct")
    geometry = dicom.HUCalibration.load("mcsquare_default").to_geometry(ct)
    masks = dicom.load_rtstruct_masks(tmp_path / "RS.dcm", geometry, ["CTV_PF"])
    assert list(masks) == ["CTV_PF"] and masks["CTV_PF"].shape == geometry.shape_zyx
    np.testing.assert_array_equal(masks["CTV_PF"], rasterise(read_rtstruct(tmp_path / "RS.dcm"), geometry)["CTV_PF"])
    with pytest.raises(mcp.dicom.DicomInputError, match=r"no ROI 'PTV'.*'CTV_PF'"):
        dicom.load_rtstruct_masks(tmp_path / "RS.dcm", geometry, ["PTV"])
    position = geometry.patient_position or "HFS"
    plan = optimise_plan("PF", geometry, masks["CTV_PF"],
                         [{"name": "PA G180", "direction": gantry_direction(180.0, patient_position=position),
                           "beam_model": "dcpt_v5"}], iterations=20, max_points=500)
    written = dicom.write_rtplan(plan, tmp_path / "RP_new.dcm", study=dicom.StudyReference.from_ct(ct), fractions=30)
    assert written["beams"][0]["gantry_angle_deg"] == 180.0


# ---- F9: a target in air, a study without a patient position ----

def test_a_target_in_air_is_warned_of():
    g = mcp.box_phantom("air", (80, 80, 80), 4.0)
    with pytest.warns(mcp.McprotonWarning, match="air rather than tissue"):
        optimise_plan("p", g, _cube(g, 34, 46), [_field(range_shifter=None)], iterations=5)


def test_write_rtplan_says_it_assumes_hfs(tmp_path):
    g = _box()
    plan = optimise_plan("p", g, _cube(g, 34, 46), [_field(direction=gantry_direction(180.0))], iterations=10)
    with pytest.warns(mcp.McprotonWarning, match="no PatientPosition.*HFS"):
        write_rtplan(plan, tmp_path / "rp.dcm", study=StudyReference())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_rtplan(plan, tmp_path / "rp.dcm", study=StudyReference(patient_position="HFS"))


def test_a_given_range_shifter_distance_inside_the_skin_is_refused():
    """Audit 18 (F1): rs_isocenter_distance_mm was taken as given, and a face 8.5 mm inside an infant's head skipped
    up to 19 mm of water-equivalent tissue (target D95 -12 %).  The box's skin (its first voxel centre, z = 2 mm) is
    18 mm upstream of an isocentre at z = 20 mm: a face 10 mm from the isocentre is 8 mm inside (more than the one
    4 mm voxel allowed) and refused; 30 mm (12 mm of air) and the default (skin + rs_air_gap_mm) pass."""
    from mcproton.planning.machine import field_machine

    g = _box((40, 40, 100), 4.0)
    args = (g, "dcpt_v5", (0.0, 0.0, 20.0), (0.0, 0.0, 1.0), np.array([5.0]), (-10.0, 10.0), (-10.0, 10.0))
    with pytest.raises(ValueError, match=r"rs_isocenter_distance_mm = 10 puts range shifter 'RS_\w+'.s downstream "
                                         r"face inside the patient: the skin .* 18.0 mm upstream of the isocentre.*"
                                         r"at least 18.0 mm"):
        field_machine(*args, rs_isocenter_distance_mm=10.0)
    assert field_machine(*args, rs_isocenter_distance_mm=30.0).shifter_distance_mm == 30.0
    assert field_machine(*args).shifter_distance_mm == pytest.approx(18.0 + 40.0)


# ---- infant audit 2026-12-06, F5: the analytical model is ~2 % hot for a tiny target ----

def test_a_target_under_half_a_cm3_is_warned_of_with_the_model_error_and_verify_plan():
    """A 6 mm target's MC/model mean dose was 0.977-0.986, 10 mm 0.992-0.994 (the model ~1-2 % hot, the MU from it):
    optimise_plan warns of a target under SMALL_TARGET_CM3 (0.5 cm3) and says to rescale by verify_plan's MC/model;
    a target of 1.7 cm3 gets no such warning."""
    from mcproton.planning.optimiser import SMALL_TARGET_CM3

    g = _box(voxel_mm=2.0)
    small = _cube(g, 36, 44, half_width_mm=3.0)    # 2 x 2 x 4 voxels of 8 mm3: 0.128 cm3
    assert 0 < np.count_nonzero(small) * g.voxel_volume_cm3 < SMALL_TARGET_CM3 == 0.5
    with pytest.warns(UserWarning, match=r"the target is 0\.128 cm3, under 0\.5 cm3: .*0\.977-0\.986 .*verify_plan.*"
                                         r"normalise=True"):
        optimise_plan("p", g, small, [_field()], iterations=5)
    big = _cube(g, 30, 50, half_width_mm=7.0)   # 6 x 6 x 10 voxels: 2.9 cm3
    assert np.count_nonzero(big) * g.voxel_volume_cm3 > 1.0
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        optimise_plan("p", g, big, [_field()], iterations=5)
    assert not any("under 0.5 cm3" in str(x.message) for x in w)
