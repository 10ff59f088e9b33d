"""``mcproton check FOLDER``: pairing in messy real folders (docs/check.md "Bad input").  Each test copies one
small patient folder (a CT series, a two-beam RT Ion Plan, an RT Struct, a plan dose and two per-beam doses that
refer to the plan by UID) and spoils it the way exports and hand copies do: a dose twice, two doses of one beam,
two plans, a dose of a plan that is not there, two CT series, two structure sets, another patient's files,
DICOMDIR, hidden, empty, damaged and unreadable files, sub-folders.  Each case either pairs what belongs together
and says what it skipped, or is refused with the files named.  Only the pairing (``gather``) runs: no transport.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from dicom_factories import make_plan, save, spot_grid
from fakes import write_dicomdir   # tests/fakes.py
from test_check import FOR, _write_rs

from mcproton.dicom import StudyReference

OTHER_FOR = "1.2.826.0.1.3680043.8.498.7777"
VS = (4.0, 4.0, 4.0)
XS = np.arange(-56.0, 56.0, 4.0) + 2.0
ZS = np.arange(-28.0, 28.0, 4.0) + 2.0
ORIGIN = (XS[0], XS[0], ZS[0])
STUDY = StudyReference(patient_id="T1", patient_name="test^plan", frame_of_reference_uid=FOR)


def _hu():
    hu = np.full((ZS.size, XS.size, XS.size), -1000.0)
    hu[2:-2, 4:-4, 4:-4] = 0.0
    return hu


def _plan(path: Path, label: str = "test", patient_id: str = "T1") -> str:
    layers = [(90.0, spot_grid(3, 8.0), [1.0] * 9)]
    ds = make_plan([{"gantry": g, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "layers": layers, "meterset": 20.0}
                    for g in (0.0, 90.0)], frame_of_reference_uid=FOR)
    ds.RTPlanLabel, ds.PatientID = label, patient_id
    save(ds, path)
    return str(ds.SOPInstanceUID)


def _rd(path: Path, plan_uid: str, summation: str = "PLAN", beam: int | None = None, patient_id: str = "T1",
        scale: float = 1.0) -> Path:
    from mcproton.dicom import write_rtdose

    return write_rtdose(np.full((ZS.size, XS.size, XS.size), scale), VS, ORIGIN, path,
                        study=STUDY.replace(plan_sop_instance_uid=plan_uid, patient_id=patient_id),
                        summation_type=summation, referenced_beam_number=beam)


def _rs(path: Path, frame: str = FOR, patient_id: str = "T1") -> Path:
    _write_rs(path, None)
    ds = pydicom.dcmread(path)
    ds.PatientID, ds.FrameOfReferenceUID = patient_id, frame
    for r in ds.StructureSetROISequence:
        r.ReferencedFrameOfReferenceUID = frame
    ds.save_as(path)
    return path


def make_patient(d: Path) -> str:
    """One patient's folder ``d`` (CT series in ct/, a two-beam plan, its structure set, plan dose and beam
    doses); returns the plan's SOPInstanceUID."""
    from mcproton.dicom import write_ct_series

    write_ct_series(_hu(), VS, ORIGIN, d / "ct", study=STUDY)
    uid = _plan(d / "RP.dcm")
    _rs(d / "RS.dcm")
    _rd(d / "RD_plan.dcm", uid)
    _rd(d / "RD_beam1.dcm", uid, "BEAM", 1, scale=0.5)
    _rd(d / "RD_beam2.dcm", uid, "BEAM", 2, scale=0.5)
    return uid


@pytest.fixture(scope="module")
def patient(tmp_path_factory):
    d = tmp_path_factory.mktemp("pairing") / "patient"
    return {"dir": d, "plan_uid": make_patient(d)}


@pytest.fixture
def folder(patient, tmp_path):
    f = tmp_path / "patient"
    shutil.copytree(patient["dir"], f)
    return f


def _gather(f, **kw):
    from mcproton._check.inputs import gather

    return gather(folder=f, **kw)


def _refused(f, match, **kw):
    from mcproton._check.inputs import CheckInputError

    with pytest.raises(CheckInputError, match=match) as exc:
        _gather(f, **kw)
    return str(exc.value)


def _paired(inp):
    return (Path(inp.plan_path).name, inp.total and Path(inp.total.path).name,
            {b: Path(t.path).name for b, t in inp.beams.items()}, inp.struct_path and Path(inp.struct_path).name)


CLEAN = ("RP.dcm", "RD_plan.dcm", {1: "RD_beam1.dcm", 2: "RD_beam2.dcm"}, "RS.dcm")


def test_the_clean_folder_pairs_everything(folder):
    inp = _gather(folder)
    assert _paired(inp) == CLEAN and Path(inp.ct_dir) == folder / "ct"


