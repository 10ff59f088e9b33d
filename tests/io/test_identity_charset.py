"""The patient's identity from the CT into `mcproton run`'s RT Dose and HDF5 study, and inputs that declare no
character set (identity audit 24, F3 and F4).

F3: the CT's PatientBirthDate and PatientSex were not read (CTImage had no fields for them), so every RT Dose of
`mcproton run` and its HDF5 ``study`` had them empty, although the Patient module is copied so that the dose files
under the CT's patient.

F4: an input without SpecificCharacterSet (0008,0005) whose PatientName holds bytes above 0x7F was read by pydicom
as Latin-1: a UTF-8 name became mojibake, written with an explicit ISO_IR 100 into the RT Dose, without a word.  Now
every reader of identity decodes such text as UTF-8 where it is valid UTF-8, else as Latin-1, and warns naming the
file, the attribute and what was assumed; the outputs declare the character set of what they hold.

Cost: a 16 x 16 x 16 CT of 5 mm voxels, one beam, 1000 primaries per run (about a second each)."""
from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest

from dicom_factories import make_plan, make_rtstruct, rect_contour, save

FRAME = "1.2.826.0.1.3680043.8.498.77"
GREEK = "Παπαδόπουλος^Ελένη"
LATIN = "Müller^Zoë"


def undeclare(path, **raw: bytes) -> None:
    """Rewrite the DICOM file ``path`` without SpecificCharacterSet, with the text elements ``raw`` (keyword: the
    bytes as an exporting system that declares no character set writes them).  pydicom re-encodes the other
    top-level text in its default (Latin-1: non-Latin-1 text would become '?'); the items' raw bytes are kept."""
    from pydicom.datadict import dictionary_VR, tag_for_keyword
    from pydicom.dataelem import DataElement

    ds = pydicom.dcmread(path)
    if "SpecificCharacterSet" in ds:
        del ds.SpecificCharacterSet
    for keyword, value in raw.items():
        tag = tag_for_keyword(keyword)
        ds[tag] = DataElement(tag, dictionary_VR(tag), value)
    ds.save_as(path, enforce_file_format=True)   # pydicom's own writer: nothing added


def case(tmp_path, name_bytes: bytes | None = None):
    """A CT (Child^Test, born 2019-03-04, F) and a plan of one beam; with ``name_bytes`` both declare no character
    set and carry that PatientName."""
    from mcproton.dicom import StudyReference, write_ct_series

    write_ct_series(np.zeros((16, 16, 16)), (5.0, 5.0, 5.0), (-37.5, -37.5, -37.5), tmp_path / "ct",
                    study=StudyReference(frame_of_reference_uid=FRAME, patient_name="Child^Test",
                                         patient_id="PAED-042", patient_birth_date="20190304", patient_sex="F",
                                         patient_position="HFS", study_instance_uid="1.2.826.0.1.3680043.8.498.78"))
    plan = make_plan([{"gantry": 90.0, "couch": 0.0, "iso": (0.0, 0.0, 0.0),
                       "layers": [(70.0, [(0.0, 0.0)], [1.0])], "meterset": 5.0}], frame_of_reference_uid=FRAME)
    plan.PatientID = "PAED-042"
    save(plan, tmp_path / "RP.dcm")
    if name_bytes is not None:
        for f in [*sorted((tmp_path / "ct").glob("*.dcm")), tmp_path / "RP.dcm"]:
            undeclare(f, PatientName=name_bytes)
    (tmp_path / "run.toml").write_text('[run]\nprimaries = 1000\nbackend = "cpu"\nthreads = 1\n\n[phantom]\n'
                                       'type = "ct"\nct_dir = "ct"\n\n[plan]\nrtplan = "RP.dcm"\n'
                                       'beam_model = "dcpt_v2"\n\n[output]\nplot = false\nrtdose_per_beam = true\n')
    return tmp_path / "run.toml"


def run(tmp_path, capsys):
    """`mcproton run` of the case: (exit status, stderr, the summary JSON)."""
    from mcproton.cli import main

    rc = main(["run", str(tmp_path / "run.toml"), "--out", str(tmp_path / "o.h5"), "--rtdose",
               str(tmp_path / "RD.dcm"), "--quiet"])
    out = capsys.readouterr()
    return rc, out.err, (json.loads(out.out) if out.out.strip() else {})


