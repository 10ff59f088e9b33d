"""DICOM RT Structure Set import, rasterisation onto a voxel grid, and DVHs in the output HDF5.

``load_rtstruct(path)`` returns ``{ROI name: [contour, ...]}`` where each contour is an (n, 3) array of
(x, y, z) points in the patient frame (LPS, mm) of a closed contour (CLOSED_PLANAR, or CLOSEDPLANAR_XOR, which
the same even-odd rule combines) of 3 or more points; ROIs with only POINT or OPEN contours (isocentre markers, ...)
are returned with an empty list.  A closed contour of 1 or 2 points (no area) and a contour of a
ContourGeometricType that DICOM does not define are left out with a warning.  ``read_rtstruct`` also gives the frame of
reference and the ROI numbers and types.

``rasterise(struct, geometry)`` turns the contours into boolean masks (z, y, x) on a
:class:`mcproton.geometry.VoxelGeometry` (or any grid with ``origin_mm``, ``voxel_size_mm``, ``shape_zyx``):
a voxel is inside when its centre lies inside the contour polygon (the crossing-number test, run per scanline; a
centre on the outline (within 1e-6 mm above it, so that float noise in the grid's origin does not decide) belongs to
the polygon if it is on its upper x or y side: each axis half-open, (lower, upper], whichever way the contour runs;
even-odd rule across the contours of one plane, so that a contour inside another is a hole as in DICOM PS3.3
C.8.8.6; two contours that overlap without one inside the other are warned of, as the rule leaves their overlap
out).  Contour planes must be axial: a contour's points within 0.01 mm in z; the contours whose mean z lie within
0.01 mm of each other are one plane (:func:`_planes`; two planes of an ROI closer than 0.1 mm, as no CT's slices
are, are warned of when the file is read).  Each contour plane stands for the CT slice it was drawn on, as planning
systems take it (dicompyler-core: each plane the structure's smallest plane spacing): its slab is that slice (the
CT's slice spacing, :func:`image_slice_mm`: the median plane spacing of the structure set's ROIs, or the spacing its
references to the CT's slices give, whichever is less; the grid's slice where neither gives one), or the structure's
own median plane spacing where that is less, cut at the midpoints to its neighbouring planes; a single-plane
structure's slab is at least a grid slice.  Each grid slice takes the plane whose slab holds its centre; a slice the
structure has no contour on stays empty (an ROI on scattered slices, intervertebral discs, fiducials or several
small lesions, is not filled between them; before audit 23 (2026-12-06) a plane's slab was the structure's own
median plane spacing, and discs 12 mm apart on a 3 mm CT were read back as one column: round-trip audit 23, F2), as
do slices beyond the first and last plane by more than half a slab.  A plane's slab is half-open, (lower, upper]: a
slice centre exactly on a boundary (midway between two planes, or half a slab beyond the first or last plane, within
1e-6 mm, as on an outline in x and y) belongs to the lower plane only, so that on any grid whose spacing divides the
slab the slices hold the slab's thickness (planes z_0..z_n every p mm: n + 1 planes times p).
:func:`contour_volumes_cm3` takes the same slabs.

``write_dvh_hdf5(h5_path, dose_zyx, masks, voxel_volume_cm3)`` adds a group ``dvh`` to a result HDF5: one
subgroup per structure (named by ``dvh_group_keys``, the ROI name in its attribute ``name``; ``read_dvh_hdf5`` reads
them back by ROI name) with the cumulative DVH (``dose_gy``, ``volume_fraction``: the fraction of the
structure's voxels receiving at least that dose) and attributes (volume, mean/min/max dose, D98/D95/D50/D2).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from .._timing import timed
from ..dvh import SMALL_STRUCTURE_VOXELS
from .dicom_common import RT_STRUCTURE_SET_STORAGE
from .errors import DicomInputError, McprotonRuntimeWarning, warn

_PLANE_TOL_MM = 0.01
#: A voxel centre within this distance (mm) above an outline or a plane's slab boundary counts as on it, along x, y
#: and z alike (the centres are moved down by it before the half-open (lower, upper] rule): the float noise of a grid's
#: origin (a CT stored with flipped rows or columns: IPP - (n - 1) x spacing = -23.369999999999997 for -23.37) then
#: does not move a structure by a voxel; x and y had no tolerance until 2026-12-06 (grids audit F3: a contour with
#: its vertices on voxel centres gave one column more on the HFP and FFS copies of a CT than on the HFS one).
_TIE_MM = 1e-6


@dataclass
class RTStruct:
    """Contours of an RT Structure Set (closed contours of 3 or more points only, (n, 3) arrays in mm)."""

    contours: dict[str, list[np.ndarray]]
    roi_numbers: dict[str, int] = field(default_factory=dict)
    roi_types: dict[str, str] = field(default_factory=dict)
    frame_of_reference_uid: str = ""
    path: str = ""
    #: ReferencedFrameOfReferenceUID (3006,0024) of each ROI ("" where the ROI gives none)
    roi_frames: dict[str, str] = field(default_factory=dict)
    #: {ROI name: {ContourGeometricType: count}} of the contours without volume: POINT, OPEN_PLANAR, OPEN_NONPLANAR,
    #: a type DICOM does not define (warned of), and closed contours of 1 or 2 points (no area; counted as
    #: "CLOSED_PLANAR of < 3 points", :data:`FEW_POINTS`, warned of)
    not_closed: dict[str, dict[str, int]] = field(default_factory=dict)
    #: {SeriesInstanceUID: the SOPInstanceUIDs of its slices the contours were drawn on} (RTReferencedSeriesSequence >
    #: ContourImageSequence); a series' list also takes the ContourImageSequence of each contour where the structure
    #: set names one series only ("" where it names none)
    referenced_slices: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: {SOPInstanceUID of a CT slice a closed contour names (its ContourImageSequence): the z (mm) of that contour's
    #: plane, NaN where contours of two planes name it}: with the series' slice list of ``referenced_slices``, the
    #: CT's slice spacing (:func:`referenced_slice_mm`)
    slice_z: dict[str, float] = field(default_factory=dict)
    #: SOPInstanceUID (0008,0018) of the structure set ("" where it gives none): what a plan's
    #: ReferencedStructureSetSequence names
    sop_instance_uid: str = ""
    #: masks made by ``rasterise`` from these contours: {(grid, name): (z, y, x) bool}
    masks: dict = field(default_factory=dict, repr=False, compare=False)
    #: the CT's slice spacing that these contours and references give (:func:`image_slice_mm`), once asked: [mm] or
    #: [None]; found once for the masks, the contour volumes and each empty ROI's reason
    image_slice_memo: list = field(default_factory=list, repr=False, compare=False)

    def frames_of_contours(self) -> dict[str, str]:
        """{ROI name: the frame of reference its contours are in} of the ROIs with contours: the ROI's own
        ReferencedFrameOfReferenceUID, else the structure set's; "" where neither is given."""
        return {nm: self.roi_frames.get(nm) or self.frame_of_reference_uid for nm, c in self.contours.items() if c}


def _read(path_or_ds):
    """(data set, source name) of a path or Dataset.  A file is read strictly (``dicom_common.read_dicom_file``): one
    cut at an item boundary, which pydicom alone reads as a structure set with fewer ROIs or contours, is refused;
    a file without the 128-byte preamble / file meta (e.g. pydicom's rtstruct.dcm) is read as before."""
    import pydicom

    from .dicom_common import assume_input_charset, read_dicom_file

    if isinstance(path_or_ds, pydicom.Dataset):
        return path_or_ds, "<dataset>"
    src = str(path_or_ds)
    if not Path(src).is_file():
        raise DicomInputError(f"RT Structure Set {src} does not exist")
    ds = read_dicom_file(src)
    if ds is None:
        raise DicomInputError(f"{src}: not a DICOM file (no DICOM preamble and no data set at its start)")
    assume_input_charset(ds, src)   # said: no SpecificCharacterSet but non-ASCII names (read as UTF-8/Latin-1)
    return ds, src


_CONTOUR_DATA = 0x30060050

#: The ContourGeometricTypes (3006,0042) of closed contours (DICOM PS3.3 C.8.8.6.1): each contour plane's closed
#: contours are combined by the even-odd rule (a contour inside another is a hole), which is the exclusive or
#: (XOR) that CLOSEDPLANAR_XOR states, so both are read alike.  Until audit 25 (2026-12-07, dvhgeo F2)
#: CLOSEDPLANAR_XOR contours were taken as having no volume.
CLOSED_TYPES = ("CLOSED_PLANAR", "CLOSEDPLANAR_XOR")
#: Every ContourGeometricType DICOM defines (PS3.3 C.8.8.6.1); a contour of another type is left out, with a warning
GEOMETRIC_TYPES = ("POINT", "OPEN_PLANAR", "OPEN_NONPLANAR") + CLOSED_TYPES
#: The end of the key of :attr:`RTStruct.not_closed` under which the closed contours of 1 or 2 points (no area) are
#: counted: "CLOSED_PLANAR of < 3 points"
FEW_POINTS = " of < 3 points"


def _contour_data(item) -> np.ndarray:
    """ContourData (3006,0050) of a contour item as float64, parsed from the raw bytes where the element is
    still raw: pydicom makes one DSfloat object per number (1.7 M of them, 2-8 s, in a head CT's structure
    set), the same numbers as ``float`` of each backslash-separated string (both use Python's float parser).  The
    element pydicom has already converted (or an unexpected one) goes through pydicom."""
    try:
        elem = item.get_item(_CONTOUR_DATA)
    except KeyError:
        elem = None
    if elem is None:
        return np.zeros(0)
    raw = getattr(elem, "value", None)
    if type(elem).__name__ == "RawDataElement" and isinstance(raw, bytes) and elem.VR in ("DS", None):
        try:
            return np.array([float(v) for v in raw.split(b"\\")], float) if raw.strip(b" \0") else np.zeros(0)
        except ValueError:
            pass   # pydicom's own conversion says what is wrong (or accepts what float does not)
    data = item.get("ContourData", None)
    return np.asarray([float(v) for v in data], float) if data is not None else np.zeros(0)


#: read_rtstruct's last results by (real path, modification time, size), each with the warnings its reading gave
#: ((message, category)): one job reads its structure set for the input checks, the body outline, the DVH and the
#: prescription check; it is parsed once, and each run or check that takes it from here says them (once in it).
_CACHE: dict[tuple, tuple[RTStruct, list]] = {}
_CACHE_SIZE = 2


def struct_ct_series(ds) -> tuple[str, ...]:
    """The SeriesInstanceUIDs of the CT series an RT Structure Set's contours were drawn on
    (ReferencedFrameOfReferenceSequence > RTReferencedStudySequence > RTReferencedSeriesSequence, PS3.3 C.8.8.5;
    Type 3 below the frame, so it may be absent: then ())."""
    out: list[str] = []
    for fr in ds.get("ReferencedFrameOfReferenceSequence", []) or []:
        for st in fr.get("RTReferencedStudySequence", []) or []:
            for se in st.get("RTReferencedSeriesSequence", []) or []:
                uid = str(se.get("SeriesInstanceUID", "") or "")
                if uid and uid not in out:
                    out.append(uid)
    return tuple(out)


