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
#: :func:`influence_matrix`'s lateral cut-off of the core Gaussian (sigmas)
CUTOFF_SIGMA = 3.5


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
                     dose_factor: np.ndarray | None = None, cutoff_sigma: float = CUTOFF_SIGMA,
                     wet_offsets_mm: np.ndarray | None = None) -> np.ndarray:
    """(n_points, n_spots) float32 dose (Gy per proton) of each spot at each point, analytical kernel.

    ``wet_offsets_mm`` ((n_points, n_samples) or (n_samples,), WET mm): the depth dose is averaged over
    ``wet_mm + offsets`` (voxel-mean depth dose, see :func:`voxel_depth_offsets`) instead of taken at the
    point; this matters for thin targets (the spinal canal) and low-energy, sharp Bragg peaks, where the dose
    at a voxel centre can differ by +-25 % from the voxel mean."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mcproton-idd") as pool:
        job = _InfluenceJob(field_, points_mm, wet_mm, dose_factor, cutoff_sigma, wet_offsets_mm, pool)
        return job.matrix()


class _InfluenceJob:
    """:func:`influence_matrix` in two steps: the depth doses of every layer (Bortfeld's curve: scipy's pbdv,
    which lets go of the GIL from scipy 1.13 on; with an older scipy mcproton.planning.kernel calls it with the
    GIL held, as it is not safe otherwise) submitted to ``pool`` (one worker thread) at construction;
    :meth:`matrix` then computes the lateral factors in this thread (large NumPy operations, which release the
    GIL) and multiplies.  The
    same numbers as one step; :func:`mcproton.planning.optimise_plan` submits the next fields' depth doses
    while it ray-traces and generates the spots of the others."""

    def __init__(self, field_: FieldSpots, points_mm, wet_mm, dose_factor, cutoff_sigma, wet_offsets_mm,
                 pool) -> None:
        m = field_.machine
        rel = np.asarray(points_mm, float) - field_.isocentre_mm
        self.field, self.wet_mm, self.cutoff_sigma = field_, wet_mm, cutoff_sigma
        self.pu, self.pv = rel @ field_.axis_x, rel @ field_.axis_y
        self.fac = MEV_PER_G_TO_GY * (dose_factor if dose_factor is not None else 1.0)
        self.s_ax = rel @ field_.direction if m is not None else None   # downstream of the isocentre plane
        self.vsad = m.vsad_mm if m is not None else None
        keys = np.round(field_.energy_mev if m is None else field_.nominal_energy_mev, 4)
        wet_cm = np.asarray(wet_mm, float) / 10.0
        self.layers = []              # per layer (nominal energy): its columns, optics, range, depth-dose job
        for key in np.unique(keys):
            cols = np.nonzero(keys == key)[0]
            if m is None:
                e_in, e_sig, fluence = float(key), field_.energy_spread_rel * float(key), 1.0
                r_mm = r_strag = float(water_range_mm(e_in))
                lo = None
            else:
                lo = m.layer(float(key))
                e_in, e_sig, fluence = lo.mean_mev, lo.spread_mev, lo.fluence
                r_mm, r_strag = lo.residual_range_mm, lo.range_in_mm
            job = pool.submit(_layer_idd, (fluence, e_in, e_sig, r_mm, r_strag), wet_cm, wet_offsets_mm)
            self.layers.append((cols, lo, r_mm, job))

    def matrix(self) -> np.ndarray:
        """(n_points, n_spots) float32, as :func:`influence_matrix`."""
        A = np.zeros((len(self.pu), self.field.n_spots), np.float32)
        for cols, lo, r_mm, job in self.layers:
            _lateral_into(A, cols, self.field, lo, r_mm, self.pu, self.pv, self.wet_mm, self.s_ax, self.vsad,
                          self.fac, self.cutoff_sigma, job)
        return A


def _layer_idd(params, wet_cm: np.ndarray, wet_offsets_mm) -> np.ndarray:
    """The integrated depth dose (MeV cm2/g) of one layer at the points (or their voxel-mean depth dose)."""
    fluence, e_in, e_sig, r_mm, r_strag = params

    def idd_at(z_cm):
        return fluence * bortfeld_idd(z_cm, e_in, e_sig, r_mm / 10.0, straggling_range_cm=r_strag / 10.0)

    if wet_offsets_mm is None:
        return idd_at(wet_cm)
    wo = np.broadcast_to(np.asarray(wet_offsets_mm, float), (len(wet_cm),) + np.shape(wet_offsets_mm)[-1:])
    zz = np.clip(wet_cm[:, None] + wo / 10.0, 0.0, None)
    return idd_at(zz.ravel()).reshape(zz.shape).mean(axis=1)


#: rows (points) of one layer's lateral factors computed at a time in :func:`_lateral_into`: its (rows, layer spots)
#: float64 temporaries (~100-300 spots a layer) then stay within a core's cache instead of streaming whole (n_points,
#: n_layer_spots) arrays through memory at every operation; every element is computed by the same operations
LATERAL_ROWS = 256


def _lateral_into(A, cols, field_, lo, r_mm, pu, pv, wet_mm, s_ax, vsad, fac, cutoff_sigma, idd_job) -> None:
    """A[:, cols] for one layer: the lateral Gaussian (core, and halo behind a range shifter) x the depth dose
    ``idd_job.result()`` on the axis.  The per-point factors are computed for all points at once, the (points,
    layer spots) arrays LATERAL_ROWS rows at a time (:func:`_lateral_rows`): the same operations on every element,
    so the same numbers, with temporaries that fit in cache."""
    mcs2 = mcs_sigma_mm(wet_mm, r_mm) ** 2
    if lo is None:
        su2 = sv2 = np.broadcast_to(field_.sigma_air_mm**2 + mcs2, np.shape(pu))
        su_scale = sv_scale = None
    else:                          # in-air variance at the point's plane + MCS; rays from the virtual sources
        vx, vy = vsad
        (ax_, bx_, cx_), (ay_, by_, cy_) = lo.moments_x, lo.moments_y
        su2 = np.maximum(ax_ + 2 * bx_ * s_ax + cx_ * s_ax**2, 1e-6) + mcs2
        sv2 = np.maximum(ay_ + 2 * by_ * s_ax + cy_ * s_ax**2, 1e-6) + mcs2
        su_scale, sv_scale = 1 + s_ax / vx, 1 + s_ax / vy
    halo = lo is not None and lo.halo_weight > 0
    if halo:                                         # core + halo behind a range shifter (HALO_K_MEV2_CM2_G)
        sh2 = (HALO_THETA_RAD * (lo.halo_lever_mm + s_ax)) ** 2 + 0.5 * (su2 + sv2)
        h_amp = lo.halo_weight * np.sqrt(su2 * sv2) / sh2
    idd = idd_job.result()                                                  # MeV cm2/g
    base = idd * fac / (2 * np.pi * np.sqrt(su2 * sv2) / 100.0)             # Gy per proton on the axis
    u, v = field_.u_mm[cols], field_.v_mm[cols]
    for r0 in range(0, len(pu), LATERAL_ROWS):
        s = slice(r0, r0 + LATERAL_ROWS)
        A[s, cols] = _lateral_rows(
            pu[s], pv[s], u, v, None if su_scale is None else su_scale[s], None if sv_scale is None else sv_scale[s],
            su2[s], sv2[s], cutoff_sigma, (1 - lo.halo_weight, sh2[s], h_amp[s]) if halo else None, base[s])


def _lateral_rows(pu, pv, u, v, su_scale, sv_scale, su2, sv2, cutoff_sigma, halo, base) -> np.ndarray:
    """The lateral factor x ``base`` of some points (rows) for one layer's spots (columns), float64: each
    product, sum and exponential as :func:`_lateral_into` made them on the whole layer before 2026-12-06."""
    if su_scale is None:
        du = np.subtract(pu[:, None], u[None, :])
        dv = np.subtract(pv[:, None], v[None, :])
    else:
        du = np.multiply(u[None, :], su_scale[:, None])
        np.subtract(pu[:, None], du, out=du)
        dv = np.multiply(v[None, :], sv_scale[:, None])
        np.subtract(pv[:, None], dv, out=dv)
    du *= du                                         # squared distances (used twice with a halo)
    dv *= dv
    su2c, sv2c = su2[:, None], sv2[:, None]
    if halo is not None:
        r2 = np.divide(du, su2c)
        r2 += np.divide(dv, sv2c)
    else:                                            # du, dv are not needed after r2
        r2 = np.divide(du, su2c, out=du)
        r2 += np.divide(dv, sv2c, out=dv)
    outside = np.less(r2, cutoff_sigma**2)           # not inside (as np.where(r2 < cut, ...): NaN is outside)
    np.logical_not(outside, out=outside)
    g = np.multiply(r2, -0.5, out=r2)                # exp(-r2 / 2) inside the cut-off, 0 outside
    np.exp(g, out=g)
    g[outside] = 0.0
    if halo is not None:
        core, sh2, h_amp = halo
        g *= core
        h = np.add(du, dv, out=du)
        h *= -0.5
        h /= sh2[:, None]
        np.exp(h, out=h)
        h *= h_amp[:, None]
        g += h
    g *= base[:, None]
    return g                                         # cast to float32 on assignment, as astype does
