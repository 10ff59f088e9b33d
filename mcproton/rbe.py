"""Variable proton RBE from the dose-averaged LET: the McNamara model.

McNamara AL, Schuemann J, Paganetti H, "A phenomenological relative biological effectiveness (RBE) model for
proton therapy based on all published in vitro cell survival data", Phys. Med. Biol. 60 (2015) 8399-8416,
eqs. (6)-(8) with the fitted parameters of that paper:

    RBE_max = p0 + p1 / (alpha/beta) * LETd,        p0 = 0.99064, p1 = 0.35605 Gy um/keV
    RBE_min = p2 + p3 * sqrt(alpha/beta) * LETd,    p2 = 1.1012,  p3 = -0.0038703 Gy^(-1/2) um/keV
    RBE(D)  = [ sqrt( (a/b)^2 + 4 D (a/b) RBE_max + 4 D^2 RBE_min^2 ) - a/b ] / (2 D)

with D the physical dose per fraction (Gy), LETd the dose-averaged LET (keV/um; mcproton scores it for all
protons in the voxel medium) and alpha/beta of the tissue (Gy). RBE-weighted dose = RBE * D. For D -> 0 the
RBE tends to RBE_max. The model was fitted to in vitro data; its use for clinical decisions is a matter of
the user's protocol (the clinical standard remains a constant 1.1).
"""
from __future__ import annotations

import numpy as np

# p0 as in the paper's table (0.99064); some tools (e.g. matRad) carry 0.999064, 0.9 % higher RBE_max offset.
P0, P1 = 0.99064, 0.35605       # RBE_max = P0 + P1 / (alpha/beta) * LETd
P2, P3 = 1.1012, -0.0038703     # RBE_min = P2 + P3 * sqrt(alpha/beta) * LETd


#: Below this dose (Gy) the model is evaluated at D -> 0 (RBE = RBE_max); a dose whose maximum is below it is no
#: dose per fraction (a dose per primary proton is 1e-10 - 1e-8 Gy) and gets a warning.
SMALL_DOSE_GY = 1e-6


def _warn_if_per_primary(d: np.ndarray) -> None:
    """Warn (McprotonRuntimeWarning) when every dose is positive but below SMALL_DOSE_GY where some is positive:
    almost surely a dose per primary proton, for which the model gives RBE_max everywhere."""
    from ._io.errors import McprotonRuntimeWarning, warn

    top = float(np.max(d, initial=0.0))
    if 0.0 < top < SMALL_DOSE_GY:
        warn(f"McNamara RBE: the largest dose given is {top:.3g} Gy, below {SMALL_DOSE_GY:g} Gy everywhere: a dose "
             "per primary proton (a beam without total_protons), not a dose per fraction; the model then gives "
             "RBE_max everywhere; give the physical dose per fraction in Gy (simulate a beam with total_protons, or "
             "a plan)", McprotonRuntimeWarning, stacklevel=3)


def mcnamara_rbe(dose_gy, let_kev_um, alpha_beta_gy: float) -> np.ndarray:
    """RBE of the McNamara model for physical dose per fraction ``dose_gy`` (Gy) and dose-averaged LET
    ``let_kev_um`` (keV/um), arrays of the same shape (or broadcastable), for a tissue of ``alpha_beta_gy``.
    Doses below 1e-6 Gy are taken as D -> 0 (RBE_max); a dose that is below it everywhere (a dose per primary
    proton) gives a McprotonRuntimeWarning."""
    d = np.asarray(dose_gy, dtype=float)
    _warn_if_per_primary(d)
    return _rbe(d, let_kev_um, alpha_beta_gy)


def _rbe(d: np.ndarray, let_kev_um, alpha_beta_gy: float) -> np.ndarray:
    ab = float(alpha_beta_gy)
    if not np.isfinite(ab) or ab <= 0:
        raise ValueError(f"alpha/beta must be a positive number of Gy; got {alpha_beta_gy!r}")
    let = np.asarray(let_kev_um, dtype=float)
    if np.any(d < 0) or np.any(~np.isfinite(d)):
        raise ValueError("dose must be finite and >= 0")
    if np.any(let < 0) or np.any(~np.isfinite(let)):
        raise ValueError("LETd must be finite and >= 0 (keV/um)")
    rbe_max = P0 + P1 / ab * let
    rbe_min = P2 + P3 * np.sqrt(ab) * let
    small = d < 1e-6
    ds = np.where(small, 1.0, d)
    rbe = (np.sqrt(ab * ab + 4 * ds * ab * rbe_max + 4 * ds * ds * rbe_min * rbe_min) - ab) / (2 * ds)
    return np.where(small, rbe_max, rbe)


def mcnamara_rbe_weighted_dose(dose_gy, let_kev_um, alpha_beta_gy: float) -> np.ndarray:
    """RBE-weighted dose (Gy(RBE)) = McNamara RBE x physical dose per fraction ``dose_gy`` (Gy; an absolute dose,
    e.g. of a plan, not a dose per primary proton: a dose below 1e-6 Gy everywhere gives a
    McprotonRuntimeWarning, see :func:`mcnamara_rbe`)."""
    d = np.asarray(dose_gy, dtype=float)
    _warn_if_per_primary(d)
    return _rbe(d, let_kev_um, alpha_beta_gy) * d


__all__ = ["mcnamara_rbe", "mcnamara_rbe_weighted_dose"]