def struct_frame(ds) -> str:
    """The frame of reference of an RT Structure Set data set: the top-level FrameOfReferenceUID where there is one
    (mcproton and RayStation write it, although the IOD has no Frame of Reference module), else the first of
    ReferencedFrameOfReferenceSequence (3006,0010) (PS3.3 C.8.8.5), else the first ROI's
    ReferencedFrameOfReferenceUID (3006,0024); "" where none is given.  OpenTPS writes no top-level one (audit 18
    course F5: the check paired its sets as of no frame)."""
    uid = str(ds.get("FrameOfReferenceUID", "") or "")
    for r in ds.get("ReferencedFrameOfReferenceSequence", []) or []:
        uid = uid or str(r.get("FrameOfReferenceUID", "") or "")
    for r in ds.get("StructureSetROISequence", []) or []:
        uid = uid or str(r.get("ReferencedFrameOfReferenceUID", "") or "")
    return uid


def file_key(path_or_ds) -> tuple | None:
    """(real path, modification time, size) of a file, the key under which what was read from it is kept; None
    for a Dataset or a file that cannot be looked at (its reader says what is wrong)."""
    import os

    if not isinstance(path_or_ds, (str, os.PathLike)):
        return None
    try:
        st = os.stat(path_or_ds)
    except OSError:
        return None
    return (os.path.realpath(path_or_ds), st.st_mtime_ns, st.st_size)


def read_rtstruct(path_or_ds) -> RTStruct:
    """Read an RT Structure Set (file path or pydicom Dataset).  A file read before (same path, modification
    time and size) is not parsed again: the same :class:`RTStruct` is returned (its contour arrays are
    read-only), with the masks ``rasterise`` made from it.  Its warnings (two ROIs of one name, a body or target
    without closed contours, names read without a declared character set) are kept with it: each run or check
    (:func:`~mcproton._io.errors.recording_warnings`) that reads the file says them once, a second one in the same
    process, or in a worker forked from it, as the first (in-process audit 25, F1: they were said by the first
    reading only); outside a run or check they are said when the file is parsed."""
    from .dicom_common import NO_CHARSET_SAID
    from .errors import in_a_call, kept_apart, say_unsaid

    key = file_key(path_or_ds)
    # the character set assumed for the file is said once per run or check, by whichever of its readers reads it
    # first (dicom_common.assume_input_charset), whatever tags that reader read
    heads = () if key is None else (f"{Path(key[0]).resolve()}: {NO_CHARSET_SAID}",)
    if key is not None and key in _CACHE:
        s, kept = _CACHE[key]
        if in_a_call():
            say_unsaid(kept, stacklevel=2, heads=heads)
        return s
    kept: list = []
    try:
        with kept_apart(kept):
            s = _read_rtstruct(path_or_ds)
    finally:   # a refused file: what its reading said before the refusal is said too
        say_unsaid(kept, stacklevel=2, heads=heads)
    if key is not None:
        for cl in s.contours.values():
            for c in cl:
                c.flags.writeable = False
        while len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = (s, kept)
    return s


def roi_name(value) -> str:
    """An ROIName (LO) as text: a value holding "\\" (DICOM's value delimiter, not allowed in LO but written by some
    planning systems), which pydicom reads as several values, joined back with "\\" as the planning system shows it;
    before 2026-12-06 it read "['a', 'b']" in the DVHs, the report and the warnings (strings audit 19, F6)."""
    from pydicom.multival import MultiValue

    if value is None:
        return ""
    return "\\".join(str(v) for v in value) if isinstance(value, (list, MultiValue)) else str(value)


@timed("structures")
def _read_rtstruct(path_or_ds) -> RTStruct:
    ds, src = _read(path_or_ds)
    sop = str(ds.get("SOPClassUID", ""))
    if sop and sop != RT_STRUCTURE_SET_STORAGE:
        raise DicomInputError(f"{src}: SOP class {sop} (Modality {ds.get('Modality', '?')}) is not an RT Structure "
                              f"Set ({RT_STRUCTURE_SET_STORAGE})")
    if "StructureSetROISequence" not in ds:
        raise DicomInputError(f"{src}: no StructureSetROISequence; not an RT Structure Set")
    names: dict[int, str] = {}
    frames: dict[int, str] = {}
    items = list(ds.StructureSetROISequence)
    # every name the file gives: a duplicate is renamed to none of them (strings audit 19, F2: ROIs 5 "Brainstem",
    # 6 "Brainstem" and 7 "Brainstem_6" gave ROI 6 the name "Brainstem_6", and the file's "Brainstem_6" (ROI 7) was
    # called "Brainstem_6_7": that name's DVH and action levels were another structure's)
    in_file = {roi_name(r.get("ROIName", None)) for r in items} - {""}
    for i, r in enumerate(items):
        if "ROINumber" not in r or "ROIName" not in r:   # Type 1 and Type 2: present in every item
            raise DicomInputError(f"{src}: item {i} of the StructureSetROISequence (3006,0020) has no "
                                  f"{'ROINumber (3006,0022)' if 'ROINumber' not in r else 'ROIName (3006,0026)'}; "
                                  "every ROI must give both (the contours and observations name their ROI by number, "
                                  "the DVHs and the body outline by name): the structure set is damaged, re-export it")
        num = _int(r.ROINumber, src, "ROINumber (3006,0022)")
        nm = roi_name(r.ROIName) or f"ROI_{num}"
        if num in names:   # the contours name their ROI by number: whose they are would be a guess
            raise DicomInputError(f"{src}: ROIs {names[num]!r} and {nm!r} share ROINumber (3006,0022) {num} in the "
                                  "StructureSetROISequence, so which contours belong to which ROI is unknown (one "
                                  "ROI's DVH would hold the other's contours): the structure set is damaged or "
                                  "merged by hand; re-export it from the planning system")
        base, k = nm, num
        taken = set(names.values())
        if nm in taken:  # duplicate names: keep both, under a name no other ROI has, in the file or given here
            while nm in taken or nm in in_file:
                nm = f"{base}_{k}"
                k += 1000
            first = next(n for n, v in names.items() if v == base)
            # say which is which: both get action levels in the check, both a DVH in the HDF5 (roi_number there)
            warn(f"{src}: ROIs {first} and {num} are both named {base!r}; ROI {first} keeps the name, ROI {num} is "
                 f"called {nm!r} in the DVHs and the check's report (rename one in the planning system to tell them "
                 "apart)", McprotonRuntimeWarning, stacklevel=3)
        names[num] = nm
        frames[num] = str(r.get("ReferencedFrameOfReferenceUID", "") or "")
    for seq, tag, what in (("ROIContourSequence", "3006,0039", "the contours"),
                           ("RTROIObservationsSequence", "3006,0080", "the ROI types (EXTERNAL: the body outline)")):
        if names and seq not in ds:   # Type 1 (PS3.3 C.8.8.6, C.8.8.8)
            raise DicomInputError(f"{src}: the structure set has {len(names)} ROIs but no {seq} ({tag}), which holds "
                                  f"{what}: the structure set is damaged, re-export it")
    types = {}
    for i, o in enumerate(ds.get("RTROIObservationsSequence", []) or []):
        if "ReferencedROINumber" not in o or "RTROIInterpretedType" not in o:   # Type 1 and Type 2
            miss = ("ReferencedROINumber (3006,0084)" if "ReferencedROINumber" not in o
                    else "RTROIInterpretedType (3006,00A4)")
            raise DicomInputError(f"{src}: item {i} of the RTROIObservationsSequence (3006,0080) has no {miss}; "
                                  "which ROI is of which type (EXTERNAL: the body outline) is then unknown: the "
                                  "structure set is damaged, re-export it")
        ref = _int(o.ReferencedROINumber, src, "ReferencedROINumber (3006,0084)")
        if ref in names:
            types[names[ref]] = str(o.RTROIInterpretedType or "")
    contours: dict[str, list[np.ndarray]] = {nm: [] for nm in names.values()}
    not_closed: dict[str, dict[str, int]] = {}   # ROI -> {OPEN_PLANAR: n, POINT: n, ...}: contours without volume
    unknown: dict[str, dict[str, int]] = {}   # a ContourGeometricType DICOM does not define -> {ROI: contours}
    slice_z: dict[str, float] = {}   # CT slice UID -> z of the contour plane that names it (RTStruct.slice_z)
    seen: set[int] = set()
    for i, rc in enumerate(ds.get("ROIContourSequence", []) or []):
        if "ReferencedROINumber" not in rc:
            raise DicomInputError(f"{src}: item {i} of the ROIContourSequence (3006,0039) has no ReferencedROINumber "
                                  "(3006,0084), so whose contours it holds is unknown: the structure set is damaged, "
                                  "re-export it")
        ref = _int(rc.ReferencedROINumber, src, "ReferencedROINumber (3006,0084)")
        if ref not in names:
            raise DicomInputError(f"{src}: ROIContourSequence refers to ROI number {ref}, which is not in "
                                  "StructureSetROISequence")
        if ref in seen:   # one item per ROI (PS3.3 C.8.8.6); two would merge (even-odd: holes where they overlap)
            n = sum(1 for x in ds.ROIContourSequence if int(x.get("ReferencedROINumber", -1)) == ref)
            raise DicomInputError(f"{src}: ROI {ref} ({names[ref]!r}) is referred to by {n} items of the "
                                  "ROIContourSequence (3006,0039) (ReferencedROINumber (3006,0084)); a structure set "
                                  "has one item per ROI, so another ROI's contours are probably numbered wrongly: "
                                  "the structure set is damaged, re-export it from the planning system")
        seen.add(ref)
        nm = names[ref]
        for ci, c in enumerate(rc.get("ContourSequence", []) or []):
            gt = str(c.get("ContourGeometricType", "") or "").strip()
            if not gt:
                raise DicomInputError(f"{src}: ROI {nm!r} contour {ci}: no ContourGeometricType (3006,0042), so it "
                                      "cannot be told whether it is a closed contour (part of the ROI's volume) or "
                                      "points or an open line: the structure set is damaged, re-export it")
            if gt not in CLOSED_TYPES:
                not_closed.setdefault(nm, {})[gt] = not_closed.get(nm, {}).get(gt, 0) + 1
                if gt not in GEOMETRIC_TYPES:
                    unknown.setdefault(gt, {})[nm] = unknown.get(gt, {}).get(nm, 0) + 1
                continue
            try:
                pts = _contour_data(c)
            except (TypeError, ValueError):
                raise DicomInputError(f"{src}: ROI {nm!r} contour {ci}: ContourData is not numeric") from None
            if pts.size % 3 or not pts.size or not np.all(np.isfinite(pts)):
                raise DicomInputError(f"{src}: ROI {nm!r} contour {ci}: ContourData needs >= 3 finite (x, y, z) "
                                      f"points; got {pts.size} values")
            npts = c.get("NumberOfContourPoints", None)
            if npts is not None and str(npts).strip() and _int(npts, src, "NumberOfContourPoints") != pts.size // 3:
                raise DicomInputError(f"{src}: ROI {nm!r} contour {ci}: NumberOfContourPoints (3006,0046) is {npts} "
                                      f"but ContourData (3006,0050) holds {pts.size // 3} points; points are missing "
                                      "or the count is wrong: the structure set is damaged, re-export it")
            if pts.size < 9:   # a closed contour of 1 or 2 points encloses no area: no voxel, no volume (F3)
                key = gt + FEW_POINTS
                not_closed.setdefault(nm, {})[key] = not_closed.get(nm, {}).get(key, 0) + 1
                continue
            contours[nm].append(pts.reshape(-1, 3))
            refs = c.get("ContourImageSequence", None) or []
            uid = str(refs[0].get("ReferencedSOPInstanceUID", "") or "") if len(refs) == 1 else ""
            if uid:
                z = _plane_z(contours[nm][-1])   # contours of one slice within the planes' tolerance: one plane
                slice_z[uid] = z if abs(slice_z.get(uid, z) - z) <= _PLANE_TOL_MM else float("nan")
    _warn_unknown_types(src, unknown)
    _warn_few_points(src, {nm: n for nm, k in not_closed.items()
                           if (n := sum(v for g, v in k.items() if g.endswith(FEW_POINTS)))})
    _warn_without_volume(src, contours, types, not_closed)
    _warn_irregular_planes(src, contours)
    return RTStruct(contours, {v: k for k, v in names.items()}, types, struct_frame(ds), src,
                    {names[k]: f for k, f in frames.items()}, not_closed, _referenced_slices(ds), slice_z,
                    sop_instance_uid=str(ds.get("SOPInstanceUID", "") or ""))