def test_the_rtdose_and_the_hdf5_study_keep_the_cts_birth_date_and_sex(tmp_path, capsys):
    from mcproton import DoseResult
    from mcproton.dicom import load_ct_series

    case(tmp_path)
    ct = load_ct_series(tmp_path / "ct")
    assert (ct.patient_birth_date, ct.patient_sex) == ("20190304", "F")
    rc, err, summary = run(tmp_path, capsys)
    assert rc == 0, err
    for name in ("RD.dcm", "RD_beam1.dcm"):
        ds = pydicom.dcmread(tmp_path / name)
        assert (ds.PatientBirthDate, ds.PatientSex) == ("20190304", "F"), name   # before: both empty
        assert (str(ds.PatientName), ds.PatientID) == ("Child^Test", "PAED-042")
    study = DoseResult.load(tmp_path / "o.h5").geometry.study
    assert (study.patient_birth_date, study.patient_sex) == ("20190304", "F")
    assert not [w for w in summary["warnings"] if "SpecificCharacterSet" in w]   # declared: nothing to say


def test_an_undeclared_utf8_name_is_read_as_utf8_and_said(tmp_path, capsys):
    """The audit's nocs_utf8: the RT Doses read back the Greek name with ISO_IR 192 (before: 'Î Î±Ï...' with
    ISO_IR 100), the HDF5 study holds it, and the run's warnings name the files, PatientName and UTF-8."""
    from mcproton import DoseResult

    case(tmp_path, GREEK.encode("utf-8"))
    rc, err, summary = run(tmp_path, capsys)
    assert rc == 0, err
    for name in ("RD.dcm", "RD_beam1.dcm"):
        ds = pydicom.dcmread(tmp_path / name)
        assert ds.SpecificCharacterSet == "ISO_IR 192" and str(ds.PatientName) == GREEK, name
    assert DoseResult.load(tmp_path / "o.h5").geometry.study.patient_name == GREEK
    said = [w for w in summary["warnings"] if "no SpecificCharacterSet (0008,0005)" in w]
    assert len(said) == 2, summary["warnings"]      # the CT (once for its 16 slices) and the plan
    ct_said, = [w for w in said if "CT slices" in w]
    plan_said, = [w for w in said if "RP.dcm" in w]
    for w in (ct_said, plan_said):
        assert "PatientName (0010,0010)" in w and "read as UTF-8 (ISO_IR 192)" in w, w
    assert str(tmp_path / "ct") in ct_said and "16 of the 16 CT slices" in ct_said


def test_an_undeclared_latin1_name_is_read_as_latin1_and_said(tmp_path, capsys):
    """The audit's nocs_latin1: bytes that are not valid UTF-8 are read as Latin-1, as before (the name reads back
    right), but now it is said that Latin-1 was assumed."""
    case(tmp_path, LATIN.encode("latin-1"))
    rc, err, summary = run(tmp_path, capsys)
    assert rc == 0, err
    ds = pydicom.dcmread(tmp_path / "RD.dcm")
    assert ds.SpecificCharacterSet == "ISO_IR 100" and str(ds.PatientName) == LATIN
    said = [w for w in summary["warnings"] if "no SpecificCharacterSet (0008,0005)" in w]
    assert len(said) == 2 and all("read as Latin-1 (ISO_IR 100), as those bytes are not valid UTF-8" in w
                                  for w in said), said


