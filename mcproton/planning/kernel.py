"""The planner's analytical pencil-beam model in water: the engine's range-energy relation, Bortfeld's (1997)
Bragg curve and the lateral spread from multiple Coulomb scattering (a Fermi-Eyges depth shape, :func:`mcs_sigma_mm`;
its end-of-range width is an assumption without a found source, :data:`MCS_END_A_CM`)."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

#: MeV/g -> Gy (J/kg): 1 MeV = 1.602176634e-13 J (SI 2019, exact), 1 g = 1e-3 kg
MEV_PER_G_TO_GY = 1.602176634e-10
# Bortfeld's analytical Bragg curve for water (T. Bortfeld, "An analytical approximation of the Bragg curve for
# therapeutic proton beams", Med. Phys. 24 (1997) 2024):
#: Bragg-Kleeman range-energy rule R = alpha E^p for water: alpha [cm MeV^-p], p [-] (Bortfeld 1997)
BK_ALPHA, BK_P = 0.0022, 1.77
#: beta [cm^-1]: relative loss of primary fluence per cm of water by nonelastic nuclear interactions (Bortfeld 1997);
#: gamma [-]: fraction of the energy those interactions release that is absorbed locally (Bortfeld 1997);
#: eps [-]: weight of the low-energy "tail" of the primary fluence; 0 is mcproton's choice (an assumption for a
#: scanned beam, checked against the engine's depth doses: planning/__init__.py and phantoms/README.md)
BORTFELD_BETA, BORTFELD_GAMMA, BORTFELD_EPS = 0.012, 0.6, 0.0
#: range straggling of a monoenergetic beam in water, sigma = a R^b with sigma and the range R in cm (Bortfeld 1997,
#: eq. 17: a = 0.012 cm^(1 - b), b = 0.935)
STRAGGLING_A_CM, STRAGGLING_B = 0.012, 0.935


@lru_cache(maxsize=4)
def _water_range_table(water_model: str = "icru90") -> tuple[np.ndarray, np.ndarray]:
    from ..physics import build_tables

    t = build_tables(["water"], water_model)
    e = np.exp(np.linspace(np.log(3.0), np.log(300.0), 2000))
    return e, np.asarray(t.csda_range_g_cm2(0, e), dtype=np.float64)


def water_range_mm(energy_mev) -> np.ndarray:
    """CSDA range in water (mm) of the engine's ICRU 90 tables."""
    e, r = _water_range_table()
    return 10.0 * np.interp(np.asarray(energy_mev, float), e, r)


def energy_for_range_mm(range_mm) -> np.ndarray:
    """Inverse of :func:`water_range_mm` (MeV)."""
    e, r = _water_range_table()
    return np.interp(np.asarray(range_mm, float) / 10.0, r, e)


#: NumPy lets go of the interpreter lock (GIL) during a ufunc's loop only over more than 500 elements
#: (``NPY_BEGIN_THREADS_THRESHOLDED`` in numpy/ndarraytypes.h, NumPy 1.x and 2.x)
NUMPY_GIL_LOOP_THRESHOLD = 500


@lru_cache(maxsize=1)
def _pbdv_needs_gil() -> bool:
    """Whether this scipy's ``pbdv`` must be called with the interpreter lock held: scipy < 1.13, whose C wrapper
    of the Fortran PBDV (specfun_wrappers.c ``pbdv_wrap``) allocates its work arrays with ``PyMem_Malloc`` inside
    the ufunc loop, where NumPy has let go of the lock.  Python's allocator is not thread-safe without it: with
    any Python code running in another thread (the planner computes the depth doses in a worker thread beside
    its own work) the process segfaults (the deployment audit, F2: about one demo in two with scipy 1.10.1; a
    pbdv thread beside a bare Python loop: every time with scipy 1.10.1, 1.11.4 and 1.12.0, never with 1.13.1 and
    1.17.1).  A lock around the pbdv calls alone does not help: the other thread's Python code is the other side."""
    import re

    import scipy

    m = re.match(r"(\d+)\.(\d+)", scipy.__version__)
    return m is not None and (int(m.group(1)), int(m.group(2))) < (1, 13)


def _pbdv(v: float, x: np.ndarray) -> np.ndarray:
    """``scipy.special.pbdv(v, x)[0]`` (the parabolic cylinder function D_v(x)), safe beside other threads: with
    a scipy that needs it (:func:`_pbdv_needs_gil`) in slices of :data:`NUMPY_GIL_LOOP_THRESHOLD` values, whose
    loops NumPy runs with the interpreter lock held (the same values, as fast within the noise: 0.70 s for 300 000
    values either way with scipy 1.10.1; but the calling thread keeps the lock meanwhile, so a worker's depth doses
    no longer overlap the planner's Python work); else in one call (scipy >= 1.13: unchanged)."""
    from scipy.special import pbdv

    if not _pbdv_needs_gil() or x.size <= NUMPY_GIL_LOOP_THRESHOLD:
        return pbdv(v, x)[0]
    flat = x.ravel()
    out = np.empty_like(flat)
    for i in range(0, flat.size, NUMPY_GIL_LOOP_THRESHOLD):
        out[i:i + NUMPY_GIL_LOOP_THRESHOLD] = pbdv(v, flat[i:i + NUMPY_GIL_LOOP_THRESHOLD])[0]
    return out.reshape(x.shape)


