"""Damaged RT Dose and RT Struct files that were read silently wrong before (found by
tests/fuzz/test_rtdose_rtstruct_mutations.py): each is now refused with one line naming the attribute."""
from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest

from mcproton._check.inputs import CheckInputError, read_tps_dose
from mcproton._io.errors import DicomInputError
from mcproton._io.rtdose import read_rtdose, write_rtdose
from mcproton._io.rtstruct import read_rtstruct
from mcproton.dicom import StudyReference

from dicom_factories import make_rtstruct, rect_contour, save

DOSE = np.random.default_rng(5).uniform(0.0, 2.0, (3, 4, 5))


def _dose(tmp_path):
    return write_rtdose(DOSE, (2.0, 2.5, 3.0), (-4.0, 1.5, 10.0), tmp_path / "RD.dcm", summation_type="BEAM",
                        referenced_beam_number=2,
                        study=StudyReference(frame_of_reference_uid="1.2.3.4", plan_sop_instance_uid="1.2.3.5"))


def _fg(ds):
    return ds.ReferencedRTPlanSequence[0].ReferencedFractionGroupSequence[0]


# (what, edit, message): before, every one of them was read without a word, as noted
DOSE_DAMAGE = [
    ("DoseGridScaling dropped (before: read as 1: 3e-5 of the dose's Gy per pixel value became 1)",
     lambda ds: delattr(ds, "DoseGridScaling"), r"DoseGridScaling \(3004,000E\) is missing"),
    ("DoseGridScaling 0 (before: read as 1)", lambda ds: setattr(ds, "DoseGridScaling", "0"),
     r"DoseGridScaling \(3004,000E\) is 0; it must be a finite number > 0"),
    ("DoseGridScaling negative (before: negative doses)", lambda ds: setattr(ds, "DoseGridScaling", "-0.001"),
     r"DoseGridScaling .* must be a finite number > 0"),
    ("PixelRepresentation 1 (before: pixel values above 32767 read as negative doses)",
     lambda ds: setattr(ds, "PixelRepresentation", 1), r"PixelRepresentation \(0028,0103\) 1 with DoseType PHYSICAL"),
    ("Columns one less (before: the pixels read on a 4-column grid, shifted row by row)",
     lambda ds: setattr(ds, "Columns", 4), r"pixel data hold 120 bytes, but .* = 3 x 4 x 4 x 2 = 96"),
    ("BitsAllocated 8 (before: half the pixel data read as bytes)",
     lambda ds: [setattr(ds, k, v) for k, v in (("BitsAllocated", 8), ("BitsStored", 8), ("HighBit", 7))],
     r"BitsAllocated/BitsStored/HighBit 8/8/7"),
    ("DoseUnits dropped (before: taken as Gy)", lambda ds: delattr(ds, "DoseUnits"),
     r"DoseUnits \(3004,0002\) is missing"),
    ("DoseType UNKNOWN (before: passed on to the check)", lambda ds: setattr(ds, "DoseType", "UNKNOWN"),
     r"DoseType \(3004,0004\) is 'UNKNOWN'"),
    ("PixelSpacing 0 (before: a grid of 0 mm columns)", lambda ds: setattr(ds, "PixelSpacing", ["2.5", "0"]),
     r"PixelSpacing \(0028,0030\) \[2.5, 0.0\] must be > 0"),
    ("ImagePositionPatient with NaN (before: a NaN origin)",
     lambda ds: setattr(ds, "ImagePositionPatient", ["-4", "NaN", "10"]), r"not finite"),
    ("GridFrameOffsetVector with NaN first (before: a NaN slice spacing)",
     lambda ds: setattr(ds, "GridFrameOffsetVector", ["NaN", "3", "6"]), r"not finite"),
    ("FrameOfReferenceUID dropped (before: '' and the CT's frame not compared)",
     lambda ds: delattr(ds, "FrameOfReferenceUID"), r"FrameOfReferenceUID \(0020,0052\) is missing"),
    ("ReferencedRTPlanSequence dropped (before: a dose of no plan, paired with any --plan)",
     lambda ds: delattr(ds, "ReferencedRTPlanSequence"), r"no ReferencedRTPlanSequence \(300C,0002\)"),
    ("ReferencedBeamSequence of a BEAM dose dropped (before: no beam)",
     lambda ds: delattr(_fg(ds), "ReferencedBeamSequence"), r"a BEAM dose must give ReferencedBeamSequence"),
    ("ReferencedFractionGroupNumber dropped (before: None)",
     lambda ds: delattr(_fg(ds), "ReferencedFractionGroupNumber"), r"ReferencedFractionGroupNumber \(300C,0022\)"),
]


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")   # pydicom on the NaN this test writes on purpose
@pytest.mark.parametrize("what, edit, match", DOSE_DAMAGE, ids=[d[0].split(" (")[0] for d in DOSE_DAMAGE])
def test_damaged_rtdose_is_refused(tmp_path, what, edit, match):
    p = _dose(tmp_path)
    ds = pydicom.dcmread(p)
    edit(ds)
    ds.save_as(p)
    with pytest.raises(DicomInputError, match=match) as exc:
        read_rtdose(p)
    assert "\n" not in str(exc.value)


