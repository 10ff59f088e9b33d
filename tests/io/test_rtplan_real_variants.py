"""The real plans of tests/data/dicom changed the way real plans differ (audit of 2026-12-05, 14th session): beam
modifiers mcproton does not model (MLC and jaws, wedges, scatterers, boli), set-up beams, RangeShifterSetting
texts, analog range shifters and the smaller reading rules (paintings, scan-mode type, angles modulo 360, a moving
snout or shifter).  Each is refused or warned about with the file, the beam and the control point named."""
from __future__ import annotations

import copy
import re
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from mcproton._io.beam_model import load_beam_model
from mcproton._io.errors import DicomInputError, McprotonWarning
from mcproton._io.rtplan import load_rtplan, plan_to_beams, warn_unmodelled_boli

DATA = Path(__file__).resolve().parent.parent / "data" / "dicom"
PLAN02 = DATA / "RN_plan02_mono.dcm"      # Eclipse, one 160 MeV layer (control points 0 and 1)
PLAN06 = DATA / "RP_plan06_rs.dcm"        # RayStation, RS_3CM IN from control point 0, 15 layers
QA4 = DATA / "RN_qa_4beams.dcm"           # Eclipse, 4 beams


def _edit(src: Path, tmp_path: Path, fn, name: str = "RP.dcm") -> Path:
    ds = pydicom.dcmread(src)
    fn(ds)
    out = tmp_path / name
    ds.save_as(out)
    return out


def _load(path, **kw):
    """load_rtplan, and the messages of the mcproton warnings it gave."""
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        plan = load_rtplan(path, **kw)
    return plan, [str(x.message) for x in w if issubclass(x.category, McprotonWarning)]


# ------------------------------------------------------------------------------------------- F1: beam modifiers
def _mlc_slit(ds):
    b = ds.IonBeamSequence[0]
    d = Dataset()
    d.RTBeamLimitingDeviceType, d.NumberOfLeafJawPairs, d.LeafPositionBoundaries = "MLCX", 2, [-20, 0, 20]
    b.IonBeamLimitingDeviceSequence = Sequence([d])
    p = Dataset()
    p.RTBeamLimitingDeviceType, p.LeafJawPositions = "MLCX", [-5, -5, 5, 5]   # a 1 cm slit
    b.IonControlPointSequence[0].BeamLimitingDevicePositionSequence = Sequence([p])


def _jaws_listed_only(ds):
    items = []
    for t in ("X", "Y"):
        d = Dataset()
        d.RTBeamLimitingDeviceType, d.NumberOfLeafJawPairs = t, 1
        items.append(d)
    ds.IonBeamSequence[0].IonBeamLimitingDeviceSequence = Sequence(items)


def test_an_mlc_placed_in_a_control_point_is_refused(tmp_path):
    """An MLC closing plan02's 10 x 10 cm2 field to a 1 cm slit gave a dose bit-identical to the open field, without
    a word; now refused, naming the file, the beam, the control point, the device and what to do."""
    p = _edit(PLAN02, tmp_path, _mlc_slit)
    with pytest.raises(DicomInputError) as exc:
        load_rtplan(p)
    msg = str(exc.value)
    for part in (str(p), "beam 1 (Field 1)", "MLCX", "control point 0", "from -5 to 5 mm",
                 "its dose would be computed without it", "plan.ignore_beam_limiting_devices = true"):
        assert part in msg


def test_ignore_beam_limiting_devices_computes_with_a_warning(tmp_path):
    p = _edit(PLAN02, tmp_path, _mlc_slit)
    plan, said = _load(p, ignore_beam_limiting_devices=True)
    assert plan.beams[0].n_spots == 323
    assert any("MLCX" in m and "plan.ignore_beam_limiting_devices = true" in m for m in said)


def test_config_key_ignore_beam_limiting_devices(tmp_path):
    from mcproton.config import build_beams

    p = _edit(PLAN02, tmp_path, _mlc_slit)
    cfg = {"plan": {"rtplan": str(p), "beam_model": "dcpt_v5"}}
    with pytest.raises(DicomInputError, match="beam-limiting device"):
        build_beams(cfg)
    cfg["plan"]["ignore_beam_limiting_devices"] = True
    with pytest.warns(McprotonWarning, match="is ignored"):
        assert len(build_beams(cfg)) == 1


def test_a_device_listed_without_positions_is_read_as_open_with_a_warning(tmp_path):
    p = _edit(PLAN02, tmp_path, _jaws_listed_only)
    plan, said = _load(p)
    assert plan.beams[0].n_spots == 323
    assert any("lists X, Y, but no control point gives its positions" in m for m in said)


