"""The RT Struct's material overrides on a patient CT (mcproton/_io/roi_overrides.py): a planning system computes
with them (a bolus, artifacts set to tissue, a phantom set to water), so `mcproton check` and `mcproton run` put
them into the CT's geometry.  Before 2026-12-05 they were read only to build a phantom without a CT; on a CT they
were ignored in silence, and the dose was that of another patient than the planning system's."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "check"))
from test_check import _write_rs   # noqa: E402  (an RT Struct with a box PTV and the External)

from mcproton._io.roi_overrides import apply_overrides, roi_overrides   # noqa: E402

PMMA_Z = {1: 0.080538, 6: 0.599848, 8: 0.319614}   # mass fractions of PMMA (C5H8O2) by atomic number


def _override(path: Path, roi: str, rel_mass=None, rel_elec=None, comp=None, spr=None, other=()) -> None:
    """Give ROI ``roi`` of the RT Struct the physical properties a planning system writes for an override
    (``spr``: REL_STOP_RATIO; ``other``: more (property, value) pairs, e.g. ("EFFECTIVE_Z", 22))."""
    ds = pydicom.dcmread(path)
    num = next(int(r.ROINumber) for r in ds.StructureSetROISequence if r.ROIName == roi)
    obs = next(o for o in ds.RTROIObservationsSequence if int(o.ReferencedROINumber) == num)
    props = []
    for prop, val in (("REL_MASS_DENSITY", rel_mass), ("REL_ELEC_DENSITY", rel_elec), ("REL_STOP_RATIO", spr),
                      *other):
        if val is None:
            continue
        pp = Dataset()
        pp.ROIPhysicalProperty, pp.ROIPhysicalPropertyValue = prop, val
        props.append(pp)
    if comp:
        pp = Dataset()
        pp.ROIPhysicalProperty, pp.ROIPhysicalPropertyValue = "ELEM_FRACTION", 0
        items = []
        for z, w in comp.items():
            e = Dataset()
            e.ROIElementalCompositionAtomicNumber, e.ROIElementalCompositionAtomicMassFraction = z, w
            items.append(e)
        pp.ROIElementalCompositionSequence = Sequence(items)
        props.append(pp)
    obs.ROIPhysicalPropertiesSequence = Sequence(props)
    ds.save_as(path)


@pytest.fixture
def water_ct(tmp_path):
    """A water box CT (0 HU) and the geometry of `mcproton check` / `mcproton run` from it (schneider2000)."""
    from mcproton._io.hu_calibration import HUCalibration
    from mcproton.dicom import load_ct_series, write_ct_series

    hu = np.full((14, 28, 28), -1000.0)
    hu[:, 4:-4, 4:-4] = 0.0
    write_ct_series(hu, (4.0, 4.0, 4.0), (-54.0, -54.0, -26.0), tmp_path / "ct")
    g = HUCalibration.load("schneider2000").to_geometry(load_ct_series(tmp_path / "ct"))
    return tmp_path, g


def _ptv_mask(g) -> np.ndarray:
    from mcproton._io.rtstruct import rasterise, read_rtstruct

    return rasterise(read_rtstruct(g.rs), g, names=["PTV"])["PTV"]


def test_a_pmma_override_replaces_the_ct_in_its_roi_and_nowhere_else(water_ct):
    tmp, g = water_ct
    _write_rs(tmp / "RS.dcm", None)                 # PTV box -16..16 x -16..16 x -12..12 mm
    _override(tmp / "RS.dcm", "PTV", rel_mass=1.19, comp=PMMA_Z)
    before_rho, before_mi = g.density_g_cm3_zyx.copy(), g.material_index_zyx.copy()
    notes = apply_overrides(g, tmp / "RS.dcm")
    g.rs = tmp / "RS.dcm"
    m = _ptv_mask(g)
    assert m.sum() == 8 * 8 * 6 and len(notes) == 1 and "'PTV'" in notes[0] and "pmma" in notes[0]
    assert np.all(g.density_g_cm3_zyx[m] == np.float32(1.19))
    assert {g.materials[i].name for i in np.unique(g.material_index_zyx[m])} == {"pmma"}
    np.testing.assert_array_equal(g.density_g_cm3_zyx[~m], before_rho[~m])
    np.testing.assert_array_equal(g.material_index_zyx[~m], before_mi[~m])


def test_an_electron_density_override_alone_is_water_at_that_density(water_ct):
    """Eclipse-style: REL_ELEC_DENSITY only (no composition): water at a mass density equal to it."""
    tmp, g = water_ct
    _write_rs(tmp / "RS.dcm", None)
    _override(tmp / "RS.dcm", "PTV", rel_elec=1.6)
    (r,) = roi_overrides(tmp / "RS.dcm")
    assert r["property"] == "REL_ELEC_DENSITY" and r["density_g_cm3"] == 1.6
    apply_overrides(g, tmp / "RS.dcm")
    g.rs = tmp / "RS.dcm"
    m = _ptv_mask(g)
    assert np.all(g.density_g_cm3_zyx[m] == np.float32(1.6))
    assert {g.materials[i].name for i in np.unique(g.material_index_zyx[m])} == {"water"}


def test_the_external_first_then_the_rois_inside_it(water_ct):
    """A phantom whose External is set to water and an insert to PMMA (APTG plan03's RayStation set-up): the insert
    wins inside the External, whatever order the file lists them in."""
    tmp, g = water_ct
    _write_rs(tmp / "RS.dcm", None)
    _override(tmp / "RS.dcm", "PTV", rel_mass=1.19, comp=PMMA_Z)
    _override(tmp / "RS.dcm", "External", rel_mass=1.0)
    names = [r["name"] for r in roi_overrides(tmp / "RS.dcm")]
    assert names == ["External", "PTV"]
    apply_overrides(g, tmp / "RS.dcm")
    g.rs = tmp / "RS.dcm"
    assert np.all(g.density_g_cm3_zyx[_ptv_mask(g)] == np.float32(1.19))


@pytest.mark.filterwarnings("ignore:Invalid value for VR DS")   # pydicom's, on writing the damaged "nan"
@pytest.mark.parametrize("value", ["nan", "-1", "1190"])
def test_a_damaged_override_value_is_refused(water_ct, value):
    tmp, g = water_ct
    _write_rs(tmp / "RS.dcm", None)
    _override(tmp / "RS.dcm", "PTV", rel_mass=value)
    with pytest.raises(ValueError, match="not a density relative to water"):
        apply_overrides(g, tmp / "RS.dcm")


def test_run_applies_the_overrides_of_plan_rtstruct_unless_told_to_ignore_them(water_ct, capsys):
    """`mcproton run` with a CT and plan.rtstruct: the geometry holds the override (and says so); with
    plan.struct_overrides = "ignore" the CT as it is (and says what was ignored)."""
    from mcproton.config import ConfigError, build_geometry

    tmp, _ = water_ct
    _write_rs(tmp / "RS.dcm", None)
    _override(tmp / "RS.dcm", "PTV", rel_mass=1.19, comp=PMMA_Z)
    cfg = {"phantom": {"type": "ct", "ct_dir": str(tmp / "ct")}, "plan": {"rtstruct": str(tmp / "RS.dcm")}}
    g = build_geometry(cfg)
    g.rs = tmp / "RS.dcm"
    assert np.all(g.density_g_cm3_zyx[_ptv_mask(g)] == np.float32(1.19))
    assert "structure-set override: ROI 'PTV'" in capsys.readouterr().err
    cfg["plan"]["struct_overrides"] = "ignore"
    g = build_geometry(cfg)
    g.rs = tmp / "RS.dcm"
    assert float(g.density_g_cm3_zyx[_ptv_mask(g)].max()) < 1.1          # water's, from the CT
    assert "ignored (plan.struct_overrides = 'ignore'): ROI 'PTV'" in capsys.readouterr().err
    cfg["plan"]["struct_overrides"] = "yes"
    with pytest.raises(ConfigError, match="plan.struct_overrides"):
        build_geometry(cfg)


def test_check_applies_the_overrides_on_a_patient_ct(water_ct, monkeypatch):
    """`mcproton check` on a CT with an RT Struct holding an override: the geometry the Monte Carlo gets holds it
    (the check stops there: no transport in this test); --struct-overrides ignore leaves the CT as it is."""
    tmp, _ = water_ct
    for how, want in (("apply", 1.19), ("ignore", 1.0188)):
        got = _check_density_in_ptv(tmp, monkeypatch, {"rel_mass": 1.19, "comp": PMMA_Z}, struct_overrides=how)
        assert got == pytest.approx(want, abs=2e-3), how


def _check_density_in_ptv(tmp: Path, monkeypatch, override: dict, **check_kw) -> float:
    """`mcproton check` (``check_kw``: its options) on a water box with an RT Struct whose PTV has the override
    ``override`` (:func:`_override`'s keywords): the largest density in the PTV of the geometry its Monte Carlo gets
    (the check stops there: no transport)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "check"))
    from test_check_pairing import STUDY, _hu, _plan, _rd

    from mcproton._check import api
    from mcproton.dicom import write_ct_series

    write_ct_series(_hu(), (4.0, 4.0, 4.0), (-54.0, -54.0, -26.0), tmp / "ct_t1", study=STUDY)   # the plan's patient
    uid = _plan(tmp / "RP.dcm")
    _rd(tmp / "RD.dcm", uid)
    _write_rs(tmp / "RS.dcm", None)
    _override(tmp / "RS.dcm", "PTV", **override)
    seen = {}

    class Stop(Exception):
        pass

    def fake_run_mc(inputs, geometry, *a, **k):
        geometry.rs = tmp / "RS.dcm"
        seen["max_in_ptv"] = float(geometry.density_g_cm3_zyx[_ptv_mask(geometry)].max())
        raise Stop

    monkeypatch.setattr(api, "run_mc", fake_run_mc)
    with pytest.raises(Stop):
        api.check(plan=tmp / "RP.dcm", dose=tmp / "RD.dcm", ct=tmp / "ct_t1", struct=tmp / "RS.dcm",
                  beam_model="dcpt_v2", out=None, progress=False, log=lambda m: None, **check_kw)
    return seen["max_in_ptv"]


