"""Slab phantoms written as a DICOM CT series, with an exact HU calibration.

Measured reference data are often taken in slab phantoms (solid water, PMMA plates) set up on the couch
like a patient.  To run them through the patient workflow unchanged (CT import -> HU calibration -> RT Ion
Plan in the CT frame), :func:`slab_ct` builds the HU volume of a stack of slabs placed in the patient (LPS)
frame, and :func:`slab_calibration` the HU calibration that maps each HU code back to exactly the material
(from :func:`mcproton.materials.get_material`) and density of its slab.  A generic CT calibration
(Schneider 2000, ...) would not give these compositions: e.g. solid water at 1.032 g/cm3 would become a
Schneider soft tissue.

HU codes: air is -1000; every other (material, density) pair gets ``round(1000 (rho - 1))`` (solid water
1.032 -> 32, PMMA 1.19 -> 190), moved up by one HU where two pairs would collide.  The density curve is flat
(+-0.4 HU) around each code, so integer HU give the slab density exactly.

Config (``[phantom] type = "slab_ct"``)::

    layers = [{material = "solid_water", thickness_mm = 20.0, density_g_cm3 = 1.032}, ...]
    depth_axis = "+y"            # direction of increasing depth in LPS (gantry 0, HFS: +y)
    surface_mm = [0, -102.5, 0]  # where the central axis enters the first layer (LPS, mm)
    air_mm = 470                 # air in front of the surface, inside the CT (energy loss in air)
    lateral_size_mm = [300, 300] # the two other axes, in x, y, z order
    voxel_mm = [4, 1, 4]         # dx, dy, dz
    ct_dir = "out/ct"            # optional: a NEW (or empty) folder for the DICOM series (else a temporary one)
"""
from __future__ import annotations

import dataclasses
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..materials import Material, get_material
from .dicom_common import StudyReference

AIR_HU = -1000
#: Most air in front of the slabs (mm): 5 m, beyond any beam model's source distance (0.5-3 m upstream).
MAX_AIR_MM = 5000.0
_AXES = {"+x": (0, 1), "-x": (0, -1), "+y": (1, 1), "-y": (1, -1), "+z": (2, 1), "-z": (2, -1)}


def _layer_tuple(layer) -> tuple[Material, float, float]:
    m = get_material(layer[0]) if isinstance(layer[0], str) else layer[0]
    t = float(layer[1])
    rho = float(layer[2]) if len(layer) > 2 and layer[2] is not None else float(m.density_g_cm3)
    if not (np.isfinite(t) and t > 0):
        raise ValueError(f"layer {m.name!r}: thickness {t} mm must be positive")
    if not (np.isfinite(rho) and 0 < rho <= 25):
        raise ValueError(f"layer {m.name!r}: density {rho} g/cm3 must lie in (0, 25]")
    return m, t, rho


def slab_calibration(pairs: Sequence[tuple[Material, float]], *, name: str = "slab_ct"):
    """The exact calibration for (material, density) pairs plus air.

    Returns ``(calibration, codes)`` with ``codes[i]`` the HU of ``pairs[i]``; HU -1000 is always air.
    """
    from .hu_calibration import HUCalibration

    air = get_material("air")
    uniq: list[tuple[Material, float]] = []
    for m, rho in pairs:
        if not any(u[0].name == m.name and abs(u[1] - rho) < 1e-9 for u in uniq):
            uniq.append((m, float(rho)))
    want = [int(np.clip(round(1000.0 * (rho - 1.0)), -999, 3000)) for _, rho in uniq]
    order = np.argsort(want, kind="stable")
    codes_u = [0] * len(uniq)
    last = AIR_HU
    for i in order:
        c = max(want[i], last + 1)
        codes_u[i] = c
        last = c
    entries = [(AIR_HU, air, float(air.density_g_cm3))] + sorted(
        ((codes_u[i], uniq[i][0], uniq[i][1]) for i in range(len(uniq))), key=lambda e: e[0])
    hu_pts, rho_pts, bins, mats = [], [], [], []
    names_seen: dict[str, int] = {}
    for code, m, rho in entries:
        hu_pts += [code - 0.4, code + 0.4]
        rho_pts += [rho, rho]
        bins.append(code - 0.5)
        nm = m.name
        if nm in names_seen:  # the same material at a second density: a distinct name
            nm = f"{m.name}_{rho:g}"
        names_seen[nm] = code
        mats.append(dataclasses.replace(m, name=nm, density_g_cm3=rho))
    cal = HUCalibration.from_points(hu_pts, rho_pts, bins, mats, name=name,
                                    source="exact slab calibration (mcproton._io.slab_ct)")
    lookup = {(m.name, round(rho, 9)): c for (m, rho), c in zip(uniq, codes_u)}
    return cal, [lookup[(m.name, round(float(rho), 9))] for m, rho in pairs]


