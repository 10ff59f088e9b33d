"""CT slices that are symbolic links to files that do not exist (a research store or PACS cache moved or unmounted,
``cp -s`` of a series): ``Path.is_file()`` is False for such a link, so the CT folder's listing left them out without
a word and the CT was read without them (locale audit 2026-12-07, F1: 107 of 109 slices, the two ends cut off, no
gap to be seen, and `mcproton run` computed a dose on it).  Now a link named like DICOM whose target is gone is
refused as an empty slice is; a link of another name is skipped and named in a warning.  The check's folder scan:
tests/check/test_check_pairing.py."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from mcproton import McprotonWarning
from mcproton._io.ct import ct_series_grid, load_ct_series, write_ct_series
from mcproton._io.errors import DicomInputError


def _linked_series(tmp_path: Path) -> tuple[Path, list[Path]]:
    """A 6-slice CT in store/ and a folder ct/ of links to its slices; the links in slice order."""
    hu = np.full((6, 8, 8), -1000.0)
    hu[:, 2:6, 2:6] = 0.0
    paths = write_ct_series(hu, (2.0, 2.0, 3.0), (0.0, 0.0, 0.0), tmp_path / "store")
    ct = tmp_path / "ct"
    ct.mkdir()
    links = []
    for p in paths:
        (ct / p.name).symlink_to(p)
        links.append(ct / p.name)
    return ct, links


def _break(link: Path) -> None:
    """The link's target moved away (the store renamed or unmounted)."""
    target = os.readlink(link)
    link.unlink()
    link.symlink_to(target + ".moved")


def test_linked_slices_are_read(tmp_path):
    ct, links = _linked_series(tmp_path)
    assert load_ct_series(ct).shape_zyx == (6, 8, 8)


@pytest.mark.parametrize("reader", [load_ct_series, ct_series_grid])
def test_links_to_slices_that_are_gone_are_refused_naming_them(tmp_path, reader):
    """The lowest and the highest slice's targets gone: before, a CT of 4 slices (z 3..12 mm for 0..15 mm)."""
    ct, links = _linked_series(tmp_path)
    _break(links[0])
    _break(links[-1])
    with pytest.raises(DicomInputError) as exc:
        reader(ct)
    msg = str(exc.value)
    assert f"2 file(s) in the CT folder {ct} named like DICOM files are symbolic links to files that do not exist" \
        in msg, msg
    assert f"{links[0].name} -> {os.readlink(links[0])}" in msg and links[-1].name in msg, msg
    assert "the CT would be shorter" in msg and "remove the links if they are not needed" in msg, msg


def test_a_link_of_another_name_whose_target_is_gone_is_skipped_and_named(tmp_path):
    ct, _ = _linked_series(tmp_path)
    (ct / "notes.txt").symlink_to(tmp_path / "nowhere" / "notes.txt")
    (ct / ".hidden").symlink_to(tmp_path / "nowhere" / "hidden")   # hidden files are never read nor named
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        assert load_ct_series(ct).shape_zyx == (6, 8, 8)
    named = [str(w.message) for w in said if issubclass(w.category, McprotonWarning) and "symbolic link" in
             str(w.message)]
    assert named == [f"{ct}: skipped 1 symbolic link(s) to files that do not exist: notes.txt -> "
                     f"{tmp_path / 'nowhere' / 'notes.txt'}"], named


def test_a_link_loop_named_like_a_slice_is_refused(tmp_path):
    ct, _ = _linked_series(tmp_path)
    (ct / "CT_loop.dcm").symlink_to(ct / "CT_loop.dcm")
    with pytest.raises(DicomInputError, match=r"1 file\(s\) in the CT folder .* CT_loop\.dcm -> "):
        load_ct_series(ct)


def test_the_ct_folder_is_listed_once(tmp_path, monkeypatch):
    """Review of 2026-12-07, R7: the header pass listed the CT folder a second time (and lstat()ed every entry again)
    for its links of other names; on network storage each listing is a round trip.  Those links are still named."""
    ct, _ = _linked_series(tmp_path)
    (ct / "notes.txt").symlink_to(tmp_path / "nowhere" / "notes.txt")
    listed: list[Path] = []
    iterdir = Path.iterdir

    def counting(self):
        listed.append(self)
        return iterdir(self)

    monkeypatch.setattr(Path, "iterdir", counting)
    with pytest.warns(McprotonWarning, match=r"skipped 1 symbolic link\(s\) to files that do not exist: notes\.txt"):
        load_ct_series(ct)
    assert listed.count(ct) == 1, listed
