"""The optimiser's dose model: the dose-influence matrix (Gy per proton of each spot at each point).

:func:`influence_matrix` is the analytical pencil-beam model (:mod:`mcproton.planning.kernel`).  Any callable
with the same signature (:class:`DoseModel`), e.g. a Monte Carlo dose-influence matrix, can replace it in
:func:`mcproton.planning.optimise_plan` (``dose_model=``)."""
from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from .kernel import MEV_PER_G_TO_GY, bortfeld_idd, mcs_sigma_mm, water_range_mm
from .machine import HALO_THETA_RAD
from .plan import FieldSpots

#: how :func:`influence_matrix` models a spot (reported in ``Plan.model_stats["kernel"]``)
ANALYTICAL_KERNEL = "Bortfeld 1997 Bragg curve x Gaussian (air + Preston-Koehler MCS)"


class DoseModel(Protocol):
    """A dose model for the optimiser: ``model(field_, points_mm, wet_mm, dose_factor, wet_offsets_mm=None)``
    -> (n_points, n_spots) float32 dose (Gy per proton, dose to medium) of each spot of ``field_``
    (:class:`FieldSpots`) at each point (``points_mm``: (n, 3) x, y, z; ``wet_mm``: their water-equivalent
    depth along the field; ``dose_factor``: (n,) dose-to-medium / dose-to-water per point).  An optional
    ``description`` attribute names it in the plan's ``model_stats["kernel"]``."""

    def __call__(self, field_: FieldSpots, points_mm: np.ndarray, wet_mm: np.ndarray,
                 dose_factor: np.ndarray | None = None, *,
                 wet_offsets_mm: np.ndarray | None = None) -> np.ndarray: ...


def voxel_depth_offsets(voxel_size_mm: Sequence[float], direction: Sequence[float], n: int = 5,
                        grid: int = 8) -> np.ndarray:
    """``n`` equal-weight depth offsets (mm, along ``direction``) that represent a box voxel: the quantile
    midpoints of the distribution of the depth (projection on the beam direction) of a uniform point in the
    voxel.  Averaging a depth-dose over them gives the voxel-mean dose that the Monte Carlo scores."""
    d = np.asarray(direction, float) / np.linalg.norm(direction)
    f = (np.arange(grid) + 0.5) / grid - 0.5
    O = np.stack(np.meshgrid(f, f, f, indexing="ij"), -1).reshape(-1, 3) * np.asarray(voxel_size_mm, float)
    return np.quantile(O @ d, (np.arange(n) + 0.5) / n)


def influence_matrix(field_: FieldSpots, points_mm: np.ndarray, wet_mm: np.ndarray,
                     dose_factor: np.ndarray | None = None, cutoff_sigma: float = 3.5,
                     wet_offsets_mm: np.ndarray | None = None) -> np.ndarray:
    """(n_points, n_spots) float32 dose (Gy per proton) of each spot at each point, analytical kernel.

    ``wet_offsets_mm`` ((n_points, n_samples) or (n_samples,), WET mm): the depth dose is averaged over
    ``wet_mm + offsets`` (voxel-mean depth dose, see :func:`voxel_depth_offsets`) instead of taken at the
    point; this matters for thin targets (the spinal canal) and low-energy, sharp Bragg peaks, where the dose
    at a voxel centre can differ by +-25 % from the voxel mean."""
    rel = np.asarray(points_mm, float) - field_.isocentre_mm
    pu, pv = rel @ field_.axis_x, rel @ field_.axis_y
    A = np.zeros((len(pu), field_.n_spots), np.float32)
    m = field_.machine
    keys = np.round(field_.energy_mev if m is None else field_.nominal_energy_mev, 4)
    wet_cm = np.asarray(wet_mm, float) / 10.0
    fac = MEV_PER_G_TO_GY * (dose_factor if dose_factor is not None else 1.0)
    if m is not None:
        s_ax = rel @ field_.direction                          # distance downstream of the isocentre plane
        vx, vy = m.vsad_mm
    for key in np.unique(keys):
        cols = np.nonzero(keys == key)[0]
        if m is None:
            e_in, e_sig, fluence = float(key), field_.energy_spread_rel * float(key), 1.0
            r_mm = r_strag = float(water_range_mm(e_in))
        else:
            lo = m.layer(float(key))
            e_in, e_sig, fluence = lo.mean_mev, lo.spread_mev, lo.fluence
            r_mm, r_strag = lo.residual_range_mm, lo.range_in_mm

        def idd_at(z_cm):
            return fluence * bortfeld_idd(z_cm, e_in, e_sig, r_mm / 10.0, straggling_range_cm=r_strag / 10.0)

        if wet_offsets_mm is None:
            idd = idd_at(wet_cm)                                            # MeV cm2/g
        else:
            wo = np.broadcast_to(np.asarray(wet_offsets_mm, float),
                                 (len(wet_cm),) + np.shape(wet_offsets_mm)[-1:])
            zz = np.clip(wet_cm[:, None] + wo / 10.0, 0.0, None)
            idd = idd_at(zz.ravel()).reshape(zz.shape).mean(axis=1)
        mcs2 = mcs_sigma_mm(wet_mm, r_mm) ** 2
        if m is None:
            su2 = sv2 = field_.sigma_air_mm**2 + mcs2
            du = pu[:, None] - field_.u_mm[cols][None, :]
            dv = pv[:, None] - field_.v_mm[cols][None, :]
        else:                      # in-air variance at the point's plane + MCS; rays from the virtual sources
            (ax_, bx_, cx_), (ay_, by_, cy_) = lo.moments_x, lo.moments_y
            su2 = np.maximum(ax_ + 2 * bx_ * s_ax + cx_ * s_ax**2, 1e-6) + mcs2
            sv2 = np.maximum(ay_ + 2 * by_ * s_ax + cy_ * s_ax**2, 1e-6) + mcs2
            du = pu[:, None] - field_.u_mm[cols][None, :] * (1 + s_ax / vx)[:, None]
            dv = pv[:, None] - field_.v_mm[cols][None, :] * (1 + s_ax / vy)[:, None]
        base = idd * fac / (2 * np.pi * np.sqrt(su2 * sv2) / 100.0)         # Gy per proton on the axis
        du *= du                                     # squared distances, in place (used twice with a halo)
        dv *= dv
        r2 = du / np.asarray(su2)[..., None] + dv / np.asarray(sv2)[..., None]
        g = np.where(r2 < cutoff_sigma**2, np.exp(-0.5 * r2), 0.0)
        if m is not None and lo.halo_weight > 0:     # core + halo behind a range shifter (HALO_K_MEV2_CM2_G)
            sh2 = (HALO_THETA_RAD * (lo.halo_lever_mm + s_ax)) ** 2 + 0.5 * (su2 + sv2)
            g = (1 - lo.halo_weight) * g + (lo.halo_weight * np.sqrt(su2 * sv2) / sh2)[:, None] * np.exp(
                -0.5 * (du + dv) / sh2[:, None])
        A[:, cols] = (base[:, None] * g).astype(np.float32)
    return A
