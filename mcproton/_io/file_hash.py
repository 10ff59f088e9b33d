"""The identity of an input file in a signed record: its resolved path and the SHA-256 of its bytes, so that a report
names the very file it used (two versions of one file name differ in their hash)."""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

#: bytes read at a time when hashing (a CT slice is read in one or a few pieces)
_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """The SHA-256 (hex) of the file's bytes, read in chunks (a large file is not held in memory at once)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_by_name(paths: Iterable[str | Path], root: str | Path | None = None) -> dict[str, str]:
    """{name: the SHA-256 of its bytes} of the files ``paths`` (folders and other non-files among them left out),
    for the keys that say whether a result may be reused: ``check --batch --skip-checked``'s (a patient's files,
    named relative to its folder ``root``) and ``run --resume``'s (the run's input files, by their paths).  A file's
    name is its path relative to ``root`` (POSIX form; a linked folder's files through the link, as they were found),
    else, or where it is not under ``root``, its path as given."""
    out: dict[str, str] = {}
    for p in paths:
        q = Path(p)
        if not q.is_file():
            continue
        name = q.as_posix()
        if root is not None:
            try:
                name = q.relative_to(root).as_posix()
            except ValueError:
                pass
        out[name] = sha256_file(q)
    return out


def file_record(path: str | Path) -> dict[str, str]:
    """{"path": the resolved path, "sha256": the SHA-256 of its bytes}."""
    p = Path(path)
    return {"path": str(p.resolve()), "sha256": sha256_file(p)}


#: How :func:`files_sha256` combines the hashes of several files (stated in the records that use it)
FILES_SHA256_RULE = "SHA-256 of the files' SHA-256 hex digests, sorted, one per line (newline-terminated)"


def files_sha256(paths: Iterable[str | Path]) -> str:
    """One SHA-256 for a set of files (a CT series' slices): :data:`FILES_SHA256_RULE`; it does not depend on the
    files' names, order or folder, only on their contents."""
    digests = sorted(sha256_file(p) for p in paths)
    return hashlib.sha256("".join(d + "\n" for d in digests).encode("ascii")).hexdigest()
