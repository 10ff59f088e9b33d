"""RT Doses in feet-first and prone orientations (audit finding 5): real doses re-encoded with another
ImageOrientationPatient read back to the same grid and dose.  PS3.3 C.8.8.3.2: frame k of a relative
GridFrameOffsetVector (first value 0) lies at ImagePositionPatient + offset[k] x (row x column), which is -z for
IOP [-1,0,0,0,1,0] (FFS) and [1,0,0,0,-1,0] (FFP); absolute offsets (first value = the IPP z) are z coordinates."""
from __future__ import annotations

import copy
import tarfile
from pathlib import Path

import numpy as np
import pydicom
import pytest

from mcproton._io.errors import DicomInputError
from mcproton.dicom import StudyReference, read_rtdose

DATA = Path(__file__).resolve().parents[1] / "data" / "dicom"
RAYSTATION = DATA / "aptg_plan03" / "RD1.2.752.243.1.1.20250523160113556.4000.16653.dcm"


@pytest.fixture(scope="module", params=["raystation", "opentps"])
def real_dose(request, tmp_path_factory):
    """A real RT Dose written with IOP [1,0,0,0,1,0] and relative offsets 0, 2, 4 ... mm."""
    if request.param == "raystation":
        return RAYSTATION
    out = tmp_path_factory.mktemp("otps") / "RD.dcm"
    with tarfile.open(DATA / "opentps_head" / "opentps_head.tar.gz") as tf:
        out.write_bytes(tf.extractfile(next(m for m in tf.getmembers() if m.name.endswith("RD.dcm"))).read())
    return out


def _reencode(src: Path, dst: Path, iop: list[int], absolute: bool = False) -> Path:
    """The same dose as ``src`` (IOP [1,0,0,0,1,0]) stored with orientation ``iop`` (axes ±x, ±y): the pixels and
    ImagePositionPatient (the centre of the first pixel of the first frame) follow the rows, columns and normal."""
    d = pydicom.dcmread(src)
    a = d.pixel_array
    ipp = [float(v) for v in d.ImagePositionPatient]
    ps = [float(v) for v in d.PixelSpacing]
    off = [float(v) for v in d.GridFrameOffsetVector]
    nz, ny, nx = a.shape
    assert [float(v) for v in d.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0] and off[0] == 0 and off[1] > 0
    sx, sy = iop[0], iop[4]
    normal_z = sx * sy
    e = copy.deepcopy(d)
    e.ImageOrientationPatient = iop
    e.PixelData = np.ascontiguousarray(a[::normal_z, ::sy, ::sx]).tobytes()
    first = [ipp[0] + (nx - 1) * ps[1] * (sx < 0), ipp[1] + (ny - 1) * ps[0] * (sy < 0),
             ipp[2] + off[-1] * (normal_z < 0)]
    e.ImagePositionPatient = first
    # relative: 0, 2, 4 ... mm along the normal; absolute: the z of each frame
    e.GridFrameOffsetVector = [first[2] + normal_z * v for v in off] if absolute else off
    e.save_as(dst)
    return dst


@pytest.mark.parametrize("iop,absolute", [
    ([-1, 0, 0, 0, 1, 0], False),    # FFS: normal -z
    ([-1, 0, 0, 0, 1, 0], True),
    ([1, 0, 0, 0, -1, 0], False),    # FFP: normal -z
    ([-1, 0, 0, 0, -1, 0], False),   # HFP: normal +z
    ([1, 0, 0, 0, 1, 0], True),      # HFS with absolute offsets
], ids=["FFS", "FFS-absolute", "FFP", "HFP", "HFS-absolute"])
def test_reencoded_dose_reads_back_identically(real_dose, tmp_path, iop, absolute):
    ref = read_rtdose(real_dose)
    got = read_rtdose(_reencode(real_dose, tmp_path / "RD_x.dcm", iop, absolute))
    assert got.origin_mm == pytest.approx(ref.origin_mm, abs=1e-6)
    assert got.voxel_size_mm == pytest.approx(ref.voxel_size_mm)
    assert got.dose_gy_zyx.shape == ref.dose_gy_zyx.shape
    np.testing.assert_array_equal(got.dose_gy_zyx, ref.dose_gy_zyx)


