"""Atomic writes: a file appears under its final name complete or not at all.

Every output (HDF5, RT Dose, PNG, checkpoint) is written to a temporary file in the same folder, fsync'ed and
renamed over the final name (``os.replace``).  On any failure (a full disk, a quota, no permission, an
interrupt) the temporary file is removed and the old file under the final name, if any, is left as it was.

HDF5 files are built in memory (h5py on a ``BytesIO``) and only then written to disk with plain ``write``
calls.  The HDF5 library itself must never meet a failed write: with h5py 3.16 / HDF5 2.0 a write that fails
with ENOSPC leaves a dataset in a state that crashes the process with a segmentation fault when the file is
closed (``H5F__dest -> H5D_flush_all -> H5D__flush_all_cb``; reproduced on a 200 kB tmpfs, 5 of 5 times).
"""
from __future__ import annotations

import io
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

_CHUNK = 16 << 20


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def check_target(path: str | Path) -> Path:
    """Refuse a target that exists and is not a regular file (a folder, a device node such as /dev/sda, a
    FIFO): renaming over it would replace it.  Returns the path."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return path
    except OSError:
        return path
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file (a device, FIFO or socket)"
        raise OSError(f"{path} is {kind}: an output must be a regular file; give another path")
    return path


def atomic_write_file(path: str | Path, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp)`` to write a temporary file beside ``path``, then fsync it and rename it to ``path``.
    On any exception the temporary file is removed (nothing partial under either name) and it is re-raised."""
    path = check_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any]) -> Path:
    """Call ``write(fh)`` on a temporary file beside ``path``, then fsync it and rename it to ``path``.
    On any exception the temporary file is removed (nothing partial under either name) and it is re-raised."""

    def to_file(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            write(fh)

    return atomic_write_file(path, to_file)


def write_bytes_atomic(path: str | Path, data: bytes | memoryview) -> Path:
    """Write ``data`` atomically to ``path`` (in chunks, so a full disk fails early)."""
    view = memoryview(data)

    def w(fh: BinaryIO) -> None:
        for i in range(0, len(view), _CHUNK):
            fh.write(view[i:i + _CHUNK])

    return atomic_write(path, w)


def hdf5_buffer(fill: Callable[[Any], Any]) -> io.BytesIO:
    """An HDF5 file built in memory by ``fill(h5py.File)``."""
    import h5py

    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        fill(f)
    return buf


def write_hdf5_atomic(path: str | Path, fill: Callable[[Any], Any]) -> Path:
    """Build an HDF5 file in memory with ``fill(h5py.File)`` and write it atomically to ``path``."""
    return write_bytes_atomic(path, hdf5_buffer(fill).getbuffer())


def _fsync_dir(folder: Path) -> None:
    try:
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
