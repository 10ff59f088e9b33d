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
    """Another distance stated at control point 30 is refused as before; so is one stated by an OUT item at 20 and
    carried to the IN at 30 that leaves it out (the shifter would be IN at 300 mm there)."""
    ds = pydicom.dcmread(HEAD)
    _set(ds, 30, _item(ds, "IN", IsocenterToRangeShifterDistance=300.0))
    with pytest.raises(DicomInputError, match=r"IsocenterToRangeShifterDistance \(300A,0364\) of range shifter "
                                              r"'RS_5CM' changes between control points 0 \(275.531 mm\) and 30 "
                                              r"\(300 mm\)"):
        load_rtplan(ds)
    ds = pydicom.dcmread(HEAD)
    _set(ds, 20, _item(ds, "OUT", IsocenterToRangeShifterDistance=300.0))
    _set(ds, 30, _item(ds, "IN", dist=False))
    with pytest.raises(DicomInputError, match=r"changes between control points 0 \(275.531 mm\) and 30 \(300 mm\)"):
        load_rtplan(ds)


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
