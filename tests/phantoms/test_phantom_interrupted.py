"""A phantom stopped while its CT series is written leaves no shorter series that loads (the concurrency audit of
2026-12-07, F4).

Before, ``mcproton phantom`` wrote the slices one by one into ``OUT/ct/``: SIGINT, SIGTERM or SIGKILL part-way left
the slices written so far, whole DICOM files with nothing to mark them as a series cut short, and ``mcproton run``
loaded them as a shorter head (31 of 109 slices) without a word; SIGTERM printed nothing at all.  The series is now
written into a temporary folder and renamed into place once complete (``mcproton._io.atomic.atomic_write_folder``),
the command handles the stop signals (exit status 128 + the signal, a message saying what OUT holds), an earlier
phantom's RT Struct is not left beside a new CT, and the temporary folder a SIGKILL leaves is removed by the next
phantom into OUT.  The slice writer is slowed here, and the signal sent once a few slices are written.
"""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
from speedups import volumes_at_1mm_prelude
from stop_signal import signal_at_mark

from mcproton._io import dicom_common
from mcproton._io.atomic import TEMP_PREFIX
from mcproton.dicom import write_ct_series

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals as on Linux")

#: a phantom of few slices (8 mm voxels: 31 slices), written slowly, with a mark once SLICES slices are written
#: (after the prelude of _phantom_stopped)
_SCRIPT = """
import sys, time
from pathlib import Path
from mcproton._io import dicom_common

real = dicom_common.TemplateFileWriter.write
count = [0]

def write(self, path, **values):
    out = real(self, path, **values)
    count[0] += 1
    if count[0] == {slices}:
        Path({mark!r}).write_text("slices written")
    time.sleep(0.05)
    return out

dicom_common.TemplateFileWriter.write = write
from mcproton.cli import main
sys.exit(main(["phantom", "--age", "5", "--voxel-mm", "8", "--region", "head", "--out", sys.argv[1]]))
"""
SLICES = 5


def _temporaries(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"{TEMP_PREFIX}*")) if folder.is_dir() else []


def _phantom_stopped(tmp_path: Path, out: Path, sig: int) -> tuple[int, str]:
    """The phantom command of _SCRIPT in a fresh interpreter, sent ``sig`` once SLICES slices are written.  It takes
    its phantom's label volumes at 1 mm (for the warning of an 8 mm phantom's labels) computed once in this process
    (speedups.volumes_at_1mm_prelude; the tests' own phantom commands, in this process, compute them as before):
    2-3 s less per interpreter, before the CT that the signal stops."""
    mark = tmp_path / "mark"
    script = tmp_path / "phantom_slow.py"
    prelude = volumes_at_1mm_prelude([(5.0, "male", "head")], tmp_path / "phantom_volumes_1mm.pickle")
    script.write_text(prelude + _SCRIPT.format(slices=SLICES, mark=str(mark)))
    return signal_at_mark([sys.executable, str(script), str(out)], mark, sig)


def test_a_series_stopped_part_way_leaves_no_slice(tmp_path, monkeypatch):
    """The library's writer: an interrupt after a few slices leaves no folder, no slice, no temporary folder."""
    real = dicom_common.TemplateFileWriter.write
    count = {"n": 0}

    def write(self, path, **values):
        if count["n"] == 3:
            raise KeyboardInterrupt
        count["n"] += 1
        return real(self, path, **values)

    monkeypatch.setattr(dicom_common.TemplateFileWriter, "write", write)
    out = tmp_path / "ct"
    with pytest.raises(KeyboardInterrupt):
        write_ct_series(np.zeros((8, 4, 5)), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), out)
    assert not out.exists() and not _temporaries(tmp_path), list(tmp_path.iterdir())
    out.mkdir()   # an empty folder given: left empty
    count["n"] = 0
    with pytest.raises(KeyboardInterrupt):
        write_ct_series(np.zeros((8, 4, 5)), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), out)
    assert out.is_dir() and not any(out.iterdir()) and not _temporaries(tmp_path)
    monkeypatch.setattr(dicom_common.TemplateFileWriter, "write", real)
    paths = write_ct_series(np.zeros((8, 4, 5)), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), out)   # and whole when not stopped
    assert [p.name for p in paths] == [f"CT_{k:04d}.dcm" for k in range(8)] and all(p.is_file() for p in paths)
    assert oct(out.stat().st_mode & 0o777) != oct(0o700) and not _temporaries(tmp_path)


@linux_only
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=["TERM", "INT", "HUP"])
def test_the_phantom_command_stopped_in_its_ct_leaves_no_series_and_says_so(tmp_path, sig):
    from mcproton.cli import main

    out = tmp_path / "p"
    assert main(["phantom", "--age", "5", "--voxel-mm", "8", "--region", "head", "--out", str(out)]) == 0
    assert (out / "rtstruct.dcm").is_file() and len(list((out / "ct").glob("CT_*.dcm"))) == 31
    rc, err = _phantom_stopped(tmp_path, out, sig)
    name = signal.Signals(sig).name
    assert rc == 128 + sig, err
    assert f"mcproton: interrupted by {name} while the phantom was written" in err, err
    assert "not written: ct/, rtstruct.dcm, phantom.h5" in err and "Traceback" not in err, err
    # no shorter series, and not the earlier phantom's RT Struct and HDF5 beside nothing (or a new CT)
    assert not list(out.rglob("CT_*.dcm")), sorted(out.rglob("*"))
    assert not (out / "rtstruct.dcm").exists() and not (out / "phantom.h5").exists()
    assert not _temporaries(out) and not list(out.glob("*.lock")) and not (out / ".mcproton-lock").exists()


