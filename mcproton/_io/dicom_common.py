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
