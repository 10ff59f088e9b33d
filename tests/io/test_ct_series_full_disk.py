"""A CT series cut short by a full disk (the environment audit of 2026-12-06, F6).

``mcproton phantom`` on a full disk said only "[Errno 28] No space left on device" and left 37 of 109 slices (the
last truncated) in ``ct/``: with that slice removed by hand the rest loaded as a shorter head.  The slices written
are now removed, and the error says in words what happened (the disk of the folder is full, how many slices of how
many, that the series was removed) and what to do.  The disk fills after a few slices here: the slice writer is
made to fail like a full disk after writing part of a file.
"""
from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from mcproton._io import dicom_common
from mcproton.dicom import write_ct_series

#: the slice (0-based) whose write fails
FAIL_AT = 3


@pytest.fixture
def disk_full_after(monkeypatch):
    real = dicom_common.TemplateFileWriter.write
    count = {"n": 0}

    def write(self, path, **values):
        if count["n"] == FAIL_AT:
            with open(path, "wb") as fh:   # a truncated slice, as a full disk leaves it
                fh.write(b"\0" * 64)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        count["n"] += 1
        return real(self, path, **values)

    monkeypatch.setattr(dicom_common.TemplateFileWriter, "write", write)


def test_a_series_cut_short_is_removed_and_said_in_words(tmp_path, disk_full_after):
    out = tmp_path / "ct"
    with pytest.raises(OSError) as ei:
        write_ct_series(np.zeros((8, 4, 5)), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), out)
    msg = str(ei.value)
    assert ei.value.errno == errno.ENOSPC
    assert "the disk of that folder is full" in msg and f"after {FAIL_AT} of 8 slices" in msg, msg
    assert "removed" in msg and "another output folder" in msg and "Errno" not in msg, msg
    assert not out.exists(), list(out.iterdir())   # made by the call: no slice, no empty folder left


def test_the_phantom_command_leaves_no_partial_series_and_says_why(tmp_path, disk_full_after, capsys):
    from mcproton.cli import main

    rc = main(["phantom", "--age", "5", "--voxel-mm", "8", "--region", "head", "--out", str(tmp_path / "p")])
    err = capsys.readouterr().err
    assert rc == 3, err
    assert "the disk of that folder is full" in err and "slices" in err and "[Errno 28]" not in err, err
    ct = tmp_path / "p" / "ct"
    assert not ct.exists() or not any(ct.iterdir()), list(ct.iterdir())
