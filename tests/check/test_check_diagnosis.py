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
