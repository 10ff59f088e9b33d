"""What ``mcproton check PTS --batch`` takes for a patient: a survey of PTS before any check.

Real export folders hold more than one sub-folder per patient.  The survey sorts PTS's entries:

* patients: the sub-folders left after the ones below (each is checked; one without an RT Ion Plan is refused with
  its own reason by the check's pairing);
* not patients, skipped and named in the log and on the index page: the ``--out`` folder (a second run with
  ``--out PTS/results`` must not check the first run's reports) or a sub-folder that holds it and no RT Plan of its
  own; hidden folders (``.git``, ``.Trash``: names starting with "."); folders that operating systems, archivers and
  NAS boxes leave (``__MACOSX`` from unzipping on a Mac, ``System Volume Information`` and ``$RECYCLE.BIN`` on a
  Windows-formatted stick, ``lost+found``, ``@eaDir``); an earlier batch's output folder (batch.json and
  index.html, no RT Plan);
* plain files at the top level: not looked at and named (a zip is not unpacked), except DICOM files: those are
  probably a patient's files put beside the sub-folders, which the batch does not check; they are listed in a
  REFUSED row of their own (each patient must be in a sub-folder of its own), so that the batch does not pass with a
  patient left out.

A sub-folder named as a file the batch writes at the top of its output folder (``batch.json``, ``index.html``, in
any case) is refused at once: its report folder ``OUT/<sub-folder>/`` would take that file's name, and the batch
stopped after the patient's MC, the others unchecked.

And one patient's folder given to --batch by mistake (the RT Plan at PTS's top level and no plan in a sub-folder,
or the patient's series in sub-folders RTPLAN/, RTDOSE/, CT/, ...: no sub-folder holds a plan with a dose of it while
PTS as a whole does) is refused at once, rather than one refusal per series folder.

The survey reads a few header elements (SOP class and Modality, SOPInstanceUID, the RT Dose's plan reference) of
each sub-folder's files, stopping in a folder once it has found a plan and a dose of it; the pixel data are never
read.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .._io.dicom_common import dicom_kind
from .._io.lock import FOLDER_LOCK
from .inputs import SYSTEM_FOLDERS, CheckInputError, listed as _listed, walk_files

#: the key of the row listing DICOM files found loose at PTS's top level (a "/" never is in a folder's name)
TOP_LEVEL = "(top level)/"
#: the files the batch writes at the top of its --out, beside the patients' folders OUT/<sub-folder>/ (compared in
#: lower case: on macOS and Windows "Batch.JSON" is the same file)
BATCH_OUTPUTS = ("batch.json", "index.html")


@dataclass
class FolderSurvey:
    """What a batch folder holds: the patients' sub-folders in order, the log lines of what is not a patient, and
    the DICOM files at the top level ("name (kind)", the kind by SOP class as the check sorts them)."""

    patients: list[Path]
    skipped: list[str] = field(default_factory=list)
    loose_dicom: list[str] = field(default_factory=list)


@dataclass
class _Contents:
    plans: dict[str, Path] = field(default_factory=dict)       # SOPInstanceUID -> file
    dose_refs: set[str] = field(default_factory=set)           # the plans the RT Doses refer to
    modalities: dict[str, int] = field(default_factory=dict)
    patient_ids: set[str] = field(default_factory=set)
    unread: int = 0   # the files left unread once a plan and its dose were found

    def pairs(self) -> bool:
        """A plan and an RT Dose of it."""
        return bool(self.dose_refs & set(self.plans))


def _dicom_name(p: Path) -> bool:
    """The names the check's folder scan reads (inputs._scan): .dcm, .dicom, no suffix, or a UID-like name."""
    return p.suffix.lower() in (".dcm", ".dicom", "") or p.suffix[1:].isdigit()


def _header(p: Path):
    """The few elements the survey needs, or None (not DICOM, damaged: the check itself reports those)."""
    from .._io.dicom_common import read_dicom_header

    try:   # a raw data set too, as the check reads it (audit 27, F1: a raw plan was not surveyed); a PatientID read
        # as the check reads it (its text said by the check)
        return read_dicom_header(p, specific_tags=[
            "Modality", "SOPInstanceUID", "SOPClassUID", "ReferencedRTPlanSequence", "PatientID"])
    except Exception:  # noqa: BLE001 - a survey only: the patient's check reads and reports every file
        return None


