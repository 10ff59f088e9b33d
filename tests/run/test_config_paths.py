"""Where a run config's paths lead (audit 25: F8, F11, F12): ``~`` in output.rtdose is the home folder, as in the
input keys; a config that is a symbolic link takes its relative paths from the link's folder, and --check-config
says which folder; a folder whose name differs from the config's only by its Unicode normalization (NFD, as a Mac
writes it, against NFC) is found, and where several such exist the message names them."""
from __future__ import annotations

import json
import os
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from make_bad_input_table import BASE, CT
from run_helpers import no_transport as _refuse_transport

from mcproton.cli import main


@pytest.fixture
def no_transport(monkeypatch):
    _refuse_transport(monkeypatch)


def _ct(folder: Path, slices: int) -> Path:
    from mcproton.dicom import write_ct_series

    write_ct_series(np.zeros((slices, 8, 8)), (2.0, 2.0, 2.0), (-7.0, -7.0, 0.0), folder)
    return folder


def _linked_config(target: Path, link: Path) -> None:
    """The CT config (ct_dir = "ct") at ``target`` and a relative symbolic link to it at ``link``."""
    for d in (target.parent, link.parent):
        d.mkdir(parents=True, exist_ok=True)
    target.write_text(CT.replace("@EXTRA", ""))
    link.symlink_to(os.path.relpath(target, link.parent))


