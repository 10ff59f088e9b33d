"""The RT Dose pixel data are quantised slab by slab (issue 15 item 3: no whole-grid float64 temporaries at
46 M voxels): the pixels must be bitwise those of the whole-grid expression clip(rint(d / scaling), 0, top), for
any slab size; NaN, infinities and negative doses are still refused; write_result_rtdose leaves the result's
dose as it was."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest

from mcproton._io import rtdose as rd
from mcproton.dicom import StudyReference, write_rtdose

STUDY = StudyReference(frame_of_reference_uid="1.2.826.0.1.3680043.8.498.1",
                       plan_sop_instance_uid="1.2.826.0.1.3680043.8.498.2")


def _dose(rng: np.random.Generator) -> np.ndarray:
    d = rng.random((13, 6, 7)) ** 3 * 3.1
    d[rng.random(d.shape) < 0.5] = 0.0
    d[2, 3, 4] = d.max() * 1.0000001   # the maximum, quantised to top exactly
    d[5, 0, 0] = -0.0
    return d


@pytest.mark.parametrize("bits", [16, 32])
@pytest.mark.parametrize("slab", [1 << 20, 42, 43, 1])   # one slab; one plane; a partial plane; one voxel
def test_slab_pixels_are_bitwise_the_whole_grid_expression(tmp_path, monkeypatch, bits, slab):
    rng = np.random.default_rng(bits + slab)
    d = _dose(rng)
    monkeypatch.setattr(rd, "_QUANTISE_VOXELS", slab)
    p = write_rtdose(d, (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), tmp_path / "RD.dcm", study=STUDY, bits=bits)
    ds = pydicom.dcmread(p)
    scaling, top = float(ds.DoseGridScaling), float(2 ** bits - 1)
    ref = np.clip(np.rint(d / scaling), 0, top).astype("<u2" if bits == 16 else "<u4")
    assert ds.PixelData == ref.tobytes()
    assert ref.max() == top and np.count_nonzero(ref) > 100


def test_bad_doses_are_still_refused(tmp_path):
    for bad, what in ((np.nan, "NaN"), (np.inf, "NaN or inf"), (-np.inf, "NaN or inf"), (-1e-9, "negative")):
        d = np.ones((3, 2, 2))
        d[1, 1, 0] = bad
        with pytest.raises(ValueError, match=what):
            write_rtdose(d, (1, 1, 1), (0, 0, 0), tmp_path / "x.dcm", study=STUDY)


@pytest.mark.parametrize("with_outline", [False, True])
def test_write_result_rtdose_keeps_the_result_dose(tmp_path, with_outline):
    """The scaled (and masked) dose is a copy: the result's array is unchanged, and the file holds the dose
    times the contents' scale (an RBE of 1.1 here) with 0 outside the outline."""
    from types import SimpleNamespace

    from mcproton.geometry import box_phantom

    rng = np.random.default_rng(5)
    d = _dose(rng)
    keep = d.copy()
    g = box_phantom("G4_WATER", (14.0, 12.0, 26.0), 2.0)
    mask = np.ones(d.shape, bool)
    mask[:, :, 0] = False
    outline = SimpleNamespace(mask=mask) if with_outline else None
    res = SimpleNamespace(dose_gy_zyx=d, dose_to_water_gy_zyx=None, geometry=g, body_outline=outline)
    contents = rd.DoseContents("PLAN", rbe=1.1)
    out = rd.write_result_rtdose(res, tmp_path / "RD.dcm", contents=contents, study=STUDY)
    assert d.tobytes() == keep.tobytes()
    expect = np.where(mask, keep, 0.0) * (contents.scale * 1.1) if with_outline else keep * (contents.scale * 1.1)
    assert out["max_dose"] == float(expect.max())
    ds = pydicom.dcmread(tmp_path / "RD.dcm")
    ref = np.clip(np.rint(expect / float(ds.DoseGridScaling)), 0, 65535).astype("<u2")
    assert ds.PixelData == ref.tobytes()
