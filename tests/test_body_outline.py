"""The body outline (mcproton/body.py, issue 12 item 3): found from the CT (-400 HU, largest component, holes of
every axial slice filled so that internal air stays inside), from a labelled phantom, from an RT Struct's
EXTERNAL / BODY ROI; the dose outside it is 0 and the raw dose is kept; the summary maximum is not set by air."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from mcproton.body import (AUTO_BODY_HU, BodyOutline, apply_body_outline, body_outline_for, dose_summary,
                           external_roi_name)


def _synthetic_ct_hu():
    """(z, y, x) HU, 2 mm voxels: a water ellipse ("head", 0 HU) holding an air cavity (-1000 HU, a sinus)
    and a lung-density region (-800 HU), a detached couch (0 HU) below it, speckle above -400 HU in the air
    around it (noise, a thermoplastic-mask strand)."""
    nz, ny, nx = 8, 40, 40
    hu = np.full((nz, ny, nx), -1000.0)
    y, x = np.mgrid[0:ny, 0:nx]
    head = ((x - 20) / 14.0) ** 2 + ((y - 17) / 11.0) ** 2 <= 1.0
    hu[:, head] = 0.0
    hu[:, 14:18, 16:20] = -1000.0           # sinus: air inside the head on every slice
    hu[:, 20:23, 24:28] = -800.0            # lung-like, below the threshold
    hu[:, 34:36, 4:36] = 0.0                # couch top, 2 voxels below the head's lowest row (28)
    hu[3, 2, 2] = hu[5, 38, 1] = 100.0      # isolated speckle in the air
    return hu, head


def _ct_config(tmp_path, hu):
    from mcproton.config import build_geometry
    from mcproton.dicom import write_ct_series

    write_ct_series(hu, (2.0, 2.0, 2.0), (-39.0, -39.0, -7.0), tmp_path / "ct")
    cfg = {"phantom": {"type": "ct", "ct_dir": str(tmp_path / "ct")}}
    return cfg, build_geometry(cfg)


def test_auto_outline_from_ct_keeps_internal_air_inside(tmp_path):
    hu, head = _synthetic_ct_hu()
    cfg, g = _ct_config(tmp_path, hu)
    o = body_outline_for(cfg, g)
    assert o.kind == "auto" and f"HU > {AUTO_BODY_HU:g}" in o.source and "schneider2000" in o.source
    want = np.broadcast_to(head, hu.shape)
    assert np.array_equal(o.mask, want)                      # sinus and lung inside; couch and speckle out
    assert o.mask[:, 15, 17].all() and o.mask[:, 21, 25].all() and not o.mask[:, 34:36].any()


def test_outline_choices(tmp_path):
    hu, _ = _synthetic_ct_hu()
    cfg, g = _ct_config(tmp_path, hu)
    assert body_outline_for({**cfg, "output": {"body_outline": "none"}}, g) is None
    with pytest.raises(ValueError, match="plan.rtstruct"):
        body_outline_for({**cfg, "output": {"body_outline": "BODY"}}, g)
    from mcproton.geometry import box_phantom

    assert body_outline_for({"phantom": {"type": "water"}}, box_phantom("water", (20, 20, 20), (5, 5, 5))) is None
    labels = np.zeros((3, 4, 5), np.int16)
    labels[1, 1:3, 1:4] = 3
    labels[1, 2, 2] = 20                                      # a sinus label inside
    o = body_outline_for({"phantom": {"type": "paediatric"}}, SimpleNamespace(labels_zyx=labels))
    assert o.kind == "labels" and np.array_equal(o.mask, labels != 0)


def test_external_roi_is_found_by_type_then_by_name():
    from mcproton._io.rtstruct import RTStruct

    c = [np.zeros((3, 3))]
    s = RTStruct({"PTV": c, "Skin_ext": c, "Patient": c}, roi_types={"Patient": "EXTERNAL", "Skin_ext": "ORGAN"})
    assert external_roi_name(s) == "Patient"
    assert external_roi_name(RTStruct({"PTV": c, "External": c}, roi_types={"External": "ORGAN"})) == "External"
    assert external_roi_name(RTStruct({"PTV": c, "Skin": c})) is None
    assert external_roi_name(s, "ptv") == "PTV"
    with pytest.raises(ValueError, match="ROIs: PTV, Skin_ext, Patient"):
        external_roi_name(s, "Body")
    with pytest.warns(RuntimeWarning, match="2 EXTERNAL ROIs"):
        assert external_roi_name(RTStruct({"Couch": c, "BODY": c}, roi_types={"Couch": "EXTERNAL",
                                                                              "BODY": "EXTERNAL"})) == "BODY"


def _result(dose, density, voxel_mm=2.0):
    g = SimpleNamespace(density_g_cm3_zyx=density, origin_mm=(0.0, 0.0, 0.0), voxel_size_mm=(voxel_mm,) * 3,
                        voxel_volume_cm3=(voxel_mm / 10) ** 3)
    return SimpleNamespace(dose_gy_zyx=dose.copy(), dose_to_water_gy_zyx=dose.astype(np.float32),
                           uncertainty_rel_zyx=np.full(dose.shape, 0.01), geometry=g, provenance={},
                           mean_rel_uncertainty_50=0.0)


def test_apply_outline_zeroes_outside_keeps_raw_and_the_maximum_ignores_air():
    """A 118 Gy air voxel outside (the DCPT plan02 example at 5e4 protons) and a 30 Gy air voxel in a sinus
    inside: neither sets the summary maximum (before: max_dose_gy = 118 Gy)."""
    rng = np.random.default_rng(1)
    dose = rng.uniform(1.0, 2.0, (6, 8, 8))
    density = np.ones(dose.shape)
    body = np.zeros(dose.shape, bool)
    body[:, 2:, :] = True
    density[:, :2, :] = 0.0012
    dose[3, 0, 4] = 118.0                 # outside, air
    density[2, 5, 5], dose[2, 5, 5] = 0.0012, 30.0    # inside, air (a sinus)
    dose[4, 6, 2] = 2.5                   # the true maximum in tissue
    r = _result(dose, density)
    apply_body_outline(r, BodyOutline(body, "test outline", "auto"))
    assert not r.dose_gy_zyx[~body].any() and not r.dose_to_water_gy_zyx[~body].any()
    assert np.array_equal(r.dose_raw_gy_zyx, dose.astype(np.float32)) and r.provenance["body_outline"] == "test outline"
    assert np.array_equal(r.extra_datasets["body_mask"][0], body.astype(np.uint8))
    assert r.extra_datasets["body_mask"][1]["outline"] == "test outline"
    assert r.dose_gy_zyx[2, 5, 5] == 30.0                   # dose to medium as computed inside the outline
    s = dose_summary(r, r.body_outline)
    assert s["max_dose_gy"] == 2.5 and s["max_dose_at_mm"] == [4.0, 12.0, 8.0]
    assert s["max_dose_outside_body_gy_not_reported"] == 118.0 and s["max_dose_low_density_in_body_gy"] == 30.0
    assert 1.9 <= s["d0.03cc_gy"] < 2.5 and s["d2_gy"] <= s["d0.03cc_gy"]   # 4th highest tissue voxel


def test_d_cc_near_maximum():
    from mcproton.dvh import dose_at_volume_cm3

    d = np.arange(1.0, 101.0).reshape(4, 5, 5)
    m = np.ones(d.shape, bool)
    assert dose_at_volume_cm3(d, m, 0.03, 0.008) == 97.0       # ceil(0.03 / 0.008) = 4th highest
    assert dose_at_volume_cm3(d, m, 0.03, 0.027) == 99.0       # 2 voxels of 3 mm
    assert dose_at_volume_cm3(d, m, 5.0, 1.0) == 96.0
    assert np.isnan(dose_at_volume_cm3(d, np.zeros(d.shape, bool), 0.03, 0.008))


def test_a_scripts_rt_dose_of_a_ct_says_the_air_is_in_it_and_the_auto_outline_takes_it_out(tmp_path):
    """The Python workflow (load_ct_series, to_geometry, simulate, write_result_rtdose) kept the dose in air: an
    RT Dose whose maximum was 13 times the patient's (API audit 2026-12-05, F3), where mcproton run writes 0
    outside the body.  Now write_result_rtdose warns on a CT's result without an outline, and
    mcproton.body.auto_body_outline gives the outline mcproton run uses."""
    import warnings

    import mcproton as mcp
    from mcproton.body import auto_body_outline
    from mcproton.dicom import read_rtdose

    hu, head = _synthetic_ct_hu()
    _ct_config(tmp_path, hu)
    cal = mcp.HUCalibration.load("schneider2000")
    geom = cal.to_geometry(mcp.load_ct_series(tmp_path / "ct"))
    beam = mcp.Beam.pencil(70.0, position_mm=(1.0, -60.0, 0.0), direction=(0.0, 1.0, 0.0), total_protons=1e8)
    res = mcp.simulate(geom, beam, mcp.RunSettings(primaries=2000, backend="cpu", threads=1, batches=10))
    assert res.dose_gy_zyx[:, ~head].max() > 0          # the dose in the air in front of the head, as computed
    with pytest.warns(mcp.McprotonRuntimeWarning, match="no body outline, so the RT Dose holds the dose in the air"):
        mcp.write_result_rtdose(res, tmp_path / "RD_air.dcm")
    outline = auto_body_outline(res.geometry, cal)
    assert np.array_equal(outline.mask, np.broadcast_to(head, hu.shape))   # mcproton run's (the test above)
    with warnings.catch_warnings():
        warnings.simplefilter("error", mcp.McprotonRuntimeWarning)
        mcp.write_result_rtdose(res, tmp_path / "RD.dcm", body_outline=outline)
        rd = read_rtdose(tmp_path / "RD.dcm")
        assert not rd.dose_gy_zyx[:, ~head].any() and rd.dose_gy_zyx[:, head].max() > 0
        apply_body_outline(res, outline)                 # or on the result: no warning either
        mcp.write_result_rtdose(res, tmp_path / "RD2.dcm")
