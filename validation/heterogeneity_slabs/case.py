"""The ``heterogeneity_slabs`` validation case: heterogeneity slabs: range shift against WET from PSTAR.

Its reference data and README (source, set-up, metrics, tolerances) are in this folder."""
from __future__ import annotations

from .. import metrics as M
from .. import reference as R
from ..core import CaseResult, Context, Metric, depth_extent_mm, engine_material, water_density
from ..plots import Series, overlay_with_difference

SLABS = [("bone_compact_icru", 10.0, None), ("lung", 30.0, 0.26), ("adipose_tissue_icrp", 20.0, None)]
SLAB_DEPTH_MM = 20.0
SLAB_ENERGY_MEV = 120.0


def case_heterogeneity_slabs(ctx: Context) -> CaseResult:
    from ...geometry import slab_phantom
    from ...source import Beam

    cr = CaseResult("heterogeneity_slabs",
                    "Range shift of slabs of bone, lung and adipose in water against PSTAR WET",
                    "evaluated (NIST PSTAR stopping powers) -> derived WET")
    cr.reference_files = ["stopping_power/" + R.PSTAR_FILES[k] for k in
                          ("water", "bone_compact_icru", "muscle_skeletal_icrp", "adipose_tissue_icrp")]
    primaries = ctx.pick(40_000, 300_000)
    dz, lat = 0.5, 200.0
    rho_w = water_density()
    water = R.pstar("water")          # WET from PSTAR ratios S_m/S_w (both ICRU 49)
    e0 = SLAB_ENERGY_MEV
    spread = 3e-4 * e0
    total = depth_extent_mm(e0, rho_w, dz)
    beam = Beam.pencil(e0, position_mm=(0, 0, -1.0), direction=(0, 0, 1), energy_spread_mev=spread,
                       sigma_mm=(3, 3))
    geo_w = slab_phantom([("water", total)], (lat, lat), (lat, lat, dz), name="water reference")
    res_w, _ = ctx.simulate(geo_w, beam, primaries, f"water only, {e0:g} MeV", cr.name, seed_offset=300)
    zw, iw = res_w.integrated_depth_dose()
    r80_w = M.distal_range(zw, iw, 0.8)
    e_in = float(R.energy_at_depth(e0, SLAB_DEPTH_MM, R.water_table(ctx.water_model()), rho_w))
    top = [Series(zw, iw, "water only", "k-", {"lw": 0.8})]
    rows = []
    for i, (mat, t, rho) in enumerate(SLABS):
        m = engine_material(mat)
        rho_m = float(rho if rho is not None else m.density_g_cm3)
        rest = total - SLAB_DEPTH_MM - t
        geo = slab_phantom([("water", SLAB_DEPTH_MM), (mat, t, rho_m), ("water", rest)], (lat, lat),
                           (lat, lat, dz), name=f"water/{mat}/water")
        res, _ = ctx.simulate(geo, beam, primaries, f"{t:g} mm {mat} at {rho_m:g} g/cm3", cr.name,
                              seed_offset=301 + i)
        z, idd = res.integrated_depth_dose()
        r80 = M.distal_range(z, idd, 0.8)
        wet, e_out = R.water_equivalent_thickness(R.pstar(mat), rho_m, t, e_in, water, rho_w)
        shift_sim = r80_w - r80
        shift_ref = wet - t
        cr.metrics.append(Metric(f"range shift of {t:g} mm {mat} ({rho_m:g} g/cm3)", shift_sim, shift_ref,
                                 0.5, "mm",
                                 "abs",
                                 f"WET {wet:.3f} mm; proton energy {e_in:.1f} -> {e_out:.1f} MeV in the "
                                 "slab"))
        rows.append({"material": mat, "thickness_mm": t, "density_g_cm3": rho_m, "E_in_MeV": e_in,
                     "E_out_MeV": e_out,
                     "WET_mm": wet, "expected_shift_mm": shift_ref, "simulated_shift_mm": shift_sim,
                     "R80_water_mm": r80_w, "R80_slab_mm": r80,
                     "stopping_table": R.pstar(mat).name + (" (surrogate for "
                                                            "lung)" if mat in R.SURROGATES else "")})
        top.append(Series(z, idd, f"{mat} {t:g} mm", "-", {"lw": 1.0}))
    cr.tables["wet"] = rows
    # each slab's difference drawn at the depth where its shift is read, the R80 of its IDD (mm): the panels share
    # the depth axis (before, figures audit F6: at x = 0, 1, 2, the slab's index, on that axis in mm)
    diffs = [Series([r["R80_slab_mm"]], [r["simulated_shift_mm"] - r["expected_shift_mm"]],
                    f"{r['material']} {r['thickness_mm']:g} mm", "o", {"color": f"C{i}"}) for i, r in enumerate(rows)]
    for i, s in enumerate(top[1:]):   # the slab's IDD and its point in one colour
        s.kw["color"] = f"C{i}"
    cr.figures.append(overlay_with_difference(
        f"{e0:g} MeV pencil beam, slab at {SLAB_DEPTH_MM:g} mm: IDD; below: simulated - expected shift, at each R80",
        top, diffs, "depth (mm)", "IDD (MeV cm2/g/primary)", "sim - WET-based shift (mm)", band=0.5,
        filename="heterogeneity_slabs.png"))
    cr.notes.append("Expected shift = WET - t, WET = int rho_m S_m(E(x)) / (rho_w S_w(E(x))) dx through the "
                    "slab with total PSTAR mass stopping powers for the slab and for water (ratios from one "
                    "source, ICRU 49), E(x) from the CSDA range-energy relation (entrance energy from the "
                    "engine's water table). With ICRU 90 water instead of PSTAR water in the ratio the WET "
                    "would be 0.5 % larger (< 0.1 mm here).")
    cr.notes.append("Lung is not a PSTAR material: PSTAR skeletal muscle (ICRP, I = 75.3 eV, same as ICRP "
                    "lung, H 10.2 % vs 10.5 %) is its stopping-power surrogate, at the lung density 0.26 "
                    "g/cm3.")
    return cr
