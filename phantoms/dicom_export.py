"""DICOM export of the phantoms: a CT series (HU from the inverse of a HU -> density calibration) and an
RT Structure Set with one ROI per label (contours per axial slice from the label map)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np

from .._io.dicom_common import PHANTOM_STUDY, StudyReference
from .._io.hu_calibration import calibration_note
from .._io.ownership import written_by_mcproton  # noqa: F401 - its home before 2026-12-06, used here
from ..geometry import VoxelGeometry

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
STUDY_COMPONENT_SOP_CLASS = "1.2.840.10008.3.1.2.3.1"   # referenced study (as written by most TPSs)


@dataclass
class CTSeriesRef:
    """What an RT object needs to reference a written CT series: its patient, study and frame of reference
    (``study``, for the RT Structure Set and RT Dose of the same study), its series and slices."""

    folder: Path
    study: StudyReference
    series_instance_uid: str
    sop_instance_uids: list[str] = field(default_factory=list)   # slice k -> SOP instance UID
    z_mm: list[float] = field(default_factory=list)

    @property
    def frame_of_reference_uid(self) -> str:
        return self.study.frame_of_reference_uid

    @property
    def study_instance_uid(self) -> str:
        return self.study.study_instance_uid


def phantom_hu(geometry: VoxelGeometry, calibration="schneider2000") -> np.ndarray:
    """Integer HU per voxel: the inverse of ``calibration``'s HU -> density curve at the voxel densities."""
    from ..dicom import HUCalibration

    cal = calibration if isinstance(calibration, HUCalibration) else HUCalibration.load(calibration)
    check_calibration_covers(geometry, cal)
    return cal.hu_from_density(geometry.density_g_cm3_zyx, integer=True)


def check_calibration_covers(geometry: VoxelGeometry, cal) -> None:
    """Refuse a HU calibration (an :class:`~mcproton.dicom.HUCalibration`) whose densities do not reach the
    phantom's: the inverse would clamp them to the curve's ends."""
    rho = geometry.density_g_cm3_zyx
    lo, hi = cal.density_range
    tol = cal.density_resolution   # what a CT round trip reproduces anyway
    dmin, dmax = float(rho.min()), float(rho.max())
    if dmax > hi + tol or dmin < lo - tol:
        # the inverse clamps to the curve's ends: the CT would hold another phantom (e.g. cortical bone 1.85 g/cm3
        # written as the 1.825 g/cm3 of mcsquare_default's last point)
        raise ValueError(f"the phantom's densities ({dmin:.4g}..{dmax:.4g} g/cm3) reach beyond those of HU calibration "
                         f"{cal.name!r} ({lo:.4g}..{hi:.4g} g/cm3): its CT would hold the calibration's end density "
                         "there instead; write the CT with a calibration that covers them (e.g. the default "
                         "schneider2000, up to 2.83 g/cm3)")


def _own_slice(path: Path) -> bool:
    """Whether ``path`` is a CT slice that an mcproton phantom writer wrote (CT_<number>.dcm, Modality CT,
    Manufacturer mcproton): our own earlier output, which a new phantom may replace."""
    import re

    import pydicom

    if not (path.is_file() and re.fullmatch(r"CT_\d+\.dcm", path.name)):
        return False
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["Modality", "Manufacturer"])
    except Exception:  # noqa: BLE001 - not readable as DICOM: not ours
        return False
    return str(ds.get("Modality", "")) == "CT" and str(ds.get("Manufacturer", "")) == "mcproton"


def earlier_phantom_ct(ct_dir, what: str = "the CT folder") -> list[Path]:
    """The check of :func:`check_new_ct_dir`, which removes nothing: the slices of an earlier mcproton phantom series
    in ``ct_dir`` (CT_<n>.dcm that mcproton wrote: a previous `mcproton demo` into the same --out), which the new
    series replaces; a folder holding anything else (a patient's CT, other files) is refused: a series written into
    it would overwrite the files of the same names and leave the others, two series of two frames of reference in one
    folder.  The temporary folder that a killed series writer left there (``.mcp-*.tmp``) is not refused: the next
    writer holding the folder's lock removes it (mcproton._io.lock.remove_stale_temporaries).  Called before
    anything else that may refuse, so that a refusal removes nothing (review 2a of 2026-12-07, R1: the demo emptied
    ``ct/`` and then refused --age 200)."""
    from .._io.atomic import is_temporary_name

    d = Path(ct_dir)
    if not d.exists():
        return []
    if not d.is_dir():
        raise ValueError(f"{what} {d} is not a folder: the phantom's CT series is written to a folder; give another "
                         "output folder")
    files = [f for f in d.iterdir() if not (is_temporary_name(f.name) and f.is_dir() and not f.is_symlink())]
    foreign = [f for f in files if not _own_slice(f)]
    if foreign:
        raise ValueError(f"{what} {d} already holds {len(foreign)} file(s) that are not an earlier mcproton phantom "
                         f"CT (e.g. {foreign[0].name}; a patient's CT?): the phantom's CT series is written to a new "
                         "folder, or one holding only an earlier phantom series (which it replaces), since slices "
                         "left from another series would mix two series of two frames of reference; give a new "
                         "output folder, or move those files yourself")
    return files


