"""The check's likely causes of a disagreement (``_diagnose``): a ratio near a power of ten is named as a unit
slip (the beam model's protons/MU or the plan's meterset unit), and a 5 % scale is not."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from mcproton._check.api import _diagnose


def _case(scale: float):
    z, y, x = np.meshgrid(np.arange(20.0), np.arange(20.0), np.arange(20.0), indexing="ij")
    ref = np.exp(-((x - 10) ** 2 + (y - 10) ** 2 + (z - 10) ** 2) / 20.0)
    mc = SimpleNamespace(total_gy_zyx=scale * ref, beams_gy_zyx={1: scale * ref})
    axes = [np.arange(20.0)] * 3
    return _diagnose(ref, mc, np.ones_like(ref, bool), axes, SimpleNamespace(fractions=1), {})


@pytest.mark.parametrize("scale, decade", [(1000.0, 3), (0.01, -2), (9.3, 1)])
def test_a_power_of_ten_is_named_as_a_unit_slip(scale, decade):
    notes = _case(scale)
    assert any(f"close to 10^{decade}: a unit slip" in n and "protons per MU" in n for n in notes), notes


@pytest.mark.parametrize("scale", [1.05, 3.0, 0.5])
def test_other_ratios_are_not(scale):
    notes = _case(scale)
    assert any("x the TPS dose" in n for n in notes) and not any("unit slip" in n for n in notes)


def _two_fields(shift_mm: float = 0.0):
    """A 40 cm long target of two fields along z (a CSI-like plan: 4 mm voxels) overlapping by 2 cm, so the plan
    dose's maximum (1.97 x a field's plateau) lies at their junction; ``shift_mm``: field 2 moved along y (its
    beam direction here)."""
    axes, field = _fields_along_z()
    return axes, {1: field(20, 220), 2: field(200, 380)}, field(200, 380, shift_mm)


def _fields_along_z():
    """The axes (z, y, x: 400 x 80 x 80 mm, 4 mm voxels) and field(z0, z1, shift_mm): a box field over z0..z1 mm
    (x 20..60 mm, y 20..60 mm, erf edges), moved along y (its beam direction here) by ``shift_mm``."""
    from scipy.special import erf

    z, y, x = np.arange(0, 400.0, 4), np.arange(0, 80.0, 4), np.arange(0, 80.0, 4)
    Z, Y, X = np.meshgrid(z, y, x, indexing="ij")

    def field(z0, z1, sh=0.0):
        def e(a, b):
            return 0.5 * erf((a - b) / 6)
        return (e(Z, z0) - e(Z, z1)) * (e(X, 20) - e(X, 60)) * (e(Y + sh, 20) - e(Y + sh, 60))

    return (z, y, x), field


def _mc(beams):
    meta = {b: {"beam_direction": (0.0, 1.0, 0.0)} for b in beams}
    return SimpleNamespace(total_gy_zyx=sum(beams.values()), beams_gy_zyx=beams, beam_meta=meta)


def test_a_change_of_one_fields_weight_is_not_called_a_shift():
    """The CSI audit of 2026-12-05 (F2): the centroid of the plan dose above 50 % of its single maximum moved by
    5-18 mm along a 50 cm target with the noise or one field's weight, and was called "a shift or a range
    difference".  With per-beam TPS doses the centroid is compared per beam, each dose above 50 % of its own 99.9th
    percentile: field 2 at 1.05 x moves none (the plan-level centroid moved 63 mm here); field 2 moved by 3 mm is named,
    split along the beam and across it; nothing where the MC's uncertainty level failed."""
    from mcproton._check.api import _centroid_notes

    axes, tps, shifted = _two_fields(3.0)
    body = np.ones(tps[1].shape, bool)
    plan = sum(tps.values())
    weighted = _mc({1: tps[1], 2: 1.05 * tps[2]})
    assert any("high-dose centroid" in n for n in _centroid_notes(plan, weighted, body, axes, {}))   # the old way
    assert _centroid_notes(plan, weighted, body, axes, tps) == []
    notes = _centroid_notes(plan, _mc({1: tps[1], 2: shifted}), body, axes, tps)
    assert len(notes) == 1 and notes[0].startswith("beam 2: the high-dose centroid"), notes
    assert "-2.7 mm along the beam and 0.0 mm across it" in notes[0], notes
    args = (plan, _mc({1: tps[1], 2: shifted}), body, axes, SimpleNamespace(fractions=1), tps)
    assert any("beam 2: the high-dose centroid" in n for n in _diagnose(*args))
    assert not any("centroid" in n for n in _diagnose(*args, noise_ok=False))


