"""What every DICOM file mcproton writes shares: file meta information and the SOP common module."""
from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

# The SOP classes (DICOM PS3.4 B.5) of the objects mcproton reads and writes (the readers import them from here)
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.2"
#: the multi-frame CT objects (a whole series in one file), which mcproton does not read
MULTI_FRAME_CT = {ENHANCED_CT_IMAGE_STORAGE: "Enhanced CT",
                  LEGACY_CONVERTED_ENHANCED_CT_IMAGE_STORAGE: "Legacy Converted Enhanced CT"}
#: Secondary Capture Image Storage and its multi-frame kinds (PS3.4 B.5): screenshots, e.g. a scanner's dose report or
#: patient protocol that says Modality CT beside the slices; an image, not a CT slice
SECONDARY_CAPTURE = {"1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image",
                     "1.2.840.10008.5.1.4.1.1.7.1": "Multi-frame Single Bit Secondary Capture Image",
                     "1.2.840.10008.5.1.4.1.1.7.2": "Multi-frame Grayscale Byte Secondary Capture Image",
                     "1.2.840.10008.5.1.4.1.1.7.3": "Multi-frame Grayscale Word Secondary Capture Image",
                     "1.2.840.10008.5.1.4.1.1.7.4": "Multi-frame True Color Secondary Capture Image"}
#: Media Storage Directory Storage: the DICOMDIR of a CD or USB export (its MediaStorageSOPClassUID; its data set has
#: no SOPClassUID or Modality)
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"


def is_dicomdir(path: str | Path, ds) -> bool:
    """Whether a data set read from ``path`` is a DICOMDIR (by its file meta, or named DICOMDIR without a SOP class)."""
    meta = getattr(ds, "file_meta", None)
    media = str(meta.get("MediaStorageSOPClassUID", "") or "") if meta is not None else ""
    return media == MEDIA_STORAGE_DIRECTORY or (Path(path).name.upper() == "DICOMDIR" and "SOPClassUID" not in ds)
RT_DOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"
RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
RT_PLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.5"
RT_ION_PLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.8"

#: Each SOP class above and the kind it is sorted into (the Modality that PS3.3 prescribes for it).
SOP_CLASS_KINDS = {
    CT_IMAGE_STORAGE: ("CT", "CT Image Storage"),
    ENHANCED_CT_IMAGE_STORAGE: ("CT", "Enhanced CT Image Storage"),
    RT_DOSE_STORAGE: ("RTDOSE", "RT Dose Storage"),
    RT_STRUCTURE_SET_STORAGE: ("RTSTRUCT", "RT Structure Set Storage"),
    RT_ION_PLAN_STORAGE: ("RTPLAN", "RT Ion Plan Storage"),
    RT_PLAN_STORAGE: ("RTPLAN", "RT Plan Storage"),
}


@dataclass(frozen=True)
class StudyReference:
    """Whom and what a written DICOM object belongs to: the patient, the study, the frame of reference, the
    patient position of the images, and the RT Plan an RT Dose refers to.  Every mcproton writer (CT series,
    RT Structure Set, RT Dose) takes one of these instead of a dozen keywords; a :class:`VoxelGeometry
    <mcproton.geometry.VoxelGeometry>` built from a CT carries its CT's as ``geometry.study``.

    An empty UID means "none yet": the writer generates one (:meth:`resolved`), so the objects of one call
    share it.  ``StudyReference.from_ct(ct)`` takes everything from a loaded CT, so that an RT Dose lands in
    the CT's study and frame of reference."""

    patient_name: str = ""
    patient_id: str = ""
    patient_birth_date: str = ""       # DA, YYYYMMDD
    patient_sex: str = ""              # M, F, O or ""
    patient_age: str = ""              # AS, e.g. 005Y or 018M ("": not written); a phantom's, not read from a CT
    study_instance_uid: str = ""
    frame_of_reference_uid: str = ""
    patient_position: str = ""         # PatientPosition of the images (HFS, ...): checked against the plan's
    plan_sop_instance_uid: str = ""    # the RT (Ion) Plan an RT Dose refers to ("": a placeholder reference)
    plan_sop_class_uid: str = RT_ION_PLAN_STORAGE
    #: the directions (+1 or -1) along x, y, z of the CT's columns, rows and slice normal (its
    #: ImageOrientationPatient: (1, 1, 1) head-first supine, (-1, -1, 1) prone, ...): an RT Dose written for it
    #: is stored in the same orientation (mcproton._io.rtdose.write_rtdose)
    axis_directions: tuple[int, int, int] = (1, 1, 1)
    #: StudyDate (DA) and StudyTime (TM) of the study: one for every object of it (a CT's own; "": set to the time
    #: of :meth:`resolved`, so that the CT, RT Struct, RT Plan and RT Dose written together share them; before,
    #: each object took its own "now": the environment audit of 2026-12-06, F7).  A study with a date and an empty
    #: time (a CT's StudyTime is Type 2) is written with an empty StudyTime.  Not compared: the study is the same
    #: study whatever time a writer gave it (its UIDs are)
    study_date: str = dataclasses.field(default="", compare=False)
    study_time: str = dataclasses.field(default="", compare=False)
    #: TimezoneOffsetFromUTC (0008,0201) of the study date and time ("+HHMM"/"-HHMM"): a CT's own, this machine's
    #: where :meth:`resolved` sets the study's time to now, "" where a CT gives its date and time but no offset.
    #: PS3.3 C.12.1.1.8 makes it apply to every date and time of an object, so an object that copies a CT's study
    #: time must not declare this machine's offset for it (a CT written at +0900 and its RT Dose written at -0500
    #: put the same study 14 hours apart: review 2 of 2026-12-06, F1)
    study_timezone: str = dataclasses.field(default="", compare=False)
    #: True for the CT that mcproton wrote for a plan's beams (``phantom.type = "slab_ct"``,
    #: :func:`mcproton.slab_ct_geometry`): its slabs lie in the plan's patient coordinates whatever position a beam is
    #: set up in, so the plan's setup positions are not checked against it (mcproton._run.inputs.positions_checked:
    #: ``mcproton run``, ``simulate`` and ``sum_results`` alike).  Not written to DICOM; kept in a result's HDF5
    written_for_plan: bool = dataclasses.field(default=False, compare=False)

    @classmethod
    def from_ct(cls, ct, **changes) -> "StudyReference":
        """The patient, study, frame of reference, position and orientation of a CT
        (:class:`mcproton.dicom.CTImage`, or anything with those attributes), with ``changes`` (e.g.
        ``plan_sop_instance_uid=...``)."""
        names = ("patient_name", "patient_id", "patient_birth_date", "patient_sex", "study_instance_uid",
                 "frame_of_reference_uid", "patient_position", "study_date", "study_time", "study_timezone")
        axes = tuple(int(a) for a in getattr(ct, "axis_directions", None) or (1, 1, 1))
        return cls(**{**{k: str(getattr(ct, k, "") or "") for k in names}, "axis_directions": axes, **changes})

    def replace(self, **changes) -> "StudyReference":
        """A copy with ``changes``."""
        return dataclasses.replace(self, **changes)

    def resolved(self) -> "StudyReference":
        """A copy with a fresh study and frame-of-reference UID where they are empty, and the study date and time
        set to now, with this machine's offset from UTC, where there is none (what a writer stores)."""
        from pydicom.uid import generate_uid

        date, time, zone = (self.study_date, self.study_time, self.study_timezone) if self.study_date else \
            (*now_date_time(), utc_offset())
        return self.replace(study_instance_uid=self.study_instance_uid or str(generate_uid()),
                            frame_of_reference_uid=self.frame_of_reference_uid or str(generate_uid()),
                            study_date=date, study_time=time, study_timezone=zone)

    def now_date_time(self) -> tuple[str, str]:
        """Now as DICOM DA and TM strings in the study's time zone (:attr:`study_timezone`; local time where it has
        none): the date and time a writer gives its own object (Series/Content/InstanceCreation), which the
        object's one TimezoneOffsetFromUTC then describes as well as the study's."""
        return now_date_time(self.study_timezone)


PHANTOM_STUDY = StudyReference(patient_name="mcproton^phantom", patient_id="MCPROTON", patient_position="HFS")
"""What the phantom CT writers put in when no study is given."""


