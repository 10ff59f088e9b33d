"""Consistency checks of an RT Ion Plan, run on the DICOM data set before any transport.

A planning system writes a plan whose parts agree with each other; a damaged file (an interrupted
transfer, a hand edit, a faulty export) breaks that agreement.  ``check_plan`` verifies what Eclipse and
RayStation guarantee and refuses the plan, naming the file, the beam, the control point and the tag, when:

* BeamNumber (300A,00C0) is missing or two beams share one (the MU of one beam would go to both);
* the plan has more than one fraction group (its dose would be one group's, labelled as the plan's);
* the fraction group's ReferencedBeamSequence (300C,0004) references a beam that is not in the
  IonBeamSequence, references one beam twice, misses a beam, disagrees with NumberOfBeams (300A,0080), or
  gives a BeamMeterset (300A,0086) of 0 for a treatment beam that has spot weights; NumberOfFractionsPlanned
  (300A,0078) is missing, empty or < 1;

and, for the beams that deliver the plan's dose (TreatmentDeliveryType TREATMENT, CONTINUATION or none; set-up and
verification fields are left out of the dose by rtplan._parse_plan and not checked further), when:

* a beam's patient setup has no PatientPosition (0018,5100) (OpenTPS writes an empty one), or its
  ReferencedPatientSetupNumber (300C,006A) names none of several patient setups (in a plan of one setup the beam
  takes that one, with a warning naming the reference);
* NumberOfControlPoints (300A,0110) (when present) differs from the control points present, or a ControlPointIndex
  (300A,0112) is out of sequence;
* a control point with spot weights does not state its NominalBeamEnergy (300A,0114) and the energy it would
  inherit is ambiguous: accepted only where the control point just before states it with zero weights, after a
  control point at another energy (the start of the same layer; PS3.3 C.8.8.25 requires the energy only where it
  changes), else a tag lost at the start of a new layer looks the same (the message names the energy and how to
  state it);
* the CumulativeMetersetWeight (300A,0134) of the control points does not start at 0, does not rise by
  exactly the spot weights of each control point, or does not end at FinalCumulativeMetersetWeight
  (300A,010E); or, for control points in pairs per energy layer as Eclipse and RayStation write them (a
  layer's first control point carries the spot weights, the second repeats its energy with zero weights), the
  second states another energy than the first; other layouts (one control point per layer and a closing one)
  need zero weights in the last control point;
* the sum of all ScanSpotMetersetWeights (300A,0396) of a beam differs from its
  FinalCumulativeMetersetWeight by more than ``WEIGHT_RTOL`` (0.1 %);
* NumberOfRangeShifters (300A,0312) disagrees with the RangeShifterSequence, the first control point of a
  beam with range shifters lacks RangeShifterSettingsSequence (300A,0360), a setting refers to an unknown
  ReferencedRangeShifterNumber, or a RangeShifterWaterEquivalentThickness (300A,0366) is not > 0.

Tolerances.  ``WEIGHT_RTOL`` = 1e-3 (relative) for the sum of the spot weights against
FinalCumulativeMetersetWeight and for the last CumulativeMetersetWeight; for the rise of the cumulative
weight across one control point 1e-3 x the larger of that control point's weights and the mean weight of a
layer of the beam; where the control points are not in layer pairs, also 1e-3 x that control point's own weights
plus ``CUM_DS_RTOL`` (2e-6) x FinalCumulativeMetersetWeight, the rounding of cumulative weights written to 7
significant digits (a spot weight shifted into a zero-weight control point is then still refused).  Real plans
agree to 1e-7 (Eclipse 16.1 / ARIA and RayStation plans of APTG/2022_DCPT_LET, DataMedSci/pymchelper and
nbassler/dicomexport: the largest relative difference measured was 8.3e-8); a doubled FinalCumulativeMetersetWeight
or a missing layer is off by far more.

Overrides, only for what a real system is known to write:

* OpenTPS (opentps_core dicomIO.writeRTPlan) writes one control point per layer with an empty
  CumulativeMetersetWeight in every control point: such a beam (every CumulativeMetersetWeight empty) is
  checked by its sum of weights, NumberOfControlPoints and energies only.  It also writes
  VirtualSourceAxisDistances [0, 0] (handled in rtplan._parse_plan: the beam model's distances are used,
  with a warning) and a RangeShifterSequence item with an empty RangeShifterID when the beam has no range
  shifter (not counted).
* Eclipse writes NominalBeamEnergy in the second control point of a layer pair only when the plan has
  more than one layer (the second inherits it otherwise, as PS3.3 C.8.8.25 allows).
"""
from __future__ import annotations

