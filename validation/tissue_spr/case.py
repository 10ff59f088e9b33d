"""The ``tissue_spr`` validation case: tissue stopping-power ratios: the elemental I-value sets of Bragg
additivity (issue 14).

Its reference data and README (source, set-up, metrics, tolerances) are in this folder."""
from __future__ import annotations

from .. import reference as R
from ..core import SKIPPED, CaseResult, Context, Metric, engine_material

TISSUE_SPR_ENERGY_MEV = 100.0
#: compounds whose ICRU 37/49 (PSTAR) I-value was adopted instead of the Bragg-additivity value
TISSUE_SPR_ICRU_COMPOUNDS = ["pmma", "polyethylene", "polystyrene", "a_150", "b_100"]
MEASURED_SPR_FILE = "measured_spr.csv"


def _bragg_only(m):
    """The material without its explicit I-value (Bragg additivity then applies)."""
    import dataclasses
    return dataclasses.replace(m, i_value_ev=None)


def tissue_spr(material, energy_mev: float = TISSUE_SPR_ENERGY_MEV, water_model: str = "icru90",
               ivalue_set: str = "icru37", bragg: bool = True) -> float:
    """Stopping-power ratio to water (linear, at the material's nominal density) at ``energy_mev``;
    ``bragg=True`` ignores an explicit I-value of the material and uses Bragg additivity with
    ``ivalue_set``."""
    from ...physics import electronic_mass_stopping_power as sp
    m = engine_material(material) if isinstance(material, str) else material
    if bragg:
        m = _bragg_only(m)
    w = engine_material("water")
    return float(m.density_g_cm3 * sp(m, energy_mev, water_model, ivalue_set)
                 / (w.density_g_cm3 * sp(w, energy_mev, water_model)))


def _measured_spr_rows(path) -> list[dict]:
    """Rows of validation/tissue_spr/measured_spr.csv (see its README for the columns)."""
    from ...materials import Material, _parse_composition
    cols, _ = R.read_table(path)
    rows = []
    for i in range(len(cols["name"])):
        where = f"{path}: row {i + 1}"
        comp = _parse_composition(str(cols["composition"][i]).replace("|", ";"), where)
        rows.append({"material": Material(str(cols["name"][i]), float(cols["density_g_cm3"][i]), comp, None,
                                          str(cols["source"][i])),
                     "spr": float(cols["spr_measured"][i]), "sd": float(cols["spr_sd"][i]),
                     "energy": float(cols["energy_MeV"][i])})
    return rows


def case_tissue_spr(ctx: Context) -> CaseResult:
    from ..._io import hu_calibration as H
    from ...physics import IVALUE_SETS, mean_excitation_energy_ev
    cr = CaseResult("tissue_spr",
                    f"Tissue stopping-power ratios at {TISSUE_SPR_ENERGY_MEV:g} MeV: elemental I-value "
                    "sets of Bragg additivity against measured SPRs", "MEASURED (when validation/tissue_spr/"
                    f"{MEASURED_SPR_FILE} is present); evaluated ICRU 49 compound I-values; calculated "
                    "tissue table")
    wm = ctx.water_model()
    iset = getattr(ctx.physics, "ivalue_set", "icru37") if ctx.physics is not None else "icru37"
    sets = list(IVALUE_SETS)
    # 1. the CT tissue compositions the engine uses (Schneider 2000 bins): I and SPR for every set
    for m in H._schneider2000().materials:
        row = {"material": m.name, "density_g_cm3": m.density_g_cm3}
        for k in sets:
            row[f"I_{k}_eV"] = mean_excitation_energy_ev(m, k)
            row[f"SPR_{k}"] = tissue_spr(m, water_model=wm, ivalue_set=k)
        cr.tables.setdefault("schneider2000_tissues", []).append(row)
    # 2. compounds whose ICRU 37/49 I-value differs from Bragg additivity (evaluated data; reported, not
    # scored)
    for name in TISSUE_SPR_ICRU_COMPOUNDS:
        m = engine_material(name)
        ref = tissue_spr(m, water_model=wm, bragg=False)
        for k in sets:
            cr.metrics.append(Metric(f"SPR {name}, Bragg '{k}' vs ICRU 49 I = {m.i_value_ev:g} eV",
                                     tissue_spr(m, water_model=wm, ivalue_set=k), ref, None, "", "info",
                                     f"Bragg I = {mean_excitation_energy_ev(_bragg_only(m), k):.1f} eV"))
    # 3. measured SPRs of samples of known composition
    path = R.HERE / "tissue_spr" / MEASURED_SPR_FILE
    if not path.exists():
        cr.status = SKIPPED
        cr.message = ("skipped: no measured tissue SPRs in validation/tissue_spr/ (none could be transcribed "
                      "with provenance, see its README); the calculated tables are reported")
        return cr
    cr.reference_files.append(f"tissue_spr/{MEASURED_SPR_FILE}")
    for r in _measured_spr_rows(path):
        m = r["material"]
        vals = {k: tissue_spr(m, r["energy"], wm, k) for k in sets}
        for k in sets:
            cr.metrics.append(Metric(f"SPR {m.name} ({k})", vals[k], r["spr"], 2.0 * r["sd"], "",
                                     "abs" if k == iset
                                     else "info",
                                     f"tolerance 2 x the stated 1 sd ({r['sd']:.4f}); {m.source}"))
    cr.notes.append(f"The run's I-value set is '{iset}' (scored); the other sets are reported as info.")
    return cr