@pytest.mark.parametrize("iop", [[-1, 0, 0, 0, 1, 0], [1, 0, 0, 0, -1, 0], [-1, 0, 0, 0, -1, 0]],
                         ids=["FFS", "FFP", "HFP"])
def test_flipped_axes_with_rectangular_pixels_read_back_to_the_stored_grid(tmp_path, iop):
    """PixelSpacing is [row spacing (along y for these orientations), column spacing (along x)] (PS3.3
    C.7.6.2.1.1); some planning systems allow dose grids of e.g. 2 x 3 mm.  The real doses above have square pixels
    in a square array, so a reader that moved the x origin of a reversed axis by (columns - 1) x the row spacing,
    or by the rows' count, passed (mutation audit 2026-12-05, G6): a feet-first or prone patient's TPS dose would
    lie tens of mm off.  The RayStation dose cut to 107 rows x 90 columns with rows 2.0 mm and columns 3.0 mm
    apart (origin x -104.5, y -105.5 mm), re-encoded with the x axis, the y axis or both reversed: read back it is
    the dose as stored along +x, +y (its first voxel at the original ImagePositionPatient, 3.0 x 2.0 mm voxels,
    the same values), with the file's directions."""
    d = pydicom.dcmread(RAYSTATION)
    a = d.pixel_array[:, :, :90]
    d.PixelData, d.Columns = np.ascontiguousarray(a).tobytes(), 90
    d.PixelSpacing = [2.0, 3.0]
    d.save_as(tmp_path / "src.dcm")
    ipp = [float(v) for v in d.ImagePositionPatient]
    assert ipp[0] != ipp[1] and a.shape[1] != a.shape[2]
    got = read_rtdose(_reencode(tmp_path / "src.dcm", tmp_path / "flipped.dcm", iop))
    assert got.voxel_size_mm == pytest.approx((3.0, 2.0, 2.0))
    assert got.origin_mm == pytest.approx(ipp, abs=1e-6)
    assert got.axis_directions == (iop[0], iop[4], iop[0] * iop[4])
    np.testing.assert_array_equal(got.dose_gy_zyx, a * float(d.DoseGridScaling))


def test_unchanged_reading_of_real_doses(real_dose):
    """The doses as exported (IOP [1,0,0,0,1,0], relative offsets) keep their origin and frame order."""
    d = pydicom.dcmread(real_dose)
    r = read_rtdose(real_dose)
    assert r.origin_mm == tuple(float(v) for v in d.ImagePositionPatient)
    np.testing.assert_array_equal(r.dose_gy_zyx, d.pixel_array * float(d.DoseGridScaling))


def test_decreasing_relative_offsets_along_minus_z(tmp_path):
    """Negative relative offsets with a -z normal run along +z: the frames stay in file order."""
    src = _reencode(RAYSTATION, tmp_path / "ffs.dcm", [-1, 0, 0, 0, 1, 0])
    d = pydicom.dcmread(src)
    a = d.pixel_array
    off = [float(v) for v in d.GridFrameOffsetVector]
    d.PixelData = np.ascontiguousarray(a[::-1]).tobytes()
    d.ImagePositionPatient = [d.ImagePositionPatient[0], d.ImagePositionPatient[1],
                              float(d.ImagePositionPatient[2]) - off[-1]]
    d.GridFrameOffsetVector = [-v for v in off]
    d.save_as(tmp_path / "ffs_neg.dcm")
    ref = read_rtdose(RAYSTATION)
    got = read_rtdose(tmp_path / "ffs_neg.dcm")
    assert got.origin_mm == pytest.approx(ref.origin_mm, abs=1e-6)
    np.testing.assert_array_equal(got.dose_gy_zyx, ref.dose_gy_zyx)


def test_unplaceable_offsets_with_minus_z_normal_refused(tmp_path):
    src = _reencode(RAYSTATION, tmp_path / "ffs.dcm", [-1, 0, 0, 0, 1, 0])
    d = pydicom.dcmread(src)
    d.GridFrameOffsetVector = [7.0 + float(v) for v in d.GridFrameOffsetVector]
    d.save_as(src)
    with pytest.raises(DicomInputError, match=r"GridFrameOffsetVector starts at 7 mm, neither 0 .*-z for "
                                              r"ImageOrientationPatient.*export the dose again"):
        read_rtdose(src)


