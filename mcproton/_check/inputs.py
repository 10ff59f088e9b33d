"""Inputs of ``mcproton check``: find the CT, plan, planning-system (TPS) doses and structures of one patient,
pair them by their DICOM UIDs, and decide which dose the Monte Carlo must compute to match the TPS dose.

Pairing rules (DICOM PS3.3): an RT Dose refers to its plan by ReferencedRTPlanSequence >
ReferencedSOPInstanceUID; the plan, dose, structure set and CT share one FrameOfReferenceUID.  A per-beam
dose (DoseSummationType BEAM) names its beam in ReferencedFractionGroupSequence > ReferencedBeamSequence.
In a folder (exports and hand copies are messy): copies of one RT Dose (one SOPInstanceUID) count once; two doses
of one beam, two plan doses, two plans with doses, two CT series or two RT Structs of the plan's frame that the
plan does not tell apart, files of different PatientIDs and damaged DICOM files are refused with the files named;
a plan without a dose, a CT series or RT Struct of another frame, a localizer (scout) series and non-DICOM files
are skipped and named.  Of several CT series of the plan's frame (a 4-D CT's phases and average, a contrast and a
plain CT) the check reads the one the structure set was drawn on (its RTReferencedSeriesSequence), else the one
given by ``ct_series`` (``--ct-series``); a folder that holds several series is read one series only.

What the TPS dose holds:

* DoseType PHYSICAL: the physical dose (Gy); EFFECTIVE: the RBE-weighted dose, Gy(RBE), which for protons the
  planning systems compute with the constant RBE 1.1 (ICRU Report 78, 2007); any other type is refused.
* DoseUnits must be GY (RELATIVE doses cannot be checked in absolute terms).
* Dose to water or to medium: DICOM has no attribute for it.  Clinical proton planning systems (RayStation,
  Eclipse) report dose to water by default, so that is the default here; ``dose_to="medium"`` for the others.
* Fractions, as DICOM PS3.3 C.8.8.3.1 defines DoseSummationType: PLAN (the whole plan), FRACTION (one fraction
  group of the plan: all its NumberOfFractionsPlanned fractions) and BEAM (some beams, all fractions) hold all
  fractions; FRACTION_SESSION (one session, i.e. one fraction, of a fraction group) and BEAM_SESSION (some beams,
  one session) hold one.  A plan dose is PLAN, FRACTION or FRACTION_SESSION; a per-beam dose BEAM or
  BEAM_SESSION.  MULTI_PLAN, CONTROL_POINT, RECORD and the brachytherapy types cannot be recomputed from one plan
  and are refused.  Some systems have written FRACTION for the dose of one fraction: the check then fails with an
  MC/TPS ratio equal to the number of fractions, which the diagnosis names; ``fractions="one"`` reads such a file
  as one fraction.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from .._io.ct import is_localizer
from .._io.dicom_common import (assume_input_charset, dangling_links, dangling_links_message, dicom_kind, is_valid_uid,
                                 links_listed, may_be_dicom, named_like_dicom, read_dicom_file, read_dicom_header,
                                 replacement_plan_uid)
from .._io.rtstruct import struct_ct_series, struct_frame
from .._io.errors import CheckInputError, DicomInputError, McprotonWarning, warn
from .._io.patients import PatientFile, PatientIdentity, compare_patients, read_identity, series_patients
from .mc_rtdose import is_check_output

#: Summation types whose dose covers all fractions of the plan / one fraction (see the module docstring).
ALL_FRACTIONS = ("PLAN", "FRACTION", "BEAM")
ONE_FRACTION = ("FRACTION_SESSION", "BEAM_SESSION")
#: Summation types of a plan dose (every beam) and of a per-beam dose.
PLAN_DOSE_TYPES = ("PLAN", "FRACTION", "FRACTION_SESSION")
BEAM_DOSE_TYPES = ("BEAM", "BEAM_SESSION")


@dataclass
class TPSDose:
    """One RT Dose of the planning system."""

    path: str
    dose_gy_zyx: np.ndarray
    voxel_size_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    frame_of_reference_uid: str
    dose_type: str
    summation_type: str
    plan_uid: str | None
    beam_numbers: list[int] = field(default_factory=list)
    fraction_group: int | None = None   # ReferencedFractionGroupNumber (None: not given, as in a PLAN dose)
    sop_instance_uid: str = ""
    patient_id: str = ""
    heterogeneity: tuple[str, ...] = ()   # TissueHeterogeneityCorrection (3004,0014): IMAGE, ROI_OVERRIDE, WATER
    writer: str = ""                      # Manufacturer (0008,0070) and ManufacturerModelName (0008,1090)
    #: the directions along x, y, z of the file's columns, rows and frames (the dose above runs along +x, +y, +z):
    #: the check writes its MC dose of this one in the same orientation (mc_rtdose.write_mc_rtdoses)
    axis_directions: tuple[int, int, int] = (1, 1, 1)
    #: every plan the dose references (ReferencedRTPlanSequence, in order; ``plan_uid`` is the first): more than
    #: one is a plan sum, refused by :func:`gather`
    plan_uids: tuple[str, ...] = ()
    #: StudyInstanceUID (0020,000D): with PatientID and FrameOfReferenceUID what ties a dose that references a plan
    #: by mcproton's stand-in UID to that plan (:func:`stand_in_mismatch`)
    study_uid: str = ""
    #: the statistical uncertainty (%) the file states of itself, and where (rtdose.stated_uncertainty: a dose that
    #: mcproton wrote, itself a Monte Carlo dose); None for a planning system's dose: the check names a reference
    #: this noisy where it explains a failed gamma or D95 level (api, reference_noise.py; roundtrip audit F4)
    stated_uncertainty_pct: float | None = None
    stated_uncertainty_source: str = ""
    #: DoseGridScaling (3004,000E), Gy per pixel value: named where the dose is refused as zero (:func:`refuse_empty`)
    dose_grid_scaling: float = float("nan")

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.dose_gy_zyx.shape)  # type: ignore[return-value]

    def axes_mm(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Voxel-centre coordinates (z, y, x) in mm."""
        nz, ny, nx = self.shape_zyx
        return tuple(self.origin_mm[k] + self.voxel_size_mm[k] * np.arange(n)
                     for k, n in ((2, nz), (1, ny), (0, nx)))  # type: ignore[return-value]


@dataclass
class CheckInputs:
    """What was found and paired, and what the MC must compute."""

    plan_path: str
    plan: Any
    total: TPSDose | None
    beams: dict[int, TPSDose]
    ct_dir: str | None
    struct_path: str | None
    frame_of_reference_uid: str
    dose_type: str
    fractions: int
    all_fractions: bool
    pairing: list[str] = field(default_factory=list)
    ct_series: str | None = None   # SeriesInstanceUID of the CT series read from ct_dir (None: the folder's only one)
    position_notes: list[str] = field(default_factory=list)   # patient_position_notes: for the diagnostics
    #: the CT read is not the series the structure set was drawn on: the diagnostic of a failed range or dose level
    #: (:func:`not_planning_ct_note`)
    ct_not_drawn_on: str = ""
    #: the warnings of the patient rule (mcproton/_io/patients.py: files linked by UID with other PatientIDs, a name
    #: spelled differently under one ID): check.json's provenance and the report's header say them, not only its
    #: warnings (audit 24, identity F2)
    patient_warnings: list[str] = field(default_factory=list)
    #: the largest |plan dose - sum of the per-beam doses|, a fraction of the plan dose's maximum, where the plan dose
    #: and every beam's dose are given (:func:`beams_against_plan`, which refuses it beyond :data:`TPS_SUM_TOL`);
    #: None otherwise: check.json's ``dose_difference.tps_beams_minus_plan_max_pct``
    tps_beams_minus_plan: float | None = None
    #: the RT Structs found but not used, each as the pairing names it (all of another frame of reference than the
    #: plan's): where no structure set is used, what :func:`no_structure_set` says was skipped
    structs_skipped: list[str] = field(default_factory=list)

    @property
    def self_compared(self) -> bool:
        """Every RT Dose compared was written by mcproton (:func:`written_by_mcproton`): the check compares
        mcproton with itself (gather's warning, the verdict's words, the shallow-beam remark)."""
        return all(written_by_mcproton(d) for d in (self.total, *self.beams.values()) if d is not None)

    @property
    def reference(self) -> TPSDose:
        """The dose grid the check is done on (the plan dose, else the first per-beam dose)."""
        return self.total if self.total is not None else self.beams[min(self.beams)]

    def total_dose_gy(self) -> np.ndarray:
        """The TPS's plan dose (Gy): the plan dose file's, else the sum of the beam doses."""
        return self.total.dose_gy_zyx if self.total is not None else sum(d.dose_gy_zyx for d in self.beams.values())


def _dcm_header(path: Path, tags: Sequence[str] | None = None):
    """A file's header as every reader reads it (:func:`read_dicom_header`: a raw data set too, its text decoded
    as the readers of identity decode it), or None where it is not DICOM or cannot be read (its reader says so).
    ``tags``: only these attributes (with SpecificCharacterSet), as a caller that needs a few reads it: a whole
    header parses every sequence of the file (each control point of a plan, each contour of a structure set), and
    the check read a 1.25 MB plan so 7 times, 0.7 s each (the review of 2026-12-07, R4)."""
    try:
        return read_dicom_header(path, specific_tags=tags)
    except DicomInputError:   # any file in a patient folder may be there; its own reader refuses it
        return None


#: RTPlanRelationship (300A,0055) values by which a plan says it replaces the plan it references (DICOM PS3.3
#: C.8.8.9: PREDECESSOR, "plan used in derivation of current plan"; REVISION, as some planning systems write it)
NEWER_VERSION_RELATIONS = ("PREDECESSOR", "REVISION")
#: PlanIntent (300A,000A) values of a plan not made to treat the patient (DICOM PS3.3 C.8.8.9: a verification
#: (QA) plan, a machine QA or service plan, a research plan)
NOT_TREATMENT_INTENTS = ("VERIFICATION", "MACHINE_QA", "RESEARCH", "SERVICE")


@dataclass
class PlanFacts:
    """What a physicist tells the plans of a course apart by (RT General Plan module, PS3.3 C.8.8.9): the label,
    ApprovalStatus (300E,0002), PlanIntent, RTPlanDate and the plans it references (ReferencedRTPlanSequence:
    (SOPInstanceUID, RTPlanRelationship) pairs).  Audit 18 (a treatment course) F1: a REJECTED plan was checked and
    passed while its APPROVED re-plan in the folder was skipped, and none of these was read."""

    label: str = ""
    approval: str = ""
    intent: str = ""
    date: str = ""
    refs: tuple[tuple[str, str], ...] = ()
    #: the attributes :meth:`of` reads (a header read of these alone: :func:`_dcm_header`)
    TAGS: ClassVar[tuple[str, ...]] = ("RTPlanLabel", "ApprovalStatus", "PlanIntent", "RTPlanDate",
                                       "ReferencedRTPlanSequence")

    @classmethod
    def of(cls, ds: Any) -> PlanFacts:
        """The facts of the plan header ``ds`` (None: an unreadable file, no facts)."""
        if ds is None:
            return cls()

        def text(key: str) -> str:
            return str(ds.get(key, "") or "").strip()

        refs = tuple((str(r.get("ReferencedSOPInstanceUID", "") or ""),
                      str(r.get("RTPlanRelationship", "") or "").strip().upper())
                     for r in (ds.get("ReferencedRTPlanSequence", None) or []))
        return cls(text("RTPlanLabel"), text("ApprovalStatus").upper(), text("PlanIntent").upper(),
                   text("RTPlanDate"), refs)

    def text(self) -> str:
        """``'CSI_brain', APPROVED, PlanIntent CURATIVE, RTPlanDate 20261201`` (what is given of it)."""
        parts = [repr(self.label) if self.label else "no label",
                 f"ApprovalStatus {self.approval}" if self.approval else "no ApprovalStatus"]
        parts += [f"PlanIntent {self.intent}"] if self.intent else []
        parts += [f"RTPlanDate {self.date}"] if self.date else []
        return ", ".join(parts)


@dataclass
class _Header:
    """What the pairing needs of one DICOM file in the folder."""

    path: Path
    modality: str
    sop: str
    series: str
    frame: str
    patient: str
    description: str
    localizer: bool = False                 # CT: ImageType names LOCALIZER (a scout/topogram)
    position: str = ""                      # CT: PatientPosition (0018,5100)
    ref_series: tuple[str, ...] = ()        # RT Struct: the CT series its contours were drawn on
    plan: PlanFacts | None = None           # RT Plan: what a physicist tells plans apart by
    identity: PatientIdentity = field(default_factory=PatientIdentity)   # whom the file names (patients.py)


#: How a gzip-compressed file in a patient folder is named (the check reads only DICOM files as they are)
GZIP_NOTE = "gzip-compressed: decompress it, e.g. with gunzip, to check it"


def listed(names: Sequence[str], n: int = 8) -> str:
    """``names`` joined by commas, the first ``n`` of them and "and K more"."""
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


#: The deepest folder :func:`walk_files` reads below the patient folder: exports nest a few levels
#: (patient/study/series/file, a DICOMDIR's tree: about 5); deeper folders are skipped with a note (before: a
#: 1500-level tree exhausted Python's os.walk recursion, "maximum recursion depth exceeded", audit 17 hostile F9).
MAX_FOLDER_DEPTH = 32


