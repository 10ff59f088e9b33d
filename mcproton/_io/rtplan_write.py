"""DICOM RT Ion Plan export of a plan made by :mod:`mcproton.planning` (:func:`write_rtplan`).

The file says what the plan's Monte Carlo simulates, so that mcproton's own reader (:func:`mcproton.dicom.load_rtplan`
and :func:`~mcproton.dicom.plan_to_beams` with the plan's beam model) gives back the same beams: the same spots, at the
same positions and in the same directions, with the same energies, protons and range shifter.  Before (2026-12-05)
``mcproton demo`` wrote its CT, RT Struct and RT Dose but no plan, and its RT Dose referenced a placeholder plan UID,
so a planning system (and ``mcproton check``) could not load the demo as a complete patient.

What is written (PS3.3 A.50, RT Ion Plan IOD)
----------------------------------------------
Patient, General Study, Frame of Reference (the ``study``'s: the CT's), RT Series (Modality RTPLAN), General
Equipment, RT General Plan (RTPlanLabel, RTPlanName, RTPlanDate/Time, RTPlanGeometry PATIENT with the RT Structure
Set referenced), RT Patient Setup (one setup, the study's PatientPosition, default HFS), RT Fraction Scheme (one
fraction group: NumberOfFractionsPlanned = ``fractions``; per beam its BeamMeterset in MU, per fraction), RT Ion
Beams (per field: BeamType STATIC, RadiationType PROTON, TreatmentDeliveryType TREATMENT, the beam model's first
treatment machine, PrimaryDosimeterUnit MU, ScanMode MODULATED (ModulatedScanModeType STATIONARY), its
VirtualSourceAxisDistances, its range shifter as RangeShifterType BINARY, and two control points per energy layer,
highest energy first, the second repeating the spot map with zero weights, as Eclipse and RayStation write them),
Approval (UNAPPROVED), SOP Common.  The range
shifter is IN from the first control point (RangeShifterSettingsSequence with its IsocenterToRangeShifterDistance
and the beam model's RangeShifterWaterEquivalentThickness).  No tolerance table, snout (SnoutSequence,
SnoutPosition: where the shifter sits on the snout is the machine's, not the beam model's) or set-up devices.  The
prescription is a TARGET dose reference (DoseReferenceSequence: TargetPrescriptionDose for all fractions, the
target ROI or the SITE) with each beam's BeamDose per fraction (:func:`write_rtplan`).

Units and the inverse of ``plan_to_beams``
------------------------------------------
A planner spot's weight is protons per fraction; its MU is protons / (the beam model's protons per MU at the
layer's nominal energy), the inverse of ``plan_to_beams``.  ScanSpotMetersetWeights are the spots' MU,
FinalCumulativeMetersetWeight their sum and the beam's BeamMeterset the same number, so that the reader's
``BeamMeterset x weight / FinalCumulativeMetersetWeight`` is the MU written.

Geometry
--------
A field's spots are (u, v) in its beam frame (``axis_x``, ``axis_y``, mm at the isocentre plane); the plan's spots are
(X, Y) along the IEC gantry axes Xg, Yg (mcproton/_io/rtplan.py, Geometry): X = (u axis_x + v axis_y) . Xg, Y = ...
. Yg.  The gantry angle is the one whose beam direction (:func:`mcproton.dicom.beam_direction_lps`) is the field's,
at couch angle 0: a field outside the plane that the gantry turns in (it would need a couch angle) is refused.
With different virtual source-axis distances in x and y (dcpt_v5: 2000 and 2560 mm) the spot rays are the field's
only if ``axis_x`` lies along +-Xg (true for every coplanar field of a head-first or feet-first patient); another
field is refused rather than written with other rays.

Precision.  DS values (IsocenterPosition, energies, angles, distances, metersets) carry 12 significant digits.  The
spot positions and weights are FL (32-bit floats, PS3.6): each is rounded to float32, a relative 6e-8 (at most
3.6e-6 mm for a spot 60 mm off the axis, 6e-8 of each spot's protons).  The Monte Carlo of the plan used the
unrounded values: a difference far below anything a dose shows.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .dicom_common import RT_ION_PLAN_STORAGE, RT_STRUCTURE_SET_STORAGE, StudyReference

#: a field's direction and the beam direction of the gantry angle written agree to this (unit vectors)
_DIRECTION_TOL = 1e-9


def _ds(v: float) -> str:
    """A DS value (at most 16 characters) with 12 significant digits, -0 written as 0."""
    from .dicom_common import ds_string

    return ds_string(float(v) + 0.0)


def gantry_angle_for(direction, patient_position: str = "HFS") -> float:
    """The IEC gantry angle (degrees, 0 <= angle < 360) at couch angle 0 whose beam travels along ``direction``
    (LPS, any length) for a patient lying in ``patient_position``: the inverse of
    :func:`mcproton.dicom.beam_direction_lps`.  A whole number of 1e-6 degrees where that gives the same
    direction to 1e-12 (the angles a planner is given come out as they were given).  ``ValueError`` for a direction
    the gantry does not reach at couch 0 (it has a component along the couch's long axis)."""
    from .rtplan import _A_LPS_TO_TABLE, beam_direction_lps

    d = np.asarray(direction, float)
    d = d / np.linalg.norm(d)
    pos = str(patient_position).strip().upper()
    if pos not in _A_LPS_TO_TABLE:
        raise ValueError(f"patient position {patient_position!r} is not one the plan geometry knows "
                         f"({', '.join(sorted(_A_LPS_TO_TABLE))})")
    t = _A_LPS_TO_TABLE[pos] @ d                  # in IEC table-top (= fixed at couch 0) coordinates
    if abs(t[1]) > _DIRECTION_TOL:
        raise ValueError(f"the beam direction {np.round(d, 6).tolist()} (LPS) has a component {t[1]:.3g} along the "
                         "couch's long axis: the gantry reaches it only with a couch angle, which the RT Ion Plan "
                         "writer does not choose; plan coplanar fields (a gantry angle, couch 0)")
    # at couch 0 the beam travels along (-sin g, 0, -cos g) in IEC fixed coordinates
    angle = math.degrees(math.atan2(-t[0], -t[2])) % 360.0
    for cand in (round(angle, 6) % 360.0, angle):
        if np.max(np.abs(beam_direction_lps(cand, 0.0, pos) - d)) <= 1e-12:
            return float(cand)
    return float(angle)


def _field_beam(f, number: int, position: str) -> dict:
    """What the plan says of one field: its angles, isocentre, machine and layers (highest energy first), with the
    spots' (X, Y) in IEC gantry coordinates and their MU."""
    from .rtplan import gantry_to_lps_matrix

    m = f.machine
    if m is None or f.nominal_energy_mev is None:
        raise ValueError(f"field {f.name!r} was planned with generic pencil beams (no beam model): an RT Ion Plan "
                         "needs a machine's nominal energies and monitor units; plan it with beam_model=...")
    model = m.model
    gantry = gantry_angle_for(f.direction, position)
    g = float(_ds(gantry))                         # as the reader will read it
    mat = gantry_to_lps_matrix(g, 0.0, position)
    xg, yg, zg = mat[:, 0], mat[:, 1], mat[:, 2]
    if np.max(np.abs(-zg - np.asarray(f.direction, float) / np.linalg.norm(f.direction))) > _DIRECTION_TOL:
        raise ValueError(f"field {f.name!r}: gantry angle {g:g} does not reproduce its direction")
    ax, ay = np.asarray(f.axis_x, float), np.asarray(f.axis_y, float)
    vsad = m.vsad_mm
    if not all(np.isfinite(vsad)):
        raise ValueError(f"beam model {model.name!r} gives no virtual source-axis distances; the RT Ion Plan needs "
                         "them: add virtual_source_axis_distances_mm to the model")
    if abs(abs(float(ax @ xg)) - 1.0) > _DIRECTION_TOL:
        # the reader puts each spot's x axis along the IEC gantry X axis: another axis would turn its spots (their
        # sigmas in x and y, and with different virtual source-axis distances their rays)
        raise ValueError(f"field {f.name!r}: its spot x axis {np.round(ax, 6).tolist()} is not along the IEC gantry "
                         f"X axis {np.round(xg, 6).tolist()}: an RT Ion Plan cannot express it (its spots would "
                         "be read turned)")
    w = np.asarray(f.weights, float)
    keep = w > 0
    if not keep.any():
        raise ValueError(f"field {f.name!r} has no spot with a weight above 0: an RT Ion Plan beam needs spots (an "
                         "empty beam is refused by readers); leave the field out of the plan")
    u, v, w = np.asarray(f.u_mm, float)[keep], np.asarray(f.v_mm, float)[keep], w[keep]
    nominal = np.asarray(f.nominal_energy_mev, float)[keep]
    x = u * float(ax @ xg) + v * float(ay @ xg)
    y = u * float(ax @ yg) + v * float(ay @ yg)
    layers = []
    for e in sorted(set(nominal.tolist()), reverse=True):        # highest energy first, spots in the field's order
        sel = np.flatnonzero(nominal == e)
        mu = (w[sel] / model.at(e).protons_per_mu).astype(np.float32)
        layers.append({"energy": float(e), "xy": np.stack([x[sel], y[sel]], axis=1).astype(np.float32), "mu": mu})
    return {"number": number, "name": f.name, "field": f, "gantry": g, "iso": np.asarray(f.isocentre_mm, float),
            "model": model, "shifter": m.shifter, "shifter_distance": m.shifter_distance_mm, "vsad": vsad,
            "layers": layers}


def spot_order(field) -> np.ndarray:
    """The indices of ``field``'s spots (weight > 0) in the order :func:`write_rtplan` writes them, which is the
    order ``plan_to_beams`` reads them in: layer by layer from the highest nominal energy, within a layer as in the
    field."""
    w = np.asarray(field.weights, float)
    idx = np.flatnonzero(w > 0)
    nominal = np.asarray(field.nominal_energy_mev, float)[idx]
    return idx[np.argsort(-nominal, kind="stable")]


def write_rtplan(plan, path: str | Path, *, study: StudyReference, fractions: int = 1, label: str = "",
                 structure_set_sop_instance_uid: str = "", sop_instance_uid: str | None = None,
                 series_description: str = "mcproton plan", series_number: int = 3,
                 target_roi_number: int | None = None) -> dict:
    """Write ``plan`` (a :class:`mcproton.planning.Plan` planned on a beam model, e.g. the demo's) as a DICOM RT Ion
    Plan at ``path`` (written atomically); see the module docstring for what it holds.

    ``study``: the patient, study and frame of reference (the CT's; its ``patient_position``, default HFS, is the
    plan's PatientPosition).  ``fractions``: NumberOfFractionsPlanned (the plan's spot weights are one fraction's).
    ``label``: RTPlanLabel (16 characters; default the plan's name), RTPlanName is the plan's name.
    ``structure_set_sop_instance_uid``: the RT Structure Set the plan's target comes from (ReferencedStructureSet
    Sequence, required by PS3.3 for a PATIENT plan: without it the file is read by mcproton but a validator flags
    it).  ``sop_instance_uid``: the plan's (default a new one).

    Returns what was written: ``path``, ``sop_instance_uid``, ``fractions_planned``, the ``study_instance_uid``
    and ``frame_of_reference_uid`` written (new ones where ``study`` has none: give the RT Dose and RT Struct
    these), and per beam its number, name, gantry angle, spots, layers, MU per fraction and range shifter.

    The prescription is written as a TARGET dose reference (DoseReferenceSequence): TargetPrescriptionDose = the
    plan's ``prescription_gy_rbe`` x ``fractions`` (Gy(RBE), all fractions, as Eclipse and RayStation write a proton
    plan's), of the structure set's ROI ``target_roi_number`` (DoseReferenceStructureType VOLUME) when given, else
    of the treated SITE; each beam's BeamDose (Gy(RBE) per fraction, BeamDoseType EFFECTIVE) is its share of the
    target's mean dose in the planner's model (``plan.model_stats["field_mean_dose_gy"]`` x the plan's RBE), where
    the plan has it.
    ``ValueError`` for a plan the file cannot express exactly: a field without a beam model, a beam model without
    virtual source-axis distances, a field needing a couch angle or whose spot x axis is not the gantry X axis, a
    field without a spot of positive weight, a plan whose target mask is not on the grid it was planned on or whose
    CT (FrameOfReferenceUID) is not ``study``'s."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DSeq
    from pydicom.uid import generate_uid

    from .atomic import atomic_write_file
    from .dicom_common import new_file_dataset, save_dataset, set_patient_study_series

    if isinstance(fractions, bool) or int(fractions) != fractions or fractions < 1:
        raise ValueError(f"fractions must be a whole number >= 1 (NumberOfFractionsPlanned); got {fractions!r}")
    if target_roi_number is not None and (isinstance(target_roi_number, bool) or int(target_roi_number)
                                          != target_roi_number or target_roi_number < 1):
        raise ValueError(f"target_roi_number must be the target's ROINumber in the structure set (a whole number "
                         f">= 1) or None; got {target_roi_number!r}")
    if target_roi_number is not None and not structure_set_sop_instance_uid:
        raise ValueError("target_roi_number names an ROI of a structure set: give structure_set_sop_instance_uid "
                         "too (the RT Structure Set that holds it)")
    if not plan.fields:
        raise ValueError("the plan has no fields")
    _check_plan_grid(plan, study)
    if not (study.patient_position or "").strip():
        from .errors import warn

        warn("the study has no PatientPosition (the CT does not say): the plan is written for HFS; give "
             "study.replace(patient_position=...) if the patient lay otherwise", stacklevel=2)
    study = study.resolved()
    position = (study.patient_position or "HFS").strip().upper()
    beams = [_field_beam(f, i + 1, position) for i, f in enumerate(plan.fields)]
    date, time = study.now_date_time()
    path = Path(path)
    ds, sop_uid = new_file_dataset(path, RT_ION_PLAN_STORAGE, sop_instance_uid)
    set_patient_study_series(ds, study, modality="RTPLAN", date=date, time=time,
                             series_description=series_description, series_instance_uid=str(generate_uid()),
                             series_number=series_number, instance_number=1)
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.OperatorsName = ""
    ds.RTPlanLabel = (label or plan.name)[:16]
    ds.RTPlanName = str(plan.name)[:64]
    ds.RTPlanDate, ds.RTPlanTime = date, time
    ds.RTPlanGeometry = "PATIENT"
    if structure_set_sop_instance_uid:
        rs = Dataset()
        rs.ReferencedSOPClassUID = RT_STRUCTURE_SET_STORAGE
        rs.ReferencedSOPInstanceUID = structure_set_sop_instance_uid
        ds.ReferencedStructureSetSequence = DSeq([rs])
    dref = Dataset()
    dref.DoseReferenceNumber = 1
    dref.DoseReferenceUID = str(generate_uid())
    if target_roi_number is not None:
        dref.DoseReferenceStructureType = "VOLUME"
        dref.ReferencedROINumber = int(target_roi_number)
    else:
        dref.DoseReferenceStructureType = "SITE"
    dref.DoseReferenceDescription = str(plan.target_name)[:64]
    dref.DoseReferenceType = "TARGET"
    rx_total = float(plan.prescription_gy_rbe) * int(fractions)
    dref.TargetPrescriptionDose = _ds(rx_total)
    ds.DoseReferenceSequence = DSeq([dref])
    field_dose = (getattr(plan, "model_stats", None) or {}).get("field_mean_dose_gy")
    rbe = float(plan.prescription_gy_rbe) / float(plan.prescription_gy) if plan.prescription_gy else None
    if field_dose is not None and (len(field_dose) != len(plan.fields) or rbe is None):
        field_dose = None
    setup = Dataset()
    setup.PatientPosition = position
    setup.PatientSetupNumber = 1
    ds.PatientSetupSequence = DSeq([setup])

    fg = Dataset()
    fg.FractionGroupNumber = 1
    fg.NumberOfFractionsPlanned = int(fractions)
    fg.NumberOfBeams = len(beams)
    fg.NumberOfBrachyApplicationSetups = 0
    refs, items, written = [], [], []
    for b in beams:
        final = float(sum(float(l["mu"].astype(np.float64).sum()) for l in b["layers"]))
        meterset = _ds(final)
        rb = Dataset()
        if field_dose is not None:
            rb.ReferencedDoseReferenceUID = dref.DoseReferenceUID
            rb.BeamDose = _ds(float(field_dose[b["number"] - 1]) * rbe)
            rb.BeamDoseType = "EFFECTIVE"
        rb.BeamMeterset = meterset
        rb.ReferencedBeamNumber = b["number"]
        refs.append(rb)
        items.append(_ion_beam(b, meterset))
        sh = b["shifter"]
        written.append({"number": b["number"], "name": b["name"], "gantry_angle_deg": b["gantry"],
                        "couch_angle_deg": 0.0, "isocenter_mm": [float(_ds(c)) for c in b["iso"]],
                        "spots": int(sum(l["mu"].size for l in b["layers"])), "layers": len(b["layers"]),
                        "mu_per_fraction": float(meterset), "machine": _machine(b["model"]),
                        "range_shifter": None if sh is None else
                        {"id": sh.id, "isocenter_distance_mm": float(np.float32(b["shifter_distance"])),
                         "wet_mm": float(sh.wet_mm)}})
    fg.ReferencedBeamSequence = DSeq(refs)
    ds.FractionGroupSequence = DSeq([fg])
    ds.IonBeamSequence = DSeq(items)
    ds.ApprovalStatus = "UNAPPROVED"
    atomic_write_file(path, lambda tmp: save_dataset(ds, tmp))
    return {"path": str(path), "sop_instance_uid": str(sop_uid), "fractions_planned": int(fractions),
            "target_prescription_gy_rbe": float(dref.TargetPrescriptionDose),
            "patient_position": position, "study_instance_uid": study.study_instance_uid,
            "frame_of_reference_uid": study.frame_of_reference_uid, "beams": written}


def _check_plan_grid(plan, study: StudyReference) -> None:
    """``ValueError`` for a plan that says it was made on another grid than its target's, or on another CT than
    ``study``'s (``plan.meta["grid"]``, written by :func:`mcproton.planning.optimise_plan`): its spots would treat
    another place in the patient."""
    grid = (getattr(plan, "meta", None) or {}).get("grid")
    if not grid:
        return
    mask = getattr(plan, "target_mask_zyx", None)
    if mask is not None and tuple(np.shape(mask)) != tuple(grid["shape_zyx"]):
        raise ValueError(f"plan {plan.name!r}: its target mask has shape (z, y, x) {tuple(np.shape(mask))}, but the "
                         f"plan was made on a grid of {tuple(grid['shape_zyx'])}: the target is from another grid; "
                         "plan again with a mask made on the CT's geometry")
    want, made = study.frame_of_reference_uid, grid.get("frame_of_reference_uid", "")
    if want and made and want != made:
        raise ValueError(f"plan {plan.name!r} was made on a CT of FrameOfReferenceUID {made}, but the study it is "
                         f"written for has {want}: write it with the StudyReference of the CT it was planned on "
                         "(StudyReference.from_ct(ct))")


def _machine(model) -> str:
    """TreatmentMachineName: the beam model's first machine (a model of several identical rooms names them all), ""
    for a model that names none (Type 2)."""
    return str(model.machines[0]) if getattr(model, "machines", ()) else ""


def _ion_beam(b: dict, final: str):
    """The IonBeamSequence item of one field (:func:`_field_beam`); ``final`` its FinalCumulativeMetersetWeight."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DSeq

    model, sh = b["model"], b["shifter"]
    it = Dataset()
    it.BeamNumber = b["number"]
    it.BeamName = str(b["name"])[:64]
    it.BeamType = "STATIC"
    it.RadiationType = "PROTON"
    it.TreatmentMachineName = _machine(model)[:16]
    it.PrimaryDosimeterUnit = "MU"
    it.TreatmentDeliveryType = "TREATMENT"
    it.ReferencedPatientSetupNumber = 1
    it.NumberOfWedges = 0
    it.NumberOfCompensators = 0
    it.NumberOfBoli = 0
    it.NumberOfBlocks = 0
    it.NumberOfRangeShifters = 0 if sh is None else 1
    it.NumberOfLateralSpreadingDevices = 0
    it.NumberOfRangeModulators = 0
    it.PatientSupportType = "TABLE"
    it.ScanMode = "MODULATED"
    it.ModulatedScanModeType = "STATIONARY"      # Type 1C: the beam is off while it moves between spots
    it.VirtualSourceAxisDistances = [float(v) for v in b["vsad"]]
    if sh is not None:
        r = Dataset()
        r.RangeShifterNumber = 1
        r.RangeShifterID = str(sh.id)[:16]
        r.RangeShifterType = "BINARY"
        it.RangeShifterSequence = DSeq([r])
    it.FinalCumulativeMetersetWeight = final
    cps = []
    cum = 0.0
    # ScanSpotTuneID: the model's first declared spot tune (its reader refuses any other), else the model's name
    tune = str((getattr(model, "spot_tune_ids", ()) or (model.name,))[0])[:16]
    for k, layer in enumerate(b["layers"]):
        xy = [float(c) for c in layer["xy"].ravel()]
        mu = [float(c) for c in layer["mu"]]
        for second in (False, True):
            cp = Dataset()
            cp.ControlPointIndex = len(cps)
            cp.NominalBeamEnergy = _ds(layer["energy"])
            if not cps:                            # the first control point states the beam's set-up
                cp.GantryAngle = _ds(b["gantry"])
                cp.GantryRotationDirection = "NONE"
                cp.BeamLimitingDeviceAngle = "0"
                cp.BeamLimitingDeviceRotationDirection = "NONE"
                cp.PatientSupportAngle = "0"
                cp.PatientSupportRotationDirection = "NONE"
                cp.TableTopVerticalPosition = ""
                cp.TableTopLongitudinalPosition = ""
                cp.TableTopLateralPosition = ""
                cp.IsocenterPosition = [_ds(c) for c in b["iso"]]
                cp.TableTopPitchAngle = 0.0
                cp.TableTopPitchRotationDirection = "NONE"
                cp.TableTopRollAngle = 0.0
                cp.TableTopRollRotationDirection = "NONE"
                cp.GantryPitchAngle = 0.0
                cp.GantryPitchRotationDirection = "NONE"
                if sh is not None:
                    rss = Dataset()
                    rss.RangeShifterSetting = "IN"
                    rss.IsocenterToRangeShifterDistance = float(b["shifter_distance"])
                    rss.RangeShifterWaterEquivalentThickness = float(sh.wet_mm)
                    rss.ReferencedRangeShifterNumber = 1
                    cp.RangeShifterSettingsSequence = DSeq([rss])
            cp.CumulativeMetersetWeight = _ds(cum) if not (second and k == len(b["layers"]) - 1) else final
            cp.ScanSpotTuneID = tune
            cp.NumberOfScanSpotPositions = len(mu)
            cp.ScanSpotPositionMap = xy
            cp.ScanSpotMetersetWeights = [0.0] * len(mu) if second else mu
            cp.NumberOfPaintings = 1
            cps.append(cp)
            if not second:
                cum += float(layer["mu"].astype(np.float64).sum())
    it.NumberOfControlPoints = len(cps)
    it.IonControlPointSequence = DSeq(cps)
    return it
