"""Values longer than 64 kB in explicit-VR files: DICOM writes a DS/FL/LO value that long with VR UN (PS3.5 section
6.2.2) and pydicom (3.0) leaves it undecoded bytes; mcproton reads it by the dictionary VR, as the same values as
the implicit-VR file (audit 17 hostile F5: a 6000-point contour was parsed byte by byte, a 20,000-spot layer's
weights were counted as one value)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from pydicom.uid import ImplicitVRLittleEndian

from mcproton._io.beam_model import load_beam_model
from mcproton._io.rtplan import load_rtplan, plan_to_beams
from mcproton._io.rtstruct import read_rtstruct

from dicom_factories import circle_contour, make_plan, make_rtstruct, save


def _both_encodings(ds, tmp_path, name):
    """The data set saved in explicit VR (long values as UN) and in implicit VR: (explicit path, implicit path)."""
    import pydicom

    exp = tmp_path / f"{name}_explicit.dcm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # pydicom: "exceeds the size of 64 kByte ... changed ... to 'UN'"
        save(ds, exp)
    raw = pydicom.dcmread(exp)
    assert any(e.VR == "UN" for e in raw.iterall()), "the test needs an element stored as UN"
    imp = tmp_path / f"{name}_implicit.dcm"
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.save_as(imp, enforce_file_format=True)
    return exp, imp


def test_long_contour_in_explicit_vr_reads_as_in_implicit_vr(tmp_path):
    big = circle_contour(1.234567, -2.5, 40.0, 0.0, n=6000)   # 18000 values of ~9 characters: > 64 kB
    ds = make_rtstruct({"long": [big], "small": [circle_contour(0, 0, 10, 0.0, n=12)]})
    exp, imp = _both_encodings(ds, tmp_path, "rs")
    a, b = read_rtstruct(exp), read_rtstruct(imp)
    assert set(a.contours) == set(b.contours) == {"long", "small"}
    assert a.contours["long"][0].shape == (6000, 3)
    np.testing.assert_array_equal(a.contours["long"][0], b.contours["long"][0])
    np.testing.assert_allclose(a.contours["long"][0], big, atol=1e-4)


def test_long_spot_layer_in_explicit_vr_reads_as_in_implicit_vr(tmp_path):
    n = 20000   # 20000 FL weights = 80 kB, the position map 160 kB: both UN in explicit VR
    xs = np.linspace(-50.0, 50.0, n)
    spots = [(float(x), float(0.5 * x)) for x in xs]
    weights = list(np.linspace(0.5, 2.0, n))
    ds = make_plan([{"gantry": 0, "couch": 0, "iso": (0.0, 0.0, 0.0), "meterset": 10.0,
                     "layers": [(150.0, spots, weights)]}])
    exp, imp = _both_encodings(ds, tmp_path, "rp")
    a, b = load_rtplan(str(exp)), load_rtplan(str(imp))
    model = load_beam_model("dcpt_v5")
    (ba,), (bb,) = plan_to_beams(a, model), plan_to_beams(b, model)
    assert len(ba.spots) == len(bb.spots) == n
    np.testing.assert_array_equal([s.weight for s in ba.spots], [s.weight for s in bb.spots])
    np.testing.assert_array_equal([s.position_mm for s in ba.spots], [s.position_mm for s in bb.spots])


@pytest.mark.parametrize("n_frames", [20000])
def test_long_grid_frame_offsets_in_explicit_vr(tmp_path, n_frames):
    from mcproton._io.dicom_common import decode_long_un, read_dicom_file

    ds = make_rtstruct({"a": [circle_contour(0, 0, 10, 0.0, n=12)]})
    ds.GridFrameOffsetVector = [f"{2.0 * k:.1f}" for k in range(n_frames)]   # > 64 kB of DS text
    exp, imp = _both_encodings(ds, tmp_path, "g")
    a, b = read_dicom_file(exp), read_dicom_file(imp)
    assert [float(v) for v in a.GridFrameOffsetVector] == [float(v) for v in b.GridFrameOffsetVector]
    assert len(a.GridFrameOffsetVector) == n_frames
    decode_long_un(a)   # a second time: nothing left to do
    assert len(a.GridFrameOffsetVector) == n_frames