def check_new_ct_dir(ct_dir, what: str = "the CT folder") -> list[Path]:
    """Make sure a phantom's CT series goes into a folder of its own (:func:`earlier_phantom_ct`), and empty it of an
    earlier mcproton phantom series: the new series replaces it whole.  Returns the slices removed."""
    files = earlier_phantom_ct(ct_dir, what)
    for f in files:   # our own earlier series: replaced whole, none of its slices left beside the new one
        f.unlink()
    return files


#: A phantom's PatientAge (DICOM AS) in months below this age (years), in completed years from it
AGE_IN_MONTHS_BELOW_Y = 1.0


def dicom_age(age_years: float) -> str:
    """DICOM PatientAge (AS) of an age in years: months below :data:`AGE_IN_MONTHS_BELOW_Y` ("006M"), else completed
    years ("005Y", as an age is said)."""
    a = float(age_years)
    return f"{int(round(12 * a)):03d}M" if a < AGE_IN_MONTHS_BELOW_Y else f"{int(a + 1e-9):03d}Y"


def phantom_study(geometry) -> StudyReference:
    """The patient of a paediatric phantom, from its ``meta`` (make_head_phantom: age and sex): PatientID
    ``MCPROTON-<age>Y-<M|F>``, PatientSex M or F and PatientAge (:func:`dicom_age`), so that a planning system or a
    PACS files each phantom as a patient of its own (before 2026-12-06 every phantom was patient MCPROTON without
    sex or age: a 1-year-old girl and a 15-year-old boy one patient; phantom audit F6.1).  :data:`PHANTOM_STUDY`
    for a geometry without them (a slab phantom)."""
    meta = getattr(geometry, "meta", None) or {}
    age, sex = meta.get("age_years"), str(meta.get("sex", ""))
    if isinstance(age, bool) or not isinstance(age, (int, float)) or sex not in ("male", "female"):
        return PHANTOM_STUDY
    s = sex[0].upper()
    return PHANTOM_STUDY.replace(patient_id=f"MCPROTON-{float(age):g}Y-{s}", patient_sex=s,
                                 patient_age=dicom_age(age))


def check_outputs_replaceable(out_dir, names, what: str = "the output folder") -> None:
    """Refuse, before anything is written, an output folder ``out_dir`` whose files of the given ``names`` (the ones
    a phantom or the demo writes) were not written by mcproton (:func:`written_by_mcproton`): a planning system's
    structure set or plan saved there as rtstruct.dcm or rtplan.dcm would be replaced without a word (phantom audit
    F4).  Files of ours (an earlier phantom or demo into the same folder) are replaced, as the CT folder's are
    (:func:`earlier_phantom_ct`)."""
    d = Path(out_dir)
    if d.exists() and not d.is_dir():
        raise ValueError(f"{what} {d} is not a folder: give a new output folder")
    up = next((q for q in d.absolute().parents if q.exists() or q.is_symlink()), None)
    if not (d.exists() or d.is_symlink()) and up is not None and not up.is_dir():
        # found before the phantom is made (before: "[Errno 20] Not a directory" once it was built: audit 26
        # exitcodes, F11)
        raise ValueError(f"{what} {d} cannot be made: {up} is a file, not a folder; give an output folder that is "
                         "not below a file")
    foreign = []
    for name in names:
        p = d / name
        if p.exists() or p.is_symlink():
            ours, why = written_by_mcproton(p)
            if not ours:
                foreign.append(f"{name} ({why})")
    if foreign:
        raise ValueError(f"{what} {d} already holds {', '.join(foreign)}, which mcproton did not write and would "
                         "replace: give a new output folder, or move those files out of it yourself")


