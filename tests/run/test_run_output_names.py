"""Output names near the file system's NAME_MAX (deployment audit of 2026-12-05, F6).

An ``--out`` name legal in itself (240 characters of NAME_MAX 255) passed every check before the transport, then
the atomic writer's temporary name (``.<name>.XXXXXXXX.tmp``, 14 characters longer) and the rescue name
(``mcproton-rescued-<pid>-<name>``) did not fit: every checkpoint failed, the HDF5 and its rescue copy too, and the
finished run was lost with "free disk space" as the remedy.  Now the temporary and rescue names are short whatever
the output's, a name whose lock file does not fit is refused before the transport, and ENAMETOOLONG is named as
such.  The lengths are taken from the file system of tmp_path (os.pathconf PC_NAME_MAX), not assumed to be 255.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from fakes import log_lines  # tests/fakes.py
from run_helpers import no_transport, read_h5, write_cfg

from mcproton._io import atomic
from mcproton.cli import main


def name_max(folder: Path) -> int:
    """NAME_MAX of the file system of ``folder`` (bytes)."""
    return os.pathconf(folder, "PC_NAME_MAX")


def _err_line(capsys) -> str:
    err = [ln for ln in log_lines(capsys.readouterr().err.strip()) if ln.startswith("mcproton:")]
    assert err, "no mcproton line on stderr"
    return err[-1]


def test_an_output_name_12_characters_short_of_name_max_is_written(tmp_path, capsys):
    """The name leaves room for its lock file (+5) and its checkpoint's (+8 +5) but not for the old temporary name
    (+14): the run used to end with its result lost; now it completes, leaving no temporary file."""
    limit = name_max(tmp_path)
    cfg = write_cfg(tmp_path / "job.toml", 2000)
    out = tmp_path / ("p" * (limit - 15) + ".h5")
    assert len(out.name) == limit - 12
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0, capsys.readouterr().err
    assert read_h5(out)["dose"].max() > 0
    assert not list(tmp_path.glob(".*.tmp")) and not list(tmp_path.glob("*.ckpt.h5"))


def test_temporary_names_are_short_and_of_fixed_length(tmp_path):
    """The atomic writer's temporary file is named ``.mcp-<12 hex>-<8 random>.tmp`` (30 characters) beside the
    output, for a short and a long output name alike; an earlier run's are found by the output's name."""
    from mcproton._io.lock import remove_stale_temporaries

    seen = []
    for name in ("o.h5", "q" * (name_max(tmp_path) - 1)):
        atomic.write_bytes_atomic(tmp_path / name, b"x")   # the long one would not have fitted before
        atomic.atomic_write_file(tmp_path / name, lambda tmp: (seen.append(tmp), tmp.write_bytes(b"y")))
        assert (tmp_path / name).read_bytes() == b"y"
    assert [len(t.name) for t in seen] == [30, 30] and all(t.parent == tmp_path for t in seen)
    # a temporary file left by a killed writer of o.h5 is removed for o.h5, another output's is left alone
    left = tmp_path / f".mcp-{atomic.name_tag('o.h5')}-abcd1234.tmp"
    other = tmp_path / f".mcp-{atomic.name_tag('other.h5')}-abcd1234.tmp"
    old_style = tmp_path / ".o.h5.abc123.tmp"   # mcproton before 2026-12-05
    for p in (left, other, old_style):
        p.write_bytes(b"partial")
    assert set(remove_stale_temporaries([tmp_path / "o.h5"])) == {left, old_style}
    assert other.exists()


def test_rescue_names_are_short_whatever_the_outputs_length(tmp_path):
    from mcproton._io.atomic import rescue_path

    long_name = "Patient_Mueller_" + "x" * 220 + ".h5"
    r = rescue_path(tmp_path / long_name, tmp_path)
    assert r.parent == tmp_path and r.name.startswith(f"mcproton-rescued-{os.getpid()}-Patient_Mueller_")
    assert r.suffix == ".h5" and len(r.name) < 80
    assert rescue_path(tmp_path / "o.h5", tmp_path).name == f"mcproton-rescued-{os.getpid()}-o.h5"
    # non-ASCII stems are cut on a character boundary
    r = rescue_path(tmp_path / ("é" * 100 + ".h5"), tmp_path)
    assert len(os.fsencode(r.name)) < 80 and "\ufffd" not in r.name


def test_a_rescue_copy_never_replaces_an_earlier_one(tmp_path):
    """A restarted container runs as the same pid: the rescued result of the run before must stay (failed before
    2026-12-07: the same name, replaced)."""
    from mcproton._io.atomic import rescue_path

    first = rescue_path(tmp_path / "o.h5", tmp_path)
    first.write_bytes(b"earlier run's rescued result")
    second = rescue_path(tmp_path / "o.h5", tmp_path)
    assert second != first and second.name == f"mcproton-rescued-{os.getpid()}-2-o.h5"
    second.write_bytes(b"x")
    assert rescue_path(tmp_path / "o.h5", tmp_path).name == f"mcproton-rescued-{os.getpid()}-3-o.h5"
    assert first.read_bytes() == b"earlier run's rescued result"


def test_a_long_name_that_cannot_be_written_is_rescued(tmp_path, capsys, monkeypatch):
    """The HDF5 of a long name fails (a full disk here): its rescue copy in the temporary folder is written (its
    name, mcproton-rescued-<pid>-<name>, no longer goes past NAME_MAX)."""
    import tempfile

    limit = name_max(tmp_path)
    rescue = tmp_path / "rescue"
    rescue.mkdir()
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(rescue))
    cfg = write_cfg(tmp_path / "job.toml", 2000)
    out = tmp_path / ("p" * (limit - 15) + ".h5")   # its checkpoint's lock file fits (locked with --no-checkpoint)
    real = atomic.atomic_write_file

    def full(path, write):
        if Path(path) == out:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, write)

    monkeypatch.setattr(atomic, "atomic_write_file", full)
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--no-checkpoint"]) == 3   # a full disk: the machine
    msg = _err_line(capsys)
    assert "no space left on device" in msg and "written to" in msg, msg
    (copy,) = rescue.glob("mcproton-rescued-*.h5")
    assert read_h5(copy)["dose"].max() > 0


def test_a_name_whose_lock_file_does_not_fit_is_refused_before_the_transport(tmp_path, capsys, monkeypatch):
    """A name 2 characters short of NAME_MAX fits, its lock file ``<name>.lock`` does not: refused before the
    transport (with --check-config too), naming the limit, never as a disk-space problem."""
    limit = name_max(tmp_path)
    cfg = write_cfg(tmp_path / "job.toml", 2000)
    no_transport(monkeypatch)
    for out in (tmp_path / ("p" * (limit - 5) + ".h5"), tmp_path / "sub" / ("p" * (limit + 1)) / "o.h5",
                tmp_path / ("p" * (limit - 11) + ".h5")):   # the last: the lock file of its checkpoint does not fit
        for extra in ([], ["--check-config"], ["--no-checkpoint"]):
            assert main(["run", str(cfg), "--out", str(out), "--quiet", *extra]) == 2
            msg = _err_line(capsys)
            assert "too long for this file system" in msg and f"> max {limit} characters" in msg, msg
            assert "disk space" not in msg
    assert not list(tmp_path.glob("*.h5*")) and not (tmp_path / "sub").exists()


def test_a_name_too_long_at_the_write_is_not_called_a_full_disk(tmp_path, capsys, monkeypatch):
    """ENAMETOOLONG (a file system with a shorter NAME_MAX than asked, a name changed in between) is named as
    such; the remedy was "free disk space"."""
    cfg = write_cfg(tmp_path / "job.toml", 2000)
    real = atomic.atomic_write_file

    def too_long(path, write):
        if Path(path).suffix == ".h5" and "ckpt" not in Path(path).name:   # the output and its rescue copy
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), str(path))
        return real(path, write)

    monkeypatch.setattr(atomic, "atomic_write_file", too_long)
    assert main(["run", str(cfg), "--out", str(tmp_path / "o.h5"), "--quiet", "--no-checkpoint"]) == 2
    msg = _err_line(capsys)
    assert "file name too long" in msg and "result is lost" in msg and "disk space" not in msg, msg


@pytest.mark.parametrize("code, said", [(errno.ENOSPC, "no space left on device"),
                                        (errno.ENAMETOOLONG, "is too long for this file system")])
def test_write_error_text_is_one_line_and_unwraps_pydicoms_exception(tmp_path, code, said):
    """pydicom raises ``OSError("With tag ... got exception: ...\\nTraceback ...")`` from the real error, without
    its errno: the text is the real error's, one line."""
    from pydicom.tag import Tag, tag_in_exception

    out = tmp_path / ("q" * (name_max(tmp_path) + 1) if code == errno.ENAMETOOLONG else "RD.dcm")
    try:
        with tag_in_exception(Tag(0x7FE00010)):
            raise OSError(code, os.strerror(code))
    except OSError as exc:
        wrapped = exc
    assert wrapped.errno is None and "Traceback" in str(wrapped)
    text = atomic.write_error_text(wrapped, out)
    assert said in text and "Traceback" not in text and "\n" not in text
    assert atomic.is_no_space(wrapped) == (code == errno.ENOSPC)