#: what links to files that do not exist in a patient folder may be, and what the check without them would do
_DANGLING_FILES = ("CT slices, the RT Plan or an RT Dose, and without them the check would read a shorter CT (a slice "
                   "missing at either end of the series leaves no gap to be seen) or compare another plan or dose")


#: sub-folder names (compared in lower case) that are never a patient, and why (check --batch's survey skips them; a
#: patient folder's walk skips one that cannot be listed)
SYSTEM_FOLDERS = {
    "__macosx": "left by unzipping on a Mac (resource forks of the other files)",
    "system volume information": "a Windows system folder of the drive",
    "$recycle.bin": "the Windows recycle bin of the drive",
    "lost+found": "a file-system repair folder",
    "@eadir": "thumbnails a Synology NAS adds to every folder",
}
#: folders that the system makes at the top of a drive, unlistable to a user (macOS volumes: .Trashes d-wx-wx-wt,
#: .Spotlight-V100 and .fseventsd of root), beside :data:`SYSTEM_FOLDERS` (lost+found of root, mode 700): a patient
#: folder that is a drive's root holds them (review a of audit 29, R2)
VOLUME_FOLDERS = {
    ".trashes": "the macOS trash of the drive",
    ".spotlight-v100": "the macOS search index of the drive",
    ".fseventsd": "the macOS file-event log of the drive",
    ".documentrevisions-v100": "the macOS document versions of the drive",
    ".temporaryitems": "a macOS temporary folder of the drive",
}


def walk_files(root: Path, skipped: list[str] | None = None, dangling: list[Path] | None = None,
               unreadable: list[tuple[Path, str]] | None = None) -> list[Path]:
    """Every file under ``root``, sorted, through linked folders too (a CT folder linked into the patient folder
    from shared storage; Path.rglob does not follow them on Python < 3.13).  A linked folder that leads to a folder
    already read (a loop, or a second link to one folder) is not read again; ``skipped`` gets a line naming it.  A
    linked folder that leads to a folder above the ones being walked (``up -> ..``, a link to ``/`` or to a PACS
    mount that holds the patient folder) is not followed either, and ``skipped`` names it: it would read the whole
    tree around the patient, other patients' files as this one's (untrusted-input audit 29, F7: a check named a
    sibling folder's plan as the patient's).
    The walk is iterative and stops :data:`MAX_FOLDER_DEPTH` folders down (``skipped`` names where).
    ``dangling`` gets the symbolic links to files that do not exist, which are not among the files (:func:`_scan`
    refuses those named like DICOM: locale audit 2026-12-07, F1).  ``unreadable`` gets each folder that cannot be
    listed (no permission: its files are not among the files; :func:`_scan` refuses the folder, untrusted-input
    audit 29, F3) with the system's words, but for a drive's system folder (:data:`SYSTEM_FOLDERS`,
    :data:`VOLUME_FOLDERS`: lost+found, .Trashes, ...), which ``skipped`` names; one that vanished while it was
    walked is not read.  mcproton's own
    temporary files and folders (``.mcp-*.tmp``: what a writer killed with SIGKILL leaves, e.g. the hidden folder
    of a CT series beside ``ct/``) are not read, and ``skipped`` names them (review 2a of 2026-12-07, R6: their
    partial slices counted as CT files)."""
    import os

    from .._io.atomic import is_temporary_name

    seen: set[tuple[int, int]] = set()
    files: list[Path] = []
    #: (folder, depth, the real paths of the folders from the root down to it)
    stack: list[tuple[str, int, tuple[str, ...]]] = [(str(root), 0, ())]
    while stack:
        here, depth, above = stack.pop()
        if above and os.path.islink(here):
            real = os.path.realpath(here)
            # one of the folders above itself: a loop, read already (named below)
            if real not in above and any(a.startswith(real.rstrip(os.sep) + os.sep) for a in above):
                if skipped is not None:
                    skipped.append(f"skipped the linked folder {Path(here).relative_to(root)}: it leads to {real}, "
                                   "a folder above the ones read (a link up the tree: reading it would read the "
                                   "folders around the patient's, other patients' files among them)")
                continue
        try:
            st = os.stat(here)
            entries = sorted(os.scandir(here), key=lambda d: d.name)
        except FileNotFoundError:
            continue   # vanished while it was walked
        except OSError as exc:   # cannot be listed: said (before, left out as os.walk does: a shorter CT, no word)
            what = {**SYSTEM_FOLDERS, **VOLUME_FOLDERS}.get(os.path.basename(here).lower()) if depth else None
            if what is not None:   # a drive's system folder (a patient folder that is a drive's root): no input
                if skipped is not None:
                    skipped.append(f"skipped {Path(here).relative_to(root)}: {what}, which cannot be listed "
                                   f"({exc.strerror or type(exc).__name__}); not an input")
            elif unreadable is not None:
                unreadable.append((Path(here), exc.strerror or type(exc).__name__))
            continue
        if (st.st_dev, st.st_ino) in seen:   # reached again through a link: its folders were read once
            if skipped is not None:
                skipped.append(f"skipped the linked folder {Path(here).relative_to(root)}: it leads to "
                               f"{os.path.realpath(here)}, which is read already (a loop or a second link to it)")
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs = []
        for d in entries:
            try:
                is_dir = d.is_dir()   # follows links
            except OSError:
                is_dir = False
            if is_temporary_name(d.name):
                if skipped is not None:
                    skipped.append(f"skipped {Path(d.path).relative_to(root)}: an unfinished temporary "
                                   f"{'folder' if is_dir else 'file'} of mcproton (a writer stopped before it "
                                   "finished), not an input: remove it")
                continue
            if is_dir:
                dirs.append(d.path)
            else:
                files.append(Path(d.path))
        if dirs and depth >= MAX_FOLDER_DEPTH:
            if skipped is not None:
                skipped.append(f"skipped the folders below {Path(here).relative_to(root)}: more than "
                               f"{MAX_FOLDER_DEPTH} levels below the patient folder")
            continue
        chain = (*above, os.path.realpath(here))
        stack.extend((d, depth + 1, chain) for d in reversed(dirs))
    if dangling is not None:
        dangling.extend(sorted(dangling_links(files)))
    return sorted(p for p in files if p.is_file())


def _scan(folder: str | Path, *, outputs_too: bool = False, notes: list[str] | None = None
          ) -> tuple[dict[str, list[Path]], dict[Path, _Header], list[str]]:
    """:func:`discover`, with each file's header (UIDs, PatientID) and the files skipped as not DICOM
    ("name (0 bytes)" for an empty one).  Files are sorted by their SOP class (:func:`dicom_kind`); where their
    Modality says otherwise, a line per kind of disagreement goes to ``notes``.  A file that is DICOM but damaged
    (cut, unparsable) or cannot be read at all is refused: it may be the plan's dose or a CT slice, and skipping it
    would change the check.
    ``outputs_too``: an earlier check's CT or dose counts as CT or RTDOSE (a folder given as --ct)."""
    root = Path(folder)
    if not root.is_dir():
        raise CheckInputError(f"{root} is not a folder; give the folder that holds one patient's DICOM files "
                              "(CT slices, RT Plan, RT Dose, RT Struct)")
    found: dict[str, list[Path]] = {"CT": [], "RTPLAN": [], "RTDOSE": [], "RTSTRUCT": []}
    headers: dict[Path, _Header] = {}
    not_dicom: list[str] = []
    relabelled: dict[str, list[str]] = {}
    unused: dict[str, list[str]] = {}   # DICOM objects the check does not read (a treatment record, a registration)
    skipped: list[str] = []   # files of such objects that cannot be read (damaged, nested too deep)
    dangling: list[Path] = []
    unreadable: list[tuple[Path, str]] = []
    files = walk_files(root, notes, dangling, unreadable)
    if unreadable:   # its files may be CT slices, the plan or a dose (untrusted-input audit 29, F3)
        names = [f"{'the patient folder itself' if d == root else d.relative_to(root)} ({why})"
                 for d, why in unreadable]
        raise CheckInputError(f"{len(unreadable)} folder(s) in the patient folder {root} cannot be listed: "
                              f"{listed(names)}; they may hold {_DANGLING_FILES}: make them readable to this user "
                              "(e.g. chmod -R u+rX), or move them out of the patient folder")
    # a CT slice, the plan or a dose that is a link to a file that is gone was left out without a word (locale audit
    # 2026-12-07, F1: "107 slices" of 109, the CT's ends cut off); other such links are named in the notes
    refused = [p for p in dangling if named_like_dicom(p.name)]
    if refused:
        raise CheckInputError(dangling_links_message(refused, f"in the patient folder {root}", _DANGLING_FILES, root))
    if dangling:
        skipped.append(f"skipped {len(dangling)} symbolic link(s) to files that do not exist: "
                       f"{links_listed(dangling, root)}")
    for p in files:
        if p.suffix.lower() == ".gz":   # RD.dcm.gz: named, with what to do (before: not a word)
            not_dicom.append(f"{p.relative_to(root)} ({GZIP_NOTE})")
            continue
        # .dcm, .dicom, .ima, no suffix, or a file named by its UID ("1.2.840....123": a numeric "suffix"), as DICOM
        # storage servers and some exports name them, or any name with the DICOM prefix (may_be_dicom, the files
        # `mcproton run` reads of a CT folder); other files (.png, .html, .txt, ...) are not read
        if not may_be_dicom(p):
            continue
        try:
            ds = read_dicom_file(p, stop_before_pixels=True)
        except DicomInputError as exc:
            other = _unread_sop_class(p)
            if other:   # its file meta says it is an object the check does not read: not a reason to stop
                skipped.append(f"skipped {p.relative_to(root)} ({other}, which the check does not read): "
                               f"{_rel_message(exc, p)}")
                continue
            raise CheckInputError(f"{exc} (in the patient folder {root}): the check cannot tell what this file "
                                  "is, and it may be the plan's dose or a CT slice; remove it from the folder or "
                                  "copy it again") from None
        if ds is None:
            size = p.stat().st_size
            not_dicom.append(str(p.relative_to(root)) + (" (0 bytes)" if size == 0 else ""))
            continue
        mod, disagree = dicom_kind(ds)
        if disagree:
            relabelled.setdefault(disagree, []).append(str(p.relative_to(root)))
        if mod in ("RTDOSE", "CT") and not outputs_too and is_check_output(ds):
            found.setdefault("CHECK_OUTPUT", []).append(p)   # an earlier check's MC dose or phantom CT
        elif mod not in found:
            unused.setdefault(_object_name(ds, mod), []).append(str(p.relative_to(root)))
        else:
            found[mod].append(p)
            headers[p] = _Header(p, mod, str(ds.get("SOPInstanceUID", "") or ""),
                                 str(ds.get("SeriesInstanceUID", "") or ""),
                                 struct_frame(ds) if mod == "RTSTRUCT" else str(ds.get("FrameOfReferenceUID", "")
                                                                                 or ""),
                                 str(ds.get("PatientID", "") or ""),
                                 str(ds.get("SeriesDescription", "") or ""),
                                 localizer=mod == "CT" and is_localizer([ds]),
                                 position=str(ds.get("PatientPosition", "") or "").strip().upper() if mod == "CT"
                                 else "",
                                 ref_series=struct_ct_series(ds) if mod == "RTSTRUCT" else (),
                                 identity=PatientIdentity.of(ds))
            if mod == "RTPLAN":
                headers[p].plan = PlanFacts.of(ds)
    if notes is not None:
        for what, names in relabelled.items():
            notes.append(f"{listed(names, 3)}: {what} (the SOP class says what a file holds)")
        for what, names in sorted(unused.items()):
            notes.append(f"not used: {len(names)} {what} ({listed(names, 3)}): the check reads the CT, the RT Ion "
                         "Plan, the RT Dose(s) and the RT Struct")
        notes.extend(skipped)
    return found, headers, not_dicom


def _unread_sop_class(path: Path) -> str:
    """The name of the SOP class the file meta (group 0002, read alone) of the unreadable DICOM file ``path`` gives,
    where it is one the check does not read (an SR, a treatment record): such a file is skipped with a note rather
    than stopping the check (audit 17 hostile F9: an SR report nested 100,000 deep stopped it); "" otherwise (no
    file meta, a class the check reads, or a class pydicom does not know)."""
    from pydicom.filereader import read_file_meta_info
    from pydicom.uid import UID

    from .._io.dicom_common import SOP_CLASS_KINDS

    try:
        uid = str(read_file_meta_info(path).get("MediaStorageSOPClassUID", "") or "").strip()
    except Exception:  # noqa: BLE001 - no readable file meta: refused as before
        return ""
    name = UID(uid).name if uid else ""
    return name if uid and uid not in SOP_CLASS_KINDS and name != uid else ""


def _rel_message(exc: Exception, path: Path) -> str:
    """The message of ``exc`` without its leading "<path>: " (the note names the file already)."""
    msg = str(exc)
    return msg[len(str(path)) + 2:] if msg.startswith(f"{path}: ") else msg


