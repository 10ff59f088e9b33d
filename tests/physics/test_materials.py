"""Material database, aliases and element table (mcproton/materials.py, data/materials/*.csv)."""
from __future__ import annotations

import csv
import dataclasses
import math
from pathlib import Path

import pytest

import mcproton.materials as mm
from mcproton.materials import ELEMENTS, Material, element, get_material, list_materials

DATA = Path(mm.__file__).resolve().parent / "data" / "materials"

REQUIRED = ["water", "air", "bone_compact_icru", "bone_cortical_icrp", "adipose_tissue_icrp",
            "muscle_skeletal_icrp", "muscle_striated_icru", "pmma", "lung", "brain_icrp", "soft_tissue_icrp",
            "eye_lens_icrp", "skin_icrp", "blood_icrp", "polyethylene", "polystyrene", "graphite",
            "aluminium", "titanium", "a_150", "b_100"]

ALIASES = {"compact_bone": "bone_compact_icru", "cortical_bone": "bone_cortical_icrp",
           "adipose": "adipose_tissue_icrp", "muscle": "muscle_skeletal_icrp", "lung": "lung",
           "brain": "brain_icrp", "pmma": "pmma", "lucite": "pmma", "perspex": "pmma", "PMMA": "pmma",
           "solid_water": "solid_water_gammex457", "Solid Water": "solid_water_gammex457",
           "G4_WATER": "water",
           "A-150": "a_150", "aluminum": "aluminium", "WATER": "water"}


def _raw_rows():
    with open(DATA / "materials.csv", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(ln for ln in fh if ln.strip() and not ln.startswith("#")))


def test_material_dataclass_fields_unchanged():
    assert [f.name for f in dataclasses.fields(Material)] == [
        "name", "density_g_cm3", "mass_fractions", "i_value_ev", "source"]


@pytest.mark.parametrize("name", REQUIRED)
def test_required_materials_present(name):
    m = get_material(name)
    assert m.name == name
    assert m.density_g_cm3 > 0
    assert m.source
    assert m.i_value_ev is None or 10 < m.i_value_ev < 1000


def test_solid_water_present_with_dcpt_density():
    m = get_material("solid_water")
    assert m.density_g_cm3 == pytest.approx(1.032)
    assert set(m.mass_fractions) == {"H", "C", "N", "O", "Cl", "Ca"}
    assert m.i_value_ev is None  # not published -> Bragg additivity


@pytest.mark.parametrize("alias,name", sorted(ALIASES.items()))
def test_aliases_and_case(alias, name):
    assert get_material(alias).name == name


def test_key_values():
    assert get_material("water").i_value_ev == 78.0            # ICRU 90
    assert get_material("lung").density_g_cm3 == pytest.approx(0.26)
    assert get_material("air").density_g_cm3 == pytest.approx(1.20479e-3)
    assert get_material("pmma").i_value_ev == 74.0
    assert get_material("bone_cortical_icrp").i_value_ev == 106.4  # ICRU 49 / PSTAR
    assert get_material("water").mass_fractions["H"] == pytest.approx(0.111894, abs=1e-6)


@pytest.mark.parametrize("name", list_materials())
def test_mass_fractions_sum_to_one(name):
    m = get_material(name)
    assert math.fsum(m.mass_fractions.values()) == pytest.approx(1.0, abs=1e-12)
    assert all(w > 0 for w in m.mass_fractions.values())
    assert all(s in ELEMENTS for s in m.mass_fractions)


def test_raw_file_rows_sum_to_one_and_have_provenance():
    text = (DATA / "materials.csv").read_text(encoding="utf-8")
    assert text.startswith("#") and "NIST" in text and "Geant4" in text
    rows = _raw_rows()
    assert len(rows) == len(list_materials())
    for r in rows:
        s = math.fsum(float(p.split(":")[1]) for p in r["composition"].split(";"))
        assert s == pytest.approx(1.0, abs=1e-5), r["name"]


def test_list_materials_unique_and_complete():
    names = list_materials()
    assert len(names) == len(set(names))
    assert set(REQUIRED) <= set(names)


def test_unknown_material_error_names_closest_match():
    with pytest.raises(KeyError) as exc:
        get_material("bone_compakt_icru")
    msg = str(exc.value)
    assert "did you mean 'bone_compact_icru'" in msg
    assert "water" in msg and "pmma" in msg      # lists the available names
    with pytest.raises(ValueError):               # also a ValueError
        get_material("musle")
    with pytest.raises(KeyError, match="muscle_skeletal_icrp"):
        get_material("musle")


def test_get_material_passes_material_through():
    m = Material("x", 1.0, {"H": 1.0})
    assert get_material(m) is m