def test_a_ct_folder_linked_into_the_patient_folder_is_read_and_a_loop_named(folder, tmp_path):
    """A CT folder on shared storage, linked into the patient folder (ln -s): read through the link.  Before
    (audit 2026-12-05) Path.rglob did not follow it: "no CT: give --ct ...", the link not named.  A link back to
    the patient folder (a loop) is read once and named among the pairing notes."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shutil.move(folder / "ct", shared / "ct_series")
    (folder / "ct").symlink_to(shared / "ct_series", target_is_directory=True)
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    inp = _gather(folder)
    assert _paired(inp) == CLEAN and Path(inp.ct_dir) == folder / "ct"
    assert inp.reference is not None and len(list((folder / "ct").iterdir())) == ZS.size
    assert any(line.startswith("skipped the linked folder loop: it leads to ") and "read already (a loop" in line
               for line in inp.pairing), inp.pairing


def test_a_link_up_the_tree_is_not_followed_and_named(folder, tmp_path):
    """A link inside the patient folder to a folder above it (``up -> ..``; a link to ``/`` or to the PACS mount
    alike): not followed, named among the pairing notes.  Before (untrusted-input audit 29, F7) the scan read the
    whole parent tree: the other patient beside this one (a copy of its folder: the same plan) made the check refuse,
    naming that patient's plan "up/other/RP.dcm" as this one's.  A link further down that leads up from a shared
    CT folder (``ct -> shared/ct_series``, in it ``top -> tmp_path``) is not followed either."""
    shutil.copytree(folder, tmp_path / "other")
    (folder / "up").symlink_to("..", target_is_directory=True)
    inp = _gather(folder)
    assert _paired(inp) == CLEAN and Path(inp.ct_dir) == folder / "ct"
    said = [line for line in inp.pairing if line.startswith("skipped the linked folder up: it leads to ")]
    assert len(said) == 1 and f"{tmp_path.resolve()}, a folder above the ones read" in said[0], inp.pairing
    (folder / "up").unlink()
    shared = tmp_path / "shared"
    shared.mkdir()
    shutil.move(folder / "ct", shared / "ct_series")
    (folder / "ct").symlink_to(shared / "ct_series", target_is_directory=True)
    (shared / "ct_series" / "top").symlink_to(tmp_path, target_is_directory=True)
    inp = _gather(folder)
    assert _paired(inp) == CLEAN and Path(inp.ct_dir) == folder / "ct"
    assert any(line.startswith("skipped the linked folder ct/top: it leads to ") for line in inp.pairing), inp.pairing


def test_files_named_by_their_uids_without_a_suffix_are_paired(folder):
    """DICOM storage servers and some exports name files by their SOPInstanceUID ("1.2.826....17", no .dcm): the
    scan took their last UID component for a file suffix and skipped every file (2026-12-05: no plan found)."""
    names = {}
    for k, p in enumerate(sorted(q for q in folder.rglob("*") if q.is_file())):
        new = p.with_name(f"1.2.826.0.1.3680043.8.498.{1000 + k}")
        p.rename(new)
        names[p.name] = new.name
    inp = _gather(folder)
    plan, total, beams, struct = CLEAN
    assert _paired(inp) == (names[plan], names[total], {b: names[n] for b, n in beams.items()}, names[struct])
    assert Path(inp.ct_dir) == folder / "ct"


@pytest.mark.parametrize("suffix", [".IMA", ".slice"])
def test_ct_slices_named_ima_or_otherwise_are_found_as_mcproton_run_finds_them(folder, suffix):
    """Siemens syngo exports name slices PAT.CT.HEAD.0001.0001....IMA (the pacs audit, F2): the check looked at
    .dcm, .dicom, no suffix and numeric suffixes only, so it found no CT, with --ct too, where `mcproton run` reads
    them.  A file of any other name is read when it starts with the DICOM prefix (may_be_dicom)."""
    (folder / "CT").mkdir()
    for k, p in enumerate(sorted((folder / "ct").glob("*.dcm"))):
        p.rename(folder / "CT" / f"PAT.CT.HEAD.0001.{k + 1:04d}.2026.12.06{suffix}")
    (folder / "ct").rmdir()
    inp = _gather(folder)
    assert _paired(inp) == CLEAN and Path(inp.ct_dir) == folder / "CT"
    assert Path(_gather(folder, ct=folder / "CT").ct_dir) == folder / "CT"


# ---- 1. a dose twice; two doses of one beam
@pytest.mark.parametrize("name", ["RD_plan.dcm", "RD_beam1.dcm"])
def test_an_identical_copy_of_a_dose_is_used_once_and_named(folder, name):
    """An identical copy under another name (same SOPInstanceUID, same dose): used once; the pairing says so
    (before: the plan dose's copy was refused as 'two plan doses', a beam dose's copy replaced the beam's dose in
    silence)."""
    shutil.copy(folder / name, folder / f"copy of {name}")
    inp = _gather(folder)
    assert _paired(inp) == CLEAN
    line = [s for s in inp.pairing if "copy of" in s]
    assert len(line) == 1 and "same SOPInstanceUID" in line[0] and name in line[0], inp.pairing


def test_two_files_of_one_sop_instance_with_different_doses_are_refused(folder):
    ds = pydicom.dcmread(folder / "RD_beam1.dcm")
    ds.DoseGridScaling = float(ds.DoseGridScaling) * 1.1
    ds.save_as(folder / "RD_beam1_edited.dcm")
    msg = _refused(folder, "same SOPInstanceUID .* but different doses")
    assert "RD_beam1.dcm" in msg and "RD_beam1_edited.dcm" in msg


def test_two_different_doses_of_one_beam_are_refused(folder, patient):
    """Two BEAM doses for beam 1 (different SOPInstanceUIDs, e.g. before and after a re-computation): before, the
    one sorted last was compared in silence."""
    _rd(folder / "RD_beam1_v2.dcm", patient["plan_uid"], "BEAM", 1, scale=0.55)
    msg = _refused(folder, "two RT Doses of beam 1")
    assert "RD_beam1.dcm" in msg and "RD_beam1_v2.dcm" in msg and "--dose" in msg


def test_two_different_plan_doses_are_refused_with_their_names(folder, patient):
    _rd(folder / "RD_plan_v2.dcm", patient["plan_uid"], scale=1.05)
    msg = _refused(folder, "two plan doses")
    assert "RD_plan.dcm" in msg and "RD_plan_v2.dcm" in msg and "--dose" in msg


# ---- 2. two plans
def test_a_second_plan_without_a_dose_is_skipped_and_named(folder):
    _plan(folder / "RP_verification.dcm", "verif")
    inp = _gather(folder)
    assert _paired(inp) == CLEAN
    assert any("skipped RT Plan RP_verification.dcm" in s and "no RT Dose" in s for s in inp.pairing), inp.pairing


def test_two_plans_each_with_doses_are_refused_naming_them(folder):
    uid = _plan(folder / "RP_v2.dcm", "v2")
    _rd(folder / "RD_v2.dcm", uid)
    msg = _refused(folder, "2 RT Plans")
    assert "RP.dcm" in msg and "RP_v2.dcm" in msg and "--plan" in msg
    inp = _gather(folder, plan=folder / "RP_v2.dcm")
    assert Path(inp.total.path).name == "RD_v2.dcm" and inp.beams == {}


def test_two_plans_and_doses_of_neither_are_refused(folder):
    _plan(folder / "RP_v2.dcm", "v2")
    for p in folder.glob("RD_*.dcm"):
        p.unlink()
    _rd(folder / "RD_x.dcm", "1.2.3.999")
    msg = _refused(folder, "2 RT Plans")
    assert "RD_x.dcm" in msg and "1.2.3.999" in msg


def test_files_in_sub_folders_are_named_by_their_path_in_the_patient_folder(folder):
    """Audit 18 course F6: a course exported one folder per plan (cranial/RP.dcm, spinal/RP.dcm, each with its
    RD.dcm): the pairing lines said "TPS plan dose: RD.dcm", not which one."""
    for p in folder.glob("RD_*.dcm"):
        p.unlink()
    for sub in ("cranial", "spinal"):
        (folder / sub).mkdir()
        _rd(folder / sub / "RD.dcm", _plan(folder / sub / "RP.dcm", sub))
    (folder / "RP.dcm").unlink()
    msg = _refused(folder, "2 RT Plans")
    assert "cranial/RP.dcm ('cranial'" in msg and "RT Dose(s) spinal/RD.dcm" in msg, msg
    inp = _gather(folder, plan=folder / "spinal" / "RP.dcm")
    assert Path(inp.total.path) == folder / "spinal" / "RD.dcm"
    assert "TPS plan dose: spinal/RD.dcm (PLAN)" in inp.pairing, inp.pairing
    assert any(s.startswith("skipped RT Dose cranial/RD.dcm: it refers to plan") for s in inp.pairing)
    assert any(s.startswith("plan spinal/RP.dcm: 'spinal'") for s in inp.pairing)
    assert "structures: RS.dcm" in inp.pairing   # a file at the top level: its bare name


# ---- 3. a dose of a plan that is not there; a plan without a dose
def test_only_a_dose_of_a_plan_that_is_not_in_the_folder(folder):
    for p in folder.glob("RD_*.dcm"):
        p.unlink()
    _rd(folder / "RD_other.dcm", "1.2.3.999")
    msg = _refused(folder, "no RT Dose")
    assert "RD_other.dcm" in msg and "1.2.3.999" in msg and "not in the folder" in msg


def test_a_plan_without_a_dose_is_refused(folder):
    for p in folder.glob("RD_*.dcm"):
        p.unlink()
    _refused(folder, "no RT Dose of the planning system")


# ---- 4. CT series
def test_a_ct_of_another_frame_in_another_folder_is_skipped_and_named(folder):
    from mcproton.dicom import write_ct_series

    write_ct_series(_hu(), VS, ORIGIN, folder / "ct_other",
                    study=StudyReference(patient_id="T1", frame_of_reference_uid=OTHER_FOR))
    inp = _gather(folder)
    assert Path(inp.ct_dir) == folder / "ct"
    assert any("skipped CT series" in s and "ct_other" in s and "frame of reference" in s for s in inp.pairing)


def test_two_ct_series_of_the_plans_frame_are_refused(folder):
    from mcproton.dicom import write_ct_series

    write_ct_series(_hu(), VS, ORIGIN, folder / "ct_rescan", study=STUDY)
    msg = _refused(folder, "2 CT series")
    assert "ct_rescan" in msg and "--ct-series" in msg and "no structure set names one" in msg


def test_the_refusal_of_two_ct_series_carries_its_option_for_the_batch(folder):
    """In a batch the refusal says what to change in the folder and carries --ct-series, its own way out, for the
    alone-command (the review c of audit 27, R1: the option was recorded on the patient whenever its CT was picked,
    and then named after any later refusal)."""
    from mcproton._check.inputs import BatchPatient, CheckInputError, checking_batch_patient
    from mcproton.dicom import write_ct_series

    write_ct_series(_hu(), VS, ORIGIN, folder / "ct_rescan", study=STUDY)
    with checking_batch_patient(BatchPatient(folder)), pytest.raises(CheckInputError, match="2 CT series") as exc:
        _gather(folder)
    assert exc.value.single_options == ("--ct-series",)
    assert f"leave in {folder} only the CT series the plan was computed on" in str(exc.value)
    assert "--ct-series" not in str(exc.value), exc.value


def test_one_ct_series_split_over_two_folders_is_refused_as_split(folder):
    """A media export that puts one series in IMAGES/A and IMAGES/B (the pacs audit, F6): before, "2 CT series ...
    give --ct-series" with the same UID twice, which --ct-series cannot resolve."""
    (folder / "ct" / "A").mkdir()
    (folder / "ct" / "B").mkdir()
    for i, p in enumerate(sorted((folder / "ct").glob("*.dcm"))):
        p.rename(folder / "ct" / "AB"[i % 2] / p.name)
    for kw in ({}, {"ct_series": _series_uid(folder / "ct" / "A")}):
        msg = _refused(folder, "is split over 2 folders", **kw)
        assert "A: 7 slices" in msg and "B: 7 slices" in msg and "copy all its slices into one folder" in msg