def dicom_kind(ds) -> tuple[str, str]:
    """What a DICOM object is, as ``(kind, note)``: "CT", "RTPLAN", "RTDOSE", "RTSTRUCT" by its SOP Class UID
    (0008,0016), which says what the object holds; by its Modality (0008,0060) only where the SOP class is absent
    or not one of these (then ``kind`` is the Modality, "" if there is none).

    ``note`` is "" unless the two disagree, and then says so: OpenTPS 2.0 writes its RT Structure Sets with
    Modality RTDOSE and its RT Ion Plans with Modality "RT Ion Plan IOD", and a folder sorted by Modality would
    take the structure set for a second dose and find no plan."""
    sop = str(ds.get("SOPClassUID", "") or "").strip()
    written = str(ds.get("Modality", "") or "").strip()
    modality = written.upper()
    if sop not in SOP_CLASS_KINDS:
        return modality, ""
    kind, name = SOP_CLASS_KINDS[sop]
    note = "" if modality == kind else (f"Modality {written!r}" if written else "no Modality") + \
        f" but SOP class {name}: read as {name.replace(' Storage', '')}"
    return kind, note


def object_text(ds) -> str:
    """What the DICOM object ``ds`` is, in words, for a refusal of a file of another kind than was asked for: "an RT
    Ion Plan (SOP class ..., Modality RTPLAN)" (the error-message audit 27, F11b: "not an RT Dose (SOP class ...,
    Modality RTPLAN: RTPLAN)" said the kind twice and not what the file is)."""
    sop = str(ds.get("SOPClassUID", "") or "").strip()
    modality = str(ds.get("Modality", "") or "").strip()
    name = SOP_CLASS_KINDS[sop][1].replace(" Storage", "") if sop in SOP_CLASS_KINDS else ""
    what = (f"{'an' if name[:1] in 'AEIOR' else 'a'} {name}" if name
            else f"a DICOM object of Modality {modality}" if modality else "a DICOM object of unknown kind")
    return f"{what} (SOP class {sop or '?'}, Modality {modality or '?'})"


def new_file_dataset(path: str | Path, sop_class_uid: str, sop_instance_uid: str | None = None):
    """An empty FileDataset (explicit VR little endian, 128-byte preamble) with its file meta information
    and SOP Class / Instance UIDs and character set set; returns ``(dataset, sop_instance_uid)``.  The character set
    starts as ISO_IR 100 (Latin-1); :func:`save_dataset` (and :class:`TemplateFileWriter`) settle it from the text the
    file holds when it is saved (:func:`settle_charset`)."""
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


def now_date_time(offset: str = "") -> tuple[str, str]:
    """Today's DICOM DA and TM strings (YYYYMMDD, HHMMSS): local time, or the time at ``offset`` from UTC
    ("+HHMM"/"-HHMM", as TimezoneOffsetFromUTC gives it; local time where it is empty or not of that form)."""
    import datetime as _dt

    m = re.fullmatch(r"\s*([+-])(\d{2})(\d{2})\s*", offset or "")
    if m:
        minutes = (int(m.group(2)) * 60 + int(m.group(3))) * (-1 if m.group(1) == "-" else 1)
        t = _dt.datetime.now(_dt.timezone(_dt.timedelta(minutes=minutes)))
    else:
        t = _dt.datetime.now()
    return t.strftime("%Y%m%d"), t.strftime("%H%M%S")


def utc_offset() -> str:
    """This machine's offset of local time from UTC now, as TimezoneOffsetFromUTC (0008,0201) gives it: "+HHMM" or
    "-HHMM" (the dates and times mcproton writes are local: with it they can be related to the UTC date of the
    HDF5 provenance)."""
    import datetime as _dt

    off = _dt.datetime.now().astimezone().utcoffset() or _dt.timedelta(0)
    minutes = round(off.total_seconds() / 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"


def set_patient_study_series(ds, study: StudyReference, *, modality: str, date: str, time: str,
                             series_description: str, series_instance_uid: str, series_number: int,
                             instance_number: int) -> None:
    """The Patient, General Study, General Series, General Equipment and Frame of Reference attributes that
    every mcproton writer sets the same way (the writers add their modality's own).  ``study`` must be
    :meth:`StudyReference.resolved` (its study and frame UIDs set).  The character set is not decided here: the
    writer adds text after this (plan, beam and ROI names), so :func:`save_dataset` decides it from every text element
    of the finished data set (:func:`settle_charset`)."""
    # the study's date and time (one for every object of the study: StudyReference.resolved); the object's own
    # date and time (Series/Content) are the writer's ``date`` and ``time``, taken in the study's zone
    # (StudyReference.now_date_time).  The offset is the study's: a CT's own, or none where the CT gives none
    # (this machine's would misdate the CT's study time: review 2 of 2026-12-06, F1).  A study with a date but an
    # empty StudyTime (Type 2: a CT may leave it empty) keeps it empty: the time this object is written is not the
    # study's (before, audit 25 F6: each RT Dose gave the CT's study another time, its own)
    ds.StudyDate = study.study_date or date
    ds.StudyTime = study.study_time if study.study_date else time
    zone = study.study_timezone if study.study_date else utc_offset()
    if zone:
        ds.TimezoneOffsetFromUTC = zone
    ds.AccessionNumber = ""
    ds.Modality = modality
    ds.Manufacturer = "mcproton"
    ds.ReferringPhysicianName = ""
    ds.SeriesDescription = series_description[:64]
    _set_patient_identity(ds, study, modality)
    ds.PatientBirthDate = study.patient_birth_date
    ds.PatientSex = study.patient_sex
    if study.patient_age:
        ds.PatientAge = study.patient_age
    ds.StudyInstanceUID = study.study_instance_uid
    ds.SeriesInstanceUID = series_instance_uid
    ds.StudyID = "1"
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    ds.FrameOfReferenceUID = study.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""


#: The most characters of a PatientID (LO) and of each component group of a PatientName (PN) (PS3.5 6.2)
PATIENT_ID_MAX_CHARS = PATIENT_NAME_GROUP_MAX_CHARS = 64


def _set_patient_identity(ds, study: StudyReference, modality: str) -> None:
    """PatientName and PatientID exactly as the inputs give them, even where they are longer than DICOM allows: the
    file must carry the same patient identity as the CT and plan it was computed from (an archive files it by them).
    Before 2026-12-06 a PatientID over 64 characters was cut to 64 (a different ID, perhaps another patient's) while
    an over-long PatientName was copied (strings audit 19, F5).  An over-long value makes the written file invalid
    DICOM in that value, as the input already is: one warning says so, once per run or check (its
    :func:`~mcproton._io.errors.recording_warnings` block: not per object written), and pydicom's own per-value
    warnings are not repeated."""
    import warnings

    name, pid = str(study.patient_name or ""), str(study.patient_id or "")
    longest = max((len(g) for g in name.split("=")), default=0)
    over = ([f"PatientID ({len(pid)} characters)"] if len(pid) > PATIENT_ID_MAX_CHARS else []) + \
        ([f"PatientName ({longest} characters)"] if longest > PATIENT_NAME_GROUP_MAX_CHARS else [])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"The (value|PN component) length", category=UserWarning)
        ds.PatientName = study.patient_name
        ds.PatientID = study.patient_id
    if over:
        from .errors import McprotonRuntimeWarning, said_already, warn

        said = f"the inputs' {' and '.join(over)} exceed{'s' if len(over) == 1 else ''} DICOM's " \
            f"{PATIENT_ID_MAX_CHARS} characters"
        if said_already(said):   # once per run or check, not once per RT Dose, RT Plan or CT written (review 2, F5)
            return
        warn(f"{said}: copied to the {modality} as given, so that it files under the same "
             "patient as the CT and plan it was computed from; that value is not valid DICOM, as in the input (a "
             "strict archive may refuse the file: correct the patient's record in the planning system)",
             McprotonRuntimeWarning, stacklevel=4)


def _latin1(text: str) -> bool:
    """Whether ``text`` is written faithfully in the default character set ISO_IR 100 (Latin-1)."""
    try:
        str(text).encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