import math

from .errors import DicomInputError, McprotonWarning, warn

WEIGHT_RTOL = 1e-3
"""Relative tolerance of the meterset-weight sums (see the module docstring)."""
CUM_DS_RTOL = 2e-6
"""The rounding of CumulativeMetersetWeight allowed in the rise across one control point, relative to the beam's
FinalCumulativeMetersetWeight: planning systems write the cumulative weights (DS) to 7 significant digits
('17479.57', '2801.739', '1333.401' in tests/data/dicom), half a unit of the 7th digit being at most 5e-7 of the
value, so up to 1e-6 of the final weight for the difference of two; doubled for cumulative weights summed in single
precision.  A whole spot shifted between control points moves far more (the smallest spot of the test plans is
2e-5 of its beam) and is still refused."""

_TREATMENT_TYPES = ("TREATMENT", "CONTINUATION", "")
_POSITION_FIX = ("give the patient's position as in the CT (e.g. HFS): --patient-position HFS (mcproton check) or "
                 "plan.patient_position = \"HFS\" (mcproton run), or set PatientPosition (0018,5100) in the plan's "
                 "PatientSetupSequence (300A,0180), for example with DCMTK: "
                 "dcmodify -m \"(300a,0180)[0].(0018,5100)=HFS\" plan.dcm")


