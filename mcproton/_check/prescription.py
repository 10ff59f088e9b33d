"""The targets' prescription for V95/V100 in ``mcproton check``, from the plan's RT Prescription Module (DICOM PS3.3
C.8.8.10, DoseReferenceSequence).

Only a dose reference that prescribes a volume's dose is a target's prescription: DoseReferenceType TARGET and
DoseReferenceStructureType VOLUME (an ROI of the structure set, ReferencedROINumber) or SITE (the treated site as
a whole, no ROI).  A POINT (an ROI that is a point) or COORDINATES (DoseReferencePointCoordinates) reference gives
the dose at one point (a verification or normalisation point), which is not the dose a target's V95/V100 are
judged against.  TargetPrescriptionDose of a proton plan is RBE-weighted (Gy(RBE)); against a PHYSICAL TPS dose it
is divided by the check's RBE (1.1, or ``rbe``), as ``mcproton run`` does in its prescription warning.

A prescription typed with ``--prescription`` (``check(prescription=)``) is the same quantity as the plan's
TargetPrescriptionDose, converted the same way (:func:`given_prescriptions`): Gy(RBE) for all fractions of the
plan, divided by the RBE for a PHYSICAL TPS dose and by the fractions for a TPS dose of one fraction.  It is
compared with the plan's TargetPrescriptionDose (a target's own, ``ROI=GY``: the dose reference of its ROI, else
the plan's other doses where the target's median sides with them) and with the TPS dose's median in the target,
and refused where it differs from them by the factor of a unit slip (cGy, one fraction, a physical dose) or by more
than a factor :data:`MEDIAN_FACTOR` from the median, unless
``--prescription-anyway`` (``prescription_anyway=True``) says it is meant (the units audit of 2026-12-07, F1: 3060 was
taken as 3060 Gy and the organ-at-risk note dropped out).  A physical prescription is given x the RBE; against a
PHYSICAL TPS dose a value no TargetPrescriptionDose checks is noted (:func:`read_as_rbe_note`)."""
from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._io.rtdose import CLINICAL_RBE
from .inputs import CheckInputError

#: A typed prescription within this (relative) of one of the plan's TargetPrescriptionDoses is the plan's; within it
#: of one of them times a slip's factor (:func:`slip_factors`) it is refused as that slip.  Both are the same quantity
#: (Gy(RBE), all fractions), so they differ only by the rounding of the typed value: 30.6 / 1.1 typed as 27.8 is 0.07 %
#: off, 30.6 / 17 / 1.1 typed as 1.64 0.2 %; the nearest two slips, the RBE's 1.1 and 1, lie 10 % apart.
PLAN_SLIP_TOL = 0.03
#: A typed prescription (converted to the TPS dose's unit and fractions) within this (relative) of the TPS dose's
#: median in the target times the factor of a slip of cGy or of one fraction is refused as that slip.  The median of a
#: planned target lies within a few % of its prescription (the demo's CTV_PF: TPS D50 1.62 Gy for 1.636 Gy, -0.7 %); the
#: RBE's 1.1 is too close to that spread to be told from the median, so only the plan's value names it.
MEDIAN_SLIP_TOL = 0.15
#: A typed prescription more than this factor above or below the TPS dose's median in the target is refused (a dose
#: whose V95/V100 would read 0 or 1 whatever the doses, and the organ-at-risk note's threshold with it, 2 % of the
#: prescription: at 100 x it hid a +27 % brainstem difference in the audit)
MEDIAN_FACTOR = 2.0
#: what the refusal names as the way out, on the command line and in Python
ANYWAY = "--prescription-anyway (Python: prescription_anyway=True)"

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
    #: the plan's header as read (its DoseReferenceSequence and the ``with_tags`` of :func:`plan_dose_references`);
    #: None where it could not be read
    header: Any = field(default=None, compare=False, repr=False)