# ------------------------------------------------------------------ writing in the CT's or the TPS dose's orientation
ORIENTATIONS = {   # (x, y, z) directions of the stored columns, rows and frames -> ImageOrientationPatient
    "HFS": ((1, 1, 1), [1, 0, 0, 0, 1, 0]),
    "HFP": ((-1, -1, 1), [-1, 0, 0, 0, -1, 0]),
    "FFS": ((-1, 1, -1), [-1, 0, 0, 0, 1, 0]),      # frames along the normal (-z), offsets 0, 3, 6 ...
    "FFP": ((1, -1, -1), [1, 0, 0, 0, -1, 0]),
    "FFS-frames+z": ((-1, 1, 1), [-1, 0, 0, 0, 1, 0]),   # frames against the normal: offsets 0, -3, -6 ...
    "HFS-frames-z": ((1, 1, -1), [1, 0, 0, 0, 1, 0]),
}


@pytest.mark.parametrize("name", list(ORIENTATIONS))
def test_written_in_each_orientation_reads_back_to_the_same_dose_and_positions(tmp_path, name):
    """write_rtdose(axis_directions=...) (CSI audit 2026-12-05 F4: every file was [1,0,0,0,1,0]): the stored array is
    the dose reversed along each axis running along -x, -y or -z, ImagePositionPatient is the centre of the first
    voxel stored, the offsets run along the frames; read_rtdose gives back the same dose at the same positions and
    the directions written; dciodvfy finds no error."""
    import shutil
    import subprocess

    from mcproton.dicom import StudyReference, write_rtdose

    axes, iop = ORIENTATIONS[name]
    rng = np.random.default_rng(3)
    dose = rng.random((5, 4, 3)) * 2.0
    vs, org = (2.0, 2.5, 3.0), (-10.0, -20.0, -30.0)
    p = write_rtdose(dose, vs, org, tmp_path / "RD.dcm", axis_directions=axes,
                     study=StudyReference(frame_of_reference_uid="1.2.3", patient_id="P1", patient_name="a^b"))
    ds = pydicom.dcmread(p)
    assert [float(v) for v in ds.ImageOrientationPatient] == iop
    last = [org[k] + vs[k] * (dose.shape[2 - k] - 1) for k in range(3)]
    assert [float(v) for v in ds.ImagePositionPatient] == [last[k] if axes[k] < 0 else org[k] for k in range(3)]
    normal_z = iop[0] * iop[4]
    assert [float(v) for v in ds.GridFrameOffsetVector] == [axes[2] * normal_z * 3.0 * k for k in range(5)]
    stored = ds.pixel_array * float(ds.DoseGridScaling)
    np.testing.assert_allclose(stored, dose[::axes[2], ::axes[1], ::axes[0]], atol=float(ds.DoseGridScaling))
    r = read_rtdose(p)
    assert r.origin_mm == pytest.approx(org, abs=1e-9) and r.voxel_size_mm == pytest.approx(vs)
    assert r.axis_directions == axes
    np.testing.assert_allclose(r.dose_gy_zyx, dose, rtol=0, atol=r.dose_grid_scaling / 2 * (1 + 1e-9))
    if shutil.which("dciodvfy"):
        out = subprocess.run(["dciodvfy", str(p)], capture_output=True, text=True, timeout=60)
        assert not [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("Error")], out.stderr