def _num(v) -> float | None:
    """A DS/IS/FD value as float, None when missing or empty, NaN when not numeric."""
    if v is None or v == "":
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _weights(cp) -> float:
    w = cp.get("ScanSpotMetersetWeights", None)
    if w is None or w == "":
        return 0.0
    if isinstance(w, (bytes, bytearray)):  # undecoded FL values (little endian)
        import numpy as np

        return float(np.frombuffer(bytes(w[: len(w) // 4 * 4]), dtype="<f4").astype(float).sum())
    try:
        vals = [float(x) for x in (w if hasattr(w, "__len__") and not isinstance(w, (str, bytes)) else [w])]
    except (TypeError, ValueError):
        return math.nan
    return float(sum(vals))


def check_plan(ds, src: str) -> None:
    """Raise :class:`DicomInputError` if the RT Ion Plan data set ``ds`` contradicts itself (see the module
    docstring); ``src`` names the file in the messages."""
    beams = list(ds.get("IonBeamSequence", None) or [])
    labels = []
    numbers: dict[int, int] = {}
    for bi, b in enumerate(beams):
        n = _num(b.get("BeamNumber", None))
        if n is None or not math.isfinite(n) or n != int(n):
            raise DicomInputError(f"{src} beam #{bi + 1} ({b.get('BeamName', '')}): BeamNumber (300A,00C0) is missing "
                                  f"or not an integer ({b.get('BeamNumber', None)!r}); the plan is damaged: export "
                                  "it again")
        n = int(n)
        if n in numbers:
            raise DicomInputError(
                f"{src}: beams #{numbers[n] + 1} and #{bi + 1} share BeamNumber (300A,00C0) {n}; each beam needs its "
                "own number (the MU of the fraction group would go to both): the plan is damaged, export it again")
        numbers[n] = bi
        labels.append(f"{src} beam {n} ({b.get('BeamName', '') or ''})")
    _check_fraction_group(ds, beams, numbers, labels, src)
    # set-up and verification fields are left out of the dose (rtplan._parse_plan): their control points, meterset
    # and set-up are not checked (an Eclipse kV set-up field has no spots and no FinalCumulativeMetersetWeight)
    # so are treatment beams left at 0 MU (is_zero_mu_beam)
    mu = beam_metersets(ds)
    treated = [(bi, b, where) for bi, (b, where) in enumerate(zip(beams, labels)) if _is_treatment(b)
               and not is_zero_mu_beam(b, mu.get(int(_num(b.get("BeamNumber", None)) or 0)))]
    _check_setups(ds, [b for _, b, _ in treated], [where for _, _, where in treated], src)
    for bi, b, where in treated:
        _check_control_points(b, where, bi)
        _check_range_shifters(b, where)


def is_zero_mu_beam(b, beam_meterset: float | None) -> bool:
    """Whether treatment beam ``b`` is left at 0 MU: FinalCumulativeMetersetWeight (300A,010E) 0, its
    BeamMeterset (300A,0086) ``beam_meterset`` 0 and no spot weight above 0 (a field kept in a course plan at 0 MU).
    Such a beam delivers nothing and is left out of the dose, as a set-up field is (audit 18 course F8: before, it
    refused the plan); a meterset of 0 with spot weights, or weights without a meterset, stays a damaged plan."""
    fcmw = _num(b.get("FinalCumulativeMetersetWeight", None))
    if fcmw != 0 or beam_meterset is None or beam_meterset != 0:
        return False
    return not any(_weights(cp) != 0 for cp in b.get("IonControlPointSequence", None) or [])


def beam_metersets(ds) -> dict[int, float | None]:
    """BeamMeterset (300A,0086) of each beam the first fraction group references (None where not a number)."""
    out: dict[int, float | None] = {}
    for fg in (ds.get("FractionGroupSequence", None) or [])[:1]:
        for rb in fg.get("ReferencedBeamSequence", None) or []:
            n = _num(rb.get("ReferencedBeamNumber", None))
            if n is not None and math.isfinite(n) and n == int(n):
                out[int(n)] = _num(rb.get("BeamMeterset", None))
    return out


def _is_treatment(b) -> bool:
    """Whether a beam delivers the plan's dose (TreatmentDeliveryType (300A,00CE) TREATMENT, CONTINUATION or none)."""
    return str(b.get("TreatmentDeliveryType", "") or "").strip().upper() in _TREATMENT_TYPES


def _check_fraction_group(ds, beams, numbers: dict[int, int], labels: list[str], src: str) -> None:
    fgs = ds.get("FractionGroupSequence", None) or []
    if not fgs:
        raise DicomInputError(f"{src}: no FractionGroupSequence (300A,0070): the MU of the beams are unknown")
    if len(fgs) > 1:
        raise DicomInputError(f"{src}: {len(fgs)} fraction groups (FractionGroupSequence (300A,0070)), e.g. a plan "
                              "and its boost: mcproton computes the dose of one fraction group and would label it as "
                              "the plan's; export each fraction group as a plan of its own (one phase per plan, as "
                              "the planning systems can) and compute them one by one")
    fg = fgs[0]
    nfx = _num(fg.get("NumberOfFractionsPlanned", None))
    if nfx is None or not math.isfinite(nfx) or nfx < 1 or nfx != int(nfx):
        raise DicomInputError(f"{src}: NumberOfFractionsPlanned (300A,0078) of the fraction group is "
                              f"{fg.get('NumberOfFractionsPlanned', None)!r}; it must be a whole number >= 1 (the "
                              "plan dose depends on it): set it in the plan or export the plan again")
    refs = list(fg.get("ReferencedBeamSequence", None) or [])
    seen: dict[int, int] = {}
    for ri, rb in enumerate(refs):
        n = _num(rb.get("ReferencedBeamNumber", None))
        if n is None or not math.isfinite(n) or n != int(n):
            raise DicomInputError(f"{src}: ReferencedBeamSequence (300C,0004) item {ri} has no valid "
                                  "ReferencedBeamNumber (300C,0006); the plan is damaged: export it again")
        n = int(n)
        if n in seen:
            raise DicomInputError(f"{src}: ReferencedBeamSequence (300C,0004) references beam {n} twice (items "
                                  f"{seen[n]} and {ri}); the plan is damaged: export it again")
        seen[n] = ri
        if n not in numbers:
            raise DicomInputError(
                f"{src}: the fraction group references beam {n} (ReferencedBeamSequence (300C,0004) item {ri}), "
                f"which the IonBeamSequence does not hold (beams {sorted(numbers)}); a beam is missing: the plan is "
                "damaged or incomplete, export it again")
        bm = _num(rb.get("BeamMeterset", None))
        b = beams[numbers[n]]
        if bm is not None and bm <= 0 and _is_treatment(b) and any(
                _weights(cp) > 0 for cp in b.get("IonControlPointSequence", []) or []):
            raise DicomInputError(f"{labels[numbers[n]]}: BeamMeterset (300A,0086) is {bm:g} although the beam has "
                                  "spot weights; the beam would deliver nothing: the plan is damaged")
    for n, bi in numbers.items():
        if n not in seen and _is_treatment(beams[bi]):
            raise DicomInputError(f"{labels[bi]}: the beam is not referenced by the fraction group's "
                                  "ReferencedBeamSequence (300C,0004), so its MU are unknown; the plan is damaged")
    nb = _num(fg.get("NumberOfBeams", None))
    if nb is not None and nb != len(refs):
        raise DicomInputError(f"{src}: NumberOfBeams (300A,0080) of the fraction group is {fg.get('NumberOfBeams')} "
                              f"but its ReferencedBeamSequence (300C,0004) holds {len(refs)} beams; the plan is "
                              "damaged: export it again")


def _check_setups(ds, beams, labels: list[str], src: str) -> None:
    setups: dict[int, str] = {}
    for s in ds.get("PatientSetupSequence", None) or []:
        n = _num(s.get("PatientSetupNumber", None))
        setups[int(n) if n is not None and math.isfinite(n) else -1] = str(s.get("PatientPosition", "") or "").strip()
    if not setups:
        raise DicomInputError(f"{src}: the plan has no PatientSetupSequence (300A,0180), so the patient position "
                              f"is unknown and IEC beam angles cannot be mapped to the CT: {_POSITION_FIX}")
    dangling = []   # (beam, its reference, the only setup) of a one-setup plan whose beam names another setup
    for b, where in zip(beams, labels):
        ref = _num(b.get("ReferencedPatientSetupNumber", None))
        if ref is not None and math.isfinite(ref) and int(ref) in setups:
            pos, what = setups[int(ref)], f"patient setup {int(ref)}"
        elif len(setups) == 1:   # no reference (Type 3; OpenTPS writes none) or one to a setup the plan lacks
            (k, pos), = setups.items()
            what = f"patient setup {k}"
            if ref is not None:
                dangling.append((where, b.get("ReferencedPatientSetupNumber", None), k, pos))
        else:
            raise DicomInputError(
                f"{where}: ReferencedPatientSetupNumber (300C,006A) {b.get('ReferencedPatientSetupNumber', None)!r} "
                f"names none of the patient setups {sorted(setups)}; the patient position of the beam is unknown: "
                "the plan is damaged, export it again")
        if not pos:
            raise DicomInputError(f"{where}: the PatientPosition (0018,5100) of {what} is empty (OpenTPS writes it "
                                  f"so); the beam cannot be placed in the CT without it: {_POSITION_FIX}")
    for where, ref, k, pos in dangling:   # the plan's one position is the only one to take: said, not refused
        warn(f"{where}: ReferencedPatientSetupNumber (300C,006A) {str(ref)!r} names no patient setup of the plan, "
             f"whose only one is patient setup {k} ({pos}); the beam is placed with that setup.  If the beam was "
             "planned in another patient position (a beam merged from another plan?), its dose is wrong: check the "
             "plan's set-up in the planning system and export it again", McprotonWarning)


def _energies(cps) -> tuple[list[float | None], list[float | None]]:
    """Each control point's NominalBeamEnergy as it states it (None where it leaves it out), and as it states or
    inherits it from the control points before (None before the first that states one)."""
    stated = [_num(cp.get("NominalBeamEnergy", None)) for cp in cps]
    at: list[float | None] = []
    for e in stated:
        at.append(e if e is not None else (at[-1] if at else None))
    return stated, at


def _check_inherited_energy(cps, w: list[float], i: int, where: str, bi: int, stated: list[float | None],
                            at: list[float | None]) -> None:
    """Control point ``i`` carries spot weights ``w[i]`` but states no NominalBeamEnergy (300A,0114), which PS3.3
    C.8.8.25 requires only in the first control point and where the energy changes.  Accepted where the energy it
    inherits is unambiguous: the control point just before states it and carries no weights, and the control point
    before that is at another energy (or there is none), so control point ``i`` continues the layer that one starts
    (a layer written as a zero-weight control point and one with the weights; Eclipse leaves the energy out of the
    second control point of a one-layer beam).  Refused otherwise: where weights at that energy were delivered
    before, or the inheriting control point follows one with weights, a NominalBeamEnergy lost at the start of a new
    layer looks the same, and the layer's range would be another's.  The message names the energy that would be
    taken, where from, and how to state it (audit 27, spotsem F4: before, every such control point was refused as
    inheriting "the previous layer's energy", also where it was its own layer's).  ``stated``, ``at``: the beam's
    :func:`_energies`, built once per beam (before, at every such control point: O(n^2) look-ups of the plan)."""
    j = max((k for k in range(i) if stated[k] is not None), default=None)
    if j is None:
        raise DicomInputError(f"{where} control point {i}: the control point carries spot weights but neither it nor "
                              "an earlier one states NominalBeamEnergy (300A,0114) (required in the first control "
                              "point, PS3.3 C.8.8.25): the plan is damaged, export it again")
    energy, text = stated[j], str(cps[j].get("NominalBeamEnergy")).strip()   # text: as the plan writes it
    if j == i - 1 and w[j] == 0 and (j == 0 or at[j - 1] != energy):
        return
    before = [k for k in range(i) if w[k] > 0 and at[k] == energy]
    why = (f"spot weights at {energy:g} MeV were delivered before (control point {before[-1]}), so this control point "
           "may start a new layer whose NominalBeamEnergy was lost" if before else
           f"mcproton takes an energy left out only from the control point just before (here {i - 1}), where that "
           "one states it, carries no weights and follows a control point at another energy (the start of the same "
           "layer)")
    raise DicomInputError(
        f"{where} control point {i}: the control point carries spot weights but states no NominalBeamEnergy "
        f"(300A,0114), so it would take {energy:g} MeV from control point {j}.  PS3.3 C.8.8.25 leaves the energy out "
        f"only where it does not change, but here that cannot be told from a tag lost: {why}, and a wrong energy "
        f"moves the layer's range.  If {energy:g} MeV is this control point's energy, state it, e.g. with DCMTK: "
        f"dcmodify -m \"(300a,03a2)[{bi}].(300a,03a8)[{i}].(300a,0114)={text}\" plan.dcm; otherwise the plan is "
        "damaged: export it again from the planning system")


def _check_control_points(b, where: str, bi: int) -> None:
    cps = list(b.get("IonControlPointSequence", None) or [])
    n = len(cps)
    ncp = _num(b.get("NumberOfControlPoints", None))
    if ncp is not None and ncp != n:  # Type 1, but older OpenTPS versions do not write it: checked when present
        raise DicomInputError(
            f"{where}: NumberOfControlPoints (300A,0110) is {b.get('NumberOfControlPoints')} but the "
            f"IonControlPointSequence (300A,03A8) holds {n} control points; control points are missing (a "
            "damaged or truncated plan): export it again")
    for i, cp in enumerate(cps):
        idx = _num(cp.get("ControlPointIndex", None))
        if idx is not None and idx != i:
            raise DicomInputError(f"{where} control point {i}: ControlPointIndex (300A,0112) is "
                                  f"{cp.get('ControlPointIndex')}; control points are missing or out of order: "
                                  "the plan is damaged, export it again")
    for i, cp in enumerate(cps):
        nsp, sw = _num(cp.get("NumberOfScanSpotPositions", None)), cp.get("ScanSpotMetersetWeights", None)
        if nsp is not None and sw not in (None, ""):
            nw = (len(sw) // 4 if isinstance(sw, (bytes, bytearray))   # undecoded FL values (UN), as _weights
                  else len(sw) if hasattr(sw, "__len__") and not isinstance(sw, str) else 1)
            if nsp != nw:
                raise DicomInputError(f"{where} control point {i}: NumberOfScanSpotPositions (300A,0392) is "
                                      f"{cp.get('NumberOfScanSpotPositions')} but ScanSpotMetersetWeights (300A,0396) "
                                      f"holds {nw} values; the plan is damaged: export it again")
    w = [_weights(cp) for cp in cps]
    energies = None   # the beam's (stated, at), built at the first control point that inherits its energy
    for i, x in enumerate(w):
        if not math.isfinite(x) or x < 0:
            raise DicomInputError(f"{where} control point {i}: ScanSpotMetersetWeights (300A,0396) are not finite "
                                  "non-negative numbers")
        if x > 0 and _num(cps[i].get("NominalBeamEnergy", None)) is None:
            if energies is None:
                energies = _energies(cps)
            _check_inherited_energy(cps, w, i, where, bi, *energies)
    fcmw = _num(b.get("FinalCumulativeMetersetWeight", None))
    if fcmw is None or not math.isfinite(fcmw) or fcmw <= 0:
        raise DicomInputError(f"{where}: FinalCumulativeMetersetWeight (300A,010E) "
                              f"{b.get('FinalCumulativeMetersetWeight', None)!r} must be a number > 0")
    total = sum(w)
    if abs(total - fcmw) > WEIGHT_RTOL * fcmw:
        raise DicomInputError(
            f"{where}: the spot weights (ScanSpotMetersetWeights (300A,0396)) sum to {total:.6g} but "
            f"FinalCumulativeMetersetWeight (300A,010E) is {fcmw:.6g} "
            f"(ratio {fcmw / total if total else math.inf:.4g}, "
            f"tolerance {WEIGHT_RTOL:g}); every spot's MU would be scaled by {total / fcmw:.4g}: the plan is "
            "damaged (layers missing or a wrong total), export it again")
    cum = [_num(cp.get("CumulativeMetersetWeight", None)) for cp in cps]
    if all(c is None for c in cum):
        return  # OpenTPS: one control point per layer, no cumulative weights (see the module docstring)
    for i, c in enumerate(cum):
        if c is None or not math.isfinite(c):
            raise DicomInputError(f"{where} control point {i}: CumulativeMetersetWeight (300A,0134) is missing "
                                  "or not a number while other control points have it; the plan is damaged: "
                                  "export it again")
    n_layers = max(sum(1 for x in w if x > 0), 1)
    layer_w = fcmw / n_layers
    if abs(cum[0]) > WEIGHT_RTOL * layer_w:
        raise DicomInputError(f"{where} control point 0: CumulativeMetersetWeight (300A,0134) is {cum[0]:g}, not 0; "
                              "control points at the start of the beam are missing: the plan is damaged")
    for i in range(n - 1):
        if cum[i + 1] - cum[i] < -WEIGHT_RTOL * layer_w:
            raise DicomInputError(f"{where} control point {i + 1}: CumulativeMetersetWeight (300A,0134) falls from "
                                  f"{cum[i]:g} to {cum[i + 1]:g}; it must rise monotonically: the plan is damaged")
    for i in range(n - 1):
        rise = cum[i + 1] - cum[i]
        if abs(rise - w[i]) > WEIGHT_RTOL * max(w[i], layer_w):
            raise DicomInputError(
                f"{where} control point {i}: CumulativeMetersetWeight (300A,0134) rises by {rise:.6g} to control "
                f"point {i + 1} but the control point's spot weights sum to {w[i]:.6g}; control points are missing "
                "or altered: the plan is damaged, export it again")
    if abs(cum[-1] - fcmw) > WEIGHT_RTOL * fcmw:
        raise DicomInputError(
            f"{where} control point {n - 1}: the last CumulativeMetersetWeight (300A,0134) is {cum[-1]:.6g}, not the "
            f"FinalCumulativeMetersetWeight (300A,010E) {fcmw:.6g}; control points are missing at the end of the "
            "beam: the plan is damaged, export it again")
    # layer pairs (Eclipse, RayStation): cp 2k carries the weights, cp 2k+1 repeats the energy with zero weights.
    # Any other layout that the cumulative weights above describe (PS3.3 C.8.8.25 asks only that each control point's
    # weights be the rise of CumulativeMetersetWeight to the next and the last one's be 0), e.g. one control point
    # per layer and a closing one, reads unambiguously: each control point with weights is a layer at its own
    # NominalBeamEnergy (checked above).  Its last control point must then carry no weights (I/O review 2026-12-06,
    # F4: such a plan was refused as damaged)
    if n % 2 or any(w[i] != 0 for i in range(1, n, 2)):
        # without the pairs' zero-weight control points to tell a shift, each control point's rise must be its own
        # weights to WEIGHT_RTOL of them (not of a mean layer: a spot weight shifted into a zero-weight control
        # point is then caught), plus the DS rounding of the cumulative weights (CUM_DS_RTOL of the beam's: with
        # 1e-9, a layer of weight 2.4 in a beam of 52 000, whose cumulative weights a planning system writes to
        # 0.01, was refused as damaged on rounding alone, while the same plan in pairs was read: review B of
        # 2026-12-06, F2)
        for i in range(n - 1):
            rise = cum[i + 1] - cum[i]
            if abs(rise - w[i]) > WEIGHT_RTOL * w[i] + CUM_DS_RTOL * fcmw:
                raise DicomInputError(
                    f"{where} control point {i}: the control points are not in layer pairs (a layer's control point "
                    "with the spot weights, then one with zero weights, as Eclipse and RayStation write them), and in "
                    f"any other layout each control point's spot weights ({w[i]:.6g}) must be the rise of "
                    f"CumulativeMetersetWeight (300A,0134) to the next ({rise:.6g}; PS3.3 C.8.8.25): control points "
                    "are missing or shifted, or weights altered: the plan is damaged, export it again")
        if w[-1] != 0:
            raise DicomInputError(
                f"{where} control point {n - 1}: the last control point carries spot weights (ScanSpotMetersetWeights "
                "(300A,0396) must be 0 there, PS3.3 C.8.8.25: the cumulative meterset ends at it); control points "
                "are missing at the end of the beam: the plan is damaged, export it again")
        return
    energy = None
    for i, cp in enumerate(cps):
        e = _num(cp.get("NominalBeamEnergy", None))
        if i % 2 == 0 and e is None and i > 0:
            raise DicomInputError(f"{where} control point {i}: no NominalBeamEnergy (300A,0114) at the start of an "
                                  "energy layer (control points come in pairs per layer); the plan is damaged")
        if i % 2 == 1:
            if w[i] != 0:
                raise DicomInputError(
                    f"{where} control point {i}: the second control point of an energy layer carries spot weights "
                    "(ScanSpotMetersetWeights (300A,0396) must be 0 there); control points are missing or shifted: "
                    "the plan is damaged, export it again")
            if e is not None and energy is not None and abs(e - energy) > 1e-6 * max(energy, 1.0):
                raise DicomInputError(
                    f"{where} control point {i}: NominalBeamEnergy (300A,0114) {e:g} MeV differs from {energy:g} MeV "
                    f"of control point {i - 1}, the first of its layer pair; control points are missing or shifted: "
                    "the plan is damaged, export it again")
        if e is not None:
            energy = e


def _check_range_shifters(b, where: str) -> None:
    items = [r for r in (b.get("RangeShifterSequence", None) or []) if str(r.get("RangeShifterID", "") or "")]
    nrs = _num(b.get("NumberOfRangeShifters", None))
    if nrs is not None and nrs != len(items):
        raise DicomInputError(f"{where}: NumberOfRangeShifters (300A,0312) is {b.get('NumberOfRangeShifters')} but the "
                              f"RangeShifterSequence (300A,0314) describes {len(items)}; the plan is damaged: export "
                              "it again")
    rs_numbers = set()
    for r in items:
        k = _num(r.get("RangeShifterNumber", None))
        if k is None or not math.isfinite(k) or int(k) in rs_numbers:
            raise DicomInputError(f"{where}: RangeShifterNumber (300A,0316) of range shifter "
                                  f"{r.get('RangeShifterID')!r} is missing or repeated")
        rs_numbers.add(int(k))
    cps = list(b.get("IonControlPointSequence", None) or [])
    snouts = [x for x in (b.get("SnoutSequence", None) or []) if str(x.get("SnoutID", "") or "")]
    if snouts and cps and "SnoutPosition" not in cps[0]:
        raise DicomInputError(f"{where} control point 0: the beam has a snout ({snouts[0].get('SnoutID')}) "
                              "but its first "
                              "control point has no SnoutPosition (300A,030D) (Type 2C); the plan is damaged: export "
                              "it again")
    if items and cps and not (cps[0].get("RangeShifterSettingsSequence", None) or []):
        raise DicomInputError(
            f"{where} control point 0: the beam has {len(items)} range shifter(s) but no RangeShifterSettingsSequence "
            "(300A,0360) in its first control point, so whether a shifter is IN is unknown: the plan is damaged, "
            "export it again")
    for i, cp in enumerate(cps):
        for s in cp.get("RangeShifterSettingsSequence", None) or []:
            if items and not str(s.get("RangeShifterSetting", "") or "").strip():
                raise DicomInputError(f"{where} control point {i}: RangeShifterSetting (300A,0362) is missing or "
                                      "empty, so whether the range shifter is IN is unknown: the plan is damaged")
            ref = _num(s.get("ReferencedRangeShifterNumber", None))
            if items and (ref is None or not math.isfinite(ref) or int(ref) not in rs_numbers):
                raise DicomInputError(
                    f"{where} control point {i}: ReferencedRangeShifterNumber (300C,0100) "
                    f"{s.get('ReferencedRangeShifterNumber', None)!r} names none of the beam's range shifters "
                    f"{sorted(rs_numbers)}; the plan is damaged")
            wet = _num(s.get("RangeShifterWaterEquivalentThickness", None))
            setting = str(s.get("RangeShifterSetting", "") or "").strip()
            out = setting.upper() == "OUT" or _num(setting) == 0   # 0, 0.0: OUT as rtplan._shifter_setting reads it
            if wet is not None and not (math.isfinite(wet) and (wet > 0 or (wet == 0 and out))):
                raise DicomInputError(
                    f"{where} control point {i}: RangeShifterWaterEquivalentThickness (300A,0366) is "
                    f"{s.get('RangeShifterWaterEquivalentThickness')!r}; a range shifter's water-equivalent thickness "
                    "must be > 0 mm (a negative one would make the beam deeper): correct the plan")
            dist = _num(s.get("IsocenterToRangeShifterDistance", None))
            if dist is not None and not (math.isfinite(dist) and dist >= 0):
                raise DicomInputError(f"{where} control point {i}: IsocenterToRangeShifterDistance (300A,0364) is "
                                      f"{s.get('IsocenterToRangeShifterDistance')!r}; it must be a distance >= 0 mm")
