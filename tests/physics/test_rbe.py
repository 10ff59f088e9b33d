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
