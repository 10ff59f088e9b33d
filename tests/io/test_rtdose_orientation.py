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
from mcproton.dicom import read_rtdose

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
