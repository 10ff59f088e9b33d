"""The patient's identity from the CT into `mcproton run`'s RT Dose and HDF5 study (identity audit 24, F3).

F3: the CT's PatientBirthDate and PatientSex were not read (CTImage had no fields for them), so every RT Dose of
`mcproton run` and its HDF5 ``study`` had them empty, although the Patient module is copied so that the dose files
under the CT's patient.

Cost: a 16 x 16 x 16 CT of 5 mm voxels, one beam, 1000 primaries per run (about a second each)."""
from __future__ import annotations

import json

import numpy as np
import pydicom

from dicom_factories import make_plan, save

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
    rc, err, _ = run(tmp_path, capsys)
    assert rc == 0, err
    for name in ("RD.dcm", "RD_beam1.dcm"):
        ds = pydicom.dcmread(tmp_path / name)
        assert (ds.PatientBirthDate, ds.PatientSex) == ("20190304", "F"), name   # before: both empty
        assert (str(ds.PatientName), ds.PatientID) == ("Child^Test", "PAED-042")
    study = DoseResult.load(tmp_path / "o.h5").geometry.study
    assert (study.patient_birth_date, study.patient_sex) == ("20190304", "F")
