"""RT Structure Set reading, rasterisation and the HDF5 dvh group."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from pydicom.uid import generate_uid

from mcproton._io.errors import DicomInputError
from mcproton._io.rtstruct import cumulative_dvh, load_rtstruct, rasterise, read_rtstruct, write_dvh_hdf5
from mcproton.geometry import box_phantom

from dicom_factories import circle_contour as _circle, make_rtstruct, rect_contour as _rect, save


def test_pydicom_test_rtstruct():
    from pydicom.data import get_testdata_file

    path = get_testdata_file("rtstruct.dcm")
    if path is None:
        pytest.skip("pydicom test data not installed")
    s = read_rtstruct(path)
    assert set(s.contours) == {"patient", "Isocenter 1", "Isocenter 2"}
    assert [c.shape for c in s.contours["patient"]] == [(5, 3), (6, 3), (6, 3)]
    assert s.contours["Isocenter 1"] == []          # POINT ROIs have no closed contours
    assert s.roi_types["patient"] == "EXTERNAL"
    assert s.frame_of_reference_uid == "1.2.826.0.1.3680043.8.498.2010020400001.2"
    # planes z = -200, -190, -180 mm; the contour is the rectangle x -200..200, y -150..150
    g = box_phantom("water", (500, 400, 50), (10, 10, 10), origin_mm=(-245, -195, -215))  # z -215..-175
    m = rasterise(s, g)["patient"]
    per_slice = m.sum(axis=(1, 2))
    # the planes' slab is (-205, -175]: z = -215 lies before it, -205 on its lower boundary (no plane's), -195 and
    # -185 on the boundaries between planes (the lower plane's), -175 on its upper boundary (the last plane's)
    assert per_slice.tolist() == [0, 0, 1200, 1200, 1200]
    ys, xs = np.nonzero(m[2])
    assert g.axis_mm("x")[xs].min() == -195 and g.axis_mm("x")[xs].max() == 195
    assert g.axis_mm("y")[ys].min() == -145 and g.axis_mm("y")[ys].max() == 145


def test_orientation_hole_and_area(tmp_path):
    z = [0.0, 2.0, 4.0]
    rois = {
        # ring: outer r 20, hole r 8, centred at (30, -10): the even-odd rule makes the inner contour a hole
        "ring": [c for zz in z for c in (_circle(30, -10, 20, zz), _circle(30, -10, 8, zz))],
        # an off-centre box x 10..20, y 40..60 on the middle plane only
        "box": [_rect(10, 20, 40, 60, 2.0)],
    }
    path = save(make_rtstruct(rois, points={"iso": (0, 0, 0)}), tmp_path / "RS.dcm")
    contours = load_rtstruct(path)
    assert set(contours) == {"ring", "box", "iso"} and contours["iso"] == []
    g = box_phantom("water", (120, 160, 10), (0.5, 0.5, 2.0), origin_mm=(-29.75, -79.75, -2.0))  # z -2..6
    m = rasterise(contours, g)
    ring = m["ring"]
    assert ring.sum(axis=(1, 2)).astype(bool).tolist() == [False, True, True, True, False]
    area = ring[2].sum() * 0.25
    assert area == pytest.approx(np.pi * (20**2 - 8**2), rel=0.02)
    x, y = g.axis_mm("x"), g.axis_mm("y")
    j, i = np.nonzero(ring[2])
    assert np.mean(x[i]) == pytest.approx(30, abs=0.1) and np.mean(y[j]) == pytest.approx(-10, abs=0.1)
    assert not ring[2][np.argmin(np.abs(y + 10)), np.argmin(np.abs(x - 30))]  # the centre is in the hole
    box = m["box"]
    assert box.sum(axis=(1, 2)).tolist() == [0, 0, 20 * 40, 0, 0]
    j, i = np.nonzero(box[2])
    assert (x[i].min(), x[i].max(), y[j].min(), y[j].max()) == (10.25, 19.75, 40.25, 59.75)


def test_rasterise_grid_finer_than_planes():
    s = {"cyl": [_circle(0, 0, 10, zz) for zz in (0.0, 3.0, 6.0)]}
    g = box_phantom("water", (40, 40, 12), (1, 1, 1), origin_mm=(-19.5, -19.5, -2.5))   # z -2.5 .. 8.5
    per = rasterise(s, g)["cyl"].sum(axis=(1, 2))
    z = g.axis_mm("z")
    # the slab (-1.5, 7.5] of the planes 0, 3, 6 mm: 9 slices of 1 mm (z = -1.5 lies on its lower boundary)
    assert np.all(per[(z > -1.5) & (z <= 7.5)] > 0) and np.all(per[(z <= -1.5) | (z > 7.5)] == 0)


def test_errors(tmp_path):
    with pytest.raises(DicomInputError, match="does not exist"):
        load_rtstruct(tmp_path / "nope.dcm")
    tilted = _circle(0, 0, 10, 0.0)
    tilted[:, 2] = np.linspace(0, 5, len(tilted))
    with pytest.raises(DicomInputError, match="not axial"):
        rasterise({"t": [tilted]}, box_phantom("water", (40, 40, 10), 2.0))
    from dicom_factories import make_plan, spot_grid

    plan = save(make_plan([{"gantry": 0, "couch": 0, "iso": (0, 0, 0), "layers": [(100, spot_grid(1), [1.0])]}]),
                tmp_path / "plan.dcm")
    with pytest.raises(DicomInputError, match="not an RT Structure Set"):
        read_rtstruct(plan)


def test_dvh_hdf5(tmp_path):
    import h5py

    dose = np.zeros((2, 4, 5))
    dose[:, :, :] = np.arange(5)[None, None, :]            # 0..4 Gy along x
    masks = {"all": np.ones(dose.shape, bool), "hot": dose >= 3, "empty": np.zeros(dose.shape, bool)}
    d, v = cumulative_dvh(dose, masks["all"], n_bins=8, d_max=4.0)
    assert v[0] == 1.0 and v[-1] == pytest.approx(0.0)
    assert v[np.searchsorted(d, 2.0)] == pytest.approx(0.6, abs=0.21)
    p = tmp_path / "r.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("dose", data=dose)
    st = write_dvh_hdf5(p, dose, masks, 0.008, source="RS.dcm")
    assert st["hot"]["mean_gy"] == pytest.approx(3.5) and st["hot"]["volume_cm3"] == pytest.approx(16 * 0.008)
    assert st["empty"]["n_voxels"] == 0
    with h5py.File(p, "r") as f:
        assert set(f["dvh"]) == {"all", "hot", "empty"} and f["dvh"].attrs["rtstruct"] == "RS.dcm"
        vf = f["dvh/all/volume_fraction"][()]
        assert np.all(np.diff(vf) <= 0) and f["dvh/all"].attrs["max_gy"] == 4.0
        assert "dose" in f


def test_cli_writes_dvh_group(tmp_path, capsys):
    """[plan] rtstruct: the CLI adds one DVH per structure to the output HDF5."""
    import h5py

    from dicom_factories import PHANTOM_PATIENT, make_plan
    from mcproton.cli import main
    from mcproton._io.dicom_common import PHANTOM_STUDY
    from mcproton.dicom import write_ct_series

    for_uid = generate_uid()
    write_ct_series(np.zeros((10, 10, 10)), (4.0, 4.0, 4.0), (-18.0, -18.0, -18.0), tmp_path / "ct",
                    study=PHANTOM_STUDY.replace(frame_of_reference_uid=for_uid))
    cal = tmp_path / "cal"
    cal.mkdir()
    (cal / "hu_density.csv").write_text("HU,density_gcm3\n-1000,0.0012\n0,1.0\n1000,2.0\n")
    (cal / "hu_materials.csv").write_text("hu_lo,name,w_H,w_O\n-2000,water,0.111894,0.888106\n")
    save(make_plan([{"gantry": 0.0, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "layers": [(70.0, [(0.0, 0.0)], [1.0])]}],
                   frame_of_reference_uid=for_uid, **PHANTOM_PATIENT), tmp_path / "RP.dcm")
    # beam along +y from y = -20: "entrance" 0..8 mm deep, "outside" a column far off the beam
    rois = {"entrance": [_rect(-7, 7, -21, -11, z) for z in (-2.0, 2.0)],       # 4 x 2 x 2 voxels
            "outside": [_rect(11, 20, -20, 20, z) for z in (-14.0, -10.0)]}
    save(make_rtstruct(rois, for_uid=for_uid), tmp_path / "RS.dcm")
    (tmp_path / "run.toml").write_text('[run]\nprimaries = 400\nbatches = 2\n[phantom]\ntype = "ct"\nct_dir = "ct"\n'
                                       'calibration = "cal"\n[plan]\nrtplan = "RP.dcm"\nbeam_model = "dcpt_v2"\n'
                                       'rtstruct = "RS.dcm"\n[output]\nplot = false\n')
    out = tmp_path / "r.h5"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)   # same frame of reference: no warning
        assert main(["run", str(tmp_path / "run.toml"), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    with h5py.File(out, "r") as f:
        assert set(f["dvh"]) == {"entrance", "outside"}
        ent, far = f["dvh/entrance"].attrs, f["dvh/outside"].attrs
        assert ent["n_voxels"] == 4 * 2 * 2 and ent["mean_gy"] > 0
        assert far["mean_gy"] < 0.05 * ent["mean_gy"]
        assert f["dvh/entrance/volume_fraction"][0] == 1.0
        assert f["dvh"].attrs["dose_dataset"] == "dose" and f["dvh"].attrs["dose_to"] == "medium"
        assert f["dvh"].attrs["dose_type"] == "PHYSICAL" and "'dose' dataset" in f["dvh"].attrs["definition"]
    # output.dose_to = "water" (and an RBE for the RT Dose): the DVHs are of the physical dose to water, and say so
    # (before: their definition said "dose as the 'dose' dataset", the dose to medium); the RBE needs the RT Dose it
    # weights (without one it is refused: audit 27 "dead options", F3), the DVHs' dose_to does not
    out_w = tmp_path / "w.h5"
    assert main(["run", str(tmp_path / "run.toml"), "--out", str(out_w), "--quiet", "--set", 'output.dose_to="water"',
                 "--set", "output.rbe=1.1", "--rtdose", str(tmp_path / "w.dcm")]) == 0
    capsys.readouterr()
    with h5py.File(out_w, "r") as f:
        a = f["dvh"].attrs
        assert a["dose_dataset"] == "dose_to_water" and a["dose_to"] == "water" and a["dose_type"] == "PHYSICAL"
        assert "'dose_to_water' dataset" in a["definition"] and "'dose' dataset" not in a["definition"]


def _on_outline(poly, px, py, eps=1e-9):
    """Whether the points (px, py) lie on an edge of the closed polygon ``poly`` (within eps mm)."""
    out = np.zeros(px.shape, bool)
    for a, b in zip(poly, np.roll(poly, -1, axis=0)):
        ab = b - a
        s = np.clip(((px - a[0]) * ab[0] + (py - a[1]) * ab[1]) / max(float(ab @ ab), 1e-300), 0.0, 1.0)
        out |= np.hypot(px - a[0] - s * ab[0], py - a[1] - s * ab[1]) < eps
    return out


def test_scanline_fill_is_matplotlibs_point_in_path():
    """rasterise's scanline fill gives exactly matplotlib's Path.contains_points (the rule it used before) at
    every point off the polygon's outline, also for vertices and edges through grid points and self-intersecting
    polygons.  (On the outline matplotlib depends on the contour's direction; the fill does not:
    test_a_contour_and_its_reverse_give_the_same_mask.)"""
    from matplotlib.path import Path as MplPath

    from mcproton._io.rtstruct import _polygon_mask

    rng = np.random.default_rng(7)
    xs, ys = np.arange(-1, 7.01, 0.5), np.arange(-1.5, 7.01, 0.25)
    gx, gy = np.meshgrid(xs, ys)
    pts = np.column_stack([gx.ravel(), gy.ravel()])
    n_inside = n_on = 0
    for trial in range(150):
        n = int(rng.integers(3, 30))
        if trial % 3 == 0:    # vertices on grid points: edges through grid points, horizontal, vertical edges
            poly = rng.integers(0, 12, size=(n, 2)).astype(float) * 0.5
        elif trial % 3 == 1:  # star-shaped
            ang = np.sort(rng.uniform(0, 2 * np.pi, n))
            poly = 3 + rng.uniform(1, 5, n)[:, None] * np.column_stack([np.cos(ang), np.sin(ang)])
        else:                 # self-intersecting
            poly = rng.uniform(-1, 7, size=(n, 2))
        ref = MplPath(poly).contains_points(pts).reshape(ys.size, xs.size)
        got = _polygon_mask(poly, xs, ys)
        off = ~_on_outline(poly, gx, gy)
        n_on += int((~off).sum())
        assert np.array_equal(got[off], ref[off]), f"polygon {trial}: {np.count_nonzero(got != ref)} points differ"
        n_inside += int(ref.sum())
    assert n_inside > 10_000 and n_on > 1000   # the comparison is not between empty masks; outlines through points


def test_contour_data_fast_parse_and_cache(tmp_path):
    """ContourData parsed from the raw bytes equals pydicom's conversion; a file read again is not parsed
    again (same object, read-only contours, masks kept) unless it changed."""
    import os

    import pydicom

    rois = {"ring": [_circle(3.3, -1.7, 20.123, zz) for zz in (0.0, 2.0)],
            "box": [_rect(10, 20, 40, 60, 2.0)]}
    path = save(make_rtstruct(rois), tmp_path / "RS.dcm")
    via_pydicom = read_rtstruct(pydicom.dcmread(path))          # a dataset: elements converted by pydicom
    s = read_rtstruct(path)
    for nm in rois:
        pairs = zip(s.contours[nm], via_pydicom.contours[nm], strict=True)
        assert all(np.array_equal(a, b) for a, b in pairs)
    assert read_rtstruct(path) is s and not s.contours["box"][0].flags.writeable
    g = box_phantom("water", (120, 160, 10), (0.5, 0.5, 2.0), origin_mm=(-29.75, -79.75, -2.0))
    m1 = rasterise(s, g, names=["box"])["box"]
    m1[:] = False                                               # a caller's copy: the kept mask is unchanged
    assert rasterise(s, g)["box"].sum() == 20 * 40 and np.array_equal(rasterise(s, g)["ring"],
                                                                       rasterise(s.contours, g)["ring"])
    save(make_rtstruct({"other": [_rect(0, 5, 0, 5, 0.0)]}), path)
    os.utime(path, ns=(1, 1))                                    # a new file, whatever the clock's resolution
    assert set(read_rtstruct(path).contours) == {"other"}


def test_a_structure_set_read_again_says_its_warnings_in_each_run_or_check(tmp_path):
    """In-process audit 25, F1: a file taken from the cache said nothing, so a second check or run of it in the
    same process (or in a worker forked from it) had no "both named" warning in its record.  Its warnings are kept
    with it: each run or check (a recording_warnings block) says them once, however often it reads the file;
    outside one they are said when the file is parsed.  What was said before a refusal is still said."""
    from mcproton._io.errors import McprotonRuntimeWarning, recording_warnings

    ds = make_rtstruct({"PTV": [_rect(-8, 8, -8, 8, 0.0)], "CTV": [_rect(-4, 4, -4, 4, 0.0)]})
    ds.StructureSetROISequence[1].ROIName = "PTV"
    p = save(ds, tmp_path / "RS_dup.dcm")
    blocks = []
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        for _ in range(2):
            with recording_warnings() as said:
                read_rtstruct(p)
                read_rtstruct(p)   # the check reads it three times: said once
            blocks.append(said)
        n_shown = len(shown)
        read_rtstruct(p)           # outside a run or check: said when parsed, not again
    assert len(blocks[0]) == 1 and "ROIs 1 and 2 are both named 'PTV'" in blocks[0][0], blocks
    assert blocks[1] == blocks[0] and n_shown == 2 and len(shown) == 2, [str(w.message) for w in shown]
    ds.ROIContourSequence[1].ReferencedROINumber = 9
    with pytest.warns(McprotonRuntimeWarning, match="both named 'PTV'"), pytest.raises(DicomInputError):
        read_rtstruct(save(ds, tmp_path / "RS_dup_refused.dcm"))


def _two_roi_struct(tmp_path):
    """An RT Struct with a target box (ROI 1, x -20..-10) and an organ box (ROI 2, x 10..20) on three planes."""
    rois = {"PTV": [_rect(-20, -10, -5, 5, z) for z in (0.0, 2.0, 4.0)],
            "Brainstem": [_rect(10, 20, -5, 5, z) for z in (0.0, 2.0, 4.0)]}
    ds = make_rtstruct(rois)
    ds.RTROIObservationsSequence[0].RTROIInterpretedType = "PTV"
    return ds


def test_two_rois_with_one_roi_number_are_refused(tmp_path):
    """Two StructureSetROISequence items with one ROINumber (a merge of structure sets, a hand edit): the contours
    are referenced by number, so which belong to which ROI is unknown.  Before: the first ROI vanished and the
    second got both ROIs' contours (the organ's DVH held the target, typed ORGAN): a plausible, wrong DVH."""
    ds = _two_roi_struct(tmp_path)
    ds.StructureSetROISequence[1].ROINumber = 1
    ds.ROIContourSequence[1].ReferencedROINumber = 1
    ds.RTROIObservationsSequence[1].ReferencedROINumber = 1
    with pytest.raises(DicomInputError,
                       match=r"ROIs 'PTV' and 'Brainstem' share ROINumber \(3006,0022\) 1 .*re-export"):
        read_rtstruct(save(ds, tmp_path / "RS_dup_number.dcm"))


def test_an_roi_with_two_contour_items_is_refused(tmp_path):
    """Two ROIContourSequence items referring to one ROI: before, the contours of both went to it (the even-odd
    rule cutting holes where they overlap) and the other ROI silently had none (0 voxels, no DVH)."""
    ds = _two_roi_struct(tmp_path)
    ds.ROIContourSequence[1].ReferencedROINumber = 1
    with pytest.raises(DicomInputError, match=r"ROI 1 \('PTV'\) is referred to by 2 items of the "
                                              r"ROIContourSequence \(3006,0039\)"):
        read_rtstruct(save(ds, tmp_path / "RS_twice.dcm"))


def test_duplicate_roi_names_stay_apart(tmp_path):
    """Two ROIs of one name keep their own contours under distinct names, also when the renamed one's new name is
    taken by a third ROI (before: 'PTV' (ROI 3) became 'PTV_3'... and a later 'PTV_3' took its contours)."""
    rois = {"PTV": [_rect(-20, -10, -5, 5, 0.0)], "PTV_3": [_rect(10, 20, -5, 5, 0.0)],
            "other": [_rect(30, 40, -5, 5, 0.0)]}
    ds = make_rtstruct(rois)
    ds.StructureSetROISequence[1].ROINumber, ds.ROIContourSequence[1].ReferencedROINumber = 7, 7
    ds.RTROIObservationsSequence[1].ReferencedROINumber = 7
    ds.StructureSetROISequence[2].ROIName = "PTV"          # ROI 3: a second 'PTV'
    s = read_rtstruct(save(ds, tmp_path / "RS_names.dcm"))
    assert len(s.contours) == 3 and all(len(c) == 1 for c in s.contours.values())
    assert s.contours["PTV"][0][0, 0] == -20 and s.contours["PTV_3"][0][0, 0] == 10
    (renamed,) = set(s.contours) - {"PTV", "PTV_3"}
    assert s.contours[renamed][0][0, 0] == 30 and s.roi_numbers[renamed] == 3


@pytest.mark.parametrize("spacing_mm", [3.0, 1.0])
def test_each_grid_slice_on_a_slab_boundary_counts_once(spacing_mm):
    """A structure's contour planes z_0 .. z_n (spacing p) stand for the slab from z_0 - p/2 to z_n + p/2 (p = 3 mm,
    11 planes: 33 mm).  A grid slice whose centre lies on a boundary between two planes goes to one of them, so
    the slab must be half-open at its ends too: on any grid with a spacing that divides 33 mm it holds exactly
    33 mm of slices, whatever the grid's offset.  Closed ends gave 36 mm (+9 %, one slice too many) on the 3 mm grid
    whose centres lie halfway between the planes, and two slices to a one-plane structure midway between two."""
    s = {"b": [_rect(-10, 10, -10, 10, z) for z in np.arange(0.0, 31.0, 3.0)], "one": [_rect(-10, 10, -10, 10, 5.0)]}
    counts = {}
    for off in np.arange(0.0, spacing_mm, 0.25):
        g = box_phantom("water", (39.0, 39.0, 60.0), (3.0, 3.0, spacing_mm),   # z from -12 + off, 60 mm
                        origin_mm=(-18.0, -18.0, -12.0 + off))
        m = rasterise(s, g)
        counts[off] = m["b"].any(axis=(1, 2)).sum() * spacing_mm
        # one plane: the CT slice it was drawn on (3 mm, the plane spacing of "b"), however the grid lies
        assert m["one"].any(axis=(1, 2)).sum() * spacing_mm == 3.0, off
    assert set(counts.values()) == {33.0}, counts


def test_a_contour_and_its_reverse_give_the_same_mask():
    """The mask does not depend on the direction a contour is drawn in.  matplotlib's point_in_path (the rule used
    before) counts a point on a vertical edge inside for a counter-clockwise contour and outside for a clockwise
    one: the 10 x 10 mm square with its sides on grid points got 11 columns one way and 9 the other (on APTG
    plan03, RayStation's External with its left side on a column of dose voxel centres: 8657 cm3 as exported,
    8573 cm3 reversed).  Now each axis is half-open, (lower, upper] as in z: 10 columns and 10 rows."""
    from mcproton._io.rtstruct import _polygon_mask

    xs = ys = np.arange(-2.0, 13.0)
    square = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    for poly in (square, square[::-1], np.roll(square, 1, axis=0)):
        m = _polygon_mask(poly, xs, ys)
        assert m.sum() == 100 and m.any(axis=0).sum() == 10 and m.any(axis=1).sum() == 10
        assert m[ys == 10.0, xs == 10.0].all() and not m[ys == 0.0].any() and not m[:, xs == 0.0].any()
    rng = np.random.default_rng(3)
    for _ in range(50):   # vertices on grid points (edges through grid points) and random ones
        n = int(rng.integers(3, 20))
        poly = rng.integers(0, 11, size=(n, 2)).astype(float) if _ % 2 else rng.uniform(0, 10, size=(n, 2))
        assert np.array_equal(_polygon_mask(poly, xs, ys), _polygon_mask(poly[::-1], xs, ys))


def _typed_struct(tmp_path, types: dict[str, str], geometric: dict[str, str] | None = None, empty=()):
    """Three ROIs of closed squares on 3 planes, typed by ``types``; ``geometric``: ROI -> ContourGeometricType of
    all its contours; ``empty``: ROIs whose ContourSequence is emptied."""
    sq = [_rect(-10, 10, -10, 10, z) for z in (0.0, 2.0, 4.0)]
    ds = make_rtstruct({"BODY": sq, "CTV": sq, "Mark": sq})
    for item, obs in zip(ds.ROIContourSequence, ds.RTROIObservationsSequence):
        nm = ds.StructureSetROISequence[int(item.ReferencedROINumber) - 1].ROIName
        obs.RTROIInterpretedType = types.get(nm, "ORGAN")
        for c in item.ContourSequence:
            c.ContourGeometricType = (geometric or {}).get(nm, "CLOSED_PLANAR")
        if nm in empty:
            item.ContourSequence = []
    return save(ds, tmp_path / f"rs_{len(list(tmp_path.glob('rs_*')))}.dcm")


def test_a_target_or_external_roi_without_closed_contours_is_warned_about(tmp_path):
    """A CTV whose contours are all OPEN_PLANAR got an empty DVH without a word; an EXTERNAL ROI with an empty
    ContourSequence was reported as "no EXTERNAL / BODY ROI".  Each is named when the structure set is read (for the
    DVH, the body outline and the check alike); a MARKER of points or an ORGAN without contours is not."""
    from mcproton._io.errors import McprotonRuntimeWarning

    p = _typed_struct(tmp_path, {"BODY": "EXTERNAL", "CTV": "CTV", "Mark": "MARKER"},
                      {"CTV": "OPEN_PLANAR", "Mark": "POINT"}, empty=("BODY",))
    with pytest.warns(McprotonRuntimeWarning) as rec:
        s = read_rtstruct(p)
    said = [str(w.message) for w in rec if issubclass(w.category, McprotonRuntimeWarning)]
    assert said == [f"{p}: ROI 'BODY' is EXTERNAL but has no contours, so it cannot be the body outline; check the "
                    "structure set (re-export it with the ROI's contours)",
                    f"{p}: ROI 'CTV' is CTV but has only 3 OPEN_PLANAR contour(s), no closed one (CLOSED_PLANAR or "
                    "CLOSEDPLANAR_XOR) of 3 or more points, so it has no volume: its DVH is empty and it gets no "
                    "target metrics (D50, the prescription check); check the structure set (re-export it with the "
                    "ROI's contours)"], said
    assert s.contours["CTV"] == [] and s.contours["BODY"] == [] and s.contours["Mark"] == []
    p2 = _typed_struct(tmp_path, {"BODY": "EXTERNAL", "CTV": "PTV", "Mark": "ORGAN"}, {"Mark": "POINT"},
                       empty=("Mark",))
    with warnings.catch_warnings():
        warnings.simplefilter("error", McprotonRuntimeWarning)
        assert len(read_rtstruct(p2).contours["CTV"]) == 3


def test_an_empty_external_roi_is_not_called_missing(tmp_path):
    """The run's body outline falls back to the CT; its source no longer says the RT Struct has no EXTERNAL ROI."""
    from mcproton.body import body_outline_for
    from mcproton.config import build_geometry
    from mcproton.dicom import write_ct_series

    hu = np.full((3, 12, 12), -1000.0)
    hu[:, 3:9, 3:9] = 0.0
    write_ct_series(hu, (2.0, 2.0, 2.0), (-11.0, -11.0, 0.0), tmp_path / "ct")
    cfg = {"phantom": {"type": "ct", "ct_dir": str(tmp_path / "ct")},
           "plan": {"rtstruct": str(_typed_struct(tmp_path, {"BODY": "EXTERNAL"}, empty=("BODY",)))}}
    with pytest.warns(UserWarning, match="ROI 'BODY' is EXTERNAL but has no contours"):
        o = body_outline_for(cfg, build_geometry(cfg))
    assert o.kind == "auto" and o.source.endswith("(the RT Struct has no EXTERNAL / BODY ROI with contours)"), o.source


