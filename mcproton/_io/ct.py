"""CT series import and export (DICOM CT Image Storage).

``load_ct_series`` reads a folder of axial CT slices into a :class:`CTImage` whose voxel grid follows the
conventions of :mod:`mcproton.geometry`: arrays are (z, y, x), ``voxel_size_mm`` is (dx, dy, dz) and
``origin_mm`` is the (x, y, z) centre of voxel [0, 0, 0] in the DICOM patient frame (LPS, mm).

Only axial, untilted series are accepted.  Slices whose rows run along -x or whose columns run along -y
(e.g. feet-first or prone acquisitions stored with flipped direction cosines) are flipped so that the
returned grid always has axes along +x, +y, +z with positive spacings.
"""
from __future__ import annotations

import contextlib
import os

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
from pydicom.multival import MultiValue

from .._timing import timed
from .decoders import DECODER_ADVICE, install_for, missing_decoder
from .dicom_common import (CT_IMAGE_STORAGE, MULTI_FRAME_CT, SECONDARY_CAPTURE, StudyReference, dangling_links,
                           dangling_links_message, dicom_kind, is_dicomdir, is_gzip, links_listed)
from .errors import DicomInputError, McprotonWarning, warn


_ORIENT_TOL = 1e-3       # direction-cosine tolerance for "axis aligned"
_SPACING_RTOL = 1e-3     # relative tolerance for even slice spacing
_SPACING_ATOL_MM = 0.01  # absolute tolerance (mm)


@dataclass
class CTImage:
    """A CT volume in Hounsfield units on a regular grid in the patient (LPS) frame."""

    hu_zyx: np.ndarray
    voxel_size_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    frame_of_reference_uid: str = ""
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    patient_name: str = ""
    patient_id: str = ""
    # the patient of the series (its slices agree: load_ct_series), each value from the first slice that gives it (a
    # blank is not a value: before, a blank first slice left the RT Dose without birth date and sex, review R6)
    patient_birth_date: str = ""   # PatientBirthDate (DA): the RT Dose and HDF5 study keep it
    patient_sex: str = ""          # PatientSex (M, F, O)
    patient_position: str = ""
    slice_sop_instance_uids: list[str] = field(default_factory=list)
    series_description: str = ""
    study_date: str = ""         # StudyDate (DA) of the first slice: an RT Dose written for the CT's study keeps it
    study_time: str = ""         # StudyTime (TM) of the first slice
    study_timezone: str = ""     # TimezoneOffsetFromUTC of the first slice ("+HHMM"; "": none given)
    image_comments: str = ""     # ImageComments (0020,4000) of the first slice (a phantom CT names its calibration)
    image_type: str = ""         # ImageType (0008,0008) of the first slice, its values joined by "\\"
    #: the directions (+1 or -1) along x, y, z of the series' columns, rows and slice normal, from its
    #: ImageOrientationPatient (the volume above runs along +x, +y, +z whatever they are): an RT Dose of a dose on
    #: this CT is written in the same orientation (StudyReference.from_ct)
    axis_directions: tuple[int, int, int] = (1, 1, 1)
    slice_files: list[str] = field(default_factory=list)   # the files of the slices read, in slice order
    #: how the first slice says it was acquired (:func:`ct_acquisition`: KVP, Manufacturer, ManufacturerModelName,
    #: ConvolutionKernel): a HU calibration belongs to one scanner, tube voltage and kernel, so a run's and a check's
    #: provenance record it beside the calibration ({} for a CT made in Python)
    acquisition: dict = field(default_factory=dict)
    #: the scanner's reconstruction circle (x, y, radius; mm, patient frame) from ReconstructionDiameter (0018,1100)
    #: and ReconstructionTargetCenterPatient (0018,9318, else the image's centre); None where the CT does not say
    #: (:func:`fov_cut_mask` then takes the circle inscribed in the image)
    fov_circle_mm: tuple[float, float, float] | None = None

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.hu_zyx.shape)  # type: ignore[return-value]

    def axis_mm(self, axis: str) -> np.ndarray:
        """Voxel-centre coordinates along 'x', 'y' or 'z' (mm)."""
        k = "xyz".index(axis)
        return self.origin_mm[k] + self.voxel_size_mm[k] * np.arange(self.hu_zyx.shape[2 - k])


def _err(msg: str) -> DicomInputError:
    return DicomInputError(msg)


def _floats(ds, keyword: str, n: int, fname: str) -> np.ndarray:
    if keyword not in ds or ds[keyword].value is None or ds[keyword].value == "":
        raise _err(f"{fname}: required attribute {keyword} is missing; the file is not a usable CT slice")
    v = ds[keyword].value
    vals = list(v) if isinstance(v, (list, tuple, MultiValue)) else [v]
    from .dicom_common import number_values

    # the message names the value at fault ("value 1 of 3 is 'nan'") and what to do
    return np.array(number_values(vals, keyword, str(fname), "the file is not a usable CT slice: export the CT "
                                  "series again", n), dtype=float)


#: what the links of a CT folder to files that do not exist may be, and what reading the folder without them does
_DANGLING_SLICES = ("CT slices, and without them the CT would be shorter (a slice missing at either end of the series "
                    "leaves no gap to be seen, and the patient's end is cut off where a beam may enter or stop)")


def _list_files(folder: str | Path | Sequence[str | Path]) -> list[Path]:
    """The files of the CT folder ``folder`` (not hidden), or the files given (:func:`_list_folder`)."""
    return _list_folder(folder)[0]


def _list_folder(folder: str | Path | Sequence[str | Path]) -> tuple[list[Path], list[Path]]:
    """(the files of the CT folder ``folder``, not hidden, or the files given; the folder's symbolic links to files
    that do not exist that are not named like slices: skipped, and named by :func:`_series_headers`), from one
    listing of the folder (review of 2026-12-07, R7: the header pass listed it again for those links).  A folder
    holding the temporary folder of an mcproton series writer (:func:`_unfinished_series`) is refused."""
    other: list[Path] = []
    if isinstance(folder, (str, Path)):
        p = Path(folder)
        if not p.exists():
            raise _err(f"CT folder {p} does not exist; give the folder that holds the CT slices")
        if p.is_file():
            return [p], []
        listing = list(p.iterdir())
        _unfinished_series(p, listing)
        entries = [f for f in listing if not f.name.startswith(".")]
        # a slice that is a link to a file that is gone (is_file() is False) was left out without a word, and the CT
        # read without it (locale audit 2026-12-07, F1): refused where it is named like DICOM, as an empty slice is
        gone = dangling_links(entries)
        dangling = [f for f in gone if _slice_like(f.name)]
        if dangling:
            raise _err(dangling_links_message(sorted(dangling), f"in the CT folder {p}", _DANGLING_SLICES))
        other = sorted(gone)
        files = sorted(f for f in entries if f.is_file())
    else:
        files = [Path(f) for f in folder]
    if not files:
        raise _err(f"no files in {folder}; give the folder that holds the CT slices (*.dcm)"
                   + (_ct_subfolders(Path(folder)) if isinstance(folder, (str, Path)) else ""))
    return files, other


#: the most sub-folders and files per sub-folder :func:`_ct_subfolders` reads headers of
_SUBFOLDERS_LOOKED_AT = 8
_FILES_LOOKED_AT = 4000


def _ct_subfolders(folder: Path) -> str:
    """Where a CT folder holds no slices but its immediate sub-folders do (a patient folder given as the CT folder,
    its CT in ``ct/``): "; <sub-folder> holds N CT slices: give that folder (phantom.ct_dir = ...)", else "" (journey
    audit 28, F6: the refusal listed the RT objects beside the sub-folder and not the sub-folder)."""
    from .dicom_common import dicom_kind, read_dicom_header

    try:
        subs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    except OSError:
        return ""
    found = []
    for d in subs[:_SUBFOLDERS_LOOKED_AT]:
        n = 0
        try:
            files = sorted(f for f in d.iterdir() if f.is_file() and not f.name.startswith("."))
        except OSError:
            continue
        for f in files[:_FILES_LOOKED_AT]:
            try:
                ds = read_dicom_header(f, specific_tags=["SOPClassUID", "Modality"])
            except Exception:  # noqa: BLE001 - a damaged file: not counted here (the folder's own read says why)
                continue
            n += ds is not None and dicom_kind(ds)[0] == "CT"
        if n:
            found.append((d, n))
    if not found:
        return ""
    listed = "; ".join(f"{d} holds {n} CT slice{'s' if n != 1 else ''}" for d, n in found)
    return (f"; {listed}: give {'that folder' if len(found) == 1 else 'the CT series folder'} (phantom.ct_dir = "
            f"\"{found[0][0]}\" in a run's config, --ct in mcproton check)")


def _unfinished_series(folder: Path, listing: list[Path]) -> None:
    """Refuse the CT folder ``folder`` (its entries ``listing``) where it holds the hidden temporary folder
    (``.mcp-*.tmp``) that an mcproton CT series writer fills inside an existing folder
    (mcproton._io.atomic.atomic_write_folder) and leaves only when it is killed (SIGKILL, a power cut) before the
    series is in place: the slices beside it, if any, may be part of a series (review 2a of 2026-12-07, R2, R6).
    Other hidden entries are skipped, as before."""
    from .atomic import is_temporary_name

    left = sorted(f.name for f in listing if is_temporary_name(f.name) and f.is_dir() and not f.is_symlink())
    if not left:
        return
    n = sum(1 for f in listing if not f.name.startswith("."))
    held = f"beside {n} other file(s), which may be only part of a series" if n else "and no slice"
    raise _err(f"CT folder {folder} holds {', '.join(left)}, the temporary folder of an mcproton CT series writer that "
               f"was stopped (killed) before its series was whole, {held}: write the series again (the next "
               "mcproton phantom or demo into its --out removes that folder), or, if the slices there are the whole "
               "series, remove that hidden folder")


#: The largest Rows or Columns of a CT slice read: scanners reconstruct 512 x 512 (1024 x 1024, 2048 x 2048 in
#: high-resolution modes); 4096 leaves a factor 2 beyond these.  DICOM allows 65535: a slice of 16384 x 16384 claims
#: 0.5 GB, and a few such files (a Deflated one is a few MB on disk) exhaust the memory (the hostile-input audit, F4).
MAX_CT_ROWS_COLUMNS = 4096
#: The longest CT series read (mm, slices x spacing): a whole-body CT of the tallest patients is about 2 m long, and
#: CT couches scan about 2 m at most; 3 m leaves a margin.  Longer is a damaged or fabricated series (the audit's
#: 10^4 slices at 1 mm: a "10 m" CT of 5 GB).
MAX_CT_LENGTH_MM = 3000.0
#: The most a Deflated CT slice may inflate to (bytes): a slice of MAX_CT_ROWS_COLUMNS^2 32-bit pixels and 16 MB of
#: header.  The header pass inflates each file; beyond this it is refused before more is inflated.
MAX_CT_SLICE_INFLATED_BYTES = MAX_CT_ROWS_COLUMNS ** 2 * 4 + 16 * 2 ** 20
#: Memory of a CT's conversion to a geometry at its own resolution, bytes per CT voxel beyond the HU volume
#: (HUCalibration.to_geometry: the calibration bin, 1, the density, float32, 4, the out-of-field-of-view masks, 2).
#: Measured 2026-12-06 on a 512 x 512 x 150 CT (39 M voxels, int16): load_ct_series + to_geometry raised the peak
#: RSS by 8.2 B per voxel (2.6 of them the reading); the estimate gives 9.  The scale audit of 2026-12-07: with an
#: override ROI (the check's overrides on the CT's own voxels, then blocks) 7.06 GB peak on 839 M voxels, against
#: 2 + 7 bytes per voxel = 7.6 GB.
CT_GEOMETRY_BYTES_PER_VOXEL = 7
#: ... and its conversion into blocks of CT voxels (HUCalibration.to_geometry with blocks, slab by slab): per CT voxel
#: the calibration bin (1 byte) and the out-of-field-of-view mask or, after it, the External's masks on the CT's voxels
#: that the outside-External density is counted on (1 + 1); per block its material and density (5 bytes), twice while
#: the slabs' blocks are joined; and the slabs' float64 temporaries (CT_BLOCKS_SLAB_BYTES_PER_VOXEL per voxel of a slab
#: of hu_calibration.CT_SLAB_VOXELS: 0.24 GB).  Measured 2026-12-07 (tracemalloc, a 512 x 512 x 64 head CT and the
#: same 4 x longer): blocks of 2 x 2 x 2: 212 and 294 MB, of 2 x 2 x 1: 254 and 368 MB (about 1 byte per added CT voxel,
#: 5 per block and 0.22 GB); the estimate gives 294 / 458 and 316 / 542 MB.  The scale audit's 1024 x 1024 x 800 CT
#: (839 M voxels in blocks of 4 x 4 x 2) peaked at 3.83 GB in the whole check, its HU included (the estimate: 1.7 GB
#: of HU + 2.2 GB), where 2 + 7 bytes per voxel had refused it under 8 GB (F2).
CT_BLOCKS_BYTES_PER_VOXEL = 2
CT_BLOCKS_BYTES_PER_BLOCK = 10
CT_BLOCKS_SLAB_BYTES_PER_VOXEL = 60
#: ... and its conversion on the CT's own voxels first, then into blocks (a structure set's overrides or air outside
#: the External put in on the CT's own voxels: mcproton check and mcproton run with phantom.dose_voxel_mm): per CT
#: voxel the full-resolution geometry (bin 1, density 4) and one ROI mask at a time (1); per block the resampling's
#: float64 sums and its result (24); and the slabs' temporaries as above.  Measured 2026-12-07 (tracemalloc, without
#: the masks, the CTs above): blocks of 2 x 2 x 2: 268 and 577 MB, of 2 x 2 x 1: 315 and 774 MB (3.3 bytes per added
#: voxel, 23 per block, 0.17 GB); the estimate gives 391 / 844 and 441 / 1045 MB.  The scale audit's 839 M voxels with
#: an override ROI: 7.06 GB peak in the whole check, the HU included (the estimate: 1.7 + 5.9 GB).
CT_FULL_BLOCKS_BYTES_PER_VOXEL = 6
CT_FULL_BLOCKS_BYTES_PER_BLOCK = 24


