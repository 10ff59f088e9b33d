"""Example PBS plans on the paediatric phantoms: a posterior-fossa (medulloblastoma) boost and a
craniospinal (CSI) field arrangement.

Pipeline (all in the phantom frame, mm, arrays (z, y, x)):

1. **Target** from the label map (``posterior_fossa_target``: an ellipsoidal tumour-bed CTV at the
   ``posterior_fossa`` landmark, clipped to the cranial cavity; ``craniospinal_target``: whole brain +
   thecal sac).
2. **Water-equivalent depth** of every target point along each beam: the relative stopping power (RSP) of
   each voxel is its density times the ratio of electronic mass stopping powers medium/water at 100 MeV
   (:func:`mcproton._physics.stopping.electronic_mass_stopping_power`), integrated along the ray from the
   grid boundary (trilinear sampling, 1 mm steps; parallel beams, no source divergence).
3. **Spots**: energy layers whose water CSDA range (ICRU 90 tables of the engine,
   :func:`mcproton._physics.tables.build_tables`) steps by ``layer_spacing_mm`` WET from the shallowest to
   the deepest target point (+ 1 mm), on a lateral grid of spacing ``0.8 x spot sigma`` covering the target's
   beam's-eye-view projection + margin; per lateral position only the layers whose range falls within the
   local target depth (+- half a layer) are kept.
4. **Dose-influence matrix** on the target points from an analytical pencil-beam kernel: Bortfeld's (1997)
   Bragg curve (parabolic-cylinder form, epsilon = 0.1) at the point's WET times a lateral Gaussian whose
   sigma combines the spot size in air and multiple Coulomb scattering (Preston-Koehler depth shape,
   sigma at the end of range = 0.0294 R^0.896 cm, R in g/cm2), in Gy per proton (dose to medium).
5. **Weights** (protons per spot) by non-negative least squares to a uniform prescription with an
   accelerated projected-gradient (FISTA) iteration; spots below 0.2 % of the mean weight are dropped.

The analytical model is only the optimiser's model: verify every plan with the Monte Carlo
(:func:`verify_plan`), which also reports how close the model's absolute dose was.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Sequence

import numpy as np

from ..geometry import VoxelGeometry
from ..source import Beam, Spot, default_axis_x
from .generator import INTRACRANIAL

MEV_PER_G_TO_GY = 1.602176634e-10   # MeV/g -> Gy (J/kg)
RBE = 1.1
BK_ALPHA, BK_P = 0.0022, 1.77        # Bragg-Kleeman (Bortfeld 1997), cm / MeV^p
BORTFELD_BETA, BORTFELD_GAMMA, BORTFELD_EPS = 0.012, 0.6, 0.0


# --------------------------------------------------------------------------------------------------------
# water range-energy relation and the analytical pencil-beam kernel
# --------------------------------------------------------------------------------------------------------
@lru_cache(maxsize=4)
def _water_range_table(water_model: str = "icru90") -> tuple[np.ndarray, np.ndarray]:
    from .._physics.tables import build_tables

    t = build_tables(["water"], water_model)
    e = np.exp(np.linspace(np.log(3.0), np.log(300.0), 2000))
    return e, np.asarray(t.csda_range_g_cm2(0, e), dtype=np.float64)


def water_range_mm(energy_mev) -> np.ndarray:
    """CSDA range in water (mm) of the engine's ICRU 90 tables."""
    e, r = _water_range_table()
    return 10.0 * np.interp(np.asarray(energy_mev, float), e, r)


def energy_for_range_mm(range_mm) -> np.ndarray:
    """Inverse of :func:`water_range_mm` (MeV)."""
    e, r = _water_range_table()
    return np.interp(np.asarray(range_mm, float) / 10.0, r, e)