def _second_series(folder: Path, into: Path, hu: float = 100.0, description: str = "rescan") -> str:
    """A second CT series of the plan's frame (water at ``hu`` HU, to tell it from the first) written into
    ``into`` (the first series' folder: the two mixed); its SeriesInstanceUID."""
    from mcproton.dicom import write_ct_series

    vol = _hu()
    vol[vol > -1000] = hu
    uid = ""
    for i, p in enumerate(write_ct_series(vol, VS, ORIGIN, folder / "tmp_series", study=STUDY,
                                          series_description=description)):
        uid = str(pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID)
        into.mkdir(parents=True, exist_ok=True)
        p.rename(into / f"{description}_{i:03d}.dcm")
    (folder / "tmp_series").rmdir()
    return uid


def _series_uid(ct_dir: Path) -> str:
    return str(pydicom.dcmread(sorted(ct_dir.glob("*.dcm"))[0], stop_before_pixels=True).SeriesInstanceUID)


def _struct_drawn_on(path: Path, series_uid: str) -> None:
    """Give the RT Struct the reference to the CT series its contours were drawn on, as planning systems write
    it (ReferencedFrameOfReferenceSequence > RTReferencedStudySequence > RTReferencedSeriesSequence)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    ds = pydicom.dcmread(path)
    se, st, fr = Dataset(), Dataset(), Dataset()
    se.SeriesInstanceUID = series_uid
    st.ReferencedSOPClassUID, st.ReferencedSOPInstanceUID = "1.2.840.10008.3.1.2.3.1", "1.2.3.4"
    st.RTReferencedSeriesSequence = Sequence([se])
    fr.FrameOfReferenceUID, fr.RTReferencedStudySequence = FOR, Sequence([st])
    ds.ReferencedFrameOfReferenceSequence = Sequence([fr])
    ds.save_as(path)


def test_two_ct_series_mixed_in_one_folder_are_refused_without_a_choice(folder):
    """The slices of a second series (a re-scan) among the plan CT's: never mixed, and not guessed."""
    _second_series(folder, folder / "ct")
    msg = _refused(folder, "2 CT series")
    assert msg.count(str(folder / "ct")) == 2 and "rescan" in msg and "--ct-series" in msg


@pytest.mark.parametrize("how", ["folder", "given --ct"])
def test_ct_series_chooses_one_series_of_a_mixed_folder_and_only_its_slices_are_read(folder, how):
    """--ct-series UID: the chosen series is read from the mixed folder (the re-scan's water at 100 HU, not the
    first series' 0 HU); the other series is named as not read."""
    from mcproton._check.compute import build_geometry

    first = _series_uid(folder / "ct")
    uid = _second_series(folder, folder / "ct")
    kw = {"ct": folder / "ct"} if how == "given --ct" else {}
    inp = _gather(folder, ct_series=uid, **kw)
    assert Path(inp.ct_dir) == folder / "ct" and inp.ct_series == uid
    assert any(f"skipped CT series {first}" in s and "in the same folder, not read" in s for s in inp.pairing)
    ct = build_geometry(inp.ct_dir, "schneider2000", inp.reference, series_uid=inp.ct_series)[2]
    assert ct.series_instance_uid == uid and set(np.unique(ct.hu_zyx)) == {-1000.0, 100.0}
    inp0 = _gather(folder, ct_series=first, **kw)
    ct0 = build_geometry(inp0.ct_dir, "schneider2000", inp0.reference, series_uid=inp0.ct_series)[2]
    assert ct0.series_instance_uid == first and set(np.unique(ct0.hu_zyx)) == {-1000.0, 0.0}


