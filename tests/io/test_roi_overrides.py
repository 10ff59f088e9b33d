"""The RT Struct's material overrides on a patient CT (mcproton/_io/roi_overrides.py): a planning system computes
with them (a bolus, artifacts set to tissue, a phantom set to water), so `mcproton check` and `mcproton run` put
them into the CT's geometry.  Before 2026-12-05 they were read only to build a phantom without a CT; on a CT they
were ignored in silence, and the dose was that of another patient than the planning system's."""
from __future__ import annotations

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


def _override(path: Path, roi: str, rel_mass=None, rel_elec=None, comp=None) -> None:
    """Give ROI ``roi`` of the RT Struct the physical properties a planning system writes for an override."""
    ds = pydicom.dcmread(path)
    num = next(int(r.ROINumber) for r in ds.StructureSetROISequence if r.ROIName == roi)
    obs = next(o for o in ds.RTROIObservationsSequence if int(o.ReferencedROINumber) == num)
    props = []
    for prop, val in (("REL_MASS_DENSITY", rel_mass), ("REL_ELEC_DENSITY", rel_elec)):
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
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "check"))
    from test_check_pairing import STUDY, _hu, _plan, _rd

    from mcproton._check import api
    from mcproton.dicom import write_ct_series

    tmp, _ = water_ct
    write_ct_series(_hu(), (4.0, 4.0, 4.0), (-54.0, -54.0, -26.0), tmp / "ct_t1", study=STUDY)   # the plan's patient
    uid = _plan(tmp / "RP.dcm")
    _rd(tmp / "RD.dcm", uid)
    _write_rs(tmp / "RS.dcm", None)
    _override(tmp / "RS.dcm", "PTV", rel_mass=1.19, comp=PMMA_Z)
    seen = {}

    class Stop(Exception):
        pass

    def fake_run_mc(inputs, geometry, *a, **k):
        geometry.rs = tmp / "RS.dcm"
        seen["max_in_ptv"] = float(geometry.density_g_cm3_zyx[_ptv_mask(geometry)].max())
        raise Stop

    monkeypatch.setattr(api, "run_mc", fake_run_mc)
    for how, want in (("apply", 1.19), ("ignore", 1.0188)):
        with pytest.raises(Stop):
            api.check(plan=tmp / "RP.dcm", dose=tmp / "RD.dcm", ct=tmp / "ct_t1", struct=tmp / "RS.dcm",
                      beam_model="dcpt_v2", out=None, progress=False, log=lambda m: None, struct_overrides=how)
        assert seen["max_in_ptv"] == pytest.approx(want, abs=2e-3), how


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
    if rs_override:
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
                   "material": "pmma", "density_g_cm3": 1.19, "how": "nearest composition (L1 0.000)",
                   "voxels": 8 * 8 * 6, "note": notes[0]}
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
    assert [(r["roi"], r["property"], r["value"], r["material"]) for r in g.struct_overrides] == [
        ("External", "REL_MASS_DENSITY", 1.02, "water"), ("A", "REL_MASS_DENSITY", 1.19, "pmma"),
        ("B", "REL_MASS_DENSITY", 1.6, "water"), ("C", "REL_ELEC_DENSITY", 1.1, "water"),
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
    assert "'PTV'" in rec["note"] and rec["how"].startswith("nearest composition")
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
    assert rec["how"] == "ignored (plan.struct_overrides = 'ignore')" if ignored else rec["how"].startswith("nearest")


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
    from mcproton._io.roi_overrides import nearest_material
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
        notes.append(f"ROI {r['name']!r} ({r['type'] or 'no type'}): {r['property']} {r['density_g_cm3']:g} -> "
                     f"{m.name} at {r['density_g_cm3']:g} g/cm3 ({why}), {n} voxels"
                     + ("" if n else " (no voxel: contours outside the grid, or none)"))
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
    assert [m.name for m in g.materials] == [m.name for m in ref.materials] == ["air", "water", "pmma"]
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