def bortfeld_idd(depth_cm: np.ndarray, energy_mev: float, energy_sigma_mev: float = 0.0,
                 range_cm: float | None = None, eps: float = BORTFELD_EPS) -> np.ndarray:
    """Bortfeld's (Med Phys 24, 2024, 1997) analytical Bragg curve in water: integrated depth dose per
    proton (MeV cm2/g) at ``depth_cm`` for a beam of ``energy_mev`` (range ``range_cm``, default the
    engine's CSDA range)."""
    from scipy.special import pbdv

    z = np.asarray(depth_cm, dtype=np.float64)
    r0 = float(range_cm if range_cm is not None else water_range_mm(energy_mev) / 10.0)
    p, a, b, g = BK_P, BK_ALPHA, BORTFELD_BETA, BORTFELD_GAMMA
    s_mono = 0.012 * r0**0.935
    sigma = np.sqrt(s_mono**2 + (energy_sigma_mev * a * p * energy_mev ** (p - 1)) ** 2)
    from math import gamma as _gamma, pi, sqrt

    pref = _gamma(1 / p) / (sqrt(2 * pi) * p * a ** (1 / p) * (1 + b * r0))
    c2 = b / p + g * b + eps / r0
    zeta = (r0 - z) / sigma
    out = np.zeros_like(z)
    far = zeta > 10.0                  # plateau: Bortfeld eq. (29) form (no overflow)
    if np.any(far):
        dz = r0 - z[far]
        out[far] = (dz ** (1 / p - 1) / (p * a ** (1 / p)) + c2 * dz ** (1 / p) / a ** (1 / p)) / (1 + b * r0)
    near = (~far) & (zeta > -12.0)
    if np.any(near):
        x = zeta[near]
        d1 = pbdv(-1 / p, -x)[0]
        d2 = pbdv(-1 / p - 1, -x)[0]
        out[near] = pref * np.exp(-x * x / 4) * sigma ** (1 / p) * (d1 / sigma + c2 * d2)
    return np.maximum(out, 0.0)


def mcs_sigma_mm(wet_mm: np.ndarray, range_mm: float) -> np.ndarray:
    """Lateral spread (mm) from multiple Coulomb scattering in water at depth ``wet_mm`` of a beam of
    CSDA range ``range_mm``: Preston-Koehler depth shape scaled to 0.0294 R^0.896 cm at the end of range."""
    r_cm = range_mm / 10.0
    s_end = 10.0 * 0.0294 * r_cm**0.896
    t = np.clip(np.asarray(wet_mm, float) / range_mm, 0.0, 0.999)
    f = 2 * (1 - t) ** 2 * np.log(1 / (1 - t)) + 3 * t**2 - 2 * t
    return s_end * np.sqrt(np.maximum(f, 0.0))


# --------------------------------------------------------------------------------------------------------
# geometry helpers: RSP, ray tracing
# --------------------------------------------------------------------------------------------------------
def relative_stopping_power(geometry: VoxelGeometry, energy_mev: float = 100.0) -> np.ndarray:
    """RSP per voxel (z, y, x): density x (S/rho)_medium / (S/rho)_water at ``energy_mev``."""
    from .._physics.stopping import electronic_mass_stopping_power

    s_w = float(electronic_mass_stopping_power("water", energy_mev))
    ratio = np.array([float(electronic_mass_stopping_power(m, energy_mev)) / s_w for m in geometry.materials])
    return (geometry.density_g_cm3_zyx * ratio[geometry.material_index_zyx]).astype(np.float32)


def mass_stopping_ratio(geometry: VoxelGeometry, energy_mev: float = 100.0) -> np.ndarray:
    """(S/rho)_medium / (S/rho)_water per material (dose to medium / dose to water for the same fluence)."""
    from .._physics.stopping import electronic_mass_stopping_power

    s_w = float(electronic_mass_stopping_power("water", energy_mev))
    return np.array([float(electronic_mass_stopping_power(m, energy_mev)) / s_w for m in geometry.materials])


def voxel_centres_mm(geometry: VoxelGeometry, mask_zyx: np.ndarray) -> np.ndarray:
    """(n, 3) x, y, z centres (mm) of the voxels of a mask."""
    k, j, i = np.nonzero(mask_zyx)
    o, v = np.asarray(geometry.origin_mm), np.asarray(geometry.voxel_size_mm)
    return np.stack([o[0] + i * v[0], o[1] + j * v[1], o[2] + k * v[2]], axis=1)