@pytest.mark.parametrize("name", list(ORIENTATIONS))
def test_written_with_rectangular_pixels_each_voxel_lies_where_dicom_places_it(tmp_path, name):
    """The writer with rectangular pixels (x 3.0 mm, y 2.0 mm, z 2.5 mm), a grid of different sizes along x, y, z
    (6 x 5 x 4) and different x and y origins, in each orientation (mutation audit 2026-12-05, G6): each stored
    value must lie where DICOM places it, worked out here from the file's attributes alone (PS3.3 C.7.6.2.1.1: the
    centre of column i, row j of a frame is ImagePositionPatient + i x PixelSpacing[1] x the row direction + j x
    PixelSpacing[0] x the column direction; C.8.8.3.2: frame k lies GridFrameOffsetVector[k] along the normal row x
    column from it) and must be the dose of the grid at that position.  A swap of the x and y spacings, sizes or
    directions anywhere in the writer puts some value elsewhere; read back, the grid is the one written."""
    from mcproton.dicom import write_rtdose

    axes, iop = ORIENTATIONS[name]
    vs, org = (3.0, 2.0, 2.5), (-31.5, 12.0, -40.0)
    dose = np.random.default_rng(11).random((4, 5, 6)) * 2.0 + 0.1   # (z, y, x)
    p = write_rtdose(dose, vs, org, tmp_path / "RD.dcm", axis_directions=axes,
                     study=StudyReference(frame_of_reference_uid="1.2.3"))
    ds = pydicom.dcmread(p)
    assert [float(v) for v in ds.ImageOrientationPatient] == iop
    assert [float(v) for v in ds.PixelSpacing] == [2.0, 3.0] and (ds.Rows, ds.Columns, ds.NumberOfFrames) == (5, 6, 4)
    row_dir, col_dir = np.array(iop[:3], float), np.array(iop[3:], float)
    normal = np.cross(row_dir, col_dir)
    ipp = np.array([float(v) for v in ds.ImagePositionPatient])
    off = [float(v) for v in ds.GridFrameOffsetVector]
    stored = ds.pixel_array * float(ds.DoseGridScaling)
    for k in range(4):
        for j in range(5):
            for i in range(6):
                pos = ipp + i * 3.0 * row_dir + j * 2.0 * col_dir + off[k] * normal
                ix, iy, iz = ((pos - org) / vs).round(9)
                assert float(ix).is_integer() and float(iy).is_integer() and float(iz).is_integer(), (k, j, i, pos)
                assert stored[k, j, i] == pytest.approx(dose[int(iz), int(iy), int(ix)],
                                                        abs=float(ds.DoseGridScaling) / 2 * (1 + 1e-9))
    r = read_rtdose(p)
    assert r.origin_mm == pytest.approx(org, abs=1e-9) and r.voxel_size_mm == pytest.approx(vs)
    assert r.axis_directions == axes
    np.testing.assert_allclose(r.dose_gy_zyx, dose, rtol=0, atol=r.dose_grid_scaling / 2 * (1 + 1e-9))


def test_a_single_frame_dose_keeps_its_slice_thickness(tmp_path):
    """A one-frame RT Dose has no spacing in its GridFrameOffsetVector: its z size is SliceThickness, which must be
    the grid's z voxel size (5 mm), not its x (2 mm) or y (3 mm) one (mutation audit 2026-12-05, G9: no test wrote
    a single frame with unequal voxel sizes; the wrong size would change the voxel volume, so every DVH volume).
    In every orientation (a single frame reversed along z is the same frame)."""
    from mcproton.dicom import write_rtdose

    for name, (axes, _) in ORIENTATIONS.items():
        p = write_rtdose(np.ones((1, 4, 6)), (2.0, 3.0, 5.0), (0.0, 10.0, 20.0), tmp_path / f"RD_{name}.dcm",
                         axis_directions=axes, study=StudyReference(frame_of_reference_uid="1.2.3"))
        assert float(pydicom.dcmread(p).SliceThickness) == 5.0
        r = read_rtdose(p)
        assert r.voxel_size_mm == pytest.approx((2.0, 3.0, 5.0)) and r.origin_mm == pytest.approx((0.0, 10.0, 20.0))


