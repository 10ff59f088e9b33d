"""`mcproton phantom` and `mcproton demo` write a CT series into OUT/ct: a folder holding an earlier phantom series
of ours is emptied first (the new series replaces it whole); one holding anything else is refused, not written
into.  Before: a second phantom with fewer slices (coarser voxels) overwrote CT_0000..
and left the earlier series' last slices beside it, so OUT/ct held two series of two frames of reference, and
a patient's CT folder would have been mixed with a phantom."""
from __future__ import annotations

import pytest

from mcproton.cli import main as cli_main


def test_second_phantom_into_the_same_folder_replaces_the_first_whole(tmp_path, capsys):
    """The same --out twice (e.g. `mcproton demo` run again): the earlier phantom series is replaced whole, no slice
    of it left (before: a coarser second phantom overwrote CT_0000.. and left 18 old slices beside its 39)."""
    import pydicom

    out = tmp_path / "ph"
    args = ["phantom", "--age", "5", "--region", "head", "--no-rtstruct", "--out", str(out)]
    assert cli_main(args + ["--voxel-mm", "4"]) == 0
    n4 = len(list((out / "ct").iterdir()))
    assert cli_main(args + ["--voxel-mm", "6"]) == 0
    files = sorted((out / "ct").iterdir())
    assert 20 < len(files) < n4
    series = {pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID for f in files}
    assert len(series) == 1


def test_a_folder_with_other_files_is_refused_and_left_as_it_is(tmp_path, capsys):
    out = tmp_path / "ph"
    (out / "ct").mkdir(parents=True)
    (out / "ct" / "CT_0000.dcm").write_bytes(b"not a slice of ours")   # a name like ours, not our content
    before = {p.name: p.read_bytes() for p in (out / "ct").iterdir()}
    assert cli_main(["phantom", "--age", "5", "--region", "head", "--no-rtstruct", "--voxel-mm", "6", "--out",
                     str(out)]) == 2
    err = capsys.readouterr().err
    assert "already holds 1 file(s) that are not an earlier mcproton phantom CT" in err, err
    assert {p.name: p.read_bytes() for p in (out / "ct").iterdir()} == before   # nothing written or deleted


def test_demo_refuses_a_used_ct_folder_before_any_work(tmp_path):
    from mcproton.demo import run_demo

    (tmp_path / "ct").mkdir()
    (tmp_path / "ct" / "IM0001").write_bytes(b"a patient's slice")
    with pytest.raises(ValueError, match="already holds 1 file"):
        run_demo(tmp_path, backend="cpu", primaries=1000, voxel_mm=4, quiet=True)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["IM0001", "ct"]


@pytest.mark.parametrize("option, value", [("--primaries", "0"), ("--primaries", "-5"), ("--threads", "0")])
def test_demo_refuses_options_it_would_ignore_or_fail_on_late(tmp_path, capsys, option, value):
    """--primaries 0 ran the default 2.5 M histories (``primaries or default``); a negative count or --threads 0
    failed only after the phantom and the plan were made."""
    out = tmp_path / "demo"
    assert cli_main(["demo", "--out", str(out), "--backend", "cpu", "--voxel-mm", "4", option, value]) == 2
    err = capsys.readouterr().err
    assert option in err and value in err, err
    assert not out.exists()


def _foreign_rtstruct(path):
    """A structure set another system wrote (Manufacturer not mcproton)."""
    from pydicom.dataset import Dataset

    from mcproton._io.dicom_common import RT_STRUCTURE_SET_STORAGE, new_file_dataset, save_dataset

    ds, _ = new_file_dataset(path, RT_STRUCTURE_SET_STORAGE)
    ds.Modality, ds.Manufacturer, ds.PatientID = "RTSTRUCT", "RaySearch Laboratories", "WTR303030"
    ds.StructureSetROISequence = [Dataset()]
    save_dataset(ds, path)


def _foreign_hdf5(path):
    import h5py

    with h5py.File(path, "w") as f:
        f["dose"] = [1.0, 2.0]


