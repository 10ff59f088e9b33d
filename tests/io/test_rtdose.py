"""RT Dose export/import and DICOM conformance (dciodvfy)."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest

from mcproton.dicom import StudyReference, read_rtdose, write_rtdose

DOSE = np.random.default_rng(3).random((5, 6, 7)) * 2.2


def _write(tmp_path, **kw):
    study = {"frame_of_reference_uid": "1.2.826.0.1.3680043.8.498.1",
             "plan_sop_instance_uid": "1.2.826.0.1.3680043.8.498.2"}
    study.update({k: kw.pop(k) or "" for k in ("patient_id", "patient_name", "plan_sop_instance_uid")
                  if k in kw})
    return write_rtdose(DOSE, (2.0, 2.5, 3.0), (-10.0, -20.0, -30.0), tmp_path / "RD.dcm",
                        study=StudyReference(**study), **kw)


@pytest.mark.parametrize("bits", [16, 32])
def test_round_trip(tmp_path, bits):
    p = _write(tmp_path, bits=bits)
    r = read_rtdose(p)
    assert np.abs(r.dose_gy_zyx - DOSE).max() <= 0.5 * r.dose_grid_scaling * (1 + 1e-9)
    assert r.voxel_size_mm == (2.0, 2.5, 3.0) and r.origin_mm == (-10.0, -20.0, -30.0)
    ds = pydicom.dcmread(p)
    assert ds.DoseUnits == "GY" and ds.DoseType == "PHYSICAL" and ds.DoseSummationType == "PLAN"
    assert [float(v) for v in ds.GridFrameOffsetVector] == [0.0, 3.0, 6.0, 9.0, 12.0]
    assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]   # the default (a phantom's)
    assert ds.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID == "1.2.826.0.1.3680043.8.498.2"
    assert ds.FrameIncrementPointer == 0x3004000C and ds.BitsAllocated == bits
    assert r.referenced_plan_sop_instance_uid == "1.2.826.0.1.3680043.8.498.2"


def test_beam_summation_and_errors(tmp_path):
    p = _write(tmp_path, summation_type="BEAM", referenced_beam_number=2, dose_type="EFFECTIVE")
    ds = pydicom.dcmread(p)
    assert ds.DoseSummationType == "BEAM" and ds.DoseType == "EFFECTIVE"
    assert (ds.ReferencedRTPlanSequence[0].ReferencedFractionGroupSequence[0]
            .ReferencedBeamSequence[0].ReferencedBeamNumber == 2)
    with pytest.raises(ValueError, match="referenced_beam_number"):
        _write(tmp_path, summation_type="BEAM")
    with pytest.raises(ValueError, match="summation_type"):
        _write(tmp_path, summation_type="NONSENSE")
    with pytest.raises(ValueError, match="negative"):
        write_rtdose(-DOSE, (1, 1, 1), (0, 0, 0), tmp_path / "x.dcm",
                     study=StudyReference(frame_of_reference_uid="1.2"))
    with pytest.raises(ValueError, match="NaN"):
        write_rtdose(np.full((2, 2, 2), np.nan), (1, 1, 1), (0, 0, 0), tmp_path / "x.dcm",
                     study=StudyReference(frame_of_reference_uid="1.2"))


def test_zero_dose_and_no_plan(tmp_path):
    p = write_rtdose(np.zeros((2, 3, 4)), (1, 1, 1), (0, 0, 0), tmp_path / "z.dcm",
                     study=StudyReference(frame_of_reference_uid="1.2.3"))
    r = read_rtdose(p)
    assert np.all(r.dose_gy_zyx == 0)
    assert "placeholder" in pydicom.dcmread(p).DoseComment


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) not installed")
@pytest.mark.parametrize("kw", [{}, {"summation_type": "BEAM", "referenced_beam_number": 1},
                                {"plan_sop_instance_uid": None}])
def test_dciodvfy_no_errors(tmp_path, kw):
    p = _write(tmp_path, patient_id="P1", patient_name="a^b", **kw)
    r = subprocess.run(["dciodvfy", str(p)], capture_output=True, text=True, timeout=60)
    out = r.stdout + r.stderr
    errors = [ln for ln in out.splitlines() if ln.startswith("Error")]
    assert "RTDose" in out and not errors, out
