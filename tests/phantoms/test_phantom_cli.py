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


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) not installed")
def test_rtstruct_dciodvfy_no_errors(exported):
    p = subprocess.run(["dciodvfy", str(exported / "rtstruct.dcm")], capture_output=True, text=True)
    out = p.stdout + p.stderr
    assert "Error" not in out, out


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
