"""The ``ranges_water`` validation case: ranges in water against ICRU 90 / PSTAR CSDA ranges and TOPAS.

Its reference data and README (source, set-up, metrics, tolerances) are in this folder."""
from __future__ import annotations

import numpy as np

from .. import metrics as M
from .. import reference as R
from ..core import CaseResult, Context, Metric, pencil_idd, water_density
from ..plots import Series, overlay_with_difference
from ..sources import figure_credit


def _fmt(e: float) -> str:
    return f"{e:.1f}".rstrip("0").rstrip(".")


def case_ranges_water(ctx: Context) -> CaseResult:
    cr = CaseResult("ranges_water",
                    "Ranges of pencil beams in water (70-230 MeV): R80 vs CSDA; R90/R80/R20 vs TOPAS",
                    "evaluated (ICRU 90 / PSTAR CSDA ranges) and MC-computed (TOPAS, code-to-code)")
    cr.reference_files = ["ranges_water/reference_ranges_water_derived.csv",
                          "ranges_water/matrad_generic_basedata_range_summary.csv"]
    energies = ctx.pick([70.0, 150.0, 230.0], [float(e) for e in range(70, 231, 10)])
    primaries = ctx.pick(40_000, 200_000)
    wm = ctx.water_model()
    rr, _ = R.read_table(R.case_file("ranges_water", "reference_ranges_water_derived.csv"))
    csda_col = "csda_ICRU90_g_cm2" if wm == "icru90" else "csda_PSTAR_g_cm2"
    summ, _ = R.read_table(R.case_file("ranges_water", "matrad_generic_basedata_range_summary.csv"))
    topas = summ["dataset"] == "TOPAS"
    t_e = summ["spectrum_mean_MeV"][topas]
    rho_w = water_density()
    rows = []
    for i, e in enumerate(energies):
        z, idd, res, rec = pencil_idd(ctx, cr.name, e, 3e-4 * e, primaries, f"{_fmt(e)} MeV", seed_offset=i)
        rm = M.range_metrics(z, idd)
        k = np.nonzero(np.isclose(rr["energy_MeV"], e))[0]
        csda_mm = (float(rr[csda_col][k[0]]) * 10.0 / rho_w if k.size
                   else float(R.water_table(wm).csda_range(e)) * 10 / rho_w)
        tol = max(0.005 * csda_mm, 0.2)
        cr.metrics.append(Metric(f"R80 - CSDA range ({wm}) at {_fmt(e)} MeV", rm["R80"], csda_mm, tol, "mm",
                                 "abs", "tolerance max(0.5 % of CSDA, 0.2 mm)"))
        row = {"energy_MeV": e, "R90_mm": rm["R90"], "R80_mm": rm["R80"], "R20_mm": rm["R20"],
               "csda_mm": csda_mm, "falloff_mm": rm["falloff_80_20"]}
        if t_e.min() <= e <= t_e.max():
            for key, col in (("R90", "R90_mm"), ("R80", "R80_mm"), ("R20", "R20_mm")):
                ref = float(np.interp(e, t_e, summ[col][topas]))
                row[f"topas_{key}_mm"] = ref
                cr.metrics.append(Metric(f"{key} vs TOPAS at {_fmt(e)} MeV", rm[key], ref, 0.5, "mm", "abs",
                                         "TOPAS metric interpolated linearly in energy", reference_water="icru90"))
        rows.append(row)
    cr.tables["ranges"] = rows
    e_arr = np.array([r["energy_MeV"] for r in rows])
    top = [Series(e_arr, [r["R80_mm"] for r in rows], "mcproton R80", "o-"),
           Series(e_arr, [r["csda_mm"] for r in rows], f"CSDA range ({wm})", "k--")]
    tol_csda = np.array([max(0.005 * r["csda_mm"], 0.2) for r in rows])
    bot = [Series(e_arr, [r["R80_mm"] - r["csda_mm"] for r in rows], "R80 - CSDA", "o-"),
           Series(e_arr, tol_csda, "tolerance of R80 - CSDA: max(0.5 % of CSDA, 0.2 mm)", "k:", {"lw": 0.8}),
           Series(e_arr, -tol_csda, "", "k:", {"lw": 0.8})]
    te = [r for r in rows if "topas_R80_mm" in r]
    if te:
        top.append(Series([r["energy_MeV"] for r in te], [r["topas_R80_mm"] for r in te], "TOPAS R80", "s:"))
        for key, st in (("R90", "^-"), ("R80", "s-"), ("R20", "v-")):
            bot.append(Series([r["energy_MeV"] for r in te],
                              [r[f"{key}_mm"] - r[f"topas_{key}_mm"] for r in te], f"{key} - TOPAS", st))
    cr.figures.append(overlay_with_difference("Range-energy relation in water", top, bot, "energy (MeV)",
                                              "depth (mm)", "difference (mm)", band=0.5,
                                              band_label="tolerance of R90/R80/R20 vs TOPAS, each energy",
                                              filename="ranges_water_range_energy.png",
                                              credit=figure_credit(cr.name)))
    return cr
