"""The extent of ``mcproton check``'s transport grid along the CT's slice axis (z): the slices that the TPS dose grid
and the beams' way to it need, not the whole CT (scale audit of 2026-12-07, F1: a 1 mm head grid on a head-and-torso
CT made a transport grid of the whole CT, 512 x 512 x 360, and was refused as needing 16.1 GB).

What is kept (:func:`transport_crop`), in whole blocks of the transport grid (the CT's slices from its first one, as
the uncropped blocks lie, so a kept block is the uncropped block bit for bit) and clipped to the CT:

* the CT's whole axial field of view (x and y are not cropped);
* along z, the TPS grid's extent and, for every spot of weight > 0 of every beam, the z extent of its central ray's
  path through the CT's box (the whole line, so the material behind a source or a range shifter inside the box is
  kept too) up to where the ray enters the TPS grid's box (a ray that misses that box: its whole path through the
  CT), and each beam's central axis up to its isocentre (the outside-External note traces it), all widened by
  :func:`crop_margin_mm` on both sides;
* for a beam whose central axis is not perpendicular to z (more than NONCOPLANAR_DZ: a couch angle with a gantry
  angle off 0/180 deg), the whole CT on its upstream side along z: a proton of the spot's Gaussian tail or of a range
  shifter's large-angle halo may enter the CT farther from its ray than any margin and then travel along z towards
  the TPS grid; with the slices upstream removed it would fly through them in vacuum and arrive with energy that the
  tissue there would have taken.  In a beam perpendicular to z (couch 0) such a proton moves away from the kept slices
  (its displacement along z grows with its angle), so the margin suffices.

Where nothing is removed the CT is converted as before (the same geometry, the same dose, bit for bit).  The MC dose
is used on the TPS grid only (the doses, DVHs, ranges, gamma, diagnostics and the RT Dose written are resampled onto
it: compute.to_tps_grid), so the slices removed carry nothing that the check compares; the geometry notes that count
voxels (a structure set's override ROIs, air outside the External) count those of the transport grid.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

#: The least margin (mm) added along z on each side of the TPS grid and the beams' paths: protons that leave the kept
#: slices are lost, and the dose on the TPS grid misses only those that would have come back into it from farther
#: than this (a proton's lateral random walk in multiple scattering taking it 30 mm out and back again; the
#: halo of nuclear secondaries around a pencil beam, several cm wide, moves outward from the beam: Pedroni et al.,
#: Phys Med Biol 50 (2005) 541).  The brief of the scale audit's fix (2026-12-07) asks for at least 30 mm.
CROP_MIN_MARGIN_MM = 30.0
#: The margin is at least this many sigmas of the largest spot at the CT plus this many of the multiple-scattering
#: spread at the end of the highest energy's range (crop_margin_mm): 3 sigma leave 0.13 % of a Gaussian beyond on
#: one side.
CROP_SIGMAS = 3.0
#: A beam whose central axis has a z component (unit vector) above this is not perpendicular to z (sin 1 deg): its
#: upstream side along z is kept whole (module docstring).  Couch 0: exactly 0.
NONCOPLANAR_DZ = math.sin(math.radians(1.0))
#: Gottschalk's scattering-power constant E_s (MeV): T = (E_s / pv)^2 / X_S (Med Phys 37 (2010) 352; the kernels'
#: and mcproton/_physics/scattering.py's)
_E_S_MEV = 15.0
#: the proton's rest energy (MeV; CODATA 2018, as validation/reference.py)
_PROTON_MASS_MEV = 938.272088


def _faces(origin_mm: Sequence[float], voxel_size_mm: Sequence[float],
           shape_zyx: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """The (x, y, z) lower and upper outer faces of a grid of voxel centres."""
    o, v = np.asarray(origin_mm, float), np.asarray(voxel_size_mm, float)
    n = np.asarray(tuple(shape_zyx)[::-1], float)
    return o - v / 2, o + (n - 0.5) * v


def _line_box(p: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the lines p + t d (rows; ``d`` unit, t in mm, any sign) are inside the box [lo, hi]: (t_in, t_out),
    t_in > t_out where a line misses it."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (lo - p) / d, (hi - p) / d
    inside = (p >= lo) & (p <= hi)
    t_lo = np.where(d == 0, np.where(inside, -np.inf, np.inf), np.minimum(t1, t2))
    t_hi = np.where(d == 0, np.where(inside, np.inf, -np.inf), np.maximum(t1, t2))
    return t_lo.max(axis=1), t_hi.min(axis=1)


def _spot_arrays(beam: Any) -> dict[str, np.ndarray] | None:
    """The spots of ``beam`` with a weight above 0 as arrays (None without any)."""
    spots = [s for s in beam.spots if s.weight > 0]
    if not spots:
        return None
    d = np.array([s.direction for s in spots], float)
    return {"p": np.array([s.position_mm for s in spots], float), "d": d / np.linalg.norm(d, axis=1, keepdims=True),
            "sigma": np.array([s.sigma_mm for s in spots], float),
            "div": np.array([s.divergence_rad for s in spots], float),
            "corr": np.array([s.correlation for s in spots], float),
            "energy": np.array([s.energy_mev + 3 * s.energy_spread_mev for s in spots], float),
            "mean_energy": np.array([s.energy_mev for s in spots], float),
            "shifter": [s.range_shifter for s in spots]}


def _beam_axis(beam: Any, spots: dict[str, np.ndarray]) -> tuple[np.ndarray | None, np.ndarray]:
    """The isocentre (None where the beam does not give one) and the unit direction of ``beam``'s central axis (its
    meta from plan_to_beams, else the spots' mean direction)."""
    meta = getattr(beam, "meta", None) or {}
    iso = meta.get("isocenter_mm")
    d = meta.get("beam_direction")
    axis = np.asarray(d, float) if d is not None else spots["d"].mean(axis=0)
    axis = axis / np.linalg.norm(axis)
    return (None if iso is None else np.asarray(iso, float)), axis