def test_an_unknown_ct_series_is_refused_with_the_series_found(folder):
    msg = _refused(folder, "--ct-series 1.2.3.999: no CT series", ct_series="1.2.3.999")
    assert _series_uid(folder / "ct") in msg


@pytest.mark.parametrize("mixed", [False, True])
def test_of_several_ct_series_the_one_the_structure_set_was_drawn_on_is_read(folder, mixed):
    """A 4-D CT export: phases and the average on one frame (here two series), the structures drawn on the
    average, which the RT Struct names (RTReferencedSeriesSequence): that series is the planning CT."""
    avg = _second_series(folder, folder / "ct" if mixed else folder / "ct_avg", description="AVG")
    _struct_drawn_on(folder / "RS.dcm", avg)
    inp = _gather(folder)
    assert inp.ct_series == avg and Path(inp.ct_dir) == folder / ("ct" if mixed else "ct_avg")
    assert any(f"CT series {avg}" in s and "the structure set RS.dcm was drawn on" in s for s in inp.pairing)
    _struct_drawn_on(folder / "RS.dcm", "1.2.3.4.5.6")   # a series not in the folder: nothing tells them apart
    assert "the structure set names none of them" in _refused(folder, "2 CT series")
    if mixed:
        return
    shutil.rmtree(folder / "ct_avg")   # one CT left, not the one the structures were drawn on: read, and said
    inp = _gather(folder)
    assert inp.ct_series == _series_uid(folder / "ct")
    assert any(s.startswith("note: the structure set RS.dcm was drawn on CT series 1.2.3.4.5.6, not on the CT read")
               for s in inp.pairing)


def _localizer(into: Path) -> str:
    """A scout (topogram): one coronal projection image in a series of its own, ImageType LOCALIZER, on the
    plan's frame, as scanners export it beside the axial series."""
    from mcproton.dicom import write_ct_series

    p = write_ct_series(np.zeros((1, 8, 8)), VS, ORIGIN, into.parent / "tmp_scout", study=STUDY,
                        series_description="Topogram 0.6 T20f")[0]
    ds = pydicom.dcmread(p)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    ds.save_as(into / "scout.dcm")
    shutil.rmtree(into.parent / "tmp_scout")
    return str(ds.SeriesInstanceUID)


def test_a_localizer_beside_the_ct_is_skipped_and_named(folder):
    """Scanners and PACS export the scout with the axial series, often into one folder: before, the check
    refused the folder (two CT series) and the CT reader the series (an oblique image)."""
    from mcproton._check.compute import build_geometry
    from mcproton.dicom import load_ct_series

    scout = _localizer(folder / "ct")
    inp = _gather(folder)
    assert Path(inp.ct_dir) == folder / "ct" and inp.ct_series == _series_uid_not(folder / "ct", scout)
    assert any(f"skipped CT series {scout}" in s and "localizer" in s for s in inp.pairing)
    assert build_geometry(inp.ct_dir, "schneider2000", inp.reference, series_uid=inp.ct_series)[2].shape_zyx == \
        _hu().shape
    with pytest.warns(UserWarning, match="localizer"):   # mcproton run reads the folder alone: skipped, said
        assert load_ct_series(folder / "ct").shape_zyx == _hu().shape


def _series_uid_not(ct_dir: Path, other: str) -> str:
    uids = {str(pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID) for p in ct_dir.glob("*.dcm")}
    (uid,) = uids - {other}
    return uid


def test_a_ct_series_with_a_missing_slice_is_refused_before_the_transport(folder, monkeypatch):
    from mcproton._check import api
    from mcproton._io.errors import DicomInputError

    sorted((folder / "ct").iterdir())[5].unlink()
    monkeypatch.setattr(api, "run_mc", lambda *a, **k: pytest.fail("transport started"))
    with pytest.raises(DicomInputError, match="missing slice"):
        api.check(folder=folder, beam_model="dcpt_v2", out=None, progress=False)


# ---- 5. structure sets
def test_two_structure_sets_of_the_plans_frame_are_refused(folder):
    """An old and a new RT Struct and a plan that references neither: before, the check went on without any
    structures, in silence."""
    _rs(folder / "RS_new.dcm")
    msg = _refused(folder, "2 RT Structs")
    assert "RS.dcm" in msg and "RS_new.dcm" in msg and "--struct" in msg


def test_a_structure_set_of_another_frame_is_skipped_and_named(folder):
    _rs(folder / "RS_other.dcm", frame=OTHER_FOR)
    inp = _gather(folder)
    assert _paired(inp) == CLEAN
    assert any("skipped RT Struct RS_other.dcm" in s and "frame of reference" in s for s in inp.pairing)


def _without_top_level_frame(path: Path) -> Path:
    """The RT Struct as OpenTPS writes it: no top-level FrameOfReferenceUID (the IOD has none), its frame in
    ReferencedFrameOfReferenceSequence and the ROIs' ReferencedFrameOfReferenceUID only."""
    ds = pydicom.dcmread(path)
    frame = ds.StructureSetROISequence[0].ReferencedFrameOfReferenceUID
    del ds.FrameOfReferenceUID
    item = pydicom.Dataset()
    item.FrameOfReferenceUID = frame
    ds.ReferencedFrameOfReferenceSequence = pydicom.Sequence([item])
    ds.save_as(path)
    return path


@pytest.mark.parametrize("top_level", [True, False])
def test_the_only_structure_set_of_another_frame_is_skipped_and_named(folder, top_level):
    """Audit 18 course F3: a QA plan or a re-plan whose folder holds only the patient's set of another frame was
    refused as "inputs on different frames of reference"; the set is skipped, the check goes on without DVHs.  F5:
    the same where the set has no top-level FrameOfReferenceUID."""
    _rs(folder / "RS.dcm", frame=OTHER_FOR)
    if not top_level:
        _without_top_level_frame(folder / "RS.dcm")
    inp = _gather(folder)
    assert inp.struct_path is None and _paired(inp)[:3] == CLEAN[:3]
    assert any(s.startswith("skipped RT Struct RS.dcm: another frame of reference (" + OTHER_FOR) for s in inp.pairing)
    assert any("no DVHs" in s for s in inp.pairing), inp.pairing


def test_structure_sets_without_a_top_level_frame_are_paired_by_their_referenced_frame(folder):
    """Audit 18 course F5: two OpenTPS-like sets, one on the plan's frame: "2 RT Structs and none on the plan's
    frame ... FrameOfReferenceUID )" before, with empty frames; now the one of the plan's frame is paired."""
    _without_top_level_frame(folder / "RS.dcm")
    _without_top_level_frame(_rs(folder / "RS_other.dcm", frame=OTHER_FOR))
    inp = _gather(folder)
    assert _paired(inp) == CLEAN
    assert any(s.startswith(f"skipped RT Struct RS_other.dcm: another frame of reference ({OTHER_FOR})")
               for s in inp.pairing), inp.pairing


