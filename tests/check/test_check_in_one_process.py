"""``mcproton.check`` called again in the same process (a notebook, a script looping over patients): each check's
record is what a fresh ``mcproton check`` would record, and the caller's logging is left as it was (in-process
audit 25).

F1: a structure set is parsed once per process (``read_rtstruct``'s cache); its warnings (two ROIs of one name)
were said by the first reading only, so a second check of it had none in its warnings, check.json and report.
F3: pymedphys's gamma logs through ``logging.info``, which calls ``logging.basicConfig()`` where the root logger has
no handler: after a check, a script's own ``logging.basicConfig(filename=...)`` did nothing; with the caller's INFO
logging each check printed pymedphys's lines and three "--- Logging error ---" tracebacks.

Fast: the analytic MC dose of test_report.py (``check(mc=...)``, no transport) on test_check's ``base`` case."""
from __future__ import annotations

import html
import io
import logging
import shutil
import sys
from pathlib import Path

import pydicom
import pytest

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


@pytest.fixture
def root_logger():
    """The root logger, its handlers (pytest's own capture handlers among them), level and filters put back after
    the test."""
    root = logging.getLogger()
    kept = root.handlers[:], root.level, root.filters[:]
    try:
        yield root
    finally:
        root.handlers[:], root.filters[:] = kept[0], kept[2]
        root.setLevel(kept[1])


def test_a_root_logger_without_a_handler_has_none_after_a_check(base, tmp_path, root_logger):  # noqa: F811
    """F3: pymedphys's ``logging.info`` gave it basicConfig's StreamHandler (from the 3-D gammas and the report's
    2-D ones), so that the caller's own ``logging.basicConfig(filename=...)`` after the check did nothing."""
    folder = _patient(base, tmp_path)
    filters = root_logger.filters[:]
    root_logger.handlers[:] = []
    _check(base, folder, out=folder / "out")
    assert root_logger.handlers == [] and root_logger.filters == filters
    logging.basicConfig(filename=tmp_path / "mine.log", format="%(name)s %(message)s")
    logging.getLogger("myanalysis").warning("patient 2 suspicious")
    assert (tmp_path / "mine.log").read_text() == "myanalysis patient 2 suspicious\n"


def test_the_callers_info_logging_gets_no_pymedphys_line_and_no_logging_error(base, tmp_path, root_logger,  # noqa: F811
                                                                              capsys):
    """F3: with the caller's INFO logging (docs/check.md: ``log=logging.getLogger("mycheck").info``) each gamma
    search gave pymedphys's five INFO lines, and one with several dose criteria (``gamma_3d_multi``) a "--- Logging
    error ---" traceback on stderr (pymedphys formats the criteria, an array, with "%.3f"): three per check.  Now
    the caller's handler gets mcproton's own lines only."""
    folder = _patient(base, tmp_path)
    filters = root_logger.filters[:]
    buf = io.StringIO()
    mine = logging.StreamHandler(buf)
    root_logger.handlers[:] = [mine]
    root_logger.setLevel(logging.INFO)
    logging.getLogger("mycheck").info("before")
    _check(base, folder, out=folder / "out", log=logging.getLogger("mycheck").info)
    logging.getLogger("mycheck").info("after")
    assert root_logger.handlers == [mine] and root_logger.filters == filters
    text = buf.getvalue()
    assert text.startswith("before\n") and text.endswith("after\n") and "mcproton check" in text, text
    assert "gamma using" not in text and "normalisation set to" not in text and "Complete!" not in text, text
    assert "Logging error" not in capsys.readouterr().err
