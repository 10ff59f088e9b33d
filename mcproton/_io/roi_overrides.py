"""Material overrides of an RT Structure Set's ROIs, as planning systems store them, and their application to a
geometry made from a patient's CT.

A planning system computes the dose with the CT numbers of some ROIs replaced: a bolus or a couch added to the
image, dental fillings or contrast set to tissue, a phantom's body set to water.  It exports the replacement in the
RT Struct (PS3.3 C.8.8.8, RTROIObservationsSequence > ROIPhysicalPropertiesSequence):

* ``REL_MASS_DENSITY``: the mass density relative to water (g/cm3), RayStation writes it with the material's
  elemental composition (``ROIElementalCompositionSequence``, mass fractions by atomic number);
* ``REL_ELEC_DENSITY`` alone: the electron density relative to water; taken as water at a mass density equal to it
  (water has 3.343e23 electrons per gram; a tissue-like override differs from this by its Z/A, ~1 %).

Other properties (EFFECTIVE_Z, MEAN_EXCI_ENERGY, ...) come with these and are not needed: the material's
composition gives them.  A Monte Carlo check that ignored the overrides would recompute another patient than the
planning system did, so :func:`apply_overrides` puts them into the geometry: the EXTERNAL ROI first, the others
after it (an ROI inside the External wins, as in the planning systems), each at the geometry's voxels whose centre
lies inside (the rasteriser of :mod:`mcproton._io.rtstruct`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np


#: roi_overrides of the files read before, by rtstruct.file_key (a check asks for them up to three times, and a
#: clinical structure set takes ~0.5 s to parse)
_CACHE: dict[tuple, list[dict]] = {}


def roi_overrides(struct_path: str | Path) -> list[dict]:
    """The ROIs with a material override, External first: {"name", "number" (its ROI number, which a plan's
    ReferencedBolusSequence names), "type", "density_g_cm3", "composition"
    ({atomic number: mass fraction}), "property"} ("REL_MASS_DENSITY", or "REL_ELEC_DENSITY" when only that is
    given).  A file read before (same path, modification time and size) is not parsed again; each call returns
    its own copies (callers add to them)."""
    from .rtstruct import file_key

    key = file_key(struct_path)
    if key is None or key not in _CACHE:
        rois = _read_roi_overrides(struct_path)
        if key is None:
            return rois
        while len(_CACHE) >= 4:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = rois
    return [dict(r, composition=dict(r["composition"])) for r in _CACHE[key]]


def _read_roi_overrides(struct_path: str | Path) -> list[dict]:
    import pydicom

    from .rtstruct import read_rtstruct

    ds = pydicom.dcmread(struct_path, force=True)
    # the names read_rtstruct gives (a duplicate name made unique, an empty one "ROI_<n>"): the masks are looked up
    # by them, so the ROI's own number must lead to its own contours, never to another ROI of the same name
    names = {num: nm for nm, num in read_rtstruct(struct_path).roi_numbers.items()}
    out = []
    for o in ds.get("RTROIObservationsSequence", []) or []:
        rho, red, comp = None, None, {}
        for pp in o.get("ROIPhysicalPropertiesSequence", []) or []:
            prop = str(pp.get("ROIPhysicalProperty", "") or "")
            if prop == "REL_MASS_DENSITY":
                rho = float(pp.ROIPhysicalPropertyValue)
            elif prop == "REL_ELEC_DENSITY":
                red = float(pp.ROIPhysicalPropertyValue)
            for el in pp.get("ROIElementalCompositionSequence", []) or []:
                comp[int(el.ROIElementalCompositionAtomicNumber)] = float(el.ROIElementalCompositionAtomicMassFraction)
        if rho is None and red is None:
            continue
        value = rho if rho is not None else red
        if not (value is not None and math.isfinite(value) and 0 <= value <= 25):
            name = names.get(int(o.ReferencedROINumber), "?")
            raise ValueError(f"{struct_path}: ROI {name!r}: override {'REL_MASS_DENSITY' if rho is not None else ''}"
                             f"{'REL_ELEC_DENSITY' if rho is None else ''} {value} is not a density relative to "
                             "water (0-25); the structure set is damaged, export it again")
        out.append({"name": names.get(int(o.ReferencedROINumber), "?"), "number": int(o.ReferencedROINumber),
                    "density_g_cm3": float(value),
                    "composition": comp if rho is not None else {},
                    "property": "REL_MASS_DENSITY" if rho is not None else "REL_ELEC_DENSITY",
                    "type": str(o.get("RTROIInterpretedType", "") or "")})
    out.sort(key=lambda r: r["type"].upper() != "EXTERNAL")
    return out


def nearest_material(roi: dict):
    """The mcproton material whose composition is nearest (L1 of the mass fractions) to the ROI's; by name if the
    ROI gives no composition; water otherwise.  Returns (material, how it was chosen)."""
    from ..materials import ELEMENTS, UnknownMaterialError, get_material, list_materials

    if roi["composition"]:
        z_of = {sym: el.Z for sym, el in ELEMENTS.items()}
        best, best_d = None, math.inf
        for name in list_materials():
            if name == "air":
                continue
            m = get_material(name)
            mz: dict[int, float] = {}
            for sym, w in m.mass_fractions.items():
                z = z_of.get(sym, sym)
                mz[int(z)] = mz.get(int(z), 0.0) + w
            keys = set(mz) | set(roi["composition"])
            d = sum(abs(mz.get(k, 0.0) - roi["composition"].get(k, 0.0)) for k in keys)
            if d < best_d:
                best, best_d = m, d
        return best, f"nearest composition (L1 {best_d:.3f})"
    if roi.get("property") == "REL_ELEC_DENSITY":
        return get_material("water"), "water at the relative electron density (no composition given)"
    try:
        return get_material(roi["name"].lower()), "by name"
    except UnknownMaterialError:
        return get_material("water"), "water (no composition given)"


def _writable_arrays(geometry: Any) -> tuple[np.ndarray, np.ndarray]:
    """The geometry's material index (uint8) and density (float32) arrays, to be changed in place: on a CT's own
    voxels they are 1 + 4 bytes per voxel (262 MB for 512 x 512 x 200), which a copy would double.  Copied once
    (and the copies put into the geometry) only where they cannot be written as they are: read-only, of another
    type, not C-contiguous, or a view of an array that may be another's."""
    def own(a: Any, dtype: type) -> np.ndarray:
        if (isinstance(a, np.ndarray) and a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable
                and a.flags.owndata):
            return a
        return np.array(a, dtype=dtype, order="C")

    geometry.material_index_zyx = own(geometry.material_index_zyx, np.uint8)
    geometry.density_g_cm3_zyx = own(geometry.density_g_cm3_zyx, np.float32)
    return geometry.material_index_zyx, geometry.density_g_cm3_zyx