@pytest.mark.parametrize("reader", ["plan", "struct"])
def test_the_plan_and_struct_readers_read_an_undeclared_name_alike(tmp_path, reader):
    """The one rule (dicom_common.assume_input_charset) in the RT Plan and RT Struct readers: the warning names the
    file and the attribute, and a ROI name in the structure set's sequences is decoded with the same guess."""
    from mcproton._io.errors import recording_warnings
    from mcproton.dicom import load_rtplan
    from mcproton._io.rtstruct import read_rtstruct

    if reader == "plan":
        plan = make_plan([{"gantry": 90.0, "couch": 0.0, "iso": (0.0, 0.0, 0.0),
                           "layers": [(70.0, [(0.0, 0.0)], [1.0])], "meterset": 5.0}], frame_of_reference_uid=FRAME)
        path = save(plan, tmp_path / "RP.dcm")
        undeclare(path, PatientName=GREEK.encode("utf-8"))
        with recording_warnings() as said:
            assert load_rtplan(path).patient_name == GREEK
    else:
        rs = make_rtstruct({"Όγκος": [rect_contour(-10, 10, -10, 10, 0.0)]})   # a Greek ROI name
        rs.PatientName = GREEK
        path = save(rs, tmp_path / "RS.dcm")      # written in UTF-8 (ISO_IR 192)
        undeclare(path, PatientName=GREEK.encode("utf-8"))   # the same bytes, now undeclared
        with recording_warnings() as said:
            assert "Όγκος" in read_rtstruct(path).contours
    assert len(said) == 1 and said[0].startswith(f"{path}: no SpecificCharacterSet (0008,0005), but PatientName "
                                                 "(0010,0010)"), said
    assert "read as UTF-8 (ISO_IR 192)" in said[0] and ("ROIName (3006,0026)" in said[0]) == (reader == "struct")


def test_the_real_dicom_files_need_no_assumed_character_set(tmp_path):
    """The third-party files under tests/data/dicom (the OpenTPS case's tar and the gzip-compressed RayStation dose
    unpacked) declare their character set or hold ASCII text only: the rule above gives them no new warning."""
    import gzip
    import tarfile
    from pathlib import Path

    from mcproton._io.dicom_common import assume_input_charset, read_dicom_file

    data = Path(__file__).resolve().parents[1] / "data" / "dicom"
    for gz in data.rglob("*.dcm.gz"):
        (tmp_path / gz.name[:-3]).write_bytes(gzip.decompress(gz.read_bytes()))
    for tar in data.rglob("*.tar.gz"):
        with tarfile.open(tar) as t:
            t.extractall(tmp_path / tar.name[:-7], filter="data")
    files = sorted(data.rglob("*.dcm")) + sorted(tmp_path.rglob("*.dcm"))
    assert len(files) >= 100
    for f in files:
        assert assume_input_charset(read_dicom_file(f, stop_before_pixels=True), f, say=False) == "", f


# ---- review of 2026-12-07: R2 (no contour parsed for the character set), R3 (each value by its own bytes), R4 (one
# warning per file, told apart by its resolved path), R6 (the CT's patient from the slices that give it)

def test_a_partial_and_a_full_read_spell_a_name_alike(tmp_path):
    """R3: a plan without SpecificCharacterSet whose PatientName is UTF-8 and whose RTPlanDescription is Latin-1.
    Before, the character set was decided once for what was read: the report header's read of some tags
    (record.identification) gave the Greek name, the full reads (the plan reader, the pairing's header, RD_mc.dcm's
    read_header) Latin-1 mojibake.  Now every reader gives each value by its own bytes, and the one warning says
    both assumptions."""
    from pathlib import Path

    from mcproton._check.inputs import _dcm_header
    from mcproton._check.record import identification
    from mcproton._io.dicom_common import read_dicom_file
    from mcproton._io.errors import recording_warnings
    from mcproton._io.patients import read_header, read_identity
    from mcproton.dicom import load_rtplan

    plan = make_plan([{"gantry": 90.0, "couch": 0.0, "iso": (0.0, 0.0, 0.0),
                       "layers": [(70.0, [(0.0, 0.0)], [1.0])], "meterset": 5.0}], frame_of_reference_uid=FRAME)
    path = save(plan, tmp_path / "RP_mixed.dcm")
    undeclare(path, PatientName=GREEK.encode("utf-8"), RTPlanDescription="Boost für Zoë".encode("latin-1"))
    with recording_warnings() as said:   # the plan reader first, as in a check and a run: it says it
        names = {"load_rtplan": load_rtplan(path).patient_name, "identification": identification(path)["PatientName"],
                 "read_identity": read_identity(path).name, "pairing": str(_dcm_header(Path(path)).PatientName),
                 "read_dicom_file": str(read_dicom_file(path, stop_before_pixels=True).PatientName),
                 "read_header": str(read_header(path).PatientName)}
    assert set(names.values()) == {GREEK}, names
    assert str(_dcm_header(Path(path)).RTPlanDescription) == "Boost für Zoë"
    assert len(said) == 1, said
    assert "PatientName (0010,0010) holds bytes above 0x7F: read as UTF-8 (ISO_IR 192)" in said[0], said
    assert "RTPlanDescription (300A,0004) holds bytes above 0x7F: read as Latin-1 (ISO_IR 100)" in said[0], said


