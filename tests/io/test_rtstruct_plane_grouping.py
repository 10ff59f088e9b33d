"""The contours of one CT slice are one contour plane, whatever small differences their z have (dvhgeo audit 25, F1).

A contour counts as axial when its points span up to 0.01 mm in z, but the contours were grouped into planes by their
mean z rounded to 1e-3 mm: an outline and its hole 0.0006 mm apart (or z = 12.3455 and 12.345500000000001) became two
planes 0.001 mm apart, each with a slab of 0.001 mm.  The hole or an island was lost, and the structure set's slice
spacing (the median of its ROIs' plane steps) fell below the CT's, so that on a dose grid between the CT's slices a
CTV drawn on every slice had no voxel, all without a word."""
from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from mcproton._io.errors import McprotonRuntimeWarning
from mcproton._io.rtstruct import (contour_volumes_cm3, empty_mask_reason, image_slice_mm, rasterise, read_rtstruct,
                                   referenced_slice_mm)

from dicom_factories import circle_contour, make_rtstruct, save

_ZS = np.arange(-20.0, 20.01, 2.0)   # a 2 mm CT


def _grid(z0: float) -> SimpleNamespace:
    """1 x 1 x 2 mm, x -99.5..99.5, y -49.5..49.5, 40 slices from z0."""
    return SimpleNamespace(origin_mm=(-99.5, -49.5, z0), voxel_size_mm=(1.0, 1.0, 2.0), shape_zyx=(40, 100, 200))


def _legs_and_ctv(tmp_path, dz: float, label: str):
    """The auditor's structure set: a Body-like ROI of two circles per slice (the second dz mm off the slice's z,
    within the 0.01 mm of the axial test) and a CTV of one circle on 9 slices; each contour names its CT slice."""
    slices = {float(z): generate_uid() for z in _ZS}
    ds = make_rtstruct({"Legs": [c for z in _ZS for c in (circle_contour(-60, 0, 30, z),
                                                          circle_contour(60, 0, 30, z + dz))],
                        "CTV": [circle_contour(0, 0, 10, z) for z in _ZS if abs(z) <= 8]})
    for rc in ds.ROIContourSequence:
        for c in rc.ContourSequence:
            ref = Dataset()
            ref.ReferencedSOPInstanceUID = slices[round(float(c.ContourData[2]))]
            c.ContourImageSequence = Sequence([ref])
    return read_rtstruct(save(ds, tmp_path / f"rs_{label}.dcm"))


def test_contours_of_one_slice_a_few_micrometres_apart_are_one_plane(tmp_path):
    """Islands 0.002 mm off their slice: the same masks and contour volumes as with none, on a grid whose slices lie
    on the CT's and on one between them (before: Legs 118.8 and 0.0 cm3, the CTV 0.0 cm3 between, contour volume of
    Legs 0.24 cm3), the CT's 2 mm slice spacing (before: 1.998 mm) and no warning."""
    flat = _legs_and_ctv(tmp_path, 0.0, "flat")
    with warnings.catch_warnings():
        warnings.simplefilter("error", McprotonRuntimeWarning)
        jitter = _legs_and_ctv(tmp_path, 0.002, "jitter")
    assert image_slice_mm(jitter, 2.0) == image_slice_mm(flat, 2.0) == 2.0
    assert referenced_slice_mm(jitter) == pytest.approx(2.0)   # before: None (the slice named by two "planes")
    for z0 in (-40.0, -39.0):
        a, b = rasterise(flat, _grid(z0)), rasterise(jitter, _grid(z0))
        for nm in ("Legs", "CTV"):
            assert np.array_equal(a[nm], b[nm]), (z0, nm)
        assert b["CTV"].sum() * 2e-3 == pytest.approx(np.pi * 100 * 18e-3, rel=0.03)
        assert b["Legs"].sum() * 2e-3 == pytest.approx(2 * np.pi * 900 * 42e-3, rel=0.01)
    cv_flat, cv_jitter = contour_volumes_cm3(flat, 2.0), contour_volumes_cm3(jitter, 2.0)
    assert cv_jitter["Legs"] == pytest.approx(cv_flat["Legs"], rel=1e-12)
    assert cv_jitter["Legs"] == pytest.approx(2 * np.pi * 900 * 42e-3, rel=0.01)


