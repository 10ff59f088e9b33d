"""``mcproton run`` replaces only its own earlier outputs (the hostile-inputs audit of 2026-12-06, F3).

Before, --out, --rtdose and output.rtdose replaced any existing file (a planning system's RT Dose, a user's HDF5
and the PNG beside it) with a note calling it "the existing output of an earlier run".  Now a file at an output
path that mcproton did not write is refused before the transport, naming it and what it is; a re-run into the
run's own outputs still replaces them.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from run_helpers import read_h5, refused_before_transport as _refused, write_cfg

from mcproton.cli import main

ROOT = Path(__file__).resolve().parents[2]
#: a planning system's RT Dose (RayStation export of tests/data/dicom/aptg_plan03)
TPS_DOSE = next((ROOT / "tests" / "data" / "dicom" / "aptg_plan03").glob("RD*.dcm"))
ABSOLUTE = ["--set", "beam.total_protons=1e9"]   # the RT Dose holds Gy


def test_a_planning_systems_rt_dose_is_not_replaced(tmp_path, capsys, monkeypatch):
    cfg = write_cfg(tmp_path / "job.toml", 2000)
    victim = tmp_path / "RD_TPS.dcm"
    shutil.copy(TPS_DOSE, victim)
    before = victim.read_bytes()
    msg = _refused(["run", str(cfg), "--out", str(tmp_path / "o.h5"), "--rtdose", str(victim), "--quiet",
                    "--no-checkpoint", *ABSOLUTE], capsys, monkeypatch)
    assert str(victim) in msg and "mcproton did not write it" in msg and "Manufacturer" in msg, msg
    assert victim.read_bytes() == before and not (tmp_path / "o.h5").exists()


def test_output_rtdose_of_a_config_is_refused_as_well(tmp_path, capsys, monkeypatch):
    cfg = write_cfg(tmp_path / "job.toml", 2000)
    victim = tmp_path / "RD_TPS.dcm"
    shutil.copy(TPS_DOSE, victim)
    cfg.write_text(cfg.read_text().replace("[output]\n", f"[output]\nrtdose = {str(victim)!r}\n"))
    msg = _refused(["run", str(cfg), "--check-config", *ABSOLUTE], capsys, monkeypatch)
    assert "output.rtdose" in msg and str(victim) in msg, msg


@pytest.mark.parametrize("victim_name", ["thesis.h5", "thesis.png"])
def test_a_users_hdf5_or_png_is_not_replaced(tmp_path, capsys, monkeypatch, victim_name):
    """--out thesis.h5 where thesis.h5 (or only thesis.png, the plot's name) is a user's file."""
    cfg = write_cfg(tmp_path / "job.toml", 2000)
    victim = tmp_path / victim_name
    if victim.suffix == ".png":   # a real PNG image, not mcproton's
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure

        Figure(figsize=(1, 1)).savefig(victim)
    else:
        victim.write_text("precious")
    before = victim.read_bytes()
    msg = _refused(["run", str(cfg), "--out", str(tmp_path / "thesis.h5"), "--set", "output.plot=true", "--quiet",
                    "--no-checkpoint"], capsys, monkeypatch)
    assert str(victim) in msg and "mcproton did not write it" in msg, msg
    assert victim.read_bytes() == before


def test_a_rerun_replaces_its_own_outputs(tmp_path, capsys):
    """The HDF5, RT Dose and plot of an earlier run of the same names are replaced, with the note."""
    cfg = write_cfg(tmp_path / "job.toml", 2000)
    out, rd = tmp_path / "o.h5", tmp_path / "RD.dcm"
    argv = ["run", str(cfg), "--out", str(out), "--rtdose", str(rd), "--set", "output.plot=true", "--quiet",
            "--no-checkpoint", *ABSOLUTE]
    assert main(argv) == 0, capsys.readouterr().err
    assert out.is_file() and rd.is_file() and out.with_suffix(".png").is_file()
    capsys.readouterr()
    assert main(argv + ["--set", "run.seed=7"]) == 0, capsys.readouterr().err
    assert "replacing the existing output(s) of an earlier run" in capsys.readouterr().err
    assert read_h5(out)["dose"].max() > 0


def test_an_output_named_without_its_suffix_is_recognised_by_its_content(tmp_path):
    """--out result (no .h5): an earlier run's HDF5 of that name is mcproton's, a user's is not."""
    import h5py

    from mcproton._io.ownership import written_by_mcproton

    with h5py.File(tmp_path / "ours", "w") as f:
        f.attrs["format_version"] = "mcproton-dose/1"
    with h5py.File(tmp_path / "other", "w") as f:
        f["data"] = [1, 2, 3]
    assert written_by_mcproton(tmp_path / "ours") == (True, "format_version 'mcproton-dose/1'")
    assert written_by_mcproton(tmp_path / "other") == (False, "no mcproton format_version")
    assert written_by_mcproton(TPS_DOSE)[0] is False
