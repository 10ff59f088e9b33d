"""An earlier command's outputs set aside as a new one of the same output folder starts: moved into
``--out/<prefix><date>/`` (``earlier_check_<date>/`` of ``mcproton check``, ``earlier_validate_<date>/`` of
``mcproton validate``), so that nothing in ``--out`` reads as the new command's result before it is one; removed by
the command once its own result is complete, kept (and named by the record it leaves) where it does not complete.

A record of an earlier command that did not complete (a check.json or summary.json saying "interrupted", no
result) is removed rather than moved, and the folder it names as where the outputs before it went
(``earlier_outputs_moved_to``) goes with the outputs into the new folder: no such folder is left in ``--out``
named by nothing (review 5 of 2026-12-06, F4).  The rule came with ``mcproton check`` (the integrators' audit of
2026-12-06, F1: an interrupted re-check left last night's PASS in place, unmarked); ``mcproton validate`` had the
same flaw (the concurrency audit of 2026-12-07, F2) and uses the same code.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any


def aside_pattern(prefix: str) -> re.Pattern[str]:
    """The names of the folders :func:`move_aside` makes with ``prefix``: ``<prefix><YYYYmmdd-HHMMSS>[-<k>]``."""
    return re.compile(rf"^{re.escape(prefix)}\d{{8}}-\d{{6}}(-\d+)?$")


def move_aside(out: Path, found: list[Path], log: Callable[[str], None], *, prefix: str, whose: str,
               why: str) -> Path | None:
    """Move an earlier command's outputs ``found`` into ``out/<prefix><date of the newest>/`` (kept, and no longer
    where a script reads the current result); returns that folder as an absolute path (None: nothing to move): the
    records that name it (``earlier_outputs_moved_to``) are read by a later run from any working directory (review 5
    of 2026-12-06, F1: a path relative to a batch's --out did not resolve from the next night's).  ``whose`` and
    ``why``: the log's words for what they are and why they are moved ("mcproton check: the earlier check's
    outputs", "are not a check of these inputs")."""
    import time

    if not found:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(max(p.lstat().st_mtime for p in found)))
    dest = Path(os.path.abspath(out)) / f"{prefix}{stamp}"
    k = 1
    while dest.exists():
        k += 1
        dest = dest.parent / f"{prefix}{stamp}-{k}"
    dest.mkdir()
    for p in found:
        os.replace(p, dest / p.name)
    log(f"{whose} in {out} ({', '.join(p.name for p in found)}) {why}: moved into {dest}")
    return dest


def named_aside(folder: Path, doc: Any, prefix: str) -> Path | None:
    """The folder ``folder/<prefix><date>/`` that the record ``doc`` (a check.json's or summary.json's content)
    names as where an earlier command's outputs were moved (``earlier_outputs_moved_to``), where it is there; else
    None.  Matched by its name inside ``folder``, not by the path recorded: a record written before review 5 of
    2026-12-06 (F1) holds it relative to the working directory of the run that wrote it, and a batch's --out may
    since have been moved."""
    aside = doc.get("earlier_outputs_moved_to") if isinstance(doc, dict) else None
    if not isinstance(aside, str) or not aside:
        return None
    name = Path(aside).name
    if not aside_pattern(prefix).match(name):
        return None
    path = folder / name
    return path if path.is_dir() and not path.is_symlink() else None


def set_aside(out: Path, found: list[Path], log: Callable[[str], None], *, is_record: Callable[[Path], bool],
              prefix: str, whose: str, why: str) -> Path | None:
    """Set the earlier outputs ``found`` in ``out`` aside as a new command starts: the records among them
    (``is_record``: of an earlier command that did not complete) removed, the folder each names
    (:func:`named_aside`) and the other outputs moved into a new ``out/<prefix><date>/`` (:func:`move_aside`),
    which is returned (None: nothing moved)."""
    records = [p for p in found if is_record(p)]
    outputs = [p for p in found if p not in records]
    for p in records:
        try:
            aside = named_aside(out, json.loads(p.read_text(encoding="utf-8")), prefix)
        except (OSError, ValueError):
            aside = None
        if aside is not None and aside not in outputs:
            outputs.append(aside)
    moved_to = move_aside(out, outputs, log, prefix=prefix, whose=whose, why=why)
    for p in records:
        p.unlink()
    return moved_to


def files_text(folder: Path) -> str:
    """"N file(s)": the files in ``folder`` and below (an earlier result set aside, with the one a record moved with
    it)."""
    n = sum(1 for p in folder.rglob("*") if not p.is_dir())
    return f"{n} file{'s' if n != 1 else ''}"


def discard_aside(out: Path, aside: Path, whose: str) -> str:
    """The command's own result in ``out`` is complete: the earlier one set aside into ``aside`` is removed
    (replaced).  Returns the log line saying so (``whose``: "mcproton validate: the earlier report"), or why it
    could not be removed (it is then left beside the complete result)."""
    import shutil

    n = files_text(aside)
    try:
        shutil.rmtree(aside)
    except OSError as exc:
        return f"{whose} set aside in {aside} could not be removed ({exc}); the new one is complete beside it"
    return f"{whose} in {out} ({n}) was replaced"
