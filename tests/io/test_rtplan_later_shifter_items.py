"""A later control point's RangeShifterSettingsSequence item that leaves out the Type 3 IsocenterToRangeShifterDistance
(300A,0364) or RangeShifterWaterEquivalentThickness (300A,0366) keeps the beam's earlier plan value (audit 27,
spotsem F1).  Before, such an item dropped the plan's distance and the later layers took the beam model's
isocenter_distance_mm: the Eclipse head plan's RS_5CM at 275.5 mm for the first layers and at the model's 400 mm from
control point 30 on, its spots there 24 % wider at the isocentre, without a word."""
from __future__ import annotations

import copy
import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.sequence import Sequence

from mcproton._io.beam_model import load_beam_model
from mcproton._io.errors import DicomInputError
from mcproton._io.rtplan import load_rtplan, plan_to_beams

DATA = Path(__file__).resolve().parent.parent / "data" / "dicom"
HEAD = DATA / "RN_headphantom_rs.dcm"     # Eclipse, 3 beams; beam 1: RS_5CM IN from control point 0 at 275.53 mm
PLAN_MM = 275.5312194824219              # beam 1's IsocenterToRangeShifterDistance (control point 0)
MODEL_MM = 400.0                         # the beam model's isocenter_distance_mm for RS_5CM (below)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """dcpt_v5 whose RS_5CM states its own isocenter_distance_mm (a documented key, docs/beam_model.md), as the
    audit's model did: the fallback the later layers used to take."""
    src = Path(load_beam_model.__globals__["BUILTIN"]["dcpt_v5"])
    d = tmp_path_factory.mktemp("model")
    shutil.copy(src.parent / "dcpt_beam_model_full.csv", d)
    text = src.read_text()
    head, rs5 = text.split('id = "RS_5CM"')
    rs5 = rs5.replace("wet_mm = 57.0", f"wet_mm = 57.0\nisocenter_distance_mm = {MODEL_MM}", 1)
    (d / "m.toml").write_text(head + 'id = "RS_5CM"' + rs5)
    m = load_beam_model(d / "m.toml")
    assert m.range_shifters["RS_5CM"].isocenter_distance_mm == MODEL_MM
    return m


def _item(ds, setting, *, dist=True, wet=True, **values):
    it = copy.deepcopy(ds.IonBeamSequence[0].IonControlPointSequence[0].RangeShifterSettingsSequence[0])
    it.RangeShifterSetting = setting
    if not dist:
        del it.IsocenterToRangeShifterDistance
    if not wet:
        del it.RangeShifterWaterEquivalentThickness
    for k, v in values.items():
        setattr(it, k, v)
    return it


def _set(ds, ci, item):
    ds.IonBeamSequence[0].IonControlPointSequence[ci].RangeShifterSettingsSequence = Sequence([item])