def _object_name(ds, kind: str) -> str:
    """What a DICOM object the check does not read is, for the pairing notes: its SOP class's name (pydicom's
    dictionary: "RT Ion Beams Treatment Record Storage", "Spatial Registration Storage"), else its Modality."""
    from pydicom.uid import UID

    sop = str(ds.get("SOPClassUID", "") or "").strip()
    if not sop:   # a DICOMDIR has its class in the file meta only ("Media Storage Directory")
        meta = getattr(ds, "file_meta", None)
        sop = str(meta.get("MediaStorageSOPClassUID", "") or "").strip() if meta is not None else ""
    name = UID(sop).name if sop else ""
    if name and name != sop:
        return name[:-len(" Storage")] if name.endswith(" Storage") else name
    return f"object(s) of Modality {kind}" if kind else "object(s) of unknown SOP class"


def discover(folder: str | Path) -> dict[str, list[Path]]:
    """The DICOM files under ``folder`` by modality: {"CT": [...], "RTPLAN": [...], "RTDOSE": [...],
    "RTSTRUCT": [...]} (files that are not DICOM are skipped; a damaged DICOM file is refused); the MC doses and
    phantom CTs an earlier ``mcproton check`` wrote there are neither RTDOSE nor CT but "CHECK_OUTPUT" (present
    only when there are some)."""
    return _scan(folder)[0]


_KINDS = {"CT": "CT slice(s)", "RTDOSE": "RT Dose(s)", "RTSTRUCT": "RT Struct(s)"}


def no_plan_message(folder: str | Path | None, found: dict[str, list[Path]], not_dicom: list[str]) -> str:
    """Why a folder without an RT Plan cannot be checked, saying what it holds instead: nothing, no DICOM file, only
    an earlier check's output (its MC doses, check.json), or the patient's other files without the plan."""
    if folder is None:
        return "no RT Plan: give --plan RP.dcm"
    root = Path(folder)
    files = walk_files(root) if root.is_dir() else []
    names = [str(p.relative_to(root)) for p in files]
    shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
    head = f"no RT Ion Plan in {root}: "
    advice = ("; a patient's folder must hold the RT Ion Plan with the RT Dose(s) of it and the CT"
              + way_out(" (checking one patient, --plan RP.dcm names the plan's file)", ""))
    held = {k: len(v) for k, v in found.items() if v and k in _KINDS}
    earlier = found.get("CHECK_OUTPUT", []) + [p for p in files if p.name in ("check.json", "check.html")]
    if not files:
        return head + "the folder is empty" + advice
    if earlier and not held:
        return (head + f"it holds only the output of an earlier mcproton check ({shown}), not a patient's DICOM "
                "export" + advice)
    if not held:
        return head + f"it holds no DICOM file ({len(files)} other file(s): {shown})" + advice
    what = ", ".join(f"{n} {_KINDS[k]}" for k, n in held.items())
    return head + f"it holds {what}, but no RT Plan" + advice + (f"; not DICOM: {', '.join(not_dicom[:4])}"
                                                                 if not_dicom else "")


#: The smallest maximum (Gy) a planning system's dose of a plan, a fraction or a beam can have: far below a
#: fraction's dose of any treatment (0.01-20 Gy) and far above 0, so that a dose that is zero everywhere or
#: all but zero (DoseGridScaling 1e-30 read as given) is refused before the Monte Carlo: before 2026-12-05 the
#: check ran and reported n/a gammas or an MC/TPS ratio of 3e25 (rtdose audit F4)
TPS_DOSE_FLOOR_GY = 1e-6


def refuse_empty(d: TPSDose, name: str | Path | None = None) -> None:
    """Refuse a TPS dose whose maximum is below :data:`TPS_DOSE_FLOOR_GY` (``name``: how the message names it, by
    default its path)."""
    top = float(d.dose_gy_zyx.max()) if d.dose_gy_zyx.size else 0.0
    if not top >= TPS_DOSE_FLOOR_GY:
        raise CheckInputError(f"{name or d.path}: the TPS dose is {'zero everywhere' if top == 0 else 'all but zero'} "
                              f"(maximum {top:.3g} Gy, DoseGridScaling {d.dose_grid_scaling:g} Gy per pixel value; "
                              f"below {TPS_DOSE_FLOOR_GY:g} Gy): an empty export or a wrong DoseGridScaling, not "
                              "the dose of a plan; export the dose again")


def read_tps_dose(path: str | Path, dose_type: str | None = None, *, floor: bool = True) -> TPSDose:
    """Read one TPS RT Dose with the attributes the check needs.  ``dose_type`` (``--dose-type``): what the dose
    is, standing in for a missing DoseType; a dose whose maximum is below :data:`TPS_DOSE_FLOOR_GY` is refused
    (:func:`refuse_empty`) unless ``floor`` is False: :func:`gather` pairs first and refuses only the doses it
    compares, so that the empty per-beam dose of a 0-MU beam, or of another plan in the folder, is skipped with a
    note (audit 26, F4)."""
    from .._io.rtdose import read_rtdose, stated_uncertainty

    d = read_rtdose(path, dose_type=dose_type)   # a gzip-compressed file is named as such there
    ds = read_dicom_header(path)   # DICOM: read_rtdose read it
    assume_input_charset(ds, path)   # its PatientID compared with the plan's and the CT's, decoded alike
    beams: list[int] = []
    for ref in ds.get("ReferencedRTPlanSequence", []) or []:
        for fg in ref.get("ReferencedFractionGroupSequence", []) or []:
            for rb in fg.get("ReferencedBeamSequence", []) or []:
                beams.append(int(rb.ReferencedBeamNumber))
    units = (d.dose_units or "").upper()
    if units != "GY":
        raise CheckInputError(f"{path}: DoseUnits {units!r}: a relative dose cannot be checked in absolute terms; "
                              "export the dose in Gy")
    if (d.dose_type or "").upper() == "ERROR":
        raise CheckInputError(f"{path}: DoseType 'ERROR': the file holds a dose difference, not a dose that can be "
                              "recomputed; give the planning system's PHYSICAL or EFFECTIVE (RBE 1.1) dose")
    het = ds.get("TissueHeterogeneityCorrection", None)
    het_vals = tuple(str(v).strip().upper() for v in ([het] if isinstance(het, str) else het or []) if str(v).strip())
    if "WATER" in het_vals and "IMAGE" not in het_vals:
        raise CheckInputError(f"{path}: TissueHeterogeneityCorrection (3004,0014) {'/'.join(het_vals)}: the planning "
                              "system computed this dose with the whole volume as water, not on the CT; the check "
                              "recomputes on the CT, so the two would differ by the patient's heterogeneities; give "
                              "the dose computed on the patient's CT (IMAGE)")
    out = TPSDose(str(path), d.dose_gy_zyx, tuple(d.voxel_size_mm), tuple(d.origin_mm), d.frame_of_reference_uid,
                  (d.dose_type or "").upper(), (d.dose_summation_type or "").upper(),
                  d.referenced_plan_sop_instance_uid, beams, d.referenced_fraction_group_number,
                  str(ds.get("SOPInstanceUID", "") or ""), str(ds.get("PatientID", "") or ""), het_vals,
                  " ".join(str(ds.get(k, "") or "").strip()
                           for k in ("Manufacturer", "ManufacturerModelName")).strip(), d.axis_directions,
                  tuple(d.referenced_plan_sop_instance_uids), str(ds.get("StudyInstanceUID", "") or "").strip(),
                  *(stated_uncertainty(ds) or (None, "")))
    out.dose_grid_scaling = float(d.dose_grid_scaling)   # for the zero floor's message (refuse_empty)
    if floor:
        refuse_empty(out, path)
    return out


#: How far (a fraction of the plan dose's maximum) the TPS plan dose may lie below the sum of the per-beam doses
#: given with it, and, with every beam's dose given, differ from their sum either way (:func:`beams_against_plan`).
#: Doses of one calculation differ by their rounding alone: APTG plan03's RayStation files (16-bit pixel values, a
#: step of 0.0015 % of the plan dose's maximum) give plan - beam 1 >= -0.0014 % of it over the whole grid, also
#: where beam 1 alone gives dose (its entrance, beyond the opposed beam 2's range): the plan dose is the sum of the
#: beams' doses, their Monte Carlo noise included (an independent calculation's noise would put it a percent below
#: beam 1 there).  0.5 % is over 300 such steps (room for the rounding of each beam of any plan) and a sixth of the
#: 3 % dose levels: the plan rows and the beam rows then judge TPS doses that differ by no more than that
TPS_SUM_TOL = 0.005

#: Every beam's dose given and its sum differing from the plan dose beyond :data:`TPS_SUM_TOL` somewhere, but their
#: integrals over the plan dose's >= 10 % region within this of each other (plan / sum): the differences average out,
#: as the independent noise of a plan dose and beam doses computed in separate Monte Carlo runs of the same plan does
#: (a synthetic pair at ~1 % noise: a 4.5 % largest difference, the integrals 0.004 % apart; check review b of audit
#: 26, R3), while a stale dose or another plan version moves the integral by its own change (a beam 5 % off: about
#: 2 %).  The refusal then says so, first.
TPS_SUM_INTEGRAL_NOISE = 0.002


def _alone(total: TPSDose, beams: Mapping[int, TPSDose], every: bool) -> str:
    """The way out of a refused plan dose and per-beam doses, as options: the plan dose alone, and, where every
    beam's dose is given, the per-beam doses alone (check review b of audit 26, R3: the message said "or check the
    plan dose alone, or the per-beam doses alone" but not how, and a patient folder pairs every RT Dose of the plan
    unless --dose names the files)."""
    import shlex

    plan = str(total.path)
    out = f"the plan dose alone, --dose {shlex.quote(plan)} (Python: dose={plan!r})"
    if every:
        paths = [str(beams[b].path) for b in sorted(beams)]
        out += (", or the per-beam doses alone, " + " ".join(f"--dose {shlex.quote(p)}" for p in paths)
                + f" (Python: dose={paths!r})")
    return out + "; with a patient folder the --dose files given are the only RT Doses read"


def beams_against_plan(total: TPSDose | None, beams: Mapping[int, TPSDose], plan_beams: set[int],
                       log: list[str], folder: str | Path | None = None) -> float | None:
    """Refuse a TPS plan dose and per-beam doses that are not of one calculation (audit 26, F2; before, a note
    beside the verdict, and nothing where a beam's dose was missing): the plan dose must nowhere lie below the sum of
    the per-beam doses given with it by more than :data:`TPS_SUM_TOL` of its maximum (a plan dose holds each of its
    beams' doses: one below a beam's own dose is stale, or one beam's dose labelled PLAN), and, with every beam's
    dose given, differ from their sum by no more than that anywhere.  The grids are one (checked before).  Returns
    the largest |plan - sum| as a fraction of the plan dose's maximum where every beam is given, else None; the
    pairing says what was compared."""
    if total is None or not beams:
        return None
    top = float(total.dose_gy_zyx.max())
    acc = np.zeros(total.shape_zyx)
    for d in beams.values():
        acc += d.dose_gy_zyx
    diff = total.dose_gy_zyx - acc   # plan - sum of the given beams (Gy)
    plan_name = _shown(total.path, folder)
    names = ", ".join(_shown(beams[b].path, folder) for b in sorted(beams))
    every = set(beams) >= plan_beams

    def where(k: int) -> str:
        iz, iy, ix = np.unravel_index(k, diff.shape)
        z, y, x = (ax[i] for ax, i in zip(total.axes_mm(), (iz, iy, ix)))
        return (f"the plan dose {float(total.dose_gy_zyx[iz, iy, ix]):.4g} Gy, the beams' {float(acc[iz, iy, ix]):.4g}"
                f" Gy at x, y, z = ({x:.1f}, {y:.1f}, {z:.1f}) mm")

    redo = ("the plan rows and the beam rows would judge different TPS doses, one of them not the plan's; export the "
            "plan dose and the per-beam doses again from one calculation of the plan, and give those, or, where the "
            f"planning system computes them apart, check {_alone(total, beams, every)}")
    if every:   # every beam's dose: the sum is the plan dose, either way
        big = int(np.argmax(np.abs(diff)))
        dev = abs(float(diff.flat[big])) / top
        if dev > TPS_SUM_TOL:
            high = total.dose_gy_zyx >= 0.1 * top
            integral = float(total.dose_gy_zyx[high].sum()) / float(acc[high].sum()) if acc[high].sum() > 0 \
                else float("nan")
            apart = abs(integral - 1) <= TPS_SUM_INTEGRAL_NOISE
            why = ("the differences average out (integral ratio plan / sum "
                   f"{integral:.4f} over the plan dose's >= 10 % region): the plan dose and the beam doses look like "
                   "separate Monte Carlo calculations of the same plan (their noise differing voxel by voxel: a "
                   "planning system or script that computes them apart) more than a stale plan or beam dose or another "
                   "plan version" if apart else
                   "they are of different calculations (a stale plan or beam dose, another plan version; integral "
                   f"ratio plan / sum {integral:.4f} over the plan dose's >= 10 % region)")
            raise CheckInputError(
                f"the TPS per-beam doses ({names}) do not add up to the plan dose {plan_name}: they differ by up to "
                f"{100 * dev:.2f} % of its maximum ({where(big)}), beyond the {100 * TPS_SUM_TOL:g} % that the "
                f"rounding of the doses of one calculation may leave: {why}; {redo}")
        log.append(f"the TPS per-beam doses add up to the plan dose: largest difference {100 * dev:.3f} % of its "
                   f"maximum (at most {100 * TPS_SUM_TOL:g} %: one calculation)")
        return dev
    low = int(np.argmin(diff))   # some beams' doses: the plan dose holds them, and the others' on top
    if diff.flat[low] < -TPS_SUM_TOL * top:
        raise CheckInputError(
            f"the TPS plan dose {plan_name} lies below the sum of the per-beam doses given with it ({names}) by up to "
            f"{-100 * diff.flat[low] / top:.2f} % of its maximum ({where(low)}): a plan's dose holds each of its "
            f"beams' doses, so doses of one calculation never do that (beyond their rounding, {100 * TPS_SUM_TOL:g} %"
            " allowed): the plan dose is of another calculation (a stale export, another plan version) or not the "
            f"plan's dose (one beam's dose labelled {total.summation_type or 'PLAN'}?), and {redo}")
    missing = sorted(plan_beams - set(beams))
    log.append(f"the TPS plan dose is at least the sum of the per-beam doses given ({names}) everywhere, within "
               f"{100 * TPS_SUM_TOL:g} % of its maximum (beam(s) {missing} without a per-beam dose: the rest of the "
               "plan dose is theirs, not tested)")
    return None