# ------------------------------------------------------------------------------------------- character sets
#: The VRs whose values are text in the data set's character set, SpecificCharacterSet (PS3.5 6.1.2.3); the values of
#: the other VRs (CS, DA, UI, DS, ...) are ASCII by definition
CHARSET_VRS = frozenset({"SH", "LO", "ST", "LT", "PN", "UC", "UT"})
#: The two character sets mcproton writes (and assumes for an input that declares none): ISO_IR 100 (Latin-1, the
#: default of the files it writes) and ISO_IR 192 (UTF-8, for text that Latin-1 cannot hold)
LATIN1_CHARSET, UTF8_CHARSET = "ISO_IR 100", "ISO_IR 192"
#: The words of the warning about an input read with an assumed character set (:func:`assume_input_charset`), after
#: the file's name: said once per file in a run or check (the plan is read by several readers)
NO_CHARSET_SAID = "no SpecificCharacterSet (0008,0005)"


#: The sequences whose items hold no text element (:data:`CHARSET_VRS`) by the standard, not walked for text: an RT
#: Struct's ContourSequence (3006,0040: ContourNumber IS, ContourGeometricType CS, NumberOfContourPoints IS,
#: ContourData DS, ...) and the ContourImageSequence (3006,0016) of UIDs in its items.  Walking them made pydicom
#: parse every contour of a structure set that declares no character set (review of 2026-12-07, R2: 4.4 s for a
#: 20 MB one, at each of the check's header reads)
NO_TEXT_SEQUENCES = frozenset({0x30060040, 0x30060016})


def _text_elements(ds):
    """(data set, tag, VR, element) of every standard (not private) text element (:data:`CHARSET_VRS`) of ``ds``
    and of its sequences' items but those of :data:`NO_TEXT_SEQUENCES`, elements still raw left raw (an RT Struct's
    million contour numbers are neither parsed nor converted).  Iterative: a deeply nested file cannot exhaust the
    stack."""
    from pydicom.datadict import dictionary_VR

    stack = [ds]
    while stack:
        d = stack.pop()
        for tag in list(d._dict):
            if tag.is_private or tag.group == 0x0002:
                continue
            elem = d._dict[tag]
            vr = elem.VR
            if vr is None:   # a raw element of an implicit-VR file: the dictionary's VR
                try:
                    vr = dictionary_VR(tag)
                except KeyError:
                    continue
            if vr == "SQ":
                if tag not in NO_TEXT_SEQUENCES:
                    stack.extend(item for item in (d[tag].value or []) if item is not None)
            elif vr in CHARSET_VRS:
                yield d, tag, vr, elem


def _values(v) -> list:
    """The values of an element's value: itself, or each value of a multi-valued one."""
    from pydicom.multival import MultiValue

    return list(v) if isinstance(v, (list, tuple, MultiValue)) else [v]


def _text_of(d, tag, elem) -> list[str]:
    """The text values of a (converted or raw) text element, as written (each value of a multi-valued one)."""
    from pydicom.dataelem import RawDataElement

    if isinstance(elem, RawDataElement):
        if elem.value is None or bytes(elem.value).isascii():
            return []     # nothing that depends on the character set
        elem = d[tag]     # converted in the data set's own character set
    return [str(x) for x in _values(elem.value) if x is not None]


def settle_charset(ds) -> str:
    """Set the SpecificCharacterSet (0008,0005) of a data set mcproton writes from every text element it holds, its
    sequences' items included, and return it: ISO_IR 100 (Latin-1) where all of them are Latin-1, else ISO_IR 192
    (UTF-8).  Called once, just before a file is saved (:func:`save_dataset`, :class:`TemplateFileWriter`), so that
    every writer (RT Dose, CT, RT Struct, RT Plan) declares the character set its text needs.  Before 2026-12-07 the
    writers chose it from the patient's name and ID and the series description only: a Greek plan or beam name for
    a patient named in Latin letters was written as "?????" (identity audit 24, F9).  A data set without one whose
    text is all ASCII (DICOM's default repertoire) is left without ("" returned): mcproton's writers start from
    ISO_IR 100 (:func:`new_file_dataset`), so only a data set built otherwise (a test's) stays as it was."""
    charset = ""
    for d, tag, _, elem in _text_elements(ds):
        texts = [t for t in _text_of(d, tag, elem) if not t.isascii()]
        if not all(_latin1(t) for t in texts):
            charset = UTF8_CHARSET
            break
        if texts:
            charset = LATIN1_CHARSET
    if charset or "SpecificCharacterSet" in ds:
        ds.SpecificCharacterSet = charset or LATIN1_CHARSET
    return str(ds.get("SpecificCharacterSet", "") or "")


def _raw_text_bytes(elem) -> bytes | None:
    """The bytes a text element was read as: a raw element's value; a converted one's value encoded back with
    pydicom's default (Latin-1, lossless: what a file without SpecificCharacterSet was decoded with); None where the
    value cannot be (text decoded otherwise)."""
    from pydicom.dataelem import RawDataElement

    if isinstance(elem, RawDataElement):
        return bytes(elem.value) if elem.value is not None else None
    v = elem.value
    original = getattr(v, "original_string", None)
    if isinstance(original, (bytes, bytearray)):
        return bytes(original)
    try:
        return "\\".join("" if x is None else str(x) for x in _values(v)).encode("latin-1")
    except UnicodeEncodeError:
        return None


#: The text VRs of one value, in which a backslash is text, not the delimiter of values (PS3.5 6.2)
ONE_VALUE_VRS = frozenset({"LT", "ST", "UT"})


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _assume_charset(ds) -> str:
    """Decode the text of a data set that declares no character set (see :func:`assume_input_charset`); returns
    what was assumed ("" where nothing had to be).  Each value by its own bytes: UTF-8 where they are valid UTF-8,
    else Latin-1, so that any subset of the file's attributes (a read of some tags, of the header, of the whole
    file) gives each one the same text."""
    from pydicom.charset import convert_encodings
    from pydicom.dataelem import DataElement, RawDataElement
    from pydicom.datadict import keyword_for_tag

    declared = ds.get("SpecificCharacterSet", None)
    if any(str(v or "").strip() for v in _values(declared)):
        return ""
    found = []
    for d, tag, vr, elem in _text_elements(ds):
        raw = _raw_text_bytes(elem)
        if raw is not None and not raw.isascii():
            found.append((d, tag, vr, raw))
    if not found:
        return ""
    encodings = {cs: convert_encodings([cs]) for cs in (UTF8_CHARSET, LATIN1_CHARSET)}
    try:    # pydicom 3
        from pydicom.dataelem import convert_raw_data_element

        def convert(tag, vr, raw, d, cs):
            return convert_raw_data_element(RawDataElement(tag, vr, len(raw), raw, 0, False, True),
                                            encoding=encodings[cs], ds=d)
    except ImportError:   # pragma: no cover - pydicom 2
        from pydicom.dataelem import DataElement_from_raw

        def convert(tag, vr, raw, d, cs):
            return DataElement_from_raw(RawDataElement(tag, vr, len(raw), raw, 0, False, True), encodings[cs], d)

    def charset_of(raw: bytes) -> str:
        return UTF8_CHARSET if _is_utf8(raw) else LATIN1_CHARSET

    assumed: dict[str, list[str]] = {}   # charset -> the attributes read in it
    for d, tag, vr, raw in found:
        parts = [raw] if vr in ONE_VALUE_VRS else raw.split(b"\\")
        sets = {charset_of(p) for p in parts if not p.isascii()}
        if len(sets) == 1:
            d[tag] = convert(tag, vr, raw, d, next(iter(sets)))
        else:   # values of both kinds in one element (a multi-valued one): each value by its own bytes
            d[tag] = DataElement(tag, vr, [convert(tag, vr, p, d, charset_of(p)).value for p in parts])
        name = attribute_name(keyword_for_tag(tag) or "") or str(tag)
        for cs in sets:
            if name not in assumed.setdefault(cs, []):
                assumed[cs].append(name)
    # what a reader that looks at the declared set sees (mcproton's writers decide theirs from the text they hold)
    ds.SpecificCharacterSet = UTF8_CHARSET if UTF8_CHARSET in assumed else LATIN1_CHARSET
    how = {UTF8_CHARSET: "UTF-8 (ISO_IR 192), as those bytes are valid UTF-8",
           LATIN1_CHARSET: "Latin-1 (ISO_IR 100), as those bytes are not valid UTF-8"}
    return "; ".join(f"{', '.join(names)} {'holds' if len(names) == 1 else 'hold'} bytes above 0x7F: read as {how[cs]}"
                     for cs, names in assumed.items())


