"""``mcproton check`` input handling on real RayStation files (APTG/2022_DCPT_LET plan03, CC BY 4.0; see
tests/data/dicom/aptg_check/README.md): pairing by UID, what the TPS dose holds, and the phantom built from the
structure set's ROI material overrides.  No transport (fast)."""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1] / "data" / "dicom" / "aptg_check"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("aptg")
    with gzip.open(DATA / "RD_plan03_total.dcm.gz", "rb") as fi, open(d / "RD_plan03_total.dcm", "wb") as fo:
        shutil.copyfileobj(fi, fo)
    for name in ("RP_plan03.dcm", "RS_plan03.dcm"):
        shutil.copy(DATA / name, d / name)
    return d


def test_folder_is_paired_by_uid(folder):
    from mcproton._check.inputs import gather

    inp = gather(folder=folder)
    assert Path(inp.plan_path).name == "RP_plan03.dcm"
    assert Path(inp.total.path).name == "RD_plan03_total.dcm" and inp.beams == {}
    assert Path(inp.struct_path).name == "RS_plan03.dcm"
    assert inp.dose_type == "EFFECTIVE" and inp.all_fractions and inp.fractions == 1
    assert inp.total.shape_zyx == (110, 107, 107) and inp.total.voxel_size_mm == (2.0, 2.0, 2.0)
    assert any("ReferencedStructureSetSequence" in line for line in inp.pairing)
    assert 2.0 < inp.total.dose_gy_zyx.max() < 2.5           # a 2 Gy(RBE) plan


def test_dose_type_given_over_a_raystation_dose_s_is_a_warning(folder):
    """Journey audit 28, F3b: --dose-type physical (given to a batch for its OpenTPS patient) relabelled this
    RayStation EFFECTIVE dose with a pairing line only; now a warning (the report's, check.json's and the batch
    row's), naming the file, its writer and what it does; in a batch, how to check the patient without it."""
    from mcproton._check.inputs import DOSE_TYPE_GIVEN_OVER, BatchPatient, checking_batch_patient, gather
    from mcproton._io.errors import McprotonWarning

    with pytest.warns(McprotonWarning, match=DOSE_TYPE_GIVEN_OVER) as said:
        inp = gather(folder=folder, dose_type="PHYSICAL")
    assert inp.dose_type == "PHYSICAL"
    (msg,) = [str(w.message) for w in said if str(w.message).startswith(DOSE_TYPE_GIVEN_OVER)]
    assert "RD_plan03_total.dcm (written by RaySearch" in msg and "says DoseType EFFECTIVE" in msg, msg
    assert "compared as PHYSICAL, as given (--dose-type physical)" in msg and "10 % apart" in msg, msg
    assert msg.endswith("leave --dose-type out"), msg
    with checking_batch_patient(BatchPatient(folder)), pytest.warns(McprotonWarning, match=DOSE_TYPE_GIVEN_OVER) \
            as said:
        gather(folder=folder, dose_type="PHYSICAL")
    assert any("check this patient without --dose-type" in str(w.message) for w in said)
    # the file's own type given: nothing to say
    import warnings

    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        gather(folder=folder, dose_type="EFFECTIVE")
    assert not [w for w in said if str(w.message).startswith(DOSE_TYPE_GIVEN_OVER)]