def test_a_hot_voxel_of_the_tps_plan_dose_does_not_move_its_centroid():
    """Without per-beam doses the plan dose's centroid is taken above 50 % of its 99.9th percentile: one TPS voxel at 6
    x the dose (CSI audit F3) made the threshold 3 x the dose and the centroid that voxel's (a 'shift' of 70-180 mm).
    The 3 mm shift of a single field is still named (tests/check/test_check.py: test_dose_shifted_by_3mm_fails)."""
    from mcproton._check.api import _centroid_notes

    axes, tps, shifted = _two_fields(3.0)
    body = np.ones(tps[1].shape, bool)
    mc = _mc({1: tps[1]})
    hot = tps[1].copy()
    hot[10, 10, 10] = 6.0 * hot.max()
    assert _centroid_notes(hot, mc, body, axes, {}) == []
    one = _centroid_notes(tps[2], _mc({2: shifted}), body, axes, {})
    assert len(one) == 1 and "0.0, -2.7, +0.0) mm (x, y, z)" in one[0], one


def test_one_beams_dose_level_is_named_before_any_centroid_note():
    """A 5 % output error on one field of a multi-field plan (CSI audit F1): the beam's MC/TPS dose ratio
    (compare.beam_dose_ratio) names it, with its likely causes, before any centroid note; the other beam is not
    named.  Where the beam's distal edge differs too, the range is named as the first suspect."""
    from mcproton._check.compare import beam_dose_ratio

    axes, tps, _ = _two_fields()
    body = np.ones(tps[1].shape, bool)
    mc = _mc({1: np.roll(tps[1], 1, axis=1), 2: tps[2] / 1.05})   # beam 1 shifted by 4 mm too: a centroid note
    ratios = {b: beam_dose_ratio(tps[b], mc.beams_gy_zyx[b], body) for b in tps}
    assert ratios[2]["ratio"] == pytest.approx(1 / 1.05, rel=1e-9) and abs(ratios[1]["ratio"] - 1) < 0.01
    notes = _diagnose(sum(tps.values()), mc, body, axes, SimpleNamespace(fractions=1), tps, {}, beam_dose=ratios)
    first = [k for k, n in enumerate(notes) if n.startswith("beam 2's dose is 4.8 % below the TPS's (MC/TPS 0.9524")]
    cent = [k for k, n in enumerate(notes) if "centroid" in n]
    assert first and cent and first[0] < min(cent), notes
    assert "MU/output" in notes[first[0]] and "calibration" in notes[first[0]]
    assert not any(n.startswith("beam 1's dose") for n in notes), notes
    ranges = {2: {"evaluable": True, "median_mm": -2.4, "noise_matched_median_mm": -2.5}}
    notes = _diagnose(sum(tps.values()), mc, body, axes, SimpleNamespace(fractions=1), tps, ranges, beam_dose=ratios)
    assert any(n.startswith("beam 2's dose") and "distal edge differs by -2.5 mm too" in n for n in notes), notes