def assume_input_charset(ds, src: str | Path, *, say: bool = True) -> str:
    """The one rule by which every reader of an input's identity and text (the CT, the RT Plan, the RT Struct and
    the RT Doses of ``mcproton check``) reads a file that declares no SpecificCharacterSet (0008,0005) while a text
    element (PatientName, PatientID, a plan, beam or ROI name; :data:`CHARSET_VRS`) holds bytes above 0x7F: each such
    value decoded by its own bytes, as UTF-8 where they are valid UTF-8 (practically never by accident for Latin-1
    text), else as Latin-1 (review of 2026-12-07, R3: decided once for all that was read, a read of some tags and a
    full read spelled one name two ways where another text of the file was Latin-1), in place, and the data set's
    SpecificCharacterSet set to what was assumed (UTF-8 where any value was read so); the written files then
    declare a character set that holds the text (:func:`settle_charset`).  pydicom alone reads such bytes as
    Latin-1: a UTF-8 name ("Παπαδόπουλος") became "Î Î±Ï..." in the RT Dose, RD_mc.dcm and the signed report,
    declared ISO_IR 100, without a word (identity audit 24, F4).

    Returns what was assumed ("" where the file declares its character set or its text is ASCII); the first call
    decides (:func:`read_dicom_file` calls it for every file, silently) and later calls return the same.  ``say``:
    warn, naming the file (resolved), the attributes and what was assumed, once per file in a run or check (a file
    is told apart by its resolved path: before, by its name as a substring of the warnings, so that "S.dcm" was
    taken as said by "RS.dcm"'s warning and a second export's "IM000001" by the first's: review R4); the CT reader
    says it once for the slices of a series instead.  A data set given in Python (``load_rtplan(ds)``) is read as
    it is."""
    note = getattr(ds, "_mcproton_assumed_charset", None)
    if note is None:
        note = _assume_charset(ds)
        ds._mcproton_assumed_charset = note
    if note and say:
        from .errors import McprotonWarning, said_already, warn

        where = f"{Path(str(src)).resolve()}: {NO_CHARSET_SAID}"
        if not said_already(where, at_start=True):
            warn(f"{where}, but {note}; the outputs declare the character set they are written "
                 "in: check the names in them against the planning system, and have the exporting system declare "
                 "its SpecificCharacterSet", McprotonWarning, stacklevel=2)
    return note


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


def _save_part10(ds, target) -> None:
    """``ds`` as a DICOM Part 10 file into ``target`` (a path or a binary file object); pydicom 2 and 3 spell this
    differently."""
    if pydicom_v3():
        ds.save_as(target, enforce_file_format=True)
    else:
        ds.save_as(target, write_like_original=False)


def save_dataset(ds, path: str | Path) -> Path:
    """Write ``ds`` as a DICOM Part 10 file, its SpecificCharacterSet settled from its text (:func:`settle_charset`)."""
    settle_charset(ds)
    _save_part10(ds, path)
    return Path(path)


class TemplateFileWriter:
    """Many DICOM files that differ from one template data set (from :func:`new_file_dataset`) only in a few
    top-level elements, e.g. the slices of a CT series (SOP Instance UID, Instance Number, position, pixels).

    pydicom encodes every element of every file (~5 ms a CT slice); here the fixed elements are encoded once
    (pydicom's own element encoder) and each file is the file meta (pydicom's, with the file's SOP Instance
    UID), the fixed runs and the file's variable elements, in tag order: the bytes ``save_dataset`` writes for
    the template with those values.  The first file is checked against ``save_dataset``'s bytes; if they differ
    (another pydicom), every file is written by ``save_dataset`` instead (``fast`` False)."""

    def __init__(self, template, variable: "list[str] | tuple[str, ...]") -> None:
        from pydicom.datadict import tag_for_keyword
        from pydicom.filewriter import correct_ambiguous_vr

        correct_ambiguous_vr(template, True)   # what pydicom does before writing (PixelData OB or OW -> OW)
        settle_charset(template)               # the fixed text is encoded once, here (save_dataset does it per file)
        self.ds, self.variable = template, tuple(variable)
        self._encoding = template.get("SpecificCharacterSet", "iso8859")
        var_tags = {int(tag_for_keyword(k) or -1) for k in self.variable}
        self._parts: list = []          # bytes (a run of fixed elements) or a variable element's tag
        run = bytearray()
        for tag in sorted(template.keys()):
            if tag.element == 0 and tag.group > 6:      # retired group lengths are not written (pydicom)
                continue
            if int(tag) in var_tags:
                self._parts += [bytes(run), tag]
                run = bytearray()
            else:
                run += self._element(tag)
        self._parts.append(bytes(run))
        if len([p for p in self._parts if not isinstance(p, bytes)]) != len(var_tags):
            raise ValueError(f"the template lacks some of {self.variable}")
        self.fast: bool | None = None   # decided at the first write

    def _element(self, tag) -> bytes:
        from pydicom.filebase import DicomBytesIO
        from pydicom.filewriter import write_data_element

        buf = DicomBytesIO()
        buf.is_little_endian, buf.is_implicit_VR = True, False
        write_data_element(buf, self.ds.get_item(tag), self._encoding)
        return buf.getvalue()

    def _meta(self) -> bytes:
        from pydicom.filebase import DicomBytesIO
        from pydicom.filewriter import write_file_meta_info

        buf = DicomBytesIO()
        buf.is_little_endian, buf.is_implicit_VR = True, False
        write_file_meta_info(buf, self.ds.file_meta, enforce_standard=True)
        return buf.getvalue()

    def write(self, path: str | Path, **values) -> Path:
        """Write the template with ``values`` (keyword -> value; every variable element, SOPInstanceUID
        included) to ``path``."""
        import io

        if set(values) != set(self.variable):
            raise ValueError(f"give exactly {self.variable}; got {sorted(values)}")
        ds = self.ds
        for k, v in values.items():
            setattr(ds, k, v)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if self.fast is False:
            return save_dataset(ds, path)
        data = b"".join([b"\0" * 128, b"DICM", self._meta()]
                        + [p if isinstance(p, bytes) else self._element(p) for p in self._parts])
        if self.fast is None:   # the first file: the same bytes as pydicom's own writer?
            ref = io.BytesIO()
            _save_part10(ds, ref)
            self.fast = ref.getvalue() == data
            if not self.fast:
                return save_dataset(ds, path)
        Path(path).write_bytes(data)
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


def attribute_name(keyword: str) -> str:
    """"Keyword (gggg,eeee)" for a DICOM keyword (the keyword alone if the dictionary does not know it)."""
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    return f"{keyword} ({tag >> 16:04X},{tag & 0xFFFF:04X})" if tag is not None else keyword


#: The most characters of a value quoted in a message (:func:`shorten`): a damaged 10^6-value attribute was quoted
#: whole, a 12.7 MB line of stderr (audit 17 hostile F11)
QUOTE_CHARS = 80


def shorten(text: object, limit: int = QUOTE_CHARS) -> str:
    """``str(text)``, cut to its first ``limit`` characters with "... (N characters)" where it is longer: a value
    from an input quoted in a message."""
    t = str(text)
    return t if len(t) <= limit else f"{t[:limit]}... ({len(t):,} characters)"


def number_values(value, keyword: str, where: str, remedy: str, count: int | None = None) -> list[float]:
    """The values of a numeric DICOM attribute (DS, IS, FL, FD; one value or several, as pydicom gives them) as
    finite floats, else :class:`DicomInputError` naming the attribute and its tag, ``where`` (the file, and the
    item in it), which value is wrong and what it is ("value 1 of 3 is 'nan'"), and ``remedy`` (what to do).
    ``count``: the number of values the attribute must hold.  A DS "nan" or "inf" is read by Python as a float, so
    a reader that converts with ``float`` alone lets it through; "1,5" or "abc" gave "could not convert"."""
    import math

    from .errors import DicomInputError

    name = attribute_name(keyword)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DicomInputError(f"{where}: {name} is missing or empty; {remedy}")
    vals = [value] if isinstance(value, (str, bytes, int, float)) else list(value)
    out = []
    for i, v in enumerate(vals):
        pos = f" value {i + 1} of {len(vals)}" if len(vals) > 1 else ""
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise DicomInputError(f"{where}: {name}{pos} is {shorten(v)!r}, not a number; {remedy}") from None
        if not math.isfinite(x):
            raise DicomInputError(f"{where}: {name}{pos} is {shorten(str(v).strip())!r}, which is not finite (NaN or "
                                  f"infinity); {remedy}")
        out.append(x)
    if count is not None and len(out) != count:
        shown = shorten("\\".join(str(v) for v in vals[:20]) + ("\\..." if len(vals) > 20 else ""))   # as DICOM writes
        raise DicomInputError(f"{where}: {name} holds {len(out)} value(s) ({shown}), not {count}; {remedy}")
    return out


