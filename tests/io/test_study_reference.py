"""StudyReference (the patient/study/frame/plan a written DICOM object belongs to) and the one RT Dose writer
that takes a result (mcproton.dicom.write_result_rtdose): a CT geometry carries its CT's study as a declared
field (nothing patched onto VoxelGeometry), and the RT Dose lands in that study and frame."""
from __future__ import annotations

import dataclasses

import numpy as np
import pydicom
import pytest

import mcproton
from mcproton.dicom import DoseContents, StudyReference, read_rtdose, write_ct_series, write_result_rtdose, \
    write_rtdose
from mcproton.geometry import VoxelGeometry

FRAME = "1.2.826.0.1.3680043.8.498.501"
STUDY = "1.2.826.0.1.3680043.8.498.502"
PLAN = "1.2.826.0.1.3680043.8.498.503"
CT_STUDY = StudyReference(patient_name="Child^Test", patient_id="PAED-7", patient_birth_date="20200101",
                          patient_sex="F", study_instance_uid=STUDY, frame_of_reference_uid=FRAME,
                          patient_position="HFS")


def _declared_only(g: VoxelGeometry) -> None:
    extra = set(vars(g)) - {f.name for f in dataclasses.fields(VoxelGeometry)}
    assert not extra, f"attributes patched onto VoxelGeometry: {sorted(extra)}"


@pytest.fixture(scope="module")
def ct_geometry(tmp_path_factory):
    from mcproton.config import build_geometry

    d = tmp_path_factory.mktemp("ct")
    write_ct_series(np.zeros((6, 8, 8)), (4.0, 4.0, 4.0), (-14.0, -14.0, 0.0), d / "ct", study=CT_STUDY)
    return build_geometry({"phantom": {"type": "ct", "ct_dir": str(d / "ct")}})


def test_a_ct_geometry_carries_its_study_and_nothing_patched(ct_geometry):
    g = ct_geometry
    assert (g.study.patient_name, g.study.patient_id) == ("Child^Test", "PAED-7")
    assert g.study.study_instance_uid == STUDY
    assert g.frame_of_reference_uid == FRAME and g.patient_position == "HFS"
    _declared_only(g)
    blocks = mcproton.resample_blocks(g, (2, 2, 2))
    assert blocks.study == g.study
    _declared_only(blocks)
    slab = mcproton.slab_ct_geometry([("water", 8.0)], voxel_mm=(4, 4, 2), lateral_size_mm=(8, 8))
    assert slab.frame_of_reference_uid and slab.patient_position == ""
    _declared_only(slab)
    assert mcproton.box_phantom("water", (8, 8, 8), 4.0).study is None


def test_to_geometry_of_the_api_carries_the_cts_study_as_the_cli_does(ct_geometry, tmp_path_factory):
    """Audit M1: ``HUCalibration.to_geometry(ct)`` left ``study`` unset (only the CLI set it afterwards), so an
    RT Dose written from a script landed in a new study and frame.  Now to_geometry sets it, at the CT's voxels and
    in blocks, the same as the CLI's geometry (built from the same CT series)."""
    from mcproton.dicom import HUCalibration, load_ct_series

    d = tmp_path_factory.mktemp("ct_api")
    # soft tissue, 40 HU (a water box at 0 HU is a water phantom read with a tissue calibration: warned, ctcal F2)
    write_ct_series(np.full((6, 8, 8), 40.0), (4.0, 4.0, 4.0), (-14.0, -14.0, 0.0), d / "ct", study=CT_STUDY)
    ct = load_ct_series(d / "ct")
    cal = HUCalibration.load("schneider2000")
    for g in (cal.to_geometry(ct), cal.to_geometry(ct, blocks=(2, 2, 2)),
              cal.to_geometry(ct, compact=True, blocks=(1, 1, 2), slab_voxels=64)):   # slabs joined
        assert g.study == StudyReference.from_ct(ct) == ct_geometry.study
        assert (g.frame_of_reference_uid, g.patient_position) == (FRAME, "HFS")
        _declared_only(g)
    beam = mcproton.Beam.pencil(70.0, position_mm=(0, -40, 10), direction=(0, 1, 0), total_protons=1e9)
    r = mcproton.simulate(cal.to_geometry(ct), beam, mcproton.RunSettings(primaries=300, batches=2, backend="cpu"))
    entry = write_result_rtdose(r, d / "RD.dcm")                     # no study given
    ds = pydicom.dcmread(d / "RD.dcm")
    assert (str(ds.StudyInstanceUID), str(ds.FrameOfReferenceUID), ds.PatientID) == (STUDY, FRAME, "PAED-7")
    assert (entry["study_instance_uid"], entry["frame_of_reference_uid"]) == (STUDY, FRAME)


