"""A CT whose pixel words hold more bits than its BitsStored (0028,0101) and HighBit (0028,0102) say is refused (the
metal audit of 2026-12-06, F2): pydicom 3 keeps the low BitsStored bits of each word (masked, or sign-extended where
signed), a reader that takes the whole word does not, and the two differ in exactly the dense voxels.  Before, an
extended-HU export that kept a 12-bit header was read without a word with metal at 8000 HU as fat (-192 HU) and bone
at 1500 HU as -2596 HU (the scanner's padding outside the field of view, inside the patient: +16 mm of range behind
10 mm of bone).  A 12-bit CT whose words fit its header reads as before, in every transfer syntax pydicom decodes
without a plug-in."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest

from mcproton._io.ct import load_ct_series, write_ct_series
from mcproton._io.errors import DicomInputError


def _slab_hu(metal_hu: float) -> np.ndarray:
    """4 slices of 6 x 5 voxels: air in the first row, water, and a slab of ``metal_hu`` in rows 3-4 (as the audit's
    slab CT: air, water, a metal slab, water)."""
    hu = np.zeros((4, 6, 5), np.int64)
    hu[:, 0] = -1000
    hu[:, 3:5] = metal_hu
    return hu


def _ct(folder, stored, *, rep, intercept, bits=12, high=None, syntax="explicit", pad=None):
    """A CT series in ``folder`` whose slices store the words ``stored`` (z, y, x) with PixelRepresentation ``rep``,
    RescaleIntercept ``intercept``, BitsStored ``bits`` and HighBit ``high`` (default bits - 1), in the transfer syntax
    ``syntax`` ("explicit" little endian, "big" endian, "deflated" or "rle"); ``pad``: a PixelPaddingValue."""
    from pydicom.filewriter import dcmwrite
    from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, RLELossless

    paths = write_ct_series(np.zeros(stored.shape, np.int16), (2.0, 1.0, 2.0), (0.0, 0.0, 0.0), folder)
    dtype = "<i2" if rep else "<u2"
    assert np.array_equal(stored[0].astype(dtype).astype(np.int64), stored[0])   # the words fit 16 bits
    for k, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        ds.PixelRepresentation, ds.RescaleIntercept, ds.RescaleSlope = rep, intercept, 1
        if pad is not None:
            ds.add_new(0x00280120, "SS" if rep else "US", pad)
        ds.PixelData = stored[k].astype(dtype).tobytes()
        if syntax == "rle":   # pydicom's encoder refuses words beyond BitsStored: encoded as 16 bits, then relabelled
            ds.BitsStored, ds.HighBit = 16, 15
            ds.compress(RLELossless)
        ds.BitsStored, ds.HighBit = bits, bits - 1 if high is None else high
        if syntax == "big":
            ds.PixelData = stored[k].astype(">i2" if rep else ">u2").tobytes()
            ds.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
            dcmwrite(p, ds, little_endian=False, implicit_vr=False, force_encoding=True)
            continue
        if syntax == "deflated":
            ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        ds.save_as(p)
    return folder


# the audit's two CTs: the words of HU + 1024 (intercept -1024) under a 12-bit header, unsigned with metal at
# 8000 HU (word 9024) and signed with bone at 1500 HU (word 2524)
AUDIT_CTS = {
    "unsigned_metal_8000": (0, 8000.0, r"16/12/11, PixelRepresentation 0: 10 of the slice's 30 pixels hold stored "
                                       r"values outside the 12-bit unsigned range 0\.\.4095 that BitsStored 12 gives; "
                                       r"the most extreme, 9024, is 8000 HU as the whole 16-bit word but -192 HU from "
                                       r"its low 12 bits \(masked"),
    "signed_bone_1500": (1, 1500.0, r"16/12/11, PixelRepresentation 1: 10 of the slice's 30 pixels hold stored "
                                    r"values outside the 12-bit signed range -2048\.\.2047 that BitsStored 12 gives; "
                                    r"the most extreme, 2524, is 1500 HU as the whole 16-bit word but -2596 HU from "
                                    r"its low 12 bits \(sign-extended"),
}


@pytest.mark.parametrize("syntax", ["explicit", "big", "deflated", "rle"])
@pytest.mark.parametrize("case", sorted(AUDIT_CTS))
def test_the_audits_ct_whose_words_exceed_bits_stored_is_refused(tmp_path, case, syntax):
    """Before: read as -192 HU (metal) and -2596 HU (bone) without a word.  The message names the file, the header,
    the most extreme word, what it reads as either way and what to do, in every transfer syntax (big endian; Deflated;
    RLE, checked after decompression)."""
    rep, metal, says = AUDIT_CTS[case]
    folder = _ct(tmp_path / "ct", _slab_hu(metal) + 1024, rep=rep, intercept=-1024, syntax=syntax)
    with pytest.raises(DicomInputError, match=r"CT_0000\.dcm: BitsAllocated/BitsStored/HighBit " + says) as exc:
        load_ct_series(folder)
    msg = str(exc.value)
    assert "\n" not in msg
    assert "export the CT again with BitsStored 16 and HighBit 15" in msg and "extended-HU scale" in msg, msg


def test_run_and_check_refuse_the_audits_ct(tmp_path):
    """`mcproton run` (its geometry, mcproton.config.build_geometry: a config error naming [phantom]) and `mcproton
    check` (_check/compute.py build_geometry) read the CT through load_ct_series: both refuse it."""
    from mcproton._check.compute import build_geometry as check_geometry
    from mcproton._check.inputs import TPSDose
    from mcproton.config import ConfigError, build_geometry as run_geometry

    folder = _ct(tmp_path / "ct", _slab_hu(8000.0) + 1024, rep=0, intercept=-1024)
    with pytest.raises(ConfigError, match=r"\[phantom\]: .*CT_0000\.dcm: .*the most extreme, 9024, is 8000 HU"):
        run_geometry({"phantom": {"type": "ct", "ct_dir": str(folder)}})
    grid = TPSDose("RD.dcm", np.zeros((2, 3, 3)), (4.0, 4.0, 4.0), (1.0, 1.0, 1.0), "", "PHYSICAL", "PLAN", None)
    with pytest.raises(DicomInputError, match="the most extreme, 9024, is 8000 HU"):
        check_geometry(folder, "schneider2000", grid)


@pytest.mark.parametrize("syntax", ["explicit", "big", "deflated", "rle"])
def test_a_12_bit_ct_whose_words_fit_reads_as_before(tmp_path, syntax):
    """Unsigned HU + 1024 up to 3071 HU (word 4095, the top of the 12-bit scale) and signed, sign-extended words
    down to -2048 under a 12-bit header read exactly, without a warning."""
    import warnings

    hu = _slab_hu(3071.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ct = load_ct_series(_ct(tmp_path / "u", hu + 1024, rep=0, intercept=-1024, syntax=syntax))
        assert np.array_equal(ct.hu_zyx, hu)
        hu[:, 5] = -2048
        hu[:, 3:5] = 2047
        ct = load_ct_series(_ct(tmp_path / "s", hu, rep=1, intercept=0, syntax=syntax))
        assert np.array_equal(ct.hu_zyx, hu)


def test_signed_words_that_are_not_sign_extended_are_refused(tmp_path):
    """-2000 HU stored in 12 signed bits without sign extension (word 2096): DICOM's reading gives -2000, the whole
    word 2096 HU: the readers disagree, refused (a writer that fills the unused bits so is not to be guessed)."""
    hu = _slab_hu(1000.0)
    stored = hu.copy()
    stored[:, 0] = -2000 & 0x0FFF   # 2096
    with pytest.raises(DicomInputError, match=r"the most extreme, 2096, is 2096 HU as the whole 16-bit word but "
                                              r"-2000 HU from its low 12 bits \(sign-extended"):
        load_ct_series(_ct(tmp_path / "ct", stored, rep=1, intercept=0))


def test_a_high_bit_above_bits_stored_minus_one_is_refused(tmp_path):
    """BitsStored 12 with HighBit 15: the header puts the stored bits at 4..15, pydicom reads 0..11 (before: read so
    without a word); refused whatever the words."""
    with pytest.raises(DicomInputError, match=r"CT_0000\.dcm: BitsAllocated/BitsStored/HighBit 16/12/15, "
                                              r"PixelRepresentation 0: the header puts the 12 stored bits of each "
                                              r"pixel at bits 4\.\.15 .*HighBit = BitsStored - 1"):
        load_ct_series(_ct(tmp_path / "ct", _slab_hu(1000.0) + 1024, rep=0, intercept=-1024, high=15))
    with pytest.raises(DicomInputError, match=r"16/17/15.*not a consistent pixel header"):
        load_ct_series(_ct(tmp_path / "ct17", _slab_hu(1000.0) + 1024, rep=0, intercept=-1024, bits=17, high=15))


def test_a_high_bit_below_bits_stored_minus_one_checks_the_narrower_range(tmp_path):
    """BitsStored 16 with HighBit 11: a reader that takes HighBit reads 12 bits, pydicom 16.  Words that fit 12 bits
    read alike (accepted, exactly); a word beyond them is refused."""
    hu = _slab_hu(3000.0)
    ct = load_ct_series(_ct(tmp_path / "fit", hu + 1024, rep=0, intercept=-1024, bits=16, high=11))
    assert np.array_equal(ct.hu_zyx, hu)
    with pytest.raises(DicomInputError, match=r"16/16/11.*outside the 12-bit unsigned range 0\.\.4095 that HighBit 11 "
                                              r"\(bits 0\.\.11, though BitsStored says 16\) gives; the most extreme, "
                                              r"9024, is 8000 HU"):
        load_ct_series(_ct(tmp_path / "over", _slab_hu(8000.0) + 1024, rep=0, intercept=-1024, bits=16, high=11))


def test_a_padding_value_beyond_bits_stored_marks_the_outside(tmp_path):
    """An unsigned 12-bit CT whose PixelPaddingValue 63536 (-2000 as 16 signed bits) lies beyond BitsStored: the
    padding is not refused, and is read as padding (before: pydicom masked 63536 to 2096, which no longer matched the
    padding value, so the outside of the image read as 1072 HU, bone); a word beyond BitsStored that is not the
    padding value is still refused."""
    from mcproton import McprotonWarning
    from mcproton._io.ct import PADDING_REMAP_HU

    stored = _slab_hu(1000.0) + 1024
    stored[:, :, 0] = 63536   # the first column: outside the reconstructed image
    with pytest.warns(McprotonWarning, match=r"PixelPaddingValue \(0028,0120\) .*reads as 62512 HU"):
        ct = load_ct_series(_ct(tmp_path / "pad", stored, rep=0, intercept=-1024, pad=63536))
    assert (ct.hu_zyx[:, :, 0] == PADDING_REMAP_HU).all() and (ct.hu_zyx[:, 1:3, 1:] == 0).all()
    stored[:, 4, 3] = 9024
    with pytest.raises(DicomInputError, match=r"1 of the slice's 30 pixels .* the most extreme, 9024, is 8000 HU"):
        load_ct_series(_ct(tmp_path / "metal", stored, rep=0, intercept=-1024, pad=63536))


def test_an_8_bit_ct_is_refused_as_a_display_export(tmp_path):
    """A viewer's windowed 8-bit export that kept the CT SOP class and the scanner's rescale (slope 1, intercept
    -1024): the CT Image Module requires BitsAllocated 16 and BitsStored 12-16 (PS3.3 C.8.2.1.1.4-5).  Before (audit 27
    encodings, F3) it was read as HU -1024..-769, the patient as air, and a run was stopped only where more than half
    the beam's energy left the grid (the message then blamed the beam)."""
    hu = _slab_hu(1000.0)
    window = np.clip((hu - 40 + 200) * 255 / 400, 0, 255).astype(np.uint8)   # W400/L40 to 0..255
    paths = write_ct_series(np.zeros(hu.shape, np.int16), (2.0, 1.0, 2.0), (0.0, 0.0, 0.0), tmp_path / "ct")
    for k, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
        ds.PixelData = window[k].tobytes()
        ds.save_as(p)
    with pytest.raises(DicomInputError, match=r"CT_0000.dcm: BitsAllocated/BitsStored/HighBit 8/8/7, "
                                              r"PixelRepresentation 0: a CT image stores its CT numbers in 16-bit "
                                              r"words of 12 to 16 bits .*a display export .*its 8-bit values 0\.\.255 "
                                              r"would read as -1024\.\.-769 HU: export the original CT series"):
        load_ct_series(tmp_path / "ct")


