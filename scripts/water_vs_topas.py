"""Pencil beams in water against the TOPAS curves of matRad's generic base data: the README accuracy table.

    python scripts/water_vs_topas.py [--primaries 200000] [--backend cpu] [--profile]

Prints a Markdown table. Both curves are compared on the same 0.5 mm depth bins (the TOPAS curve, given on a
0.5 mm grid with 0.1 mm steps near the peak, is averaged over each simulation bin, as in validation/topas_idd).
Peak/entrance uses the IDD at 1 mm depth (TOPAS has a delta-electron build-up in the first millimetre that
mcproton does not model, so a surface-based ratio is also printed). "energy deposited / E" integrates each IDD
over the depth range of the TOPAS curve. ``--profile`` adds a second table: the IDD ratio mcproton / TOPAS
(absolute, per primary) along depth, averaged over +-1 % of R80 around each fraction of R80 (the shape of the
plateau, docs/physics.md "Plateau shape").
"""
from __future__ import annotations

import argparse
import datetime as _dt

import numpy as np

from mcproton.geometry import box_phantom
from mcproton.run import simulate
from mcproton.settings import RunSettings
from mcproton.source import Beam
from mcproton.validation import metrics as M
from mcproton.validation import reference as R

ENERGIES = (70.688, 99.965, 149.811, 199.492)   # TOPAS energies nearest 70, 100, 150, 200 MeV
PROFILE_FRACTIONS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)   # depth / R80 (TOPAS)


def depth_profile(z: np.ndarray, d: np.ndarray, ref: np.ndarray, r80: float) -> list[float]:
    """d / ref averaged over |z - f R80| <= max(1 mm, 0.01 R80) for each f of PROFILE_FRACTIONS."""
    half = max(1.0, 0.01 * r80)
    out = []
    for f in PROFILE_FRACTIONS:
        m = np.abs(z - f * r80) <= half
        out.append(float(d[m].sum() / ref[m].sum()))
    return out


def one(energy: float, primaries: int, backend: str, seed: int) -> dict:
    tab, _ = R.read_table(R.case_file("topas_idd", "idd_mc_topas_matrad_generic_water_subset.csv"))
    sel = np.isclose(tab["spectrum_mean_MeV"], energy)
    if not sel.any():
        raise SystemExit(f"no TOPAS curve at {energy} MeV")
    zr, dr = tab["depth_mm"][sel], tab["idd_MeVcm2_per_g_per_primary"][sel]
    sigma_e = float(tab["spectrum_sigma_pct"][sel][0]) / 100 * energy
    dz = 0.5
    depth = np.ceil((zr[-1] + 10.0) / dz) * dz
    geom = box_phantom("water", (200.0, 200.0, depth), (200.0, 200.0, dz))
    beam = Beam.pencil(energy, position_mm=(0, 0, -1), energy_spread_mev=sigma_e, sigma_mm=(3, 3))
    res = simulate(geom, beam, RunSettings(primaries=primaries, seed=seed, backend=backend, batches=10),
                   progress=False)
    z, d = (np.asarray(a, float) for a in res.integrated_depth_dose())
    edges = np.concatenate([[z[0] - dz / 2], z + dz / 2])
    ref = M.rebin_curve(zr, dr, edges)
    ok = np.isfinite(ref)
    z, d, ref = z[ok], d[ok], ref[ok]
    sm, rm = M.range_metrics(z, d), M.range_metrics(z, ref)
    rho = float(geom.density_g_cm3_zyx.max())
    return {"energy": energy, "r80": (sm["R80"], rm["R80"]), "falloff": (sm["falloff_80_20"], rm["falloff_80_20"]),
            "pe1": (M.peak_to_entrance(z, d, 1.0), M.peak_to_entrance(z, ref, 1.0)),
            "pe0": (M.peak_to_entrance(z, d), M.peak_to_entrance(z, ref)),
            "edep": tuple(float(np.sum(c) * dz / 10 * rho / energy) for c in (d, ref)),
            "profile": depth_profile(z, d, ref, rm["R80"]),
            "backend": res.backend, "device": res.device}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--primaries", type=int, default=200_000)
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--profile", action="store_true", help="also print the IDD ratio along depth")
    a = ap.parse_args()
    rows = [one(e, a.primaries, a.backend, a.seed) for e in ENERGIES]
    print("| E (MeV) | R80 mcproton / TOPAS (mm) | ΔR80 | R80−R20 mcproton / TOPAS (mm) | Δ "
          "| peak/entrance at 1 mm: mcproton / TOPAS | Δ | peak/entrance at the surface | Δ "
          "| energy deposited / E: mcproton / TOPAS |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        (s80, t80), (sf, tf), (sp, tp), (s0, t0), (se, te) = r["r80"], r["falloff"], r["pe1"], r["pe0"], r["edep"]
        print(f"| {r['energy']:g} | {s80:.2f} / {t80:.2f} | {s80 - t80:+.2f} | {sf:.3f} / {tf:.3f} | {sf - tf:+.3f} "
              f"| {sp:.2f} / {tp:.2f} | {100 * (sp / tp - 1):+.1f} % "
              f"| {s0:.2f} / {t0:.2f} | {100 * (s0 / t0 - 1):+.1f} % "
              f"| {se:.3f} / {te:.3f} |")
    if a.profile:
        print("\n| E (MeV) | " + " | ".join(f"{f:g} R80" for f in PROFILE_FRACTIONS) + " |")
        print("|---" * (len(PROFILE_FRACTIONS) + 1) + "|")
        for r in rows:
            print(f"| {r['energy']:g} | " + " | ".join(f"{v:.3f}" for v in r["profile"]) + " |")
    print(f"\n{_dt.date.today().isoformat()}, backend {rows[0]['backend']} ({rows[0]['device']}), "
          f"{a.primaries} protons per energy, seed {a.seed}, 0.5 mm bins.")


if __name__ == "__main__":
    main()