def remove_earlier_outputs(out_dir, names) -> list[str]:
    """Remove the files of ``names`` in ``out_dir`` that mcproton wrote (:func:`written_by_mcproton`: an earlier
    phantom's or demo's; any other is left) as a new one starts writing, as :func:`check_new_ct_dir` empties the CT
    folder: a phantom or demo stopped part-way then leaves its own files and none of an earlier one's beside them
    (the concurrency audit of 2026-12-07, F5: a demo stopped after its CT left the new CT and RT Struct, of a new
    frame of reference, beside the earlier demo's plan, RT Dose and summary).  Returns the names removed."""
    d = Path(out_dir)
    gone = []
    for name in names:
        p = d / name
        if p.is_file() and not p.is_symlink() and written_by_mcproton(p)[0]:
            p.unlink()
            gone.append(name)
    return gone


def write_phantom_ct(geometry: VoxelGeometry, out_dir, *, calibration="schneider2000",
                     study: StudyReference | None = None,
                     series_description: str | None = None) -> CTSeriesRef:
    """Write the phantom as an axial CT series (CT_0000.dcm, ...) in ``out_dir``; returns the UIDs.
    ``study``: the patient, study and frame of reference (default a new phantom study: "mcproton^phantom",
    HFS, the phantom's own patient ID, sex and age (:func:`phantom_study`); fresh UIDs where empty)."""
    from pydicom.uid import generate_uid

    from .._io.ct import write_ct_series_uids

    from ..dicom import HUCalibration

    check_new_ct_dir(out_dir)
    study = (study or phantom_study(geometry)).resolved()
    series_uid = str(generate_uid())
    desc = series_description or geometry.name
    cal = calibration if isinstance(calibration, HUCalibration) else HUCalibration.load(calibration)
    # the CT names its calibration (ImageComments): `mcproton run` refuses to read it with another one
    _, sops, zs = write_ct_series_uids(phantom_hu(geometry, cal), geometry.voxel_size_mm,
                                       geometry.origin_mm, out_dir, study=study, series_description=desc,
                                       series_instance_uid=series_uid, image_comments=calibration_note(cal.name))
    return CTSeriesRef(Path(out_dir), study, series_uid, sops, zs)


def slice_contours(mask_yx: np.ndarray, x_mm: np.ndarray, y_mm: np.ndarray) -> list[np.ndarray]:
    """Closed contours (each (n, 2) x, y in mm, not repeating the first point) of a 2-D boolean mask: the outlines
    of its voxels, along the voxel edges (half a voxel from the centres), one per connected piece (4-connected:
    voxels touching at a corner only are separate pieces) and one per hole, with only the corners as points.

    The area a contour encloses is its voxels' area, whatever rule a reader rasterises it with: the voxel centres
    inside (mcproton, OpenTPS, dicompyler-core) give back the mask exactly, and a reader that takes the polygon's own
    area (a planning system's volume) gets the mask's volume.  Before (2026-12-05) the contours ran by marching
    squares through the midpoints between voxel centres and cut every voxel corner: an optic nerve two voxels wide
    enclosed 28 % less than its voxels (interop audit, F1).

    The outline's edges are traced with the region on their left (in index space, x and y increasing); where two
    pieces touch at a corner the trace turns left, keeping them apart.  Holes come out as separate contours, which
    DICOM readers take as holes (even-odd) as they did before."""
    m = np.pad(np.asarray(mask_yx, bool), 1)
    ny, nx = m.shape
    inside = m[1:-1, 1:-1]
    j, i = np.nonzero(inside)   # voxel (j, i) of the mask = (j + 1, i + 1) of m; its corners (i, j) .. (i + 1, j + 1)
    if j.size == 0:
        return []
    # the boundary edges, region on the left: (start corner, direction) with directions 0 +x, 1 +y, 2 -x, 3 -y
    sx, sy, dirs = [], [], []
    for d, (dj, di), (ox, oy) in ((0, (-1, 0), (0, 0)), (1, (0, 1), (1, 0)), (2, (1, 0), (1, 1)), (3, (0, -1), (0, 1))):
        out = ~m[j + 1 + dj, i + 1 + di]
        sx.append(i[out] + ox)
        sy.append(j[out] + oy)
        dirs.append(np.full(int(out.sum()), d))
    ex, ey, ed = np.concatenate(sx), np.concatenate(sy), np.concatenate(dirs)
    step = np.array([(1, 0), (0, 1), (-1, 0), (0, -1)])
    w = nx + 1                                       # corner keys: y * w + x
    start = ey * w + ex
    end = (ey + step[ed, 1]) * w + (ex + step[ed, 0])
    # the edges leaving each corner, by direction (a corner has one, or two where pieces touch diagonally)
    out_of = np.full(((ny + 1) * w, 4), -1, np.int64)
    out_of[start, ed] = np.arange(ed.size)
    # the next edge of each: a left turn where there is one (two pieces touching at this corner: stay on this
    # one), else straight on, else a right turn
    left, straight, right = (out_of[end, (ed + t) % 4] for t in (1, 0, 3))
    nxt = np.where(left >= 0, left, np.where(straight >= 0, straight, right))
    return _loops(nxt, start.tolist(), ex, ey, ed, x_mm, y_mm)


