"""CT folders as PACS archives and media exports deliver them (the pacs audit, F3 and F4): a DICOMDIR beside the
slices or at an export's root was refused as "a damaged file?"; an Enhanced CT object beside the classic series
blocked the classic series, even when it was chosen; a Legacy Converted Enhanced CT was refused as a slice missing
ImageOrientationPatient."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from mcproton import McprotonWarning
from mcproton._io.ct import load_ct_series, write_ct_series
from mcproton._io.errors import DicomInputError

from fakes import write_dicomdir   # tests/fakes.py


def _ct(folder):
    hu = np.full((4, 8, 8), -1000, np.int16)
    hu[:, 2:6, 2:6] = 0
    return write_ct_series(hu, (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), folder)


def test_a_dicomdir_beside_the_slices_is_skipped_with_a_note(tmp_path):
    _ct(tmp_path / "ct")
    write_dicomdir(tmp_path / "ct" / "DICOMDIR")
    with pytest.warns(McprotonWarning, match=r"DICOMDIR: a DICOMDIR \(the index of a media export\), not a CT slice: "
                                             r"skipped"):
        assert load_ct_series(tmp_path / "ct").shape_zyx == (4, 8, 8)


def test_an_export_root_names_the_folders_of_the_slices(tmp_path):
    _ct(tmp_path / "usb" / "PT000000" / "ST000000" / "SE000000")
    write_dicomdir(tmp_path / "usb" / "DICOMDIR")
    with pytest.warns(McprotonWarning, match="DICOMDIR"), \
            pytest.raises(DicomInputError, match=r"holds a DICOMDIR \(a media export\) and no CT slices: the slices "
                                                 r"lie in its sub-folders \(PT000000/ST000000/SE000000\)"):
        load_ct_series(tmp_path / "usb")


def _multi_frame(src, dst, sop_class):
    """A stand-in for a multi-frame object: a slice of another series with the SOP class of one (the reader decides by
    the SOP class before it looks at anything else)."""
    ds = pydicom.dcmread(src)
    ds.SOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.save_as(dst)
    return str(ds.SeriesInstanceUID)


@pytest.mark.parametrize("sop_class, what", [("1.2.840.10008.5.1.4.1.1.2.1", "Enhanced CT"),
                                             ("1.2.840.10008.5.1.4.1.1.2.2", "Legacy Converted Enhanced CT")])
def test_a_multi_frame_ct_beside_the_series_is_skipped_and_refused_only_when_chosen(tmp_path, sop_class, what):
    paths = _ct(tmp_path / "ct")
    classic = str(pydicom.dcmread(paths[0]).SeriesInstanceUID)
    enh = _multi_frame(paths[0], tmp_path / "ct" / "CT_multiframe.dcm", sop_class)
    for uid in (None, classic):
        with pytest.warns(McprotonWarning, match=f"skipped {what} series {enh} .*multi-frame CT is not read"):
            assert load_ct_series(tmp_path / "ct", series_uid=uid).series_instance_uid == classic
    refused = rf"CT_multiframe.dcm: {what} \(multi-frame: .*\) is not supported; export the CT as classic"
    with pytest.raises(DicomInputError, match=refused):
        load_ct_series(tmp_path / "ct", series_uid=enh)
    (tmp_path / "alone").mkdir()
    _multi_frame(paths[0], tmp_path / "alone" / "CT_multiframe.dcm", sop_class)
    with warnings.catch_warnings(), pytest.raises(DicomInputError, match=refused):
        warnings.simplefilter("error")
        load_ct_series(tmp_path / "alone")


def test_the_check_names_a_dicomdir_by_its_media_storage_class(tmp_path):
    from mcproton._check.inputs import _object_name

    write_dicomdir(tmp_path / "DICOMDIR")
    assert _object_name(pydicom.dcmread(tmp_path / "DICOMDIR"), "") == "Media Storage Directory"


def test_a_lossy_compressed_ct_is_warned_about_and_recorded(tmp_path):
    """An archive's lossy JPEG 2000 (the pacs audit, F7): decoded and used without a word; LossyImageCompression
    (0028,2110) "01" stays with an image once it was compressed so, whatever it is stored as now."""
    from mcproton._io.errors import recording_warnings

    paths = _ct(tmp_path / "ct")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_ct_series(tmp_path / "ct")
    for p in paths[1:3]:
        ds = pydicom.dcmread(p)
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionRatio = "10"
        ds.LossyImageCompressionMethod = "ISO_15444_1"
        ds.save_as(p)
    with pytest.warns(McprotonWarning, match=r"2 of the 4 CT slices were lossy-compressed \(LossyImageCompression "
                                             r"\(0028,2110\) '01'; ratio 10, method ISO_15444_1\).*use the original"), \
            recording_warnings() as said:
        load_ct_series(tmp_path / "ct")
    assert any("lossy-compressed" in w for w in said), said


def _pillow_jpeg2000() -> bool:
    try:
        from PIL import features
    except ImportError:
        return False
    return bool(features.check("jpg_2000"))


def _as_jpeg2000(path, tag):
    """The slice ``path`` rewritten as a losslessly compressed JPEG 2000 codestream (the reversible 5/3 wavelet,
    Pillow's OpenJPEG) under transfer syntax .91 ("JPEG 2000 Image Compression", lossless or lossy), as archives store
    lossless JPEG 2000; LossyImageCompression (0028,2110) ``tag`` (None: absent)."""
    import io

    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000

    ds = pydicom.dcmread(path)
    b = io.BytesIO()
    Image.fromarray((ds.pixel_array.astype(np.int32) & 0xFFFF).astype(np.uint16)).save(
        b, format="JPEG2000", no_jp2=True, irreversible=False)
    ds.PixelData = encapsulate([b.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEG2000
    if tag is not None:
        ds.LossyImageCompression = tag
    ds.save_as(path, enforce_file_format=True)


@pytest.mark.skipif(not _pillow_jpeg2000(), reason="needs Pillow with JPEG 2000 (OpenJPEG)")
@pytest.mark.parametrize("tag, said", [
    ("00", None),
    (None, r"4 of the 4 CT slices may have been lossy-compressed \(transfer syntax JPEG 2000, 1.2.840.10008.1.2.4.91, "
           r"which allows lossless and lossy compression, and LossyImageCompression \(0028,2110\) absent, so the "
           r"file does not say which\)"),
    ("01", r"4 of the 4 CT slices were lossy-compressed \(LossyImageCompression \(0028,2110\) '01'; transfer syntax "
           r"JPEG 2000\)")])
def test_jpeg2000_is_called_lossy_only_where_the_file_says_so(tmp_path, tag, said):
    """Transfer syntax .91 allows the reversible (lossless) and the irreversible wavelet (PS3.5 A.4.4); what the image
    went through is what LossyImageCompression says (PS3.3 C.7.6.1.1.5).  Before (audit 27 encodings, F2) every .91
    series was "lossy-compressed (LossyImageCompression (0028,2110) '01'...)", also one saying "00" or nothing, whose
    CT numbers are the scanner's to the bit."""
    from mcproton._io.errors import recording_warnings

    paths = _ct(tmp_path / "ct")
    ref = load_ct_series(tmp_path / "ct").hu_zyx.copy()
    for p in paths:
        _as_jpeg2000(p, tag)
    with warnings.catch_warnings(record=True) as w, recording_warnings() as recorded:
        warnings.simplefilter("always")
        ct = load_ct_series(tmp_path / "ct")
    assert np.array_equal(ct.hu_zyx, ref)   # lossless indeed
    lossy = [str(x.message) for x in w if "lossy" in str(x.message)]
    if said is None:
        assert lossy == []
    else:
        assert len(lossy) == 1 and re.search(said, lossy[0]) and "use the original CT series" in lossy[0], lossy
        assert any("lossy-compressed" in r for r in recorded)


@pytest.mark.parametrize("ts, tag, said", [
    ("1.2.840.10008.1.2.4.50", "00", r"were lossy-compressed \(LossyImageCompression \(0028,2110\) '00'; transfer "
                                     r"syntax JPEG Baseline, always lossy\)"),
    ("1.2.840.10008.1.2.4.51", None, r"were lossy-compressed \(LossyImageCompression \(0028,2110\) absent; transfer "
                                     r"syntax JPEG Extended, always lossy\)"),
    ("1.2.840.10008.1.2.4.90", None, None), ("1.2.840.10008.1.2.4.70", None, None),
    ("1.2.840.10008.1.2.4.203", "00", None),
    ("1.2.840.10008.1.2.4.203", None, r"may have been lossy-compressed \(transfer syntax HTJ2K"),
    ("1.2.840.10008.1.2.4.81", None, r"may have been lossy-compressed \(transfer syntax JPEG-LS Near-Lossless")])
def test_the_lossy_warning_follows_the_transfer_syntax_and_quotes_the_file(tmp_path, ts, tag, said):
    """The header side of the rule above, for syntaxes this machine may not decode: JPEG Baseline and Extended are
    always lossy (and the tag is quoted as the file gives it, '00' too); JPEG 2000 Lossless (.90) and JPEG Lossless
    (.70) never; HTJ2K (.203) and JPEG-LS Near-Lossless (.81) only where the file does not say "00"."""
    from mcproton._io.ct import _warn_lossy

    chosen = []
    for p in _ct(tmp_path / "ct"):
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        ds.file_meta.TransferSyntaxUID = ts
        if tag is not None:
            ds.LossyImageCompression = tag
        chosen.append((p, ds))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        _warn_lossy(chosen, tmp_path / "ct")
    lossy = [str(x.message) for x in w if "lossy" in str(x.message)]
    assert (lossy == []) if said is None else (len(lossy) == 1 and re.search(said, lossy[0])), lossy


def _secondary_capture(path, modality="CT"):
    """A scanner's dose report as a Secondary Capture image that says Modality CT (Siemens' "Patient Protocol")."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesDescription = modality, generate_uid(), "Patient Protocol"
    ds.Rows = ds.Columns = 16
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = bytes(256)
    ds.save_as(path, enforce_file_format=True)


def test_a_secondary_capture_dose_report_beside_the_slices_is_skipped_with_a_note(tmp_path):
    """The pacs audit (F8): a scanner's dose report (Secondary Capture, Modality CT) beside the slices counted as a
    second CT series, and the run was refused ("holds 2 CT series ... choose one").  Now skipped with a note; alone,
    it is named among the other objects of a folder that holds no CT slice."""
    _ct(tmp_path / "ct")
    ref = load_ct_series(tmp_path / "ct").hu_zyx.copy()
    _secondary_capture(tmp_path / "ct" / "dose_report.dcm")
    with pytest.warns(McprotonWarning, match=r"1 Secondary Capture image\(s\) \(dose_report.dcm; a screenshot such "
                                             r"as a scanner's dose report.*not CT slices: skipped"):
        ct = load_ct_series(tmp_path / "ct")
    assert np.array_equal(ct.hu_zyx, ref)
    (tmp_path / "alone").mkdir()
    _secondary_capture(tmp_path / "alone" / "dose_report.dcm")
    with pytest.raises(DicomInputError, match=r"no CT image slices found .*Secondary Capture Image x1"):
        load_ct_series(tmp_path / "alone")


def _undecodable_slice(folder, syntax):
    """A CT series in ``folder`` whose second slice says it is compressed as ``syntax`` and holds no such stream."""
    from pydicom.encaps import encapsulate

    paths = _ct(folder)
    ds = pydicom.dcmread(paths[1])
    ds.file_meta.TransferSyntaxUID = syntax
    ds.PixelData = encapsulate([b"\xff\xd8 not a JPEG stream \xff\xd9"])
    ds["PixelData"].VR = "OB"
    ds.save_as(paths[1], enforce_file_format=True)


def test_an_undecodable_compressed_slice_names_the_packages_to_install(tmp_path, monkeypatch):
    """The pacs audit (F8): the refusal of a CT whose compression pydicom cannot decode said "install pylibjpeg /
    gdcm"; it now gives the pip commands, and names the transfer syntax."""
    from pydicom.uid import JPEGLossless

    _undecodable_slice(tmp_path / "ct", JPEGLossless)
    with pytest.raises(DicomInputError, match=r"(?s)pixel data cannot be decoded .*JPEG Lossless.*pip install "
                                              r"pylibjpeg pylibjpeg-libjpeg.*python-gdcm"):
        load_ct_series(tmp_path / "ct")


def test_a_missing_decoder_is_named_as_such_not_as_a_damaged_file(tmp_path, monkeypatch):
    """With no decoder for the slice's compression installed, the refusal says so and names the pip command, not
    "the file is truncated/corrupted" (audit 27 encodings, F5c)."""
    from pydicom.uid import JPEGLosslessSV1

    import mcproton._io.ct as ct_module

    monkeypatch.setattr(ct_module, "missing_decoder", lambda uid: True, raising=False)   # as on a bare install
    _undecodable_slice(tmp_path / "ct", JPEGLosslessSV1)
    with pytest.raises(DicomInputError) as exc:
        load_ct_series(tmp_path / "ct")
    msg = str(exc.value)
    assert ("CT_0001.dcm: pixel data cannot be decoded here: they are compressed as JPEG Lossless, Non-Hierarchical, "
            "First-Order Prediction" in msg and "(1.2.840.10008.1.2.4.70), and no decoder for it is installed here"
            in msg and "`pip install pylibjpeg pylibjpeg-libjpeg` (or `pip install python-gdcm`)" in msg), msg
    assert "truncated" not in msg and "corrupted" not in msg


def test_the_fallback_advice_gives_the_pip_commands_of_the_decoder_table(tmp_path, monkeypatch):
    """A slice that cannot be decoded though its decoder is there (or cannot be told) ends with DECODER_ADVICE,
    whose pip commands are those of decoders.DECODER_GROUPS, written once (the re-read of 2026-12-07, d 3: ct.py
    spelt them out again); its words as they were."""
    from pydicom.uid import JPEGLosslessSV1

    import mcproton._io.ct as ct_module
    from mcproton._io import decoders

    assert {pip for _, _, pip, _ in decoders.DECODER_GROUPS} == {decoders.LIBJPEG, decoders.OPENJPEG, ""}
    advice = ("for JPEG Lossless and JPEG-LS `pip install pylibjpeg pylibjpeg-libjpeg`, for JPEG 2000 `pip install "
              "pylibjpeg pylibjpeg-openjpeg`, or `pip install python-gdcm` for all; or re-export the CT uncompressed")
    assert decoders.DECODER_ADVICE == advice
    monkeypatch.setattr(ct_module, "missing_decoder", lambda uid: False)   # a decoder there, and the slice damaged
    _undecodable_slice(tmp_path / "ct", JPEGLosslessSV1)
    with pytest.raises(DicomInputError) as exc:
        load_ct_series(tmp_path / "ct")
    msg = str(exc.value)
    assert "CT_0001.dcm: pixel data cannot be decoded (" in msg and msg.endswith(f": {advice}"), msg



def test_signed_words_labelled_unsigned_name_the_slice_and_pixel_representation(tmp_path):
    """Two's-complement words under PixelRepresentation 0 (a converter's error): air at -1000 HU is stored as 64536.
    Before (audit 27 encodings, F5a): "CT values 15..65517 HU are outside any plausible HU range; check
    RescaleSlope/RescaleIntercept", naming neither the file nor the tag at fault."""
    for p in _ct(tmp_path / "ct"):
        ds = pydicom.dcmread(p)
        ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 0, 16, 15
        ds.save_as(p)
    with pytest.raises(DicomInputError, match=r"CT_0000.dcm: its CT numbers 0\.\.64536 HU \(stored values "
                                              r"0\.\.64536 x RescaleSlope 1 \+ RescaleIntercept 0\) are outside any "
                                              r"plausible HU range: PixelRepresentation \(0028,0103\) says 0 "
                                              r"\(unsigned words\), but read as signed .* the slice gives -1000\.\.0 "
                                              r"HU: the words are most likely signed .*with PixelRepresentation 1"):
        load_ct_series(tmp_path / "ct")


def test_a_multi_frame_ct_image_storage_object_is_refused_as_such(tmp_path):
    """A CT Image Storage file holding two frames (NumberOfFrames 2).  Before (audit 27 encodings, F5b): "pixel array
    shape (2, 8, 8) differs from Rows x Columns 8 x 8", without saying multi-frame or what to do."""
    paths = _ct(tmp_path / "ct")
    ds = pydicom.dcmread(paths[0])
    ds.NumberOfFrames = 2
    ds.PixelData = ds.PixelData + pydicom.dcmread(paths[1]).PixelData
    ds.save_as(paths[0])
    paths[1].unlink()
    with pytest.raises(DicomInputError, match=r"CT_0000.dcm: a CT image holding 2 frames \(NumberOfFrames "
                                              r"\(0028,0008\) 2: .*multi-frame CT is not supported: export the CT "
                                              r"as classic single-frame CT Image Storage slices"):
        load_ct_series(tmp_path / "ct")


def test_an_image_of_another_sop_class_saying_modality_ct_is_named(tmp_path):
    """An MR Image Storage object saying Modality CT is read as a CT slice by its Modality, as before, but now with a
    warning naming its SOP class, as a CT Image Storage object saying Modality MR is warned about (audit 27 encodings,
    F6: before, not a word)."""
    ref = None
    for p in _ct(tmp_path / "ct"):
        ds = pydicom.dcmread(p)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
        ds.save_as(p)
    with pytest.warns(McprotonWarning, match=r"4 image\(s\) in .*ct \(CT_0000.dcm, CT_0001.dcm, CT_0002.dcm "
                                             r"\.\.\.\) say Modality 'CT' but are MR Image Storage objects \(SOP class "
                                             r"1.2.840.10008.5.1.4.1.1.4\), not CT Image Storage "
                                             r"\(1.2.840.10008.5.1.4.1.1.2\): read as CT slices by their Modality; "
                                             r"another modality's pixel values are not CT numbers"):
        ref = load_ct_series(tmp_path / "ct")
    assert ref.shape_zyx == (4, 8, 8)


def test_the_files_a_ct_warning_names_are_the_first_three():
    """ct._few: the one way the CT reader's warnings name their files (written four times before: the re-read of
    2026-12-07, d 6)."""
    from mcproton._io.ct import _few

    assert [_few([f"CT_{k}.dcm" for k in range(n)]) for n in (1, 3, 4)] == [
        "CT_0.dcm", "CT_0.dcm, CT_1.dcm, CT_2.dcm", "CT_0.dcm, CT_1.dcm, CT_2.dcm ..."]
