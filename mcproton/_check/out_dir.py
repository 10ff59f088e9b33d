"""The check's output folder (``--out``): no input is overwritten, and no earlier check's file stays beside a new
report.

A check writes ``check.html``, ``check.json``, ``RD_mc.dcm``, ``RD_mc_beam<N>.dcm`` and, with
``--phantom-from-struct``, ``phantom_ct/``.  Once its inputs are read (:func:`prepare_out`), and then just before
its first write (the function it returns), so that a check refused later leaves an earlier report as it was:

* a file of those names that is one of the check's inputs (the planning system's dose exported as ``RD_mc.dcm``
  into the folder given as ``--out``; the CT in ``phantom_ct/``) is refused: it would be overwritten;
* the files an earlier check wrote there (recognised by their content: mcproton's RT Dose and phantom CT headers,
  the report's title, the JSON's keys) are removed and named in the log, so that a per-beam MC dose of another
  plan or patient, or the complete report of an earlier run of an interrupted check, is not left beside the new
  one (a helper's audit, 2026-12-05: a re-used ``--out`` kept another patient's ``RD_mc_beam1.dcm`` and phantom CT);
* a file of those names that mcproton did not write is refused rather than overwritten.

An earlier check's outputs are named in a note at the start (with their date), and a check stopped or refused before
its first write says that they are still there, left as they were (mcproton/_check/stop.py): they are not a check
of the current inputs (the long-runs audit of 2026-12-05, F8: after a re-optimised plan was put in the patient's
folder, an interrupted re-check left the old plan's PASS report in --out, and its message said "nothing was kept").
"""
from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .inputs import CheckInputError
from .mc_rtdose import is_check_output

#: the report's files, and the folder of the phantom CT built by --phantom-from-struct
REPORT_FILES = ("check.html", "check.json")
PHANTOM_DIR = "phantom_ct"
#: the names of the MC RT Doses a check writes (RD_mc.dcm, RD_mc_beam<N>.dcm): only these; a user's renamed copy
#: (RD_mc_kept.dcm) is not touched
MC_DOSE_NAME = re.compile(r"^RD_mc(_beam\d+)?\.dcm$")


def _real(p: str | Path) -> str:
    return os.path.realpath(p)


def _inputs(inp: Any) -> set[str]:
    """The real paths of the check's input files (plan, structure set, TPS doses) and its CT folder."""
    paths = [inp.plan_path, inp.struct_path, inp.ct_dir]
    if inp.total is not None:
        paths.append(inp.total.path)
    paths += [d.path for d in inp.beams.values()]
    return {_real(p) for p in paths if p}


def _ours(path: Path) -> bool:
    """Whether ``path`` (a file or the phantom folder) is what an earlier ``mcproton check`` wrote."""
    import pydicom

    if path.is_dir():   # the phantom CT: every file mcproton's phantom series
        files = [f for f in path.iterdir()]
        return bool(files) and all(f.is_file() and _ours(f) for f in files)
    if path.name == "check.json":
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(doc, dict) and {"passed", "checks", "provenance"} <= set(doc)
    if path.name == "check.html":
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return "<title>mcproton check" in f.read(4096)
        except OSError:
            return False
    try:
        return is_check_output(pydicom.dcmread(path, stop_before_pixels=True))
    except Exception:  # noqa: BLE001 - not DICOM, unreadable: not ours
        return False


class EarlierOutputs:
    """The earlier check's outputs found in ``--out`` (``found``); calling it removes them (named in the log; the
    names removed), the first call only: then ``removed`` is True."""

    def __init__(self, out: Path, found: list[Path], log: Callable[[str], None]) -> None:
        self.out, self.found, self.log = out, found, log
        self.removed = False
        self._names: list[str] = []

    def names(self) -> list[str]:
        return [p.name + ("/" if p.name == PHANTOM_DIR else "") for p in self.found]

    def describe(self) -> str:
        """'check.html, check.json, RD_mc.dcm, written 2026-12-05 10:31' (the newest file's time)."""
        import time

        times = []
        for p in self.found:
            try:
                times.append(p.stat().st_mtime)
            except OSError:
                pass
        when = f", written {time.strftime('%Y-%m-%d %H:%M', time.localtime(max(times)))}" if times else ""
        return ", ".join(self.names()) + when

    def __call__(self) -> list[str]:
        if self.removed:
            return []
        for p in self.found:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            elif p.exists() or p.is_symlink():
                p.unlink()
        self.removed = True
        names = self.names()
        if names:
            self.log(f"mcproton check: removed the earlier check's outputs in {self.out}: {', '.join(names)}")
        return names


def prepare_out(out: str | Path, inp: Any, log: Callable[[str], None]) -> EarlierOutputs:
    """Check ``out`` for the check of ``inp`` (:class:`~mcproton._check.inputs.CheckInputs`): refuse an output that
    would overwrite an input or a file mcproton did not write.  Returns the :class:`EarlierOutputs` whose call
    removes an earlier check's outputs, to call just before the first write; an earlier check's outputs are named
    in the log now, with their date."""
    out = Path(out)
    if not out.is_dir():
        return EarlierOutputs(out, [], log)
    inputs = _inputs(inp)
    found = ([out / n for n in REPORT_FILES] + sorted(p for p in out.iterdir() if MC_DOSE_NAME.match(p.name))
             + [out / PHANTOM_DIR])
    found = [p for p in found if p.exists() or p.is_symlink()]
    for p in found:
        real = _real(p)
        hit = sorted(i for i in inputs if i == real or (p.name == PHANTOM_DIR and i.startswith(real + os.sep)))
        if hit:
            raise OutDirRefused(f"--out {out}: the check writes {p.name} there, but {p} is an input of this "
                                  f"check ({hit[0]}): it would be overwritten; give another folder for the check's "
                                  "outputs (or rename the input)")
    for p in found:
        if not _ours(p):
            raise OutDirRefused(f"--out {out}: {p.name} is there and was not written by mcproton check: the check "
                                  f"would overwrite it; give another folder for the check's outputs (or move {p})")
    earlier = EarlierOutputs(out, found, log)
    if found:
        log(f"mcproton check: note: --out {out} holds an earlier check's outputs ({earlier.describe()}); they are "
            "replaced by this check's: removed just before its first write (a check stopped or refused before that "
            "leaves them as they were)")
    return earlier