@linux_only
def test_a_phantom_killed_in_its_ct_leaves_no_series_and_the_next_one_tidies_up(tmp_path, capsys):
    from mcproton.cli import main

    out = tmp_path / "p"
    rc, err = _phantom_stopped(tmp_path, out, signal.SIGKILL)
    assert rc == -signal.SIGKILL, err
    ct = out / "ct"
    assert not (ct.is_dir() and any(ct.iterdir())), sorted(ct.iterdir())   # nothing a run would load
    left = _temporaries(out)
    assert left and all(p.is_dir() for p in left), sorted(out.iterdir())   # the unfinished series, hidden
    assert main(["phantom", "--age", "5", "--voxel-mm", "8", "--region", "head", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "removed 1 temporary file(s) left by an earlier run" in err, err
    assert not _temporaries(out) and len(list(ct.glob("CT_*.dcm"))) == 31


def test_a_second_phantom_into_a_folder_being_written_is_refused(tmp_path, capsys):
    from mcproton._io.lock import OutputLock
    from mcproton.cli import main

    out = tmp_path / "p"
    with OutputLock(out, "--out", folder=True):
        rc = main(["phantom", "--age", "5", "--voxel-mm", "8", "--region", "head", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 3 and "is being written by another run now" in err and f"pid {os.getpid()}" in err, err
    assert not list(out.rglob("CT_*.dcm"))


@linux_only
def test_a_phantom_killed_while_it_replaces_a_series_leaves_a_folder_that_is_refused_and_tidied(tmp_path, capsys):
    """A phantom killed with SIGKILL while it writes its series into the ``ct/`` of an earlier phantom (an existing
    folder, filled through a hidden temporary folder inside it: review 2a of 2026-12-07, R2): ``ct/`` holds no slice
    but that hidden folder, which the CT reader refuses, saying what to do; ``mcproton check``'s scan of the patient
    folder does not count its partial slices as CT files, and names it (R6); the next phantom removes it."""
    from mcproton._check.inputs import _scan
    from mcproton.cli import main
    from mcproton.dicom import load_ct_series
    from mcproton.errors import DicomInputError

    out = tmp_path / "p"
    assert main(["phantom", "--age", "5", "--voxel-mm", "8", "--region", "head", "--out", str(out)]) == 0
    rc, err = _phantom_stopped(tmp_path, out, signal.SIGKILL)
    assert rc == -signal.SIGKILL, err
    ct = out / "ct"
    left = _temporaries(ct)
    assert not list(ct.glob("CT_*.dcm")) and len(left) == 1 and left[0].is_dir(), sorted(ct.iterdir())
    assert len(list(left[0].glob("CT_*.dcm"))) >= SLICES
    with pytest.raises(DicomInputError, match="stopped \\(killed\\) before its series was whole"):
        load_ct_series(ct)
    notes: list[str] = []
    found, _, _ = _scan(out, notes=notes)
    assert found["CT"] == [], found["CT"]
    assert any(left[0].name in n and "unfinished temporary folder of mcproton" in n for n in notes), notes
    capsys.readouterr()
    assert main(["phantom", "--age", "5", "--voxel-mm", "8", "--region", "head", "--out", str(out)]) == 0
    assert "removed 1 temporary file(s) left by an earlier run" in capsys.readouterr().err
    assert not _temporaries(ct) and len(list(ct.glob("CT_*.dcm"))) == 31


@linux_only
def test_a_phantom_stopped_as_it_starts_writing_does_not_claim_the_earlier_phantoms_files(tmp_path, monkeypatch,
                                                                                          capsys):
    """Audit 26 exitcodes, F8: a 6-year-old phantom stopped as it began writing said "--out holds ct/ (the whole
    series), rtstruct.dcm, phantom.h5", every one of them the earlier 5-year-old phantom's."""
    from mcproton.cli import main
    from mcproton.phantoms import dicom_export

    out = tmp_path / "p"
    assert main(["phantom", "--age", "5", "--voxel-mm", "8", "--region", "head", "--out", str(out)]) == 0
    capsys.readouterr()
    real = dicom_export.export_phantom

    def stopped_at_once(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(dicom_export, "export_phantom", stopped_at_once)
    assert main(["phantom", "--age", "6", "--voxel-mm", "8", "--region", "head", "--out", str(out)]) == 143
    err = capsys.readouterr().err
    assert "nothing of this phantom's was written to --out" in err, err
    assert "not written: ct/, rtstruct.dcm, phantom.h5" in err
    assert ("the earlier phantom's ct/ (31 slices, the whole series), rtstruct.dcm, phantom.h5 are still there: not "
            "this phantom's") in err, err

    def stopped_after_the_ct(*args, **kwargs):   # the earlier RT Struct and HDF5 are removed before the CT is written
        real_ct = dicom_export.write_phantom_ct

        def ct_then_stop(*a, **k):
            ref = real_ct(*a, **k)
            os.kill(os.getpid(), signal.SIGTERM)
            return ref

        monkeypatch.setattr(dicom_export, "write_phantom_ct", ct_then_stop)
        return real(*args, **kwargs)

    monkeypatch.setattr(dicom_export, "export_phantom", stopped_after_the_ct)
    assert main(["phantom", "--age", "6", "--voxel-mm", "8", "--region", "head", "--out", str(out)]) == 143
    err = capsys.readouterr().err
    assert f"--out {out} holds this phantom's ct/ (" in err and "not written: rtstruct.dcm, phantom.h5" in err, err
    assert "earlier phantom" not in err, err
