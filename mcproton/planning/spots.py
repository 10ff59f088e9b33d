"""The spots and energy layers of one field (:func:`generate_field_spots`): layers that step through the
target's water-equivalent depth, a lateral grid over its beam's-eye-view projection."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..geometry import VoxelGeometry
from .kernel import energy_for_range_mm, water_range_mm
from .machine import DEFAULT_RS_AIR_GAP_MM, field_machine
from .plan import FieldSpots
from .raytrace import _beam_frame, water_equivalent_depth


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

    Without ``beam_model``: generic pencil beams of ``sigma_air_mm`` and energies from ``e_min_mev`` up.  With
    one (:func:`field_machine`): the machine's nominal energies (layers whose residual range, behind the range
    shifter if one is needed, steps by ``layer_spacing_mm``), its spot sizes and a spot spacing of
    ``spot_spacing_sigma`` x the smallest in-air spot sigma at the isocentre of the field's layers (unless
    ``spot_spacing_mm`` is given)."""
    d = np.asarray(direction, float) / np.linalg.norm(direction)
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
