""".ci/run's step after the tests: the quick validation.  Seeded and deterministic on the CPU, so a case outside its
tolerance (`mcproton validate` exit status 1) is a change of the physics and fails CI, after the failed cases and
metrics are printed; until 2026-12-06 it was printed only and CI passed (tests audit 21 F4).  The step, as the
script has it, runs here with a stand-in `mcproton` that writes a summary.json and exits with a given status."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: a summary.json as `mcproton validate` writes it (validation/core.py, report.py), one case failed on one metric
SUMMARY = {"cases": [
    {"name": "ranges_water", "status": "failed", "passed": False, "message": "",
     "metrics": [{"name": "R80 150 MeV vs CSDA", "value": 157.9, "unit": "mm", "reference": 157.2, "tolerance": 0.5,
                  "passed": False},
                 {"name": "R80 70 MeV vs CSDA", "value": 40.8, "unit": "mm", "reference": 40.8, "tolerance": 0.2,
                  "passed": True}]},
    {"name": "stopping_power", "status": "passed", "passed": True, "message": "", "metrics": []}]}


def _validation_step() -> str:
    """The lines of .ci/run from the quick validation on (its ``status=0``), under the script's own shell options."""
    text = (ROOT / ".ci" / "run").read_text()
    assert "set -euo pipefail" in text and text.count("status=0\n") == 1
    return "set -euo pipefail\n" + text[text.index("status=0\n"):]


@pytest.mark.parametrize("status,want", [(0, 0), (1, 1), (2, 2), (4, 4)])
def test_the_quick_validation_decides_ci(tmp_path, status, want):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "summary.json").write_text(json.dumps(SUMMARY))
    fake = bin_dir / "mcproton"
    fake.write_text(f'#!/bin/sh\nmkdir -p ci_validation && cp "{tmp_path}/summary.json" ci_validation/\n'
                    f'echo "validate $*"\nexit {status}\n')
    py = bin_dir / "python"
    py.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    for f in (fake, py):
        f.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    p = subprocess.run(["bash", "-c", _validation_step()], cwd=work, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"})
    assert p.returncode == want, (p.stdout, p.stderr)
    assert "validate --quick --backend cpu --out ci_validation" in p.stdout
    if status == 1:   # the failed case and metric are printed, the passed ones not
        assert "validation FAILED" in p.stderr and "ranges_water: failed: R80 150 MeV vs CSDA 157.9 mm " \
            "(reference 157.2, tolerance 0.5)" in p.stderr, p.stderr
        assert "R80 70 MeV" not in p.stderr and "stopping_power" not in p.stderr
    elif status == 0:
        assert p.stderr == ""
    else:
        assert f"exit status {status} (not a tolerance failure)" in p.stderr