def _referenced_slices(ds) -> dict[str, tuple[str, ...]]:
    """:attr:`RTStruct.referenced_slices` of a structure set's data set."""
    out: dict[str, list[str]] = {}
    for fr in ds.get("ReferencedFrameOfReferenceSequence", []) or []:
        for st in fr.get("RTReferencedStudySequence", []) or []:
            for se in st.get("RTReferencedSeriesSequence", []) or []:
                uid = str(se.get("SeriesInstanceUID", "") or "")
                refs = out.setdefault(uid, [])
                refs += [str(i.get("ReferencedSOPInstanceUID", "") or "") for i in
                         se.get("ContourImageSequence", []) or []]
    if len(out) <= 1:   # each contour's own references (the series-level list is optional since DICOM 2019)
        refs = out.setdefault(next(iter(out), ""), [])
        for rc in ds.get("ROIContourSequence", []) or []:
            for c in rc.get("ContourSequence", []) or []:
                refs += [str(i.get("ReferencedSOPInstanceUID", "") or "") for i in
                         c.get("ContourImageSequence", []) or []]
    return {uid: tuple(dict.fromkeys(r for r in refs if r)) for uid, refs in out.items()}


def warn_missing_ct_slices(path_or_ds, ct, where: str) -> None:
    """Warn when the structure set was drawn on slices of the CT series read (``ct``, a
    :class:`~mcproton._io.ct.CTImage`) that the CT lacks: a partial transfer (an interrupted C-MOVE, a copy cut short)
    or a series split over folders reads as a complete, shorter CT (its spacing is even), and the DVH of an ROI that
    reaches beyond it holds only the part inside, without a word (the pacs audit, F6: 34 caudal slices missing, the
    CTV's DVH of 64.5 of its 67.5 cm3).  The warning names how many slices are missing, the ROIs whose contours lie
    beyond the CT's slices and how far.  When none of the slices matches and every contour lies within the CT, the
    series was written again with new UIDs (a derived series): that is said instead of "incomplete".  A structure set
    that names no slices, or another series, is passed (the frame and series checks speak of those)."""
    s = read_rtstruct(path_or_ds)
    uid = str(getattr(ct, "series_instance_uid", "") or "")
    refs = s.referenced_slices.get(uid) or (s.referenced_slices.get("") if set(s.referenced_slices) == {""} else ())
    have = set(getattr(ct, "slice_sop_instance_uids", []) or [])
    if not refs or not uid or not have:
        return
    missing = [r for r in refs if r not in have]
    if not missing:
        return
    z = ct.axis_mm("z")
    half = float(ct.voxel_size_mm[2]) / 2
    lo, hi = float(z.min()) - half, float(z.max()) + half
    beyond = []
    for nm, cl in s.contours.items():
        zs = np.array([float(c[0, 2]) for c in cl]) if cl else np.zeros(0)
        out = zs[(zs < lo) | (zs > hi)]
        if out.size:
            beyond.append(f"{nm!r} ({out.size} of its {zs.size} contours, z {out.min():.1f} to {out.max():.1f} mm)")
    if len(missing) == len(refs) and not beyond:
        # none of the slices matches, yet every contour lies within the CT: the whole series was read, written again
        # with new SOP Instance UIDs (anonymised, an SPR map or another derived series), not cut short (audit 18b F4:
        # "177 of the 177 CT slices ... the CT is incomplete" on a complete CT of 177 slices)
        warn(f"{s.path}: the CT's slices ({where}: {len(have)} slices, z {float(z.min()):.1f} to {float(z.max()):.1f} "
             f"mm) carry other SOP Instance UIDs than the {len(refs)} slices the structure set was drawn on "
             f"(ContourImageSequence of series {uid}), and every contour lies within the CT: a re-written or derived "
             "series (anonymised, or an SPR map written with new UIDs); check the structures line up with this CT",
             McprotonRuntimeWarning, stacklevel=2)
        return
    which = (f"the contours of {', '.join(beyond[:6])}{' and more' if len(beyond) > 6 else ''} lie beyond the CT's "
             "slices: their DVHs hold only the part inside the CT, and no dose is computed beyond it" if beyond else
             "no contour lies beyond the CT's slices")
    warn(f"{s.path}: {len(missing)} of the {len(refs)} CT slices the structure set was drawn on (ContourImageSequence "
         f"of series {uid}) are not in the CT read ({where}: {len(have)} slices, z {float(z.min()):.1f} to "
         f"{float(z.max()):.1f} mm): the CT is incomplete (an interrupted or partial transfer, or the series split "
         f"over folders); {which}; copy or export the whole series", McprotonRuntimeWarning, stacklevel=2)


#: How far (mm) beyond the CT's box a contour point may lie before the structure set is refused, at least: the larger
#: of this and the CT's own largest extent.  Contours are drawn on the CT (an External or a couch model a little
#: beyond its field of view, the slices of an incomplete transfer beyond its ends: warned of above; a test phantom's
#: small CT with an ROI off its grid), so half a metre is generous; a point metres away is a damaged or mistyped
#: coordinate, which gives the polygon a spike to the grid's edge and changes the ROI's volume and DVH without a word
#: (audit 17 hostile F1: one vertex at x = 5000 mm added 17 voxels to the brainstem).
CONTOUR_MARGIN_MM = 500.0


def check_contours_near_ct(path_or_ds, ct, where: str, *, grid: str = "the CT",
                           drawn: str = "a contour drawn on this CT") -> None:
    """Refuse (:class:`DicomInputError`) a structure set with a contour point farther from the box of the CT read
    (``ct``: a :class:`~mcproton._io.ct.CTImage` or anything with ``origin_mm``, ``voxel_size_mm`` and
    ``shape_zyx``) than the larger of :data:`CONTOUR_MARGIN_MM` and the CT's largest extent, naming the ROI, the
    contour, the point and its coordinates, and the CT's box.  ``grid`` names the box in the message and ``drawn``
    what would not reach that far: mcproton check --phantom-from-struct, which has no CT, checks against the TPS dose
    grid it builds the phantom around."""
    if any(getattr(ct, a, None) is None for a in ("origin_mm", "voxel_size_mm", "shape_zyx")):
        return   # no CT grid to compare with
    s = path_or_ds if isinstance(path_or_ds, RTStruct) else read_rtstruct(path_or_ds)
    org = np.asarray(ct.origin_mm, float)
    vox = np.asarray(ct.voxel_size_mm, float)
    n = np.asarray(ct.shape_zyx, float)[::-1]
    lo, hi = org - vox / 2, org + vox * (n - 0.5)
    margin = max(CONTOUR_MARGIN_MM, float(np.max(hi - lo)))
    for nm, cl in s.contours.items():
        for ci, c in enumerate(cl):
            far = np.flatnonzero(np.any((c < lo - margin) | (c > hi + margin), axis=1))
            if far.size:
                k = int(far[0])
                box = ", ".join(f"{a} {lo[i]:.1f} to {hi[i]:.1f}" for i, a in enumerate("xyz"))
                xyz = ", ".join(f"{v:.6g}" for v in c[k])
                raise DicomInputError(
                    f"{s.path}: ROI {nm!r} contour {ci}: point {k} of {len(c)} at ({xyz}) mm lies more than "
                    f"{margin:.0f} mm outside {grid} ({where}: {box} mm)"
                    + (f", and {far.size - 1} more point(s) of the contour" if far.size > 1 else "")
                    + f": {drawn} does not reach that far, so the coordinate is damaged or mistyped "
                    "(the ROI's volume and DVH would be wrong); correct the contour in the planning system and export "
                    "the structure set again")


#: RTROIInterpretedTypes of targets (the body outline's check, mcproton check's metrics): an ROI of these types
#: without a volume is worth a warning, a MARKER or ISOCENTER of points is not
TARGET_TYPES = ("PTV", "CTV", "GTV", "ITV")


def _roi_counts(counts: Mapping[str, int], most: int = 8) -> str:
    """{ROI: contours} as "'A' (2), 'B' (1)", at most ``most`` ROIs, then how many more."""
    shown = [f"{nm!r} ({n})" for nm, n in list(counts.items())[:most]]
    return ", ".join(shown) + (f" and {len(counts) - most} more ROI(s)" if len(counts) > most else "")


def _warn_unknown_types(src: str, unknown: Mapping[str, Mapping[str, int]]) -> None:
    """One warning per ContourGeometricType that DICOM does not define (a misspelt "CLOSEDPLANAR", a vendor's own),
    naming its ROIs: their contours are left out, so they add no volume (before audit 25, 2026-12-07, dvhgeo F2:
    left out without a word, an organ at risk's DVH empty)."""
    for gt, rois in unknown.items():
        warn(f"{src}: ContourGeometricType (3006,0042) {gt!r} of {sum(rois.values())} contour(s) of ROI(s) "
             f"{_roi_counts(rois)} is not a type DICOM defines ({', '.join(GEOMETRIC_TYPES)}): whether they are "
             "closed is unknown, so they are left out and add no volume to their ROI (an ROI of only such contours "
             "has no voxel and no DVH); correct the type (a closed contour is CLOSED_PLANAR) and export the structure "
             "set again", McprotonRuntimeWarning, stacklevel=3)


def _warn_few_points(src: str, few: Mapping[str, int]) -> None:
    """One warning naming the ROIs with closed contours of 1 or 2 points, which enclose no area and are left out
    (tools that turn segmentation masks into contours write them for one- or two-voxel islands).  Before audit 25
    (2026-12-07, dvhgeo F3) one such contour refused the whole structure set."""
    if few:
        warn(f"{src}: {sum(few.values())} closed contour(s) of fewer than 3 points (a point or a line: no area, so no "
             f"voxel and no volume) left out of ROI(s) {_roi_counts(few)}; the ROIs' other contours are read as "
             "they are (an island of one or two voxels of a segmentation is lost: check the ROI in the planning "
             "system if it matters)", McprotonRuntimeWarning, stacklevel=3)


def _warn_without_volume(src: str, contours: dict, types: dict, not_closed: dict) -> None:
    """Warn of each EXTERNAL or target ROI that has no closed contour of 3 or more points (only OPEN_PLANAR or POINT
    ones, closed ones of 1 or 2 points, ones of an unknown type, or none at all): it has no volume, so a target gets
    an empty DVH and no target metrics (before: without a word), and an EXTERNAL ROI cannot be the body outline
    (before: reported as "the RT Struct has no EXTERNAL / BODY ROI")."""
    for nm, closed in contours.items():
        typ = str(types.get(nm, "") or "").strip().upper()
        if closed or typ not in ("EXTERNAL",) + TARGET_TYPES:
            continue
        other = not_closed.get(nm)
        what = (f"only {', '.join(f'{n} {g}' for g, n in other.items())} contour(s), no closed one (CLOSED_PLANAR "
                "or CLOSEDPLANAR_XOR) of 3 or more points" if other else "no contours")
        why = ("so it cannot be the body outline" if typ == "EXTERNAL" else
               "so it has no volume: its DVH is empty and it gets no target metrics (D50, the prescription check)")
        warn(f"{src}: ROI {nm!r} is {typ} but has {what}, {why}; check the structure set (re-export it with the "
             "ROI's contours)", McprotonRuntimeWarning, stacklevel=3)