def test_a_structure_set_of_unknown_frame_alone_is_kept(folder):
    ds = pydicom.dcmread(folder / "RS.dcm")
    del ds.FrameOfReferenceUID
    for r in ds.StructureSetROISequence:
        del r.ReferencedFrameOfReferenceUID
    if "ReferencedFrameOfReferenceSequence" in ds:
        del ds.ReferencedFrameOfReferenceSequence
    ds.save_as(folder / "RS.dcm")
    assert _paired(_gather(folder)) == CLEAN


def test_a_plan_without_a_frame_is_linked_to_the_ct_by_its_dose_and_the_pairing_says_so(folder):
    """Audit 24 swallow F1: a plan without FrameOfReferenceUID (optional in the RT Ion Plan IOD; stripped by some
    anonymisers) was paired with the CT without a word (and ``mcproton run`` computed it on any CT).  In the check
    the TPS dose links it: a compared dose must refer to the plan and lies, Type 1, in the CT's frame (a dose that
    refers to no plan is refused when read); the pairing notes say which dose linked it."""
    ds = pydicom.dcmread(folder / "RP.dcm")
    del ds.FrameOfReferenceUID
    ds.save_as(folder / "RP.dcm")
    inp = _gather(folder)
    assert _paired(inp) == CLEAN
    assert [s for s in inp.pairing if "gives no FrameOfReferenceUID" in s] == [
        f"note: the plan gives no FrameOfReferenceUID (0020,0052): it is linked to the CT by its RT Dose RD_plan.dcm, "
        f"which refers to the plan (ReferencedRTPlanSequence) and lies in the CT's frame of reference {FOR}"], \
        inp.pairing
    bare = folder / "RD_bare.dcm"   # a dose given by hand that refers to no plan: refused when read
    ds = pydicom.dcmread(_rd(bare, ""))
    del ds.ReferencedRTPlanSequence
    ds.save_as(bare)
    from mcproton._io.errors import DicomInputError

    with pytest.raises(DicomInputError, match="no ReferencedRTPlanSequence"):
        _gather(None, plan=folder / "RP.dcm", dose=bare, ct=folder / "ct")


def test_the_structure_set_the_plan_references_wins(folder):
    _rs(folder / "RS_new.dcm")
    ds = pydicom.dcmread(folder / "RP.dcm")
    ref = pydicom.Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    ref.ReferencedSOPInstanceUID = pydicom.dcmread(folder / "RS_new.dcm").SOPInstanceUID
    ds.ReferencedStructureSetSequence = pydicom.Sequence([ref])
    ds.save_as(folder / "RP.dcm")
    inp = _gather(folder)
    assert Path(inp.struct_path).name == "RS_new.dcm"
    (folder / "RS_new.dcm").unlink()   # the referenced one missing: the other is used, and the pairing says so
    inp = _gather(folder)
    assert Path(inp.struct_path).name == "RS.dcm"
    assert any("not in the folder" in s and "RS.dcm" in s for s in inp.pairing), inp.pairing


# ---- 6. another patient's files
@pytest.mark.parametrize("what", ["structures", "ct"])
def test_files_of_another_patient_paired_by_the_frame_alone_are_refused(folder, what):
    """A structure set or CT of another PatientID that only the frame of reference pairs: before, used in silence."""
    if what == "structures":
        (folder / "RS.dcm").unlink()
        _rs(folder / "RS_T2.dcm", patient_id="T2")
        name = "RS_T2.dcm"
    else:
        for p in (folder / "ct").iterdir():
            ds = pydicom.dcmread(p)
            ds.PatientID = "T2"
            ds.save_as(p)
        name = "ct"
    msg = _refused(folder, "different patients")
    assert "'T1'" in msg and "'T2'" in msg and name in msg


def test_a_dose_linked_by_uid_with_another_patient_id_is_paired_and_noted(folder):
    """A dose that refers to the plan's SOPInstanceUID but carries another PatientID (real exports do: APTG plan03's
    plan and dose differ): paired by the UID, and the pairing notes the two IDs; and a McprotonWarning says it too, so
    that it reaches check.json's warnings, the report's warnings box and the summary (audit 18b, F3b: it was only in
    the Pairing section at the end of the report)."""
    from mcproton._io.errors import McprotonWarning, recording_warnings

    ds = pydicom.dcmread(folder / "RD_beam2.dcm")
    ds.PatientID = "WTR303030"
    ds.save_as(folder / "RD_beam2.dcm")
    with recording_warnings() as said, pytest.warns(McprotonWarning, match="different PatientIDs"):
        inp = _gather(folder)
    assert _paired(inp) == CLEAN
    assert any(s.startswith("note:") and "'WTR303030'" in s and "'T1'" in s for s in inp.pairing), inp.pairing
    assert [w for w in said if "different PatientIDs" in w and "'WTR303030'" in w and "'T1'" in w], said


def _opentps_uid(folder: Path) -> str:
    """Give the folder's plan the SOPInstanceUID OpenTPS writes (its SOP Class UID, not a valid instance UID) and
    write its three doses again with mcproton's RT Dose writer, which references the UID it derives from that one,
    in the plan's study (as mcproton's writer records its CT's, which OpenTPS writes in the plan's study); returns
    the plan's UID."""
    from mcproton._io.errors import McprotonWarning

    ds = pydicom.dcmread(folder / "RP.dcm")
    uid = ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID
    ds.save_as(folder / "RP.dcm")
    with pytest.warns(McprotonWarning, match="references .* instead"):
        _rd(folder / "RD_plan.dcm", uid)
        _rd(folder / "RD_beam1.dcm", uid, "BEAM", 1, scale=0.5)
        _rd(folder / "RD_beam2.dcm", uid, "BEAM", 2, scale=0.5)
    for n in ("RD_plan.dcm", "RD_beam1.dcm", "RD_beam2.dcm"):
        rd = pydicom.dcmread(folder / n)
        rd.StudyInstanceUID = ds.StudyInstanceUID
        rd.save_as(folder / n)
    return str(uid)


