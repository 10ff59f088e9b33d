"""A range shifter placed inside the phantom is refused before the transport (mcproton run and mcproton check):
the slab is crossed before the protons enter the grid, so the material upstream of its downstream face would
never be crossed.  A helper's audit (2026-12-05) set the DCPT head plan's IsocenterToRangeShifterDistance to
27.55 instead of 275.5 mm: the slab lay inside the head, the beam skipped 57 mm of tissue and its target dose
fell from 0.32 to 0.0005 Gy, with exit status 0."""
from __future__ import annotations

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
    check_shifters_outside(box, [_beam(100.0)], "plan beam")   # face at z = -170: in air, upstream of the grid
    with pytest.raises(ConfigError, match=r"plan beam '1:F1': its range shifter 'RS_3CM' \(30.0 mm, WET 34.3 mm\) "
                                          r"lies inside the phantom: 6.1 g/cm2 of material denser than 0.5 g/cm3 .*"
                                          r"IsocenterToRangeShifterDistance"):
        check_shifters_outside(box, [_beam(180.0)], "plan beam")   # downstream face at z = -90: 61 mm in the water
    air = box_phantom("air", (60, 60, 100), 2.0, origin_mm=(-30, -30, -150))
    check_shifters_outside(air, [_beam(180.0)], "plan beam")   # in the grid, but in air (a CT's air gap): fine


def test_ct_air_noise_and_a_couch_upstream_of_the_shifter_do_not_refuse_it():
    """A CT's air reads above 0.01 g/cm3 on average where its noise is clipped at -1000 HU (the review of
    2026-12-05: 150 mm of it, 0.13 g/cm2, refused a valid RayStation plan); a couch top upstream of the face
    (below 1 g/cm2) is not a patient either.  Only material denser than 0.5 g/cm3, over 2 g/cm2, refuses."""
    import numpy as np

    g = box_phantom("air", (60, 60, 100), 2.0, origin_mm=(-30, -30, -150))
    rho = np.array(g.density_g_cm3_zyx, dtype=np.float32)
    rho[:] = 0.03                  # noisy air everywhere (0.3 g/cm2 over 100 mm)
    rho[2:6] = 1.2                 # 8 mm of a couch top at density 1.2 upstream of the face: 0.96 g/cm2
    g.density_g_cm3_zyx = rho
    check_shifters_outside(g, [_beam(180.0)], "plan beam")
    rho[2:30] = 1.0                # 56 mm of tissue-like material: refused
    with pytest.raises(ConfigError, match="lies inside the phantom"):
        check_shifters_outside(g, [_beam(180.0)], "plan beam")


def test_spots_aimed_off_the_grid_are_warned_about_and_a_beam_missing_it_entirely_refused():
    """A beam of which some spots are aimed off the grid (the audit moved 6 of 24 layers by 900 mm: 30 % of the
    energy missed the CT without a word) is warned about with the share of its weight; a beam whose every spot
    misses is refused as before; a beam of which no spot misses says nothing."""
    import warnings

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
