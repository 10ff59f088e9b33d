"""What a DICOM object is, by its SOP class before its Modality (``dicom_common.dicom_kind``), and the folder scans
that use it: OpenTPS 2.0 writes its RT Structure Set with Modality RTDOSE and its RT Ion Plan with Modality
"RT Ion Plan IOD" (tests/data/dicom/opentps_head holds such files)."""
from __future__ import annotations

import pydicom
import pytest
from pydicom.dataset import Dataset

from mcproton._io.dicom_common import dicom_kind

pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR CS")   # pydicom on "RT Ion Plan IOD"

CT, DOSE, STRUCT, ION_PLAN, PLAN = ("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.481.2",
                                    "1.2.840.10008.5.1.4.1.1.481.3", "1.2.840.10008.5.1.4.1.1.481.8",
                                    "1.2.840.10008.5.1.4.1.1.481.5")


def _ds(sop: str | None, modality: str | None) -> Dataset:
    ds = Dataset()
    if sop is not None:
        ds.SOPClassUID = sop
    if modality is not None:
        ds.Modality = modality
    return ds


@pytest.mark.parametrize("sop, modality, kind", [
    (CT, "CT", "CT"), (DOSE, "RTDOSE", "RTDOSE"), (STRUCT, "RTSTRUCT", "RTSTRUCT"), (ION_PLAN, "RTPLAN", "RTPLAN"),
    (PLAN, "RTPLAN", "RTPLAN"),
    (None, "RTPLAN", "RTPLAN"), (None, "CT", "CT"), (None, None, ""),          # no SOP class: the Modality
    ("1.2.840.10008.5.1.4.1.1.4", "MR", "MR"),                                  # another class: its Modality
])
def test_kind_agreeing(sop, modality, kind):
    assert dicom_kind(_ds(sop, modality)) == (kind, "")


@pytest.mark.parametrize("sop, modality, kind, says", [
    (STRUCT, "RTDOSE", "RTSTRUCT", "Modality 'RTDOSE' but SOP class RT Structure Set Storage: read as RT Structure "
                                   "Set"),                                         # OpenTPS 2.0's RT Struct
    (ION_PLAN, "RT Ion Plan IOD", "RTPLAN", "Modality 'RT Ion Plan IOD' but SOP class RT Ion Plan Storage"),
    (DOSE, "CT", "RTDOSE", "Modality 'CT' but SOP class RT Dose Storage"),
    (CT, None, "CT", "no Modality but SOP class CT Image Storage"),
])
def test_kind_by_sop_class_when_modality_disagrees(sop, modality, kind, says):
    got, note = dicom_kind(_ds(sop, modality))
    assert got == kind and says in note


def _write(path, sop, modality, **extra):
    ds = pydicom.Dataset()
    ds.SOPClassUID, ds.Modality = sop, modality
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.FrameOfReferenceUID = "1.2.3.4"
    for k, v in extra.items():
        setattr(ds, k, v)
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)


def test_check_folder_scan_sorts_by_sop_class_and_notes_it(tmp_path):
    from mcproton._check.inputs import _scan

    _write(tmp_path / "RS.dcm", STRUCT, "RTDOSE")
    _write(tmp_path / "RP.dcm", ION_PLAN, "RT Ion Plan IOD")
    _write(tmp_path / "RD.dcm", DOSE, "RTDOSE")
    notes: list[str] = []
    found, headers, _ = _scan(tmp_path, notes=notes)
    assert [p.name for p in found["RTSTRUCT"]] == ["RS.dcm"]
    assert [p.name for p in found["RTPLAN"]] == ["RP.dcm"]
    assert [p.name for p in found["RTDOSE"]] == ["RD.dcm"]          # the structure set is not a second dose
    assert len(notes) == 2 and any(n.startswith("RS.dcm: Modality 'RTDOSE'") for n in notes)
    assert all("the SOP class says what a file holds" in n for n in notes)


def test_batch_survey_counts_by_sop_class(tmp_path):
    from mcproton._check.batch import _add, _Contents, _header

    p = tmp_path / "RP.dcm"
    _write(p, ION_PLAN, "RT Ion Plan IOD")
    c = _Contents()
    _add(c, p, _header(p))
    assert c.modalities == {"RTPLAN": 1} and list(c.plans.values()) == [p]


