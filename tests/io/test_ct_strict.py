"""A CT series is read strictly (issue 17 items 1-2, issue 12 item 5): a slice that ends early or cannot be
parsed is an error (never skipped), the rescale attributes are required, one frame of reference per series
(a warning when there is none), and an HU calibration's density must rise with HU."""
from __future__ import annotations

import warnings

import numpy as np
import pydicom
import pytest

from mcproton._io.dicom_common import PHANTOM_STUDY
from mcproton._io.ct import load_ct_series, write_ct_series
from mcproton._io.errors import CalibrationError, DicomInputError
from mcproton._io.hu_calibration import DENSITY_DROP_RTOL, HUCalibration
from mcproton.materials import Material


def _series(tmp_path, n=5, **kw):
    hu = np.full((n, 6, 6), 0, np.int16)
    return write_ct_series(hu, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), tmp_path,
                           study=PHANTOM_STUDY.replace(frame_of_reference_uid="1.2.3"), **kw)


@pytest.mark.parametrize("keep", [140, 200, 600, -2, -40])
def test_truncated_last_slice_is_an_error(tmp_path, keep):
    """The last slice cut short: after the file meta (200 bytes), in the header (600) or in the pixel data;
    the old reader skipped the 140/200-byte cuts as 'other DICOM' and the CT silently lost its last slice."""
    paths = _series(tmp_path)
    data = paths[-1].read_bytes()
    paths[-1].write_bytes(data[:keep] if keep > 0 else data[:len(data) + keep])
    paths[-1].rename(tmp_path / "CT_last")  # no .dcm suffix: nothing hints that it is a slice
    with pytest.raises(DicomInputError, match=r"ends early|truncated"):
        load_ct_series(tmp_path)


def test_slice_cut_between_two_elements_before_its_series_uid_is_an_error(tmp_path):
    """A cut exactly at an element boundary reads as a complete, shorter file; cut before SeriesInstanceUID, the
    slice looked like a second series ("mixed series", 1 % of the random-UID runs of the test above): it is now
    named as truncated.  Deterministic: the cut is placed at the start of the (0020,000E) element."""
    import struct

    paths = _series(tmp_path)
    data = paths[-1].read_bytes()
    at = data.find(struct.pack("<HH", 0x0020, 0x000E) + b"UI")
    assert at > 132
    paths[-1].write_bytes(data[:at])
    with pytest.raises(DicomInputError, match=r"without SeriesInstanceUID .* truncated"):
        load_ct_series(tmp_path)


def test_slice_without_sop_class_and_modality_is_an_error(tmp_path):
    paths = _series(tmp_path)
    ds = pydicom.dcmread(paths[-1])
    del ds.SOPClassUID, ds.Modality
    ds.save_as(paths[-1], enforce_file_format=False)
    with pytest.raises(DicomInputError, match="neither SOPClassUID .* nor Modality"):
        load_ct_series(tmp_path)


def test_ct_without_rescale_is_an_error(tmp_path):
    """Stored as HU + 1024 without RescaleIntercept: the old reader took air (-1000 HU) for +24 HU."""
    paths = _series(tmp_path)
    for p in paths:
        ds = pydicom.dcmread(p)
        del ds.RescaleSlope, ds.RescaleIntercept
        ds.save_as(p)
    with pytest.raises(DicomInputError, match=r"RescaleSlope \(0028,1053\) and RescaleIntercept \(0028,1052\) are "
                                              r"required"):
        load_ct_series(tmp_path)


@pytest.mark.parametrize("kw", ["PixelSpacing", "ImagePositionPatient", "ImageOrientationPatient"])
def test_mandatory_geometry_is_required(tmp_path, kw):
    paths = _series(tmp_path)
    ds = pydicom.dcmread(paths[2])
    delattr(ds, kw)
    ds.save_as(paths[2])
    with pytest.raises(DicomInputError, match=kw):
        load_ct_series(tmp_path)


def test_ct_without_frame_of_reference_warns(tmp_path):
    paths = _series(tmp_path)
    for p in paths:
        ds = pydicom.dcmread(p)
        del ds.FrameOfReferenceUID
        ds.save_as(p, enforce_file_format=False)
    with pytest.warns(UserWarning, match=r"no FrameOfReferenceUID \(0020,0052\)"):
        ct = load_ct_series(tmp_path)
    assert ct.frame_of_reference_uid == ""


