"""Small fake files that tests in several folders make: a DICOMDIR (the index of a media export) and a file system
root laid out like ``/proc`` and ``/sys/fs/cgroup`` (for mcproton._cpus's readers, which take ``root``); and
:func:`log_lines`, a command's stderr read as its lines without the time of day in front."""
from __future__ import annotations

import re
from pathlib import Path

#: the time of day that ``mcproton run`` and ``mcproton check`` put in front of every line on a stderr that is not a
#: terminal (mcproton._io.console.stamped_stderr; pytest's capture and a subprocess's pipe are not terminals)
STAMP = re.compile(r"^\[\d\d:\d\d:\d\d\] ", re.M)


def log_lines(err: str) -> list[str]:
    """The lines of a command's stderr ``err``, each without the time of day in front (:data:`STAMP`): what a test
    that keeps the lines starting with "mcproton:" filters (review b of audit 26, R5: such filters silently dropped
    the dated lines, and a stray line before a refusal no longer failed "exactly one line")."""
    return [STAMP.sub("", ln, count=1) for ln in err.splitlines()]


def log_text(err: str) -> str:
    """A command's stderr ``err`` without the time of day in front of its lines (:data:`STAMP`)."""
    return STAMP.sub("", err)


def write_dicomdir(path: Path) -> None:
    """A minimal DICOMDIR at ``path``: Media Storage Directory Storage in its file meta, no SOPClassUID or Modality
    in its data set (as a CD or USB export writes it)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"     # Media Storage Directory Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.FileSetID = "EXPORT"
    ds.save_as(path, enforce_file_format=True)


def cgroup_fs(root: Path, proc_cgroup: str, files: dict[str, str]) -> Path:
    """A fake file system root: ``proc/self/cgroup`` and files under ``sys/fs/cgroup``."""
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/cgroup").write_text(proc_cgroup)
    for name, text in files.items():
        f = root / "sys/fs/cgroup" / name
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    return root


#: a C++ compiler without OpenMP (clang++ without libomp-dev, as the packaging audit of 2026-12-07 found, F3): its
#: ``--version`` answers, and a compile fails as clang's does there
NO_OPENMP_CXX = """#!/bin/sh
case "$*" in *--version*) echo "Debian clang version 14.0.6 (fake, no OpenMP)"; exit 0;; esac
for a in "$@"; do case "$a" in *.cpp)
  echo "$a:40:10: fatal error: 'omp.h' file not found" >&2; echo "#include <omp.h>" >&2
  echo "1 error generated." >&2; exit 1;; esac; done
exit 1
"""


def no_openmp_compiler_on_path(folder: Path, monkeypatch) -> Path:
    """:data:`NO_OPENMP_CXX` as ``clang++`` in ``folder``, the only compiler on the PATH (``CXX`` unset: a compiler
    that mcproton finds itself); returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    cxx = folder / "clang++"
    cxx.write_text(NO_OPENMP_CXX)
    cxx.chmod(0o755)
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setenv("PATH", str(folder))
    return cxx


def trapezoid(y, x):
    """numpy's trapezoidal integral: np.trapezoid (numpy >= 2), np.trapz before (the package supports numpy >= 1.24)."""
    import numpy as np

    return (getattr(np, "trapezoid", None) or np.trapz)(y, x)