def _beam1(ds, model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = load_rtplan(ds)
        (beam,) = plan_to_beams(plan, model, beam_numbers=[1])
    return plan, beam


def _slab_distances(beam, model) -> dict[float, set[float]]:
    """Per layer energy, the isocentre distance of the slab's downstream face each spot was given (mm, 0.01), from
    its upstream face along the ray: face x cos = L - D - t."""
    L = model.plane_upstream_of_isocentre_mm
    axis = np.asarray(beam.meta["beam_direction"])
    out: dict[float, set[float]] = {}
    for s in beam.spots:
        rs = s.range_shifter
        if rs is not None:
            d = L - rs.thickness_mm - rs.upstream_face_mm * float(np.dot(s.direction, axis))
            out.setdefault(round(s.energy_mev, 2), set()).add(round(d, 2))
    return out


def test_the_unchanged_plan_places_the_shifter_at_its_distance(model):
    plan, beam = _beam1(pydicom.dcmread(HEAD), model)
    dist = _slab_distances(beam, model)
    assert len(dist) == len(plan.beams[0].layers) and set().union(*dist.values()) == {round(PLAN_MM, 2)}


@pytest.mark.parametrize("wet", [True, False])
def test_a_repeated_in_without_the_distance_keeps_the_plans(model, wet):
    """Control point 30 repeats IN without IsocenterToRangeShifterDistance (and, once, without the WET): every layer's
    slab stays at control point 0's 275.53 mm (before: 400 mm, the model's, from control point 30 on)."""
    ds = pydicom.dcmread(HEAD)
    _set(ds, 30, _item(ds, "IN", dist=False, wet=wet))
    plan, beam = _beam1(ds, model)
    dist = _slab_distances(beam, model)
    assert len(dist) == len(plan.beams[0].layers)
    assert set().union(*dist.values()) == {round(PLAN_MM, 2)}, dist
    assert beam.meta["range_shifters"]["RS_5CM"]["isocenter_distance_mm"] == pytest.approx(PLAN_MM)
    late = [layer for layer in plan.beams[0].layers if layer.control_point_index >= 30]
    assert late and all(r["distance_mm"] == pytest.approx(PLAN_MM) and r["distance_cp"] == 0 and r["wet_mm"] == 57.0
                        for layer in late for r in layer.range_shifter_settings)


def test_out_and_in_again_without_the_distance_keeps_the_plans(model):
    """OUT from control point 20, IN again from 30, both items without the distance and the WET: the layers of 20-29
    have no slab, the others the plan's distance."""
    ds = pydicom.dcmread(HEAD)
    _set(ds, 20, _item(ds, "OUT", dist=False, wet=False))
    _set(ds, 30, _item(ds, "IN", dist=False, wet=False))
    plan, beam = _beam1(ds, model)
    layers = plan.beams[0].layers
    out = [layer for layer in layers if 20 <= layer.control_point_index < 30]
    dist = _slab_distances(beam, model)
    assert out and len(dist) == len(layers) - len(out)
    assert set().union(*dist.values()) == {round(PLAN_MM, 2)}, dist


def test_a_shifter_that_really_moves_is_still_refused(model):
    """Another distance stated at control point 30 is refused as before; so is an IN at 30 that leaves the distance
    out after an OUT item at 20 stated another one (300 mm) than the last IN item: where the shifter sits is
    unknown."""
    ds = pydicom.dcmread(HEAD)
    _set(ds, 30, _item(ds, "IN", IsocenterToRangeShifterDistance=300.0))
    with pytest.raises(DicomInputError, match=r"IsocenterToRangeShifterDistance \(300A,0364\) of range shifter "
                                              r"'RS_5CM' changes between control points 0 \(275.531 mm\) and 30 "
                                              r"\(300 mm\)"):
        load_rtplan(ds)
    ds = pydicom.dcmread(HEAD)
    _set(ds, 20, _item(ds, "OUT", IsocenterToRangeShifterDistance=300.0))
    _set(ds, 30, _item(ds, "IN", dist=False))
    with pytest.raises(DicomInputError, match=r"control point 30: range shifter 'RS_5CM' is IN again without "
                                              r"IsocenterToRangeShifterDistance \(300A,0364\); its last IN item "
                                              r"\(control point 0\) states 275.531 mm, but control point 20's item "
                                              r"states 300 mm since, with the shifter OUT"):
        load_rtplan(ds)
    ds = pydicom.dcmread(HEAD)    # the same distance repeated while OUT: carried, as the plan's
    _set(ds, 20, _item(ds, "OUT"))
    _set(ds, 30, _item(ds, "IN", dist=False))
    plan, beam = _beam1(ds, model)
    assert set().union(*_slab_distances(beam, model).values()) == {round(PLAN_MM, 2)}


def test_a_distance_stated_only_later_is_refused(model):
    """Control point 0's item without the distance (the model's 400 mm) and control point 30's with 275.53 mm: the
    slab would be at two places in one beam, one of them the model's; refused, naming both and where each comes
    from."""
    ds = pydicom.dcmread(HEAD)
    first, later = _item(ds, "IN", dist=False), _item(ds, "IN")
    _set(ds, 0, first)
    _set(ds, 30, later)
    plan = load_rtplan(ds)
    with pytest.raises(DicomInputError) as exc:
        plan_to_beams(plan, model, beam_numbers=[1])
    msg = str(exc.value)
    for part in ("beam 1", "'RS_5CM'", "400 mm from the isocentre for control point 0",
                 "the beam model's isocenter_distance_mm", "275.531 mm for control point 30",
                 "IsocenterToRangeShifterDistance (300A,0364) of control point 30", "first control point"):
        assert part in msg, (part, msg)


def _out_then_in(out_mm: float, **out_values):
    """Review of audit 27's merges, R2: beam 1 with control point 0's item OUT, stating IsocenterToRangeShifterDistance
    ``out_mm`` (and ``out_values``), and an IN item without the distance (nor the WET) at control point 2."""
    ds = pydicom.dcmread(HEAD)
    _set(ds, 0, _item(ds, "OUT", IsocenterToRangeShifterDistance=out_mm, **out_values))
    _set(ds, 2, _item(ds, "IN", dist=False, wet=False))
    return ds


@pytest.mark.parametrize("out_mm", [0.0, 100.0])
def test_a_distance_stated_only_with_the_shifter_out_is_not_carried(model, out_mm):
    """An OUT item's distance does not place an inserted slab (a placeholder 0 mm put the slab's downstream face at
    the isocentre, inside the patient, without a word): the IN layers take the beam model's 400 mm, as before the
    carrying (audit 27, spotsem F1), and without a model distance the beam is refused, saying why."""
    plan, beam = _beam1(_out_then_in(out_mm), model)
    layers = plan.beams[0].layers
    inside = [layer for layer in layers if layer.control_point_index >= 2]
    assert inside and all(r["distance_mm"] is None and r["distance_cp"] is None
                          for layer in inside for r in layer.range_shifter_settings)
    dist = _slab_distances(beam, model)
    assert len(dist) == len(inside) and set().union(*dist.values()) == {MODEL_MM}, dist
    assert beam.meta["range_shifters"]["RS_5CM"]["isocenter_distance_mm"] == MODEL_MM
    plan = load_rtplan(_out_then_in(out_mm))
    with pytest.raises(DicomInputError, match=r"beam 1 control point 2: range shifter 'RS_5CM' has no "
                                              r"IsocenterToRangeShifterDistance in the plan while IN \(one stated with "
                                              r"the shifter OUT does not place it\).*add isocenter_distance_mm"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plan_to_beams(plan, load_beam_model("dcpt_v5"), beam_numbers=[1])


def test_a_wet_stated_only_with_the_shifter_out_is_not_carried(model):
    """Nor is an OUT item's WET: the IN layers have none from the plan (the model's 57 mm, without the warning that
    the plan's 40 mm differs from it)."""
    plan = load_rtplan(_out_then_in(PLAN_MM, RangeShifterWaterEquivalentThickness=40.0))
    assert [r["wet_mm"] for layer in plan.beams[0].layers for r in layer.range_shifter_settings
            if layer.control_point_index >= 2] == [None] * sum(layer.control_point_index >= 2
                                                                for layer in plan.beams[0].layers)
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        (beam,) = plan_to_beams(plan, model, beam_numbers=[1])
    assert not [w for w in said if "WET" in str(w.message)], [str(w.message) for w in said]
    assert beam.meta["range_shifters"]["RS_5CM"]["wet_mm"] == 57.0


def test_a_distance_of_0_carried_from_an_in_item_is_as_one_stated(model):
    """0 mm stated by an IN item (the slab's downstream face at the isocentre) and carried to a later IN item gives
    the beam that 0 stated in every item gives, and so meets the same refusal before a dose: a slab inside the
    phantom (mcproton run, check and simulate: check_shifters_outside)."""
    from mcproton.config import ConfigError
    from mcproton.geometry import box_phantom
    from mcproton._run.inputs import check_shifters_outside

    carried, stated = pydicom.dcmread(HEAD), pydicom.dcmread(HEAD)
    _set(carried, 0, _item(carried, "IN", IsocenterToRangeShifterDistance=0.0))
    _set(carried, 2, _item(carried, "IN", dist=False))
    _set(stated, 0, _item(stated, "IN", IsocenterToRangeShifterDistance=0.0))
    _set(stated, 2, _item(stated, "IN", IsocenterToRangeShifterDistance=0.0))
    (_, a), (_, b) = _beam1(carried, model), _beam1(stated, model)
    assert [(s.range_shifter.upstream_face_mm, s.energy_mev) for s in a.spots] == \
        [(s.range_shifter.upstream_face_mm, s.energy_mev) for s in b.spots]
    iso = np.asarray(a.meta["isocenter_mm"], float)
    box = box_phantom("water", (160, 160, 160), 4.0, origin_mm=(iso[0] - 80, iso[1] - 80, iso[2] - 80))
    for beam in (a, b):
        with pytest.raises(ConfigError, match="lies inside the phantom"):
            check_shifters_outside(box, [beam], "plan beam")
