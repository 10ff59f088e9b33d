"""The check's MC dose as DICOM RT Dose, beside the report: ``RD_mc.dcm`` (the plan dose) and ``RD_mc_beam<N>.dcm``
for each beam the TPS gave a dose of, on the TPS dose grid and in its orientation (each file with the
ImageOrientationPatient, ImagePositionPatient and frame order of the TPS file of the same dose, so that the two
arrays match index by index: before 2026-12-05 a prone TPS dose's MC twin was written [1,0,0,0,1,0], its rows and
columns reversed, CSI audit F4), in the TPS dose's study and frame of reference, naming the patient the report
names (the plan's: :func:`mc_dose_study`), referencing the plan,
with the TPS file's DoseType and DoseSummationType (the MC dose is computed to hold what the TPS dose holds: physical
or RBE-weighted, all fractions or one).  A physicist opens them beside the planning system's dose in the planning
system or a viewer, and archives them with the signed report.

The doses written are the ones the check compared: zero outside the body outline, as the planning systems write
theirs (the DoseComment says so).  A later ``mcproton check`` of a folder that holds these files does not take
them for planning-system doses (:func:`is_check_output`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: the SeriesDescription of the files written here (and how a folder scan recognises them)
MC_SERIES_DESCRIPTION = "mcproton check MC dose"
#: the SeriesDescription of the phantom CT that ``--phantom-from-struct`` writes (compute.phantom_ct_from_struct):
#: its HU are codes of its own calibration, not a scanner's, so a folder scan must not take it for the patient's CT
PHANTOM_SERIES_DESCRIPTION = "phantom from RT Struct overrides"
#: the plan dose's file name in the check's output folder; the per-beam files are RD_mc_beam<N>.dcm
MC_PLAN_FILE = "RD_mc.dcm"


def is_check_output(ds: Any) -> bool:
    """Whether a DICOM header is a file that ``mcproton check`` wrote (Manufacturer mcproton, and the
    SeriesDescription of its MC dose or of its phantom CT): neither a planning system's dose nor the patient's CT."""
    return (str(getattr(ds, "Manufacturer", "")) == "mcproton"
            and str(getattr(ds, "SeriesDescription", "")) in (MC_SERIES_DESCRIPTION, PHANTOM_SERIES_DESCRIPTION))


def tps_study(path: str | Path, plan_sop_instance_uid: str):
    """The patient, study and frame of reference of a TPS RT Dose, referencing the plan: where the MC dose goes.
    The study's StudyDate, StudyTime and TimezoneOffsetFromUTC are the TPS dose's too: RD_mc.dcm joins that study,
    so it gives it the date and time its other objects give it (before, audit 25 F5: the check's date and time and
    this machine's offset, so that one study had two StudyDates, the second depending on where and when the check
    ran).  A TPS dose without a StudyDate leaves them to :meth:`StudyReference.resolved` (the time it is written)."""
    from .._io.dicom_common import StudyReference, assume_input_charset, read_dicom_header

    ds = read_dicom_header(path)   # DICOM (a raw data set too): read_tps_dose read it
    assume_input_charset(ds, path)   # no SpecificCharacterSet: UTF-8 or Latin-1, said (once; read_tps_dose read it)
    return StudyReference(patient_name=str(ds.get("PatientName", "") or ""),
                          patient_id=str(ds.get("PatientID", "") or ""),
                          patient_birth_date=str(ds.get("PatientBirthDate", "") or ""),
                          patient_sex=str(ds.get("PatientSex", "") or ""),
                          study_instance_uid=str(ds.get("StudyInstanceUID", "") or ""),
                          frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "") or ""),
                          study_date=str(ds.get("StudyDate", "") or "").strip(),
                          study_time=str(ds.get("StudyTime", "") or "").strip(),
                          study_timezone=str(ds.get("TimezoneOffsetFromUTC", "") or "").strip(),
                          plan_sop_instance_uid=str(plan_sop_instance_uid or ""))


def mc_dose_study(inp: Any):
    """Where the check's MC RT Doses go, and whom they name: ``(study, patient)``.  The patient is the plan's, the
    one the report's header names (record.identification), with the values the plan leaves empty taken from the TPS
    dose where both give one PatientID; the study (its UID, date, time and offset) and frame of reference are the
    TPS dose's (the MC dose lies on its grid), or the plan's study (its UID, date and time) where the plan and the
    TPS dose name different PatientIDs (linked by UID, warned of by gather: a study holds one patient), a new study
    where the plan then gives none (before, review of 2026-12-07 R8: the TPS dose's, which holds the other
    patient).  ``patient`` is check.json's record of it (``mc_rtdose``: the DICOM attributes and ``from``, which
    says whose they are).  Before (audit 24, identity F2) RD_mc.dcm named the TPS dose's patient while the report
    named the plan's: one check, two patients."""
    from .._io.patients import PatientIdentity, read_header

    ref = inp.reference
    study = tps_study(ref.path, inp.plan.sop_instance_uid)
    plan_ds = read_header(inp.plan_path)   # as the report's identification reads it
    plan = PatientIdentity.of(plan_ds)
    tps = PatientIdentity(study.patient_id, study.patient_name, study.patient_birth_date, study.patient_sex)
    dose_name = Path(ref.path).name
    changes: dict[str, str] = {}
    if plan.patient_id and tps.patient_id and plan.patient_id != tps.patient_id:
        # the plan's study, with its date and time; where the plan gives none, never the TPS dose's study (it holds
        # the other patient) but a new one, dated when written (StudyReference.resolved)
        plan_study = str(getattr(plan_ds, "StudyInstanceUID", "") or "")
        where = "in the plan's study" if plan_study else "in a new study (the plan gives no StudyInstanceUID)"
        who, how = plan, (f"the plan's patient (the report's), {where}: the TPS dose {dose_name} names another, "
                          f"PatientID {tps.patient_id!r}")
        changes.update({"study_instance_uid": plan_study, "study_date": "", "study_time": "", "study_timezone": ""})
        if plan_study:
            changes.update(study_date=str(getattr(plan_ds, "StudyDate", "") or ""),
                           study_time=str(getattr(plan_ds, "StudyTime", "") or ""),
                           study_timezone=str(getattr(plan_ds, "TimezoneOffsetFromUTC", "") or "").strip())
    else:
        who = plan.merged(tps)
        filled = [k for k, a, b in (("PatientID", plan.patient_id, who.patient_id),
                                    ("PatientName", plan.name, who.name),
                                    ("PatientBirthDate", plan.birth_date, who.birth_date),
                                    ("PatientSex", plan.sex, who.sex)) if a != b]
        how = "the plan's patient (the report's)" + (f"; {', '.join(filled)} from the TPS dose {dose_name}, which "
                                                      "the plan does not give" if filled else "")
    study = study.replace(patient_id=who.patient_id, patient_name=who.name, patient_birth_date=who.birth_date,
                          patient_sex=who.sex, **changes)
    return study, {**who.record(), "from": how}