def _sobp(seed: int = 5):
    """A box-shaped spread-out Bragg peak along z (2 mm voxels, 1.8 Gy physical, 3 mm penumbrae) and a LETd rising
    with depth through it, 1.5 keV/um at its entrance to ~5 at its distal end and more beyond, as in a proton field;
    the MC's dose 1.1 x physical with 2 % noise per voxel, its LETd with 3 % (seeded)."""
    from scipy.special import erf

    z, y, x = np.arange(0, 100.0, 2), np.arange(0, 60.0, 2), np.arange(0, 60.0, 2)
    Z, Y, X = np.meshgrid(z, y, x, indexing="ij")

    def e(a, lo, hi):
        return 0.5 * (erf((a - lo) / 3) - erf((a - hi) / 3))

    phys = 1.8 * e(Z, 20, 70) * e(Y, 10, 50) * e(X, 10, 50)
    let = 1.5 + 0.07 * np.clip(Z - 20, 0, None) + 0.3 * np.clip(Z - 65, 0, None)
    rng = np.random.default_rng(seed)
    mc_dose = 1.1 * phys * (1 + 0.02 * rng.standard_normal(phys.shape))
    let_mc = let * (1 + 0.03 * rng.standard_normal(phys.shape))
    return (z, y, x), phys, let, SimpleNamespace(total_gy_zyx=mc_dose, beams_gy_zyx={1: mc_dose},
                                                  let_d_kev_um_zyx=let_mc, provenance={"rbe": 1.1})


@pytest.mark.parametrize("alpha_beta", [2.0, 3.0])
def test_a_variable_rbe_effective_dose_is_named(alpha_beta):
    """rbe audit 2026-12-06 F1: a DoseType EFFECTIVE TPS dose weighted with a variable RBE (McNamara, per fraction)
    was compared as 1.1 x physical and its differences blamed on a shift, range and noise, with no word of the RBE.
    Its TPS/MC ratio rises with the MC's LETd in the flat high-dose region (here +4.0 % per keV/um at alpha/beta 2,
    +3.6 % at 3; the limit is 2 %; at alpha/beta 10, +1.9 %, it is not named): named, with --dose-type physical;
    not for a PHYSICAL dose."""
    from mcproton.rbe import mcnamara_rbe_weighted_dose

    axes, phys, let, mc = _sobp()
    tps = mcnamara_rbe_weighted_dose(phys, let, alpha_beta)
    body = np.ones(phys.shape, bool)
    notes = _diagnose(tps, mc, body, axes, SimpleNamespace(fractions=1, dose_type="EFFECTIVE"), {})
    hit = [n for n in notes if "variable RBE" in n]
    assert len(hit) == 1 and "--dose-type physical" in hit[0] and "per keV/um" in hit[0], notes
    notes = _diagnose(tps, mc, body, axes, SimpleNamespace(fractions=1, dose_type="PHYSICAL"), {})
    assert not any("variable RBE" in n for n in notes)


@pytest.mark.parametrize("shift", [0, 1, -1, 2, -2])
def test_a_constant_rbe_dose_is_not_called_variable_rbe_even_shifted(shift):
    """1.1 x physical against the noisy MC (2 % dose, 3 % LETd noise per voxel, five seeds), and shifted by 2 or
    4 mm along the beam (the LETd rises to the distal edge, so a shift alone raises the ratio with LETd there; the
    test's flat high-dose region leaves that out): no variable-RBE note."""
    from mcproton._check.api import let_ratio_slope

    for seed in range(5):
        axes, phys, let, mc = _sobp(seed)
        tps = np.roll(1.1 * phys, shift, axis=0)
        body = np.ones(phys.shape, bool)
        notes = _diagnose(tps, mc, body, axes, SimpleNamespace(fractions=1, dose_type="EFFECTIVE"), {})
        fit = let_ratio_slope(tps, mc.total_gy_zyx, mc.let_d_kev_um_zyx, body, axes)
        assert not any("variable RBE" in n for n in notes), (seed, fit)
        assert abs(fit["slope_pct_per_kev_um"]) < 1.0, fit