def test_dvh_group_names_unique_for_any_roi_names(tmp_path):
    """ROI names that meet as HDF5 names ("A/B" and "A_B", ".", "..", empty, very long, non-ASCII) each get their
    own subgroup, the ROI's name in its attribute ``name``, and read_dvh_hdf5 finds each by that name.  Before, h5py
    failed with "name already exists" after the whole Monte Carlo and no result was written (structure audit F5)."""
    import h5py

    from mcproton._io.rtstruct import dvh_group_keys, read_dvh_hdf5

    names = ["Optic/Chiasm", "Optic_Chiasm", "Optic_Chiasm_2", ".", "..", "", "unnamed", "x" * 300, "x" * 301,
             "Cochlée_G"]
    keys = dvh_group_keys(names)
    assert len(set(keys.values())) == len(names) and keys["Optic_Chiasm"] == "Optic_Chiasm"
    assert keys["Optic/Chiasm"] == "Optic_Chiasm_3" and keys["Cochlée_G"] == "Cochlée_G"   # a clean name keeps it
    assert all("/" not in k and k not in (".", "..", "") and len(k) <= 130 for k in keys.values())
    dose = np.arange(24, dtype=float).reshape(2, 3, 4)
    masks = {nm: dose >= i for i, nm in enumerate(names)}
    p = tmp_path / "r.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("dose", data=dose)
    st = write_dvh_hdf5(p, dose, masks, 0.001)
    back = read_dvh_hdf5(p)
    assert set(back) == set(names)
    for i, nm in enumerate(names):
        assert back[nm]["n_voxels"] == 24 - i == st[nm]["n_voxels"] and back[nm]["min_gy"] == i
        assert back[nm]["volume_fraction"][0] == 1.0