def plan_dose_references(plan_path: str, *, with_tags: Sequence[str] = ()) -> DoseReferences:
    """The target dose references of the RT Plan ``plan_path``; none where it has none or cannot be read (the
    prescription is optional: without it V95/V100 are relative to each target's TPS median).  ``with_tags``: other
    attributes read in the same header read, kept in the result's ``header`` (the run's prescription reads the fraction
    groups so: the plan is read once)."""
    from .._io.dicom_common import read_dicom_header
    from .._io.errors import DicomInputError

    out = DoseReferences()
    try:
        # a raw data set too, as the plan's reader reads it (audit 27, F1); the one sequence read (the review of
        # 2026-12-07, R4: a whole header parsed every control point, 0.7 s for a 1.25 MB plan)
        ds = read_dicom_header(plan_path, specific_tags=["DoseReferenceSequence", *with_tags])
        if ds is None:
            return DoseReferences(unreadable=f"{plan_path}: not a DICOM file")
        out.header = ds
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
    """The report's source of V95/V100 relative to each target's own TPS median (no prescription): why, as
    :func:`no_target_prescription` says it, but in its own words where the plan prescribes only points."""
    refs = refs if refs is not None else DoseReferences()
    if refs.skipped and not refs.unreadable:
        why = (f"the plan prescribes no target volume or site: its dose reference(s) {', '.join(refs.skipped)} give "
               "the dose at a point, not a target's prescription")
    else:
        why = no_target_prescription(refs)
    return f"each target's own TPS median dose ({why}; give --prescription for the prescribed dose)"


def slip_factors(fractions: int, rbe: float | None) -> list[tuple[float, str]]:
    """(factor, what it looks like) of the unit slips of a typed prescription, each a typed value = the right one x
    factor: cGy (x 100), the dose of one fraction (/ ``fractions``, where the plan has more than one) and a physical
    dose given for Gy(RBE) (/ ``rbe``; None: not named), and each combination of them."""
    parts: list[list[tuple[float, str]]] = [[(1.0, ""), (100.0, "cGy")]]
    if fractions > 1:
        parts.append([(1.0, ""), (1.0 / fractions, f"the dose of one of the plan's {fractions} fractions")])
    if rbe is not None and rbe != 1.0:
        parts.append([(1.0, ""), (1.0 / rbe, f"a physical dose (Gy(RBE) / the RBE {rbe:g})")])
    out = []
    for combo in itertools.product(*parts):
        names = [w for _, w in combo if w]
        if names:
            out.append((math.prod(f for f, _ in combo), " and ".join(names)))
    return out


def _nearest_slip(ratio: float, slips: list[tuple[float, str]], tol: float) -> tuple[float, str] | None:
    """The slip whose factor lies nearest ``ratio`` (typed / reference), if within ``tol`` (relative) of it."""
    near = [(abs(math.log(ratio / f)), f, w) for f, w in slips if ratio > 0]
    near = [x for x in near if x[0] <= math.log1p(tol)]
    return min(near)[1:] if near else None


