"""Spot inputs of the Python API and the [beam] section that gave a plausible but wrong dose (2026-12-05):
an energy spread so wide that the Gaussian reached 0 MeV (the kernel clamps sampled energies there,
kernels/source/sample.h) and a source inside the phantom (the material upstream of it got no dose).  A direction
of any length is normalised, as the Spot docstring says."""
from __future__ import annotations

import numpy as np
import pytest

from mcproton.geometry import box_phantom, slab_phantom
from mcproton.source import Beam, Spot


def test_an_energy_spread_above_a_fifth_of_the_energy_is_refused():
    Spot(100.0, energy_spread_mev=20.0)                   # 5 sigma reach 0 MeV exactly: still allowed
    with pytest.raises(ValueError, match=r"energy_spread_mev = 20\.5 MeV is more than a fifth of energy_mev = 100"):
        Spot(100.0, energy_spread_mev=20.5)
    with pytest.raises(ValueError, match="clamped to 0 MeV"):
        Beam.pencil(70.0, energy_spread_mev=70.0)         # 'a spread of 100 %' read as MeV


def test_make_spots_refuses_the_spread_spot_refuses():
    """Audit 19 (review) F2: make_spots (the spots of a plan and of a planning field) said it made Spot's checks,
    but left out the spread limit: make_spots([70], energy_spread_mev=[30]) gave a spot with a 30 MeV spread."""
    import numpy as np

    from mcproton.source import make_spots

    def spots(spread):
        return make_spots([100.0, 70.0], np.zeros((2, 3)), [(0.0, 0.0, 1.0)] * 2, [(1.0, 0.0, 0.0)] * 2,
                          energy_spread_mev=spread, sigma_mm=[(3.0, 3.0)] * 2, divergence_rad=[(0.0, 0.0)] * 2,
                          correlation=[(0.0, 0.0)] * 2, weight=[1.0, 1.0])

    assert [s.energy_spread_mev for s in spots([20.0, 14.0])] == [20.0, 14.0]   # 5 sigma reach 0 MeV: allowed
    with pytest.raises(ValueError, match=r"^energy_spread_mev = 30 MeV is more than a fifth of energy_mev = 70 MeV"):
        spots([1.0, 30.0])


def test_a_direction_of_any_length_is_normalised():
    s = Spot(100.0, direction=(0.0, 3.0, 3.0))
    assert np.allclose(s.direction, (0.0, np.sqrt(0.5), np.sqrt(0.5)), rtol=0, atol=1e-15)
    t = Spot(100.0, direction=(0.0, 1.0, 1.0))
    assert np.allclose(s.direction, t.direction, rtol=0, atol=1e-15)
    assert np.allclose(s.axis_x, t.axis_x, rtol=0, atol=1e-15)


@pytest.mark.parametrize("scale", [1e300, 1.7e308, 1e-160, 1e-300, 5e-324])
def test_a_direction_of_any_finite_length_is_normalised_without_overflow(scale):
    """The edges audit of 2026-12-07, F5: (1e300, 0, 1e300) overflowed in the norm (numpy's RuntimeWarning) and became
    (0, 0, 0), "every spot misses the phantom"; (1e-300, 0, 1e-300) was refused as zero and (1e-160, 0, 1e-160) came
    out 6e-6 off unit length (subnormal squares).  Each is now the 45-degree unit vector meant."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")   # no overflow or underflow warning
        d = np.array(Spot(100.0, direction=(scale, 0.0, scale) if scale > 5e-324 else (scale, 0.0, 0.0)).direction)
    want = (np.sqrt(0.5), 0.0, np.sqrt(0.5)) if scale > 5e-324 else (1.0, 0.0, 0.0)
    assert np.allclose(d, want, rtol=0, atol=1e-15), d


def test_an_ordinary_direction_is_normalised_as_before_bit_for_bit():
    """The scaling is for extreme lengths only: every ordinary vector keeps a / norm(a) exactly (the regression
    doses depend on the bits of the directions)."""
    rng = np.random.default_rng(3)
    scaled = rng.normal(size=(200, 3)) * 10.0 ** rng.uniform(-100, 100, (200, 1))
    for a in [(0.0, 1.0, 1.0), (1e-100, 0.0, 3.0), *scaled]:
        a = np.asarray(a, float)
        assert np.array_equal(Spot(100.0, direction=a).direction, a / np.linalg.norm(a))
    with pytest.raises(ValueError, match="must be a non-zero finite 3-vector"):
        Spot(100.0, direction=(0.0, -0.0, 0.0))


def _spot(z: float, direction=(0.0, 0.0, 1.0)):
    return Beam([Spot(100.0, position_mm=(0.0, 0.0, z), direction=direction)])


def test_material_upstream_of_a_source():
    from mcproton._run.inputs import material_upstream_g_cm2

    g = box_phantom("water", (40.0, 40.0, 100.0), (4.0, 4.0, 2.0))      # z 0..100 mm of water (1 g/cm3)
    got = material_upstream_g_cm2(g, [(0, 0, -10), (0, 0, 30), (0, 0, 30), (0, 0, 99.9)],
                                  [(0, 0, 1), (0, 0, 1), (0, 0, -1), (0, 0, 1)])
    # outside: 0; 30 mm deep along +z: 3 g/cm2; the same point shooting back: the 70 mm behind it
    assert np.allclose(got, [0.0, 3.0, 7.0, 9.99], rtol=1e-9, atol=1e-9)
    # air in front of water: the air does not count
    s = slab_phantom([("air", 50.0), ("water", 50.0)], (40.0, 40.0), 2.0)
    lo = float(s.lower_corner_mm[2])
    got = material_upstream_g_cm2(s, [(0, 0, lo + 40.0), (0, 0, lo + 60.0)], [(0, 0, 1)] * 2)
    assert np.allclose(got, [0.0, 1.0], rtol=1e-9, atol=1e-9)


def test_a_source_inside_the_phantom_is_refused():
    from mcproton._run.inputs import check_source_outside
    from mcproton.config import ConfigError

    g = box_phantom("water", (40.0, 40.0, 100.0), (4.0, 4.0, 2.0))
    check_source_outside(g, [_spot(-10.0)], "beam")
    check_source_outside(g, [_spot(0.9)], "beam")                 # 0.09 g/cm2: within the 1 mm of water allowed
    with pytest.raises(ConfigError, match=r"beam: the source position_mm = \[0\.0, 0\.0, 30\.0\] lies inside the "
                                          r"phantom: 3 g/cm2 of material \(about 30 mm of water\)"):
        check_source_outside(g, [_spot(30.0)], "beam")
