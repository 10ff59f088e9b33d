"""McNamara variable-RBE model (mcproton/rbe.py) against hand calculations and its limits."""
from __future__ import annotations

import math

import numpy as np
import pytest

from mcproton.rbe import mcnamara_rbe, mcnamara_rbe_weighted_dose


def hand(d, let, ab):
    rmax = 0.99064 + 0.35605 / ab * let
    rmin = 1.1012 - 0.0038703 * math.sqrt(ab) * let
    return (math.sqrt(ab * ab + 4 * d * ab * rmax + 4 * d * d * rmin * rmin) - ab) / (2 * d)


@pytest.mark.parametrize("d,let,ab", [(2.0, 2.0, 10.0), (1.8, 9.7, 2.0), (0.2, 4.0, 3.0), (10.0, 1.0, 2.0)])
def test_matches_the_published_formula(d, let, ab):
    assert mcnamara_rbe(d, let, ab) == pytest.approx(hand(d, let, ab), rel=1e-12)


def test_values_and_limits():
    # 2 Gy, LETd 2 keV/um, alpha/beta 10 Gy: RBE 1.066 (close to the clinical 1.1)
    assert float(mcnamara_rbe(2.0, 2.0, 10.0)) == pytest.approx(1.0664, abs=5e-4)
    # zero dose: the low-dose limit RBE_max; zero-dose voxels give zero RBE-weighted dose
    assert float(mcnamara_rbe(0.0, 5.0, 2.0)) == pytest.approx(0.99064 + 0.35605 / 2.0 * 5.0)
    assert float(mcnamara_rbe_weighted_dose(0.0, 5.0, 2.0)) == 0.0
    # large dose: tends to RBE_min (given as a course of 1000 fractions of 10 Gy: the RBE of 10 Gy)
    assert float(mcnamara_rbe(170.0, 3.0, 2.0, fractions=17)) == pytest.approx(float(mcnamara_rbe(10.0, 3.0, 2.0)))
    with pytest.warns(Warning, match="above 15 Gy"):
        big = float(mcnamara_rbe(1e4, 3.0, 2.0))
    assert big == pytest.approx(1.1012 - 0.0038703 * math.sqrt(2.0) * 3.0, rel=1e-3)
    # RBE rises with LETd and falls with alpha/beta
    lets = np.linspace(0.5, 15, 30)
    r = mcnamara_rbe(np.full_like(lets, 1.8), lets, 2.0)
    assert np.all(np.diff(r) > 0)
    assert float(mcnamara_rbe(1.8, 8.0, 2.0)) > float(mcnamara_rbe(1.8, 8.0, 10.0))


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="alpha/beta"):
        mcnamara_rbe(1.0, 2.0, 0.0)
    with pytest.raises(ValueError, match="dose"):
        mcnamara_rbe(-1.0, 2.0, 2.0)
    with pytest.raises(ValueError, match="LETd"):
        mcnamara_rbe(1.0, np.nan, 2.0)