def test_a_missing_beam_keeps_the_centroid_notes_of_the_beams_with_their_own_tps_dose():
    """Check review 2026-12-06, finding 9: in a mixed export (per-beam TPS doses for beams 1 and 2, beam 3 only in
    the plan) with beam 3 missing from the TPS dose, every centroid note was dropped, so beam 2 moved by 3 mm in
    the MC was not named.  A missing beam moves the plan dose's centroid and its field regions', not a per-beam
    dose's: those notes stay; the plan dose's is still left out."""
    axes, field = _fields_along_z()
    tps = {1: field(20, 120), 2: field(150, 250)}
    mc = _mc({1: tps[1], 2: field(150, 250, 3.0), 3: field(280, 380)})
    body = np.ones(tps[1].shape, bool)
    notes = _diagnose(tps[1] + tps[2], mc, body, axes, SimpleNamespace(fractions=1), tps)
    assert any("beam 3 seems to be missing from the TPS dose" in n for n in notes), notes
    assert any(n.startswith("beam 2: the high-dose centroid") for n in notes), notes
    assert not any("beam 1: the high-dose centroid" in n or n.startswith("the high-dose centroid") for n in notes)


def test_a_per_beam_tps_dose_along_another_axis_is_named_and_only_then():
    """Audit 30 realdata F1 (the real case: tests/check/test_check_aptg_beam_doses.py, APTG plan03): a TPS beam dose
    whose depth runs along +y while the plan's beam runs along +x is named as such, and the beam's MU/output cause
    is left out.  Not named: the same dose, one scaled by 0.7 (an MU error), one moved 20 mm along the beam (a
    range error), one laterally moved 8 mm, nor a beam 10 degrees off the grid axes.  The beam reversed (-x) is named
    as entering from the other side (audit 31 direction R3; test_a_reversed_beam_dose_is_named_not_a_range_error)."""
    from scipy.special import erf

    from mcproton._check.api import _diagnose, _direction_notes
    from mcproton._check.compare import beam_dose_ratio

    c = np.arange(0, 160.0, 4)   # z, y, x: 40 voxels of 4 mm, isocentre (80, 80, 80)
    Z, Y, X = np.meshgrid(c, c, c, indexing="ij")

    def e(a, b):
        return 0.5 * erf((a - b) / 5)

    def beam(depth, lat1, lat2):   # entrance plateau 0.5 to 60 mm, SOBP 60-110 mm, lateral 50-110 mm
        return (0.5 + 0.5 * (e(depth, 60) + 0.5)) * (0.5 - e(depth, 110)) * (e(lat1, 50) - e(lat1, 110)) \
            * (e(lat2, 50) - e(lat2, 110))

    mc_dose = beam(X, Y, Z)
    body = np.ones(mc_dose.shape, bool)
    axes = (c, c, c)

    def mc(direction=(1.0, 0.0, 0.0)):
        meta = {1: {"beam_direction": direction, "isocenter_mm": (80.0, 80.0, 80.0), "gantry_angle_deg": 270.0,
                    "couch_angle_deg": 0.0, "patient_position": "HFS"}}
        return SimpleNamespace(total_gy_zyx=mc_dose, beams_gy_zyx={1: mc_dose}, beam_meta=meta)

    def named(tps, direction=(1.0, 0.0, 0.0)):
        return _direction_notes(mc(direction), body, axes, {1: tps})

    (note,), turned = named(beam(Y, X, Z))
    assert turned == {1} and note.startswith("beam 1: the TPS dose of this beam runs along +y, the plan's beam "
                                             "along +x (gantry 270, couch 0, HFS)"), note
    for tps in (mc_dose, 0.7 * mc_dose, beam(X - 20, Y, Z), beam(X, Y - 8, Z)):
        assert named(tps) == ([], set())
    (note,), turned = named(beam(160 - X, Y, Z))
    assert turned == {1} and note.startswith("beam 1: the TPS dose of this beam enters from the other side"), note
    tilted = (float(np.cos(np.radians(10))), float(np.sin(np.radians(10))), 0.0)
    assert named(beam(Y, X, Z), tilted) == ([], set())
    # in _diagnose: the direction first, no MU/output cause for that beam
    tps = 0.3 * beam(Y, X, Z)
    ratios = {1: beam_dose_ratio(tps, mc_dose, body)}
    causes = _diagnose(tps, mc(), body, axes, SimpleNamespace(fractions=1), {1: tps}, {}, beam_dose=ratios)
    assert any(n.startswith("beam 1: the TPS dose of this beam runs along +y") for n in causes), causes
    assert not any(n.startswith("beam 1's dose is") for n in causes), causes
    causes = _diagnose(0.7 * mc_dose, mc(), body, axes, SimpleNamespace(fractions=1), {1: 0.7 * mc_dose}, {},
                       beam_dose={1: beam_dose_ratio(0.7 * mc_dose, mc_dose, body)})
    assert any(n.startswith("beam 1's dose is") for n in causes) and not any("runs along" in n for n in causes)