#: Steps of the integral of the scattering power through a range shifter (_shifter_sigma_mm)
_SHIFTER_STEPS = 64


def _shifter_sigma_mm(spots: dict[str, np.ndarray], far_mm: np.ndarray) -> np.ndarray:
    """The spread (mm, projected) a spot's range shifter adds at ``far_mm`` along its ray from the source plane:
    Fermi-Eyges, sigma^2 = int (L - s)^2 T(s) rho ds over the slab (L: from its upstream face to ``far_mm``), with
    Gottschalk's scattering power T = (E_s / pv)^2 / X_S (Med Phys 37 (2010) 352; mcproton/_physics/scattering.py's
    X_S) at the energy along the slab, from the residual water range falling linearly with depth by the slab's WET
    (the engine's shifter_wet_mm and ICRU 90 water); 0 without a shifter, or where the protons stop in it."""
    from .._physics.scattering import scattering_length_g_cm2
    from .._run.inputs import shifter_wet_mm
    from ..planning.kernel import energy_for_range_mm, water_range_mm

    out = np.zeros(len(far_mm))
    moments: dict[Any, tuple[float, float, float] | None] = {}
    for i, rs in enumerate(spots["shifter"]):
        if rs is None:
            continue
        t_mm = float(rs.thickness_mm)
        key = (float(spots["mean_energy"][i]), rs.material_name, t_mm, float(rs.density_g_cm3))
        if key not in moments:   # int T rho ds, int s T rho ds, int s^2 T rho ds over the slab (s from its face, mm)
            r_in = float(water_range_mm(key[0]))
            wet = shifter_wet_mm(rs)
            if r_in - wet <= 1.0:
                moments[key] = None   # the protons stop in the shifter (check_shifter_ranges warns of such a layer)
            else:
                s = (np.arange(_SHIFTER_STEPS) + 0.5) * t_mm / _SHIFTER_STEPS
                e = np.asarray(energy_for_range_mm(r_in - wet * s / t_mm), float)
                pv = e * (e + 2 * _PROTON_MASS_MEV) / (e + _PROTON_MASS_MEV)
                # rad^2 per mm of the slab: (E_s / pv)^2 / X_S x rho, X_S in g/cm2 and rho in g/cm3 (/10: per mm)
                tr = (_E_S_MEV / pv) ** 2 * float(rs.density_g_cm3) / scattering_length_g_cm2(rs.material) / 10.0
                ds = t_mm / _SHIFTER_STEPS
                moments[key] = (float(np.sum(tr) * ds), float(np.sum(s * tr) * ds), float(np.sum(s * s * tr) * ds))
        m = moments[key]
        if m is None:
            continue
        lever = max(0.0, float(far_mm[i]) - float(rs.upstream_face_mm))
        out[i] = math.sqrt(max(0.0, lever * lever * m[0] - 2 * lever * m[1] + m[2]))
    return out


def mcs_sigma_end_mm(energy_mev: float) -> float:
    """The lateral spread (mm, projected, 1 sigma) of a pencil beam of ``energy_mev`` at the end of its range in
    water from multiple Coulomb scattering: Fermi-Eyges with Gottschalk's differential Moliere scattering power (Med
    Phys 37 (2010) 352; validation/reference.py sigma_fermi_eyges, ICRU 90 water): 0.9 mm at 70 MeV, 3.5 mm at
    150 MeV, 7.2 mm at 230 MeV."""
    from ..validation.reference import sigma_fermi_eyges, water_table

    w = water_table()
    r = float(w.csda_range(float(energy_mev))) * 10.0
    return float(sigma_fermi_eyges(float(energy_mev), [0.999 * r], w)[0])