def test_a_dose_per_primary_gives_a_warning_and_a_dose_per_fraction_none():
    """Audit M5: a per-primary dose (1e-10 - 1e-8 Gy) is below the model's 1e-6 Gy everywhere, where it gives RBE_max:
    the result looks like an RBE-weighted dose but is RBE_max x D; now a McprotonRuntimeWarning says so."""
    import warnings

    from mcproton._io.errors import McprotonRuntimeWarning

    per_primary = np.array([0.0, 2e-10, 4e-9])
    for f in (mcnamara_rbe, mcnamara_rbe_weighted_dose):
        with pytest.warns(McprotonRuntimeWarning, match=r"largest dose given is 4e-09 Gy.*dose per primary proton") \
                as rec:
            f(per_primary, np.full(3, 5.0), 2.0)
        assert rec[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error", McprotonRuntimeWarning)
        mcnamara_rbe_weighted_dose(np.array([0.0, 1e-8, 2.0]), np.full(3, 5.0), 2.0)   # Gy per fraction
        mcnamara_rbe_weighted_dose(np.zeros(3), np.zeros(3), 2.0)                     # no dose at all


def _result(fractions, dose=None, rho=1.0, s_wm=1.0, let=4.0):
    """A run's result as mcnamara_of_result reads it: its dose (Gy, of ``fractions`` of a plan's fractions), dose
    to water (``s_wm`` x the dose), LETd in the medium and densities."""
    from types import SimpleNamespace

    d = np.asarray([0.0, 10.0, 30.0, 34.0] if dose is None else dose, float)
    beam = {"fractions": fractions, "fractions_planned": 17} if fractions else {}
    return SimpleNamespace(dose_gy_zyx=d, dose_to_water_gy_zyx=s_wm * d, let_d_kev_um_zyx=np.full(d.shape, let),
                           geometry=SimpleNamespace(density_g_cm3_zyx=np.full(d.shape, rho)),
                           provenance={"beam": beam}, normalisation="Gy")


def test_a_course_dose_is_taken_per_fraction():
    """rbe audit 2026-12-06 F3: a 17-fraction course dose (plan.all_fractions = true) passed as it is gave the RBE of
    a dose 17 x larger (-13 to -37 %) without a word.  mcnamara_of_result reads the fractions from the result;
    fractions= divides by them; a dose per fraction above 15 Gy is warned about."""
    import warnings

    from mcproton._io.errors import McprotonRuntimeWarning
    from mcproton.rbe import mcnamara_of_result

    course = _result(17)
    with warnings.catch_warnings():
        warnings.simplefilter("error", McprotonRuntimeWarning)
        m = mcnamara_of_result(course, 2.0)
        per_fx = mcnamara_rbe(course.dose_gy_zyx / 17, 4.0, 2.0)   # 2 Gy per fraction at the maximum
        assert m.fractions == 17 and np.allclose(m.rbe_zyx, per_fx, rtol=1e-12)
        assert np.allclose(m.rbe_weighted_dose_gy_zyx, per_fx * course.dose_gy_zyx)
        assert np.allclose(mcnamara_rbe_weighted_dose(course.dose_gy_zyx, 4.0, 2.0, fractions=17),
                           m.rbe_weighted_dose_gy_zyx)
    with pytest.warns(McprotonRuntimeWarning, match=r"largest dose given is 34 Gy, above 15 Gy.*fractions="):
        course_as_one = mcnamara_rbe(course.dose_gy_zyx, 4.0, 2.0)
    assert course_as_one[-1] < 0.9 * per_fx[-1]   # 13 % too low
    with pytest.warns(McprotonRuntimeWarning, match="above 15 Gy"):
        mcnamara_rbe_weighted_dose(course.dose_gy_zyx, 4.0, 2.0)
    with pytest.raises(ValueError, match="fractions"):
        mcnamara_rbe(1.0, 2.0, 2.0, fractions=0)
    with pytest.raises(ValueError, match="Gy per primary"):
        mcnamara_of_result(_result(1).__class__(**{**vars(_result(1)), "normalisation": "Gy per primary"}), 2.0)


def test_alpha_beta_may_be_a_map():
    """rbe audit F4: alpha/beta per voxel (10 in the target, 2 elsewhere) in one call, each value checked."""
    d, let = np.array([1.8, 1.8, 0.5]), np.array([3.0, 9.0, 9.0])
    ab = np.array([10.0, 2.0, 2.0])
    r = mcnamara_rbe(d, let, ab)
    assert r == pytest.approx([hand(1.8, 3.0, 10.0), hand(1.8, 9.0, 2.0), hand(0.5, 9.0, 2.0)], rel=1e-12)
    assert mcnamara_rbe_weighted_dose(np.ones((2, 3)), np.full((2, 3), 4.0), np.array([[2.0], [10.0]]))[1, 0] == \
        pytest.approx(hand(1.0, 4.0, 10.0))
    with pytest.raises(ValueError, match="alpha/beta must be a positive number of Gy everywhere; 1 value"):
        mcnamara_rbe(d, let, np.array([10.0, 0.0, 2.0]))
    with pytest.raises(ValueError, match="alpha/beta.*broadcastable"):
        mcnamara_rbe(d, let, np.array([10.0, 2.0]))


def test_the_letd_in_water_of_bone_and_lung():
    """rbe audit F2: mcproton scores LETd in the voxel medium; in cortical bone (1.92 g/cm3, mass stopping power 0.89
    x water's) it is 1.71 x the LETd in water of the same protons, and the McNamara model was fitted to LETd in
    water-like medium.  let_d_to_water divides by rho / s_w,m (s_w,m = dose to water / dose, the run's own ratio);
    mcnamara_of_result uses it by default, and warns with let="medium" where dense or light voxels carry dose."""
    from mcproton._io.errors import McprotonRuntimeWarning
    from mcproton.rbe import let_d_to_water, mcnamara_of_result

    assert float(let_d_to_water(1.767, 1.0, 1 / 0.89, 1.92)) == pytest.approx(1.767 * 1 / 0.89 / 1.92)
    assert float(let_d_to_water(3.0, 0.0, 0.0, 1.0)) == 3.0   # no dose: s_w,m taken as 1
    bone = _result(1, dose=[0.0, 1.8, 2.0], rho=1.92, s_wm=1 / 0.89, let=1.767 * 2)
    m = mcnamara_of_result(bone, 2.0)
    assert m.let == "water" and np.allclose(m.let_d_kev_um_zyx[1:], 2 * 1.767 / 0.89 / 1.92)
    with pytest.warns(McprotonRuntimeWarning, match=r"2 voxel\(s\).*density outside 0.8-1.2 g/cm3.*let=\"water\""):
        med = mcnamara_of_result(bone, 2.0, let="medium")
    assert np.all(med.rbe_zyx[1:] > m.rbe_zyx[1:])


def test_the_demo_takes_the_letd_in_water_as_the_library_does():
    """Audit 29 bio, F2: the demo's variable-RBE figures used the LETd in the medium, 5.5 % above the LETd in water in
    its brain (1.04-1.05 g/cm3, s_w,m ~1.00), the model's and mcnamara_of_result's: the brainstem's D2 came out 1.2 %
    higher than the library gives for the same run.  Now the demo's figures are mcnamara_of_result's.  s_w,m = 1.01
    (not 1.0): with the dose to water equal to the dose, a demo that swapped them (s_w,m inverted in the LETd in
    water) or weighted the dose to water passed this test (review b of audit 29).  Figures of another meaning in the
    demo's summary raise its schema_version (README "Set-up"): 2 from this change."""
    from mcproton.demo import DEMO_SUMMARY_SCHEMA, variable_rbe_summary
    from mcproton.dvh import dose_at_volume
    from mcproton.rbe import mcnamara_of_result

    assert DEMO_SUMMARY_SCHEMA >= 2, "variable_rbe_mcnamara changed meaning (the LETd in water): raise the schema"
    res = _result(1, dose=[0.2, 1.0, 1.6, 1.8, 2.1], rho=1.05, s_wm=1.01, let=6.0)
    ctv = np.array([False, False, True, True, True])
    bs = np.array([True, True, True, False, False])
    got = variable_rbe_summary(res, ctv, bs)
    assert got["let"].startswith("LETd in water")
    want_t = mcnamara_of_result(res, 10.0)
    want_b = mcnamara_of_result(res, 2.0)
    assert got["target_mean_gy_rbe"] == pytest.approx(want_t.rbe_weighted_dose_gy_zyx[ctv].mean(), rel=1e-12)
    assert got["brainstem_d2_gy_rbe"] == pytest.approx(
        dose_at_volume(want_b.rbe_weighted_dose_gy_zyx, bs, 2), rel=1e-12)
    # the LETd in the medium (6.0 keV/um against 5.71 in water) would give a brainstem D2 about 1 % higher
    medium = mcnamara_of_result(res, 2.0, let="medium")
    assert dose_at_volume(medium.rbe_weighted_dose_gy_zyx, bs, 2) > 1.005 * got["brainstem_d2_gy_rbe"]