def test_study_reference_is_frozen_and_resolves_missing_uids():
    s = StudyReference(patient_id="X")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.patient_id = "Y"   # type: ignore[misc]
    r = s.resolved()
    assert r.study_instance_uid and r.frame_of_reference_uid and r.patient_id == "X"
    assert r.resolved() == r                           # already resolved: unchanged
    assert CT_STUDY.resolved() == CT_STUDY
    from types import SimpleNamespace

    ct = SimpleNamespace(**{f.name: getattr(CT_STUDY, f.name) for f in dataclasses.fields(StudyReference)
                            if f.name.startswith(("patient", "study", "frame"))})
    want = CT_STUDY.replace(plan_sop_instance_uid=PLAN)
    assert StudyReference.from_ct(ct, plan_sop_instance_uid=PLAN) == want


@pytest.fixture(scope="module")
def result(ct_geometry):
    beam = mcproton.Beam.pencil(70.0, position_mm=(0, -40, 10), direction=(0, 1, 0), sigma_mm=(3, 3),
                                total_protons=1e9)
    return mcproton.simulate(ct_geometry, beam, mcproton.RunSettings(primaries=300, batches=2, backend="cpu",
                                                                     seed=5))


def test_write_result_rtdose_lands_in_the_cts_study(result, tmp_path):
    entry = write_result_rtdose(result, tmp_path / "RD.dcm")
    ds = pydicom.dcmread(tmp_path / "RD.dcm")
    assert (str(ds.StudyInstanceUID), str(ds.FrameOfReferenceUID)) == (STUDY, FRAME)
    assert (str(ds.PatientName), ds.PatientID) == ("Child^Test", "PAED-7")
    assert ds.DoseSummationType == "PLAN" and ds.DoseType == "PHYSICAL" and "placeholder" in ds.DoseComment
    back = read_rtdose(tmp_path / "RD.dcm")
    assert np.abs(back.dose_gy_zyx - result.dose_gy_zyx).max() <= 0.5 * back.dose_grid_scaling * (1 + 1e-9)
    assert entry["max_dose"] == pytest.approx(float(result.dose_gy_zyx.max()))


def test_write_result_rtdose_contents_scale_rbe_water_and_plan(result, tmp_path):
    c = DoseContents("FRACTION_SESSION", fractions=1, dose_to="water", rbe=1.1, scale=2.0,
                     plan_sop_instance_uid=PLAN)
    write_result_rtdose(result, tmp_path / "RD.dcm", contents=c)
    ds = pydicom.dcmread(tmp_path / "RD.dcm")
    assert ds.DoseType == "EFFECTIVE" and ds.DoseSummationType == "FRACTION_SESSION"
    assert ds.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == PLAN
    back = read_rtdose(tmp_path / "RD.dcm")
    want = result.dose_to_water_gy_zyx * 2.2
    assert np.abs(back.dose_gy_zyx - want).max() <= 0.5 * back.dose_grid_scaling * (1 + 1e-9)
    with pytest.raises(ValueError, match="refer to plan"):
        write_result_rtdose(result, tmp_path / "x.dcm", contents=c,
                            study=CT_STUDY.replace(plan_sop_instance_uid="1.2.826.0.1.3680043.8.498.9"))


def test_write_result_rtdose_zero_outside_the_given_outline(result, tmp_path):
    from mcproton.body import BodyOutline

    mask = np.zeros(result.dose_gy_zyx.shape, bool)
    mask[:, :, :4] = True
    write_result_rtdose(result, tmp_path / "RD.dcm", body_outline=BodyOutline(mask, "test", "test"))
    back = read_rtdose(tmp_path / "RD.dcm")
    assert np.all(back.dose_gy_zyx[~mask] == 0) and back.dose_gy_zyx[mask].max() > 0


def test_write_rtdose_needs_a_study_with_a_frame(tmp_path):
    with pytest.raises(ValueError, match="frame_of_reference_uid is required"):
        write_rtdose(np.ones((2, 2, 2)), (1, 1, 1), (0, 0, 0), tmp_path / "a.dcm", study=StudyReference())
    with pytest.raises(TypeError, match="StudyReference"):
        write_rtdose(np.ones((2, 2, 2)), (1, 1, 1), (0, 0, 0), tmp_path / "a.dcm",
                     study={"frame_of_reference_uid": FRAME})   # type: ignore[arg-type]