def test_element_table():
    assert element("H").Z == 1 and element("H").atomic_mass_g_mol == pytest.approx(1.008, abs=1e-3)
    assert element("o").Z == 8 and element("O").atomic_mass_g_mol == pytest.approx(15.999, abs=1e-3)
    assert element("calcium").symbol == "Ca" and element("Ca").atomic_mass_g_mol == pytest.approx(40.078)
    assert element("Pb").Z == 82
    zs = [e.Z for e in ELEMENTS.values()]
    assert len(zs) == len(set(zs)) and zs == sorted(zs)
    assert all(e.atomic_mass_g_mol > e.Z for e in ELEMENTS.values() if e.Z > 1)
    with pytest.raises(KeyError):
        element("Xx")


def test_element_file_has_provenance():
    text = (DATA / "elements.csv").read_text(encoding="utf-8")
    assert text.startswith("#") and "ICRU" in text and "NIST" in text


def _water_times(f: float) -> dict[str, float]:
    return {k: f * v for k, v in get_material("water").mass_fractions.items()}


@pytest.mark.parametrize("factor, hint", [(100.0, "they sum to 100: fractions in percent? divide them by 100"),
                                          (0.97, "they sum to 0.97: an element left out?"),
                                          (3.0, "they sum to 3: give each element's share of the mass")])
def test_a_material_whose_fractions_do_not_sum_to_one_is_refused(factor, hint):
    """Audit 19 (review) F1: water given in percent was accepted; stopping and scattering normalise the fractions,
    but the nuclear cross sections and nuclear stopping used them as given (x 100: a Bragg "peak" at 5 mm instead of
    77 mm; a composition summing to 0.97 had nuclear cross sections 3 % low).  The database's rule now holds for a
    Material made by hand: the message gives the sum and the fix."""
    with pytest.raises(ValueError, match=r"^material 'w': mass fractions must be >= 0 and sum to 1 \(within 0\.0001"
                                         r"\); " + hint.replace("?", r"\?")):
        Material("w", 1.0, _water_times(factor))


@pytest.mark.parametrize("fractions, match", [
    ({"H": -0.1, "O": 1.1}, "the mass fraction of H must be a finite number >= 0; got -0.1"),
    ({"H": math.nan, "O": 1.0}, "the mass fraction of H must be a finite number >= 0; got nan"),
    ({"H": "0.11", "O": 0.89}, "the mass fraction of H must be a finite number >= 0; got '0.11'"),
    ({"Xx": 1.0}, "unknown element 'Xx'"),
    ({"H": 0.5, "hydrogen": 0.5}, "element H listed twice")])
def test_a_material_with_a_bad_fraction_or_element_is_refused(fractions, match):
    with pytest.raises(ValueError, match=f"^material 'm': {match}"):
        Material("m", 1.0, fractions)


def test_a_material_within_the_tolerance_is_normalised_for_every_physics_path():
    """A sum within 1e-4 of 1 (fractions rounded as printed) is divided by its sum, so the nuclear cross sections and
    nuclear stopping (which use the fractions as given) agree with stopping and scattering (which normalise)."""
    import numpy as np

    from mcproton._physics import nuclear, stopping

    water = get_material("water")
    near = Material("w", 1.0, _water_times(1.00008))
    assert math.fsum(near.mass_fractions.values()) == pytest.approx(1.0, abs=1e-15)
    assert near.mass_fractions == pytest.approx(dict(water.mass_fractions), rel=1e-15)
    e = np.array([20.0, 100.0, 200.0])
    for f in (nuclear.pp_elastic_mass_cross_section, nuclear.elastic_mass_cross_section,
              stopping.nuclear_mass_stopping_power):
        np.testing.assert_allclose(f(near, e), f(water, e), rtol=1e-14, atol=0)
    np.testing.assert_allclose(nuclear.nonelastic_tables(near, e)["sigma_cm2_g"],
                               nuclear.nonelastic_tables(water, e)["sigma_cm2_g"], rtol=1e-14, atol=0)


def test_a_material_keeps_fractions_that_sum_to_one_bit_for_bit():
    """The database's (and the file readers') fractions are divided by their sum already: Material keeps them as
    given (the same object), so no dose moves; symbols and element names become symbols."""
    fr = {"H": 0.111894, "O": 0.888106}
    assert Material("w", 1.0, fr).mass_fractions is fr
    assert dict(Material("w", 1.0, {"h": 0.111894, "oxygen": 0.888106}).mass_fractions) == fr
    assert Material("placeholder", 1.0).mass_fractions == {}    # a material known by name only
    for name in list_materials():
        m = get_material(name)
        assert dataclasses.replace(m).mass_fractions is m.mass_fractions


