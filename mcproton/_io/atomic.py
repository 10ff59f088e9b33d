"""Atomic writes: a file appears under its final name complete or not at all.

Every output (HDF5, RT Dose, PNG, checkpoint) is written to a temporary file in the same folder, fsync'ed and
renamed over the final name (``os.replace``).  On any failure (a full disk, a quota, no permission, an
interrupt) the temporary file is removed and the old file under the final name, if any, is left as it was.

The temporary file's name is short and of a fixed length whatever the final name's (``.mcp-<tag>-<random>.tmp``,
30 characters; the tag is a hash of the final name, so that the temporary files of one output can be found and
removed after a killed run: :func:`temporary_files`).  It was ``.<name>.<random>.tmp`` before 2026-12-05: 14
characters longer than the final name, so that an output name legal in itself (240 of NAME_MAX 255) could not be
written and the finished run was lost (deployment audit F6).  :func:`name_too_long` says before the transport
whether a name mcproton will create does not fit the file system.

HDF5 files are built in memory (h5py on a ``BytesIO``) and only then written to disk with plain ``write``
calls.  The HDF5 library itself must never meet a failed write: with h5py 3.16 / HDF5 2.0 a write that fails
with ENOSPC leaves a dataset in a state that crashes the process with a segmentation fault when the file is
closed (``H5F__dest -> H5D_flush_all -> H5D__flush_all_cb``; reproduced on a 200 kB tmpfs, 5 of 5 times).
"""
from __future__ import annotations

import errno
import glob
import hashlib
import io
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

_CHUNK = 16 << 20
#: the prefix of every temporary file of an atomic write (``.mcp-<tag>-<random>.tmp``)
TEMP_PREFIX = ".mcp-"
#: the longest file name most Linux file systems allow (bytes; ext4, XFS, Btrfs, tmpfs), where the file system
#: cannot be asked (os.pathconf)
DEFAULT_NAME_MAX = 255


def name_tag(name: str) -> str:
    """12 hex digits of the SHA-256 of a file name: its temporary files' tag."""
    return hashlib.sha256(os.fsencode(name)).hexdigest()[:12]


