"""A structure is "partly outside the dose grid" (the check's ``partly_outside_dose_grid``, "(part on the dose grid)")
where its slabs run beyond the grid, not only where its contour points do (dvhgeo audit 25, F6): an ROI whose last
contour plane lies on the grid's end face has half its end slab beyond it, and its mask holds 7 of its 8 slabs, yet
it was not marked."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from mcproton._check.api import contours_beyond_grid
from mcproton._io.rtstruct import RTStruct, rasterise

# 2 mm voxels, z centres -9 .. 9: the grid's faces at z = -10 and 10
_G = SimpleNamespace(origin_mm=(-39.0, -39.0, -9.0), voxel_size_mm=(2.0, 2.0, 2.0), shape_zyx=(10, 40, 40))


def _square(z, x0=-10.0, x1=10.0):
    return np.array([[x0, -10, z], [x1, -10, z], [x1, 10, z], [x0, 10, z]], float)


def test_an_end_slab_beyond_the_grid_marks_the_structure():
    """Planes every 2 mm: the last on the grid's face (slab 9..11 mm) is marked, as is one with planes beyond the
    face or points beyond its side; one whose slabs end on the face (last plane at 8 mm, slab 7..9 mm ... up to the
    face) and one wholly inside are not."""
    rois = {"endcap_on_face": [_square(z) for z in range(-4, 11, 2)],
            "beyond_z": [_square(z) for z in range(-4, 21, 2)],
            "beyond_x": [_square(z, 20, 60) for z in range(-8, 9, 2)],
            "slabs_to_the_face": [_square(z + 1.0) for z in range(-10, 9, 2)],   # planes -9 .. 9, slabs -10 .. 10
            "inside": [_square(z) for z in range(-6, 7, 2)]}
    s = RTStruct(rois)
    m = rasterise(s, _G)
    assert m["endcap_on_face"].any(axis=(1, 2)).sum() == 7   # 7 of its 8 slabs' slices on the grid
    assert m["slabs_to_the_face"].any(axis=(1, 2)).all()
    assert contours_beyond_grid(rois, _G) == {"endcap_on_face", "beyond_z", "beyond_x"}   # before: no endcap_on_face
    assert contours_beyond_grid(s, _G) == {"endcap_on_face", "beyond_z", "beyond_x"}   # an RTStruct, as the check


def test_a_single_plane_structure_on_the_grids_last_slice_is_inside():
    """One plane on the last slice centre (z = 9 mm): its slab is that slice (8 .. 10 mm), within the grid; one
    plane on the face is not."""
    assert contours_beyond_grid({"mark": [_square(10.0)]}, _G) == {"mark"}
    assert contours_beyond_grid({"mark": [_square(9.0)]}, _G) == set()
    assert contours_beyond_grid(RTStruct({"mark": [_square(9.0)]}), _G) == set()
