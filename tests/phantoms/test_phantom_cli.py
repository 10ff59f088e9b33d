"""`mcproton phantom`: DICOM CT (round trip to the densities), RT Struct (dciodvfy), HDF5 label map."""
import shutil
import subprocess

import numpy as np
import pytest

from mcproton.cli import main as cli_main
from mcproton.dicom import HUCalibration, load_ct_series
from mcproton.phantoms import make_head_phantom, read_phantom_hdf5
from mcproton.phantoms.dicom_export import read_rtstruct_contours, slice_contours


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantom")
    assert cli_main(["phantom", "--age", "5", "--out", str(out), "--voxel-mm", "4", "--region", "head"]) == 0
    return out


def test_files_and_hdf5_label_map(exported):
    g = make_head_phantom(5, 4.0, region="head")
    h = read_phantom_hdf5(exported / "phantom.h5")
    assert np.array_equal(h.labels_zyx, g.labels_zyx) and h.label_names == g.label_names
    assert len(list((exported / "ct").glob("CT_*.dcm"))) == g.shape_zyx[0]


def test_ct_round_trip_densities(exported):
    g = make_head_phantom(5, 4.0, region="head")
    cal = HUCalibration.load("schneider2000")
    ct = load_ct_series(exported / "ct")
    g2 = cal.to_geometry(ct)
    assert g2.shape_zyx == g.shape_zyx
    assert np.allclose(g2.origin_mm, g.origin_mm) and np.allclose(g2.voxel_size_mm, g.voxel_size_mm)
    err = np.abs(g2.density_g_cm3_zyx.astype(float) - g.density_g_cm3_zyx)
    assert err.max() <= cal.density_resolution + 1e-6


def test_rtstruct_references_and_contours(exported):
    import pydicom

    ds = pydicom.dcmread(exported / "rtstruct.dcm")
    ct = load_ct_series(exported / "ct")
    assert ds.Modality == "RTSTRUCT" and ds.FrameOfReferenceUID == ct.frame_of_reference_uid
    ref = ds.ReferencedFrameOfReferenceSequence[0]
    assert ref.FrameOfReferenceUID == ct.frame_of_reference_uid
    series = ref.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert series.SeriesInstanceUID == ct.series_instance_uid
    assert {str(r.ReferencedSOPInstanceUID) for r in series.ContourImageSequence} == set(ct.slice_sop_instance_uids)
    sops = set(ct.slice_sop_instance_uids)
    for rc in ds.ROIContourSequence:
        for c in rc.ContourSequence:
            assert str(c.ContourImageSequence[0].ReferencedSOPInstanceUID) in sops
    contours = read_rtstruct_contours(exported / "rtstruct.dcm")
    g = make_head_phantom(5, 4.0, region="head")
    assert set(contours) == set(g.label_names.values())
    zs = set(np.round(ct.axis_mm("z"), 2))
    assert all(round(float(c[0, 2]), 2) in zs for c in contours["brain"])
    # the air spaces are DICOM's CAVITY (before 2026-12-05: ORGAN, so organs at risk to a plan check), the body
    # EXTERNAL, the rest ORGAN
    roi = {int(r.ROINumber): str(r.ROIName) for r in ds.StructureSetROISequence}
    kinds = {roi[int(o.ReferencedROINumber)]: str(o.RTROIInterpretedType) for o in ds.RTROIObservationsSequence}
    cavities = {n for n, t in kinds.items() if t == "CAVITY"}
    assert cavities == {"sinus_maxillary", "sinus_sphenoid", "sinus_ethmoid", "nasal_cavity", "airway",
                        "mastoid_air_left", "mastoid_air_right"} & set(kinds), kinds
    assert len(cavities) >= 5 and kinds["body"] == "EXTERNAL" and kinds["brainstem"] == "ORGAN"


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) not installed")
def test_rtstruct_dciodvfy_no_errors(exported):
    p = subprocess.run(["dciodvfy", str(exported / "rtstruct.dcm")], capture_output=True, text=True)
    out = p.stdout + p.stderr
    assert "Error" not in out, out


def test_slice_contours_enclose_exactly_their_voxels():
    """The contours run along the voxel edges: the polygons' area (outer loops counter-clockwise, holes clockwise) is
    the voxels' area, and the voxel centres inside an odd number of them (even-odd, as DICOM readers take holes) are
    the mask.  Before (2026-12-05) marching squares cut every voxel corner: a 2-voxel-wide optic nerve enclosed 28 %
    less than its voxels, so a planning system reading the phantom's RT Struct gave it a smaller volume (interop
    audit, F1).  Voxels touching at a corner only are separate contours (no self-touching polygon)."""
    from matplotlib.path import Path as MPath
    from scipy import ndimage

    rng = np.random.default_rng(5)
    x, y = np.arange(40) * 1.5 - 7.0, np.arange(30) * 2.0 + 3.0
    cx, cy = np.meshgrid(x, y)
    centres = np.column_stack([cx.ravel(), cy.ravel()])
    for t in range(40):   # noise (many diagonal touches, holes, islands in holes) and smoother blobs
        m = ndimage.binary_opening(rng.random((30, 40)) > 0.45) if t % 2 else rng.random((30, 40)) > 0.5
        cs = slice_contours(m, x, y)
        area = sum(0.5 * np.sum(c[:, 0] * np.roll(c[:, 1], -1) - np.roll(c[:, 0], -1) * c[:, 1]) for c in cs)
        assert area == pytest.approx(m.sum() * 1.5 * 2.0, abs=1e-9), t
        inside = np.zeros(len(centres), bool)
        for c in cs:
            inside ^= MPath(c).contains_points(centres)
        assert np.array_equal(inside.reshape(m.shape), m), t
        assert all(len({tuple(p) for p in c}) == len(c) for c in cs), "a contour passes a point twice"
    two = np.zeros((4, 4), bool)
    two[1, 1] = two[2, 2] = True
    assert [c.tolist() for c in slice_contours(two, np.arange(4.0), np.arange(4.0))] == [
        [[0.5, 0.5], [1.5, 0.5], [1.5, 1.5], [0.5, 1.5]], [[1.5, 1.5], [2.5, 1.5], [2.5, 2.5], [1.5, 2.5]]]


def test_slice_contours_square():
    m = np.zeros((10, 10), bool)
    m[3:7, 2:8] = True                                    # 6 x 4 voxels of 2 mm
    x = np.arange(10) * 2.0
    y = np.arange(10) * 2.0
    cs = slice_contours(m, x, y)
    assert len(cs) == 1
    c = cs[0]
    assert c[:, 0].min() == pytest.approx(3.0) and c[:, 0].max() == pytest.approx(15.0)
    assert c[:, 1].min() == pytest.approx(5.0) and c[:, 1].max() == pytest.approx(13.0)