def test_a_range_error_of_a_target_off_the_isocentre_is_not_called_another_axis():
    """Review R-b R1: a correctly oriented beam (+x) whose target lies 20 mm off the isocentre laterally (-z) and whose
    MC SOBP stops 20 mm short (a range error: a CT calibration, a wrong material) moved the MC's depth profile onto
    the TPS's lateral one: "runs along -z" was named (98 % against 64 %) and the range and dose-level notes of that
    beam were left out.  The beam's own axis is compared allowing a shift along the beam (a range error moves the
    depth dose, it does not turn it); the turned dose is still named."""
    from scipy.special import erf

    from mcproton._check.api import _direction_notes

    c = np.arange(0, 200.0, 4)
    Z, Y, X = np.meshgrid(c, c, c, indexing="ij")

    def e(a, b):
        return 0.5 * erf((a - b) / 5)

    def beam(depth, lat1, lat2, shift=0.0):   # body surface at x = 60 mm; SOBP 80-120 mm; lateral 100-140 mm
        return (0.6 + 0.4 * (e(depth, 80 + shift) + 0.5)) * (e(depth, 60) + 0.5) * (0.5 - e(depth, 120 + shift)) \
            * (e(lat1, 100) - e(lat1, 140)) * (e(lat2, 100) - e(lat2, 140))

    meta = {1: {"beam_direction": (1.0, 0.0, 0.0), "isocenter_mm": (100.0, 100.0, 100.0), "gantry_angle_deg": 270.0,
                "couch_angle_deg": 0.0, "patient_position": "HFS"}}
    body = X >= 58
    for shift in (-20.0, -25.0, 15.0):
        mcd = beam(X, Y, Z, shift)
        mc = SimpleNamespace(total_gy_zyx=mcd, beams_gy_zyx={1: mcd}, beam_meta=meta)
        assert _direction_notes(mc, body, (c, c, c), {1: beam(X, Y, Z)}) == ([], set()), shift

    def cube(depth, lat1, lat2, shift=0.0):   # surface at x = 60 mm, SOBP 80-140 mm, lateral 80-140 mm: a 60 mm cube
        return (0.6 + 0.4 * (e(depth, 80 + shift) + 0.5)) * (e(depth, 60) + 0.5) * (0.5 - e(depth, 140 + shift)) \
            * (e(lat1, 80) - e(lat1, 140)) * (e(lat2, 80) - e(lat2, 140))

    for shift in (-20.0, -25.0):   # its TPS depth profile matched the MC's lateral one by 83 %
        mcd = cube(X, Y, Z, shift)
        mc = SimpleNamespace(total_gy_zyx=mcd, beams_gy_zyx={1: mcd}, beam_meta=meta)
        assert _direction_notes(mc, body, (c, c, c), {1: cube(X, Y, Z)}) == ([], set()), shift
    mcd = beam(X, Y, Z)   # the control: the TPS dose turned (its depth along z) is named
    mc = SimpleNamespace(total_gy_zyx=mcd, beams_gy_zyx={1: mcd}, beam_meta=meta)
    notes, named = _direction_notes(mc, Z >= 58, (c, c, c), {1: beam(Z, Y, X)})
    assert named == {1} and "runs along +z, the plan's beam along +x" in notes[0], notes