# ------------------------------------------------------------------------------------------- strict reading
# A DICOM reader must tell a complete file from one that ends early.  pydicom is tolerant: a file cut at
# an element boundary inside a sequence of defined length reads as a shorter sequence (an RT Ion Plan cut
# at half its size loses control points without a word).  ``check_complete`` walks the element structure
# of the bytes (PS3.5 section 7: tag, VR, length; sequences and items of defined or undefined length) and
# refuses a file whose last element, item or sequence needs more bytes than the file holds, or whose
# undefined-length sequences and items lack their delimiters.  Values are not decoded here.
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_DELIM, _SEQ_DELIM = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_VRS = {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"OB", b"OD", b"OF",
        b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM", b"UC", b"UI", b"UL", b"UN",
        b"UR", b"US", b"UT", b"UV"}
_VRS_LONG = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_IMPLICIT_LE, _EXPLICIT_BE, _DEFLATED = "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"


class _Broken(Exception):
    def __init__(self, pos: int, path: list, what: str, *, truncated: bool = True):
        super().__init__(what)
        self.pos, self.path, self.what, self.truncated = pos, list(path), what, truncated


def _tag_name(tag: int) -> str:
    from pydicom.datadict import keyword_for_tag

    try:
        kw = keyword_for_tag(tag)
    except Exception:  # pragma: no cover - private or unknown tags
        kw = ""
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})" + (f" {kw}" if kw else "")


def _is_sq(tag: int) -> bool:
    from pydicom.datadict import dictionary_VR

    try:
        return dictionary_VR(tag) == "SQ"
    except Exception:
        return False


def _walk_elements(buf, pos: int, end: int, implicit: bool, little: bool, path: list, *, in_item: bool) -> int:
    """Walk the elements of a data set from ``pos``: to ``end`` exactly (``in_item`` False, or an item of
    defined length), or to the item delimiter (``in_item`` True).  Returns the position after the last byte."""
    import struct

    e = "<" if little else ">"
    n = len(buf)
    while True:
        if pos == end and not in_item:
            return pos
        if pos + 8 > min(end, n):
            raise _Broken(pos, path, "the file ends inside an element header" if pos < n else
                          "the file ends before the end of this item or sequence")
        group, elem = struct.unpack_from(e + "HH", buf, pos)
        tag = (group << 16) | elem
        if tag == _ITEM_DELIM:
            if in_item:
                return pos + 8
            raise _Broken(pos, path, "an item delimiter where a data element was expected", truncated=False)
        if tag in (_ITEM, _SEQ_DELIM):
            raise _Broken(pos, path, "an item or sequence tag where a data element was expected", truncated=False)
        vr = b""
        if implicit:
            (length,) = struct.unpack_from(e + "L", buf, pos + 4)
            hdr = 8
        else:
            vr = bytes(buf[pos + 4:pos + 6])
            if vr in _VRS_LONG:
                here_ = path + [tag]
                if pos + 12 > n:
                    raise _Broken(pos, here_, "the file ends inside the element header")
                (length,) = struct.unpack_from(e + "L", buf, pos + 8)
                hdr = 12
            elif vr in _VRS:
                (length,) = struct.unpack_from(e + "H", buf, pos + 6)
                hdr = 8
            else:
                raise _Broken(pos, path, f"{_tag_name(tag)} has no valid VR ({vr!r})", truncated=False)
        vpos = pos + hdr
        here = path + [tag]
        if tag == _PIXEL_DATA and length == _UNDEFINED:            # encapsulated pixel data: fragments
            pos = _walk_items(buf, vpos, length, implicit, little, here, fragments=True)
        elif length == _UNDEFINED:                                 # a sequence (SQ, or UN holding implicit VR)
            pos = _walk_items(buf, vpos, length, implicit or vr == b"UN", little, here, fragments=False)
        else:
            if vpos + length > n:
                if vr == b"SQ" or (implicit and _is_sq(tag)):          # find where inside it the bytes end
                    _walk_items(buf, vpos, length, implicit, little, here, fragments=False)
                raise _Broken(pos, here, f"its value needs {length} bytes, the file holds only {max(n - vpos, 0)} more")
            pos = vpos + length
            if pos > end:
                raise _Broken(pos, here, f"{_tag_name(tag)} runs past the end of its item", truncated=False)


#: The deepest nesting of sequences :func:`check_complete` walks: real objects nest a few levels (an RT Ion Plan's
#: beams > control points > range shifter settings: 3); a file nested deeper is refused, naming it (before: a private
#: sequence nested 100,000 deep exhausted Python's stack, "maximum recursion depth exceeded" with no file named,
#: audit 17 hostile F9).  Each level takes two frames of the recursive walk, well inside Python's 1000.
MAX_SEQUENCE_DEPTH = 64


class _TooDeep(Exception):
    pass


def _walk_items(buf, pos: int, length: int, implicit: bool, little: bool, path: list, *, fragments: bool) -> int:
    import struct

    if len(path) > 2 * MAX_SEQUENCE_DEPTH:   # path: tag, item, tag, item, ...
        raise _TooDeep()

    e = "<" if little else ">"
    n = len(buf)
    end = n if length == _UNDEFINED else pos + length
    k = 0
    while True:
        if length != _UNDEFINED and pos == end:
            return pos
        if pos + 8 > min(end, n):
            raise _Broken(pos, path + [k], "the file ends inside this sequence (its last items are missing)")
        group, elem = struct.unpack_from(e + "HH", buf, pos)
        (ilen,) = struct.unpack_from(e + "L", buf, pos + 4)
        tag = (group << 16) | elem
        if tag == _SEQ_DELIM:
            if length == _UNDEFINED:
                return pos + 8
            raise _Broken(pos, path, "a sequence delimiter in a sequence of defined length", truncated=False)
        if tag != _ITEM:
            raise _Broken(pos, path + [k], f"expected an item, found tag {_tag_name(tag)}", truncated=False)
        ipos = pos + 8
        if ilen == _UNDEFINED and not fragments:
            pos = _walk_elements(buf, ipos, n, implicit, little, path + [k], in_item=True)
        elif ilen == _UNDEFINED:
            raise _Broken(pos, path + [k], "a pixel-data fragment of undefined length", truncated=False)
        elif ipos + ilen > n:
            if not fragments:
                _walk_elements(buf, ipos, n, implicit, little, path + [k], in_item=False)
            raise _Broken(pos, path + [k], f"the item needs {ilen} bytes, the file holds only {n - ipos} more")
        else:
            pos = ipos + ilen
        if pos > end:
            raise _Broken(pos, path + [k], "an item runs past the end of its sequence", truncated=False)
        k += 1


def _describe_path(path: list) -> str:
    parts = []
    for p in path:
        if isinstance(p, int) and p > 0xFFFF:
            parts.append(_tag_name(p))
        else:
            parts[-1] = parts[-1] + f" item {p}"
    return " > ".join(parts) if parts else "the top-level data set"


def _dataset_start(buf) -> tuple[int, str | None]:
    """Offset of the data set (after preamble and file meta group) and the transfer syntax of the meta."""
    import struct

    pos = 132 if len(buf) >= 132 and bytes(buf[128:132]) == b"DICM" else 0
    ts = None
    while pos + 8 <= len(buf):
        group, elem = struct.unpack_from("<HH", buf, pos)
        if group != 0x0002:
            break
        vr = bytes(buf[pos + 4:pos + 6])
        if vr in _VRS_LONG:
            if pos + 12 > len(buf):
                break
            (length,) = struct.unpack_from("<L", buf, pos + 8)
            hdr = 12
        elif vr in _VRS:
            (length,) = struct.unpack_from("<H", buf, pos + 6)
            hdr = 8
        else:  # implicit VR file meta (not standard, but seen): 4-byte length
            (length,) = struct.unpack_from("<L", buf, pos + 4)
            hdr = 8
        if elem == 0x0010:
            ts = bytes(buf[pos + hdr:pos + hdr + length]).rstrip(b"\0 ").decode("ascii", "replace")
        pos += hdr + length
    return pos, ts


