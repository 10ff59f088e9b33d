"""Re-measure the planner's range-shifter halo (mcproton/planning/machine.py HALO_K_MEV2_CM2_G, HALO_THETA_RAD)
on today's engine: pencil beams of dcpt_v5 behind its RS_3CM (polycarbonate) into water, double-Gaussian fits of
the lateral profile 4-6 mm deep, as the constants were first fitted (2026-12-04, e3f7e816: 75 and 110 MeV, 80 and
160 mm from the shifter's downstream face to the water surface, a 200 mm wide box, 2 x 10^5 protons each).

    python scripts/planner_halo_fit.py [PRIMARIES] [--threads N]

Prints, per case, the halo's weight w and sigma, the K = w pv^2 / (rho t) that the weight implies (pv of the
protons entering the slab, MeV; rho t the slab's mass thickness, g/cm2), the halo's angular sigma
sigma_halo / lever arm (middle of the slab to 5 mm deep), and the planner's model (K and theta of machine.py) for
comparison; and the fraction of the layer's energy beyond 20 mm of the axis.  CPU, seed 12345; the four cases of
2 x 10^5 protons took 16 s with one thread (2026-12-08).  Measures only: it changes no constant (phantoms/README.md
has the figures of 2026-12-08 and why the constants were not re-fitted).
"""
from __future__ import annotations

import argparse
import sys
import warnings

import numpy as np
from scipy.optimize import curve_fit

from mcproton import simulate
from mcproton._io.beam_model import load_beam_model
from mcproton.geometry import slab_phantom
from mcproton.planning import machine as PM
from mcproton.source import Beam, RangeShifterSlab, make_spots
from mcproton.validation.reference import pv_mev

CASES = [(75.0, 80.0), (75.0, 160.0), (110.0, 80.0), (110.0, 160.0)]   # (nominal MeV, shifter face to water mm)
WIDTH_MM, DEPTH_MM, VOXEL_MM, LAYER_MM = 200.0, 10.0, 1.0, (4.0, 6.0)


def _double_gauss(x, a, w, s1, s2):
    g1 = np.exp(-0.5 * (x / s1) ** 2) / s1
    g2 = np.exp(-0.5 * (x / s2) ** 2) / s2
    return a * ((1 - w) * g1 + w * g2) / np.sqrt(2 * np.pi)


def halo_case(bm, rs, nominal: float, gap_mm: float, primaries: int, threads: int) -> dict:
    machine = PM.FieldMachine(bm, rs, gap_mm)
    lo = machine.layer(nominal)
    ent = bm.at(nominal)
    plane = machine.plane_mm
    t = machine.thickness_mm
    face = plane - gap_mm - t        # the slab's upstream face, mm downstream of the spot's start
    slab = RangeShifterSlab(rs.material, t, rs.density, face, id=rs.id, wet_mm=float(rs.wet_mm))
    wsum = sum(c.weight for c in ent.components)
    n = len(ent.components)
    spots = make_spots([float(ent.mean_energy_mev)] * n, np.tile([0.0, 0.0, -plane], (n, 1)),
                       np.tile([0.0, 0.0, 1.0], (n, 1)), np.tile([1.0, 0.0, 0.0], (n, 1)),
                       energy_spread_mev=[float(ent.energy_spread_mev)] * n,
                       sigma_mm=[c.sigma_mm for c in ent.components],
                       divergence_rad=[c.divergence_rad for c in ent.components],
                       correlation=[c.correlation for c in ent.components],
                       weight=[c.weight / wsum for c in ent.components], range_shifter=[slab] * n)
    geom = slab_phantom([("water", DEPTH_MM)], (WIDTH_MM, WIDTH_MM), VOXEL_MM, name="water 200 mm wide")
    with warnings.catch_warnings():     # most of the energy leaves the 10 mm slab of water: meant here
        warnings.filterwarnings("ignore", message=".*left the grid")
        res = simulate(geom, Beam(spots), {"primaries": primaries, "seed": 12345, "backend": "cpu",
                                           "threads": threads}, log=None)
    ed = np.asarray(res.edep_mev_zyx if res.edep_mev_zyx is not None else res.dose_gy_zyx, float)
    z = geom.axis_mm("z")
    layer = ed[(z > LAYER_MM[0]) & (z < LAYER_MM[1])].sum(axis=0)          # (y, x)
    x, y = geom.axis_mm("x"), geom.axis_mm("y")
    prof = 0.5 * (layer.sum(axis=0) + layer.sum(axis=1))                   # x and y projections averaged
    core0 = float(np.sqrt(lo.moments_x[0]))
    p, _ = curve_fit(_double_gauss, x, prof, p0=(prof.sum() * VOXEL_MM, 0.08, core0, 25.0),
                     bounds=([0, 0, 0.5, 5.0], [np.inf, 0.5, 30.0, 200.0]), maxfev=20000)
    a, w, s1, s2 = p
    rr = np.hypot(*np.meshgrid(x, y, indexing="xy"))
    beyond20 = float(layer[rr > 20.0].sum() / layer.sum())
    pv = float(pv_mev(float(ent.mean_energy_mev)))
    mass_g_cm2 = rs.density * t / 10.0
    lever = gap_mm + 0.5 * t + 5.0
    return {"nominal": nominal, "gap": gap_mm, "w": w, "core": s1, "halo": s2, "K": w * pv ** 2 / mass_g_cm2,
            "theta": s2 / lever, "w_model": lo.halo_weight, "beyond20": beyond20}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("primaries", nargs="?", type=int, default=200_000)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    bm = load_beam_model(PM.DEFAULT_BEAM_MODEL)
    rs = bm.range_shifter("RS_3CM")
    print(f"planner: HALO_K_MEV2_CM2_G {PM.HALO_K_MEV2_CM2_G:g}, HALO_THETA_RAD {PM.HALO_THETA_RAD:g}; "
          f"{a.primaries} protons per case, layer {LAYER_MM[0]:g}-{LAYER_MM[1]:g} mm deep, {WIDTH_MM:g} mm box")
    print("nominal MeV | gap mm | halo weight (model) | core sigma mm | halo sigma mm | K MeV2 cm2/g | "
          "theta rad | energy beyond 20 mm")
    for nominal, gap in CASES:
        r = halo_case(bm, rs, nominal, gap, a.primaries, a.threads)
        print(f"{r['nominal']:g} | {r['gap']:g} | {100 * r['w']:.1f} % ({100 * r['w_model']:.1f} %) | "
              f"{r['core']:.2f} | {r['halo']:.1f} | {r['K']:.0f} | {r['theta']:.3f} | {100 * r['beyond20']:.1f} %",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
