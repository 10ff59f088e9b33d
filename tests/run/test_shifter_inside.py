"""A range shifter placed inside the phantom is refused before the transport (mcproton run and mcproton check):
the slab is crossed before the protons enter the grid, so the material upstream of its downstream face would
never be crossed.  A helper's audit (2026-12-05) set the DCPT head plan's IsocenterToRangeShifterDistance to
27.55 instead of 275.5 mm: the slab lay inside the head, the beam skipped 57 mm of tissue and its target dose
fell from 0.32 to 0.0005 Gy, with exit status 0."""
from __future__ import annotations

import warnings

import pytest

from mcproton.config import ConfigError
from mcproton.geometry import box_phantom
from mcproton.source import Beam, RangeShifterSlab, Spot
from mcproton._run.inputs import check_shifters_outside


def _beam(face_mm: float) -> Beam:
    """One 120 MeV spot starting 300 mm upstream of the box's front face (z = 0), with a 30 mm Lexan slab whose
    upstream face lies ``face_mm`` downstream of the spot's start."""
    slab = RangeShifterSlab("lexan", 30.0, 1.2, face_mm, id="RS_3CM", wet_mm=34.3)
    return Beam([Spot(energy_mev=120.0, position_mm=(0.0, 0.0, -300.0), direction=(0.0, 0.0, 1.0),
                      range_shifter=slab)], name="1:F1")


def test_a_shifter_in_front_of_the_phantom_passes_and_one_inside_is_refused():
    box = box_phantom("water", (60, 60, 100), 2.0, origin_mm=(-30, -30, -150))   # the grid from z = -151 to -51
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_shifters_outside(box, [_beam(100.0)], "plan beam")   # face at z = -170: in air, upstream of the grid
    with pytest.raises(ConfigError, match=r"plan beam '1:F1': its range shifter 'RS_3CM' \(30.0 mm, WET 34.3 mm\) "
                                          r"lies inside the phantom: up to 6.1 g/cm2 of material denser than 0.5 "
                                          r"g/cm3 .*IsocenterToRangeShifterDistance"):
        check_shifters_outside(box, [_beam(180.0)], "plan beam")   # downstream face at z = -90: 61 mm in the water
    air = box_phantom("air", (60, 60, 100), 2.0, origin_mm=(-30, -30, -150))
    check_shifters_outside(air, [_beam(180.0)], "plan beam")   # in the grid, but in air (a CT's air gap): fine


