"""Gottschalk scattering length, Z/A and relative electron density (mcproton/_physics/scattering.py)."""
from __future__ import annotations

import math

import pytest

from mcproton._physics.scattering import relative_electron_density, scattering_length_g_cm2, z_over_a
from mcproton.materials import ELEMENTS, Material, get_material, list_materials


def _xs_element_hand(z, a):
    # Gottschalk, Med Phys 37 (2010) 352: 1/(rho X_S) = alpha N_A r_e^2 Z^2/A [2 ln(33219 (A Z)^(-1/3)) - 1]
    alpha, na, re = 1 / 137.035999, 6.02214076e23, 2.8179403e-13
    return 1.0 / (alpha * na * re ** 2 * z * z / a * (2 * math.log(33219 * (a * z) ** (-1 / 3)) - 1))


def test_water_scattering_length_matches_gottschalk():
    assert scattering_length_g_cm2("water") == pytest.approx(46.88, rel=0.01)   # Gottschalk 2010 table
    assert scattering_length_g_cm2("water") == pytest.approx(46.88, rel=0.002)


def test_element_and_mixture_rule():
    c = ELEMENTS["C"]
    expect_c = _xs_element_hand(c.Z, c.atomic_mass_g_mol)
    assert scattering_length_g_cm2("graphite") == pytest.approx(expect_c, rel=1e-6)
    al = ELEMENTS["Al"]
    mix = Material("c_al", 2.0, {"C": 0.3, "Al": 0.7})
    expect = 1.0 / (0.3 / _xs_element_hand(c.Z, c.atomic_mass_g_mol)
                    + 0.7 / _xs_element_hand(al.Z, al.atomic_mass_g_mol))
    assert scattering_length_g_cm2(mix) == pytest.approx(expect, rel=1e-6)


def test_scattering_length_ordering():
    # heavier elements scatter more per g/cm2: shorter X_S
    assert (scattering_length_g_cm2("titanium") < scattering_length_g_cm2("aluminium")
            < scattering_length_g_cm2("bone_cortical_icrp") < scattering_length_g_cm2("water")
            < scattering_length_g_cm2("pmma") < scattering_length_g_cm2("polyethylene"))


def test_z_over_a():
    h, o = ELEMENTS["H"].atomic_mass_g_mol, ELEMENTS["O"].atomic_mass_g_mol
    assert z_over_a("water") == pytest.approx(10 / (2 * h + o), rel=1e-5)   # H2O: 10 electrons / molar mass
    assert z_over_a("water") == pytest.approx(0.5551, abs=2e-4)
    assert z_over_a("graphite") == pytest.approx(6 / 12.0107, rel=1e-9)


def test_relative_electron_density():
    assert relative_electron_density("water", 1.0) == pytest.approx(1.0, abs=1e-12)
    assert relative_electron_density("water", 2.0) == pytest.approx(2.0, abs=1e-12)
    assert relative_electron_density("water") == pytest.approx(1.0)          # default: nominal density
    # Gammex solid water at 1.032 g/cm3: rel. electron density ~1.00 (vendor value for Solid Water HE)
    assert relative_electron_density("solid_water", 1.032) == pytest.approx(1.0, abs=0.01)
    rho_e_bone = relative_electron_density("bone_cortical_icrp", 1.85)
    assert rho_e_bone == pytest.approx(1.85 * z_over_a("bone_cortical_icrp") / z_over_a("water"))
    assert 1.6 < rho_e_bone < 1.8
    with pytest.raises(ValueError):
        relative_electron_density("water", -1.0)


@pytest.mark.parametrize("name", list_materials())
def test_all_materials_finite(name):
    # from polyethylene (X_S 56 g/cm2, Z/A 0.570) to the implant metals gold and platinum (X_S 6.8 and 6.7 g/cm2,
    # Z/A 0.401 and 0.3998: Gottschalk's formula of a pure element, checked below)
    xs = scattering_length_g_cm2(name)
    assert 5 < xs < 100
    assert 0.39 < z_over_a(get_material(name)) < 0.60


@pytest.mark.parametrize("name", ["gold", "platinum", "tantalum", "titanium"])
def test_a_pure_metal_of_the_library_has_gottschalks_scattering_length(name):
    m = get_material(name)
    (sym,) = m.mass_fractions
    el = ELEMENTS[sym]
    assert scattering_length_g_cm2(m) == pytest.approx(_xs_element_hand(el.Z, el.atomic_mass_g_mol), rel=1e-6)
    assert name == "titanium" or scattering_length_g_cm2(m) < scattering_length_g_cm2("titanium")