def _shown(path: str | Path, root: str | Path | None) -> str:
    """How the pairing lines and messages name a file: by its path relative to the patient folder ``root``
    ("spinal/RD.dcm"; the bare name at the folder's top level), since a course exported one folder per plan holds
    several RD.dcm (audit 18 course F6: which one was compared was in check.json's inputs only); a file outside
    the folder (given with --plan, --dose, --struct) by its name."""
    p = Path(path)
    if root is not None:
        for a, b in ((p, Path(root)), (p.resolve(), Path(root).resolve())):
            try:
                return a.relative_to(b).as_posix()
            except ValueError:
                pass
    return p.name


def _plans_of(d: TPSDose) -> str:
    """The plan(s) an RT Dose refers to, for the pairing's messages: every one of them."""
    return ", ".join(d.plan_uids) if d.plan_uids else (d.plan_uid or "(none)")


def plan_reference_uids(sop: str) -> tuple[str, ...]:
    """The plan UIDs an RT Dose of the plan whose SOPInstanceUID is ``sop`` may reference: ``sop``, and where that is
    not a valid instance UID (OpenTPS writes the SOP Class UID there) also the UID mcproton's RT Dose writer
    references in its place (:func:`~mcproton._io.dicom_common.replacement_plan_uid`, derived from ``sop``): the
    dose ``mcproton run --rtdose``, ``write_rtdose`` or an earlier check wrote for this very plan (audit 21 F4)."""
    return (sop, replacement_plan_uid(sop)) if sop and not is_valid_uid(sop) else (sop,)


def written_by_mcproton(d: TPSDose) -> bool:
    """An RT Dose mcproton wrote (its RT Dose writer sets Manufacturer "mcproton")."""
    return d.writer.split(" ")[0] == "mcproton"


#: The words that begin the warning of a --dose-type that gives another dose type than the DoseType of an RT Dose
#: that OpenTPS did not write (:func:`gather`): a batch's index names it in the patient's row
DOSE_TYPE_GIVEN_OVER = "--dose-type gives another dose type than the RT Dose's own"


#: The words that begin the warning of a check whose every compared RT Dose mcproton wrote: the check's result
#: (api.CheckResult.self_compared) looks for them to say so beside its verdict (audit 21 review, remark)
MCPROTON_ONLY_DOSE = "every RT Dose compared was written by mcproton"


def stand_in_mismatch(d: TPSDose, rp: Any, *, study: bool = False) -> list[str]:
    """What of the dose ``d``, which references the plan ``rp`` by the stand-in UID mcproton derives from the plan's
    invalid SOPInstanceUID (:func:`plan_reference_uids`), is not the plan's: its PatientID and FrameOfReferenceUID,
    as "PatientID 'X' (the plan's 'Y')"; with ``study`` its StudyInstanceUID (where both name one) instead.  The
    stand-in is derived from the invalid UID alone, and OpenTPS writes the same one (its SOP Class UID) for every
    plan, so the stand-in is the same for every OpenTPS plan of every patient: the patient and frame of reference,
    which mcproton's RT Dose writer copies from the CT (mcproton run) or the planning system's dose (the check), are
    what ties such a dose to this plan (audit 21 review F2).  The study it copies is the CT's, which need not be
    the plan's: a different one is warned of, not refused."""
    out = []
    pairs = ((("StudyInstanceUID", d.study_uid, getattr(rp, "study_instance_uid", "")),) if study else
             (("PatientID", d.patient_id, rp.patient_id),
              ("FrameOfReferenceUID", d.frame_of_reference_uid, rp.frame_of_reference_uid)))
    for what, mine, plan in pairs:
        mine, plan = str(mine or "").strip(), str(plan or "").strip()
        if mine != plan and not (study and not (mine and plan)):
            out.append(f"{what} {mine or '(none)'!r} (the plan's {plan or '(none)'!r})")
    return out


def _stand_in_note(d: TPSDose, sop: str, name: str) -> str:
    """The pairing's note where the dose ``d`` refers to the plan by the UID mcproton derives from the plan's
    invalid SOPInstanceUID ``sop`` (:func:`plan_reference_uids`; its patient, study and frame of reference checked
    already: :func:`stand_in_mismatch`)."""
    return (f"note: RT Dose {name} refers to the plan by {d.plan_uid}, the UID mcproton's RT Dose writer references "
            f"in place of the plan's invalid SOPInstanceUID {sop!r} (OpenTPS writes the SOP Class UID there): a dose "
            "mcproton wrote for a plan with this invalid UID, of this plan's patient and frame of reference, "
            "paired with it; the UID does not tell this plan from another plan with the same invalid UID on the "
            "same CT (OpenTPS writes the same one for every plan)"
            + (" (mcproton's own dose: the check compares mcproton with itself, not with the planning system)"
               if written_by_mcproton(d) else ""))


def _plan_fraction_groups(plan_path: Path) -> list[int]:
    """The FractionGroupNumbers of the plan's FractionGroupSequence, in order (the check computes the first:
    rtplan.load_rtplan); [] where the plan does not say (or cannot be read: its reader refuses it)."""
    ds = _dcm_header(plan_path, ["FractionGroupSequence"])
    try:
        fgs = (ds.get("FractionGroupSequence") if ds is not None else None) or []
        return [int(fg.FractionGroupNumber) for fg in fgs if fg.get("FractionGroupNumber") not in (None, "")]
    except (AttributeError, TypeError, ValueError):
        return []


def written_by_opentps(d: TPSDose) -> bool:
    """An RT Dose written by OpenTPS (its writeRTDose sets Manufacturer "OpenMCsquare", model "OpenTPS")."""
    w = d.writer.upper()
    return "OPENTPS" in w or "OPENMCSQUARE" in w


def _same_dose(a: TPSDose, b: TPSDose) -> bool:
    return (a.shape_zyx == b.shape_zyx and np.allclose(a.origin_mm, b.origin_mm, atol=1e-3)
            and np.allclose(a.voxel_size_mm, b.voxel_size_mm, atol=1e-4)
            and a.summation_type == b.summation_type and a.dose_type == b.dose_type
            and a.beam_numbers == b.beam_numbers and bool(np.array_equal(a.dose_gy_zyx, b.dose_gy_zyx)))


def _one_file_per_plan(plans: list[Path], headers: dict[Path, "_Header"], log: list[str], *,
                       root: str | Path | None = None) -> list[Path]:
    """The folder's RT Plans with byte-identical copies of one plan (the same SOPInstanceUID and the same bytes:
    a file copied under another name) counted once, as the RT Doses' copies are (before 2026-12-05 two copies were
    refused as two plans); two files of one SOPInstanceUID that differ are refused, naming the attributes they
    differ in, as the RT Doses' counterpart is (before 2026-12-06: "2 RT Plans ... give --plan", audit 18 course F7)."""
    kept: dict[str, Path] = {}
    out = []
    for p in plans:
        first = kept.get(headers[p].sop) if headers[p].sop else None
        if first is not None and first.read_bytes() == p.read_bytes():
            log.append(f"skipped RT Plan {_shown(p, root)}: a copy of {_shown(first, root)} (the same SOPInstanceUID "
                       f"{headers[p].sop} and the same bytes), counted once")
            continue
        if first is not None:   # audit 18 course F7: before, "2 RT Plans ... give --plan" without saying this
            raise CheckInputError(f"RT Plans {_shown(first, root)} and {_shown(p, root)} carry the same SOPInstanceUID "
                                  f"{headers[p].sop} "
                                  f"but differ ({_differing_attributes(first, p)}): one of them was changed after the "
                                  "export (e.g. approved and exported again); "
                                  + way_out("give the plan to check with --plan, or remove the other from the folder",
                                            "remove the other from {folder}"), single_options=("--plan",))
        if headers[p].sop:
            kept[headers[p].sop] = p
        out.append(p)
    return out


def _differing_attributes(a: Path, b: Path, n: int = 5) -> str:
    """Where two DICOM files differ, for a message: "in ApprovalStatus, ReviewerName, ..." (the first ``n`` top-level
    attributes by keyword or tag), "in their nested sequences or bytes only" where the top-level values agree."""
    da, db = _dcm_header(a), _dcm_header(b)
    if da is None or db is None:   # only the message depends on it
        return "in their bytes"
    tags = sorted(set(da.keys()) | set(db.keys()))
    diff = [(da[t].keyword if t in da else db[t].keyword) or str(t) for t in tags
            if (da.get(t) is None) != (db.get(t) is None) or (t in da and t in db and da[t].value != db[t].value)]
    if not diff:
        return "in their file meta or bytes only"
    return "in " + listed(diff, n)


def _one_file_per_dose(doses: list[TPSDose], log: list[str], *, root: str | Path | None = None) -> list[TPSDose]:
    """The doses with copies of one RT Dose (the same SOPInstanceUID, e.g. a file copied under another name)
    counted once; two files of one SOPInstanceUID that hold different doses are refused (one was edited)."""
    kept: dict[str, TPSDose] = {}
    out = []
    for d in doses:
        first = kept.get(d.sop_instance_uid) if d.sop_instance_uid else None
        if first is None:
            if d.sop_instance_uid:
                kept[d.sop_instance_uid] = d
            out.append(d)
        elif _same_dose(first, d):
            log.append(f"skipped RT Dose {_shown(d.path, root)}: a copy of {_shown(first.path, root)} (the same "
                       f"SOPInstanceUID {d.sop_instance_uid} and the same dose), counted once")
        else:
            raise CheckInputError(f"RT Doses {_shown(first.path, root)} and {_shown(d.path, root)} carry the same "
                                  f"SOPInstanceUID {d.sop_instance_uid} but different doses (or grids, types): one of "
                                  "them was changed after the export; "
                                  + way_out("give the planning system's file with --dose, or remove the other from the "
                                            "folder", "remove the other from {folder}"), single_options=("--dose",))
    return out


def _series_list(groups: dict[tuple[Path, str], list[Path]], headers: dict[Path, _Header]) -> str:
    return "; ".join(f"{where}: series {uid} ({len(files)} slice{'s' if len(files) != 1 else ''}, "
                     f"{headers[files[0]].description!r}, FrameOfReferenceUID {headers[files[0]].frame}, PatientID "
                     f"{headers[files[0]].patient!r})" for (where, uid), files in groups.items())


def _refuse_split_series(groups: dict[tuple[Path, str], list[Path]], headers: dict[Path, _Header]) -> None:
    """Refuse one CT series whose slices lie in several folders, none holding a slice of another (a media export that
    splits a series over folders, IMAGES/A and IMAGES/B): read from one folder it is a part of the CT (the pacs audit,
    F6: "2 CT series ... give --ct-series" listed the same UID twice, and --ct with one folder checked half a head).
    Copies of the whole series in two folders (the same SOPInstanceUIDs) are left to the caller's message."""
    uids = {u for _, u in groups}
    if len(groups) < 2 or len(uids) != 1:
        return
    seen: set[str] = set()
    for v in groups.values():
        sops = {headers[p].sop for p in v}
        if sops & seen:
            return   # a copy, not a split
        seen |= sops
    listing = "; ".join(f"{w}: {len(v)} slice{'s' if len(v) != 1 else ''}" for (w, _), v in groups.items())
    raise CheckInputError(f"CT series {next(iter(uids))} is split over {len(groups)} folders ({listing}), with no "
                          "slice in two of them: one folder holds only part of the CT; copy all its slices into one "
                          + way_out("folder and give --ct with it", "folder in {folder}"), single_options=("--ct",))