@pytest.mark.parametrize("name, make", [("rtstruct.dcm", _foreign_rtstruct), ("phantom.h5", _foreign_hdf5)])
def test_phantom_refuses_a_file_it_did_not_write_before_writing_anything(tmp_path, capsys, name, make):
    """Phantom audit F4: a TPS structure set saved as OUT/rtstruct.dcm (or another program's phantom.h5) was
    replaced without a word; only OUT/ct/ was guarded.  Now refused, naming the file, and nothing is written."""
    out = tmp_path / "ph"
    out.mkdir()
    make(out / name)
    before = (out / name).read_bytes()
    assert cli_main(["phantom", "--age", "5", "--region", "head", "--voxel-mm", "6", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert name in err and "mcproton did not write" in err and "new output folder" in err, err
    assert len([line for line in err.splitlines() if line.startswith("mcproton: error")]) == 1, err
    assert sorted(p.name for p in out.iterdir()) == [name]   # no ct/, no other file
    assert (out / name).read_bytes() == before


def test_phantom_refused_for_a_foreign_file_leaves_the_earlier_phantom_s_ct(tmp_path, capsys):
    """An earlier phantom's folder where a planning system's structure set was saved as rtstruct.dcm: the refusal
    comes before anything is removed, so the earlier series is left whole (review 2a of 2026-12-07, R1: the CT folder
    was emptied by its check, before the structure set was refused)."""
    out = tmp_path / "ph"
    args = ["phantom", "--age", "5", "--region", "head", "--voxel-mm", "6", "--out", str(out)]
    assert cli_main(args) == 0
    _foreign_rtstruct(out / "rtstruct.dcm")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert len([p for p in before if p.parts[0] == "ct"]) > 20
    capsys.readouterr()
    assert cli_main(args) == 2
    assert "mcproton did not write" in capsys.readouterr().err
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_phantom_replaces_its_own_earlier_files(tmp_path, capsys):
    import pydicom

    out = tmp_path / "ph"
    args = ["phantom", "--age", "5", "--region", "head", "--voxel-mm", "6", "--out", str(out)]
    assert cli_main(args) == 0
    first = pydicom.dcmread(out / "rtstruct.dcm").SOPInstanceUID
    assert cli_main(args) == 0
    assert pydicom.dcmread(out / "rtstruct.dcm").SOPInstanceUID != first


def test_demo_refuses_a_foreign_structure_set_before_any_work(tmp_path):
    from mcproton.demo import run_demo

    _foreign_rtstruct(tmp_path / "rtstruct.dcm")
    with pytest.raises(ValueError, match=r"rtstruct\.dcm \(Manufacturer 'RaySearch Laboratories'\), which mcproton "
                                         "did not write"):
        run_demo(tmp_path, backend="cpu", primaries=1000, voxel_mm=4, quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rtstruct.dcm"]


def test_what_counts_as_written_by_mcproton(tmp_path):
    """The demo's other outputs: its figures (matplotlib's PNG) and summary.json are ours, a PNG or JSON of
    another program is not; a link is never replaced."""
    import json

    from mcproton.phantoms.dicom_export import written_by_mcproton
    from mcproton.plots import _plt, _save

    plt = _plt()
    _save(plt, plt.figure(), tmp_path / "dvh.png")
    assert written_by_mcproton(tmp_path / "dvh.png")[0]
    (tmp_path / "other.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    assert not written_by_mcproton(tmp_path / "other.png")[0]
    (tmp_path / "summary.json").write_text(json.dumps({"case": "x", "files": {}, "prescription_gy_rbe": 1.8}))
    assert written_by_mcproton(tmp_path / "summary.json")[0]
    (tmp_path / "notes.json").write_text('{"patient": "x"}')
    assert not written_by_mcproton(tmp_path / "notes.json")[0]
    (tmp_path / "link.png").symlink_to(tmp_path / "dvh.png")
    assert written_by_mcproton(tmp_path / "link.png") == (False, "a link")


@pytest.mark.parametrize("calibration", ["mcsquare_default", "no_such_calibration"])
def test_a_refused_phantom_leaves_no_folder(tmp_path, capsys, calibration):
    """Phantom audit F6.4: a calibration that does not cover the phantom's densities, or an unknown one, was refused
    after --out had been made, and left an empty folder behind."""
    out = tmp_path / "ph"
    assert cli_main(["phantom", "--age", "5", "--region", "head", "--voxel-mm", "6", "--out", str(out),
                     "--calibration", calibration]) == 2
    assert calibration in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("command", [["phantom", "--age", "5", "--voxel-mm", "8", "--region", "head"],
                                     ["demo", "--primaries", "1000", "--voxel-mm", "8", "--threads", "1"]])
def test_an_out_below_a_file_is_refused_before_the_phantom_is_made(command, tmp_path, capsys, monkeypatch):
    """Audit 26 exitcodes, F11: "[Errno 20] Not a directory: 'afile/p'" after the phantom was built (8 s)."""
    import mcproton.phantoms as phantoms
    from mcproton.phantoms import coverage

    def never(*a, **k):
        raise AssertionError("the phantom was made")

    monkeypatch.setattr(coverage, "make_head_phantom", never)
    monkeypatch.setattr(phantoms, "make_head_phantom", never)
    (tmp_path / "afile").write_text("x")
    assert cli_main([*command, "--out", str(tmp_path / "afile" / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'afile'} is a file, not a folder" in err and "Not a directory" not in err, err


def test_a_phantom_on_a_full_disk_says_what_out_holds(tmp_path, capsys, monkeypatch):
    """Audit 26 exitcodes, F11: "mcproton: error: [Errno 28] No space left on device: 'fs/p/rtstruct.dcm'" alone."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from full_disk import full_disk_at

    out = tmp_path / "p"
    full_disk_at(monkeypatch, out / "rtstruct.dcm")
    assert cli_main(["phantom", "--age", "5", "--voxel-mm", "8", "--region", "head", "--out", str(out)]) == 3
    err = capsys.readouterr().err
    assert "the phantom stopped: could not write" in err and "no space left on device" in err, err
    assert f"--out {out} holds this phantom's ct/ (31 slices, the whole series); not written: rtstruct.dcm, " \
        "phantom.h5" in err and "free disk space" in err, err
