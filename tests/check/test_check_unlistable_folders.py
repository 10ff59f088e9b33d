"""A folder in a patient folder that cannot be listed is refused, naming it (untrusted-input audit 29, F3).

Before, the check's walk left it out as os.walk does, without a word: CT slices in it (a series split into
sub-folders, or a copy whose permissions were not kept) were not read, and the check ran on a shorter CT, as
with a dangling link to a slice (which the check refuses: locale audit 2026-12-07, F1).  A file that cannot be read
was refused already.

Root lists every folder whatever its mode, so the folder is made unlistable by ``os.scandir`` raising EACCES for
it, as the kernel does for another user's folder of mode 000.
"""
from __future__ import annotations

import errno
import os

import pytest

from mcproton._check.inputs import CheckInputError, gather, walk_files


def _unlistable(monkeypatch, folder) -> None:
    real = os.scandir

    def scandir(path="."):
        if os.path.realpath(path) == os.path.realpath(folder):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)


def test_a_sub_folder_that_cannot_be_listed_is_refused_naming_it(tmp_path, monkeypatch):
    more = tmp_path / "patient" / "ct" / "more"
    more.mkdir(parents=True)
    (more / "CT_0010.dcm").write_bytes(b"\0" * 200)
    (tmp_path / "patient" / "notes.txt").write_text("x")
    _unlistable(monkeypatch, more)
    with pytest.raises(CheckInputError, match=r"1 folder\(s\) in the patient folder .*patient cannot be listed: "
                       r"ct/more \(Permission denied\); they may hold CT slices, the RT Plan or an RT Dose, .* "
                       r"make them readable to this user \(e\.g\. chmod -R u\+rX\), or move them out of the "
                       r"patient folder"):
        gather(folder=tmp_path / "patient")


def test_the_walk_says_which_folders_it_could_not_list(tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.dcm").write_bytes(b"")
    (tmp_path / "a" / "y.dcm").write_bytes(b"")
    _unlistable(monkeypatch, tmp_path / "b")
    unreadable: list = []
    files = walk_files(tmp_path, unreadable=unreadable)
    assert [f.name for f in files] == ["y.dcm"]
    assert unreadable == [(tmp_path / "b", "Permission denied")]


@pytest.mark.parametrize("name", ["lost+found", ".Trashes", ".Spotlight-V100", "System Volume Information"])
def test_a_drives_unlistable_system_folder_is_skipped_with_a_note(tmp_path, monkeypatch, name):
    """Review a of audit 29, R2: a patient folder that is a drive's root (a DICOM export on a USB drive) holds the
    drive's system folders, which a user cannot list (lost+found of root, mode 700; macOS's .Trashes d-wx-wx-wt,
    .Spotlight-V100 of root): the walk refused the patient for them, "they may hold CT slices".  They are skipped
    with a note; another folder of that name below the patient folder's top is too, and a patient folder itself of
    that name is refused (it is what was asked for)."""
    drive = tmp_path / "usb"
    (drive / name).mkdir(parents=True)
    (drive / "RP.dcm").write_bytes(b"")
    _unlistable(monkeypatch, drive / name)
    skipped: list = []
    unreadable: list = []
    assert [f.name for f in walk_files(drive, skipped, unreadable=unreadable)] == ["RP.dcm"]
    assert unreadable == [] and skipped == [f"skipped {name}: " + skipped[0].split(": ", 1)[1]], skipped
    assert "which cannot be listed (Permission denied); not an input" in skipped[0], skipped
    _unlistable(monkeypatch, drive)
    assert walk_files(drive, skipped, unreadable=unreadable) == [] and unreadable == [(drive, "Permission denied")]
