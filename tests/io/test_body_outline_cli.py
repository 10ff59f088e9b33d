"""`mcproton run` with an RT Struct whose EXTERNAL ROI covers part of the CT: no dose outside it in the RT
Dose, the HDF5 dose, the DVHs and the summary maximum; the HDF5 keeps the raw dose and the mask (issue 12
item 3).  Before: the dose was reported everywhere and the maximum could lie in air outside the patient."""
from __future__ import annotations

import json

import numpy as np
import pytest

from dicom_factories import PHANTOM_PATIENT, make_plan, save


def test_dose_outside_the_body_roi_is_not_reported(tmp_path, capsys):
    import h5py

    from mcproton._io.hdf5 import read_dose_hdf5
    from mcproton.cli import main
    from mcproton.dicom import read_rtdose
    from mcproton.geometry import box_phantom
    from mcproton.phantoms.dicom_export import write_phantom_ct, write_rtstruct

    # 80 mm water cube, 5 mm voxels, centred on 0; the gantry-90 beam travels along -x and enters at x = +40
    g = box_phantom("water", (80.0, 80.0, 80.0), (5.0, 5.0, 5.0))
    g.origin_mm = (-37.5, -37.5, -37.5)
    ct = write_phantom_ct(g, tmp_path / "ct")
    xs = g.origin_mm[0] + 5.0 * np.arange(16)
    body = np.broadcast_to(xs < 0, g.shape_zyx).copy()       # the "patient": the downstream half, x < 0
    ring = np.zeros(g.shape_zyx, bool)
    ring[6:10, 6:10, 2:6] = True
    write_rtstruct({"body": body, "target": ring}, g, ct, tmp_path / "RS.dcm")   # "body" -> EXTERNAL
    save(make_plan([{"gantry": 90.0, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "layers": [(90.0, [(0.0, 0.0)], [1.0])],
                     "meterset": 5.0}], frame_of_reference_uid=ct.frame_of_reference_uid,
                     **PHANTOM_PATIENT), tmp_path / "RP.dcm")
    (tmp_path / "run.toml").write_text('[run]\nprimaries = 1000\nbatches = 2\nbackend = "cpu"\n[phantom]\n'
                                       'type = "ct"\nct_dir = "ct"\n[plan]\nrtplan = "RP.dcm"\nbeam_model = '
                                       '"dcpt_v2"\nrtstruct = "RS.dcm"\n[output]\nplot = false\n')
    out, rd = tmp_path / "o.h5", tmp_path / "RD.dcm"
    assert main(["run", str(tmp_path / "run.toml"), "--out", str(out), "--rtdose", str(rd), "--quiet"]) == 0
    s = json.loads(capsys.readouterr().out)

    h = read_dose_hdf5(out)
    assert np.array_equal(h["body_mask"] != 0, body) and "'body' (EXTERNAL)" in h["body_outline"]
    assert h["dose_raw"][~body].max() > 0                     # the entrance half got dose ...
    assert not h["dose"][~body].any() and not h["dose_to_water"][~body].any()   # ... not reported
    assert np.allclose(h["dose"][body], h["dose_raw"][body], rtol=1e-6)
    d = read_rtdose(rd).dose_gy_zyx
    assert not d[~body].any() and d.max() > 0
    assert s["max_dose_at_mm"][0] < 0 and s["body_outline"].startswith("RT Struct ROI 'body'")
    assert s["max_dose_gy"] <= h["dose_raw"][body].max() + 1e-12
    with h5py.File(out, "r") as f:                            # the DVHs see the reported dose
        assert f["dvh/body"].attrs["max_gy"] == h["dose"][body].max()


