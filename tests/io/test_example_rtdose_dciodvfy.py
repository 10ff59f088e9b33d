"""The DCPT plan02 example end to end through the CLI, and its RT Dose checked with dciodvfy (dicom3tools)."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "dcpt_plan02.toml"


def test_dcpt_example_rtdose_is_valid_dicom(tmp_path, capsys):
    from mcproton.cli import main

    rd = tmp_path / "RD_plan02.dcm"
    rc = main(["run", str(EXAMPLE), "--out", str(tmp_path / "plan02.h5"), "--rtdose", str(rd), "--quiet",
               "--set", "run.primaries=2000", "--set", "run.batches=2", "--set", "output.plot=false"])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["normalisation"].startswith("Gy for 2.137")      # 58414.5 MU x 3.659e6 protons/MU (dcpt_v2)
    assert rd.is_file()

    from mcproton.dicom import read_rtdose

    d = read_rtdose(rd)
    assert d.dose_gy_zyx.shape == (75, 675, 75)
    assert d.dose_gy_zyx.max() > 0
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed")
    out = subprocess.run([exe, str(rd)], capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    errors = [ln for ln in text.splitlines() if ln.startswith("Error")]
    assert errors == [], text
