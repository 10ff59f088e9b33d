"""The body outline (external contour): no dose is reported outside the patient.

A Monte Carlo dose to medium in air is the energy deposited in a voxel divided by its tiny mass: large and noisy
(the DCPT plan02 example at 5x10^4 protons: 118.7 Gy in one air voxel 30 mm in front of the phantom, 10.8 Gy
at most in the phantom).  Treatment planning systems compute and report dose only inside an external contour
(the BODY / EXTERNAL ROI); mcproton does the same:

* **The outline.**  The ROI of the run's RT Structure Set whose RTROIInterpretedType is EXTERNAL, else the one
  named as :data:`BODY_NAMES` (case-insensitive), or the ROI named by ``output.body_outline``
  (:func:`choose_body_roi`: the same ROI is the External of ``plan.outside_external`` and of ``mcproton check``).
  Without an RT Struct (or without such a ROI) the outline is found from the CT: the voxels above -400 HU
  (:data:`AUTO_BODY_HU`; on the grid, mass density above that of -400 HU on the run's HU calibration, 0.619
  g/cm3 for schneider2000), their largest 3-D connected component, with the holes of every axial slice filled
  so that sinuses, mastoid air cells, airways and lungs enclosed by tissue stay inside.  The threshold lies
  between lung (about -700 to -900 HU) and fat (about -100 HU), like the defaults of open tools that do the same
  (matRad_generateBodyContour: -500 HU; the MD Anderson ``compute_external``: -250 HU); the planning
  systems' own body searches let the user set it.  On a grid of blocks of the CT (phantom.dose_voxel_mm) the
  outline is found on the CT's own voxels and a block is inside where any of its CT voxels is
  (:func:`auto_outline_on_blocks`: the blocks' mean density put the skin's blocks outside).  The paediatric
  phantom's body is its labelled voxels (every label but 0 = outside air); a slab-CT phantom's is its layers
  (every voxel of density >= 0.05 g/cm3).
  Water boxes and slab phantoms without air have no outline (the dose is reported everywhere, as before).
* **Outside** the outline the dose and the dose to water are 0 in the result, the HDF5 datasets ``dose`` and
  ``dose_to_water``, the RT Dose, the plots and the DVHs, and so are LET_d and the relative uncertainty (the
  values of no dose, as where nothing was deposited; before 2026-12-07 they were left as computed: then the run of
  a plan's beams and the sum of its beams' runs differed there, audit 26 interact, F4).  The HDF5 keeps the dose
  as computed in ``dose_raw`` and the outline in ``body_mask`` (attribute ``outline`` = what it is; also
  ``provenance["body_outline"]``).
* **Inside**, low-density voxels (sinuses, mastoid air cells, the airways of a child) keep the dose as
  computed, to medium or converted to water (``output.dose_to``), as planning systems report dose in every
  voxel inside the outline and Monte Carlo codes score it (MCsquare: dose to medium, optionally converted to
  water, Souris et al., Med Phys 43 (2016) 2447; TOPAS DoseToMedium / DoseToWater scorers; the medium/water
  question for protons: Paganetti, Phys Med Biol 54 (2009) 4399).  So that no summary figure is set by a few
  grams of air, the **maximum dose** of a summary is taken over the voxels inside the outline with mass density
  >= :data:`SUMMARY_MIN_DENSITY` (0.05 g/cm3, about -950 HU: air and air cells out, lung in; the same floor
  as the engine's 50 %-of-Dmax uncertainty figure, mcproton.run.UNCERTAINTY_MIN_DENSITY), and the summary also
  gives the near-maximum D0.03cc over the same voxels and D2% (ICRU Report 83 (2010): near-maximum D2%
  rather than a point maximum).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._io.errors import McprotonRuntimeWarning, warn

#: HU threshold of the automatic outline (see the module docstring).
AUTO_BODY_HU = -400.0
#: Mass density (g/cm3) below which a voxel inside the outline is left out of the summaries' maximum dose.
SUMMARY_MIN_DENSITY = 0.05
#: Volume (cm3) of the near-maximum dose D0.03cc in the summaries.
NEAR_MAX_VOLUME_CM3 = 0.03
#: The names (case-insensitive) of a body ROI: the body outline when no ROI is typed EXTERNAL, and the choice among
#: several EXTERNAL ROIs; one list for `mcproton run` and `mcproton check` (struct audit 14, F10: the check knew
#: only EXTERNAL / BODY / OUTLINE and compared a "Patient Outline" typed ORGAN as an organ).
BODY_NAMES = ("body", "external", "outline", "ext", "patient outline", "body outline")
_BODY_NAMES = BODY_NAMES
#: The name prefixes (upper-case) that make an ROI without a type, or typed ORGAN, a target (:func:`target_basis`).
TARGET_NAME_PREFIXES = ("PTV", "CTV", "GTV", "ITV")
#: The RTROIInterpretedType values a name prefix may promote to a target: none, or ORGAN (the default of many
#: contouring tools); a CONTROL, MARKER, AVOIDANCE, BOLUS, SUPPORT, FIXATION or EXTERNAL ROI is never one.
NAME_PROMOTED_TYPES = ("", "ORGAN")


def target_basis(name: str, roi_type: str | None) -> str | None:
    """Whether an ROI is a target, and why: "type" (RTROIInterpretedType PTV, CTV, GTV or ITV), "name" (no type or
    ORGAN, and the name starts with PTV / CTV / GTV / ITV: an ROI a contouring tool left typed ORGAN), else None.
    The type comes first: "PTV_flash" typed CONTROL (an optimisation helper that may reach beyond the skin),
    "PTVminusBrainstem" typed AVOIDANCE and "PTV_Marker" typed MARKER are not targets (struct audit 14, F4: the
    check judged them by the name alone).  One rule for `mcproton run` (the body outline's target check, the
    prescription check) and `mcproton check`."""
    from ._io.rtstruct import TARGET_TYPES

    t = str(roi_type or "").strip().upper()
    if t in TARGET_TYPES:
        return "type"
    if t in NAME_PROMOTED_TYPES and name.strip().upper().startswith(TARGET_NAME_PREFIXES):
        return "name"
    return None


def is_target(name: str, roi_type: str | None) -> bool:
    """Whether an ROI is a target (:func:`target_basis`)."""
    return target_basis(name, roi_type) is not None


def is_body_name(name: str) -> bool:
    """Whether ``name`` is one of :data:`BODY_NAMES` (case-insensitive)."""
    return name.strip().lower() in BODY_NAMES


@dataclass
class BodyOutline:
    """A body outline on a dose grid: ``mask`` (z, y, x) True inside; ``source`` says what it is (written to
    the HDF5 and the summary); ``kind`` is "rtstruct", "auto", "labels" or "slabs"."""

    mask: np.ndarray
    source: str
    kind: str

    @property
    def voxels(self) -> int:
        return int(np.count_nonzero(self.mask))


# --------------------------------------------------------------------------------------------- finding it
def external_roi_name(struct: Any, wanted: str | None = None, *, say: bool = True, strict: bool = False,
                      remedy: str = "set output.body_outline to the ROI's name") -> str | None:
    """The name of the body ROI of an RT Structure Set (:class:`mcproton._io.rtstruct.RTStruct`) among its ROIs
    with contours: :func:`choose_body_roi`."""
    names = [n for n, c in struct.contours.items() if c]
    return choose_body_roi(names, struct.roi_types, wanted, where=str(struct.path or ""), say=say, strict=strict,
                           remedy=remedy)


def choose_body_roi(names: Sequence[str], types: Mapping[str, str], wanted: str | None = None, *, where: str = "",
                    say: bool = True, strict: bool = False,
                    remedy: str = "set output.body_outline to the ROI's name") -> str | None:
    """The body ROI among ``names`` (``types``: their RTROIInterpretedType): ``wanted`` (the ROI of exactly that name,
    else the one ROI of that name in another case, with a warning; an error listing the ROIs if absent, or those
    that differ in case only if several do), else the ROI typed EXTERNAL, else one named as :data:`BODY_NAMES`; None
    if there is none.  The one rule of every use of the body ROI: the run's body outline, the geometry's "outside the
    External" (air, or the notes of CT material there), the check's body outline (struct audit 14, F1: three rules
    in three places turned half a head into air with one External while the dose was reported in another).

    Several EXTERNAL ROIs (merged structure sets, a kept "External_old"): the one named as BODY_NAMES, else the
    first, with a warning naming them (``say``); ``strict`` (air outside the External: the wrong choice changes
    the dose) refuses them unless exactly one is so named (a ValueError naming them and, ``remedy``, what to do).
    ``say`` and ``strict`` take True or False only (text such as "false" is refused: it would read as true)."""
    from .settings import _switch

    say, strict = _switch("choose_body_roi say", say), _switch("choose_body_roi strict", strict)
    names = list(names)
    if wanted:   # the exact name; else a match ignoring case only where it is the one such ROI (strings audit
        # 19, F3: the first case-insensitive match was taken, so "BODY" used the ROI "body" beside the ROI "BODY")
        if wanted in names:
            return wanted
        alike = [n for n in names if n.casefold() == wanted.casefold()]
        if len(alike) > 1:
            raise ValueError(f"output.body_outline = {wanted!r}: the RT Structure Set {where} has no ROI of exactly "
                             f"that name but {len(alike)} that differ from it in case only "
                             f"({', '.join(map(repr, alike))}), "
                             "so which one is meant is not clear: give one of them exactly as written")
        if alike:
            if say:
                warn(f"output.body_outline = {wanted!r}: no ROI of exactly that name; the ROI {alike[0]!r}, which "
                     "differs from it in case only, is used as the body outline", McprotonRuntimeWarning,
                     stacklevel=3)
            return alike[0]
        raise ValueError(f"output.body_outline = {wanted!r}: the RT Structure Set {where} has no ROI "
                         f"of that name with contours (ROIs: {', '.join(names) or 'none'}); give one of them, "
                         "\"auto\" or \"none\"")
    ext = [n for n in names if str(types.get(n, "") or "").upper() == "EXTERNAL"]
    if len(ext) > 1:
        named = [n for n in ext if is_body_name(n)]
        listed = ", ".join(repr(n) for n in ext)
        if strict and len(named) != 1:
            raise ValueError(f"the RT Structure Set has {len(ext)} EXTERNAL ROIs ({listed}) and "
                             + ("none" if not named else f"{len(named)}") + " of them is named as the body "
                             f"({', '.join(BODY_NAMES)}), so which one is the patient's outline is not clear, and "
                             "the material outside it is set to air: rename or remove the others in the structure "
                             f"set, or {remedy}")
        pick = named[0] if named else ext[0]
        if say:
            warn(f"the RT Structure Set has {len(ext)} EXTERNAL ROIs ({listed}); {pick!r} is used as the body "
                 f"outline and as the External ({'its name' if named else 'the first in the file'}); to choose "
                 f"another, {remedy}", McprotonRuntimeWarning, stacklevel=3)
        return pick
    if ext:
        return ext[0]
    for n in names:
        if is_body_name(n):
            return n
    return None


def body_roi_wanted(cfg: dict) -> str | None:
    """The body ROI named by a run config's ``output.body_outline`` (None for "auto", "ct", "none")."""
    choice = str(cfg.get("output", {}).get("body_outline", "auto"))
    return None if choice.lower() in ("auto", "ct", "none") else choice