def _exit_distance(points: np.ndarray, back: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Distance from each point along ``back`` to where it leaves the box [lo, hi]."""
    with np.errstate(divide="ignore"):
        t = np.where(back > 0, (hi - points) / back, np.where(back < 0, (lo - points) / back, np.inf))
    return np.clip(t.min(axis=1), 0.0, None)


def water_equivalent_depth(geometry: VoxelGeometry, rsp_zyx: np.ndarray, points_mm: np.ndarray,
                           direction: Sequence[float], step_mm: float = 1.0) -> np.ndarray:
    """WET (mm) from the grid boundary to each point for a parallel beam travelling along ``direction``
    (vacuum outside the grid, as in the engine)."""
    from scipy.ndimage import map_coordinates

    d = np.asarray(direction, float) / np.linalg.norm(direction)
    pts = np.asarray(points_mm, float)
    lo, hi = geometry.lower_corner_mm, geometry.lower_corner_mm + geometry.extent_mm
    L = _exit_distance(pts, -d, lo, hi)
    n = int(np.ceil(L.max() / step_mm)) + 1
    o, v = np.asarray(geometry.origin_mm), np.asarray(geometry.voxel_size_mm)
    wet = np.zeros(len(pts))
    chunk = max(1, 2_000_000 // n)
    s = (np.arange(n) + 0.5) * step_mm
    for a in range(0, len(pts), chunk):
        p = pts[a:a + chunk]
        q = p[:, None, :] - s[None, :, None] * d[None, None, :]          # (m, n, 3) x, y, z
        idx = (q - o) / v
        vals = map_coordinates(rsp_zyx, [idx[..., 2].ravel(), idx[..., 1].ravel(), idx[..., 0].ravel()],
                               order=1, mode="nearest").reshape(len(p), n)
        vals *= (s[None, :] <= L[a:a + chunk, None])
        wet[a:a + chunk] = vals.sum(axis=1) * step_mm
    return wet


# --------------------------------------------------------------------------------------------------------
# plans
# --------------------------------------------------------------------------------------------------------
@dataclass
class FieldSpots:
    """The spots of one field in its beam frame: lateral (u, v) in mm at the isocentre plane, energy."""

    name: str
    direction: np.ndarray
    isocentre_mm: np.ndarray
    axis_x: np.ndarray
    u_mm: np.ndarray
    v_mm: np.ndarray
    energy_mev: np.ndarray
    weights: np.ndarray
    sigma_air_mm: float
    energy_spread_rel: float
    source_distance_mm: float

    @property
    def axis_y(self) -> np.ndarray:
        return np.cross(self.direction, self.axis_x)

    @property
    def n_spots(self) -> int:
        return int(self.u_mm.size)

    @property
    def n_layers(self) -> int:
        return int(np.unique(np.round(self.energy_mev, 3)).size)

    def spots(self) -> list[Spot]:
        ax, ay, d = self.axis_x, self.axis_y, self.direction
        out = []
        for u, v, e, w in zip(self.u_mm, self.v_mm, self.energy_mev, self.weights):
            pos = self.isocentre_mm + u * ax + v * ay - self.source_distance_mm * d
            out.append(Spot(float(e), position_mm=tuple(pos), direction=tuple(d), axis_x=tuple(ax),
                            energy_spread_mev=float(self.energy_spread_rel * e),
                            sigma_mm=(self.sigma_air_mm, self.sigma_air_mm), weight=float(w)))
        return out

    def beam(self) -> Beam:
        keep = self.weights > 0
        sub = FieldSpots(self.name, self.direction, self.isocentre_mm, self.axis_x, self.u_mm[keep],
                         self.v_mm[keep], self.energy_mev[keep], self.weights[keep], self.sigma_air_mm,
                         self.energy_spread_rel, self.source_distance_mm)
        return Beam(sub.spots(), total_protons=float(self.weights.sum()), name=self.name)


@dataclass
class Plan:
    """An optimised PBS plan: fields with absolute spot weights (protons per fraction)."""

    name: str
    target_name: str
    target_mask_zyx: np.ndarray
    fields: list[FieldSpots]
    prescription_gy: float                      # physical dose per fraction
    prescription_gy_rbe: float
    model_stats: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    @property
    def total_protons(self) -> float:
        return float(sum(f.weights.sum() for f in self.fields))

    def beam(self) -> Beam:
        """All fields as one Beam (spot weights = protons, ``total_protons`` = their sum), so one Monte Carlo
        run gives the plan dose per fraction."""
        spots = [s for f in self.fields for s in f.spots() if s.weight > 0]
        return Beam(spots, total_protons=self.total_protons, name=self.name)

    def beams(self) -> list[Beam]:
        return [f.beam() for f in self.fields]

    def summary(self) -> dict:
        return {"name": self.name, "target": self.target_name,
                "prescription_gy_rbe": self.prescription_gy_rbe, "prescription_gy": self.prescription_gy,
                "rbe": RBE, "total_protons": self.total_protons,
                "fields": [{"name": f.name, "direction": [round(float(c), 4) for c in f.direction],
                            "isocentre_mm": [round(float(c), 2) for c in f.isocentre_mm],
                            "spots": int((f.weights > 0).sum()), "layers": f.n_layers,
                            "energy_mev": [round(float(f.energy_mev.min()), 2), round(float(f.energy_mev.max()), 2)],
                            "protons": float(f.weights.sum())} for f in self.fields],
                "model": self.model_stats}


def gantry_direction(gantry_deg: float, couch_deg: float = 0.0) -> np.ndarray:
    """Beam direction (unit, phantom frame +x left, +y posterior, +z superior) for an IEC gantry angle of a
    head-first-supine patient: gantry 0 = beam from anterior (travelling +y), 90 = from the patient's left
    (travelling -x), 180 = from posterior (travelling -y), 270 = from the right (+x).  Couch rotation
    (degrees, about z) is applied to the beam."""
    g = np.radians(gantry_deg)
    d = np.array([-np.sin(g), np.cos(g), 0.0])
    c = np.radians(couch_deg)
    rot = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rot @ d


def _beam_frame(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(direction, float) / np.linalg.norm(direction)
    ax = default_axis_x(d)
    return ax, np.cross(d, ax)


def generate_field_spots(geometry: VoxelGeometry, rsp_zyx: np.ndarray, target_points_mm: np.ndarray,
                         direction: Sequence[float], *, name: str = "field", isocentre_mm=None,
                         sigma_air_mm: float = 4.0, spot_spacing_mm: float | None = None,
                         layer_spacing_mm: float = 4.0, lateral_margin_mm: float | None = None,
                         energy_spread_rel: float = 0.008, target_wet_mm: np.ndarray | None = None,
                         e_min_mev: float = 50.0) -> tuple[FieldSpots, np.ndarray]:
    """Spots (unit weights) covering the target from one direction; returns (field, WET of the points)."""
    d = np.asarray(direction, float) / np.linalg.norm(direction)
    ax, ay = _beam_frame(d)
    pts = np.asarray(target_points_mm, float)
    iso = np.asarray(isocentre_mm, float) if isocentre_mm is not None else pts.mean(axis=0)
    wet = target_wet_mm if target_wet_mm is not None else water_equivalent_depth(geometry, rsp_zyx, pts, d)
    spacing = spot_spacing_mm or 0.8 * sigma_air_mm
    margin = lateral_margin_mm if lateral_margin_mm is not None else sigma_air_mm
    rel = pts - iso
    u, v = rel @ ax, rel @ ay
    gu = np.arange(np.floor((u.min() - margin) / spacing), np.ceil((u.max() + margin) / spacing) + 1) * spacing
    gv = np.arange(np.floor((v.min() - margin) / spacing), np.ceil((v.max() + margin) / spacing) + 1) * spacing
    r_min = float(water_range_mm(e_min_mev))
    w_lo = max(float(wet.min()), r_min)
    w_hi = float(wet.max()) + 1.0
    ranges = np.arange(w_hi, w_lo - layer_spacing_mm, -layer_spacing_mm)
    ranges = ranges[ranges >= r_min - 1e-6] if np.any(ranges >= r_min - 1e-6) else np.array([r_min])
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
    energies = energy_for_range_mm(np.asarray(se))
    lo, hi = geometry.lower_corner_mm, geometry.lower_corner_mm + geometry.extent_mm
    src = float(np.linalg.norm(np.maximum(np.abs(lo - iso), np.abs(hi - iso)))) + 20.0
    f = FieldSpots(name, d, iso, ax, np.asarray(su, float), np.asarray(sv, float), np.asarray(energies, float),
                   np.ones(len(su)), float(sigma_air_mm), float(energy_spread_rel), src)
    return f, wet


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
    e_round = np.round(field_.energy_mev, 4)
    wet_cm = np.asarray(wet_mm, float) / 10.0
    fac = MEV_PER_G_TO_GY * (dose_factor if dose_factor is not None else 1.0)
    for e in np.unique(e_round):
        cols = np.nonzero(e_round == e)[0]
        r_mm = float(water_range_mm(e))
        if wet_offsets_mm is None:
            idd = bortfeld_idd(wet_cm, float(e), field_.energy_spread_rel * float(e), r_mm / 10.0)  # MeV cm2/g
        else:
            wo = np.broadcast_to(np.asarray(wet_offsets_mm, float), (len(wet_cm),) + np.shape(wet_offsets_mm)[-1:])
            zz = np.clip(wet_cm[:, None] + wo / 10.0, 0.0, None)
            idd = bortfeld_idd(zz.ravel(), float(e), field_.energy_spread_rel * float(e),
                               r_mm / 10.0).reshape(zz.shape).mean(axis=1)
        sig_mm = np.sqrt(field_.sigma_air_mm**2 + mcs_sigma_mm(wet_mm, r_mm) ** 2)
        sig_cm2 = (sig_mm / 10.0) ** 2
        base = idd * fac / (2 * np.pi * sig_cm2)                          # Gy per proton on the axis
        du = pu[:, None] - field_.u_mm[cols][None, :]
        dv = pv[:, None] - field_.v_mm[cols][None, :]
        r2 = (du * du + dv * dv) / (sig_mm[:, None] ** 2)
        g = np.where(r2 < cutoff_sigma**2, np.exp(-0.5 * r2), 0.0)
        A[:, cols] = (base[:, None] * g).astype(np.float32)
    return A


def optimise_weights(A: np.ndarray, target_dose: np.ndarray | float, *, iterations: int = 400,
                     point_weights: np.ndarray | None = None, x0: np.ndarray | None = None) -> np.ndarray:
    """Non-negative least squares min ||W^(1/2) (A x - b)||^2, x >= 0, by FISTA (accelerated projected
    gradient) with step 1/L, L = ||A||_2^2 from a power iteration.  Returns x (float64)."""
    A = np.asarray(A, np.float32)
    n_pts, n_sp = A.shape
    b = np.broadcast_to(np.asarray(target_dose, np.float64), (n_pts,)).astype(np.float64)
    sw = np.sqrt(point_weights) if point_weights is not None else np.ones(n_pts)
    Aw = A * sw[:, None].astype(np.float32)
    bw = (b * sw).astype(np.float32)
    # work in float32 throughout (a float64 vector would make NumPy copy the matrix on every product)
    scale = float(np.abs(Aw).max()) or 1.0
    Aw = Aw / np.float32(scale)
    if n_sp <= n_pts:                       # normal equations: iterate with the (n_sp x n_sp) Gram matrix
        G = Aw.T @ Aw
        c = Aw.T @ bw
        hess = lambda v: G @ v                              # noqa: E731
    else:
        c = Aw.T @ bw
        hess = lambda v: Aw.T @ (Aw @ v)                    # noqa: E731
    rng = np.random.default_rng(0)
    v = rng.random(n_sp).astype(np.float32)
    for _ in range(30):
        v = hess(v)
        v /= np.linalg.norm(v)
    L = float(np.linalg.norm(hess(v))) * 1.05
    if x0 is None:
        s = Aw @ np.ones(n_sp, np.float32)
        x0 = np.full(n_sp, float(bw @ s / max(float(s @ s), 1e-30)))
    else:
        x0 = np.asarray(x0, np.float64) * scale
    x = np.asarray(x0, np.float32).copy()
    y, t = x.copy(), 1.0
    for _ in range(iterations):
        xn = np.maximum(y - (hess(y) - c) / np.float32(L), np.float32(0.0))
        tn = 0.5 * (1 + np.sqrt(1 + 4 * t * t))
        y = xn + np.float32((t - 1) / tn) * (xn - x)
        x, t = xn, tn
    x = x.astype(np.float64) / scale
    return x


def _target_stats(dose: np.ndarray, pres: float) -> dict:
    from ..dvh import dose_stats

    st = dose_stats(dose, np.ones(dose.shape, bool), 1.0, pres)
    return {"d95_rel": st["d95"] / pres, "d98_rel": st["d98"] / pres, "d2_rel": st["d2"] / pres,
            "dmean_rel": st["dmean"] / pres, "within_5pct": st["within_5pct"]}


def optimise_plan(name: str, geometry: VoxelGeometry, target_mask: np.ndarray, field_specs: list[dict], *,
                  prescription_gy_rbe: float = 1.8, target_name: str = "CTV", max_points: int = 6000,
                  iterations: int = 400, seed: int = 0, rsp_zyx: np.ndarray | None = None,
                  keep_points_mask: np.ndarray | None = None, voxel_average_samples: int = 0) -> Plan:
    """Generate the spots of each field (``field_specs``: dicts with ``name``, ``direction`` and optional
    :func:`generate_field_spots` keywords, e.g. ``target_mask`` to restrict that field to part of the target)
    and optimise all spot weights jointly to a uniform physical dose prescription / RBE.

    ``keep_points_mask``: target voxels that are always optimisation points (the rest of the target is
    sampled at random up to ``max_points`` in all).  ``voxel_average_samples`` > 0: the dose-influence matrix
    holds the voxel-mean depth dose (that many depth samples per voxel, :func:`voxel_depth_offsets`) instead
    of the dose at the voxel centre, i.e. the quantity the Monte Carlo scores."""
    pres = prescription_gy_rbe / RBE
    rsp = rsp_zyx if rsp_zyx is not None else relative_stopping_power(geometry)
    msr = mass_stopping_ratio(geometry)
    pts_all = voxel_centres_mm(geometry, target_mask)
    if len(pts_all) == 0:
        raise ValueError("the target mask is empty")
    rng = np.random.default_rng(seed)
    if keep_points_mask is not None and len(pts_all) > max_points:
        kk, jj, ii = np.nonzero(target_mask)
        must = np.asarray(keep_points_mask, bool)[kk, jj, ii]
        rest = np.nonzero(~must)[0]
        n_rest = max(0, min(len(rest), max_points - int(must.sum())))
        sel = np.sort(np.concatenate([np.nonzero(must)[0], rng.choice(rest, n_rest, replace=False)]))
    else:
        sel = np.sort(rng.choice(len(pts_all), max_points, replace=False)) if len(pts_all) > max_points \
            else np.arange(len(pts_all))
    pts = pts_all[sel]
    k, j, i = (np.asarray(a)[sel] for a in np.nonzero(target_mask))
    dose_factor = msr[geometry.material_index_zyx[k, j, i]]
    rsp_pts = rsp[k, j, i].astype(np.float64)
    fields, blocks = [], []
    for spec in field_specs:
        spec = dict(spec)
        fname, direction = spec.pop("name"), spec.pop("direction")
        sub = spec.pop("target_mask", None)
        wet = water_equivalent_depth(geometry, rsp, pts, direction)
        if sub is not None:
            in_sub = np.asarray(sub)[k, j, i]
            f, _ = generate_field_spots(geometry, rsp, pts[in_sub], direction, name=fname,
                                        target_wet_mm=wet[in_sub], **spec)
        else:
            f, _ = generate_field_spots(geometry, rsp, pts, direction, name=fname, target_wet_mm=wet, **spec)
        fields.append(f)
        offs = None
        if voxel_average_samples:
            offs = rsp_pts[:, None] * voxel_depth_offsets(geometry.voxel_size_mm, direction,
                                                          int(voxel_average_samples))[None, :]
        blocks.append(influence_matrix(f, pts, wet, dose_factor, wet_offsets_mm=offs))
    A = np.concatenate(blocks, axis=1)
    x = optimise_weights(A, pres, iterations=iterations)
    # drop negligible spots and refit once
    keep = x > 2e-3 * x[x > 0].mean() if np.any(x > 0) else np.ones_like(x, bool)
    x2 = np.zeros_like(x)
    x2[keep] = optimise_weights(A[:, keep], pres, iterations=iterations // 2, x0=x[keep])
    dose = A.astype(np.float64) @ x2
    n0 = 0
    for f in fields:
        f.weights = x2[n0:n0 + f.n_spots]
        n0 += f.n_spots
        keepf = f.weights > 0
        for attr in ("u_mm", "v_mm", "energy_mev", "weights"):
            setattr(f, attr, getattr(f, attr)[keepf])
    stats = _target_stats(dose, pres)
    stats.update({"points": int(len(pts)), "spots": int(sum(f.n_spots for f in fields)),
                  "kernel": "Bortfeld 1997 Bragg curve x Gaussian (air + Preston-Koehler MCS)"
                            + (f", voxel-mean depth dose ({int(voxel_average_samples)} samples)"
                               if voxel_average_samples else "")})
    return Plan(name, target_name, np.asarray(target_mask, bool), fields, pres, prescription_gy_rbe, stats,
                {"target_volume_cm3": float(target_mask.sum() * geometry.voxel_volume_cm3)})


# --------------------------------------------------------------------------------------------------------
# the two reference plans
# --------------------------------------------------------------------------------------------------------
def _label_mask(geometry: VoxelGeometry, names) -> np.ndarray:
    ids = [i for i, nm in geometry.label_names.items() if nm in set(names)]
    return np.isin(geometry.labels_zyx, ids)


def _grid_xyz(geometry: VoxelGeometry):
    z, y, x = (geometry.axis_mm(a) for a in "zyx")
    return np.meshgrid(z, y, x, indexing="ij")


def posterior_fossa_target(geometry: VoxelGeometry, semi_axes_mm: Sequence[float] = (22.0, 16.0, 16.0),
                           centre_mm: Sequence[float] | None = None) -> np.ndarray:
    """Posterior-fossa boost CTV: an ellipsoid (semi-axes x, y, z in mm; default a ~30 mL tumour bed + margin
    for a 5-year-old) at the ``posterior_fossa`` landmark (cerebellum centre), clipped to the cranial
    cavity (brain, cerebellum, brainstem, ventricles, CSF)."""
    c = np.asarray(centre_mm if centre_mm is not None else geometry.meta["landmarks_mm"]["posterior_fossa"], float)
    Z, Y, X = _grid_xyz(geometry)
    s = np.asarray(semi_axes_mm, float)
    ell = ((X - c[0]) / s[0]) ** 2 + ((Y - c[1]) / s[1]) ** 2 + ((Z - c[2]) / s[2]) ** 2 <= 1.0
    return ell & _label_mask(geometry, INTRACRANIAL)


def craniospinal_target(geometry: VoxelGeometry) -> dict[str, np.ndarray]:
    """CSI CTV parts: ``brain`` (whole cranial cavity contents) and ``spine`` (thecal sac: spinal-canal CSF +
    cord), and their union ``csi``."""
    brain = _label_mask(geometry, INTRACRANIAL + ("optic_nerve_left", "optic_nerve_right"))
    spine = _label_mask(geometry, ("spinal_canal_csf", "spinal_cord"))
    return {"brain": brain, "spine": spine, "csi": brain | spine}


def posterior_fossa_plan(geometry: VoxelGeometry, *, prescription_gy_rbe: float = 1.8,
                         gantry_deg: Sequence[float] = (180.0, 140.0, 220.0), sigma_air_mm: float = 4.0,
                         layer_spacing_mm: float = 4.0, target: np.ndarray | None = None,
                         iterations: int = 400, max_points: int = 6000) -> Plan:
    """Posterior-fossa (medulloblastoma) boost: PA + two posterior-oblique fields (IEC gantry 180, 140,
    220 deg by default), spots optimised to a uniform dose of ``prescription_gy_rbe`` / 1.1 Gy per fraction."""
    tgt = posterior_fossa_target(geometry) if target is None else np.asarray(target, bool)
    names = {180.0: "PA G180", 140.0: "LPO G140", 220.0: "RPO G220"}
    specs = [{"name": names.get(float(g), f"G{g:g}"), "direction": gantry_direction(g),
              "sigma_air_mm": sigma_air_mm, "layer_spacing_mm": layer_spacing_mm} for g in gantry_deg]
    return optimise_plan("posterior-fossa boost", geometry, tgt, specs, prescription_gy_rbe=prescription_gy_rbe,
                         target_name="CTV_PF", iterations=iterations, max_points=max_points)


def craniospinal_plan(geometry: VoxelGeometry, *, prescription_gy_rbe: float = 1.8,
                      cranial_gantry_deg: Sequence[float] = (150.0, 210.0), sigma_air_mm: float = 8.0,
                      spot_spacing_mm: float = 8.0, layer_spacing_mm: float = 6.0, max_spine_field_mm: float = 300.0,
                      overlap_mm: float = 50.0, iterations: int = 300, max_points: int = 5000,
                      spine_layer_spacing_mm: float | None = None, voxel_average_samples: int = 5,
                      keep_spine_points: bool = True) -> Plan:
    """Craniospinal irradiation (coarse: 8 mm spots on an 8 mm grid, 6 mm layers): two posterior-oblique
    cranial fields (IEC gantry 150/210 deg) on the whole
    brain and one or more posterior (gantry 180) spinal fields on the thecal sac (split into fields of at
    most ``max_spine_field_mm`` with ``overlap_mm`` overlap; the joint optimisation of all spots feathers the
    junctions).  Coarse: needs a phantom with region="neuraxis" (or "head_neck" for the cervical part)."""
    parts = craniospinal_target(geometry)
    if not parts["spine"].any():
        raise ValueError("the phantom has no spinal canal: use make_head_phantom(..., region='neuraxis')")
    common = {"sigma_air_mm": sigma_air_mm, "spot_spacing_mm": spot_spacing_mm, "layer_spacing_mm": layer_spacing_mm}
    specs = [{"name": f"cranial G{g:g}", "direction": gantry_direction(g), "target_mask": parts["brain"], **common}
             for g in cranial_gantry_deg]
    z = geometry.axis_mm("z")
    kz = np.nonzero(parts["spine"].any(axis=(1, 2)))[0]
    z_lo, z_hi = z[kz.min()], z[kz.max()]
    # the top spinal field reaches into the cranial cavity by the overlap (junction region)
    z_hi = min(z_hi + overlap_mm, z[np.nonzero(parts["brain"].any(axis=(1, 2)))[0].min()] + overlap_mm)
    n = max(1, int(np.ceil((z_hi - z_lo - overlap_mm) / (max_spine_field_mm - overlap_mm))))
    length = (z_hi - z_lo + (n - 1) * overlap_mm) / n
    Z = z[:, None, None]
    for m in range(n):
        top = z_hi - m * (length - overlap_mm)
        band = (Z <= top) & (Z >= top - length)
        specs.append({"name": f"spine {m + 1} G180", "direction": gantry_direction(180.0),
                      "target_mask": parts["csi"] & band,
                      **{**common, "layer_spacing_mm": spine_layer_spacing_mm or layer_spacing_mm}})
    return optimise_plan("craniospinal", geometry, parts["csi"], specs, prescription_gy_rbe=prescription_gy_rbe,
                         target_name="CTV_CSI", iterations=iterations, max_points=max_points,
                         keep_points_mask=parts["spine"] if keep_spine_points else None,
                         voxel_average_samples=voxel_average_samples)


def verify_plan(plan: Plan, geometry: VoxelGeometry, settings=None, progress=False, normalise: bool = False):
    """Monte Carlo dose of the plan (one run of all fields).  Returns (DoseResult, target stats dict); with
    ``normalise=True`` the dose (and total protons) is rescaled so that the target mean dose equals the
    prescription (plan normalisation) and the factor is reported as ``normalisation_factor``."""
    import dataclasses

    from ..dvh import dose_stats
    from ..run import simulate

    res = simulate(geometry, plan.beam(), settings, progress=progress)
    st = dose_stats(res.dose_gy_zyx, plan.target_mask_zyx, geometry.voxel_volume_cm3, plan.prescription_gy)
    out = {"mc_over_model_mean": st["dmean"] / plan.prescription_gy, "normalisation_factor": 1.0}
    if normalise and st["dmean"] > 0:
        f = plan.prescription_gy / st["dmean"]
        res = dataclasses.replace(res, dose_gy_zyx=res.dose_gy_zyx * f,
                                  dose_to_water_gy_zyx=res.dose_to_water_gy_zyx * f,
                                  normalisation=f"Gy for {plan.total_protons * f:.6g} protons (plan normalised "
                                                f"to the target mean, factor {f:.4f})")
        for fl in plan.fields:
            fl.weights = fl.weights * f
        st = dose_stats(res.dose_gy_zyx, plan.target_mask_zyx, geometry.voxel_volume_cm3, plan.prescription_gy)
        out["normalisation_factor"] = f
    out.update(st)
    out["d95_rel"] = st["d95"] / plan.prescription_gy
    return res, out