@dataclasses.dataclass
class SlabCT:
    """HU volume (z, y, x) of a slab phantom in LPS with its grid and exact calibration."""

    hu_zyx: np.ndarray
    voxel_size_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    calibration: object
    layer_hu: list[int]
    surface_mm: tuple[float, float, float]
    depth_axis: str


def slab_ct(layers, *, surface_mm: Sequence[float] = (0.0, 0.0, 0.0), depth_axis: str = "+z",
            lateral_size_mm: Sequence[float] = (200.0, 200.0), voxel_mm: Sequence[float] | float = (2.0, 2.0, 1.0),
            air_mm: float = 0.0) -> SlabCT:
    """Build the HU volume of ``layers`` = [(material, thickness_mm[, density]), ...] stacked along
    ``depth_axis`` from ``surface_mm``, with ``air_mm`` of air in front (rounded to whole voxels).

    Layer thicknesses must be whole numbers of voxels along the depth axis, so that interfaces fall on voxel
    boundaries.  The lateral extent is centred on the surface point.
    """
    if depth_axis not in _AXES:
        raise ValueError(f"depth_axis {depth_axis!r} must be one of {', '.join(_AXES)}")
    k, sign = _AXES[depth_axis]
    vox = np.broadcast_to(np.asarray(voxel_mm, dtype=float), (3,)).copy()
    if np.any(~np.isfinite(vox)) or np.any(vox <= 0):
        raise ValueError(f"voxel_mm must be positive; got {voxel_mm}")
    surf = np.asarray(surface_mm, dtype=float)
    if surf.shape != (3,) or not np.all(np.isfinite(surf)):
        raise ValueError(f"surface_mm must be three finite numbers (x, y, z); got {surface_mm}")
    lat = np.asarray(lateral_size_mm, dtype=float)
    if lat.shape != (2,) or np.any(lat <= 0):
        raise ValueError(f"lateral_size_mm must be two positive numbers; got {lateral_size_mm}")
    if not layers:
        raise ValueError("a slab phantom needs at least one layer")
    lay = [_layer_tuple(L) for L in layers]
    n_layer = []
    for m, t, _ in lay:
        n = t / vox[k]
        if abs(n - round(n)) > 1e-6:
            raise ValueError(f"layer {m.name!r} thickness {t} mm is not a whole number of {vox[k]} mm voxels "
                             f"along {depth_axis}; change the thickness or voxel_mm")
        n_layer.append(int(round(n)))
    if not (np.isfinite(float(air_mm)) and 0.0 <= float(air_mm) <= MAX_AIR_MM):
        raise ValueError(f"air_mm = {air_mm:g} mm of air in front of the slabs: give 0 to {MAX_AIR_MM:g} mm (beam "
                         "models put their source plane 0.5-3 m upstream; the air between it and the surface is "
                         "what belongs in the CT)")
    n_air = int(round(float(air_mm) / vox[k]))
    cal, codes = slab_calibration([(m, rho) for m, _, rho in lay])
    depth_codes = np.array([AIR_HU] * n_air + [c for c, n in zip(codes, n_layer) for _ in range(n)], np.int16)
    n_depth = depth_codes.size
    if sign < 0:
        depth_codes = depth_codes[::-1]
    shape_xyz = [0, 0, 0]
    origin = [0.0, 0.0, 0.0]
    lat_axes = [a for a in range(3) if a != k]
    for a, size in zip(lat_axes, lat):
        n = max(1, int(round(size / vox[a])))
        shape_xyz[a] = n
        origin[a] = surf[a] - n * vox[a] / 2 + vox[a] / 2
    shape_xyz[k] = n_depth
    front = surf[k] - sign * n_air * vox[k]           # outer face of the first (air) voxel along the beam
    lower = front if sign > 0 else front - n_depth * vox[k]
    origin[k] = lower + vox[k] / 2
    bshape = [1, 1, 1]
    bshape[2 - k] = n_depth
    hu = np.broadcast_to(depth_codes.reshape(bshape), (shape_xyz[2], shape_xyz[1], shape_xyz[0])).copy()
    return SlabCT(hu, tuple(float(v) for v in vox), tuple(float(v) for v in origin), cal, codes,
                  tuple(float(v) for v in surf), depth_axis)


#: the SeriesDescription of the slab phantom's CT series
SERIES_DESCRIPTION = "mcproton slab phantom"