def bortfeld_idd(depth_cm: np.ndarray, energy_mev: float, energy_sigma_mev: float = 0.0,
                 range_cm: float | None = None, eps: float = BORTFELD_EPS,
                 straggling_range_cm: float | None = None) -> np.ndarray:
    """Bortfeld's (Med Phys 24, 2024, 1997) analytical Bragg curve in water: integrated depth dose per
    proton (MeV cm2/g) at ``depth_cm`` for a beam of ``energy_mev`` (range ``range_cm``, default the
    engine's CSDA range).  ``straggling_range_cm``: the water-equivalent path over which range straggling
    built up (default ``range_cm``; behind a range shifter, the range before the shifter)."""
    z = np.asarray(depth_cm, dtype=np.float64)
    r0 = float(range_cm if range_cm is not None else water_range_mm(energy_mev) / 10.0)
    p, a, b, g = BK_P, BK_ALPHA, BORTFELD_BETA, BORTFELD_GAMMA
    r_strag = float(straggling_range_cm if straggling_range_cm is not None else r0)
    s_mono = STRAGGLING_A_CM * r_strag ** STRAGGLING_B   # cm
    sigma = np.sqrt(s_mono**2 + (energy_sigma_mev * a * p * energy_mev ** (p - 1)) ** 2)
    from math import gamma as _gamma, pi, sqrt

    pref = _gamma(1 / p) / (sqrt(2 * pi) * p * a ** (1 / p) * (1 + b * r0))
    c2 = b / p + g * b + eps / r0
    zeta = (r0 - z) / sigma
    out = np.zeros_like(z)
    far = zeta > 10.0                  # plateau: Bortfeld eq. (29) form (no overflow)
    if np.any(far):
        dz = r0 - z[far]
        out[far] = (dz ** (1 / p - 1) / (p * a ** (1 / p)) + c2 * dz ** (1 / p) / a ** (1 / p)) / (1 + b * r0)
    near = (~far) & (zeta > -12.0)
    if np.any(near):
        x = zeta[near]
        d1 = _pbdv(-1 / p, -x)
        d2 = _pbdv(-1 / p - 1, -x)
        out[near] = pref * np.exp(-x * x / 4) * sigma ** (1 / p) * (d1 / sigma + c2 * d2)
    return np.maximum(out, 0.0)


#: Lateral spread (1 sigma, projected) from multiple Coulomb scattering in water at the end of range, sigma_end =
#: a R^b with sigma_end and the CSDA range R in cm.  ASSUMPTION, source not found: the pair has been in the code since
#: the first commit without a reference (provenance audit 2026-12-06, C1).  It is not a fit to mcproton's own
#: Fermi-Eyges model either (validation/reference.py sigma_fermi_eyges, Gottschalk's differential Moliere scattering
#: power: 0.05-0.72 cm at the end of range for 50-230 MeV, ~0.0225 R^0.99), from which it differs by +21 % at R = 2.2
#: cm and -6 % at R = 33 cm.  It enters the planner's dose-influence matrix only (spot weights); the Monte Carlo
#: transports the scattering itself.
MCS_END_A_CM, MCS_END_B = 0.0294, 0.896


def mcs_sigma_mm(wet_mm: np.ndarray, range_mm: float) -> np.ndarray:
    """Lateral spread (mm) from multiple Coulomb scattering in water at depth ``wet_mm`` of a beam of
    CSDA range ``range_mm``: sigma(z)^2 = sigma_end^2 f(t), t = z / R, with sigma_end = :data:`MCS_END_A_CM`
    R^:data:`MCS_END_B` (an assumption, see there) and the depth shape

        f(t) = 2 (1 - t)^2 ln(1 / (1 - t)) + 3 t^2 - 2 t,   f(0) = 0, f(1) = 1.

    f is the Fermi-Eyges integral sigma^2(z) = int_0^z (z - z')^2 T(z') dz' for a scattering power inversely
    proportional to the residual range, T(z') = 2 sigma_end^2 / (R^2 (R - z')) (integrate with u = R - z'): the
    scattering power of N. Kanematsu's Gaussian beam model (arXiv:0810.1390, 2008).  The planner has called it the
    Preston-Koehler depth shape (Preston & Koehler, Harvard Cyclotron Laboratory, 1968); that report was not at hand
    to check, so the derivation above is the reference."""
    r_cm = range_mm / 10.0
    s_end = 10.0 * MCS_END_A_CM * r_cm**MCS_END_B
    t = np.clip(np.asarray(wet_mm, float) / range_mm, 0.0, 0.999)
    f = 2 * (1 - t) ** 2 * np.log(1 / (1 - t)) + 3 * t**2 - 2 * t
    return s_end * np.sqrt(np.maximum(f, 0.0))