def test_the_undamaged_dose_and_the_check_refusals(tmp_path):
    p = _dose(tmp_path)
    d = read_rtdose(p)
    assert np.abs(d.dose_gy_zyx - DOSE).max() <= 0.5 * d.dose_grid_scaling * (1 + 1e-9)
    assert (d.referenced_beam_numbers, d.referenced_fraction_group_number) == ([2], 1)
    for units, err in (("RELATIVE", r"DoseUnits 'RELATIVE': a relative dose"), ("CGY", r"DoseUnits .* 'CGY'")):
        ds = pydicom.dcmread(p)
        ds.DoseUnits = units
        ds.save_as(tmp_path / "u.dcm")
        with pytest.raises((CheckInputError, DicomInputError), match=err):
            read_tps_dose(tmp_path / "u.dcm")


def _struct(tmp_path):
    rois = {"PTV": [rect_contour(-20, -10, -5, 5, z) for z in (0.0, 2.0)],
            "Brainstem": [rect_contour(10, 20, -5, 5, z) for z in (0.0, 2.0)]}
    return make_rtstruct(rois, for_uid="1.2.3.4")


STRUCT_DAMAGE = [
    ("ContourGeometricType dropped (before: the contour skipped, the ROI smaller)",
     lambda ds: delattr(ds.ROIContourSequence[0].ContourSequence[1], "ContourGeometricType"),
     r"ROI 'PTV' contour 1: no ContourGeometricType \(3006,0042\)"),
    ("the last point removed, NumberOfContourPoints kept (before: a triangle for a rectangle)",
     lambda ds: setattr(ds.ROIContourSequence[1].ContourSequence[0], "ContourData",
                        list(ds.ROIContourSequence[1].ContourSequence[0].ContourData)[:-3]),
     r"ROI 'Brainstem' contour 0: NumberOfContourPoints \(3006,0046\) is 4 but ContourData .* holds 3 points"),
    ("ROIName dropped (before: the ROI renamed ROI_1)", lambda ds: delattr(ds.StructureSetROISequence[0], "ROIName"),
     r"item 0 of the StructureSetROISequence \(3006,0020\) has no ROIName"),
    ("ROINumber dropped (before: numbered by its position)",
     lambda ds: delattr(ds.StructureSetROISequence[1], "ROINumber"), r"has no ROINumber \(3006,0022\)"),
    ("an observation's ReferencedROINumber dropped (before: the ROI's type lost)",
     lambda ds: delattr(ds.RTROIObservationsSequence[0], "ReferencedROINumber"),
     r"RTROIObservationsSequence \(3006,0080\) has no ReferencedROINumber"),
    ("RTROIInterpretedType dropped (before: '', an EXTERNAL no longer found as the body outline)",
     lambda ds: delattr(ds.RTROIObservationsSequence[1], "RTROIInterpretedType"),
     r"has no RTROIInterpretedType \(3006,00A4\)"),
    ("RTROIObservationsSequence dropped (before: every ROI's type lost)",
     lambda ds: delattr(ds, "RTROIObservationsSequence"), r"has 2 ROIs but no RTROIObservationsSequence"),
    ("ROIContourSequence dropped (before: every ROI empty)",
     lambda ds: delattr(ds, "ROIContourSequence"), r"has 2 ROIs but no ROIContourSequence \(3006,0039\)"),
]


@pytest.mark.parametrize("what, edit, match", STRUCT_DAMAGE, ids=[d[0].split(" (")[0] for d in STRUCT_DAMAGE])
def test_damaged_rtstruct_is_refused(tmp_path, what, edit, match):
    ds = _struct(tmp_path)
    edit(ds)
    with pytest.raises(DicomInputError, match=match) as exc:
        read_rtstruct(save(ds, tmp_path / "RS.dcm"))
    assert "\n" not in str(exc.value)


def test_rtstruct_cut_at_an_item_is_refused(tmp_path):
    """A structure set cut exactly where an item of its last ROIContourSequence contour starts: pydicom alone reads
    it as a shorter file (before: the ROI had one contour fewer, without a word)."""
    p = save(_struct(tmp_path), tmp_path / "RS.dcm")
    data = p.read_bytes()
    obs = data.find(b"\x06\x30\x80\x00")    # RTROIObservationsSequence (3006,0080) follows the contours
    cut = data.rfind(b"\xfe\xff\x00\xe0", 0, obs)   # the last item before it: the second contour of 'Brainstem'
    assert len(pydicom.dcmread(io.BytesIO(data[:cut])).ROIContourSequence[1].ContourSequence) == 1
    p.write_bytes(data[:cut])
    with pytest.raises(DicomInputError, match="the file ends early"):
        read_rtstruct(p)


def test_rtstruct_without_contour_point_counts_is_read_unchanged(tmp_path):
    ds = _struct(tmp_path)
    ref = read_rtstruct(save(ds, tmp_path / "RS.dcm")).contours
    for rc in ds.ROIContourSequence:
        for c in rc.ContourSequence:
            del c.NumberOfContourPoints
    got = read_rtstruct(save(ds, tmp_path / "RS2.dcm")).contours
    assert got.keys() == ref.keys()
    assert all(np.array_equal(a, b) for k in ref for a, b in zip(got[k], ref[k], strict=True))