@dataclass
class TransportCrop:
    """The transport grid's slices of the CT (:func:`transport_crop`): CT slices ``first`` to ``stop`` - 1 of
    ``n_slices`` (0-based), their outer faces ``z_mm``; ``needed_z_mm`` what the TPS grid (``tps_z_mm``) and the
    beams' paths (``paths_z_mm``) need with the ``margin_mm``; ``upstream_whole``: the beams not perpendicular to z
    whose upstream side is kept whole."""

    first: int
    stop: int
    n_slices: int
    z_mm: tuple[float, float]
    needed_z_mm: tuple[float, float]
    tps_z_mm: tuple[float, float]
    paths_z_mm: tuple[float, float] | None
    margin_mm: float
    spot_sigma_mm: float
    mcs_sigma_mm: float
    upstream_whole: list[str] = field(default_factory=list)

    @property
    def removes(self) -> bool:
        """Whether the crop removes any slice."""
        return self.first > 0 or self.stop < self.n_slices

    def slices(self) -> slice:
        return slice(self.first, self.stop)

    def said(self) -> str:
        """What the transport grid covers along z and why, in words (the log, the grid note)."""
        kept = (f"the CT's slices {self.first + 1}-{self.stop} of {self.n_slices}" if self.removes
                else f"all {self.n_slices} slices of the CT")
        why = f"the TPS grid's z range {self.tps_z_mm[0]:.1f}..{self.tps_z_mm[1]:.1f} mm"
        if self.paths_z_mm is not None and (self.paths_z_mm[0] < self.tps_z_mm[0] - 0.05
                                            or self.paths_z_mm[1] > self.tps_z_mm[1] + 0.05):
            why += f", the beams' paths through the CT to it ({self.paths_z_mm[0]:.1f}..{self.paths_z_mm[1]:.1f} mm)"
        why += f" and a margin of {self.margin_mm:.0f} mm"
        if self.upstream_whole:
            why += (f"; the CT upstream of beam(s) {', '.join(self.upstream_whole)} (not perpendicular to z) kept "
                    "whole")
        return f"{kept} (z {self.z_mm[0]:.1f}..{self.z_mm[1]:.1f} mm: {why}), over the CT's whole axial field of view"

    def record(self) -> dict:
        """check.json's ``provenance.transport_grid`` (with the grid's shape, added by the caller)."""
        return {"ct_slices": [self.first + 1, self.stop], "ct_slices_of": self.n_slices, "cropped": self.removes,
                "z_mm": [round(v, 2) for v in self.z_mm],
                "needed_z_mm": [round(v, 2) if math.isfinite(v) else None for v in self.needed_z_mm],
                "tps_z_mm": [round(v, 2) for v in self.tps_z_mm],
                "beam_paths_z_mm": None if self.paths_z_mm is None else [round(v, 2) for v in self.paths_z_mm],
                "margin_mm": round(self.margin_mm, 1),
                "margin_why": (f"max({CROP_MIN_MARGIN_MM:g} mm, {CROP_SIGMAS:g} x (the largest spot sigma at the CT "
                               f"{self.spot_sigma_mm:.1f} mm + the multiple-scattering sigma at the end of the highest "
                               f"energy's range in water {self.mcs_sigma_mm:.1f} mm))"),
                "upstream_kept_whole": list(self.upstream_whole), "said": self.said()}


def crop_margin_mm(spot_sigma_mm: float, mcs_sigma_mm: float) -> float:
    """The margin along z (mm): at least CROP_MIN_MARGIN_MM, and CROP_SIGMAS x (the largest spot sigma at the CT +
    the multiple-scattering sigma at the end of the highest energy's range), added linearly (more than in
    quadrature)."""
    return max(CROP_MIN_MARGIN_MM, CROP_SIGMAS * (float(spot_sigma_mm) + float(mcs_sigma_mm)))


