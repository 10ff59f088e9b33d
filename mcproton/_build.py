"""The build identity of this mcproton: what changes when its physics changes, as the version string does not.

``mcproton.__version__`` has been "0.1.0" since the first commit, through many changes of the kernels, the physics
tables and the built-in calibrations (the new-features audit of 2026-12-06, F3: ``--skip-checked`` reused a verdict
of the old physics after an upgrade, as the same "version").  What ``check --batch --skip-checked``'s reuse key and
``run --resume``'s run identity record of the build is :func:`build_identity`: the version, the transport kernel's
source hash (as the checkpoint's fingerprint and every output's ``kernel_hash``), the SHA-256 of the package's
physics data files (``mcproton/data``: stopping powers, nuclear cross sections, materials, HU calibrations, beam
models) and of its Python physics modules (``mcproton/_physics``: the tables made from those data).  It is computed
once per process (about 700 kB of files: a few milliseconds).
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

#: the package's folder
_PACKAGE = Path(__file__).resolve().parent
#: the folders whose files make the physics besides the kernels, and which files of each count
_PHYSICS_FILES = (("data", "*"), ("_physics", "*.py"))


def _tree_sha256(root: Path, pattern: str) -> str:
    """One SHA-256 over the files matching ``pattern`` under ``root`` by their relative names and contents
    (:func:`~mcproton._io.file_hash.sha256_by_name`): a file added, removed, renamed or changed changes it."""
    from ._io.file_hash import sha256_by_name

    digests = sha256_by_name((f for f in root.rglob(pattern) if "__pycache__" not in f.parts), root)
    return hashlib.sha256("".join(f"{name}\0{d}\n" for name, d in sorted(digests.items())).encode()).hexdigest()


@lru_cache(maxsize=1)
def physics_files_sha256() -> str:
    """The SHA-256 of the package's physics data and Python physics modules (:data:`_PHYSICS_FILES`)."""
    h = hashlib.sha256()
    for folder, pattern in _PHYSICS_FILES:
        h.update(f"{folder}:{_tree_sha256(_PACKAGE / folder, pattern)}\n".encode())
    return h.hexdigest()


@lru_cache(maxsize=1)
def build_identity() -> dict[str, str]:
    """{"version", "kernel_hash" (the assembled transport kernel's SHA-256), "physics_files_sha256"}: two builds
    that may compute another dose differ in it.  Cached: computed once per process."""
    from . import __version__
    from ._kernels.source import source_hash

    return {"version": __version__, "kernel_hash": source_hash("transport.cu"),
            "physics_files_sha256": physics_files_sha256()}
