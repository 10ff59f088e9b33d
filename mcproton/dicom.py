"""Public API for the DICOM / patient workflow.

Typical use::

    from mcproton import dicom
    ct = dicom.load_ct_series("patient/CT")
    geometry = dicom.HUCalibration.load("schneider2000").to_geometry(ct)
    masks = dicom.load_rtstruct_masks("patient/RS.dcm", geometry, ["CTV"])   # ROI masks on the CT's grid
    plan = dicom.load_rtplan("patient/RP.dcm")
    beams = dicom.plan_to_beams(plan, dicom.load_beam_model("dcpt_v2"))
    ...
    study = dicom.StudyReference.from_ct(ct, plan_sop_instance_uid=plan.sop_instance_uid)
    dicom.write_result_rtdose(result, "RD.dcm", study=study)           # a DoseResult
    dicom.write_rtdose(dose_gy_zyx, geometry.voxel_size_mm, geometry.origin_mm, "RD.dcm",
                       study=study)                                       # an array

:func:`write_rtplan` writes a plan of :mod:`mcproton.planning` (e.g. the demo's) as an RT Ion Plan that
``load_rtplan`` + ``plan_to_beams`` read back to the same beams::

    study = study.resolved()        # a study without UIDs gets them once, here: every file then shares them
    written = dicom.write_rtplan(plan, "RP.dcm", study=study, fractions=17)
    study = study.replace(plan_sop_instance_uid=written["sop_instance_uid"])   # the RT Dose references it

:class:`StudyReference` (patient, study, frame of reference, patient position, referenced plan) is what every
writer (CT series, RT Structure Set, RT Ion Plan, RT Dose) puts in the files; :class:`DoseContents` says what an RT Dose
holds (summation type, fractions, beams, dose to medium or water, RBE).
"""
from ._io.beam_model import BeamModel, load_beam_model, load_bdl, parse_bdl
from ._io.ct import CTImage, load_ct_series, write_ct_series
from ._io.dicom_common import StudyReference
from ._io.errors import BeamModelError, CalibrationError, DicomInputError, InputDataError
from ._io.hu_calibration import HUCalibration
from ._io.rtdose import DoseContents, RTDose, dose_contents, read_rtdose, result_dose_contents, write_result_rtdose, \
    write_rtdose
from ._io.rtplan import RTIonPlan, beam_direction_lps, gantry_to_lps_matrix, load_rtplan, plan_to_beams
from ._io.rtplan_write import write_rtplan
from ._io.rtstruct import load_rtstruct_masks

__all__ = [
    "BeamModel", "BeamModelError", "CTImage", "CalibrationError", "DicomInputError", "DoseContents",
    "HUCalibration", "InputDataError", "RTDose", "RTIonPlan", "StudyReference", "beam_direction_lps",
    "dose_contents", "gantry_to_lps_matrix", "load_bdl", "load_beam_model", "load_ct_series", "load_rtplan",
    "load_rtstruct_masks", "parse_bdl", "plan_to_beams", "read_rtdose", "result_dose_contents", "write_ct_series",
    "write_result_rtdose", "write_rtdose", "write_rtplan",
]