def given_prescriptions(given: float | Mapping[str, float], targets: Sequence[str], refs: DoseReferences,
                        dose_type: str, rbe: float | None, fractions: int, one_fraction: bool,
                        medians: Mapping[str, float], anyway: bool = False,
                        roi_numbers: Mapping[str, int] | None = None) -> tuple[dict[str, float], str, list[str]]:
    """Each target's prescription from ``check(prescription=...)`` (``given``: one dose, Gy(RBE) for all fractions
    of the plan, as its TargetPrescriptionDose; or {target: dose} of the targets named, checked to be targets
    before), converted as the plan's: divided by the RBE (``rbe``, default 1.1) for a PHYSICAL TPS dose and by the
    plan's ``fractions`` where the TPS dose holds one (``one_fraction``).  Returns the prescriptions (Gy, Gy(RBE) for
    an EFFECTIVE dose, of the fractions the TPS dose holds), the source named in the report and the notes.

    One dose for every target is compared with the plan's TargetPrescriptionDoses (``refs``) and with the TPS dose's
    median in the target treated (``medians``: the highest).  A target's own dose (``ROI=GY``) is compared with the
    plan's dose reference of that target (its ReferencedROINumber, ``roi_numbers``) where the plan has one, and with
    that target's own TPS median; where the plan has none of that target, with the plan's other doses (of the site
    as a whole, SITE, or of other ROIs) too, but a slip of the RBE of one of those is called only where the
    target's own TPS median lies nearer that dose than the value typed (with the slips the median sees, cGy and one
    fraction, undone): in a simultaneous boost another ROI's dose is another level (66/60/54 Gy(RBE) lie 1.1 x
    apart, as the RBE's slip does: the review of 2026-12-07, R1, refused CTV54=54 against 60 "as physical" and
    advised 60), while against the plan's one SITE 54 a CTV=49.1 whose median is 54.3 is the physical slip (review D
    of 2026-12-07, R1: compared with the median only, it passed).  A value off by the factor of a slip
    (:func:`slip_factors`, within :data:`PLAN_SLIP_TOL` of the plan's, :data:`MEDIAN_SLIP_TOL` of the median) or by
    more than :data:`MEDIAN_FACTOR` from the median is refused (CheckInputError) naming the slip and the value to
    give, unless ``anyway``: then it is used, and a note says what it differs from.  Against a PHYSICAL TPS dose a
    value that no TargetPrescriptionDose of the plan checks (none, or none of that target's ROI, and not the value
    typed; the median cannot tell the RBE's 10 %) gets a note saying how it was read, why nothing checked it and
    what to give for a physical dose (:func:`read_as_rbe_note`)."""
    rbe_used = CLINICAL_RBE if rbe is None else float(rbe)
    factor = 1.0 if dose_type == "EFFECTIVE" else rbe_used
    div = fractions if one_fraction and fractions > 1 else 1
    unit = "Gy(RBE)" if dose_type == "EFFECTIVE" else "Gy"
    each = isinstance(given, Mapping)
    typed = {nm: float(given[nm]) for nm in targets if nm in given} if each else \
        {nm: float(given) for nm in targets}
    pres = {nm: v / factor / div for nm, v in typed.items()}

    def conv(v: float) -> str:
        steps = (f" / {factor:g}" if factor != 1.0 else "") + (f" / {div} fractions" if div > 1 else "")
        return f"{v:g} Gy(RBE)" + (f"{steps} = {v / factor / div:.4g} {unit}" if steps else "")

    how = ("given for each target (--prescription ROI=GY)" if each else "given (--prescription)") + ": " + \
        ", ".join((f"{nm!r} " if each else "") + conv(v) for nm, v in typed.items()) + \
        " (Gy(RBE) for all fractions of the plan, as its TargetPrescriptionDose" + \
        (f"; the TPS dose is physical, so divided by the RBE {factor:g}" if factor != 1.0 else "") + \
        (f"; the TPS dose holds one of the {fractions} fractions" if div > 1 else "") + ")"
    plan_doses = sorted({v for _, v in refs.items})
    how += ("; the plan's TargetPrescriptionDose: " + ", ".join(f"{v:g}" for v in plan_doses) + " Gy(RBE)"
            if plan_doses else f"; {no_target_prescription(refs)}")
    divided = ([f"by the RBE {factor:g} for this PHYSICAL TPS dose"] if factor != 1.0 else []) + \
        ([f"by the {fractions} fractions for this TPS dose of one fraction"] if div > 1 else [])
    rule = ("--prescription is in Gy(RBE) for all fractions of the plan, as the plan's TargetPrescriptionDose"
            + (f" (the check divides it {' and '.join(divided)})" if divided else ""))
    by_roi = {roi: v for roi, v in refs.items if roi is not None}
    slips_rbe, slips = slip_factors(fractions, rbe_used), slip_factors(fractions, None)   # (the same for every value)
    rbe_slips = {f for f, _ in slips_rbe} - {f for f, _ in slips}
    problems: list[tuple[str, str]] = []   # (what is wrong, the value to give)
    unchecked: list[str] = []   # the targets whose value no TargetPrescriptionDose of the plan checked
    if each:
        ref_targets = list(typed)
    else:   # one dose for every target: the target treated, of the highest TPS median (a PTV of another phase: none)
        dosed = [nm for nm in typed if medians.get(nm, 0.0) > 0]
        ref_targets = [max(dosed, key=lambda nm: medians[nm])] if dosed else list(typed)[:1]
    for nm in ref_targets:
        v, m = typed[nm], medians.get(nm, 0.0)
        what = f"prescription{f' of {nm!r}' if each else ''} (--prescription {f'{nm}=' if each else ''}{v:g})"
        name = f"{nm}=" if each else ""   # the form of the value to give
        own = (roi_numbers or {}).get(nm) if each else None
        own = own if own in by_roi else None   # the ReferencedROINumber of the target's own dose reference
        # (dose, whose, other): ``other``, a dose that is not the target's own (ROI=GY: a SITE dose, another ROI's;
        # in a boost another level, and 66/60/54 Gy(RBE) lie 1.1 x apart as the RBE's slip does): its RBE slip is
        # called only where the target's TPS median sides with it (the review of 2026-12-07, R1, and review D's R1:
        # compared with the median only, CTV=49.1 passed against the plan's one SITE 54)
        if not each:
            against = [(p, "the plan's TargetPrescriptionDose", False) for p in plan_doses]
        elif own is not None:
            against = [(by_roi[own], f"the plan's TargetPrescriptionDose of {nm!r} (its dose reference, "
                                     f"ReferencedROINumber {own})", False)]
        else:
            against = [(p, f"the plan's TargetPrescriptionDose of {_of_whom(refs, p, roi_numbers)}", True)
                       for p in plan_doses]
        matched = any(abs(v / p - 1) <= PLAN_SLIP_TOL for p, _, _ in against)
        if not against or (each and own is None and not matched):
            unchecked.append(nm)
        if matched and (not each or own is not None or len(plan_doses) == 1):
            continue   # the plan's own value (the target's, or the plan's only dose): used as the plan's would be
        said, give = "", ""
        plan_slips: list[tuple[tuple[float, str], float, str, bool]] = []   # (slip, dose, whose, median asked)
        for p, whose, other in against if not matched else []:   # one of a boost's levels: not a slip of another
            slip = _nearest_slip(v / p, slips_rbe, PLAN_SLIP_TOL)
            asked = other and slip is not None and slip[0] in rbe_slips
            if slip is not None and (not asked or _sides_with(p, v / slip[0] / rbe_used, m, factor * div)):
                plan_slips.append((slip, p, whose, asked))
        if plan_slips:
            (f, w), p, whose, asked = min(plan_slips, key=lambda sp: abs(math.log(v / sp[1] / sp[0][0])))
            said = f"{what}: {v:g} is {v / p:.4g} x {whose} {p:g} Gy(RBE), so it looks like {w}"
            if asked:   # against the typed value with the RBE's slip kept and the slips the median sees undone
                said += (f" (no dose reference of the plan names {nm!r}, but the TPS dose's median in it, "
                         f"{m:.4g} {unit}, lies nearer {conv(p)} than {conv(v / f / rbe_used)})" if m > 0 else
                         f" (no dose reference of the plan names {nm!r}, and it has no TPS dose to tell)")
            give = f"give {name}{p:g}"
        if not said and m > 0:
            r = pres[nm] / m
            s = _nearest_slip(r, slips, MEDIAN_SLIP_TOL)
            near = f"{conv(v)} is {r:.3g} x the TPS dose's median in the target {nm!r} ({m:.4g} {unit})"
            if s is not None:
                said, give = f"{what}: {near}, so it looks like {s[1]}", f"give about {name}{v / s[0]:.3g}"
            elif not 1 / MEDIAN_FACTOR <= r <= MEDIAN_FACTOR:
                said = (f"{what}: {near}, more than a factor {MEDIAN_FACTOR:g} from it (V95/V100 would read 0 or 1 "
                        "whatever the doses)")
                give = "check its unit"
        if said:
            problems.append((said, give))
    notes = []
    if problems and not anyway:
        raise CheckInputError("; ".join(f"{said}; {give}" for said, give in problems)
                              + f". {rule}; leave --prescription out for the plan's TargetPrescriptionDose (else each "
                              f"target's TPS median); if the value is meant, add {ANYWAY}")
    if problems:
        how += "; kept with --prescription-anyway although " + "; ".join(said for said, _ in problems)
        notes = [f"{said}: kept (--prescription-anyway)" for said, _ in problems]
    if factor != 1.0 and unchecked:
        it = "them" if len(unchecked) > 1 else "it"
        why = (f"no dose reference names {' or '.join(map(repr, unchecked))}, and the plan's TargetPrescriptionDose"
               f"{'s' if len(plan_doses) > 1 else ''} ("
               + ", ".join(f"{v:g} Gy(RBE) of {_of_whom(refs, v, roi_numbers)}" for v in plan_doses)
               + f") {'are' if len(plan_doses) > 1 else 'is'} not the value typed, so none checks {it}" if plan_doses
               else None if not (refs.unreadable or refs.skipped) else
               f"nothing checks {it}: {no_target_prescription(refs)}")
        notes.append(read_as_rbe_note({nm: typed[nm] for nm in unchecked}, each, factor, div, medians, why))
    return pres, how, notes