#: number of bits set in each byte value (the voxels of a mask packed 8 to a byte by np.packbits)
_BITS_IN_BYTE = np.array([bin(v).count("1") for v in range(256)], np.uint8)


def apply_overrides(geometry: Any, struct_path: str | Path, struct: Any = None) -> list[str]:
    """Put the structure set's material overrides (:func:`roi_overrides`) into ``geometry`` (in place): each
    override ROI's voxels take its material (:func:`nearest_material`) at its density, the External first.
    ``struct``: the structure set already read (:func:`~mcproton._io.rtstruct.read_rtstruct`), else it is read.
    Returns one note per ROI (what was set, and on how many voxels); [] when no ROI has an override.

    The geometry's own arrays are written (:func:`_writable_arrays`), and the ROIs' masks made one at a time and
    not kept (:func:`~mcproton._io.rtstruct.mask_unkept`): on a CT's own voxels the step holds the geometry, one
    mask and one bit per voxel for each override ROI that a later one may overlap (for the notes), whatever the
    number of ROIs (a 512 x 512 x 200 CT with five override ROIs: the geometry step peaked at 1.31 GB, now at the
    0.63-0.67 GB of its full-resolution geometry with no ROI at all; BENCHMARKS.md)."""
    from .rtstruct import mask_unkept, read_rtstruct

    rois = roi_overrides(struct_path)
    if not rois:
        return []
    s = struct if struct is not None else read_rtstruct(struct_path)
    mats = list(geometry.materials)
    chosen = [nearest_material(r) for r in rois]
    new = {id(m) for m, _ in chosen if not any(x is m for x in mats)}
    if len(mats) + len(new) <= 255:
        mi, rho = _writable_arrays(geometry)
    else:   # the 255 materials may be exceeded: refused below with the geometry as it was (copies written)
        mi, rho = np.array(geometry.material_index_zyx), np.array(geometry.density_g_cm3_zyx)
    notes = []
    # overlapping override ROIs (not the External, which the others lie in): the later one in the file wins, and
    # the note of the earlier one says so; their masks are kept packed, a bit per voxel, to find the overlaps
    packed: dict[int, np.ndarray] = {}
    overlaps_possible = sum(r["type"].upper() != "EXTERNAL" for r in rois) > 1
    any_set = False
    for i, (r, (m, why)) in enumerate(zip(rois, chosen)):
        mask = mask_unkept(s, geometry, r["name"])
        n = 0 if mask is None else int(np.count_nonzero(mask))
        notes.append(f"ROI {r['name']!r} ({r['type'] or 'no type'}): {r['property']} {r['density_g_cm3']:g} -> "
                     f"{m.name} at {r['density_g_cm3']:g} g/cm3 ({why}), {n} voxels"
                     + ("" if n else " (no voxel: contours outside the grid, or none)"))
        if mask is None or not n:
            del mask   # freed before the next ROI's is made
            continue
        k = next((j for j, x in enumerate(mats) if x is m), None)
        if k is None:
            if len(mats) >= 255:
                raise ValueError(f"{struct_path}: the overrides need more than 255 materials in the geometry")
            mats.append(m)
            k = len(mats) - 1
        mi[mask] = k
        rho[mask] = r["density_g_cm3"]
        any_set = True
        if overlaps_possible and r["type"].upper() != "EXTERNAL":
            packed[i] = np.packbits(mask, axis=None)
        del mask
    for i, r in enumerate(rois):
        if i not in packed:
            continue
        later = [j for j in range(i + 1, len(rois)) if j in packed and np.any(packed[i] & packed[j])]
        if later:
            union = np.bitwise_or.reduce([packed[j] for j in later]) if len(later) > 1 else packed[later[0]]
            lost = int(_BITS_IN_BYTE[packed[i] & union].sum(dtype=np.int64))
            notes[i] += (f"; {lost} of them overlap the later override ROI(s) "
                         f"{', '.join(repr(rois[j]['name']) for j in later)}, "
                         "whose material they take (the later one in the structure set wins)")
    geometry.materials = mats
    geometry.material_index_zyx = np.ascontiguousarray(mi, dtype=np.uint8)   # the same arrays where written in place
    geometry.density_g_cm3_zyx = np.ascontiguousarray(rho, dtype=np.float32)
    if any_set:
        geometry.tissue_heterogeneity = ("IMAGE", "ROI_OVERRIDE")   # what an RT Dose of it says it was computed with
    return notes


