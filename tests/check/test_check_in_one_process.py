"""``mcproton.check`` called again in the same process (a notebook, a script looping over patients): each check's
record is what a fresh ``mcproton check`` would record (in-process audit 25).

F1: a structure set is parsed once per process (``read_rtstruct``'s cache); its warnings (two ROIs of one name)
were said by the first reading only, so a second check of it had none in its warnings, check.json and report.

Fast: the analytic MC dose of test_report.py (``check(mc=...)``, no transport) on test_check's ``base`` case."""
from __future__ import annotations

import html
import shutil
import sys
from pathlib import Path

import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_check import _tps, _write_rs, base  # noqa: E402,F401  (base: test_check's module fixture, re-used here)
from test_report import FAST, _fake_mc  # noqa: E402

BOTH_NAMED = "ROIs 2 and 3 are both named 'Organ'"


def _patient(base, tmp_path) -> Path:  # noqa: F811
    """base's case with an RT Struct whose ROIs 2 and 3 are both named 'Organ'."""
    folder = tmp_path / "patient"
    shutil.copytree(base["dir"] / "ct", folder / "ct")
    shutil.copy(base["dir"] / "RP.dcm", folder / "RP.dcm")
    _write_rs(folder / "RS.dcm", pydicom.dcmread(folder / "RP.dcm"),
              organs=[("Organ", (-30.0, -30.0, -8.0), (-20.0, -20.0, 8.0)), ("Organ", (20.0, 20.0, -8.0),
                                                                              (30.0, 30.0, 8.0))])
    shutil.move(_tps(base, "rd_twice", base["blob"]), folder / "RD.dcm")
    return folder


def _check(base, folder: Path, **kw):  # noqa: F811
    from mcproton._check.api import check

    return check(plan=folder / "RP.dcm", dose=folder / "RD.dcm", ct=folder / "ct", struct=folder / "RS.dcm",
                 beam_model="dcpt_v2", mc=_fake_mc(base, 1.0), **{**FAST, **kw})


def test_a_second_check_of_the_same_structure_set_keeps_its_warnings(base, tmp_path):  # noqa: F811
    """F1: the second check's warnings (and report) had no 'both named' warning: the structure set came from the
    cache, which kept the contours and not what their reading said.  Each check says it once (the check reads the
    file three times)."""
    folder = _patient(base, tmp_path)
    first = _check(base, folder, out=None)
    second = _check(base, folder, out=folder / "out")
    for res in (first, second):
        assert sum(BOTH_NAMED in w for w in res.warnings) == 1, res.warnings
    assert first.warnings == second.warnings
    assert html.escape(BOTH_NAMED) in (folder / "out" / "check.html").read_text(encoding="utf-8")