def _wedge(ds):
    b = ds.IonBeamSequence[0]
    b.NumberOfWedges = 1
    w = Dataset()
    w.WedgeNumber, w.WedgeType, w.WedgeID = 1, "STANDARD", "W30"
    b.IonWedgeSequence = Sequence([w])


def _wedge_sequence_only(ds):
    _wedge(ds)
    ds.IonBeamSequence[0].NumberOfWedges = 0


def _scatterer(ds):
    for d in ds.IonBeamSequence[0].LateralSpreadingDeviceSequence:
        d.LateralSpreadingDeviceType = "SCATTERER"


@pytest.mark.parametrize("fn, match", [
    (_wedge, "NumberOfWedges is 1: the beam has a wedge"),
    (_wedge_sequence_only, "NumberOfWedges is 1: the beam has a wedge"),
    (_scatterer, r"lateral spreading device 1 \('MagnetX'\) is 'SCATTERER' .*not a scanning MAGNET"),
])
def test_a_wedge_or_a_scatterer_is_refused(tmp_path, fn, match):
    p = _edit(PLAN02, tmp_path, fn)
    with pytest.raises(DicomInputError, match=match) as exc:
        load_rtplan(p)
    assert str(p) in str(exc.value) and "computed without it" in str(exc.value)


def _bolus(ds):
    b = ds.IonBeamSequence[0]
    b.NumberOfBoli = 1
    r = Dataset()
    r.ReferencedROINumber = 7
    b.ReferencedBolusSequence = Sequence([r])


