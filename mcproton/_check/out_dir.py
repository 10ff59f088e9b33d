"""The check's output folder (``--out``): no input is overwritten, and no earlier check's file stays beside a new
report, or in the place of this check's result.

A check writes ``check.html``, ``check.json``, ``RD_mc.dcm``, ``RD_mc_beam<N>.dcm`` and, with
``--phantom-from-struct``, ``phantom_ct/``.  Once its inputs are read (:func:`prepare_out`):

* a file of those names that is one of the check's inputs (the planning system's dose exported as ``RD_mc.dcm``
  into the folder given as ``--out``; the CT in ``phantom_ct/``) is refused: it would be overwritten;
* a file of those names that mcproton did not write is refused rather than overwritten;
* the files an earlier check wrote there (recognised by their content: mcproton's RT Dose and phantom CT headers,
  the report's title, the JSON's keys) are moved at once into ``--out/earlier_check_<date>/`` (named in the log),
  so that nothing in ``--out`` reads as this check's result before it is one: a per-beam MC dose of another plan or
  patient, or an earlier complete report, is not left beside the new one (a helper's audit, 2026-12-05: a re-used
  ``--out`` kept another patient's ``RD_mc_beam1.dcm`` and phantom CT), and a check stopped by a signal, refused or
  failed later leaves the record of *this* check as ``check.json`` (:func:`record_failure`), not last night's PASS
  (the integrators' audit of 2026-12-06, F1: an interrupted re-check left the earlier check.json in place, in
  ``--batch`` too; F12: an internal error after the MC deleted the earlier report).  A check that completes removes
  that folder (its report replaces the earlier one, as before); one that does not leaves it, and its record names it
  (``earlier_outputs_moved_to``).  An earlier check's own failure record (a check.json that is no report) is
  removed rather than moved: this check's result or record replaces it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .._io.set_aside import aside_pattern, move_aside as _move_aside, named_aside as _named_aside, set_aside
from .inputs import CheckInputError
from .mc_rtdose import MC_SERIES_DESCRIPTION, PHANTOM_SERIES_DESCRIPTION, is_check_output

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


def _ours(path: Path, phantom_slice: bool = False) -> bool:
    """Whether ``path`` (a file or the phantom folder) is what an earlier ``mcproton check`` wrote under that name:
    an ``RD_mc*.dcm`` its MC RT Dose, a file of ``phantom_ct/`` (``phantom_slice``) a CT slice of its phantom (a
    slice of the check's phantom CT named RD_mc.dcm, or an MC dose in phantom_ct/, is not: it was moved aside and
    deleted with the check's outputs; the identity audit of 2026-12-07, F7)."""
    from .._io.dicom_common import CT_IMAGE_STORAGE, RT_DOSE_STORAGE, read_dicom_header

    if path.is_dir():   # the phantom CT: every file mcproton's phantom series
        files = [f for f in path.iterdir()]
        return bool(files) and all(f.is_file() and _ours(f, phantom_slice=True) for f in files)
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
        ds = read_dicom_header(path)
    except Exception:  # noqa: BLE001 - not DICOM, unreadable: not ours
        return False
    if ds is None:
        return False
    kind = (CT_IMAGE_STORAGE, PHANTOM_SERIES_DESCRIPTION) if phantom_slice else (RT_DOSE_STORAGE, MC_SERIES_DESCRIPTION)
    return is_check_output(ds) and (str(ds.get("SOPClassUID", "")), str(ds.get("SeriesDescription", ""))) == kind


def _what_else(p: Path) -> str:
    """For a refused file of the check's names that mcproton wrote as something else: " as its MC RT Dose (it is a
    CT slice that mcproton wrote ...)"; "" otherwise."""
    from .._io.ownership import other_kind, written_by_mcproton

    if p.is_dir() or not p.name.lower().endswith(".dcm") or not written_by_mcproton(p)[0]:
        return ""
    other = other_kind(p, "rtdose")
    return f" as its MC RT Dose (it is {other or 'an RT Dose of another mcproton command'})"


class EarlierOutputs:
    """The earlier check's outputs found in ``--out`` (``found``).  :meth:`set_aside` moves them into
    ``earlier_check_<date>/`` (``moved_to``) as the check starts; calling the object marks this check's first write
    (``removed`` then True: the folder holds this check's files from then on); :meth:`discard` removes the folder
    they were moved into once this check's report is complete."""

    def __init__(self, out: Path, found: list[Path], log: Callable[[str], None]) -> None:
        self.out, self.found, self.log = out, found, log
        self.removed = False
        self.moved_to: Path | None = None
        self._names: list[str] = []

    def names(self) -> list[str]:
        return [p.name + ("/" if p.name == PHANTOM_DIR else "") for p in self.found]

    def describe(self) -> str:
        """'check.html, check.json, RD_mc.dcm, written 2026-12-05 10:31' (the newest file's time)."""
        import time

        times = []
        for p in self.found:
            try:   # where set aside, there
                times.append((self.moved_to / p.name if self.moved_to is not None else p).lstat().st_mtime)
            except OSError:
                pass
        when = f", written {time.strftime('%Y-%m-%d %H:%M', time.localtime(max(times)))}" if times else ""
        return ", ".join(self.names()) + when

    def set_aside(self) -> None:
        """Move the earlier outputs into ``out/earlier_check_<date>/`` now (an earlier failure record, which is no
        report, is removed): from here on ``--out`` holds nothing that reads as this check's result until it is.
        The ``earlier_check_<date>/`` folder a removed record names (a batch stopped before this patient set its
        check aside there) goes with them, into the new folder: removed once this check's report is complete, kept
        and named by its record where it does not complete (review 5 of 2026-12-06, F4: it stayed beside the new
        report, named by nothing, holding last night's check.json)."""
        self.moved_to = set_aside(self.out, self.found, self.log,
                                  is_record=lambda p: p.name == "check.json" and _failure_record_file(p),
                                  prefix=EARLIER_DIR, whose=EARLIER_WHOSE,
                                  why="set aside as this check starts (removed once its report is complete; kept "
                                      "where it does not complete)")

    def __call__(self) -> list[str]:
        """This check's first write is next (the earlier outputs were set aside when it started)."""
        if self.removed:
            return []
        self.removed = True
        return self.names()

    def discard(self) -> None:
        """This check's report is complete: the earlier outputs set aside are removed (the report replaces them), and
        named in the log; where that fails they stay, named."""
        dest, self.moved_to = self.moved_to, None
        if dest is None or not dest.is_dir():
            return
        try:
            shutil.rmtree(dest)
        except OSError as exc:
            self.log(f"mcproton check: could not remove the earlier check's outputs set aside in {dest} ({exc}); "
                     "this check's report is complete beside them")
            return
        self.log(f"mcproton check: removed the earlier check's outputs in {self.out}: {', '.join(self.names())} "
                 "(replaced by this check's report)")


def prepare_out(out: str | Path, inp: Any, log: Callable[[str], None]) -> EarlierOutputs:
    """Check ``out`` for the check of ``inp`` (:class:`~mcproton._check.inputs.CheckInputs`): refuse an output that
    would overwrite an input or a file mcproton did not write; an earlier check's outputs are named in the log with
    their date and moved aside now (:meth:`EarlierOutputs.set_aside`).  Returns the :class:`EarlierOutputs`: call it
    just before the first write, and its ``discard`` once the report is complete."""
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
            other = _what_else(p)
            raise OutDirRefused(f"--out {out}: {p.name} is there and was not written by mcproton check"
                                  f"{other}: the check would overwrite it; give another folder for the check's "
                                  f"outputs (or move {p})")
    earlier = EarlierOutputs(out, found, log)
    if found:
        log(f"mcproton check: note: --out {out} holds an earlier check's outputs ({earlier.describe()}); they are "
            "replaced by this check's: moved aside now, and removed once this check's report is complete (a check "
            "stopped, refused or failed before that leaves them in earlier_check_<date>/ and its own record as "
            "check.json)")
        earlier.set_aside()
    return earlier


class OutDirRefused(CheckInputError):
    """``--out`` itself is refused (a file, a name too long, an input or a file mcproton did not write there): the
    check then leaves the folder as it is, writing no record of the refusal into it."""


#: check.json's format version: raised when a key is removed or changes meaning (new keys do not raise it), so
#: that a script can tell (automation audit 2026-12-06, F10).  1: the first numbered one (2026-12-06: "status",
#: "schema_version"; a check that failed writes a record of its own, :func:`record_failure`).  2 (2026-12-07):
#: ``settings.machine_check`` is text saying what was checked ("yes: ...", "off ...", "not possible: ..."), and
#: ``settings.spot_tune_check`` is new; in 1 ``machine_check`` was the option, true or false
CHECK_JSON_SCHEMA = 2
#: the folder (in --out) that an earlier check's outputs are moved into when a later check of that folder starts
EARLIER_DIR = "earlier_check_"
#: the statuses of a check.json that records a check that did not complete (no report): a check refused, failed or
#: interrupted, a batch's patient not checked (the batch stopped before it) or no longer in the batch
RECORD_STATUSES = ("refused", "environment_error", "internal_error", "interrupted", "not_checked", "not_in_batch")


def _failure_record_file(path: Path) -> bool:
    """Whether ``path`` is the check.json of a check that failed (:func:`record_failure`), not a report."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("status") in RECORD_STATUSES


#: the name of a folder move_aside makes: earlier_check_<YYYYmmdd-HHMMSS>[-<k>]
EARLIER_DIR_NAME = aside_pattern(EARLIER_DIR)
#: what the log calls the outputs move_aside moves
EARLIER_WHOSE = "mcproton check: the earlier check's outputs"


def named_aside(folder: Path, doc: Any) -> Path | None:
    """The folder ``folder/earlier_check_<date>/`` that the record ``doc`` (a check.json's content) names as where
    an earlier check's outputs were moved (``earlier_outputs_moved_to``), where it is there; else None
    (mcproton._io.set_aside.named_aside)."""
    return _named_aside(folder, doc, EARLIER_DIR)


def earlier_reports(out: Path) -> list[Path]:
    """The outputs of an earlier check in ``out`` that mcproton wrote (check.html, check.json, the MC RT Doses, the
    phantom CT), less the record of an earlier failure (a check.json that is no report)."""
    if not out.is_dir():
        return []
    found = ([out / n for n in REPORT_FILES] + sorted(p for p in out.iterdir() if MC_DOSE_NAME.match(p.name))
             + [out / PHANTOM_DIR])
    return [p for p in found if (p.exists() or p.is_symlink()) and _ours(p)
            and not (p.name == "check.json" and _failure_record_file(p))]


def move_aside(out: Path, found: list[Path], log: Callable[[str], None],
               why: str = "are not a check of these inputs") -> Path | None:
    """Move an earlier check's outputs ``found`` into ``out/earlier_check_<date of the newest>/`` (kept, and no
    longer where a script reads the current check's); returns that folder as an absolute path (None: nothing to
    move); ``why``: the log's words for why they are moved (mcproton._io.set_aside.move_aside)."""
    return _move_aside(out, found, log, prefix=EARLIER_DIR, whose=EARLIER_WHOSE, why=why)


def record_failure(out: Path | None, exc: BaseException, *, ours_written: bool, started: str | None,
                   inputs: dict[str, Any], invocation: dict[str, Any], log: Callable[[str], None],
                   status: str | None = None, moved_to: Path | None = None,
                   identification: dict[str, Any] | None = None) -> dict[str, Any]:
    """Record in ``out/check.json`` that this check did not complete (``exc``): ``status`` ("refused",
    "environment_error", "internal_error", "interrupted"; ``status`` where given: "not_in_batch" for a batch's patient
    no longer in it, "not_checked" for one the batch did not reach), the message, the exit status (null for a patient
    not checked), when, with what inputs and ``out``, the patient and plan where the plan was read
    (``identification``); an earlier check's outputs there are moved aside (:func:`move_aside`) first, unless this
    check already did (``moved_to``: where they went) or replaced them (``ours_written``).  A new or empty ``out``
    gets no record (nothing there could be taken for this check's result; it is removed with its lock).  Before
    2026-12-06 a refused re-check left the earlier check's complete PASS report in --out without a word, and a
    script reading --out/check.json read it (automation audit, F1); an interrupted one did until the integrators'
    audit (F1).  Returns the record (also where none is written: ``--json`` prints it); writing it is best effort
    (a full or read-only disk: named in the log)."""
    from .._io.atomic import write_bytes_atomic
    from .._io.json_out import json_text
    from .. import __version__
    from .._build import check_build_record
    from ..errors import exit_status, status_of
    from .record import now_text

    st = status or status_of(exc)
    record: dict[str, Any] = {
        "schema_version": CHECK_JSON_SCHEMA, "status": st, "passed": False,
        "exit_status": None if st in ("not_checked", "not_in_batch") else exit_status(exc), "checks": [],
        "error": " ".join(str(exc).split()) or type(exc).__name__, "error_type": type(exc).__name__,
        "provenance": {"mcproton_version": __version__, "build": check_build_record(), "check_started": started,
                       "check_finished": now_text(),
                       "identification": dict(identification or {}),
                       "given_inputs": {k: v for k, v in inputs.items() if v is not None},
                       # --out, as the CLI's record of a refused option has it (audit 24 "docs" F4: missing here)
                       "out": None if out is None else str(out), **invocation}}
    if moved_to is not None:
        record["earlier_outputs_moved_to"] = str(moved_to)
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
        if target.exists() and "earlier_outputs_moved_to" not in record:
            # the record replaced named an earlier check set aside: this one names it, so that it is not left
            # beside the new record named by nothing (review 5 of 2026-12-06, F4)
            try:
                kept = named_aside(out, json.loads(target.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                kept = None
            if kept is not None:
                record["earlier_outputs_moved_to"] = os.path.abspath(kept)
        out.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(target, json_text(record, indent=1).encode())
        record["record"] = str(target)
    except OSError as err:
        log(f"mcproton check: could not record this check's failure in {out}/check.json ({err})")
    return record
