"""A full disk at one output, the way pydicom reports it, for the tests of what a run or a check keeps then."""
from __future__ import annotations

import errno
import os
from pathlib import Path


def full_disk_at(monkeypatch, path: Path) -> None:
    """Every atomic write of ``path`` fails like a full disk after writing part of it, as pydicom reports it for
    the pixel data (an OSError without errno, the traceback in its message, raised from the real one); the other
    files are written as usual."""
    _full_disk_where(monkeypatch, lambda target: target == Path(path))


def full_disk_in(monkeypatch, folder: Path) -> None:
    """As :func:`full_disk_at` for every file written into ``folder`` (the output folder's file system full: the
    checkpoints, the HDF5, the RT Doses and the plot all fail; the temporary folder elsewhere has room)."""
    _full_disk_where(monkeypatch, lambda target: target.parent == Path(folder))


def _full_disk_where(monkeypatch, full) -> None:
    from pydicom.tag import Tag, tag_in_exception

    from mcproton._io import atomic

    real = atomic.atomic_write_file

    def failing(target, write):
        if not full(Path(target)):
            return real(target, write)

        def partial(tmp):
            write(tmp)
            with tag_in_exception(Tag(0x7FE00010)):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        return real(target, partial)

    monkeypatch.setattr(atomic, "atomic_write_file", failing)