def test_fewer_than_12_stored_bits_are_refused(tmp_path):
    """BitsStored 10 (values -512..511 signed): outside the CT Image Module's 12-16, refused naming it and why (too
    few bits; before the review of 2026-12-07, R3: "the values above the stored bits are lost")."""
    hu = np.clip(_slab_hu(400.0), -512, 511)
    with pytest.raises(DicomInputError, match=r"BitsAllocated/BitsStored/HighBit 16/10/9, PixelRepresentation 1: a CT "
                                              r"image stores its CT numbers in 16-bit words of 12 to 16 bits .*this "
                                              r"one stores 10-bit values, too few for a patient's CT numbers"):
        load_ct_series(_ct(tmp_path / "ct", hu, rep=1, intercept=0, bits=10))


@pytest.mark.parametrize("rep", [0, 1])
def test_an_embedded_overlay_is_named_and_no_header_edit_is_advised(tmp_path, rep):
    """A 12-bit CT whose group 6000 declares an overlay embedded in bit 12 of the words (OverlayBitsAllocated 16,
    OverlayBitPosition 12: the encoding retired in 2004, still in old archives).  Still refused, but the message names
    the overlay and warns against BitsStored 16: before (audit 27 encodings, F4) it advised exporting "with BitsStored
    16 and HighBit 15", which, done by editing the header, reads the annotation as CT numbers (+4096 HU)."""
    hu = _slab_hu(1000.0)
    words = hu + 1024 if rep == 0 else hu.copy()
    line = np.zeros(hu.shape, bool)
    line[:, 2, 1:4] = True   # a line of annotation in bit 12
    words = np.where(line, (words & 0xFFFF) | (1 << 12), words)
    if rep:   # signed: the overlay bit set in words whose 12-bit value is positive, as a writer or'ing it in does
        words = words.astype(np.uint16).astype(np.int16).astype(np.int64)
    folder = _ct(tmp_path / "ct", words, rep=rep, intercept=-1024 if rep == 0 else 0)
    for p in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(p)
        ds.add_new(0x60000010, "US", ds.Rows)
        ds.add_new(0x60000011, "US", ds.Columns)
        ds.add_new(0x60000040, "CS", "G")
        ds.add_new(0x60000050, "SS", [1, 1])
        ds.add_new(0x60000100, "US", 16)
        ds.add_new(0x60000102, "US", 12)
        ds.save_as(p)
    with pytest.raises(DicomInputError) as exc:
        load_ct_series(folder)
    msg = str(exc.value)
    assert ("These bits are an embedded overlay that the file declares (group 6000: OverlayBitPosition 12, with "
            "OverlayBitsAllocated 16" in msg), msg
    assert "Do not set BitsStored to 16" in msg and "export the CT again with BitsStored 16" not in msg