@pytest.mark.parametrize("dz", [0.0006, 0.002, 0.009])
def test_a_hole_a_little_off_its_outline_is_still_a_hole(dz):
    """An annulus (outer r 20, hole r 10, 11 planes) whose holes lie dz off their outlines' z: the hole on every
    slice and the annulus's volume (before, from dz = 0.0006 mm: no hole, mask 27.8 cm3, contour volume 0.017)."""
    def circ(r, z):
        return circle_contour(0, 0, r, z, n=256)

    zs = np.arange(-10, 10.01, 2.0)
    g = SimpleNamespace(origin_mm=(-39.5, -39.5, -40.0), voxel_size_mm=(1.0, 1.0, 2.0), shape_zyx=(40, 80, 80))
    ref = rasterise({"A": [c for z in zs for c in (circ(20, z), circ(10, z))]}, g)["A"]
    cl = [c for z in zs for c in (circ(20, z), circ(10, z + dz))]
    with warnings.catch_warnings():
        warnings.simplefilter("error", McprotonRuntimeWarning)
        m = rasterise({"A": cl}, g)["A"]
    assert np.array_equal(m, ref)
    assert contour_volumes_cm3({"A": cl}, 2.0)["A"] == pytest.approx(np.pi * 300 * 22 / 1000, rel=1e-3)


def test_float_noise_across_a_rounding_boundary_does_not_split_a_plane():
    """z = 12.3455 for the outline and 12.345500000000001 for its hole: one plane (before: 12.345 and 12.346)."""
    zs = 0.3455 + 2.0 * np.arange(-5, 6)
    cl = []
    for z in zs:
        zr = float(f"{z:.4f}")
        cl += [circle_contour(0, 0, 20, zr, n=128), circle_contour(0, 0, 10, zr + 2e-15, n=128)]
    g = SimpleNamespace(origin_mm=(-39.5, -39.5, zs[0] - 10), voxel_size_mm=(1.0, 1.0, 2.0), shape_zyx=(20, 80, 80))
    m = rasterise({"A": cl}, g)["A"]
    assert not m[:, 35:45, 35:45].any()   # the hole, on every slice
    assert m.sum() * 2e-3 == pytest.approx(np.pi * 300 * 22 / 1000, rel=0.02)
    assert contour_volumes_cm3({"A": cl}, 2.0)["A"] == pytest.approx(np.pi * 300 * 22 / 1000, rel=2e-3)


def test_planes_closer_than_any_ct_slice_are_named_and_left_out_of_the_slice_spacing(tmp_path):
    """Contours of one ROI 0.05 mm apart in z (more than a plane's 0.01 mm, less than any CT's slices): a warning
    names the ROI and where, and the step is not taken for the CT's slice spacing, so the other ROIs keep their
    slabs (the CTV has its voxels on a grid between the CT's slices)."""
    rois = {"Legs": [c for z in _ZS for c in (circle_contour(-60, 0, 30, z), circle_contour(60, 0, 30, z + 0.05))],
            "CTV": [circle_contour(0, 0, 10, z) for z in _ZS if abs(z) <= 8]}
    p = save(make_rtstruct(rois), tmp_path / "rs.dcm")
    with pytest.warns(McprotonRuntimeWarning) as rec:
        s = read_rtstruct(p)
    said = [str(w.message) for w in rec if "closer than 0.1 mm" in str(w.message)]
    assert len(said) == 1 and "1 ROI(s)" in said[0] and "'Legs' (21 pair(s), e.g. z = -20 and -19.95 mm)" in said[0]
    assert "export the structure set again" in said[0]
    assert image_slice_mm(s, 2.0) == 2.0
    m = rasterise(s, _grid(-39.0))["CTV"]
    assert m.any(), empty_mask_reason(s, "CTV", _grid(-39.0))
