"""What every DICOM file mcproton writes shares: file meta information and the SOP common module."""
from __future__ import annotations

from pathlib import Path


def new_file_dataset(path: str | Path, sop_class_uid: str, sop_instance_uid: str | None = None):
    """An empty FileDataset (explicit VR little endian, 128-byte preamble) with its file meta information
    and SOP Class / Instance UIDs and character set set; returns ``(dataset, sop_instance_uid)``."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

    sop_uid = sop_instance_uid or generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_uid
    return ds, sop_uid


def now_date_time() -> tuple[str, str]:
    """Today's DICOM DA and TM strings (YYYYMMDD, HHMMSS)."""
    import datetime as _dt

    t = _dt.datetime.now()
    return t.strftime("%Y%m%d"), t.strftime("%H%M%S")


def set_patient_study_series(ds, *, modality: str, date: str, time: str, series_description: str,
                             patient_name: str, patient_id: str, study_instance_uid: str,
                             series_instance_uid: str, series_number: int, instance_number: int,
                             frame_of_reference_uid: str | None, patient_birth_date: str = "",
                             patient_sex: str = "") -> None:
    """The Patient, General Study, General Series, General Equipment and Frame of Reference attributes that
    every mcproton writer sets the same way (the writers add their modality's own)."""
    ds.StudyDate = date
    ds.StudyTime = time
    ds.AccessionNumber = ""
    ds.Modality = modality
    ds.Manufacturer = "mcproton"
    ds.ReferringPhysicianName = ""
    ds.SeriesDescription = series_description[:64]
    ds.PatientName = patient_name
    ds.PatientID = patient_id[:64]
    ds.PatientBirthDate = patient_birth_date
    ds.PatientSex = patient_sex
    ds.StudyInstanceUID = study_instance_uid
    ds.SeriesInstanceUID = series_instance_uid
    ds.StudyID = "1"
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    ds.FrameOfReferenceUID = frame_of_reference_uid
    ds.PositionReferenceIndicator = ""


def ds_string(v: float) -> str:
    """A DICOM DS string (at most 16 characters) for a float, with as many digits as fit."""
    for prec in range(12, 0, -1):
        s = f"{v:.{prec}g}"
        if len(s) <= 16:
            return s
    raise ValueError(f"cannot encode {v} as DS")


def pydicom_v3() -> bool:
    import pydicom

    return int(pydicom.__version__.split(".")[0]) >= 3


def save_dataset(ds, path: str | Path) -> Path:
    """Write ``ds`` as a DICOM Part 10 file (pydicom 2 and 3 spell this differently)."""
    if pydicom_v3():
        ds.save_as(path, enforce_file_format=True)
    else:
        ds.save_as(path, write_like_original=False)
    return Path(path)


def check_grid_geometry(voxel_size_mm, origin_mm) -> tuple[list[float], list[float]]:
    """``(voxel size, origin)`` as float lists after checking them: three positive finite sizes (dx, dy, dz)
    and three finite coordinates (x, y, z of the first voxel centre), in mm."""
    import math

    vs = [float(v) for v in voxel_size_mm]
    org = [float(v) for v in origin_mm]
    if len(vs) != 3 or not all(math.isfinite(v) and v > 0 for v in vs):
        raise ValueError(f"voxel_size_mm must be three positive numbers (dx, dy, dz); got {voxel_size_mm}")
    if len(org) != 3 or not all(math.isfinite(v) for v in org):
        raise ValueError(f"origin_mm must be three finite numbers (x, y, z); got {origin_mm}")
    return vs, org
