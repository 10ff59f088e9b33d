"""A CT too large for the memory, or implausibly large, is refused from its headers before any pixel is read, and
running out of memory while reading its pixels says so (the hostile-input audit, F4: a 6 MB Deflated "bomb" and a
series of 10^4 slices drove the process to the memory limit, then were called "truncated/corrupted").  The memory
available is monkeypatched to a small number instead of making large files."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest

from mcproton._io import ct as ct_module
from mcproton._io.ct import load_ct_series, write_ct_series
from mcproton._io.errors import DicomInputError, McprotonEnvironmentError, PhaseMemoryError
from mcproton._run import inputs


def _series(tmp_path, n=3, size=16, dz=2.0):
    hu = np.zeros((n, size, size), np.int16)
    hu[:, : size // 2] = -1000
    folder = tmp_path / "ct"
    write_ct_series(hu, (1.0, 1.0, dz), (0.0, 0.0, 0.0), folder)
    return folder


def _count_pixel_reads(monkeypatch) -> list[int]:
    """How often the pixel pass reads a file (the header pass reads without pixels)."""
    calls = [0]
    read = ct_module._read

    def counted(path, *, pixels):
        calls[0] += pixels
        return read(path, pixels=pixels)

    monkeypatch.setattr(ct_module, "_read", counted)
    return calls


def _rewrite(folder, **attrs):
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(f)
        for k, v in attrs.items():
            setattr(ds, k, v)
        ds.save_as(f)


def test_series_beyond_the_memory_is_refused_before_its_pixels(tmp_path, monkeypatch):
    folder = _series(tmp_path)
    monkeypatch.setattr(inputs, "available_memory", lambda: inputs.Memory(10e3, 0.0, "the test's limit"))
    calls = _count_pixel_reads(monkeypatch)
    with pytest.raises(McprotonEnvironmentError, match=r"\(3 slices of 16 x 16 = 768 voxels, 0\.01 m long\) needs "
                       r"about 0\.0 GB of memory to be read, but only 0\.0 GB are available"
                       r" \(0\.0 GB of swap\), bounded by the test's limit: free memory") as e:
        load_ct_series(folder)
    assert calls[0] == 0
    assert "resample the CT" in str(e.value)
    # the estimate from the headers alone: 768 voxels x 2 bytes and the slices in flight in the reader; the
    # conversion to densities is the caller's (load_ct_series' conversion=; before 2026-12-07 768 x (2 + 7) here)
    need = ct_module.ct_memory_estimate([(None, pydicom.dcmread(next(folder.iterdir())))] * 3, 16, 16)
    assert need == 768 * 2 + 9 * 256 * 2 * 2 + 256 * 16
    monkeypatch.setattr(inputs, "available_memory", lambda: inputs.Memory(1.5 * need, 0.0))
    assert load_ct_series(folder).hu_zyx.shape == (3, 16, 16)   # enough: read
    assert calls[0] == 3


def test_implausible_slice_size_is_refused_before_its_pixels(tmp_path, monkeypatch):
    folder = _series(tmp_path)
    _rewrite(folder, Rows=16384, Columns=16384)
    calls = _count_pixel_reads(monkeypatch)
    with pytest.raises(DicomInputError, match=r"a CT slice of 16384 x 16384 pixels .* more than 4096 is refused "
                       r"\(0\.5 GB a slice\)"):
        load_ct_series(folder)
    assert calls[0] == 0


def test_series_longer_than_three_metres_is_refused(tmp_path, monkeypatch):
    folder = _series(tmp_path, n=4, dz=800.0)   # 3.2 m
    calls = _count_pixel_reads(monkeypatch)
    with pytest.raises(DicomInputError, match=r"is 3\.20 m long \(4 slices of 16 x 16 = 1024 voxels, 3\.20 m long\); "
                       r"a CT longer than 3 m"):
        load_ct_series(folder)
    assert calls[0] == 0
    assert load_ct_series(_series(tmp_path / "b", n=4, dz=700.0)).hu_zyx.shape == (4, 16, 16)   # 2.8 m: read


def test_deflated_slice_inflating_beyond_a_slice_is_refused(tmp_path, monkeypatch):
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    folder = _series(tmp_path, n=2, size=64)
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(f)
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        ds.save_as(f, enforce_file_format=True)
    assert load_ct_series(folder).hu_zyx.shape == (2, 64, 64)   # within the bound: read
    monkeypatch.setattr(ct_module, "MAX_CT_SLICE_INFLATED_BYTES", 4000)   # less than a slice of 64 x 64 x 2 bytes
    with pytest.raises(DicomInputError, match=r"its Deflated data set \(0\.0 MB on disk\) inflates to more than 0 MB, "
                       r"more than a CT slice of 4096 x 4096 32-bit pixels holds"):
        load_ct_series(folder)


def test_deflated_series_header_pass_keeps_no_inflated_pixels(tmp_path, monkeypatch):
    """The header pass of a Deflated Explicit VR series kept each file's inflated data set (pydicom's DicomBytesIO
    as the data set's ``buffer``, pixels included) with its header, so a series peaked at its inflated size before
    a pixel was read (hostile-input audit 17, F4, left undone).  Now the headers it keeps hold neither PixelData nor
    the inflated buffer (tracemalloc: under a quarter of a slice's 256 x 256 x 2 bytes kept per header, 19 kB, where
    the inflated slice held 131 kB more), and the series reads identically to the plain one."""
    import tracemalloc

    from pydicom.uid import DeflatedExplicitVRLittleEndian

    plain = tmp_path / "plain"
    hu = np.random.default_rng(1).integers(-1000, 1500, (4, 256, 256)).astype(np.int16)
    write_ct_series(hu, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), plain)
    deflated = tmp_path / "deflated"
    deflated.mkdir()
    for f in sorted(plain.iterdir()):
        ds = pydicom.dcmread(f)
        ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        ds.save_as(deflated / f.name, enforce_file_format=True)
    headers = []
    read = ct_module._read

    def kept(path, *, pixels):
        ds = read(path, pixels=pixels)
        if not pixels:
            headers.append(ds)
        return ds

    monkeypatch.setattr(ct_module, "_read", kept)
    a, b = load_ct_series(plain), load_ct_series(deflated)
    np.testing.assert_array_equal(a.hu_zyx, b.hu_zyx)
    assert a.origin_mm == b.origin_mm and a.voxel_size_mm == b.voxel_size_mm
    assert len(headers) == 8
    for ds in headers:
        assert "PixelData" not in ds and getattr(ds, "buffer", None) is None, ds.file_meta.TransferSyntaxUID
    tracemalloc.start()
    try:
        ds = read(next(deflated.iterdir()), pixels=False)
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert ds is not None and held < 256 * 256 * 2 / 4, held


@pytest.mark.parametrize("where", ["pixel_array", "volume"])
def test_out_of_memory_while_reading_the_pixels_names_the_ct(tmp_path, monkeypatch, capsys, where):
    """Before: "pixel data cannot be decoded (MemoryError ...); the file is truncated/corrupted ..." (pixel_array),
    or the run's advice of coarser dose voxels, which do not make the CT's read smaller."""
    folder = _series(tmp_path)
    if where == "pixel_array":
        def no_memory(self):
            raise MemoryError("Unable to allocate 512. MiB")

        monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(no_memory))
    else:
        def no_memory(*a, **k):
            raise MemoryError("Unable to allocate 4.88 GiB")

        monkeypatch.setattr(ct_module, "_rescale_slice", no_memory)
    with pytest.raises(PhaseMemoryError, match=r"out of memory while reading the pixels of the CT series in .*ct "
                       r"\(3 slices of 16 x 16 = 768 voxels, 0\.01 m long: about 0\.0 GB .*Unable to allocate") as e:
        load_ct_series(folder)
    assert "truncated" not in str(e.value) and "voxel_mm" not in str(e.value)
    from mcproton.cli import main

    assert main(["check", "--ct", str(folder), "--plan", str(tmp_path / "none.dcm"), "--beam-model", "dcpt_v5",
                 "--out", str(tmp_path / "out"), "--quiet"]) in (2, 3)   # refused or the machine, never a traceback


def test_out_of_memory_advice_of_check_names_no_config_key():
    from mcproton.cli import _out_of_memory_advice

    said = _out_of_memory_advice(MemoryError("Unable to allocate 9.8 GiB"), "check")
    assert said.startswith("out of memory (MemoryError: Unable to allocate 9.8 GiB); free memory")
    assert "phantom." not in said and "voxel_mm" not in said
    assert "phantom.dose_voxel_mm" in _out_of_memory_advice(MemoryError(), "run")
    ct_said = _out_of_memory_advice(PhaseMemoryError("out of memory while reading the pixels of the CT ..."), "check")
    assert ct_said == "out of memory while reading the pixels of the CT ..."
