"""The phantom's CT series and RT Struct (the demo's ct/ and rtstruct.dcm) keep their content byte for byte
while being written faster: the CT slices against a reference writer that builds every slice's data set and
lets pydicom encode it (the writer before the template encoder), the RT Struct's ContourData against pydicom's
encoding of the "%.2f" strings, and the inverse HU calibration's per-value table against its elementwise
evaluation."""
from __future__ import annotations

import io
import itertools

import numpy as np
import pydicom
import pytest

from mcproton._io import dicom_common
from mcproton._io.ct import CT_IMAGE_STORAGE, write_ct_series, write_ct_series_uids
from mcproton._io.dicom_common import PHANTOM_STUDY, ds_string, new_file_dataset, set_patient_study_series
from mcproton.dicom import HUCalibration
from mcproton.phantoms import label_map_to_masks, make_head_phantom
from mcproton.phantoms import dicom_export
from mcproton.phantoms.dicom_export import CTSeriesRef, slice_contours, write_phantom_ct, write_rtstruct


def _reference_slice(hu_i, k, vs, org, study, series_uid, desc, sop_uid, date, time) -> bytes:
    """Slice ``k`` as the CT writer wrote it before the template encoder: a data set of its own, encoded by
    pydicom (``save_as``)."""
    ds, _ = new_file_dataset("x.dcm", CT_IMAGE_STORAGE, sop_uid)
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    set_patient_study_series(ds, study, modality="CT", date=date, time=time, series_description=desc,
                             series_instance_uid=series_uid, series_number=1, instance_number=k + 1)
    ds.SeriesDate = date
    ds.ContentDate = date
    ds.SeriesTime = time
    ds.ContentTime = time
    ds.KVP = ""
    ds.PatientPosition = study.patient_position or "HFS"
    ds.Laterality = ""
    ds.AcquisitionNumber = 1
    ds.ImagePositionPatient = [ds_string(org[0]), ds_string(org[1]), ds_string(org[2] + k * vs[2])]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceThickness = ds_string(vs[2])
    ds.SliceLocation = ds_string(org[2] + k * vs[2])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = hu_i.shape[1], hu_i.shape[2]
    ds.PixelSpacing = [ds_string(vs[1]), ds_string(vs[0])]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    ds.PixelData = np.ascontiguousarray(hu_i[k]).astype("<i2").tobytes()
    buf = io.BytesIO()
    if dicom_common.pydicom_v3():
        ds.save_as(buf, enforce_file_format=True)
    else:
        ds.save_as(buf, write_like_original=False)
    return buf.getvalue()


def _check_series_bytes(paths, sops, hu, vs, org, study, series_uid, desc):
    hu_i = np.rint(np.asarray(hu, float)).astype(np.int16)
    for k, (p, sop) in enumerate(zip(paths, sops)):
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        assert str(ds.SOPInstanceUID) == sop and str(ds.file_meta.MediaStorageSOPInstanceUID) == sop
        ref = _reference_slice(hu_i, k, vs, org, study, series_uid, desc, sop, str(ds.StudyDate),
                               str(ds.StudyTime))
        assert p.read_bytes() == ref, f"slice {k} differs from the reference encoding"


@pytest.mark.parametrize("fast", [True, False])
def test_ct_slices_byte_identical_to_per_slice_encoding(tmp_path, monkeypatch, fast):
    """Every slice (12: one- and two-digit Instance Numbers, i.e. odd and even IS lengths; fresh UIDs of
    different lengths; negative, fractional positions) is byte for byte what pydicom writes for that slice's
    own data set; also when the first-file check fails and every file is written by pydicom (``fast`` False)."""
    if not fast:   # a broken meta encoder: the check of the first file must catch it
        monkeypatch.setattr(dicom_common.TemplateFileWriter, "_meta", lambda self: b"broken")
    rng = np.random.default_rng(7)
    hu = rng.integers(-1000, 3000, (12, 7, 5)).astype(float) + rng.uniform(-0.4, 0.4, (12, 7, 5))
    vs, org = (0.9765625, 1.25, 2.5), (-249.51171875, -17.3, -3.75)
    study = PHANTOM_STUDY.resolved()
    paths, sops, zs = write_ct_series_uids(hu, vs, org, tmp_path, study=study, series_description="content",
                                           series_instance_uid="1.2.826.0.1.3680043.8.498.77")
    assert len(set(len(s) for s in sops)) >= 1 and len(set(sops)) == 12
    assert zs == [float(ds_string(org[2] + k * vs[2])) for k in range(12)]
    _check_series_bytes(paths, sops, hu, vs, org, study, "1.2.826.0.1.3680043.8.498.77", "content")
    # the public writer is the same code
    assert [p.name for p in write_ct_series(hu, vs, org, tmp_path / "b")] == [p.name for p in paths]


def test_ct_writer_check_sees_a_changed_element(tmp_path, monkeypatch):
    """The reference comparison is not blind: a slice writer that changed one fixed element (the series
    description) fails it."""
    hu = np.zeros((2, 3, 3))
    study = PHANTOM_STUDY.resolved()
    paths, sops, _ = write_ct_series_uids(hu, (1, 1, 1), (0, 0, 0), tmp_path, study=study,
                                          series_description="content", series_instance_uid="1.2.3")
    with pytest.raises(AssertionError, match="slice 0 differs"):
        _check_series_bytes(paths, sops, hu, (1, 1, 1), (0, 0, 0), study, "1.2.3", "contend")