def _add(c: _Contents, p: Path, ds) -> None:
    mod = dicom_kind(ds)[0]
    if not mod:
        return
    c.modalities[mod] = c.modalities.get(mod, 0) + 1
    c.patient_ids.add(str(ds.get("PatientID", "") or ""))
    if mod == "RTPLAN" and ds.get("SOPInstanceUID"):
        c.plans[str(ds.SOPInstanceUID)] = p
    elif mod == "RTDOSE":
        for ref in ds.get("ReferencedRTPlanSequence", []) or []:
            uid = str(ref.get("ReferencedSOPInstanceUID", "") or "")
            if uid:
                c.dose_refs.add(uid)


def _contents(folder: Path, exclude: Path | None = None) -> _Contents:
    """The plans and plan references under ``folder`` (not under ``exclude``); stops once a plan and a dose of it
    are found (the files at the folder's own level first: that is where exports put RP and RD)."""
    c = _Contents()
    try:
        files = [p for p in walk_files(folder) if _dicom_name(p)   # through linked folders, as the check
                 and not any(part.startswith(".") for part in p.relative_to(folder).parts)
                 and (exclude is None or not p.resolve().is_relative_to(exclude))]
    except OSError:   # a folder that cannot be listed: the patient's own check says so
        return c
    files = sorted(files, key=lambda q: (len(q.relative_to(folder).parts), str(q)))
    for i, p in enumerate(files):
        ds = _header(p)
        if ds is not None:
            _add(c, p, ds)
            if c.pairs():
                c.unread = len(files) - i - 1
                break
    return c


def survey(root: Path, out_dir: Path) -> FolderSurvey:
    """Sort the entries of the batch folder ``root`` (see the module docstring); ``out_dir`` is the batch's output
    folder.  Raises :class:`CheckInputError` for one patient's folder and for a folder without patients."""
    out_r = out_dir.resolve()
    res = FolderSurvey([])
    contents: dict[Path, _Contents] = {}
    others: list[str] = []
    top = _Contents()
    for p in sorted(root.iterdir()):
        name = p.name
        if name == FOLDER_LOCK:   # the lock of a check writing there (--out PTS): not an input
            continue
        if not p.is_dir():
            ds = _header(p) if _dicom_name(p) and p.is_file() else None
            mod = dicom_kind(ds)[0] if ds is not None else ""
            if mod:
                _add(top, p, ds)
                res.loose_dicom.append(f"{name} ({mod})")
            else:
                others.append(name + (" (a DICOMDIR, the index of an export medium)" if name.upper() == "DICOMDIR"
                                      else ""))
            continue
        pr = p.resolve()
        if pr == out_r:
            res.skipped.append(f"skipped sub-folder '{name}': it is the output folder (--out) of this batch, not a "
                               "patient")
            continue
        if name.startswith("."):
            res.skipped.append(f"skipped sub-folder '{name}': a hidden folder, not a patient")
            continue
        if name.lower() in SYSTEM_FOLDERS:
            res.skipped.append(f"skipped sub-folder '{name}': {SYSTEM_FOLDERS[name.lower()]}, not a patient")
            continue
        if name.lower() in BATCH_OUTPUTS:
            # its check would make OUT/<name>/ a folder where the batch then writes its summary file: the batch
            # stopped after that patient's MC, the others unchecked (untrusted-input audit 29, F4)
            raise CheckInputError(f"--batch: the sub-folder '{name}' of {root} has the name of a file the batch "
                                  f"writes in its output folder (--out {out_dir}: {', '.join(BATCH_OUTPUTS)}), where "
                                  "each patient's report goes into a folder of the sub-folder's name; rename the "
                                  f"sub-folder (e.g. '{name.replace('.', '_')}') and run the batch again")
        holds_out = out_r.is_relative_to(pr)
        c = _contents(p, exclude=out_r if holds_out else None)
        if holds_out and not c.plans:
            res.skipped.append(f"skipped sub-folder '{name}': it holds the output folder (--out {out_dir}) of this "
                               "batch and no RT Plan, not a patient")
            continue
        if not c.plans and (p / "batch.json").is_file() and (p / "index.html").is_file():
            res.skipped.append(f"skipped sub-folder '{name}': the output of an earlier mcproton check --batch "
                               "(batch.json, index.html) and no RT Plan, not a patient")
            continue
        res.patients.append(p)
        contents[p] = c
    root_r = root.resolve()
    if out_r != root_r and out_r.is_relative_to(root_r) and not (root_r / out_r.relative_to(root_r).parts[0]).is_dir():
        # the first run: the output folder does not exist yet, but a later run will find it
        res.skipped.append(f"the output folder (--out) '{out_r.relative_to(root_r).parts[0]}' is inside {root}: it "
                           "is not a patient, in this run or a later one")
    if others:
        zips = [n for n in others if n.lower().endswith((".zip", ".7z", ".tar", ".gz", ".tgz", ".rar"))]
        res.skipped.append(f"not looked at: {len(others)} file(s) at the top level of {root} ({_listed(others)}); "
                           "only its sub-folders are patients"
                           + ("; an archive is not unpacked: unpack it into a sub-folder of its own to check it"
                              if zips else ""))
    _refuse_one_patient(root, res, contents, top)
    _refuse_one_course(root, contents)
    if not res.patients:
        why = f" (skipped: {'; '.join(res.skipped)})" if res.skipped else ""
        loose = (f"; it holds DICOM files at its top level ({_listed(res.loose_dicom)}): each patient must be in a "
                 "sub-folder of its own") if res.loose_dicom else ""
        raise CheckInputError(f"--batch: {root} has no patient sub-folders{why}{loose}; give a folder holding one "
                              "sub-folder per patient")
    return res