@pytest.mark.parametrize("iop,absolute", [
    ([-1, 0, 0, 0, -1, 0], False),   # HFP
    ([-1, 0, 0, 0, 1, 0], False),    # FFS
    ([-1, 0, 0, 0, 1, 0], True),
    ([1, 0, 0, 0, -1, 0], False),    # FFP
], ids=["HFP", "FFS", "FFS-absolute", "FFP"])
def test_a_dose_written_with_the_axes_read_matches_its_source_index_by_index(tmp_path, iop, absolute):
    """A real dose in another orientation, read and written again with the directions read (what the check does
    with its MC dose on the TPS grid): the same ImageOrientationPatient and ImagePositionPatient, each frame at the
    same z, and the stored arrays equal index by index (to the 16-bit quantisation)."""
    from mcproton.dicom import StudyReference, write_rtdose

    src = _reencode(RAYSTATION, tmp_path / "RD_x.dcm", iop, absolute)
    r = read_rtdose(src)
    p = write_rtdose(r.dose_gy_zyx, r.voxel_size_mm, r.origin_mm, tmp_path / "RD_again.dcm",
                     study=StudyReference(frame_of_reference_uid=r.frame_of_reference_uid),
                     axis_directions=r.axis_directions)
    a, b = pydicom.dcmread(src), pydicom.dcmread(p)
    assert [float(v) for v in b.ImageOrientationPatient] == [float(v) for v in a.ImageOrientationPatient]
    assert [float(v) for v in b.ImagePositionPatient] == pytest.approx([float(v) for v in a.ImagePositionPatient],
                                                                       abs=1e-6)

    def frame_z(ds):
        off = np.array([float(v) for v in ds.GridFrameOffsetVector])
        z0 = float(ds.ImagePositionPatient[2])
        return off if off[0] == z0 and off[0] != 0 else z0 + ds.ImageOrientationPatient[0] * \
            ds.ImageOrientationPatient[4] * off

    np.testing.assert_allclose(frame_z(b), frame_z(a), atol=1e-6)
    da = a.pixel_array * float(a.DoseGridScaling)
    db = b.pixel_array * float(b.DoseGridScaling)
    np.testing.assert_allclose(db, da, rtol=0, atol=float(a.DoseGridScaling) / 2 + float(b.DoseGridScaling) / 2)


def _ct_in_orientation(folder: Path, iop: list[int], position: str) -> tuple[np.ndarray, list[Path]]:
    """A 24 x 20 x 16 mm water block in air (a CT written [1,0,0,0,1,0], 2 mm voxels) re-encoded slice by slice with
    ImageOrientationPatient ``iop`` and PatientPosition ``position``: the same anatomy at the same LPS coordinates."""
    from mcproton.dicom import write_ct_series

    hu = np.full((8, 10, 12), -1000.0)
    hu[1:7, 2:9, 3:10] = 0.0
    paths = write_ct_series(hu, (2.0, 2.0, 2.0), (-11.0, -9.0, -7.0), folder,
                            study=StudyReference(frame_of_reference_uid="1.2.826.0.1.3680043.8.498.77",
                                                 patient_position=position))
    sx, sy = iop[0], iop[4]
    for p in paths:
        ds = pydicom.dcmread(p)
        ipp = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [ipp[0] + 11 * 2.0 * (sx < 0), ipp[1] + 9 * 2.0 * (sy < 0), ipp[2]]
        ds.ImageOrientationPatient = iop
        ds.PixelData = np.ascontiguousarray(ds.pixel_array[::sy, ::sx]).astype("<i2").tobytes()
        ds.save_as(p)
    return hu, paths


