"""The ``lateral_spread`` validation case: lateral spread against Fermi-Eyges / Highland.

Its reference data and README (source, set-up, metrics, tolerances) are in this folder."""
from __future__ import annotations

import math

import numpy as np

from .. import metrics as M
from .. import reference as R
from ..core import CaseResult, Context, Metric, water_density
from ..plots import Series, overlay_with_difference


def case_lateral_spread(ctx: Context) -> CaseResult:
    from ...geometry import box_phantom
    from ...source import Beam

    cr = CaseResult("lateral_spread",
                    "Lateral spread (sigma) of a 150 MeV pencil beam in water vs Fermi-Eyges theory",
                    "analytical (Fermi-Eyges with Gottschalk's differential Moliere scattering power; "
                    "generalised Highland)")
    e0 = 150.0
    rho_w = water_density()
    water = R.water_table(ctx.water_model())
    r0 = float(water.csda_range(e0)) * 10 / rho_w
    dxy, dz, lat = 1.0, 2.0, 60.0
    depth = math.ceil(r0 * 1.08 / dz) * dz
    geom = box_phantom("water", size_mm=(lat, lat, depth), voxel_mm=(dxy, dxy, dz), name="water lateral")
    # a point source, off the voxel boundaries at x = y = 0 (the Gaussian fit finds the centre)
    beam = Beam.pencil(e0, position_mm=(0.3, 0.2, -1.0), direction=(0, 0, 1), energy_spread_mev=3e-4 * e0,
                       sigma_mm=(0.0, 0.0))
    n = ctx.pick(20_000, 300_000)
    zc = geom.axis_mm("z")
    xc, yc = geom.axis_mm("x"), geom.axis_mm("y")
    fracs = [0.6, 0.75, 0.9, 0.97]
    depths = [float(zc[int(np.argmin(np.abs(zc - f * r0)))]) for f in fracs]

    def core_sigmas(res) -> list[float]:
        dose = np.asarray(res.dose_gy_zyx, float)
        out = []
        for d in depths:
            sl = dose[int(np.argmin(np.abs(zc - d)))]
            out.append(0.5 * (M.gaussian_sigma(xc, sl.sum(axis=0), 0.1, dxy) +
                              M.gaussian_sigma(yc, sl.sum(axis=1), 0.1, dxy)))
        return out

    # The analytical references describe multiple Coulomb scattering only: the scored comparison runs the
    # engine with nuclear interactions off; the full-physics sigma (nuclear elastic scattering and secondaries
    # widen the profile) is reported beside it for information.
    res_mcs, _ = ctx.simulate(geom, beam, n, f"{e0:g} MeV point pencil, MCS only (nuclear off)", cr.name,
                              seed_offset=400, physics_override={"nuclear": False})
    res_full, _ = ctx.simulate(geom, beam, n, f"{e0:g} MeV point pencil, full physics", cr.name,
                               seed_offset=401)
    s_sim, s_full = core_sigmas(res_mcs), core_sigmas(res_full)
    depths_a = np.array(depths)
    s_fe = R.sigma_fermi_eyges(e0, depths_a, water, 0.0, rho_w)
    s_hl = R.sigma_generalized_highland(e0, depths_a, water, 0.0, rho_w)
    for d, f, s, a, h, sf in zip(depths, fracs, s_sim, s_fe, s_hl, s_full):
        cr.metrics.append(Metric(f"sigma at {d:.0f} mm ({f:.0%} of CSDA) vs Fermi-Eyges/dM", s, float(a),
                                 0.05, "mm", "rel", "MCS only (nuclear off)"))
        cr.metrics.append(Metric(f"sigma at {d:.0f} mm vs generalised Highland", s, float(h), 0.08, "mm",
                                 "rel", "MCS only (nuclear off)"))
        cr.metrics.append(Metric(f"sigma at {d:.0f} mm, full physics (with nuclear halo)", sf, float(a), None,
                                 "mm",
                                 "info", "core fit widened by nuclear elastic scattering and secondaries"))
    zz = np.linspace(5, r0 * 0.98, 80)
    cr.figures.append(overlay_with_difference(
        f"Lateral sigma of a {e0:g} MeV pencil beam (no initial size) in water",
        [Series(depths_a, s_sim, "mcproton, MCS only (Gaussian fit to the core >= 10 %)", "o"),
         Series(depths_a, s_full, "mcproton, full physics (info)", "x"),
         Series(zz, R.sigma_fermi_eyges(e0, zz, water, 0.0, rho_w), "Fermi-Eyges, differential Moliere", "-"),
         Series(zz, R.sigma_generalized_highland(e0, zz, water, 0.0, rho_w), "generalised Highland", "--")],
        [Series(depths_a, 100 * (np.array(s_sim) / s_fe - 1), "MCS only vs Fermi-Eyges/dM (%)", "o-"),
         Series(depths_a, 100 * (np.array(s_sim) / s_hl - 1), "MCS only vs generalised Highland (%)", "s:"),
         Series(depths_a, 100 * (np.array(s_full) / s_fe - 1), "full physics vs Fermi-Eyges/dM (%)", "x--")],
        "depth (mm)", "sigma (mm)", "difference (%)", band=5.0,
        band_label="tolerance vs Fermi-Eyges/dM, each depth (vs Highland: 8 %)", filename="lateral_spread.png"))
    cr.notes.append("Reference computed here: sigma^2(z) = int_0^z (z-s)^2 T(s) rho ds (Fermi-Eyges, no "
                    "initial size or divergence) with T = T_dM of Gottschalk, Med Phys 37:352 (2010), E_s = "
                    "15.0 MeV, X_S(water) = 46.88 g/cm2, and E(s) from the CSDA range-energy relation; and "
                    "Highland's formula generalised to thick targets (Gottschalk et al., NIM B 74:467, "
                    "1993), 14.1 MeV, X0 = 36.08 g/cm2.")
    cr.notes.append("Simulated sigma: Gaussian fitted to the points >= 10 % of the maximum of the projected "
                    "profile (dose summed over the other axis) in one 2 mm depth slab, bin width^2/12 "
                    "subtracted, mean of x and y.")
    cr.notes.append("The references are theories of multiple Coulomb scattering alone, so the scored run has "
                    "nuclear interactions switched off. With full physics, nuclear elastic scattering on "
                    "oxygen (16 % of 150 MeV "
                    "protons, typical deflection 0.2 rad) and nonelastic secondaries add a halo that widens "
                    "even the fitted core by 4-8 % near the end of range; those values are listed as info.")
    return cr