def _of_whom(refs: DoseReferences, dose: float, roi_numbers: Mapping[str, int] | None) -> str:
    """Whose the plan's TargetPrescriptionDose ``dose`` is: the site's (SITE) and/or its ROIs' (VOLUME), by name
    where a target of ``roi_numbers`` has that ROINumber."""
    names = {n: nm for nm, n in (roi_numbers or {}).items()}
    rois = sorted({roi for roi, v in refs.items if v == dose and roi is not None})
    whom = (["the site as a whole (SITE)"] if any(roi is None for roi, v in refs.items if v == dose) else []) + \
        [f"ROI {names[r]!r}" if r in names else f"ROINumber {r}" for r in rois]
    return " and ".join(whom)


def _sides_with(plan: float, alt: float, median: float, div: float) -> bool:
    """Whether a target's TPS median ``median`` lies nearer the plan's dose ``plan`` than ``alt`` (the typed value
    with the slips the median sees undone: cGy, one fraction; the RBE's kept), both Gy(RBE) for all fractions and
    divided by ``div`` into the TPS dose's unit (the RBE for a PHYSICAL dose, x the fractions for one fraction); True
    where there is no median (it cannot tell: the slip is called, --prescription-anyway keeps a meant value).  A
    boost's CTV54=54 against a top level of 60 (median 54.3): 54 lies nearer, no slip; CTV=49.1 against the plan's
    one 54: 54 lies nearer, the RBE's slip."""
    if not median > 0:
        return True
    return abs(math.log(plan / div / median)) < abs(math.log(alt / div / median))


