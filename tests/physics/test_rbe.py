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
    # large dose: tends to RBE_min
    assert float(mcnamara_rbe(1e4, 3.0, 2.0)) == pytest.approx(1.1012 - 0.0038703 * math.sqrt(2.0) * 3.0, rel=1e-3)
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