def test_empty_mask_reasons_and_hdf5_attribute(tmp_path):
    """An ROI without a voxel on the grid is told apart by why (structure audit F7): no contours, only open ones,
    contours outside the grid, or between the voxel centres; the HDF5 DVH of such an ROI says it."""
    import h5py

    from mcproton._io.rtstruct import empty_mask_reason

    ds = make_rtstruct({"none": [], "far": [_rect(500, 520, 500, 520, 0.0)], "tiny": [_rect(0.2, 0.8, 0.2, 0.8, 0.0)],
                        "open": [_rect(-8, 8, -8, 8, 0.0)], "box": [_rect(-8, 8, -8, 8, 0.0)]})
    ds.ROIContourSequence[3].ContourSequence[0].ContourGeometricType = "OPEN_PLANAR"
    s = read_rtstruct(ds)
    g = box_phantom("water", (40, 40, 10), 2.0)   # voxel centres at odd mm: none inside 0.2..0.8 mm
    m = rasterise(s, g)
    why = {nm: empty_mask_reason(s, nm, g) for nm in m if not m[nm].any()}
    assert set(why) == {"none", "far", "tiny", "open"}
    assert why["none"].startswith("has no closed contours (no contours at all)")
    assert why["open"].startswith("has no closed contours (only 1 OPEN_PLANAR)")
    assert why["far"] == "has its contours outside the dose grid"
    assert why["tiny"].startswith("has no voxel centre inside its contours")
    p = tmp_path / "r.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("dose", data=np.ones(g.shape_zyx))
    write_dvh_hdf5(p, np.ones(g.shape_zyx), m, 0.008, empty_reasons=why)
    with h5py.File(p, "r") as f:
        assert f["dvh/far"].attrs["empty_reason"] == why["far"] and "empty_reason" not in f["dvh/box"].attrs


