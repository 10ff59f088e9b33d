"""The ``stopping_power`` validation case: stopping powers and CSDA ranges per material against PSTAR.

Its reference data and README (source, set-up, metrics, tolerances) are in this folder."""
from __future__ import annotations

import numpy as np

from .. import reference as R
from ..core import ERROR, CaseResult, Context, Metric, engine_material
from ..plots import Series, overlay_with_difference
from ..sources import figure_credit

SP_MATERIALS = ["water", "bone_compact_icru", "bone_cortical_icrp", "adipose_tissue_icrp",
                "muscle_skeletal_icrp",
                "muscle_striated_icru", "pmma", "air", "graphite", "a_150", "polyethylene", "aluminium",
                "titanium"]
SP_ENERGIES = np.array([1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100, 150, 200, 250, 300], float)


#: the water rows (validation audit 2026-12-06, F5): the engine's water table is the reference file itself
SELF_CONSISTENCY = ("; self-consistency only: the engine's water stopping power is this table, interpolated "
                    "with PCHIP in log-log as the reader does; water is tested by ranges_water and topas_idd")


def _engine_stopping(mat, energies: np.ndarray, water_model: str) -> np.ndarray:
    from ...physics import electronic_mass_stopping_power as f
    try:
        out = np.asarray(f(mat, energies, water_model), dtype=float)
        if out.shape == energies.shape:
            return out
    except Exception:
        pass
    return np.array([float(f(mat, float(e), water_model)) for e in energies])


def case_stopping_power(ctx: Context) -> CaseResult:
    cr = CaseResult("stopping_power",
                    "Electronic stopping powers and CSDA ranges per material against PSTAR / ICRU 90",
                    "evaluated (NIST PSTAR = ICRU 49; ICRU 90 for water)")
    wm = ctx.water_model()
    top, bot = [], []
    sel = (SP_ENERGIES >= 3)
    e_rng = np.geomspace(10, 250, 25)
    for mat in SP_MATERIALS:
        try:
            m = engine_material(mat)
        except Exception as exc:
            cr.notes.append(f"{mat}: not in mcproton.materials ({type(exc).__name__}: {exc}); skipped")
            continue
        refs = [(R.pstar(mat), "pstar")]
        if mat == "water":
            refs = [(R.icru90_water(), "icru90"), (R.pstar("water"), "pstar")]
        cr.reference_files.append("stopping_power/" + R.PSTAR_FILES[mat])
        for tab, model in refs:
            s_eng = _engine_stopping(m, SP_ENERGIES, model)
            s_ref = tab.electronic(SP_ENERGIES)
            dev = s_eng / s_ref - 1
            label = mat if mat != "water" else f"water ({model})"
            note = tab.name + (SELF_CONSISTENCY if mat == "water" else "")
            cr.metrics.append(Metric(f"max |S_el/S_el,ref - 1|, {label}, 3-300 MeV",
                                     float(np.max(np.abs(dev[sel]))), None, 0.01, "", "max", note))
            # CSDA range: R_ref(1 MeV) + int_1^E dE / S_engine (electronic; nuclear stopping < 0.1 % above 1
            # MeV)
            eg = np.geomspace(1.0, 250.0, 400)
            se = _engine_stopping(m, eg, model)
            cum = np.concatenate([[0.0], np.cumsum(0.5 * (1 / se[1:] + 1 / se[:-1]) * np.diff(eg))])
            r_eng = float(tab.csda_range(1.0)) + np.interp(e_rng, eg, cum)
            r_ref = tab.csda_range(e_rng)
            rdev = r_eng / r_ref - 1
            cr.metrics.append(Metric(f"max |R_csda/R_ref - 1|, {label}, 10-250 MeV",
                                     float(np.max(np.abs(rdev))), None, 0.01, "", "max",
                                     SELF_CONSISTENCY.lstrip("; ") if mat == "water" else ""))
            cr.tables.setdefault("stopping_power_ratio", []).append(
                {"material": label, **{f"{e:g} MeV": float(d) for e, d in zip(SP_ENERGIES, dev)}})
            top.append(Series(SP_ENERGIES, s_eng, f"{label} mcproton", "-"))
            top.append(Series(SP_ENERGIES, s_ref, f"{label} {tab.name}", "k:", {"lw": 0.7}))
            bot.append(Series(SP_ENERGIES, 100 * dev, label, ".-"))
    if not cr.metrics:
        cr.status, cr.message = ERROR, "no material could be compared"
        return cr
    cr.figures.append(overlay_with_difference("Electronic mass stopping power: mcproton vs reference tables",
                                              top, bot,
                                              "energy (MeV)", "S_el/rho (MeV cm2/g)", "deviation (%)",
                                              band=1.0, logx=True, logy=True, filename="stopping_power.png",
                                              credit=figure_credit(cr.name)))
    cr.notes.append(f"The engine's water model is '{wm}'; water is compared with both tables, each with its "
                    "own model.")
    cr.notes.append("Below 3 MeV PSTAR is a fit to measurements and Bethe theory is not expected to hold to "
                    "1 %; those energies are plotted but not scored.")
    return cr
