"""The contour volume (the mask-to-contour volume note, ``contour_volume_cm3``) takes the masks' even-odd rule for any
contours (dvhgeo audit 25, F5).

It was the sum of the contours' shoelace areas, a contour counted negative where its first vertex lay inside an odd
number of the plane's others: a self-intersecting bowtie gave 0 (its mask holds both triangles), two overlapping
circles gave 0, and a hole touching its outline counted positive or negative by which of its vertices came first."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from mcproton._io import rtstruct
from mcproton._io.rtstruct import _polygon_mask, contour_volumes_cm3, rasterise

from dicom_factories import circle_contour

_ZS = np.arange(-10, 10.01, 2.0)   # 11 planes, 2 mm apart: a 22 mm column
_G = SimpleNamespace(origin_mm=(-39.5, -39.5, -40.0), voxel_size_mm=(1.0, 1.0, 2.0), shape_zyx=(40, 80, 80))


def _square(x0, x1, y0, y1, z, start=0):
    return np.c_[np.roll(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float), -start, axis=0), np.full(4, z)]


@pytest.mark.parametrize("start", range(4))
@pytest.mark.parametrize("reverse", [False, True])
def test_a_hole_touching_its_outline_counts_as_a_hole_whichever_vertex_comes_first(start, reverse):
    """A 40 x 40 mm outline with a 10 x 10 mm notch whose right side lies on the outline's: 33.0 cm3, the mask's
    volume, for every first vertex and direction of the notch (before: 37.4 where its first vertex lay on the
    outline)."""
    def notch(z):
        c = _square(10, 20, -5, 5, z, start)
        return c[::-1] if reverse else c

    cl = [c for z in _ZS for c in (_square(-20, 20, -20, 20, z), notch(z))]
    assert contour_volumes_cm3({"A": cl}, 2.0)["A"] == pytest.approx((1600 - 100) * 22e-3, rel=1e-12)
    assert rasterise({"A": cl}, _G)["A"].sum() * 2e-3 == pytest.approx(33.0)


def test_a_self_intersecting_contour_and_overlapping_contours_take_the_masks_rule():
    """A bowtie (two triangles of 100 mm2 each): 4.4 cm3 (before: 0).  Two circles of r 10 mm 10 mm apart: their
    even-odd area, the two discs less twice their lens, as the mask (warned of) takes it (before: 0)."""
    bow = [np.array([[-10, -10, z], [10, 10, z], [10, -10, z], [-10, 10, z]], float) for z in _ZS]
    assert contour_volumes_cm3({"bow": bow}, 2.0)["bow"] == pytest.approx(200 * 22e-3, rel=1e-12)
    two = [c for z in _ZS for c in (circle_contour(-5, 0, 10, z, n=720), circle_contour(5, 0, 10, z, n=720))]
    lens = 2 * 100 * np.arccos(0.5) - 5 * np.sqrt(300)
    cv = contour_volumes_cm3({"two": two}, 2.0)["two"]
    assert cv == pytest.approx((2 * np.pi * 100 - 2 * lens) * 22e-3, rel=1e-4)
    with pytest.warns(UserWarning, match="overlap without one lying inside the other"):
        m = rasterise({"two": two}, _G)["two"]
    assert m.sum() * 2e-3 == pytest.approx(cv, rel=0.02)


@pytest.mark.parametrize("seed", range(3))
def test_the_area_of_random_contours_is_that_of_the_masks_rule(seed):
    """Random polygons (most of them self-intersecting), one to three on a plane, some of them sharing vertices on a
    lattice: the area is that of the masks' rule (XOR of the contours' crossing-number masks) sampled on a 0.005 mm
    grid, to that grid's error."""
    rng = np.random.default_rng(seed)
    h = 0.005
    for k in range(8):
        polys = [(rng.integers(0, 6, (int(rng.integers(3, 8)), 2)).astype(float) if k % 2 else
                  rng.uniform(0, 5, (int(rng.integers(3, 9)), 2))) for _ in range(int(rng.integers(1, 4)))]
        xs = np.arange(-1, 7, h) + h / 3
        ys = np.arange(-1, 7, h) + h / 3
        m = np.zeros((ys.size, xs.size), bool)
        for p in polys:
            m ^= _polygon_mask(p, xs, ys)
        perimeter = sum(np.linalg.norm(np.diff(np.r_[p, p[:1]], axis=0), axis=1).sum() for p in polys)
        assert rtstruct._even_odd_area(polys) == pytest.approx(m.sum() * h * h, abs=perimeter * h)


def test_a_plane_too_large_for_the_strips_counts_a_touching_hole_by_a_point_inside_it(monkeypatch):
    """On a plane of more (edge, strip) entries than the strips take, each contour's sign comes from a point inside
    it, not its first vertex: the touching notch is a hole whichever vertex comes first."""
    monkeypatch.setattr(rtstruct, "_EVEN_ODD_ENTRIES", 0)
    for start in range(4):
        cl = [c for z in _ZS for c in (_square(-20, 20, -20, 20, z), _square(10, 20, -5, 5, z, start))]
        assert contour_volumes_cm3({"A": cl}, 2.0)["A"] == pytest.approx(33.0, rel=1e-12)


def test_strips_whose_edges_cross_too_often_are_left_to_the_signed_sum(monkeypatch):
    """The work on strips in which edges cross is bounded too (a contour crossing itself thousands of times): past
    the budget the plane's area is left to the signed sum (None here), not computed at any cost."""
    bow = np.array([[-10, -10], [10, 10], [10, -10], [-10, 10]], float)
    assert rtstruct._even_odd_area([bow]) == pytest.approx(200.0)
    monkeypatch.setattr(rtstruct, "_EVEN_ODD_ENTRIES", 4)   # its 4 (edge, strip) entries, not their 16 pairs
    assert rtstruct._even_odd_area([bow]) is None
