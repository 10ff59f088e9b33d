"""Deep nesting (audit 17 hostile F9): a sequence nested 100,000 deep in any DICOM file of the folder, or a folder
tree 1100 levels deep, stopped ``mcproton check`` with "maximum recursion depth exceeded" and no file named.  A file
nested deeper than MAX_SEQUENCE_DEPTH is refused naming it; in a check folder one of an object the check does not
read (an SR) is skipped with a note; the folder walk stops MAX_FOLDER_DEPTH levels down, saying where."""
from __future__ import annotations

import struct
import sys
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
from dicom_factories import make_plan, save

from mcproton._check.inputs import MAX_FOLDER_DEPTH, _scan, walk_files
from mcproton._io.dicom_common import MAX_SEQUENCE_DEPTH, read_dicom_file
from mcproton._io.errors import CheckInputError, DicomInputError


def _nested(depth: int) -> bytes:
    """A private creator (7FE1,0010) and a private sequence (7FE1,1010) nested ``depth`` deep, explicit VR LE,
    undefined lengths: the bytes to append to a data set."""
    creator = b"NEST"
    head = struct.pack("<HH", 0x7FE1, 0x0010) + b"LO" + struct.pack("<H", len(creator)) + creator
    open_ = (struct.pack("<HH", 0x7FE1, 0x1010) + b"SQ\0\0" + struct.pack("<L", 0xFFFFFFFF)
             + struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF))
    close = struct.pack("<HHL", 0xFFFE, 0xE00D, 0) + struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
    return head + open_ * depth + close * depth


def _plan(path: Path, depth: int = 0, sop_class: str | None = None) -> Path:
    ds = make_plan([{"gantry": 0.0, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "layers": [(70.0, [(0.0, 0.0)], [1.0])]}])
    if sop_class:   # another object (an SR) with the same content: what matters is its file meta's SOP class
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = sop_class
        ds.Modality = "SR"
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    save(ds, path)
    if depth:
        path.write_bytes(path.read_bytes() + _nested(depth))
    return path


def test_a_file_nested_too_deep_is_refused_naming_it(tmp_path):
    read_dicom_file(_plan(tmp_path / "ok.dcm", MAX_SEQUENCE_DEPTH - 2))   # deep, but within the bound
    for depth in (MAX_SEQUENCE_DEPTH + 5, 10_000):
        p = _plan(tmp_path / f"RP_{depth}.dcm", depth)
        with pytest.raises(DicomInputError, match=f"{p.name}: its sequences are nested deeper than "
                                                  f"{MAX_SEQUENCE_DEPTH} levels"):
            read_dicom_file(p)


def test_a_check_folder_skips_an_unread_object_nested_too_deep_and_refuses_a_plan(tmp_path):
    folder = tmp_path / "patient"
    folder.mkdir()
    _plan(folder / "RP.dcm")
    _plan(folder / "SR_report.dcm", 10_000, sop_class="1.2.840.10008.5.1.4.1.1.88.11")   # Basic Text SR
    notes: list[str] = []
    found, _, _ = _scan(folder, notes=notes)
    assert [p.name for p in found["RTPLAN"]] == ["RP.dcm"]
    assert any(n.startswith("skipped SR_report.dcm (Basic Text SR Storage, which the check does not read): its "
                            "sequences are nested deeper") for n in notes), notes
    _plan(folder / "RP2.dcm", 10_000)   # a plan: it may be the one to check, so the check stops, naming it
    with pytest.raises(CheckInputError, match="RP2.dcm: its sequences are nested deeper"):
        _scan(folder, notes=[])


def test_a_folder_tree_deeper_than_the_bound_is_walked_to_the_bound(tmp_path):
    (tmp_path / "top.dcm").write_text("x")
    import os

    deep = str(tmp_path)
    for _ in range(1100):   # os.walk recursed once per level: past Python's limit of 1000 (os.makedirs too)
        deep += "/d"
        os.mkdir(deep)
    with open(os.path.join(deep, "note.txt"), "w") as f:
        f.write("hi")
    (tmp_path.joinpath(*(["d"] * 3)) / "mid.txt").write_text("mid")
    try:
        notes: list[str] = []
        files = walk_files(tmp_path, notes)
        assert [p.relative_to(tmp_path).as_posix() for p in files] == ["d/d/d/mid.txt", "top.dcm"]
        assert notes == [f"skipped the folders below {'/'.join(['d'] * MAX_FOLDER_DEPTH)}: more than "
                         f"{MAX_FOLDER_DEPTH} levels below the patient folder"]
    finally:   # removed bottom up here: shutil.rmtree (pytest's clean-up of old tmp folders) recurses per level
        os.remove(os.path.join(deep, "note.txt"))
        while deep != str(tmp_path.joinpath(*(["d"] * 4))):
            os.rmdir(deep)
            deep = os.path.dirname(deep)
