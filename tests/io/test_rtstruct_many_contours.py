"""Rasterising an ROI of many contours (the hostile-input audit, F6: an ROI of 10^5 small contours took hours in the
output phase, after the transport): the work per contour scales with its bounding box, the check for contours that
cross compares only contours that share a voxel, and the masks are those of the whole-slice crossing-number rule."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from mcproton._io import rtstruct
from mcproton._io.rtstruct import _TIE_MM, _overlap_not_nested, _polygon_mask, rasterise
from mcproton.geometry import box_phantom

from dicom_factories import circle_contour, rect_contour


def _reference_mask(contours: list[np.ndarray], g) -> np.ndarray:
    """The mask of one ROI whose contour planes lie on the grid's slice centres, by the rule of the module docstring
    applied to the whole slice for every contour (no bounding box): even-odd across the contours of a plane."""
    x, y, z = g.axis_mm("x") - _TIE_MM, g.axis_mm("y") - _TIE_MM, g.axis_mm("z")
    out = np.zeros(g.shape_zyx, bool)
    for c in contours:
        k = int(np.argmin(np.abs(z - c[0, 2])))
        out[k] ^= _polygon_mask(c[:, :2], x, y)
    return out


def _old_overlap_not_nested(parts) -> bool:
    """The check as it was before (every pair of the plane compared)."""
    return any(rtstruct._cross(parts[a], parts[b]) for a in range(len(parts)) for b in range(a + 1, len(parts)))


def _many_contours(seed: int = 3) -> list[np.ndarray]:
    """Rings (an outline with a hole, and an island in the hole), squares on voxel boundaries, circles, triangles and
    one pair of crossing squares, on three planes."""
    rng = np.random.default_rng(seed)
    out = []
    for z in (0.0, 2.0, 4.0):
        for cx, cy in ((-20.0, -20.0), (20.0, 15.0)):
            out += [circle_contour(cx, cy, 12, z), circle_contour(cx, cy, 6, z), circle_contour(cx, cy, 2.5, z)]
        for _ in range(150):   # small shapes scattered in the rest of the plane (some inside the rings: holes)
            x0, y0 = rng.uniform(-45, 40, 2)
            w = rng.choice([0.5, 1.0, 2.0, 3.3])
            out.append(rect_contour(round(x0), round(x0) + w, round(y0), round(y0) + w, z) if rng.random() < 0.5
                       else np.array([[x0, y0, z], [x0 + w, y0 + 0.3 * w, z], [x0 + 0.2 * w, y0 + w, z]]))
        out += [rect_contour(30, 36, -40, -34, z), rect_contour(33, 39, -37, -31, z)]   # cross each other
    return out


def test_masks_of_many_contours_with_holes_are_the_whole_slice_rule():
    """The bounding-box path gives bit for bit the mask of the whole-slice rule, and the crossing pair is warned of
    as before (on all three planes)."""
    contours = _many_contours()
    g = box_phantom("water", (100, 100, 6), (1.0, 1.0, 2.0), origin_mm=(-49.5, -49.5, 0.0))   # z 0, 2, 4, ...
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        m = rasterise({"many": contours}, g)["many"]
    assert np.array_equal(m, _reference_mask(contours, g))
    assert m[:3].sum() > 0 and not m[3:].any()
    said = [str(w.message) for w in got if "overlap without one lying inside" in str(w.message)]
    assert len(said) == 1 and "on 3 plane(s)" in said[0]


@pytest.mark.parametrize("seed", range(6))
def test_crossing_check_agrees_with_every_pair(seed):
    """Nested, disjoint, touching and crossing contour masks: the same answer as comparing every pair."""
    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(12):
        h, w = rng.integers(1, 8, 2)
        parts.append((int(rng.integers(0, 20)), int(rng.integers(0, 20)), rng.random((h, w)) < 0.7))
    for n in range(2, len(parts) + 1):
        assert _overlap_not_nested(parts[:n]) == _old_overlap_not_nested(parts[:n])
    outline = (0, 0, np.ones((10, 10), bool))
    hole = (3, 3, np.ones((3, 3), bool))
    assert not _overlap_not_nested([outline, hole]) and not _old_overlap_not_nested([outline, hole])


def test_ten_thousand_small_contours_compare_no_pair(monkeypatch):
    """10^4 disjoint squares on one plane: no pair of contours is compared (before: every pair, 5 x 10^7
    comparisons, ~40 s; measured by hand 2026-12-06: 0.5 s now, 10^5 contours 11 s instead of hours), and each
    contour's polygon test is given its bounding box and a voxel around it, not the slice."""
    n, side = 10_000, 100
    contours = [rect_contour(-49.8 + 1.0 * (i % side), -49.8 + 1.0 * (i % side) + 0.6,
                             -49.8 + 1.0 * (i // side), -49.8 + 1.0 * (i // side) + 0.6, 0.0) for i in range(n)]
    pairs, sizes = [0], []
    cross, polygon_mask = rtstruct._cross, rtstruct._polygon_mask

    def counted_cross(a, b):
        pairs[0] += 1
        return cross(a, b)

    def recorded_polygon_mask(poly, xs, ys):
        sizes.append(xs.size * ys.size)
        return polygon_mask(poly, xs, ys)

    monkeypatch.setattr(rtstruct, "_cross", counted_cross)
    monkeypatch.setattr(rtstruct, "_polygon_mask", recorded_polygon_mask)
    g = box_phantom("water", (100, 100, 1), (1.0, 1.0, 1.0), origin_mm=(-49.5, -49.5, 0.0))
    m = rtstruct._rasterise({"many": contours}, np.asarray(g.origin_mm), np.asarray(g.voxel_size_mm),
                            g.shape_zyx, None)["many"]
    assert pairs[0] == 0
    assert len(sizes) == n and max(sizes) <= 9   # 3 x 3 voxels at most: the box and a voxel around it
    assert m.sum() == n   # each square holds one voxel centre


def _every_pair_depths(polys: list[np.ndarray]) -> list[int]:
    """The nesting depths by testing every other contour of the plane (as contour_volumes_cm3 did before), each at
    the point inside its contour that _nesting_depths takes (before audit 25: its first vertex)."""
    pts = rtstruct._interior_points(polys)
    return [sum(rtstruct._inside_polygon(pts[i], q) for j, q in enumerate(polys) if j != i) for i in range(len(polys))]


@pytest.mark.parametrize("seed", range(4))
def test_nesting_depths_agree_with_every_pair(seed):
    """Rings with holes and islands, scattered small shapes (some in the holes), touching and crossing squares, one
    contour much larger than the rest: the same depth for every contour as testing every pair."""
    planes: dict[float, list[np.ndarray]] = {}
    for c in _many_contours(seed):
        planes.setdefault(float(c[0, 2]), []).append(c[:, :2])
    for polys in planes.values():
        polys = polys + [rect_contour(-48, 48, -48, 48, 0.0)[:, :2], rect_contour(30, 36, -40, -34, 0.0)[:, :2]]
        assert rtstruct._nesting_depths(polys) == _every_pair_depths(polys)
    assert rtstruct._nesting_depths([]) == [] and rtstruct._nesting_depths([planes[0.0][0]]) == [0]


def test_contour_volumes_of_many_small_contours_test_no_pair(monkeypatch):
    """3000 disjoint 1 mm squares on one plane inside one outline: each square is tested against the outline only
    (before: every pair of the plane, 9 x 10^6 point-in-polygon tests, 58 s for 2000 squares; the hostile-input
    audit's 10^5 contours, days after the transport), and the volume is the outline's less the holes."""
    n, side = 3000, 60
    squares = [rect_contour(1.5 * (i % side), 1.5 * (i % side) + 1.0, 1.5 * (i // side), 1.5 * (i // side) + 1.0, 0.0)
               for i in range(n)]
    outline = rect_contour(-1.0, 91.0, -1.0, 91.0, 0.0)
    tests = [0]
    inside = rtstruct._inside_polygon

    def counted(pt, poly):
        tests[0] += 1
        if tests[0] > 4 * n:
            raise AssertionError("the contours of the plane are tested pair by pair")
        return inside(pt, poly)

    monkeypatch.setattr(rtstruct, "_inside_polygon", counted)
    vol = rtstruct.contour_volumes_cm3({"sieve": [outline, *squares]}, 2.0)["sieve"]
    assert tests[0] <= 2 * n
    assert vol == pytest.approx((92.0 ** 2 - n * 1.0) * 2.0 * 1e-3, rel=1e-9)   # the squares are holes
