"""What a file in a patient folder claims does not decide how much memory reading it takes (untrusted-input audit 29).

F1: a Deflated file of a few MB whose data set inflates to gigabytes (3.9 MB -> 4 GB) was inflated whole by the
check's folder scan (``read_dicom_file``) and by every header read (``read_dicom_header``, pydicom inflating it),
which stopped the check "out of memory" without naming the file.  Now any Deflated data set inflating beyond
``MAX_INFLATED_BYTES`` (1 GiB; made small here) is refused, naming the file, its inflated bytes counted a chunk at a
time and not kept.
F2: a file named like DICOM (no suffix: ``backup``) was read whole before its first 132 bytes said it is not DICOM:
4 GB read into memory, or "out of memory".  Now only its first 132 bytes are read.

The memory is measured with tracemalloc (Python's allocations: numpy's, zlib's and pydicom's buffers among them),
deterministic: no timing.
"""
from __future__ import annotations

import struct
import tracemalloc
import zlib
from pathlib import Path

import pydicom
import pytest

from mcproton._io import dicom_common
from mcproton._io.dicom_common import read_dicom_file, read_dicom_header
from mcproton._io.errors import DicomInputError

MB = 1 << 20
#: a plain (not Deflated) RT Ion Plan of the test data, found from this file, so that the tests run from any folder
#: (before, a path relative to the working folder: four tests failed when run from tests/; isolation audit 32, F2)
PLAN = Path(__file__).resolve().parents[1] / "data" / "dicom" / "RN_plan02_mono.dcm"
#: the data set the bomb inflates to (bytes), and the bound it is read under (MAX_INFLATED_BYTES monkeypatched)
INFLATED, LIMIT = 48 * MB, 4 * MB


def _element(group: int, elem: int, vr: bytes, value: bytes) -> bytes:
    if vr in (b"OB", b"UN", b"SQ", b"UT"):
        return struct.pack("<HH", group, elem) + vr + b"\0\0" + struct.pack("<L", len(value)) + value
    return struct.pack("<HH", group, elem) + vr + struct.pack("<H", len(value)) + value


