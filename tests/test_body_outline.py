"""The body outline (mcproton/body.py, issue 12 item 3): found from the CT (-400 HU, largest component, holes of
every axial slice filled so that internal air stays inside), from a labelled phantom, from an RT Struct's
EXTERNAL / BODY ROI; the dose outside it is 0 and the raw dose is kept; the summary maximum is not set by air."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from mcproton.body import (AUTO_BODY_HU, BodyOutline, apply_body_outline, body_outline_for, check_targets_inside,
                           dose_summary, external_roi_name)


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
                           uncertainty_rel_zyx=np.full(dose.shape, 0.01), let_d_kev_um_zyx=np.full(dose.shape, 3.0),
                           geometry=g, provenance={}, mean_rel_uncertainty_50=0.0)


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
    # LET_d and the uncertainty too, as where no dose was deposited (before 2026-12-07 left as computed: the run of
    # a plan's beams differed there from the sum of its beams' runs, audit 26 interact F4); inside as computed
    assert not r.let_d_kev_um_zyx[~body].any() and not r.uncertainty_rel_zyx[~body].any()
    assert (r.let_d_kev_um_zyx[body] == 3.0).all() and (r.uncertainty_rel_zyx[body] == 0.01).all()
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


def test_outside_external_takes_the_body_roi_the_outline_takes_and_refuses_an_unclear_one_for_air(monkeypatch):
    """Struct audit 14, F1: with "Skin_old" (EXTERNAL, a part of the head) listed before "body" (EXTERNAL), the
    outline took "body" and the outside-the-External step "Skin_old" (the first): with plan.outside_external = "air"
    half the head became air.  One rule now (mcproton.body.choose_body_roi); for air, several EXTERNAL ROIs none
    or more than one of them named as the body are refused, the message naming them and what to do."""
    from mcproton._io import roi_overrides, rtstruct
    from mcproton._io.rtstruct import RTStruct

    c = [np.zeros((3, 3))]
    monkeypatch.setattr(rtstruct, "mask_unkept", lambda s, g, nm: np.full((1, 1, 2), nm == "body"))
    geo = SimpleNamespace(shape_zyx=(1, 1, 2))
    s = RTStruct({"Skin_old": c, "body": c, "PTV": c}, roi_types={"Skin_old": "EXTERNAL", "body": "EXTERNAL",
                                                                 "PTV": "PTV"})
    assert external_roi_name(s, say=False) == "body"
    assert roi_overrides.outside_external(geo, s)[1] == "body"
    assert roi_overrides.outside_external(geo, s, strict=True)[1] == "body"    # clear by its name
    assert roi_overrides.outside_external(geo, s, wanted="Skin_old")[1] == "Skin_old"
    two = RTStruct({"Skin_old": c, "Skin_new": c}, roi_types={"Skin_old": "EXTERNAL", "Skin_new": "EXTERNAL"})
    with pytest.raises(ValueError, match="2 EXTERNAL ROIs .'Skin_old', 'Skin_new'.*rename or remove.*name it"):
        roi_overrides.outside_external(geo, two, strict=True, remedy="name it")
    # F10: a body named as the body but typed ORGAN is the External for this step too, as for the outline
    organ = RTStruct({"Patient Outline": c}, roi_types={"Patient Outline": "ORGAN"})
    assert roi_overrides.outside_external(geo, organ)[1] == "Patient Outline"


def test_targets_by_type_first_one_rule_for_run_and_check():
    """Struct audit 14, F4 and F10: the check classified "PTV_flash" (CONTROL), "PTVminusBrainstem" (AVOIDANCE),
    "PTV_Marker" (MARKER) as targets by their name, and "Patient Outline" (ORGAN) as an organ."""
    from mcproton._check.compare import classify
    from mcproton.body import target_basis

    assert [classify(n, t) for n, t in (("PTV_flash", "CONTROL"), ("PTV_opt", "CONTROL"), ("PTV_Marker", "MARKER"),
                                        ("PTVminusBrainstem", "AVOIDANCE"), ("PTV_Ring_3mm", "AVOIDANCE"))] == \
        ["other", "other", "other", "oar", "oar"]
    assert [target_basis(n, t) for n, t in (("PTV_eval", "ORGAN"), ("GTV_preop", ""), ("Boost", "PTV"),
                                            ("PTV_flash", "CONTROL"), ("CTV_bolus", "BOLUS"))] == \
        ["name", "name", "type", None, None]
    assert classify("Patient Outline", "ORGAN") == "external" and classify("Skin_old", "EXTERNAL") == "external"
    assert classify("Brainstem", "ORGAN") == "oar"
    # the run's check of the body outline counts the same targets: a PTV typed ORGAN wholly outside is refused
    body = np.zeros((1, 2, 2), bool)
    body[0, 0] = True
    outside = np.zeros_like(body)
    outside[0, 1] = True
    with pytest.raises(ValueError, match="PTV_eval"):
        check_targets_inside(body, {"PTV_eval": outside}, {"PTV_eval": "ORGAN"}, "b", ValueError, "fix")
    check_targets_inside(body, {"PTV_flash": outside}, {"PTV_flash": "CONTROL"}, "b", ValueError, "fix")   # no target


def test_run_warns_of_a_target_partly_outside_the_body_outline():
    """Struct audit 14, F3: `mcproton run` wrote D95 = 0 into the HDF5 DVH of a PTV 8.8 % beyond the skin without a
    word; it warns now above 1 % outside, naming the share."""
    from mcproton.body import warn_targets_partly_outside

    body = np.ones((1, 10, 10), bool)
    body[0, :, 9] = False
    ptv = np.zeros_like(body)
    ptv[0, :, 5:] = True                                     # 10 of its 50 voxels outside
    with pytest.warns(RuntimeWarning, match=r"target 'PTV': 20.0 % of its volume lies outside the body outline"):
        warn_targets_partly_outside(body, {"PTV": ptv}, "RT Struct ROI 'body'")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_targets_partly_outside(body, {"PTV": ptv & body}, "RT Struct ROI 'body'")   # wholly inside: quiet


def test_body_outline_by_name_takes_the_exact_name_and_refuses_an_unclear_case_match():
    """Strings audit 19, F3: output.body_outline = "BODY" used the ROI "body" (the first match ignoring case) beside
    the ROI "BODY": the dose was cut at an outline the user did not choose.  Now the exact name wins; a match in
    another case only where it is the one such ROI (with a warning naming it); several: refused, naming them."""
    import warnings

    from mcproton.body import choose_body_roi

    types = {"body": "EXTERNAL", "BODY": "ORGAN", "Body": "ORGAN", "PTV": "PTV"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert choose_body_roi(["body", "BODY", "PTV"], types, "BODY") == "BODY"
        assert choose_body_roi(["body", "BODY", "PTV"], types, "body") == "body"
    with pytest.warns(RuntimeWarning, match="the ROI 'body', which differs from it in case only, is used"):
        assert choose_body_roi(["body", "PTV"], types, "Body") == "body"
    with pytest.raises(ValueError, match=r"2 that differ from it in case only \('body', 'BODY'\)"):
        choose_body_roi(["body", "BODY", "PTV"], types, "Body")


def _skin_slab_run(tmp_path):
    """`mcproton run` of a 70 MeV beam along +z into a CT of 3 mm voxels: air in slices 0-2, water in 3-12, air in
    13-15, on 6 mm dose blocks (phantom.dose_voxel_mm = 6, blocks of 2 x 2 x 2 CT voxels), no RT Struct (the
    automatic outline).  Block slice 1 holds CT slices 2 (air) and 3 (water): the skin where the beam enters, in
    the half of the block away from its centre; block slice 6 holds slices 12 (water) and 13 (air): where it
    leaves.  Returns (HDF5 result, RT Dose)."""
    from mcproton._io.hdf5 import load_result
    from mcproton.cli import main
    from mcproton.dicom import read_rtdose, write_ct_series

    hu = np.full((16, 8, 8), -1000.0)
    hu[3:13] = 0.0
    write_ct_series(hu, (3.0, 3.0, 3.0), (-10.5, -10.5, 0.0), tmp_path / "ct")
    cfg = tmp_path / "run.toml"
    cfg.write_text('[run]\nprimaries = 400\nbackend = "cpu"\nseed = 4\nthreads = 1\n\n'
                   '[phantom]\ntype = "ct"\nct_dir = "ct"\ndose_voxel_mm = 6.0\n'
                   '\n[beam]\nenergy_mev = 70.0\nposition_mm = [0.0, 0.0, -20.0]\ndirection = [0.0, 0.0, 1.0]\n'
                   'sigma_mm = [3.0, 3.0]\ntotal_protons = 1e9\n\n[output]\nplot = false\n')
    assert main(["run", str(cfg), "--out", str(tmp_path / "d.h5"), "--rtdose", str(tmp_path / "RD.dcm"),
                 "--quiet", "--no-checkpoint"]) == 0
    return load_result(tmp_path / "d.h5"), read_rtdose(tmp_path / "RD.dcm")


def test_auto_outline_on_a_coarser_dose_grid_keeps_the_blocks_holding_the_skin(tmp_path):
    """CSI audit 22, F3: with phantom.dose_voxel_mm coarser than the CT and no RT Struct, the automatic outline was
    thresholded on the blocks' mean density, so a block half skin, half air (about 0.5 g/cm3, below the 0.619 of
    -400 HU) lay outside and its dose was set to 0 in the HDF5, the RT Dose, the DVH and the plots, without a word
    (1227 blocks holding tissue on one CSI field, up to 44 % of the maximum).  The outline is now found on the CT's
    own voxels, a block inside where any of its voxels is: the first and last blocks holding water keep their dose,
    the blocks of air only stay outside."""
    import h5py

    res, rd = _skin_slab_run(tmp_path)
    with h5py.File(tmp_path / "d.h5", "r") as h:
        body, said = h["body_mask"][()].astype(bool), str(h["body_mask"].attrs["outline"])
    dose = np.asarray(res.dose_gy_zyx)
    assert dose.shape == (8, 4, 4)
    centre = (slice(None), slice(1, 3), slice(1, 3))   # the beam's blocks
    along = dose[centre].max(axis=(1, 2))
    assert along[1] > 0 and along[6] > 0                # the skin's blocks, where it enters and where it leaves
    assert along[1] > 0.3 * along[2:6].mean()           # the block's dose (half water), not a trace
    assert along[0] == 0 and along[7] == 0              # air only: outside
    np.testing.assert_allclose(rd.dose_gy_zyx[centre].max(axis=(1, 2))[[1, 6]], along[[1, 6]], rtol=1e-3)
    assert body[1:7].all() and not body[0].any() and not body[7].any()
    assert "any of its CT voxels" in said                # the HDF5 and the summary say how blocks are judged


def test_auto_outline_on_blocks_from_a_script_and_the_many_parts_fallback():
    """mcproton.body.auto_body_outline(geometry, cal, ct) on a grid of blocks: the outline of mcproton run (found on
    the CT's voxels); the labels of outline_from_threshold are 16-bit where they fit, 32-bit beyond 65535 parts
    (the same outline either way)."""
    from types import SimpleNamespace

    from scipy import ndimage

    import mcproton as mcp
    from mcproton.body import auto_body_outline, outline_from_threshold

    hu = np.full((6, 6, 6), -1000.0)
    hu[1:5, 1:5, 3:] = 0.0                                   # water from x = 3: blocks of x 2-3 straddle the skin
    cal = mcp.HUCalibration.load("schneider2000")
    ct = SimpleNamespace(hu_zyx=hu, voxel_size_mm=(1.0, 1.0, 1.0))
    g = SimpleNamespace(voxel_size_mm=(2.0, 2.0, 2.0), shape_zyx=(3, 3, 3),
                        density_g_cm3_zyx=np.full((3, 3, 3), 0.3, np.float32))
    o = auto_body_outline(g, cal, ct)
    assert o.kind == "auto" and "any of its CT voxels" in o.source
    assert o.mask[:, :, 1:].all() and not o.mask[:, :, 0].any()   # blocks of x 2-3 (1 of 2 water) and 4-5 inside
    assert auto_body_outline(g, cal) is None                       # the blocks' mean density: 0.3, all outside
    many = np.zeros((32, 130, 130), bool)
    many[::2, ::2, ::2] = True                                     # 67600 single voxels, none touching
    assert ndimage.label(many)[1] > 65535
    got = outline_from_threshold(many)
    assert got.sum() == 1 and got[0, 0, 0]                         # the first of the equal parts, as before


def test_the_outline_on_the_cts_voxels_is_made_only_where_the_run_takes_the_automatic_one(monkeypatch, tmp_path):
    """build_geometry finds the automatic outline on the CT's voxels (a cost of 3 bytes per CT voxel) only where
    body_outline_for will take it: no RT Struct, output.body_outline = "ct", or an RT Struct without a body ROI."""
    import mcproton._io.rtstruct as rts
    from mcproton.body import auto_outline_wanted

    structs = {"with.dcm": {"BODY": "EXTERNAL", "PTV": "PTV"}, "without.dcm": {"PTV": "PTV"}}
    monkeypatch.setattr(rts, "read_rtstruct", lambda p: SimpleNamespace(
        contours={n: [np.zeros((3, 3))] for n in structs[p.name]}, roi_types=structs[p.name], path=p))
    base = {"phantom": {"type": "ct"}, "_base_dir": str(tmp_path)}
    assert auto_outline_wanted(base)
    assert not auto_outline_wanted({**base, "output": {"body_outline": "none"}})
    assert not auto_outline_wanted({**base, "plan": {"rtstruct": "with.dcm"}})
    assert auto_outline_wanted({**base, "plan": {"rtstruct": "without.dcm"}})
    assert auto_outline_wanted({**base, "plan": {"rtstruct": "with.dcm"}, "output": {"body_outline": "ct"}})
    assert not auto_outline_wanted({**base, "plan": {"rtstruct": "with.dcm"}, "output": {"body_outline": "BODY"}})