#: DICOM's limit on a DoseComment (LO: 64 characters)
DOSE_COMMENT_MAX = 64


def dose_comment(what: str, rel_uncertainty: float | None, model: str, beam: int | None = None,
                 room: int = DOSE_COMMENT_MAX) -> str | None:
    """The DoseComment of an MC RT Dose: what DICOM's attributes do not say (dose to water or medium and the RBE
    constant: ``what``), the dose's own mean statistical uncertainty (1 sd, above 50 % of its maximum: the plan
    dose's, or the beam's for a per-beam file, which is larger: each per-beam file carried the plan's before
    2026-12-05, interop audit F3), that it is 0 outside the body, the beam's number, and the beam model where
    there is room (64 characters).  ``room``: fewer characters, where the plan reference's note follows it
    (:func:`comment_and_note`): the "mcproton check" prefix, then "0 outside body" give way, the uncertainty never;
    None where even that does not fit (only with ``room`` below 64)."""
    unc = (f"{100 * float(rel_uncertainty):.2f}% 1sd" if rel_uncertainty is not None
           and np.isfinite(rel_uncertainty) else "1sd n/a")
    core = (f"beam {beam}, " if beam is not None else "") + f"{what}, {unc}"
    for text in (f"mcproton check MC {core}, 0 outside body", f"MC {core}, 0 outside body", f"MC {core}"):
        if len(text) <= room:
            return text + f", {model}" if model and len(text) + len(model) + 2 <= room else text
    return None if room < DOSE_COMMENT_MAX else f"MC {core}, 0 outside body"[:DOSE_COMMENT_MAX]