def body_from_rtstruct(struct: Any, geometry: Any, wanted: str | None = None) -> BodyOutline | None:
    """The body ROI of an RT Structure Set (path or RTStruct) rasterised on ``geometry``; None without one."""
    from ._io.rtstruct import RTStruct, rasterise, read_rtstruct

    s = struct if isinstance(struct, RTStruct) else read_rtstruct(struct)
    name = external_roi_name(s, wanted)
    if name is None:
        return None
    mask = rasterise(s, geometry, names=[name])[name]
    if not mask.any():
        raise ValueError(f"the body ROI {name!r} of the RT Structure Set {s.path} covers no voxel of the dose grid "
                         "(a structure set of another CT?); check the files, or set output.body_outline = \"auto\" "
                         "(from the CT) or \"none\"")
    warn_body_slices_missing(mask, geometry, name, s.path)
    typ = s.roi_types.get(name, "") or "no type"
    targets = [n for n in s.contours if n != name and s.contours[n] and is_target(n, s.roi_types.get(n))]
    if targets:
        tmasks = rasterise(s, geometry, names=targets)
        check_targets_inside(mask, tmasks, dict(s.roi_types),
                             f"RT Struct ROI {name!r} ({typ})", ValueError,
                             "check the structure set's ROI types (RTROIInterpretedType EXTERNAL), or set "
                             "output.body_outline to the body ROI's name, \"ct\" (from the CT) or \"none\"")
        warn_targets_partly_outside(mask, tmasks, f"RT Struct ROI {name!r}")
    return BodyOutline(mask, f"RT Struct ROI {name!r} ({typ})", "rtstruct")


