"""The DCPT plan02 benchmark (160 MeV field on solid water + PMMA): reference profiles of five Monte Carlo
codes, the key numbers they are compared by, and the central-axis profiles of an mcproton result scored like
the references (2 x 2 cm2 lateral acceptance, 1 mm depth bins, dose to the local medium, MeV/g per primary).

Used by the validation case ``dcpt_plan02`` and by ``examples/dcpt_plan02_compare.py``.
Reference data: APTG/2022_DCPT_LET @ 62db608 (CC BY 4.0), Bassler et al. 2024, doi:10.5281/zenodo.10641085.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .. import reference as R

CODES = ("sh12a", "openshieldhit", "fluka", "mcnp", "topas")
MEV_PER_G_TO_GY = 1.602176634e-10
ACCEPT_HALF_MM = 10.0          # 2 x 2 cm2 acceptance
SURFACE_DEPTH_AXIS = 1         # y (LPS) is the depth axis of the plan's geometry (gantry 0, HFS)
SUBSET_FILE = "dcpt_plan02_depth_subset.csv"


@lru_cache(maxsize=1)
def _subset_table() -> dict[str, np.ndarray]:
    return R.read_table(R.case_file("dcpt_plan02", SUBSET_FILE))[0]


def read_reference(code: str, column: str = "dose_all_mat_MeV_g") -> tuple[np.ndarray, np.ndarray]:
    """(depth_mm, values) of one code from the packaged subset; NaN where the code gives no value."""
    tab = _subset_table()
    sel = tab["code"] == code
    if not sel.any():
        raise KeyError(f"no reference profile for code {code!r}")
    return np.asarray(tab["depth_mm"][sel], float), np.asarray(tab[column][sel], float)


def metrics(depth: np.ndarray, dose: np.ndarray) -> dict[str, float]:
    """Key numbers as the reference summary (summary_plan02.csv) defines them: entrance = mean of the bins
    centred at 1.5-4.5 mm, peak = largest bin, R90/R80/R20 on the distal side by linear interpolation between
    bin centres, dose in the bin centred at 22.5 mm (the isocentre, in the PMMA plate)."""
    ok = np.isfinite(dose)
    d, y = depth[ok], dose[ok]
    i = int(np.argmax(y))
    peak = float(y[i])
    ent = float(np.mean(y[(d >= 1.4) & (d <= 4.6)]))
    out = {"entrance_MeV_g": ent, "peak_MeV_g": peak, "peak_depth_maxbin_mm": float(d[i]),
           "peak_to_entrance": peak / ent}
    if 0 < i < len(y) - 1:
        a, b, c = y[i - 1], y[i], y[i + 1]
        den = a - 2 * b + c
        out["peak_depth_parabolic_mm"] = (float(d[i] + 0.5 * (a - c) / den * (d[i + 1] - d[i])) if den
                                          else float(d[i]))
    for lvl in (90, 80, 20):
        f = lvl / 100.0
        j = i
        while j + 1 < len(y) and y[j + 1] >= f * peak:
            j += 1
        if j + 1 >= len(y):
            out[f"R{lvl}_mm"] = float("nan")
            continue
        y0, y1 = y[j] / peak, y[j + 1] / peak
        out[f"R{lvl}_mm"] = float(d[j] + (y0 - f) / (y0 - y1) * (d[j + 1] - d[j]))
    out["falloff_80_20_mm"] = out["R20_mm"] - out["R80_mm"]
    k = int(np.argmin(np.abs(d - 22.5)))
    out["dose_22.5mm_MeV_g"] = float(y[k]) if abs(d[k] - 22.5) < 0.01 else float("nan")
    return out


def _acceptance(shape, voxel_mm, origin_mm):
    nz, ny, nx = shape
    x = origin_mm[0] + voxel_mm[0] * np.arange(nx)
    z = origin_mm[2] + voxel_mm[2] * np.arange(nz)
    y = origin_mm[1] + voxel_mm[1] * np.arange(ny)
    for ax, c, v in (("x", x, voxel_mm[0]), ("z", z, voxel_mm[2])):
        lo = c - v / 2
        if not (np.any(np.isclose(lo, -ACCEPT_HALF_MM)) and np.any(np.isclose(lo + v, ACCEPT_HALF_MM))):
            raise ValueError(f"the {ax} voxel boundaries do not fall on +-10 mm: the 2 x 2 cm2 acceptance "
                             "cannot be taken exactly; use voxel sizes dividing 10 mm with a centred grid")
    sel = np.ix_(np.abs(z) < ACCEPT_HALF_MM, np.ones(ny, bool), np.abs(x) < ACCEPT_HALF_MM)
    return sel, y


def depth_dose_from_arrays(dose_gy_zyx, unc_rel_zyx, density_zyx, voxel_mm, origin_mm, surface_y_mm: float,
                           per_primary_scale: float):
    """(depth_mm, dose MeV/g per primary, 1-sigma) in the 2 x 2 cm2 acceptance around x = z = 0 (mass-weighted
    mean dose of the voxels of each 1 mm slab, i.e. the energy per mass of the slab)."""
    sel, y = _acceptance(dose_gy_zyx.shape, voxel_mm, origin_mm)
    d, u = dose_gy_zyx[sel], unc_rel_zyx[sel]
    m = density_zyx[sel].astype(np.float64)
    msum = m.sum(axis=(0, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = (d * m).sum(axis=(0, 2)) / msum
        err = np.sqrt(((u * d * m) ** 2).sum(axis=(0, 2))) / msum
    depth = y - surface_y_mm
    keep = depth > 0
    s = per_primary_scale / MEV_PER_G_TO_GY
    return depth[keep], dd[keep] * s, err[keep] * s


def let_d_from_arrays(let_zyx, dose_gy_zyx, density_zyx, voxel_mm, origin_mm, surface_y_mm: float):
    """(depth_mm, LETd keV/um) in the 2 x 2 cm2 acceptance: the voxels' dose-averaged LET of protons weighted
    by the energy they received (dose x mass), so that the slab value is the dose-average over the slab."""
    sel, y = _acceptance(dose_gy_zyx.shape, voxel_mm, origin_mm)
    w = dose_gy_zyx[sel] * density_zyx[sel].astype(np.float64)
    wsum = w.sum(axis=(0, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        let = np.where(wsum > 0, (let_zyx[sel] * w).sum(axis=(0, 2)) / np.where(wsum > 0, wsum, 1.0), np.nan)
    depth = y - surface_y_mm
    keep = depth > 0
    return depth[keep], let[keep]