def temporary_files(path: str | Path) -> list[Path]:
    """The temporary files that atomic writes of ``path`` may have left beside it (a writer killed with SIGKILL):
    ``.mcp-<tag of its name>-*.tmp`` (a folder where ``path`` is one: :func:`atomic_write_folder`; inside ``path``
    too where it is an existing folder, which :func:`atomic_write_folder` fills through one), and
    ``.<name>.*.tmp`` of mcproton before 2026-12-05."""
    path = Path(path)
    pattern = f"{TEMP_PREFIX}{name_tag(path.name)}-*.tmp"
    found = set(path.parent.glob(pattern))
    found.update(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
    if path.is_dir():
        found.update(q for q in path.glob(pattern) if q.is_dir() and not q.is_symlink())
    return sorted(found)


def is_temporary_name(name: str) -> bool:
    """Whether ``name`` is that of an atomic write's temporary file or folder (``.mcp-*.tmp``): what a writer killed
    with SIGKILL leaves, never an output (a reader of a folder skips it, and a CT folder holding one is refused:
    mcproton._io.ct)."""
    return name.startswith(TEMP_PREFIX) and name.endswith(".tmp")


def name_max(folder: str | Path) -> int:
    """The longest file name (bytes) the file system of ``folder`` (or of its nearest existing ancestor) allows."""
    f = Path(folder)
    while not _exists(f) and f != f.parent:
        f = f.parent
    try:
        return int(os.pathconf(f, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return DEFAULT_NAME_MAX


def _exists(p: Path) -> bool:
    try:
        return p.exists()
    except OSError:   # ENAMETOOLONG, EACCES: not one that exists as far as this check goes
        return False


def name_too_long(path: str | Path, suffixes: tuple[str, ...] = ("",)) -> str | None:
    """Why ``path`` cannot be created on its file system, or None: the file's name with each of ``suffixes``
    (e.g. ``".lock"``, for a file written beside it under a longer name), or a folder of it that does not exist
    yet (it is created), is longer than the file system allows (NAME_MAX: 255 bytes on most, 143 on eCryptfs)."""
    path = Path(path)
    limit = name_max(path.parent)
    parts = [(path.name + s, s) for s in suffixes]
    up = path.parent
    while not _exists(up) and up != up.parent:   # the folders that are made for it
        parts.append((up.name, None))
        up = up.parent
    for name, suffix in parts:
        n = len(os.fsencode(name))
        if n > limit:
            unit = "characters" if name.isascii() else "bytes in UTF-8"
            what = f"the folder name {name!r}" if suffix is None else "the output name"
            detail = f", with the suffix {suffix!r} of the file written beside it" if suffix else ""
            return (f"{what} is too long for this file system ({n} > max {limit} {unit}{detail}): shorten it by at "
                    f"least {n - limit} {unit.split()[0][:-1] if n - limit == 1 else unit.split()[0]}")
    return None


#: how much of an output's stem a rescue copy's name keeps (bytes in UTF-8); a longer stem is cut and tagged
RESCUE_STEM_MAX = 40


def rescue_path(out: str | Path, folder: str | Path | None = None, *,
                derived: Callable[[Path], list[Path]] | None = None) -> Path:
    """Where an output ``out`` that could not be written goes instead: ``mcproton-rescued-<pid>-<stem><suffix>``
    in the temporary folder (``folder``; ``-<pid>-2-``, ``-3-``, ... where that name exists), the stem cut to
    :data:`RESCUE_STEM_MAX` bytes and tagged with a hash of the whole name where longer, so that the name fits any
    file system whatever ``out``'s length (``mcproton-rescued-<pid>-<name>`` did not, and the rescue of a long name
    failed too: deployment audit F6).  ``derived``: the files named after the copy that are written beside it (a
    plan RT Dose's per-beam copies): they must not exist either."""
    out = Path(out)
    stem, suffix = out.stem, out.suffix if len(out.suffix) <= 8 else ""
    raw = os.fsencode(stem)
    if len(raw) > RESCUE_STEM_MAX:   # cut on a character boundary (UTF-8)
        stem = f"{raw[:RESCUE_STEM_MAX // 2].decode('utf-8', 'ignore')}-{name_tag(out.name)}"
    base = Path(folder) if folder is not None else Path(tempfile.gettempdir())
    # never an existing name: a restarted container runs as the same pid (1), and an earlier run's rescued result
    # there was replaced by the next one's (run outputs fixer's note, 2026-12-07): -2, -3, ... after the pid
    for n in range(1, 10_000):
        tag = str(os.getpid()) if n == 1 else f"{os.getpid()}-{n}"
        path = base / f"mcproton-rescued-{tag}-{stem}{suffix}"
        if not any(os.path.lexists(p) for p in [path, *(derived(path) if derived is not None else ())]):
            return path
    raise OSError(errno.EEXIST, f"{base} holds 9,999 rescued copies of {out.name}: move them where they belong")


def write_error_text(exc: BaseException, path: str | Path | None = None) -> str:
    """What went wrong when a file could not be written, as one line: 'no space left on device', 'the output name
    is too long for this file system (N > max M characters)', 'permission denied', ... (the OSError's own text
    without its file name).  The OSError is unwrapped from exceptions that wrap it (pydicom's writer raises
    ``OSError("With tag ... got exception: ...\nTraceback ...")`` from the real one, without its errno)."""
    err = unwrap_os_error(exc)
    if isinstance(err, OSError) and err.errno is not None:
        if err.errno == errno.ENAMETOOLONG and path is not None:
            return name_too_long(path) or _strerror(err)
        return _strerror(err)
    return " ".join(str(err).split()) or type(err).__name__


def failed_write_text(exc: BaseException) -> str:
    """"could not write FILE: <why>" (:func:`write_error_text`), FILE the OSError's own file name where it has one
    (else "its output")."""
    err = unwrap_os_error(exc)
    name = getattr(err, "filename", None) if isinstance(err, OSError) else None
    return f"could not write {name if name else 'its output'}: {write_error_text(exc)}"


def _strerror(err: OSError) -> str:
    text = err.strerror or os.strerror(err.errno or 0)
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


def unwrap_os_error(exc: BaseException) -> BaseException:
    """The OSError with an errno behind ``exc`` (itself, or the one it was raised from), else ``exc``."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno is not None:
            return e
        e = e.__cause__
    return exc


def is_no_space(exc: BaseException) -> bool:
    """Whether ``exc`` is (or wraps) a full disk or an exceeded quota: the remedy is space."""
    err = unwrap_os_error(exc)
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)


def is_unwritable(exc: BaseException) -> bool:
    """Whether ``exc`` is (or wraps) an output disk that takes no more: full, over quota, over the file-size limit
    (``ulimit -f``) or read-only.  The next output there fails the same way: a batch stops at it (automation audit
    2026-12-06, F4: it ran every remaining patient's Monte Carlo into the full disk)."""
    err = unwrap_os_error(exc)
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _umask_mode() -> int:
    return 0o666 & ~_umask()


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
    On any exception the temporary file is removed (nothing partial under either name) and it is re-raised; an
    OSError as one naming ``path`` (its ``filename``) with the errno of the error behind it (pydicom wraps a full
    disk in an OSError without errno, its traceback in the message: deployment audit F7)."""
    path = check_target(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # a short name of fixed length: ".<name>.<random>.tmp" did not fit NAME_MAX for a legal long name (module
        # doc)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{name_tag(path.name)}-", suffix=".tmp")
    except OSError as exc:
        named = _naming(exc, path)
        if named is exc:
            raise
        raise named from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        named = _naming(exc, path) if isinstance(exc, OSError) else exc
        if named is exc:
            raise
        raise named from exc
    _fsync_dir(path.parent)
    return path


def _naming(exc: OSError, path: Path) -> OSError:
    """``exc`` as an OSError of its errno (unwrapped: :func:`unwrap_os_error`) naming ``path``; ``exc`` itself where
    it has no errno to keep."""
    err = unwrap_os_error(exc)
    if not isinstance(err, OSError) or err.errno is None:
        return exc
    return OSError(err.errno, err.strerror or os.strerror(err.errno), str(path))


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


def atomic_write_folder(path: str | Path, write: Callable[[Path], Any]) -> Any:
    """A folder written whole or not at all: ``write(tmp)`` fills a new temporary folder (named as an atomic write's
    temporary file, ``.mcp-<tag>-<random>.tmp``: :func:`temporary_files` finds one that a killed writer left), whose
    files then become ``path``'s; returns what ``write`` returns.  For a CT series: before, a phantom stopped while
    writing its slices left those written so far, a shorter series that ``mcproton run`` loaded as a shorter head
    without a word (the concurrency audit of 2026-12-07, F4).

    * ``path`` does not exist: the temporary folder is made beside it and renamed to ``path`` (one rename).
    * ``path`` is an existing empty folder (a link to one: the folder it names): the temporary folder is made
      *inside* it (hidden), on its file system, and once ``write`` is done its files are renamed up into ``path``,
      :func:`_move_order` first (same-file-system renames, milliseconds for a series), and it is removed.  ``path``
      itself is kept, with its owner and mode.  Before (review 2a of 2026-12-07, R2) the folder beside it was
      renamed over ``path``, which failed where the old writer into ``path`` had worked: a ``path`` that is a mount
      point (a container volume: EBUSY; another file system: EXDEV) or whose parent cannot be written (an
      administrator's ``patient/ct`` under a read-only share: EACCES, EPERM).

    On any exception, an interrupt included, the temporary folder and the files already moved into ``path`` are
    removed, and ``path`` is left as it was (a new one is not made)."""
    import shutil

    real = Path(os.path.realpath(path))
    if real.is_dir():
        return _fill_folder(real, write)
    real.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=real.parent, prefix=f"{TEMP_PREFIX}{name_tag(real.name)}-", suffix=".tmp"))
    try:
        result = write(tmp)
        os.chmod(tmp, 0o777 & ~_umask())   # mkdtemp's folder is 0700: a folder's usual mode instead
        os.replace(tmp, real)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(real.parent)
    return result


def _move_order(names: list[str]) -> list[str]:
    """The order in which :func:`_fill_folder` moves a series' files into place: the first and the last (sorted by
    name: CT_0000.dcm, CT_<n-1>.dcm), then the others.  A writer killed with SIGKILL among the renames leaves the
    hidden temporary folder in the folder, for which mcproton's CT reader refuses it (mcproton._io.ct); for another
    reader, the slices in place are then both ends with a gap between them from the third slice moved on (a gap
    that mcproton's reader calls "missing slice(s)"), not a shorter series whose end is cut off without a gap."""
    names = sorted(names)
    return names if len(names) < 3 else [names[0], names[-1], *names[1:-1]]


def _fill_folder(real: Path, write: Callable[[Path], Any]) -> Any:
    """:func:`atomic_write_folder` into the existing empty folder ``real``: through a temporary folder inside it."""
    import shutil

    tmp = Path(tempfile.mkdtemp(dir=real, prefix=f"{TEMP_PREFIX}{name_tag(real.name)}-", suffix=".tmp"))
    moved: list[Path] = []
    try:
        result = write(tmp)
        for name in _move_order([q.name for q in tmp.iterdir()]):
            dest = real / name
            if os.path.lexists(dest):   # the folder was empty: a file of another writer is not replaced
                raise OSError(errno.EEXIST, f"{dest} appeared while the folder was written (another writer?)",
                              str(dest))
            os.rename(tmp / name, dest)
            moved.append(dest)
        tmp.rmdir()
    except BaseException:
        for q in moved:
            try:
                q.unlink()
            except OSError:
                pass
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(real)
    return result


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


class _MetadataImage:
    """A file object for h5py (its "fileobj" driver) that keeps what the HDF5 library writes, in order, as
    (offset, bytes): the file's metadata and small datasets, where the large arrays' space is allocated but never
    written by HDF5 (:func:`write_hdf5_streamed`).  Reads see these writes and zeros elsewhere (a sparse file)."""

    def __init__(self) -> None:
        self.parts: list[tuple[int, bytes]] = []
        self.pos = 0
        self.size = 0

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = offset if whence == 0 else self.pos + offset if whence == 1 else self.size + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def write(self, data: Any) -> int:
        b = bytes(data)
        self.parts.append((self.pos, b))
        self.pos += len(b)
        self.size = max(self.size, self.pos)
        return len(b)

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf).cast("B")
        lo, hi = self.pos, self.pos + len(view)
        view[:] = bytes(len(view))
        for off, b in self.parts:   # in the order written: a later write over an earlier one wins
            a, z = max(lo, off), min(hi, off + len(b))
            if a < z:
                view[a - lo:z - lo] = b[a - off:z - off]
        self.pos = hi
        return len(view)

    def read(self, n: int = -1) -> bytes:
        buf = bytearray(max(self.size - self.pos, 0) if n is None or n < 0 else n)
        self.readinto(buf)
        return bytes(buf)

    def truncate(self, size: int | None = None) -> int:
        self.size = self.pos if size is None else size
        return self.size

    def flush(self) -> None:
        pass


#: arrays smaller than this (bytes) are written by HDF5 into the in-memory image as usual (write_hdf5_streamed)
_STREAM_MIN_BYTES = 1 << 16


def write_hdf5_streamed(path: str | Path, fill: Callable[[Any, Callable[[Any, str, Any], Any]], Any]) -> Path:
    """Write an HDF5 file atomically to ``path`` without a copy of its large arrays in memory: ``fill(f, put)``
    fills the ``h5py.File`` ``f`` and calls ``put(group, name, array)`` for each large array (a dataset of the
    array's shape and dtype, contiguous, uncompressed).  HDF5 builds the file in memory (:class:`_MetadataImage`)
    with each large array's space allocated but not written; then the image and the arrays, from their own memory,
    are written to the file with plain ``write`` calls (:func:`atomic_write`).  The HDF5 library thus never meets
    a failed write (the module's docstring), and the file no longer needs the memory of all its arrays a second time
    (:func:`write_hdf5_atomic`: a plan's checkpoint, 48 bytes per voxel of every beam's sums, was the run's peak;
    audit 25 memory).  Small arrays (under :data:`_STREAM_MIN_BYTES`) and non-numeric ones are written by HDF5."""
    import h5py
    import numpy as np

    image = _MetadataImage()
    arrays: list[tuple[int, Any]] = []

    def put(group: Any, name: str, array: Any) -> Any:
        a = np.ascontiguousarray(array)
        if a.nbytes < _STREAM_MIN_BYTES or a.dtype.kind not in "iuf" or not a.dtype.isnative:
            return group.create_dataset(name, data=a)
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)   # its place in the file now, and never filled by HDF5
        ds = group.create_dataset(name, shape=a.shape, dtype=a.dtype, dcpl=dcpl, fill_time="never")
        offset = ds.id.get_offset()
        if offset is None or ds.id.get_storage_size() != a.nbytes:
            raise RuntimeError(f"write_hdf5_streamed: HDF5 gave the dataset {name!r} no contiguous place in the file")
        arrays.append((int(offset), a))
        return ds

    with h5py.File(image, "w", driver="fileobj") as f:
        fill(f, put)
    end = max([image.size, *(off + a.nbytes for off, a in arrays)])

    def w(fh: BinaryIO) -> None:
        for off, b in image.parts:
            fh.seek(off)
            fh.write(b)
        for off, a in arrays:
            view = memoryview(a.reshape(-1)).cast("B")
            fh.seek(off)
            for i in range(0, len(view), _CHUNK):
                fh.write(view[i:i + _CHUNK])
        fh.truncate(end)

    return atomic_write(path, w)


def _fsync_dir(folder: Path) -> None:
    try:
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
