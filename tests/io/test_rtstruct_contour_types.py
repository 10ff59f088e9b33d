"""ContourGeometricTypes and degenerate closed contours (dvhgeo audit 25, F2 and F3).

F2: CLOSEDPLANAR_XOR (DICOM PS3.3 C.8.8.6.1: closed contours combined by exclusive or) was taken as having no volume,
although the masks combine every plane's closed contours by that rule; a type DICOM does not define (a misspelt
"CLOSEDPLANAR") was left out without a word.  F3: one CLOSED_PLANAR contour of 1 or 2 points (a one-voxel island
of a segmentation turned into contours) refused the whole structure set, though it has no area."""
from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from mcproton._io.errors import DicomInputError, McprotonRuntimeWarning
from mcproton._io.rtstruct import contour_volumes_cm3, empty_mask_reason, rasterise, read_rtstruct

from dicom_factories import circle_contour, make_rtstruct, save

_G = SimpleNamespace(origin_mm=(-39.5, -39.5, -9.0), voxel_size_mm=(1.0, 1.0, 2.0), shape_zyx=(10, 80, 80))


def _ctv_and_brainstem(tmp_path, geometric: str, label: str):
    """A CTV (one circle on 3 planes) and a Brainstem annulus (outline r 8 and hole r 3 on 3 planes), every contour of
    type ``geometric``."""
    ds = make_rtstruct({"CTV": [circle_contour(0, 0, 10, z) for z in (-2, 0, 2)],
                        "Brainstem": [c for z in (-2, 0, 2)
                                      for c in (circle_contour(30, 0, 8, z), circle_contour(30, 0, 3, z))]})
    ds.RTROIObservationsSequence[0].RTROIInterpretedType = "CTV"
    for rc in ds.ROIContourSequence:
        for c in rc.ContourSequence:
            c.ContourGeometricType = geometric
    return save(ds, tmp_path / f"rs_{label}.dcm")


def _read_saying(p):
    """(the structure set read from ``p``, the McprotonRuntimeWarnings its reading gave)."""
    with pytest.warns(McprotonRuntimeWarning) as rec:
        s = read_rtstruct(p)
    return s, [str(w.message) for w in rec if issubclass(w.category, McprotonRuntimeWarning)]


