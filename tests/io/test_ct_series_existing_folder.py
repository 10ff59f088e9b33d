"""A CT series written whole into an existing empty folder that cannot be replaced by a rename (review 2a of
2026-12-07, R2).

The atomic series write (the concurrency audit of 2026-12-07, F4) wrote the slices into a temporary folder beside
``ct/`` and renamed it over ``ct/``.  That failed where the old in-place writer had worked: an empty ``ct/`` that is a
mount point (a container volume: ``rename`` gives EBUSY) or whose parent cannot be written (an administrator's
``patient/ct`` under a read-only share: ``mkdtemp`` gives EPERM/EACCES), with a raw errno naming a hidden temporary
path, after the phantom was built.  An existing empty folder is now filled through a hidden temporary folder inside
it, whose slices are renamed up into it once all are written; a series that cannot be written says why in words.
A writer killed among those renames leaves both ends of the series and a gap (refused by the reader), and the hidden
folder it leaves makes the reader refuse the folder, saying what to do.
"""
from __future__ import annotations

import errno
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from mcproton._io import atomic
from mcproton._io.atomic import TEMP_PREFIX
from mcproton.dicom import load_ct_series, write_ct_series
from mcproton.errors import DicomInputError

HU = np.zeros((6, 4, 5))
NAMES = [f"CT_{k:04d}.dcm" for k in range(6)]


def _write(out: Path) -> list[Path]:
    return write_ct_series(HU, (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), out)


def test_an_existing_empty_folder_whose_parent_cannot_be_written_nor_it_replaced_gets_the_series(tmp_path,
                                                                                                 monkeypatch):
    """A temporary folder cannot be made beside it (PermissionError) and it cannot be renamed over (EBUSY, a mount
    point): the series is written whole into it, the folder itself kept, with no hidden folder left."""
    out = tmp_path / "patient" / "ct"
    out.mkdir(parents=True)
    inode = out.stat().st_ino
    real_mkdtemp, real_replace = tempfile.mkdtemp, os.replace

    def mkdtemp(*a, dir=None, **k):
        if dir is not None and Path(dir).resolve() != out.resolve():
            raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), str(dir))
        return real_mkdtemp(*a, dir=dir, **k)

    def replace(src, dst, *a, **k):
        if Path(dst).resolve() == out.resolve():
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(src), None, str(dst))
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    monkeypatch.setattr(os, "replace", replace)
    paths = _write(out)
    assert [p.name for p in paths] == NAMES and sorted(os.listdir(out)) == NAMES   # nothing hidden left
    assert out.stat().st_ino == inode
    assert load_ct_series(out).hu_zyx.shape == HU.shape
    assert os.listdir(out.parent) == ["ct"]


@pytest.mark.skipif(os.geteuid() != 0 if hasattr(os, "geteuid") else True, reason="mounting needs root")
def test_an_empty_ct_folder_that_is_a_mount_point_gets_the_series(tmp_path):
    """The reviewer's case itself: an empty tmpfs mounted on ``ct/`` (a container volume); skipped where this process
    may not mount one."""
    out = tmp_path / "mnt" / "ct"
    out.mkdir(parents=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "none", str(out)], capture_output=True).returncode:
        pytest.skip("tmpfs could not be mounted here")
    try:
        assert os.path.ismount(out)
        assert [p.name for p in _write(out)] == NAMES and sorted(os.listdir(out)) == NAMES
        assert load_ct_series(out).hu_zyx.shape == HU.shape
    finally:
        subprocess.run(["umount", str(out)], check=True)


def test_a_new_folder_whose_parent_cannot_be_written_is_said_in_words(tmp_path, monkeypatch):
    """Where the folder is new and cannot be made: a CTSeriesWriteError that says why and what to do, not the bare
    "[Errno 13] Permission denied: '.../.mcp-....tmp'"."""
    from mcproton._io.ct import CTSeriesWriteError

    def mkdtemp(*a, dir=None, **k):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(Path(dir) / ".mcp-x-y.tmp"))

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    out = tmp_path / "ro" / "ct"
    with pytest.raises(CTSeriesWriteError) as ei:
        _write(out)
    msg = str(ei.value)
    assert ei.value.errno == errno.EACCES
    assert f"the CT series could not be written to {out}" in msg and "permission denied" in msg, msg
    assert "nothing of it was written" in msg and "writable, or give another output folder" in msg, msg
    assert "Errno" not in msg and TEMP_PREFIX not in msg, msg
    assert not out.exists()


def test_a_writer_stopped_while_moving_the_slices_into_place_leaves_the_folder_empty(tmp_path, monkeypatch):
    """An interrupt (or an error) among the renames into the folder: the slices moved are removed again, and so is
    the hidden temporary folder."""
    out = tmp_path / "ct"
    out.mkdir()
    real_rename, count = os.rename, {"n": 0}

    def rename(src, dst, *a, **k):
        if Path(dst).parent == out:
            count["n"] += 1
            if count["n"] == 3:
                raise KeyboardInterrupt
        return real_rename(src, dst, *a, **k)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        _write(out)
    assert os.listdir(out) == []


def test_the_slices_are_moved_ends_first_so_that_a_partial_move_shows_a_gap(tmp_path):
    """A SIGKILL among the renames cannot be cleaned up: it leaves the hidden temporary folder, for which the reader
    refuses the folder (the next test); and the first and last slices are moved first, so that from the third slice
    on the slices in place are the two ends and some of the middle, a series with a gap (refused even without that
    folder), never a shorter series (a patient's end cut off without a gap to be seen)."""
    assert atomic._move_order(list(reversed(NAMES))) == [NAMES[0], NAMES[-1], *NAMES[1:-1]]
    whole = tmp_path / "whole"
    _write(whole)
    for k in range(3, len(NAMES)):   # every partial state of three or more slices
        part = tmp_path / f"part{k}"
        part.mkdir()
        for name in atomic._move_order(NAMES)[:k]:
            (part / name).write_bytes((whole / name).read_bytes())
        with pytest.raises(DicomInputError, match="missing slice|uneven slice spacing"):
            load_ct_series(part)


@pytest.mark.parametrize("slices", [0, 4])
def test_a_ct_folder_holding_an_unfinished_series_folder_is_refused(tmp_path, slices):
    """The hidden temporary folder a killed writer leaves inside ``ct/``: the folder is refused, naming it and what
    to do, with or without slices beside it (a writer killed while it wrote them, or while it moved them)."""
    whole = tmp_path / "whole"
    _write(whole)
    ct = tmp_path / "ct"
    left = ct / f"{TEMP_PREFIX}{atomic.name_tag('ct')}-abc123.tmp"
    left.mkdir(parents=True)
    (left / NAMES[-1]).write_bytes((whole / NAMES[-1]).read_bytes())
    for name in NAMES[:slices]:
        (ct / name).write_bytes((whole / name).read_bytes())
    with pytest.raises(DicomInputError) as ei:
        load_ct_series(ct)
    msg = str(ei.value)
    assert left.name in msg and "stopped (killed) before its series was whole" in msg, msg
    assert "write the series again" in msg and "remove that hidden folder" in msg, msg
    (ct / ".DS_Store").write_bytes(b"x")   # other hidden entries: skipped, as before
    left.rename(ct / ".other")
    if slices:
        assert load_ct_series(ct).hu_zyx.shape[0] == slices