@pytest.mark.parametrize("how", ["folder", "--dose"])
def test_doses_mcproton_wrote_for_a_plan_with_an_invalid_uid_are_paired_with_it(folder, how):
    """A plan whose SOPInstanceUID is invalid (OpenTPS writes the SOP Class UID there): an RT Dose mcproton writes for
    it (mcproton run --rtdose, write_rtdose, the check's RD_mc.dcm) references a UID derived from that one.  The check
    pairs such a dose with the plan, in a folder and given with --dose, and says so in the pairing (audit 21 F4: it was
    refused as "another plan's dose", or not found in the folder)."""
    from mcproton._check.inputs import gather
    from mcproton._io.dicom_common import replacement_plan_uid
    from mcproton._io.errors import McprotonWarning

    uid = _opentps_uid(folder)
    derived = replacement_plan_uid(uid)
    assert pydicom.dcmread(folder / "RD_plan.dcm").ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == derived
    doses = ["RD_plan.dcm", "RD_beam1.dcm", "RD_beam2.dcm"]
    with pytest.warns(McprotonWarning, match="not a valid instance UID") as said:
        inp = (_gather(folder) if how == "folder" else
               gather(plan=folder / "RP.dcm", dose=[folder / n for n in doses], ct=folder / "ct",
                      struct=folder / "RS.dcm"))
    assert _paired(inp) == CLEAN
    said = [str(w.message) for w in said]
    assert not [w for w in said if "is another study" in w], said   # the plan's patient, frame and study
    # every dose compared is mcproton's: a warning, which the result puts beside its verdict (audit 21 review)
    assert [w for w in said if w.startswith("every RT Dose compared was written by mcproton (")
            and all(n in w for n in doses)], said
    notes = [s for s in inp.pairing if s.startswith("note: RT Dose") and derived in s and repr(uid) in s]
    assert sorted(n for n in doses for s in notes if f"RT Dose {n} " in s) == sorted(doses), inp.pairing
    assert all("mcproton's own dose" in s for s in notes), notes


def _another_opentps_plans_dose(folder: Path, uid: str, what: str) -> Path:
    """An RT Dose mcproton wrote for ANOTHER OpenTPS plan: the same invalid SOPInstanceUID ``uid`` (OpenTPS writes its
    SOP Class UID for every plan), so the same stand-in UID, but of another patient (``what`` "patient") or on
    another CT (``what`` "frame": another FrameOfReferenceUID), and another dose (0.7 x)."""
    from mcproton._io.errors import McprotonWarning

    with pytest.warns(McprotonWarning, match="references .* instead"):
        p = _rd(folder / "RD_other.dcm", uid, scale=0.7, patient_id="OTHER_PATIENT" if what == "patient" else "T1")
    if what == "frame":
        ds = pydicom.dcmread(p)
        ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.99"
        ds.save_as(p)
    return p


@pytest.mark.parametrize("what", ["patient", "frame"])
def test_a_dose_mcproton_wrote_for_another_opentps_plan_is_refused(folder, what):
    """The stand-in UID is derived from the invalid UID alone, and OpenTPS writes the same invalid UID (481.8) for
    every plan: a dose mcproton wrote for another OpenTPS plan, of another patient or on another CT, references the
    very same stand-in.  It is refused as another plan's dose, naming what differs, in a folder and given with
    --dose (audit 21 review F2: it was paired, with a note that it was "a dose mcproton wrote for this plan")."""
    from mcproton._check.inputs import CheckInputError, gather
    from mcproton._io.dicom_common import replacement_plan_uid
    from mcproton._io.errors import McprotonWarning

    uid = _opentps_uid(folder)
    for p in folder.glob("RD_*.dcm"):
        p.unlink()
    other = _another_opentps_plans_dose(folder, uid, what)
    assert pydicom.dcmread(other).ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == replacement_plan_uid(uid)
    differs = "PatientID 'OTHER_PATIENT' (the plan's 'T1')" if what == "patient" else \
        "FrameOfReferenceUID '1.2.826.0.1.3680043.8.498.99' (the plan's"
    for how in ("folder", "--dose"):
        with pytest.warns(McprotonWarning, match="not a valid instance UID"), \
                pytest.raises(CheckInputError, match="it is the dose of another plan") as exc:
            if how == "folder":
                _gather(folder)
            else:
                gather(plan=folder / "RP.dcm", dose=other, ct=folder / "ct", struct=folder / "RS.dcm")
        msg = str(exc.value)
        assert "RT Dose RD_other.dcm refers to the plan by" in msg and differs in msg, msg
        assert "which OpenTPS writes for every plan" in msg, msg


def test_a_stand_in_dose_of_another_study_is_paired_with_a_warning(folder):
    """The study mcproton's writer records is the CT's, which need not be the plan's: a stand-in dose of the plan's
    patient and frame of reference but another StudyInstanceUID is paired, with a warning naming the study."""
    from mcproton._io.errors import McprotonWarning

    _opentps_uid(folder)
    ds = pydicom.dcmread(folder / "RD_beam2.dcm")
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.98"
    ds.save_as(folder / "RD_beam2.dcm")
    with pytest.warns(McprotonWarning) as said:
        inp = _gather(folder)
    assert _paired(inp) == CLEAN
    other = [str(w.message) for w in said if "is another study" in str(w.message)]
    assert len(other) == 1 and other[0].startswith("RT Dose RD_beam2.dcm ") and "StudyInstanceUID" in other[0], other


def test_beside_the_planning_systems_dose_mcprotons_stand_in_dose_is_skipped(folder):
    """A folder with an OpenTPS plan (invalid UID), the planning system's dose (which references the invalid UID
    itself, as OpenTPS writes it) and a dose mcproton wrote for the plan (mcproton run --rtdose: the stand-in UID):
    the planning system's dose is compared and mcproton's is skipped, said in the pairing; given with --dose,
    mcproton's is used.  The stand-in pairs only where no dose references the plan's own UID (audit 21 review F1:
    the two were refused as "two plan doses"; before the stand-in was paired, mcproton's was skipped)."""
    from mcproton._check.inputs import gather
    from mcproton._io.errors import McprotonWarning

    uid = _opentps_uid(folder)
    for n in ("RD_beam1.dcm", "RD_beam2.dcm"):
        (folder / n).unlink()
    (folder / "RD_plan.dcm").rename(folder / "RD_mcproton_run.dcm")
    with pytest.warns(McprotonWarning, match="references .* instead"):
        tps = _rd(folder / "RD.dcm", uid, scale=1.1)
    ds = pydicom.dcmread(tps)   # as OpenTPS writes its dose: it references the plan's invalid UID, Manufacturer its own
    ds.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID = uid
    ds.Manufacturer, ds.ManufacturerModelName = "OpenMCsquare", "OpenTPS"
    ds.save_as(tps)
    with pytest.warns(McprotonWarning, match="not a valid instance UID") as said:
        inp = _gather(folder)
    assert inp.total is not None and Path(inp.total.path).name == "RD.dcm", inp.pairing
    skipped = [s for s in inp.pairing if s.startswith("skipped RT Dose RD_mcproton_run.dcm: ")]
    assert len(skipped) == 1 and "a dose mcproton wrote, while RD.dcm refer(s) to the plan itself" in skipped[0], \
        inp.pairing
    assert not [w for w in said if "written by mcproton" in str(w.message)]   # the planning system's dose compared
    with pytest.warns(McprotonWarning, match="every RT Dose compared was written by mcproton"):
        inp = gather(plan=folder / "RP.dcm", dose=folder / "RD_mcproton_run.dcm", ct=folder / "ct",
                     struct=folder / "RS.dcm")
    assert Path(inp.total.path).name == "RD_mcproton_run.dcm"


