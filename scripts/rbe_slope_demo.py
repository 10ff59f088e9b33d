"""The constant-RBE test of ``mcproton check`` (mcproton/_check/api.py ``let_ratio_slope``) on the demo plan: how
steeply the TPS/MC dose ratio rises with the MC's LETd when the "TPS" dose carries McNamara's variable RBE, and
how little it does with the constant 1.1 (also shifted by one voxel, 2 mm, along each axis).

Two demo runs with different seeds stand for the two doses: the first for the planning system's (McNamara-weighted,
or 1.1 x physical), the second for the check's MC, whose own LETd the check regresses on (as it does).

    mcproton demo --out A --primaries 10000000 --seed 11 --quiet
    mcproton demo --out B --primaries 10000000 --seed 12 --quiet
    python scripts/rbe_slope_demo.py A/dose.h5 B/dose.h5

The slope is biased by the noise: a voxel whose MC dose fluctuates up also has a higher LETd (a low-energy proton's
deposit), so the ratio falls with the MC's LETd by chance, by about 1.5 % per keV/um at 5.7 % noise (5e5
primaries), 0.02 % at 1.3 % (1e7).  Quote slopes at the check's noise (1 % by default), not at a quick run's.
"""
from __future__ import annotations

import sys

import numpy as np


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__)
        return 2
    import mcproton as mcp
    from mcproton._check.api import let_ratio_slope
    from mcproton.rbe import mcnamara_rbe_weighted_dose

    tps, mc = (mcp.DoseResult.load(p) for p in argv)
    g = mc.geometry
    axes = [g.axis_mm(c) for c in "zyx"]
    body = tps.dose_gy_zyx > 0   # the demo writes 0 outside the body
    rows = [(f"McNamara, alpha/beta {ab:g} Gy",
             mcnamara_rbe_weighted_dose(tps.dose_gy_zyx, tps.let_d_kev_um_zyx, ab) / 1.1) for ab in (2.0, 10.0)]
    rows.append(("1.1 x physical", tps.dose_gy_zyx))
    rows += [(f"1.1 x physical shifted by one voxel along {c}", np.roll(tps.dose_gy_zyx, 1, axis=k))
             for k, c in enumerate("zyx")]
    print(f"MC: {argv[1]}, mean uncertainty above 50 %: "
          f"{np.mean(mc.uncertainty_rel_zyx[mc.dose_gy_zyx >= 0.5 * mc.dose_gy_zyx.max()]):.2%}")
    for name, ref in rows:
        f = let_ratio_slope(ref, mc.dose_gy_zyx, mc.let_d_kev_um_zyx, body, axes)
        if f is None:
            print(f"{name}: too few voxels qualify")
            continue
        print(f"{name}: {f['slope_pct_per_kev_um']:+.2f} % per keV/um (standard error {f['slope_se_pct']:.2f} %), "
              f"{f['voxels']} voxels, LETd p10-p90 {f['let_p10_p90'][0]:.2f}-{f['let_p10_p90'][1]:.2f} keV/um")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