def _as_32_bit(folder, hu: np.ndarray, *, rep=1, intercept=0, stored=32):
    """``hu`` written as a CT series of 32-bit words (BitsAllocated 32, BitsStored ``stored``, PixelRepresentation
    ``rep``), RescaleIntercept ``intercept``: a converter's int32 image."""
    paths = write_ct_series(np.zeros(hu.shape, np.int16), (2.0, 1.0, 2.0), (0.0, 0.0, 0.0), folder)
    for k, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 32, stored, stored - 1, rep
        ds.RescaleSlope, ds.RescaleIntercept = 1, intercept
        ds.PixelData = (hu[k] - intercept).astype("<i4" if rep else "<u4").tobytes()
        ds.save_as(p)
    return folder


@pytest.mark.parametrize("rep,intercept,stored", [(1, 0, 32), (0, -1024, 32), (1, 0, 16), (0, -1024, 12)])
def test_a_32_bit_ct_of_whole_ct_numbers_reads_as_its_16_bit_original(tmp_path, rep, intercept, stored):
    """A CT written as 32-bit words (a converter's int32 image; outside the CT Image Module, which requires 16) holds
    the CT numbers whole: read as the same HU as the 16-bit series, as before 2026-12-07.  The review of 2026-12-07
    (R3) found it refused since that day's 8-bit refusal, with "the values above the stored bits are lost"."""
    hu = _slab_hu(1500.0)
    hu[:, 1, 0] = -1024
    ct16 = load_ct_series(_ct(tmp_path / "ct16", hu, rep=1, intercept=0, bits=16))
    ct32 = load_ct_series(_as_32_bit(tmp_path / "ct32", hu, rep=rep, intercept=intercept, stored=stored))
    assert np.array_equal(ct32.hu_zyx, ct16.hu_zyx) and ct32.hu_zyx.dtype == ct16.hu_zyx.dtype
    assert np.array_equal(ct32.hu_zyx, hu)