def _pick_ct(files: list[Path], headers: dict[Path, _Header], plan_frame: str, log: list[str], *,
             want: str | None = None, struct_series: Sequence[str] = (),
             struct_name: str = "") -> tuple[Path, str]:
    """The plan's CT series among the CT slices of a folder: (its folder, its SeriesInstanceUID); whom its slices
    name is compared by the caller, over every slice (mcproton/_io/patients.py).

    ``want`` (``--ct-series``) names the series.  Else localizer (scout) series are skipped, and of the series
    left, the one on the plan's frame of reference (the only series: taken, its frame compared with the plan's
    later); of several on the plan's frame, the one the structure set's contours were drawn on
    (``struct_series``); several that nothing tells apart are refused with a listing.  Other series are skipped
    and named.  A folder may hold other series beside the chosen one: only the chosen one is read."""
    groups: dict[tuple[Path, str], list[Path]] = {}
    for p in files:
        groups.setdefault((p.parent, headers[p].series), []).append(p)
    if want is not None:
        mine = {k: v for k, v in groups.items() if k[1] == want}
        if not mine:
            raise CheckInputError(f"--ct-series {want}: no CT series with this SeriesInstanceUID; the CT series "
                                  f"found: {_series_list(groups, headers)}")
        how = "as given by --ct-series"
    else:
        scouts = {k: v for k, v in groups.items() if all(headers[p].localizer for p in v)}
        axial = {k: v for k, v in groups.items() if k not in scouts}
        for (w, u), v in scouts.items():
            log.append(f"skipped CT series {u} in {w} ({len(v)} image(s), {headers[v[0]].description!r}): a "
                       "localizer (scout/topogram, ImageType LOCALIZER), not an axial CT")
        if not axial:   # a scout exported without its axial series: "0 CT series ... ()" told nothing
            raise CheckInputError(f"the only CT series found ({_series_list(scouts, headers)}) "
                                  f"{'is a localizer' if len(scouts) == 1 else 'are localizers'} (scout/topogram, "
                                  "ImageType LOCALIZER), not the axial CT a plan is computed on: "
                                  + way_out("export the plan's CT series too, or give --ct with its folder",
                                            "export the plan's CT series into {folder} too"),
                                  single_options=("--ct",))
        mine = {k: v for k, v in axial.items() if headers[v[0]].frame == plan_frame}
        if len(axial) == 1:
            mine = axial   # one series: taken, its frame compared with the plan's later
        how = ""
        named = {k: v for k, v in mine.items() if k[1] in struct_series}
        if len(mine) > 1 and len(named) == 1:
            how = (f"the series the structure set {struct_name} was drawn on (its RTReferencedSeriesSequence), of "
                   f"{len(mine)} on the plan's frame")
            mine = named
        _refuse_split_series(mine, headers)
        if len(mine) != 1:
            which = ("of the plan's frame of reference " if mine else "and none on the plan's frame ") + plan_frame
            told = (" and the structure set names none of them" if struct_series and not named
                    else " and no structure set names one of them" if not named else "")
            raise CheckInputError(f"{len(mine) if mine else len(axial)} CT series {which}{told} "
                                  f"({_series_list(mine or axial, headers)}): "
                                  + way_out("give --ct-series with the SeriesInstanceUID of the CT the plan was "
                                            "computed on (and --ct with its folder if it is elsewhere)",
                                            "leave in {folder} only the CT series the plan was computed on (move the "
                                            "others out of it)"), single_options=("--ct-series",))
    _refuse_split_series(mine, headers)
    if len(mine) > 1:   # one series in two folders (a copy): which copy is not the check's to guess
        raise CheckInputError(f"CT series {want} lies in {len(mine)} folders ({_series_list(mine, headers)}): "
                              + way_out("give --ct with the folder to read", "leave one copy of it in {folder}"),
                              single_options=("--ct",))
    (where, uid), chosen = next(iter(mine.items()))
    for (w, u), v in groups.items():
        if (w, u) == (where, uid) or (want is None and all(headers[p].localizer for p in v)):
            continue
        why = ("in the same folder, not read" if w == where
               else f"another frame of reference ({headers[v[0]].frame}) than the plan's"
               if headers[v[0]].frame != plan_frame else "not the chosen series")
        log.append(f"skipped CT series {u} in {w} ({len(v)} slice{'s' if len(v) != 1 else ''}, "
                   f"{headers[v[0]].description!r}): {why}")
    log.append(f"CT series {uid} ({len(chosen)} slices, {headers[chosen[0]].description!r})"
               + (f": {how}" if how else ""))
    if struct_series and uid not in struct_series:   # a warning, as mcproton run's (audit 18 course F2)
        msg = (f"the structure set {struct_name} was drawn on CT series {', '.join(struct_series)}, not on the CT "
               f"read ({uid}): if the plan was computed on that series (another scan on the same frame of "
               "reference), " + way_out("give its folder (--ct) so that the check uses the planning CT",
                                        "put it into {folder} in place of this one so that the check uses the "
                                        "planning CT"))
        warn(msg, McprotonWarning)
        log.append(f"note: {msg}")
    return where, uid


def _plan_names_struct(plan_path: Path, sop: str) -> bool:
    ds = _dcm_header(plan_path, ["ReferencedStructureSetSequence"])
    seq = (ds.get("ReferencedStructureSetSequence", []) if ds is not None else None) or []
    return bool(sop) and any(str(r.get("ReferencedSOPInstanceUID", "")) == sop for r in seq)


def _pick_struct(files: list[Path], headers: dict[Path, _Header], plan_path: Path, plan_frame: str,
                 log: list[str], *, root: str | Path | None = None) -> Path | None:
    """The structure set the plan references (ReferencedStructureSetSequence), else the only one of the plan's
    frame of reference; two of the plan's frame that the plan does not tell apart are refused."""
    want = ""
    try:
        want = str(_dcm_header(plan_path, ["ReferencedStructureSetSequence"])
                   .ReferencedStructureSetSequence[0].ReferencedSOPInstanceUID)
    except (AttributeError, IndexError, TypeError):   # no ReferencedStructureSetSequence (or not read)
        pass
    ref = [p for p in files if want and headers[p].sop == want]
    if ref:
        for p in files:   # the others named, as skipped CTs and doses are (audit 18 course F9)
            if headers[p].sop != want:
                label = str(getattr(_dcm_header(p, ["StructureSetLabel"]), "StructureSetLabel", "") or "")
                other = (f"another frame of reference ({headers[p].frame}) than the plan's, and "
                         if headers[p].frame and plan_frame and headers[p].frame != plan_frame else "")
                log.append(f"skipped RT Struct {_shown(p, root)} (SOPInstanceUID {headers[p].sop}"
                           + (f", label {label!r}" if label else "")
                           + f"): {other}the plan names {_shown(ref[0], root)} (its ReferencedStructureSetSequence)")
        log.append(f"structures: {_shown(ref[0], root)} (the plan's ReferencedStructureSetSequence)")
        return ref[0]
    # a set of another frame is skipped, one alone too (audit 18 course F3: a QA plan or a re-plan beside the
    # patient's only set was refused as "inputs on different frames"); one whose frame is unknown is kept alone
    other = [p for p in files if plan_frame and headers[p].frame and headers[p].frame != plan_frame]
    if other and len(other) == len(files):
        for p in other:
            log.append(f"skipped RT Struct {_shown(p, root)}: another frame of reference ({headers[p].frame}) than "
                       "the plan's "
                       f"({plan_frame})")
        log.append("note: no RT Struct of the plan's frame of reference: the check goes on without structures (no "
                   "DVHs); " + way_out("give --struct with the plan's structure set to have them",
                                       "put the plan's structure set into {folder} to have them"))
        return None
    mine = [p for p in files if headers[p].frame == plan_frame] if len(files) > 1 else files
    listing = "; ".join(f"{_shown(p, root)} (SOPInstanceUID {headers[p].sop}, FrameOfReferenceUID {headers[p].frame})"
                        for p in files)
    if len(mine) != 1:
        which = ("of the plan's frame of reference " if mine else "and none on the plan's frame ") + plan_frame
        raise CheckInputError(f"{len(mine) if mine else len(files)} RT Structs {which}, and the plan's "
                              f"ReferencedStructureSetSequence names none of them ({listing}): "
                              + way_out("give --struct (the plan's structure set), or leave one in the folder",
                                        "leave in {folder} only the plan's structure set"),
                              single_options=("--struct",))
    for p in files:
        if p != mine[0]:
            log.append(f"skipped RT Struct {_shown(p, root)}: another frame of reference ({headers[p].frame}) than "
                       "the plan's")
    log.append(f"structures: {_shown(mine[0], root)}"
               + (f" (the plan refers to structure set {want}, which is not in the "
                                                  "folder; this one is on the plan's frame of reference)"
                                                  if want else ""))
    return mine[0]


#: Set by ``check --batch`` (:func:`refusing_superseded_plans`): a plan that a newer version in its folder
#: replaces is refused there, not checked and warned of as in a single check
_REFUSE_SUPERSEDED: ContextVar[bool] = ContextVar("mcproton_check_refuse_superseded", default=False)


@contextmanager
def refusing_superseded_plans() -> Iterator[None]:
    """Inside this block :func:`gather` refuses a plan that another plan of its folder names as its PREDECESSOR or
    REVISION (``check --batch``: its row would read as the patient's plan passed, while the plan to be delivered
    was not checked; audit 18 course F1)."""
    token = _REFUSE_SUPERSEDED.set(True)
    try:
        yield
    finally:
        _REFUSE_SUPERSEDED.reset(token)


#: the options of a single check that ``check --batch`` does not take (each patient is a folder), with the stand-in
#: of their value in a command line: a batch patient's refusal names none of them as its way out, but what to change
#: in the patient's folder, and how to check the patient alone with them (the error-message audit 27, F2)
SINGLE_PATIENT_OPTIONS = {"--plan": "RP.dcm", "--dose": "RD.dcm", "--ct": "CT_FOLDER", "--ct-series": "UID",
                          "--struct": "RS.dcm"}


@dataclass(frozen=True)
class BatchPatient:
    """A patient of ``check --batch`` being checked (:func:`checking_batch_patient`): its ``folder``, which a
    refusal's way out names (:func:`way_out`).  The single-patient options (:data:`SINGLE_PATIENT_OPTIONS`) of a
    refusal's way out are carried by the refusal (``CheckInputError.single_options``), not kept here: kept here, an
    option said where nothing was refused was named after any later refusal of the patient (the review c of audit 27,
    R1: "check this patient alone with --ct-series" after an unknown --calibration)."""

    folder: Path


#: Set by ``check --batch`` (:func:`checking_batch_patient`): the patient whose folder a refusal's way out names
_BATCH_PATIENT: ContextVar[BatchPatient | None] = ContextVar("mcproton_check_batch_patient", default=None)


@contextmanager
def checking_batch_patient(patient: BatchPatient) -> Iterator[BatchPatient]:
    """Inside this block the refusals of :func:`gather` and the check say what to change in ``patient.folder`` where
    a single check's would tell the user to give --plan, --dose, --ct, --ct-series or --struct (:func:`way_out`)."""
    token = _BATCH_PATIENT.set(patient)
    try:
        yield patient
    finally:
        _BATCH_PATIENT.reset(token)


def way_out(single: str, in_folder: str) -> str:
    """The way out of a refusal (or a note) that a single check words with its file options (``single``, e.g.
    "give --ct (the plan's CT series)"); for a patient of ``check --batch``, which takes none of them, what to
    change in the patient's folder instead (``in_folder``, where ``{folder}`` stands for the folder) (the
    error-message audit 27, F2: a batch patient was told to give --ct, which --batch refuses).  Only text: the
    refusal that uses it carries its options (``CheckInputError(..., single_options=("--ct",))``), for check_batch
    to say how to check the patient alone with them."""
    patient = _BATCH_PATIENT.get()
    return single if patient is None else in_folder.format(folder=patient.folder)


def _facts(path: Path, headers: dict[Path, _Header]) -> PlanFacts:
    h = headers.get(path)
    return h.plan if h is not None and h.plan is not None else PlanFacts.of(_dcm_header(path, PlanFacts.TAGS))


def _plan_entry(p: Path, headers: dict[Path, _Header], plans: Sequence[Path], root: Path | None = None) -> str:
    """One plan of a "N RT Plans" refusal: its name, label, ApprovalStatus, PlanIntent, date, UID, PatientID, and
    how it relates to the other plans listed (a re-plan names its predecessor): what a physicist chooses by."""
    f = _facts(p, headers)
    sops = {headers[q].sop: _shown(q, root) for q in plans if q != p}
    rel = "".join(f"; names {sops[u]} as its {rel}" if rel else f"; references {sops[u]}"
                  for u, rel in f.refs if u in sops)
    return f"{_shown(p, root)} ({f.text()}, SOPInstanceUID {headers[p].sop}, PatientID {headers[p].patient!r}{rel})"


