"""The Monte Carlo side of ``mcproton check``: the patient geometry from the CT (or a phantom built from the
structure set's ROI material overrides), the plan's beams, one run per beam through the job driver of
``mcproton run`` (mcproton/_run/job.py), and the dose placed on the TPS dose grid.

Grid.  The transport grid is the CT grid in blocks of whole CT voxels within the TPS dose spacing (or nearest to it)
(:func:`mcproton.geometry.resample_blocks`, which keeps the water-equivalent path).  When the block centres
coincide with the TPS voxel centres (same spacing, origin offset by whole voxels) the MC dose is taken as it
is; otherwise it is interpolated trilinearly to the TPS voxel centres (a smoothing of at most one voxel,
stated in the report); a TPS centre inside the CT but beyond the MC voxel centres takes the edge voxel's dose.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._io.rtdose import CLINICAL_RBE
from .inputs import CheckInputError, CheckInputs, TPSDose, way_out
from .._backend import CPU_BY_OPTION_OR_ARGUMENT
from .._io.console import log_line
from .._io.errors import McprotonWarning, warn


@dataclass
class MCDose:
    """The MC doses on the TPS grid (Gy or Gy(RBE), as the TPS dose), per beam number and in total."""

    total_gy_zyx: np.ndarray
    beams_gy_zyx: dict[int, np.ndarray]
    uncertainty_rel_zyx: np.ndarray
    mean_rel_uncertainty_50: float
    primaries: int
    wall_s: float
    device: str
    backend: str
    provenance: dict
    grid_note: str
    beam_meta: dict[int, dict] = field(default_factory=dict)
    density_g_cm3_zyx: np.ndarray | None = None   # on the TPS grid (body outline without a structure set)
    # each beam's relative uncertainty on the TPS grid (resampled as the total's; float32): the noise of the range
    # comparison's noise floor (compare.range_agreement); empty for an MC dose made before 2026-12-05
    beams_uncertainty_rel_zyx: dict[int, np.ndarray] = field(default_factory=dict)
    # the MC's LETd (keV/um, protons, in the voxel medium) on the TPS grid, resampled dose-weighted
    # (let_to_tps_grid): the constant-RBE test of an EFFECTIVE TPS dose (api._variable_rbe_note); None for an MC dose
    # made before 2026-12-06
    let_d_kev_um_zyx: np.ndarray | None = None
    # the MC's dose to water / dose to medium per voxel on the TPS grid (float32, 1 where there is no dose): the
    # water/medium test of the TPS dose (api.water_medium_test); None for an MC dose made before 2026-12-06
    water_to_medium_zyx: np.ndarray | None = None
    # the beams whose range shifter's downstream face has tissue upstream of it above the warning level
    # (mcproton/_run/inputs.py check_shifters_outside): named by api._diagnose among the likely causes
    shifter_notes: list[str] = field(default_factory=list)


def reuse_key(inputs: Any) -> dict:
    """What an MC dose computed for the check of ``inputs`` (:class:`~mcproton._check.inputs.CheckInputs`) is tied
    to beyond the dose type: the TPS grid it lies on (shape (z, y, x), origin and voxel size in mm; every RT Dose is
    read onto a grid along +x, +y, +z, so its file's orientation does not change the voxels) and the fractions it
    holds (the plan's number, and whether all or one)."""
    ref = inputs.reference
    return {"tps_grid": {"shape_zyx": [int(v) for v in ref.shape_zyx],
                         "origin_mm": [float(v) for v in ref.origin_mm],
                         "voxel_size_mm": [float(v) for v in ref.voxel_size_mm]},
            "fractions": {"number": int(inputs.fractions), "all": bool(inputs.all_fractions)}}


def describe_dose(dose_type: str, dose_to: str, rbe: float | None, fractions: int,
                  all_fractions: bool | None) -> dict[str, str]:
    """What the compared doses are, for every label of the check (report headings, figure axes and colour bars,
    the JSON, the MC RT Dose's DoseComment): ``unit`` "Gy" or "Gy(RBE)"; ``quantity`` e.g. "RBE-weighted dose
    (constant RBE 1.1) to water"; ``fractions`` e.g. "all 30 fractions (the plan)" or "one fraction of 30";
    ``label``: the quantity and the fractions."""
    eff = dose_type == "EFFECTIVE"
    quantity = (f"RBE-weighted dose (constant RBE {float(rbe if rbe is not None else CLINICAL_RBE):g})" if eff
                else "physical dose") + f" to {dose_to}"
    n = int(fractions or 1)
    if all_fractions is False:
        frac = f"one fraction of {n}"
    else:
        frac = f"all {n} fractions (the plan)" if n > 1 else "the plan (1 fraction)"
    return {"unit": "Gy(RBE)" if eff else "Gy", "quantity": quantity, "fractions": frac,
            "label": f"{quantity}, {frac}"}


def mc_rbe(dose_type: str, rbe: float | None) -> float:
    """The constant the MC dose is weighted with: ``rbe`` (default 1.1) for an EFFECTIVE TPS dose, 1 for a
    PHYSICAL one.  ``rbe`` given with a PHYSICAL dose is named in a warning: it cannot change the comparison of
    two physical doses, and only converts the plan's TargetPrescriptionDose, or a --prescription (Gy(RBE)), to Gy for
    V95/V100."""
    if dose_type == "EFFECTIVE":
        return CLINICAL_RBE if rbe is None else float(rbe)
    if rbe is not None:
        warn(f"--rbe {float(rbe):g} (rbe=) is the RBE of a DoseType EFFECTIVE TPS dose, but this one is PHYSICAL: "
             f"the two doses are compared as physical doses, without an RBE; {float(rbe):g} only converts the plan's "
             "TargetPrescriptionDose, or a --prescription (Gy(RBE)), to Gy for V95/V100.  If the TPS dose is "
             "RBE-weighted, give "
             "--dose-type effective", McprotonWarning)
    return 1.0


def mc_dose_description(inputs: Any, mc: MCDose) -> dict[str, str]:
    """:func:`describe_dose` of a check's inputs and its MC dose."""
    return describe_dose(inputs.dose_type, str(mc.provenance.get("dose_to")), mc.provenance.get("rbe"),
                         inputs.fractions, inputs.all_fractions)


# ---------------------------------------------------------------------- phantom from the structure set
def phantom_ct_from_struct(struct_path: str | Path, ref: TPSDose, out_dir: str | Path, *,
                           frame_of_reference_uid: str, margin_mm: float = 20.0, physics: Any = None):
    """Write a CT series of the phantom the structure set describes: air, and every ROI with a material
    override (External first, then the others inside it) filled with its material at its REL_MASS_DENSITY (or the
    density that gives its REL_STOP_RATIO in the water of the MC's ``physics``, :func:`roi_overrides`).
    The CT voxels are half the TPS voxels, aligned with them (so 2 x 2 x 2 blocks give the TPS grid); the CT covers
    the TPS grid and the override ROIs' contours (+ ``margin_mm``), a contour point far outside the TPS grid refused
    first (:func:`~mcproton._io.rtstruct.check_contours_near_ct`, as on a patient's CT).
    Returns (CT, calibration, notes): the CT (:class:`~mcproton._io.ct.CTImage`) is the one
    :func:`~mcproton._io.ct.load_ct_series` reads from the series written to ``out_dir``
    (:func:`~mcproton._io.ct.write_ct_series_image`), made without reading it back; :func:`build_geometry` converts it
    (before 2026-12-07 it read the series back: audit 27 hosttime F3)."""
    from .._io.ct import write_ct_series_image
    from .._io.dicom_common import PHANTOM_STUDY
    from .._io.rtstruct import check_contours_near_ct, rasterise, read_rtstruct
    from .._io.slab_ct import AIR_HU, slab_calibration
    from .._io.roi_overrides import nearest_material, override_note, roi_overrides, warn_material, warn_unapplied
    from .mc_rtdose import PHANTOM_SERIES_DESCRIPTION

    warn_unapplied(struct_path)
    rois = roi_overrides(struct_path, physics)
    if not rois:
        raise CheckInputError(f"{struct_path}: no ROI has a material override (ROIPhysicalPropertiesSequence "
                              "REL_MASS_DENSITY, REL_STOP_RATIO or REL_ELEC_DENSITY), so no phantom can be built from "
                              "it; " + way_out("give the CT (--ct)", "put the plan's CT series into {folder} and leave "
                                               "out --phantom-from-struct"), single_options=("--ct",))
    s = read_rtstruct(struct_path)
    # the phantom is sized to hold every override ROI's points: one far outside the TPS dose grid (a mistyped vertex)
    # would stretch it there and make a wedge of the ROI's material reaching it, so it is refused as on a patient's CT
    # (before 2026-12-07, review 28b R1: x = 700 mm made the phantom 3.4 x wider, in silence)
    check_contours_near_ct(s, ref, f"{ref.path}: --phantom-from-struct builds the phantom around it",
                           grid="the TPS dose grid", drawn="a contour drawn for this plan")
    vs = np.asarray(ref.voxel_size_mm, float) / 2.0
    # the TPS grid (and the External's bounding box, plus a margin), on half-voxels aligned with it
    lo_tps = np.asarray(ref.origin_mm, float) - np.asarray(ref.voxel_size_mm) / 2
    hi_tps = lo_tps + np.asarray(ref.voxel_size_mm) * np.array(ref.shape_zyx[::-1])
    pts = np.concatenate([c for r in rois for c in s.contours.get(r["name"], [])] or [np.zeros((1, 3))])
    lo = np.minimum(lo_tps, pts.min(0) - margin_mm)
    hi = np.maximum(hi_tps, pts.max(0) + margin_mm)
    # whole TPS voxels on each side, so that the blocks stay aligned
    step = np.asarray(ref.voxel_size_mm, float)
    lo = lo_tps - np.ceil((lo_tps - lo) / step - 1e-9) * step
    hi = hi_tps + np.ceil((hi - hi_tps) / step - 1e-9) * step
    n = np.rint((hi - lo) / vs).astype(int)
    origin = lo + vs / 2

    class _G:
        origin_mm = tuple(origin)
        voxel_size_mm = tuple(vs)
        shape_zyx = (int(n[2]), int(n[1]), int(n[0]))

    masks = rasterise(s, _G, names=[r["name"] for r in rois])
    pairs, notes = [], []
    for r in rois:
        m, why = nearest_material(r)
        r["material"] = m
        pairs.append((m, r["density_g_cm3"]))
        notes.append(override_note(r, m, why, int(masks[r["name"]].sum()), "CT voxels"))
        warn_material(struct_path, r, m)
    cal, codes = slab_calibration(pairs, name="structure-set overrides")
    hu = np.full(_G.shape_zyx, AIR_HU, np.int16)
    for r, code in zip(rois, codes):
        hu[masks[r["name"]]] = code
    out = Path(out_dir)
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("CT_*.dcm"):
        old.unlink()
    try:
        ct = write_ct_series_image(hu, tuple(vs), tuple(origin), out, series_description=PHANTOM_SERIES_DESCRIPTION,
                                   study=PHANTOM_STUDY.replace(frame_of_reference_uid=frame_of_reference_uid))
    except BaseException:
        if made:   # the folder made for the series, whose slices the writer removed: not left empty (audit 31 F5)
            try:
                out.rmdir()
            except OSError:
                pass
        raise
    del hu   # the CT's HU are the pixels written (ct.hu_zyx)
    notes.append(f"air (-1000 HU) elsewhere; CT {n[0]} x {n[1]} x {n[2]} voxels of "
                 f"{vs[0]:g} x {vs[1]:g} x {vs[2]:g} mm written to {out}")
    return ct, cal, notes


# ---------------------------------------------------------------------- geometry and MC dose on the TPS grid
#: How much larger (relative) than the TPS voxel an MC block may be (block_factors_for): the largest whole number of
#: CT voxels within it.  A block coarser than the TPS grid averages the dose over more than the grid being checked
#: and pulls a distal falloff along that axis in: rounding to the nearest whole number (until 2026-12-06) gave 2.6 mm
#: blocks for a 2 mm TPS grid on a 1.3 mm CT, and the R80 differences read -0.26 mm (median, p5..p95 -0.43..-0.12)
#: where the MC matched the TPS dose exactly (grids audit F4).  5 %: a 1.02 mm CT still gives 2.04 mm blocks for 2 mm.
BLOCK_OVERSIZE_TOL = 0.05
#: ... but a block no finer than this fraction of the TPS voxel: finer blocks hold fewer protons each, and the run
#: stops at its target uncertainty per MC voxel, so 1.3 mm blocks for a 2 mm grid would cost (2.6 / 1.3)^2 = 4 x the
#: primaries on a CT of 1.3 mm pixels for 0.26 mm of R80.  Below it the nearest whole number is taken (coarser than
#: the TPS voxel), and the grid note (coarser_grid_note) says what that does to the range differences.
BLOCK_MIN_FRACTION = 0.75


def block_factors_for(tps_voxel_mm: Sequence[float], ct_voxel_mm: Sequence[float]) -> list[int]:
    """The MC blocks' size in CT voxels along x, y, z for a TPS grid of ``tps_voxel_mm`` on a CT of ``ct_voxel_mm``:
    the most CT voxels whose length is at most the TPS voxel's (+ BLOCK_OVERSIZE_TOL), at least 1, unless that block
    is finer than BLOCK_MIN_FRACTION of the TPS voxel: then the nearest whole number (a block coarser than the TPS
    voxel, or the CT's own voxel where it is larger: said in the check's grid note, to_tps_grid)."""
    out = []
    for t, c in zip(tps_voxel_mm, ct_voxel_mm):
        t, c = float(t), float(c)
        n = max(1, int(np.floor(t * (1 + BLOCK_OVERSIZE_TOL) / c)))
        if n * c < BLOCK_MIN_FRACTION * t:
            n = max(1, int(np.rint(t / c)))
        out.append(n)
    return out


def build_geometry(ct_dir: str | Path | Any, calibration: Any, ref: TPSDose, timings: dict | None = None, *,
                   given: bool = True, series_uid: str | None = None,
                   at_ct_resolution: Callable[[Any], None] | None = None,
                   outside_external_of: Callable[[Any, Sequence[int], Callable[[slice], np.ndarray]],
                                                 np.ndarray | None] | None = None,
                   beams: Sequence[Any] | None = None, transport: dict | None = None, physics: Any = None,
                   log: Callable[[str], None] | None = None):
    """The transport geometry: the CT in blocks of whole CT voxels no larger than the TPS spacing
    (:func:`block_factors_for`), converted slab
    by slab by :meth:`~mcproton._io.hu_calibration.HUCalibration.to_geometry` (the conversion of ``mcproton
    run`` too).  Returns (geometry, calibration, CT: the whole series read); ``timings["read_ct_s"]``: the CT reading.
    ``ct_dir``: the CT series' folder, or the CT already in memory (a :class:`~mcproton._io.ct.CTImage`: the phantom of
    :func:`phantom_ct_from_struct`, converted as its folder would be read, the slices kept and its conversion's memory
    checked alike; ``read_ct_s`` then times these alone).

    ``beams`` (the plan's, :func:`plan_beams`): the geometry holds only the CT's slices that the TPS grid and the
    beams' way to it need, with a margin (:func:`mcproton._check.crop.transport_crop`; all of them where they need
    all); None: the whole CT.  The memory of the conversion (in blocks, or on the CT's own voxels with
    ``at_ct_resolution``) over those slices is checked with the CT's reading, before its pixels are read
    (McprotonEnvironmentError).  ``transport``: a dict that receives the transport grid's record (check.json's
    ``provenance.transport_grid``: its shape, the CT slices it holds and why).

    A CT that mcproton wrote from densities names the calibration whose inverse gave its CT numbers
    (ImageComments): read with another one it is refused if ``given`` is false (the default calibration, no
    --calibration), else warned about, as in ``mcproton run``.  ``series_uid``: the series to read when the
    folder holds several.  ``at_ct_resolution(geometry)``: changes made to the geometry of the CT's own voxels
    before the blocks are formed (the structure set's overrides: a thin bolus keeps its thickness), at the cost of
    that full-resolution geometry in memory.  ``outside_external_of(ct, factors, density_of)``: on blocks coarser
    than the CT, the CT's material outside the External per block (counted on the CT's own voxels,
    ``density_of(z_slice)`` their density: :func:`mcproton._io.roi_overrides.outside_external_density`), kept as the
    geometry's ``outside_external_g_cm3_zyx`` for the outside-External note.  ``physics``: the MC's physics
    settings (None: the defaults), whose water model and I-values turn a HU -> SPR calibration into densities
    (:meth:`~mcproton._io.hu_calibration.HUCalibration.load_for_physics`, as ``mcproton run`` reads it).  ``log``
    gets a note where the last blocks along an axis are partial (:func:`mcproton.geometry.partial_block_note`: the
    transport grid reaches past the CT's far face), as ``mcproton run`` prints it for phantom.dose_voxel_mm."""
    import dataclasses

    from .._io.ct import CTImage, check_conversion_memory, load_ct_series
    from .._io.hu_calibration import given_calibration

    crops: list[Any] = []

    def conversion(grid: Any) -> tuple[float, str, str]:   # the slices kept, and their conversion's memory
        from .crop import transport_crop

        f = block_factors_for(ref.voxel_size_mm, grid.voxel_size_mm)
        crops.append(None if beams is None else transport_crop(grid, ref, beams, f))
        return conversion_memory(grid, f, crops[-1], at_ct_resolution is not None)

    t = time.perf_counter()
    if isinstance(ct_dir, CTImage):   # in memory (written there too): nothing to read
        ct = ct_dir
        folder: Any = Path(ct.slice_files[0]).parent if ct.slice_files else "memory"
        check_conversion_memory(ct, conversion, folder)
    else:
        folder = ct_dir
        ct = load_ct_series(ct_dir, series_uid=series_uid, conversion=conversion)
    if timings is not None:
        timings["read_ct_s"] = time.perf_counter() - t
    cal = given_calibration(calibration, physics)
    _check_calibration_written_for(ct, cal, given=given)
    from .._io.hu_calibration import check_ct_against_calibration, check_spr_map, warn_ct_without_air

    check_spr_map(ct, cal.name, given=given, where=f"the CT ({folder})", key="--calibration", error=CheckInputError,
                  anyway="checked anyway (--calibration is given)")
    warn_ct_without_air(ct, f"the CT ({folder})")   # a wrong RescaleIntercept, as mcproton run says
    factors = block_factors_for(ref.voxel_size_mm, ct.voxel_size_mm)
    crop = crops[-1] if crops else None
    whole = ct
    if crop is not None and crop.removes:   # the slices kept (a view: the whole series stays the caller's)
        o = ct.origin_mm
        ct = dataclasses.replace(ct, hu_zyx=ct.hu_zyx[crop.slices()],
                                 origin_mm=(o[0], o[1], o[2] + crop.first * ct.voxel_size_mm[2]))
    from ..geometry import partial_block_note

    # the crop keeps whole blocks from the CT's first slice, so only the CT's own far face can end in a partial one
    if log is not None and (note := partial_block_note(ct.hu_zyx.shape, factors, ct.voxel_size_mm, ct.origin_mm,
                                                       "the MC grid")):
        log(f"mcproton check: note: {note}")
    # what the calibration does not cover (a curve without air: refused; metal above it or clipped: warned), judged,
    # as mcproton run does, on what the structure set's overrides left of the calibration's values
    if at_ct_resolution is None:
        check_ct_against_calibration(ct, cal, error=CheckInputError, what_to_give="--calibration", physics=physics)
        g2 = cal.to_geometry(ct, compact=True, blocks=factors, check_coverage=False, check_ct=False)
        rho_full = None
    else:
        from ..geometry import resample_blocks

        g_full = cal.to_geometry(ct, compact=True, check_coverage=False, check_ct=False)
        at_ct_resolution(g_full)
        check_ct_against_calibration(ct, cal, g_full, error=CheckInputError, what_to_give="--calibration",
                                     physics=physics)
        g2 = resample_blocks(g_full, factors)
        rho_full = g_full.density_g_cm3_zyx   # the overrides' densities, for the outside of the External
        del g_full
    if outside_external_of is not None and tuple(factors) != (1, 1, 1):
        g2.outside_external_g_cm3_zyx = outside_external_of(
            ct, factors, (lambda s: cal.density_from_hu(ct.hu_zyx[s])) if rho_full is None else
            (lambda s: rho_full[s]))
    if transport is not None:
        transport.clear()
        transport.update(transport_record(g2, whole, factors, crop))
    return g2, cal, whole   # g2.study: the CT's (to_geometry; resample_blocks keeps it)


def conversion_memory(grid: Any, factors: Sequence[int], crop: Any, full_resolution: bool) -> tuple[float, str, str]:
    """What converting the CT of ``grid`` (its headers', :class:`~mcproton._io.ct.CTGrid`) to the check's transport
    geometry adds to the memory (:func:`~mcproton._io.ct.conversion_memory_estimate`): (bytes, what it converts to,
    what else the user can do), for :func:`~mcproton._io.ct.load_ct_series`'s ``conversion``: over the slices of
    ``crop`` (None: all), in blocks of ``factors``, or on the CT's own voxels first (``full_resolution``: the structure
    set's overrides or air outside the External)."""
    from .._io.ct import conversion_memory_estimate

    nz, ny, nx = (int(v) for v in grid.shape_zyx)
    if crop is not None:
        nz = crop.stop - crop.first
    need = conversion_memory_estimate((nz, ny, nx), factors, full_resolution=full_resolution)
    over = (f"over {nz} of its {grid.shape_zyx[0]} slices (those the TPS grid and the beams need)" if nz <
            int(grid.shape_zyx[0]) else "over all its slices")
    blocks = " x ".join(str(int(f)) for f in factors)
    if full_resolution and tuple(int(f) for f in factors) != (1, 1, 1):
        in_blocks = conversion_memory_estimate((nz, ny, nx), factors, full_resolution=False)
        return need, (f"the transport geometry {over}, first on the CT's own voxels (the structure set's material "
                      f"overrides and --outside-external air are put in there, then blocks of {blocks} CT voxels "
                      "formed)"), (f"without the overrides on the CT's own voxels (--struct-overrides ignore, "
                                   f"--outside-external ct) the conversion in blocks would need about "
                                   f"{in_blocks / 1e9:.1f} GB, but then they are not in the dose")
    return need, f"the transport geometry {over}, in blocks of {blocks} CT voxels", ""


def transport_record(geometry: Any, ct: Any, factors: Sequence[int], crop: Any) -> dict:
    """check.json's ``provenance.transport_grid``: the transport grid (shape, voxel size, origin), the CT and the
    blocks it is made of, the CT slices it holds and why (``crop``: :class:`mcproton._check.crop.TransportCrop`;
    None: the whole CT, no plan's beams given)."""
    nz, ny, nx = (int(v) for v in ct.shape_zyx)
    out = {"shape_zyx": [int(v) for v in geometry.shape_zyx],
           "voxel_size_mm": [round(float(v), 4) for v in geometry.voxel_size_mm],
           "origin_mm": [round(float(v), 3) for v in geometry.origin_mm],
           "blocks_of_ct_voxels": [int(f) for f in factors],
           "ct_shape_zyx": [nz, ny, nx], "ct_voxel_size_mm": [round(float(v), 4) for v in ct.voxel_size_mm]}
    if crop is None:
        return {**out, "ct_slices": [1, nz], "ct_slices_of": nz, "cropped": False,
                "said": f"all {nz} slices of the CT (no plan's beams given to crop it to), over its whole axial field "
                        "of view"}
    return {**out, **crop.record()}


def _check_calibration_written_for(ct: Any, cal: Any, *, given: bool) -> None:
    """A phantom or slab CT read with another calibration than the one it names (ImageComments): refused with
    the default calibration, a warning with --calibration given (on purpose, e.g. to study it)."""
    from .._io.hu_calibration import check_calibration_written_for

    check_calibration_written_for(
        ct, cal.name, given=given, where="the CT", key="the calibration (--calibration)", error=CheckInputError,
        anyway="checked anyway (--calibration is given)",
        how=lambda w: ("a slab CT's CT numbers are codes of its exact calibration, which only mcproton run rebuilds "
                       '(phantom.type = "slab_ct"); check the dose on the phantom it was written for'
                       if w == "slab_ct" else f"give --calibration {w} (Python: calibration={w!r})"))


def _coinciding_window(geometry: Any, ref: TPSDose) -> np.ndarray | None:
    """The MC voxel index (x, y, z) of the TPS grid's first voxel where the TPS voxels are MC voxels (same size, an
    integer offset, inside the MC grid), else None."""
    vs_m = np.asarray(geometry.voxel_size_mm, float)
    vs_t = np.asarray(ref.voxel_size_mm, float)
    off = (np.asarray(ref.origin_mm, float) - np.asarray(geometry.origin_mm, float)) / vs_m
    nz, ny, nx = ref.shape_zyx
    if np.allclose(vs_m, vs_t, atol=1e-4) and np.allclose(off, np.rint(off), atol=1e-3):
        lo = np.rint(off).astype(int)
        if np.all(lo >= 0) and np.all(lo + np.array([nx, ny, nz]) <= np.array(geometry.shape_zyx[::-1])):
            return lo
    return None


#: How far (mm) a TPS voxel centre may lie beyond the CT's extent and still count as inside it (_mc_indices): float
#: noise of a centre on the CT's outer face (a TPS grid offset by half a CT voxel), far below any voxel size.
EXTENT_TOL_MM = 1e-3


def grid_extent_mm(origin_mm: Sequence[float], voxel_size_mm: Sequence[float],
                   shape_zyx: Sequence[int]) -> tuple[tuple[float, float], ...]:
    """The (lower, upper) outer faces (mm) along x, y and z of a grid of voxel centres ``origin_mm`` + i x
    ``voxel_size_mm`` (the first voxel's lower face, the last one's upper face)."""
    n = tuple(shape_zyx)[::-1]
    return tuple((float(o) - float(v) / 2, float(o) + (int(k) - 0.5) * float(v))
                 for o, v, k in zip(origin_mm, voxel_size_mm, n))


def _mc_indices(geometry: Any, ref: TPSDose, extent_mm: Sequence[tuple[float, float]] | None,
                rim: bool) -> list[np.ndarray]:
    """The fractional MC voxel indices (z, y, x) of the TPS voxel centres.  With ``rim``, an index of a centre
    inside ``extent_mm`` (the CT's outer faces, (lower, upper) along x, y, z; None: the MC grid's own) but beyond
    the MC voxel centres is clamped to the first or last centre: it takes the edge voxel's dose, the dose the MC
    computed there, not the 0 the interpolation gives beyond the centres (grids audit 2026-12-06, F2: a TPS grid
    starting at the CT's first voxel centre got MC dose 0 in its first column, row and slice on blocks of the CT,
    whose first centre lies inside the CT; one offset by half a CT voxel, at its outer faces).  Centres beyond the
    extent keep their index (0 where the interpolation has no MC voxel)."""
    vs_m = np.asarray(geometry.voxel_size_mm, float)
    nz, ny, nx = geometry.shape_zyx
    ext = grid_extent_mm(geometry.origin_mm, vs_m, geometry.shape_zyx) if extent_mm is None else extent_mm
    zt, yt, xt = ref.axes_mm()
    out = []
    for a, k, n in ((zt, 2, nz), (yt, 1, ny), (xt, 0, nx)):
        a = np.asarray(a, float)
        idx = (a - geometry.origin_mm[k]) / vs_m[k]
        if rim:
            lo, hi = ext[k]
            inside = (a >= lo - EXTENT_TOL_MM) & (a <= hi + EXTENT_TOL_MM)
            idx = np.where(inside, np.clip(idx, 0.0, n - 1.0), idx)
        out.append(idx)
    return out


def to_tps_grid(dose_zyx: np.ndarray, geometry: Any, ref: TPSDose, *,
                extent_mm: Sequence[tuple[float, float]] | None = None, rim: bool = True) -> tuple[np.ndarray, str]:
    """The dose of ``geometry``'s grid at the TPS voxel centres: exact where the grids coincide, else
    trilinear; 0 outside the MC grid.  Centres inside ``extent_mm`` (the CT's outer faces, (lower, upper) along x,
    y, z; None: the MC grid's) but beyond the MC voxel centres take the edge voxel's dose (:func:`_mc_indices`);
    ``rim`` False: 0 there too (the density that the body outline and the grid coverage check are formed from,
    unchanged: the outline keeps the CT's voxel-centre hull)."""
    vs_m = np.asarray(geometry.voxel_size_mm, float)
    nz, ny, nx = ref.shape_zyx
    lo = _coinciding_window(geometry, ref)
    if lo is not None:
        hi = lo + np.array([nx, ny, nz])
        return (np.ascontiguousarray(dose_zyx[lo[2]:hi[2], lo[1]:hi[1], lo[0]:hi[0]]),
                f"the MC grid ({vs_m[0]:g} x {vs_m[1]:g} x {vs_m[2]:g} mm) coincides with the TPS grid (no "
                "interpolation)")
    from scipy.ndimage import map_coordinates

    idx = _mc_indices(geometry, ref, extent_mm, rim)
    out = np.empty((nz, ny, nx))
    Y, X = np.meshgrid(idx[1], idx[2], indexing="ij")
    for k, zi in enumerate(idx[0]):
        out[k] = map_coordinates(dose_zyx, [np.full_like(Y, zi), Y, X], order=1, mode="constant", cval=0.0)
    return out, (f"MC dose on {vs_m[0]:g} x {vs_m[1]:g} x {vs_m[2]:g} mm blocks of the CT, interpolated "
                 "trilinearly to the TPS voxel centres (the edge voxels' dose in the outer half-voxel of the CT)"
                 + coarser_grid_note(vs_m, ref.voxel_size_mm))


def coarser_grid_note(mc_voxel_mm: Sequence[float], tps_voxel_mm: Sequence[float]) -> str:
    """What the grid note says where an MC voxel is larger than the TPS voxel along an axis (by more than
    BLOCK_OVERSIZE_TOL: the CT's own voxel, or a block of the nearest whole number, block_factors_for): the MC's voxel
    averages pull a distal falloff along that axis in (grids audit F4: 2.6 mm against 2 mm read R80 -0.26 mm); ""
    otherwise."""
    axes = [(ax, float(m), float(t)) for ax, m, t in zip("xyz", mc_voxel_mm, tps_voxel_mm)
            if float(m) > float(t) * (1 + BLOCK_OVERSIZE_TOL)]
    if not axes:
        return ""
    said = ", ".join(f"{ax} ({m:g} mm against {t:g} mm)" for ax, m, t in axes)
    return (f"; the MC grid is coarser than the TPS grid along {said}: its voxel averages pull a "
            "distal dose falloff along that axis in, so the range (R80) differences of beams along it read short by "
            "a few tenths of a mm (-0.26 mm for 2.6 mm against 2 mm)")


def let_to_tps_grid(let_zyx: np.ndarray, dose_zyx: np.ndarray, geometry: Any, ref: TPSDose,
                    dose_tps: np.ndarray | None = None, *,
                    extent_mm: Sequence[tuple[float, float]] | None = None) -> np.ndarray:
    """The dose-averaged LET ``let_zyx`` at the TPS voxel centres, as a dose average: the interpolated
    dose x LETd divided by the interpolated dose (:func:`to_tps_grid`), so that a voxel without dose (LETd 0, or a
    noisy LETd of a few protons) does not pull its neighbours' value; 0 where the interpolated dose is 0.
    ``dose_tps``: ``dose_zyx`` already on the TPS grid, where the caller has it (not interpolated again);
    ``extent_mm``: as :func:`to_tps_grid`'s."""
    dose = np.asarray(dose_zyx, np.float64)
    num, _ = to_tps_grid(np.asarray(let_zyx, np.float64) * dose, geometry, ref, extent_mm=extent_mm)
    den = (to_tps_grid(dose, geometry, ref, extent_mm=extent_mm)[0] if dose_tps is None
           else np.asarray(dose_tps, np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0).astype(np.float32)


def uncertainty_to_tps_grid(unc_rel_zyx: np.ndarray, dose_zyx: np.ndarray, geometry: Any,
                            ref: TPSDose, dose_tps_zyx: np.ndarray | None = None, *,
                            extent_mm: Sequence[tuple[float, float]] | None = None) -> np.ndarray:
    """The relative standard error of :func:`to_tps_grid`'s dose at the TPS voxel centres, propagated: where the
    grids coincide, the MC voxels' own; else the trilinear weights w_i of the interpolation give the variance
    sum w_i^2 sigma_i^2 of the interpolated dose (the MC voxels' errors taken as independent), divided by that dose.
    Interpolating the relative uncertainty like a dose, as before, left it at the MC grid's while the averaging of up
    to 8 voxels had halved the noise (statistics audit 2026-12-05, F3: 9.6 % quoted on a grid offset by half a
    voxel, 4.5 % over 16 seeds); the noise matching of the comparisons (compare.noisy_like_mc) needs the noise of
    the dose it compares.  0 where the interpolated dose is 0.  ``dose_tps_zyx``: ``dose_zyx`` on the TPS grid where
    the caller has it (to_tps_grid), else interpolated here; ``extent_mm``: as :func:`to_tps_grid`'s (the edge voxels'
    own errors in the CT's outer half-voxel, where the dose is theirs)."""
    unc = np.nan_to_num(np.asarray(unc_rel_zyx, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    dose = np.asarray(dose_zyx, np.float64)
    if _coinciding_window(geometry, ref) is not None:
        return to_tps_grid(unc, geometry, ref)[0]
    var = (unc * dose) ** 2
    zt, yt, xt = ref.axes_mm()
    nz, ny, nx = var.shape

    def corners(idx: np.ndarray, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """The two neighbours of each coordinate and their squared linear weights (0 outside the grid, as the
        interpolation's constant 0 there)."""
        i0 = np.floor(idx).astype(np.int64)
        f = idx - i0
        out = []
        for i, w in ((i0, (1.0 - f) ** 2), (i0 + 1, f ** 2)):
            ok = (i >= 0) & (i < n)
            out.append((np.clip(i, 0, n - 1), np.where(ok, w, 0.0)))
        return out

    kz, ky, kx = _mc_indices(geometry, ref, extent_mm, rim=True)
    cz, cy, cx = corners(kz, nz), corners(ky, ny), corners(kx, nx)
    var_t = np.zeros((zt.size, yt.size, xt.size))
    for iz, wz in cz:
        for iy, wy in cy:
            for ix, wx in cx:
                var_t += var[np.ix_(iz, iy, ix)] * (wz[:, None, None] * wy[None, :, None] * wx[None, None, :])
    dose_t = (to_tps_grid(dose, geometry, ref, extent_mm=extent_mm)[0] if dose_tps_zyx is None
              else np.asarray(dose_tps_zyx, np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(dose_t > 0, np.sqrt(var_t) / np.where(dose_t > 0, dose_t, 1.0), 0.0)


#: Seed offset of the top-up pass (_top_up): its histories are independent of the first pass's.
TOP_UP_SEED_OFFSET = 0x5EED5


def top_up_seed(seed: int) -> int:
    """The seed of the top-up pass: ``seed`` + TOP_UP_SEED_OFFSET, wrapped below 2^63 (run.seed's limit; a --seed
    within the offset of it made the top-up fail with a ValueError after the whole first pass: the scale audit 19,
    F6).  Never the first pass's own seed (the offset is not a multiple of 2^63)."""
    return (int(seed) + TOP_UP_SEED_OFFSET) % 2**63
#: Extra primaries of the top-up over the estimate (the estimate comes from a noisy uncertainty).
TOP_UP_MARGIN = 1.10


def beam_number(beam: Any, i: int) -> Any:
    """The plan's BeamNumber of ``beam`` (its meta, as the report and the levels name beams), else its position + 1
    (a beam made in code has no number): the check's messages name beams as the report does (audit 18b, F12)."""
    meta = getattr(beam, "meta", None) or {}
    return meta.get("beam_number", i + 1)


#: the check's batches with --time-limit (streaming.BatchPlan: EARLY_STOP_BATCHES, DEFAULT_MAX_BATCH)
_BATCHES = "the check's batches are --primaries / 100, at most 10^6 primaries on the CPU and 10^7 on the GPU"


#: what to do about a check whose MC would take more than a day (streaming.LONG_RUN_S), in the check's options: it has
#: no run.* keys, no checkpoint and no --resume (the progress-log audit 26, F2)
CHECK_LONG_RUN_REMEDY = ("give --time-limit SECONDS (Python: time_limit_s=; the check then goes on with the dose "
                         "reached, and its report says so) or a smaller --primaries; a check keeps no checkpoint: one "
                         "that is stopped is run again from the start")


#: what a check is told where the GPU cannot hold even the smallest batch: it has no grid of its own to coarsen (it
#: computes on the planning system's dose grid and the CT's own voxels) and no --set (audit 27, F11d)
CHECK_GPU_MEMORY_REMEDY = (f"run the check on the CPU: {CPU_BY_OPTION_OR_ARGUMENT} (it computes on the planning "
                           "system's dose grid and the CT's own voxels, which the GPU's memory cannot hold here)")


def check_wording() -> Any:
    """How the check's beam runs word an early stop, few batches and a run of more than a day (run_job's ``wording``):
    beams by BeamNumber, as the report names them, and the check's options, --time-limit and --primaries (the run.*
    config keys are no options of mcproton check: docs audit of 2026-12-06, F2; nor are a checkpoint and --resume
    there: the progress-log audit 26, F2), and how to run on the CPU (--backend cpu; audit 27, F1 and F11d)."""
    from .._run.job import RunWording

    more = f"a longer --time-limit, or a smaller --primaries: {_BATCHES}"   # whatever set the batches
    return RunWording(beam=lambda i, beam: beam_number(beam, i), time_limit="--time-limit {limit:g} s",
                      more_batches=more, more_batches_sized=more, more_batches_time_limit=more,
                      one_batch=f"give a longer --time-limit, or a smaller --primaries ({_BATCHES}, so a smaller "
                                "--primaries fits more of them in the time limit)",
                      long_run=CHECK_LONG_RUN_REMEDY, target="--target-uncertainty",
                      cpu_backend=CPU_BY_OPTION_OR_ARGUMENT, gpu_memory=CHECK_GPU_MEMORY_REMEDY)


def per_beam_target_text(target: float, n_beams: int) -> str:
    """The check's target uncertainty of the plan dose and each beam's share of it, in words ("5 % plan target =
    7.07 % per beam for 2 beams"): the beams' bars show the per-beam figure (the progress-log audit 26, F7: a check
    asked for 5 % showed "to 7.07107 %" with no word of where it came from)."""
    return (f"{100 * target:.3g} % plan target = {100 * target * math.sqrt(n_beams):.3g} % per beam for {n_beams} "
            "beams")


def primaries_to_target(primaries: int, uncertainty: float, target: float) -> int:
    """The primaries per beam that the 1/sqrt(N) law says bring ``uncertainty`` (after ``primaries`` per beam) to
    ``target`` (both fractions or both %)."""
    return int(primaries * (uncertainty / target) ** 2)


def _said_for_the_plan(unc: float, target: float, done: int, cap: int) -> bool:
    """The check's ``out_of_reach`` for its beams' runs (streaming.stream): nothing per beam (mcproton run's warning
    names run.primaries and the beam's share of the target, 1.41 % for 1 % over two beams, which a check's user never
    set: audit 18b, F7); :func:`warn_stopped_short` says it once for the plan dose, after the beams."""
    return True


def warn_stopped_short(results: list, beams: list, u: float, target: float, limit: int,
                       time_limit_s: float | None) -> bool:
    """Where a beam stopped at --primaries or --time-limit before its share of the target (its stop_reason), warn
    once (McprotonRuntimeWarning: into check.json's warnings and the report) of the plan dose's uncertainty ``u``
    against ``target`` (fractions) and the primaries per beam that would reach it, with the options to change
    (audit 18b, F2: this line was on stderr only, while the report carried a run.* warning per beam); True if a beam
    stopped short (the plan dose then gets no top-up)."""
    stopped = [beam_number(b, i) for i, (b, r) in enumerate(zip(beams, results))
               if r.provenance.get("stop_reason") != "target_uncertainty"]
    if not stopped:
        return False
    from .._io.errors import McprotonRuntimeWarning, warn

    need = primaries_to_target(max(int(r.primaries) for r in results), u, target)
    timed = any(r.provenance.get("stop_reason") == "time_limit" for r in results)
    if timed:
        why = f"--time-limit {time_limit_s:g} s" if time_limit_s else "the time limit"
        fix = "give a longer --time-limit (or none)" + (" and raise --primaries to that" if need > limit else "")
    else:
        why = f"the limit of {limit:,} primaries per beam (--primaries)"
        fix = "raise --primaries to that (with a --time-limit if it takes too long)"
    warn(f"the MC stopped at {why} in beam(s) {', '.join(map(str, stopped))} before reaching the target: the plan "
         f"dose's uncertainty is {100 * u:.2f} % (target {100 * target:g} %, --target-uncertainty)"
         + (", so there is no top-up" if len(results) > 1 else "")
         + f"; about {need:,} primaries per beam would reach the target: {fix}", McprotonRuntimeWarning)
    return True


def _transport_s(result: Any) -> float:
    """A beam run's transport time (s: run_job's phase_s), what --time-limit counts; 0 where it is not recorded."""
    return float(((getattr(result, "provenance", None) or {}).get("phase_s") or {}).get("transport") or 0.0)


def _top_up(results: list, tot: Any, beams: list, geometry: Any, settings: Any, target: float, limit: int,
            progress: Any, log: Callable[[str], None]) -> tuple[list, Any]:
    """Where the plan dose's uncertainty is above ``target`` after every beam reached target x sqrt(n) in its
    own dose (beams that do not overlap in the high-dose region), run each beam again with independent random
    numbers (top_up_seed: seed + TOP_UP_SEED_OFFSET, the beam's own stream; a later pass, the offset again) for the
    primaries that the 1/sqrt(N) law says are missing (x TOP_UP_MARGIN, within the ``limit`` per beam), and take the
    primaries-weighted mean of the runs per beam (their absolute errors add in quadrature: sum_results).  At most
    TOP_UP_PASSES passes, until the plan dose is at or below the target (before 2026-12-06 one pass, and none
    within 1 % above the target: a check asked for 2 % reached 2.002-2.02 % and FAILed the MC-uncertainty level
    of 2 % in 4 of 22 runs, statistics audit of 2026-12-06; a small top-up's 1/sqrt(N) estimate can land short, 3.02
    % for 3 %); the reached uncertainty is reported.  With ``settings.time_limit_s`` (--time-limit: the transport
    of all the beams) the top-ups run in what the beams left of it, shared among the beams topped up, and none
    where they used it all.  ``tot``: the plan sum of ``results``; returns the beams' results and their plan sum."""
    from ..run import sum_results

    u = float(tot.mean_rel_uncertainty_50)
    if not (u > target):
        return results, tot
    limit_s = getattr(settings, "time_limit_s", None)
    if warn_stopped_short(results, beams, u, target, limit, limit_s):
        return results, tot   # a beam ended at the --primaries limit (or a time limit): no room for a top-up
    # --time-limit is the transport time of all the beams, the top-up's too (it ran without a limit before: a check
    # given 60 s could take twice that)
    left_s = None if limit_s is None else float(limit_s) - sum(_transport_s(r) for r in results)
    seed = int(settings.seed)
    for k in range(TOP_UP_PASSES):
        if left_s is not None and left_s <= 0:
            if k:   # the time limit stopped a top-up: its stop_reason says so (the MC-uncertainty row names it)
                break
            from .._io.errors import McprotonRuntimeWarning, warn

            warn(f"the plan dose's uncertainty is {100 * u:.2f} % after every beam reached "
                 f"{100 * settings.target_uncertainty:.2f} % (target {100 * target:g} %, --target-uncertainty), and "
                 f"the beams' transport used the --time-limit of {float(limit_s):g} s, so there is no top-up; give a "
                 "longer --time-limit (or none) for the target", McprotonRuntimeWarning)
            return results, tot
        seed = top_up_seed(seed)
        results, left_s, grew = _top_up_pass(results, beams, geometry, settings, seed, u, target, limit, left_s,
                                             progress, log, k)
        if not grew:   # every beam at --primaries, or the missing primaries too few to run
            break
        tot = sum_results(results)
        u = float(tot.mean_rel_uncertainty_50)
        if not (u > target):
            break
    return results, tot


#: The most top-up passes of the plan dose (_top_up): the first brings it to the target by the 1/sqrt(N) law, a
#: second (rarely a third) the little that an estimate from a noisy uncertainty left above it.
TOP_UP_PASSES = 3
#: The fewest primaries of a beam's top-up run (a beam with less room below --primaries gets none).
TOP_UP_MIN = 1000


def _top_up_said(wanted: Sequence[int], results: Sequence[Any], estimate_pct: float) -> str:
    """How much the top-up pass runs, as the log says it: the primaries each beam is given (``wanted``, of the
    ``results``' own), in % of its own; where the TOP_UP_MIN floor or the --primaries limit makes that differ from
    the 1/sqrt(N) estimate (``estimate_pct``, with TOP_UP_MARGIN), both (review of 2026-12-06, R6: "by 10 % more
    primaries" where the floor made it 1,000 of 6,500, 15 %)."""
    run = [(n, int(r.primaries)) for n, r in zip(wanted, results) if n >= TOP_UP_MIN and int(r.primaries) > 0]
    if not run:
        return "no beam has primaries left to top up within the --primaries limit"
    pcts = sorted({round(100 * n / p) for n, p in run})
    said = f"{pcts[0]}" if len(pcts) == 1 else f"{pcts[0]}-{pcts[-1]}"
    text = (f"topping up {'each beam' if len(run) == len(results) else f'{len(run)} of the {len(results)} beams'} "
            f"by {said} % more primaries")
    if pcts != [round(estimate_pct)]:
        text += (f" (the estimate {estimate_pct:.0f} %, at least {TOP_UP_MIN:,} primaries a beam and within the "
                 "--primaries limit)")
    return text


def _top_up_pass(results: list, beams: list, geometry: Any, settings: Any, seed: int, u: float, target: float,
                 limit: int, left_s: float | None, progress: Any, log: Callable[[str], None],
                 k: int) -> tuple[list, float | None, bool]:
    """One pass of :func:`_top_up` (``k``: its index) with random-number seed ``seed``: the beams' results, merged
    with their top-up runs, the time left of --time-limit (None: no limit) and whether any beam ran."""
    import dataclasses

    from .._run.job import JobOptions, run_job
    from ..run import is_per_primary, sum_results
    from ..settings import RunSettings

    factor = (u / target) ** 2 - 1.0
    # at least TOP_UP_MIN primaries (fewer make too few batches to estimate their noise; before, a beam that wanted
    # fewer got none, so a plan dose just above its target stayed there), within the --primaries limit
    wanted = [min(max(int(math.ceil(r.primaries * factor * TOP_UP_MARGIN)), TOP_UP_MIN), limit - int(r.primaries))
              for r in results]
    log(f"mcproton check: the plan dose's uncertainty is {100 * u:.2f} % after every beam reached "
        f"{100 * settings.target_uncertainty:.2f} %" + (f" and {k} top-up(s)" if k else "")
        + f" (target {100 * target:g} %" + (": the beams overlap less in the high-dose region" if not k else "")
        + f"); {_top_up_said(wanted, results, 100 * factor * TOP_UP_MARGIN)}")
    out = []
    grew = False
    for i, (b, r) in enumerate(zip(beams, results)):
        n2 = wanted[i]
        if n2 < TOP_UP_MIN:
            out.append(r)
            continue
        # the time left to the check's limit, shared among this beam and the later ones to top up
        share_s = None if left_s is None else max(left_s, 0.0) / sum(1 for n in wanted[i:] if n >= TOP_UP_MIN)
        if share_s is not None and share_s <= 0:
            out.append(r)
            continue
        s2 = RunSettings(primaries=n2, seed=seed, backend=settings.backend, threads=settings.threads,
                         target_uncertainty=None, physics=settings.physics, time_limit_s=share_s)
        log(f"top-up of beam {beam_number(b, i)} ({i + 1}/{len(beams)}): {b.name}, {n2:,} more primaries")
        r2 = run_job(None, s2, geometry, [b], None,
                     JobOptions(checkpoint=False, progress=progress, log=log, first_beam_index=i,
                                out_of_reach=_said_for_the_plan, wording=check_wording()))[0]
        if left_s is not None:
            left_s -= _transport_s(r2)
        asked, n2 = n2, int(r2.primaries)   # fewer where the time limit stopped the top-up
        n1 = int(r.primaries)
        parts = []
        for res, w in ((r, n1 / (n1 + n2)), (r2, n2 / (n1 + n2))):
            edep = res.edep_mev_zyx
            # sum_results adds per-primary deposited energies (weighted here), and averages absolute results'
            # (a plan's beams) over their primaries itself: either way the merged edep is the mean per primary
            ew = w if is_per_primary(res) else 1.0
            parts.append(dataclasses.replace(res, dose_gy_zyx=res.dose_gy_zyx * w,
                                             dose_to_water_gy_zyx=res.dose_to_water_gy_zyx * w,
                                             edep_mev_zyx=None if edep is None else edep * ew))
        merged = sum_results(parts)   # the weighted mean of two independent estimates of the beam's dose
        merged.provenance["stop_reason"] = (f"{r.provenance.get('stop_reason')} + top-up of {n2:,} primaries"
                                            + (f" of {asked:,} (time_limit)" if n2 < asked else ""))
        out.append(merged)
        grew = grew or n2 > 0
    return out, left_s, grew


def no_beam_model() -> CheckInputError:
    """The refusal of a check without a beam model (``--beam-model`` has no default): raised by the command line
    before any file is read (journey audit 33, F1: it came after the inputs and the phantom had been read), and by
    :func:`plan_beams` for a Python call."""
    from .._io.beam_model import BUILTIN

    return CheckInputError("no beam model: the MC needs the machine's beam model to turn the plan's spots into "
                           f"protons; give --beam-model (built-in: {', '.join(BUILTIN)}; or a .toml / MCsquare "
                           "BDL file)")


def plan_beams(inputs: CheckInputs, beam_model: Any, *, machine_check: bool = True,
               water_model: str = "icru90") -> tuple[Any, list]:
    """The beam model (loaded where a name or file is given) and the plan's beams as the MC transports them
    (:func:`~mcproton._io.rtplan.plan_to_beams`; ``machine_check``, ``water_model``: the physics' water model, see
    there); refused without a beam model."""
    from .._io.beam_model import load_beam_model
    from .._io.rtplan import plan_to_beams

    if beam_model is None:
        raise no_beam_model()
    model = beam_model if hasattr(beam_model, "at") else load_beam_model(beam_model)
    return model, plan_to_beams(inputs.plan, model, all_fractions=inputs.all_fractions, machine_check=machine_check,
                                water_model=water_model)


def check_transport_memory(geometry: Any, n_beams: int, ref: TPSDose, record: dict | None) -> None:
    """Refuse a transport grid whose run cannot fit in memory however little of it gets dose, and warn where its dose
    over the whole grid would take more than 80 % (McprotonEnvironmentError; the rule and estimates of ``mcproton
    run``, mcproton/_run/inputs.py check_memory), naming the grid for what it is: the CT's slices it holds in
    blocks of CT voxels, where they come from (``record``: :func:`transport_record`), and the TPS grid; and what the
    user can do (scale audit of 2026-12-07, F1: "config error: the dose grid of 512 x 512 x 360 ... the check computes
    on the planning system's dose grid" named the whole CT and only more memory)."""
    from .._io.errors import McprotonEnvironmentError
    from .._run.inputs import RUN_MOST_NOTE, check_memory_for, host_memory_estimate, host_memory_least

    n = int(geometry.material_index_zyx.size)
    need = host_memory_estimate(n, n_beams)   # the most: every voxel with dose (refused only below the least)
    nz, ny, nx = geometry.shape_zyx
    vs = " x ".join(f"{v:g}" for v in geometry.voxel_size_mm)
    tps = " x ".join(str(int(v)) for v in tuple(ref.shape_zyx)[::-1])
    tps_vs = " x ".join(f"{float(v):g}" for v in ref.voxel_size_mm)
    what = (f"the transport grid of {nx} x {ny} x {nz} = {n / 1e6:.1f} M voxels of {vs} mm ({n_beams} beam"
            f"{'s' if n_beams > 1 else ''})")
    fix = "free memory or use a machine with more (or ask the batch system for more)"
    detail = ""
    if record is not None:
        f = record["blocks_of_ct_voxels"]
        cz, cy, cx = record["ct_shape_zyx"]
        ct_vs = " x ".join(f"{v:g}" for v in record["ct_voxel_size_mm"])
        detail = (f": {record['said']}, of the CT's {cx} x {cy} x {cz} voxels of {ct_vs} mm in blocks of "
                  f"{' x '.join(map(str, f))} (the most CT voxels within the TPS grid's {tps_vs} mm voxels); the TPS "
                  f"grid is {tps} voxels of {tps_vs} mm")
        coarser = block_factors_for([2 * float(v) for v in ref.voxel_size_mm], record["ct_voxel_size_mm"])
        if list(coarser) != list(f):
            kept = (record["ct_slices"][1] - record["ct_slices"][0] + 1, cy, cx)
            n2 = math.prod(-(-int(a) // int(b)) for a, b in zip(kept, coarser[::-1]))
            fix += (f"; or export the TPS dose on a coarser grid (the transport blocks follow its voxels: "
                    f"{2 * float(ref.voxel_size_mm[0]):g} mm voxels would give blocks of "
                    f"{' x '.join(map(str, coarser))} CT voxels, about {n2 / 1e6:.1f} M voxels and "
                    f"up to {host_memory_estimate(n2, n_beams) / 1e9:.1f} GB)")
        fix += ("; or a TPS dose grid over a shorter length along z (the transport grid holds the CT's slices over "
                "the TPS grid's z range and the beams' way to it, with a margin)")
    else:
        fix += f"; the TPS grid is {tps} voxels of {tps_vs} mm"
    check_memory_for(need, what, fix, McprotonEnvironmentError,
                     least=lambda _allocated: host_memory_least(n), detail=detail,
                     most_note=RUN_MOST_NOTE)


def run_mc(inputs: CheckInputs, geometry: Any, beam_model: Any, *, dose_to: str = "water", rbe: float | None = None,
           primaries: int = 10_000_000, target_uncertainty: float | None = 0.01, seed: int = 12345,
           backend: str = "auto", threads: int | None = None, progress: bool = True,
           log: Callable[[str], None] | None = None, timings: dict | None = None,
           density_tps_zyx: np.ndarray | None = None, machine_check: bool = True,
           physics: Any = None, ct_extent_mm: Sequence[tuple[float, float]] | None = None,
           time_limit_s: float | None = None, planned: tuple[Any, list] | None = None,
           transport_grid: dict | None = None) -> MCDose:
    """Run every beam of the plan and place the doses on the TPS grid (``density_tps_zyx``: the geometry's
    density on the TPS grid where the caller has it already; ``machine_check``: see plan_to_beams; ``physics``:
    :class:`~mcproton.settings.PhysicsSettings` or a dict of its fields, None for the defaults; ``ct_extent_mm``:
    the CT's outer faces (grid_extent_mm), within which a TPS voxel beyond the MC voxel centres takes the edge
    voxel's dose (to_tps_grid), None: the MC grid's; ``time_limit_s``: the transport time of all the beams, as
    ``mcproton run``'s run.time_limit_s, each beam its share (mcproton._run.job); no top-up after it stopped one;
    ``planned``: (beam model, beams) of :func:`plan_beams` where the caller made them (then not in
    ``timings["beams_s"]``); ``transport_grid``: the geometry's record (build_geometry's ``transport``), named in
    the memory check's message and kept in the provenance)."""
    t = time.perf_counter()   # beams_s: with these imports (the first check in a process pays them)
    from .._run.inputs import beam_grid_checks, check_ct_truncation
    from .._run.job import JobOptions, run_job
    from .._timing import PhaseClock, use_clock
    from ..run import sum_results
    from ..settings import PhysicsSettings, RunSettings

    log = log or log_line
    timings = timings if timings is not None else {}
    phys = physics if isinstance(physics, PhysicsSettings) else PhysicsSettings(**(physics or {}))
    model, beams = planned if planned is not None else plan_beams(inputs, beam_model, machine_check=machine_check,
                                                                  water_model=phys.water_model)
    shifter_notes: list[str] = []   # a range shifter's face with tissue upstream (warned): a likely cause to name
    for check in beam_grid_checks(geometry, beams, "plan beam"):   # as mcproton run refuses them
        if isinstance(said := check(), list):
            shifter_notes += said
    check_ct_truncation(geometry, beams, "plan beam")   # a warning, as mcproton run's
    check_transport_memory(geometry, len(beams), inputs.reference, transport_grid)
    rbe = mc_rbe(inputs.dose_type, rbe)
    # The target is the plan dose's: n beams that overlap with equal weights in the high-dose region, each with
    # relative uncertainty e there, add up to e / sqrt(n); so each beam runs to target x sqrt(n) (with unequal
    # weights the sum lands above the target by sqrt(n x sum of the squared weight shares): reported below, and
    # judged by the uncertainty action level).  Before: each beam to the target itself, n times the primaries.
    per_beam_target = None if not target_uncertainty else float(target_uncertainty) * math.sqrt(len(beams))
    if per_beam_target is not None and per_beam_target >= 1:
        raise CheckInputError(f"target_uncertainty (--target-uncertainty) {float(target_uncertainty):g} is too large "
                              f"for {len(beams)} beams: each beam runs to the target x sqrt({len(beams)}) = "
                              f"{per_beam_target:.3g} in its own dose, which must be below 1; give a smaller target "
                              "(e.g. 0.01 for 1 %)")
    settings = RunSettings(primaries=int(primaries), seed=int(seed), backend=backend, threads=threads,
                           target_uncertainty=per_beam_target, physics=phys, time_limit_s=time_limit_s)
    if progress and per_beam_target is not None and len(beams) > 1:   # what the beams' bars stop at, and why
        said = per_beam_target_text(float(target_uncertainty), len(beams))
        log(f"mcproton check: the MC of {len(beams)} beams: {said} (beams that overlap in the high-dose region add up "
            f"to the plan's target; a top-up follows where they overlap less), at most {int(primaries):,} primaries "
            "per beam (--primaries)")
    timings["beams_s"] = time.perf_counter() - t
    t, cpu = time.perf_counter(), time.process_time()
    # the kernel build (C++ or NVRTC, seconds on a cold kernel cache: a fresh machine, a new version) is a step of
    # its own, not transport (the host audit of 2026-12-05, F3): run_job marks it as the phase "kernel_build"
    with use_clock(PhaseClock()) as clock:
        results = run_job(None, settings, geometry, beams, None,
                          JobOptions(checkpoint=False, progress=progress, log=log, out_of_reach=_said_for_the_plan,
                                     wording=check_wording()))
        tot = results[0] if len(results) == 1 else sum_results(results)   # one beam: itself, not a copy
        if per_beam_target is not None and len(beams) > 1:
            results, tot = _top_up(results, tot, beams, geometry, settings, float(target_uncertainty),
                                   int(primaries), progress, log)
        elif per_beam_target is not None and float(tot.mean_rel_uncertainty_50) > per_beam_target:
            warn_stopped_short(results, beams, float(tot.mean_rel_uncertainty_50), per_beam_target, int(primaries),
                               time_limit_s)
    timings["kernel_build_s"] = clock.seconds.get("kernel_build", 0.0)
    timings["transport_s"] = time.perf_counter() - t - timings["kernel_build_s"]
    transport_cpu_s = time.process_time() - cpu   # CPU time of this process's threads (host side on a GPU)
    if progress:   # a step line (api.check: 7 s on a clinical grid, the scale audit of 2026-12-07, F4)
        log("mcproton check: the MC doses and their uncertainties to the TPS grid ...")
    t = time.perf_counter()
    per_beam: dict[int, np.ndarray] = {}
    per_beam_unc: dict[int, np.ndarray] = {}
    meta: dict[int, dict] = {}
    note = ""
    for b, r in zip(beams, results):
        d = r.dose_to_water_gy_zyx if dose_to == "water" else r.dose_gy_zyx
        num = int(b.meta["beam_number"])
        per_beam[num], note = to_tps_grid(d * rbe, geometry, inputs.reference, extent_mm=ct_extent_mm)
        if transport_grid is not None and transport_grid.get("cropped"):   # the slices of the CT transported
            note += f"; the transport grid holds {transport_grid['said']}"
        per_beam_unc[num] = uncertainty_to_tps_grid(r.uncertainty_rel_zyx, d * rbe, geometry, inputs.reference,
                                                    per_beam[num], extent_mm=ct_extent_mm).astype(np.float32)
        meta[num] = {**b.meta, "primaries": r.primaries, "stop_reason": r.provenance.get("stop_reason"),
                     "mean_rel_uncertainty_50": r.mean_rel_uncertainty_50, "wall_s": r.wall_s}
    total = np.zeros(inputs.reference.shape_zyx)
    for d in per_beam.values():
        total += d
    # the total on the TPS grid is the sum of the beams' (linear interpolation): no second interpolation of it
    unc = uncertainty_to_tps_grid(tot.uncertainty_rel_zyx, (tot.dose_to_water_gy_zyx if dose_to == "water" else
                                                            tot.dose_gy_zyx) * rbe, geometry, inputs.reference, total,
                                 extent_mm=ct_extent_mm)
    # the other of the two doses on the TPS grid, for their ratio (both are scored in every run: the water/medium test)
    other, _ = to_tps_grid((tot.dose_gy_zyx if dose_to == "water" else tot.dose_to_water_gy_zyx) * rbe, geometry,
                           inputs.reference, extent_mm=ct_extent_mm)
    dw, dm = (total, other) if dose_to == "water" else (other, total)
    w_m = np.ones(total.shape, np.float32)
    np.divide(dw, dm, out=w_m, where=(dm > 0) & (dw > 0), casting="unsafe")
    let_src = getattr(tot, "let_d_kev_um_zyx", None)   # a result without LETd (a stand-in): no constant-RBE test
    # weighted by the dose to medium, whose TPS-grid values dm already are (x rbe, as the numerator's)
    let_d = None if let_src is None else let_to_tps_grid(let_src, tot.dose_gy_zyx * rbe, geometry, inputs.reference,
                                                         dose_tps=dm, extent_mm=ct_extent_mm)
    del other, dw, dm
    rho = density_tps_zyx
    if rho is None:
        rho, _ = to_tps_grid(geometry.density_g_cm3_zyx.astype(np.float64), geometry, inputs.reference, rim=False)
    timings["resample_s"] = time.perf_counter() - t
    prov = dict(tot.provenance)
    prov.update({"beam_model": getattr(model, "name", str(beam_model)),
                 # the file that made the spots: its resolved path and SHA-256 (two versions of my_machine.toml differ)
                 "beam_model_file": model.provenance() if hasattr(model, "provenance") else None,
                 "rbe": rbe, "dose_to": dose_to,
                 # the check's seed (--seed), from which its top-ups' derive (top_up_seed): a sum of a beam and its
                 # top-up records its parts' seeds as differing (review 2b, R1)
                 "seed": int(seed),
                 "target_uncertainty": target_uncertainty, "target_uncertainty_per_beam": per_beam_target,
                 "time_limit_s": time_limit_s,
                 "primaries_limit": int(primaries),
                 "transport_process_cpu_s": transport_cpu_s,
                 "grid": f"{geometry.voxel_size_mm} mm, {geometry.shape_zyx[::-1]} voxels ({geometry.name})",
                 # what the MC dose was computed for, so that a check that reuses it (check(mc=...)) can be refused
                 # where it is another grid, other fractions or another plan (rtdose audit F3)
                 "tps_grid": reuse_key(inputs)["tps_grid"], "fractions_computed": reuse_key(inputs)["fractions"],
                 "transport_grid": transport_grid,
                 "plan_sop_instance_uid": inputs.plan.sop_instance_uid})
    return MCDose(total, per_beam, unc, tot.mean_rel_uncertainty_50, tot.primaries, tot.wall_s, tot.device,
                  tot.backend, prov, note, meta, rho, per_beam_unc, let_d, w_m, shifter_notes)