def test_a_32_bit_ct_beyond_any_ct_number_is_refused(tmp_path):
    """32-bit words whose values leave the int16 range of any CT (here 100000 HU) are refused naming the slice, as a
    16-bit slice's rescale beyond it is; and a 24-bit word (no reader's) is refused naming its word size."""
    hu = _slab_hu(100000.0)
    with pytest.raises(DicomInputError, match=r"CT_0000.dcm: its CT numbers -1000\.\.100000 HU .* are outside any "
                                              r"plausible HU range"):
        load_ct_series(_as_32_bit(tmp_path / "ct", hu))
    paths = write_ct_series(np.zeros((2, 3, 4), np.int16), (2.0, 1.0, 2.0), (0.0, 0.0, 0.0), tmp_path / "ct24")
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 24, 16, 15
        ds.PixelData = bytes(3 * 3 * 4)
        ds.save_as(p)
    with pytest.raises(DicomInputError, match=r"BitsAllocated/BitsStored/HighBit 24/16/15, PixelRepresentation 1: .*"
                                              r"this one stores its values in 24-bit words, which mcproton does not "
                                              r"read \(16, or 32 whole CT numbers\).*: export the original CT series"):
        load_ct_series(tmp_path / "ct24")


@pytest.mark.parametrize("bits, rep, values", [(12, 0, (0, 4095)), (12, 1, (-2048, 2047)), (16, 0, (0, 65535)),
                                               (16, 1, (-32768, 32767)), (8, 0, (0, 255)), (1, 0, (0, 1))])