def test_a_reversed_beam_dose_is_named_not_a_range_error():
    """Audit 31 direction R3: a per-beam TPS dose of a beam (+x) that enters from the other side of the body (the same
    SOBP depths from the far surface: a gantry 180 deg apart, HFS read as FFS) was explained as "its MU/output ... or
    the beam model's calibration" (MC/TPS 0.68) and "a shift of the beam" (-20.8 mm); now it is named, and that beam's
    dose-level and centroid notes are left out.  The false-positive guards (api.DIRECTION_REVERSED_MATCH, measured on
    700 right-way synthetic doses and plan06): the same beam with the target's range 10-25 mm short or long, stretched
    by 5 %, its SOBP 10 mm wider, x 0.7, moved 8 mm across: not named."""
    from scipy.special import erf

    from mcproton._check.api import _diagnose, _direction_notes
    from mcproton._check.compare import beam_dose_ratio

    c = np.arange(0, 200.0, 4)
    Z, Y, X = np.meshgrid(c, c, c, indexing="ij")

    def e(a, b):
        return 0.5 * erf((a - b) / 5)

    def beam(depth, lat1, lat2, prox=110.0, dist=140.0):   # body 18-182 mm; SOBP prox-dist mm, off the centre
        return (0.6 + 0.4 * (e(depth, prox) + 0.5)) * (e(depth, 20) + 0.5) * (0.5 - e(depth, dist)) \
            * (e(lat1, 70) - e(lat1, 130)) * (e(lat2, 70) - e(lat2, 130))

    body = (X >= 18) & (X <= 182)
    mcd = beam(X, Y, Z)
    meta = {1: {"beam_direction": (1.0, 0.0, 0.0), "isocenter_mm": (125.0, 100.0, 100.0), "gantry_angle_deg": 270.0,
                "couch_angle_deg": 0.0, "patient_position": "HFS"}}
    mc = SimpleNamespace(total_gy_zyx=mcd, beams_gy_zyx={1: mcd}, beam_meta=meta)
    rev = beam(200 - X, Y, Z) * body
    (note,), named = _direction_notes(mc, body, (c, c, c), {1: rev})
    assert named == {1} and note.startswith("beam 1: the TPS dose of this beam enters from the other side, running "
                                            "along -x, the plan's beam along +x (gantry 270, couch 0, HFS)"), note
    causes = _diagnose(rev, mc, body, (c, c, c), SimpleNamespace(fractions=1), {1: rev}, {},
                       beam_dose={1: beam_dose_ratio(rev, mcd, body)})
    assert causes[1] == note, causes
    assert not any(n.startswith("beam 1's dose is") or "high-dose centroid" in n for n in causes), causes
    for tps in (beam(X, Y, Z, 95, 125), beam(X, Y, Z, 135, 165), beam(X, Y, Z, 120, 150), beam(X / 1.05, Y, Z),
                beam(X, Y, Z, 100, 140), 0.7 * mcd, beam(X, Y - 8, Z)):
        assert _direction_notes(mc, body, (c, c, c), {1: tps * body}) == ([], set())


