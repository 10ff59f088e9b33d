"""Variable proton RBE from the dose-averaged LET: the McNamara model.

McNamara AL, Schuemann J, Paganetti H, "A phenomenological relative biological effectiveness (RBE) model for
proton therapy based on all published in vitro cell survival data", Phys. Med. Biol. 60 (2015) 8399-8416,
eqs. (6)-(8) with the fitted parameters of that paper:

    RBE_max = p0 + p1 / (alpha/beta) * LETd,        p0 = 0.99064, p1 = 0.35605 Gy um/keV
    RBE_min = p2 + p3 * sqrt(alpha/beta) * LETd,    p2 = 1.1012,  p3 = -0.0038703 Gy^(-1/2) um/keV
    RBE(D)  = [ sqrt( (a/b)^2 + 4 D (a/b) RBE_max + 4 D^2 RBE_min^2 ) - a/b ] / (2 D)

with D the physical dose PER FRACTION (Gy), LETd the dose-averaged LET (keV/um) and alpha/beta of the tissue (Gy;
one number, or an array of them broadcastable to the dose: a per-voxel or per-structure map). RBE-weighted
dose = RBE * D. For D -> 0 the RBE tends to RBE_max. The model was fitted to in vitro data; its use for clinical
decisions is a matter of the user's protocol (the clinical standard remains a constant 1.1).

Which LETd.  mcproton scores the LETd of protons in the voxel MEDIUM (HDF5 ``let_d``; docs/physics.md "Scoring").
The model's LETd values are those of cells in water-like medium: in cortical bone the LETd in the medium is about
1.7 x that in water for the same protons (its density 1.92 g/cm3 x its mass stopping power, 0.86-0.90 of
water's), in lung about 0.3 x (rbe audit 2026-12-06, F2).  :func:`let_d_to_water` converts it (LETd_w = LETd_m x
s_w,m / rho, s_w,m the voxel's own dose-weighted water/medium mass stopping-power ratio, dose_to_water / dose);
:func:`mcnamara_of_result` uses it by default.  The array functions take the LETd they are given.

Which dose.  The dose per fraction: a dose of all fractions (``plan.all_fractions = true``, an RT Dose of the plan)
gives the RBE of a dose n times larger, 13-37 % too low for n = 17 (rbe audit F3).  Give ``fractions=`` (the
number of equal fractions the dose is the total of), or use :func:`mcnamara_of_result`, which reads them from the
result (and refuses an older plan's result that does not record them); a dose above
:data:`MAX_DOSE_PER_FRACTION_GY` per fraction gets a warning.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# p0 as in the paper's table (0.99064); some tools (e.g. matRad) carry 0.999064, 0.9 % higher RBE_max offset.
P0, P1 = 0.99064, 0.35605       # RBE_max = P0 + P1 / (alpha/beta) * LETd
P2, P3 = 1.1012, -0.0038703     # RBE_min = P2 + P3 * sqrt(alpha/beta) * LETd


#: Below this dose (Gy) the model is evaluated at D -> 0 (RBE = RBE_max); a dose whose maximum is below it is no
#: dose per fraction (a dose per primary proton is 1e-10 - 1e-8 Gy) and gets a warning.
SMALL_DOSE_GY = 1e-6
#: Above this maximum dose per fraction (Gy) the dose is taken for a dose of several fractions and warned about.
#: Conventional proton fractions are 1.8-2 Gy(RBE) and hypofractionated ones up to ~8 Gy (a hot spot ~110 % of
#: it), while a course is 30-80 Gy; the model's linear-quadratic form is itself disputed above ~10-15 Gy per
#: fraction (Kirkpatrick JP, Meyer JJ, Marks LB, Semin. Radiat. Oncol. 18 (2008) 240-243) and the in vitro data it
#: was fitted to lie mostly below 10 Gy.  A radiosurgery fraction (up to ~20 Gy) is warned about too, rightly so.
MAX_DOSE_PER_FRACTION_GY = 15.0
#: Voxels of a density outside this range (g/cm3) make the RBE of a LETd in the medium differ from that of the LETd
#: in water by more than ~20 % in LETd (bone 1.7 x, lung 0.3 x): :func:`mcnamara_of_result` with ``let="medium"``
#: warns where they carry dose.
WATER_LIKE_DENSITY_G_CM3 = (0.8, 1.2)


def _warn_dose_scale(d_per_fraction: np.ndarray, fractions: int, stacklevel: int = 4) -> None:
    """Warn (McprotonRuntimeWarning) when the largest dose per fraction is below SMALL_DOSE_GY (almost surely a dose
    per primary proton, for which the model gives RBE_max everywhere) or above MAX_DOSE_PER_FRACTION_GY (a dose of
    several fractions given as one: the RBE comes out too low)."""
    from ._io.errors import McprotonRuntimeWarning, warn

    top = float(np.max(d_per_fraction, initial=0.0))
    if 0.0 < top < SMALL_DOSE_GY:
        warn(f"McNamara RBE: the largest dose given is {top:.3g} Gy, below {SMALL_DOSE_GY:g} Gy everywhere: a dose "
             "per primary proton (a beam without total_protons), not a dose per fraction; the model then gives "
             "RBE_max everywhere; give the physical dose per fraction in Gy (simulate a beam with total_protons, or "
             "a plan)", McprotonRuntimeWarning, stacklevel=stacklevel)
    elif top > MAX_DOSE_PER_FRACTION_GY:
        per = "given" if fractions == 1 else f"per fraction (the dose / fractions={fractions})"
        warn(f"McNamara RBE: the largest dose {per} is {top:.3g} Gy, above {MAX_DOSE_PER_FRACTION_GY:g} Gy: "
             "implausible for one fraction (conventional 1.8-2 Gy, hypofractionated up to ~8 Gy); it is probably "
             "the dose of several fractions, which gives an RBE far too low (the model's RBE is that of the dose "
             "per fraction); give fractions= (the number of fractions the dose holds), or use "
             "mcproton.rbe.mcnamara_of_result(result), which reads them from the result", McprotonRuntimeWarning,
             stacklevel=stacklevel)


def _fractions(fractions: Any) -> int:
    if isinstance(fractions, bool) or not isinstance(fractions, (int, np.integer)) or fractions < 1:
        raise ValueError(f"fractions must be a whole number >= 1 (how many equal fractions the dose is the total "
                         f"of); got {fractions!r}")
    return int(fractions)


def mcnamara_rbe(dose_gy, let_kev_um, alpha_beta_gy, *, fractions: int = 1) -> np.ndarray:
    """RBE of the McNamara model for the physical dose ``dose_gy`` (Gy) of ``fractions`` equal fractions (default 1:
    a dose per fraction; the RBE is that of ``dose_gy / fractions``) and dose-averaged LET ``let_kev_um`` (keV/um;
    in water, see the module's note), for a tissue of ``alpha_beta_gy`` (Gy: a number, or an array broadcastable to
    the dose, e.g. 10 in the target and 2 elsewhere).  Doses per fraction below 1e-6 Gy are taken as D -> 0
    (RBE_max); a McprotonRuntimeWarning where the dose per fraction is below that everywhere (a dose per primary
    proton) or above MAX_DOSE_PER_FRACTION_GY somewhere (a dose of several fractions)."""
    d = np.asarray(dose_gy, dtype=float) / _fractions(fractions)
    _warn_dose_scale(d, fractions, stacklevel=3)
    return _rbe(d, let_kev_um, alpha_beta_gy)


def _alpha_beta(alpha_beta_gy: Any, shape: tuple[int, ...]) -> np.ndarray:
    """alpha/beta as an array broadcastable to ``shape`` (the dose's and LETd's), each value finite and > 0."""
    try:
        ab = np.asarray(alpha_beta_gy, dtype=float)
        np.broadcast_shapes(ab.shape, shape)
    except (TypeError, ValueError):
        raise ValueError(f"alpha/beta must be a positive number of Gy or an array of them broadcastable to the dose's "
                         f"shape {shape}; got {alpha_beta_gy!r:.80}") from None
    bad = ~np.isfinite(ab) | (ab <= 0)
    if np.any(bad):
        raise ValueError(f"alpha/beta must be a positive number of Gy everywhere; {int(bad.sum())} value(s) are not "
                         f"(e.g. {ab[bad].flat[0]!r})")
    return ab


def _rbe(d: np.ndarray, let_kev_um, alpha_beta_gy) -> np.ndarray:
    let = np.asarray(let_kev_um, dtype=float)
    ab = _alpha_beta(alpha_beta_gy, np.broadcast_shapes(d.shape, let.shape))
    if np.any(d < 0) or np.any(~np.isfinite(d)):
        raise ValueError("dose must be finite and >= 0")
    if np.any(let < 0) or np.any(~np.isfinite(let)):
        raise ValueError("LETd must be finite and >= 0 (keV/um)")
    rbe_max = P0 + P1 / ab * let
    rbe_min = P2 + P3 * np.sqrt(ab) * let
    small = d < SMALL_DOSE_GY
    ds = np.where(small, 1.0, d)
    rbe = (np.sqrt(ab * ab + 4 * ds * ab * rbe_max + 4 * ds * ds * rbe_min * rbe_min) - ab) / (2 * ds)
    return np.where(small, rbe_max, rbe)


def mcnamara_rbe_weighted_dose(dose_gy, let_kev_um, alpha_beta_gy, *, fractions: int = 1) -> np.ndarray:
    """RBE-weighted dose (Gy(RBE)) = McNamara RBE x physical dose ``dose_gy`` (Gy; absolute, of ``fractions`` equal
    fractions, default 1; the RBE is that of the dose per fraction and the result is of the same fractions as the
    dose); ``alpha_beta_gy`` a number or an array broadcastable to the dose; the warnings of
    :func:`mcnamara_rbe`."""
    d = np.asarray(dose_gy, dtype=float)
    dp = d / _fractions(fractions)
    _warn_dose_scale(dp, fractions, stacklevel=3)
    return _rbe(dp, let_kev_um, alpha_beta_gy) * d


def let_d_to_water(let_d_kev_um, dose_gy, dose_to_water_gy, density_g_cm3) -> np.ndarray:
    """The LETd in water (keV/um) of protons whose LETd in the voxel medium is ``let_d_kev_um``: LETd_m x s_w,m /
    rho, with s_w,m = ``dose_to_water_gy`` / ``dose_gy`` the voxel's water/medium mass stopping-power ratio
    (weighted by the deposited energy, as the LETd is) and rho its density (g/cm3).  LET_m = rho (S/rho)_m and
    LET_w = (S/rho)_w at the same energy, so LET_w = LET_m (S/rho)_w / (S/rho)_m / rho.  The ratio's energy
    dependence is small (cortical bone (S/rho)_m / (S/rho)_w 0.885-0.903 from 10 to 150 MeV, 0.862 at 2 MeV; lung
    and soft tissue within 0.3 %), and the voxel's ratio is already averaged over its spectrum, so the approximation
    (the mean of a product taken as the product of means) errs by well under 1 %.  Where the dose is 0, s_w,m is
    taken as 1."""
    let = np.asarray(let_d_kev_um, float)
    dm, dw = np.asarray(dose_gy, float), np.asarray(dose_to_water_gy, float)
    rho = np.asarray(density_g_cm3, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(dm > 0, dw / np.where(dm > 0, dm, 1.0), 1.0)
        return np.where(rho > 0, let * s / np.where(rho > 0, rho, 1.0), 0.0)


@dataclass
class McNamaraDose:
    """The McNamara RBE of a run's result (:func:`mcnamara_of_result`); arrays (z, y, x) on the result's grid."""

    rbe_zyx: np.ndarray
    rbe_weighted_dose_gy_zyx: np.ndarray   # Gy(RBE), of the same fractions as the result's dose
    dose_per_fraction_gy_zyx: np.ndarray   # the physical dose per fraction the RBE is of
    let_d_kev_um_zyx: np.ndarray           # the LETd used (in water or in the medium, as ``let``)
    fractions: int                         # the fractions the result's dose holds
    let: str                               # "water" or "medium"


def mcnamara_of_result(result: Any, alpha_beta_gy, *, let: str = "water", dose: str = "medium") -> McNamaraDose:
    """The McNamara RBE and RBE-weighted dose of a run's result (a :class:`~mcproton.DoseResult`, or the path of an
    HDF5 file of ``mcproton run``/``demo``): the RBE is evaluated at the dose PER FRACTION, the result's dose divided
    by the fractions it holds (its ``fractions``: 17 for ``plan.all_fractions = true`` of a 17-fraction plan, 1 for
    one fraction or a beam without a plan), and the weighted dose is of the same fractions as the result's.  A result
    whose beams disagree on the fractions they hold or on their plan (an older file's sum: ``sum_results`` refuses
    such parts since 2026-12-07) raises ValueError naming them, rather than taking the first beam's fractions for
    all (:func:`mcproton._io.hdf5.plan_fractions`; audit 26 interact, F1).  A plan's result from an HDF5 written
    before 2026-12-06, which does not record its fractions (``result.fractions_not_stored``), raises ValueError
    saying how to state them, as ``write_result_rtdose`` does: taken for one fraction, the course of a plan run with
    ``plan.all_fractions = true`` got the RBE of its whole dose, 10 % low for 5 x 2 Gy, below the 15 Gy warning
    (audit 29 bio, F1).

    ``alpha_beta_gy``: a number or an array broadcastable to the grid.  ``let``: "water" (default: the LETd in water,
    :func:`let_d_to_water`, as the model's in vitro LETd values are) or "medium" (the scored LETd, with a warning
    where voxels far from water density, outside :data:`WATER_LIKE_DENSITY_G_CM3`, carry dose).  ``dose``: "medium"
    (default, the dose to the voxel medium) or "water" (the dose to water) as the physical dose."""
    from ._io.errors import McprotonRuntimeWarning, warn
    from ._io.hdf5 import plan_fractions

    if isinstance(result, (str, Path)):
        from ._run.result import DoseResult

        result = DoseResult.load(result)
    if let not in ("water", "medium") or dose not in ("water", "medium"):
        raise ValueError(f'let and dose must be "water" or "medium"; got let={let!r}, dose={dose!r}')
    from ._run.result import is_per_primary

    if is_per_primary(result):   # a sum of such beams too (audit 26, F2)
        raise ValueError(f"the result's dose is Gy per primary proton ({result.normalisation}: a beam without "
                         "total_protons, or a sum of such beams): the RBE needs "
                         "the absolute dose per fraction; simulate a plan, or a beam with total_protons")
    fx = plan_fractions(result.provenance or {})
    unknown = getattr(result, "fractions_not_stored", "")
    if fx is None and unknown:   # audit 29 bio, F1: taken as 1 fraction, a course's RBE came out 10 % low, silently
        raise ValueError(
            f"the result was loaded (or summed) from {unknown}, the dose of a plan written by an mcproton of before "
            "2026-12-06, which does not record how many fractions its dose holds (one fraction, or all of them with "
            "plan.all_fractions = true); the RBE is that of the dose per fraction, so it is not guessed: state them "
            "on the result, result.provenance[\"beam\"].update(fractions=1, fractions_planned=N) for one fraction of "
            "a plan of N (for a sum, each result.provenance[\"summed_beams\"][k]), or give the dose per fraction to "
            "mcproton.rbe.mcnamara_rbe_weighted_dose(dose, let_d, alpha_beta, fractions=...)")
    n = fx[0] if fx is not None else 1
    d = np.asarray(result.dose_gy_zyx if dose == "medium" else result.dose_to_water_gy_zyx, float)
    rho = np.asarray(result.geometry.density_g_cm3_zyx, float)
    if let == "water":
        lt = let_d_to_water(result.let_d_kev_um_zyx, result.dose_gy_zyx, result.dose_to_water_gy_zyx, rho)
    else:
        lt = np.asarray(result.let_d_kev_um_zyx, float)
        top = float(d.max(initial=0.0))
        lo, hi = WATER_LIKE_DENSITY_G_CM3
        far = (d > 0.1 * top) & ((rho < lo) | (rho > hi))
        if far.any():
            warn(f"McNamara RBE with the LETd in the medium: {int(far.sum()):,} voxel(s) above 10 % of the maximum "
                 f"dose have a density outside {lo:g}-{hi:g} g/cm3 (from {rho[far].min():.3g} to "
                 f"{rho[far].max():.3g}); there the LETd in the medium differs from the LETd in water that the "
                 "model was fitted to (bone 1.7 x, lung 0.3 x); use let=\"water\"", McprotonRuntimeWarning,
                 stacklevel=2)
    dp = d / n
    _warn_dose_scale(dp, n, stacklevel=3)
    r = _rbe(dp, lt, alpha_beta_gy)
    return McNamaraDose(r, r * d, dp, lt, n, let)


__all__ = ["McNamaraDose", "let_d_to_water", "mcnamara_of_result", "mcnamara_rbe", "mcnamara_rbe_weighted_dose"]