def earlier_slab_ct(folder: Path, s: "SlabCT", study: StudyReference | None = None) -> Any:
    """The CT series in ``folder`` when it is exactly the slab CT ``s`` (what :func:`slab_ct_geometry` writes for
    the same layers, voxels, size and calibration: every file of the folder a slice of one mcproton slab phantom
    series with the same Hounsfield units, voxel size and origin; the frame of reference of ``study`` if it names
    one), else None.  A run resumed from its checkpoint finds the CT it wrote itself (the long-runs audit, F3: its
    ct_dir was refused as not empty, so the run could never be resumed)."""
    from .ct import load_ct_series
    from .hu_calibration import calibration_note

    files = list(folder.iterdir())
    if not files or not all(f.is_file() for f in files):
        return None
    try:
        ct = load_ct_series(folder)
    except Exception:  # noqa: BLE001 - not a CT series (or not one we can read): not ours
        return None
    same = (ct.series_description == SERIES_DESCRIPTION
            and ct.image_comments == calibration_note(s.calibration.name)
            and len(ct.slice_sop_instance_uids) == len(files)
            and ct.hu_zyx.shape == s.hu_zyx.shape and np.array_equal(ct.hu_zyx, s.hu_zyx)
            and np.allclose(ct.voxel_size_mm, s.voxel_size_mm, rtol=0, atol=1e-4)
            and np.allclose(ct.origin_mm, s.origin_mm, rtol=0, atol=1e-3)
            and not (study is not None and study.frame_of_reference_uid
                     and study.frame_of_reference_uid != ct.frame_of_reference_uid))
    return ct if same else None


def slab_ct_geometry(layers, *, ct_dir: str | Path | None = None, study: StudyReference | None = None, **kw):
    """Write the slab phantom as a DICOM CT series (``ct_dir`` or a temporary folder), read it back with
    :func:`~mcproton._io.ct.load_ct_series` and convert it with the exact calibration: the same path as a
    patient CT.  Keyword arguments as :func:`slab_ct`; ``study`` the CT's patient, study, frame of reference
    and position (default a new phantom study, HFS).  The geometry's ``study`` holds the written CT's frame
    of reference (an RT Dose of it lies in that frame), and says that the CT was written for its plan
    (``written_for_plan``): a plan's setup positions are not checked against it, in ``simulate`` and
    ``sum_results`` as in ``mcproton run`` (the slabs lie in the plan's patient coordinates)."""
    from .ct import load_ct_series, write_ct_series
    from .hu_calibration import calibration_note

    s = slab_ct(layers, **kw)
    tmp = None
    ct = None
    if ct_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="mcproton_slab_ct_")
        out = Path(tmp.name)
    else:   # a new (or empty) folder: nothing that was there is ever overwritten or deleted
        out = Path(ct_dir)
        if out.exists() and not out.is_dir():
            raise ValueError(f"ct_dir {out} is a file; give the path of a new folder for the slab phantom's CT")
        if out.is_dir() and any(out.iterdir()):
            # the CT an earlier run of this config wrote there (the run being resumed): read back as it is
            ct = earlier_slab_ct(out, s, study)
            if ct is None:
                raise ValueError(f"ct_dir {out} already exists and is not empty, and it does not hold this phantom's "
                                 "slab CT (it may hold a patient's CT, or the slab CT of other layers, voxels or "
                                 "size): the slab phantom's CT series is written to a new folder and nothing is "
                                 "overwritten or deleted; give a new folder, or delete the old one yourself if it only "
                                 "holds an earlier slab CT")
            sys.stderr.write(f"mcproton: note: phantom.ct_dir {out} already holds this slab phantom's CT (written by "
                             "an earlier run of this phantom, e.g. the run being resumed): read back as it is, not "
                             "written again\n")
        else:
            out.mkdir(parents=True, exist_ok=True)
    try:
        if ct is None:
            # the CT names its calibration (ImageComments): read as phantom.type = "ct", it is refused
            write_ct_series(s.hu_zyx, s.voxel_size_mm, s.origin_mm, out, series_description=SERIES_DESCRIPTION,
                            study=study, image_comments=calibration_note(s.calibration.name))
            ct = load_ct_series(out)
    finally:
        if tmp is not None:
            tmp.cleanup()
    g = s.calibration.to_geometry(ct, compact=True, name="slab phantom CT")
    # written for its plan: the plan's setup positions are not checked against it (as mcproton run does not on a
    # slab_ct phantom; simulate warned that "the CT series has no PatientPosition", and sum_results refused a plan
    # whose beams are set up in different positions: review R2, R4 of 2026-12-06)
    g.study = StudyReference(frame_of_reference_uid=ct.frame_of_reference_uid, written_for_plan=True)
    return g