def _refuse_one_patient(root: Path, res: FolderSurvey, contents: dict[Path, _Contents], top: _Contents) -> None:
    """Refuse ``root`` when it is one patient's folder: its RT Plan lies at the top level and no sub-folder holds a
    plan, or no sub-folder holds a plan with a dose of it while the folder as a whole does."""
    if not (top.plans or any(c.plans for c in contents.values())):
        return
    sub_plans = any(c.plans for c in contents.values())
    whole = _Contents()
    for c in (top, *contents.values()):
        whole.plans.update(c.plans)
        whole.dose_refs |= c.dose_refs
    if sub_plans and (any(c.pairs() for c in contents.values()) or not whole.pairs()):
        return
    subs = ", ".join(p.name for p in contents) or "none"
    if top.plans and not sub_plans:
        why = (f"it holds the RT Plan {', '.join(sorted(p.name for p in top.plans.values()))} at its top level and "
               f"none of its sub-folders ({subs}) holds an RT Plan")
    else:
        paired = [whole.plans[u] for u in sorted(whole.dose_refs & set(whole.plans))]
        where = sorted({str(p.relative_to(root)) for p in paired})
        why = (f"none of its sub-folders ({subs}) holds an RT Plan with an RT Dose of it, while the folder as a whole "
               f"does (the plan {', '.join(where)}): they hold one patient's series")
    raise CheckInputError(f"--batch: {root} looks like one patient's folder: run without --batch ({why}); --batch "
                          "takes a folder holding one sub-folder per patient")


def _refuse_one_course(root: Path, contents: dict[Path, _Contents]) -> None:
    """Refuse ``root`` when it is one patient's treatment course (audit 18 course, F6): sub-folders holding plans
    with their doses and no CT (cranial/, spinal/) beside sub-folders holding only the CT or the RT Struct (CT/,
    RTSTRUCT/), every file of one PatientID: each sub-folder would be a refused "patient".  A folder of patients (each
    with its own CT, or of several PatientIDs) and an incomplete export (no CT-only folder) are not."""
    # a plan folder read to its end (the survey stops at a plan and its dose: a patient's CT may lie unread after)
    plan_dirs = [p for p, c in contents.items() if c.pairs() and not c.unread and "CT" not in c.modalities]
    series_dirs = [p for p, c in contents.items() if not c.plans and c.modalities
                   and set(c.modalities) <= {"CT", "RTSTRUCT"}]
    ids = set().union(*(c.patient_ids for c in contents.values())) if contents else set()
    if (not plan_dirs or not any("CT" in contents[p].modalities for p in series_dirs) or len(ids) != 1
            or "" in ids or any(c.pairs() and (c.unread or "CT" in c.modalities) for c in contents.values())):
        return
    plans = sorted(str(contents[p].plans[u].relative_to(root)) for p in plan_dirs for u in contents[p].plans)
    example = plans[0]
    raise CheckInputError(
        f"--batch: {root} looks like one patient's treatment course (PatientID {next(iter(ids))!r}: plans with their "
        f"doses in {', '.join(p.name + '/' for p in plan_dirs)}, the series in "
        f"{', '.join(p.name + '/' for p in series_dirs)}), not a folder of patients: check each plan with mcproton "
        f"check {root} --plan {root / example}" + (f" (and likewise {', '.join(plans[1:])})" if plans[1:] else "")
        + "; --batch takes a folder holding one sub-folder per patient")