def test_every_beam_named_turned_leaves_no_plan_dose_centroid_note():
    """Audit 31 direction F5: where every per-beam TPS dose was named as computed along another axis, _diagnose
    compared the plan dose's centroid instead (the per-beam centroids given an empty dict) and named "a shift or a
    range difference" beside the note that says the beam's centroid rows follow from its direction."""
    from scipy.special import erf

    from mcproton._check.api import _diagnose
    from mcproton._check.compare import beam_dose_ratio

    c = np.arange(0, 160.0, 4)
    Z, Y, X = np.meshgrid(c, c, c, indexing="ij")

    def e(a, b):
        return 0.5 * erf((a - b) / 5)

    def beam(depth, lat1, lat2):
        return (0.5 + 0.5 * (e(depth, 60) + 0.5)) * (0.5 - e(depth, 110)) * (e(lat1, 50) - e(lat1, 110)) \
            * (e(lat2, 50) - e(lat2, 110))

    mcd, body = beam(X, Y, Z), np.ones(X.shape, bool)
    meta = {1: {"beam_direction": (1.0, 0.0, 0.0), "isocenter_mm": (80.0, 80.0, 80.0), "gantry_angle_deg": 270.0,
                "couch_angle_deg": 0.0, "patient_position": "HFS"}}
    mc = SimpleNamespace(total_gy_zyx=mcd, beams_gy_zyx={1: mcd}, beam_meta=meta)
    tps = beam(Y, X, Z)
    causes = _diagnose(tps, mc, body, (c, c, c), SimpleNamespace(fractions=1), {1: tps}, {},
                       beam_dose={1: beam_dose_ratio(tps, mcd, body)})
    assert any(n.startswith("beam 1: the TPS dose of this beam runs along +y") for n in causes), causes
    assert not any("high-dose centroid" in n for n in causes), causes


def test_a_beam_off_the_grid_axes_with_failing_rows_says_its_direction_was_not_judged():
    """Audit 31 direction R4: the direction test covers beams within 2 deg of a CT axis; OpenTPS's gantry 225 (45 deg
    off both) with failing per-beam rows got no word, so a turned dose there read as if its direction were checked.
    Now a remark names it, only where one of its own rows failed; an on-axis beam gets none."""
    from mcproton._check.api import direction_unjudged, direction_unjudged_notes

    s = float(np.sqrt(0.5))
    meta = {1: {"beam_direction": (s, s, 0.0), "gantry_angle_deg": 225.0, "couch_angle_deg": 0.0},
            2: {"beam_direction": (0.0, 1.0, 0.0), "gantry_angle_deg": 0.0, "couch_angle_deg": 0.0},
            3: {"beam_direction": (float(np.cos(np.radians(1.5))), float(np.sin(np.radians(1.5))), 0.0)}}
    mc = SimpleNamespace(beam_meta=meta, beams_gy_zyx={1: None, 2: None, 3: None})
    assert set(direction_unjudged(mc, [1, 2, 3])) == {1} and abs(direction_unjudged(mc, [1])[1] - 45) < 1e-9

    def rows(ok1, ok2):
        return [{"quantity": "beam 1: MC/TPS dose (median voxel ratio)", "passed": ok1},
                {"quantity": "beam 2: gamma 2%/2mm pass rate", "passed": ok2},
                {"quantity": "gamma 3%/2mm global pass rate", "passed": False}]

    (note,) = direction_unjudged_notes(mc, [1, 2, 3], rows(False, False))
    assert note.startswith("beam 1 (gantry 225, couch 0): whether the TPS computed this beam's dose in the plan's "
                           "direction was not judged") and "45 deg off the nearest" in note, note
    assert direction_unjudged_notes(mc, [1, 2, 3], rows(True, False)) == []
    assert direction_unjudged_notes(mc, [2, 3], rows(False, False)) == []   # beam 1 without a per-beam TPS dose


def test_the_body_axis_sums_are_the_masked_dose_s():
    """Audit 31 direction R5: _body_axis_sums reduces with where=body (no masked copy of the grid); each profile is
    the masked copy's sum to rounding (float32 and float64 doses), and the dose outside the body counts nothing."""
    from mcproton._check.api import _body_axis_sums

    rng = np.random.default_rng(5)
    body = rng.random((7, 9, 11)) < 0.6
    for dose in (rng.random(body.shape), rng.random(body.shape).astype(np.float32)):
        inside = np.where(body, dose, 0).astype(np.float64)
        got = _body_axis_sums(dose, body)
        for k in range(3):
            want = inside.sum(axis=tuple(j for j in range(3) if j != k))
            assert got[k].dtype == np.float64 and np.allclose(got[k], want, rtol=1e-12, atol=0), k
        assert float(got[2].sum()) == pytest.approx(float(inside.sum()), rel=1e-12)