# ---- 7. DICOMDIR, hidden, empty, non-DICOM, damaged, unreadable files; sub-folders
def test_sub_folders_dicomdir_hidden_empty_and_other_files(folder):
    for sub, pattern in (("RTPLAN", "RP*"), ("RTDOSE", "RD*"), ("RTSTRUCT", "RS*")):
        (folder / sub).mkdir()
        for p in list(folder.glob(pattern)):
            p.rename(folder / sub / p.name)
    (folder / "ct").rename(folder / "CT")
    write_dicomdir(folder / "DICOMDIR")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1" + b"\0" * 200)
    (folder / "CT" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1" + b"\0" * 200)
    (folder / "RTDOSE" / "empty.dcm").write_bytes(b"")
    (folder / "README").write_text("exported by hand\n")
    (folder / "notes.txt").write_text("not DICOM\n")
    inp = _gather(folder)
    assert _paired(inp) == CLEAN and Path(inp.ct_dir) == folder / "CT"
    skipped = [s for s in inp.pairing if s.startswith("skipped") and "not DICOM" in s]
    assert len(skipped) == 1 and "empty.dcm" in skipped[0] and "0 bytes" in skipped[0], inp.pairing


def _linked_ct(folder: Path, store: Path) -> list[Path]:
    """The patient's CT slices moved to ``store`` and linked into its ct/ (``cp -s``); the slices in z order."""
    shutil.move(folder / "ct", store)
    (folder / "ct").mkdir()
    slices = sorted(store.iterdir(), key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2]))
    for p in slices:
        (folder / "ct" / p.name).symlink_to(p)
    return slices


def test_links_to_ct_slices_or_a_dose_that_are_gone_are_refused_naming_them(folder, tmp_path):
    """CT slices linked from a store whose end slices' targets are gone (moved, unmounted): before, the check read
    the CT without them ("107 slices of 81 x 99" for 109) and said nothing, as it would of a linked plan dose (locale
    audit 2026-12-07, F1).  Now such links named like DICOM are refused, naming them."""
    import os

    slices = _linked_ct(folder, tmp_path / "store")
    assert _paired(_gather(folder)) == CLEAN
    for p in (slices[0], slices[-1]):   # the lowest and the highest slice
        p.rename(p.with_name(p.name + ".moved"))
    msg = _refused(folder, "named like DICOM files are symbolic links to files that do not exist")
    assert msg.startswith(f"2 file(s) in the patient folder {folder} named like DICOM"), msg
    assert f"ct/{slices[0].name} -> {slices[0]}" in msg and f"ct/{slices[-1].name}" in msg, msg
    assert "a shorter CT" in msg and "remove the links if they are not needed" in msg, msg
    for p in (slices[0], slices[-1]):
        p.with_name(p.name + ".moved").rename(p)
    os.symlink(tmp_path / "gone" / "RD_plan.dcm", folder / "RD_old.dcm")   # a linked dose whose target is gone
    assert "RD_old.dcm -> " in _refused(folder, "named like DICOM files are symbolic links")


def test_a_link_of_another_name_whose_target_is_gone_is_named_in_the_pairing(folder, tmp_path):
    store = tmp_path / "store"
    _linked_ct(folder, store)
    (folder / "notes.txt").symlink_to(store / "notes.txt")   # a target that never existed: named, not refused
    inp = _gather(folder)
    assert _paired(inp) == CLEAN and Path(inp.ct_dir) == folder / "ct"
    assert f"skipped 1 symbolic link(s) to files that do not exist: notes.txt -> {store / 'notes.txt'}" \
        in inp.pairing, inp.pairing


def test_a_damaged_dicom_file_is_refused(folder):
    """A DICOM file cut inside its header (a copy that broke off): before, skipped in silence (if it was the plan
    dose, the check went on with the per-beam doses only)."""
    (folder / "RD_cut.dcm").write_bytes((folder / "RD_plan.dcm").read_bytes()[:300])
    msg = _refused(folder, "damaged")
    assert "RD_cut.dcm" in msg and "remove it" in msg


def test_an_unreadable_file_is_refused(folder, monkeypatch):
    """A file the user may not read (permissions; as root the test cannot chmod it away, so the read fails by
    monkeypatch): before, skipped in silence."""
    from mcproton._check import inputs

    real = inputs.read_dicom_file

    def read(path, **kw):
        if Path(path).name == "RD_plan.dcm":
            raise inputs.DicomInputError(f"{path}: cannot be read ([Errno 13] Permission denied)")
        return real(path, **kw)

    monkeypatch.setattr(inputs, "read_dicom_file", read)
    msg = _refused(folder, "cannot be read")
    assert "RD_plan.dcm" in msg and "Permission denied" in msg


def test_the_ct_series_a_real_rt_struct_was_drawn_on_is_read_from_it():
    """RayStation's plan03 RT Struct (APTG/2022_DCPT_LET, tests/data/dicom/aptg_check) names the CT series its
    contours were drawn on the way the pairing reads it; the Eclipse head-phantom RS (nbassler/dicomexport, not
    in tests/data) was checked by hand on 2026-12-05: it names its Siemens CT's SeriesInstanceUID."""
    from mcproton._check.inputs import struct_ct_series

    rs = pydicom.dcmread(Path(__file__).resolve().parents[1] / "data" / "dicom" / "aptg_check" / "RS_plan03.dcm")
    assert struct_ct_series(rs) == ("1.2.826.0.1.3680043.8.176.20111122133550298.10.5406771221",)
    del rs.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence   # Type 3: absent is allowed
    assert struct_ct_series(rs) == ()


def test_a_folder_with_only_a_localizer_says_so(folder):
    """The axial CT left out of an export, its scout kept: the check named '0 CT series ... ()' and the CT reader
    told the user to choose the localizer by its UID; both now say that only a localizer is there."""
    from mcproton._io.errors import DicomInputError
    from mcproton.dicom import load_ct_series

    scout = _localizer(folder / "ct")
    for p in (folder / "ct").glob("*.dcm"):
        if p.name != "scout.dcm":
            p.unlink()
    msg = _refused(folder, "is a localizer")
    assert scout in msg and "()" not in msg
    with pytest.raises(DicomInputError, match="only localizer series") as exc:
        load_ct_series(folder / "ct")
    assert "choose one" not in str(exc.value)