def _deflated_plan(path, zeros: int) -> None:
    """A Part 10 file, Deflated Explicit VR Little Endian, SOP class RT Ion Plan, whose data set is a private OB of
    ``zeros`` zero bytes: a few kB on disk."""
    sop, uid = b"1.2.840.10008.5.1.4.1.1.481.8", b"1.2.3.4.5.6\0"
    meta = (_element(2, 1, b"OB", b"\0\1") + _element(2, 2, b"UI", sop) + _element(2, 3, b"UI", uid)
            + _element(2, 0x10, b"UI", b"1.2.840.10008.1.2.1.99\0"))
    meta = _element(2, 0, b"UL", struct.pack("<L", len(meta))) + meta
    data = (_element(8, 0x16, b"UI", sop) + _element(8, 0x18, b"UI", uid) + _element(8, 0x60, b"CS", b"RTPLAN")
            + _element(9, 0x10, b"LO", b"BOMB") + struct.pack("<HH", 9, 0x1000) + b"OB\0\0"
            + struct.pack("<L", zeros))
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = c.compress(data) + b"".join(c.compress(bytes(MB)) for _ in range(zeros // MB)) + c.flush()
    path.write_bytes(b"\0" * 128 + b"DICM" + meta + body)


def _peak(fn) -> int:
    """The peak of Python's allocations (bytes) while ``fn()`` runs, its exception swallowed."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        try:
            fn()
        except DicomInputError:
            pass
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("reader", [read_dicom_file, read_dicom_header], ids=["file", "header"])
def test_a_deflated_file_inflating_beyond_the_bound_is_refused_without_inflating_it(tmp_path, monkeypatch, reader):
    bomb = tmp_path / "zz.dcm"
    _deflated_plan(bomb, INFLATED)
    assert bomb.stat().st_size < INFLATED // 100   # what it claims is 100 x its size at least
    monkeypatch.setattr(dicom_common, "MAX_INFLATED_BYTES", LIMIT, raising=False)
    with pytest.raises(DicomInputError, match=r"zz\.dcm: its Deflated data set \(0\.\d MB on disk\) inflates to "
                       r"more than 4 MB, more than any DICOM object that mcproton reads holds .*export it again "
                       r"\(uncompressed\), or remove it"):
        reader(bomb)
    # before: the whole 48 MB inflated (pydicom's, or check_complete's unbounded decompress) before anything else
    assert _peak(lambda: reader(bomb)) < LIMIT


def test_a_deflated_file_within_the_bound_reads_as_the_plain_one(tmp_path, monkeypatch):
    """The bound refuses only what exceeds it: a real plan written Deflated reads as written, by both readers."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    plain = pydicom.dcmread(PLAN)
    plain.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    path = tmp_path / "RN_deflated.dcm"
    plain.save_as(path, enforce_file_format=True)
    # the plan's ~50 kB data set is far below the bound
    monkeypatch.setattr(dicom_common, "MAX_INFLATED_BYTES", LIMIT, raising=False)
    for ds in (read_dicom_file(path), read_dicom_header(path)):
        assert ds.SOPInstanceUID == plain.SOPInstanceUID
        assert len(ds.IonBeamSequence[0].IonControlPointSequence) == len(plain.IonBeamSequence[0]
                                                                          .IonControlPointSequence)


def test_a_large_file_that_is_not_dicom_is_not_read_whole(tmp_path):
    """A 64 MB file named like DICOM (no suffix) that is not DICOM: None, from its first bytes (a sparse file: no disk
    used).  Before, read_dicom_file read all 64 MB first."""
    big = tmp_path / "backup"
    with open(big, "wb") as f:
        f.truncate(64 * MB)
    assert read_dicom_file(big) is None
    assert _peak(lambda: read_dicom_file(big)) < MB


def test_a_pipe_is_still_read_as_before(tmp_path):
    """What is not a regular file (a named pipe given as the plan) is read whole once, as before: its first bytes
    are not read apart (they could not be read again)."""
    import os
    import threading

    plan = PLAN.read_bytes()
    fifo = tmp_path / "plan.fifo"
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes on this platform")
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "wb") as f:
            f.write(plan)

    t = threading.Thread(target=feed)
    t.start()
    try:
        ds = read_dicom_file(fifo)
    finally:
        t.join(10)
    assert ds.SOPInstanceUID == pydicom.dcmread(PLAN).SOPInstanceUID


def test_a_deflated_pipe_is_read_once(tmp_path):
    """Review a of audit 29, R3: a Deflated plan given through a named pipe (or bash's ``<(...)``) was read whole, then
    opened again to count its inflated bytes, and that open waited for a writer that was gone: the read hung for
    ever.  Now counted from the bytes read.  No timing is judged: should the reader open the pipe again, a second
    writer gives it bytes that are not deflate data (after the first reader's read has had 30 s), and the read
    fails instead of hanging."""
    import os
    import threading

    from pydicom.uid import DeflatedExplicitVRLittleEndian

    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes on this platform")
    plain = pydicom.dcmread(PLAN)
    plain.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    path = tmp_path / "RN_deflated.dcm"
    plain.save_as(path, enforce_file_format=True)
    fifo = tmp_path / "plan.fifo"
    os.mkfifo(fifo)
    done = threading.Event()

    def feed():
        with open(fifo, "wb") as f:
            f.write(path.read_bytes())
        if not done.wait(30):   # a reader that opened the pipe again: given non-deflate bytes, not left waiting
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:   # no reader waiting
                return
            try:
                os.write(fd, b"\xff" * 4096)
            finally:
                os.close(fd)

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    try:
        ds = read_dicom_file(fifo)
    finally:
        done.set()
        t.join(60)
    assert ds.SOPInstanceUID == plain.SOPInstanceUID


def test_a_deflated_data_set_counted_once_is_not_inflated_again_to_count_it(tmp_path, monkeypatch):
    """Audit 30, lefts F5: ``mcproton check`` reads a Deflated CT slice's header in its folder scan (counted: inflated
    to count its bytes), then the CT reader's checked read counted it again before walking it: the counts were 21-24 %
    of the CPU of that read.  Now the size counted is remembered by a digest of the compressed bytes: the checked
    read inflates the data set once (to walk it), not twice.  The bound still holds on what was remembered: the same
    bytes read under a smaller bound are refused without inflating them (tracemalloc)."""
    import zlib as zlib_module

    from pydicom.uid import DeflatedExplicitVRLittleEndian

    plain = pydicom.dcmread(PLAN)
    plain.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    path = tmp_path / "RN_deflated.dcm"
    plain.save_as(path, enforce_file_format=True)
    monkeypatch.setattr(dicom_common, "_COUNTED", {}, raising=False)
    made = []
    real = zlib_module.decompressobj
    monkeypatch.setattr(zlib_module, "decompressobj", lambda *a, **k: made.append(a) or real(*a, **k))
    assert read_dicom_header(path).SOPInstanceUID == plain.SOPInstanceUID
    assert len(made) == 1   # counted (pydicom inflates with zlib.decompress)
    made.clear()
    assert read_dicom_file(path).SOPInstanceUID == plain.SOPInstanceUID
    assert len(made) == 1, made   # the structure walk's inflate only; before, the count's too (2)
    assert len(dicom_common._COUNTED) == 1
    bomb = tmp_path / "zz.dcm"
    _deflated_plan(bomb, INFLATED)
    read_dicom_header(bomb)   # within the default 1 GiB: read, and its 48 MB remembered
    with pytest.raises(DicomInputError, match=r"zz\.dcm: its Deflated data set .* inflates to more than 4 MB"):
        read_dicom_file(bomb, max_inflated_bytes=LIMIT, inflated_what="a test's bound")
    assert _peak(lambda: read_dicom_file(bomb, max_inflated_bytes=LIMIT, inflated_what="x")) < LIMIT