def test_a_folder_of_patients_without_batch_is_told_to_add_batch(folder, tmp_path):
    """Journey audit 28, F4: a folder holding one sub-folder per patient, given without --batch, was refused as
    "3 RT Plans ...: give --plan (and --dose), or leave one plan per folder", which they were; now the refusal says
    that it looks like a folder of patients and to add --batch.  Not in a batch's patient (it is one patient)."""
    import pydicom
    from pydicom.uid import generate_uid

    from mcproton._check.inputs import BatchPatient, CheckInputError, checking_batch_patient, gather

    root = tmp_path / "week"
    for name in ("p1", "p2"):
        (root / name).mkdir(parents=True)
    shutil.copy(folder / "RP_plan03.dcm", root / "p1" / "RP.dcm")
    ds = pydicom.dcmread(folder / "RP_plan03.dcm")   # another patient's plan: its own UID and ID
    ds.SOPInstanceUID, ds.PatientID = generate_uid(), "OTHER-2"
    ds.save_as(root / "p2" / "RP.dcm")
    with pytest.raises(CheckInputError, match=r"2 RT Plans in ") as exc:
        gather(folder=root)
    assert "this looks like a folder of patients (each plan lies in a sub-folder of its own: p1, p2): to check " \
           f"each patient, add --batch (mcproton check {root} --batch" in str(exc.value), str(exc.value)
    with pytest.raises(CheckInputError) as exc:   # both in one folder, of two patients
        shutil.move(root / "p2" / "RP.dcm", root / "p1" / "RP_other.dcm")
        gather(folder=root)
    assert "the plans name different patients (PatientID 'OTHER-2', " in str(exc.value), str(exc.value)
    assert "put each one's files into a sub-folder of its own and add --batch" in str(exc.value)
    with checking_batch_patient(BatchPatient(root)), pytest.raises(CheckInputError) as exc:
        gather(folder=root)
    assert "--batch" not in str(exc.value), str(exc.value)


def test_roi_overrides_give_solid_water_and_pmma(folder):
    from mcproton._io.roi_overrides import nearest_material as _nearest_material
    from mcproton._io.roi_overrides import roi_overrides

    rois = {r["name"]: r for r in roi_overrides(folder / "RS_plan03.dcm")}
    assert set(rois) == {"External", "PMMA"}
    assert rois["External"]["density_g_cm3"] == pytest.approx(1.02)
    assert rois["PMMA"]["density_g_cm3"] == pytest.approx(1.19)
    assert _nearest_material(rois["External"])[0].name == "solid_water_gammex457"
    assert _nearest_material(rois["PMMA"])[0].name == "pmma"


def test_body_outline_and_grid_coverage_of_the_real_dose(folder):
    from mcproton._check.api import body_outline, check_grid_covers
    from mcproton._check.inputs import gather
    from mcproton._io.rtstruct import rasterise, read_rtstruct

    inp = gather(folder=folder)
    s = read_rtstruct(inp.struct_path)
    masks = rasterise(s, type("G", (), {"origin_mm": inp.total.origin_mm, "voxel_size_mm": inp.total.voxel_size_mm,
                                        "shape_zyx": inp.total.shape_zyx}))
    body, how = body_outline(masks, s.roi_types, None)
    assert "External" in how and 0.7 < body.mean() < 0.9     # the 205 x 205 x 200 mm box in a 214 x 214 x 220 grid
    check_grid_covers(inp.total.dose_gy_zyx, body, "plan03")  # the RayStation grid covers the phantom
    from mcproton._check.inputs import CheckInputError

    with pytest.raises(CheckInputError, match="does not cover"):
        check_grid_covers(inp.total.dose_gy_zyx[:, 20:-20], body[:, 20:-20], "cropped")


def test_body_outline_from_the_ct_without_an_external():
    """No External ROI: the CT above 0.1 g/cm3, its largest connected part, holes filled (a couch-like slab and
    the air inside the body are handled)."""
    from mcproton._check.api import body_outline

    rho = np.full((20, 30, 30), 0.0012)
    rho[2:18, 5:25, 5:25] = 1.0          # the body
    rho[8:12, 12:18, 12:18] = 0.0012      # air inside it (a cavity): filled
    rho[:, 28:, :] = 0.5                  # a couch, not connected
    body, how = body_outline({"PTV": np.zeros(rho.shape, bool)}, {"PTV": "PTV"}, rho)
    assert "CT density" in how
    assert body[2:18, 5:25, 5:25].all() and body.sum() == 16 * 20 * 20