def test_ct_reader_skips_a_dose_labelled_ct(tmp_path):
    """A file whose SOP class is RT Dose is not a CT slice whatever its Modality says: the CT reader skips it
    (before, Modality CT let it in as a slice)."""
    from mcproton._io.ct import load_ct_series
    from mcproton._io.errors import DicomInputError

    _write(tmp_path / "odd.dcm", DOSE, "CT")
    with pytest.raises(DicomInputError, match=r"no CT image slices found .*RTDOSE x1"):
        load_ct_series(tmp_path)


def test_ct_slices_with_another_modality_are_read_by_their_sop_class(tmp_path):
    """CT Image Storage slices whose Modality says OT: read as CT with one warning (the check's folder scan sorts
    them as CT too; before, the scan took them and the reader refused them)."""
    import numpy as np

    from mcproton._io.ct import load_ct_series
    from mcproton.dicom import write_ct_series

    write_ct_series(np.zeros((3, 4, 5), np.int16), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), tmp_path)
    for f in sorted(tmp_path.glob("*.dcm"))[:2]:
        ds = pydicom.dcmread(f)
        ds.Modality = "OT"
        ds.save_as(f)
    with pytest.warns(UserWarning, match=r"2 CT slice\(s\) in .* say Modality 'OT' but are CT Image Storage"):
        ct = load_ct_series(tmp_path)
    assert ct.shape_zyx == (3, 4, 5)


def test_position_given_for_a_plan_without_patient_setups():
    """--patient-position / plan.patient_position for a plan with no PatientSetupSequence at all: a setup is added
    (before, the refusal told the user to give the option they had given); the caller's data set is not changed."""
    from pathlib import Path

    from mcproton._io.rtplan import load_rtplan

    ds = pydicom.dcmread(Path(__file__).resolve().parents[1] / "data" / "dicom" / "RP_plan05.dcm")
    del ds.PatientSetupSequence
    plan = load_rtplan(ds, patient_position="HFS")
    assert {b.patient_position for b in plan.beams} == {"HFS"}
    assert plan.notes == ["PatientPosition HFS as given, in patient setup(s) 1 added: the plan has no "
                          "PatientSetupSequence"]
    assert "PatientSetupSequence" not in ds


def test_nested_output_through_a_link_is_refused(tmp_path):
    from mcproton._run.inputs import check_output_paths
    from mcproton.config import ConfigError

    (tmp_path / "lnk").symlink_to(tmp_path)
    with pytest.raises(ConfigError, match="lies inside --out"):
        check_output_paths([("--out", tmp_path / "r4"), ("--rtdose", tmp_path / "lnk" / "r4" / "RD.dcm")], [])


def test_a_patient_folder_given_as_the_ct_folder_names_its_ct_sub_folder(tmp_path):
    """Journey audit 28, F6: phantom.ct_dir pointing at the patient folder (RT objects beside a ct/ sub-folder) was
    refused as "no CT image slices found ... (other DICOM objects: RTDOSE x1 ...)", not a word about ct/; now the
    sub-folder with the slices is named, and how to give it.  Likewise a folder holding only the sub-folder."""
    import numpy as np

    from mcproton._io.ct import load_ct_series
    from mcproton._io.errors import DicomInputError
    from mcproton.dicom import write_ct_series

    write_ct_series(np.zeros((3, 4, 4)), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), tmp_path / "patient" / "ct")
    with pytest.raises(DicomInputError, match=r"no files in .*patient; give the folder that holds the CT slices "
                                              r"\(\*\.dcm\); .*patient/ct holds 3 CT slices: give that folder "
                                              r"\(phantom\.ct_dir = \".*patient/ct\" in a run's config, --ct in "
                                              r"mcproton check\)"):
        load_ct_series(tmp_path / "patient")
    _write(tmp_path / "patient" / "RD.dcm", DOSE, "RTDOSE")
    with pytest.raises(DicomInputError, match=r"no CT image slices found in .*patient \(other DICOM objects: RTDOSE "
                                              r"x1; .*\); give the folder of a CT series \(Modality CT\); .*patient/ct "
                                              r"holds 3 CT slices: give that folder"):
        load_ct_series(tmp_path / "patient")
    (tmp_path / "empty" / "notes").mkdir(parents=True)   # sub-folders without slices: nothing added
    _write(tmp_path / "empty" / "RD.dcm", DOSE, "RTDOSE")
    with pytest.raises(DicomInputError) as exc:
        load_ct_series(tmp_path / "empty")
    assert "holds" not in str(exc.value), str(exc.value)