def _loops(nxt: np.ndarray, keys: list[int], ex: np.ndarray, ey: np.ndarray, ed: np.ndarray, x_mm: np.ndarray,
           y_mm: np.ndarray) -> list[np.ndarray]:
    """The closed loops of the edges that ``nxt`` chains (``keys``: each edge's start corner), each as the points in
    mm where its direction changes.  Corner c (of ``ex``, ``ey``) is the lower edge of voxel c: half a voxel before
    its centre."""
    dx = float(x_mm[1] - x_mm[0]) if len(x_mm) > 1 else 1.0
    dy = float(y_mm[1] - y_mm[0]) if len(y_mm) > 1 else 1.0
    seen = np.zeros(ed.size, bool)
    nxt_l = nxt.tolist()
    out = []
    for e0 in range(ed.size):
        if seen[e0]:
            continue
        loop, e = [], e0
        while not seen[e]:
            seen[e] = True
            loop.append(e)
            e = nxt_l[e]
        for part in _simple_parts(loop, keys):
            idx = np.asarray(part)
            d = ed[idx]
            corners = idx[d != np.roll(d, 1)]
            if corners.size >= 3:
                out.append(np.column_stack([x_mm[0] + (ex[corners] - 0.5) * dx,
                                            y_mm[0] + (ey[corners] - 0.5) * dy]))
    return out


def _simple_parts(loop: list[int], start_key: list[int]) -> list[list[int]]:
    """A loop of edges cut into loops that pass each corner once, where it passes one twice: a piece that touches
    itself at a corner around a hole (the hole's outline and the outer one, joined there by the left turn), split
    into its outer outline and the hole's, each a simple polygon."""
    if len({start_key[e] for e in loop}) == len(loop):
        return [loop]
    parts, path, at = [], [], {}
    for e in loop:
        k = start_key[e]
        if k in at:   # back at a corner of the path: the edges since then close a loop
            i = at[k]
            parts.append(path[i:])
            for f in path[i:]:
                del at[start_key[f]]
            del path[i:]
        at[k] = len(path)
        path.append(e)
    return parts + [path] if path else parts


CONTOUR_DATA_TAG = 0x30060050