#: what :func:`warn_body_slices_missing` says of the slices outside the body for ``mcproton run``, and what to do
RUN_SLICES_OUTSIDE = "their dose is set to 0 (and plan.outside_external = \"air\" makes them air)"
RUN_SLICES_REMEDY = ("contour the body on every CT slice in the planning system, or set output.body_outline = \"ct\" "
                     "(the outline found on the CT) and plan.outside_external = \"ct\"")
#: the same where plan.outside_external = "air" makes those slices air and the body outline is not the RT Struct's
#: (output.body_outline "ct" / "none": mcproton.config warns before the transport)
RUN_AIR_SLICES_OUTSIDE = ("plan.outside_external = \"air\" makes the patient's material on those CT slices air "
                          "(slabs of air across the patient, which the beams cross: the dose beyond them is not the "
                          "patient's)")
RUN_AIR_SLICES_REMEDY = ("contour the body on every CT slice in the planning system, or set plan.outside_external = "
                         "\"ct\" (the CT as it is outside the External)")


def warn_body_slices_missing(mask: np.ndarray, geometry: Any, name: str, where: str, *,
                             outcome: str = RUN_SLICES_OUTSIDE, remedy: str = RUN_SLICES_REMEDY,
                             stacklevel: int = 3) -> int:
    """Warn where the body ROI's mask ``mask`` (on ``geometry``'s grid) has slices without a voxel between its first
    and last: each contour plane stands for its own CT slice (:func:`mcproton._io.rtstruct.rasterise`), so a body
    contoured on every other slice, or with a slice left out, leaves those slices outside the body outline, where
    the dose is set to 0 (round-trip audit 23, F2: before, an ROI whose planes lay further apart than the CT's
    slices filled the slices between them).  ``outcome``: what becomes of those slices, ``remedy``: what to do
    (default ``mcproton run``'s; ``mcproton check`` says its own: its body outline, and the air of
    ``--outside-external air``).  Returns the number of such slices (0: nothing said)."""
    on = np.asarray(np.asarray(mask).any(axis=(1, 2)), bool)   # per slice: any voxel of the body
    k = np.flatnonzero(on)
    if k.size < 2:
        return 0
    gap = k[0] + np.flatnonzero(~on[k[0]:k[-1] + 1])
    if not gap.size:
        return 0
    z = float(geometry.origin_mm[2]) + float(geometry.voxel_size_mm[2]) * gap
    zs = ", ".join(f"{v:g}" for v in z[:8]) + (" ..." if z.size > 8 else "")
    warn(f"the body ROI {name!r} of the RT Structure Set {where} has no contour on {gap.size} of the grid's slices "
         f"between its first and last (z = {zs} mm): a contour stands for its own CT slice, so those slices lie "
         f"outside the body outline: {outcome}; {remedy}", McprotonRuntimeWarning, stacklevel=stacklevel)
    return int(gap.size)


