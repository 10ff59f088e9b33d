"""``mcproton check`` on a full disk (deployment audit of 2026-12-05, F7).

The check made no free-space check before its Monte Carlo; when ``RD_mc.dcm`` could not be written, the MC dose
was lost, and the only message was pydicom's exception with its traceback flattened into it, without the file's
name.  Now: a warning before the MC; the MC dose written to a folder in the temporary folder instead, named in a
one-line message that names the file that failed and why; a report that cannot be written names its file and the
MC RT Dose already written.

No transport: an MC dose made from the analytic dose of test_check.py's ``base`` (test_report._fake_mc); the full
disk is simulated in the atomic writer, the way pydicom reports it (its ``tag_in_exception`` wraps the OSError).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_check import _tps, base  # noqa: E402,F401  (base: test_check's module fixture)
from test_report import FAST, _fake_mc  # noqa: E402

from full_disk import full_disk_at  # noqa: E402  (tests/full_disk.py)

from mcproton._check import api  # noqa: E402


def _check(base, out, **kw):  # noqa: F811
    d = base["dir"]
    return api.check(plan=d / "RP.dcm", dose=_tps(base, "fd_plan", base["blob"]), ct=d / "ct", struct=d / "RS.dcm",
                     beam_model="dcpt_v2", out=out, **{"mc": _fake_mc(base, 1.0), **FAST, **kw})


def _full_disk_message(base, monkeypatch, out, name):  # noqa: F811
    """The check's one-line error when the disk fills at its output ``name``, checked to start by naming it."""
    full_disk_at(monkeypatch, out / name)
    with pytest.raises(RuntimeError) as err:
        _check(base, out)
    msg = str(err.value)
    assert msg.startswith(f"could not write {out / name}: no space left on device;"), msg
    return msg


def test_a_full_disk_at_the_mc_rt_dose_keeps_the_mc_dose_in_the_temporary_folder(base, tmp_path, monkeypatch):  # noqa: F811
    import tempfile

    rescue = tmp_path / "tmp"
    rescue.mkdir()
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(rescue))
    out = tmp_path / "chk"
    msg = _full_disk_message(base, monkeypatch, out, "RD_mc.dcm")
    assert "\n" not in msg and "Traceback" not in msg and "free disk space" in msg
    (folder,) = rescue.glob("mcproton-rescued-*")
    assert str(folder) in msg and "RD_mc.dcm" in msg
    ds = pydicom.dcmread(folder / "RD_mc.dcm")
    dose = ds.pixel_array * float(ds.DoseGridScaling)
    np.testing.assert_allclose(dose.max(), _fake_mc(base, 1.0).total_gy_zyx.max(), rtol=1e-3)
    assert not (out / "RD_mc.dcm").exists() and not list(tmp_path.rglob(".mcp-*.tmp"))


def test_a_full_disk_at_the_report_names_the_file_and_the_mc_dose_kept(base, tmp_path, monkeypatch):  # noqa: F811
    out = tmp_path / "chk"
    msg = _full_disk_message(base, monkeypatch, out, "check.html")
    assert f"the MC dose is kept in {out / 'RD_mc.dcm'}" in msg and "\n" not in msg and "Traceback" not in msg
    assert (out / "RD_mc.dcm").exists() and not (out / "check.html").exists()


def test_too_little_free_space_is_warned_before_the_mc(base, tmp_path, monkeypatch):  # noqa: F811
    """The check's outputs (the MC RT Dose of the TPS grid and the report) against the free space of --out's file
    system, before the MC (as mcproton run does before its transport)."""
    import shutil

    from mcproton._io.errors import McprotonRuntimeWarning

    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=100_000))
    order = []

    def fake_mc(*args, **kwargs):
        order.append("mc")
        return _fake_mc(base, 1.0)

    monkeypatch.setattr(api, "run_mc", fake_mc)
    with pytest.warns(McprotonRuntimeWarning, match="this check may write up to") as said:
        _check(base, tmp_path / "chk", mc=None, report=False)
    msg = next(str(w.message) for w in said if "this check may write" in str(w.message))
    assert "has 0.1 MB free" in msg and "MC RT Dose" in msg and "temporary folder" in msg, msg
    assert order == ["mc"]


def test_the_free_space_estimate_of_a_check(tmp_path):
    from mcproton._io.errors import McprotonRuntimeWarning
    from mcproton._run.inputs import DISK_BYTES_CHECK_REPORT, check_disk_space_of_check

    n_vox, files = 1_000_000, 3
    need = files * (1e6 + 4 * n_vox) + DISK_BYTES_CHECK_REPORT
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", McprotonRuntimeWarning)
        check_disk_space_of_check(tmp_path / "chk", n_vox, files, free_bytes=lambda p: need + 1)
    with pytest.warns(McprotonRuntimeWarning, match=f"up to {need / 1e6:.1f} MB"):
        check_disk_space_of_check(tmp_path / "chk", n_vox, files, free_bytes=lambda p: need - 1)
