"""Viewers open what mcproton writes: ITK (SimpleITK with GDCM, the DICOM reader under 3D Slicer and many research
viewers) reads the CT series and the RT Dose with the geometry and values mcproton meant.  dciodvfy checks the
standard (tests/io/test_ct.py, test_rtdose.py); this checks an independent reader's interpretation of it: voxel
order, origin, spacing, orientation, slice order, HU, and the dose scaled by DoseGridScaling.  Asymmetric patterns
make any flip or transposition fail."""
from __future__ import annotations

import numpy as np
import pytest

sitk = pytest.importorskip("SimpleITK", reason="SimpleITK (the test extra) is not installed")

from mcproton.dicom import StudyReference, read_rtdose, write_ct_series, write_rtdose  # noqa: E402

SPACING = (0.9765625, 0.9765625, 2.5)            # x, y, z (mm): a clinical CT's
ORIGIN = (-249.51171875, -180.5, -77.25)         # centre of voxel [0, 0, 0] (mm)
SHAPE = (7, 11, 13)                              # z, y, x


def _pattern() -> np.ndarray:
    z, y, x = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    return x + 20 * y + 300 * z                  # every voxel different, increasing along each axis


@pytest.mark.parametrize("position", ["HFS", "FFS"])
def test_itk_reads_the_ct_series_as_written(tmp_path, position):
    hu = (_pattern() - 1000).astype(np.int16)
    write_ct_series(hu, SPACING, ORIGIN, tmp_path / "ct",
                    study=StudyReference(frame_of_reference_uid="1.2.826.0.1.3680043.8.498.1",
                                         patient_position=position))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "ct")))
    img = reader.Execute()
    assert img.GetSize() == SHAPE[::-1]
    np.testing.assert_allclose(img.GetSpacing(), SPACING, rtol=0, atol=1e-6)
    np.testing.assert_allclose(img.GetOrigin(), ORIGIN, rtol=0, atol=1e-6)
    np.testing.assert_allclose(img.GetDirection(), np.eye(3).ravel(), atol=1e-9)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(img), hu)     # (z, y, x), HU after RescaleSlope/Intercept


def test_itk_reads_the_rt_dose_grid_and_its_scaled_values(tmp_path):
    dose = _pattern() * 1e-3 + 0.05                                    # Gy
    path = write_rtdose(dose, SPACING, ORIGIN, tmp_path / "rd.dcm",
                        study=StudyReference(frame_of_reference_uid="1.2.826.0.1.3680043.8.498.1"))
    img = sitk.ReadImage(str(path))
    assert img.GetSize() == SHAPE[::-1]
    np.testing.assert_allclose(img.GetSpacing(), SPACING, rtol=0, atol=1e-6)
    np.testing.assert_allclose(img.GetOrigin(), ORIGIN, rtol=0, atol=1e-6)
    np.testing.assert_allclose(img.GetDirection(), np.eye(3).ravel(), atol=1e-9)
    scaling = read_rtdose(path).dose_grid_scaling
    # ITK gives the stored integers (it does not apply DoseGridScaling; viewers with RT support do)
    np.testing.assert_allclose(sitk.GetArrayFromImage(img) * scaling, dose, rtol=0, atol=scaling / 2 * (1 + 1e-9))
