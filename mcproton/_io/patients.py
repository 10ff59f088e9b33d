"""One patient's files: the rule by which ``mcproton run`` (its CT, plan and RT Struct: mcproton/_run/inputs.py
``check_patients``) and ``mcproton check`` (its plan, planning-system doses, RT Struct and CT:
mcproton/_check/inputs.py) tell that the files they compute from are one patient's, and one CT series' slices too
(mcproton/_io/ct.py ``load_ct_series``).

The rule (audit 24, identity F1, F2, F8):

- **PatientID**, compared exactly.  The files linked to the plan by UID (its RT Doses, the structure set its
  ReferencedStructureSetSequence names) may carry other IDs than the plan (real exports do: APTG plan03's plan says
  'test_LET_ramp', its dose and structure set 'WTR303030'): a warning.  A file paired by the frame of reference alone
  (the CT; a structure set the plan does not name) whose ID is none of theirs is another patient's: refused.
- **PatientBirthDate** and **PatientSex**, between every two files that both give one, whatever their PatientIDs: a
  difference is two people (under one ID: another hospital's ID range, a sibling's ID reused; under two linked IDs:
  a plan relabelled with another patient's record), refused.  Before (review of 2026-12-07, R1) files of different
  IDs were not compared, so a plan of another ID, sex and birth date linked to the structure set by UID ran with a
  warning about the IDs only.  APTG plan03's files, of two IDs, give one birth date and sex: they pass.
- **PatientName**, likewise, after normalisation (:func:`name_key`: case, the whitespace around each component and
  trailing empty components ignored): with the same ID, birth date and sex a difference is a warning only, as a
  scanner and a planning system may spell one name differently.

Before, ``mcproton run`` compared none of these (its RT Dose filed patient B's plan dose under CT patient A), and
``mcproton check`` only the PatientID (one check's report and RD_mc.dcm named two different patients)."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class PatientIdentity:
    """Whom a DICOM file names: PatientID, PatientName, PatientBirthDate and PatientSex as given ("" where absent)."""

    patient_id: str = ""
    name: str = ""
    birth_date: str = ""
    sex: str = ""

    @classmethod
    def of(cls, ds: Any) -> PatientIdentity:
        """The identity of a DICOM header (None: none known)."""
        if ds is None:
            return cls()

        def text(key: str) -> str:
            try:
                return str(ds.get(key, "") or "")
            except Exception:  # noqa: BLE001 - a value pydicom cannot decode is not known, not a crash here
                return ""

        return cls(text("PatientID"), text("PatientName"), text("PatientBirthDate").strip(),
                   text("PatientSex").strip().upper())

    def merged(self, other: PatientIdentity) -> PatientIdentity:
        """This identity with its empty values taken from ``other``."""
        return PatientIdentity(self.patient_id or other.patient_id, self.name or other.name,
                               self.birth_date or other.birth_date, self.sex or other.sex)

    def record(self) -> dict[str, str]:
        """As DICOM names it: {"PatientID", "PatientName", "PatientBirthDate", "PatientSex"}."""
        return {"PatientID": self.patient_id, "PatientName": self.name, "PatientBirthDate": self.birth_date,
                "PatientSex": self.sex}


#: The attributes a header of identity is read with (:func:`read_header`): whom a file names, the UIDs that link it
#: (its SOPInstanceUID, the structure set a plan names) and the study it is in (the check's RD_mc.dcm may go into
#: the plan's: mcproton/_check/mc_rtdose.py); SpecificCharacterSet is added by pydicom
IDENTITY_TAGS = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "SOPInstanceUID",
                 "ReferencedStructureSetSequence", "StudyInstanceUID", "StudyDate", "StudyTime",
                 "TimezoneOffsetFromUTC")


def read_header(path: Any) -> Any:
    """A DICOM file's attributes of identity (:data:`IDENTITY_TAGS`, nothing else: an RT Struct's contours are
    neither parsed nor walked), their text decoded by the one rule of every reader
    (:func:`~mcproton._io.dicom_common.assume_input_charset`, which decides each value by its own bytes, so that
    this partial read and a full read give a name alike), or None where it cannot be read (its own reader reads it,
    and refuses it where damaged).  Before (review of 2026-12-07, R2) the whole file was read: a 20 MB structure set
    cost about 5 s per read, and a run read it for its identity two or three times."""
    from .dicom_common import read_dicom_header

    try:   # None where it is not DICOM
        return read_dicom_header(path, specific_tags=list(IDENTITY_TAGS))
    except Exception:  # noqa: BLE001 - see above
        return None


def read_identity(path: Any) -> PatientIdentity:
    """The identity a DICOM file names (empty where it cannot be read)."""
    return PatientIdentity.of(read_header(path))


def name_key(name: str) -> tuple[tuple[str, ...], ...]:
    """A PatientName as compared: its component groups ('='), each of its components ('^') with the whitespace
    around it removed and in case-folded form, trailing empty components and groups dropped: "DOE^JANE^^" ==
    " Doe ^ jane"."""
    groups = []
    for group in str(name or "").split("="):
        comps = [c.strip().casefold() for c in group.split("^")]
        while comps and not comps[-1]:
            comps.pop()
        groups.append(tuple(comps))
    while groups and not groups[-1]:
        groups.pop()
    return tuple(groups)


def same_name(a: str, b: str) -> bool:
    """Whether two PatientNames name one person as far as :func:`name_key` tells: every component group that both
    give is equal (a name written with its ideographic group and one without it are the same where the alphabetic
    groups are); a name that either does not give is not a difference."""
    ka, kb = name_key(a), name_key(b)
    if not ka or not kb:
        return True
    return all(x == y for x, y in zip(ka, kb) if x and y)


@dataclass(frozen=True)
class PatientFile:
    """One input file (or CT series) of a command, as its messages name it ("plan RP.dcm", "CT ct/"), whom it names,
    and whether the plan links it by UID (the plan itself, its doses, the structure set it names) or only the frame
    of reference pairs it (the CT, a structure set the plan does not name)."""

    what: str
    identity: PatientIdentity
    linked: bool = True
    key: str = ""    # where it was given (mcproton run: "plan.rtplan", "plan.rtstruct", "phantom.ct_dir")
    path: str = ""   # the file or folder as given


@dataclass
class PatientFindings:
    """What :func:`compare_patients` found: ``refusal`` (the sentence of a refusal, "" for none: the caller adds what
    to do) and ``warnings`` (linked files of different PatientIDs; names spelled differently)."""

    refusal: str = ""
    warnings: list[str] = field(default_factory=list)


#: what a PatientName that differs with the same ID, birth date and sex is taken to be (the warning's words)
NAME_ONLY = ("and no difference of PatientID, birth date or sex (a scanner and a planning system may spell one "
             "name differently); make sure they are one patient's files")


def _listed(files: Sequence[PatientFile], get) -> str:
    return "; ".join(f"{f.what}: {get(f.identity)!r}" for f in files if get(f.identity))


def compare_patients(files: Sequence[PatientFile]) -> PatientFindings:
    """The rule of this module on ``files`` (the plan first, as the messages list them)."""
    found = PatientFindings()
    linked_ids = {f.identity.patient_id for f in files if f.linked and f.identity.patient_id}
    by_frame = [f for f in files if not f.linked and f.identity.patient_id]
    if linked_ids:
        alien = [f for f in by_frame if f.identity.patient_id not in linked_ids]
    else:   # no file linked by UID names an ID: those paired by the frame must agree among themselves
        alien = by_frame if len({f.identity.patient_id for f in by_frame}) > 1 else []
    if alien:
        listed = _listed(files, lambda i: i.patient_id)
        if linked_ids:
            others = " and the files linked to it by UID" if sum(f.linked for f in files) > 1 else ""
            found.refusal = (f"belong to different patients (PatientID: {listed}): "
                             f"{', '.join(f.what for f in alien)} {'is' if len(alien) == 1 else 'are'} of another "
                             f"patient than the plan{others}, so another patient's files were mixed in")
        else:   # the plan names nobody: the files paired by the frame differ among themselves (review R5)
            found.refusal = (f"belong to different patients (PatientID: {listed}): {', '.join(f.what for f in alien)} "
                             "name different patients, and the plan names none (no PatientID), so at least one of "
                             "them is another patient's")
        return found
    if len(linked_ids) > 1:
        said = _listed([f for f in files if f.linked], lambda i: i.patient_id)
        found.warnings.append(f"the files linked by UID carry different PatientIDs ({said}): paired by their UIDs, "
                              "as they reference each other; make sure they are this patient's files (a file of "
                              "another patient, or one re-identified or anonymised apart from the others)")
    # the demographics: birth date and sex between every two files that both give one, whatever their IDs (two
    # linked IDs of one person, as APTG plan03's, give one birth date and sex); the name between files that may be
    # of one patient (the same ID, or one of them without an ID: names of two IDs differ, and the IDs are said)
    clashes: dict[str, list[PatientFile]] = {}
    names_differ: list[PatientFile] = []
    for i, a in enumerate(files):
        for b in files[i + 1:]:
            ia, ib = a.identity, b.identity
            for key, va, vb in (("PatientBirthDate", ia.birth_date, ib.birth_date), ("PatientSex", ia.sex, ib.sex)):
                if va and vb and va != vb:
                    clashes.setdefault(key, [])
                    clashes[key] += [f for f in (a, b) if f not in clashes[key]]
            if (not ia.patient_id or not ib.patient_id or ia.patient_id == ib.patient_id) and \
                    not same_name(ia.name, ib.name):
                names_differ += [f for f in (a, b) if f not in names_differ]
    ids = sorted({f.identity.patient_id for f in files if f.identity.patient_id})
    pid = repr(ids[0]) if len(ids) == 1 else _listed(files, lambda i: i.patient_id) or "none given"
    if clashes:
        get = {"PatientBirthDate": lambda i: i.birth_date, "PatientSex": lambda i: i.sex}
        what = "; ".join(f"{key} {_listed(fs, get[key])}" for key, fs in clashes.items())
        names = _listed(files, lambda i: i.name)
        named = f"; PatientName {names}" if names else ""
        if len({f.identity.patient_id for fs in clashes.values() for f in fs} - {""}) > 1:
            # files of different IDs, linked by UID (their IDs alone were warned of above: this says more)
            found.warnings.clear()
            found.refusal = (f"name different patients: {what}; PatientID {pid}{named}: files of different "
                             "PatientIDs that also differ in birth date or sex are two people's, even where the plan "
                             "links them by UID (a plan or structure set of another patient, or relabelled with "
                             "another patient's record)")
        else:
            found.refusal = (f"name different patients under one PatientID ({pid}): {what}{named}: two patients "
                             "under one ID (another hospital's ID range, a sibling's ID reused), or a file of another "
                             "patient given this ID")
        return found
    if names_differ:
        names = _listed(names_differ, lambda i: i.name)
        found.warnings.append(f"the files name the patient differently: PatientName {names} (PatientID {pid}), "
                              f"{NAME_ONLY}")
    return found


def series_patients(slices: Sequence[tuple[str, PatientIdentity]]) -> str:
    """The refusal of one CT series whose slices (``(file name, identity)``) name more than one patient: another
    PatientID, birth date or sex, or another PatientName after :func:`name_key` (one scan is one patient, however a
    system spells it); "" where they agree.  The slices of each value are named (the fewest first)."""
    for key, get, same in (("PatientID", lambda i: i.patient_id, None),
                           ("PatientName", lambda i: i.name, name_key),
                           ("PatientBirthDate", lambda i: i.birth_date, None),
                           ("PatientSex", lambda i: i.sex, None)):
        groups: dict[Any, list[tuple[str, str]]] = {}
        for name, ident in slices:
            value = get(ident)
            if not value:
                continue   # not given (an anonymiser's blank): no difference, as between files
            groups.setdefault(same(value) if same else value, []).append((name, value))
        if len(groups) < 2:
            continue
        parts = []
        for members in sorted(groups.values(), key=len):
            names = [n for n, _ in members]
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            parts.append(f"{members[0][1]!r} in {len(names)} slice{'s' if len(names) != 1 else ''} ({shown})")
        return (f"the slices of one CT series name different patients ({key} {'; '.join(parts)}): a series put "
                "together from two patients' files (a failed merge, a re-identification of some slices), so the CT "
                "is not one patient's; export the series again, or remove the other patient's slices")
    return ""