def _warn_irregular_planes(src: str, contours: dict) -> None:
    """One warning naming the ROIs with two contour planes closer than :data:`_THINNEST_SLICE_MM`
    (:func:`irregular_planes`): their contours' z are neither one slice's (within :data:`_PLANE_TOL_MM`) nor two CT
    slices apart, so each plane gets a slab of its own, cut midway to the other, and the holes and islands drawn on
    one are not applied on the other's grid slices (dvhgeo audit 25, F1: before, such contours were split silently,
    down to 0.0005 mm apart)."""
    found = {nm: pairs for nm, cl in contours.items() if cl and (pairs := irregular_planes(cl))}
    if not found:
        return
    named = [f"{nm!r} ({len(p)} pair(s), e.g. z = {p[0][0]:g} and {p[0][1]:g} mm)" for nm, p in found.items()]
    warn(f"{src}: {len(found)} ROI(s) have contour planes closer than {_THINNEST_SLICE_MM:g} mm, farther apart than "
         f"the contours of one plane may lie ({_PLANE_TOL_MM:g} mm) and nearer than any two CT slices: "
         f"{', '.join(named[:8])}{' and more' if len(named) > 8 else ''}; each such plane is taken as a slice of its "
         "own, its slab cut midway to the other, so a hole or island drawn on one is not applied on the grid slices "
         "the other takes, and the ROI's mask and volume may be wrong; the ROI's planes are left out of the CT's slice "
         "spacing.  Check the contours' z in the planning system (contours carried over by a registration, or "
         "z rounded differently) and export the structure set again", McprotonRuntimeWarning, stacklevel=3)


def _int(value, src: str, what: str) -> int:
    """``int(value)`` of a DICOM IS, or a DicomInputError naming ``what``."""
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DicomInputError(f"{src}: {what} is {value!r}, not a whole number: the structure set is damaged, "
                              "re-export it") from None


def empty_mask_reason(struct: RTStruct, name: str, geometry) -> str:
    """Why ROI ``name`` of ``struct`` has no voxel on the grid of ``geometry`` (its mask there is empty), in words
    for a note or the HDF5: no contours at all, only open / point contours, contours wholly outside the grid,
    contour planes (each its CT slice thick) between the grid's slice centres, or contours between the voxel
    centres (smaller than a voxel: the mask takes a voxel whose centre is inside)."""
    cl = struct.contours.get(name) or []
    if not cl:
        other = struct.not_closed.get(name)
        if other:
            # closed contours of 1 or 2 points (FEW_POINTS) are closed but enclose no area: "has no closed contours
            # (only 1 CLOSED_PLANAR of < 3 points)" read as if a closed contour were there (review 2b, R7)
            said = ", ".join(f"{n} {g[:-len(FEW_POINTS)]} contour(s) of fewer than 3 points" if g.endswith(FEW_POINTS)
                             else f"{n} {g}" for g, n in other.items())
            lead = ("has no closed contour that encloses an area" if any(g.endswith(FEW_POINTS) for g in other)
                    else "has no closed contours")
            return f"{lead} (only {said}): no volume"
        return "has no closed contours (no contours at all): no volume"
    org, vox, shape = _grid(geometry)
    pts = np.concatenate([np.asarray(c, float) for c in cl])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    g_lo = org - 0.5 * vox
    g_hi = org + vox * (np.array(shape[::-1]) - 0.5)
    if np.any(hi < g_lo) or np.any(lo > g_hi):
        return "has its contours outside the dose grid"
    pz, _ = _planes(cl)
    slice_mm = image_slice_mm(struct, float(vox[2]))
    z_lo, z_hi = _slabs(pz, slice_mm, float(vox[2]))
    zs = org[2] + vox[2] * np.arange(shape[0]) - _TIE_MM   # as _rasterise takes them
    if not np.any((zs[None, :] > z_lo[:, None]) & (zs[None, :] <= z_hi[:, None])):
        return (f"has its contour planes ({pz.size}, each standing for its CT slice of {slice_mm:g} mm) between the "
                f"grid's slice centres ({float(vox[2]):g} mm apart): no slice of the grid lies within them")
    return ("has no voxel centre inside its contours (smaller than a voxel, or between voxel centres; a voxel "
            "belongs to a structure when its centre lies inside)")


def reasons_grouped(reasons: Mapping[str, str], most: int = 12) -> list[str]:
    """{ROI name: why it has no voxel} (:func:`empty_mask_reason`) as one phrase per reason, naming its ROIs (at most
    ``most``, then how many more) and giving the reason once: "'M1', 'M2' and 'M3' have no voxel centre inside their
    contours (...)".  Seven markers of one reason made a note of seven copies of a 170-character explanation (audit
    18b F10)."""
    groups: dict[str, list[str]] = {}
    for nm, why in reasons.items():
        groups.setdefault(why, []).append(repr(nm))
    out = []
    for why, names in groups.items():
        if len(names) == 1:
            out.append(f"{names[0]} {why}")
            continue
        shown = names[:most] if len(names) > most else names[:-1]
        rest = (f"{len(names) - most} more" if len(names) > most else names[-1])
        plural = ("have " + why[4:].replace(" its ", " their ", 1)) if why.startswith("has ") else why
        out.append(f"{', '.join(shown)} and {rest} {plural}")
    return out


def _polygon_area(poly: np.ndarray) -> float:
    """Area (mm2) of the closed polygon ``poly`` ((n, 2), the last vertex joined to the first): the shoelace
    formula, either direction."""
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


#: At most this many (edge, strip) entries in :func:`_even_odd_area` for one contour plane (about 100 MB of work
#: arrays), and as many again for its strips in which edges cross; a plane that would need more (tens of thousands of
#: contours spread along y, a contour crossing itself thousands of times) is summed by :func:`_nested_area` instead
_EVEN_ODD_ENTRIES = 2_000_000
#: Two edges of a strip of :func:`_even_odd_area` whose order in x differs by less than this (mm) at one end of the
#: strip and not at all at the other are taken as meeting there, not crossing inside it (float noise of a shared vertex)
_CROSS_TOL_MM = 1e-7


def _strip_widths(x0: np.ndarray, x1: np.ndarray, strip: np.ndarray, n_strips: int) -> tuple[np.ndarray, np.ndarray]:
    """The even-odd widths (mm) at the lower and upper ends of each of ``n_strips`` strips whose edges are sorted so:
    the k-th crossing of a strip (from 0, by x) counts -x for even k and +x for odd k (the widths of the intervals
    between crossings 0-1, 2-3, ...: inside by the even-odd rule)."""
    counts = np.bincount(strip, minlength=n_strips)
    rank = np.arange(strip.size) - np.repeat(np.cumsum(counts) - counts, counts)
    sign = np.where(rank % 2 == 1, 1.0, -1.0)
    return (np.bincount(strip, weights=sign * x0, minlength=n_strips),
            np.bincount(strip, weights=sign * x1, minlength=n_strips))


def _even_odd_area(polys: list[np.ndarray]) -> float | None:
    """The area (mm2) that the closed polygons ``polys`` ((n, 2) each, one plane's contours, the last vertex joined
    to the first) enclose by the even-odd rule of the masks (:func:`_polygon_mask`, XOR across the contours: a point is
    inside when a ray from it crosses their edges an odd number of times): exact, up to rounding, for any contours:
    nested, touching, overlapping or self-intersecting.  The plane is cut into strips at every vertex's y; within a
    strip no edge ends, so the width inside at height y is the alternating sum of the edges' x sorted at y, linear in
    y while no two edges cross: the strip's area is the mean of its two end widths times its height; a strip in which
    two edges cross is cut again at every crossing.  None where the strips would hold more than
    :data:`_EVEN_ODD_ENTRIES` (edge, strip) entries, or the strips in which edges cross as much work again.  Before
    audit 25 (2026-12-07, dvhgeo F5) the contour volume was each contour's area, counted negative where the contour's
    first vertex lay inside an odd number of the others: a self-intersecting bowtie or two overlapping circles gave
    0, and a hole touching its outline counted positive or negative by which vertex came first."""
    a = np.concatenate([np.asarray(p, float)[:, :2] for p in polys])
    b = np.concatenate([np.roll(np.asarray(p, float)[:, :2], -1, axis=0) for p in polys])
    keep = a[:, 1] != b[:, 1]   # a horizontal edge crosses no strip
    a, b = a[keep], b[keep]
    if not a.size:
        return 0.0
    up = a[:, 1] < b[:, 1]
    p = np.where(up[:, None], a, b)   # each edge's lower end ...
    q = np.where(up[:, None], b, a)   # ... and upper end
    ys = np.unique(np.concatenate([p[:, 1], q[:, 1]]))
    s0, s1 = np.searchsorted(ys, p[:, 1]), np.searchsorted(ys, q[:, 1])   # the strips s0 .. s1 - 1 of each edge
    n = s1 - s0
    if int(n.sum()) > _EVEN_ODD_ENTRIES:
        return None
    e = np.repeat(np.arange(p.shape[0]), n)
    strip = np.arange(e.size) - np.repeat(np.cumsum(n) - n, n) + np.repeat(s0, n)
    slope = ((q[:, 0] - p[:, 0]) / (q[:, 1] - p[:, 1]))[e]   # dx/dy
    x0 = p[e, 0] + (ys[strip] - p[e, 1]) * slope
    x1 = p[e, 0] + (ys[strip + 1] - p[e, 1]) * slope
    order = np.lexsort((x0 + x1, strip))   # by strip, then by x at the strip's middle
    x0, x1, strip = x0[order], x1[order], strip[order]
    w0, w1 = _strip_widths(x0, x1, strip, ys.size - 1)
    area = 0.5 * (w0 + w1) * np.diff(ys)
    same = strip[1:] == strip[:-1]   # the x order at the middle must hold at both ends, or two edges cross inside
    crossed = same & ((x0[1:] - x0[:-1] < -_CROSS_TOL_MM) | (x1[1:] - x1[:-1] < -_CROSS_TOL_MM))
    budget = [_EVEN_ODD_ENTRIES]   # the work left for the strips in which edges cross
    for k in np.unique(strip[1:][crossed]):
        sel = strip == k
        got = _crossed_strip_area(x0[sel], x1[sel], float(ys[k + 1] - ys[k]), budget)
        if got is None:
            return None
        area[k] = got
    return float(area.sum())


def _crossed_strip_area(x0: np.ndarray, x1: np.ndarray, height: float, budget: list[int]) -> float | None:
    """The even-odd area (mm2) of one strip of :func:`_even_odd_area` of ``height`` mm whose edges run from x0 (its
    lower end) to x1 (its upper end) and cross inside it: cut at every crossing (the fractions t of the height where
    two edges meet), in each piece the edges keep their order.  None where the pairs of edges and then the pieces
    times the edges would exceed ``budget[0]`` (which is reduced by them)."""
    budget[0] -= x0.size ** 2
    if budget[0] < 0:
        return None
    d0 = x0[None, :] - x0[:, None]
    dd = (x1 - x0)[:, None] - (x1 - x0)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = d0 / dd   # x_i(t) = x_j(t): x0_i + t (x1_i - x0_i) = x0_j + t (x1_j - x0_j)
    t = np.unique(t[np.isfinite(t) & (t > 0.0) & (t < 1.0)])
    budget[0] -= (t.size + 1) * x0.size
    if budget[0] < 0:
        return None
    cuts = np.r_[0.0, t, 1.0]
    lo, hi = cuts[:-1, None], cuts[1:, None]
    xa, xb = x0 + lo * (x1 - x0), x0 + hi * (x1 - x0)   # (pieces, edges)
    order = np.argsort(xa + xb, axis=1)
    xa, xb = np.take_along_axis(xa, order, axis=1), np.take_along_axis(xb, order, axis=1)
    sign = np.where(np.arange(x0.size) % 2 == 1, 1.0, -1.0)
    return float(np.sum(0.5 * ((xa + xb) @ sign) * (hi - lo)[:, 0]) * height)