def test_a_shifter_face_a_little_inside_the_skin_is_refused_or_warned_about():
    """Audit 18 (F1): a face 8.5 mm inside an infant's head skipped up to 19 mm of water-equivalent tissue (target
    D95 -12 %) without a word, as only more than 2 g/cm2 was refused.  Now 10 mm inside (1.0 g/cm2) is refused, 2 mm
    inside (0.2 g/cm2) warned about with the water-equivalent thickness and the share of the spots, and a face in
    the air before the skin says nothing.  The slab's face is at z = -300 + face_mm + 30; the water from z = -151."""
    from mcproton import McprotonRuntimeWarning
    from mcproton._run.inputs import MAX_SHIFTER_INSIDE_G_CM2, WARN_SHIFTER_INSIDE_G_CM2

    assert WARN_SHIFTER_INSIDE_G_CM2 < 0.2 < MAX_SHIFTER_INSIDE_G_CM2 < 1.0
    box = box_phantom("water", (60, 60, 100), 2.0, origin_mm=(-30, -30, -150))
    with pytest.raises(ConfigError, match=r"up to 1 g/cm2 .*about 10 mm of water.*1 of the 1 spots traced, 100 %.*"
                                          r"refused above 0.5 g/cm2.*plan.outside_external"):
        check_shifters_outside(box, [_beam(129.0)], "plan beam")   # face at z = -141: 10 mm of the water
    with pytest.warns(McprotonRuntimeWarning, match=r"plan beam '1:F1': its range shifter 'RS_3CM'.*inside the "
                                                    r"phantom: up to 0.2 g/cm2 .*about 2 mm of water"):
        said = check_shifters_outside(box, [_beam(121.0)], "plan beam")   # face at z = -149: 2 mm of the water
    assert len(said) == 1 and "'RS_3CM'" in said[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_shifters_outside(box, [_beam(119.0)], "plan beam") == []   # face at z = -151: at the skin


def test_ct_air_noise_passes_and_a_couch_or_mask_upstream_of_the_shifter_is_named():
    """A CT's air reads above 0.01 g/cm3 on average where its noise is clipped at -1000 HU (the review of
    2026-12-05: 150 mm of it, 0.13 g/cm2, refused a valid RayStation plan): only material denser than 0.5 g/cm3
    counts, so it says nothing.  A thermoplastic mask's shell upstream of the face (2 mm at 1.2 g/cm3: 0.24 g/cm2) is
    warned about; a couch top (8 mm at 1.2: 0.96 g/cm2) is a collision and refused, the message naming how to crop
    the CT's non-patient material."""
    import numpy as np

    from mcproton import McprotonRuntimeWarning

    g = box_phantom("air", (60, 60, 100), 2.0, origin_mm=(-30, -30, -150))
    rho = np.array(g.density_g_cm3_zyx, dtype=np.float32)
    rho[:] = 0.03                  # noisy air everywhere (0.3 g/cm2 over 100 mm)
    g.density_g_cm3_zyx = rho
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_shifters_outside(g, [_beam(180.0)], "plan beam")
    rho[2] = 1.2                   # a 2 mm mask shell upstream of the face
    with pytest.warns(McprotonRuntimeWarning, match=r"up to 0.24 g/cm2.*outside-external air"):
        check_shifters_outside(g, [_beam(180.0)], "plan beam")
    rho[2:6] = 1.2                 # 8 mm of a couch top
    with pytest.raises(ConfigError, match=r"lies inside the phantom: up to 0.96 g/cm2.*couch.*outside_external"):
        check_shifters_outside(g, [_beam(180.0)], "plan beam")


def test_spots_aimed_off_the_grid_are_warned_about_and_a_beam_missing_it_entirely_refused():
    """A beam of which some spots are aimed off the grid (the audit moved 6 of 24 layers by 900 mm: 30 % of the
    energy missed the CT without a word) is warned about with the share of its weight; a beam whose every spot
    misses is refused as before; a beam of which no spot misses says nothing."""
    from mcproton import McprotonRuntimeWarning
    from mcproton.config import check_beam_hits

    box = box_phantom("water", (60, 60, 100), 2.0, origin_mm=(-30, -30, -150))

    def spot(x, w=1.0):
        return Spot(energy_mev=120.0, position_mm=(x, 0.0, -300.0), direction=(0.0, 0.0, 1.0), weight=w)

    with pytest.warns(McprotonRuntimeWarning, match=r"1 of the 4 spots of beam 'F' \(25.0 % of its weight\) are "
                                                    r"aimed off the dose grid .*e.g. a spot starting at \[900.0, 0.0"):
        check_beam_hits(box, [Beam([spot(0), spot(5), spot(-5), spot(900)], name="F")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_beam_hits(box, [Beam([spot(0), spot(5), spot(900, w=0.001)], name="F")])   # 0.05 %: nothing said
    with pytest.raises(ConfigError, match="every spot of beam 'F' misses the phantom"):
        check_beam_hits(box, [Beam([spot(900), spot(-900)], name="F")])


def test_simulate_warns_of_a_shifter_inside_the_phantom():
    """The Python API runs it as given (as it does what mcproton run refuses), with a McprotonRuntimeWarning."""
    from mcproton import McprotonRuntimeWarning, RunSettings, simulate

    box = box_phantom("water", (60, 60, 100), 2.0, origin_mm=(-30, -30, -150))
    with pytest.warns(McprotonRuntimeWarning, match=r"simulate: beam '1:F1': its range shifter 'RS_3CM'.*inside"):
        simulate(box, _beam(180.0), RunSettings(primaries=200, backend="cpu", threads=1, batches=2))


def test_simulate_warns_of_a_shifter_face_just_inside_the_skin():
    """Below the refusal level simulate warns too, at the same level as mcproton run and check (one constant)."""
    from mcproton import McprotonRuntimeWarning, RunSettings, simulate

    box = box_phantom("water", (60, 60, 100), 2.0, origin_mm=(-30, -30, -150))
    with pytest.warns(McprotonRuntimeWarning, match=r"beam '1:F1': its range shifter 'RS_3CM'.*up to 0.2 g/cm2"):
        simulate(box, _beam(121.0), RunSettings(primaries=200, backend="cpu", threads=1, batches=2))


def test_the_checks_likely_causes_name_a_shifter_inside_the_patient():
    """mcproton check's diagnostics name the range shifter warned about (audit 18: a face 8.5 mm inside the head
    failed the gamma, and the notes said only "a shift or a range difference")."""
    from types import SimpleNamespace

    import numpy as np

    from mcproton._check.api import _diagnose

    ref = np.ones((4, 4, 4))
    note = "plan beam '1:F1': its range shifter 'RS_3CM' (30.0 mm) lies inside the phantom: up to 0.3 g/cm2"
    mc = SimpleNamespace(total_gy_zyx=ref.copy(), beams_gy_zyx={1: ref.copy()}, provenance={}, shifter_notes=[note])
    inputs = SimpleNamespace(dose_type="PHYSICAL", fractions=1)
    body = np.ones(ref.shape, bool)
    axes = [np.arange(4.0)] * 3
    assert _diagnose(ref, mc, body, axes, inputs, {}, noise_ok=False) == [
        f"a range shifter inside the patient: {note}"]
    mc.shifter_notes = []
    assert _diagnose(ref, mc, body, axes, inputs, {}, noise_ok=False) == []