def _couch_case(tmp: Path, couch_type: str | None = None):
    """A water box (the External) on a 'couch' slab in the CT below it (y 44-52 mm, 1.5 g/cm3 by schneider2000 at
    ~900 HU), a plan with a posterior beam (gantry 180: through the couch) and an anterior one (gantry 0), and
    their RT Doses; ``couch_type``: the couch also contoured as an ROI of that type."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "check"))
    from dicom_factories import make_plan, save, spot_grid
    from test_check import FOR
    from test_check_pairing import STUDY, _hu, _rd

    from mcproton.dicom import write_ct_series

    hu = _hu()
    hu[:, 25:27, :] = 900.0                   # y = 44..52 mm (XS from -54 in 4 mm steps): below the box
    write_ct_series(hu, (4.0, 4.0, 4.0), (-54.0, -54.0, -26.0), tmp / "ct_t1", study=STUDY)
    layers = [(90.0, spot_grid(3, 8.0), [1.0] * 9)]
    ds = make_plan([{"gantry": g, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "layers": layers, "meterset": 20.0}
                    for g in (180.0, 0.0)], frame_of_reference_uid=FOR)
    save(ds, tmp / "RP.dcm")
    _rd(tmp / "RD.dcm", str(ds.SOPInstanceUID))
    _write_rs(tmp / "RS.dcm", None)
    if couch_type:
        rs = pydicom.dcmread(tmp / "RS.dcm")
        roi, contour, obs = (Dataset(), Dataset(), Dataset())
        roi.ROINumber, roi.ROIName, roi.ReferencedFrameOfReferenceUID = 9, "Couch", FOR
        cs = []
        for z in np.arange(-19.0, 20.0, 2.0):
            c = Dataset()
            c.ContourGeometricType, c.NumberOfContourPoints = "CLOSED_PLANAR", 4
            c.ContourData = [v for x, y in ((-56, 44), (56, 44), (56, 52), (-56, 52)) for v in (float(x), float(y), z)]
            cs.append(c)
        contour.ReferencedROINumber, contour.ContourSequence = 9, Sequence(cs)
        obs.ObservationNumber, obs.ReferencedROINumber, obs.RTROIInterpretedType = 9, 9, couch_type
        rs.StructureSetROISequence.append(roi)
        rs.ROIContourSequence.append(contour)
        rs.RTROIObservationsSequence.append(obs)
        rs.save_as(tmp / "RS.dcm")


def _couch_density(tmp: Path, monkeypatch, **kw) -> tuple[float, list[str]]:
    """Run the check of _couch_case up to the transport: (the couch's median density in the geometry the Monte
    Carlo gets, the check's log lines)."""
    from mcproton._check import api

    seen: dict = {}
    lines: list[str] = []

    class Stop(Exception):
        pass

    def fake_run_mc(inputs, geometry, *a, **k):
        # the couch's voxels in the geometry: y index of 48 mm, in x and z inside the grid
        j = int(round((48.0 - geometry.origin_mm[1]) / geometry.voxel_size_mm[1]))
        seen["couch"] = float(np.median(geometry.density_g_cm3_zyx[:, j, :]))
        raise Stop

    monkeypatch.setattr(api, "run_mc", fake_run_mc)
    with pytest.raises(Stop):
        api.check(plan=tmp / "RP.dcm", dose=tmp / "RD.dcm", ct=tmp / "ct_t1", struct=tmp / "RS.dcm",
                  beam_model="dcpt_v2", out=None, progress=False, log=lines.append, **kw)
    return seen["couch"], lines


@pytest.mark.parametrize("couch_type,how,note_beams,couch_rho", [
    (None, "ct", {1}, "ct"),            # the couch transported, and the posterior beam named
    (None, "air", set(), "air"),        # outside the External: air
    ("SUPPORT", "air", set(), "ct"),    # a couch contoured as SUPPORT stays, and is not outside
])
def test_ct_material_outside_the_external(tmp_path, monkeypatch, couch_type, how, note_beams, couch_rho):
    _couch_case(tmp_path, couch_type)
    couch, lines = _couch_density(tmp_path, monkeypatch, outside_external=how)
    seen = {"couch": couch}
    named = {int(m.split("beam ")[1].split(":")[0]) for m in lines if "outside the External 'External'" in m
             and "central axis crosses" in m}
    assert named == note_beams, lines
    if note_beams:   # 2 voxels of ~1.5 g/cm3 on the axis: ~12 mm of water by mass
        msg = next(m for m in lines if "central axis crosses" in m)
        mm = float(msg.split("crosses ")[1].split(" mm")[0])
        assert 9.0 < mm < 14.0, msg
    assert (seen["couch"] > 1.2) if couch_rho == "ct" else (seen["couch"] < 0.01), seen


def test_run_sets_air_outside_the_external_when_asked(tmp_path, capsys):
    """`mcproton run`: plan.outside_external = "air" empties the couch below the External (default "ct": kept)."""
    from mcproton.config import ConfigError, build_geometry

    _couch_case(tmp_path)
    cfg = {"phantom": {"type": "ct", "ct_dir": str(tmp_path / "ct_t1")}, "plan": {"rtstruct": str(tmp_path / "RS.dcm")}}
    g = build_geometry(cfg)
    j = int(round((48.0 - g.origin_mm[1]) / g.voxel_size_mm[1]))
    assert float(np.median(g.density_g_cm3_zyx[:, j, :])) > 1.2
    cfg["plan"]["outside_external"] = "air"
    g = build_geometry(cfg)
    assert float(g.density_g_cm3_zyx[:, j, :].max()) < 0.01
    assert "outside the External 'External': air" in capsys.readouterr().err
    cfg["plan"]["outside_external"] = "vacuum"
    with pytest.raises(ConfigError, match="plan.outside_external"):
        build_geometry(cfg)
    del cfg["plan"]["rtstruct"]
    cfg["plan"]["outside_external"] = "air"
    with pytest.raises(ConfigError, match="needs plan.rtstruct"):
        build_geometry(cfg)


def _heterogeneity(path: Path, values) -> None:
    ds = pydicom.dcmread(path)
    ds.TissueHeterogeneityCorrection = values
    ds.save_as(path)


@pytest.mark.parametrize("rd_says,rs_override,how,expect", [
    (["IMAGE", "ROI_OVERRIDE"], False, "apply", "they were not exported"),     # RayStation's words, no override
    # an override mcproton does not apply (EFFECTIVE_Z alone) is not "none exported" (audit 2026-12-05 F2)
    (["IMAGE", "ROI_OVERRIDE"], "EFFECTIVE_Z", "apply",
     "holds only ROI physical properties that mcproton does not apply (ROI 'PTV': EFFECTIVE_Z 22"),
    (["IMAGE", "ROI_OVERRIDE"], True, "ignore", "--struct-overrides ignore leaves out"),
    (["IMAGE"], True, "apply", "give --struct-overrides ignore"),
    (["IMAGE", "ROI_OVERRIDE"], True, "apply", None),                          # both agree: nothing to say
    (["IMAGE"], False, "apply", None),
])
def test_what_the_tps_dose_says_it_was_computed_with(water_ct, monkeypatch, rd_says, rs_override, how, expect):
    """TissueHeterogeneityCorrection (3004,0014) of the TPS dose against the structure set's overrides: a dose
    computed with ROI overrides that the RT Struct does not hold (not exported) is said to be, before any transport."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "check"))
    from test_check_pairing import STUDY, _hu, _plan, _rd

    from mcproton._check import api
    from mcproton.dicom import write_ct_series

    tmp, _ = water_ct
    write_ct_series(_hu(), (4.0, 4.0, 4.0), (-54.0, -54.0, -26.0), tmp / "ct_t1", study=STUDY)
    uid = _plan(tmp / "RP.dcm")
    _rd(tmp / "RD.dcm", uid)
    _heterogeneity(tmp / "RD.dcm", rd_says)
    _write_rs(tmp / "RS.dcm", None)
    if rs_override == "EFFECTIVE_Z":
        _override(tmp / "RS.dcm", "PTV", other=[("EFFECTIVE_Z", 22)])
    elif rs_override:
        _override(tmp / "RS.dcm", "PTV", rel_mass=1.19, comp=PMMA_Z)
    lines: list[str] = []

    class Stop(Exception):
        pass

    def fake_run_mc(*a, **k):
        raise Stop

    monkeypatch.setattr(api, "run_mc", fake_run_mc)
    with pytest.raises(Stop):
        api.check(plan=tmp / "RP.dcm", dose=tmp / "RD.dcm", ct=tmp / "ct_t1", struct=tmp / "RS.dcm",
                  beam_model="dcpt_v2", out=None, progress=False, log=lines.append, struct_overrides=how)
    said = [m for m in lines if "TissueHeterogeneityCorrection" in m]
    assert (expect is None and not said) or (len(said) == 1 and expect in said[0]), lines


def test_a_tps_dose_computed_in_water_is_refused(tmp_path):
    """TissueHeterogeneityCorrection WATER: the planning system ignored the CT; a check on the CT would compare two
    different calculations."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "check"))
    from test_check_pairing import _rd

    from mcproton._check.inputs import CheckInputError, read_tps_dose

    _rd(tmp_path / "RD.dcm", "1.2.3")
    _heterogeneity(tmp_path / "RD.dcm", "WATER")
    with pytest.raises(CheckInputError, match="whole volume as water"):
        read_tps_dose(tmp_path / "RD.dcm")
    _heterogeneity(tmp_path / "RD.dcm", ["IMAGE", "ROI_OVERRIDE"])
    assert read_tps_dose(tmp_path / "RD.dcm").heterogeneity == ("IMAGE", "ROI_OVERRIDE")


def test_an_override_goes_to_its_own_roi_when_two_rois_share_a_name(water_ct):
    """Two ROIs named 'PTV' (numbers 1 and 2: read_rtstruct keeps both, the second as 'PTV_2'), the override on the
    second one only.  Before review7 the override was looked up by the name alone and filled the FIRST PTV's
    voxels with PMMA, leaving the ROI that carries it as CT: a wrong patient, with a note that looked right."""
    from mcproton._io.rtstruct import rasterise, read_rtstruct

    tmp, g = water_ct
    _write_rs(tmp / "RS.dcm", None, targets=[("PTV", (-16.0, -16.0, -12.0), (0.0, 16.0, 12.0)),
                                             ("PTV", (8.0, -16.0, -12.0), (24.0, 16.0, 12.0))])
    ds = pydicom.dcmread(tmp / "RS.dcm")
    pp = Dataset()
    pp.ROIPhysicalProperty, pp.ROIPhysicalPropertyValue = "REL_MASS_DENSITY", 1.19
    next(o for o in ds.RTROIObservationsSequence if int(o.ReferencedROINumber) == 2) \
        .ROIPhysicalPropertiesSequence = Sequence([pp])
    ds.save_as(tmp / "RS.dcm")
    s = read_rtstruct(tmp / "RS.dcm")
    assert sorted(s.roi_numbers.items(), key=lambda kv: kv[1])[:2] == [("PTV", 1), ("PTV_2", 2)]
    masks = rasterise(s, g, names=["PTV", "PTV_2"])
    first, second = masks["PTV"] & ~masks["PTV_2"], masks["PTV_2"]
    assert first.sum() > 0 and second.sum() > 0
    before = g.density_g_cm3_zyx.copy()
    (note,) = apply_overrides(g, tmp / "RS.dcm")
    assert "'PTV_2'" in note, note
    assert np.all(g.density_g_cm3_zyx[second] == np.float32(1.19))
    np.testing.assert_array_equal(g.density_g_cm3_zyx[first], before[first])


@pytest.mark.parametrize("struct", ["no_external", "none"])
def test_check_refuses_outside_external_air_it_cannot_do(tmp_path, monkeypatch, struct):
    """--outside-external air with a structure set without an EXTERNAL ROI, or without a structure set: refused
    before any transport, as `mcproton run` refuses plan.outside_external = "air" there.  Before review7 the check
    went on with the CT outside the body (a couch in the beam) and said nothing of the option it had not done."""
    from mcproton._check import api
    from mcproton._check.inputs import CheckInputError

    _couch_case(tmp_path)
    if struct == "no_external":
        ds = pydicom.dcmread(tmp_path / "RS.dcm")
        for o in ds.RTROIObservationsSequence:
            o.RTROIInterpretedType = "ORGAN" if o.RTROIInterpretedType == "EXTERNAL" else o.RTROIInterpretedType
        for r in ds.StructureSetROISequence:   # nor named as the body (mcproton.body.BODY_NAMES: then it is one)
            r.ROIName = "Skin" if r.ROIName.lower() in ("body", "external", "outline") else r.ROIName
        ds.save_as(tmp_path / "RS.dcm")

    class Stop(Exception):
        pass

    def fake_run_mc(*a, **k):
        raise Stop

    monkeypatch.setattr(api, "run_mc", fake_run_mc)
    kw = dict(plan=tmp_path / "RP.dcm", dose=tmp_path / "RD.dcm", ct=tmp_path / "ct_t1", beam_model="dcpt_v2",
              out=None, progress=False, log=lambda m: None)
    if struct == "no_external":
        kw["struct"] = tmp_path / "RS.dcm"
    else:
        (tmp_path / "RS.dcm").unlink()
    with pytest.raises(CheckInputError, match="--outside-external air needs"):
        api.check(**kw, outside_external="air")
    with pytest.raises(Stop):   # the default: the CT as it is, which needs no External
        api.check(**kw)


def test_air_outside_the_external_keeps_the_geometry_within_255_materials():
    """set_outside_to_air appends air when the geometry has none: with 255 materials already that made a 256th (the
    index 255 of a uint8), which VoxelGeometry refuses to build; refused here instead (apply_overrides checks the
    same limit)."""
    from mcproton._io.roi_overrides import set_outside_to_air
    from mcproton.geometry import VoxelGeometry
    from mcproton.materials import get_material

    water = get_material("water")
    g = VoxelGeometry(np.zeros((2, 2, 2), np.uint8), np.ones((2, 2, 2), np.float32), [water] * 255, (1.0, 1.0, 1.0))
    mask = np.zeros((2, 2, 2), bool)
    mask[0] = True
    with pytest.raises(ValueError, match="255"):
        set_outside_to_air(g, mask)
    assert len(g.materials) == 255
    g = VoxelGeometry(np.zeros((2, 2, 2), np.uint8), np.ones((2, 2, 2), np.float32), [water] * 254, (1.0, 1.0, 1.0))
    assert set_outside_to_air(g, mask) == 4 and len(g.materials) == 255 and g.materials[254].name == "air"


def test_an_override_roi_outside_the_external_stays_with_air_outside(tmp_path, monkeypatch):
    """A bolus or couch that the planning system overrode but did not type SUPPORT/FIXATION/BOLUS, outside the
    External: with --outside-external air its override material stays (the planning system put it there); with
    the overrides ignored it is outside like the rest."""
    _couch_case(tmp_path, couch_type="AVOIDANCE")                 # the couch contoured, as no support type
    _override(tmp_path / "RS.dcm", "Couch", rel_mass=1.19, comp=PMMA_Z)
    for how, want in (("apply", 1.19), ("ignore", 0.0012)):
        couch, _ = _couch_density(tmp_path, monkeypatch, struct_overrides=how, outside_external="air")
        assert couch == pytest.approx(want, abs=1e-3), how


def test_an_rt_dose_of_a_geometry_with_overrides_says_so(water_ct, tmp_path):
    """TissueHeterogeneityCorrection (3004,0014) of what mcproton writes: IMAGE for the CT as it is, IMAGE\\
    ROI_OVERRIDE once the structure set's overrides (or air outside its External) replaced part of it, as the
    planning systems write it (RayStation's plan03 dose: IMAGE\\ROI_OVERRIDE)."""
    from mcproton._io.dicom_common import StudyReference
    from mcproton._io.rtdose import write_rtdose

    tmp, g = water_ct
    dose = np.zeros(g.shape_zyx)
    study = StudyReference(frame_of_reference_uid="1.2.826.0.1.3680043.8.498.4242")
    path = write_rtdose(dose, g.voxel_size_mm, g.origin_mm, tmp_path / "a.dcm", study=study,
                        heterogeneity=getattr(g, "tissue_heterogeneity", ("IMAGE",)))
    assert pydicom.dcmread(path).TissueHeterogeneityCorrection == "IMAGE"
    _write_rs(tmp / "RS.dcm", None)
    _override(tmp / "RS.dcm", "PTV", rel_mass=1.19, comp=PMMA_Z)
    apply_overrides(g, tmp / "RS.dcm")
    path = write_rtdose(dose, g.voxel_size_mm, g.origin_mm, tmp_path / "b.dcm", study=study,
                        heterogeneity=g.tissue_heterogeneity)
    assert list(pydicom.dcmread(path).TissueHeterogeneityCorrection) == ["IMAGE", "ROI_OVERRIDE"]


@pytest.mark.parametrize("how", ["check", "run"])
def test_a_thin_override_keeps_its_water_equivalent_thickness_on_coarser_blocks(tmp_path, monkeypatch, how):
    """The overrides go onto the CT's own voxels before the blocks of the TPS spacing are formed: a 5 mm slab set
    to 0.05 g/cm3 (a gas pocket set to near air) on a 1 mm water CT, checked on a 3 mm TPS grid, keeps its
    water-equivalent thickness.  Set by block centre, as before, it was one 3 mm block: 2 mm of water too much on
    the beam's way (measured with the old order: 2.9 mm instead of 4.9 mm of WET removed)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "check"))
    from test_check_pairing import STUDY, _plan

    from mcproton._check import api
    from mcproton._io.rtdose import write_rtdose
    from mcproton.dicom import write_ct_series
    from mcproton.geometry import RESAMPLE_REFERENCE_ENERGY_MEV, _mass_stopping

    write_ct_series(np.zeros((24, 60, 60)), (1.0, 1.0, 1.0), (-29.5, -29.5, -11.5), tmp_path / "ct_t1", study=STUDY)
    uid = _plan(tmp_path / "RP.dcm")
    tps = np.zeros((8, 20, 20))
    tps[2:-2, 3:-3, 3:-3] = 1.0                       # inside the grid (a dose on its faces is refused)
    write_rtdose(tps, (3.0, 3.0, 3.0), (-28.5, -28.5, -10.5), tmp_path / "RD.dcm",
                 study=STUDY.replace(plan_sop_instance_uid=uid))
    _write_rs(tmp_path / "RS.dcm", None)
    rs = pydicom.dcmread(tmp_path / "RS.dcm")
    num = next(int(r.ROINumber) for r in rs.StructureSetROISequence if r.ROIName == "PTV")
    for c in next(c for c in rs.ROIContourSequence if int(c.ReferencedROINumber) == num).ContourSequence:
        pts = np.array(c.ContourData, float).reshape(-1, 3)   # the PTV box made a slab: y in (-1, 4], |x| < 20
        pts[:, 1] = np.where(pts[:, 1] < 0, -1.0, 4.0)
        pts[:, 0] = np.where(pts[:, 0] < 0, -20.0, 20.0)
        c.ContourData = [float(v) for v in pts.ravel()]
    rs.save_as(tmp_path / "RS.dcm")
    _override(tmp_path / "RS.dcm", "PTV", rel_mass=0.05)     # no composition: water at 0.05 g/cm3
    def removed(geometry) -> tuple[float, float, float]:
        """(WET a column beside the slab minus one through it, the water CT's WET per mm, the y voxel) in mm."""
        e = RESAMPLE_REFERENCE_ENERGY_MEV
        s = np.array([_mass_stopping(m, e) for m in geometry.materials]) / _mass_stopping("water", e)
        lin = geometry.density_g_cm3_zyx * s[geometry.material_index_zyx]       # water-equivalent per mm
        k_, vy = geometry.shape_zyx[0] // 2, geometry.voxel_size_mm[1]
        return float((lin[k_, :, -1] - lin[k_, :, 10]).sum() * vy), float(lin[k_, 2, -1]), vy

    if how == "check":
        seen = {}

        class Stop(Exception):
            pass

        def fake_run_mc(inputs, geometry, *a, **k):
            seen["r"] = removed(geometry)
            raise Stop

        monkeypatch.setattr(api, "run_mc", fake_run_mc)
        with pytest.raises(Stop):
            api.check(plan=tmp_path / "RP.dcm", dose=tmp_path / "RD.dcm", ct=tmp_path / "ct_t1",
                      struct=tmp_path / "RS.dcm", beam_model="dcpt_v2", out=None, progress=False,
                      log=lambda m: None)
        gone, lin_ct, vy = seen["r"]
    else:   # mcproton run with phantom.dose_voxel_mm: the same order
        from mcproton.config import build_geometry

        gone, lin_ct, vy = removed(build_geometry({"phantom": {"type": "ct", "ct_dir": str(tmp_path / "ct_t1"),
                                                               "dose_voxel_mm": [3.0, 3.0, 3.0]},
                                                   "plan": {"rtstruct": str(tmp_path / "RS.dcm")}}))
    assert vy == 3.0
    assert gone == pytest.approx(5.0 * (lin_ct - 0.05), abs=0.1)


def test_overlapping_override_rois_the_later_wins_and_the_note_says_so(water_ct):
    tmp, g = water_ct
    _write_rs(tmp / "RS.dcm", None, targets=[("A", (-16.0, -16.0, -12.0), (16.0, 16.0, 12.0)),
                                             ("B", (0.0, -16.0, -12.0), (24.0, 16.0, 12.0))])
    _override(tmp / "RS.dcm", "A", rel_mass=1.19, comp=PMMA_Z)
    _override(tmp / "RS.dcm", "B", rel_mass=1.6)
    notes = apply_overrides(g, tmp / "RS.dcm")
    a, b = (next(n for n in notes if n.startswith(f"ROI {k!r}")) for k in ("A", "B"))
    assert "192 of them overlap the later override ROI(s) 'B'" in a, a    # 4 x 8 x 6 voxels of 4 mm
    assert "overlap" not in b, b
    from mcproton._io.rtstruct import rasterise, read_rtstruct

    m = rasterise(read_rtstruct(tmp / "RS.dcm"), g, names=["A", "B"])
    assert np.all(g.density_g_cm3_zyx[m["A"] & m["B"]] == np.float32(1.6))
    assert np.all(g.density_g_cm3_zyx[m["A"] & ~m["B"]] == np.float32(1.19))


def test_a_run_on_a_geometry_with_overrides_says_so_in_its_provenance(water_ct):
    """The run's provenance (HDF5, summary) names what the dose was computed with, as its RT Dose does."""
    import mcproton

    tmp, g = water_ct
    beam = mcproton.Beam.pencil(70.0, position_mm=(0.0, -60.0, 0.0), direction=(0.0, 1.0, 0.0))
    settings = mcproton.RunSettings(primaries=200, batches=2, backend="cpu", seed=3)
    assert mcproton.simulate(g, beam, settings).provenance["tissue_heterogeneity"] == ["IMAGE"]
    _write_rs(tmp / "RS.dcm", None)
    _override(tmp / "RS.dcm", "PTV", rel_mass=1.19, comp=PMMA_Z)
    apply_overrides(g, tmp / "RS.dcm")
    assert mcproton.simulate(g, beam, settings).provenance["tissue_heterogeneity"] == ["IMAGE", "ROI_OVERRIDE"]


@pytest.mark.parametrize("how", ["overrides", "outside_external_air"])
def test_an_rt_dose_written_from_a_loaded_result_says_what_its_dose_was_computed_with(water_ct, tmp_path, how):
    """Audit 24 swallow F3: a run with a structure set's overrides (or plan.outside_external = "air", which
    config.build_geometry does with set_outside_to_air) writes its RT Dose as IMAGE\\ROI_OVERRIDE; its result saved,
    loaded and written again (to rescale fractions, to sum runs, dose to water) said IMAGE: the loaded geometry did
    not keep it, and write_result_rtdose read the geometry's.  Now the loaded geometry has it again, and the RT Dose
    is written from the provenance's record (a sum of loaded results included)."""
    import warnings

    import mcproton
    from mcproton._io.roi_overrides import set_outside_to_air
    from mcproton.dicom import write_result_rtdose
    from mcproton.run import DoseResult, sum_results

    tmp, g = water_ct
    if how == "overrides":
        _write_rs(tmp / "RS.dcm", None)
        _override(tmp / "RS.dcm", "PTV", rel_mass=1.19, comp=PMMA_Z)
        apply_overrides(g, tmp / "RS.dcm")
    else:
        outside = np.zeros(g.shape_zyx, bool)
        outside[:, :, :6] = True   # water voxels "outside the External" (x < -34 mm)
        assert set_outside_to_air(g, outside) > 0
    both = ["IMAGE", "ROI_OVERRIDE"]
    assert list(g.tissue_heterogeneity) == both
    beam = mcproton.Beam.pencil(70.0, position_mm=(0.0, -60.0, 0.0), direction=(0.0, 1.0, 0.0), total_protons=1e9)
    r = mcproton.simulate(g, beam, mcproton.RunSettings(primaries=200, batches=2, backend="cpu", seed=3))
    assert r.provenance["tissue_heterogeneity"] == both
    r.save(tmp_path / "r.h5")
    loaded = DoseResult.load(tmp_path / "r.h5")
    assert list(loaded.geometry.tissue_heterogeneity) == both
    with warnings.catch_warnings():   # one result twice: the sum warns of correlated errors; no body outline
        warnings.simplefilter("ignore")
        summed = sum_results([loaded, DoseResult.load(tmp_path / "r.h5")])
        written = {"direct": write_result_rtdose(r, tmp_path / "direct.dcm")["path"],
                   "loaded": write_result_rtdose(loaded, tmp_path / "loaded.dcm")["path"],
                   "sum of loaded": write_result_rtdose(summed, tmp_path / "sum.dcm")["path"]}
        loaded.geometry.tissue_heterogeneity = ("IMAGE",)   # the record is the provenance's, whatever the geometry
        written["provenance"] = write_result_rtdose(loaded, tmp_path / "prov.dcm")["path"]
    for what, path in written.items():
        assert list(pydicom.dcmread(path).TissueHeterogeneityCorrection) == both, what


@pytest.mark.parametrize("said", [["IMAGE", "ROI_OVERRIDE"], ("IMAGE", "ROI_OVERRIDE"), [], ["IMAGE", ""], "IMAGE",
                                  [1, 2], None])
def test_a_loaded_geometry_and_an_rt_dose_read_one_heterogeneity_record(said):
    """Review of 2026-12-07, R8: the loaded geometry (hdf5._restore_heterogeneity) and the RT Dose of a result
    (rtdose.result_heterogeneity) read ``provenance["tissue_heterogeneity"]`` by one rule (hdf5.recorded_heterogeneity:
    a non-empty list of non-empty strings), where each had its own copy: a tuple was taken by the one, not the other."""
    from types import SimpleNamespace

    from mcproton._io.hdf5 import _restore_heterogeneity
    from mcproton._io.rtdose import result_heterogeneity

    prov = {} if said is None else {"tissue_heterogeneity": said}
    geom = SimpleNamespace(tissue_heterogeneity=("IMAGE",))
    _restore_heterogeneity(geom, prov)
    written = result_heterogeneity(SimpleNamespace(provenance=prov, geometry=SimpleNamespace(
        tissue_heterogeneity=("IMAGE",))))
    assert tuple(geom.tissue_heterogeneity) == written
    valid = isinstance(said, (list, tuple)) and bool(said) and all(isinstance(v, str) and v for v in said)
    assert written == (tuple(said) if valid else ("IMAGE",))


def test_the_overrides_applied_are_kept_with_the_geometry_and_the_provenance(water_ct, tmp_path):
    """Which overrides were applied (ROI, property and value, material, density, how it was chosen, voxels) go with
    the geometry into the provenance of a dose computed on it (HDF5, `DoseResult.save`), not only to the console
    (CT audit 14, F7: a steel rod made blood_icrp at 8 g/cm3 could not be seen in a stored result)."""
    import mcproton
    from mcproton.run import DoseResult

    tmp, g = water_ct
    beam = mcproton.Beam.pencil(70.0, position_mm=(0.0, -60.0, 0.0), direction=(0.0, 1.0, 0.0))
    settings = mcproton.RunSettings(primaries=200, batches=2, backend="cpu", seed=3)
    assert g.struct_overrides is None
    assert "struct_overrides_applied" not in mcproton.simulate(g, beam, settings).provenance   # no structure set
    _write_rs(tmp / "RS.dcm", None)
    assert apply_overrides(g, tmp / "RS.dcm") == [] and g.struct_overrides == []      # one without overrides
    _override(tmp / "RS.dcm", "PTV", rel_mass=1.19, comp=PMMA_Z)
    notes = apply_overrides(g, tmp / "RS.dcm")
    (rec,) = g.struct_overrides
    assert rec == {"roi": "PTV", "roi_type": rec["roi_type"], "property": "REL_MASS_DENSITY", "value": 1.19,
                   "material": "pmma", "density_g_cm3": 1.19, "how": "its composition, the library's (L1 0.000)",
                   "spr_100mev": rec["spr_100mev"], "voxels": 8 * 8 * 6, "note": notes[0]}
    assert 1.13 < rec["spr_100mev"] < 1.19   # PMMA's SPR (1.16, ICRU 49) at 1.19 g/cm3
    res = mcproton.simulate(g, beam, settings)
    assert res.provenance["struct_overrides_applied"] == [rec]
    res.save(tmp_path / "r.h5")
    assert DoseResult.load(tmp_path / "r.h5").provenance["struct_overrides_applied"] == [rec]


def test_each_override_record_holds_its_own_note_overlaps_included(tmp_path):
    """One record per override ROI, in the order of the notes, each with its note as apply_overrides returns it (an
    overlap added to it) and its voxel count; blocks of a coarser grid keep them."""
    from mcproton.geometry import resample_blocks

    g = _overlapping_case(tmp_path)()
    notes = apply_overrides(g, tmp_path / "RS.dcm")
    assert [r["note"] for r in g.struct_overrides] == notes
    # (the whole name "C" is graphite's symbol, an alias: since 2026-12-06 a REL_ELEC_DENSITY alone takes the material
    # of the ROI's name, at the mass density of that electron density, as a REL_MASS_DENSITY did; metal audit F3)
    assert [(r["roi"], r["property"], r["value"], r["material"]) for r in g.struct_overrides] == [
        ("External", "REL_MASS_DENSITY", 1.02, "water"), ("A", "REL_MASS_DENSITY", 1.19, "pmma"),
        ("B", "REL_MASS_DENSITY", 1.6, "water"), ("C", "REL_ELEC_DENSITY", 1.1, "graphite"),
        ("D", "REL_MASS_DENSITY", 1.3, "water")]
    assert g.struct_overrides[4]["voxels"] == 0 and g.struct_overrides[1]["voxels"] == 40 * 40 * 30
    assert resample_blocks(g, (2, 2, 2)).struct_overrides == g.struct_overrides


def _couch_run(tmp: Path, *extra: str) -> Path:
    """The run config of _couch_case (its two beams, gantry 180 through the couch and gantry 0), a few hundred
    primaries per beam on the CPU, its PTV overridden to PMMA."""
    _override(tmp / "RS.dcm", "PTV", rel_mass=1.19, comp=PMMA_Z)
    cfg = tmp / "run.toml"
    cfg.write_text('[run]\nprimaries = 300\nbatches = 10\nbackend = "cpu"\nseed = 5\n[phantom]\ntype = "ct"\n'
                   'ct_dir = "ct_t1"\n[plan]\nrtplan = "RP.dcm"\nbeam_model = "dcpt_v2"\nrtstruct = "RS.dcm"\n'
                   + "".join(f"{x}\n" for x in extra) + '[output]\nplot = false\n')
    return cfg


def _outside_warnings(text: str) -> dict[str, str]:
    """The run's warnings of CT material outside the External, by the beam they name."""
    return {w.split("beam '")[1].split("'")[0]: w for w in text.splitlines()
            if "central axis crosses" in w and "outside the External 'External'" in w}


def test_run_records_its_overrides_and_warns_of_ct_outside_the_external(tmp_path, capsys):
    """`mcproton run` (CT audit 14): the overrides it applied are in its summary (``struct_overrides_applied``) and its
    HDF5 provenance (F7); a beam whose central axis crosses CT material outside the External (a couch) is warned
    of, as `mcproton check` notes it, naming the run's own key, and the warning is in the summary (F8).  Before,
    both went to the console only (the overrides) or nowhere (the couch)."""
    import json

    from mcproton._io.hdf5 import read_dose_hdf5
    from mcproton.cli import main

    _couch_case(tmp_path)
    out = tmp_path / "o.h5"
    assert main(["run", str(_couch_run(tmp_path)), "--out", str(out), "--no-checkpoint", "--quiet"]) == 0
    cap = capsys.readouterr()
    s = json.loads(cap.out)
    (rec,) = s["struct_overrides_applied"]
    assert (rec["roi"], rec["material"], rec["density_g_cm3"], rec["voxels"]) == ("PTV", "pmma", 1.19, 8 * 8 * 6)
    assert "'PTV'" in rec["note"] and rec["how"].startswith("its composition")
    assert read_dose_hdf5(out)["provenance"]["struct_overrides_applied"] == json.dumps(s["struct_overrides_applied"])
    said = _outside_warnings("\n".join(s["warnings"]))
    assert list(said) == ["1:F1"], s["warnings"]          # the posterior beam; the anterior one crosses nothing
    assert 'then set plan.outside_external = "air"' in said["1:F1"] and "--outside-external" not in said["1:F1"]
    mm = float(said["1:F1"].split("crosses ")[1].split(" mm")[0])
    assert 9.0 < mm < 14.0, said                              # 2 voxels of ~1.5 g/cm3, as the check says


@pytest.mark.parametrize("couch_type,extra,warned", [
    (None, [], True),                                         # the default: said before the transport too
    (None, ['outside_external = "air"'], False),              # air there: nothing crossed
    ("SUPPORT", [], False),                                   # the couch is a support ROI: inside the patient model
    (None, ['struct_overrides = "ignore"'], True),
])
def test_check_config_warns_of_ct_outside_the_external(tmp_path, capsys, couch_type, extra, warned):
    """`mcproton run --check-config`: the warning of F8 comes before any transport, only where CT material outside
    the External and its support ROIs lies on a beam's way; the summary names the overrides (applied or ignored)."""
    import json
    import warnings

    from mcproton.cli import main

    _couch_case(tmp_path, couch_type)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        assert main(["run", str(_couch_run(tmp_path, *extra)), "--check-config"]) == 0
    cap = capsys.readouterr()
    text = "\n".join(str(w.message) for w in said)
    assert list(_outside_warnings(text)) == (["1:F1"] if warned else []), text
    (rec,) = json.loads(cap.out)["struct_overrides_applied"]
    ignored = "ignore" in "".join(extra)
    assert (rec["roi"], rec["material"], rec["voxels"]) == (("PTV", None, 0) if ignored else ("PTV", "pmma", 8 * 8 * 6))
    assert (rec["how"] == "ignored (plan.struct_overrides = 'ignore')" if ignored
            else rec["how"].startswith("its composition"))


# ---------------------------------------------------------------------- memory of the full-resolution override step
def _overlapping_case(tmp: Path):
    """A 48 x 120 x 120 geometry of 1 mm voxels (water inside the External, air around) and an RT Struct whose
    External and four ROIs have overrides: A, B and C overlap each other, D lies outside the grid (no voxel)."""
    from mcproton.geometry import VoxelGeometry
    from mcproton.materials import get_material

    _write_rs(tmp / "RS.dcm", None, targets=[("A", (-30.0, -30.0, -15.0), (10.0, 10.0, 15.0)),
                                             ("B", (0.0, -20.0, -10.0), (30.0, 20.0, 10.0)),
                                             ("C", (-5.0, -5.0, -5.0), (25.0, 25.0, 5.0)),
                                             ("D", (100.0, 100.0, -5.0), (120.0, 120.0, 5.0))])
    _override(tmp / "RS.dcm", "A", rel_mass=1.19, comp=PMMA_Z)
    _override(tmp / "RS.dcm", "B", rel_mass=1.6)
    _override(tmp / "RS.dcm", "C", rel_elec=1.1)
    _override(tmp / "RS.dcm", "D", rel_mass=1.3)
    _override(tmp / "RS.dcm", "External", rel_mass=1.02)
    mi = np.zeros((48, 120, 120), np.uint8)
    mi[:, 20:-20, 20:-20] = 1
    rho = np.where(mi == 1, 1.0, 0.0012).astype(np.float32)

    def geometry():
        return VoxelGeometry(mi.copy(), rho.copy(), [get_material("air"), get_material("water")], (1.0, 1.0, 1.0),
                             (-59.5, -59.5, -23.5))
    return geometry


def _apply_overrides_before(geometry, struct_path):
    """apply_overrides as it was before 2026-12-05 (copies of the arrays, every mask at once): the reference the
    in-place version must match bit for bit."""
    from mcproton._io.roi_overrides import nearest_material, override_note
    from mcproton._io.rtstruct import rasterise, read_rtstruct

    rois = roi_overrides(struct_path)
    masks = rasterise(read_rtstruct(struct_path), geometry, names=[r["name"] for r in rois])
    mats = list(geometry.materials)
    mi, rho = np.array(geometry.material_index_zyx), np.array(geometry.density_g_cm3_zyx)
    notes = []
    for r in rois:
        m, why = nearest_material(r)
        mask = masks.get(r["name"])
        n = int(mask.sum()) if mask is not None else 0
        notes.append(override_note(r, m, why, n))   # (the words of the notes: since 2026-12-05 with the SPR)
        if n:
            k = next((i for i, x in enumerate(mats) if x is m), None)
            if k is None:
                mats.append(m)
                k = len(mats) - 1
            mi[mask], rho[mask] = k, r["density_g_cm3"]
    for i, r in enumerate(rois):
        mask = masks.get(r["name"])
        if mask is None or r["type"].upper() == "EXTERNAL" or not mask.any():
            continue
        later = [q["name"] for q in rois[i + 1:]
                 if masks.get(q["name"]) is not None and (mask & masks[q["name"]]).any()]
        if later:
            lost = int((mask & np.logical_or.reduce([masks[q] for q in later])).sum())
            notes[i] += (f"; {lost} of them overlap the later override ROI(s) {', '.join(repr(q) for q in later)}, "
                         "whose material they take (the later one in the structure set wins)")
    geometry.materials, geometry.material_index_zyx, geometry.density_g_cm3_zyx = mats, mi, rho
    return notes


def test_overrides_in_place_give_the_geometry_and_notes_of_before(tmp_path):
    """The overrides and the air outside the External written into the geometry's own arrays, one ROI's mask at a
    time (audit F2), give the same geometry, bit for bit, and the same notes as the copies of before."""
    from mcproton._io.roi_overrides import outside_external, set_outside_to_air
    from mcproton._io.rtstruct import rasterise, read_rtstruct

    geometry = _overlapping_case(tmp_path)
    g, ref = geometry(), geometry()
    notes = apply_overrides(g, tmp_path / "RS.dcm")
    assert notes == _apply_overrides_before(ref, tmp_path / "RS.dcm")
    assert "overlap the later override ROI(s) 'B', 'C'" in notes[1] and "(no voxel" in notes[4], notes
    # ("C", a REL_ELEC_DENSITY, is graphite by its name: test_each_override_record_holds_its_own_note_overlaps_included)
    assert [m.name for m in g.materials] == [m.name for m in ref.materials] == ["air", "water", "pmma", "graphite"]
    for a, b in ((g.material_index_zyx, ref.material_index_zyx), (g.density_g_cm3_zyx, ref.density_g_cm3_zyx)):
        assert a.dtype == b.dtype and a.flags.c_contiguous and a.tobytes() == b.tobytes()
    assert g.tissue_heterogeneity == ("IMAGE", "ROI_OVERRIDE")

    s = read_rtstruct(tmp_path / "RS.dcm")
    found = outside_external(g, s, also_keep=["A", "B"])
    masks = rasterise(s, g, names=["External", "A", "B"])
    assert found[1:] == ("External", ["A", "B"])
    np.testing.assert_array_equal(found[0], ~(masks["External"] | masks["A"] | masks["B"]))
    # a mask kept with the structure set (rasterise above) is used, not changed
    assert outside_external(g, s, also_keep=["A", "B"])[0].tobytes() == found[0].tobytes()
    np.testing.assert_array_equal(rasterise(s, g, names=["External"])["External"], masks["External"])
    rho_ref = ref.density_g_cm3_zyx.copy()
    n_ref = int(np.count_nonzero(found[0] & (rho_ref > 0.01)))   # AIR_LIKE_G_CM3
    assert set_outside_to_air(g, found[0]) == n_ref > 0
    rho_ref[found[0]] = g.materials[0].density_g_cm3
    assert g.density_g_cm3_zyx.tobytes() == rho_ref.tobytes()


def _traced_peak(f) -> int:
    import tracemalloc

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        f()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_the_override_step_holds_one_mask_at_a_time(tmp_path):
    """On a CT's own voxels (a 512 x 512 x 200 CT: 52 M voxels) the overrides and the air outside the External
    hold the geometry and about one mask, whatever the number of override ROIs.  Before (audit F2): both geometry
    arrays copied (5 bytes per voxel) and every ROI's mask twice (kept with the structure set and copied): 18.0
    bytes per voxel here for five override ROIs (797 MB -> 1314 MB peak from one ROI to five on that CT), and 10.0
    for the outside of the External and its air; now 1.4 and 2.3 (a second mask held would add 1).  tracemalloc
    (numpy's allocations), after a first pass that imports and warms up what the step uses; deterministic."""
    from mcproton._io.roi_overrides import outside_external, set_outside_to_air
    from mcproton._io.rtstruct import read_rtstruct

    geometry = _overlapping_case(tmp_path)
    s = read_rtstruct(tmp_path / "RS.dcm")

    def overrides(g):
        apply_overrides(g, tmp_path / "RS.dcm", struct=s)

    def air(g):
        set_outside_to_air(g, outside_external(g, s, also_keep=["A", "B", "C"])[0])

    g = geometry()
    overrides(g)
    air(g)   # the first pass: imports, the structure set parsed
    g = geometry()
    n = g.material_index_zyx.size
    mi, rho = g.material_index_zyx, g.density_g_cm3_zyx
    s.masks.clear()   # no mask kept from before
    peak = _traced_peak(lambda: overrides(g))
    print(f"overrides: {peak / n:.2f} bytes per voxel")
    assert peak < 2.2 * n, f"{peak / n:.2f} bytes per voxel"   # one mask, a bit per voxel for each of A, B, C
    assert g.material_index_zyx is mi and g.density_g_cm3_zyx is rho   # written in place
    s.masks.clear()
    peak = _traced_peak(lambda: air(g))
    print(f"outside the External: {peak / n:.2f} bytes per voxel")
    assert peak < 3 * n, f"{peak / n:.2f} bytes per voxel"   # the outside and one mask
    assert not s.masks   # the masks of the CT's voxels are not kept with the structure set


# ---------------------------------------------------------------------- what an override's voxels are made of
#: Compositions (mass fractions by atomic number) of implants and dental materials as a planning system exports them
#: (REL_MASS_DENSITY + ROIElementalCompositionSequence), with their density (g/cm3): the audit's cases (2026-12-05)
METALS = {
    "steel_316L": (8.0, {26: .68, 24: .17, 28: .12, 25: .02, 42: .01}),
    "cocr": (8.3, {27: .64, 24: .28, 42: .06, 28: .02}),
    "ti6al4v": (4.43, {22: .90, 13: .06, 23: .04}),
    "gold": (19.3, {79: 1.0}),
    "ag_sn_cu": (10.0, {47: .70, 50: .25, 29: .05}),
    "pt_w": (21.0, {78: .92, 74: .08}),
}


def _own_material(rho, comp):
    """The material made from a composition by mcproton itself (Bragg additivity), as hu_materials.csv's rows."""
    from mcproton.materials import ELEMENTS, Material

    sym = {e.Z: k for k, e in ELEMENTS.items()}
    return Material("own", rho, {sym[z]: w / sum(comp.values()) for z, w in comp.items()})


@pytest.mark.parametrize("case", sorted(METALS))
def test_a_metal_override_gets_its_own_composition_not_the_nearest_tissue(tmp_path, case):
    """Audit 2026-12-05 F1: a composition that no library material shares (steel, CoCr, gold, an Ag-Sn-Cu filling)
    was given the 'nearest' tissue (L1 2.0, the maximum: arbitrary) at the metal's density: a tissue's stopping power
    per gram, the SPR 45-80 % too high (steel 7.96 for 5.49).  Now the voxels get the composition given."""
    from mcproton._io.hu_calibration import spr_per_density
    from mcproton._io.roi_overrides import nearest_material, spr_of

    rho, comp = METALS[case]
    _write_rs(tmp_path / "RS.dcm", None)
    _override(tmp_path / "RS.dcm", "PTV", rel_mass=rho, comp=comp)
    (r,) = roi_overrides(tmp_path / "RS.dcm")
    m, why = nearest_material(r)
    own = _own_material(rho, comp)
    if case == "gold":   # the library's gold since 2026-12-06 (metal audit F3): its composition, the same SPR
        assert m.name == "gold" and "the library's (L1 0.000)" in why, why
        assert spr_of(r, m) == pytest.approx(rho * spr_per_density(own, 100.0), rel=1e-6)
        return
    assert m.name == "rtstruct:PTV" and "the composition given" in why, why
    # (the fractions are float32 in DICOM: FL)
    assert dict(m.mass_fractions) == pytest.approx(dict(own.mass_fractions), abs=1e-7)
    assert spr_of(r, m) == pytest.approx(rho * spr_per_density(own, 100.0), rel=1e-6)


def test_the_metals_have_physics_tables():
    """Every element of the implants above (and Fe, Cr, Ni, Mo, Mn, Co, Ti, Al, V, Ag, Sn, Cu, Au, Pt, W alone) has
    what the transport needs: stopping power with an I-value, scattering length, nuclear cross sections (those of
    the element with data nearest in Z, mcproton/_physics/nuclear.py): finite and positive tables."""
    from mcproton._physics.tables import build_tables
    from mcproton.materials import ELEMENTS, Material

    mats = [_own_material(rho, comp) for rho, comp in METALS.values()]
    mats += [Material(s, 5.0, {s: 1.0}) for s in "Fe Cr Ni Mo Mn Co Ti Al V Ag Sn Cu Au Pt W".split()]
    mats = [Material(f"m{i}", m.density_g_cm3, m.mass_fractions) for i, m in enumerate(mats)]
    t = build_tables(mats)
    assert np.all(np.isfinite(t.energy_table)) and np.all(np.isfinite(t.material_props))
    assert np.all(t.material_props[:, 0] > 0)   # scattering length
    assert all(i > 100 for i in t.meta["i_values_ev"].values())   # metals: I of 166 (Al) to 790 eV (Au)
    assert t.meta["i_values_ev"]["m" + str(len(METALS) + 14)] == ELEMENTS["W"].i_elemental_ev


def test_a_library_composition_keeps_the_library_material(tmp_path):
    """A composition that is a library material's, as an export rounds it (RayStation's plan03: solid water to 3
    decimals, L1 0.003), keeps that material and its published I-value: existing results stay the same."""
    from mcproton._io.roi_overrides import LIBRARY_MATCH_L1, nearest_material

    rounded = {z: round(w, 3) for z, w in PMMA_Z.items()}
    for comp in (PMMA_Z, rounded):
        _write_rs(tmp_path / "RS.dcm", None)
        _override(tmp_path / "RS.dcm", "PTV", rel_mass=1.19, comp=comp)
        (r,) = roi_overrides(tmp_path / "RS.dcm")
        m, why = nearest_material(r)
        assert m.name == "pmma" and m.i_value_ev == 74.0 and "the library's" in why, why
    # the nearest two different library tissues lie farther apart than the rounding tolerance
    from mcproton._io.roi_overrides import _by_z
    from mcproton.materials import get_material

    a, b = _by_z(get_material("muscle_skeletal_icrp")), _by_z(get_material("blood_icrp"))
    assert sum(abs(a.get(k, 0) - b.get(k, 0)) for k in set(a) | set(b)) > 2 * LIBRARY_MATCH_L1


def test_a_composition_in_per_cent_is_normalised_and_a_wrong_sum_refused(tmp_path):
    """Audit F4: a composition in per cent (sum 100) was compared as it was with the library's fractions: every
    override 'nearest' by L1 99, cortical bone became water (SPR 1.92 for 1.70).  Now it is normalised, as the
    calibration reader does; a sum neither about 1 nor about 100 is refused naming the ROI and the sum."""
    from mcproton._io.roi_overrides import nearest_material

    bone = {1: 3.4, 6: 15.5, 7: 4.2, 8: 43.5, 11: .1, 12: .2, 15: 10.3, 16: .3, 20: 22.5}   # ICRP cortical, in %
    _write_rs(tmp_path / "RS.dcm", None)
    _override(tmp_path / "RS.dcm", "PTV", rel_mass=1.92, comp=bone)
    (r,) = roi_overrides(tmp_path / "RS.dcm")
    assert sum(r["composition"].values()) == pytest.approx(1.0)
    assert nearest_material(r)[0].name == "bone_cortical_icrp_g4"
    for bad in ({22: 50.0}, {22: 0.5}, {22: 1.0, 26: 1.0}):
        _override(tmp_path / "RS.dcm", "PTV", rel_mass=4.5, comp=bad)
        with pytest.raises(ValueError, match=r"ROI 'PTV'.*sum to \d"):
            roi_overrides(tmp_path / "RS.dcm")


def test_an_element_the_tables_lack_is_refused(tmp_path, capsys):
    """A dental amalgam (mercury, Z 80: not in mcproton's element table) is refused naming the ROI, the element and
    what to do, in `mcproton run` (exit 2 via ConfigError) as in the reader; before, it became the nearest tissue."""
    from mcproton.config import ConfigError, build_geometry

    _write_rs(tmp_path / "RS.dcm", None)
    _override(tmp_path / "RS.dcm", "PTV", rel_mass=11.6, comp={80: .5, 47: .35, 50: .15})
    with pytest.raises(ValueError, match=r"ROI 'PTV'.* holds Hg \(atomic number 80\).*REL_STOP_RATIO"):
        roi_overrides(tmp_path / "RS.dcm")
    from mcproton.dicom import write_ct_series

    write_ct_series(np.zeros((6, 10, 10)), (4.0, 4.0, 4.0), (-18.0, -18.0, -10.0), tmp_path / "ct")
    with pytest.raises(ConfigError, match=r"plan.rtstruct: .*ROI 'PTV'.* Hg"):
        build_geometry({"phantom": {"type": "ct", "ct_dir": str(tmp_path / "ct")},
                        "plan": {"rtstruct": str(tmp_path / "RS.dcm")}})


def test_a_stopping_power_ratio_override_is_applied(water_ct, recwarn):
    """Audit F2: REL_STOP_RATIO (the SPR to water, DICOM's defined term) was skipped without a word, the voxels kept
    the CT's.  Now they get the density that gives that SPR at 100 MeV: water's composition at SPR g/cm3 without a
    composition, the composition given at SPR / (its SPR per g/cm3) with one (as hu_spr.csv calibrations)."""
    from mcproton._io.roi_overrides import nearest_material, spr_of

    tmp, g = water_ct
    _write_rs(tmp / "RS.dcm", None)
    _override(tmp / "RS.dcm", "PTV", spr=3.2)
    (r,) = roi_overrides(tmp / "RS.dcm")
    assert (r["property"], r["value"], r["density_g_cm3"]) == ("REL_STOP_RATIO", 3.2, pytest.approx(3.2))
    (note,) = apply_overrides(g, tmp / "RS.dcm")
    g.rs = tmp / "RS.dcm"
    m = _ptv_mask(g)
    assert np.all(g.density_g_cm3_zyx[m] == np.float32(3.2))
    assert {g.materials[i].name for i in np.unique(g.material_index_zyx[m])} == {"water"}
    assert "REL_STOP_RATIO 3.2 -> water at 3.2 g/cm3 (the density that gives this stopping-power ratio" in note, note
    # with titanium's composition: titanium at the density of that SPR (4.5 g/cm3 for its SPR 3.2)
    _override(tmp / "RS.dcm", "PTV", spr=3.2, comp={22: 1.0})
    (r,) = roi_overrides(tmp / "RS.dcm")
    mat = nearest_material(r)[0]
    assert mat.name == "titanium" and r["density_g_cm3"] == pytest.approx(4.5, abs=0.02)
    assert spr_of(r, mat) == pytest.approx(3.2, rel=1e-9)
    assert not [w for w in recwarn if "not apply" in str(w.message)]


def test_properties_not_applied_are_named_once(water_ct):
    """Audit F2: EFFECTIVE_Z alone, a composition without a density, an unknown term: not applied, and now named in
    one warning (McprotonRuntimeWarning: the run's summary keeps it), ROI by ROI.  RayStation's derived properties
    beside a density and a composition (REL_ELEC_DENSITY, EFFECTIVE_Z, EFF_Z_PER_A, MEAN_EXCI_ENERGY) are not.
    (Before, nothing was said: this test fails on the missing function.)"""
    import warnings

    from mcproton._io.errors import McprotonRuntimeWarning, recording_warnings
    from mcproton._io.roi_overrides import unapplied_properties

    tmp, g = water_ct
    _write_rs(tmp / "RS.dcm", None, targets=[("A", (-16.0, -16.0, -12.0), (0.0, 16.0, 12.0)),
                                             ("B", (0.0, -16.0, -12.0), (16.0, 16.0, 12.0)),
                                             ("C", (-30.0, -30.0, -12.0), (-20.0, -20.0, 12.0))])
    _override(tmp / "RS.dcm", "A", other=[("EFFECTIVE_Z", 22)])
    _override(tmp / "RS.dcm", "B", comp={22: 1.0})                                   # ELEM_FRACTION, no density
    _override(tmp / "RS.dcm", "C", rel_mass=1.19, comp=PMMA_Z,
              other=[("REL_ELEC_DENSITY", 1.156494), ("EFFECTIVE_Z", 5.85), ("EFF_Z_PER_A", 0.539),
                     ("MEAN_EXCI_ENERGY", 74), ("BOGUS_TERM", 3)])
    assert unapplied_properties(tmp / "RS.dcm") == [("A", ["EFFECTIVE_Z 22"]), ("B", ["ELEM_FRACTION (Ti 1) without a "
                                                                                   "density"]), ("C", ["BOGUS_TERM 3"])]
    before = g.density_g_cm3_zyx.copy()
    with recording_warnings() as said, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        notes = apply_overrides(g, tmp / "RS.dcm")
    assert len(notes) == 1 and "'C'" in notes[0] and "pmma" in notes[0]
    (w,) = [x for x in caught if "does not apply" in str(x.message)]
    assert issubclass(w.category, McprotonRuntimeWarning) and said == [str(w.message)]
    assert "ROI 'A': EFFECTIVE_Z 22" in said[0] and "ROI 'B': ELEM_FRACTION (Ti 1) without a density" in said[0]
    assert "ROI 'C': BOGUS_TERM 3." in said[0] and "MEAN_EXCI" not in said[0]   # RayStation's derived ones: not named
    g.rs = tmp / "RS.dcm"
    from mcproton._io.rtstruct import rasterise, read_rtstruct

    ab = rasterise(read_rtstruct(tmp / "RS.dcm"), g, names=["A", "B"])
    for k in ("A", "B"):
        np.testing.assert_array_equal(g.density_g_cm3_zyx[ab[k]], before[ab[k]])


@pytest.mark.parametrize("prop,value,warned,figure", [
    ("rel_elec", 3.74, True, "titanium's by 16 %"),
    ("rel_mass", 4.5, True, "titanium's by 41 %"),
    ("rel_elec", 1.6, False, None),        # bone's electron density: water per electron within 5 %
    ("rel_mass", 1.19, False, None),       # PMMA's density: water per gram within 2 %
])
def test_water_assumed_above_the_tissue_range_is_warned_about(water_ct, prop, value, warned, figure):
    """Audit F3: REL_ELEC_DENSITY alone or REL_MASS_DENSITY without a composition is water at that density; on metal
    (titanium RED 3.74 or 4.5 g/cm3) the SPR comes out 16 % or 41 % too high, and only a console note said what was
    done.  Above the tissue range a McprotonRuntimeWarning now says so, with the SPR used and what to give."""
    from mcproton._io.errors import recording_warnings

    tmp, g = water_ct
    _write_rs(tmp / "RS.dcm", None)
    _override(tmp / "RS.dcm", "PTV", **{prop: value})
    with recording_warnings() as said:
        apply_overrides(g, tmp / "RS.dcm")
    said = [w for w in said if "without an elemental composition" in w]
    assert bool(said) == warned, said
    if warned:
        assert f"taken as water at {value:g} g/cm3" in said[0] and f"stopping-power ratio {value:.3g}" in said[0]
        assert figure in said[0] and "REL_STOP_RATIO" in said[0] and "ROI 'PTV'" in said[0], said[0]


def test_the_figures_of_the_water_assumption():
    """The figures the warnings, the thresholds' comments and docs/patient_workflow.md quote: the SPR that water's
    stopping power per electron (per gram) gives a material, over its own SPR (mcproton's stopping powers, 100
    MeV)."""
    from mcproton._io.hu_calibration import spr_per_density
    from mcproton._io.roi_overrides import MASS_DENSITY_WATER_MAX, RED_WATER_MAX, _by_z, _z_over_a
    from mcproton.materials import get_material

    zw = _z_over_a(_by_z(get_material("water")))

    def over(m, per):   # water per electron (per gram) over the material's own SPR, minus 1
        k = spr_per_density(m, 100.0)
        return (_z_over_a(_by_z(m)) / zw if per == "electron" else 1.0) / k - 1

    ti, steel = get_material("titanium"), _own_material(8.0, METALS["steel_316L"][1])
    assert round(100 * over(ti, "electron")) == 16 and round(100 * over(ti, "gram")) == 41
    assert round(100 * over(steel, "electron")) == 20   # 22 with ICRU 37's +13 % on an alloy
    assert round(100 * over(get_material("aluminium"), "electron")) == 11
    soft = ("muscle_skeletal_icrp", "brain_icrp", "blood_icrp", "skin_icrp", "soft_tissue_icrp", "adipose_tissue_icrp")
    assert all(abs(over(get_material(n), "electron")) < 0.03 for n in soft)    # soft tissue: within 3 % ...
    assert all(abs(over(get_material(n), "gram")) < 0.035 for n in soft)       # ... and 3.5 % (adipose -3.2 %)
    bones = [get_material(n) for n in ("bone_compact_icru", "bone_cortical_icrp", "bone_cortical_icrp_g4")]
    assert all(0.02 <= over(b, "electron") < 0.05 for b in bones)                   # bone per electron: 2-5 %
    assert all(0.065 < over(b, "gram") < 0.135 for b in bones + [get_material("b_100")])   # per gram: 7-13 %
    assert over(get_material("pmma"), "gram") < 0.025
    # the thresholds: above the densest bone's electron density (1.78), at the density where bone begins
    assert max(b.density_g_cm3 * _z_over_a(_by_z(b)) / zw for b in bones) < RED_WATER_MAX
    assert over(get_material("polycarbonate"), "gram") < 0.05
    assert get_material("polycarbonate").density_g_cm3 < MASS_DENSITY_WATER_MAX < get_material("b_100").density_g_cm3


def test_an_electron_density_with_a_composition_gives_that_compositions_mass_density(water_ct):
    """REL_ELEC_DENSITY with a composition (no mass density): the mass density of that electron density for that
    composition (titanium: RED 3.726 -> 4.5 g/cm3), not water at 3.726."""
    from mcproton._io.roi_overrides import _by_z, _z_over_a, nearest_material
    from mcproton.materials import get_material

    tmp, _ = water_ct
    ti = get_material("titanium")
    red = 4.5 * _z_over_a(_by_z(ti)) / _z_over_a(_by_z(get_material("water")))
    _write_rs(tmp / "RS.dcm", None)
    _override(tmp / "RS.dcm", "PTV", rel_elec=round(red, 4), comp={22: 1.0})
    (r,) = roi_overrides(tmp / "RS.dcm")
    assert r["density_g_cm3"] == pytest.approx(4.5, abs=1e-3) and nearest_material(r)[0] is ti


def test_a_stopping_power_ratio_that_contradicts_the_composition_is_warned_about(water_ct):
    from mcproton._io.errors import recording_warnings

    tmp, g = water_ct
    _write_rs(tmp / "RS.dcm", None)
    _override(tmp / "RS.dcm", "PTV", rel_mass=4.5, comp={22: 1.0}, spr=4.5)   # titanium's SPR is 3.2
    with recording_warnings() as said:
        (note,) = apply_overrides(g, tmp / "RS.dcm")
    assert "titanium at 4.5 g/cm3" in note and "the structure set's REL_STOP_RATIO 4.5" in note, note
    (w,) = said
    assert re.search(r"stopping-power ratio 3\.2\d\d at 100 MeV, 28\.\d % below the REL_STOP_RATIO 4\.5", w), w
    _override(tmp / "RS.dcm", "PTV", rel_mass=4.5, comp={22: 1.0}, spr=3.2)
    with recording_warnings() as said:
        apply_overrides(g, tmp / "RS.dcm")
    assert said == []


def test_a_steel_override_gives_the_range_of_steel(tmp_path):
    """End to end (`mcproton run`'s geometry, the transport): a 6 mm slab of water in a water CT, overridden in the
    RT Struct as 316L steel (8.0 g/cm3 with its composition), pulls a 100 MeV pencil beam's distal R80 back by
    6 mm x (SPR - 1).  Expected SPR 5.5 +- 3 %: the composition's SPR at 100 MeV is 5.59 (Bragg additivity of the
    pure metals' I-values, I 284 eV, as for every alloy since 2026-12-06; 5.49 with ICRU 37's +13 %, I 322 eV), and
    the proton crosses the slab at ~90 -> ~75 MeV, where steel's SPR is 1 % lower.  Before the fix the slab was
    blood_icrp at 8 g/cm3 (SPR 7.96): 45 % too high.  The R80s are interpolated on 1 mm voxels from 8000 primaries
    each: their statistical error (range straggling ~1 mm / sqrt(N), the peak's height) is below 0.1 mm, 0.4 % of
    the SPR."""
    import mcproton
    from mcproton._io.hu_calibration import spr_per_density
    from mcproton.config import build_geometry
    from mcproton.dicom import write_ct_series

    write_ct_series(np.zeros((8, 100, 8)), (4.0, 1.0, 4.0), (-14.0, -49.5, -14.0), tmp_path / "ct")
    _write_rs(tmp_path / "RS.dcm", None, targets=[("Rod", (-20.0, -30.0, -19.0), (20.0, -24.0, 19.0))])
    steel = METALS["steel_316L"]
    _override(tmp_path / "RS.dcm", "Rod", rel_mass=steel[0], comp=steel[1])
    beam = mcproton.Beam.pencil(100.0, position_mm=(0.0, -60.0, 0.0), direction=(0.0, 1.0, 0.0))
    settings = mcproton.RunSettings(primaries=8000, batches=2, backend="cpu", seed=11)

    def r80(how):
        g = build_geometry({"phantom": {"type": "ct", "ct_dir": str(tmp_path / "ct")},
                            "plan": {"rtstruct": str(tmp_path / "RS.dcm"), "struct_overrides": how}})
        with pytest.warns(Warning):   # (2 batches: its uncertainty is said to read low)
            res = mcproton.simulate(g, beam, settings)
        depth, idd = res.integrated_depth_dose("y")
        i = int(np.argmax(idd))
        j = i + int(np.argmax(idd[i:] < 0.8 * idd[i]))
        return depth[j - 1] + (idd[j - 1] - 0.8 * idd[i]) / (idd[j - 1] - idd[j]) * (depth[j] - depth[j - 1]), g

    ct_r80, g0 = r80("ignore")
    steel_r80, g = r80("apply")
    assert {m.name for m in g.materials} >= {"rtstruct:Rod"}
    # the CT's 0 HU is schneider2000's soft tissue (1.018 g/cm3, SPR 1.029), not water: 6 mm of it replaced by steel
    # remove 6 x (SPR - SPR_ct) mm of water-equivalent thickness, i.e. that / SPR_ct of the CT's range
    k = g0.materials[int(g0.material_index_zyx[4, 25, 4])]
    spr_ct = float(g0.density_g_cm3_zyx[4, 25, 4]) * spr_per_density(k, 100.0)
    assert 1.0 < spr_ct < 1.05 and 72.0 < ct_r80 < 78.0            # 100 MeV in water: R80 77.5 mm
    spr = spr_ct * (1.0 + (ct_r80 - steel_r80) / 6.0)
    assert spr == pytest.approx(5.5, rel=0.03), (ct_r80, steel_r80, spr)


def test_the_outside_of_the_external_is_counted_on_the_ct_grid_for_a_coarse_dose_grid():
    """Audit 18 (F2): on a dose grid coarser than the CT a block straddling the skin holds block-averaged tissue while
    its centre lies outside the External, and "CT material outside the External" was noted on a phantom with only air
    outside the body (2.1 mm on a 4 mm grid); leaving out the skin's rim of the blocks then lost a block of a couch
    lying against the skin.  Now the mass of only the CT voxels outside the External is counted per block.  The CT:
    1 mm voxels, the body water from z = 22 mm, a beam along +z to z = 60 mm.  On the CT grid and on 2, 4 and 8 mm
    blocks: no note with air outside; a 1.2 g/cm3 couch slab z 14-22 mm directly against the skin: its full 8 mm
    (9.6 mm water-equivalent by mass) on every grid; the same slab with air before the skin (z 4-12 mm) too."""
    from mcproton._io.roi_overrides import outside_density_on_blocks, outside_external_beam_notes
    from mcproton.geometry import box_phantom, resample_blocks

    ct = box_phantom("water", (40, 40, 96), 1.0)   # z from 0 to 96 mm
    z = ct.axis_mm("z")
    outside = np.broadcast_to((z < 22.0)[:, None, None], ct.shape_zyx).copy()
    beam = [("beam 1", (0.0, 0.0, 60.0), (0.0, 0.0, 1.0))]
    for couch in (None, (14.0, 22.0), (4.0, 12.0)):
        rho = np.where(outside, np.float32(0.0012), np.float32(1.0))
        if couch is not None:
            rho[(z > couch[0]) & (z < couch[1])] = 1.2
        ct.density_g_cm3_zyx = rho
        for f in (1, 2, 4, 8):
            g = resample_blocks(ct, (f, f, f))
            if f > 1:
                g.outside_external_g_cm3_zyx = outside_density_on_blocks(outside, (f, f, f), lambda s: rho[s])
            # the External's mask on the grid's own voxels (block centres): what the note traced before
            grid_outside = np.broadcast_to((g.axis_mm("z") < 22.0)[:, None, None], g.shape_zyx).copy()
            notes = outside_external_beam_notes(g, (grid_outside, "BODY", []), beam, "fix it")
            if couch is None:
                assert notes == [], (f, notes)
            else:
                (note,) = notes
                assert re.search(r"beam 1: its central axis crosses 9.6 mm .* outside the External 'BODY'", note), \
                    (couch, f, note)


def test_the_outside_of_the_external_on_a_partial_block_is_its_ct_voxels_mean():
    """A CT that is not a whole number of blocks (5 slices in blocks of 2, 3 columns in blocks of 2): the last block
    holds fewer CT voxels, and its mass outside the External is their mean, as the block's own density is
    (resample_blocks); it was averaged over the padding beyond the CT too (half and a quarter of a couch there),
    as the block's density was before 2026-12-07 (discretisation audit F1)."""
    from mcproton._io.roi_overrides import outside_density_on_blocks

    rho = np.full((5, 2, 3), 1.2, np.float32)
    got = outside_density_on_blocks(np.ones(rho.shape, bool), (2, 2, 2), lambda s: rho[s])
    assert got.shape == (3, 1, 2) and got.dtype == np.float32
    assert got == pytest.approx(np.full((3, 1, 2), 1.2), rel=1e-6)


def _rename(path: Path, old: str, new: str) -> None:
    ds = pydicom.dcmread(path)
    for r in ds.StructureSetROISequence:
        if r.ROIName == old:
            r.ROIName = new
    ds.save_as(path)


@pytest.mark.parametrize("name,material,said", [
    ("Titanium rod", "titanium", "the ROI's name holds the word 'titanium', the library material titanium, and only "
                                 "that one, and 4.54 g/cm3 lies within a factor 1.6 of titanium's 4.54 g/cm3, so the "
                                 "ROI is titanium at 4.54 g/cm3"),
    ("Rod_Titanium", "titanium", "holds the word 'titanium'"),
    ("Ti_rod", "water", "or name the ROI after the library material it is (its name or an alias, as the whole name "
                        "or as a whole word of it: 'Steel screw', 'Titanium rod'); of this density the library holds "
                        "titanium ('titanium'), ti6al4v ('ti6al4v')"),
    ("Titanium in PMMA", "water", "or name the ROI after one library material; its name names pmma and titanium, and "
                                  "none is chosen between them"),
])
def test_a_mass_density_alone_takes_the_material_named_by_a_word_of_the_roi_name(water_ct, name, material, said):
    """highZ audit 2026-12-06, F4: REL_MASS_DENSITY alone takes the library material the ROI is named after, but
    only on the exact name, so "Titanium rod" became water at 4.54 g/cm3 (SPR 4.54 against titanium's 3.23, R80 5.5
    mm short behind 4 mm), and the warning did not say that the name would fix it.  A library material named by a
    whole word of the name (only one) is taken now, and said; a name naming none or two is water, as before, and
    the warning says how to name it."""
    from mcproton._io.errors import recording_warnings

    tmp, g = water_ct
    _write_rs(tmp / "RS.dcm", None)
    _override(tmp / "RS.dcm", "PTV", rel_mass=4.54)
    _rename(tmp / "RS.dcm", "PTV", name)
    with recording_warnings() as warned:
        notes = apply_overrides(g, tmp / "RS.dcm")
    assert f"-> {material} at 4.54 g/cm3" in notes[0], notes
    assert any(said in w for w in warned), warned
    assert any("taken as water at 4.54" in w for w in warned) == (material == "water"), warned


@pytest.mark.parametrize("name,spr,rho,warned", [
    ("rod", 3.23, 4.54, True),               # titanium's SPR and density, no composition: water at 3.23 g/cm3
    ("Titanium rod", 3.23, 4.54, False),     # titanium by name: at 4.54 g/cm3, both used
    ("rod", 1.05, 1.04, False),              # tissue: water at 1.05 g/cm3, within 2 % of the density given
])
def test_a_mass_density_beside_a_stopping_power_ratio_without_composition_is_said_to_be_unused(water_ct, name, spr,
                                                                                             rho, warned):
    """highZ audit 2026-12-06, F3: REL_STOP_RATIO 3.23 and REL_MASS_DENSITY 4.54 (titanium) without a composition
    gave the ROI water at 3.23 g/cm3, the mass density dropped without a word (range right; scattering in the rod
    0.53 of titanium's, dose to medium +40 %, D_w/D_m 1.00 against 1.41).  It is warned about now, naming the
    library material whose stopping power per gram the two give, and what to do."""
    from mcproton._io.errors import recording_warnings

    tmp, g = water_ct
    _write_rs(tmp / "RS.dcm", None)
    _override(tmp / "RS.dcm", "PTV", rel_mass=rho, spr=spr)
    _rename(tmp / "RS.dcm", "PTV", name)
    with recording_warnings() as said:
        apply_overrides(g, tmp / "RS.dcm")
    said = [w for w in said if "is not used" in w]
    assert bool(said) == warned, said
    if warned:
        assert ("REL_STOP_RATIO 3.23 and REL_MASS_DENSITY 4.54 without an elemental composition: applied as water at "
                "3.23 g/cm3" in said[0]), said[0]
        # (316L steel has it too, within 2 %, but not at 4.54 g/cm3: only materials of that density are named)
        assert "of the library materials titanium, ti6al4v have that stopping power per gram" in said[0], said[0]
        assert "multiple scattering and the dose to medium" in said[0] and "ROI 'rod'" in said[0], said[0]


@pytest.mark.parametrize("name,prop,value,material,rho,said", [
    ("Rectal air", "rel_mass", 1.0, "water", 1.0, "the word 'air' of its name names air, a gas, which is never taken"),
    ("Air_Rectum", "rel_mass", 1.0, "water", 1.0, "names air, a gas"),
    ("Rectal air", "spr", 1.0, "water", 1.0, "names air, a gas"),
    ("Titanium artefact", "rel_mass", 1.0, "water", 1.0,
     "the word 'titanium' of its name names titanium, not taken: 1 g/cm3 is not within a factor 1.6 of titanium's "
     "4.54 g/cm3"),
    ("Lung_L", "rel_mass", 1.0, "water", 1.0, "names lung, not taken"),
    ("Titanium rod", "rel_mass", 4.5, "titanium", 4.5, "lies within a factor 1.6 of titanium's 4.54 g/cm3"),
    ("PMMA", "rel_mass", 1.19, "pmma", 1.19, None),   # the whole name, at its density
])
def test_a_material_is_taken_from_the_roi_name_only_where_the_density_fits_it(water_ct, name, prop, value, material,
                                                                             rho, said):
    """Review A 2026-12-06, F1: the name rule (highZ F4) took the library material named by any word of the ROI's
    name whatever the density: "Rectal air" set to water (REL_MASS_DENSITY 1.0, the common override of a cavity)
    became air at 1.0 g/cm3 (SPR 0.888, R80 4 mm deeper behind 32 mm), "Titanium artefact" set to water titanium
    at 1.0 g/cm3 (SPR 0.712).  A gas is never taken from a name now, and another material only where the density
    lies within NAME_DENSITY_FACTOR of its own; the warning says which was taken and why, or why not."""
    from mcproton._io.errors import recording_warnings
    from mcproton.materials import get_material

    tmp, g = water_ct
    _write_rs(tmp / "RS.dcm", None)
    _override(tmp / "RS.dcm", "PTV", **{prop: value})
    _rename(tmp / "RS.dcm", "PTV", name)
    with recording_warnings() as warned:
        notes = apply_overrides(g, tmp / "RS.dcm")
    want = get_material(material).name
    assert f"-> {want} at {rho:g} g/cm3" in notes[0], notes
    c = np.argwhere(_ptv_mask_of(g, tmp / "RS.dcm", name))[0]
    assert g.materials[g.material_index_zyx[tuple(c)]].name == want
    assert g.density_g_cm3_zyx[tuple(c)] == pytest.approx(rho, rel=1e-5)
    if said is not None:
        assert any(said in w for w in warned), warned
    if want == "water":
        assert any("the ROI is water at 1 g/cm3" in w for w in warned), warned


def _ptv_mask_of(g, rs: Path, name: str) -> np.ndarray:
    from mcproton._io.rtstruct import rasterise, read_rtstruct

    return rasterise(read_rtstruct(rs), g, names=[name])[name]


def _rod_ct(tmp: Path):
    """A water box CT (schneider2000's test box, 4 mm voxels) holding a 4000 HU titanium rod of an extended-scale CT
    (x, y, z -6..6 mm: 64 voxels), and its geometry by mcsquare_default, which warns of it (metal above a 12-bit CT's
    top given bone's density)."""
    from mcproton._io.hu_calibration import HUCalibration
    from mcproton.dicom import load_ct_series, write_ct_series

    hu = np.full((14, 28, 28), -1000.0)
    hu[:, 4:-4, 4:-4] = 0.0
    hu[5:9, 12:16, 12:16] = 4000.0
    write_ct_series(hu, (4.0, 4.0, 4.0), (-54.0, -54.0, -26.0), tmp / "ct")
    ct = load_ct_series(tmp / "ct")
    with pytest.warns(UserWarning, match="64 CT voxels"):
        g = HUCalibration.load("mcsquare_default").to_geometry(ct)
    assert any("64 CT voxels" in w for w in g.made_with_warnings), g.made_with_warnings
    return ct, g


@pytest.mark.parametrize("box,kept", [
    (((-8.0, -8.0, -8.0), (8.0, 8.0, 8.0)), None),          # the whole rod titanium: nothing left to warn about
    (((-8.0, -8.0, -8.0), (0.0, 8.0, 8.0)), "32 CT voxels"),  # half of it: the other half, judged again
])
def test_the_ct_coverage_warnings_describe_the_geometry_after_the_overrides(tmp_path, box, kept):
    """Review A 2026-12-06, F2: on the Python route to_geometry warned that the rod (metal above a 12-bit CT's top)
    was given bone's density, and after apply_overrides had made it titanium the warning stayed in the geometry and
    in every result's provenance, which said its own dose was wrong.  apply_overrides judges the warnings again on
    the voxels the overrides left, as `mcproton run` does."""
    ct, g = _rod_ct(tmp_path)
    _write_rs(tmp_path / "RS.dcm", None, lo=box[0], hi=box[1])
    _override(tmp_path / "RS.dcm", "PTV", rel_mass=4.54, comp={22: 1.0})
    _rename(tmp_path / "RS.dcm", "PTV", "Rod")
    apply_overrides(g, tmp_path / "RS.dcm")
    coverage = [w for w in g.made_with_warnings if "CT voxels" in w]
    if kept is None:
        assert not coverage, coverage
    else:
        assert len(coverage) == 1 and kept in coverage[0] and "64 CT voxels" not in coverage[0], coverage


def test_coverage_warnings_not_judged_again_say_they_were_judged_before_the_overrides(tmp_path):
    """Review A, F2: where the CT is no longer held the warnings cannot be judged again: kept, saying so."""
    import gc

    from mcproton._io.hu_calibration import BEFORE_OVERRIDES_NOTE

    ct, g = _rod_ct(tmp_path)
    del ct
    gc.collect()
    _write_rs(tmp_path / "RS.dcm", None, lo=(-8.0, -8.0, -8.0), hi=(8.0, 8.0, 8.0))
    _override(tmp_path / "RS.dcm", "PTV", rel_mass=4.54, comp={22: 1.0})
    apply_overrides(g, tmp_path / "RS.dcm")
    coverage = [w for w in g.made_with_warnings if "64 CT voxels" in w]
    assert len(coverage) == 1 and coverage[0].endswith(BEFORE_OVERRIDES_NOTE), g.made_with_warnings


def test_the_override_warnings_are_kept_in_the_results_provenance(water_ct):
    """Review A 2026-12-06, F6: on the Python route (apply_overrides, then simulate) the structure set's override
    warnings ("water at 4.54 g/cm3 ... SPR overestimated") reached the console only, where `mcproton run` keeps them
    in its summary: provenance["warnings"] was None.  apply_overrides keeps them in geometry.made_with_warnings,
    which simulate keeps, as it keeps to_geometry's."""
    import warnings

    import mcproton

    tmp, g = water_ct
    _write_rs(tmp / "RS.dcm", None, lo=(-8.0, -8.0, -8.0), hi=(8.0, 8.0, 8.0))
    _override(tmp / "RS.dcm", "PTV", rel_mass=4.54)
    _rename(tmp / "RS.dcm", "PTV", "Implant")
    with pytest.warns(UserWarning, match="taken as water at 4.54"):
        apply_overrides(g, tmp / "RS.dcm")
    said = "ROI 'Implant': REL_MASS_DENSITY 4.54 without an elemental composition is taken as water at 4.54"
    assert any(said in w for w in g.made_with_warnings), g.made_with_warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = mcproton.simulate(g, mcproton.Beam.pencil(100.0, position_mm=(0.0, -60.0, 0.0), direction=(0, 1, 0)),
                                mcproton.RunSettings(primaries=200, batches=10, backend="cpu", threads=1, seed=1),
                                log=None)
    assert any(said in w for w in res.provenance.get("warnings") or []), res.provenance.get("warnings")
    # the overrides are a recorded change: the densities are still the calibration's, with them (review A, F3)
    assert res.provenance["calibration"] == "schneider2000", res.provenance["calibration"]


# ---------------------------------------------------------------------- implant metals without a composition
def _named_override(water_ct, name: str, **props):
    """apply_overrides on the water box with the PTV renamed ``name`` and given ``props`` (rel_mass, rel_elec, spr):
    (its note, the warnings recorded, the PTV's override record)."""
    from mcproton._io.errors import recording_warnings

    tmp, g = water_ct
    _write_rs(tmp / "RS.dcm", None)
    _override(tmp / "RS.dcm", "PTV", **props)
    _rename(tmp / "RS.dcm", "PTV", name)
    with recording_warnings() as said:
        (note,) = apply_overrides(g, tmp / "RS.dcm")
    (rec,) = g.struct_overrides
    return note, said, rec


@pytest.mark.parametrize("name,rho,material,spr", [
    ("Steel screw", 7.9, "stainless_steel_316l", 5.52),
    ("Gold fiducial", 19.3, "gold", 9.69),
    ("Tantalum marker", 16.6, "tantalum", 8.55),
    ("Platinum seed", 21.45, "platinum", 10.73),
    ("CoCr stem", 8.3, "cocrmo", 5.68),
    ("Ti6Al4V plate", 4.43, "ti6al4v", 3.17),
])
def test_an_implant_named_after_its_metal_is_that_metal(water_ct, name, rho, material, spr):
    """Metal audit 2026-12-06, F3: the library held no implant metal but titanium, so "Steel screw" (REL_MASS_DENSITY
    7.9, no composition) was water at 7.9 g/cm3, SPR 7.9 against steel's 5.5 (+43 %), "Gold fiducial" SPR 19.3
    against gold's 9.7 (+99 %), and the warning told the user to name the ROI after a library material.  The metals
    are in the library now, and the ROI's name selects them."""
    note, said, rec = _named_override(water_ct, name, rel_mass=rho)
    assert rec["material"] == material and rec["density_g_cm3"] == rho, note
    assert rec["spr_100mev"] == pytest.approx(spr, abs=0.01), note
    assert not [w for w in said if "taken as water" in w], said
    assert any(f"the library material {material}, and only that one" in w for w in said), said


@pytest.mark.parametrize("name,rho,want,not_said", [
    ("Fiducial", 19.3, ["gold's by 99 %", "platinum's by 100 %", "tantalum's by 94 %", "gold ('gold')"],
     ["bone's", "titanium's", "muscle"]),
    ("Screw", 7.9, ["stainless_steel_316l's by 43 %", "cocrmo's by 46 %", "stainless_steel_316l ('steel')"],
     ["bone's", "titanium's", "muscle", "did you mean"]),
    ("Stel screw", 7.9, ["stainless_steel_316l's by 43 %", "did you mean 'stainless_steel_316l'?"],
     ["muscle", "titanium's"]),
    ("Insert", 1.6, ["bone_compact_icru's by 7 %", "bone_cortical_icrp's by 11 %"], ["titanium's", "gold"]),
])
def test_the_water_warning_says_the_overestimate_of_the_metals_of_that_density(water_ct, name, rho, want, not_said):
    """Metal audit 2026-12-06, F3: the warning of water at a metal's density said "bone's by 7-13 %, titanium's by 41
    %" whatever the density (water at a gold fiducial's 19.3 g/cm3 overstates its SPR by 99 %), and suggested a tissue
    for a metal's ("did you mean 'muscle_striated_icru'").  It now gives the overestimate for the library's materials
    of that density and names only them."""
    note, said, rec = _named_override(water_ct, name, rel_mass=rho)
    assert rec["material"] == "water", note
    (w,) = [w for w in said if "taken as water" in w]
    for s in want:
        assert s in w, (s, w)
    for s in not_said:
        assert s not in w, (s, w)


def test_the_overestimates_the_warning_quotes_are_the_materials_own():
    """The figures of the warning above: water's stopping power per gram at the metal's density over the metal's own
    SPR (mcproton's stopping powers, 100 MeV)."""
    from mcproton._io.hu_calibration import spr_per_density
    from mcproton.materials import get_material

    over = {n: 1 / spr_per_density(get_material(n), 100.0) - 1 for n in ("gold", "platinum", "tantalum", "titanium",
                                                                           "stainless_steel_316l")}
    assert {n: round(100 * x) for n, x in over.items()} == {"gold": 99, "platinum": 100, "tantalum": 94,
                                                             "titanium": 41, "stainless_steel_316l": 43}


@pytest.mark.parametrize("name,red,material,rho", [
    ("Titanium rod", 3.74, "titanium", 4.517),   # the same as REL_ELEC_DENSITY 3.74 with Ti's composition
    ("Gold marker", 13.96, "gold", 19.32),
    ("Rod", 3.74, "water", 3.74),                # no name: water per electron, warned about
])
def test_an_electron_density_alone_takes_the_material_of_the_roi_name(water_ct, name, red, material, rho):
    """Metal audit 2026-12-06, F3: REL_ELEC_DENSITY alone was water at that density whatever the ROI's name:
    "Titanium rod" with titanium's RED 3.74 got SPR 3.74 (+16 %) while REL_MASS_DENSITY 4.54 made it titanium.  Now
    the material the name names is taken, at the mass density of that electron density, as a composition gives it."""
    from mcproton._io.roi_overrides import _by_z, _z_over_a

    note, said, rec = _named_override(water_ct, name, rel_elec=red)
    assert rec["material"] == material and rec["density_g_cm3"] == pytest.approx(rho, abs=1e-3), note
    if material != "water":
        from mcproton.materials import get_material

        m = get_material(material)
        assert rec["density_g_cm3"] * _z_over_a(_by_z(m)) / _z_over_a(_by_z(get_material("water"))) == \
            pytest.approx(red, rel=1e-12)
        assert "the mass density of that electron density; by name" in note, note
        assert not [w for w in said if "taken as water" in w], said
    else:
        assert rec["density_g_cm3"] == red and any("taken as water at 3.74" in w for w in said), said


@pytest.mark.parametrize("name,props,warned", [
    ("Rod", {"spr": 3.23}, True),                            # titanium's SPR, as water at 3.23 g/cm3
    ("Rod", {"spr": 3.23, "rel_mass": 3.23}, True),          # the mass density agrees: still water at 3.23
    ("Rod", {"spr": 1.6}, False),                            # bone's SPR: a tissue's
    ("Titanium rod", {"spr": 3.23}, False),                  # titanium by its name
    ("Rod", {"spr": 3.23, "rel_mass": 4.54}, False),         # said by the warning of the unused mass density
])
def test_a_stopping_power_ratio_no_tissue_has_applied_as_water_is_warned_about(water_ct, name, props, warned):
    """Metal audit 2026-12-06, F4: REL_STOP_RATIO 3.23 alone (titanium's) made the ROI water at 3.23 g/cm3 without a
    word: the range behind it is right, but its scattering (the lateral spread behind a 10 mm rod 5 % narrower than
    titanium's) and its dose to medium are water's.  Above SPR_WATER_MAX (no soft tissue or bone) it is warned about
    now, naming the library materials of that SPR and what to give."""
    from mcproton._io.errors import McprotonRuntimeWarning

    note, said, rec = _named_override(water_ct, name, **props)
    mine = [w for w in said if "REL_STOP_RATIO 3.23 without an elemental composition is taken as water" in w]
    assert bool(mine) == warned, said
    if warned:
        (w,) = mine
        assert "The range behind the ROI follows the stopping-power ratio" in w and "multiple scattering" in w, w
        assert "titanium would be 4.54 g/cm3" in w and "ROIElementalCompositionSequence" in w, w
        assert rec["material"] == "water" and rec["density_g_cm3"] == pytest.approx(3.23), note
        tmp, g = water_ct   # a McprotonRuntimeWarning: kept in the run's summary and the check's report
        with pytest.warns(McprotonRuntimeWarning, match="REL_STOP_RATIO 3.23 without an elemental composition"):
            apply_overrides(g, tmp / "RS.dcm")


def test_no_bone_reaches_the_stopping_power_ratio_warned_about():
    from mcproton._io.hu_calibration import spr_per_density
    from mcproton._io.roi_overrides import SPR_WATER_MAX
    from mcproton.materials import get_material

    def spr(n):
        m = get_material(n)
        return m.density_g_cm3 * spr_per_density(m, 100.0)

    assert max(spr(n) for n in ("bone_compact_icru", "bone_cortical_icrp", "bone_cortical_icrp_g4")) < 1.75
    assert 1.75 < SPR_WATER_MAX < spr("aluminium") < spr("titanium")


BOLUS_Z = {1: 0.103, 6: 0.134, 7: 0.030, 8: 0.733}   # a tissue-like bolus: no library material (I by Bragg additivity)


@pytest.mark.parametrize("physics,comp,want_material", [
    ({"water_model": "pstar"}, PMMA_Z, "pmma"),
    ({"water_model": "icru90", "ivalue_set": "elemental"}, BOLUS_Z, "rtstruct:PTV"),
    ({"water_model": "pstar", "ivalue_set": "elemental"}, BOLUS_Z, "rtstruct:PTV"),
    (None, PMMA_Z, "pmma")])
def test_a_stopping_power_ratio_override_is_the_ratio_in_the_runs_water(water_ct, physics, comp, want_material):
    """ctcal audit F5: a REL_STOP_RATIO was turned into a density with ICRU 90 water and the icru37 I-values whatever
    the run's physics, while the HU -> SPR tables and range shifters follow it: a PMMA ROI of REL_STOP_RATIO 1.165
    was transported at 1.159 under pstar (-0.5 %), a bolus of its own composition at 1.050 instead of 1.04 under
    the elemental I-values (+1 %), and the note quoted the stated value.  Now the voxels' density gives the stated
    SPR with the stopping powers of the physics asked for (here the Python route, apply_overrides(physics=)), and
    the note quotes it in that water."""
    from mcproton._io.hu_calibration import SPR_REFERENCE_MEV, stopping_settings, spr_per_density
    from mcproton._io.roi_overrides import nearest_material
    from mcproton.settings import PhysicsSettings

    tmp, g = water_ct
    _write_rs(tmp / "RS.dcm", None)
    _override(tmp / "RS.dcm", "PTV", spr=1.165, comp=comp)
    water_model, ivalue_set = stopping_settings(physics)
    (r,) = roi_overrides(tmp / "RS.dcm", physics)
    mat = nearest_material(r)[0]
    assert mat.name == want_material
    k = spr_per_density(mat, SPR_REFERENCE_MEV, water_model, ivalue_set)
    assert r["density_g_cm3"] * k == pytest.approx(1.165, abs=1e-4)
    # the Python route, with settings as well as a dict
    (note,) = apply_overrides(g, tmp / "RS.dcm", physics=None if physics is None else PhysicsSettings(**physics))
    g.rs = tmp / "RS.dcm"
    rho = g.density_g_cm3_zyx[_ptv_mask(g)]
    assert np.all(rho == np.float32(r["density_g_cm3"]))
    assert "stopping-power ratio 1.165 at 100 MeV" in note, note
    assert (f"relative to the run's water (water_model {water_model}" in note) == (physics is not None), note


@pytest.mark.parametrize("physics", [{"water_model": "pstar"}, {"water_model": "pstar", "ivalue_set": "elemental"}])
def test_run_takes_a_stopping_power_ratio_override_in_the_water_of_its_physics(water_ct, capsys, physics):
    """ctcal audit F5, `mcproton run` with [physics]: the bolus ROI of REL_STOP_RATIO 1.165 (its own composition)
    gets the density of that SPR in the run's water, and the note quotes 1.165 in it (before: the density of ICRU
    90 water's and the icru37 I-values', transported at 1.159-1.171)."""
    from mcproton._io.hu_calibration import SPR_REFERENCE_MEV, spr_per_density
    from mcproton.config import build_geometry

    tmp, _ = water_ct
    _write_rs(tmp / "RS.dcm", None)
    _override(tmp / "RS.dcm", "PTV", spr=1.165, comp=BOLUS_Z)
    cfg = {"phantom": {"type": "ct", "ct_dir": str(tmp / "ct")}, "plan": {"rtstruct": str(tmp / "RS.dcm")},
           "physics": dict(physics)}
    g = build_geometry(cfg)
    g.rs = tmp / "RS.dcm"
    m = _ptv_mask(g)
    (i,) = np.unique(g.material_index_zyx[m])
    mat = g.materials[int(i)]
    assert mat.name == "rtstruct:PTV"
    rho = float(g.density_g_cm3_zyx[m].max())
    assert rho * spr_per_density(mat, SPR_REFERENCE_MEV, physics["water_model"], physics.get("ivalue_set")) \
        == pytest.approx(1.165, abs=1e-4)
    err = capsys.readouterr().err
    assert "stopping-power ratio 1.165 at 100 MeV relative to the run's water (water_model pstar" in err, err


def test_check_takes_a_stopping_power_ratio_override_in_the_water_of_its_physics(water_ct, monkeypatch):
    """ctcal audit F5, `mcproton check` with physics={"water_model": "pstar"}: the geometry its Monte Carlo gets holds
    the PMMA ROI at the density of SPR 1.165 in PSTAR water (1.1969 g/cm3; 1.1909 before, ICRU 90's)."""
    from mcproton._io.hu_calibration import SPR_REFERENCE_MEV, spr_per_density
    from mcproton.materials import get_material

    tmp, _ = water_ct
    got = _check_density_in_ptv(tmp, monkeypatch, {"spr": 1.165, "comp": PMMA_Z}, physics={"water_model": "pstar"})
    want = 1.165 / spr_per_density(get_material("pmma"), SPR_REFERENCE_MEV, "pstar")
    assert got == pytest.approx(want, rel=1e-6)
    assert want == pytest.approx(1.1969, abs=5e-4)


def test_a_water_phantom_overridden_to_water_is_not_taken_for_one_read_with_a_tissue_calibration(water_ct):
    """ctcal audit F2: a water box read with schneider2000 (SPR 1.029 at 0 HU) is warned about as a water phantom
    (tests/io/test_builtin_calibrations.py); an RT Struct that overrides it to water (REL_STOP_RATIO 1 on its
    External, as the warning advises) leaves no voxel of the calibration there: the warning goes, on the Python
    route (judged again after the overrides) and in `mcproton run` (judged after them)."""
    import warnings

    from mcproton._io.hu_calibration import HUCalibration
    from mcproton.config import build_geometry
    from mcproton.dicom import load_ct_series

    tmp, _ = water_ct
    ct = load_ct_series(tmp / "ct")   # held: the warning is judged again on it after the overrides
    g = HUCalibration.load("schneider2000").to_geometry(ct)
    said = "looks like a water phantom"
    assert any(said in w for w in g.made_with_warnings), g.made_with_warnings
    _write_rs(tmp / "RS.dcm", None, external_z=(-30.0, 30.0))
    _override(tmp / "RS.dcm", "External", spr=1.0)
    apply_overrides(g, tmp / "RS.dcm")
    assert not any(said in w for w in g.made_with_warnings), g.made_with_warnings
    cfg = {"phantom": {"type": "ct", "ct_dir": str(tmp / "ct")}, "plan": {"rtstruct": str(tmp / "RS.dcm")}}
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        build_geometry(cfg)
    assert not [w for w in rec if said in str(w.message)]
    cfg["plan"]["struct_overrides"] = "ignore"
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        build_geometry(cfg)
    assert [w for w in rec if said in str(w.message)]