def _read(path: Path, *, pixels: bool):
    """The data set of ``path`` (None if the file is not DICOM at all); a DICOM file that ends early or
    cannot be parsed is an error, never skipped: a CT that silently loses a slice gives a wrong range.  The
    header pass checks the structure of the whole file (a Deflated one inflating to more than a CT slice can hold,
    :data:`MAX_CT_SLICE_INFLATED_BYTES`, refused); the pixel pass reads a file already checked."""
    from .dicom_common import read_dicom_file

    try:
        return read_dicom_file(path, stop_before_pixels=not pixels, check=not pixels,
                               max_inflated_bytes=MAX_CT_SLICE_INFLATED_BYTES,
                               inflated_what=f"more than a CT slice of {MAX_CT_ROWS_COLUMNS} x {MAX_CT_ROWS_COLUMNS} "
                               "32-bit pixels holds")
    except DicomInputError as exc:
        if is_gzip(path):   # not DICOM as it is: named (refused if named like the slices) by _not_dicom_files
            return None
        raise _err(f"{exc}; in a CT folder every DICOM file must be complete: re-export the series") from None


#: Files read at once by load_ct_series (threads): reading waits on the disk (pydicom's parsing holds the
#: GIL, so the CPU time does not shrink); measured on the DCPT head CT (177 slices) on a loaded 2-core VM:
#: 4.7-5.2 s read one by one, 1.9-3.1 s with 4 threads, the same 0.7 s CPU.
_READ_THREADS = 4


def _read_many(files: list[Path], *, pixels: bool):
    """(file, data set) of ``files`` in their order, read by a few threads a bounded window ahead (so that a
    long series is never all in memory at once); the first error in file order is raised, as one by one."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(_READ_THREADS, thread_name_prefix="mcproton-ct") as pool:
        window: deque = deque()
        it = iter(files)
        try:
            for f in it:
                window.append((f, pool.submit(_read, f, pixels=pixels)))
                if len(window) >= 2 * _READ_THREADS:
                    f0, fut = window.popleft()
                    yield f0, fut.result()
            while window:
                f0, fut = window.popleft()
                yield f0, fut.result()
        finally:
            for _, fut in window:
                fut.cancel()


#: The attributes of a CT slice that say how it was acquired and reconstructed, which its HU depend on (bone's CT
#: number rises at a lower tube voltage; kernels differ in the HU of small, dense structures): :func:`ct_acquisition`
CT_ACQUISITION_TAGS = ("KVP", "Manufacturer", "ManufacturerModelName", "ConvolutionKernel")


def ct_acquisition(ds) -> dict:
    """{"KVP" (float, None where absent or not a number), "Manufacturer", "ManufacturerModelName",
    "ConvolutionKernel" (its values joined by "\\"; "" where absent)} of a CT slice's data set: what a run's and a
    check's provenance record of the CT a HU calibration was applied to (ctcal audit 2026-12-07, F6: an 80 kVp
    paediatric scan read with a 120 kVp curve left no trace).  Its KVP is compared with the tube voltage a calibration
    states (:mod:`mcproton._io.calibration_kvp`: warned of where they differ, since the kvp audit of 2026-12-08); the
    scanner and kernel are recorded only."""
    kvp, not_used = _tube_voltage(ds.get("KVP", None))
    return {"KVP": kvp, **{k: _text_values(ds.get(k, None)).strip() for k in CT_ACQUISITION_TAGS[1:]},
            **({"KVP_not_used": not_used} if not_used else {})}


def _tube_voltage(v: Any) -> tuple[float | None, str]:
    """(a KVP (0018,0060) value as a tube voltage in kV, or None; why a value given was not taken as one, "" where
    none was given or it was): two values ("80\\140", a dual-energy series) or one outside
    :data:`~mcproton._io.calibration_kvp.KVP_RANGE_KV` (0, -120, 1e5: a synthetic or converted map) are no one tube
    voltage, and are not compared with a calibration's (review a of audit 33, R4: 0 was "CT at 0 kVp", and "80\\140"
    unknown without a word)."""
    from .calibration_kvp import KVP_RANGE_KV

    if v is None or (isinstance(v, str) and not v.strip()):
        return None, ""
    raw = _text_values(v)
    if isinstance(v, (list, MultiValue)):
        if len(v) != 1:
            return None, (f"KVP {raw!r} has {len(v)} values (a dual-energy series?): no one tube voltage, so it is "
                          "not compared with the HU calibration's") if len(v) else ""
        v = v[0]
    try:
        kvp = float(v)
    except (TypeError, ValueError):
        return None, f"KVP {raw!r} is not a number: the tube voltage is taken as not given"
    if not (np.isfinite(kvp) and KVP_RANGE_KV[0] <= kvp <= KVP_RANGE_KV[1]):
        return None, (f"KVP {raw!r} is not a tube voltage in {KVP_RANGE_KV[0]:g}-{KVP_RANGE_KV[1]:g} kVp: taken as "
                      "not given, not compared with the HU calibration's")
    return kvp, ""


def slices_kvp(acquisition: dict, datasets: Sequence[Any], where: str) -> dict:
    """``acquisition`` (:func:`ct_acquisition` of the first slice) with the tube voltages of all ``datasets`` (the
    series' slices): where they differ by more than the kVp tolerance, "KVP_values" (each distinct one, kV), compared
    each with a calibration's, and a warning naming them (review a of audit 33, R4: only the first slice's was
    compared, so 3 slices of 4 at 80 kVp passed as 120); a first slice's KVP that is none is warned of, and where the
    other slices state one tube voltage, "KVP" is theirs (review c of audit 33, R2)."""
    from .calibration_kvp import KVP_MATCH_TOLERANCE_KV

    counts: dict[float, int] = {}
    for ds in datasets:
        kvp = _tube_voltage(ds.get("KVP", None))[0]
        if kvp is not None:
            near = next((k for k in counts if abs(k - kvp) <= KVP_MATCH_TOLERANCE_KV), kvp)
            counts[near] = counts.get(near, 0) + 1
    if acquisition.get("KVP") is None and len(counts) == 1:
        # review c of audit 33, R2: a first slice without a usable KVP (emptied by an anonymiser, 0, 80\140) left the
        # other slices' one tube voltage uncompared, and an 80 kVp CT passed a 120 kVp curve without a word
        (kvp, n), others = next(iter(counts.items())), len(datasets) - 1
        why = acquisition.get("KVP_not_used") or "KVP is not given"
        warn(f"{where}: the first slice's {why}; {'the other' if n == others else f'{n} of the other'} {others} "
             f"slice{'s' if others != 1 else ''} state {kvp:g} kVp, and that is the tube voltage compared with the HU "
             "calibration's", McprotonWarning)
        return {**acquisition, "KVP": kvp}
    if acquisition.get("KVP_not_used"):
        warn(f"{where}: the first slice's {acquisition['KVP_not_used']}", McprotonWarning)
    if len(counts) < 2:
        return acquisition
    said = " and ".join(f"{k:g} kVp ({n} slice{'s' if n != 1 else ''})" for k, n in sorted(counts.items()))
    warn(f"{where}: the CT's slices state different tube voltages (KVP), {said}: one series is one protocol, so "
         "this is more than one scan, or a series put together; each tube voltage is compared with the HU "
         "calibration's, and a HU calibration fits one protocol: check that this is the planning CT", McprotonWarning)
    return {**acquisition, "KVP_values": sorted(counts)}


def _text_values(v) -> str:
    """A (multi-valued) text attribute's values joined by "\\" as DICOM stores them ("" if absent)."""
    if v is None:
        return ""
    return "\\".join(str(x) for x in v) if isinstance(v, (list, MultiValue)) else str(v)


def is_localizer(datasets) -> bool:
    """True for a localizer series (scout, topogram, scanogram): every image's ImageType (0008,0008) names
    LOCALIZER, as Siemens, GE, Philips and Canon write it (PS3.3 C.8.2.1.1.1).  Such a series is a projection
    image beside the axial CT, never the CT a plan was made on."""
    return bool(datasets) and all(
        "LOCALIZER" in [v.strip().upper() for v in _text_values(ds.get("ImageType", None)).split("\\")]
        for ds in datasets)


def describe_series(series: dict[str, list]) -> str:
    """"UID (N slices, 'description'[, localizer])" for each series of {uid: [(file, dataset), ...]}."""
    out = []
    for uid, v in series.items():
        ds = v[0][1]
        extra = ", localizer" if is_localizer([d for _, d in v]) else ""
        out.append(f"{uid} ({len(v)} slice{'s' if len(v) != 1 else ''}, "
                   f"{str(ds.get('SeriesDescription', '') or '')!r}{extra})")
    return "; ".join(out)


def _slice_like(name: str) -> bool:
    """Whether a file named ``name`` may be a slice by its name: no suffix, .dcm, .dicom, .ima or a numeric one (a
    UID), as CT exports and storage servers name slices (``mcproton check`` looks at the same files in a folder:
    :func:`~mcproton._io.dicom_common.may_be_dicom`)."""
    from .dicom_common import named_like_dicom

    return named_like_dicom(name)


def _not_dicom_files(files: list[Path], slices: list, folder) -> None:
    """The files of a CT folder that are not DICOM: refused where one is named like the series' slices (the same
    name with its digits taken out: IM0000 beside IM0001 .. IM0176), warned about where it only may be a slice (no
    suffix, .dicom or a numeric one; .dcm is refused; other files, e.g. notes.txt or an output.h5, are not named).

    Why refused: a slice file that is empty or not DICOM is a damaged export (an interrupted copy, a full disk).
    Skipped at either end of the series it leaves the CT shorter with no gap to be seen (the spacing check finds
    only a missing slice between two others), so the patient's end is cut off where the beam may enter or stop.
    Other files that are not DICOM are named in a warning (an empty or odd file beside the slices is worth a look)
    and skipped: a folder may hold a VERSION or LOCKFILE of the exporting system."""
    import re

    if not files:
        return

    def shape(name: str) -> str:
        return re.sub(r"\d+", "#", name)

    def listing(fs: list[Path]) -> str:   # "IM0000 (0 bytes), IM0177 (0 bytes)"
        sizes = [f.stat().st_size for f in fs[:6]]
        return ", ".join(f"{f.name} ({n} byte{'s' if n != 1 else ''}{', gzip-compressed' if is_gzip(f) else ''})"
                         for f, n in zip(fs, sizes)) + (
            f" and {len(fs) - 6} more" if len(fs) > 6 else "")

    shapes = {shape(f.name) for f, _ in slices}
    like = [f for f in files if re.search(r"\d", f.name) and shape(f.name) in shapes]
    if like:
        raise _err(f"{len(like)} file(s) in {folder} named like the CT slices ({slices[0][0].name}, ...) are not "
                   f"DICOM: {listing(like)}; an empty or damaged slice (an interrupted copy, a full disk) would leave "
                   "the CT shorter without a gap to be seen: copy or export the series again, or remove the file(s) if "
                   "they are not slices")
    maybe = [f for f in files if _slice_like(f.name)]
    if maybe:
        warn(f"{folder}: skipped {len(maybe)} file(s) that are not DICOM: {listing(maybe)}", McprotonWarning,
             stacklevel=4)


def _sop_class_name(sop: str) -> str:
    """A SOP class UID as a message names it: "MR Image Storage objects (SOP class 1.2.840.10008.5.1.4.1.1.4)", or
    "objects of SOP class UID" where pydicom does not know it, "objects without a SOPClassUID" where there is none."""
    if not sop:
        return "objects without a SOPClassUID (0008,0016)"
    from pydicom.uid import UID

    name = UID(sop).name
    return f"{name} objects (SOP class {sop})" if name and name != sop else f"objects of SOP class {sop}"


def _refuse_multi_frame_slices(chosen: list) -> None:
    """Refuse a CT Image Storage object of the series read that holds more than one frame (NumberOfFrames
    (0028,0008) > 1): a classic CT image is one slice per file, and its one ImagePositionPatient cannot place the
    others.  Before (audit 27 encodings, F5) it was refused later, for its pixel array's shape, without saying why."""
    for f, ds in chosen:
        v = ds.get("NumberOfFrames", None)
        try:
            n = int(v) if v not in (None, "") else 1
        except (TypeError, ValueError):
            raise _err(f"{f}: NumberOfFrames (0028,0008) is {str(v)!r}, not a number: the file is damaged; export "
                       "the CT again") from None
        if n > 1:
            raise _err(f"{f}: a CT image holding {n} frames (NumberOfFrames (0028,0008) {n}: several slices in one "
                       "file), which a classic CT image does not (one slice per file, placed by its own "
                       "ImagePositionPatient); multi-frame CT is not supported: export the CT as classic single-frame "
                       "CT Image Storage slices (one file per slice)")


#: Transfer syntaxes whose compression is always lossy (PS3.5 A.4.1, PS3.6 Annex A): JPEG Baseline (Process 1) and
#: Extended (Process 2 & 4), both DCT-based
LOSSY_TRANSFER_SYNTAXES = {"1.2.840.10008.1.2.4.50": "JPEG Baseline", "1.2.840.10008.1.2.4.51": "JPEG Extended"}
#: Transfer syntaxes that allow lossless and lossy compression alike (PS3.5 A.4, PS3.6 Annex A): JPEG-LS
#: Near-Lossless (.81; lossless with NEAR 0), JPEG 2000 (.91, "JPEG 2000 Image Compression": the reversible 5/3
#: or the irreversible 9/7 wavelet; .90 is its lossless-only syntax), JPEG XL (.112) and HTJ2K (.203; .201 and .202
#: are lossless only).  An image in one of them was lossy-compressed where LossyImageCompression (0028,2110) says
#: "01", and not where it says "00" (PS3.3 C.7.6.1.1.5: once an image was lossy-compressed it stays "01", whatever it
#: is stored as afterwards); the syntax alone does not tell
MAY_BE_LOSSY_TRANSFER_SYNTAXES = {"1.2.840.10008.1.2.4.81": "JPEG-LS Near-Lossless",
                                  "1.2.840.10008.1.2.4.91": "JPEG 2000", "1.2.840.10008.1.2.4.112": "JPEG XL",
                                  "1.2.840.10008.1.2.4.203": "HTJ2K"}