def plan_status(plan_path: Path, sop: str, headers: dict[Path, _Header], folder_plans: Sequence[Path],
                log: list[str]) -> None:
    """Warn (McprotonWarning: the log, check.json's warnings, a batch row, the report's warnings box) where the
    checked plan is not one to be delivered as it is: ApprovalStatus REJECTED (or UNAPPROVED, in milder words), a
    PlanIntent of :data:`NOT_TREATMENT_INTENTS`, or a newer version of it in the folder (another plan names it as
    its PREDECESSOR or REVISION in ReferencedRTPlanSequence, and is not REJECTED: a rejected re-plan replaces
    nothing, and is a note of the pairing), which was not checked.  Inside
    :func:`refusing_superseded_plans` (``--batch``) the last is refused: a batch row "PASS" reads as the patient's
    plan passed (audit 18 course F1)."""
    f = _facts(plan_path, headers)
    name = f"plan {plan_path.name} ({f.label!r})" if f.label else f"plan {plan_path.name}"
    if f.approval == "REJECTED":
        warn(f"{name} is REJECTED (ApprovalStatus): it will not be delivered as it is, so this check is not the "
             "check of the patient's plan; check the approved version of the plan", McprotonWarning)
    elif f.approval == "UNAPPROVED":
        warn(f"{name} is UNAPPROVED (ApprovalStatus): not approved for treatment yet; if it is changed before "
             "approval, check the approved version", McprotonWarning)
    if f.intent in NOT_TREATMENT_INTENTS:
        warn(f"{name} has PlanIntent {f.intent}: not a plan to treat the patient with (a verification, QA or "
             "research plan); check the treatment plan for the patient's record", McprotonWarning)
    newer = [(q, rel) for q in folder_plans if q != plan_path and q in headers and headers[q].sop != sop
             for u, rel in _facts(q, headers).refs if u == sop and rel in NEWER_VERSION_RELATIONS]
    for q, rel in newer:
        g = _facts(q, headers)
        if g.approval == "REJECTED":   # a re-plan drafted and rejected replaces nothing: the plan checked stands
            log.append(f"note: {q.name} ({g.text()}, SOPInstanceUID {headers[q].sop}) names {name} as its {rel}, "
                       f"but it is REJECTED (ApprovalStatus): not a newer version to deliver; {name} checked")
            continue
        what = (f"the folder holds a newer version of {name}: {q.name} ({g.text()}, SOPInstanceUID "
                f"{headers[q].sop}) names it as its {rel} (ReferencedRTPlanSequence > RTPlanRelationship), and "
                f"{q.name} was not checked")
        if _REFUSE_SUPERSEDED.get():
            raise CheckInputError(f"{what}: a batch row of the old plan would read as the patient's plan checked. "
                                  f"Export the dose of {q.name} and remove {plan_path.name} and its dose from the "
                                  f"folder, or check the old plan alone (mcproton check FOLDER --plan "
                                  f"{plan_path.name})")
        warn(f"{what}: this check is of the older plan; check {q.name} too (--plan, with its dose)", McprotonWarning)
        log.append(f"note: {what}")


def folder_of_patients(plans: Sequence[Path], headers: Mapping[Path, _Header], folder: str | Path | None) -> str:
    """What the refusal of several RT Plans in a single check's ``folder`` adds where the folder looks like a folder
    of patients (each plan in its own immediate sub-folder, or the plans of different PatientIDs): how to check them
    with ``--batch`` (journey audit 28, F4: the advice named --plan and "one plan per folder", which they were).  ""
    in a batch's patient (its folder is one patient) or where the plans look like one patient's."""
    if folder is None or _BATCH_PATIENT.get() is not None:
        return ""
    root = Path(folder)
    subs: list[str] = []
    for p in plans:
        try:
            parts = p.relative_to(root).parts
        except ValueError:
            return ""
        subs.append(parts[0] if len(parts) > 1 else "")
    ids = {headers[p].patient for p in plans if p in headers and headers[p].patient}
    own = "" not in subs and len(set(subs)) == len(plans)
    if not own and len(ids) < 2:
        return ""
    if own:
        return (f"; this looks like a folder of patients (each plan lies in a sub-folder of its own: "
                f"{', '.join(sorted(subs))}): to check each patient, add --batch (mcproton check {root} --batch ...: "
                "one sub-folder per patient)")
    return (f"; the plans name different patients (PatientID {', '.join(repr(i) for i in sorted(ids))}): to check "
            f"each patient, put each one's files into a sub-folder of its own and add --batch (mcproton check {root} "
            "--batch ...)")


