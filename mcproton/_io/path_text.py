"""Paths whose names the outputs' text cannot hold, refused before the transport (automation audit 2026-12-06, F5).

Under an ASCII locale with Python's UTF-8 mode off (``LC_ALL=C PYTHONUTF8=0 PYTHONCOERCECLOCALE=0``) the file
system's encoding is ASCII: a non-ASCII name given on the command line, or found in a folder, is held as a ``str``
with surrogate escapes (``os.fsdecode``), which opens the file but cannot be written as UTF-8 text; and a non-ASCII
name read from a UTF-8 config cannot be encoded for the file system at all.  Before, such a path was used: the whole
Monte Carlo ran, and writing the report (check.json, check.html) or the HDF5's provenance failed with "'utf-8' codec
can't encode ... surrogates not allowed", the result left in a checkpoint only.  Every path a run or a check reads or
writes is now tested here first, and the outputs' writers name the same cause (mcproton/cli.py ``_one_line``).
"""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path

from .errors import InputDataError


def holds_unwritable_text(path: str | Path) -> bool:
    """Whether ``path`` cannot be both opened and written as UTF-8 text: a character the file system's encoding
    cannot hold, or a surrogate escape (a byte that encoding could not decode) that UTF-8 text cannot hold."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    try:
        os.fsencode(text)
        text.encode("utf-8")
    except UnicodeError:
        return True
    return False


def shown(path: str | Path) -> str:
    """``path`` as a person reads it: its bytes decoded as UTF-8 (the name as written on a UTF-8 system), an
    undecodable byte escaped."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        return text.decode("utf-8", "backslashreplace")
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def unwritable_path_message(path: str | Path, encoding: str | None = None, *, subject: str | None = None) -> str:
    """The message for a path whose name the locale's encoding cannot hold (docs/bad_inputs.md); ``subject``: what
    holds the characters where it is not the path itself (the path then only the characters)."""
    enc = encoding or sys.getfilesystemencoding()
    who = f"{shown(path)!r}" if subject is None else f"{subject} ({shown(path)!r})"
    return (f"{who} holds characters that this locale's encoding ({enc}) cannot hold in a file name: run under a "
            "UTF-8 locale (e.g. LC_ALL=C.UTF-8) or with PYTHONUTF8=1")


def refuse_unwritable_paths(paths: Iterable[tuple[str, str | Path | None]]) -> None:
    """Refuse (:class:`InputDataError`, exit 2) the first of ``paths`` ((what, path); None skipped) whose name
    :func:`holds_unwritable_text`, naming what it is: before any input is read at length or any transport."""
    for what, p in paths:
        if p is not None and holds_unwritable_text(p):
            raise InputDataError(f"{what}: {unwritable_path_message(p)}")


def current_folder() -> tuple[str, str | None]:
    """("the current folder", its path) for :func:`refuse_unwritable_paths` (the records hold it, and every
    relative path resolved); its path None where it is gone."""
    try:
        return "the current folder", os.getcwd()
    except OSError:
        return "the current folder", None