def _lossy_said(ds) -> str:
    """What LossyImageCompression (0028,2110) of ``ds`` says, for a message: "'01'", "'00'" or "absent"."""
    v = str(ds.get("LossyImageCompression", "") or "").strip()
    return repr(v) if v else "absent"


def _warn_lossy(chosen: list, folder) -> None:
    """Warn when slices of the series read were lossy-compressed: LossyImageCompression (0028,2110) "01" (it stays
    "01" once an image was, whatever it is stored as now), or an always-lossy transfer syntax
    (:data:`LOSSY_TRANSFER_SYNTAXES`); a transfer syntax that may be lossless or lossy
    (:data:`MAY_BE_LOSSY_TRANSFER_SYNTAXES`, JPEG 2000 among them) is warned about only where the file does not say
    (LossyImageCompression absent: "may have been lossy-compressed"), and not where it says "00" (before, audit 27
    encodings F2, every JPEG 2000 slice was called lossy-compressed, and the message always quoted '01').  Their CT
    numbers are not the scanner's (the pacs audit, F7: an archive's JPEG 2000 at ratio 10 moved the HU of the body by
    11 HU on average and up to 184 HU), and a CT for a dose calculation should be the original; the warnings are kept
    in the run's and the check's warnings, and quote what the first such slice says."""
    lossy, maybe = [], []
    for _, ds in chosen:
        meta = getattr(ds, "file_meta", None)
        ts = str(meta.get("TransferSyntaxUID", "") or "") if meta is not None else ""
        said = str(ds.get("LossyImageCompression", "") or "").strip()
        if said == "01" or ts in LOSSY_TRANSFER_SYNTAXES:
            lossy.append((ds, ts))
        elif ts in MAY_BE_LOSSY_TRANSFER_SYNTAXES and said != "00":
            maybe.append((ds, ts))
    remedy = ("their CT numbers differ from the scanner's, and so may the stopping powers and ranges computed from "
              "them; use the original CT series (ask the archive for it uncompressed or losslessly compressed)")
    if lossy:
        ds, ts = lossy[0]
        ratio = _text_values(ds.get("LossyImageCompressionRatio", None))
        method = _text_values(ds.get("LossyImageCompressionMethod", None))
        syntax = (f"transfer syntax {LOSSY_TRANSFER_SYNTAXES[ts]}, always lossy" if ts in LOSSY_TRANSFER_SYNTAXES
                  else f"transfer syntax {MAY_BE_LOSSY_TRANSFER_SYNTAXES[ts]}" if ts in MAY_BE_LOSSY_TRANSFER_SYNTAXES
                  else "")
        how = ", ".join(x for x in (f"ratio {ratio}" if ratio else "", f"method {method}" if method else "", syntax)
                        if x)
        how = f"LossyImageCompression (0028,2110) {_lossy_said(ds)}" + (f"; {how}" if how else "")
        warn(f"{folder}: {len(lossy)} of the {len(chosen)} CT slices were lossy-compressed ({how}): {remedy}",
             McprotonWarning, stacklevel=3)
    if maybe:
        ds, ts = maybe[0]
        name = MAY_BE_LOSSY_TRANSFER_SYNTAXES[ts]
        warn(f"{folder}: {len(maybe)} of the {len(chosen)} CT slices may have been lossy-compressed (transfer syntax "
             f"{name}, {ts}, which allows lossless and lossy compression, and LossyImageCompression (0028,2110) "
             f"{_lossy_said(ds)}, so the file does not say which): if they were, {remedy}; if the archive compressed "
             "them losslessly, the CT numbers are the scanner's (ask it, or have it set LossyImageCompression)",
             McprotonWarning, stacklevel=3)


def _warn_assumed_charset(chosen: list, folder) -> None:
    """One warning for the slices of the series read with an assumed character set (no SpecificCharacterSet, text
    bytes above 0x7F: :func:`~mcproton._io.dicom_common.assume_input_charset`, applied as each file was read), naming
    the slices, the attributes and what was assumed, instead of one per slice."""
    from .dicom_common import NO_CHARSET_SAID, assume_input_charset
    from .errors import said_already

    notes: dict[str, list[str]] = {}
    for f, ds in chosen:
        note = assume_input_charset(ds, f, say=False)
        if note:
            notes.setdefault(note, []).append(Path(f).name)
    for note, names in notes.items():
        shown = _few(names)
        said = f"{folder}: {len(names)} of the {len(chosen)} CT slices ({shown}) have {NO_CHARSET_SAID}, but their " \
            f"{note}"
        if not said_already(said):   # once in a run or check that reads the CT twice
            warn(f"{said}; the outputs declare the character set they are written in: check the names in them "
                 "against the planning system, and have the exporting system declare its SpecificCharacterSet",
                 McprotonWarning, stacklevel=3)


def _image_folders(root: Path, n: int = 4) -> str:
    """The first ``n`` folders under ``root`` that hold files, relative to it (the series folders of a media export:
    PT000000/ST000000/SE000000)."""
    import os

    out: list[str] = []
    for d, subs, names in os.walk(root):
        subs.sort()
        if Path(d) != root and any(not nm.startswith(".") for nm in names):
            out.append(str(Path(d).relative_to(root)))
            if len(out) >= n:
                return ", ".join(out) + " ..."
    return ", ".join(out) or "none found"


def _few(names: Sequence[str]) -> str:
    """The first three of ``names``, and " ..." where there are more: the files a warning names."""
    return ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")


def _series_size(n_slices: int, rows: int, cols: int, dz: float) -> str:
    """"N slices of R x C = V voxels, L m long": a series' size in a message."""
    n = n_slices * rows * cols
    vox = f"{n / 1e9:.1f} G" if n >= 1e9 else f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n}"
    return f"{n_slices} slices of {rows} x {cols} = {vox} voxels, {n_slices * dz / 1e3:.2f} m long"


