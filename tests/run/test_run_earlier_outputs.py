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

import shutil
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from run_helpers import write_cfg

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
    from dicom_factories import make_plan, save

    from mcproton.geometry import box_phantom
    from mcproton.phantoms.dicom_export import write_phantom_ct

    case = tmp_path / "case"
    g = box_phantom("water", (80.0, 80.0, 80.0), (5.0, 5.0, 5.0))
    g.origin_mm = (-37.5, -37.5, -37.5)
    ct = write_phantom_ct(g, case / "ct")
    beam = {"gantry": 90.0, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "layers": [(70.0, [(0.0, 0.0)], [1.0])],
            "meterset": 5.0}
    save(make_plan([beam, dict(beam, gantry=180.0), dict(beam, gantry=270.0)],
                   frame_of_reference_uid=ct.frame_of_reference_uid, n_fractions=5), case / "RP.dcm")
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


def _refused(argv: list[str], capsys, monkeypatch) -> str:
    import mcproton.run

    def transported(*a, **k):
        raise AssertionError("a refused output reached the transport")

    monkeypatch.setattr(mcproton.run.Simulation, "run_histories", transported)
    monkeypatch.setattr(mcproton.run.Simulation, "run_histories_sparse", transported)
    assert main(argv) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("mcproton:")]
    assert len(err) == 1, err
    return err[0]


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