def test_duplicate_roi_names_warn_naming_both_numbers():
    """A second ROI of a name already taken is kept under a new name, with a warning naming both ROI numbers and
    that name (structure audit F8; before: renamed silently)."""
    ds = make_rtstruct({"PTV": [_rect(-8, 8, -8, 8, 0.0)], "CTV": [_rect(-4, 4, -4, 4, 0.0)]})
    ds.StructureSetROISequence[1].ROIName = "PTV"
    with pytest.warns(RuntimeWarning, match=r"ROIs 1 and 2 are both named 'PTV'; .*ROI 2 is called 'PTV_2'"):
        s = read_rtstruct(ds)
    assert s.roi_numbers == {"PTV": 1, "PTV_2": 2}


def test_overlapping_contours_warn_nested_ones_do_not():
    """Two contours of one plane that cross: the even-odd rule leaves their overlap out (kept as before), with a
    warning naming the ROI and the plane (structure audit F9); a contour inside another (a hole) gives none."""
    g = box_phantom("water", (60, 60, 10), 1.0)
    cross = {"Overlap2": [_circle(-4, 0, 8, 0.5), _circle(4, 0, 8, 0.5)]}
    with pytest.warns(RuntimeWarning, match=r"structure 'Overlap2': two contours overlap .* \(z = 0.5 mm\)"):
        m = rasterise(cross, g)["Overlap2"]
    assert not m[g.shape_zyx[0] // 2, 30, 30]   # the overlap is a hole (even-odd, unchanged)
    ring = {"ring": [_circle(0, 0, 15, 0.5), _circle(0, 0, 6, 0.5)[::-1]], "two": [_circle(-10, 0, 4, 0.5),
                                                                                  _circle(10, 0, 4, 0.5)]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = rasterise(ring, g)
    assert m["ring"].any() and not m["ring"][g.shape_zyx[0] // 2, 30, 30]


def test_run_writes_dvh_of_rois_whose_names_meet_in_hdf5(tmp_path, capsys):
    """`mcproton run` with ROIs "Optic/Chiasm", "Optic_Chiasm" and "." (one HDF5 name before): the run writes its
    HDF5 with a DVH for each, found by ROI name (structure audit F5; before: "name already exists" after the
    transport, no result); an ROI off the grid says why it has no voxel (F7)."""
    from dicom_factories import PHANTOM_PATIENT, make_plan
    from mcproton._io.dicom_common import PHANTOM_STUDY
    from mcproton._io.rtstruct import read_dvh_hdf5
    from mcproton.cli import main
    from mcproton.dicom import write_ct_series

    for_uid = generate_uid()
    write_ct_series(np.zeros((12, 12, 12)), (4.0, 4.0, 4.0), (-22.0, -22.0, -22.0), tmp_path / "ct",
                    study=PHANTOM_STUDY.replace(frame_of_reference_uid=for_uid))
    save(make_plan([{"gantry": 0.0, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "layers": [(70.0, [(0.0, 0.0)], [1.0])]}],
                   frame_of_reference_uid=for_uid, **PHANTOM_PATIENT), tmp_path / "RP.dcm")
    rois = {"Optic/Chiasm": [_rect(-7, 7, -7, 7, z) for z in (-2.0, 2.0)],
            "Optic_Chiasm": [_rect(-7, 1, -7, 1, z) for z in (-2.0, 2.0)],
            ".": [_rect(-3, 3, -3, 3, 2.0)], "far": [_rect(300, 310, 300, 310, 2.0)]}
    save(make_rtstruct(rois, for_uid=for_uid), tmp_path / "RS.dcm")
    (tmp_path / "run.toml").write_text('[run]\nprimaries = 200\nbatches = 2\n[phantom]\ntype = "ct"\nct_dir = "ct"\n'
                                       '[plan]\nrtplan = "RP.dcm"\nbeam_model = "dcpt_v2"\nrtstruct = "RS.dcm"\n'
                                       '[output]\nplot = false\n')
    out = tmp_path / "r.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["run", str(tmp_path / "run.toml"), "--out", str(out), "--quiet", "--no-checkpoint"]) == 0
    capsys.readouterr()
    d = read_dvh_hdf5(out)
    assert set(d) == set(rois)
    assert d["Optic/Chiasm"]["n_voxels"] > d["Optic_Chiasm"]["n_voxels"] > d["."]["n_voxels"] > 0
    assert d["Optic_Chiasm"]["group"] == "Optic_Chiasm" and d["far"]["empty_reason"].endswith("outside the dose grid")


@pytest.mark.parametrize("iop", [[-1, 0, 0, 0, 1, 0], [-1, 0, 0, 0, -1, 0]], ids=["FFS", "HFP"])
def test_a_contour_on_voxel_centres_gives_the_same_mask_on_a_ct_stored_flipped(tmp_path, iop):
    """Grids audit 2026-12-06, F3: the same CT stored HFS and with flipped rows (FFS) or rows and columns (HFP) has
    the same grid, but the flipped copy's origin is IPP - (n - 1) x spacing with float noise (-23.369999999999997
    for -23.37, 11.109999999999992 for 11.11).  The rule on an outline, (lower, upper] per axis, had a 1e-6 mm
    tolerance in z only, so a box with its sides on voxel centres got a column (and a row) more or less on the
    flipped copy.  Now x and y have z's tolerance: the same mask, the (lower, upper] columns and rows exactly."""
    import pydicom

    from mcproton._io.ct import load_ct_series, write_ct_series

    vs, org = (0.9, 1.3, 2.5), (-23.37, 11.11, -40.13)
    hu = np.zeros((2, 43, 67), np.int16)
    write_ct_series(hu, vs, org, tmp_path / "hfs")
    for i, p in enumerate(write_ct_series(hu, vs, org, tmp_path / "flip")):
        ds = pydicom.dcmread(p)
        sx, sy = iop[0], iop[4]
        ipp = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [ipp[0] + 66 * vs[0] * (sx < 0), ipp[1] + 42 * vs[1] * (sy < 0), ipp[2]]
        ds.ImageOrientationPatient = iop
        ds.PixelData = np.ascontiguousarray(ds.pixel_array[::sy, ::sx]).astype("<i2").tobytes()
        ds.save_as(p)
    hfs, flip = load_ct_series(tmp_path / "hfs"), load_ct_series(tmp_path / "flip")
    assert hfs.origin_mm != flip.origin_mm and np.allclose(hfs.origin_mm, flip.origin_mm, atol=1e-9)   # the noise
    x0, x1 = (round(org[0] + i * vs[0], 6) for i in (10, 29))   # sides on the centres of columns 10 and 29
    y0, y1 = (round(org[1] + j * vs[1], 6) for j in (5, 20))    # and of rows 5 and 20
    s = {"EDGE": [_rect(x0, x1, y0, y1, z) for z in (-40.13, -37.63)]}
    a, b = rasterise(s, hfs)["EDGE"], rasterise(s, flip)["EDGE"]
    assert np.array_equal(a, b), f"{int((a ^ b).sum())} voxels differ"
    cols, rows = np.flatnonzero(a.any(axis=(0, 1))), np.flatnonzero(a.any(axis=(0, 2)))
    assert (cols.min(), cols.max(), rows.min(), rows.max()) == (11, 29, 6, 20)


def test_contour_volumes_are_polygon_areas_times_plane_spacing_with_holes():
    """Infant audit 2026-12-06, F3: the contour volume (what a planning system calls the structure's volume) is the
    polygon areas x the plane spacing, a contour inside another a hole (the masks' even-odd rule); a single plane
    takes the CT's slice thickness (the other ROIs' plane spacing, 2 mm), as its mask does."""
    from mcproton._io.rtstruct import contour_volumes_cm3

    vols = contour_volumes_cm3({"box": [_rect(-10, 10, -10, 10, z) for z in (0.0, 2.0, 4.0, 6.0, 8.0)],
                                "one": [_rect(-10, 10, -10, 10, 0.0)],
                                "ring": [c for z in (0.0, 2.0) for c in (_rect(-10, 10, -10, 10, z),
                                                                         _rect(-5, 5, -5, 5, z))],
                                "none": []}, 3.0)
    assert vols == pytest.approx({"box": 400 * 5 * 2 / 1e3, "one": 400 * 2 / 1e3, "ring": 300 * 2 * 2 / 1e3})
    g = box_phantom("water", (30, 30, 15), 0.5)   # a fine grid (z 0-15 mm): the mask's volume is the contour's
    ring = {"ring": [c for z in np.arange(4.0, 10.1, 1.0) for c in (_circle(0, 0, 12, z), _circle(0, 0, 5, z))]}
    m = rasterise(ring, g)["ring"]
    assert np.count_nonzero(m) * 0.125e-3 == pytest.approx(contour_volumes_cm3(ring, 0.5)["ring"], rel=0.03)


@pytest.mark.parametrize("grid_dz", [1.0, 3.0])
def test_a_single_plane_structure_takes_the_ct_slice_not_the_grid_slice(grid_dz):
    """I/O review 2026-12-06, F3: a structure drawn on one slice of a 3 mm CT took the dose grid's slice thickness,
    mask and contour volume alike: 1/3 of the planning system's volume on a 1 mm grid, unseen by the mask/contour
    check.  Now both take the CT slice (the plane spacing of the structure set's other ROIs, 3 mm): a 20 x 20 mm
    square on one plane is 1.2 cm3 on a 1 mm and a 3 mm grid.  Without another ROI to give the CT's slices, the
    grid's thickness is assumed (as before)."""
    from types import SimpleNamespace

    from mcproton._io.rtstruct import contour_volumes_cm3

    body = [_rect(-19, 19, -19, 19, z) for z in (-6.0, -3.0, 0.0, 3.0, 6.0)]
    s = {"one_plane": [_rect(-10, 10, -10, 10, 0.0)], "body": body}
    n = int(round(30 / grid_dz))
    g = SimpleNamespace(origin_mm=(-20, -20, -15 + grid_dz / 2), voxel_size_mm=(1.0, 1.0, grid_dz),
                        shape_zyx=(n, 41, 41))
    m = rasterise(s, g)["one_plane"]
    assert m.sum() * grid_dz / 1000 == pytest.approx(1.2)
    assert contour_volumes_cm3(s, grid_dz)["one_plane"] == pytest.approx(1.2)
    alone = {"one_plane": s["one_plane"]}
    assert contour_volumes_cm3(alone, grid_dz)["one_plane"] == pytest.approx(0.4 * grid_dz)
    assert rasterise(alone, g)["one_plane"].sum() * grid_dz / 1000 == pytest.approx(0.4 * grid_dz)


def test_run_dvh_of_tiny_structures_flags_few_voxels_empty_rois_and_contour_volume(tmp_path):
    """Infant audit 2026-12-06, F3: `mcproton run`'s HDF5 DVH of a lens-sized structure on a 4 mm grid had no
    few-voxel flag, an ROI with no voxel only an HDF5 attribute, and no contour volume.  Now: ``few_voxels`` and
    ``contour_volume_cm3`` per ROI, and one console warning each for the empty ROIs, the few-voxel ROIs and a mask
    volume outside 0.8-1.25 x the contour volume (naming the ROI, both volumes and the grid)."""
    from types import SimpleNamespace

    import h5py

    from mcproton._io.rtstruct import add_dvh_to_result, read_dvh_hdf5

    g = box_phantom("water", (20, 20, 20), 4.0)   # voxel centres x, y at 0, +-4, +-8 mm; z at 2, 6, ... 18 mm
    rois = {"big": [_rect(-9.9, 9.9, -9.9, 9.9, z) for z in np.arange(0.5, 20.0, 1.0)],   # 125 voxels, 1.02 x
            "lens": [_rect(-3.5, 2.5, -3.5, 2.5, z) for z in (5.0, 6.0, 7.0)],   # 1 voxel of 64 mm3; 0.108 cm3
            "dot": [_rect(0.2, 0.8, 0.2, 0.8, 6.0)]}
    save(make_rtstruct(rois), tmp_path / "RS.dcm")
    p = tmp_path / "r.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("dose", data=np.ones(g.shape_zyx))
    res = SimpleNamespace(geometry=g, dose_gy_zyx=np.ones(g.shape_zyx))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        add_dvh_to_result(res, p, tmp_path / "RS.dcm")
    msgs = [str(x.message) for x in w]
    d = read_dvh_hdf5(p)
    assert d["lens"]["n_voxels"] == 1 and d["lens"]["few_voxels"] and not d["big"]["few_voxels"]
    assert d["lens"]["contour_volume_cm3"] == pytest.approx(6 * 6 * 3 * 1 / 1e3)
    assert d["big"]["contour_volume_cm3"] == pytest.approx(19.8 * 19.8 * 20 / 1e3)
    assert d["big"]["mask_to_contour_volume"] == pytest.approx(8.0 / 7.8408)
    assert any("ROI 'dot' has no voxel on the dose grid (4 x 4 x 4 mm)" in m for m in msgs), msgs
    assert any("fewer than 30 voxels" in m and "'lens' (1)" in m and "'big'" not in m for m in msgs), msgs
    assert any("differs from its contour volume" in m and "'lens' mask 0.064 cm3, contour 0.108 cm3 (0.59)" in m
               and "4 x 4 x 4 mm" in m and "'big'" not in m for m in msgs), msgs


def test_rois_without_a_voxel_for_one_reason_are_named_in_one_phrase():
    """Audit 18b F10: seven markers smaller than a voxel made a note (mcproton check) of seven copies of the same
    170-character explanation, and `mcproton run` warned once per ROI.  Now each reason is given once with the ROIs
    it applies to, in one note and one warning."""
    from mcproton._check.api import _left_out_notes
    from mcproton._io.errors import recording_warnings
    from mcproton._io.rtstruct import warn_dvh_volumes

    small = ("has no voxel centre inside its contours (smaller than a voxel, or between voxel centres; a voxel "
             "belongs to a structure when its centre lies inside)")
    why = {f"M{i}": small for i in range(1, 8)} | {"far": "has its contours outside the dose grid"}
    masks = {nm: np.zeros((2, 2, 2), bool) for nm in why}
    (note,) = _left_out_notes(masks, {nm: "ORGAN" for nm in why}, why)
    assert note.count("no voxel centre inside") == 1, note
    assert "8 structure(s) are not in the structure table, having no voxel on the TPS dose grid: 'M1', 'M2', 'M3', " \
           "'M4', 'M5', 'M6' and 'M7' have no voxel centre inside their contours (smaller than a voxel, or between " \
           "voxel centres; a voxel belongs to a structure when its centre lies inside); 'far' has its contours " \
           "outside the dose grid" == note, note
    with pytest.warns(UserWarning), recording_warnings() as said:
        warn_dvh_volumes({}, why, (4.0, 4.0, 4.0), "the dose grid")
    assert len(said) == 1 and said[0].startswith("8 ROI(s) have no voxel on the dose grid (4 x 4 x 4 mm): 'M1', "), said
    assert said[0].count("no voxel centre inside") == 1 and "they have no DVH" in said[0], said


def test_a_duplicate_is_never_renamed_onto_another_rois_name(tmp_path):
    """Strings audit 19, F2: ROIs 1 "PTV", 2 "PTV" and 3 "PTV_2": ROI 2 was renamed "PTV_2" (the name of ROI 3 in the
    file, whose DVH then held ROI 2's dose) and ROI 3 "PTV_2_3".  Now every ROI that has a name of its own keeps it,
    the renamed one gets a name no ROI of the file has, and the HDF5 DVH groups carry the ROI number; F6: a name
    holding "\\" (pydicom: two values) reads as the planning system shows it, not as a Python list."""
    import h5py

    ds = make_rtstruct({"PTV": [_rect(-8, 8, -8, 8, 0.0)], "CTV": [_rect(-4, 4, -4, 4, 0.0)],
                        "X": [_rect(-2, 2, -2, 2, 0.0)], "Y": [_rect(-1, 1, -1, 1, 0.0)]})
    ds.StructureSetROISequence[1].ROIName = "PTV"
    ds.StructureSetROISequence[2].ROIName = "PTV_2"
    ds.StructureSetROISequence[3].ROIName = "a\\b"
    with pytest.warns(RuntimeWarning, match=r"ROIs 1 and 2 are both named 'PTV'; .*ROI 2 is called 'PTV_1002'"):
        s = read_rtstruct(ds)
    assert s.roi_numbers == {"PTV": 1, "PTV_1002": 2, "PTV_2": 3, "a\\b": 4}
    g = box_phantom("water", (40, 40, 4), 1.0)
    p = tmp_path / "r.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("dose", data=np.ones(g.shape_zyx))
    write_dvh_hdf5(p, np.ones(g.shape_zyx), rasterise(s, g), 0.001, roi_numbers=s.roi_numbers)
    with h5py.File(p, "r") as f:
        assert {f["dvh"][k].attrs["name"]: int(f["dvh"][k].attrs["roi_number"]) for k in f["dvh"]} == s.roi_numbers