def test_closedplanar_xor_contours_are_closed_contours(tmp_path):
    """CLOSEDPLANAR_XOR: the same masks and contour volumes as CLOSED_PLANAR (the annulus keeps its hole), no warning
    (before: the CTV warned of as having no volume, the Brainstem empty: "has no closed contours (only 6
    CLOSEDPLANAR_XOR)")."""
    closed = read_rtstruct(_ctv_and_brainstem(tmp_path, "CLOSED_PLANAR", "closed"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", McprotonRuntimeWarning)
        xor = read_rtstruct(_ctv_and_brainstem(tmp_path, "CLOSEDPLANAR_XOR", "xor"))
    assert xor.not_closed == {}
    a, b = rasterise(closed, _G), rasterise(xor, _G)
    for nm in ("CTV", "Brainstem"):
        assert b[nm].any() and np.array_equal(a[nm], b[nm]), nm
    assert not b["Brainstem"][4, 38:42, 68:72].any()   # the hole around (30, 0)
    assert contour_volumes_cm3(xor, 2.0) == pytest.approx(contour_volumes_cm3(closed, 2.0), rel=1e-12)


def test_a_contour_type_dicom_does_not_define_is_named(tmp_path):
    """A misspelt type ("CLOSEDPLANAR") on the Brainstem's contours: read, the contours left out, and a warning that
    names the type, the ROI and what to do; its empty mask says the type."""
    p = _ctv_and_brainstem(tmp_path, "CLOSED_PLANAR", "bad")
    import pydicom

    ds = pydicom.dcmread(p)
    for c in ds.ROIContourSequence[1].ContourSequence:
        c.ContourGeometricType = "CLOSEDPLANAR"
    p = save(ds, tmp_path / "rs_bad2.dcm")
    s, said = _read_saying(p)
    assert said == [f"{p}: ContourGeometricType (3006,0042) 'CLOSEDPLANAR' of 6 contour(s) of ROI(s) 'Brainstem' (6) "
                    "is not a type DICOM defines (POINT, OPEN_PLANAR, OPEN_NONPLANAR, CLOSED_PLANAR, "
                    "CLOSEDPLANAR_XOR): whether they are closed is unknown, so they are left out and add no volume to "
                    "their ROI (an ROI of only such contours has no voxel and no DVH); correct the type (a closed "
                    "contour is CLOSED_PLANAR) and export the structure set again"], said
    assert s.contours["Brainstem"] == [] and s.not_closed == {"Brainstem": {"CLOSEDPLANAR": 6}}
    assert empty_mask_reason(s, "Brainstem", _G) == "has no closed contours (only 6 CLOSEDPLANAR): no volume"
    assert len(s.contours["CTV"]) == 3


@pytest.mark.parametrize("npts", [1, 2])
def test_a_closed_contour_of_one_or_two_points_is_left_out_with_a_warning(tmp_path, npts):
    """A Cochlea of one CLOSED_PLANAR contour of 1 or 2 points beside a CTV: the structure set is read (before:
    refused, "ContourData needs >= 3 finite (x, y, z) points"), the contour left out and counted, one warning naming
    the ROI, the CTV unchanged."""
    rois = {"CTV": [circle_contour(0, 0, 10, z) for z in (-2, 0, 2)], "Cochlea": [circle_contour(30, 0, 1.5, 0)]}
    ref = read_rtstruct(save(make_rtstruct(rois), tmp_path / "rs_ref.dcm"))
    ds = make_rtstruct(rois)
    c = ds.ROIContourSequence[1].ContourSequence[0]
    c.ContourData, c.NumberOfContourPoints = c.ContourData[:3 * npts], npts
    p = save(ds, tmp_path / f"rs_{npts}.dcm")
    s, said = _read_saying(p)
    assert said == [f"{p}: 1 closed contour(s) of fewer than 3 points (a point or a line: no area, so no voxel and no "
                    "volume) left out of ROI(s) 'Cochlea' (1); the ROIs' other contours are read as they are (an "
                    "island of one or two voxels of a segmentation is lost: check the ROI in the planning system if "
                    "it matters)"], said
    assert s.contours["Cochlea"] == [] and s.not_closed == {"Cochlea": {"CLOSED_PLANAR of < 3 points": 1}}
    # review 2b, R7: not "has no closed contours (only 1 CLOSED_PLANAR of < 3 points)", as if one were there
    assert empty_mask_reason(s, "Cochlea", _G) == ("has no closed contour that encloses an area (only 1 CLOSED_PLANAR "
                                                   "contour(s) of fewer than 3 points): no volume")
    assert np.array_equal(rasterise(s, _G)["CTV"], rasterise(ref, _G)["CTV"])


def test_damaged_contour_data_is_still_refused(tmp_path):
    """Still refused: a closed contour without points, one whose values are not (x, y, z) triples, and one with a
    non-finite value (each a damaged file, not a degenerate contour)."""
    for label, data in (("none", []), ("pairs", ["1", "2", "0", "4"]), ("nan", ["1", "2", "nan"] * 3)):
        ds = make_rtstruct({"CTV": [circle_contour(0, 0, 10, 0)]})
        c = ds.ROIContourSequence[0].ContourSequence[0]
        c.ContourData = data
        del c.NumberOfContourPoints
        p = save(ds, tmp_path / f"rs_{label}.dcm")
        with pytest.raises(DicomInputError, match=r"ROI 'CTV' contour 0: ContourData needs >= 3 finite \(x, y, z\) "
                                                  f"points; got {len(data)} values"):
            read_rtstruct(p)