#: The most the Deflated data set of any DICOM file read may inflate to (bytes): 1 GiB, an RT Dose of 2^28 32-bit
#: voxels (e.g. 640 x 640 x 655 at 1 mm) or an RT Struct of some 10^7 contour points.  A few MB on disk can claim
#: gigabytes; beyond this a file is refused before more is inflated (untrusted-input audit 29, F1: a 3.9 MB file in a
#: patient folder inflated to 4 GB in the check's folder scan, which then stopped "out of memory" without naming
#: it).  The CT reader bounds a slice tighter (ct.MAX_CT_SLICE_INFLATED_BYTES).
MAX_INFLATED_BYTES = 2 ** 30
#: why MAX_INFLATED_BYTES is too much, in the refusal
_MAX_INFLATED_WHAT = "more than any DICOM object that mcproton reads holds (an RT Dose of 2^28 32-bit voxels)"


def _too_inflated(src: str, on_disk: int, limit: int, what: str):
    """The :class:`DicomInputError` of a Deflated data set inflating to more than ``limit`` bytes."""
    from .errors import DicomInputError

    return DicomInputError(f"{src}: its Deflated data set ({on_disk / 1e6:.1f} MB on disk) inflates to more than "
                           f"{limit / 1e6:.0f} MB{', ' + what if what else ''}: the file is damaged or not what it "
                           "claims to be; export it again (uncompressed), or remove it")


#: The inflated sizes (bytes) of the Deflated data sets :func:`_refuse_inflating_beyond` has counted, by a digest of
#: their compressed bytes (BLAKE2b, 16 bytes): a data set read again in the same process (``mcproton check``'s folder
#: scan reads a CT slice's header, then the CT reader checks the slice) is not inflated again only to count it.  Its
#: inflated size is that of its bytes, wherever they are read from, so the bound holds as before; the digest costs
#: ~0.1 ms per slice against 1.5-2 ms per inflate.  Measured (audit 30, lefts F5; 200 Deflated 512 x 512 slices, a
#: loaded 2-core VM): the counts were 21-24 % of the CPU of the check's read of the folder and the CT (3.3 s).
_COUNTED: dict[bytes, int] = {}
#: the most digests kept (then all forgotten: a few MB at most)
_COUNTED_MAX = 1 << 16


def _refuse_inflating_beyond(p: Path, head: bytes, size: int, limit: int | None = None,
                             what: str = _MAX_INFLATED_WHAT, *, data: bytes | None = None) -> None:
    """Refuse the file ``p`` (``size`` bytes, its first bytes ``head``, the file meta among them) where it is Deflated
    and its data set inflates to more than ``limit`` bytes: the inflated bytes are counted a chunk at a time and
    not kept, so the memory used is a few MB whatever the file claims (pydicom inflates the whole data set at
    once, before any element is read).  ``data``: the whole file, read already, inflated from memory rather than
    from ``p`` opened again (a pipe opened again waits for a writer that is gone: review a of audit 29, R3).  A data
    set counted before (the same compressed bytes: :data:`_COUNTED`) is judged on the size counted then."""
    import hashlib
    import io
    import zlib

    from .errors import DicomInputError

    start, ts = _dataset_start(head)
    if ts != _DEFLATED or start > len(head):   # a file meta beyond ``head``: the structure check says what it is
        return
    limit = MAX_INFLATED_BYTES if limit is None else limit
    digest = hashlib.blake2b(digest_size=16)
    if data is not None:
        digest.update(memoryview(data)[start:])
        known = _COUNTED.get(digest.digest())
        if known is not None:
            if known > limit:
                raise _too_inflated(str(p), size, limit, what)
            return
    d, n = zlib.decompressobj(-15), 0
    try:
        with (io.BytesIO(data) if data is not None else open(p, "rb")) as f:
            f.seek(start)
            while not d.eof and (chunk := f.read(1 << 20)):
                if data is None:
                    digest.update(chunk)
                while chunk:
                    n += len(d.decompress(chunk, 1 << 20))
                    if n > limit:
                        raise _too_inflated(str(p), size, limit, what)
                    chunk = d.unconsumed_tail
            while data is None and (chunk := f.read(1 << 20)):   # bytes after the deflate stream: in the digest too
                digest.update(chunk)
    except zlib.error as exc:
        raise DicomInputError(f"{p}: the deflated data set cannot be inflated ({exc}); the file is damaged or "
                              "truncated: copy or export it again") from None
    except OSError as exc:
        raise DicomInputError(f"{p}: cannot be read ({exc})") from exc
    if not d.eof:   # a truncated stream: the structure check refuses it; not remembered
        return
    if len(_COUNTED) >= _COUNTED_MAX:
        _COUNTED.clear()
    _COUNTED[digest.digest()] = n


def check_complete(buf: bytes, src: str, *, max_inflated_bytes: int | None = None, what: str = "") -> None:
    """Raise :class:`DicomInputError` if the DICOM bytes ``buf`` end early or their element structure is
    broken (see the comment above); ``src`` names the file in the message.  ``max_inflated_bytes``: a Deflated data
    set that inflates to more is refused before more is inflated (a few MB on disk can claim gigabytes: the
    hostile-input audit, F4); ``what`` says in the message why that is too much.  Without one, the bound is
    :data:`MAX_INFLATED_BYTES` (before, none: untrusted-input audit 29, F1)."""
    import zlib

    from .errors import DicomInputError

    if max_inflated_bytes is None:
        max_inflated_bytes, what = MAX_INFLATED_BYTES, what or _MAX_INFLATED_WHAT
    start, ts = _dataset_start(buf)
    if start > len(buf):
        raise DicomInputError(f"{src}: the file ends inside its file meta information ({len(buf)} bytes); it is "
                              "truncated (an interrupted transfer?): copy or export it again")
    body = buf[start:]
    if ts == _DEFLATED:
        try:
            d = zlib.decompressobj(-15)
            body = d.decompress(bytes(body), max_inflated_bytes + 1)
            if len(body) > max_inflated_bytes or d.unconsumed_tail:
                raise _too_inflated(src, len(buf), max_inflated_bytes, what)
            body += d.flush()
        except zlib.error as exc:
            raise DicomInputError(f"{src}: the deflated data set cannot be inflated ({exc}); the file is "
                                  "damaged or truncated: copy or export it again") from None
    if ts is None:  # no file meta: guess as pydicom does (explicit VR if the first element carries a VR)
        implicit, little = not (len(body) >= 6 and bytes(body[4:6]) in _VRS), True
    else:
        implicit, little = ts == _IMPLICIT_LE, ts != _EXPLICIT_BE
    try:
        _walk_elements(memoryview(body), 0, len(body), implicit, little, [], in_item=False)
    except _TooDeep:
        raise DicomInputError(f"{src}: its sequences are nested deeper than {MAX_SEQUENCE_DEPTH} levels, which no "
                              "DICOM object needs: the file is damaged or not a valid DICOM file; copy or export it "
                              "again, or remove it") from None
    except _Broken as b:
        if _tolerated(body, b, implicit, little, ts, src):
            return
        where = _describe_path(b.path)
        if b.truncated:
            raise DicomInputError(
                f"{src}: the file ends early ({len(buf)} bytes; at {where}: {b.what}); it was truncated, e.g. by "
                "an interrupted transfer, and would be read as a shorter file: copy or export it again") from None
        raise DicomInputError(f"{src}: the DICOM element structure is broken at byte {start + b.pos} ({where}: "
                              f"{b.what}); the file is damaged: copy or export it again") from None


#: The most zero bytes after a complete data set read as padding (a media writer's or archive's block, 2048 bytes on a
#: CD; not conformant, PS3.10 7.2 puts padding in DataSetTrailingPadding (FFFC,FFFC), but pydicom reads past them):
#: more is a file zero-filled beyond where its writing stopped, and refused as before
MAX_ZERO_PADDING = 4096


