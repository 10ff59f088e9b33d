"""The spots and energy layers of one field (:func:`generate_field_spots`): layers that step through the
target's water-equivalent depth, a lateral grid over its beam's-eye-view projection."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..geometry import VoxelGeometry
from .kernel import energy_for_range_mm, water_range_mm
from .machine import DEFAULT_RS_AIR_GAP_MM, field_machine
from .plan import FieldSpots
from .raytrace import _beam_frame, check_direction, water_equivalent_depth

#: a target point deeper than the highest layer's residual range by more than this (mm WET) is beyond the distal
#: fall-off's 80 % level (the CSDA range lies near the distal 80 % of a Bragg peak)
_DEEP_TOL_MM = 1.0


def generate_field_spots(geometry: VoxelGeometry, rsp_zyx: np.ndarray, target_points_mm: np.ndarray,
                         direction: Sequence[float], *, name: str = "field", isocentre_mm=None,
                         sigma_air_mm: float = 4.0, spot_spacing_mm: float | None = None,
                         layer_spacing_mm: float = 4.0, lateral_margin_mm: float | None = None,
                         energy_spread_rel: float = 0.008, target_wet_mm: np.ndarray | None = None,
                         e_min_mev: float = 50.0, beam_model=None, range_shifter: str | None = "auto",
                         rs_air_gap_mm: float = DEFAULT_RS_AIR_GAP_MM,
                         rs_isocenter_distance_mm: float | None = None,
                         spot_spacing_sigma: float = 0.8) -> tuple[FieldSpots, np.ndarray]:
    """Spots (unit weights) covering the target from one direction; returns (field, WET of the points).

    Without ``beam_model``: generic pencil beams of ``sigma_air_mm`` and energies from ``e_min_mev`` up, with a
    1-sigma energy spread of ``energy_spread_rel`` x the energy (default 0.8 %: an ASSUMPTION, no machine's
    measured value; for scale, the shipped DCPT model ``dcpt_v5`` has 1.2 % at 70 MeV, 0.73 % at 150 MeV and 0.26 %
    at 244 MeV).  It widens the planner's Bragg peaks and is the spread the Monte Carlo gives those spots.  With
    one (:func:`field_machine`): the machine's nominal energies (layers whose residual range, behind the range
    shifter if one is needed, steps by ``layer_spacing_mm``), its spot sizes and a spot spacing of
    ``spot_spacing_sigma`` x the smallest in-air spot sigma at the isocentre of the field's layers (unless
    ``spot_spacing_mm`` is given).

    Target points beyond the reach of the layers are reported: deeper than the residual range of the highest
    energy (``ValueError`` when every point is: nothing can cover it; a :class:`~mcproton.McprotonWarning` naming
    the depths otherwise), or shallower than that of the lowest energy, behind the range shifter chosen, by more
    than one ``layer_spacing_mm`` (a warning: those points get only the plateau dose of the lowest layer)."""
    d = check_direction(direction, f"field {name!r}")
    d = d / np.linalg.norm(d)
    ax, ay = _beam_frame(d)
    pts = np.asarray(target_points_mm, float)
    iso = np.asarray(isocentre_mm, float) if isocentre_mm is not None else pts.mean(axis=0)
    wet = target_wet_mm if target_wet_mm is not None else water_equivalent_depth(geometry, rsp_zyx, pts, d)
    rel = pts - iso
    u, v = rel @ ax, rel @ ay
    w_hi = float(wet.max()) + 1.0
    machine = None
    if beam_model is None:
        r_min, r_max = float(water_range_mm(e_min_mev)), np.inf
    else:
        m0 = 2.0 * (lateral_margin_mm if lateral_margin_mm is not None else 8.0)
        machine = field_machine(geometry, beam_model, iso, d, wet, (u.min() - m0, u.max() + m0),
                                (v.min() - m0, v.max() + m0), range_shifter=range_shifter,
                                rs_air_gap_mm=rs_air_gap_mm,
                                rs_isocenter_distance_mm=rs_isocenter_distance_mm)
        r_min, r_max = machine.residual_range_limits_mm
    _check_reach(name, wet, r_min, r_max, layer_spacing_mm, machine, e_min_mev, range_shifter)
    w_lo = max(float(wet.min()), r_min)
    ranges = np.arange(w_hi, w_lo - layer_spacing_mm, -layer_spacing_mm)
    ranges = ranges[(ranges >= r_min - 1e-6) & (ranges <= r_max)]
    if ranges.size == 0:
        ranges = np.array([min(max(float(np.median(wet)), r_min), r_max)])
    if machine is not None:
        nominal_layers = machine.nominal_for_residual_range(ranges)
        sigma_air_mm = min(float(np.sqrt(np.prod(machine.sigma_iso_mm(e)))) for e in nominal_layers)
    spacing = spot_spacing_mm or spot_spacing_sigma * sigma_air_mm
    margin = lateral_margin_mm if lateral_margin_mm is not None else sigma_air_mm
    gu = np.arange(np.floor((u.min() - margin) / spacing),
                   np.ceil((u.max() + margin) / spacing) + 1) * spacing
    gv = np.arange(np.floor((v.min() - margin) / spacing),
                   np.ceil((v.max() + margin) / spacing) + 1) * spacing
    # local depth extent of the target around each lateral position
    from scipy.spatial import cKDTree

    tree = cKDTree(np.stack([u, v], axis=1))
    UU, VV = np.meshgrid(gu, gv, indexing="ij")
    grid = np.stack([UU.ravel(), VV.ravel()], axis=1)
    near = tree.query_ball_point(grid, r=margin + 0.5 * spacing)
    su, sv, se = [], [], []
    for (gx, gy), idx in zip(grid, near):
        if not idx:
            continue
        wl, wh = wet[idx].min() - 0.5 * layer_spacing_mm, wet[idx].max() + 0.5 * layer_spacing_mm + 1.0
        sel = ranges[(ranges >= wl) & (ranges <= wh)]
        if sel.size == 0:   # thin target here: the nearest layer
            sel = ranges[[int(np.argmin(np.abs(ranges - wet[idx].mean())))]]
        su += [gx] * sel.size
        sv += [gy] * sel.size
        se += list(sel)
    lo, hi = geometry.lower_corner_mm, geometry.lower_corner_mm + geometry.extent_mm
    src = float(np.linalg.norm(np.maximum(np.abs(lo - iso), np.abs(hi - iso)))) + 20.0
    nominal = None
    if machine is None:
        energies = energy_for_range_mm(np.asarray(se))
    else:
        nominal = np.round(machine.nominal_for_residual_range(np.asarray(se)), 2)   # 0.01 MeV steps
        layers, inv = np.unique(nominal, return_inverse=True)      # per layer, not per spot
        energies = np.array([machine.layer(e).mean_mev for e in layers])[inv]
        src = machine.plane_mm
    f = FieldSpots(name, d, iso, ax, np.asarray(su, float), np.asarray(sv, float),
                   np.asarray(energies, float),
                   np.ones(len(su)), float(sigma_air_mm), float(energy_spread_rel), src, nominal, machine)
    return f, wet


def _check_reach(name: str, wet: np.ndarray, r_min: float, r_max: float, layer_spacing_mm: float, machine,
                 e_min_mev: float, range_shifter) -> None:
    """Report target points the field's layers cannot reach (see :func:`generate_field_spots`): the layers are
    clipped to [``r_min``, ``r_max``] (residual ranges in water, mm), which would otherwise leave them under-dosed
    without a word (audit 2026-12-06 F2, F3)."""
    from .._io.errors import warn

    if machine is None:
        lo_txt, hi_txt = f"{e_min_mev:g} MeV (generic pencil beams, no beam model)", ""
    else:
        e_lo, e_hi = machine.nominal_range_mev
        rs = machine.shifter
        behind = f" behind range shifter {rs.id} ({float(rs.wet_mm):.1f} mm WET)" if rs is not None else \
            " without a range shifter"
        lo_txt = f"{e_lo:g} MeV{behind}"
        hi_txt = f"{e_hi:g} MeV{behind}"
    deep = wet > r_max + _DEEP_TOL_MM
    if deep.any():
        what = (f"field {name!r}: {int(deep.sum())} of {wet.size} target points lie deeper (to {wet.max():.1f} mm "
                f"WET) than the residual range of the highest energy, {r_max:.1f} mm for {hi_txt}")
        if deep.all():
            raise ValueError(f"{what}: no layer reaches the target; plan this field from another direction (a "
                             "shallower approach)" + (", without the range shifter" if machine is not None
                                                      and machine.shifter is not None else "")
                             + ", or leave it out")
        warn(f"{what}: they get only the distal fall-off; plan from another direction (a shallower approach), or "
             "give that part of the target to another field (the field spec's target_mask)", stacklevel=3)
    shallow = wet < r_min - layer_spacing_mm
    if shallow.any():
        if machine is None:
            fix = "lower e_min_mev, or plan on a beam model with a range shifter"
        elif range_shifter == "auto":
            fix = "the model's thickest range shifter is not enough: add a thicker one ([[range_shifter]]), or a bolus"
        else:
            fix = "plan it with range_shifter='auto' (or a thicker one), or a bolus"
        warn(f"field {name!r}: {int(shallow.sum())} of {wet.size} target points lie shallower (from "
             f"{wet.min():.1f} mm WET) than the residual range of the lowest energy, {r_min:.1f} mm for {lo_txt}: "
             f"they get only the plateau dose of the lowest layer; {fix}", stacklevel=3)
