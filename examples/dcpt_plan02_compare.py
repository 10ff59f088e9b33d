"""Compare mcproton with the five MC codes of the DCPT plan02 benchmark (160 MeV mono field, geometry D).

    python examples/dcpt_plan02_compare.py [--primaries 1000000] [--h5 out/dcpt_plan02.h5] [--set key=value]

Runs examples/dcpt_plan02.toml through the config API (or reads a result HDF5 written by ``mcproton run``),
takes the depth-dose on the central axis with the references' scoring (2 x 2 cm2 lateral acceptance, 1 mm
bins, dose to the local medium, MeV/g per primary), computes the same key numbers as
/work/shared/reference/dcpt_plan02/summary_plan02.csv (entrance, peak, R90/R80/R20 distal by linear
interpolation between bin centres, dose at 22.5 mm) and writes examples/dcpt_plan02_result.md and
examples/dcpt_plan02_result.png.

Reference data: APTG/2022_DCPT_LET @ 62db608 (CC BY 4.0), Bassler et al. 2024, doi:10.5281/zenodo.10641085.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "dcpt_plan02.toml"
# the reference profiles (packaged with the validation case dcpt_plan02) and the scoring shared with it
from mcproton.validation.dcpt_plan02.dcpt import (CODES, MEV_PER_G_TO_GY, SURFACE_DEPTH_AXIS,  # noqa: E402
                                                  depth_dose_from_arrays, metrics, read_reference)


def run(primaries: int, overrides: list[str]):
    from mcproton.config import build_beams, build_geometry, check_beam_hits, load_config, run_settings
    from mcproton.run import simulate

    cfg = load_config(CONFIG, [f"run.primaries={primaries}", *overrides])
    geometry = build_geometry(cfg)
    beams = build_beams(cfg)
    check_beam_hits(geometry, beams)
    res = simulate(geometry, beams[0], run_settings(cfg), progress=True)
    return cfg, beams[0], res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--primaries", type=int, default=1_000_000)
    ap.add_argument("--h5", help="use this result of `mcproton run examples/dcpt_plan02.toml` instead of running")
    ap.add_argument("--set", action="append", default=[], help="config override (as mcproton run --set)")
    ap.add_argument("--md", default=str(HERE / "dcpt_plan02_result.md"))
    ap.add_argument("--png", default=str(HERE / "dcpt_plan02_result.png"))
    ap.add_argument("--json", help="also write the numbers as JSON")
    a = ap.parse_args(argv)

    from mcproton.config import build_beams, load_config

    if a.h5:
        import mcproton

        res = mcproton.DoseResult.load(a.h5)
        cfg = load_config(CONFIG, a.set)
        beam = build_beams(cfg)[0]
    else:
        cfg, beam, res = run(a.primaries, a.set)
    g = res.geometry
    dose, unc, rho = res.dose_gy_zyx, res.uncertainty_rel_zyx, g.density_g_cm3_zyx
    dose_w = res.dose_to_water_gy_zyx
    vox, org = g.voxel_size_mm, g.origin_mm
    primaries = res.primaries
    info = {"backend": res.backend, "device": res.device, "wall_s": res.wall_s, "normalisation": res.normalisation,
            "protons_per_second": res.protons_per_second, "imbalance_rel": res.ledger.get("imbalance_rel")}
    ph = cfg["phantom"]
    surface_y = float(ph["surface_mm"][SURFACE_DEPTH_AXIS])
    total_protons = float(beam.total_protons)
    depth, dd, err = depth_dose_from_arrays(dose, unc, rho, vox, org, surface_y, 1.0 / total_protons)
    mine = metrics(depth, dd)
    k22 = int(np.argmin(np.abs(depth - 22.5)))
    mine["dose_22.5mm_unc1sd_MeV_g"] = float(err[k22])
    _, ddw, _ = depth_dose_from_arrays(dose_w, unc, rho, vox, org, surface_y, 1.0 / total_protons)
    mine["dose_to_water_22.5mm_MeV_g"] = float(ddw[k22])
    refs = {c: read_reference(c) for c in CODES}
    rm = {c: metrics(*refs[c]) for c in CODES}

    no_topas = [c for c in CODES if c != "topas"]
    r80_ref = float(np.mean([rm[c]["R80_mm"] for c in no_topas]))
    d22_ref = float(np.mean([rm[c]["dose_22.5mm_MeV_g"] for c in CODES]))
    d22_ref_2x2 = float(np.mean([rm[c]["dose_22.5mm_MeV_g"] for c in CODES if c != "mcnp"]))
    # statistical 1-sigma of R80 from the dose error at the distal 80 % point and the fall-off slope
    j = int(np.argmax(dd))
    jj = j + int(np.argmax(dd[j:] < 0.8 * dd[j]))
    slope = abs(dd[jj] - dd[jj - 1]) / (depth[jj] - depth[jj - 1])
    r80_sig = float(np.hypot(err[jj], 0.8 * err[j]) / slope) if slope > 0 else float("nan")

    # absolute dose: MU -> protons (beam model) -> dose per proton -> dose of the plan
    meta = beam.meta
    total_mu = float(meta.get("total_mu", float("nan")))
    d_iso_gy = mine["dose_22.5mm_MeV_g"] * MEV_PER_G_TO_GY * total_protons
    dw_iso_gy = mine["dose_to_water_22.5mm_MeV_g"] * MEV_PER_G_TO_GY * total_protons
    checks = {
        "R80_within_0.5mm_of_mean_without_topas": abs(mine["R80_mm"] - r80_ref) <= 0.5,
        "dose_22.5mm_within_3pct_of_5code_mean": abs(mine["dose_22.5mm_MeV_g"] / d22_ref - 1) <= 0.03,
    }
    numbers = {"mcproton": mine, "references": rm, "R80_mean_without_topas_mm": r80_ref,
               "dose_22.5mm_mean_5codes_MeV_g": d22_ref, "dose_22.5mm_mean_2x2_codes_MeV_g": d22_ref_2x2,
               "R80_unc1sd_mm": r80_sig, "primaries": primaries, "total_mu": total_mu,
               "total_protons": total_protons, "protons_per_mu": total_protons / total_mu,
               "dose_iso_plan_gy": d_iso_gy, "dose_to_water_iso_plan_gy": dw_iso_gy, "checks": checks, "run": info,
               "overrides": a.set}

    _plot(depth, dd, err, refs, a.png)
    _write_md(numbers, a.md, Path(a.png).name)
    if a.json:
        Path(a.json).write_text(json.dumps(numbers, indent=2, default=float))
    print(json.dumps({"R80_mm": mine["R80_mm"], "R80_ref_mm": r80_ref, "dose_22.5": mine["dose_22.5mm_MeV_g"],
                      "dose_22.5_ref": d22_ref, "checks": checks}, indent=2))
    return 0 if all(checks.values()) else 1


def _plot(depth, dd, err, refs, png):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [2, 1]})
    for c, (d, y) in refs.items():
        for a in (ax, ax2):
            a.plot(d, y, lw=1, label=c)
    for a in (ax, ax2):
        a.errorbar(depth, dd, yerr=err, fmt="k.", ms=2.5, lw=0.6, label="mcproton")
        a.axvspan(20, 25, color="0.9", zorder=0)
        a.set_xlabel("depth from phantom surface (mm, physical)")
    ax.set_ylabel("dose to medium in 2 x 2 cm$^2$ (MeV/g per primary)")
    ax.set_title("DCPT plan02, 160 MeV field, solid water + PMMA plate (grey)")
    ax.legend(fontsize=8)
    ax2.set_xlim(160, 182)
    ax2.set_title("distal fall-off")
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


def _write_md(n, md, png_name):
    m, rm = n["mcproton"], n["references"]
    L = ["# DCPT plan02: mcproton vs five MC codes", "",
         f"Generated by `examples/dcpt_plan02_compare.py` on {_dt.date.today().isoformat()}; "
         f"{n['primaries']:,} primaries; backend {n['run'].get('backend')} ({n['run'].get('device')}), "
         f"transport {n['run'].get('wall_s', float('nan')):.0f} s."
         + (f" Overrides: {', '.join(n['overrides'])}." if n["overrides"] else ""), "",
         "Setup: examples/dcpt_plan02.toml (RN_plan02_mono.dcm, beam model dcpt_v2, Gammex Solid Water 1.032 g/cm3 "
         "30 x 30 x 20.5 cm with a 5 mm PMMA plate at 20-25 mm depth, isocentre in the plate centre, 470 mm of air "
         "in front). Scoring as the references: dose to the local medium in a 2 x 2 cm2 acceptance around the "
         "central axis (MCNP: 5 x 5 cm2), 1 mm bins, MeV/g per primary. Reference data: APTG/2022_DCPT_LET "
         "@ 62db608 (CC BY 4.0), Bassler et al. 2024, doi:10.5281/zenodo.10641085.", "",
         f"![depth-dose overlay]({png_name})", "",
         "| code | entrance | peak | peak depth (mm) | R90 (mm) | R80 (mm) | R20 (mm) | 80-20 (mm) | dose @22.5 mm | "
         "mcproton R80 - code | mcproton D22.5 / code |",
         "|---|---|---|---|---|---|---|---|---|---|---|"]

    def row(name, x, cmp=True):
        r80d = m["R80_mm"] - x["R80_mm"]
        dr = m["dose_22.5mm_MeV_g"] / x["dose_22.5mm_MeV_g"]
        return (f"| {name} | {x['entrance_MeV_g']:.5f} | {x['peak_MeV_g']:.5f} | {x['peak_depth_maxbin_mm']:.1f} | "
                f"{x['R90_mm']:.2f} | {x['R80_mm']:.2f} | {x['R20_mm']:.2f} | {x['falloff_80_20_mm']:.2f} | "
                f"{x['dose_22.5mm_MeV_g']:.5f} | " + (f"{r80d:+.2f} | {dr:.4f} |" if cmp else "- | - |"))

    L.append(row("**mcproton**", m, cmp=False))
    for c in CODES:
        L.append(row(c, rm[c]))
    ck = n["checks"]
    L += ["",
          f"* R80: mcproton {m['R80_mm']:.2f} mm (statistical 1 sigma ~{n['R80_unc1sd_mm']:.2f} mm) vs "
          f"{n['R80_mean_without_topas_mm']:.2f} mm = mean of SH12A, OpenShieldHIT, FLUKA, MCNP (TOPAS left out: "
          f"solid water at 1.039 g/cm3): difference {m['R80_mm'] - n['R80_mean_without_topas_mm']:+.2f} mm "
          f"-> {'PASS' if ck['R80_within_0.5mm_of_mean_without_topas'] else 'FAIL'} (tolerance 0.5 mm).",
          f"* Dose at 22.5 mm (PMMA plate, isocentre): mcproton {m['dose_22.5mm_MeV_g']:.5f} +- "
          f"{m['dose_22.5mm_unc1sd_MeV_g']:.5f} MeV/g per primary vs five-code mean "
          f"{n['dose_22.5mm_mean_5codes_MeV_g']:.5f}: "
          f"ratio {m['dose_22.5mm_MeV_g'] / n['dose_22.5mm_mean_5codes_MeV_g']:.4f} "
          f"-> {'PASS' if ck['dose_22.5mm_within_3pct_of_5code_mean'] else 'FAIL'} (tolerance 3 %). Mean of the four "
          f"codes with a 2 x 2 cm2 acceptance (without MCNP): {n['dose_22.5mm_mean_2x2_codes_MeV_g']:.5f} "
          f"(ratio {m['dose_22.5mm_MeV_g'] / n['dose_22.5mm_mean_2x2_codes_MeV_g']:.4f}).",
          "",
          "## Absolute dose of the plan", "",
          f"The plan delivers {n['total_mu']:.1f} MU at 160 MeV. The dcpt_v2 beam model gives "
          f"{n['protons_per_mu']:.6g} protons/MU at 160 MeV, i.e. {n['total_protons']:.4g} protons. With "
          f"{m['dose_22.5mm_MeV_g']:.5f} MeV/g per primary at the isocentre (= "
          f"{m['dose_22.5mm_MeV_g'] * MEV_PER_G_TO_GY:.4g} Gy per primary) the field gives "
          f"{n['dose_iso_plan_gy']:.3f} Gy to PMMA at the isocentre "
          f"({n['dose_iso_plan_gy'] / n['total_mu'] * 1e3:.4f} mGy/MU); dose to water there (the quantity a TPS "
          f"reports): {n['dose_to_water_iso_plan_gy']:.3f} Gy. The plan's dose reference point 'Mono_160' at the "
          "isocentre lists 2.217 Gy (Target Prescription Dose; planned on a water phantom CT, not this "
          "solid-water/PMMA set-up), and Beam Dose 2.2 Gy.", ""]
    Path(md).write_text("\n".join(L) + "\n")


if __name__ == "__main__":
    sys.exit(main())
