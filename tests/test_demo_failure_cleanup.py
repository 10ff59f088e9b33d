"""What a demo stopped by an error leaves in --out (the environment audit of 2026-12-06, F6).

On a full disk ``mcproton demo`` left two hidden 0-byte ``.mcp-<tag>-*.tmp`` files (its plane figures' processes,
ended while writing) and a CT series cut at 103 of 109 slices that nothing mentioned (the error named another file).
After the helpers are stopped the temporary files of its outputs are removed, and an unfinished series is removed
and said to be.  The state such a failure leaves is laid out here (a whole demo run on a full disk takes minutes).
"""
from __future__ import annotations

from mcproton._io.atomic import TEMP_PREFIX, name_tag
from mcproton.demo import _clean_after_failure


def test_temporary_files_and_a_cut_series_are_removed_and_said(tmp_path, capsys):
    out = tmp_path / "demo"
    (out / "ct").mkdir(parents=True)
    for k in range(3):
        (out / "ct" / f"CT_{k:04d}.dcm").write_bytes(b"slice")
    tmps = [out / f"{TEMP_PREFIX}{name_tag(n)}-abc123.tmp" for n in ("dose_planes.png", "let_planes.png", "dose.h5")]
    for t in tmps:
        t.touch()
    keep = out / "notes.txt"   # not the demo's: left alone
    keep.write_text("mine")
    _clean_after_failure(out, 10)
    assert not any(t.exists() for t in tmps)
    assert not list((out / "ct").glob("CT_*.dcm")) and keep.exists()
    err = capsys.readouterr().err
    assert "CT series" in err and "cut short (3 of 10 slices" in err and "removed" in err and "incomplete" in err


def test_a_whole_series_is_kept_without_a_word(tmp_path, capsys):
    out = tmp_path / "demo"
    (out / "ct").mkdir(parents=True)
    for k in range(4):
        (out / "ct" / f"CT_{k:04d}.dcm").write_bytes(b"slice")
    _clean_after_failure(out, 4)
    assert len(list((out / "ct").glob("CT_*.dcm"))) == 4 and "CT series" not in capsys.readouterr().err


def test_an_unfinished_series_in_its_temporary_folder_is_removed_and_said(tmp_path, capsys):
    """Since 2026-12-07 the writer fills a temporary folder beside ct/ and renames it once whole (the concurrency
    audit, F4/F5): a writer ended before that leaves the folder, which is removed and said to be; ct/ holds none of
    it, and an earlier run's temporary folder of another output is not taken for it."""
    out = tmp_path / "demo"
    unfinished = out / f"{TEMP_PREFIX}{name_tag('ct')}-abc123.tmp"
    unfinished.mkdir(parents=True)
    for k in range(3):
        (unfinished / f"CT_{k:04d}.dcm").write_bytes(b"slice")
    _clean_after_failure(out, 10)
    assert not unfinished.exists() and not (out / "ct").exists()
    err = capsys.readouterr().err
    assert "CT series being written to" in err and "not finished" in err and "removed" in err, err