def _case_with_struct_of_another_frame(tmp_path, where: str):
    """A water CT, a plan on it and an RT Struct whose body ROI covers half of it, the structure set's frame of
    reference changed (``where``: "set", the set's own frame; "roi", only the ROI's ReferencedFrameOfReferenceUID)."""
    import pydicom

    from mcproton.geometry import box_phantom
    from mcproton.phantoms.dicom_export import write_phantom_ct, write_rtstruct

    g = box_phantom("water", (80.0, 80.0, 80.0), (5.0, 5.0, 5.0))
    g.origin_mm = (-37.5, -37.5, -37.5)
    ct = write_phantom_ct(g, tmp_path / "ct")
    xs = g.origin_mm[0] + 5.0 * np.arange(16)
    body = np.broadcast_to(xs < 0, g.shape_zyx).copy()
    write_rtstruct({"body": body}, g, ct, tmp_path / "RS.dcm")
    ds = pydicom.dcmread(tmp_path / "RS.dcm")
    other = "1.2.826.0.1.3680043.8.498.777"
    if where == "set":
        ds.FrameOfReferenceUID = other
        ds.ReferencedFrameOfReferenceSequence[0].FrameOfReferenceUID = other
    ds.StructureSetROISequence[0].ReferencedFrameOfReferenceUID = other
    ds.save_as(tmp_path / "RS.dcm")
    save(make_plan([{"gantry": 90.0, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "layers": [(90.0, [(0.0, 0.0)], [1.0])],
                     "meterset": 5.0}], frame_of_reference_uid=ct.frame_of_reference_uid,
                     **PHANTOM_PATIENT), tmp_path / "RP.dcm")
    (tmp_path / "run.toml").write_text('[run]\nprimaries = 1000\nbatches = 2\nbackend = "cpu"\n[phantom]\n'
                                       'type = "ct"\nct_dir = "ct"\n[plan]\nrtplan = "RP.dcm"\nbeam_model = '
                                       '"dcpt_v2"\nrtstruct = "RS.dcm"\n[output]\nplot = false\n')
    return ct, body


@pytest.mark.parametrize("where", ["set", "roi"])
def test_a_structure_set_of_another_frame_is_refused_before_the_transport(tmp_path, capsys, where):
    """An RT Struct of another CT (another FrameOfReferenceUID): its External would cut the dose (here the half of
    the box the beam enters through) and its DVHs be of other anatomy.  Before: the run went on, wrote the RT Dose
    cut by the wrong outline and exited 0, with at most a warning after the transport."""
    from mcproton.cli import main

    ct, _ = _case_with_struct_of_another_frame(tmp_path, where)
    out, rd = tmp_path / "o.h5", tmp_path / "RD.dcm"
    assert main(["run", str(tmp_path / "run.toml"), "--out", str(out), "--rtdose", str(rd), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "RS.dcm" in err and "'body'" in err and "498.777" in err and ct.frame_of_reference_uid in err, err
    assert "plan.allow_other_frame" in err and not out.exists() and not rd.exists()


def test_a_structure_set_of_another_frame_runs_with_allow_other_frame(tmp_path, capsys, warnings_to_stderr):
    """plan.allow_other_frame = true (the frames are known to coincide): the run goes on, with a warning, and,
    though only the structure set is on another frame (the plan is on the CT's), the run records the refusal passed
    ("other_frame") and its RT Dose says OVERRIDE (review R7 of 2026-12-06: that branch of overrides_used was
    untested)."""
    import pydicom

    from mcproton import DoseResult
    from mcproton.cli import main

    _, body = _case_with_struct_of_another_frame(tmp_path, "set")
    out, rd = tmp_path / "o.h5", tmp_path / "RD.dcm"
    with pytest.warns(RuntimeWarning, match="refers to frame of reference"):
        assert main(["run", str(tmp_path / "run.toml"), "--out", str(out), "--rtdose", str(rd), "--quiet",
                     "--set", "plan.allow_other_frame=true"]) == 0
    assert "warning" in capsys.readouterr().err
    assert DoseResult.load(out).provenance.get("overrides") == ["other_frame"]
    assert pydicom.dcmread(rd).DoseComment.startswith("OVERRIDE frame; ")