def test_a_name_outside_latin1_is_written_in_utf8_not_as_question_marks(tmp_path):
    """A planning system's Greek (or Cyrillic, Japanese) patient name: the RT Dose and the CT series take
    SpecificCharacterSet ISO_IR 192 and keep the name (before: ISO_IR 100 and '????', with a pydicom warning);
    a Latin-1 name keeps ISO_IR 100."""
    import warnings

    greek = StudyReference(patient_name="Παπαδόπουλος^Γιώργος", patient_id="ΑΒ-123", frame_of_reference_uid="1.2.3")
    with warnings.catch_warnings():
        warnings.simplefilter("error")        # pydicom warns when it falls back to replacement characters
        rd = write_rtdose(np.ones((2, 3, 4)), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tmp_path / "rd.dcm", study=greek)
        write_ct_series(np.zeros((3, 4, 4), np.int16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tmp_path / "ct", study=greek)
    for path in (rd, sorted((tmp_path / "ct").glob("*.dcm"))[0]):
        ds = pydicom.dcmread(path)
        assert ds.SpecificCharacterSet == "ISO_IR 192", path
        assert str(ds.PatientName) == "Παπαδόπουλος^Γιώργος" and ds.PatientID == "ΑΒ-123"
    latin = dataclasses.replace(greek, patient_name="Müller^Jörg", patient_id="X1")
    ds = pydicom.dcmread(write_rtdose(np.ones((2, 3, 4)), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tmp_path / "rd2.dcm",
                                      study=latin))
    assert ds.SpecificCharacterSet == "ISO_IR 100" and str(ds.PatientName) == "Müller^Jörg"


def test_the_written_character_set_is_decided_from_every_text_element(tmp_path):
    """settle_charset (save_dataset, for every writer): text in a sequence item that Latin-1 cannot hold makes the
    file ISO_IR 192 whatever the patient's name is (before: only the name, ID and series description were looked
    at, identity audit 24 F9); Latin-1 text alone keeps ISO_IR 100; raw values (an RT Struct's ContourData) are not
    decoded on the way."""
    from pydicom.dataelem import RawDataElement
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.tag import Tag

    from mcproton._io.dicom_common import RT_STRUCTURE_SET_STORAGE, new_file_dataset, save_dataset, settle_charset

    def written(roi_name: str):
        ds, _ = new_file_dataset(tmp_path / "rs.dcm", RT_STRUCTURE_SET_STORAGE)
        ds.PatientName, ds.PatientID = "Smith^Anna", "S1"
        roi = Dataset()
        roi.ROINumber, roi.ROIName = 1, roi_name
        contour = Dataset()
        contour[0x30060050] = RawDataElement(Tag(0x30060050), "DS", 8, b"1.0\\2.0 ", 0, False, True)
        rc = Dataset()
        rc.ContourSequence = Sequence([contour])
        ds.StructureSetROISequence = Sequence([roi])
        ds.ROIContourSequence = Sequence([rc])
        settle_charset(ds)
        assert isinstance(contour._dict[Tag(0x30060050)], RawDataElement)   # left raw
        save_dataset(ds, tmp_path / "rs.dcm")       # settles it again, as every writer's file
        return pydicom.dcmread(tmp_path / "rs.dcm")

    greek = written("Εγκέφαλος")
    assert greek.SpecificCharacterSet == "ISO_IR 192" and greek.StructureSetROISequence[0].ROIName == "Εγκέφαλος"
    latin = written("Gehirn Übergang")
    assert latin.SpecificCharacterSet == "ISO_IR 100" and latin.StructureSetROISequence[0].ROIName == "Gehirn Übergang"
    assert latin.ROIContourSequence[0].ContourSequence[0].ContourData == [1.0, 2.0]


def test_a_dose_per_primary_is_not_written_as_gy(tmp_path):
    """A result of a beam without total_protons is in Gy per primary proton: written as an RT Dose (which holds Gy)
    it would be mislabelled by a factor of ~1e11, so write_result_rtdose refuses it (mcproton run refuses --rtdose
    for it before the transport: docs/bad_inputs.md)."""
    from mcproton.geometry import box_phantom
    from mcproton.run import RunSettings, simulate
    from mcproton.source import Beam

    g = box_phantom("water", (10, 10, 20), 2.0)
    r = simulate(g, Beam.pencil(70.0, position_mm=(0.0, 0.0, -1.0)), RunSettings(primaries=200, seed=1, backend="cpu",
                                                                               batches=2))
    assert r.normalisation == "Gy per primary"
    with pytest.raises(ValueError, match="Gy per primary proton"):
        write_result_rtdose(r, tmp_path / "rd.dcm")
    assert not (tmp_path / "rd.dcm").exists()


def test_an_over_long_patient_id_is_copied_as_it_is_with_one_warning(tmp_path):
    """Strings audit 19, F5: a PatientID of 74 characters (invalid LO, read by pydicom with a warning) was cut to 64
    in the RT Dose (another ID than the CT's and plan's), while an over-long PatientName was copied.  Now both are
    copied as they are, with one warning of mcproton's naming them (no pydicom warning per value)."""
    import warnings

    from mcproton.errors import McprotonRuntimeWarning

    long_id, long_name = "MRN-" + "1234567890" * 7, "Doe^" + "J" * 70
    study = StudyReference(patient_name=long_name, patient_id=long_id, frame_of_reference_uid="1.2.3")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rd = write_rtdose(np.ones((2, 3, 4)), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tmp_path / "rd.dcm", study=study)
    ours = [w for w in caught if issubclass(w.category, McprotonRuntimeWarning)]
    assert len(ours) == 1, [str(w.message) for w in caught]
    assert "PatientID (74 characters) and PatientName (74 characters)" in str(ours[0].message)
    assert not [w for w in caught if "exceeds the maximum" in str(w.message)], [str(w.message) for w in caught]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(rd)
    assert ds.PatientID == long_id and str(ds.PatientName) == long_name


def test_an_over_long_patient_id_is_warned_once_per_run_not_once_per_object(tmp_path):
    """Review 2 of 2026-12-06, F5: a run writing an RT Dose per beam and a total said (and recorded) the over-long
    PatientID once per file.  Within one run or check (its recording_warnings block) it is said once; another run
    says it again (its own record needs it)."""
    import warnings

    from mcproton._io.errors import recording_warnings
    from mcproton.errors import McprotonRuntimeWarning

    study = StudyReference(patient_id="P" * 74, patient_name="Doe^John", frame_of_reference_uid="1.2.3")
    for run in range(2):
        with recording_warnings() as said, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for k in range(3):
                write_rtdose(np.ones((2, 2, 2)), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tmp_path / f"rd{run}{k}.dcm",
                             study=study)
        ours = [str(w.message) for w in caught if issubclass(w.category, McprotonRuntimeWarning)]
        assert len(ours) == 1 and len(said) == 1, (run, ours, said)
        assert "PatientID (74 characters)" in said[0]


def test_an_rtdose_of_a_saved_and_loaded_result_lies_in_the_cts_frame(result, tmp_path):
    """I/O review 2026-12-06, F1: the HDF5 did not store the CT's study, so an RT Dose written from a loaded result
    got a new random FrameOfReferenceUID and StudyInstanceUID, no patient and HFS orientation, without a word.  Now
    the study is stored and restored: the RT Dose of the loaded result has the same frame, study, patient and
    ImageOrientationPatient as the one written from the result itself (a prone CT: axis directions (-1, -1, 1))."""
    from mcproton import DoseResult

    prone = CT_STUDY.replace(patient_position="HFP", axis_directions=(-1, -1, 1), study_date="20260102",
                             study_time="101500", study_timezone="+0100")
    res = dataclasses.replace(result, geometry=dataclasses.replace(result.geometry, study=prone))
    loaded = DoseResult.load(res.save(tmp_path / "r.h5"))
    assert loaded.geometry.study == prone
    assert (loaded.geometry.study.study_date, loaded.geometry.study.study_timezone) == ("20260102", "+0100")
    keys = ("FrameOfReferenceUID", "StudyInstanceUID", "PatientID", "PatientName", "ImageOrientationPatient",
            "StudyDate", "StudyTime")
    got = []
    for r, name in ((res, "RD_direct.dcm"), (loaded, "RD_loaded.dcm")):
        write_result_rtdose(r, tmp_path / name)
        ds = pydicom.dcmread(tmp_path / name, stop_before_pixels=True)
        got.append([str(ds.get(k, "")) for k in keys])
    assert got[0] == got[1]
    assert got[0][:3] == [FRAME, STUDY, "PAED-7"] and got[0][4] == str([-1.0, 0.0, 0.0, 0.0, -1.0, 0.0])
    # a grid without a CT stays without a study (a new frame of its own, as before the round trip)
    box = dataclasses.replace(result, geometry=dataclasses.replace(result.geometry, study=None))
    assert DoseResult.load(box.save(tmp_path / "box.h5")).geometry.study is None


def test_an_rtdose_of_an_older_hdf5_without_the_study_is_refused_without_study(result, tmp_path):
    """An HDF5 written before the study was stored: whether its dose was on a CT is unknown, so write_result_rtdose
    refuses to invent a frame of reference (as the README advises, give ``study=``); with it, the file is written in
    that study."""
    import h5py

    from mcproton import DoseResult

    path = result.save(tmp_path / "old.h5")
    with h5py.File(path, "r+") as f:
        del f.attrs["study"]
    old = DoseResult.load(path)
    assert old.geometry.study is None
    with pytest.raises(ValueError, match=r"did not store the CT's patient, study and frame of reference.*"
                                         r"study=mcproton.StudyReference.from_ct"):
        write_result_rtdose(old, tmp_path / "RD.dcm")
    write_result_rtdose(old, tmp_path / "RD.dcm", study=CT_STUDY)
    assert str(pydicom.dcmread(tmp_path / "RD.dcm").FrameOfReferenceUID) == FRAME


def _old_file(result, path):
    """``result`` saved as an HDF5 written before 2026-12-06 (format mcproton-dose/1 without ``study``)."""
    import h5py

    result.save(path)
    with h5py.File(path, "r+") as f:
        del f.attrs["study"]
    return path


def test_an_older_hdf5_stays_refused_when_saved_again_and_when_summed(result, tmp_path):
    """Review B of 2026-12-06, F1: the refusal above was a plain attribute of the loaded result.  Saved again, the
    file said ``study = null`` ("a grid without a CT"), and sum_results dropped it: the re-saved file's result and
    the sum of two old per-beam files wrote an RT Dose in a new frame with no patient, silently.  The study stays
    unknown through save/load and sum_results (any unknown input makes the sum's unknown), and the message no longer
    advises saving again; stating the study (geometry.study) before saving keeps it."""
    import h5py

    from mcproton import DoseResult, sum_results

    old1 = DoseResult.load(_old_file(result, tmp_path / "old1.h5"))
    old2 = DoseResult.load(_old_file(result, tmp_path / "old2.h5"))
    resaved = DoseResult.load(old1.save(tmp_path / "resaved.h5"))
    with h5py.File(tmp_path / "resaved.h5") as f:
        assert "study" not in f.attrs and str(f.attrs["study_not_stored"]).endswith("old1.h5")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the same beam twice: its random numbers are not independent
        summed = sum_results([old1, old2])
        mixed = sum_results([result, old2])   # a result of a CT with an old file's: unknown too
    assert result.geometry.study.frame_of_reference_uid == FRAME   # the sum's geometry without a study: a copy
    resaved_sum = DoseResult.load(summed.save(tmp_path / "sum.h5"))
    for r, files in ((resaved, ["old1.h5"]), (summed, ["old1.h5", "old2.h5"]), (mixed, ["old2.h5"]),
                     (resaved_sum, ["old1.h5", "old2.h5"])):
        with pytest.raises(ValueError, match="did not store the CT's patient, study and frame of reference") as e:
            write_result_rtdose(r, tmp_path / "RD.dcm")
        assert all(f in str(e.value) for f in files) and "save the result again" not in str(e.value)
        assert "saved again without it, the result's study stays unknown" in str(e.value)
    assert not (tmp_path / "RD.dcm").exists()
    # stating the study keeps it through save and load
    resaved.geometry.study = result.geometry.study
    stated = DoseResult.load(resaved.save(tmp_path / "stated.h5"))
    assert stated.geometry.study == result.geometry.study and stated.study_not_stored == ""
    write_result_rtdose(stated, tmp_path / "RD.dcm")
    assert str(pydicom.dcmread(tmp_path / "RD.dcm").FrameOfReferenceUID) == FRAME


def test_sum_results_warns_of_results_in_different_studies(result):
    """Review B of 2026-12-06, F1 (checked): two results on one grid and phantom but of different studies (another
    patient or frame, or a CT's and none) were summed without a word, the sum lying in result 1's study."""
    from mcproton import sum_results

    other = dataclasses.replace(result, geometry=dataclasses.replace(
        result.geometry, study=result.geometry.study.replace(frame_of_reference_uid="1.2.826.0.1.3680043.8.498.509")))
    none = dataclasses.replace(result, geometry=dataclasses.replace(result.geometry, study=None))
    for r in (other, none):
        with pytest.warns(mcproton.McprotonRuntimeWarning, match="the results lie in different studies"):
            s = sum_results([result, r])
        assert s.geometry.study == result.geometry.study
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sum_results([result, dataclasses.replace(result, geometry=dataclasses.replace(result.geometry))])
    assert not [w for w in caught if "different studies" in str(w.message)]
