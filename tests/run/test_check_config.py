"""``mcproton run CONFIG --check-config`` (every check before the transport, nothing written) and what a new user
meets on the way: --out forgotten, no [phantom] section, relative paths (from the config file's folder, else from
the current folder; README "Config reference")."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from make_bad_input_table import BASE, PLAN, SLAB_CT

from mcproton.cli import main

ROOT = Path(__file__).resolve().parents[2]
PLAN05 = ROOT / "tests" / "data" / "dicom" / "RP_plan05.dcm"


@pytest.fixture
def no_transport(monkeypatch):
    import mcproton.run

    def refuse(*a, **k):
        raise AssertionError("--check-config reached the transport")

    monkeypatch.setattr(mcproton.run.Simulation, "run_histories", refuse)
    monkeypatch.setattr(mcproton.run.Simulation, "run_histories_sparse", refuse)


def _files(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


def test_check_config_prints_grid_and_beams_and_writes_nothing(tmp_path, capsys, no_transport):
    cfg = tmp_path / "job.toml"
    cfg.write_text(BASE)
    before = _files(tmp_path)
    assert main(["run", str(cfg), "--check-config", "--out", str(tmp_path / "dose.h5")]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["config_ok"] is True and got["phantom"] == "water"
    assert got["grid_xyz"] == [10, 10, 50] and got["voxel_mm"] == [4.0, 4.0, 2.0]   # 40 x 40 x 100 mm box
    assert got["primaries"] == 1000 and got["beams"][0]["spots"] == 1
    assert got["outputs"]["hdf5"].endswith("dose.h5")
    assert _files(tmp_path) == before   # no HDF5, no checkpoint, no plot


def test_check_config_refuses_what_the_run_refuses(tmp_path, capsys, no_transport):
    cfg = tmp_path / "job.toml"
    cfg.write_text(BASE.replace("primaries = 1000", "primaires = 1000"))
    assert main(["run", str(cfg), "--check-config"]) == 2
    err = capsys.readouterr().err
    assert "unknown key run.primaires (did you mean 'primaries'?)" in err


def test_check_config_leaves_a_slab_ct_folder_alone(tmp_path, capsys, no_transport):
    """A slab_ct phantom is built in a temporary folder: its ct_dir is not created (the run would then refuse it as
    not empty), and a ct_dir that already holds files is refused as the run refuses it."""
    cfg = tmp_path / "job.toml"
    cfg.write_text(SLAB_CT.replace("@EXTRA", 'ct_dir = "slab_ct"'))
    assert main(["run", str(cfg), "--check-config"]) == 0, capsys.readouterr().err
    assert not (tmp_path / "slab_ct").exists()
    (tmp_path / "slab_ct").mkdir()
    (tmp_path / "slab_ct" / "IM0001").write_text("a patient's CT")
    assert main(["run", str(cfg), "--check-config"]) == 2
    assert "not empty" in capsys.readouterr().err


def test_out_is_required_without_check_config(tmp_path, capsys, no_transport):
    cfg = tmp_path / "job.toml"
    cfg.write_text(BASE)
    assert main(["run", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--out is required" in err[0] and "--check-config" in err[0]


def test_a_config_without_phantom_says_it_uses_the_default_water_box(tmp_path, capsys, no_transport):
    cfg = tmp_path / "job.toml"
    cfg.write_text(BASE.split("[phantom]")[0] + "[beam]" + BASE.split("[beam]")[1])
    assert main(["run", str(cfg), "--check-config"]) == 0
    out, err = capsys.readouterr()
    assert "no [phantom] section" in err and "200 x 200 x 300 mm" in err
    assert json.loads(out)["grid_xyz"] == [100, 100, 300]   # the default: 2 x 2 x 1 mm voxels


def test_relative_paths_are_taken_from_the_config_files_folder(tmp_path, capsys, monkeypatch, no_transport):
    """rtplan = "RP.dcm" beside the config is found from any working folder; a path given with --set relative to
    the working folder is found too (nothing of that name beside the config); one found nowhere is named with the
    full path looked at and the rule."""
    sub = tmp_path / "plans"
    sub.mkdir()
    shutil.copy(PLAN05, sub / "RP.dcm")
    cfg = sub / "job.toml"
    cfg.write_text(PLAN)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["run", str(cfg), "--check-config"]) == 0, capsys.readouterr().err
    capsys.readouterr()
    shutil.copy(PLAN05, elsewhere / "mine.dcm")
    assert main(["run", str(cfg), "--check-config", "--set", 'plan.rtplan="mine.dcm"']) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert main(["run", str(cfg), "--check-config", "--set", 'plan.rtplan="nope.dcm"']) == 2
    err = capsys.readouterr().err
    assert str(sub / "nope.dcm") in err and "taken from the config file's folder" in err


def test_a_ct_folder_with_two_series_needs_phantom_ct_series(tmp_path, capsys, no_transport):
    """Two axial CT series in phantom.ct_dir (a re-scan, a 4-D CT's phase beside its average): refused with both
    listed and the key that chooses (before, the message told a config user to "pass series_uid="); with
    phantom.ct_series the chosen one is read (its grid, not the other's); a localizer beside one series is
    skipped with a warning."""
    import numpy as np
    import pydicom
    from make_bad_input_table import CT

    from mcproton.dicom import write_ct_series

    first = write_ct_series(np.zeros((4, 8, 8)), (2.0, 2.0, 2.0), (-7.0, -7.0, 0.0), tmp_path / "ct")
    second = write_ct_series(np.zeros((6, 8, 8)), (2.0, 2.0, 2.0), (-7.0, -7.0, 0.0), tmp_path / "b",
                             series_description="phase 50%")
    for p in second:
        shutil.move(p, tmp_path / "ct" / f"b_{p.name}")
    uid2 = str(pydicom.dcmread(tmp_path / "ct" / f"b_{second[0].name}").SeriesInstanceUID)
    cfg = tmp_path / "job.toml"
    cfg.write_text(CT.replace("@EXTRA", ""))
    assert main(["run", str(cfg), "--check-config"]) == 2
    err = capsys.readouterr().err
    assert "2 CT series" in err and "phantom.ct_series" in err and uid2 in err and "'phase 50%'" in err
    cfg.write_text(CT.replace("@EXTRA", f'ct_series = "{uid2}"'))
    assert main(["run", str(cfg), "--check-config"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["grid_xyz"][2] == 6    # the 6-slice series, not the 4-slice one
    for p in (tmp_path / "ct").glob("b_*"):    # the second series gone; a localizer in its place
        p.unlink()
    scout = pydicom.dcmread(first[0])
    scout.SeriesInstanceUID, scout.SOPInstanceUID = "1.2.826.0.1.3680043.8.498.55", "1.2.826.0.1.3680043.8.498.56"
    scout.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    scout.save_as(tmp_path / "ct" / "scout.dcm")
    cfg.write_text(CT.replace("@EXTRA", ""))
    with pytest.warns(UserWarning, match="localizer"):
        assert main(["run", str(cfg), "--check-config"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["grid_xyz"][2] == 4


def test_a_structure_set_drawn_on_another_ct_series_is_warned_about():
    """plan.rtstruct names the CT series its contours were drawn on (RayStation's plan03 RS names one): a CT of
    another series (a re-scan, another 4-D phase on the same frame) is warned about, the planning CT's is not."""
    import warnings
    from types import SimpleNamespace

    from mcproton import McprotonWarning
    from mcproton.config import _note_struct_drawn_on_another_series

    rs = ROOT / "tests" / "data" / "dicom" / "aptg_check" / "RS_plan03.dcm"
    drawn_on = "1.2.826.0.1.3680043.8.176.20111122133550298.10.5406771221"
    cfg = {"plan": {"rtstruct": str(rs)}}
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        _note_struct_drawn_on_another_series(cfg, SimpleNamespace(series_instance_uid=drawn_on,
                                                                  series_description="CT"))
    assert said == []
    with pytest.warns(McprotonWarning) as said:
        _note_struct_drawn_on_another_series(cfg, SimpleNamespace(series_instance_uid="1.2.3",
                                                                  series_description="4D 50%"))
    err = str(said[0].message)
    assert f"was drawn on CT series {drawn_on}, not on the CT read (1.2.3, '4D 50%')" in err and "ct_series" in err