def test_a_gzipped_dose_is_named_as_compressed(folder):
    """RD.dcm.gz in the folder was skipped without a word ("no RT Dose of the planning system ..."); given as --dose it
    was "not a DICOM file (... 'DICM' prefix is missing ...)".  Both now say it is gzip-compressed and to decompress
    it; a gzip file with a DICOM name in the folder is refused (it may be the plan's dose)."""
    import gzip

    from mcproton._io.errors import DicomInputError

    for p in folder.glob("RD_*.dcm"):
        (folder / (p.name + ".gz")).write_bytes(gzip.compress(p.read_bytes()))
        p.unlink()
    msg = _refused(folder, "no RT Dose of the planning system")
    note = "(gzip-compressed: decompress it, e.g. with gunzip, to check it)"
    assert msg.endswith(f"; skipped as compressed: RD_beam1.dcm.gz {note}, RD_beam2.dcm.gz {note}, RD_plan.dcm.gz "
                        f"{note}"), msg
    with pytest.raises(DicomInputError, match=r"RD_plan.dcm.gz: the file is gzip-compressed \(it starts with the gzip "
                                              r"signature 1f 8b\), not a DICOM file as it is: decompress it first "
                                              r"\(e.g. gunzip -c RD_plan.dcm.gz > RD_plan.dcm\)"):
        _gather(folder, dose=folder / "RD_plan.dcm.gz")
    (folder / "RD_plan.dcm.gz").rename(folder / "RD_plan.dcm")   # compressed under a DICOM name
    _refused(folder, r"RD_plan.dcm: the file is gzip-compressed .*it may be the plan's dose")


def test_a_copy_of_the_plan_is_counted_once_and_objects_not_read_are_named(folder):
    """A byte-identical copy of the RT Plan (the same SOPInstanceUID, another name) is counted once, as copies of
    an RT Dose are (before: refused as two plans); an RT Ion Beams Treatment Record and a Spatial Registration in
    the folder are named as not used (before: not a word; a helper's audit)."""
    from mcproton._io.dicom_common import new_file_dataset

    shutil.copy(folder / "RP.dcm", folder / "RP_copy.dcm")
    for name, sop, mod in (("RT_record.dcm", "1.2.840.10008.5.1.4.1.1.481.9", "RTRECORD"),
                           ("REG.dcm", "1.2.840.10008.5.1.4.1.1.66.1", "REG")):
        ds, _ = new_file_dataset(folder / name, sop)
        ds.Modality = mod
        ds.save_as(folder / name, enforce_file_format=True)
    inp = _gather(folder)
    assert Path(inp.plan_path).name == "RP.dcm"
    notes = "\n".join(inp.pairing)
    assert "skipped RT Plan RP_copy.dcm: a copy of RP.dcm (the same SOPInstanceUID" in notes, notes
    assert "not used: 1 RT Ion Beams Treatment Record (RT_record.dcm)" in notes, notes
    assert "not used: 1 Spatial Registration (REG.dcm)" in notes, notes
    ds = pydicom.dcmread(folder / "RP_copy.dcm")   # an edited copy under the same SOPInstanceUID: still refused,
    ds.RTPlanLabel, ds.ApprovalStatus = "edited", "APPROVED"   # saying so (audit 18 course F7: "2 RT Plans" before)
    ds.save_as(folder / "RP_copy.dcm")
    msg = _refused(folder, "RT Plans RP.dcm and RP_copy.dcm carry the same SOPInstanceUID")
    assert "differ (in RTPlanLabel, ApprovalStatus)" in msg and "--plan" in msg, msg


def set_up_beam(ds, number: int = 9):
    """An Eclipse kV set-up field numbered ``number`` made from ``ds``'s first beam (TreatmentDeliveryType SETUP,
    ScanMode NONE, no spots; not added to the fraction group): append it to ``ds.IonBeamSequence``."""
    import copy

    b = copy.deepcopy(ds.IonBeamSequence[0])
    b.BeamNumber, b.BeamName, b.TreatmentDeliveryType, b.ScanMode = number, "SETUP kV", "SETUP", "NONE"
    cp0 = b.IonControlPointSequence[0]
    for k in ("ScanSpotMetersetWeights", "ScanSpotPositionMap", "NumberOfScanSpotPositions"):
        delattr(cp0, k)
    b.IonControlPointSequence, b.NumberOfControlPoints = [cp0], 1
    return b


def test_a_set_up_beam_in_the_plan_leaves_the_beam_doses_paired(folder):
    """An Eclipse kV set-up field (TreatmentDeliveryType SETUP, ScanMode NONE, no spots, not in the fraction group)
    refused the whole check as "passive scattering" (audit of 2026-12-05, F3); now it is left out with a note, and the
    TPS's per-beam doses still pair with the treatment beams by number."""
    ds = pydicom.dcmread(folder / "RP.dcm")
    ds.IonBeamSequence.append(set_up_beam(ds))
    ds.save_as(folder / "RP.dcm")
    inp = _gather(folder)
    assert _paired(inp) == CLEAN and [x.number for x in inp.plan.beams] == [1, 2]
    # a note in the pairing log (check.json), not a warning: a spotless kV set-up field is routine (N3)
    assert any("beam 9 'SETUP kV' is a set-up beam" in ln and "not computed" in ln for ln in inp.pairing), inp.pairing


def test_a_plan_with_an_mlc_is_refused_unless_the_check_is_told_to_ignore_it(folder):
    """A plan whose control point places an MLC was refused by the check with no way round it, while `mcproton run`
    had plan.ignore_beam_limiting_devices (verification audit of 2026-12-05, N2): --ignore-beam-limiting-devices
    (ignore_beam_limiting_devices=True) computes it as open, with a warning."""
    from pydicom.dataset import Dataset

    from mcproton._io.errors import McprotonWarning

    ds = pydicom.dcmread(folder / "RP.dcm")
    d, pos = Dataset(), Dataset()
    d.RTBeamLimitingDeviceType, d.NumberOfLeafJawPairs = "X", 1
    pos.RTBeamLimitingDeviceType, pos.LeafJawPositions = "X", [-200.0, 200.0]
    ds.IonBeamSequence[0].IonBeamLimitingDeviceSequence = [d]
    ds.IonBeamSequence[0].IonControlPointSequence[0].BeamLimitingDevicePositionSequence = [pos]
    ds.save_as(folder / "RP.dcm")
    with pytest.raises(ValueError, match="--ignore-beam-limiting-devices"):
        _gather(folder)
    with pytest.warns(McprotonWarning, match="is ignored .*the dose is computed as if the device were fully open"):
        inp = _gather(folder, ignore_beam_limiting_devices=True)
    assert _paired(inp) == CLEAN


def test_check_cli_passes_ignore_beam_limiting_devices(monkeypatch, tmp_path):
    """The CLI flag reaches mcproton.check (and so the record's settings)."""
    import mcproton._check.api as api
    from mcproton.cli import main

    seen = {}

    def fake_check(*a, **kw):
        seen.update(kw)
        raise ValueError("stop here")

    monkeypatch.setattr(api, "check", fake_check)
    main(["check", str(tmp_path), "--beam-model", "dcpt_v5", "--out", str(tmp_path / "o"),
          "--ignore-beam-limiting-devices"])
    assert seen["ignore_beam_limiting_devices"] is True