def test_raystations_overrides_on_an_air_ct_give_the_phantom_built_from_them(folder, tmp_path, monkeypatch):
    """The overrides of RayStation's plan03 RT Struct (External: solid water 1.02 g/cm3 by its composition, PMMA:
    1.19) applied to a CT of air on the phantom's own grid give the geometry of the phantom built from the same
    overrides (--phantom-from-struct): the override machinery of a patient CT agrees with the path the real
    plan03 check takes, voxel for voxel inside the External, on RayStation's own file.  No transport."""
    import pydicom

    from mcproton._check import api
    from mcproton.dicom import load_ct_series, write_ct_series

    seen: dict = {}

    class Stop(Exception):
        pass

    def capture(inputs, geometry, *a, **k):
        seen["g"] = geometry
        raise Stop

    monkeypatch.setattr(api, "run_mc", capture)
    kw = dict(plan=folder / "RP_plan03.dcm", dose=folder / "RD_plan03_total.dcm", struct=folder / "RS_plan03.dcm",
              beam_model="dcpt_v5", progress=False, log=lambda m: None, machine_check=False)
    with pytest.raises(Stop):
        api.check(phantom_from_struct=True, out=tmp_path / "ph", **kw)
    g1 = seen.pop("g")
    ph = load_ct_series(tmp_path / "ph" / "phantom_ct")
    rs = pydicom.dcmread(folder / "RS_plan03.dcm", stop_before_pixels=True)
    from mcproton._io.dicom_common import StudyReference

    study = StudyReference(patient_id=str(rs.PatientID), frame_of_reference_uid=str(rs.FrameOfReferenceUID))
    write_ct_series(np.full(ph.hu_zyx.shape, -1000.0), ph.voxel_size_mm, ph.origin_mm, tmp_path / "ct_air",
                    study=study)
    with pytest.raises(Stop):
        api.check(ct=tmp_path / "ct_air", out=None, calibration="schneider2000", **kw)
    g2 = seen.pop("g")
    assert g1.shape_zyx == g2.shape_zyx and np.allclose(g1.origin_mm, g2.origin_mm)
    inside = g1.density_g_cm3_zyx > 0.5                    # the phantom (External and PMMA), not the air around
    assert 0.5 < inside.mean() < 0.95
    names1 = np.array([m.name for m in g1.materials])[g1.material_index_zyx[inside]]
    names2 = np.array([m.name for m in g2.materials])[g2.material_index_zyx[inside]]
    assert (names1 == names2).mean() > 0.999, set(zip(names1[names1 != names2], names2[names1 != names2]))
    np.testing.assert_allclose(g2.density_g_cm3_zyx[inside], g1.density_g_cm3_zyx[inside], rtol=2e-3)
    assert set(names2) == {"solid_water_gammex457", "pmma"}


def test_the_phantom_is_converted_in_memory_as_its_written_ct_reads(folder, tmp_path, monkeypatch):
    """--phantom-from-struct converts the phantom CT it writes without reading it back (audit 27 hosttime F3; before
    2026-12-07 the 242-slice series was written and read back, 0.5-0.8 CPU s): with the CT reader made to fail, the
    check builds its geometry, and that geometry is bit for bit the one built from the series read back from
    OUT/phantom_ct (the path taken before), on RayStation's plan03 RT Struct; the series written is complete and
    reads as the CT that was converted.  No transport."""
    import dataclasses
    import sys

    from mcproton._check import api
    from mcproton._io import ct as ct_io

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
    from test_ct_written_image import assert_same_image   # tests/io/test_ct_written_image.py

    class Stop(Exception):
        pass

    seen: dict = {}

    def capture(inputs, geometry, *a, **k):
        seen["g"] = geometry
        raise Stop

    real = api.phantom_ct_from_struct

    def spy(struct, ref, where, **k):
        seen["ct"], cal, notes = real(struct, ref, where, **k)
        seen["where"] = where
        return seen["ct"], cal, notes

    def read_back(struct, ref, where, **k):   # the path before 2026-12-07: build_geometry reads the folder
        seen["ct_read"], cal, notes = real(struct, ref, where, **k)
        return Path(where), cal, notes

    def no_reading(*a, **k):
        raise AssertionError("the phantom CT was read back")

    monkeypatch.setattr(api, "run_mc", capture)
    kw = dict(plan=folder / "RP_plan03.dcm", dose=folder / "RD_plan03_total.dcm", struct=folder / "RS_plan03.dcm",
              beam_model="dcpt_v5", progress=False, log=lambda m: None, machine_check=False, phantom_from_struct=True)
    with monkeypatch.context() as m:
        m.setattr(ct_io, "load_ct_series", no_reading)
        m.setattr(api, "phantom_ct_from_struct", spy)
        with pytest.raises(Stop):
            api.check(out=tmp_path / "mem", **kw)
    g_mem, ct_mem = seen.pop("g"), seen.pop("ct")
    assert seen.pop("where") == tmp_path / "mem" / "phantom_ct"
    written = ct_io.load_ct_series(tmp_path / "mem" / "phantom_ct")
    assert len(written.slice_files) == ct_mem.shape_zyx[0] == 242   # the series written whole
    assert_same_image(ct_mem, written)
    monkeypatch.setattr(api, "phantom_ct_from_struct", read_back)
    with pytest.raises(Stop):
        api.check(out=tmp_path / "read", **kw)
    g_read, uid_read = seen.pop("g"), seen.pop("ct_read").series_instance_uid
    assert set(vars(g_mem)) == set(vars(g_read))
    for key, a in vars(g_mem).items():
        b = getattr(g_read, key)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and np.array_equal(a, b), key
        elif key == "study":   # each check writes its own phantom series: a new study UID and time
            skip = ("study_instance_uid", "study_date", "study_time")
            assert dataclasses.replace(a, **{f: "" for f in skip}) == dataclasses.replace(b, **{f: "" for f in skip})
        elif key == "name":    # "CT <its series UID> (...)"
            assert a.replace(ct_mem.series_instance_uid, "UID") == b.replace(uid_read, "UID")
        else:
            assert a == b, key


