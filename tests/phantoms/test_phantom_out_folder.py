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