def no_target_prescription(refs: DoseReferences) -> str:
    """Why a plan gives no target's TargetPrescriptionDose, for the source of a typed prescription: none at all,
    none of a target volume or site (only at points: the DCPT head plan's 'Verification3/5'), or not readable."""
    if refs.unreadable:
        return f"the plan's DoseReferenceSequence could not be read ({refs.unreadable})"
    if refs.skipped:
        return (f"the plan gives no TargetPrescriptionDose of a target volume or site (only the dose at a point of "
                f"{', '.join(refs.skipped)})")
    return "the plan gives no TargetPrescriptionDose"


def read_as_rbe_note(typed: Mapping[str, float], each: bool, rbe: float, div: int,
                     medians: Mapping[str, float], why: str | None = None) -> str:
    """The note of a typed prescription (``typed``: {target: Gy(RBE)}, ``each``: given as ROI=GY) against a PHYSICAL
    TPS dose that no TargetPrescriptionDose of the plan checked: it was read as Gy(RBE) and divided by ``rbe``; a
    physicist who typed physical Gy (what --prescription meant before 2026-12-07) gives the value x the RBE.  Before
    (the review of 2026-12-07, R2) nothing said so: the OpenTPS case's --prescription 1.8, meant as the 1.8 Gy
    physical OpenTPS optimised to, read V100 98 % (1.636 Gy) where it had read 52 %.  Each target's TPS median is
    named (``div`` > 1: of one fraction): the median cannot tell the RBE's 10 % from a plan's spread, the physicist
    can.  ``why``: why no TargetPrescriptionDose checked it, as the source of the result says (None: the plan gives
    none; before review D of 2026-12-07, R2, that was said where the source named the plan's SITE dose)."""
    def flags(scale: float) -> str:
        return " ".join(f"--prescription {nm + '=' if each else ''}{v * scale:.4g}" for nm, v in typed.items())

    read = ", ".join((f"{nm!r} " if each else "") + f"{v:g} Gy(RBE) / the RBE {rbe:g} = {v / rbe:.4g} Gy physical"
                     for nm, v in typed.items())
    shown = [f"{nm!r}: {medians[nm]:.4g} Gy" for nm in typed if medians.get(nm, 0.0) > 0]
    median = (f" (the TPS dose's median{' of one fraction' if div > 1 else ''} in {', '.join(shown)})"
              if shown else "")
    meant = " and ".join(f"{v:g} Gy" for v in typed.values())
    several = len(typed) > 1
    return (f"{flags(1.0)} {'were' if several else 'was'} read as Gy(RBE), as a TargetPrescriptionDose is: {read} "
            f"for this PHYSICAL TPS dose{median}, and "
            + (why or f"the plan gives no TargetPrescriptionDose of the target{'s' if several else ''} to check "
                      f"{'them' if several else 'it'} against") + f"; if you meant {meant} "
            f"physical, give {flags(rbe)} (the physical dose x the RBE {rbe:g})")