def comment_and_note(what: str, rel_uncertainty: float | None, model: str, beam: int | None,
                     note: str) -> tuple[str, bool]:
    """The DoseComment of an MC RT Dose (:func:`dose_comment`) and whether the plan reference's ``note`` ("invalid
    plan UID replaced", :func:`~mcproton._io.rtdose.plan_reference_note`; "" for none) goes into it too: where the
    comment, uncertainty included, fits before it; else the note goes into ImageComments only (where it always is).
    Before (audit 25 provenance, F3), write_rtdose cut the comment to make room for the note, and the RD_mc.dcm of
    an OpenTPS plan lost its uncertainty while check.json said it had it."""
    if note:
        fitted = dose_comment(what, rel_uncertainty, model, beam, room=DOSE_COMMENT_MAX - len("; " + note))
        if fitted is not None:
            return fitted, True
    return str(dose_comment(what, rel_uncertainty, model, beam)), not note


def image_comments(what: str, rel_uncertainty: float | None, mc: Any, beam: int | None = None) -> str:
    """The ImageComments (LT) of an MC RT Dose: what it holds, the primaries and seed of the check's MC, and its
    uncertainty in full as :func:`mcproton._io.rtdose.write_result_rtdose` states it
    (:data:`~mcproton._io.rtdose.UNCERTAINTY_STATEMENT`, which :func:`~mcproton._io.rtdose.stated_uncertainty`
    reads), so that the file states its noise whatever its DoseComment could hold (audit 25 provenance, F3, F4:
    RD_mc.dcm had no ImageComments)."""
    from .._io.rtdose import UNCERTAINTY_STATEMENT

    unc = (f"{100 * float(rel_uncertainty):.4g} %" if rel_uncertainty is not None and np.isfinite(rel_uncertainty)
           else "not estimated (fewer than 2 batches)")
    seed = (mc.provenance or {}).get("seed")
    own = (mc.beam_meta.get(beam) or {}).get("primaries") if beam is not None else None
    primaries = (f"{int(own):,} primaries" if own is not None else
                 f"{int(mc.primaries):,} primaries" + (" (all beams)" if beam is not None or len(mc.beams_gy_zyx) > 1
                                                      else ""))
    return (f"mcproton check MC dose{f' of beam {beam}' if beam is not None else ''}, {what}, 0 outside the body "
            f"outline; {primaries}" + (f", seed {seed}" if seed is not None else "")
            + f"; {UNCERTAINTY_STATEMENT}{unc}")


def session_type(inp: Any, summation_type: str) -> str:
    """The DoseSummationType of an MC RT Dose whose TPS twin is ``summation_type``: the same, except that a TPS
    FRACTION dose read as one fraction (``fractions = 'one'`` on a plan of several: the only type the check reads
    so) gives an MC file of one session, FRACTION_SESSION: DICOM's FRACTION holds the whole fraction group, so a
    viewer would take the file for all fractions and show it N times too low (rtdose audit F10)."""
    if summation_type == "FRACTION" and not inp.all_fractions and int(inp.fractions or 1) > 1:
        return "FRACTION_SESSION"
    return summation_type


