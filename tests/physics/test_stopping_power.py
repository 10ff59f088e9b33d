"""Electronic stopping powers (mcproton/_physics/stopping.py) against the packaged PSTAR / ICRU 90 tables.

Reference tables are read from mcproton/data/stopping_power/ (copies of NIST PSTAR = ICRU 49 and ICRU 90 with
their provenance headers), never from /work/shared.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import mcproton._physics.stopping as sp
from mcproton._physics.stopping import (electronic_mass_stopping_power, mean_excitation_energy_ev,
                                        water_stopping_table)
from mcproton.materials import Material, get_material, list_materials

SP_DIR = Path(sp.__file__).resolve().parents[1] / "data" / "stopping_power"

# material -> packaged PSTAR file. PSTAR used these compositions and ICRU 49 I-values (the database values).
PSTAR = {
    "bone_compact_icru": "pstar_bone_compact_icru.csv",
    "bone_cortical_icrp": "pstar_bone_cortical_icrp.csv",
    "adipose_tissue_icrp": "pstar_adipose_tissue_icrp.csv",
    "muscle_skeletal_icrp": "pstar_muscle_skeletal.csv",
    "muscle_striated_icru": "pstar_muscle_striated.csv",
    "pmma": "pstar_polymethyl_methacralate_lucite_perspex.csv",
    "air": "pstar_air_dry_near_sea_level.csv",
}
PSTAR_EXTRA = {
    "a_150": "pstar_a_150_tissue_equivalent_plastic.csv",
    "b_100": "pstar_b_100_bone_equivalent_plastic.csv",
    "polyethylene": "pstar_polyethylene.csv",
    "polystyrene": "pstar_polystyrene.csv",
}
#: the library's metals that PSTAR tabulates -> (packaged file, largest |deviation| from 10 to 250 MeV, and from 90 to
#: 250 MeV).  The ratio method has no Barkas or density-effect term and the Barkas-Berger shell correction is coarse
#: for high Z: gold and platinum (I 790 eV) lie up to 2.6 and 2.8 % below PSTAR at 15-30 MeV, where a proton has
#: ~0.1 g/cm2 (0.05 mm of gold) of range left, and within 0.5 % above 90 MeV (the figures of 2026-12-06)
PSTAR_METALS = {
    "aluminium": ("pstar_aluminum.csv", 0.004, 0.004),
    "titanium": ("pstar_titanium.csv", 0.006, 0.006),
    "gold": ("pstar_gold.csv", 0.03, 0.006),
    "platinum": ("pstar_platinum.csv", 0.03, 0.006),
}


def _table(fname):
    e, s = sp._read_table(fname)
    return e, s


def _max_dev(material, fname, model, lo=10.0, hi=250.0):
    e, s_ref = _table(fname)
    sel = (e >= lo) & (e <= hi)
    s = electronic_mass_stopping_power(material, e[sel], water_model=model)
    return float(np.max(np.abs(s / s_ref[sel] - 1.0)))


def test_packaged_tables_keep_provenance_headers():
    for f in ["icru90_protons_water.csv", *PSTAR.values(), *PSTAR_EXTRA.values(), "pstar_water_liquid.csv",
              *(f for f, _, _ in PSTAR_METALS.values())]:
        text = (SP_DIR / f).read_text(encoding="utf-8")
        assert text.startswith("#") and ("PSTAR" in text or "ICRU Report 90" in text), f


def test_water_stopping_table_models():
    e90, s90 = water_stopping_table("icru90")
    e49, s49 = water_stopping_table()  # default icru90
    assert np.array_equal(e90, e49) and np.array_equal(s90, s49)
    ep, spp = water_stopping_table("pstar")
    assert len(ep) == 132 and len(e90) == 57
    assert e90[0] == pytest.approx(1e-3) and e90[-1] >= 400
    # published values: ICRU 90 water 100 MeV: 7.25; PSTAR: 7.289 MeV cm2/g
    assert s90[np.isclose(e90, 100)][0] == pytest.approx(7.25, rel=1e-3)
    assert spp[np.isclose(ep, 100)][0] == pytest.approx(7.289, rel=1e-3)
    with pytest.raises(ValueError, match="icru90"):
        water_stopping_table("bethe")
    with pytest.raises(ValueError):
        electronic_mass_stopping_power("water", 100.0, water_model="icru49")


@pytest.mark.parametrize("model", ["icru90", "pstar"])
def test_water_reproduces_its_table_at_nodes(model):
    e, s = water_stopping_table(model)
    sel = (e >= 1e-3) & (e <= 400)
    np.testing.assert_allclose(electronic_mass_stopping_power("water", e[sel], model), s[sel], rtol=1e-10)


def test_water_interpolation_between_nodes():
    # interpolating the coarse ICRU 90 grid must reproduce PSTAR's fine grid shape: compare ICRU 90 (I=78)
    # with PSTAR (I=75) at PSTAR energies; ICRU 90 is lower by the I-value change:
    # -0.70 % (10 MeV) .. -0.47 % (200 MeV)
    e, s49 = water_stopping_table("pstar")
    sel = (e >= 10) & (e <= 250)
    r = electronic_mass_stopping_power("water", e[sel], "icru90") / s49[sel] - 1
    assert np.all(r < -0.0040) and np.all(r > -0.0075)


@pytest.mark.parametrize("model", ["icru90", "pstar"])
@pytest.mark.parametrize("name", sorted(PSTAR))
def test_within_one_percent_of_pstar_10_250_mev(name, model):
    dev = _max_dev(get_material(name), PSTAR[name], model)
    assert dev < 0.01, f"{name} ({model} base): max |dev| {100 * dev:.2f} % vs PSTAR"
    assert dev < 0.003  # the implementation does better; keep it from regressing silently


@pytest.mark.parametrize("name", sorted(PSTAR_EXTRA))
def test_extra_plastics_within_one_percent_of_pstar(name):
    for model in ("icru90", "pstar"):
        assert _max_dev(get_material(name), PSTAR_EXTRA[name], model) < 0.01


@pytest.mark.parametrize("model", ["icru90", "pstar"])
@pytest.mark.parametrize("name", sorted(PSTAR_METALS))
def test_the_metals_against_pstar(name, model):
    """The library's metals with a PSTAR table (aluminium, titanium; the implant metals gold and platinum added
    2026-12-06 with their tables, NIST 'Gold' and 'Platinum', I = 790 eV) within the deviations PSTAR_METALS states:
    the SPR of a gold fiducial at clinical energies within 0.6 %."""
    fname, tol_10_250, tol_90_250 = PSTAR_METALS[name]
    m = get_material(name)
    assert _max_dev(m, fname, model) < tol_10_250
    assert _max_dev(m, fname, model, lo=90.0) < tol_90_250
    # it can fail: gold with the +13 % of ICRU 37's rule for a metal bound in a compound (893 eV) is 1.9 % low
    if name == "gold":
        assert _max_dev(dataclasses.replace(m, i_value_ev=893.0), fname, model, lo=90.0) > 0.015


@pytest.mark.parametrize("name", sorted(PSTAR))
def test_low_energy_1_10_mev_within_1p5_percent(name):
    assert _max_dev(get_material(name), PSTAR[name], "pstar", lo=1.0, hi=10.0) < 0.015


def test_result_nearly_independent_of_water_base():
    e = np.geomspace(10, 250, 40)
    for name in PSTAR:
        a = electronic_mass_stopping_power(name, e, "icru90")
        b = electronic_mass_stopping_power(name, e, "pstar")
        assert np.max(np.abs(a / b - 1)) < 0.002, name


def test_icru90_air_and_graphite():
    # ICRU 90 tables for air (I = 85.7 eV) and graphite (I = 81 eV): the ratio method on the
    # ICRU 90 water base
    for name, fname in [("air", "icru90_protons_air.csv"), ("graphite", "icru90_protons_graphite.csv")]:
        assert _max_dev(get_material(name), fname, "icru90") < 0.01, name


def test_wrong_i_value_is_detected():
    # the comparison can fail: a 15 % wrong I-value for compact bone moves S by > 1 % at 10 MeV
    bad = dataclasses.replace(get_material("bone_compact_icru"), i_value_ev=91.9 * 1.15)
    assert _max_dev(bad, PSTAR["bone_compact_icru"], "pstar") > 0.01


def test_bragg_additivity_water():
    h2o = Material("h2o_bragg", 1.0, {"H": 0.111894, "O": 0.888106}, None)
    i = mean_excitation_energy_ev(h2o)
    assert 75.0 <= i <= 78.0
    assert i == pytest.approx(75.3, abs=0.1)   # ICRU 37 condensed-phase values H 19.2, O 106 eV
    assert mean_excitation_energy_ev("water") == 78.0
    assert mean_excitation_energy_ev(get_material("pmma")) == 74.0
    # hand calculation for a single element: I_bragg of C (81 eV)
    assert mean_excitation_energy_ev(Material("c", 2.0, {"C": 1.0})) == pytest.approx(81.0)
    # solid water (no published I): plausible plastic value
    assert 65 < mean_excitation_energy_ev("solid_water") < 78


@pytest.mark.parametrize("model", ["icru90", "pstar"])
@pytest.mark.parametrize("name", list_materials())
def test_positive_and_continuous_1kev_to_400mev(name, model):
    e = np.geomspace(1e-3, 400, 3000)
    s = electronic_mass_stopping_power(name, e, model)
    assert np.all(np.isfinite(s)) and np.all(s > 0)
    # no jumps: neighbouring points (0.3 % apart in E) differ by < 1 %
    assert np.max(np.abs(np.diff(np.log(s)))) < 0.01
    # a Bragg-peak-like maximum below 0.2 MeV and 1/beta^2 fall-off above
    assert e[np.argmax(s)] < 0.2
    assert np.all(np.diff(s[e > 1]) < 0)


def test_vectorised_shapes_and_scalar():
    e = np.array([[1.0, 10.0], [100.0, 200.0]])
    s = electronic_mass_stopping_power("pmma", e)
    assert s.shape == (2, 2)
    assert float(electronic_mass_stopping_power("pmma", 100.0)) == pytest.approx(float(s[1, 0]))
    with pytest.raises(ValueError):
        electronic_mass_stopping_power("pmma", [-1.0, 10.0])


def test_water_with_other_i_value_is_scaled():
    # H2O with a non-table I-value is treated as a material, not replaced by a table
    w80 = dataclasses.replace(get_material("water"), name="water_i80", i_value_ev=80.0)
    r = electronic_mass_stopping_power(w80, 100.0) / electronic_mass_stopping_power("water", 100.0)
    assert 0.995 < float(r) < 0.999   # -ln(80/78)/L ~ -0.3 %


@pytest.mark.parametrize("model", ["icru90", "pstar"])
def test_a_water_of_another_i_value_is_not_taken_for_the_models_water(model):
    """A water made through the Material API with the *other* model's I-value (75 eV under "icru90", 78 eV under
    "pstar") was computed as the model's own water: S(100 MeV) jumped by 0.5 % between I = 75.00 and 75.01 eV (R80
    0.44 mm at 100 MeV) and the provenance recorded an I that was not used (metamorphic audit 2026-12-06, F1).  Now
    S is continuous in I (75.00 and 75.01 eV within 0.01 %, the Bethe ratio's own slope being ~0.02 % per 0.1 eV),
    the model's I and no I give the model's table, and so does the library's water (I = 78 eV) under either
    model; the tables record the I used."""
    from mcproton._physics.stopping import WATER_MODELS, water_model_i_value_ev
    from mcproton._physics.tables import build_tables
    from mcproton.materials import Material, get_material

    lib = get_material("water")
    other = {"icru90": 75.0, "pstar": 78.0}[model]
    own = WATER_MODELS[model][1]

    def water(i):
        return Material("my_water", 1.0, dict(lib.mass_fractions), i)

    s = {i: float(electronic_mass_stopping_power(water(i), 100.0, model)) for i in (other, other + 0.01, own, None)}
    table = float(electronic_mass_stopping_power(lib, 100.0, model))
    assert s[other] == pytest.approx(s[other + 0.01], rel=1e-4), s
    assert abs(s[other] / table - 1) > 3e-3, s            # 75 vs 78 eV: 0.5 % at 100 MeV
    assert s[own] == table and s[None] == table
    assert water_model_i_value_ev(water(other), model) == other
    assert water_model_i_value_ev(lib, model) == own == water_model_i_value_ev(water(None), model)
    meta = build_tables([lib, water(other)], water_model=model).meta
    assert meta["i_values_ev"] == {"water": own, "my_water": other}