def _tolerated(body, b: "_Broken", implicit: bool, little: bool, ts: str | None, src: str) -> bool:
    """Whether a walk that broke at ``b`` is one of two deviations that pydicom reads correctly, each warned about
    (the pacs audit, F5: both were refused as truncated or damaged, and exporting again, as the message said, did not
    help): zero bytes (at most :data:`MAX_ZERO_PADDING`) after the last top-level element; or a data set encoded
    with the other VR encoding than the file meta's TransferSyntaxUID says (implicit for explicit or the reverse),
    which the other encoding walks to its end."""
    from .errors import warn

    tail = bytes(body[b.pos:])
    if not b.path and 0 < len(tail) <= MAX_ZERO_PADDING and not any(tail):
        warn(f"{src}: {len(tail)} zero bytes after the last data element (padding by the writer or the medium, not "
             "DICOM's DataSetTrailingPadding): read without them", stacklevel=4)
        return True
    if ts is None or not little:        # no file meta (guessed already), or big endian (explicit by definition)
        return False
    try:
        _walk_elements(memoryview(body), 0, len(body), not implicit, little, [], in_item=False)
    except _Broken:
        return False
    said, found = ("implicit", "explicit") if implicit else ("explicit", "implicit")
    warn(f"{src}: the file meta's TransferSyntaxUID {ts} says {said} VR, but the data set is encoded with {found} VR "
         f"(the file was labelled wrongly when it was written): read as encoded, as pydicom does", stacklevel=4)
    return True


def _looks_like_dataset(buf) -> bool:
    """A file without preamble and 'DICM' may still be DICOM (a raw data set, as some systems write): it
    must start with an element of group 0x0002 (file meta) or 0x0008 (the first group of every IOD)."""
    import struct

    if len(buf) < 8:
        return False
    group, _ = struct.unpack_from("<HH", buf, 0)
    return group in (0x0002, 0x0008)


#: The first two bytes of a gzip file (RFC 1952): a DICOM file compressed with gzip (RD.dcm.gz) is not DICOM as it is
GZIP_SIGNATURE = b"\x1f\x8b"


def is_gzip(path: str | Path) -> bool:
    """Whether the file ``path`` starts with the gzip signature (False if it cannot be read)."""
    try:
        with open(path, "rb") as f:
            return f.read(2) == GZIP_SIGNATURE
    except OSError:
        return False


#: The suffixes of files that are DICOM by their names (lower case): none, .dcm, .dicom and .ima (Siemens syngo exports:
#: PAT.CT.HEAD.0001.0001....IMA); a numeric "suffix" is a file named by its UID (1.2.840....123), as storage servers
#: name them
DICOM_SUFFIXES = ("", ".dcm", ".dicom", ".ima")


def named_like_dicom(name: str) -> bool:
    """Whether a file named ``name`` is DICOM by its name (:data:`DICOM_SUFFIXES`, or a numeric suffix)."""
    suffix = Path(name).suffix.lower()
    return suffix in DICOM_SUFFIXES or suffix[1:].isdigit()


def dangling_links(files: Sequence[Path]) -> list[Path]:
    """The symbolic links among ``files`` whose targets do not exist (a moved or unmounted store, a link loop):
    ``Path.is_file()`` is False for them, so a folder's listing leaves them out without a word."""
    return [f for f in files if f.is_symlink() and not f.exists()]


def links_listed(links: Sequence[Path], root: Path | None = None) -> str:
    """"name -> target, ..." of the first few symbolic ``links`` (named from ``root``, else by their names)."""
    return ", ".join(f"{f.relative_to(root) if root else f.name} -> {os.readlink(f)}" for f in links[:4]) + (
        f" and {len(links) - 4} more" if len(links) > 4 else "")


def dangling_links_message(links: Sequence[Path], where: str, what: str, root: Path | None = None) -> str:
    """Why ``links`` (:func:`dangling_links`, named like DICOM: :func:`named_like_dicom`) ``where`` ("in the CT folder
    F") are refused: they may be ``what`` (and what reading the folder without them would do), and what to do;
    ``root``: as :func:`links_listed`."""
    return (f"{len(links)} file(s) {where} named like DICOM files are symbolic links to files that do not exist: "
            f"{links_listed(links, root)}; they may be {what}: make their targets available again (mount the storage "
            "they point to) or copy the files themselves into the folder, or remove the links if they are not needed")


def may_be_dicom(path: str | Path) -> bool:
    """The rule by which ``mcproton check`` picks the files of a patient folder it reads, the files ``mcproton run``
    reads of a CT folder among them: named like DICOM (:func:`named_like_dicom`), or any other name with the DICOM
    prefix 'DICM' at byte 128 (looked at without reading the rest: a patient folder may hold large outputs).  The pacs
    audit (F2): the check looked at the suffix only, so a CT of *.IMA slices that `mcproton run` reads was "no CT"."""
    if named_like_dicom(Path(path).name):
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def gzip_error(path: str | Path):
    """The DicomInputError for a gzip-compressed file given or found where a DICOM file is read."""
    from .errors import DicomInputError

    name = Path(path).name
    plain = name[:-3] if name.lower().endswith(".gz") else name + ".dcm"
    return DicomInputError(f"{path}: the file is gzip-compressed (it starts with the gzip signature 1f 8b), not a "
                           f"DICOM file as it is: decompress it first (e.g. gunzip -c {name} > {plain}) and give the "
                           "decompressed file")


#: A value longer than this (bytes) cannot be written with a VR of 2-byte length (DS, FL, LO, ...) in explicit VR: it
#: is written with VR UN instead (PS3.5 section 6.2.2), and pydicom (3.0) leaves such UN values undecoded bytes
#: (``config.replace_un_with_known_vr`` applies below this length only).
_UN_LONG = 0xFFFF


def decode_long_un(ds) -> None:
    """Give the elements of ``ds`` (and of its sequences' items) that an explicit-VR file holds as UN because their
    value is longer than 64 kB (PS3.5 section 6.2.2: a 6000-point ContourData, the ScanSpotMetersetWeights of a
    20,000-spot layer, a long GridFrameOffsetVector) the VR of the data dictionary, in place, so that they read as
    the same numbers and strings as in an implicit-VR file; before, a reader got the raw bytes (ContourData parsed as
    byte values, 20,000 weights counted as one value).  Elements still raw stay raw (pydicom converts them when
    read, with the file's byte order); private and unknown tags, and dictionary VRs that are ambiguous ('US or SS')
    or sequences, are left as they are.  The walk is iterative (a deeply nested file cannot exhaust the stack)."""
    from pydicom.dataelem import RawDataElement
    from pydicom.datadict import dictionary_VR

    little = (getattr(ds, "original_encoding", None) or (None, True))[1] is not False
    stack = [ds]
    while stack:
        d = stack.pop()
        for tag in list(d._dict):
            elem = d._dict[tag]
            if elem.VR == "SQ":
                stack.extend(item for item in (d[tag].value or []) if item is not None)
                continue
            value = elem.value
            if elem.VR != "UN" or tag.is_private or not isinstance(value, (bytes, bytearray)) or len(value) < _UN_LONG:
                continue
            try:
                known = dictionary_VR(tag)
            except KeyError:
                continue
            if known not in ("UN", "SQ") and " " not in known:
                d._dict[tag] = (elem._replace(VR=known) if isinstance(elem, RawDataElement) else
                                RawDataElement(tag, known, len(value), bytes(value), 0, False, little))


def _dicom_start(p: Path, head: bytes, size: int) -> bool | None:
    """How a file whose first bytes are ``head`` (at least its first 132, or all of a shorter file of ``size`` bytes)
    is DICOM: True with the 'DICM' prefix (Part 10), False for a raw data set (no preamble and file meta, as some
    storage SCPs, research tools and older systems write), None if it is not DICOM at all; a gzip-compressed file or
    one that ends inside the preamble is a :class:`DicomInputError`."""
    from .errors import DicomInputError

    has_magic = len(head) >= 132 and head[128:132] == b"DICM"
    if not has_magic and head[:2] == GZIP_SIGNATURE:   # before: "not a DICOM file", or skipped in a folder
        raise gzip_error(p)
    if not has_magic:
        if 0 < size <= 132 and not any(head[:128]):
            raise DicomInputError(f"{p}: the file ends early ({size} bytes, inside the 128-byte DICOM "
                                  "preamble); it was truncated: copy or export it again")
        if not _looks_like_dataset(head):
            return None
    return has_magic