def test_ct_with_frame_of_reference_does_not_warn(tmp_path):
    _series(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_ct_series(tmp_path).frame_of_reference_uid == "1.2.3"


def test_mixed_frames_of_reference_are_an_error(tmp_path):
    paths = _series(tmp_path)
    ds = pydicom.dcmread(paths[1])
    ds.FrameOfReferenceUID = "1.2.4"
    ds.save_as(paths[1])
    with pytest.raises(DicomInputError, match="2 different FrameOfReferenceUIDs"):
        load_ct_series(tmp_path)


def test_mixed_patient_positions_are_an_error(tmp_path):
    """Slices saying HFS and HFP: before, the first slice's position was taken, so the plan's set-up was checked
    against whichever slice sorted first (a helper's audit, 2026-12-05)."""
    paths = _series(tmp_path)
    for i, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        ds.PatientPosition = "HFP" if i % 2 else "HFS"
        ds.save_as(p)
    with pytest.raises(DicomInputError, match=r"2 different PatientPositions .*\['HFP', 'HFS'\]"):
        load_ct_series(tmp_path)
    for p in paths[::2]:             # a slice without one: the others' position is the series'
        ds = pydicom.dcmread(p)
        ds.PatientPosition = "HFP" if p == paths[0] else ""
        ds.save_as(p)
    del_ds = pydicom.dcmread(paths[0])
    del del_ds.PatientPosition
    del_ds.save_as(paths[0])
    assert load_ct_series(tmp_path).patient_position == "HFP"


def test_ct_slice_without_file_meta_is_read(tmp_path):
    """A slice stored as a raw data set (no preamble, no file meta) is a CT slice like any other."""
    paths = _series(tmp_path)
    ds = pydicom.dcmread(paths[2])
    ds.preamble = None
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.save_as(paths[2], implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert load_ct_series(tmp_path).shape_zyx == (5, 6, 6)


_WATER = [Material("water", 1.0, {"H": 0.111894, "O": 0.888106})]


def test_calibration_density_typo_is_refused():
    """0.185 written for 1.85 g/cm3: the old check (HU strictly increasing only) accepted it."""
    with pytest.raises(CalibrationError, match=r"falls from 1.56 g/cm3 at 1046 HU to 0.185 g/cm3 at 1565 HU"):
        HUCalibration.from_points([-1000, 0, 1046, 1565, 3000], [0.001, 1.0, 1.56, 0.185, 2.2], [-1000], _WATER)


def test_calibration_density_typo_in_files_is_refused(tmp_path):
    d, m = tmp_path / "hu_density.csv", tmp_path / "hu_materials.csv"
    d.write_text("HU,density_gcm3\n-1000,0.001\n0,1.0\n1000,1.6\n2000,0.185\n")
    m.write_text("hu_lo,name,w_H,w_O\n-1000,water,0.111,0.889\n")
    with pytest.raises(CalibrationError, match="must rise with HU"):
        HUCalibration.from_files(d, m)


def test_calibration_small_fall_at_a_fit_boundary_is_allowed():
    """Schneider 2000's fit falls by 4 % at 100/101 HU (built in); a fall just above the limit is refused."""
    assert HUCalibration.load("schneider2000").density_from_hu(101) < HUCalibration.load().density_from_hu(100)
    r = 1.12
    HUCalibration.from_points([0, 100, 101, 2000], [1.0, r, r * (1 - 0.9 * DENSITY_DROP_RTOL), 2.0], [0], _WATER)
    with pytest.raises(CalibrationError, match="must rise"):
        HUCalibration.from_points([0, 100, 101, 2000], [1.0, r, r * (1 - 1.1 * DENSITY_DROP_RTOL), 2.0], [0], _WATER)


def _pacs_series(tmp_path, n=5):
    """A series named as PACS exports name it: IM0001 .. IM000n, no suffix."""
    for i, p in enumerate(sorted(_series(tmp_path, n))):
        p.rename(tmp_path / f"IM{i + 1:04d}")
    return tmp_path


def test_empty_slice_files_named_like_the_slices_are_refused(tmp_path):
    """IM0000 and IM0006 of 0 bytes at either end (an interrupted copy): the CT was read 2 slices shorter without a
    word, as a missing end slice leaves no gap (before: counted as 'not DICOM' and skipped)."""
    _pacs_series(tmp_path)
    (tmp_path / "IM0000").write_bytes(b"")
    (tmp_path / "IM0006").write_bytes(b"")
    with pytest.raises(DicomInputError, match=r"^2 file\(s\) in .* named like the CT slices \(IM0001, ...\) are not "
                                              r"DICOM: IM0000 \(0 bytes\), IM0006 \(0 bytes\); an empty or damaged "
                                              r"slice .* copy or export the series again"):
        load_ct_series(tmp_path)
    (tmp_path / "IM0006").write_bytes(b"garbage, not a slice")   # not empty, still not DICOM: the same
    (tmp_path / "IM0000").unlink()
    with pytest.raises(DicomInputError, match=r"IM0006 \(20 bytes\)"):
        load_ct_series(tmp_path)


def test_other_files_that_are_not_dicom_are_named(tmp_path):
    """A file that is not DICOM and not named like the slices is skipped, named in a warning where it may have been a
    slice (no suffix, .dicom, a numeric suffix); notes.txt or out.h5 beside the slices are skipped without one."""
    from mcproton._io.errors import McprotonWarning

    _pacs_series(tmp_path)
    (tmp_path / "VERSION").write_bytes(b"v1\n")
    (tmp_path / "LOCK").write_bytes(b"")
    with pytest.warns(McprotonWarning, match=r"skipped 2 file\(s\) that are not DICOM: LOCK \(0 bytes\), VERSION "
                                             r"\(3 bytes\)$"):
        assert load_ct_series(tmp_path).hu_zyx.shape[0] == 5
    (tmp_path / "VERSION").unlink()
    (tmp_path / "LOCK").unlink()
    (tmp_path / "notes.txt").write_text("exported 2024")
    (tmp_path / "out1.h5").write_bytes(b"\x89HDF")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_ct_series(tmp_path).hu_zyx.shape[0] == 5


def test_gzip_compressed_files(tmp_path):
    """A gzip-compressed slice named like the others is refused as such; an archive beside the slices is skipped; a
    compressed plan or structure set given by name says to decompress it (before: "not a DICOM file")."""
    import gzip

    from mcproton._io.rtplan import load_rtplan
    from mcproton._io.rtstruct import read_rtstruct

    _pacs_series(tmp_path / "ct")
    (tmp_path / "ct" / "backup.tar.gz").write_bytes(gzip.compress(b"old export"))
    assert load_ct_series(tmp_path / "ct").hu_zyx.shape[0] == 5
    im = tmp_path / "ct" / "IM0003"
    im.write_bytes(gzip.compress(im.read_bytes()))
    with pytest.raises(DicomInputError, match=r"named like the CT slices .* not DICOM: IM0003 \(\d+ bytes, "
                                              r"gzip-compressed\)"):
        load_ct_series(tmp_path / "ct")
    gz = tmp_path / "RP.dcm.gz"
    gz.write_bytes(gzip.compress(b"\0" * 200))
    for read in (load_rtplan, read_rtstruct):
        with pytest.raises(DicomInputError, match=r"RP.dcm.gz: the file is gzip-compressed .* gunzip -c RP.dcm.gz > "
                                                  "RP.dcm"):
            read(gz)


@pytest.mark.parametrize("pad", [2, 2046, 4096])
def test_zero_bytes_after_the_last_element_are_read_with_a_warning(tmp_path, pad):
    """The pacs audit (F5): a slice padded with zero bytes (to an even length, or a medium's block) was refused as
    "ends early" or "element structure broken", and exporting again did not help; pydicom reads it.  Now read, the
    same HU, with a warning naming the padding; more than MAX_ZERO_PADDING zero bytes is still refused (a file
    zero-filled beyond where its writing stopped)."""
    from mcproton._io.dicom_common import MAX_ZERO_PADDING
    from mcproton._io.errors import McprotonWarning

    assert pad <= MAX_ZERO_PADDING
    paths = _series(tmp_path)
    ref = load_ct_series(tmp_path).hu_zyx.copy()
    with open(paths[2], "ab") as fh:
        fh.write(b"\0" * pad)
    with pytest.warns(McprotonWarning, match=rf"{pad} zero bytes after the last data element"):
        ct = load_ct_series(tmp_path)
    assert np.array_equal(ct.hu_zyx, ref)
    with open(paths[2], "ab") as fh:
        fh.write(b"\0" * MAX_ZERO_PADDING)
    with pytest.raises(DicomInputError, match=r"ends early|broken"):
        load_ct_series(tmp_path)


@pytest.mark.parametrize("said", ["implicit", "explicit"])
def test_a_slice_whose_transfer_syntax_names_the_other_vr_encoding_is_read_with_a_warning(tmp_path, said):
    """The pacs audit (F5): the file meta says Implicit VR Little Endian and the data set is explicit (or the
    reverse): refused as truncated or broken; pydicom reads it as encoded.  Now read, the same HU, with a warning
    that names the mislabelled transfer syntax."""
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    from mcproton._io.errors import McprotonWarning

    paths = _series(tmp_path)
    ref = load_ct_series(tmp_path).hu_zyx.copy()
    from mcproton._io.dicom_common import _dataset_start

    ds = pydicom.dcmread(paths[1])
    encoded, label = ((ExplicitVRLittleEndian, ImplicitVRLittleEndian) if said == "implicit"
                      else (ImplicitVRLittleEndian, ExplicitVRLittleEndian))
    parts = {}
    for ts in (encoded, label):          # the meta of the label's file, the data set of the encoded one's
        ds.file_meta.TransferSyntaxUID = ts
        ds.save_as(tmp_path / "x.dcm", enforce_file_format=True)
        data = (tmp_path / "x.dcm").read_bytes()
        parts[ts] = (data, _dataset_start(data)[0])
    (tmp_path / "x.dcm").unlink()
    paths[1].write_bytes(parts[label][0][:parts[label][1]] + parts[encoded][0][parts[encoded][1]:])
    assert pydicom.dcmread(paths[1], stop_before_pixels=True).file_meta.TransferSyntaxUID == label
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)          # pydicom's own note of the mismatch
        with pytest.warns(McprotonWarning, match=rf"says {said} VR, but the data set is encoded with"):
            ct = load_ct_series(tmp_path)
    assert np.array_equal(ct.hu_zyx, ref)