def test_the_stored_range_is_one_rule_for_both_refusals(bits, rep, values, monkeypatch):
    """The values of ``bits`` stored bits (PS3.5 8.1.1: two's complement where PixelRepresentation is 1): one helper,
    ct._stored_range, for the refusal of a header that is no CT's (_not_ct_bits) and of words beyond BitsStored
    (_check_stored_bits): before, each wrote the formula (the re-read of 2026-12-07, d 7).  Both are shown to take
    it from there by a range put in its place."""
    from pathlib import Path
    from types import SimpleNamespace

    from mcproton._io import ct

    assert ct._stored_range(bits, rep) == values
    monkeypatch.setattr(ct, "_stored_range", lambda b, r: (-7, 7))
    said = ct._not_ct_bits(SimpleNamespace(get=lambda k, d=None: d), Path("CT_0.dcm"), "header", 8, 8, 0)
    assert "its 8-bit values -7..7 would read as -7..7 HU" in said, said
    with pytest.raises(DicomInputError, match=r"outside the 12-bit unsigned range -7..7"):
        ct._check_stored_bits(SimpleNamespace(get=lambda k, d=None: d), np.array([[0, 9]], np.uint16),
                              (16, 12, 11, 0), Path("CT_0.dcm"), 1.0, 0.0)