class OutDirRefused(CheckInputError):
    """``--out`` itself is refused (a file, a name too long, an input or a file mcproton did not write there): the
    check then leaves the folder as it is, writing no record of the refusal into it."""


#: check.json's format version: raised when a key is removed or changes meaning (new keys do not raise it), so
#: that a script can tell (automation audit 2026-12-06, F10).  1: the first numbered one (2026-12-06: "status",
#: "schema_version"; a check that failed writes a record of its own, :func:`record_failure`)
CHECK_JSON_SCHEMA = 1
#: the folder (in --out) that an earlier check's outputs are moved into when a later check of that folder fails
EARLIER_DIR = "earlier_check_"


def _failure_record_file(path: Path) -> bool:
    """Whether ``path`` is the check.json of a check that failed (:func:`record_failure`), not a report."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("status") in ("refused", "environment_error", "internal_error",
                                                           "not_checked")


def earlier_reports(out: Path) -> list[Path]:
    """The outputs of an earlier check in ``out`` that mcproton wrote (check.html, check.json, the MC RT Doses, the
    phantom CT), less the record of an earlier failure (a check.json that is no report)."""
    if not out.is_dir():
        return []
    found = ([out / n for n in REPORT_FILES] + sorted(p for p in out.iterdir() if MC_DOSE_NAME.match(p.name))
             + [out / PHANTOM_DIR])
    return [p for p in found if (p.exists() or p.is_symlink()) and _ours(p)
            and not (p.name == "check.json" and _failure_record_file(p))]


def move_aside(out: Path, found: list[Path], log: Callable[[str], None]) -> Path | None:
    """Move an earlier check's outputs ``found`` into ``out/earlier_check_<date of the newest>/`` (kept, and no
    longer where a script reads the current check's); returns that folder (None: nothing to move)."""
    import time

    if not found:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(max(p.lstat().st_mtime for p in found)))
    dest = out / f"{EARLIER_DIR}{stamp}"
    k = 1
    while dest.exists():
        k += 1
        dest = out / f"{EARLIER_DIR}{stamp}-{k}"
    dest.mkdir()
    for p in found:
        os.replace(p, dest / p.name)
    log(f"mcproton check: the earlier check's outputs in {out} ({', '.join(p.name for p in found)}) are not a check "
        f"of these inputs: moved into {dest}")
    return dest


def record_failure(out: Path, exc: BaseException, *, ours_written: bool, started: str, inputs: dict[str, Any],
                   invocation: dict[str, Any], log: Callable[[str], None], status: str | None = None) -> dict[str, Any]:
    """Record in ``out/check.json`` that this check failed (``exc``): ``status`` ("refused", "environment_error",
    "internal_error"; ``status`` where given: "not_checked" for a batch's patient no longer in it), the message,
    the exit status, when, with what inputs; an earlier check's outputs there are moved aside (:func:`move_aside`)
    first, unless this check already replaced them (``ours_written``).  A new or empty ``out`` gets no record
    (nothing there could be taken for this check's result; it is removed with its lock).  Before 2026-12-06 a refused
    re-check left the earlier check's complete PASS report in --out without a word, and a script reading
    --out/check.json read it (automation audit, F1).  Returns the record; writing it is best effort (a full or
    read-only disk: named in the log)."""
    from .._io.atomic import write_bytes_atomic
    from .._io.json_out import json_text
    from .. import __version__
    from ..errors import exit_status, status_of
    from .record import now_text

    record: dict[str, Any] = {
        "schema_version": CHECK_JSON_SCHEMA, "status": status or status_of(exc), "passed": False, "checks": [],
        "error": " ".join(str(exc).split()) or type(exc).__name__, "error_type": type(exc).__name__,
        **({} if status else {"exit_status": exit_status(exc)}),
        "provenance": {"mcproton_version": __version__, "check_started": started, "check_finished": now_text(),
                       "given_inputs": {k: v for k, v in inputs.items() if v is not None}, **invocation}}
    if out is None or isinstance(exc, OutDirRefused):
        return record
    from .._io.lock import FOLDER_LOCK

    try:
        if not out.is_dir() or not any(p.name != FOLDER_LOCK for p in out.iterdir()):
            return record   # a new or empty --out: nothing there to be taken for this check's result

        if not ours_written:
            dest = move_aside(out, earlier_reports(out), log)
            if dest is not None:
                record["earlier_outputs_moved_to"] = str(dest)
        target = out / "check.json"
        if target.exists() and not _failure_record_file(target):   # this check's own, or not mcproton's
            return record
        out.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(target, json_text(record, indent=1).encode())
        record["record"] = str(target)
    except OSError as err:
        log(f"mcproton check: could not record this check's failure in {out}/check.json ({err})")
    return record