def write_mc_rtdoses(inp: Any, mc: Any, out_dir: str | Path) -> dict[str, dict]:
    """Write the MC doses (``mc``: :class:`~mcproton._check.compute.MCDose`, as compared: zero outside the body)
    of the check of ``inp`` (:class:`~mcproton._check.inputs.CheckInputs`) into ``out_dir``; returns
    {"plan": {...}, "beam <N>": {...}}, each with the file name, DoseSummationType, DoseType, what the file says and
    is, read back from it (:func:`written_header`: DoseComment, ImageComments, its UIDs, the plan it references, its
    SHA-256), the maximum dose and the patient the file names (:func:`mc_dose_study`)."""
    from pydicom.uid import generate_uid

    from .._io.rtdose import beam_rtdose_path, plan_reference_note, write_rtdose

    ref = inp.reference
    out = Path(out_dir)
    study, patient = mc_dose_study(inp)
    series = str(generate_uid())
    from .compute import mc_dose_description

    model = str(mc.provenance.get("beam_model") or "")
    desc = mc_dose_description(inp, mc)
    what = f"to {mc.provenance.get('dose_to')}, " + (f"RBE {float(mc.provenance.get('rbe')):g}"
                                                     if inp.dose_type == "EFFECTIVE" else "physical")
    if inp.total is not None:
        plan_sum, fg = session_type(inp, inp.total.summation_type), inp.total.fraction_group
    else:   # per-beam TPS doses only: the MC's plan dose holds every beam of the plan
        plan_sum, fg = ("PLAN" if inp.all_fractions else "FRACTION_SESSION"), None
    if not inp.all_fractions and int(inp.fractions or 1) > 1:   # what the file holds, in its comment too
        what += f", 1 of {int(inp.fractions)} fx"
    # each file in the orientation of the TPS file of the same dose (the plan dose's: the reference's)
    jobs = [("plan", out / MC_PLAN_FILE, mc.total_gy_zyx, plan_sum, None, fg, ref.axis_directions)]
    for b in sorted(inp.beams):
        t = inp.beams[b]
        jobs.append((f"beam {b}", beam_rtdose_path(out / MC_PLAN_FILE, b), mc.beams_gy_zyx[b],
                     session_type(inp, t.summation_type), b, t.fraction_group, t.axis_directions))
    note = plan_reference_note(study.plan_sop_instance_uid or None, study.plan_sop_class_uid)
    written: dict[str, dict] = {}
    for k, (key, path, dose, summation, beam, group, axes) in enumerate(jobs, start=1):
        unc = mc.mean_rel_uncertainty_50 if beam is None else (mc.beam_meta.get(beam) or {}).get(
            "mean_rel_uncertainty_50")
        comment, note_in_comment = comment_and_note(what, unc, model, beam, note)
        write_rtdose(dose, ref.voxel_size_mm, ref.origin_mm, path, study=study, summation_type=summation,
                     dose_type=inp.dose_type, referenced_beam_number=beam,
                     referenced_fraction_group_number=group or 1, series_description=MC_SERIES_DESCRIPTION,
                     dose_comment=comment, series_instance_uid=series, instance_number=k,
                     heterogeneity=mc.provenance.get("tissue_heterogeneity") or ("IMAGE",), axis_directions=axes,
                     image_comments=image_comments(what, unc, mc, beam), plan_note_in_comment=note_in_comment)
        written[key] = {"file": path.name, "dose_summation_type": summation, "dose_type": inp.dose_type,
                        "dose": desc["quantity"], "unit": desc["unit"], **written_header(path),
                        "max_gy": float(dose.max()), "patient": dict(patient)}
    return written


def written_header(path: Path) -> dict[str, Any]:
    """What an MC RT Dose says, read back from the file written (as ``mcproton run`` records its RT Dose): its
    ``dose_comment`` and ``image_comments`` (before, audit 25 provenance F3, check.json gave the comment asked for,
    not the one written), its own ``sop_instance_uid`` and ``series_instance_uid``, the plan it references
    (``referenced_plan_sop_instance_uid``: a replacement where the plan's UID is not valid) and the file's
    ``sha256``: what ties a copy of the file, imported into a planning system or a PACS, to this check.json (F4)."""
    from .._io.dicom_common import read_dicom_header
    from .._io.file_hash import sha256_file

    ds = read_dicom_header(path)
    refs = ds.get("ReferencedRTPlanSequence") or []
    return {"dose_comment": str(ds.get("DoseComment", "") or ""),
            "image_comments": str(ds.get("ImageComments", "") or ""),
            "sop_instance_uid": str(ds.SOPInstanceUID), "series_instance_uid": str(ds.SeriesInstanceUID),
            "referenced_plan_sop_instance_uid": str(refs[0].ReferencedSOPInstanceUID) if refs else None,
            "sha256": sha256_file(path)}
