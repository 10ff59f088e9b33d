"""examples/aptg_plan06_struct.py --summary: the R80 it reads off a depth dose (the "R80 of the depth dose" row of
docs/check.md's plan06 table)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("aptg_plan06_struct", ROOT / "examples" / "aptg_plan06_struct.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_r80_is_the_distal_80_percent_point_interpolated_between_grid_points():
    r80 = _module()._r80_mm
    # plateau 1.0 to 2 mm, then 0.5 at 3 mm: 80 % lies at 2 + (0.8 - 1) / (0.5 - 1) = 2.4 mm (not the proximal side)
    assert abs(r80(np.arange(5.0), np.array([0.5, 1.0, 1.0, 0.5, 0.0])) - 2.4) < 1e-12
    # a peak above the plateau sets the level: max 2 at 1 mm, 80 % = 1.6 between 2 mm (1.8) and 3 mm (1.0)
    assert abs(r80(np.arange(5.0), np.array([1.0, 2.0, 1.8, 1.0, 0.0])) - 2.25) < 1e-12
