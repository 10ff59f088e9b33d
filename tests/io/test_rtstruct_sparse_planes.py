"""An ROI drawn on scattered CT slices (intervertebral discs, fiducials, several small lesions in one ROI): each of
its contour planes stands for its own CT slice, and the slices between them stay empty (round-trip audit 23, F2:
the slab of a plane was half the ROI's OWN median plane spacing, so four one-slice discs 12 mm apart on a 3 mm CT
were read back as one 48 mm column, 4 x their volume, and the contour volume said the same)."""
from __future__ import annotations

import random
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from mcproton._io.rtstruct import (contour_volumes_cm3, empty_mask_reason, image_slice_mm, load_rtstruct_masks,
                                   rasterise, read_rtstruct)
from mcproton.geometry import box_phantom

from dicom_factories import make_rtstruct, rect_contour as _rect, save


def _write_ct_and_struct(tmp_path, g, masks):
    from mcproton.phantoms.dicom_export import write_phantom_ct, write_rtstruct

    ct = write_phantom_ct(g, tmp_path / "ct")
    return write_rtstruct(masks, g, ct, tmp_path / "rs.dcm", label="t")


def test_four_one_slice_discs_read_back_as_written(tmp_path):
    """The auditor's minimal case: four 1-slice 4 x 4-voxel discs on a 3 mm water box, 9 mm of gap between them,
    written by mcproton's RT Struct writer (the only ROI of the set) and read back: the same 64 voxels on the same 4
    slices (before: 256 voxels on slices 3-18) and a contour volume of 64 x 27 mm3 = 1.728 cm3 (before: 6.912).  The
    structure set's own references to the CT's slices (its ContourImageSequences) give the CT's 3 mm."""
    g = box_phantom("water", size_mm=(60, 60, 60), voxel_mm=(3, 3, 3))
    m = np.zeros(g.shape_zyx, bool)
    for z in (4, 8, 12, 16):
        m[z, 8:12, 8:12] = True
    path = _write_ct_and_struct(tmp_path, g, {"discs": m})
    rs = read_rtstruct(path)
    r = rasterise(rs, g)["discs"]
    assert np.flatnonzero(r.any(axis=(1, 2))).tolist() == [4, 8, 12, 16]
    assert np.array_equal(r, m)
    assert contour_volumes_cm3(rs, 3.0)["discs"] == pytest.approx(1.728)
    assert image_slice_mm(rs, 3.0) == pytest.approx(3.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.array_equal(load_rtstruct_masks(path, g, ["discs"])["discs"], m)


def test_scattered_planes_beside_an_roi_on_every_slice():
    """Without references to the CT's slices (contours as a dict) the CT's slice spacing is the structure set's
    plane spacing over all its ROIs: a body on every 3 mm slice gives it, and the discs' planes (12 mm apart) each
    take one 3 mm slice, on the CT's grid and on a finer one; the body (on every slice) is as before.  The contour
    volume is the discs' polygons x 3 mm."""
    body = [_rect(-29, 29, -29, 29, z) for z in np.arange(-30.0, 30.1, 3.0)]
    discs = [_rect(-6, 6, -6, 6, z) for z in (-18.0, -6.0, 6.0, 18.0)]
    s = {"body": body, "discs": discs}
    assert image_slice_mm(s, 1.0) == pytest.approx(3.0)
    for dz in (3.0, 1.0):
        n = int(round(66 / dz))
        g = SimpleNamespace(origin_mm=(-30.0, -30.0, -33 + dz / 2), voxel_size_mm=(1.0, 1.0, dz),
                            shape_zyx=(n, 61, 61))
        zs = g.origin_mm[2] + dz * np.arange(n)
        m = rasterise(s, g)
        on = zs[m["discs"].any(axis=(1, 2))]
        want = [z for z in zs if any(p - 1.5 < z - 1e-6 <= p + 1.5 for p in (-18.0, -6.0, 6.0, 18.0))]
        assert on.tolist() == pytest.approx(want)
        assert m["discs"].sum() * dz / 1000 == pytest.approx(4 * 12 * 12 * 3 / 1000, rel=0.2)
        assert zs[m["body"].any(axis=(1, 2))].tolist() == pytest.approx([z for z in zs if -31.5 < z - 1e-6 <= 31.5])
    assert contour_volumes_cm3(s, 1.0)["discs"] == pytest.approx(4 * 12 * 12 * 3 / 1000)
    assert contour_volumes_cm3(s, 1.0)["body"] == pytest.approx(58 * 58 * 63 / 1000)


def test_an_roi_alone_on_coarse_planes_is_not_thinned_by_a_finer_grid():
    """An ROI drawn on every slice of a 5 mm CT, alone in its structure set and without slice references, on a
    1 mm grid aligned with its planes: it fills its planes' 5 mm slabs as before (the grid is not taken for the CT:
    a dose grid finer than the CT would thin every ROI to a fifth)."""
    s = {"cube": [_rect(-10, 10, -10, 10, z) for z in (0.0, 5.0, 10.0, 15.0)]}
    g = box_phantom("water", (30, 30, 30), 1.0, origin_mm=(-14.5, -14.5, -5.5))
    m = rasterise(s, g)["cube"]
    zs = g.axis_mm("z")[m.any(axis=(1, 2))]
    assert zs.min() == pytest.approx(-1.5) and zs.max() == pytest.approx(17.5) and zs.size == 20   # (-2.5, 17.5]
    assert contour_volumes_cm3(s, 1.0)["cube"] == pytest.approx(20 * 20 * 20 / 1000)


def test_slice_references_out_of_z_order_are_not_used(tmp_path):
    """The CT's spacing is read from the structure set's list of the CT's slices only where that list runs along z
    (each contour's slice at its place in it, evenly): a list in another order gives nothing, and the structure set's
    plane spacing is used (a contiguous ROI keeps its slabs)."""
    g = box_phantom("water", size_mm=(30, 30, 30), voxel_mm=(3, 3, 3))
    m = np.zeros(g.shape_zyx, bool)
    m[2:8, 3:6, 3:6] = True   # 6 slices, every one
    path = _write_ct_and_struct(tmp_path, g, {"block": m})
    import pydicom

    ds = pydicom.dcmread(path)
    series = ds.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    items = list(series.ContourImageSequence)
    random.Random(3).shuffle(items)
    series.ContourImageSequence = items
    ds.save_as(tmp_path / "shuffled.dcm")
    rs = read_rtstruct(tmp_path / "shuffled.dcm")
    assert image_slice_mm(rs, 3.0) == pytest.approx(3.0)
    assert np.array_equal(rasterise(rs, g)["block"], m)


def test_a_disc_between_the_grid_slices_says_so(tmp_path):
    """A disc of one 1 mm CT slice on a 3 mm dose grid whose slice centres lie 1.5 mm from it has no voxel: the
    reason names its planes and the grid's slices (not "smaller than a voxel" alone)."""
    body = [_rect(-20, 20, -20, 20, z) for z in np.arange(-10.0, 10.1, 1.0)]
    s = {"body": body, "disc": [_rect(-6, 6, -6, 6, -4.0), _rect(-6, 6, -6, 6, 5.0)]}
    save(make_rtstruct(s), tmp_path / "RS.dcm")
    rs = read_rtstruct(tmp_path / "RS.dcm")
    g = SimpleNamespace(origin_mm=(-19.5, -19.5, -7.5), voxel_size_mm=(1.0, 1.0, 3.0), shape_zyx=(6, 40, 40))
    assert not rasterise(rs, g)["disc"].any()
    why = empty_mask_reason(rs, "disc", g)
    assert "between the grid's slice centres" in why and "1 mm" in why, why


def test_phantom_round_trip_every_roi_reads_back_as_its_label(tmp_path):
    """`mcproton phantom`'s own files at 3 mm (the head region of the 5-year-old): every ROI of its RT Struct,
    rasterised on its CT's grid, is its label voxel for voxel, the intervertebral discs (on scattered slices) too
    (before: 221 voxels for the discs' 65), and the EXTERNAL 'body' is the whole outline; each contour volume is the
    label's volume."""
    from mcproton.phantoms import make_head_phantom
    from mcproton.phantoms.dicom_export import export_phantom

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the labels thinner than a 3 mm voxel (said by the generator)
        g = make_head_phantom(5, 3.0, region="head")
        out = export_phantom(g, tmp_path / "ph", hdf5=False)
    rs = read_rtstruct(out["rtstruct"])
    masks = rasterise(rs, g)
    cv = contour_volumes_cm3(rs, 3.0)
    assert masks["intervertebral_disc"].any()
    for label, name in g.label_names.items():
        if name == "body" or name not in masks:
            continue
        want = g.labels_zyx == label
        assert np.array_equal(masks[name], want), (name, int(masks[name].sum()), int(want.sum()))
        assert cv[name] == pytest.approx(want.sum() * g.voxel_volume_cm3, rel=1e-9), name
    assert np.array_equal(masks["body"], g.labels_zyx != 0)


def test_a_body_contoured_on_every_other_slice_is_warned_of(tmp_path):
    """A body ROI with slices left out: each contour stands for its own CT slice, so those slices are outside the
    body outline and get no dose; `mcproton run`'s outline warns, naming the ROI and the slices (before, a body on
    every other slice filled the slices between; one on every slice gives no warning)."""
    from mcproton.body import body_from_rtstruct

    target = [_rect(-5, 5, -5, 5, z) for z in np.arange(-6.0, 6.1, 2.0)]   # every 2 mm slice
    every = {"BODY": [_rect(-20, 20, -20, 20, z) for z in np.arange(-10.0, 10.1, 2.0)], "CTV": target}
    other = {"BODY": [_rect(-20, 20, -20, 20, z) for z in np.arange(-10.0, 10.1, 4.0)], "CTV": target}
    g = box_phantom("water", (50, 50, 22), 2.0, origin_mm=(-24.0, -24.0, -10.0))   # slices z -10..10
    save(make_rtstruct(every), tmp_path / "every.dcm")
    save(make_rtstruct(other), tmp_path / "other.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert body_from_rtstruct(str(tmp_path / "every.dcm"), g).mask.any(axis=(1, 2)).sum() == 11
    with pytest.warns(RuntimeWarning, match=r"the body ROI 'BODY' .* has no contour on 5 of the grid's slices "
                                            r"between its first and last \(z = -8, -4, 0, 4, 8 mm\)"):
        out = body_from_rtstruct(str(tmp_path / "other.dcm"), g)
    assert out.mask.any(axis=(1, 2)).sum() == 6


@pytest.mark.parametrize("outline,warned", [("ct", True), ("none", True), ("auto", False)])
def test_a_gapped_external_made_air_by_a_run_is_warned_of_before_the_mc(tmp_path, outline, warned):
    """mcproton run with plan.outside_external = "air": an External contoured on every other slice makes the slices
    between air (each contour is its own CT slice).  Where the body outline is not the RT Struct's
    (output.body_outline "ct" / "none") nothing said so; now the geometry step warns, before the transport (the
    check review of 2026-12-06: the check warns of it, the run did not).  With "auto" the RT Struct's outline warns
    of the same slices later (body_from_rtstruct, above): not said twice."""
    from mcproton.config import _apply_struct_overrides

    other = {"BODY": [_rect(-20, 20, -20, 20, z) for z in np.arange(-10.0, 10.1, 4.0)],
             "CTV": [_rect(-5, 5, -5, 5, z) for z in np.arange(-6.0, 6.1, 2.0)]}
    g = box_phantom("water", (50, 50, 22), 2.0, origin_mm=(-24.0, -24.0, -10.0))
    save(make_rtstruct(other), tmp_path / "other.dcm")
    cfg = {"plan": {"rtstruct": str(tmp_path / "other.dcm"), "outside_external": "air"},
           "output": {"body_outline": outline}, "_base_dir": str(tmp_path)}
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        _apply_struct_overrides(cfg, g)
    texts = [str(w.message) for w in said if "has no contour on 5 of the grid's slices" in str(w.message)]
    assert len(texts) == (1 if warned else 0), [str(w.message) for w in said]
    if warned:
        assert "makes the patient's material on those CT slices air" in texts[0]
        assert 'plan.outside_external = "ct"' in texts[0]
    dens = np.asarray(g.density_g_cm3_zyx)
    assert (dens[[1, 3, 5, 7, 9]] < 0.01).all() and (dens[[0, 2, 4, 6, 8, 10], 12, 12] > 0.9).all()