def _nested_area(polys: list[np.ndarray]) -> float:
    """The area (mm2) of one plane's contours ``polys`` ((n, 2) each) as the sum of their areas, a contour inside an
    odd number of the others counting negative (:func:`_nesting_depths`): the even-odd area where no two contours
    cross; for a plane too large for :func:`_even_odd_area`."""
    return sum((-1.0 if depth % 2 else 1.0) * _polygon_area(poly) for poly, depth in zip(polys, _nesting_depths(polys)))


def _inside_polygon(pt: np.ndarray, poly: np.ndarray) -> bool:
    """Whether the point ``pt`` (x, y) lies inside the closed polygon ``poly`` (the crossing-number rule)."""
    a, b = poly, np.roll(poly, -1, axis=0)
    span = (a[:, 1] > pt[1]) != (b[:, 1] > pt[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        xc = a[:, 0] + (pt[1] - a[:, 1]) * (b[:, 0] - a[:, 0]) / (b[:, 1] - a[:, 1])
    return bool(np.count_nonzero(span & (pt[0] < xc)) & 1)


#: At most this many (cell, contour) entries per contour of a plane in :func:`_nesting_depths`' grid of cells (and
#: a few thousand more): its cells are made coarser until the contours' bounding boxes cover no more
_NESTING_CELLS_PER_CONTOUR = 16


def _interior_points(polys: list[np.ndarray]) -> np.ndarray:
    """(n, 2): a point inside each of the polygons ``polys`` ((n, 2) each) by its own crossing-number rule, away from
    its outline: on the line midway between its lowest vertex y and the next one up, midway between the first two
    crossings of its edges with that line (its first vertex for a polygon of no area).  A point on a contour's
    outline, as its first vertex is, may lie on another contour's outline too (a hole touching its outline): whether
    it is inside that one is then a matter of the rounding, and the hole's sign depended on which vertex came first
    (dvhgeo audit 25, F5)."""
    out = np.array([np.asarray(p, float)[0, :2] for p in polys], float).reshape(-1, 2)
    if not polys:
        return out
    a = np.concatenate([np.asarray(p, float)[:, :2] for p in polys])
    b = np.concatenate([np.roll(np.asarray(p, float)[:, :2], -1, axis=0) for p in polys])
    pid = np.repeat(np.arange(len(polys)), [len(p) for p in polys])
    y_lo = np.array([np.asarray(p, float)[:, 1].min() for p in polys])
    above = np.where(a[:, 1] > y_lo[pid], a[:, 1], np.inf)   # the next vertex y up of each polygon
    y_next = np.full(len(polys), np.inf)
    np.minimum.at(y_next, pid, above)
    y_line = 0.5 * (y_lo + y_next)
    ty = y_line[pid]
    span = ((a[:, 1] < ty) != (b[:, 1] < ty)) & np.isfinite(ty)   # the edges crossing the polygon's line
    with np.errstate(divide="ignore", invalid="ignore"):
        xc = a[:, 0] + (ty - a[:, 1]) * (b[:, 0] - a[:, 0]) / (b[:, 1] - a[:, 1])
    k = np.flatnonzero(span)
    k = k[np.lexsort((xc[k], pid[k]))]   # by polygon, then by x
    if k.size < 2:
        return out
    first = np.flatnonzero(np.r_[True, pid[k][1:] != pid[k][:-1]])   # each polygon's first crossing ...
    first = first[(first + 1 < k.size)]
    first = first[pid[k[first + 1]] == pid[k[first]]]                 # ... and its second (their number is even)
    j = pid[k[first]]
    out[j, 0] = 0.5 * (xc[k[first]] + xc[k[first + 1]])
    out[j, 1] = y_line[j]
    return out


def _nesting_depths(polys: list[np.ndarray]) -> list[int]:
    """For each of the polygons ``polys`` ((n, 2) each, one plane's contours), how many of the others contain a point
    inside it (:func:`_interior_points`, :func:`_inside_polygon`): odd, a hole.  Only the polygons whose bounding box
    holds that point are tested (outside its box the crossing-number rule answers no), found through a grid of cells
    that the boxes are entered in, so that the work scales with the contours and their boxes, not with the pairs of
    the plane: every pair was tested before, and a plane of 2000 small contours took a minute of the output phase,
    10^5 of them (the hostile-input audit's F6 structure set) days."""
    n = len(polys)
    if n < 2:
        return [0] * n
    lo = np.array([p.min(axis=0) for p in polys], float)
    hi = np.array([p.max(axis=0) for p in polys], float)
    pts = _interior_points(polys)
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):   # refused by the reader; every pair, as before
        return [sum(_inside_polygon(pts[i], polys[j]) for j in range(n) if j != i) for i in range(n)]
    origin = lo.min(axis=0)
    h = float(np.median((hi - lo).max(axis=1)))
    h = h if h > 0 else max(float((hi - lo).max()), 1.0)
    while True:   # cells of side h: the boxes cover at most _NESTING_CELLS_PER_CONTOUR cells each on average
        c0 = np.floor((lo - origin) / h).astype(np.int64)
        c1 = np.floor((hi - origin) / h).astype(np.int64)
        cover = np.prod(c1 - c0 + 1, axis=1)
        if int(cover.sum()) <= _NESTING_CELLS_PER_CONTOUR * n + 4096:
            break
        h *= 2.0
    ny = int(c1[:, 1].max()) + 1
    box = np.repeat(np.arange(n), cover)                        # (cell, box) entries: each box in each of its cells
    k = np.arange(box.size) - np.repeat(np.cumsum(cover) - cover, cover)
    w = (c1[:, 1] - c0[:, 1] + 1)[box]
    cell = (c0[box, 0] + k // w) * ny + c0[box, 1] + k % w
    order = np.argsort(cell, kind="stable")
    cell, box = cell[order], box[order]
    pc = np.floor((pts - origin) / h).astype(np.int64)          # a point inside lies in its box, so in one of its cells
    pid = pc[:, 0] * ny + pc[:, 1]
    first, last = np.searchsorted(cell, pid, "left"), np.searchsorted(cell, pid, "right")
    depths = [0] * n
    for i in np.flatnonzero(last - first > 1):                  # its own box and another's share the point's cell
        c = box[first[i]:last[i]]
        x, y = pts[i]
        c = c[(c != i) & (lo[c, 0] <= x) & (x <= hi[c, 0]) & (lo[c, 1] <= y) & (y <= hi[c, 1])]
        depths[i] = sum(_inside_polygon(pts[i], polys[j]) for j in c)
    return depths


def _plane_z(c) -> float:
    """The z (mm, rounded to 1e-3) of one axial contour (the mean of its points'); the masks and contour volumes group
    an ROI's contours into planes by :func:`_planes`."""
    return float(np.round(np.asarray(c, float)[:, 2].mean(), 3))


def _planes(cl) -> tuple[np.ndarray, list[list[int]]]:
    """The contour planes of one ROI's contours ``cl`` ((n, 3) arrays): (their z (mm) ascending, and for each the
    indices of its contours in ``cl``, in their order there).  A plane is a run of contours whose mean z (each
    contour's own points lie within :data:`_PLANE_TOL_MM` in z: the axial test) lie within :data:`_PLANE_TOL_MM` of
    the run's lowest, the tolerance of the axial test, so that the contours of one CT slice are one plane whatever
    float noise or carried-over jitter their z have; its z is the middle of its contours' mean z, rounded to 1e-3 mm
    (contours of identical z: that z rounded, as before).  Until audit 25 (2026-12-07, dvhgeo F1) each contour's mean
    z rounded to 1e-3 mm was its plane: an outline and its hole 0.0006 mm apart (or 12.3455 and
    12.345500000000001) were two planes, the hole lost, each a slab of 0.001 mm, and the structure set's slice
    spacing fell below the CT's, so that a CTV drawn on every slice had no voxel on a grid between the CT's slices."""
    if not cl:
        return np.empty(0), []
    zm = np.array([float(np.asarray(c, float)[:, 2].mean()) if len(c) else np.nan for c in cl])
    order = [int(i) for i in np.argsort(zm, kind="stable") if np.isfinite(zm[i])]
    groups: list[list[int]] = []
    for i in order:
        if groups and zm[i] - zm[groups[-1][0]] <= _PLANE_TOL_MM:
            groups[-1].append(i)
        else:
            groups.append([i])
    pz = np.array([float(np.round(0.5 * (zm[g[0]] + zm[g[-1]]), 3)) for g in groups])
    return pz, [sorted(g) for g in groups]


#: The thinnest CT slice (mm) that :func:`referenced_slice_mm` gives: a spacing below it comes from a slice list
#: that does not run along z as its contours' planes suggest, not from a CT; two contour planes of one ROI closer
#: than it are not two CT slices (:func:`irregular_planes`): such an ROI's steps are left out of the CT's slice
#: spacing (:func:`image_slice_mm`) where another ROI gives one, and the step of such a pair out of its own slabs
_THINNEST_SLICE_MM = 0.1


def _slice_steps(pz: np.ndarray) -> np.ndarray:
    """The steps (mm) between the contour planes ``pz`` (ascending) that can be steps between CT slices: those of at
    least :data:`_THINNEST_SLICE_MM` (all of them where none is)."""
    d = np.diff(pz)
    keep = d[d >= _THINNEST_SLICE_MM]
    return keep if keep.size else d


def irregular_planes(cl) -> list[tuple[float, float]]:
    """The pairs (z, z) (mm) of neighbouring contour planes (:func:`_planes`) of one ROI's contours ``cl`` that lie
    closer than :data:`_THINNEST_SLICE_MM`: farther apart than the contours of one plane may be, yet not two CT
    slices."""
    pz, _ = _planes(cl)
    k = np.flatnonzero(np.diff(pz) < _THINNEST_SLICE_MM)
    return [(float(pz[i]), float(pz[i + 1])) for i in k]


def referenced_slice_mm(struct: RTStruct) -> float | None:
    """The CT's slice spacing (mm) as the structure set's own references to the CT's slices give it, or None.  It
    names the slices of its CT series (RTReferencedSeriesSequence > ContourImageSequence, every slice of the series
    as mcproton and RayStation write it) and, per contour, the slice the contour lies on.  Where the structure set
    names one series whose list runs along z (the contours' planes at z_0 + k x spacing for their slices' places k
    in the list, within 0.01 mm, over at least 3 planes), that spacing; a set of ROIs that all lie on scattered
    slices (discs 12 mm apart on a 3 mm CT) gives the CT's slices no other way.  None where the list is missing,
    names several series, runs in another order or holds fewer than 3 of the contours' planes."""
    lists = [refs for refs in struct.referenced_slices.values() if refs]
    if len(lists) != 1 or not struct.slice_z:
        return None
    place = {uid: k for k, uid in enumerate(lists[0])}
    pairs = sorted((place[uid], z) for uid, z in struct.slice_z.items() if uid in place)
    if len(pairs) < 3:
        return None
    k = np.array([p[0] for p in pairs], float)
    z = np.array([p[1] for p in pairs], float)
    if not np.all(np.isfinite(z)):   # one slice named by contours of two planes
        return None
    step = (z[-1] - z[0]) / (k[-1] - k[0])
    if not abs(step) >= _THINNEST_SLICE_MM or np.max(np.abs(z - z[0] - step * (k - k[0]))) > _PLANE_TOL_MM:
        return None
    return float(abs(step))


def image_slice_mm(struct: Mapping[str, list[np.ndarray]] | RTStruct, grid_mm: float) -> float:
    """The slice spacing (mm) of the image (the CT) the structures were drawn on: the thickness of the slab each
    contour plane stands for, as a planning system takes it (a contour stands for its CT slice).  The smaller of
    the median spacing of the contour planes (:func:`_planes`) of the structure set's ROIs that span several planes
    (each drawn on the CT's slices; the External, on every slice, gives the spacing itself; an ROI with two planes
    closer than any CT's slices, :func:`irregular_planes`, only where no other ROI gives one, without those steps)
    and, for an :class:`RTStruct`, the spacing its references to the CT's slices give (:func:`referenced_slice_mm`:
    the one source where every ROI lies on scattered slices); ``grid_mm`` (the grid's slice thickness) where neither
    gives one.  Before 2026-12-06 a single-plane structure took the grid's (I/O review F3), and before audit 23
    (2026-12-06) an ROI of several planes its own median plane spacing, so that one on scattered slices filled the
    slices between them (round-trip audit 23, F2: the intervertebral discs at 3.4-4 x their volume)."""
    if not isinstance(struct, RTStruct):
        found = _contours_slice_mm(struct, None)
    else:
        if not struct.image_slice_memo:
            struct.image_slice_memo.append(_contours_slice_mm(struct.contours, referenced_slice_mm(struct)))
        found = struct.image_slice_memo[0]
    return float(grid_mm) if found is None else float(found)


def _contours_slice_mm(contours: Mapping[str, list[np.ndarray]], referenced_mm: float | None) -> float | None:
    """:func:`image_slice_mm` of ``contours`` and the spacing ``referenced_mm`` of their references (None: none),
    or None where neither gives one."""
    steps: list[np.ndarray] = []
    irregular: list[np.ndarray] = []   # of ROIs with planes closer than any CT's slices: where no other ROI gives one
    for cl in contours.values():
        pz, _ = _planes(cl)
        if pz.size > 1:
            d = np.diff(pz)
            (steps if d.min() >= _THINNEST_SLICE_MM else irregular).append(_slice_steps(pz))
    steps = steps or irregular
    found = [float(np.median(np.concatenate(steps)))] if steps else []
    found += [referenced_mm] if referenced_mm is not None else []
    return min(found) if found else None


def _slabs(pz: np.ndarray, slice_mm: float, least_mm: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The (lower, upper) z bounds (mm) of the slabs of one ROI's contour planes ``pz`` (ascending): each plane
    stands for the image slice it was drawn on, ``slice_mm`` thick (:func:`image_slice_mm`; the ROI's own median
    plane spacing where that is less), cut at the midpoints to its neighbouring planes; a single plane at least
    ``least_mm``.  A slice the ROI has no contour on stays outside it."""
    half = 0.5 * (min(float(np.median(_slice_steps(pz))), slice_mm) if pz.size > 1 else max(slice_mm, least_mm))
    mid = 0.5 * (pz[1:] + pz[:-1])
    return np.maximum(np.r_[-np.inf, mid], pz - half), np.minimum(np.r_[mid, np.inf], pz + half)


def slab_extents_z(struct: Mapping[str, list[np.ndarray]] | RTStruct, grid_mm: float) -> dict[str, tuple[float, float]]:
    """{ROI name: (lowest, highest) z (mm) of its slabs} of the ROIs with closed contours: the z range the masks give
    the ROI on a grid of ``grid_mm`` slices (:func:`_slabs`, with :func:`image_slice_mm`), half a CT slice beyond its
    first and last contour planes.  A grid whose outer faces lie within it holds the whole ROI along z."""
    contours = struct.contours if isinstance(struct, RTStruct) else struct
    slice_mm = image_slice_mm(struct, grid_mm)
    out: dict[str, tuple[float, float]] = {}
    for nm, cl in contours.items():
        pz, _ = _planes(cl)
        if pz.size:
            lo, hi = _slabs(pz, slice_mm, float(grid_mm))
            out[nm] = (float(lo[0]), float(hi[-1]))
    return out


def contour_volumes_cm3(struct: Mapping[str, list[np.ndarray]] | RTStruct,
                        slice_mm: float) -> dict[str, float]:
    """{ROI name: contour volume (cm3)} of the ROIs with closed contours: on each contour plane the area its contours
    enclose by the even-odd rule of the masks (:func:`_even_odd_area`: a contour inside another is a hole, and
    contours that cross or touch, or cross themselves, count as the masks take them; a plane of tens of thousands of
    contours spread along y, :func:`_nested_area`: exact where no two contours cross) times the thickness of the
    plane's slab as the masks take it (:func:`_slabs`: the CT's slice thickness, :func:`image_slice_mm`, or
    ``slice_mm``, the grid's slice thickness, where the structure set does not give it; cut at the midpoints to the
    ROI's neighbouring planes).
    What a planning system calls the structure's volume, to compare with the mask's (voxels, each in or out by
    its centre): on a coarse grid a lens or a cochlea has a mask of 47-57 % of it (infant audit 2026-12-06, F3)."""
    contours = struct.contours if isinstance(struct, RTStruct) else struct
    ct_slice_mm = image_slice_mm(struct, slice_mm)
    out: dict[str, float] = {}
    for nm, cl in contours.items():
        if not cl:
            continue
        pz, groups = _planes(cl)
        lo, hi = _slabs(pz, ct_slice_mm)
        vol = 0.0
        for g, t in zip(groups, hi - lo):
            polys = [np.asarray(cl[i], float)[:, :2] for i in g]
            area = _even_odd_area(polys)
            vol += (_nested_area(polys) if area is None else area) * float(t)
        out[nm] = max(vol, 0.0) * 1e-3
    return out


def load_rtstruct(path_or_ds) -> dict[str, list[np.ndarray]]:
    """``{ROI name: [(n, 3) closed planar contour in mm, ...]}`` of an RT Structure Set."""
    return read_rtstruct(path_or_ds).contours


def load_rtstruct_masks(path_or_ds, geometry, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """``{ROI name: boolean mask (z, y, x)}`` of an RT Structure Set on the grid of ``geometry`` (e.g. the
    :class:`~mcproton.geometry.VoxelGeometry` of ``HUCalibration.to_geometry(ct)``): the masks a plan
    (:func:`mcproton.planning.optimise_plan`), a DVH or an override takes.  A voxel belongs to a structure when its
    centre lies inside its contours (see the module docstring).  ``names``: only these ROIs (default all);
    ``DicomInputError`` for a name the structure set does not have (the names it has are listed), and a
    ``McprotonRuntimeWarning`` for a named ROI whose mask is empty on this grid (saying why).  The structure set's
    frame of reference is compared with the CT's when both are known."""
    struct = read_rtstruct(path_or_ds)
    if names is not None:
        if isinstance(names, str):
            names = [names]
        missing = [nm for nm in names if nm not in struct.contours]
        if missing:
            raise DicomInputError(f"the RT Structure Set has no ROI {', '.join(map(repr, missing))} (it has: "
                                  f"{', '.join(map(repr, struct.contours)) or 'none'})")
    for_ct = getattr(geometry, "frame_of_reference_uid", "")
    for_rs = getattr(struct, "frame_of_reference_uid", "")
    if for_ct and for_rs and for_ct != for_rs:
        raise DicomInputError(f"the RT Structure Set's FrameOfReferenceUID {for_rs} is not the CT's ({for_ct}): its "
                              "contours belong to another image set")
    masks = rasterise(struct, geometry, list(names) if names is not None else None)
    for nm in (names or []):
        if not masks[nm].any():
            warn(f"ROI {nm!r} has no voxel on this grid: it {empty_mask_reason(struct, nm, geometry)}",
                 McprotonRuntimeWarning, stacklevel=2)
    return masks


def _grid(geometry):
    org = np.asarray(geometry.origin_mm, float)
    vox = np.asarray(geometry.voxel_size_mm, float)
    shape = tuple(int(s) for s in geometry.shape_zyx)
    return org, vox, shape


def _polygon_mask(poly: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """(len(ys), len(xs)) bool: which grid points (xs[i], ys[j]) lie inside the closed polygon ``poly``
    ((n, 2), the last vertex joined to the first) by the crossing-number rule, evaluated per scanline: an edge is
    tested only on the rows it spans, in O(rows x crossings x columns) instead of O(points x vertices).

    A point on the polygon's outline is decided as in z (``_rasterise``, which passes the voxel centres moved down
    by _TIE_MM, so that a centre within it above the outline is on it): each axis half-open, (lower, upper].  An
    edge crosses the row ``ty`` if lo_y < ty <= hi_y (so a horizontal edge never does), and a point counts a
    crossing if it lies at or left of it (tx <= x of the crossing), computed from the edge's lower end whichever
    way the contour runs: the mask does not depend on the contour's direction.  Off the outline the points are
    matplotlib's (``Path.contains_points``, the rule used before 2026-12-05, which counted a point on a vertical
    edge inside for a counter-clockwise contour and outside for a clockwise one)."""
    a = np.asarray(poly, float)
    b = np.roll(a, -1, axis=0)   # edge i runs from a[i] to b[i] = a[i + 1]; the last one closes the polygon
    up = a[:, 1] <= b[:, 1]
    p = np.where(up[:, None], a, b)   # each edge's lower end ...
    q = np.where(up[:, None], b, a)   # ... and upper end: the same numbers for the contour run either way
    lo_y, hi_y = p[:, 1], q[:, 1]
    # lo_y < ty <= hi_y: the rows an edge crosses, ys ascending
    r0 = np.searchsorted(ys, lo_y, side="right")
    r1 = np.searchsorted(ys, hi_y, side="right")
    n = np.maximum(r1 - r0, 0)
    out = np.zeros((ys.size, xs.size), bool)
    if not n.any():
        return out
    e = np.repeat(np.arange(a.shape[0]), n)
    r = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n) + np.repeat(r0, n)
    order = np.argsort(r, kind="stable")
    e, r = e[order], r[order]
    ty = ys[r]
    x_cross = p[e, 0] + (ty - p[e, 1]) * (q[e, 0] - p[e, 0]) / (q[e, 1] - p[e, 1])   # q.y > p.y on these rows
    flips = (xs[None, :] <= x_cross[:, None]).astype(np.uint8)
    rows, starts = np.unique(r, return_index=True)
    out[rows] = (np.add.reduceat(flips, starts, axis=0) & 1).astype(bool)
    return out


def rasterise(struct: Mapping[str, list[np.ndarray]] | RTStruct, geometry,
              names: list[str] | None = None) -> dict[str, np.ndarray]:
    """Boolean masks (z, y, x) of the structures on the grid of ``geometry`` (see the module docstring).
    Structures without closed contours, or entirely outside the grid, give all-False masks.  The masks made
    from an :class:`RTStruct` are kept with it, so that asking again (the body outline, the DVH, the
    prescription check of one run) costs a copy."""
    org, vox, shape = _grid(geometry)
    if not isinstance(struct, RTStruct):
        return _rasterise(struct, org, vox, shape, names)
    grid = (tuple(org.tolist()), tuple(vox.tolist()), shape)
    want = [nm for nm in struct.contours if names is None or nm in names]
    todo = [nm for nm in want if (grid, nm) not in struct.masks]
    if todo:
        for key in [k for k in struct.masks if k[0] != grid]:   # the masks of one grid at a time are kept
            del struct.masks[key]
        slice_mm = image_slice_mm(struct, float(vox[2]))   # with the structure set's references to the CT's slices
        for nm, m in _rasterise(struct.contours, org, vox, shape, todo, slice_mm).items():
            struct.masks[(grid, nm)] = m
    return {nm: struct.masks[(grid, nm)].copy() for nm in want}


def mask_unkept(struct: Mapping[str, list[np.ndarray]] | RTStruct, geometry, name: str) -> np.ndarray | None:
    """The mask of ROI ``name`` on the grid of ``geometry``, the same as :func:`rasterise` gives, but neither kept
    with the structure set nor copied: on a CT's own voxels each mask is a byte per voxel (52 MB for 512 x 512 x
    200), and :func:`rasterise` would keep it for the rest of the run and hand out a copy, so a caller that needs
    the masks of several ROIs in turn (the material overrides, the outside of the External) holds one at a time.
    A mask kept before (same grid) is returned read-only instead of being made again.  None when the structure set
    has no ROI ``name``."""
    org, vox, shape = _grid(geometry)
    if isinstance(struct, RTStruct):
        kept = struct.masks.get(((tuple(org.tolist()), tuple(vox.tolist()), shape), name))
        if kept is not None:
            view = kept.view()
            view.flags.writeable = False
            return view
    slice_mm = image_slice_mm(struct, float(vox[2]))
    contours = struct.contours if isinstance(struct, RTStruct) else struct
    return _rasterise(contours, org, vox, shape, [name], slice_mm).get(name)


@timed("structures")
def _rasterise(contours: Mapping[str, list[np.ndarray]], org: np.ndarray, vox: np.ndarray,
               shape: tuple[int, int, int], names: list[str] | None,
               slice_mm: float | None = None) -> dict[str, np.ndarray]:
    """The masks of :func:`rasterise`; ``slice_mm``: the CT's slice thickness (:func:`image_slice_mm` of the
    structure set, which the caller gives for an :class:`RTStruct`: its slice references; None: of ``contours``)."""
    if slice_mm is None:
        slice_mm = image_slice_mm(contours, float(vox[2]))
    nz, ny, nx = shape
    xs = org[0] + vox[0] * np.arange(nx)
    ys = org[1] + vox[1] * np.arange(ny)
    zs = org[2] + vox[2] * np.arange(nz)
    xt, yt = xs - _TIE_MM, ys - _TIE_MM   # a centre within _TIE_MM of an outline is on it (as in z below)
    out: dict[str, np.ndarray] = {}
    for nm, cl in contours.items():
        if names is not None and nm not in names:
            continue
        mask = np.zeros((nz, ny, nx), bool)
        out[nm] = mask
        if not cl:
            continue
        for c in cl:
            z = c[:, 2]
            if np.ptp(z) > _PLANE_TOL_MM:
                raise DicomInputError(f"structure {nm!r}: a contour is not axial (z spans {np.ptp(z):.3f} mm); "
                                      "only axial contours are supported")
        pz, groups = _planes(cl)
        # each plane its CT slice; a single plane at least one grid slice (a marker on a 1 mm CT slice is not lost
        # on a 3 mm grid; its contour volume, the CT slice's, then tells the mask's excess).  Plane j holds the
        # slices with centres in (lo_j, hi_j]: half-open, so that a centre on a boundary (between two planes or at
        # an end) goes to one plane only (to the lower of two)
        z_lo, z_hi = _slabs(pz, slice_mm, float(vox[2]))
        done: dict[int, int] = {}   # contour plane -> the grid slice that has it (planes thicker than slices)
        overlapping: list[float] = []   # the planes with two contours that cross
        for k, z in enumerate(zs):
            zt = z - _TIE_MM   # a centre within _TIE_MM of a boundary is on it
            j = int(np.searchsorted(z_hi, zt, side="left"))
            if j >= pz.size or not z_lo[j] < zt:
                continue
            if j in done:
                mask[k] = mask[done[j]]
                continue
            done[j] = k
            sl = mask[k]
            parts: list[tuple[int, int, np.ndarray]] = []
            for poly in (cl[i][:, :2] for i in groups[j]):
                lo, hi = poly.min(axis=0), poly.max(axis=0)
                # the columns and rows of the contour's bounding box (and a voxel around it), found by bisection in
                # the ascending centres: the work per contour scales with its box, not with the slice (an ROI of
                # 10^5 small contours, hostile-input audit F6)
                x0, x1 = np.searchsorted(xs, lo[0] - vox[0], "left"), np.searchsorted(xs, hi[0] + vox[0], "right")
                y0, y1 = np.searchsorted(ys, lo[1] - vox[1], "left"), np.searchsorted(ys, hi[1] + vox[1], "right")
                if x0 >= x1 or y0 >= y1:
                    continue
                pm = _polygon_mask(poly, xt[x0:x1], yt[y0:y1])
                sl[y0:y1, x0:x1] ^= pm
                parts.append((int(y0), int(x0), pm))
            if len(parts) > 1 and _overlap_not_nested(parts):
                overlapping.append(float(pz[j]))
        if overlapping:
            zs_txt = ", ".join(f"{z:g}" for z in overlapping[:5]) + (" ..." if len(overlapping) > 5 else "")
            warn(f"structure {nm!r}: two contours overlap without one lying inside the other on {len(overlapping)} "
                 f"plane(s) (z = {zs_txt} mm); by the even-odd rule of DICOM contours (a contour inside another is a "
                 "hole) their overlap is left out of the structure, a hole where they overlap: if the contours were "
                 "meant as one region, merge them in the planning system", McprotonRuntimeWarning, stacklevel=3)
    return out


def _overlap_not_nested(parts: list[tuple[int, int, np.ndarray]]) -> bool:
    """Whether two of the contour masks of one plane (``(first row, first column, mask)`` each, on the grid's
    voxel centres) share a voxel without the voxels of one being all in the other: contours that cross, not a hole
    in an outline (nested contours: the inner one's voxels are all the outer one's).

    Only the contours with a voxel that another contour covers too are compared pairwise (a contour that shares no
    voxel cannot answer yes): found from the count of contours at each voxel, in time proportional to the contours'
    boxes.  Before, every pair of the plane was compared: an ROI of 10^5 small contours on one plane took hours
    after the transport (the hostile-input audit, F6)."""
    if len(parts) < 2:
        return False
    y_end = max(y + m.shape[0] for y, _, m in parts)
    x_end = max(x + m.shape[1] for _, x, m in parts)
    count = np.zeros((y_end, x_end), np.int32)   # the contours at each voxel
    for y, x, m in parts:
        count[y:y + m.shape[0], x:x + m.shape[1]] += m
    shared = [p for p in parts if np.any(count[p[0]:p[0] + p[2].shape[0], p[1]:p[1] + p[2].shape[1]][p[2]] > 1)]
    return any(_cross(shared[a], shared[b]) for a in range(len(shared)) for b in range(a + 1, len(shared)))


def _cross(part_a: tuple[int, int, np.ndarray], part_b: tuple[int, int, np.ndarray]) -> bool:
    """Whether two contour masks ``(first row, first column, mask)`` share a voxel without the voxels of one being
    all in the other (:func:`_overlap_not_nested`)."""
    ya, xa, ma = part_a
    yb, xb, mb = part_b
    y0, y1 = max(ya, yb), min(ya + ma.shape[0], yb + mb.shape[0])
    x0, x1 = max(xa, xb), min(xa + ma.shape[1], xb + mb.shape[1])
    if y0 >= y1 or x0 >= x1:
        return False
    both = int(np.count_nonzero(ma[y0 - ya:y1 - ya, x0 - xa:x1 - xa] & mb[y0 - yb:y1 - yb, x0 - xb:x1 - xb]))
    return bool(both and both != np.count_nonzero(ma) and both != np.count_nonzero(mb))


def _dvh_levels(d: np.ndarray, n_bins: int, d_max: float | None = None) -> np.ndarray:
    """The ``n_bins`` + 1 dose levels of the HDF5 DVH of the doses ``d``: 0 to just above ``d_max`` (default
    the maximum dose)."""
    top = float(d_max if d_max is not None else (d.max() if d.size else 0.0)) * 1.001 or 1.0
    return np.linspace(0.0, top, n_bins + 1)


def cumulative_dvh(dose: np.ndarray, mask: np.ndarray, n_bins: int = 1000,
                   d_max: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(dose_gy, volume_fraction >= dose) of the voxels in ``mask`` (equal voxel volumes) at ``n_bins`` + 1
    levels from 0 to just above ``d_max`` (default the maximum dose): :func:`mcproton.dvh.cumulative_dvh`
    (zeros for an empty mask)."""
    from ..dvh import cumulative_dvh as _cumulative

    d = np.asarray(dose, float)[mask]
    edges = _dvh_levels(d, n_bins, d_max)
    if d.size == 0:
        return edges, np.zeros_like(edges)
    return _cumulative(dose, mask, bins=edges)


def _hdf5_stats(st: dict[str, float]) -> dict[str, float]:
    """The HDF5 DVH attributes of :func:`mcproton.dvh.dose_stats`'s statistics ``st``."""
    if st["voxels"] == 0:
        return {"n_voxels": 0, "volume_cm3": 0.0}
    return {"n_voxels": st["voxels"], "volume_cm3": st["volume_cm3"], "mean_gy": st["dmean"],
            "min_gy": st["dmin"], "max_gy": st["dmax"], "D98_gy": st["d98"], "D95_gy": st["d95"],
            "D50_gy": st["d50"], "D2_gy": st["d2"]}


def dvh_stats(dose: np.ndarray, mask: np.ndarray, voxel_volume_cm3: float) -> dict[str, float]:
    """Volume, mean/min/max and D98/D95/D50/D2 (Gy) of the voxels in ``mask``, as
    :func:`mcproton.dvh.dose_stats` defines them (ICRU Report 83: D_v = the minimum dose to the hottest v % of
    the volume)."""
    from ..dvh import dose_stats

    return _hdf5_stats(dose_stats(dose, mask, voxel_volume_cm3))


#: the longest HDF5 group name made of an ROI name (characters; a name cut there gets a numeric suffix if it
#: meets another): HDF5 itself allows longer names, the limit keeps h5dump/HDFView listings readable
_MAX_KEY_CHARS = 120


def dvh_group_keys(names: list[str]) -> dict[str, str]:
    """{ROI name: the name of its subgroup in the HDF5 group ``dvh``}, unique for any ROI names: "/" (the HDF5 path
    separator) becomes "_", an empty name "unnamed", "." and ".." (HDF5's own group and its parent) "_." and "_..",
    a name longer than 120 characters is cut; a changed name that another ROI's group has gets "_2", "_3", ... (an
    ROI whose name is a group name as it is keeps it) (before: "Optic/Chiasm" and
    "Optic_Chiasm", or an ROI named ".", made h5py fail with "name already exists" after the whole Monte Carlo, and
    no result was written).  The ROI's own name is the subgroup's attribute ``name``."""
    def clean(nm: str) -> str:
        key = nm.replace("/", "_")[:_MAX_KEY_CHARS] or "unnamed"
        return "_" + key if key in (".", "..") else key

    # a name that is a group name as it stands keeps it (the group of "Optic_Chiasm" is "dvh/Optic_Chiasm" whatever
    # other ROI is called "Optic/Chiasm"); the names changed to be group names come second
    out = {nm: nm for nm in dict.fromkeys(names) if clean(nm) == nm}
    used = set(out.values())
    for nm in names:
        if nm in out:
            continue
        key = base = clean(nm)
        k = 2
        while key in used:
            key = f"{base}_{k}"
            k += 1
        used.add(key)
        out[nm] = key
    return {nm: out[nm] for nm in names}


def read_dvh_hdf5(h5_path: str | Path) -> dict[str, dict]:
    """The DVHs of a result HDF5 by ROI name (the attribute ``name`` of each subgroup of ``dvh``, which
    :func:`write_dvh_hdf5` may have had to rename): {name: {"dose_gy": array, "volume_fraction": array, attribute:
    value, ...}}; {} for a dose file without a group ``dvh``.  A checkpoint or a phantom file, a file without the
    group that is not an mcproton dose file, and a truncated file raise :class:`~mcproton._io.hdf5.DoseFileError`
    (a ValueError) saying what the file is (before, a checkpoint gave {}: audit 26 h5schema, F5)."""
    from .hdf5 import DoseFileError, format_version, open_hdf5, other_mcproton_file

    out: dict[str, dict] = {}
    with open_hdf5(h5_path, "the HDF5 of mcproton run, which holds the DVHs (group dvh)") as f:
        other = other_mcproton_file(f, h5_path)
        if other:
            raise DoseFileError(other)
        if "dvh" not in f:
            format_version(f, h5_path)   # a dose file (else refused, saying what it is): it has no DVHs
            return out
        for key, grp in f["dvh"].items():
            a = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in grp.attrs.items()}
            nm = str(a.pop("name", key))
            out[nm] = {"dose_gy": grp["dose_gy"][()], "volume_fraction": grp["volume_fraction"][()], "group": key,
                       **a}
    return out


def write_dvh_hdf5(h5_path: str | Path, dose_zyx: np.ndarray, masks: Mapping[str, np.ndarray],
                   voxel_volume_cm3: float, *, n_bins: int = 1000, source: str = "",
                   dose_dataset: str = "dose", empty_reasons: Mapping[str, str] | None = None,
                   contour_volumes: Mapping[str, float] | None = None,
                   roi_numbers: Mapping[str, int] | None = None) -> dict[str, dict]:
    """Append (replace) the group ``dvh`` of an existing result HDF5; returns the per-structure stats.
    Each structure's subgroup is named by :func:`dvh_group_keys` (the ROI name made a unique HDF5 name), the ROI's
    own name is its attribute ``name``: :func:`read_dvh_hdf5` reads the group back by ROI name.  ``empty_reasons``:
    {ROI name: why it has no voxel} (:func:`empty_mask_reason`), written as the attribute ``empty_reason`` of a
    structure with ``n_voxels`` 0.  Every structure has the attribute ``few_voxels`` (fewer than
    :data:`mcproton.dvh.SMALL_STRUCTURE_VOXELS` voxels: its D98 to D2 are of those few voxels, as in the check);
    ``contour_volumes``: {ROI name: contour volume (cm3)} (:func:`contour_volumes_cm3`), written as
    ``contour_volume_cm3`` beside ``volume_cm3`` (the mask's) with their ratio ``mask_to_contour_volume``;
    ``roi_numbers``: {ROI name: ROINumber} (:attr:`RTStruct.roi_numbers`), written as ``roi_number``: a script tells
    an ROI renamed for a duplicate name from the others by it (strings audit 19, F2).
    ``dose_dataset``: the dataset ``dose_zyx`` is ("dose": to medium, "dose_to_water"), named in the group's
    attributes (``dose_dataset``, ``dose_to``, ``dose_type`` PHYSICAL: the simulated dose, no RBE, its fractions
    those of the dataset).

    Each structure's doses are selected once and sorted once; the cumulative DVH and every statistic come from
    them: the numbers of :func:`cumulative_dvh` and :func:`dvh_stats`, without a whole-grid pass per number."""
    import h5py

    from ..dvh import cumulative_of_sorted, stats_of_doses

    dose = np.asarray(dose_zyx)
    flat = dose.reshape(-1)
    stats: dict[str, dict] = {}
    with h5py.File(h5_path, "a") as f:
        if "dvh" in f:
            del f["dvh"]
        g = f.create_group("dvh")
        if dose_dataset not in ("dose", "dose_to_water"):
            raise ValueError(f'dose_dataset must be "dose" or "dose_to_water"; got {dose_dataset!r}')
        fx = f[dose_dataset].attrs.get("fractions_note") if dose_dataset in f else None
        g.attrs["definition"] = ("cumulative DVH: fraction of the structure's voxels (centre inside the contour) "
                                 f"with dose >= dose_gy; dose as the '{dose_dataset}' dataset (physical dose to "
                                 f"{'water' if dose_dataset == 'dose_to_water' else 'medium'}, no RBE"
                                 + (f"; {fx}" if fx else "") + ")")
        g.attrs["dose_dataset"] = dose_dataset
        g.attrs["dose_to"] = "water" if dose_dataset == "dose_to_water" else "medium"
        g.attrs["dose_type"] = "PHYSICAL"
        if source:
            g.attrs["rtstruct"] = source
        keys = dvh_group_keys(list(masks))
        for nm, m in masks.items():
            if m.shape != dose.shape:
                raise ValueError(f"mask {nm!r} has shape {m.shape}, the dose {dose.shape}")
            d = np.asarray(flat[np.flatnonzero(m)], np.float64)  # = dose[m] as float64, in C order
            srt = np.sort(d)
            edges = _dvh_levels(d, n_bins)
            vf = cumulative_of_sorted(srt, edges) if d.size else np.zeros_like(edges)
            s = g.create_group(keys[nm])
            s.create_dataset("dose_gy", data=edges)
            s.create_dataset("volume_fraction", data=vf)
            st: dict = _hdf5_stats(stats_of_doses(d, voxel_volume_cm3, sorted_doses=srt))
            st["few_voxels"] = bool(st["n_voxels"] < SMALL_STRUCTURE_VOXELS)
            cv = (contour_volumes or {}).get(nm)
            if cv is not None:
                st["contour_volume_cm3"] = float(cv)
                if cv > 0:
                    st["mask_to_contour_volume"] = float(st["volume_cm3"]) / float(cv)
            for k, v in st.items():
                s.attrs[k] = v
            s.attrs["name"] = nm
            num = (roi_numbers or {}).get(nm)
            if num is not None:
                s.attrs["roi_number"] = int(num)
            if not st["n_voxels"] and (empty_reasons or {}).get(nm):
                s.attrs["empty_reason"] = empty_reasons[nm]
            stats[nm] = st
    return stats


@timed("dvh")
def add_dvh_to_result(result, h5_path: str | Path, rtstruct_path: str | Path, *, dose: str = "dose") -> dict:
    """Rasterise an RT Structure Set on the result's grid and write the DVHs (of ``result.dose_gy_zyx``, or
    the dose to water with ``dose="dose_to_water"``) into the group ``dvh`` of ``h5_path``; returns the
    per-structure stats.  Warns when the structure set's frame of reference differs from the CT's."""
    s = read_rtstruct(rtstruct_path)
    g = result.geometry
    for_uid = getattr(g, "frame_of_reference_uid", None)
    if for_uid and s.frame_of_reference_uid and for_uid != s.frame_of_reference_uid:
        warn(f"RT Structure Set {rtstruct_path} refers to frame of reference {s.frame_of_reference_uid}, "
             f"the CT to {for_uid}: the contours may not belong to this CT", McprotonRuntimeWarning,
             stacklevel=2)
    masks = rasterise(s, g)
    d = result.dose_to_water_gy_zyx if dose == "dose_to_water" else result.dose_gy_zyx
    why = {nm: empty_mask_reason(s, nm, g) for nm, m in masks.items() if not m.any()}
    stats = write_dvh_hdf5(h5_path, d, masks, g.voxel_volume_cm3, source=str(rtstruct_path),
                           dose_dataset="dose_to_water" if dose == "dose_to_water" else "dose", empty_reasons=why,
                           contour_volumes=contour_volumes_cm3(s, float(g.voxel_size_mm[2])),
                           roi_numbers=s.roi_numbers)
    warn_dvh_volumes(stats, why, g.voxel_size_mm, "the dose grid")
    return stats


def warn_dvh_volumes(stats: Mapping[str, Mapping], empty_reasons: Mapping[str, str], voxel_mm, grid: str) -> None:
    """The console warnings of ``mcproton run``'s DVH (``stats``: :func:`write_dvh_hdf5`'s) of small structures
    (infant audit 2026-12-06, F3: before, a 0.03 cm3 ROI without a voxel was only an HDF5 attribute, and a lens of one
    voxel had D98 = D2 = Dmax with nothing saying so): the ROIs with no voxel (why), those with fewer than
    :data:`mcproton.dvh.SMALL_STRUCTURE_VOXELS` voxels (the check's few-voxel note), and those whose mask volume is
    outside :data:`mcproton.dvh.MASK_CONTOUR_RATIO_RANGE` of their contour volume; one warning each (the empty ROIs in
    one, each reason said once: :func:`reasons_grouped`)."""
    from ..dvh import MASK_CONTOUR_RATIO_RANGE

    size = " x ".join(f"{float(v):g}" for v in voxel_mm) + " mm"
    if len(empty_reasons) == 1:
        ((nm, reason),) = empty_reasons.items()
        warn(f"ROI {nm!r} has no voxel on {grid} ({size}): it {reason}; it has no DVH (its dvh group says "
             "n_voxels 0 and empty_reason)", McprotonRuntimeWarning, stacklevel=3)
    elif empty_reasons:   # one warning, each reason once (audit 18b F10: one per ROI)
        warn(f"{len(empty_reasons)} ROI(s) have no voxel on {grid} ({size}): "
             f"{'; '.join(reasons_grouped(empty_reasons))}; they have no DVH (their dvh groups say n_voxels 0 and "
             "empty_reason)", McprotonRuntimeWarning, stacklevel=3)
    few = [f"{nm!r} ({st['n_voxels']})" for nm, st in stats.items() if st.get("few_voxels") and st["n_voxels"]]
    if few:
        warn(f"{len(few)} structure(s) have fewer than {SMALL_STRUCTURE_VOXELS} voxels on {grid} ({size}): "
             f"{', '.join(few)}; their DVH metrics are of those voxels, each in or out by its centre (no partial "
             "volume): D2 is the maximum voxel below 50 voxels and one MC voxel's noise, and Dmax and D2 may be "
             "15-30 % below a planning system's partial-volume DVH (attribute few_voxels of dvh/<ROI>); a finer dose "
             "grid gives more voxels", McprotonRuntimeWarning, stacklevel=3)
    lo, hi = MASK_CONTOUR_RATIO_RANGE
    off = [f"{nm!r} mask {st['volume_cm3']:.3g} cm3, contour {st['contour_volume_cm3']:.3g} cm3 "
           f"({st['mask_to_contour_volume']:.2f})" for nm, st in stats.items()
           if st["n_voxels"] and "mask_to_contour_volume" in st and not lo <= st["mask_to_contour_volume"] <= hi]
    if off:
        warn(f"the mask volume of {len(off)} structure(s) on {grid} ({size}) differs from its contour volume (polygon "
             f"areas x slice thickness, the planning system's volume) by more than a factor {hi:g}: {'; '.join(off)}; "
             "their DVH is of the voxels whose centres lie inside the contours, not of the structure's volume: a "
             "finer dose grid brings the two together", McprotonRuntimeWarning, stacklevel=3)