def test_each_file_without_character_set_is_said_once_by_its_path(tmp_path):
    """R4: two series folders of a media export, each with an IM000001, one UTF-8 and one Latin-1, and S.dcm beside
    RS.dcm: four files, four warnings.  Before, a file was known by its name as a substring of the warnings: the
    second IM000001 and S.dcm ("S.dcm: no ..." in "RS.dcm: no ...") were never said, nor their Latin-1 assumption."""
    from mcproton._io.dicom_common import assume_input_charset, read_dicom_file
    from mcproton._io.errors import recording_warnings

    plan = make_plan([{"gantry": 90.0, "couch": 0.0, "iso": (0.0, 0.0, 0.0),
                       "layers": [(70.0, [(0.0, 0.0)], [1.0])], "meterset": 5.0}], frame_of_reference_uid=FRAME)
    files = {}
    for sub, name, raw in (("a", "IM000001", GREEK.encode("utf-8")), ("b", "IM000001", LATIN.encode("latin-1")),
                           ("a", "RS.dcm", GREEK.encode("utf-8")), ("b", "S.dcm", LATIN.encode("latin-1"))):
        (tmp_path / sub).mkdir(exist_ok=True)
        path = save(plan, tmp_path / sub / name)
        undeclare(path, PatientName=raw)
        files[path] = "UTF-8" if raw == GREEK.encode("utf-8") else "Latin-1"
    with recording_warnings() as said:
        for path in files:
            assume_input_charset(read_dicom_file(path, stop_before_pixels=True), path)
        for path in files:   # a second reader of the same files says nothing more
            assume_input_charset(read_dicom_file(path, stop_before_pixels=True), path)
    assert len(said) == 4, said
    for (path, how), w in zip(files.items(), said):
        assert w.startswith(f"{path.resolve()}: no SpecificCharacterSet (0008,0005)") and f"read as {how}" in w, w


def test_the_contours_are_not_parsed_for_the_character_set(tmp_path):
    """R2: an RT Struct without SpecificCharacterSet: the walk for text bytes leaves its ContourSequence items
    unparsed (they hold no text); before, every contour of the file was parsed (4.4 s for a 20 MB structure set, at
    each of the check's header reads)."""
    from pydicom.dataelem import RawDataElement

    from mcproton._io.dicom_common import assume_input_charset

    rs = make_rtstruct({"Όγκος": [rect_contour(-10, 10, -10, 10, z) for z in (0.0, 2.0, 4.0)],
                        "body": [rect_contour(-50, 50, -50, 50, z) for z in (0.0, 2.0, 4.0)]})
    path = save(rs, tmp_path / "RS.dcm")
    undeclare(path, PatientName=GREEK.encode("utf-8"))
    ds = pydicom.dcmread(path)
    assert "PatientName (0010,0010), ROIName (3006,0026)" in assume_input_charset(ds, path, say=False)
    assert [r.ROIName for r in ds.StructureSetROISequence] == ["Όγκος", "body"]   # the text is decoded
    items = list(ds.ROIContourSequence)
    assert items and all(isinstance(item._dict[0x30060040], RawDataElement) for item in items)


def test_the_cts_birth_date_and_sex_come_from_the_slices_that_give_them(tmp_path):
    """R6: the first slice of the series has a blank PatientBirthDate and PatientSex (the others 20190304, F): the
    CT's, and so the RT Dose's, are 20190304 and F, as the check merges them (a blank is not a value).  Before, the
    first slice's blanks were taken."""
    from mcproton.dicom import load_ct_series

    case(tmp_path)
    first = sorted((tmp_path / "ct").glob("*.dcm"),
                   key=lambda f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]))[0]
    ds = pydicom.dcmread(first)
    ds.PatientBirthDate, ds.PatientSex = "", ""
    ds.save_as(first, enforce_file_format=True)
    ct = load_ct_series(tmp_path / "ct")
    assert (ct.patient_birth_date, ct.patient_sex) == ("20190304", "F")
