"""What a check's record (check.json, check.html) says it checked and how: each input file by its resolved path,
UIDs, creation date and SHA-256; the patient and plan; the calibration's files; the command line or the Python call
that made it.  A signed report can then be traced to its files, and re-run, a year later (the report audit of
2026-12-05, F1-F5: a passing and a failing report were told apart by nothing they recorded)."""
from __future__ import annotations

import datetime as _dt
import os
import shlex
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from .._io.file_hash import FILES_SHA256_RULE, files_sha256, sha256_file

#: The command line that runs the check (``mcproton check ...``), set by the command (``invoked_as``); None: the
#: check was called from Python, and its record gives the call's keyword arguments instead.
INVOKED_AS: ContextVar[str | None] = ContextVar("mcproton_check_invoked_as", default=None)


@contextmanager
def invoked_as(argv: Sequence[str]) -> Iterator[None]:
    """The checks run inside record ``argv`` (the words of the command line, the program first) as their command
    line, quoted as a shell would need it."""
    token = INVOKED_AS.set(shlex.join(argv))
    try:
        yield
    finally:
        INVOKED_AS.reset(token)


def now_text() -> str:
    """The local time now, ISO 8601 with its UTC offset to the second (2026-12-05T14:03:11+01:00)."""
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def dicom_datetime(date: str, time: str) -> str | None:
    """A DICOM DA and TM as one text (20261205 140311.000000 -> "2026-12-05 14:03:11"); None without a date."""
    d, t = (date or "").strip(), (time or "").strip()
    if not d:
        return None
    shown = f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 and d.isdigit() else d
    if t:
        hms = t.split(".")[0]
        shown += " " + (":".join(hms[k:k + 2] for k in range(0, len(hms), 2)) if hms.isdigit() else t)
    return shown


def _header(path: str | Path, tags: Sequence[str]) -> Any:
    from .._io.dicom_common import read_dicom_header

    try:
        return read_dicom_header(path, specific_tags=tags)
    except Exception:  # noqa: BLE001 - the file was read before; the record then gives its hash only
        return None


def dicom_input(role: str, path: str | Path) -> dict[str, Any]:
    """One DICOM input: {"role", "path" (resolved), "sop_instance_uid", "series_instance_uid", "created"
    (InstanceCreationDate/Time, None where absent), "sha256" (of the file's bytes)}."""
    ds = _header(path, ("SOPInstanceUID", "SeriesInstanceUID", "InstanceCreationDate", "InstanceCreationTime"))
    get = (lambda k: str(ds.get(k, "") or "")) if ds is not None else (lambda k: "")
    return {"role": role, "path": str(Path(path).resolve()), "sop_instance_uid": get("SOPInstanceUID") or None,
            "series_instance_uid": get("SeriesInstanceUID") or None,
            "created": dicom_datetime(get("InstanceCreationDate"), get("InstanceCreationTime")),
            "sha256": sha256_file(path)}


def ct_input(folder: str | Path, slice_files: Sequence[str], series_uid: str, role: str = "CT series",
             acquisition: dict | None = None) -> dict:
    """The CT series read: {"role", "path" (the folder, resolved), "series_instance_uid", "slices", "created" (the
    first slice's SeriesDate/Time), "sha256" (one hash over the slices' files: ``sha256_of`` says how),
    "acquisition" (the first slice's KVP, Manufacturer, ManufacturerModelName and ConvolutionKernel:
    :func:`~mcproton._io.ct.ct_acquisition`; a HU calibration belongs to one scanner, tube voltage and kernel; the
    CT's as read, ``acquisition``, where given: its "KVP_values" where the slices' differ)}."""
    from .._io.ct import CT_ACQUISITION_TAGS, ct_acquisition

    ds = _header(slice_files[0], ("SeriesDate", "SeriesTime", *CT_ACQUISITION_TAGS)) if slice_files else None
    created = dicom_datetime(str(ds.get("SeriesDate", "") or ""), str(ds.get("SeriesTime", "") or "")) \
        if ds is not None else None
    return {"role": role, "path": str(Path(folder).resolve()), "sop_instance_uid": None,
            "series_instance_uid": series_uid or None, "slices": len(slice_files), "created": created,
            "sha256": files_sha256(slice_files),
            "sha256_of": f"the {len(slice_files)} slice files of the series: {FILES_SHA256_RULE}",
            "acquisition": dict(acquisition) if acquisition else ct_acquisition(ds) if ds is not None else None}


def kvp_mismatch_of(provenance: dict) -> str:
    """What a check's verdict says of its CT's tube voltage where it differs from the one its HU calibration states
    (the CT input's ``calibration_kvp``, :func:`~mcproton._io.calibration_kvp.kvp_comparison`): "CT at 80 kVp, HU
    calibration stated for 120 kVp"; "" where they agree or either is unknown."""
    from .._io.calibration_kvp import kvp_mismatch_text

    for f in provenance.get("inputs") or []:
        if said := kvp_mismatch_text(f.get("calibration_kvp")):
            return said
    return ""