@pytest.mark.parametrize("position,iop,blocks", [
    ("HFS", [1, 0, 0, 0, 1, 0], False),
    ("HFP", [-1, 0, 0, 0, -1, 0], False),
    ("FFS", [-1, 0, 0, 0, 1, 0], False),
    ("FFP", [1, 0, 0, 0, -1, 0], False),
    ("HFP", [-1, 0, 0, 0, -1, 0], True),    # phantom.dose_voxel_mm: the CT's orientation on the coarser grid too
])
def test_run_rtdose_on_a_ct_is_written_in_the_cts_orientation(tmp_path, position, iop, blocks):
    """``mcproton run --rtdose`` on a CT (CSI audit 2026-12-05 F4: a prone CT's RT Dose was written [1,0,0,0,1,0]):
    the RT Dose has the CT's ImageOrientationPatient, its frames run along the CT's slice normal (offsets 0, 2, 4 ...
    mm from the CT slice first along it), so that on the CT grid the two arrays match index by index; read back,
    it is the run's dose at the CT's voxel positions."""
    from mcproton._io.hdf5 import load_result
    from mcproton.cli import main

    hu, ct_files = _ct_in_orientation(tmp_path / "ct", iop, position)
    cfg = tmp_path / "run.toml"
    cfg.write_text('[run]\nprimaries = 300\nbackend = "cpu"\nseed = 3\nthreads = 1\n\n'
                   '[phantom]\ntype = "ct"\nct_dir = "ct"\ncalibration = "schneider2000"\n'
                   + ("dose_voxel_mm = 4.0\n" if blocks else "")
                   + '\n[beam]\nenergy_mev = 30.0\nposition_mm = [0.0, 0.0, -30.0]\ndirection = [0.0, 0.0, 1.0]\n'
                   'sigma_mm = [2.0, 2.0]\ntotal_protons = 1e9\n\n[output]\nplot = false\n')
    rd = tmp_path / "RD.dcm"
    assert main(["run", str(cfg), "--out", str(tmp_path / "d.h5"), "--rtdose", str(rd), "--quiet",
                 "--no-checkpoint"]) == 0
    ds = pydicom.dcmread(rd)
    assert [float(v) for v in ds.ImageOrientationPatient] == [float(v) for v in iop]
    normal_z = iop[0] * iop[4]
    slices = sorted((pydicom.dcmread(p, stop_before_pixels=True) for p in ct_files),
                    key=lambda s: normal_z * float(s.ImagePositionPatient[2]))
    offsets = [float(v) for v in ds.GridFrameOffsetVector]
    step = 4.0 if blocks else 2.0
    assert offsets == [step * k for k in range(int(ds.NumberOfFrames))]   # along the CT's normal
    first = [float(v) for v in slices[0].ImagePositionPatient]
    if not blocks:   # the CT's own grid: its first slice's ImagePositionPatient, the pixels index by index
        assert [float(v) for v in ds.ImagePositionPatient] == first
        assert (int(ds.Rows), int(ds.Columns), int(ds.NumberOfFrames)) == (10, 12, 8)
        ct_stack = np.stack([pydicom.dcmread(p).pixel_array for p in
                             sorted(ct_files, key=lambda f: normal_z * float(
                                 pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]))])
        body = ct_stack > -500     # the water block, as the CT stores it
        assert ds.pixel_array[~body].max() == 0 and ds.pixel_array[body].max() > 0   # 0 outside the body outline
    else:            # blocks of 2 x 2 x 2 CT voxels: the centre of the first block stored
        assert [float(v) for v in ds.ImagePositionPatient] == pytest.approx(
            [first[0] + iop[0] * 1.0, first[1] + iop[4] * 1.0, first[2] + normal_z * 1.0])
    res = load_result(tmp_path / "d.h5")   # the run's dose on its grid along +x, +y, +z
    got = read_rtdose(rd)
    assert got.axis_directions == (iop[0], iop[4], normal_z)
    assert got.origin_mm == pytest.approx(res.geometry.origin_mm, abs=1e-6)
    inside = (hu > -500) if not blocks else got.dose_gy_zyx > 0   # the body outline (the CT's water block)
    tol = got.dose_grid_scaling / 2 + 1e-6 * float(got.dose_gy_zyx.max())   # 16 bits; the HDF5's float32
    np.testing.assert_allclose(got.dose_gy_zyx[inside], res.dose_gy_zyx[inside], rtol=0, atol=tol)
    assert got.dose_gy_zyx[inside].max() > 0 and not got.dose_gy_zyx[~inside].any()


def test_a_single_frame_dose_without_slice_thickness_says_what_it_assumes(tmp_path):
    """I/O review 2026-12-06 (minor): a single-frame RT Dose without SliceThickness was read with 1 mm slices
    without a word (the voxel volume, so DVH volumes, depends on it).  Now it is said."""
    from mcproton._io.errors import McprotonWarning
    from mcproton.dicom import write_rtdose

    p = write_rtdose(np.ones((1, 4, 6)), (2.0, 3.0, 5.0), (0.0, 10.0, 20.0), tmp_path / "RD.dcm",
                     study=StudyReference(frame_of_reference_uid="1.2.3"))
    ds = pydicom.dcmread(p)
    del ds.SliceThickness
    ds.save_as(p)
    with pytest.warns(McprotonWarning, match=r"single-frame RT Dose without a SliceThickness.*taken as 1 mm"):
        r = read_rtdose(p)
    assert r.voxel_size_mm == pytest.approx((2.0, 3.0, 1.0))