def _counting_uids(monkeypatch):
    counter = itertools.count(1)
    monkeypatch.setattr(pydicom.uid, "generate_uid", lambda *a, **k: f"1.2.826.0.1.3680043.8.498.{next(counter)}")
    monkeypatch.setattr(dicom_common, "now_date_time", lambda offset="": ("20261204", "120000"))


def _old_contour_data(xyz_list):
    """ContourData as the RT Struct writer set it before: a list of "%.2f" strings (pydicom DSfloats)."""
    from pydicom.dataelem import DataElement

    return [DataElement(dicom_export.CONTOUR_DATA_TAG, "DS", [f"{v:.2f}" for v in np.asarray(a).ravel()])
            for a in xyz_list]


def test_rtstruct_byte_identical_to_pydicom_encoding(tmp_path, monkeypatch):
    """The phantom RT Struct with ContourData encoded once per distinct number (raw values) is byte for byte
    the file with pydicom's encoding of the strings, and its points are the marching-squares contours."""
    g = make_head_phantom(5.0, 4.0, region="head")
    masks = {**label_map_to_masks(g), "body": g.labels_zyx != 0, "empty": np.zeros(g.shape_zyx, bool)}
    nz = g.shape_zyx[0]
    ct = CTSeriesRef(tmp_path, PHANTOM_STUDY.resolved(), "1.2.3.4", [f"1.2.3.5.{k}" for k in range(nz)],
                     [float(z) for z in g.axis_mm("z")])
    _counting_uids(monkeypatch)
    new = write_rtstruct(masks, g, ct, tmp_path / "new.dcm", label="content")
    _counting_uids(monkeypatch)
    monkeypatch.setattr(dicom_export, "_contour_data_elements", _old_contour_data)
    old = write_rtstruct(masks, g, ct, tmp_path / "old.dcm", label="content")
    assert new.read_bytes() == old.read_bytes()
    # the points: each ROI's contours slice by slice (the "empty" ROI left out)
    ds = pydicom.dcmread(new)
    assert [str(r.ROIName) for r in ds.StructureSetROISequence] == [n for n in masks if n != "empty"]
    x, y, z = g.axis_mm("x"), g.axis_mm("y"), g.axis_mm("z")
    number = {str(r.ROIName): int(r.ROINumber) for r in ds.StructureSetROISequence}["body"]
    rc = next(r for r in ds.ROIContourSequence if int(r.ReferencedROINumber) == number)
    expected = [np.column_stack([p, np.full(len(p), z[k])]) for k in range(nz)
                for p in slice_contours(masks["body"][k], x, y)]
    assert len(rc.ContourSequence) == len(expected) > 0
    for c, e in zip(rc.ContourSequence, expected):
        assert [float(v) for v in c.ContourData] == [float(f"{v:.2f}") for v in e.ravel()]
        assert int(c.NumberOfContourPoints) == len(e)


def test_contour_data_values():
    """Signed zero kept apart from zero, rounding, odd lengths padded with a space, as pydicom writes."""
    a = np.array([[0.0, -0.0, 1.005], [-12.345, 99999.994, 3.0]])
    b = np.array([[0.5, 0.5, -0.001]])
    (ea, eb), (ra, rb) = dicom_export._contour_data_elements([a, b]), _old_contour_data([a, b])
    assert ea.value == b"0.00\\-0.00\\1.00\\-12.35\\99999.99\\3.00"   # 36 bytes: no padding
    assert eb.value == b"0.50\\0.50\\-0.00 "
    for e, r in ((ea, ra), (eb, rb)):
        ref = pydicom.filebase.DicomBytesIO()
        ref.is_little_endian, ref.is_implicit_VR = True, False
        pydicom.filewriter.write_data_element(ref, r)
        got = pydicom.filebase.DicomBytesIO()
        got.is_little_endian, got.is_implicit_VR = True, False
        pydicom.filewriter.write_data_element(got, e)
        assert got.getvalue() == ref.getvalue()
    assert dicom_export._contour_data_elements([]) == []


def test_phantom_ct_pixels_and_inverse_calibration_table(tmp_path):
    """``hu_from_density`` through a table of the distinct densities (a phantom's handful) gives the numbers
    of its elementwise evaluation; the phantom CT's pixels are those HU; and a dense array (no table) too."""
    cal = HUCalibration.load("schneider2000")
    g = make_head_phantom(5.0, 4.0, region="head")
    d = np.concatenate([g.density_g_cm3_zyx.ravel()] * 3 + [np.array([0.0, 0.0012, 1.0, 3.5, 9.0], np.float32)])
    assert d.size >= 1 << 16 and np.unique(d).size <= d.size // 64
    fast = cal.hu_from_density(d)
    slow = np.concatenate([cal.hu_from_density(d[i:i + 50_000]) for i in range(0, d.size, 50_000)])
    assert fast.dtype == slow.dtype and np.array_equal(fast, slow)
    dense = np.random.default_rng(1).uniform(0.0, 2.5, 70_000)
    assert np.array_equal(cal.hu_from_density(dense),
                          np.concatenate([cal.hu_from_density(dense[:35_000]), cal.hu_from_density(dense[35_000:])]))
    ct = write_phantom_ct(g, tmp_path / "ct")
    hu = np.stack([pydicom.dcmread(tmp_path / "ct" / f"CT_{k:04d}.dcm").pixel_array for k in range(g.shape_zyx[0])])
    assert np.array_equal(hu, slow[:g.density_g_cm3_zyx.size].reshape(g.shape_zyx).astype(np.int16))
    assert ct.sop_instance_uids == [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID)
                                    for p in sorted((tmp_path / "ct").glob("CT_*.dcm"))]
