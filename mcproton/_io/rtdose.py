"""DICOM RT Dose export/import.

``write_rtdose`` stores a 3-D dose grid (Gy, axes (z, y, x)) as a multi-frame RT Dose with unsigned 16-bit
(default) or 32-bit pixels, ``DoseGridScaling = max / (2^bits - 1)`` (the stored dose is exact to within
DoseGridScaling / 2, i.e. 7.6e-6 of the maximum for 16 bits),
ImageOrientationPatient [1,0,0,0,1,0], ImagePositionPatient = the centre of voxel [0, 0, 0] and a relative
GridFrameOffsetVector (first value 0).  The 16-bit result passes ``dciodvfy`` (dicom3tools) without errors
(dciodvfy 1.0 aborts on any 32-bit pixel data, so 32-bit files cannot be checked with it).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .errors import DicomInputError

RT_DOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"
RT_ION_PLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.8"
_SUMMATION = ("PLAN", "MULTI_PLAN", "FRACTION", "BEAM", "BRACHY", "FRACTION_SESSION", "BEAM_SESSION",
              "BRACHY_SESSION", "CONTROL_POINT", "RECORD")


@dataclass
class RTDose:
    dose_gy_zyx: np.ndarray
    voxel_size_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    frame_of_reference_uid: str
    dose_grid_scaling: float
    dose_type: str
    dose_summation_type: str
    dose_units: str
    referenced_plan_sop_instance_uid: str | None = None


def write_rtdose(dose_gy_zyx: np.ndarray, voxel_size_mm: Sequence[float], origin_mm: Sequence[float],
                 path: str | Path, *, frame_of_reference_uid: str,
                 referenced_plan_sop_instance_uid: str | None = None, summation_type: str = "PLAN",
                 dose_type: str = "PHYSICAL", referenced_beam_number: int | None = None,
                 referenced_plan_sop_class_uid: str = RT_ION_PLAN_STORAGE, patient_name: str = "",
                 patient_id: str = "", study_instance_uid: str | None = None,
                 series_description: str = "mcproton dose", dose_comment: str = "mcproton Monte Carlo",
                 patient_birth_date: str = "", patient_sex: str = "", bits: int = 16) -> Path:
    """Write an RT Dose file; returns its path.

    ``dose_type`` PHYSICAL (Gy) or EFFECTIVE (RBE-weighted).  ``summation_type`` PLAN or BEAM (BEAM needs
    ``referenced_beam_number``).  DICOM requires a ReferencedRTPlanSequence for these summation types: if no
    ``referenced_plan_sop_instance_uid`` is given (e.g. a phantom simulation without a plan) a fresh UID is
    referenced and the DoseComment says so.
    """
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DSequence
    from pydicom.uid import generate_uid

    from .dicom_common import check_grid_geometry, ds_string as _ds, new_file_dataset, now_date_time, \
        save_dataset, set_patient_study_series

    d = np.asarray(dose_gy_zyx, dtype=np.float64)
    if d.ndim != 3 or min(d.shape) < 1:
        raise ValueError(f"dose_gy_zyx must be a non-empty 3-D array (z, y, x); got shape {d.shape}")
    if d.shape[1] > 65535 or d.shape[2] > 65535:
        raise ValueError(f"dose grid rows/columns {d.shape[1:]} exceed the DICOM limit 65535")
    if not np.all(np.isfinite(d)):
        raise ValueError("dose contains NaN or inf; give finite doses")
    if d.min() < 0:
        raise ValueError(f"dose has negative values (min {d.min():g} Gy); RT Dose stores non-negative doses")
    vs, org = check_grid_geometry(voxel_size_mm, origin_mm)
    summation_type = summation_type.upper()
    if summation_type not in ("PLAN", "BEAM", "FRACTION"):
        raise ValueError(f"summation_type must be 'PLAN', 'BEAM' or 'FRACTION'; got {summation_type!r}")
    dose_type = dose_type.upper()
    if dose_type not in ("PHYSICAL", "EFFECTIVE"):
        raise ValueError(f"dose_type must be 'PHYSICAL' or 'EFFECTIVE'; got {dose_type!r}")
    if summation_type == "BEAM" and referenced_beam_number is None:
        raise ValueError("summation_type 'BEAM' needs referenced_beam_number (the plan's BeamNumber)")
    if not frame_of_reference_uid:
        raise ValueError("frame_of_reference_uid is required (use the CT's FrameOfReferenceUID)")

    if bits not in (16, 32):
        raise ValueError(f"bits must be 16 or 32; got {bits}")
    top = float(2 ** bits - 1)
    dmax = float(d.max())
    scaling = dmax / top if dmax > 0 else 1.0
    # store the scaling with the precision DS allows and quantise with exactly that value
    scaling_s = _ds(scaling)
    scaling = float(scaling_s)
    pix = np.clip(np.rint(d / scaling), 0, top).astype("<u2" if bits == 16 else "<u4")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds, sop_uid = new_file_dataset(path, RT_DOSE_STORAGE)
    date, time = now_date_time()
    set_patient_study_series(ds, modality="RTDOSE", date=date, time=time, series_description=series_description,
                             patient_name=patient_name, patient_id=patient_id,
                             study_instance_uid=study_instance_uid or generate_uid(),
                             series_instance_uid=generate_uid(), series_number=1, instance_number=1,
                             frame_of_reference_uid=frame_of_reference_uid, patient_birth_date=patient_birth_date,
                             patient_sex=patient_sex)
    ds.InstanceCreationDate = date
    ds.InstanceCreationTime = time
    ds.ContentDate = date
    ds.ContentTime = time
    ds.OperatorsName = ""
    ds.ImagePositionPatient = [_ds(org[0]), _ds(org[1]), _ds(org[2])]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceThickness = _ds(vs[2])
    ds.PixelSpacing = [_ds(vs[1]), _ds(vs[0])]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.NumberOfFrames = d.shape[0]
    ds.FrameIncrementPointer = 0x3004000C
    ds.Rows = d.shape[1]
    ds.Columns = d.shape[2]
    ds.BitsAllocated = bits
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.DoseUnits = "GY"
    ds.DoseType = dose_type
    ds.DoseSummationType = summation_type
    ds.DoseComment = dose_comment[:64]
    ds.GridFrameOffsetVector = [_ds(k * vs[2]) for k in range(d.shape[0])]
    ds.DoseGridScaling = scaling_s
    ds.TissueHeterogeneityCorrection = "IMAGE"
    ref = Dataset()
    ref.ReferencedSOPClassUID = referenced_plan_sop_class_uid
    if referenced_plan_sop_instance_uid:
        ref.ReferencedSOPInstanceUID = referenced_plan_sop_instance_uid
    else:
        ref.ReferencedSOPInstanceUID = generate_uid()
        ds.DoseComment = (dose_comment + "; no RT Plan: placeholder plan reference")[:64]
    if summation_type == "BEAM":
        fg = Dataset()
        fg.ReferencedFractionGroupNumber = 1
        rb = Dataset()
        rb.ReferencedBeamNumber = int(referenced_beam_number)
        fg.ReferencedBeamSequence = DSequence([rb])
        ref.ReferencedFractionGroupSequence = DSequence([fg])
    ds.ReferencedRTPlanSequence = DSequence([ref])
    ds.PixelData = np.ascontiguousarray(pix).tobytes()
    from .atomic import atomic_write_file   # temporary file renamed into place: no partial RT Dose on a full disk

    return atomic_write_file(path, lambda tmp: save_dataset(ds, tmp))


def read_rtdose(path: str | Path) -> RTDose:
    """Read an RT Dose (axial, ImageOrientationPatient [1,0,0,0,1,0] or flipped axes) into Gy (z, y, x)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    p = Path(path)
    if not p.is_file():
        raise DicomInputError(f"RT Dose file {p} does not exist")
    try:
        ds = pydicom.dcmread(p)
    except InvalidDicomError as exc:
        raise DicomInputError(f"{p}: not a DICOM file ({exc})") from exc
    except Exception as exc:
        raise DicomInputError(f"{p}: cannot be read as DICOM ({type(exc).__name__}: {exc})") from exc
    if str(ds.get("SOPClassUID", "")) != RT_DOSE_STORAGE and str(ds.get("Modality", "")) != "RTDOSE":
        raise DicomInputError(f"{p}: not an RT Dose (Modality {ds.get('Modality', '?')})")
    try:
        arr = ds.pixel_array
    except Exception as exc:
        raise DicomInputError(f"{p}: dose pixel data cannot be decoded ({type(exc).__name__}: {exc})") from exc
    nf = int(ds.get("NumberOfFrames", 1) or 1)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.shape[0] != nf:
        raise DicomInputError(f"{p}: {arr.shape[0]} frames decoded but NumberOfFrames = {nf}")
    try:
        scaling = float(ds.get("DoseGridScaling", 1.0) or 1.0)
        iop = np.array([float(v) for v in ds.ImageOrientationPatient])
        ipp = np.array([float(v) for v in ds.ImagePositionPatient])
        ps = [float(v) for v in ds.PixelSpacing]
        gfov = np.array([float(v) for v in ds.get("GridFrameOffsetVector", [0.0])])
    except (AttributeError, TypeError, ValueError) as exc:
        raise DicomInputError(f"{p}: missing or malformed geometry attributes ({exc})") from exc
    if not np.allclose(np.abs(iop), [1, 0, 0, 0, 1, 0], atol=1e-3):
        raise DicomInputError(f"{p}: ImageOrientationPatient {iop.tolist()} is not axial; not supported")
    if nf > 1:
        if gfov.size != nf:
            raise DicomInputError(f"{p}: GridFrameOffsetVector has {gfov.size} values for {nf} frames")
        if gfov[0] != 0:  # absolute z positions (allowed when IOP is [1,0,0,0,1,0])
            gfov = gfov - ipp[2]
        dz = np.diff(gfov)
        if np.any(np.abs(dz - dz[0]) > 1e-3 * max(1.0, abs(dz[0]))) or dz[0] == 0:
            raise DicomInputError(f"{p}: GridFrameOffsetVector is not evenly spaced; not supported")
        dz0 = float(dz[0])
    else:
        dz0 = float(ds.get("SliceThickness", 1.0) or 1.0)
    dose = arr.astype(np.float64) * scaling
    origin = ipp.copy()
    if iop[0] < 0:
        dose = dose[:, :, ::-1]
        origin[0] -= (dose.shape[2] - 1) * ps[1]
    if iop[4] < 0:
        dose = dose[:, ::-1, :]
        origin[1] -= (dose.shape[1] - 1) * ps[0]
    if dz0 < 0:
        dose = dose[::-1]
        origin[2] += dz0 * (dose.shape[0] - 1)
        dz0 = -dz0
    ref = None
    if "ReferencedRTPlanSequence" in ds and len(ds.ReferencedRTPlanSequence):
        ref = str(ds.ReferencedRTPlanSequence[0].get("ReferencedSOPInstanceUID", "")) or None
    return RTDose(np.ascontiguousarray(dose), (ps[1], ps[0], dz0), tuple(float(v) for v in origin),
                  str(ds.get("FrameOfReferenceUID", "")), scaling, str(ds.get("DoseType", "")),
                  str(ds.get("DoseSummationType", "")), str(ds.get("DoseUnits", "")), ref)