def _parse_dataset(source, p: Path, *, has_magic: bool, **kw):
    """pydicom's reading of ``source`` (the file's bytes or its path) as :func:`read_dicom_file` reads it: forced
    where the file is a raw data set, pydicom's errors a :class:`DicomInputError` naming ``p``, long UN values
    decoded, the text decoded as every reader decodes it, a raw data set's encoding recorded as its
    TransferSyntaxUID."""
    import io

    import pydicom
    from pydicom.filebase import DicomIO

    from .errors import DicomInputError

    try:
        ds = pydicom.dcmread(source, force=not has_magic, **kw)
    except MemoryError:   # the machine, not the file
        raise
    except RecursionError:   # nesting that exhausts the stack (check=False: not walked above)
        raise DicomInputError(f"{p}: its sequences are nested too deep to be read: the file is damaged or not a "
                              "valid DICOM file; copy or export it again, or remove it") from None
    except Exception as exc:  # pydicom raises many types on damaged files
        raise DicomInputError(f"{p}: cannot be read as DICOM ({type(exc).__name__}: {exc}); the file is "
                              "damaged: copy or export it again") from exc
    # pydicom keeps the buffer a data set was read from (FileDataset.buffer; .filename in pydicom 2), for the
    # elements it defers, which it defers none of here: the whole file, pixels included, for as long as the data set
    # is kept (a CT folder's header data sets held every slice's pixels once more: the CT reading peaked at 3.1 x
    # its volume, audit F7).  A Deflated file's is the inflated data set (pydicom's DicomBytesIO, not an io.BytesIO):
    # a CT header pass kept each slice's inflated pixels with its header (hostile-input audit 17, F4, left undone)
    for attr in ("buffer", "filename"):
        if isinstance(getattr(ds, attr, None), (io.BytesIO, DicomIO)):
            setattr(ds, attr, None)
    try:
        decode_long_un(ds)
        assume_input_charset(ds, p, say=False)   # the readers of identity and text say it (CT: once per series)
    except MemoryError:
        raise
    except Exception as exc:  # a sequence pydicom cannot parse: the same message as a file pydicom cannot read
        raise DicomInputError(f"{p}: cannot be read as DICOM ({type(exc).__name__}: {exc}); the file is "
                              "damaged: copy or export it again") from exc
    if "TransferSyntaxUID" not in ds.file_meta:  # a raw data set: record the encoding it was read with
        from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

        implicit, little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                          ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
    return ds


def not_dicom_text(path: str | Path, what: str) -> str:
    """The refusal of a file in which :func:`read_dicom_file` found no DICOM (None), ``what`` the object to give
    instead ("RT Ion Plan", "RT Dose"): one wording for the plan's and the RT Dose's readers."""
    return (f"{path}: not a DICOM file (no 'DICM' prefix and no DICOM data set at its start); give the {what} "
            "exported by the planning system")


def read_dicom_file(path: str | Path, *, stop_before_pixels: bool = False, check: bool = True,
                    max_inflated_bytes: int | None = None, inflated_what: str = ""):
    """Read a DICOM file strictly: ``None`` if the file is not DICOM at all (no 'DICM' prefix and no data
    set at its start; a file without the 128-byte preamble and file meta is read as a raw data set, by every
    reader alike), :class:`DicomInputError` if it ends early, cannot be parsed or is gzip-compressed (saying to
    decompress it), else the pydicom Dataset.
    ``check=False`` skips the structure walk (for a second read of a file already checked).
    ``max_inflated_bytes``, ``inflated_what``: the bound of a Deflated data set, checked with the structure
    (:func:`check_complete`).  Running out of memory is a MemoryError, never called a damaged file.
    A file that declares no SpecificCharacterSet but holds text bytes above 0x7F has that text decoded by
    :func:`assume_input_charset` (silently: the readers of identity say it), so every reader reads it alike.
    A header alone is read by :func:`read_dicom_header`, which reads a file the same way."""
    import io
    import stat

    from .errors import DicomInputError

    p = Path(path)
    try:   # a regular file's first 132 bytes first: a file that is not DICOM is not read whole (a 4 GB backup
        # without a suffix in a patient folder stopped the check "out of memory": untrusted-input audit 29, F2)
        st = os.stat(p)
        if stat.S_ISREG(st.st_mode):
            with open(p, "rb") as f:
                head = f.read(132)
            has_magic = _dicom_start(p, head, st.st_size)
            if has_magic is None:
                return None
        buf = p.read_bytes()
    except OSError as exc:
        raise DicomInputError(f"{p}: cannot be read ({exc})") from exc
    has_magic = _dicom_start(p, buf[:132], len(buf))   # of what was read (a pipe's only read)
    if has_magic is None:
        return None
    if check:
        # a Deflated file's inflated size counted first, without keeping it (audit 29, F1); then inflated, walked
        _refuse_inflating_beyond(p, buf[:_META_READ], len(buf), max_inflated_bytes,
                                 _MAX_INFLATED_WHAT if max_inflated_bytes is None else inflated_what, data=buf)
        check_complete(buf, str(p), max_inflated_bytes=max_inflated_bytes, what=inflated_what)
    return _parse_dataset(io.BytesIO(buf), p, has_magic=has_magic, stop_before_pixels=stop_before_pixels)


#: the bytes read at the start of a file for its file meta (its transfer syntax; the group is a few hundred bytes)
_META_READ = 64 * 1024


def read_dicom_header(path: str | Path, *, specific_tags: Sequence[str] | None = None):
    """The header of the DICOM file ``path`` (its data set up to the pixel data; only ``specific_tags`` where given),
    read as :func:`read_dicom_file` reads a file, without reading the rest of it or walking its structure: ``None``
    if it is not DICOM at all, a :class:`DicomInputError` naming the file if it is gzip-compressed or cannot be
    parsed, a raw data set (no preamble and file meta) read as such.  Every header read of an input (the check's
    folder and plan reads, the survey of ``check --batch``, the slab phantom's frame of reference, an RT Dose's
    second read) goes through it: before (audit 27 encodings, F1) most called pydicom without ``force``, so a raw RT
    Ion Plan that ``run`` reads stopped ``check`` with pydicom's "Use force=True", and a slab_ct run of it wrote its
    RT Dose in a new frame of reference."""
    from .errors import DicomInputError

    p = Path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(_META_READ)
        size = p.stat().st_size
    except OSError as exc:
        raise DicomInputError(f"{p}: cannot be read ({exc})") from exc
    has_magic = _dicom_start(p, head[:132], size)
    if has_magic is None:
        return None
    _refuse_inflating_beyond(p, head, size)   # before pydicom inflates all of it (audit 29, F1)
    kw = {"specific_tags": list(specific_tags)} if specific_tags is not None else {}
    return _parse_dataset(str(p), p, has_magic=has_magic, stop_before_pixels=True, **kw)


#: The words that begin the plan reader's warning of an invalid plan SOP Instance UID, followed by the UID's repr: the
#: RT Dose writer looks for them among the warnings recorded in the current call and does not say it again
INVALID_PLAN_UID_SAID = "SOPInstanceUID"


def replacement_plan_uid(uid: str) -> str:
    """The UID an RT Dose references in place of a plan's invalid SOP Instance UID ``uid``: derived from it, so the
    same for every dose of that plan (and the plan reader can name it in its warning)."""
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=["mcproton plan reference", str(uid)]))


def is_valid_uid(uid: str, *, instance: bool = True) -> bool:
    """Whether ``uid`` is a valid DICOM UID (PS3.5 section 9.1: at most 64 characters, components of digits
    separated by '.', no empty component, no leading zero in a component of more than one digit).  With
    ``instance`` (the default) a UID under the DICOM root 1.2.840.10008 is refused too: that root holds the
    standard's own UIDs (SOP classes, transfer syntaxes), never an instance's (OpenTPS writes the SOP Class
    UID as the plan's SOP Instance UID)."""
    import re

    if not isinstance(uid, str) or not 0 < len(uid) <= 64:
        return False
    if not re.fullmatch(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*", uid):
        return False
    return not (instance and (uid == "1.2.840.10008" or uid.startswith("1.2.840.10008.")))