#: Share of a target's voxels outside the body outline above which `mcproton run` warns that its DVH metrics hold
#: zeros (1 %: below it D98 and D95 are untouched and the mean is lowered by less than 1 %).
TARGET_OUTSIDE_WARN = 0.01


def target_outside_shares(body: np.ndarray, masks: Mapping[str, np.ndarray]) -> dict[str, float]:
    """The share of each non-empty mask of ``masks`` outside ``body`` (same grid), for those with any voxel out."""
    inside = np.asarray(body, bool)
    out = {}
    for nm, m in masks.items():
        n = int(np.count_nonzero(m))
        k = int(np.count_nonzero(m & ~inside)) if n else 0
        if k:
            out[nm] = k / n
    return out


def warn_targets_partly_outside(body: np.ndarray, masks: Mapping[str, np.ndarray], body_name: str) -> None:
    """Warn of each target of ``masks`` with more than TARGET_OUTSIDE_WARN of its voxels outside the body outline:
    the dose there is set to 0, so its DVH metrics in the HDF5 (dvh/<ROI>: D98, D95, mean) are of a dose that is 0
    on that part (struct audit 14, F3: a PTV 8.8 % beyond the skin got D95 = 0 with nothing said)."""
    for nm, f in target_outside_shares(body, masks).items():
        if f > TARGET_OUTSIDE_WARN:
            warn(f"target {nm!r}: {100 * f:.1f} % of its volume lies outside the body outline ({body_name}), where "
                 "the dose is set to 0: its DVH metrics (dvh/ in the HDF5: D98, D95, mean) include those zeros; "
                 "crop the target to the body (a PTV_eval) for its coverage, or check the body outline",
                 McprotonRuntimeWarning, stacklevel=2)


#: A body outline that leaves more than this share of every target outside is not the body (an ROI typed EXTERNAL
#: by mistake, contours in other units): the dose outside it is set to 0 (mcproton run) or not compared (mcproton
#: check), so the targets would get none
MAX_TARGET_OUTSIDE_BODY = 0.5


def check_targets_inside(body: np.ndarray, masks: dict[str, np.ndarray], types: dict[str, str], body_name: str,
                         error: type[Exception], fix: str) -> None:
    """Raise ``error`` when every target ROI of ``masks`` (on the body's grid) lies more than
    MAX_TARGET_OUTSIDE_BODY outside the body outline ``body`` (``body_name`` says what it is; ``fix`` what to do).
    The targets are those of :func:`target_basis` (typed PTV, CTV, GTV or ITV; untyped or ORGAN with such a name
    prefix): a helper ROI named "PTV_flash" and typed CONTROL, which may reach beyond the skin, is not one.  A
    helper's audit (2026-12-05) typed the brainstem EXTERNAL and the body ORGAN: the run set the dose to 0
    everywhere outside the brainstem, the target's too, and blamed the beam model."""
    inside = np.asarray(body, bool)
    share = {}
    for name, m in masks.items():
        n = int(np.count_nonzero(m))
        if is_target(name, types.get(name)) and n:
            share[name] = int(np.count_nonzero(m & ~inside)) / n
    if share and all(f > MAX_TARGET_OUTSIDE_BODY for f in share.values()):
        what = ", ".join(f"{100 * f:.0f} % of {name!r} ({types.get(name)})" for name, f in share.items())
        raise error(f"the target(s) lie outside the body outline ({body_name}): {what}; the dose outside the body "
                    f"outline is not kept, so the targets would get none; is that ROI the body? {fix}")


def _label(above: np.ndarray) -> tuple[np.ndarray, int]:
    """``scipy.ndimage.label`` of ``above`` (faces connected) into 16-bit labels where they suffice (a CT's
    threshold has far fewer than 65535 parts), else 32-bit: 2 bytes per voxel rather than 4 (a 512 x 512 x 400 CT:
    210 MB rather than 420 MB)."""
    from scipy import ndimage

    try:
        return ndimage.label(above, output=np.uint16)
    except RuntimeError:   # "insufficient bit-depth in requested output type": more than 65535 parts
        return ndimage.label(above, output=np.int32)