def ct_memory_estimate(chosen: list, rows: int, cols: int) -> float:
    """Bytes of memory that reading the series ``chosen`` ((file, header) per slice) needs at the peak, from the
    headers alone: the HU volume (int16, or float32 where a RescaleSlope or RescaleIntercept is not an integer) and
    the slices in flight in the reader (each file's bytes and its decoded pixels, :data:`_READ_THREADS` x 2 + 1 of
    them, and one slice rescaled in 64 bits and flipped).  The conversion to densities is the caller's, whose form
    (blocks or the CT's own voxels, over which slices) only it knows (:func:`conversion_memory_estimate`; before
    2026-12-07 the CT's own resolution was counted here for every caller, which refused a CT that the check converts in
    blocks: the scale audit's F2)."""
    def integer(v) -> bool:
        try:
            return float(v) == int(float(v))
        except (TypeError, ValueError, OverflowError):
            return True   # refused when the pixels are read
    integral = all(integer(ds.get("RescaleSlope", 1)) and integer(ds.get("RescaleIntercept", 0)) for _, ds in chosen)
    try:
        stored = max(1, int(chosen[0][1].get("BitsAllocated", 16) or 16) // 8)
    except (TypeError, ValueError):
        stored = 2
    per_slice = rows * cols
    return (len(chosen) * per_slice * (2 if integral else 4)
            + (2 * _READ_THREADS + 1) * per_slice * 2 * stored + per_slice * 16)


def conversion_memory_estimate(shape_zyx: Sequence[int], blocks: Sequence[int] = (1, 1, 1), *,
                               full_resolution: bool = False) -> float:
    """Bytes of memory beyond the HU volume that converting CT voxels of ``shape_zyx`` (the slices converted) to a
    transport geometry needs at the peak: at the CT's own resolution (``blocks`` (1, 1, 1))
    :data:`CT_GEOMETRY_BYTES_PER_VOXEL` per voxel; in blocks :data:`CT_BLOCKS_BYTES_PER_VOXEL` and
    :data:`CT_BLOCKS_BYTES_PER_BLOCK`, or with ``full_resolution`` (a structure set's overrides or air outside the
    External put in on the CT's own voxels before the blocks are formed) :data:`CT_FULL_BLOCKS_BYTES_PER_VOXEL` and
    :data:`CT_FULL_BLOCKS_BYTES_PER_BLOCK`, with the slabs' temporaries (:data:`CT_BLOCKS_SLAB_BYTES_PER_VOXEL`)."""
    from ..geometry import block_factors
    from .hu_calibration import CT_SLAB_VOXELS

    nz, ny, nx = (int(v) for v in shape_zyx)
    fx, fy, fz = block_factors(blocks)
    n = nz * ny * nx
    if (fx, fy, fz) == (1, 1, 1):
        return float(n * CT_GEOMETRY_BYTES_PER_VOXEL)
    n_blocks = -(-nz // fz) * -(-ny // fy) * -(-nx // fx)
    slabs = min(n, CT_SLAB_VOXELS) * CT_BLOCKS_SLAB_BYTES_PER_VOXEL
    if full_resolution:
        return float(n * CT_FULL_BLOCKS_BYTES_PER_VOXEL + n_blocks * CT_FULL_BLOCKS_BYTES_PER_BLOCK + slabs)
    return float(n * CT_BLOCKS_BYTES_PER_VOXEL + n_blocks * CT_BLOCKS_BYTES_PER_BLOCK + slabs)


@dataclass(frozen=True)
class CTGrid:
    """A CT series' grid from its headers alone (before its pixels are read): what :func:`load_ct_series`'s
    ``conversion`` is given.  ``origin_mm``, ``voxel_size_mm`` and ``shape_zyx`` are those of the
    :class:`CTImage` it then returns."""

    shape_zyx: tuple[int, int, int]
    voxel_size_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]


#: what to do about a CT too large for the memory
_CT_MEMORY_FIX = ("free memory or use a machine with more (or ask the batch system for more), or resample the CT to "
                  "fewer slices or coarser pixels first")


def _check_size(chosen: list, rows: int, cols: int, dz: float, folder,
                conversion: tuple[float, str, str] | None = None) -> None:
    """Before any pixel is read: refuse a series longer than :data:`MAX_CT_LENGTH_MM`, and one whose reading
    (:func:`ct_memory_estimate`), with the caller's ``conversion`` (bytes, what it is, what else to do), needs more
    memory than this process may allocate (mcproton/_run/inputs.py check_memory_for, the dose grid's check).
    Before, the CT was read first: 10^4 slices of 512 x 512 took 5 GB and a minute before running out of memory
    (the hostile-input audit, F4)."""
    from .._run.inputs import check_memory_for
    from .errors import McprotonEnvironmentError

    size = _series_size(len(chosen), rows, cols, dz)
    if len(chosen) * dz > MAX_CT_LENGTH_MM:
        raise _err(f"the CT series in {folder} is {len(chosen) * dz / 1e3:.2f} m long ({size}); a CT longer than "
                   f"{MAX_CT_LENGTH_MM / 1e3:g} m is no patient's (a whole-body CT is about 2 m): the series is "
                   "damaged or mixes slices of several scans (ImagePositionPatient, the slice spacing); export it "
                   "again")
    read = ct_memory_estimate(chosen, rows, cols)
    if conversion is None:
        check_memory_for(read, f"the CT series in {folder} ({size}) needs about {read / 1e9:.1f} GB of memory to be "
                         "read", _CT_MEMORY_FIX, McprotonEnvironmentError)
        return
    more, what, fix = conversion
    need = read + more
    check_memory_for(need, f"the CT series in {folder} ({size}) needs about {need / 1e9:.1f} GB of memory to be read "
                     f"({read / 1e9:.1f} GB) and converted to {what} ({more / 1e9:.1f} GB)",
                     _CT_MEMORY_FIX + (f"; {fix}" if fix else ""), McprotonEnvironmentError)


def check_conversion_memory(ct: CTImage, conversion: Callable[[CTGrid], tuple[float, str, str] | None],
                            folder: str | Path) -> None:
    """The memory check of :func:`load_ct_series`'s ``conversion`` for a CT already in memory (its pixels are not
    read: the phantom of ``mcproton check --phantom-from-struct``, :func:`write_ct_series_image`): ``conversion(grid)``
    is called with its grid, as the reader calls it, and a conversion that needs more memory than this process may
    allocate is refused (McprotonEnvironmentError), naming the series' ``folder``."""
    from .._run.inputs import check_memory_for
    from .errors import McprotonEnvironmentError

    got = conversion(CTGrid(ct.shape_zyx, ct.voxel_size_mm, ct.origin_mm))
    if got is None:
        return
    more, what, fix = got
    nz, ny, nx = ct.shape_zyx
    size = _series_size(nz, ny, nx, float(ct.voxel_size_mm[2]))
    check_memory_for(more, f"the CT series in {folder} ({size}) needs about {more / 1e9:.1f} GB of memory to be "
                     f"converted to {what}",
                     _CT_MEMORY_FIX + (f"; {fix}" if fix else ""), McprotonEnvironmentError)


def _out_of_memory(exc: MemoryError, chosen: list, rows: int, cols: int, dz: float, folder) -> MemoryError:
    """The MemoryError of the CT's pixel read, saying so and the series' size (the command line's general advice,
    coarser dose voxels, does not make the CT's read smaller)."""
    from .errors import PhaseMemoryError

    need = ct_memory_estimate(chosen, rows, cols)
    return PhaseMemoryError(f"out of memory while reading the pixels of the CT series in {folder} "
                            f"({_series_size(len(chosen), rows, cols, dz)}: about {need / 1e9:.1f} GB to read it; "
                            f"{type(exc).__name__}: {exc or 'no detail'}): {_CT_MEMORY_FIX}")


class _SeriesHeaders(NamedTuple):
    """What :func:`load_ct_series` knows of the series it reads before any pixel: its header pass."""
    chosen: list               # (file, header) per slice, sorted along the slice normal
    rows: int
    cols: int
    dz: float                  # the slice spacing (mm)
    pixel_spacing: np.ndarray  # PixelSpacing (row spacing, column spacing), mm
    normal: np.ndarray         # the slice normal (row x column direction cosines)
    sx: float                  # the signs of the row and column directions along x and y
    sy: float
    ipps_sorted: np.ndarray    # ImagePositionPatient of the slices in the order of ``chosen``
    positions: list[str]       # the PatientPosition(s) of the series (one, or none)

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        """The shape of the CT's HU array (z, y, x), as :func:`load_ct_series` makes it."""
        return len(self.chosen), self.rows, self.cols

    @property
    def voxel_size_mm(self) -> tuple[float, float, float]:
        """(dx, dy, dz) in mm, as :func:`load_ct_series` makes it."""
        return float(self.pixel_spacing[1]), float(self.pixel_spacing[0]), float(self.dz)


def _series_headers(folder: str | Path | Sequence[str | Path], series_uid: str | None) -> _SeriesHeaders:
    """The header pass of :func:`load_ct_series`, with its checks and warnings: the series it reads and its grid,
    before any pixel is read."""
    files, other = _list_folder(folder)
    if other:   # links named otherwise: skipped, and named
        warn(f"{folder}: skipped {len(other)} symbolic link(s) to files that do not exist: {links_listed(other)}",
             McprotonWarning, stacklevel=2)
    headers = []
    skipped_modalities: dict[str, int] = {}
    odd_modality: dict[str, list[str]] = {}
    odd_sop: dict[str, list[str]] = {}   # {SOP class: [file names]}: read as CT by their Modality
    not_dicom: list[Path] = []
    dicomdirs: list[Path] = []
    multi_frame: dict[str, list[tuple[Path, str]]] = {}   # {series: [(file, what)]}: not read
    captures: list[Path] = []   # Secondary Capture images: not read
    for f, ds in _read_many(files, pixels=False):
        if ds is None:
            if f.suffix.lower() == ".dcm":
                raise _err(f"{f}: not a valid DICOM file (no DICOM preamble/header); remove it or re-export")
            not_dicom.append(f)
            continue
        if is_dicomdir(f, ds):   # the index of a media export, not an image (the pacs audit, F3: "damaged file?")
            dicomdirs.append(f)
            continue
        sop = str(ds.get("SOPClassUID", ""))
        modality = str(ds.get("Modality", "")).upper()
        if not sop and not modality:
            raise _err(f"{f}: a DICOM file with neither SOPClassUID (0008,0016) nor Modality (0008,0060): it cannot be "
                       "told whether it is a CT slice (a damaged file?); remove it from the folder or re-export the "
                       "series")
        if sop in SECONDARY_CAPTURE:   # a screenshot (a dose report) that says Modality CT: not a slice (pacs F8)
            captures.append(f)
            skipped_modalities[SECONDARY_CAPTURE[sop]] = skipped_modalities.get(SECONDARY_CAPTURE[sop], 0) + 1
            continue
        if sop in MULTI_FRAME_CT:   # a series of its own, refused only where it is the one chosen (F4)
            multi_frame.setdefault(str(ds.get("SeriesInstanceUID", "") or ""), []).append((f, MULTI_FRAME_CT[sop]))
            continue
        kind = dicom_kind(ds)[0]
        if kind != "CT":   # by SOP class first: an RT Dose that says Modality CT is not a slice
            key = kind or sop or "unknown"
            skipped_modalities[key] = skipped_modalities.get(key, 0) + 1
            continue
        if modality != "CT":   # a CT Image Storage object: its IOD is a CT image whatever the Modality says
            odd_modality.setdefault(modality or "(none)", []).append(f.name)
        elif sop != CT_IMAGE_STORAGE:   # read as CT by its Modality: say so, as the reverse is said (audit 27, F6)
            odd_sop.setdefault(sop, []).append(f.name)
        if not str(ds.get("SeriesInstanceUID", "") or "").strip():
            # Type 1 in every image; a file cut between two elements before it reads as a complete shorter file
            raise _err(f"{f}: a CT slice without SeriesInstanceUID (0020,000E), which every image must have: the file "
                       "is truncated (cut between two elements) or damaged; re-export the series")
        headers.append((f, ds))
    for mod, names in odd_modality.items():
        shown = _few(names)
        warn(f"{len(names)} CT slice(s) in {folder} ({shown}) say Modality {mod!r} but are CT Image Storage "
             "objects: read as CT slices by their SOP class", McprotonWarning, stacklevel=2)
    for sop, names in odd_sop.items():
        shown = _few(names)
        warn(f"{len(names)} image(s) in {folder} ({shown}) say Modality 'CT' but are "
             f"{_sop_class_name(sop)}, not CT Image Storage ({CT_IMAGE_STORAGE}): read as CT slices by their "
             "Modality; another modality's pixel values are not CT numbers (HU), even under a rescale: make sure this "
             "is the CT series the plan was made on, exported as CT Image Storage", McprotonWarning, stacklevel=2)
    for f in dicomdirs:
        warn(f"{f}: a DICOMDIR (the index of a media export), not a CT slice: skipped", McprotonWarning, stacklevel=2)
    if captures and headers:
        shown = _few([f.name for f in captures])
        warn(f"{folder}: {len(captures)} Secondary Capture image(s) ({shown}; a screenshot such as a scanner's dose "
             "report, whatever Modality it states), not CT slices: skipped", McprotonWarning, stacklevel=2)

    def refuse_multi_frame(uid: str) -> DicomInputError:
        f, what = multi_frame[uid][0]
        return _err(f"{f}: {what} (multi-frame: the whole series in one file) is not supported; export the CT as "
                    "classic single-frame CT Image Storage slices (one file per slice)")
    if series_uid is not None and series_uid in multi_frame and not any(
            str(ds.get("SeriesInstanceUID", "")) == series_uid for _, ds in headers):
        raise refuse_multi_frame(series_uid)
    if not headers and multi_frame:
        raise refuse_multi_frame(next(iter(multi_frame)))
    for uid, v in multi_frame.items():
        warn(f"{folder}: skipped {v[0][1]} series {uid} ({len(v)} file(s), {v[0][0].name}): multi-frame CT is not "
             "read; the classic slice series beside it is", McprotonWarning, stacklevel=2)
    if not headers:
        found = ", ".join(f"{k} x{v}" for k, v in skipped_modalities.items()) or "none"
        if dicomdirs:
            raise _err(f"{folder} holds a DICOMDIR (a media export) and no CT slices: the slices lie in its "
                       f"sub-folders ({_image_folders(Path(dicomdirs[0]).parent)}); give the folder of the CT "
                       "series (mcproton check searches the sub-folders of a patient folder)")
        raise _err(f"no CT image slices found in {folder} (other DICOM objects: {found}; non-DICOM files: "
                   f"{len(not_dicom)}); give the folder of a CT series (Modality CT)"
                   + (_ct_subfolders(Path(folder)) if isinstance(folder, (str, Path)) else ""))

    series: dict[str, list] = {}
    for f, ds in headers:
        series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((f, ds))
    if series_uid is not None:
        if series_uid not in series:
            raise _err(f"CT series {series_uid} is not in {folder}; the CT series there: "
                       f"{describe_series(series)}")
        chosen = series[series_uid]
    else:
        scouts = {uid: v for uid, v in series.items() if is_localizer([ds for _, ds in v])}
        axial = {uid: v for uid, v in series.items() if uid not in scouts}
        if not axial:
            raise _err(f"the folder {folder} holds only localizer series (scout/topogram, ImageType LOCALIZER): "
                       f"{describe_series(series)}; a localizer is a projection image, not the axial CT a dose is "
                       "computed on: give the folder of the axial CT series")
        if len(axial) > 1:
            raise _err(f"the folder {folder} holds {len(series)} CT series: {describe_series(series)}; choose one "
                       f"by its SeriesInstanceUID (phantom.ct_series in a run's config, --ct-series in mcproton "
                       f"check, series_uid= in Python), or put each series in a folder of its own")
        for uid, v in scouts.items():
            warn(f"{folder}: skipped CT series {uid} ({len(v)} image(s), "
                 f"{str(v[0][1].get('SeriesDescription', '') or '')!r}): a localizer (scout/topogram; "
                 "ImageType LOCALIZER), not an axial series", McprotonWarning, stacklevel=2)
        chosen = next(iter(axial.values()))
    _refuse_multi_frame_slices(chosen)
    _not_dicom_files(not_dicom, chosen, folder)
    _warn_lossy(chosen, folder)
    _warn_assumed_charset(chosen, folder)

    # --- frame of reference: one per series; warn when there is none ---
    fors = {str(ds.get("FrameOfReferenceUID", "") or "") for _, ds in chosen}
    if len(fors) > 1:
        raise _err(f"the slices of CT series {chosen[0][1].get('SeriesInstanceUID', '')} carry {len(fors)} "
                   f"different FrameOfReferenceUIDs (0020,0052) {sorted(fors)}; a series has one: the series is "
                   "mixed or damaged, re-export it")
    if fors == {""}:
        warn(f"the CT series in {folder} has no FrameOfReferenceUID (0020,0052) (Type 1 in a CT image); "
             "the plan's and the structure set's frame of reference cannot be checked against it, and an "
             "RT Dose written for it carries a new, unrelated UID that a planning system will not register "
             "with this CT", McprotonWarning)

    # --- patient position: one per series (the plan's set-up is checked against it) ---
    positions = sorted({str(ds.get("PatientPosition", "") or "").strip().upper() for _, ds in chosen} - {""})
    if len(positions) > 1:
        raise _err(f"the slices of CT series {chosen[0][1].get('SeriesInstanceUID', '')} give {len(positions)} "
                   f"different PatientPositions (0018,5100) {positions}; a patient lies one way during a scan: the "
                   "series is mixed or damaged, re-export it")
    # --- patient: one per series (audit 24, identity F8: a slice of another PatientID was computed on silently,
    # and the first slice's patient named the RT Dose's) ---
    from .patients import PatientIdentity, series_patients

    mixed = series_patients([(f.name, PatientIdentity.of(ds)) for f, ds in chosen])
    if mixed:
        raise _err(f"{folder}: {mixed}")

    # --- geometry checks on the headers ---
    f0, ds0 = chosen[0]
    iop = _floats(ds0, "ImageOrientationPatient", 6, str(f0))
    row, col = iop[:3], iop[3:]
    for f, ds in chosen[1:]:
        o = _floats(ds, "ImageOrientationPatient", 6, str(f))
        if np.max(np.abs(o - iop)) > _ORIENT_TOL:
            raise _err(f"{f}: ImageOrientationPatient {o.tolist()} differs from {iop.tolist()} of {f0}; "
                       "all slices of a series must share one orientation")
    if (np.max(np.abs(np.abs(row) - [1, 0, 0])) > _ORIENT_TOL
            or np.max(np.abs(np.abs(col) - [0, 1, 0])) > _ORIENT_TOL):
        normal = np.cross(row, col)
        if abs(abs(float(normal[2])) - 1.0) <= _ORIENT_TOL:   # axial, turned in its plane (decubitus as scanned)
            turn = float(np.degrees(np.arctan2(row[1], row[0])))
            wanted = ("mcproton reads axial slices whose rows run along x and columns along y ([1, 0, 0, 0, 1, 0], "
                      "or flipped: [-1, 0, 0, 0, -1, 0], [-1, 0, 0, 0, 1, 0], [1, 0, 0, 0, -1, 0])")
            if abs(abs(row[1]) - 1.0) <= _ORIENT_TOL:   # a right-angle turn: a lossless transpose of each image
                raise _err(f"ImageOrientationPatient {iop.tolist()} is axial (slices across z), but its rows run "
                           "along y and its columns along x, as a scanner writes a decubitus (HFDL, HFDR...) series; "
                           f"{wanted}: rotate the slices in their plane to one of these (a transpose or a turn of "
                           "each image, with ImageOrientationPatient and ImagePositionPatient rewritten) first; no "
                           "reformat is needed")
            # any other angle (audit 26 "iecgeom" F1: a 0.5 deg turn was told "no reformat is needed"): no transpose
            # exists, and rewriting the tag alone would move the anatomy (2.2 mm at 250 mm for 0.5 deg)
            raise _err(f"ImageOrientationPatient {iop.tolist()} is axial (slices across z), but its rows run at "
                       f"{turn:g} deg to x; {wanted}: resample (interpolate) each slice onto an unrotated grid "
                       "([1, 0, 0, 0, 1, 0]) in the planning system or an image tool first; rewriting "
                       "ImageOrientationPatient alone would move the anatomy")
        raise _err(f"ImageOrientationPatient {iop.tolist()} is not axial (rows along x, columns along y); "
                   "oblique, sagittal and coronal series are not supported: reformat to axial slices")
    sx, sy = float(np.sign(row[0])), float(np.sign(col[1]))
    for f, ds in chosen:
        tilt = ds.get("GantryDetectorTilt", None)
        try:
            tilt_v = float(tilt) if tilt not in (None, "") else 0.0
        except (TypeError, ValueError):
            tilt_v = 0.0
        if abs(tilt_v) > 1e-3:
            raise _err(f"{f}: GantryDetectorTilt = {tilt_v} deg; tilted-gantry CT is not supported: "
                       "resample the series to an untilted grid")

    ps0 = _floats(ds0, "PixelSpacing", 2, str(f0))
    rows0, cols0 = int(ds0.get("Rows", 0) or 0), int(ds0.get("Columns", 0) or 0)
    if rows0 <= 0 or cols0 <= 0:
        raise _err(f"{f0}: Rows/Columns missing or zero ({rows0} x {cols0})")
    if max(rows0, cols0) > MAX_CT_ROWS_COLUMNS:
        raise _err(f"{f0}: a CT slice of {rows0} x {cols0} pixels (Rows x Columns); CT scanners reconstruct 512 x 512 "
                   f"to 2048 x 2048, and more than {MAX_CT_ROWS_COLUMNS} is refused ({rows0 * cols0 * 2 / 1e9:.1f} GB "
                   "a slice): the header is damaged or the series is not a CT to compute a dose on; export it again, "
                   "or resample it to coarser pixels")
    if np.any(ps0 <= 0) or np.any(ps0 > 100):
        raise _err(f"{f0}: PixelSpacing {ps0.tolist()} mm is not a plausible positive spacing")
    ipps = []
    for f, ds in chosen:
        if int(ds.get("Rows", 0) or 0) != rows0 or int(ds.get("Columns", 0) or 0) != cols0:
            raise _err(f"{f}: slice size {ds.get('Rows')} x {ds.get('Columns')} differs from {rows0} x {cols0}")
        ps = _floats(ds, "PixelSpacing", 2, str(f))
        if np.max(np.abs(ps - ps0)) > 1e-4:
            raise _err(f"{f}: PixelSpacing {ps.tolist()} differs from {ps0.tolist()}; mixed in-plane spacing")
        ipps.append(_floats(ds, "ImagePositionPatient", 3, str(f)))
    ipps_a = np.array(ipps)
    normal = np.cross(row, col)
    s = ipps_a @ normal
    order = np.argsort(s, kind="stable")
    s_sorted = s[order]
    ipps_sorted = ipps_a[order]
    chosen = [chosen[i] for i in order]
    if len(chosen) >= 2:
        ds_ = np.diff(s_sorted)
        dup = np.where(ds_ < _SPACING_ATOL_MM)[0]
        if dup.size:
            i = int(dup[0])
            raise _err(f"duplicate slices at position {s_sorted[i]:.3f} mm along the slice normal: "
                       f"{chosen[i][0]} and {chosen[i + 1][0]}; remove the duplicate files")
        # in-plane drift of ImagePositionPatient between slices = gantry tilt (or a sheared grid)
        inplane = ipps_sorted - np.outer(s_sorted, normal)
        drift = np.max(np.linalg.norm(inplane - inplane[0], axis=1))
        if drift > 0.01 + 1e-3 * float(np.max(ps0)):
            raise _err(f"ImagePositionPatient moves {drift:.3f} mm in-plane across the slices (gantry tilt or "
                       "sheared grid); resample the series to an untilted grid")
        dz = float(np.median(ds_))
        bad = np.abs(ds_ - dz) > max(_SPACING_ATOL_MM, _SPACING_RTOL * dz)
        if np.any(bad):
            i = int(np.where(bad)[0][0])
            ratio = ds_[i] / dz
            if abs(ratio - round(ratio)) < 0.05 and round(ratio) >= 2:
                raise _err(f"missing slice(s): gap of {ds_[i]:.3f} mm (= {int(round(ratio))} x {dz:.3f} mm) "
                           f"between {chosen[i][0].name} (at {s_sorted[i]:.3f} mm) and {chosen[i + 1][0].name}; "
                           "the series is incomplete: re-export all slices")
            raise _err(f"uneven slice spacing: {ds_[i]:.3f} mm between {chosen[i][0].name} and "
                       f"{chosen[i + 1][0].name} vs {dz:.3f} mm elsewhere; resample to a regular grid")
    else:
        thick = ds0.get("SliceThickness", None)
        try:
            dz = float(thick) if thick not in (None, "") else 0.0
        except (TypeError, ValueError):
            dz = 0.0
        if not dz > 0:
            raise _err(f"a single CT slice without a positive SliceThickness cannot define a 3-D grid ({f0})")
    return _SeriesHeaders(chosen, rows0, cols0, dz, ps0, normal, sx, sy, ipps_sorted, positions)


def ct_series_grid(folder: str | Path | Sequence[str | Path], *,
                   series_uid: str | None = None) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """The grid of the series :func:`load_ct_series` reads from ``folder`` (``series_uid`` as there): its shape
    (z, y, x) and voxel size (dx, dy, dz) in mm, from the slices' headers alone (no pixel is read: ~0.4 s for 360
    slices of 512 x 512, where reading them takes 1-2 s and converting them to densities ~10 s).  Its refusals are
    those of :func:`load_ct_series`; its warnings are not said (the reading says them): ``mcproton run`` sizes its
    dose grid with it before the CT is read (mcproton/_run/inputs.py check_before_build).  The headers it read are
    kept for the next :func:`load_ct_series` of the same files (:data:`_HEADER_PASS`), which reads no header again."""
    import warnings

    from .errors import muted_warnings

    key = _header_pass_key(folder, series_uid)   # before the reading: a file changed during it is read again
    unsaid: list = []
    with muted_warnings(unsaid), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        h = _series_headers(folder, series_uid)
    _HEADER_PASS.clear()
    if key is not None:
        _HEADER_PASS[key] = (h, unsaid)
    return h.shape_zyx, h.voxel_size_mm


#: The header pass of the last :func:`ct_series_grid` and the warnings it did not say, kept for the
#: :func:`load_ct_series` of the same series that follows it (``mcproton run`` sizes its dose grid from the headers
#: before it reads the CT): one entry, used once, keyed by the series asked for and each file's path, device, inode,
#: size and modification time (a file added, removed or rewritten in between: read again).  Before, a run read every
#: slice's header twice (the review of 2026-12-07, F6: the pass that is slow on a network share).
_HEADER_PASS: dict[tuple, tuple[_SeriesHeaders, list]] = {}


def _header_pass_key(folder: str | Path | Sequence[str | Path], series_uid: str | None) -> tuple | None:
    """The key of :data:`_HEADER_PASS` for these files now (None where they cannot be listed: the reading says
    why)."""
    try:
        stats = [(os.path.abspath(f), f.stat()) for f in _list_files(folder)]
    except (OSError, DicomInputError):
        return None
    return series_uid, tuple((p, s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns) for p, s in stats)


def _kept_header_pass(folder: str | Path | Sequence[str | Path], series_uid: str | None) -> _SeriesHeaders | None:
    """The headers :func:`ct_series_grid` read of these same files, its warnings said now (None: read them)."""
    if not _HEADER_PASS:
        return None
    key = _header_pass_key(folder, series_uid)
    kept = None if key is None else _HEADER_PASS.pop(key, None)
    _HEADER_PASS.clear()   # used once, or not at all
    if kept is None:
        return None
    h, unsaid = kept
    for message, category in unsaid:
        warn(message, category, stacklevel=2)
    return h


@timed("ct_import")
def load_ct_series(folder: str | Path | Sequence[str | Path], *, series_uid: str | None = None,
                   conversion: Callable[[CTGrid], tuple[float, str, str] | None] | None = None) -> CTImage:
    """Read an axial CT series from a folder (or a list of files).

    DICOM objects that are not images (RT Plan, RT Struct, RT Dose) are ignored.  A file that is not DICOM is
    refused if named like the slices (an empty or damaged slice) or .dcm, named in a warning if it may have been
    a slice (no suffix, .dicom, a numeric suffix), else (notes.txt, out.h5) skipped; see :func:`_not_dicom_files`.
    A localizer series (scout/topogram, :func:`is_localizer`) beside one axial series is skipped with a warning.
    If the folder holds more than one axial CT series, pass ``series_uid`` (SeriesInstanceUID) to choose one.
    A slice whose stored pixel words do not fit its BitsStored/HighBit, or whose HighBit is not BitsStored - 1 where
    that matters, is refused (:func:`_pixel_bits`, :func:`_check_stored_bits`): readers disagree on its CT numbers.
    The grid it makes is known from the headers alone: :func:`ct_series_grid`.

    Before any pixel is read, a series whose reading needs more memory than this process may allocate is refused
    (:func:`_check_size`).  ``conversion(grid)``: what the caller's conversion of the CT will add, from the series'
    grid (:class:`CTGrid`, the headers') as (bytes, what it converts to, what else the user can do), or None; it is
    checked with the reading, so that a CT that cannot be converted is refused before its pixels are read
    (``mcproton check`` and ``mcproton run``, which know whether they convert in blocks and over which slices).
    """
    h = _kept_header_pass(folder, series_uid) or _series_headers(folder, series_uid)
    chosen, rows0, cols0, dz, ps0 = h.chosen, h.rows, h.cols, h.dz, h.pixel_spacing
    normal, sx, sy, ipps_sorted, positions = h.normal, h.sx, h.sy, h.ipps_sorted, h.positions
    # the axes whose direction cosine is negative are flipped below (each slice) so that the grid runs along +x, +y;
    # the slices are put in z order (reversed where z decreases with the sort key)
    origin = ipps_sorted[0].copy()
    if sx < 0:
        origin[0] = origin[0] - (cols0 - 1) * float(ps0[1])
    if sy < 0:
        origin[1] = origin[1] - (rows0 - 1) * float(ps0[0])
    if normal[2] < 0:
        origin[2] = ipps_sorted[-1][2]
    grid = CTGrid(h.shape_zyx, h.voxel_size_mm, (float(origin[0]), float(origin[1]), float(origin[2])))
    _check_size(chosen, rows0, cols0, dz, folder, None if conversion is None else conversion(grid))

    # --- pixels: each slice rescaled into the volume as it is read (the stored slices are not kept: the reading
    # peaked at 3.1 x the volume before, audit F7), placed where the axis flips below put it ---
    n_slices = len(chosen)
    at = (lambda k: n_slices - 1 - k) if normal[2] < 0 else (lambda k: k)   # z increasing
    flip = (slice(None, None, -1) if sy < 0 else slice(None), slice(None, None, -1) if sx < 0 else slice(None))
    # int16 while every slope, intercept and stored value is an integer, float32 from the first that is not;
    # allocated at the first slice
    hu = np.empty((0, rows0, cols0), np.int16)
    nonfinite = False
    padded: list[tuple[int, float]] = []   # (voxels at the PixelPaddingValue, its HU) of the slices remapped
    integral = True
    try:   # running out of memory here is the CT read's, said with the series' size (not "a damaged file")
        for k, (f, ds) in enumerate(_read_many([f for f, _ in chosen], pixels=True)):
            if ds is None or "PixelData" not in ds:
                raise _err(f"{f}: slice has no PixelData; the file is truncated or not an image")
            bits = _pixel_bits(ds, f)   # before the decoding: pydicom blames the compression for a damaged header
            try:
                arr = _pixel_words(ds)
            except MemoryError:   # the machine, not the file (before: "the file is truncated/corrupted")
                raise
            except Exception as exc:
                ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
                install = install_for(str(ts)) if ts is not None and missing_decoder(str(ts)) else None
                if install:   # not the file: audit 27, F5
                    raise _err(f"{f}: pixel data cannot be decoded here: they are compressed as {ts.name} ({ts}), "
                               "and no decoder for it is installed here (`mcproton info` lists the decoders, under "
                               f"dicom_decoders): install one, {install}, or re-export the CT uncompressed") from exc
                raise _err(f"{f}: pixel data cannot be decoded ({type(exc).__name__}: {exc}); the file is "
                           "truncated/corrupted or uses a compression pydicom cannot decode"
                           + (f" ({ts.name})" if ts is not None and getattr(ts, "is_compressed", False) else "")
                           + f": {DECODER_ADVICE}") from exc
            if arr.shape != (rows0, cols0):
                raise _err(f"{f}: pixel array shape {arr.shape} differs from Rows x Columns {rows0} x {cols0}")
            slope_v, inter_v = ds.get("RescaleSlope", None), ds.get("RescaleIntercept", None)
            if slope_v in (None, "") or inter_v in (None, ""):
                raise _err(f"{f}: RescaleSlope (0028,1053) and RescaleIntercept (0028,1052) are required in a CT "
                           f"image (Type 1; here slope {slope_v!r}, intercept {inter_v!r}); without them the stored "
                           "values cannot be converted to HU (often HU + 1024, read as HU would move every range): "
                           "re-export the CT with them (anonymisers sometimes drop them)")
            try:
                slope, inter = float(slope_v), float(inter_v)
            except (TypeError, ValueError) as exc:
                raise _err(f"{f}: RescaleSlope (0028,1053) {str(slope_v)!r} / RescaleIntercept (0028,1052) "
                           f"{str(inter_v)!r} are not numbers; the header is damaged: re-export the CT") from exc
            if not (np.isfinite(slope) and np.isfinite(inter)) or slope <= 0 or slope > 1e3:
                raise _err(f"{f}: RescaleSlope {slope} / RescaleIntercept {inter} are not plausible (the slope of a "
                           "CT is > 0, usually 1); the header is damaged: re-export the CT")
            _check_stored_bits(ds, arr, bits, f, slope, inter)
            if slope != int(slope) or inter != int(inter) or arr.dtype.kind not in "iu":
                integral = False
            pad = _padding_voxels(ds, arr, slope, inter)
            if pad is not None:   # stored so as to read PADDING_REMAP_HU (before the rescaling's range check)
                mask, pad_hu = pad
                padded.append((int(np.count_nonzero(mask)), pad_hu))
                to = (PADDING_REMAP_HU - inter) / slope
                arr = arr.astype(np.int64 if to == int(to) else np.float64)
                arr[mask] = to
                integral = integral and to == int(to)
            if k == 0:
                hu = np.empty((n_slices, rows0, cols0), np.int16 if integral else np.float32)
            elif not integral and hu.dtype == np.int16:
                hu = hu.astype(np.float32)   # the slices so far were integers: exact, the numbers float64 gives
            hu_k = _rescale_slice(arr, slope, inter, integral)
            if hu_k is not None and (float(hu_k.min()) < -32768 or float(hu_k.max()) > 32767):
                raise _err(_implausible_hu(f, arr, hu_k, bits, slope, inter))   # the slice named, and a likely cause
            del arr, ds
            if hu_k is None:
                nonfinite = True
                continue
            if not nonfinite:   # (a slice's HU outside the int16 range was refused above, naming it)
                hu[at(k)] = hu_k[flip]
    except MemoryError as exc:
        raise _out_of_memory(exc, chosen, rows0, cols0, dz, folder) from exc
    if nonfinite:
        raise _err("CT contains non-finite values after rescaling")
    if padded:
        warn(f"{folder}: {sum(n for n, _ in padded)} CT voxels hold the PixelPaddingValue (0028,0120) of the "
             f"scanner, which reads as {padded[0][1]:.0f} HU, a CT number of matter: they lie outside the "
             f"reconstructed image and are read as {PADDING_REMAP_HU} HU (outside the field of view: air, and the edge "
             "of the field of view for the check of a patient cut off by the CT)", McprotonWarning)

    if normal[2] < 0:  # z decreasing with the sort key: the slices were put in reverse so that z increases
        chosen = chosen[::-1]
    ds0 = chosen[0][1]
    from .patients import PatientIdentity

    who = PatientIdentity()   # each value from the first slice that gives it, as the check takes it (review R6)
    for _, ds in chosen:
        who = who.merged(PatientIdentity.of(ds))
    return CTImage(
        hu_zyx=hu,
        voxel_size_mm=grid.voxel_size_mm,   # as ct_series_grid says it
        origin_mm=grid.origin_mm,
        patient_name=who.name,
        patient_id=who.patient_id,
        patient_position=positions[0] if positions else "",
        slice_sop_instance_uids=[str(ds.get("SOPInstanceUID", "")) for _, ds in chosen],
        slice_files=[str(f) for f, _ in chosen],
        patient_birth_date=who.birth_date,
        patient_sex=who.sex,
        axis_directions=(int(sx), int(sy), int(sx * sy)),
        fov_circle_mm=_fov_circle(ds0, origin, (float(ps0[1]), float(ps0[0])), (cols0, rows0)),
        **{**(fields := _series_fields(ds0)),
           "acquisition": slices_kvp(fields["acquisition"], [ds for _, ds in chosen], str(folder))},
    )


def _series_fields(ds0) -> dict[str, Any]:
    """The :class:`CTImage` fields that the series' first slice ``ds0`` gives as it is (its UIDs, description,
    study date and time, comments, image type and acquisition: :func:`ct_acquisition`): of :func:`load_ct_series`,
    and of :func:`write_ct_series_image` from the data set its slices are written from."""
    return {"frame_of_reference_uid": str(ds0.get("FrameOfReferenceUID", "")),
            "study_instance_uid": str(ds0.get("StudyInstanceUID", "")),
            "series_instance_uid": str(ds0.get("SeriesInstanceUID", "")),
            "series_description": str(ds0.get("SeriesDescription", "")),
            "study_date": str(ds0.get("StudyDate", "") or ""), "study_time": str(ds0.get("StudyTime", "") or ""),
            "study_timezone": str(ds0.get("TimezoneOffsetFromUTC", "") or "").strip(),
            "image_comments": str(ds0.get("ImageComments", "") or ""),
            "image_type": _text_values(ds0.get("ImageType", None)),
            "acquisition": ct_acquisition(ds0)}


def _fov_circle(ds, origin: np.ndarray, spacing_xy: tuple[float, float],
                size_xy: tuple[int, int]) -> tuple[float, float, float] | None:
    """The reconstruction circle (x, y, radius; mm) of a slice: ReconstructionDiameter (0018,1100) centred on
    ReconstructionTargetCenterPatient (0018,9318) where given, else on the image's centre (where scanners put it);
    None without a plausible diameter."""
    try:
        diameter = float(ds.get("ReconstructionDiameter", None))
    except (TypeError, ValueError):
        return None
    if not np.isfinite(diameter) or diameter <= 0:
        return None
    cx = float(origin[0]) + (size_xy[0] - 1) / 2 * spacing_xy[0]
    cy = float(origin[1]) + (size_xy[1] - 1) / 2 * spacing_xy[1]
    centre = ds.get("ReconstructionTargetCenterPatient", None)
    try:
        if centre is not None and len(centre) == 3 and all(np.isfinite(float(c)) for c in centre):
            cx, cy = float(centre[0]), float(centre[1])
    except (TypeError, ValueError):
        pass
    return cx, cy, diameter / 2


#: A body cut by the scanner's reconstruction circle (fov_cut_mask): a voxel just inside the circle (within
#: FOV_CUT_RING_VOXELS voxels of it) that is the body (above FOV_CUT_TISSUE_HU, the automatic body outline's -400 HU,
#: mcproton/body.py) while the voxel just beyond the circle on the same radius is air or below (FOV_CUT_AIR_HU: the
#: scanner wrote nothing there) is where the patient is cut.  A slice is cut where such voxels span at least
#: FOV_CUT_MIN_ARC_MM of the circle (a couch shell or a skin fold that happens to touch the circle spans a few mm; the
#: pacs audit's head cut 6 mm deep spans 100 mm).  A body reconstructed beyond the circle (extended field of view) is
#: tissue on both sides: not cut.
FOV_CUT_TISSUE_HU = -400.0
FOV_CUT_AIR_HU = -900.0
FOV_CUT_RING_VOXELS = 1.5
FOV_CUT_MIN_ARC_MM = 20.0
#: the voxels beyond the circle marked next to each cut voxel (in-plane, voxels): the entry check looks
#: TRUNCATION_FOV_GAP_VOXELS (2) voxels before a beam's entry (mcproton/_run/inputs.py)
FOV_CUT_MARK_VOXELS = 3


def fov_cut_mask(ct: CTImage, hu_zyx: np.ndarray | None = None) -> np.ndarray | None:
    """Where a CT's outside of the reconstruction circle lies next to a body the circle cuts off (zyx, bool), or None
    where it cuts none: the patient wider than the field of view with the outside stored as air (-1000/-1024 HU),
    which the padding test (hu_calibration.FOV_PADDING_HU) cannot see (the pacs audit, F1: a head cut 6 mm deep where
    the beams entered, the dose 6 mm too deep, no warning).  The circle is ``ct.fov_circle_mm``, else the one inscribed
    in the image; the criterion is at :data:`FOV_CUT_MIN_ARC_MM`.  The voxels marked are those beyond the circle
    within :data:`FOV_CUT_MARK_VOXELS` of a cut voxel, so that the entry check (check_ct_truncation) warns about a
    beam entering there as it does next to the padding.  The inscribed circle is taken only for a square image (a
    scanner reconstructs a square around its circle; a grid cropped to the body, such as the demo's head phantom, has
    none, and its inscribed circle would graze the head's outline)."""
    hu = np.asarray(ct.hu_zyx if hu_zyx is None else hu_zyx)
    nz, ny, nx = hu.shape
    if ny < 3 or nx < 3:
        return None
    dx, dy = float(ct.voxel_size_mm[0]), float(ct.voxel_size_mm[1])
    x = ct.origin_mm[0] + dx * np.arange(nx)
    y = ct.origin_mm[1] + dy * np.arange(ny)
    if ct.fov_circle_mm is not None:
        cx, cy, radius = ct.fov_circle_mm
    elif abs(nx * dx - ny * dy) > max(dx, dy):
        return None   # not a scanner's square reconstruction (a grid cropped to the body): no circle to take
    else:   # the circle inscribed in the image (its edges at the voxels' outer faces)
        cx, cy = float(x.mean()), float(y.mean())
        radius = min(nx * dx, ny * dy) / 2
    h = max(dx, dy)
    ux, uy = x[None, :] - cx, y[:, None] - cy
    r = np.hypot(ux, uy)
    ring_j, ring_i = np.nonzero((r <= radius) & (r > radius - FOV_CUT_RING_VOXELS * h))
    if ring_j.size == 0:
        return None
    rr = np.maximum(r[ring_j, ring_i], 1e-9)
    step = radius - rr + 1.0 * h   # to the voxel beyond the circle on the same radius
    oi = np.rint(ring_i + ux[0, ring_i] / rr * step / dx).astype(np.int64)
    oj = np.rint(ring_j + uy[ring_j, 0] / rr * step / dy).astype(np.int64)
    ok = (oi >= 0) & (oi < nx) & (oj >= 0) & (oj < ny)
    ring_j, ring_i, oi, oj = ring_j[ok], ring_i[ok], oi[ok], oj[ok]
    ok = r[oj, oi] > radius
    ring_j, ring_i, oi, oj = ring_j[ok], ring_i[ok], oi[ok], oj[ok]
    if ring_j.size == 0:
        return None
    cut = (hu[:, ring_j, ring_i] > FOV_CUT_TISSUE_HU) & (hu[:, oj, oi] <= FOV_CUT_AIR_HU)   # (slices, ring voxels)
    arc_mm = cut.sum(axis=1) * dx * dy / (FOV_CUT_RING_VOXELS * h)   # the ring's area over its width
    slices = np.flatnonzero(arc_mm >= FOV_CUT_MIN_ARC_MM)
    if slices.size == 0:
        return None
    from scipy import ndimage

    outside = r > radius
    disc = np.hypot(*np.mgrid[-FOV_CUT_MARK_VOXELS:FOV_CUT_MARK_VOXELS + 1,
                              -FOV_CUT_MARK_VOXELS:FOV_CUT_MARK_VOXELS + 1]) <= FOV_CUT_MARK_VOXELS
    mask = np.zeros(hu.shape, bool)
    for k in slices:
        seed = np.zeros((ny, nx), bool)
        seed[ring_j[cut[k]], ring_i[cut[k]]] = True
        mask[k] = ndimage.binary_dilation(seed, disc) & outside
    return mask if mask.any() else None


#: A PixelPaddingValue (0028,0120) whose rescaled CT number is above PADDING_MATTER_HU would read as matter (water
#: at 0 HU, bone, beyond the calibration): its voxels, which DICOM says are outside the reconstructed image, are
#: given PADDING_REMAP_HU instead (the out-of-field-of-view value most scanners write, below
#: hu_calibration.FOV_PADDING_HU).  A padding value at air's CT number or below is left as it is: a scanner that pads
#: with the air value (stored 0, intercept -1024) also stores the air inside the field of view so, and remapping
#: it would take every air voxel for the outside of the field of view.
PADDING_MATTER_HU = -900.0
PADDING_REMAP_HU = -3024


def _pixel_words(ds) -> np.ndarray:
    """The pixel words of a slice as stored (native) or decoded (compressed), without pydicom's masking of the bits
    above BitsStored: pydicom 3 keeps the low BitsStored bits of each word (sign-extended where signed) unless told
    not to; pydicom 2 does not mask.  :func:`_check_stored_bits` refuses a slice whose words do not fit BitsStored,
    so that the words read are those every reader reads."""
    options = getattr(ds, "pixel_array_options", None)   # pydicom >= 3
    if options is not None:
        options(correct_unused_bits=False)
    return ds.pixel_array


def _pixel_bits(ds, f: Path) -> tuple[int, int, int, int]:
    """(BitsAllocated, BitsStored, HighBit, PixelRepresentation) of a slice, read before its pixels are decoded:
    refused where one is missing or not a number (Type 1 in the Image Pixel Module; a missing HighBit is taken as
    BitsStored - 1, as nothing contradicts it), where they do not fit together, or where HighBit lies above
    BitsStored - 1 (the header puts the stored bits higher in each word than pydicom reads them, so the CT numbers
    differ between readers; the Image Pixel Module, PS3.3 C.7.6.3, requires HighBit = BitsStored - 1).  A HighBit
    below BitsStored - 1 is left to :func:`_check_stored_bits` (it matters only where a word does not fit it)."""
    values: list[int] = []
    for kw, tag in (("BitsAllocated", "0028,0100"), ("BitsStored", "0028,0101"), ("HighBit", "0028,0102"),
                    ("PixelRepresentation", "0028,0103")):
        v = ds.get(kw, None)
        if kw == "HighBit" and v in (None, ""):
            values.append(values[1] - 1)
            continue
        try:
            values.append(int(v))
        except (TypeError, ValueError):
            raise _err(f"{f}: {kw} ({tag}) is {'missing' if v in (None, '') else repr(v)}; a CT image must give it as "
                       "a number (Type 1): the file is damaged, export the CT again") from None
    allocated, stored, high, rep = values
    header = f"BitsAllocated/BitsStored/HighBit {allocated}/{stored}/{high}, PixelRepresentation {rep}"
    if not (1 <= stored <= allocated and 0 <= high < allocated) or rep not in (0, 1):
        raise _err(f"{f}: {header}: not a consistent pixel header (BitsStored 1..BitsAllocated, HighBit below "
                   f"BitsAllocated, PixelRepresentation 0 or 1): the file is damaged; {_BITS_FIX}")
    if allocated not in (16, 32) or stored < 12:
        raise _err(_not_ct_bits(ds, f, header, allocated, stored, rep))
    if high > stored - 1:
        raise _err(f"{f}: {header}: the header puts the {stored} stored bits of each pixel at bits "
                   f"{high - stored + 1}..{high} of its word, while pydicom ignores HighBit and takes bits "
                   f"0..{stored - 1}, so the CT numbers differ between readers (the Image Pixel Module, PS3.3 "
                   f"C.7.6.3, requires HighBit = BitsStored - 1): the header is damaged or the export wrong; "
                   f"{_BITS_FIX}")
    return allocated, stored, high, rep


def _stored_range(bits: int, rep: int) -> tuple[int, int]:
    """The values ``bits`` stored bits hold: two's complement where PixelRepresentation ``rep`` is 1, unsigned
    where it is 0 (PS3.5 8.1.1)."""
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if rep else (0, (1 << bits) - 1)


def _not_ct_bits(ds, f: Path, header: str, allocated: int, stored: int, rep: int) -> str:
    """The refusal of a slice whose words cannot hold a CT's numbers: the CT Image Module (PS3.3 C.8.2.1.1.4 and .5)
    requires BitsAllocated 16 and BitsStored 12 to 16.  Before (audit 27 encodings, F3) an 8-bit CT (a viewer's or
    converter's windowed export that kept the CT SOP class and the scanner's rescale) was read as HU -1024..-769: the
    patient as air, stopped only where more than half the beam's energy left the grid.  32-bit words (a converter's
    int32 image) are not refused here: outside the module too, but they hold the CT numbers whole, and were read
    before; their values are checked as every slice's (exact integers, within the int16 range of any CT:
    :func:`_implausible_hu`).  Refused: 8 bits (a display export), fewer than 12 stored bits (the CT numbers of
    bone do not fit), any other BitsAllocated (the review of 2026-12-07, R3: a 32-bit CT was refused as "the values
    above the stored bits are lost", which nothing was)."""
    lo, hi = _stored_range(stored, rep)
    reads = ""
    try:
        slope, inter = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
        a, b = sorted((lo * slope + inter, hi * slope + inter))
        if np.isfinite(a) and np.isfinite(b):
            reads = (f"; with RescaleSlope {slope:g} and RescaleIntercept {inter:g} its {stored}-bit values "
                     f"{lo}..{hi} would read as {a:g}..{b:g} HU")
    except (TypeError, ValueError):
        pass
    if allocated == 8 or stored <= 8:
        what = ("is a display export (a viewer's or converter's windowed image, the grey levels of a window, not CT "
                "numbers)")
    elif stored < 12:
        what = (f"stores {stored}-bit values, too few for a patient's CT numbers (air to bone, -1000..3071 HU, take "
                "12 bits)")
    else:
        what = f"stores its values in {allocated}-bit words, which mcproton does not read (16, or 32 whole CT numbers)"
    return (f"{f}: {header}: a CT image stores its CT numbers in 16-bit words of 12 to 16 bits (BitsAllocated 16, "
            f"BitsStored 12-16: the CT Image Module, PS3.3 C.8.2.1.1.4 and .5); this one {what}{reads}: export "
            "the original CT series from the scanner or the archive (16-bit CT Image Storage slices)")


#: what to do about a CT whose pixel header does not fit its words
_BITS_FIX = "export the CT again with BitsStored 16 and HighBit 15 (the scanner's or the archive's export settings)"


def _check_stored_bits(ds, words: np.ndarray, bits_header: tuple[int, int, int, int], f: Path, slope: float,
                       inter: float) -> None:
    """Refuse a slice whose pixel words hold more than its BitsStored (0028,0101) and HighBit (0028,0102) say: a CT
    exported with a 12-bit header whose words hold 13 or more bits (an extended-HU scale, or HU + 1024 beyond 3071)
    is read as its whole words by some readers and as their low 12 bits (masked, or sign-extended from the HighBit,
    as PS3.5 8.1.1 reads a word and pydicom 3 does) by others, and the two readings differ exactly in the dense
    voxels: the metal audit of 2026-12-06 (F2) read metal at 8000 HU as fat (-192 HU) and bone at 1500 HU as
    -2596 HU (the scanner's padding outside the field of view, inside the patient), +16 mm of range behind 10 mm,
    without a word.  ``bits_header``: :func:`_pixel_bits` (which refused an inconsistent header); a HighBit below
    BitsStored - 1 narrows the range checked to HighBit + 1 bits.  Words at the PixelPaddingValue (to
    PixelPaddingRangeLimit) are not checked: they mark the outside of the image (:func:`_padding_voxels`).
    ``words``: :func:`_pixel_words` (native, or decoded after decompression); the check costs a min and a max of each
    slice where BitsStored < BitsAllocated (0.08 ms a 512 x 512 slice, 30 ms for 400 slices), nothing where they are
    equal."""
    allocated, stored, high, rep = bits_header
    header = f"BitsAllocated/BitsStored/HighBit {allocated}/{stored}/{high}, PixelRepresentation {rep}"
    bits = min(stored, high + 1)
    if bits >= 8 * words.dtype.itemsize or words.dtype.kind not in "iu":
        return   # every bit of the word is a pixel bit: any word is a value
    lo, hi = _stored_range(bits, rep)
    if words.size == 0 or (int(words.min()) >= lo and int(words.max()) <= hi):
        return
    out = (words < lo) | (words > hi)
    if (pad := _padding_range(ds)) is not None:
        out &= (words < pad[0]) | (words > pad[1])
    if not out.any():
        return
    bad = words[out].astype(np.int64)
    w = int(bad.max()) if int(bad.max()) > hi else int(bad.min())
    masked = (w - lo) % (1 << bits) + lo    # its low bits, sign-extended where signed: pydicom 3's reading
    whole = f"{w * slope + inter:g}"
    narrow = f"{masked * slope + inter:g}"
    if bits == stored:
        what, reader = f"BitsStored {stored}", "as DICOM (PS3.5 8.1.1) and pydicom 3 read it"
    else:
        what = f"HighBit {high} (bits 0..{high}, though BitsStored says {stored})"
        reader = "as a reader that takes the HighBit reads it; pydicom takes the whole word"
    said = (f"{f}: {header}: {bad.size} of the slice's {words.size} pixels hold stored values outside the "
            f"{bits}-bit {'signed' if rep else 'unsigned'} range {lo}..{hi} that {what} gives; the most extreme, "
            f"{w}, is {whole} HU as the whole {8 * words.dtype.itemsize}-bit word but {narrow} HU from its low "
            f"{bits} bits ({'sign-extended' if rep else 'masked'}, {reader}). ")
    overlays = _embedded_overlays(ds, bits, 8 * words.dtype.itemsize)
    if overlays and not _beyond_overlays(bad, bits, rep, overlays):
        # the retired embedded overlay (PS3.5 8.1.2, PS3.3 C.9.2 as they were): the high bits are a graphic, not CT
        # numbers, and a BitsStored 16 would read it as CT numbers (+4096 HU along the annotation): audit 27, F4
        where = ", ".join(f"group {g:04X}: OverlayBitPosition {b}" for g, b in overlays)
        raise _err(f"{said}These bits are an embedded overlay that the file declares ({where}, with "
                   f"OverlayBitsAllocated {8 * words.dtype.itemsize}: the retired encoding of an annotation graphic "
                   "in the unused high bits of the pixel words), not CT numbers; mcproton does not separate embedded "
                   "overlays: ask the archive or the scanner for the series without the overlay (or with it in "
                   "OverlayData (60xx,3000), a plane of its own). Do not set BitsStored to 16 in the header: the "
                   "overlay's pixels would then be read as CT numbers")
    raise _err(f"{said}Readers disagree on these voxels' CT numbers, so their stopping powers, and every range behind "
               "them, are unknown: check the CT's export (an extended-HU scale, or HU + 1024 beyond 3071 HU, stored "
               f"under a {stored}-bit header?) and {_BITS_FIX}")


def _embedded_overlays(ds, bits: int, word_bits: int) -> list[tuple[int, int]]:
    """The overlay planes (group, OverlayBitPosition) that ``ds`` declares embedded in its pixel words above their
    ``bits`` pixel bits: a repeating group 6000-601E with OverlayBitsAllocated (60xx,0100) equal to the word size and
    an OverlayBitPosition (60xx,0102) from ``bits`` to the word's top bit (an encoding the standard has retired, still
    in old archives)."""
    out = []
    for group in range(0x6000, 0x6020, 2):
        try:
            allocated, position = ds.get((group, 0x0100), None), ds.get((group, 0x0102), None)
            if allocated is None or position is None:
                continue
            allocated, position = int(allocated.value), int(position.value)
        except (TypeError, ValueError):
            continue
        if allocated == word_bits and bits <= position < word_bits:
            out.append((group, position))
    return out


def _beyond_overlays(bad: np.ndarray, bits: int, rep: int, overlays: list[tuple[int, int]]) -> bool:
    """Whether the out-of-range words ``bad`` set high bits (above their ``bits`` pixel bits) other than the embedded
    overlays' bit positions (for signed pixels: other than their sign extension)."""
    mask = 0
    for _, position in overlays:
        mask |= 1 << position
    high = (bad.astype(np.int64) & 0xFFFF) >> bits << bits
    if rep:   # the sign extension of the pixel's own top bit is not an overlay bit
        sign = ((bad.astype(np.int64) >> (bits - 1)) & 1).astype(bool)
        high = np.where(sign, high ^ (0xFFFF >> bits << bits), high)
    return bool(np.any(high & ~mask))


def _padding_range(ds) -> tuple[int, int] | None:
    """The stored words (lowest, highest) that a slice's PixelPaddingValue (to PixelPaddingRangeLimit where given)
    marks as padding; None where there is no padding value or a damaged one (the image is then read as it is)."""
    pv = ds.get("PixelPaddingValue", None)
    if pv is None or pv == "":
        return None
    try:
        lo = int(pv)
        limit = ds.get("PixelPaddingRangeLimit", None)
        hi = int(limit) if limit not in (None, "") else lo
    except (TypeError, ValueError):
        return None
    return min(lo, hi), max(lo, hi)


def _padding_voxels(ds, arr: np.ndarray, slope: float, inter: float) -> tuple[np.ndarray, float] | None:
    """The voxels of a slice at its PixelPaddingValue (to PixelPaddingRangeLimit where given) that are connected to
    the slice's border through such voxels (the padding around the reconstruction circle), and the padding's HU,
    where that HU reads as matter (:data:`PADDING_MATTER_HU`); None where there are none, or no padding value.
    Voxels of the padding value inside the image (a padding value of 0 HU: water in the patient too) are not
    padding and are left as they are (a review of 2026-12-05: every voxel at the value was remapped)."""
    pad = _padding_range(ds) if arr.dtype.kind in "iu" else None
    if pad is None:
        return None
    lo, hi = pad
    pad_hu = lo * slope + inter
    if pad_hu <= PADDING_MATTER_HU:
        return None
    mask = (arr >= lo) & (arr <= hi)
    if not mask.any():
        return None
    from scipy import ndimage

    pieces, _ = ndimage.label(mask)   # 4-connected pieces of the padding value; those at the border are padding
    border = np.unique(np.concatenate([pieces[0], pieces[-1], pieces[:, 0], pieces[:, -1]]))
    mask = np.isin(pieces, border[border > 0])
    return (mask, pad_hu) if mask.any() else None


def _implausible_hu(f: Path, arr: np.ndarray, hu_k: np.ndarray, bits_header: tuple[int, int, int, int],
                    slope: float, inter: float) -> str:
    """The refusal of the slice ``f`` whose CT numbers ``hu_k`` (its stored values ``arr`` x ``slope`` + ``inter``)
    leave the int16 range of any CT: the file named, what it stores, and the likely cause.  Where an unsigned 16-bit
    header (PixelRepresentation 0, BitsStored 16) holds words that read as plausible CT numbers when taken as signed
    (two's complement, as PixelRepresentation 1 says): a converter's error in PixelRepresentation (0028,0103), which
    puts air (-1000 HU) at 64536.  Before (audit 27 encodings, F5) the message named neither the file nor that tag
    ("CT values 15..65517 HU are outside any plausible HU range; check RescaleSlope/RescaleIntercept")."""
    allocated, stored, _, rep = bits_header
    head = (f"{f}: its CT numbers {float(hu_k.min()):.0f}..{float(hu_k.max()):.0f} HU (stored values "
            f"{float(arr.min()):.0f}..{float(arr.max()):.0f} x RescaleSlope {slope:g} + RescaleIntercept {inter:g}) "
            "are outside any plausible HU range")
    if rep == 0 and allocated == 16 and stored == 16 and arr.dtype.kind in "iu" and int(arr.max()) > 32767:
        w = arr.astype(np.int64)
        w = np.where(w > 32767, w - 65536, w)
        a, b = float(w.min()) * slope + inter, float(w.max()) * slope + inter
        if -32768 <= min(a, b) and max(a, b) <= 32767:
            return (f"{head}: PixelRepresentation (0028,0103) says 0 (unsigned words), but read as signed (two's "
                    f"complement) 16-bit words, as PixelRepresentation 1 says, the slice gives {min(a, b):.0f}.."
                    f"{max(a, b):.0f} HU: the words are most likely signed and the header wrong (a converter's or "
                    "anonymiser's error); export the CT again from the scanner or the archive, with "
                    "PixelRepresentation 1")
    return (f"{head}: RescaleSlope (0028,1053), RescaleIntercept (0028,1052) or PixelRepresentation (0028,0103) do "
            "not fit the stored values (the header is damaged or not a CT's): export the CT again from the scanner "
            "or the archive")


def _rescale_slice(arr: np.ndarray, slope: float, inter: float, integral: bool) -> np.ndarray | None:
    """HU = stored value x RescaleSlope + RescaleIntercept of one slice: in int64 when ``integral`` (every slope,
    intercept and stored value of the CT so far an integer; the same numbers as float64 gives), else float64 (None
    where a value is not finite).  The caller stores it in the volume (int16 or float32): no float64 copy of the
    whole CT."""
    if integral:
        return arr.astype(np.int64) * int(slope) + int(inter)
    v = arr.astype(np.float64) * slope + inter
    return v if np.all(np.isfinite(v)) else None


def write_ct_series(hu_zyx: np.ndarray, voxel_size_mm: Sequence[float], origin_mm: Sequence[float],
                    out_dir: str | Path, *, study: StudyReference | None = None,
                    series_description: str = "mcproton phantom",
                    series_instance_uid: str | None = None, image_comments: str = "") -> list[Path]:
    """Write ``hu_zyx`` (HU, rounded to integers) as an axial CT Image Storage series, one file per slice.

    The grid is written with ImageOrientationPatient [1,0,0,0,1,0]; ``origin_mm`` is the (x, y, z) centre of
    voxel [0, 0, 0] and ``voxel_size_mm`` is (dx, dy, dz).  Pixels are stored as signed 16-bit integers with
    RescaleSlope 1 and RescaleIntercept 0.  ``study`` (:class:`~mcproton.dicom.StudyReference`): patient,
    study, frame of reference (empty UIDs generated) and PatientPosition (default HFS); default a phantom
    ("mcproton^phantom", ID MCPROTON, HFS).  Returns the file paths (CT_0000.dcm, ...).
    """
    return write_ct_series_uids(hu_zyx, voxel_size_mm, origin_mm, out_dir, study=study,
                                series_description=series_description,
                                series_instance_uid=series_instance_uid, image_comments=image_comments)[0]


def write_ct_series_image(hu_zyx: np.ndarray, voxel_size_mm: Sequence[float], origin_mm: Sequence[float],
                          out_dir: str | Path, *, study: StudyReference | None = None,
                          series_description: str = "mcproton phantom", series_instance_uid: str | None = None,
                          image_comments: str = "") -> CTImage:
    """:func:`write_ct_series`, returning the :class:`CTImage` that :func:`load_ct_series` reads from the series it
    wrote, without reading it back: its HU are the pixels written, its grid the header values written (the
    position and spacing as their DS strings read, the slice spacing as the reader takes it from the slices'
    positions), its other fields those of the data set the slices are written from.  ``mcproton check
    --phantom-from-struct`` converts it (before 2026-12-07, audit 27 hosttime F3, the phantom CT was written and read
    back, 0.5-0.8 CPU s on a 242-slice phantom); tests/io/test_ct_written_image.py pins it field for field, the HU
    bit for bit, to what load_ct_series reads from the files."""
    from .patients import PatientIdentity

    paths, sops, zs, ds0, pix = _write_ct_series(hu_zyx, voxel_size_mm, origin_mm, out_dir, study=study,
                                                 series_description=series_description,
                                                 series_instance_uid=series_instance_uid,
                                                 image_comments=image_comments)
    # the reader's grid (_series_headers, load_ct_series) of these headers: rows along +x, columns along +y, the
    # slices in z order; the slice spacing the median of the positions' steps (one slice: its SliceThickness)
    ps = _floats(ds0, "PixelSpacing", 2, "")
    x0, y0 = (float(v) for v in _floats(ds0, "ImagePositionPatient", 3, "")[:2])
    dz = float(np.median(np.diff(np.asarray(zs, float)))) if len(zs) >= 2 else \
        float(_floats(ds0, "SliceThickness", 1, "")[0])
    origin = np.array([x0, y0, zs[0]])
    rows, cols = int(ds0.Rows), int(ds0.Columns)
    who = PatientIdentity().merged(PatientIdentity.of(ds0))   # every slice's patient is the template's
    position = str(ds0.get("PatientPosition", "") or "").strip().upper()
    return CTImage(hu_zyx=pix.astype(np.int16, copy=False),
                   voxel_size_mm=(float(ps[1]), float(ps[0]), dz), origin_mm=(x0, y0, float(zs[0])),
                   patient_name=who.name, patient_id=who.patient_id, patient_position=position,
                   slice_sop_instance_uids=list(sops), slice_files=[str(f) for f in paths],
                   patient_birth_date=who.birth_date, patient_sex=who.sex, axis_directions=(1, 1, 1),
                   fov_circle_mm=_fov_circle(ds0, origin, (float(ps[1]), float(ps[0])), (cols, rows)),
                   **_series_fields(ds0))


def write_ct_series_uids(hu_zyx: np.ndarray, voxel_size_mm: Sequence[float], origin_mm: Sequence[float],
                         out_dir: str | Path, *, study: StudyReference | None = None,
                         series_description: str = "mcproton phantom", series_instance_uid: str | None = None,
                         image_comments: str = "") -> tuple[list[Path], list[str], list[float]]:
    """:func:`write_ct_series`, returning ``(paths, SOP Instance UIDs, z of each slice as written)`` (what an
    RT Struct referencing the series needs, without reading the files back)."""
    return _write_ct_series(hu_zyx, voxel_size_mm, origin_mm, out_dir, study=study,
                            series_description=series_description, series_instance_uid=series_instance_uid,
                            image_comments=image_comments)[:3]


def _write_ct_series(hu_zyx: np.ndarray, voxel_size_mm: Sequence[float], origin_mm: Sequence[float],
                     out_dir: str | Path, *, study: StudyReference | None, series_description: str,
                     series_instance_uid: str | None,
                     image_comments: str) -> tuple[list[Path], list[str], list[float], Any, np.ndarray]:
    """The writer of :func:`write_ct_series`: ``(paths, SOP Instance UIDs, z of each slice as written, the data set
    the slices are written from (after the writing: the last slice's; what every slice shares is the same in all),
    the pixels written (z, y, x))``.

    One template data set holds what every slice shares; each file changes only SOPInstanceUID,
    InstanceNumber, ImagePositionPatient, SliceLocation and PixelData (:class:`TemplateFileWriter`: the bytes
    pydicom writes for the slice's own data set, ~20x faster).

    Into a new or empty ``out_dir`` the series is written whole or not at all
    (:func:`mcproton._io.atomic.atomic_write_folder`): a new one into a temporary folder beside it, renamed to
    ``out_dir`` once every slice is written; an existing empty one (a mount point, one whose parent cannot be
    written) through a hidden temporary folder inside it, whose slices are renamed up into it once all are written.
    So a writer stopped part-way (Ctrl-C, SIGTERM, SIGKILL, a full disk) leaves no shorter series that loads as a
    shorter patient (the concurrency audit of 2026-12-07, F4: ``mcproton phantom`` stopped after 31 of 109 slices
    left them, and ``mcproton run`` ran on the shorter head without a word).  Into a folder that holds other files
    the slices are written in place, and those written are removed again if the series is not finished.  A series
    that cannot be written raises :class:`CTSeriesWriteError`, which says why and what to do."""
    from pydicom.uid import generate_uid

    from .atomic import atomic_write_folder

    from .dicom_common import PHANTOM_STUDY, TemplateFileWriter, check_grid_geometry, ds_string as _ds, \
        new_file_dataset, set_patient_study_series

    study = (study or PHANTOM_STUDY).resolved()
    patient_position = study.patient_position or "HFS"
    hu = np.asarray(hu_zyx)
    if hu.ndim != 3 or min(hu.shape) < 1:
        raise ValueError(f"hu_zyx must be a non-empty 3-D array (z, y, x); got shape {hu.shape}")
    if hu.shape[1] > 65535 or hu.shape[2] > 65535:
        raise ValueError(f"slice size {hu.shape[1:]} exceeds the DICOM limit of 65535 rows/columns")
    hu = np.asarray(hu, dtype=float)
    if not np.all(np.isfinite(hu)):
        raise ValueError("hu_zyx contains NaN or inf; give finite Hounsfield units")
    hu_i = np.rint(hu)
    if hu_i.min() < -32768 or hu_i.max() > 32767:
        raise ValueError(f"HU range {hu_i.min():.0f}..{hu_i.max():.0f} does not fit 16-bit signed pixels")
    vs, org = check_grid_geometry(voxel_size_mm, origin_mm)
    if patient_position not in ("HFS", "HFP", "FFS", "FFP", "HFDL", "HFDR", "FFDL", "FFDR"):
        raise ValueError(f"patient_position {patient_position!r} is not a DICOM patient position (e.g. HFS)")
    out = Path(out_dir)
    made = not out.exists()
    whole = made or (out.is_dir() and not any(out.iterdir()))   # a folder of its own: written whole
    if not whole:
        out.mkdir(parents=True, exist_ok=True)
    series_uid = series_instance_uid or generate_uid()
    date, time = study.now_date_time()
    pix = hu_i.astype("<i2")    # every slice's PixelData in one conversion
    nz = hu.shape[0]
    ds, _ = new_file_dataset(out / "CT_0000.dcm", CT_IMAGE_STORAGE)
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    set_patient_study_series(ds, study, modality="CT", date=date, time=time,
                             series_description=series_description, series_instance_uid=series_uid,
                             series_number=1, instance_number=1)
    ds.SeriesDate = date
    ds.ContentDate = date
    ds.SeriesTime = time
    ds.ContentTime = time
    ds.KVP = ""
    ds.PatientPosition = patient_position
    ds.Laterality = ""
    ds.AcquisitionNumber = 1
    ds.ImagePositionPatient = [_ds(org[0]), _ds(org[1]), _ds(org[2])]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.SliceThickness = _ds(vs[2])
    ds.SliceLocation = _ds(org[2])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = hu.shape[1]
    ds.Columns = hu.shape[2]
    ds.PixelSpacing = [_ds(vs[1]), _ds(vs[0])]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = 0
    ds.RescaleSlope = 1
    ds.RescaleType = "HU"
    if image_comments:
        ds.ImageComments = image_comments
    ds.PixelData = pix[0].tobytes()
    writer = TemplateFileWriter(ds, ("SOPInstanceUID", "InstanceNumber", "ImagePositionPatient", "SliceLocation",
                                     "PixelData"))
    sops: list[str] = []
    zs: list[float] = []

    def write_slices(folder: Path) -> None:
        written: list[Path] = []
        try:
            for k in range(nz):
                path = folder / f"CT_{k:04d}.dcm"
                sop_uid = str(generate_uid())
                z = _ds(org[2] + k * vs[2])
                writer.write(path, SOPInstanceUID=sop_uid, InstanceNumber=k + 1,
                             ImagePositionPatient=[_ds(org[0]), _ds(org[1]), z], SliceLocation=z,
                             PixelData=pix[k].tobytes())
                written.append(path)
                sops.append(sop_uid)
                zs.append(float(z))
        except OSError as exc:
            raise _series_cut_short(exc, out, [*written, folder / f"CT_{len(written):04d}.dcm"], len(written), nz,
                                    made) from exc
        except BaseException:   # an interrupt: no slice of a series cut short is left (the whole one: its folder)
            for f in [*written, folder / f"CT_{len(written):04d}.dcm"]:
                with contextlib.suppress(OSError):
                    f.unlink()
            raise

    if whole:
        try:
            atomic_write_folder(out, write_slices)
        except CTSeriesWriteError:   # a slice could not be written: said by write_slices
            raise
        except OSError as exc:   # the temporary folder could not be made, or the slices not put into place
            raise _series_not_written(exc, out, made) from exc
    else:
        write_slices(out)
    return [out / f"CT_{k:04d}.dcm" for k in range(nz)], sops, zs, ds, pix


class CTSeriesWriteError(OSError):
    """A CT series that could not be written whole (a full disk, a quota, a file-size limit): the slices written
    were removed, so that no shorter series that loads as a shorter patient is left.  Its ``errno`` is the failed
    write's; ``str()`` says in words what happened and what to do."""

    def __str__(self) -> str:
        return str(self.strerror)


def _series_cut_short(exc: OSError, out: Path, written: list[Path], done: int, nz: int,
                      made: bool) -> CTSeriesWriteError:
    """Remove the slices of a series whose writing failed (and its folder, where this call made it and it is left
    empty), and the error that says so.  Before, a full disk left 37 of 109 slices (the last truncated) and the bare
    "[Errno 28] No space left on device" (the environment audit of 2026-12-06, F6)."""
    for f in written:
        with contextlib.suppress(OSError):
            f.unlink()
    if made:
        with contextlib.suppress(OSError):
            out.rmdir()
    code, why, todo = _write_failure(exc)
    return CTSeriesWriteError(code, f"the CT series could not be written to {out}: {why} (after {done} of {nz} "
                                    f"slices); the series is incomplete and the {done} slice(s) written were removed, "
                                    f"so that no partial series is left; {todo}")


def _series_not_written(exc: OSError, out: Path, made: bool) -> CTSeriesWriteError:
    """The error of a series whose temporary folder could not be made or whose slices could not be put into place
    (:func:`mcproton._io.atomic.atomic_write_folder`), in words and with what to do: before (review 2a of
    2026-12-07, R2) the bare "[Errno 16] Device or resource busy: '.../.mcp-...tmp' -> '.../ct'", naming a hidden
    temporary path.  Nothing of the series is left (``out`` as it was; not made, where it did not exist)."""
    code, why, todo = _write_failure(exc)
    where = f"{out} (a new folder, to be made in {out.parent})" if made else str(out)
    return CTSeriesWriteError(code, f"the CT series could not be written to {where}: {why}; nothing of it was "
                                    f"written; {todo}")


def _write_failure(exc: BaseException) -> tuple[int | None, str, str]:
    """(errno, what went wrong in words, what to do) of a CT series that could not be written."""
    import errno as _errno

    from .atomic import unwrap_os_error, write_error_text

    err = unwrap_os_error(exc)
    code = getattr(err, "errno", None)
    why = {_errno.ENOSPC: "the disk of that folder is full", _errno.EDQUOT: "the disk quota of that folder is used up",
           _errno.EFBIG: "a file-size limit (ulimit -f) was reached",
           _errno.EROFS: "that folder is on a read-only file system",
           _errno.EACCES: "permission denied (that folder, or the one it is made in, cannot be written)",
           _errno.EPERM: "the operation is not permitted (that folder, or the one it is made in, cannot be written)"
           }.get(code or -1, write_error_text(err))
    todo = ("free space there or give another output folder" if code in (_errno.ENOSPC, _errno.EDQUOT, _errno.EFBIG)
            else "make that folder writable, or give another output folder" if code in (_errno.EACCES, _errno.EPERM)
            else "give another output folder")
    return code, why, todo