def test_a_database_material_changed_in_place_changes_no_later_call():
    """get_material hands out the database's own Material, whose mass fractions were a plain dict: changing them in
    place changed water for every later call in the process (the long-lived-process audit, F1, the same pattern).
    They are read-only now, and still pickle and compare as a dict."""
    import copy
    import pickle

    w = get_material("water")
    h = w.mass_fractions["H"]
    for change in (lambda f: f.__setitem__("H", 0.5), lambda f: f.update(H=0.5), lambda f: f.pop("H")):
        with pytest.raises(TypeError, match="read-only"):
            change(w.mass_fractions)
    assert get_material("water").mass_fractions["H"] == h and get_material("water") is get_material("G4_WATER")
    for back in (pickle.loads(pickle.dumps(w)), copy.deepcopy(w)):
        assert back == w and dict(back.mass_fractions) == dict(w.mass_fractions)


#: the library's materials before the implant metals were added (2026-12-06), in file order: they keep their place
#: (list_materials, what a run's provenance and the material index of a named phantom follow) and their values
BEFORE_IMPLANT_METALS = [
    "water", "air", "bone_compact_icru", "bone_cortical_icrp", "bone_cortical_icrp_g4", "adipose_tissue_icrp",
    "adipose_tissue_icrp_g4", "muscle_skeletal_icrp", "muscle_skeletal_icrp_g4", "muscle_striated_icru", "pmma", "lung",
    "lung_tissue_icrp", "brain_icrp", "soft_tissue_icrp", "eye_lens_icrp", "skin_icrp", "blood_icrp", "polyethylene",
    "polystyrene", "polycarbonate", "graphite", "aluminium", "titanium", "a_150", "b_100", "solid_water_gammex457"]

#: name -> (density g/cm3, I-value the source column quotes (eV), names an RT Struct ROI may carry for it)
IMPLANT_METALS = {
    "stainless_steel_316l": (8.0, 284.4, ["steel", "Steel", "316L", "stainless steel", "SS316L"]),
    "cocrmo": (8.4, 291.0, ["CoCr", "CoCrMo", "Co-28Cr-6Mo", "cobalt chromium"]),
    "ti6al4v": (4.43, 227.9, ["Ti-6Al-4V", "Ti6Al4V", "Ti64", "titanium alloy"]),
    "gold": (19.32, 790.0, ["gold", "Gold", "G4_Au"]),
    "platinum": (21.45, 790.0, ["platinum", "G4_Pt"]),
    "tantalum": (16.654, 718.0, ["tantalum", "G4_Ta"]),
}


def test_the_implant_metals_came_after_the_materials_before_them():
    """Metal audit 2026-12-06, F3: the library had no implant metal but titanium, so "Steel screw" or "Gold fiducial"
    without a composition became water at 7.9 or 19.3 g/cm3 (SPR 43-100 % too high).  The six metals are appended: the
    materials before keep their order."""
    names = list_materials()
    assert names[:len(BEFORE_IMPLANT_METALS)] == BEFORE_IMPLANT_METALS
    assert names[len(BEFORE_IMPLANT_METALS):] == list(IMPLANT_METALS)


@pytest.mark.parametrize("name", sorted(IMPLANT_METALS))
def test_an_implant_metal_has_its_cited_density_i_value_and_names(name):
    """Density and composition as cited (PNNL-15870 Rev. 1 for 316L and Ti-6Al-4V, ASTM F75 for CoCrMo, NIST for the
    pure metals); the alloys' I-value is left to Bragg additivity of the pure metals' I-values (stopping.py's rule for
    an alloy) and is the one their source column quotes; the pure metals carry NIST's."""
    from mcproton._physics.stopping import is_alloy, mean_excitation_energy_ev

    rho, i_ev, aliases = IMPLANT_METALS[name]
    m = get_material(name)
    assert m.density_g_cm3 == rho
    alloy = len(m.mass_fractions) > 1
    assert (m.i_value_ev is None) == alloy and (not alloy or is_alloy(m))
    for s in ("icru37", "elemental"):
        assert mean_excitation_energy_ev(m, s) == pytest.approx(i_ev, abs=0.05)
    if alloy:
        assert f"I = {i_ev:.1f} eV by Bragg additivity" in m.source, m.source
    for alias in aliases:
        assert get_material(alias) is m, alias


def test_the_alloys_compositions_are_the_cited_ones():
    pnnl_316l = {"C": 0.0003, "Si": 0.01, "P": 0.00045, "S": 0.0003, "Cr": 0.17, "Mn": 0.02, "Fe": 0.65395, "Ni": 0.12,
                 "Mo": 0.025}
    assert dict(get_material("steel").mass_fractions) == pytest.approx(pnnl_316l, abs=1e-12)
    ti64 = get_material("ti6al4v").mass_fractions
    assert ti64["Ti"] == pytest.approx(0.89362, abs=1e-9) and ti64["Al"] == pytest.approx(0.06125, abs=1e-9)
    assert ti64["V"] == pytest.approx(0.04, abs=1e-9)
    assert dict(get_material("cocrmo").mass_fractions) == pytest.approx({"Co": 0.66, "Cr": 0.28, "Mo": 0.06}, abs=1e-12)
