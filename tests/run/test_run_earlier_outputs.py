"""What ``mcproton run`` does with the files of its output names (the identity audit of 2026-12-07, F5-F7).

* F5: a re-used ``--rtdose RD.dcm`` kept an earlier run's per-beam RT Dose that this run does not write
  (``RD_beam3.dcm`` of a three-beam run, re-run with ``plan.beams = [1, 2]``: another patient's dose beside the new
  files), and the note named only RD.dcm, not the per-beam files it replaced.  Now the earlier run's per-beam RT
  Doses of that name (``RD_beam<N>.dcm``, RT Doses mcproton wrote) are removed with its other outputs, and the note
  names every file replaced or removed.
* F6: with the output's file system full and no finished checkpoint, the HDF5 was rescued to the temporary folder,
  but the RT Dose and the per-beam RT Doses were never attempted (the per-beam doses were lost for good: the HDF5
  holds the plan's dose only), the message did not name them, and no summary was printed.  Now every output goes to
  the temporary folder, the message names each and where it went, and the summary is printed with
  ``failed_outputs`` and ``rescued_outputs``.
* F7: an output RT Dose replaced any DICOM file mcproton wrote (a CT slice of another series, an RT Ion Plan), as
  "an output of an earlier run".  Now an RT Dose output replaces only an RT Dose mcproton wrote, and ``--out`` only
  a dose HDF5 of mcproton's; anything else is refused (exit 2) naming what it is.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from fakes import log_lines  # tests/fakes.py
from run_helpers import read_h5, refused_before_transport as _refused, write_cfg

from mcproton.cli import main

ROOT = Path(__file__).resolve().parents[2]
#: a planning system's RT Dose (RayStation export of tests/data/dicom/aptg_plan03)
TPS_DOSE = next((ROOT / "tests" / "data" / "dicom" / "aptg_plan03").glob("RD*.dcm"))
ABSOLUTE = ["--set", "beam.total_protons=1e9"]   # the RT Dose holds Gy


@pytest.fixture
def three_beams(tmp_path):
    """A 16^3 water CT (5 mm) in ``tmp_path/case`` and a plan of three one-spot beams; 1500 primaries a beam on the
    CPU, one thread; returns the config."""
    sys.path.insert(0, str(ROOT / "tests" / "io"))
    from dicom_factories import PHANTOM_PATIENT, make_plan, save

    from mcproton.geometry import box_phantom
    from mcproton.phantoms.dicom_export import write_phantom_ct

    case = tmp_path / "case"
    g = box_phantom("water", (80.0, 80.0, 80.0), (5.0, 5.0, 5.0))
    g.origin_mm = (-37.5, -37.5, -37.5)
    ct = write_phantom_ct(g, case / "ct")
    beam = {"gantry": 90.0, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "layers": [(70.0, [(0.0, 0.0)], [1.0])],
            "meterset": 5.0}
    save(make_plan([beam, dict(beam, gantry=180.0), dict(beam, gantry=270.0)],
                   frame_of_reference_uid=ct.frame_of_reference_uid, n_fractions=5, **PHANTOM_PATIENT), case / "RP.dcm")
    cfg = case / "run.toml"
    cfg.write_text('[run]\nprimaries = 1500\nbatch_size = 150\nseed = 11\nbackend = "cpu"\nthreads = 1\n'
                   '[phantom]\ntype = "ct"\nct_dir = "ct"\n[plan]\nrtplan = "RP.dcm"\nbeam_model = "dcpt_v2"\n'
                   '[output]\nplot = false\nrtdose_per_beam = true\n')
    return cfg


def _run(cfg: Path, out: Path, rtdose: Path, *extra: str) -> list[str]:
    return ["run", str(cfg), "--out", str(out), "--rtdose", str(rtdose), "--quiet", *extra]


def _header(path: Path):
    return pydicom.dcmread(path, stop_before_pixels=True)


def _note(err: str) -> str:
    (note,) = [ln for ln in err.splitlines() if "replacing the existing output(s)" in ln]
    return note


# --- F5: an earlier run's per-beam RT Doses ------------------------------------------------------------------

def test_a_rerun_of_fewer_beams_removes_the_earlier_runs_per_beam_rt_dose(three_beams, tmp_path, capsys):
    """Three beams, then ``plan.beams = [1, 2]`` on the same --rtdose: RD_beam3.dcm of the first run is gone (it
    stayed, another run's dose, beside the new files), and the note names every earlier file, the per-beam RT
    Doses replaced (RD_beam1/2.dcm) and removed (RD_beam3.dcm) among them."""
    res = tmp_path / "res"
    out, rd = res / "RD.h5", res / "RD.dcm"
    assert main(_run(three_beams, out, rd)) == 0, capsys.readouterr().err
    assert sorted(p.name for p in res.glob("*.dcm")) == ["RD.dcm", "RD_beam1.dcm", "RD_beam2.dcm", "RD_beam3.dcm"]
    first = _header(res / "RD_beam3.dcm").SOPInstanceUID
    capsys.readouterr()
    assert main(_run(three_beams, out, rd, "--set", "plan.beams=[1, 2]")) == 0
    note = _note(capsys.readouterr().err)
    assert not (res / "RD_beam3.dcm").exists(), f"the earlier run's {first} is still there"
    assert sorted(p.name for p in res.glob("*.dcm")) == ["RD.dcm", "RD_beam1.dcm", "RD_beam2.dcm"]
    for name in ("RD.h5", "RD.dcm", "RD_beam1.dcm", "RD_beam2.dcm", "RD_beam3.dcm"):
        assert str(res / name) in note, (name, note)
    assert "per-beam RT Dose" in note and "does not write" in note, note
    # the two per-beam files left are this run's: one series
    assert _header(res / "RD_beam1.dcm").SeriesInstanceUID == _header(res / "RD_beam2.dcm").SeriesInstanceUID


def test_a_rerun_without_per_beam_doses_removes_them_all_and_keeps_other_files(three_beams, tmp_path, capsys):
    """The earlier run's RD_beam1..3.dcm go when the same --rtdose is written without output.rtdose_per_beam; a file
    of such a name that mcproton did not write (a planning system's), or an RT Dose of another name
    (RD_beam1_kept.dcm), is left as it is, the former named in the note as left alone."""
    res = tmp_path / "res"
    out, rd = res / "RD.h5", res / "RD.dcm"
    assert main(_run(three_beams, out, rd)) == 0, capsys.readouterr().err
    shutil.copy(res / "RD_beam1.dcm", res / "RD_beam1_kept.dcm")
    shutil.copy(TPS_DOSE, res / "RD_beam7.dcm")
    tps = (res / "RD_beam7.dcm").read_bytes()
    capsys.readouterr()
    assert main(_run(three_beams, out, rd, "--set", "output.rtdose_per_beam=false")) == 0
    note = _note(capsys.readouterr().err)
    assert sorted(p.name for p in res.glob("*.dcm")) == ["RD.dcm", "RD_beam1_kept.dcm", "RD_beam7.dcm"]
    assert (res / "RD_beam7.dcm").read_bytes() == tps
    for name in ("RD_beam1.dcm", "RD_beam2.dcm", "RD_beam3.dcm"):
        assert str(res / name) in note, (name, note)
    assert "left as they are" in note and f"{res / 'RD_beam7.dcm'} (mcproton did not write it" in note, note
    assert "RD_beam1_kept" not in note, note


# --- F7: an output replaces only an output of its own kind ---------------------------------------------------

def _mcproton_files(folder: Path) -> dict[str, Path]:
    """A CT slice, an RT Struct and an RT Ion Plan that mcproton wrote (Manufacturer mcproton), of another case."""
    sys.path.insert(0, str(ROOT / "tests" / "io"))
    from dicom_factories import make_plan, save

    from mcproton.geometry import box_phantom
    from mcproton.phantoms.dicom_export import write_phantom_ct, write_rtstruct

    g = box_phantom("water", (20.0, 20.0, 10.0), (5.0, 5.0, 5.0))
    ct = write_phantom_ct(g, folder / "ct")
    mask = np.zeros(g.shape_zyx, bool)
    mask[:, 1:3, 1:3] = True
    rs = write_rtstruct({"BODY": mask}, g, ct, folder / "RS.dcm")
    plan = make_plan([{"gantry": 0.0, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "layers": [(70.0, [(0.0, 0.0)], [1.0])],
                       "meterset": 5.0}])
    plan.Manufacturer = "mcproton"
    save(plan, folder / "RP.dcm")
    return {"a CT slice": sorted((folder / "ct").glob("*.dcm"))[0], "an RT Struct": Path(rs),
            "an RT Ion Plan": folder / "RP.dcm"}


@pytest.mark.parametrize("kind", ["a CT slice", "an RT Struct", "an RT Ion Plan"])
def test_rtdose_does_not_replace_another_dicom_object_mcproton_wrote(kind, tmp_path, capsys, monkeypatch):
    """--rtdose naming a CT slice of another (mcproton) CT series, its RT Struct or an RT Ion Plan mcproton wrote:
    refused before the transport naming what the file is (before: replaced by the RT Dose, exit 0: the CT series
    then had a gap, the plan its RT Doses reference was gone)."""
    victim = _mcproton_files(tmp_path / "other")[kind]
    before = victim.read_bytes()
    cfg = write_cfg(tmp_path / "job.toml", 2000)
    msg = _refused(["run", str(cfg), "--out", str(tmp_path / "o.h5"), "--rtdose", str(victim), "--quiet",
                    "--no-checkpoint", *ABSOLUTE], capsys, monkeypatch)
    assert f"--rtdose {victim}" in msg and f"{kind} that mcproton wrote" in msg and "not an RT Dose" in msg, msg
    assert victim.read_bytes() == before and not (tmp_path / "o.h5").exists()


def test_a_per_beam_name_does_not_replace_a_ct_slice_mcproton_wrote(three_beams, tmp_path, capsys, monkeypatch):
    """The per-beam RT Dose's name (RD_beam2.dcm) holding a CT slice mcproton wrote: refused, naming it."""
    victim = tmp_path / "res" / "RD_beam2.dcm"
    victim.parent.mkdir()
    shutil.copy(sorted((three_beams.parent / "ct").glob("*.dcm"))[0], victim)
    msg = _refused(_run(three_beams, tmp_path / "res" / "RD.h5", tmp_path / "res" / "RD.dcm"), capsys, monkeypatch)
    assert f"the per-beam RT Dose {victim}" in msg and "a CT slice that mcproton wrote" in msg, msg


def test_out_does_not_replace_a_dicom_file_or_a_phantom_mcproton_wrote(tmp_path, capsys, monkeypatch):
    """--out (the dose HDF5) naming a CT slice mcproton wrote, or a phantom HDF5 of ``mcproton phantom``: refused
    (before: replaced by the dose HDF5)."""
    from mcproton.geometry import box_phantom
    from mcproton.phantoms.export import write_phantom_hdf5

    cfg = write_cfg(tmp_path / "job.toml", 2000)
    ct = _mcproton_files(tmp_path / "other")["a CT slice"]
    msg = _refused(["run", str(cfg), "--out", str(ct), "--quiet", "--no-checkpoint"], capsys, monkeypatch)
    assert f"--out {ct}" in msg and "a CT slice that mcproton wrote" in msg, msg
    ph = tmp_path / "phantom.h5"
    write_phantom_hdf5(box_phantom("water", (20.0, 20.0, 10.0), (5.0, 5.0, 5.0)), ph)
    msg = _refused(["run", str(cfg), "--out", str(ph), "--quiet", "--no-checkpoint"], capsys, monkeypatch)
    assert f"--out {ph}" in msg and "mcproton-phantom" in msg and "not a dose HDF5" in msg, msg


def test_an_rt_dose_of_mcprotons_is_still_replaced(tmp_path, capsys):
    """An RT Dose that mcproton wrote (another run's, of another name: the demo's rtdose.dcm) is still replaced,
    with the note."""
    cfg = write_cfg(tmp_path / "job.toml", 2000)
    first = ["run", str(cfg), "--out", str(tmp_path / "a.h5"), "--rtdose", str(tmp_path / "RD.dcm"), "--quiet",
             "--no-checkpoint", *ABSOLUTE]
    assert main(first) == 0
    capsys.readouterr()
    assert main(first[:3] + [str(tmp_path / "b.h5")] + first[4:]) == 0
    assert str(tmp_path / "RD.dcm") in _note(capsys.readouterr().err)


# --- F6: a full output file system, no finished checkpoint ---------------------------------------------------

def _full_output_folder(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    """``tmp_path/full``, where every file written fails as on a full disk (tests/full_disk.py), and the temporary
    folder ``tmp_path/rescue``, which has room."""
    import tempfile

    from full_disk import full_disk_in

    rescue = tmp_path / "rescue"
    rescue.mkdir()
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(rescue))
    res = tmp_path / "full"
    res.mkdir()
    full_disk_in(monkeypatch, res)
    return res, rescue


def _no_space_where(monkeypatch, where) -> None:
    """Every atomic write of a file for which ``where(path)`` is true fails at once with ENOSPC (on top of the
    writes already made to fail)."""
    import errno

    from mcproton._io import atomic

    before = atomic.atomic_write_file

    def failing(target, write):
        if where(Path(target)):
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        return before(target, write)

    monkeypatch.setattr(atomic, "atomic_write_file", failing)


def _error(err: str) -> str:
    return [ln for ln in log_lines(err) if ln.startswith("mcproton: error:")][-1]


def _dose(path: Path) -> np.ndarray:
    ds = pydicom.dcmread(path)
    return ds.pixel_array * float(ds.DoseGridScaling)


@pytest.mark.parametrize("checkpoint", [False, True], ids=["no-checkpoint", "checkpoints-fail-too"])
def test_a_full_disk_rescues_the_rt_doses_with_the_hdf5(checkpoint, three_beams, tmp_path, capsys, monkeypatch):
    """The output folder full (its checkpoints fail too): the HDF5, the plan's RT Dose and each per-beam RT Dose
    are written to the temporary folder, the per-beam doses the same as a run that could write them; the message
    names every output and where it went; the summary is printed with failed_outputs and rescued_outputs."""
    good = tmp_path / "good"
    assert main(_run(three_beams, good / "RD.h5", good / "RD.dcm", "--no-checkpoint")) == 0
    capsys.readouterr()
    res, rescue = _full_output_folder(tmp_path, monkeypatch)
    # an earlier run's rescued result under the same pid (a restarted container runs as pid 1): kept, not replaced
    pid = os.getpid()
    earlier = {rescue / f"mcproton-rescued-{pid}-{n}": f"earlier {n}".encode() for n in ("RD.h5", "RD.dcm")}
    earlier[rescue / f"mcproton-rescued-{pid}-2-RD_beam2.dcm"] = b"earlier per-beam copy, without its plan's"
    for p, data in earlier.items():
        p.write_bytes(data)
    assert main(_run(three_beams, res / "RD.h5", res / "RD.dcm", *([] if checkpoint else ["--no-checkpoint"]))) == 3
    cap = capsys.readouterr()
    msg = _error(cap.err)
    names = ["RD.h5", "RD.dcm", "RD_beam1.dcm", "RD_beam2.dcm", "RD_beam3.dcm"]
    rescued = {n: next(p for p in rescue.glob(f"mcproton-rescued-*-{n}") if p not in earlier) for n in names}
    assert all(p.read_bytes() == data for p, data in earlier.items())
    # one run's RT Doses are named alike (the per-beam names follow the plan dose's), on a tag free for all of them
    assert rescued["RD.h5"].name == f"mcproton-rescued-{pid}-2-RD.h5"
    assert {rescued[n].name.removesuffix(n) for n in names[1:]} == {f"mcproton-rescued-{pid}-3-"}
    assert f"could not write {res / 'RD.h5'}: no space left on device" in msg, msg
    assert f"written to {rescued['RD.h5']} instead" in msg, msg
    for n in names[1:]:
        assert f"{res / n} -> {rescued[n]}" in msg, (n, msg)
    assert "move them where they belong" in msg, msg
    assert not list(res.glob("*.dcm")) and not (res / "RD.h5").exists()
    for n in names[2:]:   # the per-beam doses are kept, as a run that could write them wrote them
        assert np.array_equal(_dose(rescued[n]), _dose(good / n)), n
    assert np.array_equal(_dose(rescued["RD.dcm"]), _dose(good / "RD.dcm"))
    assert np.array_equal(read_h5(rescued["RD.h5"])["dose"], read_h5(good / "RD.h5")["dose"])
    summary = json.loads(cap.out)
    assert summary["rescued_outputs"] == {str(res / n): str(rescued[n]) for n in names}
    assert {f.split(" (")[0].split(" ")[-1] for f in summary["failed_outputs"]} == {str(res / n) for n in names}
    assert summary["output"] == str(rescued["RD.h5"]) and summary["rtdose"] == str(rescued["RD.dcm"])


@pytest.mark.parametrize("hdf5_rescued", [True, False], ids=["hdf5-rescued", "nothing-rescued"])
def test_a_full_disk_says_which_outputs_were_not_written_anywhere(hdf5_rescued, three_beams, tmp_path, capsys,
                                                                  monkeypatch):
    """The temporary folder cannot take the RT Doses either: each RT Dose is named as not written (and that its
    per-beam dose is lost), instead of saying nothing of them.  With the HDF5 rescued the message adds that it holds
    the plan's dose only; where it could not be rescued either, it does not (the review of 2026-12-07, F5: it said so
    after "this run's result is lost", as if the plan dose were kept somewhere)."""
    res, rescue = _full_output_folder(tmp_path, monkeypatch)
    # the rescue folder takes the HDF5 (or nothing), not the RT Doses
    _no_space_where(monkeypatch, lambda p: p.parent == rescue and (p.suffix == ".dcm" or not hdf5_rescued))
    assert main(_run(three_beams, res / "RD.h5", res / "RD.dcm", "--no-checkpoint")) == 3
    cap = capsys.readouterr()
    msg = _error(cap.err)
    for n in ("RD.dcm", "RD_beam1.dcm"):
        assert str(res / n) in msg, (n, msg)
    assert "not written" in msg and "per-beam doses are lost" in msg, msg
    assert not list(rescue.glob("*.dcm"))
    if hdf5_rescued:
        (h5,) = rescue.glob("mcproton-rescued-*-RD.h5")
        assert f"written to {h5} instead" in msg and "(the HDF5 holds the plan's dose only)" in msg, msg
        assert json.loads(cap.out)["rescued_outputs"] == {str(res / "RD.h5"): str(h5)}
    else:
        assert not list(rescue.iterdir())
        assert "this run's result is lost" in msg and "the HDF5 holds" not in msg, msg
        assert json.loads(cap.out)["rescued_outputs"] == {}


@pytest.mark.parametrize("own_folder", ["has room", "full"])
def test_the_rt_dose_and_plot_keep_the_dose_where_no_hdf5_can_be_written(own_folder, tmp_path, capsys, monkeypatch):
    """No HDF5 can be written anywhere (every .h5 fails), no checkpoint: the RT Dose and the plot are written where
    they belong (the review of 2026-12-07, F4: they went to the temporary folder) or, where their folder is full too,
    to the temporary folder; the message says that the dose is kept, and where, not that "this run's result is
    lost"."""
    import tempfile

    rescue = tmp_path / "rescue"
    rescue.mkdir()
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(rescue))
    _no_space_where(monkeypatch, lambda p: p.suffix == ".h5" or (own_folder == "full" and p.parent == tmp_path))
    cfg = write_cfg(tmp_path / "job.toml", 2000)
    out, rd = tmp_path / "o.h5", tmp_path / "RD.dcm"
    png = out.with_suffix(".png")
    assert main(["run", str(cfg), "--out", str(out), "--rtdose", str(rd), "--set", "output.plot=true", "--quiet",
                 "--no-checkpoint", *ABSOLUTE]) == 3
    cap = capsys.readouterr()
    msg = _error(cap.err)
    assert "the HDF5 is lost, the dose is kept in the RT Doses" in msg and "result is lost" not in msg, msg
    summary = json.loads(cap.out)
    assert summary["output"] is None and not out.exists()
    if own_folder == "has room":
        assert f"written where they belong: {rd}, {png}" in msg and "temporary folder" not in msg, msg
        assert _dose(rd).max() > 0 and png.is_file() and not list(rescue.iterdir())
        assert summary["rtdose"] == str(rd) and summary["plot"] == str(png) and summary["rescued_outputs"] == {}
        assert summary["failed_outputs"] == [f"the HDF5 {out} (no space left on device)"]
        return
    (copy,) = rescue.glob("mcproton-rescued-*-RD.dcm")
    (png_copy,) = rescue.glob("mcproton-rescued-*-o.png")
    assert f"{rd} -> {copy}" in msg and f"{png} -> {png_copy}" in msg and "written where" not in msg, msg
    assert _dose(copy).max() > 0 and not rd.exists() and not png.exists()
    assert summary["rtdose"] == str(copy) and summary["plot"] == str(png_copy)
    assert summary["rescued_outputs"] == {str(rd): str(copy), str(png): str(png_copy)}


def test_a_full_output_folder_leaves_the_rt_doses_where_they_belong(three_beams, tmp_path, capsys, monkeypatch):
    """--out on a full file system, --rtdose on another with room (the review of 2026-12-07, F4): the HDF5 is
    rescued to the temporary folder, and the RT Dose and the per-beam RT Doses are written where they belong (they
    all went to the temporary folder, to be renamed and moved by hand); the message, failed_outputs and
    rescued_outputs tell the one rescued output from those written where they belong."""
    res, rescue = _full_output_folder(tmp_path, monkeypatch)
    other = tmp_path / "other"
    assert main(_run(three_beams, res / "RD.h5", other / "RD.dcm", "--no-checkpoint")) == 3
    cap = capsys.readouterr()
    msg = _error(cap.err)
    (h5,) = rescue.iterdir()
    assert h5.name.endswith("-RD.h5")
    names = ["RD.dcm", "RD_beam1.dcm", "RD_beam2.dcm", "RD_beam3.dcm"]
    assert sorted(p.name for p in other.iterdir()) == names
    assert f"the result was written to {h5} instead: move it where it belongs; written where they belong: " \
           + ", ".join(str(other / n) for n in names) in msg, msg
    assert "->" not in msg and "not written" not in msg, msg
    summary = json.loads(cap.out)
    assert summary["output"] == str(h5) and summary["rtdose"] == str(other / "RD.dcm")
    assert [b["path"] for b in summary["rtdose_beams"]] == [str(other / n) for n in names[1:]]
    assert summary["rescued_outputs"] == {str(res / "RD.h5"): str(h5)}
    assert summary["failed_outputs"] == [f"the HDF5 {res / 'RD.h5'} (no space left on device; written to {h5} "
                                         "instead)"]


def test_only_the_rt_dose_that_fails_where_it_belongs_is_rescued(three_beams, tmp_path, capsys, monkeypatch):
    """Each RT Dose is tried where it belongs: one that fails there (RD_beam2.dcm: the disk filled as it was written)
    goes to its rescue copy, named as the run's other rescued RT Doses would be, and the next is tried where it
    belongs again."""
    res, rescue = _full_output_folder(tmp_path, monkeypatch)
    other = tmp_path / "other"
    _no_space_where(monkeypatch, lambda p: p == other / "RD_beam2.dcm")
    assert main(_run(three_beams, res / "RD.h5", other / "RD.dcm", "--no-checkpoint")) == 3
    cap = capsys.readouterr()
    msg = _error(cap.err)
    (h5,) = rescue.glob("*-RD.h5")
    (b2,) = rescue.glob("*-RD_beam2.dcm")
    assert b2.name == h5.name.replace("-RD.h5", "-RD_beam2.dcm")
    assert sorted(p.name for p in other.iterdir()) == ["RD.dcm", "RD_beam1.dcm", "RD_beam3.dcm"]
    assert f"beside it: {other / 'RD_beam2.dcm'} -> {b2}: move them where they belong; written where they " \
           f"belong: {other / 'RD.dcm'}, {other / 'RD_beam1.dcm'}, {other / 'RD_beam3.dcm'}" in msg, msg
    summary = json.loads(cap.out)
    assert summary["rescued_outputs"] == {str(res / "RD.h5"): str(h5), str(other / "RD_beam2.dcm"): str(b2)}
    assert [b["path"] for b in summary["rtdose_beams"]] == [str(other / "RD_beam1.dcm"), str(b2),
                                                            str(other / "RD_beam3.dcm")]
    assert _dose(b2).max() > 0


def test_the_rescued_hdf5_holds_the_warnings_said_while_the_rt_doses_were_written(three_beams, tmp_path, capsys,
                                                                                 monkeypatch):
    """A warning said while the RT Doses are written reaches the rescued HDF5's provenance and the summary, as a
    run that wrote its HDF5 where it belongs keeps it (the review of 2026-12-07, F10: the rescued HDF5 lacked it,
    and the summary had no warnings)."""
    import h5py

    import mcproton._io.rtdose as rtdose
    from mcproton._io.errors import McprotonRuntimeWarning, warn

    res, rescue = _full_output_folder(tmp_path, monkeypatch)
    real = rtdose.write_run_rtdoses

    def warning_rtdose(*a, **k):
        warn("a warning of the RT Dose writer (a test's stand-in)", McprotonRuntimeWarning)
        return real(*a, **k)

    monkeypatch.setattr(rtdose, "write_run_rtdoses", warning_rtdose)
    with pytest.warns(RuntimeWarning, match="a test's stand-in"):
        assert main(_run(three_beams, res / "RD.h5", tmp_path / "other" / "RD.dcm", "--no-checkpoint")) == 3
    said = json.loads(capsys.readouterr().out)["warnings"]
    assert any("a test's stand-in" in w for w in said), said
    (h5,) = rescue.glob("*-RD.h5")
    with h5py.File(h5, "r") as f:
        assert json.loads(f["provenance"].attrs["warnings"]) == said


def test_a_stop_signal_while_the_rescued_outputs_are_written_says_where_the_result_is(three_beams, tmp_path, capsys,
                                                                                     monkeypatch):
    """SIGINT while the RT Doses go to the temporary folder beside the rescued HDF5: the message says where the
    finished result is and to move it, where the RT Doses written so far are and which were not written (the review
    of 2026-12-07, F10: it said "no checkpoint holds the run: run it again", neither where the result was nor to
    move it); no partial file is left."""
    import signal

    import mcproton._io.dicom_common as dicom_common

    res, rescue = _full_output_folder(tmp_path, monkeypatch)
    real = dicom_common.save_dataset
    rescued: list[Path] = []

    def stop_at_beam2(ds, tmp):   # the third RT Dose in the rescue folder: RD_beam2's copy
        if Path(tmp).parent == rescue and len(rescued) == 2:
            Path(tmp).write_bytes(b"half an RT Dose")
            os.kill(os.getpid(), signal.SIGINT)
            raise AssertionError("the signal did not stop the writing")
        if Path(tmp).parent == rescue:
            rescued.append(Path(tmp))
        return real(ds, tmp)

    monkeypatch.setattr(dicom_common, "save_dataset", stop_at_beam2)
    assert main(_run(three_beams, res / "RD.h5", res / "RD.dcm", "--no-checkpoint")) == 128 + signal.SIGINT
    err = capsys.readouterr().err
    (h5,) = rescue.glob("*-RD.h5")
    copies = {n: rescue / h5.name.replace("-RD.h5", f"-{n}") for n in ("RD.dcm", "RD_beam1.dcm")}
    (line,) = [ln for ln in log_lines(err) if "received while writing the outputs" in ln]
    assert line == (f"mcproton: SIGINT received while writing the outputs: could not write {res / 'RD.h5'} (no space "
                    f"left on device); the finished result was written to {h5} instead: move it where it belongs; "
                    f"written to the temporary folder instead: {res / 'RD.dcm'} -> {copies['RD.dcm']}, "
                    f"{res / 'RD_beam1.dcm'} -> {copies['RD_beam1.dcm']}: move them where they belong too; not "
                    f"written: {res / 'RD_beam2.dcm'}, {res / 'RD_beam3.dcm'} (no partial file is left; no "
                    "checkpoint holds the run: run it again for them)"), line
    assert sorted(p.name for p in rescue.iterdir()) == sorted([h5.name, *(c.name for c in copies.values())])
    assert read_h5(h5)["dose"].max() > 0