def test_a_contour_point_far_outside_the_tps_grid_is_refused_before_the_phantom_is_built(folder, tmp_path,
                                                                                          monkeypatch):
    """--phantom-from-struct sizes its phantom to hold every override ROI's points: one vertex of plan03's External
    moved to x = 700 mm (the TPS grid spans x -105.5..108.5 mm) is refused as on a patient's CT (the one check,
    rtstruct.check_contours_near_ct, against the TPS dose grid the phantom is built around), naming the ROI and the
    point, before any phantom CT is written.  Before 2026-12-07 (review 28b, R1) the phantom grew to 844 x 246 x 242
    voxels (3.4 x wider) and held a 600 mm wedge of solid water there, without a word.  No transport."""
    import pydicom

    from mcproton._check import api
    from mcproton._io.errors import DicomInputError

    rs = pydicom.dcmread(folder / "RS_plan03.dcm")
    num = {r.ROINumber: r.ROIName for r in rs.StructureSetROISequence}
    ext = next(c for c in rs.ROIContourSequence if num[c.ReferencedROINumber] == "External")
    k = next(i for i, c in enumerate(ext.ContourSequence) if int(c.NumberOfContourPoints) == 4)
    pts = [float(v) for v in ext.ContourSequence[k].ContourData]
    pts[3] = 700.0   # x of the contour's second point
    ext.ContourSequence[k].ContourData = pts
    spiked = tmp_path / "in"
    spiked.mkdir()
    rs.save_as(spiked / "RS_plan03.dcm")

    def no_mc(*a, **k):
        raise AssertionError("the check went on to the Monte Carlo")

    monkeypatch.setattr(api, "run_mc", no_mc)
    with pytest.raises(DicomInputError) as e:
        api.check(plan=folder / "RP_plan03.dcm", dose=folder / "RD_plan03_total.dcm", struct=spiked / "RS_plan03.dcm",
                  beam_model="dcpt_v5", progress=False, log=lambda m: None, machine_check=False,
                  phantom_from_struct=True, out=tmp_path / "out")
    msg = str(e.value)
    assert f"ROI 'External' contour {k}: point 1 of 4 at (700," in msg, msg
    assert "mm lies more than 500 mm outside the TPS dose grid (" in msg
    assert "--phantom-from-struct builds the phantom around it: x -105.5 to 108.5" in msg, msg
    assert "correct the contour in the planning system and export the structure set again" in msg
    assert not list((tmp_path / "out").glob("phantom_ct/CT_*.dcm"))   # no phantom written