def outline_from_threshold(above: np.ndarray, *, overwrite: bool = False) -> np.ndarray:
    """The largest 3-D connected component (faces connected) of ``above`` (z, y, x), with the holes of every
    axial slice filled.  Beyond ``above`` and the result (a byte per voxel each), the labels (2 bytes per voxel
    where they fit) and one slice's temporaries: the sizes of the parts are counted slice by slice (a bincount of
    the whole grid's labels made an 8-byte copy of them).  ``overwrite``: a boolean ``above`` becomes the result
    (a byte per voxel less: a CT's own voxels, :func:`auto_outline_on_blocks`)."""
    from scipy import ndimage

    given = above
    above = np.asarray(above, bool)
    if not above.any():
        return above.copy()
    lab, n = _label(above)
    mask = above if overwrite and above is given else np.empty(above.shape, bool)
    if n > 1:
        sizes = np.zeros(n + 1, np.int64)
        for k in range(lab.shape[0]):
            sizes += np.bincount(lab[k].ravel(), minlength=n + 1)
        sizes[0] = 0
        np.equal(lab, int(np.argmax(sizes)), out=mask)
    else:
        np.greater(lab, 0, out=mask)
    del lab
    for k in range(mask.shape[0]):
        if mask[k].any():
            mask[k] = ndimage.binary_fill_holes(mask[k])
    return mask


def body_from_ct(density_g_cm3_zyx: np.ndarray, threshold_g_cm3: float, source: str) -> BodyOutline | None:
    """The automatic outline (module docstring) from the grid's mass densities; None if no voxel is above."""
    mask = outline_from_threshold(np.asarray(density_g_cm3_zyx) > threshold_g_cm3)
    if not mask.any():
        return None
    return BodyOutline(mask, source, "auto")


def auto_threshold_density(calibration: Any) -> tuple[float, str]:
    """The mass density (g/cm3) of :data:`AUTO_BODY_HU` on an HU calibration, and the outline's description."""
    rho = float(np.asarray(calibration.density_from_hu(np.array([AUTO_BODY_HU])))[0])
    return rho, f"auto, HU > {AUTO_BODY_HU:g} (density > {rho:.3f} g/cm3 on {calibration.name})"


#: How a block of CT voxels (phantom.dose_voxel_mm) is judged against the automatic outline, said in its source.
AUTO_BLOCK_RULE = "found on the CT's own voxels; a dose block is inside where any of its CT voxels is"