def gather(*, plan: str | Path | None = None, dose: str | Path | Sequence[str | Path] | None = None,
           ct: str | Path | None = None, struct: str | Path | None = None, folder: str | Path | None = None,
           dose_type: str | None = None, fractions: str | int = "auto", ct_series: str | None = None,
           patient_position: str | None = None, ignore_beam_limiting_devices: bool = False) -> CheckInputs:
    """Find and pair the inputs (explicit paths win over what ``folder`` holds) and check they match.
    ``patient_position``: the plan's PatientPosition where the plan has none (rtplan.load_rtplan);
    ``ignore_beam_limiting_devices``: compute a beam with an MLC or jaws placed as if open (rtplan.load_rtplan).
    ``ct_series``: the SeriesInstanceUID of the CT series to read (in ``ct`` or the folder) when there are several."""
    from .._io.rtplan import load_rtplan

    log: list[str] = []
    found, headers, not_dicom = _scan(folder, notes=log) if folder is not None else ({}, {}, [])
    if not_dicom:
        log.append(f"skipped {len(not_dicom)} file(s) that are not DICOM: {listed(not_dicom)}")
    folder_doses: dict[Path, TPSDose] = {}

    def dose_of(path: Path) -> TPSDose:   # each RT Dose of the folder read once
        if path not in folder_doses:
            folder_doses[path] = read_tps_dose(path, dose_type, floor=False)   # the floor after the pairing
        return folder_doses[path]

    by_dir: dict[Path, int] = {}
    for p in found.get("CHECK_OUTPUT", []):
        by_dir[p.parent] = by_dir.get(p.parent, 0) + 1
    for where, n in sorted(by_dir.items()):
        log.append(f"skipped {n} file(s) in {where}: the MC dose or phantom CT of an earlier mcproton check, not the "
                   "planning system's dose or the patient's CT")
    # ---- plan
    if plan is None:
        plans = found.get("RTPLAN", [])
        if not plans:
            raise CheckInputError(no_plan_message(folder, found, not_dicom))
        plans = _one_file_per_plan(plans, headers, log, root=folder)
        if len(plans) > 1:
            refs: dict[str, list[str]] = {}
            sums: list[str] = []   # plan sums (several plan references) are no plan's dose (audit 18 course F4)
            for p in found.get("RTDOSE", []):
                if len(dose_of(p).plan_uids) > 1:
                    sums.append(f"{_shown(p, folder)} (a plan sum of {_plans_of(dose_of(p))})")
                    continue
                for u in dose_of(p).plan_uids or ("",):
                    refs.setdefault(u, []).append(_shown(p, folder))
            def refs_of(p: Path) -> list[str]:   # the RT Doses that refer to plan p (by its UID or mcproton's)
                return [n for u in plan_reference_uids(headers[p].sop) for n in refs.get(u, [])]

            dosed = [p for p in plans if refs_of(p)]
            if len(dosed) != 1:
                what = "; ".join(f"{_plan_entry(p, headers, plans, folder)}: "
                                 f"RT Dose(s) {', '.join(refs_of(p)) or 'none'}" for p in plans)
                in_folder = {u for p in plans for u in plan_reference_uids(headers[p].sop)}
                others = "; ".join(f"{', '.join(n)} refer(s) to plan {u or '(none)'}" for u, n in refs.items()
                                   if u not in in_folder)
                raise CheckInputError(f"{len(plans)} RT Plans in {folder} ({what}"
                                      + (f"; {others}, which is not in the folder" if others else "")
                                      + (f"; not one plan's dose: {'; '.join(sums)}" if sums else "")
                                      + "), and the RT Doses do not tell which plan to check: "
                                      + way_out("give --plan (and --dose), or leave one plan per folder",
                                                "leave one plan (with its RT Doses) in {folder}: each other plan "
                                                "into a patient folder of its own")
                                      + folder_of_patients(plans, headers, folder),
                                      single_options=("--plan", "--dose"))
            for p in plans:
                if p != dosed[0]:
                    in_sums = [n for n in sums if headers[p].sop in n]
                    log.append(f"skipped RT Plan {_shown(p, folder)} (SOPInstanceUID {headers[p].sop}): no RT Dose "
                               "in the folder refers to it"
                               + (f" but a plan sum ({'; '.join(in_sums)})" if in_sums else ""))
            plans = dosed
        plan = plans[0]
    plan_path = Path(plan)
    if not plan_path.is_file():
        raise CheckInputError(f"RT Plan {plan_path} does not exist")
    rp = load_rtplan(plan_path, patient_position=patient_position,
                     ignore_beam_limiting_devices=ignore_beam_limiting_devices)
    log.append(f"plan {_shown(plan_path, folder)}: {rp.label!r}, SOPInstanceUID {rp.sop_instance_uid}, "
               f"{len(rp.beams)} beam(s), {rp.number_of_fractions} fraction(s)")
    log.extend(f"plan {_shown(plan_path, folder)}: {note} (--patient-position)" for note in rp.notes)
    plan_status(plan_path, rp.sop_instance_uid, headers, found.get("RTPLAN", []), log)
    log.extend(rp.skipped_beams)   # set-up fields left out (one with spots is also a warning)
    # ---- doses
    if dose is None:
        cands = found.get("RTDOSE", [])
        doses = [dose_of(p) for p in cands]
        own = plan_reference_uids(rp.sop_instance_uid)
        # any of its references (a plan sum: refused).  mcproton's stand-in UID (a plan whose UID is invalid) only
        # where no dose references the plan's own UID: beside the planning system's dose, a dose mcproton wrote for
        # the plan (mcproton run --rtdose) is skipped, as before the stand-in was paired (audit 21 review F1: the
        # two were refused as "two plan doses")
        mine = ([d for d in doses if rp.sop_instance_uid in d.plan_uids]
                or [d for d in doses if set(own[1:]) & set(d.plan_uids)])
        for d in doses:
            if d in mine:
                continue
            if set(own[1:]) & set(d.plan_uids):
                log.append(f"skipped RT Dose {_shown(d.path, folder)}: it refers to the plan by {_plans_of(d)}, the "
                           "UID mcproton's RT Dose writer references in place of the plan's invalid SOPInstanceUID "
                           f"{rp.sop_instance_uid!r}: a dose mcproton wrote, while "
                           f"{', '.join(_shown(m.path, folder) for m in mine)} refer(s) to the plan itself; "
                           + way_out("give it with --dose to compare with it instead", "to compare with it instead, "
                                     "check this patient alone with --dose"))
            else:
                log.append(f"skipped RT Dose {_shown(d.path, folder)}: it refers to plan {_plans_of(d)}, not this one")
        if any(len(d.plan_uids) <= 1 for d in mine):   # the plan's own dose(s) beside a plan sum: the sum skipped
            for d in [d for d in mine if len(d.plan_uids) > 1]:
                sop_names = {h.sop: _shown(h.path, folder) for h in headers.values()
                             if h.modality == "RTPLAN" and h.sop}
                sop_names.update(dict.fromkeys(own, _shown(plan_path, folder)))
                log.append(f"skipped RT Dose {_shown(d.path, folder)}: a plan sum of "
                           f"{' and '.join(sop_names.get(u, u) for u in d.plan_uids)} (DoseSummationType "
                           f"{d.summation_type or '(missing)'}), not this plan's dose")
                mine.remove(d)
        if not mine and doses:
            elsewhere = "; ".join(f"{_shown(d.path, folder)} refers to plan {_plans_of(d)}" for d in doses)
            raise CheckInputError(f"no RT Dose in {folder} refers to the plan {_shown(plan_path, folder)} "
                                  f"({rp.sop_instance_uid}): {elsewhere}, which is not in the folder; "
                                  + way_out("give the plan those doses were computed for (--plan), or this plan's "
                                            "dose (--dose RD.dcm)", "put the plan those doses were computed for, or "
                                            "this plan's RT Dose, into {folder}"),
                                  single_options=("--plan", "--dose"))
        doses = mine
    else:
        paths = [dose] if isinstance(dose, (str, Path)) else list(dose)
        doses = []
        for p in paths:
            try:
                doses.append(read_tps_dose(p, dose_type, floor=False))
            except DicomInputError as exc:   # named as given (audit 27, F11b): --dose RP.dcm, the plan, mistaken for it
                raise DicomInputError(f"--dose {exc}"
                                      + ("; give the plan with --plan" if "; this one is a plan" in str(exc) else "")
                                      ) from None
    if not doses:
        gz = [n for n in not_dicom if n.endswith(f"({GZIP_NOTE})")]
        raise CheckInputError("no RT Dose of the planning system to check against; "
                              + way_out("give --dose RD.dcm", "put the planning system's RT Dose of the plan into "
                                        "{folder}")
                              + f" (the RT Dose must refer to the plan {rp.sop_instance_uid})"
                              + (f"; skipped as compressed: {listed(gz)}" if gz else ""), single_options=("--dose",))
    doses = _one_file_per_dose(doses, log, root=folder)
    total: TPSDose | None = None
    beams: dict[int, TPSDose] = {}
    plan_beams = {b.number for b in rp.beams}
    plan_groups = _plan_fraction_groups(plan_path)
    not_computed = rp.skipped_beam_numbers   # set-up and 0-MU beams: BeamNumber -> what it is
    skipped_doses: list[TPSDose] = []
    for d in doses:
        name = _shown(d.path, folder)
        if len(d.plan_uids) > 1:   # a plan sum (PS3.3 C.8.8.3: one item unless MULTI_PLAN), whatever its type says
            raise CheckInputError(
                f"RT Dose {name} references {len(d.plan_uids)} RT Plans ({', '.join(d.plan_uids)}; DoseSummationType "
                f"{d.summation_type or '(missing)'}): a plan sum (e.g. a plan and its boost), not the dose of "
                f"{_shown(plan_path, folder)} ({rp.sop_instance_uid}) alone; DICOM allows more than one plan reference "
                "only for MULTI_PLAN (PS3.3 C.8.8.3); "
                + way_out("give this plan's own dose with --dose RD.dcm (export it if it is not there)",
                          "export this plan's own RT Dose into {folder} (and move the plan sum out of it)"),
                single_options=("--dose",))
        if d.plan_uid and d.plan_uid not in plan_reference_uids(rp.sop_instance_uid):
            raise CheckInputError(f"RT Dose {name} refers to the plan {d.plan_uid}, not to {_shown(plan_path, folder)} "
                                  f"({rp.sop_instance_uid}): it is another plan's dose; give the dose of this plan")
        stand_in = bool(d.plan_uid) and d.plan_uid != rp.sop_instance_uid
        wrong = stand_in_mismatch(d, rp) if stand_in else []
        if wrong:
            raise CheckInputError(
                f"RT Dose {name} refers to the plan by {d.plan_uid}, the UID mcproton's RT Dose writer references in "
                f"place of an invalid plan SOPInstanceUID {rp.sop_instance_uid!r}, which OpenTPS writes for every "
                f"plan: that UID does not tell which plan it is, and the dose's {'; '.join(wrong)} differ(s) from "
                f"{_shown(plan_path, folder)}'s: it is the dose of another plan (or patient); give the dose of this "
                "plan, or write mcproton's dose again from this plan and its CT (mcproton run --rtdose)")
        other_study = stand_in_mismatch(d, rp, study=True) if stand_in else []
        if other_study:
            warn(f"RT Dose {name} refers to the plan {_shown(plan_path, folder)} by mcproton's stand-in for its "
                 "invalid SOPInstanceUID and carries its PatientID and FrameOfReferenceUID, but its "
                 f"{other_study[0]} is another study: mcproton's RT Dose writer takes the study of the CT it computed "
                 "on, so make sure this dose was computed for this plan (the stand-in UID is the same for every plan "
                 "with this invalid UID)", McprotonWarning)
        if stand_in:
            log.append(_stand_in_note(d, rp.sop_instance_uid, name))
        if d.fraction_group is not None and plan_groups and d.fraction_group != plan_groups[0]:
            if d.fraction_group in plan_groups:   # truly another group's dose
                raise CheckInputError(f"RT Dose {name} ({d.summation_type}) is of fraction group {d.fraction_group} "
                                      f"(ReferencedFractionGroupNumber), but the check computes the plan's first "
                                      f"fraction group, {plan_groups[0]} (of {plan_groups}): it is another group's "
                                      "dose; export the dose of the first fraction group, or a PLAN dose")
            # a number the plan does not have (a writer that numbers from 1 where the plan numbers from 0): noted
            log.append(f"note: RT Dose {name} ({d.summation_type}) names fraction group {d.fraction_group}, which "
                       f"the plan does not have (its fraction group(s): {plan_groups}): read as the dose of the "
                       f"plan's group {plan_groups[0]}; if the fractions disagree, the MC/TPS ratio says so")
        if d.summation_type in BEAM_DOSE_TYPES:
            if len(d.beam_numbers) > 1 and set(d.beam_numbers) <= plan_beams:
                raise CheckInputError(f"RT Dose {name} is a per-beam dose (DoseSummationType {d.summation_type}) of "
                                      f"several beams, {d.beam_numbers}: the check pairs a per-beam dose with one "
                                      "beam; export one dose per beam, or the plan dose (PLAN)"
                                      + (" (these are all the plan's beams)" if set(d.beam_numbers) == plan_beams
                                         else ""))
            why = not_computed.get(d.beam_numbers[0]) if len(d.beam_numbers) == 1 else None
            if why is not None:   # paired first, then judged (audit 26, F4: refused as "zero everywhere" before)
                top = float(d.dose_gy_zyx.max()) if d.dose_gy_zyx.size else 0.0
                if not top >= TPS_DOSE_FLOOR_GY:   # the empty dose of a beam that delivers nothing: what it is
                    log.append(f"skipped RT Dose {name} ({d.summation_type}): the dose of beam {d.beam_numbers[0]}, "
                               f"which {why} in the plan {_shown(plan_path, folder)} and is not computed; it is "
                               "zero, as it should be: not compared")
                    skipped_doses.append(d)
                    continue
                raise CheckInputError(
                    f"RT Dose {name} is a per-beam dose (DoseSummationType {d.summation_type}) of beam "
                    f"{d.beam_numbers[0]}, which {why} in the plan {_shown(plan_path, folder)} (so the check does not "
                    f"compute it), yet it holds a dose (maximum {top:.4g} Gy): it is not this plan's dose of that "
                    f"beam (a dose of another plan version, in which beam {d.beam_numbers[0]} delivered MU?); give "
                    "the doses computed for this version of the plan (its plan dose, or the per-beam doses of its "
                    f"treated beams {sorted(plan_beams)})")
            if len(d.beam_numbers) != 1 or d.beam_numbers[0] not in plan_beams:
                raise CheckInputError(f"RT Dose {name} is a per-beam dose (DoseSummationType {d.summation_type}) for "
                                      f"beam(s) {d.beam_numbers}, but the plan's beams are {sorted(plan_beams)}: it "
                                      "cannot be paired with a beam of this plan")
            if d.beam_numbers[0] in beams:
                other = beams[d.beam_numbers[0]]
                raise CheckInputError(f"two RT Doses of beam {d.beam_numbers[0]}: {_shown(other.path, folder)} "
                                      f"(SOPInstanceUID {other.sop_instance_uid}) and {name} (SOPInstanceUID "
                                      f"{d.sop_instance_uid}), e.g. before and after a re-computation: only one can "
                                      "be the beam's dose; "
                                      + way_out("give the right one with --dose (and the others), or remove the "
                                                "other from the folder", "remove the other from {folder}"),
                                      single_options=("--dose",))
            beams[d.beam_numbers[0]] = d
            log.append(f"TPS dose of beam {d.beam_numbers[0]}: {name} ({d.summation_type})")
        elif d.summation_type in PLAN_DOSE_TYPES:
            if d.beam_numbers and set(d.beam_numbers) - set(not_computed) != plan_beams:
                raise CheckInputError(
                    f"RT Dose {name} is a plan dose (DoseSummationType {d.summation_type}), but its "
                    f"ReferencedBeamSequence names beam(s) {sorted(set(d.beam_numbers))} of the plan's "
                    f"{sorted(plan_beams)}: either a per-beam dose with the wrong DoseSummationType (BEAM) or a plan "
                    "dose with a stray beam reference, and compared as the plan dose the first would fail as a "
                    "global scale error; export the plan dose (PLAN, no beam references) or the beams' doses (BEAM)")
            if d.beam_numbers:
                log.append(f"note: the plan dose {name} ({d.summation_type}) names every beam of the plan in its "
                           f"ReferencedBeamSequence ({sorted(plan_beams)}): read as the plan dose")
            if total is not None:
                raise CheckInputError(f"two plan doses: {_shown(total.path, folder)} (SOPInstanceUID "
                                      f"{total.sop_instance_uid}) and {name} (SOPInstanceUID {d.sop_instance_uid}), "
                                      "e.g. two versions or a verification dose: "
                                      + way_out("give the right one with --dose, or remove the other from the folder",
                                                "remove the other from {folder}"), single_options=("--dose",))
            total = d
            log.append(f"TPS plan dose: {name} ({d.summation_type})")
        else:
            raise CheckInputError(f"RT Dose {name}: DoseSummationType {d.summation_type or '(missing)'} is not "
                                  "supported (PLAN, FRACTION, FRACTION_SESSION, BEAM or BEAM_SESSION): a multi-plan, "
                                  "control-point or treatment-record dose cannot be recomputed from one plan; export "
                                  "the plan dose")
    if total is None and not beams:   # only doses of beams the plan does not compute
        which = "; ".join(f"{_shown(d.path, folder)} of beam {d.beam_numbers[0]}, which "
                          f"{not_computed[d.beam_numbers[0]]}" for d in skipped_doses)
        raise CheckInputError(f"no RT Dose to compare with: the only ones are the empty doses of beams that the plan "
                              f"{_shown(plan_path, folder)} does not compute ({which}); give its plan dose or the "
                              f"per-beam doses of its treated beams {sorted(plan_beams)}")
    doses = [d for d in doses if not any(d is s for s in skipped_doses)]   # the doses compared
    for d in doses:   # the zero-dose floor, on the doses compared only (after the pairing: audit 26, F4)
        refuse_empty(d, _shown(d.path, folder))
    ref = total if total is not None else beams[min(beams)]
    if all(written_by_mcproton(d) for d in doses):   # beside the verdict, not only in the pairing (audit 21 review)
        warn(f"{MCPROTON_ONLY_DOSE} ({', '.join(_shown(d.path, folder) for d in doses)}, Manufacturer 'mcproton'): "
             "the check compares mcproton with itself, not with the planning system, so its verdict is not an "
             "independent check of the plan's dose; "
             + way_out("give the planning system's RT Dose (--dose RD.dcm) for that",
                       "put the planning system's RT Dose into {folder} for that"),
             McprotonWarning)
    # ---- the grid: per-beam doses on the plan dose's grid
    for d in beams.values():
        if (d.shape_zyx != ref.shape_zyx or not np.allclose(d.origin_mm, ref.origin_mm, atol=1e-3)
                or not np.allclose(d.voxel_size_mm, ref.voxel_size_mm, atol=1e-4)):
            raise CheckInputError(f"the per-beam dose {_shown(d.path, folder)} is on another grid than "
                                  f"{_shown(ref.path, folder)}; export all doses on one grid")
    # ---- dose type
    types = {d.dose_type for d in doses}
    if len(types) > 1:
        raise CheckInputError(f"the TPS doses have different DoseTypes {sorted(types)}; give doses of one type")
    in_file = types.pop() or ""
    dtype = (dose_type or in_file).upper()
    if dose_type is not None and dtype != in_file:
        log.append(f"dose type: {dtype} as given (dose_type / --dose-type); the RT Dose says "
                   f"{in_file or '(no DoseType)'}")
        # OpenTPS labels every dose EFFECTIVE (the option's purpose); another system's DoseType given over is a
        # warning, in the report and a batch's index, not a pairing line only (journey audit 28, F3b: a batch's
        # --dose-type physical, given for its OpenTPS patient, relabelled a RayStation EFFECTIVE dose)
        over = [d for d in doses if d.dose_type in ("PHYSICAL", "EFFECTIVE") and not written_by_opentps(d)]
        if over:
            files = listed([f"{_shown(d.path, folder)} (written by {d.writer or 'a system it does not name'})"
                            for d in over], 3)
            warn(f"{DOSE_TYPE_GIVEN_OVER}: {files} say{'s' if len(over) == 1 else ''} DoseType {in_file}, but "
                 f"{'it is' if len(over) == 1 else 'they are'} compared as {dtype}, as given (--dose-type "
                 f"{dtype.lower()}): only OpenTPS labels its physical doses EFFECTIVE; another planning system's "
                 "DoseType is normally right, and a dose compared as the other type puts the two 10 % apart (the "
                 "RBE 1.1); if the RT Dose's DoseType is right, "
                 + way_out("leave --dose-type out", "check this patient without --dose-type (alone, or in a batch "
                           "folder of its own: a batch's --dose-type applies to every patient)"), McprotonWarning)
    opentps = [_shown(d.path, folder) for d in doses if written_by_opentps(d)]
    if dose_type is None and dtype == "EFFECTIVE" and opentps:
        raise CheckInputError(
            f"{listed(opentps, 3)}: DoseType EFFECTIVE, written by OpenTPS, whose RT Dose writer labels every dose "
            "EFFECTIVE unless the dose was marked otherwise; the MCsquare dose that OpenTPS computes is the physical "
            "dose (to water), with no RBE factor, so comparing it as RBE 1.1 dose would put the two 10 % apart. "
            "Say which it is: --dose-type physical (the MCsquare dose as OpenTPS computes it) or --dose-type "
            "effective (a dose that was scaled by a constant RBE; --rbe gives it if not 1.1)")
    if dtype not in ("PHYSICAL", "EFFECTIVE"):
        raise CheckInputError(f"RT Dose {_shown(ref.path, folder)}: DoseType {dtype or '(missing)'!r} is not "
                              "PHYSICAL or "
                              "EFFECTIVE, so it is not known which dose to compute (an ERROR dose or an unknown "
                              "RBE model cannot be recomputed); export the physical or the RBE 1.1 dose")
    # ---- fractions
    nfx = int(rp.number_of_fractions or 1)
    sums = {d.summation_type for d in doses}
    one, every = sums & set(ONE_FRACTION), sums & set(ALL_FRACTIONS)
    if one and every and nfx > 1:
        kinds = ", ".join(f"{_shown(d.path, folder)} {d.summation_type}" for d in doses)
        raise CheckInputError(f"the TPS doses hold different numbers of fractions ({kinds}): one session against all "
                              f"{nfx} fractions; give doses of one kind")
    if fractions == "auto":
        all_fx = not one
    elif fractions in ("all", "one"):
        all_fx = fractions == "all"
        if one and all_fx:
            st = sorted(one)[0]
            raise CheckInputError(f"fractions = 'all' but the RT Dose {_shown(ref.path, folder)} holds one fraction "
                                  f"(DoseSummationType {st}): the doses would differ by the number of fractions "
                                  f"({nfx}); use fractions = 'one' or 'auto'")
        if not all_fx and nfx > 1 and every - {"FRACTION"}:
            st = sorted(every - {"FRACTION"})[0]
            raise CheckInputError(f"fractions = 'one' but the RT Dose {_shown(ref.path, folder)} is a {st} dose (all "
                                  f"{nfx} fractions): the doses would differ {nfx}-fold; use 'all' or 'auto'")
        if not all_fx and nfx > 1 and "FRACTION" in every:
            log.append(f"DoseSummationType FRACTION read as ONE fraction, as asked (fractions = 'one'; DICOM defines "
                       f"it as the whole fraction group, {nfx} fractions)")
    else:
        raise CheckInputError(f"fractions must be 'auto', 'all' or 'one'; got {fractions!r}")
    if all_fx and nfx > 1 and "FRACTION" in every:
        log.append(f"DoseSummationType FRACTION read as all {nfx} fractions of the fraction group (DICOM PS3.3 "
                   "C.8.8.3.1); if the planning system meant one fraction, the MC/TPS ratio is "
                   f"{nfx}: then use fractions = 'one'")
    log.append(f"dose to compute: {dtype.lower()}, {'all ' + str(nfx) if all_fx else 'one of ' + str(nfx)} "
               f"fraction(s)")
    # files of one calculation (audit 26, F2); the largest difference kept for check.json (check review b, R3)
    beams_minus_plan = beams_against_plan(total, beams, plan_beams, log, folder)
    if total is None and set(beams) != plan_beams:   # the sum of some beams is not the plan's dose
        missing = sorted(plan_beams - set(beams))
        raise CheckInputError(f"per-beam TPS doses of beam(s) {sorted(beams)} only, and no plan dose, but the plan "
                              f"has beams {sorted(plan_beams)}: the dose of beam(s) {missing} is missing, so the "
                              "plan's dose cannot be compared (it would look like a plan without those beams); "
                              + way_out("give their RT Doses or the plan dose with --dose (export them with the "
                                        "others)", "export their RT Doses, or the plan dose, into {folder} with the "
                                        "others"), single_options=("--dose",))
    # ---- frame of reference
    fors = {"plan": rp.frame_of_reference_uid, **{f"dose {_shown(d.path, folder)}": d.frame_of_reference_uid
                                                   for d in doses}}
    # ---- structures, then the CT (of several CT series, the one the structure set was drawn on)
    rs_found = found.get("RTSTRUCT", []) if struct is None else []
    if rs_found:
        struct = _pick_struct(rs_found, headers, plan_path, rp.frame_of_reference_uid, log, root=folder)
    struct_series: tuple[str, ...] = ()
    if struct is not None:
        sp = Path(struct)
        struct_series = (headers[sp].ref_series if sp in headers
                         else struct_ct_series(_dcm_header(sp, ["ReferencedFrameOfReferenceSequence"]))
                         if sp.is_file() else ())
    ct_uid = None
    if ct is not None:   # a given CT folder: its own slices (not its sub-folders), the same choice of series
        ct = Path(ct)
        if not ct.is_dir():
            raise CheckInputError(f"--ct {ct} is not a folder; give the folder of the plan's CT series")
        ct_found, ct_headers, _ = _scan(ct, outputs_too=True, notes=log)
        ct_files = [p for p in ct_found.get("CT", []) if p.parent == ct]
        if not ct_files:   # a patient folder given as --ct: the sub-folder holding the slices named (journey 28 F6)
            inside = sorted({p.parent for p in ct_found.get("CT", [])})
            raise CheckInputError(f"no CT slices in {ct}; give --ct with the folder of the plan's CT series"
                                  + (f" ({listed([str(q) for q in inside], 3)} hold{'s' if len(inside) == 1 else ''} "
                                     "CT slices)" if inside else ""))
        headers.update(ct_headers)
        ct, ct_uid = _pick_ct(ct_files, headers, rp.frame_of_reference_uid, log, want=ct_series,
                              struct_series=struct_series, struct_name=_shown(struct or "", folder))
    elif found.get("CT"):
        ct, ct_uid = _pick_ct(found["CT"], headers, rp.frame_of_reference_uid, log, want=ct_series,
                              struct_series=struct_series, struct_name=_shown(struct or "", folder))
    elif ct_series is not None:
        raise CheckInputError(f"--ct-series {ct_series}: there is no CT to choose from (no CT slices"
                              f"{' in ' + str(folder) if folder is not None else ''}); give --ct")
    chosen = [h for h in headers.values() if h.modality == "CT" and h.path.parent == Path(ct) and h.series == ct_uid] \
        if ct is not None else []   # the headers of the CT series read
    if ct is not None:
        ct_frames = {h.frame for h in chosen}
        fors["CT"] = sorted(ct_frames)[0] if len(ct_frames) == 1 else ""
        log.append(f"CT: {ct} (FrameOfReferenceUID {fors['CT']})")
    # ---- one patient (mcproton/_io/patients.py, the rule mcproton run applies to its CT, plan and RT Struct): the
    # files the UIDs link (plan, its doses, the structure set it names) give the patient's PatientID(s) (real exports
    # differ there: APTG plan03's plan says 'test_LET_ramp', its dose and RS 'WTR303030'; noted); a CT or structure
    # set paired by the frame of reference alone must carry one of them; birth date and sex must agree, the name is
    # warned of.  The CT: every slice of the series read (one series of two patients refused), not the first's
    def ident(p: str | Path) -> PatientIdentity:
        h = headers.get(Path(p))
        return h.identity if h is not None else read_identity(p)

    files = [PatientFile(f"plan {_shown(plan_path, folder)}", ident(plan_path)),
             *[PatientFile(f"RT Dose {_shown(d.path, folder)}", ident(d.path)) for d in doses]]
    if struct is not None:
        sp = Path(struct)   # its SOP Instance UID as the folder's read gave it (not read again), else read
        rs_sop = headers[sp].sop if sp in headers else \
            str(getattr(_dcm_header(sp, ["SOPInstanceUID"]), "SOPInstanceUID", "") or "")
        rs_named = _plan_names_struct(plan_path, rs_sop)
        files.append(PatientFile(f"RT Struct {_shown(struct, folder)}", ident(struct), linked=rs_named))
    if ct is not None:
        mixed = series_patients([(h.path.name, h.identity) for h in chosen])
        if mixed:
            raise CheckInputError(f"CT {ct}: {mixed}")
        ct_identity = PatientIdentity()
        for h in chosen:
            ct_identity = ct_identity.merged(h.identity)
        files.append(PatientFile(f"CT {ct}", ct_identity, linked=False))
    found = compare_patients(files)
    if found.refusal:
        raise CheckInputError(f"the paired files {found.refusal}; "
                              + way_out("remove the other patient's files from the folder, or give this patient's "
                                        "files (--plan, --dose, --ct, --struct)",
                                        "remove the other patient's files from {folder}"))
    for said in found.warnings:
        log.append(f"note: {said}")
        # a warning too (check.json's warnings, the report's warnings box and header, the summary): a wrong-patient
        # pairing is the first thing a second check should show, not a line of the Pairing section (audit 18b, F3b)
        warn(said, McprotonWarning)
    if struct is not None:
        from .._io.rtstruct import read_rtstruct

        rs_read = read_rtstruct(struct)
        fors["structure set"] = rs_read.frame_of_reference_uid
        for roi, f in rs_read.frames_of_contours().items():   # each ROI names its own frame (3006,0024)
            if f and f != fors["structure set"] and f not in fors.values():
                fors[f"structure set ROI {roi!r}"] = f
    known = {k: v for k, v in fors.items() if v}
    if len(set(known.values())) > 1:
        lines = "; ".join(f"{k}: {v}" for k, v in known.items())
        raise CheckInputError(f"the inputs are on different frames of reference ({lines}): the plan's isocentre "
                              "would be placed in another patient coordinate system; give the CT, dose and "
                              "structures that belong to this plan")
    link_unframed_plan(rp, plan_path, doses, fors, log, folder)
    # before any output is written or the CT is read: the set-up against the CT's position (no CT: only the beams
    # against each other)
    ct_positions: list[str] = []
    if ct is not None:
        ct_positions = sorted({h.position for h in chosen} - {""})
        if len(ct_positions) > 1:
            raise CheckInputError(f"the slices of the CT series {ct_uid} disagree on PatientPosition "
                                  f"({', '.join(ct_positions)}): one series shows the patient lying one way; the "
                                  "series is damaged or mixed, export it again")
    position_notes = patient_position_notes(rp, ct_positions[0] if ct_positions else "", has_ct=ct is not None)
    return CheckInputs(str(plan_path), rp, total, beams, str(ct) if ct is not None else None,
                       str(struct) if struct is not None else None, rp.frame_of_reference_uid, dtype, nfx, all_fx,
                       log, ct_series=ct_uid or None, position_notes=position_notes,
                       ct_not_drawn_on=not_planning_ct_note(ct_uid, struct_series, Path(struct or "").name),
                       patient_warnings=list(found.warnings), tps_beams_minus_plan=beams_minus_plan,
                       structs_skipped=[] if struct is not None else [_shown(p, folder) for p in rs_found])