def test_a_tilde_in_output_rtdose_is_the_home_folder(tmp_path, capsys, monkeypatch):
    """F8: ``output.rtdose = "~/rd_tilde/RD.dcm"`` wrote ./~/rd_tilde/RD.dcm (a folder named "~" in the current
    folder), and the summary said "~/rd_tilde/RD.dcm"; phantom.ct_dir and the other input keys expand ``~``."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    cfg = work / "job.toml"
    cfg.write_text(BASE.replace("sigma_mm = [3.0, 3.0]", "sigma_mm = [3.0, 3.0]\ntotal_protons = 1e9")
                   + 'rtdose = "~/rd_tilde/RD.dcm"\n')
    want = home / "rd_tilde" / "RD.dcm"
    assert main(["run", str(cfg), "--check-config"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["outputs"]["rtdose"] == str(want)
    assert main(["run", str(cfg), "--out", str(work / "o.h5"), "--quiet", "--no-checkpoint",
                 "--set", "run.primaries=200"]) == 0, capsys.readouterr().err
    summary = json.loads(capsys.readouterr().out)
    assert want.is_file() and not (work / "~").exists()
    assert summary["rtdose"] == str(want)


def test_a_linked_config_takes_relative_paths_from_the_links_folder(tmp_path, capsys, monkeypatch, no_transport):
    """F11: pat1/run.toml -> ../protocols/std.toml (a shared template) with ct_dir = "ct": the CT is pat1/ct, not
    protocols/ct (before: the link's target's folder, the template's phantom CT, without a word), and --check-config
    names the folder the relative paths were taken from.  Where both folders hold a ct/, the run is refused
    (review R1: :func:`test_a_relative_path_beside_both_a_linked_config_and_its_target_is_refused`)."""
    protocols, pat1, elsewhere = tmp_path / "protocols", tmp_path / "pat1", tmp_path / "elsewhere"
    _linked_config(protocols / "std.toml", pat1 / "run.toml")
    _ct(protocols / "ct_template", 4)
    _ct(pat1 / "ct", 6)
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["run", str(pat1 / "run.toml"), "--check-config"]) == 0, capsys.readouterr().err
    got = json.loads(capsys.readouterr().out)
    assert got["grid_xyz"][2] == 6   # pat1's 6 slices
    rel = got["relative_paths"]
    assert rel["inputs_from"] == str(pat1.resolve()) and rel["outputs_from"] == str(elsewhere.resolve())
    assert rel["inputs_else_from"] == str(elsewhere.resolve())
    assert rel["config_link_target"] == str((protocols / "std.toml").resolve()) and "link's folder" in rel["note"]
    # the template itself: its own folder
    (protocols / "ct_template").rename(protocols / "ct")
    (pat1 / "ct").rename(pat1 / "ct_moved")
    assert main(["run", str(protocols / "std.toml"), "--check-config"]) == 0, capsys.readouterr().err
    got = json.loads(capsys.readouterr().out)
    assert got["grid_xyz"][2] == 4 and got["relative_paths"]["inputs_from"] == str(protocols.resolve())
    assert "config_link_target" not in got["relative_paths"]
    # a relative path found only beside the target: the message says the link's folder is meant, and names the
    # target's (taken before 2026-12-07)
    assert main(["run", str(pat1 / "run.toml"), "--check-config"]) == 2
    err = capsys.readouterr().err
    assert f"config file's folder {pat1.resolve()}" in err and "symbolic link to" in err, err
    assert f"the target's folder has one: {(protocols / 'ct').resolve()}" in err, err


def test_a_relative_path_beside_both_a_linked_config_and_its_target_is_refused(tmp_path, capsys, monkeypatch,
                                                                              no_transport):
    """Review of 2026-12-07, R1: work/current.toml -> ../pat1/run.toml, run from work/, which still holds the ct/
    of an earlier case.  Before 2026-12-07 pat1/ct was read, after F11 work/ct, each without a word (another
    patient's CT for a beam-only config): now the run is refused naming both folders, and an absolute path (here
    by --set) or removing one of them chooses."""
    pat1, work = tmp_path / "pat1", tmp_path / "work"
    _linked_config(pat1 / "run.toml", work / "current.toml")
    _ct(pat1 / "ct", 6)
    _ct(work / "ct", 4)
    monkeypatch.chdir(work)
    assert main(["run", "current.toml", "--check-config"]) == 2
    err = capsys.readouterr().err
    assert "phantom.ct_dir = 'ct'" in err and "exists both beside the link" in err, err
    assert str(work.resolve() / "ct") in err and str(pat1.resolve() / "ct") in err, err
    assert "give an absolute path" in err and "remove or rename" in err, err
    # an absolute path chooses
    assert main(["run", "current.toml", "--check-config", "--set", f'phantom.ct_dir="{pat1 / "ct"}"']) == 0, \
        capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["grid_xyz"][2] == 6
    # the link's folder without a ct/, the config run from another folder that has one: that one and the target's
    (work / "ct").rename(tmp_path / "old_ct")
    _ct(tmp_path / "cwd" / "ct", 3)
    monkeypatch.chdir(tmp_path / "cwd")
    assert main(["run", str(work / "current.toml"), "--check-config"]) == 2
    err = capsys.readouterr().err
    assert "in the current folder" in err and str(pat1.resolve() / "ct") in err, err
    # one of them removed: no question
    (tmp_path / "cwd" / "ct").rename(tmp_path / "cwd" / "ct_other")
    assert main(["run", str(work / "current.toml"), "--check-config"]) == 2   # found only beside the target
    assert "the target's folder has one" in capsys.readouterr().err
    # a link in the target's own folder: one folder, nothing to choose
    (pat1 / "same.toml").symlink_to("run.toml")
    assert main(["run", str(pat1 / "same.toml"), "--check-config"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["grid_xyz"][2] == 6


NFC = unicodedata.normalize("NFC", "Müller_é")
NFD = unicodedata.normalize("NFD", "Müller_é")


@pytest.fixture
def keeps_normalizations(tmp_path):
    """Skip where the file system takes names that differ only in their Unicode normalization for one name (macOS
    APFS and HFS+, ZFS with normalization=formD): there an NFC and an NFD folder of one name are the same folder
    (review of 2026-12-07, R7)."""
    probe = tmp_path / "probe"
    (probe / NFD).mkdir(parents=True)
    folds = (probe / NFC).exists()
    (probe / NFD).rmdir()
    probe.rmdir()
    if folds:
        pytest.skip("this file system folds Unicode normalization: an NFC and an NFD name are one name")


def test_a_folder_named_in_another_unicode_normalization_is_found(tmp_path, capsys, no_transport,
                                                                  keeps_normalizations):
    """F12: ct_dir = "Müller_é/ct" typed in NFC, the folder copied from a Mac named in NFD: "the CT folder ...
    does not exist", with the same name shown as ``ls`` shows.  Now it is found; where two folders of that name in
    other normalizations exist, the message names both."""
    assert NFC != NFD
    _ct(tmp_path / NFD / "ct", 5)
    cfg = tmp_path / "job.toml"
    cfg.write_text(CT.replace('ct_dir = "ct"', f'ct_dir = "{NFC}/ct"').replace("@EXTRA", ""), encoding="utf-8")
    assert main(["run", str(cfg), "--check-config"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["grid_xyz"][2] == 5
    mixed = unicodedata.normalize("NFD", "Müller_") + unicodedata.normalize("NFC", "é")   # a third spelling
    assert len({mixed, NFC, NFD}) == 3
    _ct(tmp_path / mixed / "ct", 3)
    assert main(["run", str(cfg), "--check-config"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "2 paths of the same name in other Unicode normalizations" in err, err
    assert ascii(str(tmp_path / NFD / "ct")) in err and ascii(str(tmp_path / mixed / "ct")) in err


def test_normalization_twins_match_each_component(tmp_path, keeps_normalizations):
    """Each component not found as written is matched by its NFC form: a parent in NFC, the folder in it in NFD;
    a path that exists as written is itself, an ASCII one is not looked for."""
    from mcproton.config import _normalization_twins

    (tmp_path / NFC / NFD).mkdir(parents=True)
    asked = tmp_path / NFD / NFC   # both components in the other normalization
    assert _normalization_twins(asked) == [tmp_path / NFC / NFD]
    assert _normalization_twins(tmp_path / NFC / NFD) == []   # exists
    assert _normalization_twins(tmp_path / "nothing" / NFC) == []
    rel = Path(os.path.relpath(asked, Path.cwd()))
    assert [p.resolve() for p in _normalization_twins(rel)] == [(tmp_path / NFC / NFD).resolve()]


def test_a_twin_is_found_beside_an_empty_folder_of_the_name_as_written(tmp_path, capsys, no_transport,
                                                                       keeps_normalizations):
    """Review of 2026-12-07, R6: ``Zoë/`` in NFC, empty (made by hand or by a script), beside ``Zoë/`` in NFD that
    holds ``ct/`` (copied from a Mac), ct_dir = "Zoë/ct" typed in NFC.  The walk took the NFC folder, which exists
    as written, and looked no further: "does not exist" with no word of the other.  Now the NFD path is found."""
    from mcproton.config import _normalization_twins

    nfc, nfd = unicodedata.normalize("NFC", "Zoë"), unicodedata.normalize("NFD", "Zoë")
    (tmp_path / nfc).mkdir()
    _ct(tmp_path / nfd / "ct", 5)
    assert _normalization_twins(tmp_path / nfc / "ct") == [tmp_path / nfd / "ct"]
    cfg = tmp_path / "job.toml"
    cfg.write_text(CT.replace('ct_dir = "ct"', f'ct_dir = "{nfc}/ct"').replace("@EXTRA", ""), encoding="utf-8")
    assert main(["run", str(cfg), "--check-config"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["grid_xyz"][2] == 5


def test_check_config_names_the_current_folder_once_where_it_is_the_configs(tmp_path, capsys, monkeypatch,
                                                                             no_transport):
    """Review of 2026-12-07, R7: a config in the current folder: ``inputs_else_from`` said the same folder again."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "job.toml").write_text(BASE)
    assert main(["run", "job.toml", "--check-config"]) == 0, capsys.readouterr().err
    rel = json.loads(capsys.readouterr().out)["relative_paths"]
    assert rel == {"inputs_from": str(tmp_path.resolve()), "outputs_from": str(tmp_path.resolve())}, rel


def test_a_relative_path_in_both_the_configs_folder_and_the_current_folder_is_refused(tmp_path, capsys, monkeypatch,
                                                                                     no_transport):
    """Audit 26 interact, F2: ``--set phantom.ct_dir="ct"`` (or plan.rtplan, plan.rtstruct) typed in a folder that
    holds its own ct/ read the config folder's ct/ without a word, as a relative path is looked for in the config's
    folder first: a replanned plan silently replaced by the old one.  Where both folders hold the name, as two
    different files or folders, a path given with --set is refused naming both (a path written in the config is the
    config folder's, as documented); an absolute path chooses, and the run records the path it read
    (``input_paths``).  One folder (the config run from its own folder, or the current folder's ct a
    link to the config's) is no question."""
    cfg_dir, work = tmp_path / "cfg", tmp_path / "work"
    cfg_dir.mkdir()
    (cfg_dir / "run.toml").write_text(CT.replace("@EXTRA", ""))
    _ct(cfg_dir / "ct", 6)
    _ct(work / "ct", 4)
    monkeypatch.chdir(work)
    assert main(["run", "../cfg/run.toml", "--check-config", "--set", 'phantom.ct_dir="ct"']) == 2, \
        capsys.readouterr().out   # typed in the shell
    err = capsys.readouterr().err
    assert "phantom.ct_dir = 'ct'" in err and "exists both in the config file's folder" in err, err
    assert str(cfg_dir.resolve() / "ct") in err and str(work.resolve() / "ct") in err, err
    assert "give an absolute path" in err and "remove or rename" in err, err
    # the config's own relative path is the config folder's, as documented, wherever it is run from (a patient's
    # run.toml run from another patient's folder with its own ct/ is not refused), and the run says which it read
    assert main(["run", "../cfg/run.toml", "--check-config"]) == 0, capsys.readouterr().err
    got = json.loads(capsys.readouterr().out)
    assert got["grid_xyz"][2] == 6 and got["input_paths"] == {"phantom.ct_dir": str(cfg_dir.resolve() / "ct")}
    # an absolute path chooses, and the folder read is named
    assert main(["run", "../cfg/run.toml", "--check-config", "--set", f'phantom.ct_dir="{work / "ct"}"']) == 0, \
        capsys.readouterr().err
    got = json.loads(capsys.readouterr().out)
    assert got["grid_xyz"][2] == 4 and got["input_paths"] == {"phantom.ct_dir": str(work / "ct")}
    # the config run from its own folder: one folder
    monkeypatch.chdir(cfg_dir)
    assert main(["run", "run.toml", "--check-config"]) == 0, capsys.readouterr().err
    got = json.loads(capsys.readouterr().out)
    assert got["grid_xyz"][2] == 6 and got["input_paths"] == {"phantom.ct_dir": str(cfg_dir.resolve() / "ct")}
    # the current folder's ct a link to the config's: one folder
    (work / "ct").rename(tmp_path / "old_ct")
    (work / "ct").symlink_to(cfg_dir / "ct")
    monkeypatch.chdir(work)
    assert main(["run", "../cfg/run.toml", "--check-config", "--set", 'phantom.ct_dir="ct"']) == 0, \
        capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["grid_xyz"][2] == 6


def test_the_run_records_the_input_paths_it_read(tmp_path, capsys, monkeypatch):
    """Audit 26 interact, F2: the summary's ``relative_paths`` is null outside --check-config, so nothing in a run's
    output said which folder a relative path was taken from (its SHA-256s are by path, of files only).  The summary
    and the HDF5's provenance record ``input_paths``: the absolute path each input-path key was read from (a plan
    given with --set from the current folder, where the config's folder has none)."""
    import h5py

    from mcproton.dicom import write_ct_series

    cfg_dir, work = tmp_path / "cfg", tmp_path / "work"
    cfg_dir.mkdir()
    (cfg_dir / "run.toml").write_text(CT.replace("@EXTRA", "").replace("primaries = 1000", "primaries = 200"))
    write_ct_series(np.zeros((20, 12, 12)), (4.0, 4.0, 4.0), (-22.0, -22.0, 0.0), cfg_dir / "ct")
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["run", "../cfg/run.toml", "--out", "o.h5", "--quiet", "--no-checkpoint",
                 "--set", "beam.energy_mev=70"]) == 0, \
        capsys.readouterr().err
    s = json.loads(capsys.readouterr().out)
    assert s["input_paths"] == {"phantom.ct_dir": str(cfg_dir.resolve() / "ct")}
    with h5py.File(work / "o.h5", "r") as f:
        assert json.loads(f["provenance"].attrs["input_paths"]) == s["input_paths"]