#: RTROIInterpretedType of the ROIs that planning systems count as part of the patient model although they lie
#: outside the External: the couch and immobilisation (SUPPORT, FIXATION) and a bolus (BOLUS) (PS3.3 C.8.8.8).
KEPT_OUTSIDE_EXTERNAL = ("SUPPORT", "FIXATION", "BOLUS")


def outside_external(geometry: Any, struct: Any, also_keep: Sequence[str] = ()
                     ) -> tuple[np.ndarray, str, list[str]] | None:
    """The voxels of ``geometry`` outside the structure set's EXTERNAL ROI, its SUPPORT / FIXATION / BOLUS ROIs
    (``KEPT_OUTSIDE_EXTERNAL``) and the ROIs named in ``also_keep`` (those whose material override was applied:
    the planning system put that material there): (mask, the External's name, the kept ROIs' names); None without
    an External ROI with contours."""
    from .rtstruct import mask_unkept

    ext = [nm for nm, t in struct.roi_types.items() if t.upper() == "EXTERNAL" and struct.contours.get(nm)]
    if not ext:
        return None
    kept = [nm for nm, t in struct.roi_types.items()
            if (t.upper() in KEPT_OUTSIDE_EXTERNAL or nm in also_keep) and nm != ext[0] and struct.contours.get(nm)]
    inside = np.zeros(tuple(int(n) for n in geometry.shape_zyx), bool)
    for nm in ext[:1] + kept:   # one mask at a time, not kept with the structure set (a byte per voxel each)
        mask = mask_unkept(struct, geometry, nm)
        if mask is not None:   # (every one has contours)
            inside |= mask
        del mask   # freed before the next is made
    return np.logical_not(inside, out=inside), ext[0], kept


def set_outside_to_air(geometry: Any, mask: np.ndarray) -> int:
    """Air (its nominal density) in the voxels of ``mask`` (in place); the number of voxels that held more than
    air-like material."""
    from ..materials import get_material

    air = get_material("air")
    mats = list(geometry.materials)
    k = next((i for i, m in enumerate(mats) if m.name == "air"), None)
    if k is None:
        if len(mats) >= 255:   # VoxelGeometry's limit (a uint8 index); appending would leave the geometry invalid
            raise ValueError("air outside the External needs a material more than the 255 a geometry may hold")
        mats.append(air)
        k = len(mats) - 1
    from .._run.inputs import AIR_LIKE_G_CM3   # what counts as air on a beam's way, the run's rule

    mi, rho = _writable_arrays(geometry)   # written in place: no copy of a CT's own voxels
    # counted slice by slice: no whole-grid temporary
    n = sum(int(np.count_nonzero(mask[z] & (rho[z] > AIR_LIKE_G_CM3))) for z in range(rho.shape[0]))
    mi[mask] = k
    rho[mask] = air.density_g_cm3
    geometry.materials = mats
    geometry.tissue_heterogeneity = ("IMAGE", "ROI_OVERRIDE")
    return n