#: The plan's attributes of the record's identification (check.json provenance.identification, the report's header)
IDENTIFICATION_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "RTPlanLabel", "RTPlanName", "RTPlanDate",
                       "RTPlanTime", "ApprovalStatus", "Manufacturer", "ManufacturerModelName", "SOPInstanceUID",
                       "StudyInstanceUID")


def identification(plan_path: str | Path) -> dict[str, str]:
    """Patient and plan from the RT Ion Plan (empty strings where absent), with ``plan_file`` (resolved); {} if it
    cannot be read (it was read before: the check has its plan)."""
    ds = _header(plan_path, IDENTIFICATION_KEYS)   # not the spots
    if ds is None:
        return {}
    from .._io.dicom_common import assume_input_charset

    assume_input_charset(ds, plan_path)   # the name as the plan reader read it (no SpecificCharacterSet: said there)
    return {"plan_file": str(Path(plan_path).resolve()), **{k: str(ds.get(k, "") or "") for k in IDENTIFICATION_KEYS}}


def plan_label(ident: Mapping[str, Any], label: str = "", uid: str = "") -> str:
    """How a plan is named in one word: its RTPlanLabel, else its RTPlanName, else its SOPInstanceUID (from the
    plan's ``identification``; without it, ``label``, else ``uid``)."""
    if ident:
        return str(ident.get("RTPlanLabel") or ident.get("RTPlanName") or ident.get("SOPInstanceUID") or uid).strip()
    return str(label or uid or "").strip()


def calibration_record(cal: Any, given: Any) -> dict[str, Any]:
    """The HU calibration used: {"name", "builtin" (one of mcproton's, named by the name and mcproton's version),
    "files" (those it was read from, each {"path", "sha256"}; none for a built-in), "data_sha256" (of what it maps
    HU to: :meth:`HUCalibration.data_sha256`)}.  The data hash tells a calibration changed in Python (a density
    curve scaled by 3 %, under its built-in name) from the one its name says, and is what ``check(mc=...)``
    compares."""
    from .._io.hu_calibration import HUCalibration

    builtin = given is None or (isinstance(given, str) and not Path(given).exists())
    if isinstance(given, HUCalibration):
        builtin = False
    files = [] if builtin else [dict(f) for f in getattr(cal, "files", []) or []]
    data = cal.data_sha256() if isinstance(cal, HUCalibration) else None
    return {"name": getattr(cal, "name", str(given)), "builtin": builtin, "files": files, "data_sha256": data}


def levels_record(levels: Any) -> dict[str, Any]:
    """Where the action levels came from: {"source": text, "path" and "sha256" of a --config file}."""
    from .levels import DEFAULTS_SOURCE, ActionLevels

    if levels is None:
        return {"source": DEFAULTS_SOURCE}
    if isinstance(levels, ActionLevels):
        return {"source": f"given as {levels!r} (Python)"}
    p = Path(levels)
    return {"source": f"the [levels] table of {p.resolve()}", "path": str(p.resolve()), "sha256": sha256_file(p)}


def _arg_text(v: Any) -> str:
    """A keyword argument's value as Python text (objects that are not plain values by what they are)."""
    from .levels import ActionLevels
    from ..settings import PhysicsSettings

    if isinstance(v, (str, int, float, bool, type(None), ActionLevels, PhysicsSettings)):
        return repr(v)
    if isinstance(v, Path):
        return repr(str(v))
    if isinstance(v, (list, tuple)) and all(isinstance(x, (str, Path, int, float)) for x in v):
        return "[" + ", ".join(_arg_text(x) for x in v) + "]"
    if isinstance(v, Mapping) and all(isinstance(x, (str, int, float, bool)) for x in v.values()):
        return repr(dict(v))
    if callable(v) and not hasattr(v, "name"):
        return f"<{getattr(v, '__name__', type(v).__name__)}>"
    return f"<{type(v).__name__} {getattr(v, 'name', '')}>".replace(" >", ">")


#: keyword arguments of check() left out of its recorded call: they change what is printed, not what is checked
_NOT_RECORDED = ("progress", "log")


def python_call(args: Mapping[str, Any], defaults: Mapping[str, Any]) -> str:
    """``mcproton.check(...)`` with the arguments that differ from their defaults (``args``: every parameter)."""
    given = [f"{k}={_arg_text(v)}" for k, v in args.items()
             if k not in _NOT_RECORDED and (k not in defaults or not _same(v, defaults[k]))]
    return f"mcproton.check({', '.join(given)})"


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:  # noqa: BLE001 - an array-like value: not a default
        return False


def invocation(args: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, str]:
    """How the check was started: {"invoked_from": "command line" or "Python", "invocation": the command line or
    the Python call, "working_directory"}."""
    cmd = INVOKED_AS.get()
    return {"invoked_from": "command line" if cmd is not None else "Python",
            "invocation": cmd if cmd is not None else python_call(args, defaults),
            "working_directory": os.getcwd()}