def _contour_data_elements(xyz_list: list[np.ndarray]) -> list:
    """The ContourData (3006,0050) elements of contours ((n, 3) points in mm each), every number written with
    two decimals ("%.2f"), as pydicom encodes the list of those strings (backslash-separated, padded with a
    space to an even length), but as raw values: pydicom turns each string into a validated DSfloat (a 1 mm
    head phantom's RT Struct has 1.5 million of them: ~6 s).  Each distinct number is formatted once (its
    bits: -0.0 and 0.0 stay apart)."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    if not xyz_list:
        return []
    flat = np.concatenate([np.asarray(a, np.float64).ravel() for a in xyz_list])
    bits, inv = np.unique(flat.view(np.int64), return_inverse=True)
    text = np.array([f"{v:.2f}" for v in bits.view(np.float64)], dtype=object)
    if max(len(t) for t in text) > 16:
        raise ValueError("a contour coordinate does not fit a DICOM DS (16 characters)")
    words = text[inv.ravel()].tolist()
    out, i = [], 0
    for a in xyz_list:
        n = int(np.size(a))
        value = "\\".join(words[i:i + n]).encode("ascii")
        i += n
        if len(value) % 2:
            value += b" "
        out.append(RawDataElement(Tag(CONTOUR_DATA_TAG), "DS", len(value), value, 0, False, True))
    return out


_COLOURS = [(255, 0, 0), (0, 160, 255), (0, 200, 0), (255, 200, 0), (200, 0, 255), (255, 120, 0),
            (0, 220, 200), (160, 80, 40), (255, 0, 150), (120, 120, 255)]


#: the phantoms' ROIs that are air spaces (RTROIInterpretedType CAVITY; the interop audit 2026-12-05: typed ORGAN)
CAVITY_PREFIXES = ("sinus_", "nasal_cavity", "airway", "mastoid_air")


def _interpreted_type(name: str) -> str:
    n = name.lower()
    if n == "body":
        return "EXTERNAL"
    if n.startswith("ctv"):
        return "CTV"
    if n.startswith("ptv"):
        return "PTV"
    if n.startswith("gtv"):
        return "GTV"
    if n.startswith(CAVITY_PREFIXES):   # air spaces: DICOM's CAVITY, not an organ at risk
        return "CAVITY"
    return "ORGAN"


def write_rtstruct(masks: Mapping[str, np.ndarray], geometry: VoxelGeometry, ct: CTSeriesRef, path, *,
                   label: str = "mcproton phantom", interpreted_types: Mapping[str, str] | None = None,
                   sop_instance_uid: str | None = None) -> Path:
    """RT Structure Set with one ROI per named (z, y, x) mask on ``geometry``'s grid (the grid of the CT
    series ``ct``); contours are CLOSED_PLANAR polygons on the CT slice planes, each referencing its CT
    image.  ROIs with no voxels are skipped.  ``sop_instance_uid``: the structure set's (default a new one), so
    that an RT Ion Plan written meanwhile can reference it (the demo)."""
    from pydicom.charset import default_encoding
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DSeq
    from pydicom.uid import generate_uid

    from .._io.atomic import atomic_write_file
    from .._io.dicom_common import new_file_dataset, now_date_time, save_dataset, set_patient_study_series

    nz = geometry.shape_zyx[0]
    if len(ct.sop_instance_uids) != nz:
        raise ValueError(f"the CT series has {len(ct.sop_instance_uids)} slices but the grid {nz}")
    x_mm, y_mm, z_mm = geometry.axis_mm("x"), geometry.axis_mm("y"), geometry.axis_mm("z")
    date, time = now_date_time()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds, sop_uid = new_file_dataset(path, RT_STRUCTURE_SET_STORAGE, sop_instance_uid)
    set_patient_study_series(ds, ct.study, modality="RTSTRUCT", date=date, time=time,
                             series_description=label, series_instance_uid=generate_uid(), series_number=2,
                             instance_number=1)
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.OperatorsName = ""
    ds.StructureSetLabel = label[:16]
    ds.StructureSetName = label[:64]
    ds.StructureSetDate, ds.StructureSetTime = date, time

    def img_ref(k: int) -> Dataset:
        r = Dataset()
        r.ReferencedSOPClassUID = CT_IMAGE_STORAGE
        r.ReferencedSOPInstanceUID = ct.sop_instance_uids[k]
        return r

    series = Dataset()
    series.SeriesInstanceUID = ct.series_instance_uid
    series.ContourImageSequence = DSeq([img_ref(k) for k in range(nz)])
    study = Dataset()
    study.ReferencedSOPClassUID = STUDY_COMPONENT_SOP_CLASS
    study.ReferencedSOPInstanceUID = ct.study_instance_uid
    study.RTReferencedSeriesSequence = DSeq([series])
    fref = Dataset()
    fref.FrameOfReferenceUID = ct.frame_of_reference_uid
    fref.RTReferencedStudySequence = DSeq([study])
    ds.ReferencedFrameOfReferenceSequence = DSeq([fref])

    rois, roi_contours, observations = [], [], []
    types = dict(interpreted_types or {})
    number = 0
    for name, mask in masks.items():
        m = np.asarray(mask, bool)
        if m.shape != geometry.shape_zyx:
            raise ValueError(f"mask {name!r} has shape {m.shape}, the grid {geometry.shape_zyx}")
        ks = np.nonzero(m.any(axis=(1, 2)))[0]
        if ks.size == 0:
            continue
        number += 1
        polys = [(int(k), poly) for k in ks for poly in slice_contours(m[k], x_mm, y_mm)]
        datas = _contour_data_elements([np.column_stack([poly, np.full(len(poly), z_mm[k])]) for k, poly in polys])
        contours = []
        for (k, poly), data in zip(polys, datas):
            c = Dataset()
            c.ContourImageSequence = DSeq([img_ref(k)])
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = len(poly)
            c[CONTOUR_DATA_TAG] = data
            # written as it is encoded (pydicom would otherwise decode the raw value before writing it)
            c.set_original_encoding(False, True, default_encoding)
            contours.append(c)
        if not contours:
            number -= 1
            continue
        r = Dataset()
        r.ROINumber = number
        r.ReferencedFrameOfReferenceUID = ct.frame_of_reference_uid
        r.ROIName = name[:64]
        r.ROIGenerationAlgorithm = "AUTOMATIC"
        rois.append(r)
        rc = Dataset()
        rc.ROIDisplayColor = list(_COLOURS[(number - 1) % len(_COLOURS)])
        rc.ReferencedROINumber = number
        rc.ContourSequence = DSeq(contours)
        roi_contours.append(rc)
        o = Dataset()
        o.ObservationNumber = number
        o.ReferencedROINumber = number
        o.RTROIInterpretedType = types.get(name, _interpreted_type(name))
        o.ROIInterpreter = ""
        observations.append(o)
    ds.StructureSetROISequence = DSeq(rois)
    ds.ROIContourSequence = DSeq(roi_contours)
    ds.RTROIObservationsSequence = DSeq(observations)
    ds.ApprovalStatus = "UNAPPROVED"
    # a temporary file renamed into place: a writer stopped part-way leaves no truncated RT Struct
    atomic_write_file(path, lambda tmp: save_dataset(ds, tmp))
    return Path(path)


def read_rtstruct_contours(path) -> dict[str, list[np.ndarray]]:
    """{ROI name: [(n, 3) contour points in mm, ...]} of an RT Structure Set (for tests and checks)."""
    import pydicom

    ds = pydicom.dcmread(path)
    names = {int(r.ROINumber): str(r.ROIName) for r in ds.StructureSetROISequence}
    out: dict[str, list[np.ndarray]] = {}
    for rc in ds.ROIContourSequence:
        pts = [np.asarray(c.ContourData, float).reshape(-1, 3) for c in getattr(rc, "ContourSequence", [])]
        out[names[int(rc.ReferencedROINumber)]] = pts
    return out


#: the files :func:`export_phantom` writes into its folder beside ``ct/``
PHANTOM_FILES = ("rtstruct.dcm", "phantom.h5")


def export_phantom(geometry: VoxelGeometry, out_dir, *, calibration="schneider2000", rtstruct: bool = True,
                   extra_masks: Mapping[str, np.ndarray] | None = None, hdf5: bool = True) -> dict:
    """``out_dir/ct/`` (CT series), ``out_dir/rtstruct.dcm`` (one ROI per label + ``extra_masks``) and
    ``out_dir/phantom.h5`` (materials, densities, label map); returns the paths and the CT reference.

    Whatever would refuse the phantom is checked before anything is written or a folder made (a refusal leaves no
    empty ``out_dir`` behind, phantom audit F6.4): the calibration (known, covering the phantom's densities), the
    CT folder (:func:`check_new_ct_dir`), and the files it would replace (:func:`check_outputs_replaceable`: only
    files that mcproton wrote, F4).  An earlier phantom's files there are removed before the first new one is
    written (:func:`remove_earlier_outputs`), and each file (the CT series as a whole) is written whole or not at
    all: an export stopped part-way leaves some of this phantom's files, never a shorter series or another
    phantom's RT Struct beside them."""
    from ..dicom import HUCalibration
    from .export import label_map_to_masks, write_phantom_hdf5

    out = Path(out_dir)
    cal = calibration if isinstance(calibration, HUCalibration) else HUCalibration.load(calibration)
    check_calibration_covers(geometry, cal)
    earlier_phantom_ct(out / "ct")   # emptied by write_phantom_ct, after every check
    check_outputs_replaceable(out, [name for name, on in zip(PHANTOM_FILES, (rtstruct, hdf5)) if on])
    out.mkdir(parents=True, exist_ok=True)
    remove_earlier_outputs(out, PHANTOM_FILES)   # also an earlier one of those not written now (--no-rtstruct)
    ct = write_phantom_ct(geometry, out / "ct", calibration=cal)
    res = {"ct": ct, "ct_dir": out / "ct"}
    if rtstruct:
        masks = dict(extra_masks or {})
        masks.update(label_map_to_masks(geometry))
        masks["body"] = geometry.labels_zyx != 0   # EXTERNAL: the whole outline, not the soft-tissue label
        res["rtstruct"] = write_rtstruct(masks, geometry, ct, out / "rtstruct.dcm")
    if hdf5:
        res["hdf5"] = write_phantom_hdf5(geometry, out / "phantom.h5")
    return res