def test_a_bolus_without_an_applied_override_is_warned_about(tmp_path):
    """A plan that uses a bolus (ReferencedBolusSequence) was computed without it and without a word: the bolus is in
    the dose only through the structure set's material override of its ROI (or when it lay on the patient at the CT
    scan), so a bolus whose ROI has no applied override is warned about, naming the ROI number and what to do."""
    p = _edit(PLAN02, tmp_path, _bolus)
    plan = load_rtplan(p)
    assert plan.beams[0].bolus_roi_numbers == [7]
    with pytest.warns(McprotonWarning, match=r"beam 1 \(Field 1\): the plan uses a bolus .*ROI number 7\), but no "
                                             r"RT Struct's material overrides are applied"):
        assert len(warn_unmodelled_boli(plan, None)) == 1
    with pytest.warns(McprotonWarning, match="RS.dcm applied gives that ROI no material override"):
        warn_unmodelled_boli(plan, {1, 2}, structure_set="RS.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_unmodelled_boli(plan, {7}) == []
        assert warn_unmodelled_boli(load_rtplan(PLAN02), None) == []


def test_run_warns_about_a_bolus_unless_its_override_is_applied(tmp_path):
    """mcproton run (config.build_beams): the warning goes when plan.rtstruct's override of the bolus ROI is applied
    (APTG plan03's structure set overrides ROI numbers that roi_overrides now gives)."""
    from mcproton._io.roi_overrides import roi_overrides
    from mcproton.config import build_beams

    rs = DATA / "aptg_check" / "RS_plan03.dcm"
    n, name = roi_overrides(rs)[0]["number"], roi_overrides(rs)[0]["name"]

    def bolus_roi(k):
        def fn(ds):
            _bolus(ds)
            ds.IonBeamSequence[0].ReferencedBolusSequence[0].ReferencedROINumber = k
        return fn

    cfg = {"plan": {"rtplan": str(_edit(PLAN02, tmp_path, bolus_roi(n))), "beam_model": "dcpt_v5",
                    "rtstruct": str(rs)}}
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        build_beams(cfg)
    assert not [x for x in w if "bolus" in str(x.message)]
    cfg["plan"]["struct_overrides"] = "ignore"
    # the ROI named as the structure set names it (verification audit of 2026-12-05, N4), not by its number only
    with pytest.warns(McprotonWarning, match=rf"ROI number {n} '{re.escape(name)}'\), but no RT Struct's material "
                      "overrides are applied"):
        build_beams(cfg)


# ------------------------------------------------------------------------------------------- F3: set-up beams
def _setup_beam(spots: bool, referenced: bool, scan: str = "NONE"):
    def fn(ds):
        b = copy.deepcopy(ds.IonBeamSequence[0])
        b.BeamNumber, b.BeamName, b.TreatmentDeliveryType, b.ScanMode = 9, "SETUP kV", "SETUP", scan
        if not spots:
            cp0 = b.IonControlPointSequence[0]
            for k in ("ScanSpotMetersetWeights", "ScanSpotPositionMap", "NumberOfScanSpotPositions"):
                delattr(cp0, k)
            b.IonControlPointSequence = Sequence([cp0])
            b.NumberOfControlPoints = 1
            del b.FinalCumulativeMetersetWeight
        ds.IonBeamSequence.append(b)
        if referenced:
            fg = ds.FractionGroupSequence[0]
            r = copy.deepcopy(fg.ReferencedBeamSequence[0])
            r.ReferencedBeamNumber = 9
            fg.ReferencedBeamSequence.append(r)
            fg.NumberOfBeams = len(fg.ReferencedBeamSequence)
    return fn


@pytest.mark.parametrize("spots, referenced, scan", [(False, False, "NONE"), (False, False, "MODULATED"),
                                                     (True, True, "MODULATED"), (True, False, "MODULATED")])
def test_a_set_up_beam_is_left_out_with_a_note(tmp_path, spots, referenced, scan):
    """An Eclipse kV set-up field (TreatmentDeliveryType SETUP) refused the whole 4-beam plan as "passive scattering"
    or "no BeamMeterset"; one with spots was added to the dose.  Now left out before those checks, with a note."""
    p = _edit(QA4, tmp_path, _setup_beam(spots, referenced, scan))
    plan, said = _load(p)
    assert [b.number for b in plan.beams] == [1, 2, 3, 4]
    (note,) = plan.skipped_beams
    assert "beam 9 'SETUP kV' is a set-up beam (TreatmentDeliveryType (300A,00CE) SETUP): not computed" in note
    assert ("carries spot weights" in note) == spots
    # a warning (in the run's summary, the check's report) only where it carries spots: a plain kV set-up field is
    # routine, a note (verification audit of 2026-12-05, N3)
    assert [m for m in said if "set-up beam" in m] == ([note] if spots else [])
    beams = plan_to_beams(plan, load_beam_model("dcpt_v5"))
    assert [b.meta["beam_number"] for b in beams] == [1, 2, 3, 4]
    assert all(b.meta["plan_beam_numbers"] == [1, 2, 3, 4] for b in beams)


def test_a_plan_of_set_up_beams_only_is_refused(tmp_path):
    def fn(ds):
        ds.IonBeamSequence[0].TreatmentDeliveryType = "SETUP"
    with pytest.raises(DicomInputError, match="the plan has no treatment beam"):
        _load(_edit(PLAN02, tmp_path, fn))


# ----------------------------------------------------------------- audit 18 course F8: a treatment beam at 0 MU
def _zero_mu(beam: int = 0, weights: float = 0.0, meterset: float = 0.0):
    def fn(ds):
        b = ds.IonBeamSequence[beam]
        b.FinalCumulativeMetersetWeight = 0.0
        for cp in b.IonControlPointSequence:
            cp.CumulativeMetersetWeight = 0.0
            if "ScanSpotMetersetWeights" in cp:
                n = len(cp.ScanSpotMetersetWeights) if hasattr(cp.ScanSpotMetersetWeights, "__len__") else 1
                cp.ScanSpotMetersetWeights = [weights] * n
        for r in ds.FractionGroupSequence[0].ReferencedBeamSequence:
            if int(r.ReferencedBeamNumber) == int(b.BeamNumber):
                r.BeamMeterset = meterset
    return fn


def test_a_treatment_beam_of_0_mu_is_left_out_with_a_warning(tmp_path):
    """A field left at 0 MU in a course plan (FinalCumulativeMetersetWeight 0, BeamMeterset 0, every spot weight 0)
    refused the whole plan ("FinalCumulativeMetersetWeight 0.0 must be > 0"); it delivers nothing, so it is left
    out as a set-up field is, with a warning."""
    plan, said = _load(_edit(QA4, tmp_path, _zero_mu(1)))
    assert [b.number for b in plan.beams] == [1, 3, 4]
    (note,) = plan.skipped_beams
    assert "beam 2" in note and "delivers 0 MU" in note and note.endswith("not computed")
    assert [m for m in said if "0 MU" in m] == [note]


@pytest.mark.parametrize("weights, meterset", [(1.0, 0.0), (0.0, 5.0)])
def test_a_0_mu_beam_that_contradicts_itself_is_still_refused(tmp_path, weights, meterset):
    """Meterset 0 with spot weights, or weights of 0 with a BeamMeterset: a damaged plan, not a field at 0 MU."""
    with pytest.raises(DicomInputError, match="FinalCumulativeMetersetWeight|BeamMeterset"):
        _load(_edit(QA4, tmp_path, _zero_mu(1, weights, meterset)))


def test_a_plan_whose_beams_are_all_at_0_mu_is_refused(tmp_path):
    def fn(ds):
        for i in range(len(ds.IonBeamSequence)):
            _zero_mu(i)(ds)
    with pytest.raises(DicomInputError, match="the plan has no treatment beam that delivers dose"):
        _load(_edit(QA4, tmp_path, fn))


# ------------------------------------------------------------------------------------------- F4: range shifters
def _setting(value):
    def fn(ds):
        ds.IonBeamSequence[0].IonControlPointSequence[0].RangeShifterSettingsSequence[0].RangeShifterSetting = value
    return fn


@pytest.mark.parametrize("value", ["RETRACTED", "NONE", "INSERTED", "2"])
def test_an_unknown_range_shifter_setting_is_refused(tmp_path, value):
    """Any RangeShifterSetting but OUT, 0 or empty was read as IN: RETRACTED or NONE put RS_3CM (34.3 mm WET) into
    every layer without a word."""
    p = _edit(PLAN06, tmp_path, _setting(value))
    with pytest.raises(DicomInputError) as exc:
        load_rtplan(p)
    msg = str(exc.value)
    for part in (str(p), "beam 1 (4_SOBP_2Gy) control point 0", f"of range shifter 'RS_3CM' is '{value}'",
                 "neither IN nor OUT", "export the plan with IN or OUT"):
        assert part in msg


@pytest.mark.parametrize("value, shifter_in", [("in", True), ("In", True), ("1", True), ("1.0", True),
                                               ("out", False), ("0", False), ("0.0", False)])
def test_range_shifter_settings_in_any_case_and_as_numbers(tmp_path, value, shifter_in):
    def fn(ds):
        _setting(value)(ds)
        if not shifter_in:
            ds.IonBeamSequence[0].IonControlPointSequence[0].RangeShifterSettingsSequence[0] \
                .RangeShifterWaterEquivalentThickness = 0.0
    plan = load_rtplan(_edit(PLAN06, tmp_path, fn))
    (beam,) = plan_to_beams(plan, load_beam_model("dcpt_v5"))
    assert bool(beam.meta["range_shifters"]) == shifter_in
    assert {r["setting"] for layer in plan.beams[0].layers for r in layer.range_shifter_settings} == \
        {"IN" if shifter_in else "OUT"}


def _analog(wet):
    def fn(ds):
        b = ds.IonBeamSequence[0]
        b.RangeShifterSequence[0].RangeShifterType = "ANALOG"
        s0 = b.IonControlPointSequence[0].RangeShifterSettingsSequence[0]
        s = copy.deepcopy(s0)
        s.RangeShifterWaterEquivalentThickness = wet
        b.IonControlPointSequence[2].RangeShifterSettingsSequence = Sequence([s])
    return fn


def test_an_analog_shifter_with_another_wet_than_the_models_is_refused(tmp_path):
    """An ANALOG shifter's WET is the plan's, layer by layer; the model's single WET replaced it with a warning per
    layer (a range error of up to 14 mm).  Refused; the same WET as the model's is computed as before."""
    model = load_beam_model("dcpt_v5")
    plan = load_rtplan(_edit(PLAN06, tmp_path, _analog(45.0)))
    with pytest.raises(DicomInputError, match=r"control point 2: range shifter 'RS_3CM' is ANALOG .* 45 mm here, the "
                                              r"beam model's \[\[range_shifter\]\] 34.3 mm.*off by 10.7 mm"):
        plan_to_beams(plan, model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert plan_to_beams(load_rtplan(_edit(PLAN06, tmp_path, _analog(34.3), "ok.dcm")), model)


def test_two_shifters_in_at_once_are_refused_without_a_merge_suggestion(tmp_path):
    def fn(ds):
        b = ds.IonBeamSequence[0]
        r = copy.deepcopy(b.RangeShifterSequence[0])
        r.RangeShifterNumber, r.RangeShifterID = 1, "RS_5CM"
        b.RangeShifterSequence.append(r)
        b.NumberOfRangeShifters = 2
        s = copy.deepcopy(b.IonControlPointSequence[0].RangeShifterSettingsSequence[0])
        s.ReferencedRangeShifterNumber = 1
        b.IonControlPointSequence[0].RangeShifterSettingsSequence.append(s)
    p = _edit(PLAN06, tmp_path, fn)
    with pytest.raises(DicomInputError) as exc:
        load_rtplan(p)
    msg = str(exc.value)
    assert str(p) in msg and "control point 0: 2 range shifters are IN at once ('RS_3CM', 'RS_5CM')" in msg
    assert "merge" not in msg and "re-plan it with one shifter" in msg


# ------------------------------------------------------------------------------------------- F8: smaller rules
def _cp(k, **attrs):
    def fn(ds):
        for kw, v in attrs.items():
            setattr(ds.IonBeamSequence[0].IonControlPointSequence[k], kw, v)
    return fn


def test_number_of_paintings_0_is_refused(tmp_path):
    with pytest.raises(DicomInputError, match=r"control point 0: NumberOfPaintings \(300A,039A\) is 0; it must be "
                                              ">= 1"):
        load_rtplan(_edit(PLAN02, tmp_path, _cp(0, NumberOfPaintings=0)))


def test_number_of_paintings_does_not_scale_the_dose(tmp_path):
    """ScanSpotMetersetWeights are the total over all paintings of a layer (PS3.3 C.8.8.25: a control point's weights
    sum to the CumulativeMetersetWeight difference to the next, however often the layer is scanned; rtplan.py's
    docstring: NumberOfPaintings is recorded only).  A repainted plan (2-10 paintings, routine for moving targets)
    gives the same spot MU and protons as the same plan painted once.  Mutation audit 29 F1: multiplying every spot's
    MU by NumberOfPaintings passed the whole rtplan suite (every test plan paints once)."""
    def paint(n):
        def fn(ds):
            for cp in ds.IonBeamSequence[0].IonControlPointSequence:
                cp.NumberOfPaintings = n
        return fn
    model = load_beam_model("dcpt_v5")
    once, four = (load_rtplan(_edit(PLAN06, tmp_path, paint(n), f"RP{n}.dcm")) for n in (1, 4))
    assert len(four.beams[0].layers) == 15 and {la.number_of_paintings for la in four.beams[0].layers} == {4}
    for a, b in zip(once.beams[0].layers, four.beams[0].layers, strict=True):
        assert np.array_equal(a.spot_mu, b.spot_mu)
    (b1,), (b4,) = plan_to_beams(once, model), plan_to_beams(four, model)
    assert b4.total_protons == b1.total_protons
    assert [s.weight for s in b4.spots] == [s.weight for s in b1.spots]


def test_modulated_with_a_line_scanning_type_is_refused(tmp_path):
    def fn(kind):
        def f(ds):
            ds.IonBeamSequence[0].ModulatedScanModeType = kind
        return f
    with pytest.raises(DicomInputError, match="ScanMode MODULATED with ModulatedScanModeType .* 'LINEAR', which "
                                              "belongs to ScanMode MODULATED_SPEC"):
        load_rtplan(_edit(PLAN02, tmp_path, fn("LINEAR")))
    assert load_rtplan(_edit(PLAN02, tmp_path, fn("STATIONARY"), "ok.dcm")).beams


@pytest.mark.parametrize("attrs", [{"GantryAngle": 360.0}, {"PatientSupportAngle": 360.0},
                                   {"GantryAngle": -0.0, "PatientSupportAngle": 360.0}])
def test_the_same_angle_modulo_360_is_not_an_arc(tmp_path, attrs):
    plan = load_rtplan(_edit(PLAN02, tmp_path, _cp(1, **attrs)))
    assert plan.beams[0].n_spots == 323


@pytest.mark.parametrize("kw,value,shown", [
    ("GantryAngle", 1e300, "GantryAngle (300A,011E) is 1e+300 deg, outside 0-360 deg"),
    ("GantryAngle", 1e20, "GantryAngle (300A,011E) is 1e+20 deg, outside 0-360 deg"),
    ("GantryAngle", 1800.0, "GantryAngle (300A,011E) is 1800 deg (a typo of 180?), outside 0-360 deg"),
    ("GantryAngle", -90.0, "GantryAngle (300A,011E) is -90 deg"),
    ("PatientSupportAngle", 1e300, "PatientSupportAngle (300A,0122) is 1e+300 deg"),
    ("PatientSupportAngle", 450.0, "PatientSupportAngle (300A,0122) is 450 deg (a typo of 45?)"),
    ("PatientSupportAngle", 720.0, "PatientSupportAngle (300A,0122) is 720 deg"),
    ("TableTopEccentricAngle", 1e20, "TableTopEccentricAngle (300A,0125) is 1e+20 deg"),
])
def test_an_angle_outside_0_to_360_is_refused_not_reduced(tmp_path, kw, value, shown):
    """GantryAngle 1e300 / 1e20 aimed the beam 48 / 18 deg off and 1800 (a typo of 180.0) read as 0, the opposite
    beam, each with exit status 0 (the hostile-inputs audit of 2026-12-06, F2): an angle outside the DICOM range
    0-360 deg is refused, naming the beam, the control point, the attribute and the value."""
    with pytest.raises(DicomInputError) as err:
        load_rtplan(_edit(PLAN02, tmp_path, _cp(0, **{kw: value})))
    msg = str(err.value)
    assert shown in msg and "beam 1" in msg and "control point 0" in msg, msg


@pytest.mark.parametrize("kw,value", [("GantryAngle", 0.0), ("GantryAngle", 359.9), ("GantryAngle", 360.0),
                                      ("PatientSupportAngle", 270.0), ("TableTopEccentricAngle", 0.0)])
def test_angles_within_0_to_360_are_read(tmp_path, kw, value):
    attrs = {kw: value}
    if kw == "GantryAngle":   # the second control point repeats it (else: an arc)
        path = _edit(PLAN02, tmp_path, lambda ds: [_cp(i, **attrs)(ds) for i in (0, 1)])
    else:
        path = _edit(PLAN02, tmp_path, _cp(0, **attrs))
    assert load_rtplan(path).beams[0].n_spots == 323


def test_a_couch_angle_missing_from_the_first_control_point_is_named(tmp_path):
    def fn(ds):
        del ds.IonBeamSequence[0].IonControlPointSequence[0].PatientSupportAngle
        ds.IonBeamSequence[0].IonControlPointSequence[1].PatientSupportAngle = 0.0
    p = _edit(PLAN02, tmp_path, fn)
    with pytest.raises(DicomInputError, match=r"control point 1: PatientSupportAngle \(300A,0122\) is given here but "
                                              "missing from the first control point") as exc:
        load_rtplan(p)
    assert "arc" not in str(exc.value)


def test_a_snout_that_moves_during_a_beam_is_refused(tmp_path):
    p = _edit(PLAN06, tmp_path, _cp(10, SnoutPosition=300.0))
    with pytest.raises(DicomInputError, match=r"SnoutPosition \(300A,030D\) of the snout changes between control "
                                              r"points 0 \(92.9 mm\) and 10 \(300 mm\)"):
        load_rtplan(p)


def test_a_range_shifter_that_moves_during_a_beam_is_refused(tmp_path):
    def fn(ds):
        s = copy.deepcopy(ds.IonBeamSequence[0].IonControlPointSequence[0].RangeShifterSettingsSequence[0])
        s.IsocenterToRangeShifterDistance = 200.0
        ds.IonBeamSequence[0].IonControlPointSequence[10].RangeShifterSettingsSequence = Sequence([s])
    with pytest.raises(DicomInputError, match=r"IsocenterToRangeShifterDistance \(300A,0364\) of range shifter "
                                              r"'RS_3CM' changes between control points 0 \(135.9 mm\) and 10 "
                                              r"\(200 mm\)"):
        load_rtplan(_edit(PLAN06, tmp_path, fn))


def test_the_real_plans_read_as_before():
    """Every real plan of tests/data/dicom reads with the new rules, without a warning about them (the OpenTPS plans
    are read by tests/check/test_check_opentps.py)."""
    new = ("beam-limiting", "bolus", "set-up beam", "not a treatment beam", "TableTop", "PatientSupportAngle")
    for p in [*DATA.glob("R[NP]_*.dcm"), DATA / "aptg_check" / "RP_plan03.dcm",
              DATA / "aptg_plan03" / "ramped_2Gy_ver2_full.dcm"]:
        plan, said = _load(p)
        assert plan.beams and not plan.skipped_beams, p
        assert not [m for m in said if any(k in m for k in new)], p


def test_check_warns_about_a_bolus_unless_its_override_is_applied(tmp_path):
    """mcproton check (its _warn_boli, with the inputs it paired): as mcproton run."""
    from types import SimpleNamespace

    from mcproton._check.api import _warn_boli
    from mcproton._io.roi_overrides import roi_overrides

    rs = DATA / "aptg_check" / "RS_plan03.dcm"
    n, name = roi_overrides(rs)[0]["number"], roi_overrides(rs)[0]["name"]

    def fn(ds):
        _bolus(ds)
        ds.IonBeamSequence[0].ReferencedBolusSequence[0].ReferencedROINumber = n
    plan = load_rtplan(_edit(PLAN02, tmp_path, fn))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_boli(SimpleNamespace(plan=plan, struct_path=str(rs), ct_dir="ct"), "apply")
        _warn_boli(SimpleNamespace(plan=load_rtplan(PLAN02), struct_path=None, ct_dir="ct"), "apply")
    for struct, how in ((str(rs), "ignore"), (None, "apply")):   # named where the structure set is at hand (N4)
        roi = rf"ROI number {n} '{re.escape(name)}'" if struct else rf"ROI number {n}"
        with pytest.warns(McprotonWarning, match=rf"{roi}\), but no RT Struct's material overrides"):
            _warn_boli(SimpleNamespace(plan=plan, struct_path=struct, ct_dir="ct"), how)


# ------------------------------------------------------------- audit 17 (noncoplanar) F1: couch and table-top angles
def _drop(*keywords):
    """An edit that deletes ``keywords`` from every control point of every beam."""
    def fn(ds):
        for b in ds.IonBeamSequence:
            for cp in b.IonControlPointSequence:
                for kw in keywords:
                    if kw in cp:
                        delattr(cp, kw)
    return fn


def test_a_plan_without_any_couch_angle_is_refused(tmp_path):
    """PatientSupportAngle is 1C in the first control point (PS3.3 C.8.8.25) and every planning system here writes
    it; a plan without it anywhere was run at couch 0, so a vertex field (couch 90) went in laterally, silently."""
    with pytest.raises(DicomInputError, match=r"beam 1 \(.*\): PatientSupportAngle \(300A,0122\) is missing from the "
                                              r"first control point and from every later one .* export it again"):
        load_rtplan(_edit(QA4, tmp_path, _drop("PatientSupportAngle")))


def test_missing_table_top_pitch_and_roll_are_taken_as_flat_with_a_warning(tmp_path):
    """TableTopPitchAngle and TableTopRollAngle (1C in the first control point) left out, as OpenTPS writes its
    plans: read as 0 (a flat table top), with one warning for the plan naming the beams and both angles."""
    plan, said = _load(_edit(QA4, tmp_path, _drop("TableTopPitchAngle", "TableTopRollAngle")))
    assert len(plan.beams) == 4
    told = [m for m in said if "TableTopPitchAngle (300A,0140) and TableTopRollAngle (300A,0144) missing" in m]
    assert len(told) == 1 and "beam(s) 1, 2, 3, 4" in told[0] and "taken as 0" in told[0], said


def test_the_opentps_plan_reads_its_couch_and_warns_of_the_flat_table_top():
    """The OpenTPS export (no TableTopPitchAngle, TableTopRollAngle or TableTopEccentricAngle, PatientSupportAngle
    0.0) still reads; the warning names the two tilt angles, not the eccentric angle that no exporter writes."""
    plan, said = _load(DATA / "opentps_box100" / "RP.dcm", patient_position="HFS")
    assert plan.beams[0].couch_angle_deg == 0.0
    assert [m for m in said if "TableTopPitchAngle" in m and "TableTopRollAngle" in m]
    assert not [m for m in said if "Eccentric" in m or "PatientSupportAngle" in m]


def test_a_warning_turned_into_an_error_by_the_callers_filter_is_not_a_malformed_plan():
    """The automation audit (F11): a script that turns McprotonWarnings into errors (as the README says it may) got
    "malformed RT Ion Plan (McprotonWarning: ...)" for the OpenTPS plan, whose only fault is a caveat; the warning
    now propagates as itself."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", McprotonWarning)
        with pytest.raises(McprotonWarning, match="VirtualSourceAxisDistances") as caught:
            load_rtplan(DATA / "opentps_box100" / "RP.dcm", patient_position="HFS")
    assert "malformed" not in str(caught.value)


# ------------------------------------------------------------------------- csi audit F5: table-top translations
def _table_top(ds):
    for i, b in enumerate(ds.IonBeamSequence):   # couch shifts that match no isocentre difference
        cp = b.IonControlPointSequence[0]
        cp.TableTopLateralPosition, cp.TableTopLongitudinalPosition, cp.TableTopVerticalPosition = 0, 100 * i, -50


def test_table_top_translations_are_not_used_and_the_docs_say_so(tmp_path):
    """The table-top translations are read nowhere (each beam's IsocenterPosition in the patient frame places it),
    and nothing compares them with the isocentres: the beams of a plan with and without them are the same, and
    docs/patient_workflow.md and load_rtplan's docstring say it (before: written nowhere; csi audit F5)."""
    model = load_beam_model("dcpt_v5")
    plain, _ = _load(QA4)
    shifted, said = _load(_edit(QA4, tmp_path, _table_top))
    assert not [m for m in said if "TableTop" in m and "Position" in m]
    for a, b in zip(plan_to_beams(plain, model), plan_to_beams(shifted, model)):
        assert a.meta["isocenter_mm"] == b.meta["isocenter_mm"]
        assert len(a.spots) == len(b.spots) and all(x == y for x, y in zip(a.spots, b.spots))
    flat = " ".join((DATA.parents[2] / "docs" / "patient_workflow.md").read_text().split())
    assert ("The table-top translations (TableTopLateralPosition, TableTopLongitudinalPosition, "
            "TableTopVerticalPosition) are not used" in flat)
    doc = " ".join(load_rtplan.__doc__.split())
    assert "TableTopVerticalPosition) are not read: each beam's IsocenterPosition in the patient frame" in doc


# ------------------------------------------------------------- audit 27 spotsem F4: an energy left out where unchanged
def _recount(b):
    """CumulativeMetersetWeight, NumberOfControlPoints and ControlPointIndex of beam ``b`` made consistent again."""
    cum = 0.0
    for i, cp in enumerate(b.IonControlPointSequence):
        cp.ControlPointIndex, cp.CumulativeMetersetWeight = i, cum
        cum += float(sum(float(v) for v in cp.ScanSpotMetersetWeights))
    b.NumberOfControlPoints = len(b.IonControlPointSequence)


def _weights_on_cp1(split: bool):
    """plan02 (one 160 MeV layer; Eclipse leaves NominalBeamEnergy out of control point 1) with its weights moved to
    control point 1 (``split``: half of each spot's weight left on control point 0), closed by a zero-weight control
    point: control point 1 carries weights and inherits 160 MeV."""
    def fn(ds):
        b = ds.IonBeamSequence[0]
        cps = b.IonControlPointSequence
        w = [float(v) for v in cps[0].ScanSpotMetersetWeights]
        assert "NominalBeamEnergy" not in cps[1]
        cps[0].ScanSpotMetersetWeights = [v / 2 for v in w] if split else [0.0] * len(w)
        cps[1].ScanSpotMetersetWeights = [v / 2 for v in w] if split else w
        close = copy.deepcopy(cps[1])
        close.ScanSpotMetersetWeights = [0.0] * len(w)
        cps.append(close)
        _recount(b)
    return fn


def _spots(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (beam,) = plan_to_beams(load_rtplan(path), load_beam_model("dcpt_v5"))
    return sorted((s.energy_mev, *map(float, s.position_mm), s.weight) for s in beam.spots)


def test_weights_on_a_control_point_that_inherits_its_layers_energy_are_read(tmp_path):
    """A zero-weight control point that states the energy, then one with the weights that leaves it out (PS3.3: the
    energy is required only where it changes): the energy is the layer's own, unambiguous, and the plan is read with
    the same spots, energies and protons as plan02 itself.  Before, it was refused as inheriting "the previous layer's
    energy" (there is none) and "damaged"."""
    p = _edit(PLAN02, tmp_path, _weights_on_cp1(split=False))
    plan = load_rtplan(p)
    (layer,) = plan.beams[0].layers
    assert layer.control_point_index == 1 and layer.nominal_energy_mev == 160.0
    assert _spots(p) == _spots(PLAN02)


def test_weights_inheriting_an_energy_already_delivered_are_refused_with_a_way_out(tmp_path):
    """Control point 1 with weights after control point 0's weights at 160 MeV: as a new layer whose energy tag was
    lost, so refused; the message names the energy that would be taken, where from, why it is ambiguous and the
    dcmodify command that states it, and with the energy stated the plan reads with plan02's spots."""
    p = _edit(PLAN02, tmp_path, _weights_on_cp1(split=True))
    with pytest.raises(DicomInputError) as exc:
        load_rtplan(p)
    msg = str(exc.value)
    for part in (str(p), "beam 1 (Field 1) control point 1", "states no NominalBeamEnergy (300A,0114), so it would "
                 "take 160 MeV from control point 0", "delivered before (control point 0)",
                 'dcmodify -m "(300a,03a2)[0].(300a,03a8)[1].(300a,0114)=160" plan.dcm', "export it again"):
        assert part in msg, (part, msg)
    assert "previous layer's energy" not in msg
    fixed = _edit(p, tmp_path, _cp(1, NominalBeamEnergy="160"), name="RP_fixed.dcm")
    ours, theirs = _spots(fixed), _spots(PLAN02)      # each spot twice, with half its protons
    assert [s[:4] for s in ours[::2]] == [s[:4] for s in ours[1::2]] == [s[:4] for s in theirs]
    assert [a[4] + b[4] for a, b in zip(ours[::2], ours[1::2])] == pytest.approx([s[4] for s in theirs], rel=1e-12)
