"""The targets' prescription for V95/V100 in ``mcproton check``, from the plan's RT Prescription Module (DICOM PS3.3
C.8.8.10, DoseReferenceSequence).

Only a dose reference that prescribes a volume's dose is a target's prescription: DoseReferenceType TARGET and
DoseReferenceStructureType VOLUME (an ROI of the structure set, ReferencedROINumber) or SITE (the treated site as
a whole, no ROI).  A POINT (an ROI that is a point) or COORDINATES (DoseReferencePointCoordinates) reference gives
the dose at one point (a verification or normalisation point), which is not the dose a target's V95/V100 are
judged against.  TargetPrescriptionDose of a proton plan is RBE-weighted (Gy(RBE)); against a PHYSICAL TPS dose it
is divided by the check's RBE (1.1, or ``rbe``), as ``mcproton run`` does in its prescription warning."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .inputs import CLINICAL_RBE

#: the DoseReferenceStructureTypes whose TargetPrescriptionDose is a volume's prescription
VOLUME_TYPES = ("VOLUME", "SITE")


@dataclass
class DoseReferences:
    """The plan's prescriptions of target volumes: (ReferencedROINumber or None, TargetPrescriptionDose in Gy(RBE))
    of each dose reference of DoseReferenceType TARGET (or none given) and structure type VOLUME or SITE with a
    TargetPrescriptionDose > 0; ``skipped``: those with a TargetPrescriptionDose of another structure type (a point),
    each named for the report ('Verification3' (COORDINATES))."""
    items: list[tuple[int | None, float]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unreadable: str = ""   # why the DoseReferenceSequence could not be read ("" when it was, or there is none)


def plan_dose_references(plan_path: str) -> DoseReferences:
    """The target dose references of the RT Plan ``plan_path``; none where it has none or cannot be read (the
    prescription is optional: without it V95/V100 are relative to each target's TPS median)."""
    from .._io.dicom_common import read_dicom_header
    from .._io.errors import DicomInputError

    out = DoseReferences()
    try:
        ds = read_dicom_header(plan_path)   # a raw data set too, as the plan's reader reads it (audit 27, F1)
        if ds is None:
            return DoseReferences(unreadable=f"{plan_path}: not a DICOM file")
        for i, dr in enumerate(ds.get("DoseReferenceSequence", []) or []):
            v = dr.get("TargetPrescriptionDose", None)
            kind = str(dr.get("DoseReferenceType", "") or "").upper()
            if v is None or not float(v) > 0 or kind not in ("TARGET", ""):
                continue
            structure = str(dr.get("DoseReferenceStructureType", "") or "").strip().upper()
            if structure in VOLUME_TYPES:
                roi = dr.get("ReferencedROINumber", None) if structure == "VOLUME" else None
                out.items.append((int(roi) if roi is not None else None, float(v)))
            else:
                name = str(dr.get("DoseReferenceDescription", "") or "").strip()
                out.skipped.append(f"{name or 'dose reference ' + str(dr.get('DoseReferenceNumber', i + 1))!r} "
                                   f"({structure or 'no DoseReferenceStructureType'})")
    except DicomInputError as exc:   # the file named, and why (a raw data set is read: audit 27 encodings, F1)
        return DoseReferences(unreadable=str(exc))
    except Exception as exc:  # noqa: BLE001 - the prescription is optional: V95/V100 then use the target median
        return DoseReferences(unreadable=f"{type(exc).__name__}: {exc}")
    return out


def target_prescriptions(items: list[tuple[int | None, float]], targets: Sequence[str],
                         roi_numbers: dict[str, int]) -> tuple[dict[str, float], list[str], list[str]]:
    """Each target's prescription from the plan's target dose references ``items``: the one whose
    ReferencedROINumber is the target's ROI, else the plan's only prescribed dose; a target without its own while
    the plan prescribes several doses (a simultaneous boost) gets none, with a note: which is its own is unknown,
    and another target's would make its V95/V100 plausible but wrong.  Returns the prescriptions, the notes and
    the targets whose own dose reference named them."""
    doses = sorted({v for _, v in items})
    by_roi = {roi: v for roi, v in items if roi is not None}
    out: dict[str, float] = {}
    notes: list[str] = []
    own: list[str] = []
    for nm in targets:
        num = roi_numbers.get(nm)
        if num is not None and num in by_roi:
            out[nm] = by_roi[num]
            own.append(nm)
        elif len(doses) == 1:
            out[nm] = doses[0]
        elif doses:
            notes.append(f"target {nm!r}: no V95/V100: the plan prescribes {len(doses)} doses "
                         f"({', '.join(f'{v:g}' for v in doses)} Gy) and none of its dose references names this ROI "
                         "(ReferencedROINumber), so its prescription is unknown")
    return out, notes, own


def plan_prescriptions(refs: DoseReferences, targets: Sequence[str], roi_numbers: dict[str, int], dose_type: str,
                       rbe: float | None) -> tuple[dict[str, float], str, list[str]]:
    """Each target's prescription (Gy, or Gy(RBE) for an EFFECTIVE TPS dose; all fractions) from ``refs`` (with
    items), the source named in the report, and the notes of targets left without one."""
    factor = 1.0 if dose_type == "EFFECTIVE" else (CLINICAL_RBE if rbe is None else float(rbe))
    items = [(roi, v / factor) for roi, v in refs.items]
    pres, notes, own = target_prescriptions(items, targets, roi_numbers)
    how = "the plan's TargetPrescriptionDose"
    if own and len(own) == len(pres):
        how += " of each target's dose reference (ReferencedROINumber)"
    elif own:
        how += (f" of the target's own dose reference (ReferencedROINumber) for {', '.join(map(repr, own))}, the "
                "plan's only prescribed dose for the others")
    if factor != 1.0:
        conv = ", ".join(f"{v:.3g} Gy(RBE) / {factor:g} = {v / factor:.3g} Gy" for v in sorted({v for _, v in
                                                                                            refs.items}))
        how += f": {conv} (RBE-weighted; the TPS dose is physical, so divided by the RBE {factor:g})"
    if refs.skipped:
        how += f"; not the dose at a point of {', '.join(refs.skipped)}"
    return pres, how, notes


def median_source(refs: DoseReferences | None) -> str:
    """The report's source of V95/V100 relative to each target's own TPS median (no prescription)."""
    why = "the plan gives no TargetPrescriptionDose"
    if refs is not None and refs.unreadable:
        why = f"the plan's DoseReferenceSequence could not be read ({refs.unreadable})"
    elif refs is not None and refs.skipped:
        why = (f"the plan prescribes no target volume or site: its dose reference(s) {', '.join(refs.skipped)} give "
               "the dose at a point, not a target's prescription")
    return f"each target's own TPS median dose ({why}; give --prescription for the prescribed dose)"