def transport_crop(ct_grid: Any, ref: Any, beams: Sequence[Any], factors: Sequence[int]) -> TransportCrop:
    """The CT slices the check transports (module docstring): ``ct_grid`` the CT's grid (``origin_mm``,
    ``voxel_size_mm``, ``shape_zyx``: a :class:`~mcproton._io.ct.CTImage` or the grid of its headers), ``ref`` the TPS
    grid (the same attributes), ``beams`` the plan's :class:`~mcproton.source.Beam`s in the CT's frame,
    ``factors`` = (fx, fy, fz) the transport blocks in CT voxels (the kept slices are whole blocks from the CT's
    first slice)."""
    ct_lo, ct_hi = _faces(ct_grid.origin_mm, ct_grid.voxel_size_mm, ct_grid.shape_zyx)
    tps_lo, tps_hi = _faces(ref.origin_mm, ref.voxel_size_mm, ref.shape_zyx)
    z_lo, z_hi = [], []   # each path's z extent
    sig_spot = 0.0
    e_max = 0.0
    upstream_lo = upstream_hi = False
    whole: list[str] = []
    for b in beams:
        s = _spot_arrays(b)
        if s is None:
            continue
        p, d = s["p"], s["d"]
        a0, a1 = _line_box(p, d, ct_lo, ct_hi)
        b0, b1 = _line_box(p, d, tps_lo, tps_hi)
        hit = a0 <= a1
        end = np.where(b0 <= b1, np.minimum(a1, np.maximum(a0, b0)), a1)   # to the TPS box, else through the CT
        for t in (a0[hit], end[hit]):
            z = p[hit, 2] + t * d[hit, 2]
            if z.size:
                z_lo.append(float(z.min()))
                z_hi.append(float(z.max()))
        # the spots' size at the CT: sigma^2(s) = sigma0^2 + 2 rho sigma0 theta s + theta^2 s^2 per axis, largest at
        # an end of the path (a convex quadratic in s), with the range shifter's scattering added in quadrature
        far = np.maximum(end, 0.0)
        worst = np.zeros(len(p))
        for dist in (np.maximum(a0, 0.0), far):
            var = (s["sigma"] ** 2 + 2 * s["corr"] * s["sigma"] * s["div"] * dist[:, None]
                   + (s["div"] * dist[:, None]) ** 2)
            worst = np.maximum(worst, np.sqrt(np.maximum(var, 0.0)).max(axis=1))
        worst = np.sqrt(worst ** 2 + _shifter_sigma_mm(s, far) ** 2)
        if hit.any():
            sig_spot = max(sig_spot, float(worst[hit].max()))
            e_max = max(e_max, float(s["energy"][hit].max()))
        iso, axis = _beam_axis(b, s)
        if iso is not None:   # the central axis from the CT's face to the isocentre (and to the TPS box)
            c0, c1 = _line_box(iso[None], axis[None], ct_lo, ct_hi)
            if c0[0] <= c1[0]:
                t0, t1 = _line_box(iso[None], axis[None], tps_lo, tps_hi)
                stop = max(0.0, float(t0[0])) if t0[0] <= t1[0] else 0.0
                stop = min(float(c1[0]), max(float(c0[0]), stop))
                z = [float(iso[2] + c0[0] * axis[2]), float(iso[2] + stop * axis[2])]
                z_lo.append(min(z))
                z_hi.append(max(z))
        if abs(float(axis[2])) > NONCOPLANAR_DZ:
            whole.append(str((getattr(b, "meta", None) or {}).get("beam_number", b.name)))
            if axis[2] < 0:
                upstream_hi = True   # it comes from +z
            else:
                upstream_lo = True
    mcs = mcs_sigma_end_mm(e_max) if e_max > 0 else 0.0
    margin = crop_margin_mm(sig_spot, mcs)
    paths = (min(z_lo), max(z_hi)) if z_lo else None
    lo = min([float(tps_lo[2])] + ([paths[0]] if paths else [])) - margin
    hi = max([float(tps_hi[2])] + ([paths[1]] if paths else [])) + margin
    if upstream_lo:
        lo = -math.inf
    if upstream_hi:
        hi = math.inf
    n = int(ct_grid.shape_zyx[0])
    dz = float(ct_grid.voxel_size_mm[2])
    fz = max(1, int(factors[2]))
    first = int(math.floor((lo - float(ct_lo[2])) / dz + 1e-6)) if math.isfinite(lo) else 0
    stop = int(math.ceil((hi - float(ct_lo[2])) / dz - 1e-6)) if math.isfinite(hi) else n
    first = max(0, (first // fz) * fz)
    stop = min(n, -(-stop // fz) * fz)
    if stop <= first:   # the TPS grid and the beams beside the CT (refused elsewhere): the whole CT, as before
        first, stop = 0, n
    z0 = float(ct_lo[2]) + first * dz
    return TransportCrop(first, stop, n, (z0, z0 + (stop - first) * dz), (lo, hi),
                         (float(tps_lo[2]), float(tps_hi[2])), paths, margin, sig_spot, mcs, whole)
