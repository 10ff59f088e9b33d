"""Public API for the DICOM / patient workflow.

Typical use::

    from mcproton import dicom
    ct = dicom.load_ct_series("patient/CT")
    geometry = dicom.HUCalibration.load("schneider2000").to_geometry(ct)
    plan = dicom.load_rtplan("patient/RP.dcm")
    beams = dicom.plan_to_beams(plan, dicom.load_beam_model("dcpt_v2"))
    ...
    dicom.write_rtdose(dose_gy_zyx, geometry.voxel_size_mm, geometry.origin_mm, "RD.dcm",
                       frame_of_reference_uid=ct.frame_of_reference_uid,
                       referenced_plan_sop_instance_uid=plan.sop_instance_uid)
"""
from ._io.beam_model import BeamModel, load_beam_model, load_bdl, parse_bdl
from ._io.ct import CTImage, load_ct_series, write_ct_series
from ._io.errors import BeamModelError, CalibrationError, DicomInputError, InputDataError
from ._io.hu_calibration import HUCalibration
from ._io.rtdose import RTDose, read_rtdose, write_rtdose
from ._io.rtplan import RTIonPlan, beam_direction_lps, gantry_to_lps_matrix, load_rtplan, plan_to_beams

__all__ = [
    "BeamModel", "BeamModelError", "CTImage", "CalibrationError", "DicomInputError", "HUCalibration",
    "InputDataError", "RTDose", "RTIonPlan", "beam_direction_lps", "gantry_to_lps_matrix", "load_bdl",
    "load_beam_model", "load_ct_series", "load_rtplan", "parse_bdl", "plan_to_beams", "read_rtdose",
    "write_ct_series", "write_rtdose",
]
