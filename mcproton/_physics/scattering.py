"""Multiple-Coulomb-scattering and electron-density material constants.

Scattering length (B. Gottschalk, "On the scattering power of radiotherapy protons", Med. Phys. 37 (2010)
352-367, eq. for X_S; it plays the role of the radiation length X_0 in the scattering power T = (E_s / p v)^2
/ X_S, with E_s = 15.0 MeV, and reproduces Highland/Moliere angles better than X_0 for hadrons):

    1 / (rho X_S) = alpha N_A r_e^2 (Z^2 / A) [ 2 ln(33219 (A Z)^(-1/3)) - 1 ]          (one element)
    1 / X_S       = sum_i w_i / X_S,i                                                    (mixtures, by mass)

X_S here is a mass length (g/cm2; divide by the density for cm). Gottschalk tabulates X_S(water) = 46.88
g/cm2; this module gives 46.9 g/cm2 (with the atomic weights of data/materials/elements.csv).

Constants: fine-structure constant alpha = 7.2973525693e-3 and classical electron radius r_e =
2.8179403262e-13 cm (CODATA 2018); Avogadro constant N_A = 6.02214076e23 /mol (exact, SI 2019).
"""
from __future__ import annotations

import math

from ..materials import ELEMENTS, Material, get_material

ALPHA_FS = 7.2973525693e-3        # fine-structure constant [-], CODATA 2018
R_E_CM = 2.8179403262e-13          # classical electron radius [cm], CODATA 2018
AVOGADRO = 6.02214076e23           # [1/mol], exact (SI 2019)
GOTTSCHALK_LOG_CONST = 33219.0     # constant in the logarithm of Gottschalk (2010) X_S formula [-]


def _as_material(material: Material | str) -> Material:
    return get_material(material) if isinstance(material, str) else material


def _fractions(material: Material) -> list[tuple[float, int, float]]:
    out = []
    total = math.fsum(w for w in material.mass_fractions.values())
    if not total > 0:
        raise ValueError(f"material {material.name!r} has no elements")
    for sym, w in material.mass_fractions.items():
        if w < 0:
            raise ValueError(f"material {material.name!r}: negative mass fraction for {sym}")
        if w > 0:
            el = ELEMENTS[sym]
            out.append((w / total, el.Z, el.atomic_mass_g_mol))
    return out


def element_inverse_scattering_length(z: int, a_g_mol: float) -> float:
    """1 / (rho X_S) of one element (cm2/g) per Gottschalk (2010)."""
    return (ALPHA_FS * AVOGADRO * R_E_CM ** 2 * z * z / a_g_mol
            * (2.0 * math.log(GOTTSCHALK_LOG_CONST * (a_g_mol * z) ** (-1.0 / 3.0)) - 1.0))


def scattering_length_g_cm2(material: Material | str) -> float:
    """Gottschalk's scattering length X_S of ``material`` as a mass length (g/cm2); X_S(water) ~ 46.9
    g/cm2."""
    material = _as_material(material)
    inv = math.fsum(w * element_inverse_scattering_length(z, a) for w, z, a in _fractions(material))
    return 1.0 / inv


def z_over_a(material: Material | str) -> float:
    """Electrons per unit mass / N_A: sum_i w_i Z_i / A_i (mol/g); water 0.5551."""
    material = _as_material(material)
    return math.fsum(w * z / a for w, z, a in _fractions(material))


def relative_electron_density(material: Material | str, density_g_cm3: float | None = None) -> float:
    """Electron density of ``material`` at ``density_g_cm3`` (default: its nominal density) relative to water
    at 1 g/cm3:  rho * (Z/A)_material / (Z/A)_water."""
    material = _as_material(material)
    rho = material.density_g_cm3 if density_g_cm3 is None else float(density_g_cm3)
    if not rho >= 0:
        raise ValueError(f"density must be >= 0, got {density_g_cm3}")
    return rho * z_over_a(material) / z_over_a(get_material("water"))


__all__ = ["scattering_length_g_cm2", "z_over_a", "relative_electron_density",
           "element_inverse_scattering_length"]