def auto_outline_on_blocks(shape_zyx: Sequence[int], factors: Sequence[int],
                           density_of: Callable[[slice], np.ndarray], threshold_g_cm3: float) -> np.ndarray:
    """The automatic outline (module docstring) found on a CT's own voxels (``shape_zyx``; ``density_of(z_slice)``
    their density: the calibration's density of the HU, or the geometry on the CT's voxels after the structure
    set's overrides) and put on the grid of blocks of ``factors`` = (fx, fy, fz) CT voxels (as
    :func:`mcproton.geometry.resample_blocks` makes it, the far ends padded): a block is inside where **any** of its
    CT voxels is.  Returns the (z, y, x) mask of blocks (all False where no voxel is above the threshold).

    Thresholding the blocks' own mean density (what ``mcproton run`` did before 2026-12-06) put a block half skin,
    half air (mean density about 0.5 g/cm3, below the 0.619 of -400 HU) outside, so its dose was set to 0: on a
    posterior CSI field on 6 mm blocks of a 3 mm CT, 1227 blocks holding tissue read 0, up to 44 % of the maximum
    dose (CSI audit 22, F3).  A block's centre voxel alone (the rule of an RT Struct External, rasterised by the
    block's centre, :func:`mcproton._io.rtstruct.rasterise`: on that CT it gives the External's blocks exactly)
    still left 807 blocks holding tissue outside, up to 27 % of the maximum, wherever the skin lies in the half of
    a block away from its centre (for 2 voxels a side the centre is a corner, which the half-open rule gives to the
    lower voxel).  A block that holds
    any patient voxel has a dose to the patient's tissue (its material is the one holding most of its mass,
    :func:`~mcproton.geometry.resample_blocks`), so it is kept; the outline then reaches up to a block beyond the
    skin (its volume on blocks is that of whole blocks).

    Memory: the threshold is made slab by slab (one slab's densities at a time, no float copy of the CT), so beyond
    the result only a byte per CT voxel for the threshold, which becomes the outline, and the labels of
    :func:`outline_from_threshold` (2 bytes per voxel): 3 bytes per CT voxel at the peak, 315 MB for 512 x 512 x
    400."""
    from .geometry import _block_view, block_factors

    f = block_factors(factors)
    nz = int(shape_zyx[0])
    above = np.empty(tuple(int(v) for v in shape_zyx), bool)
    plane = int(shape_zyx[1]) * int(shape_zyx[2])
    step = max(1, int(4e6 // max(1, plane * f[2]))) * f[2]   # whole blocks of slices, ~4 M CT voxels a slab
    for z0 in range(0, nz, step):
        s = slice(z0, min(nz, z0 + step))
        above[s] = np.asarray(density_of(s)) > threshold_g_cm3
    mask = outline_from_threshold(above, overwrite=True)
    del above
    return np.concatenate([_block_view(mask[z0:z0 + step], f).any(axis=(1, 3, 5)) for z0 in range(0, nz, step)])


def auto_outline_wanted(cfg: dict) -> bool:
    """Whether ``mcproton run``'s body outline of a CT config (:func:`body_outline_for`) is the automatic one:
    output.body_outline "ct", or "auto" without a plan.rtstruct or with one that has no body ROI; False for "none"
    and an ROI name (and where the structure set cannot be read: refused later with its own message)."""
    choice = str(cfg.get("output", {}).get("body_outline", "auto")).lower()
    rts = cfg.get("plan", {}).get("rtstruct")
    if choice == "ct" or (choice == "auto" and not rts):
        return True
    if choice != "auto" or not isinstance(rts, str):
        return False
    from ._io.rtstruct import read_rtstruct
    from .config import _resolve

    try:
        return external_roi_name(read_rtstruct(_resolve(cfg, rts)), None, say=False) is None
    except (ValueError, OSError):
        return False


def auto_body_outline(geometry: Any, calibration: Any, ct: Any = None) -> BodyOutline | None:
    """The automatic outline of ``mcproton run`` (module docstring) of a grid made from a CT by ``calibration``
    (``HUCalibration.to_geometry``), for a script: ``apply_body_outline(res, auto_body_outline(res.geometry,
    cal))`` zeroes the dose in the air around the patient as ``mcproton run`` does.  None if no voxel is above.
    A grid of blocks of the CT (``to_geometry(ct, blocks=...)``): give ``ct`` too, and the outline is found on the
    CT's own voxels, a block inside where any of its voxels is, as ``mcproton run`` does
    (:func:`auto_outline_on_blocks`); without it, the blocks' mean density is thresholded, which leaves out the
    blocks straddling the skin."""
    rho, source = auto_threshold_density(calibration)
    vs_ct = None if ct is None else np.asarray(ct.voxel_size_mm, float)
    if vs_ct is None or np.allclose(vs_ct, np.asarray(geometry.voxel_size_mm, float)):
        return body_from_ct(geometry.density_g_cm3_zyx, rho, source)
    factors = [int(round(g / c)) for g, c in zip(geometry.voxel_size_mm, vs_ct)]
    hu = ct.hu_zyx
    mask = auto_outline_on_blocks(hu.shape, factors, lambda s: calibration.density_from_hu(hu[s]), rho)
    if mask.shape != tuple(geometry.shape_zyx):
        raise ValueError(f"the geometry ({geometry.shape_zyx}, {geometry.voxel_size_mm} mm) is not a grid of blocks "
                         f"of the CT given ({hu.shape}, {tuple(vs_ct)} mm): give the CT it was made from")
    return BodyOutline(mask, f"{source}, {AUTO_BLOCK_RULE}", "auto") if mask.any() else None


def body_from_labels(labels_zyx: np.ndarray) -> BodyOutline:
    """A labelled phantom's body: every voxel with a label (0 = outside air)."""
    return BodyOutline(np.asarray(labels_zyx) != 0, "phantom labels (every label but 0 = outside air)", "labels")


def _hu_threshold_density(cfg: dict) -> tuple[float, str]:
    from .config import _resolve
    from .dicom import HUCalibration

    cal = cfg.get("phantom", {}).get("calibration", "schneider2000")
    p = _resolve(cfg, cal)
    calib = HUCalibration.load_for_physics(p if p.exists() else cal, cfg.get("physics"))
    return auto_threshold_density(calib)


def body_outline_for(cfg: dict, geometry: Any) -> BodyOutline | None:
    """The body outline of a ``mcproton run`` config (``output.body_outline``: "auto" (default), "none",
    "ct" (from the CT even with an RT Struct) or an ROI name of ``plan.rtstruct``); None for phantoms without
    an outline (water/box/slabs) and with "none"."""
    choice = str(cfg.get("output", {}).get("body_outline", "auto"))
    kind = cfg.get("phantom", {}).get("type", "water")
    if choice.lower() == "none":
        return None
    rts = cfg.get("plan", {}).get("rtstruct")
    if choice.lower() not in ("auto", "ct") and not rts:
        raise ValueError(f"output.body_outline = {choice!r} names an ROI but there is no plan.rtstruct; give "
                         "the RT Structure Set, or use \"auto\" or \"none\"")
    out = None
    if rts and choice.lower() != "ct":
        from .config import _resolve

        out = body_from_rtstruct(_resolve(cfg, rts), geometry, None if choice.lower() == "auto" else choice)
    if out is not None:
        return out
    why = " (the RT Struct has no EXTERNAL / BODY ROI with contours)" if rts and choice.lower() != "ct" else ""
    labels = getattr(geometry, "labels_zyx", None)
    if kind == "paediatric" and labels is not None:
        out = body_from_labels(labels)
        out.source += why
        return out
    if kind == "slab_ct":
        mask = np.asarray(geometry.density_g_cm3_zyx) >= SUMMARY_MIN_DENSITY
        return BodyOutline(mask, f"slab phantom layers (density >= {SUMMARY_MIN_DENSITY:g} g/cm3; the air in "
                                 f"front left out){why}", "slabs") if mask.any() else None
    if kind == "ct":
        rho, src = _hu_threshold_density(cfg)
        on_ct = getattr(geometry, "auto_body_zyx", None)   # a grid of blocks: found on the CT's voxels (config)
        if on_ct is not None and tuple(on_ct.shape) == tuple(geometry.shape_zyx):
            mask = np.array(on_ct, bool)
            out = BodyOutline(mask, f"{src}, {AUTO_BLOCK_RULE}{why}", "auto") if mask.any() else None
        else:
            out = body_from_ct(geometry.density_g_cm3_zyx, rho, src + why)
        if out is None:
            warn(f"no CT voxel above {AUTO_BODY_HU:g} HU: no body outline found, the dose is reported "
                 "everywhere", McprotonRuntimeWarning, stacklevel=2)
        elif rts:   # the structure set's targets against an outline of the CT
            from ._io.rtstruct import rasterise, read_rtstruct
            from .config import _resolve

            s = read_rtstruct(_resolve(cfg, rts))
            targets = [n for n, c in s.contours.items() if c and is_target(n, s.roi_types.get(n))]
            if targets:
                warn_targets_partly_outside(out.mask, rasterise(s, geometry, names=targets), "from the CT")
        return out
    return None


# --------------------------------------------------------------------------------------------- applying it
#: the ``description`` of the HDF5 dataset ``dose_raw``
DOSE_RAW_DESCRIPTION = ("dose to medium as computed, before the body outline, stored as float32: inside body_mask "
                        "dose_raw is the dose dataset (float64) rounded to float32 (dose.astype(float32) == dose_raw "
                        "there), outside it the dose is 0 and dose_raw the dose computed there (in air: energy over "
                        "a tiny mass, large and noisy; no uncertainty or LETd is kept of it)")


def apply_body_outline(result: Any, outline: BodyOutline | None) -> Any:
    """Zero the dose, dose to water, LET_d and relative uncertainty of ``result`` outside ``outline`` (in place;
    returns ``result``): every grid as where no dose was deposited, so that the run of a plan's beams is, outside the
    outline too, the sum of its beams' runs (``sum_results``; before 2026-12-07 LET_d and the uncertainty were left
    as computed there, audit 26 interact, F4).  The dose as computed is kept (float32) as
    ``result.dose_raw_gy_zyx`` and, with the mask, handed to the HDF5 writer (``result.extra_datasets``:
    ``dose_raw``, in the dose's unit, :data:`DOSE_RAW_DESCRIPTION`; ``body_mask``); the 50 %-of-Dmax uncertainty
    figure is recomputed inside the outline.  ``outline`` None: nothing changes."""
    if outline is None:
        return result
    from .run import mean_uncertainty_above_half_max

    m = np.asarray(outline.mask, bool)
    if m.shape != result.dose_gy_zyx.shape:
        raise ValueError(f"body outline shape {m.shape} differs from the dose grid {result.dose_gy_zyx.shape}")
    # in place, keeping only a float32 copy of the raw dose: a patient grid has tens of millions of voxels
    raw = np.asarray(result.dose_gy_zyx, np.float32).copy()
    result.dose_raw_gy_zyx = raw
    outside = ~m
    for name in ("dose_gy_zyx", "dose_to_water_gy_zyx", "let_d_kev_um_zyx", "uncertainty_rel_zyx",
                 "let_d_uncertainty_rel_zyx"):
        if getattr(result, name, None) is None:   # a result without the LETd's uncertainty
            continue
        arr = np.asarray(getattr(result, name))
        if not arr.flags.writeable:
            arr = arr.copy()
        np.copyto(arr, 0.0, where=outside)   # arr[outside] = 0.0 without the index arrays
        setattr(result, name, arr)
    del outside
    result.mean_rel_uncertainty_50 = mean_uncertainty_above_half_max(result.dose_gy_zyx, result.uncertainty_rel_zyx,
                                                                     result.geometry.density_g_cm3_zyx)
    result.body_outline = outline
    result.provenance["body_outline"] = outline.source
    keep_outline_datasets(result, m, outline.source, raw)
    return result


def keep_outline_datasets(result: Any, mask: np.ndarray, source: str, raw: np.ndarray | None) -> None:
    """Hand a result's body outline (``mask``, what it is: ``source``) and its dose as computed (``raw``, float32;
    None: not kept) to the HDF5 writer: ``result.extra_datasets`` ``body_mask`` and ``dose_raw``
    (:func:`apply_body_outline`; a sum of results of one outline, ``mcproton.run.sum_results``)."""
    from ._io.hdf5 import dose_unit

    extra = dict(getattr(result, "extra_datasets", None) or {})
    if raw is not None:
        # the unit of the dose it was (Gy per primary for a beam without total_protons: it said "Gy" whatever the
        # dose was) and what it holds to the bit (float32: the dose rounded; audit 26 h5schema, F3)
        extra["dose_raw"] = (raw, {"unit": dose_unit(result), "axes": "zyx", "description": DOSE_RAW_DESCRIPTION})
    extra["body_mask"] = (np.asarray(mask, bool).astype(np.uint8), {"axes": "zyx", "outline": source,
                                                                    "description": "1 inside the body outline"})
    result.extra_datasets = extra


def mask_outside(dose: np.ndarray, outline: BodyOutline | None) -> np.ndarray:
    """``dose`` with 0 outside ``outline`` (unchanged if None)."""
    return dose if outline is None else np.where(outline.mask, dose, 0.0)


def _first_voxel(dose: np.ndarray, sel: np.ndarray, value: float) -> int:
    """Flat index of the first voxel (C order) with ``sel`` and ``dose == value`` (-1 if none), slice by slice:
    no whole-grid temporary."""
    for z in range(dose.shape[0]):
        hit = np.flatnonzero((dose[z] == value) & sel[z])
        if hit.size:
            return z * dose[z].size + int(hit[0])
    return -1


def _max_where(arr: np.ndarray, where: np.ndarray) -> float:
    """The maximum of ``arr`` over ``where`` (not empty), without copying the selected voxels."""
    return float(np.max(arr, where=where, initial=-np.inf))


def dose_summary(result: Any, outline: BodyOutline | None = None) -> dict[str, Any]:
    """The summary figures of a result's dose (module docstring): maximum over the voxels inside the outline
    with density >= SUMMARY_MIN_DENSITY and where it is (mm, patient frame), D0.03cc and D2% over the same
    voxels, and what the outline removed.  The selected voxels are copied once (the body, not the grid), both
    near-maxima come from one partition of them: the same numbers as dvh.dose_at_volume(_cm3)."""
    from .dvh import _rank_cm3, _rank_percent

    g = result.geometry
    dose = np.asarray(result.dose_gy_zyx)
    rho = np.asarray(g.density_g_cm3_zyx).reshape(dose.shape)
    sel = rho >= SUMMARY_MIN_DENSITY
    if outline is not None:
        sel &= outline.mask
    out: dict[str, Any] = {}
    if not sel.any():
        return {"max_dose_gy": float(dose.max()), "max_dose_rule": "no voxel of tissue density: maximum of the grid"}
    d = np.asarray(dose[sel], np.float64)
    top = d.max()
    # the voxel np.argmax(np.where(sel, dose, -1.0)) finds: the first selected one holding the maximum
    flat = _first_voxel(dose, sel, top) if top >= -1.0 else -1
    if flat < 0:   # NaN in the dose: the old way, whole grid
        flat = int(np.argmax(np.where(sel, dose, -1.0)))
    idx = np.unravel_index(flat, dose.shape)
    pos = [float(g.origin_mm[a] + g.voxel_size_mm[a] * idx[2 - a]) for a in range(3)]
    out["max_dose_gy"] = float(dose[idx])
    out["max_dose_at_mm"] = [round(v, 2) for v in pos]
    out["max_dose_voxel_density_g_cm3"] = round(float(rho[idx]), 4)
    # D_V: the dose of voxel number n in descending order (mcproton/dvh.py dose_at_volume_cm3, dose_at_volume)
    n_cc = _rank_cm3(d.size, NEAR_MAX_VOLUME_CM3, g.voxel_volume_cm3)
    n_2 = _rank_percent(d.size, 2.0)
    part = np.partition(d, sorted({d.size - n_cc, d.size - n_2}))
    out["d0.03cc_gy"] = float(part[d.size - n_cc])
    out["d2_gy"] = float(part[d.size - n_2])
    del d, part
    where = "inside the body outline" if outline is not None else "in the grid"
    out["max_dose_rule"] = (f"of the HDF5 'dose' dataset (physical dose to medium, as simulated: not the RT Dose's "
                            f"RBE, water or fractions), over the voxels {where} with density >= "
                            f"{SUMMARY_MIN_DENSITY:g} g/cm3 (air and air cells left out; D0.03cc and D2% over the "
                            "same voxels)")
    if outline is not None:
        out["body_outline"] = outline.source
        out["body_volume_cm3"] = round(outline.voxels * g.voxel_volume_cm3, 2)
        raw = np.asarray(getattr(result, "dose_raw_gy_zyx", dose))
        outside = ~outline.mask
        out["max_dose_outside_body_gy_not_reported"] = _max_where(raw, outside) if outside.any() else 0.0
    low = rho < SUMMARY_MIN_DENSITY
    if outline is not None:
        low &= outline.mask
    if np.any(low):
        out["max_dose_low_density_in_body_gy"] = _max_where(dose, low)
    return out
