"""Nonelastic nuclear data per material (mcproton/_physics/nuclear.py,
data/nuclear/icru63_nonelastic_p_elements.csv)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mcproton._physics.nuclear as nuc
from mcproton._physics.nuclear import (SUBSTITUTES, element_nonelastic, elements_with_data, nonelastic_tables,
                                       substitute_element)
from mcproton.materials import ELEMENTS, Material, list_materials

NA = 6.02214076e23
KEYS = {"sigma_cm2_g", "mult_p", "mult_alpha", "mult_d", "frac_recoil"}


def test_data_file_packaged_with_header():
    f = Path(nuc.__file__).resolve().parents[1] / "data" / "nuclear" / "icru63_nonelastic_p_elements.csv"
    text = f.read_text(encoding="utf-8")
    assert text.startswith("#") and "ICRU" in text and "MCsquare" in text
    assert elements_with_data() == ["C", "N", "O", "Al", "Si", "P", "Ca", "Fe", "Cu", "W", "Pb"]


def test_water_100_mev_hand_calculation():
    # O: sigma(100 MeV) = 0.297 b (table); water w_O = 0.888106; A_O = 15.9994 g/mol
    t = nonelastic_tables("water", np.array([100.0]))
    assert set(t) == KEYS
    expect = 0.888106 * NA * 0.297e-24 / 15.9994      # = 0.009928 cm2/g
    assert t["sigma_cm2_g"][0] == pytest.approx(expect, rel=1e-5)
    assert t["sigma_cm2_g"][0] == pytest.approx(0.00993, abs=2e-5)
    # H contributes nothing: averages are oxygen's
    assert t["mult_p"][0] == pytest.approx(1.692)
    assert t["mult_alpha"][0] == pytest.approx(0.8141)
    assert t["mult_d"][0] == pytest.approx(0.2782)
    assert t["frac_recoil"][0] == pytest.approx(0.0336)


def test_linear_interpolation_threshold_and_plateau():
    o = Material("oxygen", 1.0, {"O": 1.0})
    e = np.array([0.0, 6.99, 7.0, 95.0, 250.0, 300.0, 1000.0])
    t = nonelastic_tables(o, e)
    per_barn = NA * 1e-24 / 15.9994
    assert t["sigma_cm2_g"][0] == 0 and t["sigma_cm2_g"][1] == 0          # below O's first energy (7 MeV)
    assert t["mult_p"][1] == 0 and t["frac_recoil"][1] == 0               # 0 where sigma is 0
    assert t["sigma_cm2_g"][2] == pytest.approx(0.2083 * per_barn)
    # linear between the 90 and 100 MeV points
    assert t["sigma_cm2_g"][3] == pytest.approx(0.5 * (0.3021 + 0.297) * per_barn)
    assert t["mult_p"][3] == pytest.approx(0.5 * (1.609 + 1.692))
    assert t["sigma_cm2_g"][4] == pytest.approx(0.295 * per_barn)
    for k in KEYS:                                                        # constant above 250 MeV
        assert t[k][5] == pytest.approx(t[k][4]) and t[k][6] == pytest.approx(t[k][4])


def test_hydrogen_has_no_nonelastic_channel():
    t = nonelastic_tables(Material("h", 0.07, {"H": 1.0}), np.linspace(0, 300, 31))
    for k in KEYS:
        assert np.all(t[k] == 0)


def test_cross_section_weighted_averages():
    mix = Material("c_ca", 1.5, {"C": 0.6, "Ca": 0.4})
    e = np.array([100.0])
    c, ca = element_nonelastic("C", e), element_nonelastic("Ca", e)
    pc = 0.6 * NA * c["sigma_barn"] * 1e-24 / ELEMENTS["C"].atomic_mass_g_mol
    pca = 0.4 * NA * ca["sigma_barn"] * 1e-24 / ELEMENTS["Ca"].atomic_mass_g_mol
    t = nonelastic_tables(mix, e)
    assert t["sigma_cm2_g"][0] == pytest.approx((pc + pca)[0])
    for k in ("mult_p", "mult_alpha", "mult_d", "frac_recoil"):
        assert t[k][0] == pytest.approx(((pc * c[k] + pca * ca[k]) / (pc + pca))[0])
        lo, hi = sorted([c[k][0], ca[k][0]])
        assert lo <= t[k][0] <= hi


def test_substitution_nearest_z():
    assert substitute_element("H") is None
    assert substitute_element("O") == "O"
    assert SUBSTITUTES["F"] == "O"
    assert SUBSTITUTES["Na"] == "Al" and SUBSTITUTES["Mg"] == "Al"
    assert SUBSTITUTES["S"] == "P" and SUBSTITUTES["Cl"] == "P"
    assert SUBSTITUTES["Ar"] == "Ca" and SUBSTITUTES["K"] == "Ca" and SUBSTITUTES["Ti"] == "Ca"
    assert SUBSTITUTES["Zn"] == "Cu"
    # substitute data scaled by (A/A_sub)^(2/3); multiplicities unchanged
    ti, ca = element_nonelastic("Ti", np.array([150.0])), element_nonelastic("Ca", np.array([150.0]))
    scale = (ELEMENTS["Ti"].atomic_mass_g_mol / ELEMENTS["Ca"].atomic_mass_g_mol) ** (2 / 3)
    assert ti["sigma_barn"][0] == pytest.approx(scale * ca["sigma_barn"][0])
    assert ti["mult_p"][0] == ca["mult_p"][0]


@pytest.mark.parametrize("name", list_materials())
def test_every_material_has_sane_tables(name):
    e = np.linspace(0.0, 400.0, 81).reshape(9, 9)
    t = nonelastic_tables(name, e)
    assert set(t) == KEYS
    for k, v in t.items():
        assert v.shape == e.shape and np.all(np.isfinite(v)) and np.all(v >= 0), k
    s = t["sigma_cm2_g"]
    assert s[0, 0] == 0                                   # no reaction at rest
    assert 0.004 < s.flat[-1] < 0.02      # ~1 % per g/cm2 at therapy energies for all these materials
    assert np.all(t["frac_recoil"] <= 1)


def test_rejects_bad_energy():
    with pytest.raises(ValueError):
        nonelastic_tables("water", np.array([-1.0]))