def link_unframed_plan(rp: Any, plan_path: Path, doses: Sequence[TPSDose], fors: dict[str, str], log: list[str],
                       folder: str | Path | None) -> None:
    """A plan that gives no FrameOfReferenceUID (0020,0052; optional in the RT Ion Plan IOD, stripped by some
    anonymisers), with a CT of a known frame (``fors["CT"]``): the TPS RT Dose links it to the CT, since every dose
    compared must refer to this plan (ReferencedRTPlanSequence; read_tps_dose refuses one without, :func:`gather`
    one of another plan) and its FrameOfReferenceUID (Type 1) is the CT's (gather compared them): which dose is said
    in the pairing notes, as ``mcproton run`` says its link (mcproton/_run/inputs.py check_plan_frame_given, which
    refuses a plan linked by nothing; audit 24 swallow, F1).  Should no dose link it, it is refused."""
    ct_for = fors.get("CT", "")
    if rp.frame_of_reference_uid or not ct_for:
        return
    own = plan_reference_uids(rp.sop_instance_uid)
    by_dose = sorted((d for d in doses if d.plan_uid and d.plan_uid in own and d.frame_of_reference_uid == ct_for),
                     key=lambda d: d.summation_type not in PLAN_DOSE_TYPES)   # the plan dose named first
    if not by_dose:
        raise CheckInputError(f"the plan {_shown(plan_path, folder)} gives no FrameOfReferenceUID (0020,0052), and no "
                              f"RT Dose that refers to it lies in the CT's frame ({ct_for}): nothing shows that it "
                              "was made on this CT; give the planning system's RT Dose of this plan, or export the "
                              "plan again with its FrameOfReferenceUID")
    log.append(f"note: the plan gives no FrameOfReferenceUID (0020,0052): it is linked to the CT by its RT Dose "
               f"{_shown(by_dose[0].path, folder)}, which refers to the plan (ReferencedRTPlanSequence) and lies in "
               f"the CT's frame of reference {ct_for}")


def not_planning_ct_note(ct_uid: str | None, struct_series: Sequence[str], struct_name: str) -> str:
    """The diagnostic of a failed range or dose level where the CT series read is not the one the structure set
    was drawn on (its RTReferencedSeriesSequence): a re-scan on the plan's frame of reference computes other ranges
    than the planning CT, and the failure would read as an HLUT or beam-model problem (audit 18 course F2); "" when
    it is the series, or the structure set does not say."""
    if not ct_uid or not struct_series or ct_uid in struct_series:
        return ""
    return (f"the CT read (series {ct_uid}) is not the series the structure set {struct_name} was drawn on "
            f"({', '.join(struct_series)}): the ranges and dose levels depend on the CT; "
            + way_out("check with the planning CT (--ct, or --ct-series)",
                      "put the planning CT into {folder} in place of this one"))


def patient_position_notes(plan: Any, ct_position: str, *, has_ct: bool = True) -> list[str]:
    """Refuse a plan whose beams are set up in different positions (one patient model cannot show the patient
    lying two ways), or in another position than the CT's, as ``mcproton run`` does (the gantry angles would be
    turned about the wrong patient axes: a beam can enter from the other side); where the CT does not say its
    position, a note that names the unchecked position as the first suspect of a dose in the wrong place
    (``has_ct`` False: a phantom built from the structure set, only the beams against each other)."""
    from .._io.rtplan import beams_by_position, mixed_positions

    ct_pos = str(ct_position or "").strip().upper()
    plan_pos = beams_by_position((b.name, b.patient_position) for b in plan.beams)
    how = " (the plan's, or --patient-position's where the plan has none)" if getattr(plan, "notes", None) else ""
    if len(plan_pos) > 1:
        raise CheckInputError(mixed_positions(plan_pos, how))
    if not plan_pos or not has_ct:
        return []
    (pos, names), = plan_pos.items()
    if not ct_pos:
        return [f"the CT does not say its PatientPosition, so the plan's set-up {pos}{how} could not be checked "
                "against it: if the dose lies in the wrong place, suspect the position first"]
    if pos != ct_pos:
        raise CheckInputError(f"beam(s) {', '.join(names)} are set up {pos}{how}, but the CT was acquired {ct_pos}: "
                              "the gantry angles would be applied to a patient lying otherwise than in the images, "
                              "so a beam can enter from the wrong side; give the CT the plan was made on"
                              + (", or the right --patient-position" if how else ""))
    return []
