"""Strict RT Ion Plan reading and plan consistency (mcproton/_io/plan_checks.py), before any transport.

Every real Eclipse and RayStation plan in tests/data, validation/ and examples/ passes unchanged; each class of
damage that used to load as a shorter or different plan (issue 17) is refused with a message naming the file,
the beam, the control point and the tag.  The tolerances are those of plan_checks (WEIGHT_RTOL = 1e-3)."""
from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset

from mcproton._io.beam_model import load_beam_model
from mcproton._io.dicom_common import is_valid_uid
from mcproton._io.errors import DicomInputError, McprotonWarning
from mcproton._io.plan_checks import WEIGHT_RTOL
from mcproton._io.rtplan import load_rtplan, plan_to_beams

from dicom_factories import make_plan, save

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "dicom"
REAL_PLANS = sorted(DATA.glob("*.dcm")) + [ROOT / "validation" / "dcpt_plan02" / "RN_plan02_mono.dcm"] + \
    sorted((ROOT / "examples" / "data").glob("R[NP]_*.dcm"))   # its plans (RS_plan03.dcm: a structure set)
SPOTS = [(0.0, 0.0), (10.0, 0.0), (0.0, 10.0)]
LAYERS = [(150.0, SPOTS, [1.0, 2.0, 3.0]), (140.0, SPOTS, [2.0, 2.0, 2.0]), (130.0, SPOTS, [3.0, 1.0, 1.0])]


def _ds(**kw):
    return make_plan([{"gantry": 0, "couch": 0, "iso": (0, 0, 0), "layers": LAYERS, **kw}])


def _load(ds, tmp_path, name="plan.dcm"):
    return load_rtplan(save(ds, tmp_path / name))


def _beam(ds, i=0):
    return ds.IonBeamSequence[i]


def _cps(ds, i=0):
    return ds.IonBeamSequence[i].IonControlPointSequence


def _drop(ds, *idx):
    """Remove control points and renumber the rest (ControlPointIndex, NumberOfControlPoints): a damage that
    only the meterset weights give away."""
    b = _beam(ds)
    for i in sorted(idx, reverse=True):
        del b.IonControlPointSequence[i]
    for i, cp in enumerate(b.IonControlPointSequence):
        cp.ControlPointIndex = i
    b.NumberOfControlPoints = len(b.IonControlPointSequence)


@pytest.mark.parametrize("path", REAL_PLANS, ids=lambda p: p.name)
def test_every_real_plan_passes_unchanged(path):
    """Eclipse (ARIA) and RayStation plans of APTG/2022_DCPT_LET, pymchelper and dicomexport: read strictly,
    consistent, no warning; the MU of each beam equals its BeamMeterset (per fraction)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan = load_rtplan(path)
    ds = pydicom.dcmread(path)
    meterset = {int(r.ReferencedBeamNumber): float(r.BeamMeterset)
                for r in ds.FractionGroupSequence[0].ReferencedBeamSequence}
    assert len(plan.beams) == len(ds.IonBeamSequence) >= 1
    for b in plan.beams:
        assert b.total_mu == pytest.approx(meterset[b.number], rel=1e-6)
        assert b.n_spots > 0 and b.patient_position == "HFS"
    assert plan.sop_instance_uid_valid


@pytest.mark.parametrize("frac", [0.25, 0.5, 0.75, 0.97])
def test_truncated_real_plan_is_refused(tmp_path, frac):
    """pydicom alone reads RP_plan05 cut at these sizes as a plan with fewer control points (checked on the old
    reader: 7, 13, 20, 26 instead of 26 control points at 0.25..0.97 where the cut falls between elements)."""
    data = (DATA / "RP_plan05.dcm").read_bytes()
    p = tmp_path / "cut.dcm"
    p.write_bytes(data[:int(len(data) * frac)])
    with pytest.raises(DicomInputError, match=r"ends early.*IonBeamSequence item 0 > \(300A,03A8\) "
                                              r"IonControlPointSequence item \d+"):
        load_rtplan(p)


def test_truncation_at_element_boundary_inside_sequence(tmp_path):
    """The cut that pydicom reads silently: exactly after a control point (an element boundary)."""
    data = (DATA / "RN_sobp_10x10.dcm").read_bytes()
    # implicit VR LE: control point 20 starts with its item tag (FFFE,E000), then ControlPointIndex (300A,0112) "20"
    i = data.find(b"\x0a\x30\x12\x01" + struct.pack("<L", 2) + b"20") - 8
    assert data[i:i + 4] == b"\xfe\xff\x00\xe0"
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[:i])  # the file ends right before control point 20
    old = pydicom.dcmread(cut)            # what the old reader saw: 20 of 42 control points, no error
    assert len(old.IonBeamSequence[0].IonControlPointSequence) == 20
    with pytest.raises(DicomInputError, match="ends early"):
        load_rtplan(cut)


def _copy(item, **changes):
    import copy

    new = copy.deepcopy(item)
    for k, v in changes.items():
        setattr(new, k, v)
    return new


@pytest.mark.parametrize("mutate,match", [
    # a layer's control points missing while NumberOfControlPoints still counts them (a third of the dose gone)
    (lambda ds: [_cps(ds).pop(2), _cps(ds).pop(2)], r"beam 1 \(F1\): NumberOfControlPoints \(300A,0110\) is 6 but"),
    # ... and with NumberOfControlPoints corrected: the cumulative weights give it away
    (lambda ds: _drop(ds, 2, 3), r"sum to 11 but FinalCumulativeMetersetWeight \(300A,010E\) is 17"),
    (lambda ds: _drop(ds, 4, 5), r"sum to 12 but FinalCumulativeMetersetWeight"),
    # FinalCumulativeMetersetWeight twice the sum of the spot weights (half the dose)
    (lambda ds: setattr(_beam(ds), "FinalCumulativeMetersetWeight", 34.0), r"ratio 2.*tolerance 0.001"),
    # cumulative weights that do not rise by the spot weights of a control point
    (lambda ds: setattr(_cps(ds)[3], "CumulativeMetersetWeight", 7.0),
     r"control point 2: CumulativeMetersetWeight \(300A,0134\) rises by"),
    (lambda ds: setattr(_cps(ds)[0], "CumulativeMetersetWeight", 1.0), "control point 0: .* not 0"),
    (lambda ds: setattr(_cps(ds)[2], "CumulativeMetersetWeight", 20.0),
     r"control point 3: CumulativeMetersetWeight \(300A,0134\) falls from 20 to 12"),
    # a shifted spot map: weights in the second control point of a pair
    # (not in pairs any more: each control point's weights must be its own rise of the cumulative weight)
    (lambda ds: setattr(_cps(ds)[1], "ScanSpotMetersetWeights", [0.0, 0.0, 1e-3]),
     r"control point 1: the control points are not in layer pairs.*weights \(0.001\) must be the rise"),
    # the last control point with weights (the cumulative meterset ends there)
    (lambda ds: setattr(_cps(ds)[5], "ScanSpotMetersetWeights", [0.0, 0.0, 1e-3]),
     r"control point 5: the last control point carries spot weights"),
    (lambda ds: setattr(_cps(ds)[3], "NominalBeamEnergy", 141.0), r"141 MeV differs from 140 MeV"),
    (lambda ds: delattr(_cps(ds)[2], "NominalBeamEnergy"), r"control point 2: .*no NominalBeamEnergy"),
    (lambda ds: setattr(_cps(ds)[4], "ControlPointIndex", 5), r"control point 4: ControlPointIndex"),
    # fraction group against the beams
    (lambda ds: setattr(ds.FractionGroupSequence[0].ReferencedBeamSequence[0], "BeamMeterset", 0.0),
     r"BeamMeterset \(300A,0086\) is 0"),
    (lambda ds: setattr(ds.FractionGroupSequence[0], "NumberOfBeams", 2), r"NumberOfBeams \(300A,0080\)"),
    (lambda ds: setattr(ds.FractionGroupSequence[0], "NumberOfFractionsPlanned", ""), "NumberOfFractionsPlanned"),
    # a second fraction group (a boost phase): the dose of the first alone would be labelled as the plan's
    (lambda ds: ds.FractionGroupSequence.append(_copy(ds.FractionGroupSequence[0], FractionGroupNumber=2)),
     r"2 fraction groups \(FractionGroupSequence \(300A,0070\)\).*as a plan of its own"),
    # range shifters
    (lambda ds: setattr(_cps(ds)[0].RangeShifterSettingsSequence[0], "RangeShifterWaterEquivalentThickness", -40.0),
     r"control point 0: RangeShifterWaterEquivalentThickness \(300A,0366\) is -40"),
    (lambda ds: delattr(_cps(ds)[0], "RangeShifterSettingsSequence"), "no RangeShifterSettingsSequence"),
    (lambda ds: setattr(_beam(ds), "NumberOfRangeShifters", 2), r"NumberOfRangeShifters \(300A,0312\) is 2"),
    (lambda ds: setattr(_cps(ds)[0].RangeShifterSettingsSequence[0], "ReferencedRangeShifterNumber", 7),
     "ReferencedRangeShifterNumber"),
    # the patient position: OpenTPS writes an empty one
    (lambda ds: setattr(ds.PatientSetupSequence[0], "PatientPosition", ""), r"PatientPosition .* empty.*dcmodify"),
    (lambda ds: delattr(ds, "PatientSetupSequence"), "no PatientSetupSequence.*HFS"),
])
def test_inconsistent_plan_is_refused(tmp_path, mutate, match):
    ds = _ds(rs_id="RS1", rs_wet=40.0)
    _load(ds, tmp_path, "ok.dcm")   # the unmutated plan loads
    mutate(ds)
    with pytest.raises(DicomInputError, match=match):
        _load(ds, tmp_path)


@pytest.mark.parametrize("empty_layer", [False, True])
def test_a_layer_start_without_its_energy_names_the_energy_it_would_take(tmp_path, empty_layer):
    """Layer pairs (weights, zeros) with control point 4's NominalBeamEnergy lost: it would take the energy control
    point 3 repeats, the previous layer's (a delivered one, or an empty layer's); refused, naming that energy, where
    it comes from and how to state it (audit 27, spotsem F4: the message said "the previous layer's energy" also where
    the energy was the control point's own layer's, which is now read)."""
    layers = [LAYERS[0], (140.0, SPOTS, [0.0, 0.0, 0.0]) if empty_layer else LAYERS[1], LAYERS[2]]
    ds = make_plan([{"gantry": 0, "couch": 0, "iso": (0, 0, 0), "layers": layers}])
    _load(ds, tmp_path, "ok.dcm")
    del _cps(ds)[4].NominalBeamEnergy
    with pytest.raises(DicomInputError) as exc:
        _load(ds, tmp_path)
    msg = str(exc.value)
    why = ("from the control point just before (here 3), where that one states it, carries no weights and follows "
           "a control point at another energy"
           if empty_layer else "spot weights at 140 MeV were delivered before (control point 2)")
    for part in ("control point 4: the control point carries spot weights but states no NominalBeamEnergy "
                 "(300A,0114), so it would take 140 MeV from control point 3", why,
                 '(300a,03a2)[0].(300a,03a8)[4].(300a,0114)=140', "otherwise the plan is damaged"):
        assert part in msg, (part, msg)


def _said(ds, tmp_path, name="plan.dcm"):
    """The plan and the messages of the mcproton warnings loading it gave."""
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        plan = _load(ds, tmp_path, name)
    return plan, [str(x.message) for x in w if issubclass(x.category, McprotonWarning)]


def test_a_beam_naming_a_patient_setup_the_plan_lacks(tmp_path):
    """ReferencedPatientSetupNumber 7 in a plan whose only setup is 1 was taken as setup 1 without a word
    (re-acceptance audit of 2026-12-06, F6).  One setup is the only position to take, so the beam is placed with it,
    but the dangling reference (a hand edit, a beam merged from another plan) is said, naming the beam and both
    numbers; no reference at all (Type 3; OpenTPS writes none) stays silent; with two setups it is refused."""
    ds = _ds()
    _beam(ds).ReferencedPatientSetupNumber = 7
    plan, said = _said(ds, tmp_path)
    assert plan.beams[0].patient_position == "HFS"
    hits = [m for m in said if "ReferencedPatientSetupNumber (300C,006A) '7' names no patient setup" in m]
    assert len(hits) == 1, said
    assert "beam 1 (F1)" in hits[0] and "patient setup 1 (HFS)" in hits[0] and "export it again" in hits[0]
    del _beam(ds).ReferencedPatientSetupNumber
    assert not [m for m in _said(ds, tmp_path, "noref.dcm")[1] if "ReferencedPatientSetupNumber" in m]
    _beam(ds).ReferencedPatientSetupNumber = 7
    ds.PatientSetupSequence.append(_copy(ds.PatientSetupSequence[0], PatientSetupNumber=2, PatientPosition="HFP"))
    with pytest.raises(DicomInputError, match=r"ReferencedPatientSetupNumber \(300C,006A\) '7' names none of the "
                                              r"patient setups \[1, 2\]"):
        _load(ds, tmp_path, "two.dcm")


def _per_layer(ds, *, closing: bool = True, fmt: str = ".10g") -> None:
    """Rewrite every beam of ``ds`` as one control point per energy layer (its weighted control points, with the
    cumulative weights rising by their weights, written with ``fmt``) and, with ``closing``, a closing one with zero
    weights."""
    import copy

    for b in ds.IonBeamSequence:
        cps = list(b.IonControlPointSequence)
        new, cum = [], 0.0
        for cp in cps:
            if not np.any(np.asarray(cp.get("ScanSpotMetersetWeights") or 0.0, float)):
                continue
            c = copy.deepcopy(cp)
            c.ControlPointIndex, c.CumulativeMetersetWeight = len(new), f"{cum:{fmt}}"
            cum += float(np.sum(c.ScanSpotMetersetWeights))
            new.append(c)
        if closing:
            last = copy.deepcopy(cps[-1])
            last.ControlPointIndex, last.CumulativeMetersetWeight = len(new), f"{cum:{fmt}}"
            last.ScanSpotMetersetWeights = [0.0] * int(last.NumberOfScanSpotPositions)
            new.append(last)
        b.IonControlPointSequence = new
        b.NumberOfControlPoints = len(new)


def test_one_control_point_per_layer_and_a_closing_one_is_read_as_the_pairs(tmp_path):
    """I/O review 2026-12-06, F4: a beam of one control point per energy layer and a closing zero-weight one
    (CumulativeMetersetWeight rising by each control point's weights, the last one's weights 0: all PS3.3 C.8.8.25
    asks) was refused as "control points are missing or shifted: the plan is damaged", as Eclipse/RayStation
    layer pairs were required.  RayStation's RP_plan05 rewritten so (13 layers, 14 control points), and the factory
    plan with a closing control point of a pair dropped: the same layers, energies and MU as the pairs."""
    ds = pydicom.dcmread(DATA / "RP_plan05.dcm")
    want = load_rtplan(DATA / "RP_plan05.dcm")
    _per_layer(ds)
    got = _load(ds, tmp_path)
    assert len(ds.IonBeamSequence[0].IonControlPointSequence) == len(want.beams[0].layers) + 1
    for a, b in zip(got.beams, want.beams, strict=True):
        assert [x.nominal_energy_mev for x in a.layers] == [x.nominal_energy_mev for x in b.layers]
        for la, lb in zip(a.layers, b.layers, strict=True):
            assert np.array_equal(la.spot_xy_mm, lb.spot_xy_mm) and np.allclose(la.spot_mu, lb.spot_mu, rtol=1e-9)
    small = _ds()
    pairs = load_rtplan(small)
    _drop(small, 3)   # the zero-weight control point that closes the 140 MeV layer: 5 control points
    dropped = _load(small, tmp_path, "dropped.dcm")
    assert [(x.nominal_energy_mev, x.spot_mu.tolist()) for x in dropped.beams[0].layers] == \
        [(x.nominal_energy_mev, x.spot_mu.tolist()) for x in pairs.beams[0].layers]


def test_a_small_layer_per_layer_with_7_digit_cumulative_weights_is_read(tmp_path):
    """Review B of 2026-12-06, F2: one control point per layer was accepted only if each rise of
    CumulativeMetersetWeight matched its weights to 0.1 % of its own weights (+1e-9 of the beam); planning systems
    write the cumulative weights to 7 significant digits (RP_plan05's '17479.57'), so a small layer (one spot of
    2.417, RP_plan05's smallest, in a beam of 52 000: cumulative weights to 0.01) was refused as damaged on rounding
    alone, while the same plan in layer pairs was read.  A spot weight moved into the next control point (the mean
    layer's 0.1 % would not see it) is still refused."""
    import copy

    ds = pydicom.dcmread(DATA / "RP_plan05.dcm")
    b = ds.IonBeamSequence[0]
    cps = list(b.IonControlPointSequence)
    extra = copy.deepcopy(cps[10])   # a weighted control point: one spot of 2.417 at 0.5 MeV below its layer
    extra.NominalBeamEnergy = float(cps[10].NominalBeamEnergy) - 0.5
    extra.NumberOfScanSpotPositions = 1
    extra.ScanSpotPositionMap = list(cps[10].ScanSpotPositionMap)[:2]
    extra.ScanSpotMetersetWeights = [2.417]
    b.IonControlPointSequence = cps[:12] + [extra, _copy(extra, ScanSpotMetersetWeights=[0.0])] + cps[12:]
    total = sum(float(np.sum(cp.get("ScanSpotMetersetWeights") or 0.0)) for cp in b.IonControlPointSequence)
    b.FinalCumulativeMetersetWeight = f"{total:.7g}"
    rb = ds.FractionGroupSequence[0].ReferencedBeamSequence[0]
    rb.BeamMeterset = f"{float(rb.BeamMeterset) * total / (total - 2.417):.7g}"
    _per_layer(ds, fmt=".7g")
    cps = b.IonControlPointSequence
    cum = [float(cp.CumulativeMetersetWeight) for cp in cps]
    w = [float(np.sum(cp.ScanSpotMetersetWeights)) for cp in cps]
    small = w.index(2.417)
    assert abs(cum[small + 1] - cum[small] - 2.417) > WEIGHT_RTOL * 2.417 + 1e-9 * total   # what was refused
    plan = _load(ds, tmp_path)
    want = load_rtplan(DATA / "RP_plan05.dcm")
    assert len(plan.beams[0].layers) == len(want.beams[0].layers) + 1
    assert plan.beams[0].layers[small].spot_mu.size == 1
    # a whole spot moved into the next control point (the cumulative weights unchanged) is still refused
    def smallest(cp):
        x = np.atleast_1d(np.asarray(cp.ScanSpotMetersetWeights, float))
        return x[x > 0].min() if x.size > 1 else np.inf

    k = min(range(len(cps) - 2), key=lambda i: smallest(cps[i]))   # the smallest spot (2.42) of a layer
    sw = np.atleast_1d(np.asarray(cps[k].ScanSpotMetersetWeights, float))
    nxt = np.atleast_1d(np.asarray(cps[k + 1].ScanSpotMetersetWeights, float))
    j = int(np.argmin(np.where(sw > 0, sw, np.inf)))   # its smallest spot
    nxt[0] += sw[j]
    sw[j] = 0.0
    cps[k].ScanSpotMetersetWeights, cps[k + 1].ScanSpotMetersetWeights = sw.tolist(), nxt.tolist()
    with pytest.raises(DicomInputError, match=rf"control point {k}: the control points are not in layer pairs"):
        _load(ds, tmp_path, "moved.dcm")


def test_duplicated_beam_numbers_in_a_real_plan(tmp_path):
    """Two beams sharing one BeamNumber: one beam got the other's MU (twice its dose)."""
    ds = pydicom.dcmread(DATA / "RN_qa_4beams.dcm")
    ds.IonBeamSequence[1].BeamNumber = 1
    ds.FractionGroupSequence[0].ReferencedBeamSequence[1].ReferencedBeamNumber = 1
    with pytest.raises(DicomInputError, match=r"beams #1 and #2 share BeamNumber \(300A,00C0\) 1"):
        load_rtplan(ds)


def test_referenced_beam_missing_in_a_real_plan():
    ds = pydicom.dcmread(DATA / "RN_qa_4beams.dcm")
    del ds.IonBeamSequence[3]
    with pytest.raises(DicomInputError, match="references beam 4 .* does not hold"):
        load_rtplan(ds)


def test_real_plan_with_a_layer_removed():
    """RP_plan05 with one layer pair cut out and NumberOfControlPoints made to agree."""
    ds = pydicom.dcmread(DATA / "RP_plan05.dcm")
    b = ds.IonBeamSequence[0]
    del b.IonControlPointSequence[4:6]
    for i, cp in enumerate(b.IonControlPointSequence):
        cp.ControlPointIndex = i
    b.NumberOfControlPoints = len(b.IonControlPointSequence)
    with pytest.raises(DicomInputError, match=r"beam 1 \(SOBP2\)"):
        load_rtplan(ds)


def test_weight_tolerance_is_relative_1e3(tmp_path):
    ds = _ds()
    _beam(ds).FinalCumulativeMetersetWeight = 17.0 * (1 + 0.5 * WEIGHT_RTOL)   # within: accepted
    _load(ds, tmp_path)
    _beam(ds).FinalCumulativeMetersetWeight = 17.0 * (1 + 2 * WEIGHT_RTOL)
    with pytest.raises(DicomInputError, match="sum to"):
        _load(ds, tmp_path)


def _opentps_like(ds):
    """What OpenTPS's writeRTPlan writes: one control point per layer with an empty CumulativeMetersetWeight,
    VirtualSourceAxisDistances [0, 0], BeamNumber 0, the SOP Class UID as SOP Instance UID."""
    b = _beam(ds)
    cps = [cp for i, cp in enumerate(b.IonControlPointSequence) if i % 2 == 0]
    for i, cp in enumerate(cps):
        cp.ControlPointIndex = i
        cp.CumulativeMetersetWeight = ""
    b.IonControlPointSequence = pydicom.Sequence(cps)
    b.NumberOfControlPoints = len(cps)
    b.VirtualSourceAxisDistances = [0, 0]
    b.BeamNumber = 0
    ds.FractionGroupSequence[0].ReferencedBeamSequence[0].ReferencedBeamNumber = 0
    ds.SOPInstanceUID = ds.SOPClassUID
    return ds


def test_opentps_plan_is_read_with_warnings(tmp_path):
    ref = _load(_ds(), tmp_path, "ref.dcm")
    ds = _opentps_like(_ds())
    with pytest.warns(UserWarning) as rec:
        plan = _load(ds, tmp_path)
    msgs = " | ".join(str(r.message) for r in rec)
    assert "VirtualSourceAxisDistances (300A,030A) = [0, 0]" in msgs and "beam model's" in msgs
    assert "not a valid instance UID" in msgs
    assert plan.sop_instance_uid_valid is False and ref.sop_instance_uid_valid is True
    b = plan.beams[0]
    assert b.virtual_source_axis_distances_mm is None
    assert [l.nominal_energy_mev for l in b.layers] == [150.0, 140.0, 130.0]
    np.testing.assert_allclose(b.total_mu, ref.beams[0].total_mu)
    model = load_beam_model("dcpt_v2")   # VSAD (2000, 2560) mm, as make_plan writes: the same spots result
    (beam,) = plan_to_beams(plan, model)
    (beam_ref,) = plan_to_beams(ref, model)
    np.testing.assert_allclose([s.position_mm for s in beam.spots], [s.position_mm for s in beam_ref.spots])


@pytest.mark.filterwarnings("ignore:.*VirtualSourceAxisDistances")
def test_opentps_plan_with_a_missing_layer_is_refused(tmp_path):
    ds = _opentps_like(_ds())
    _drop(ds, 1)
    with pytest.raises(DicomInputError, match="sum to 11"):
        _load(ds, tmp_path)


def test_plan_without_file_meta_is_read(tmp_path):
    """A raw data set (no preamble, no file meta) is read as the RT Struct reader reads one."""
    ds = _ds()
    ds.preamble = None
    ds.file_meta = FileMetaDataset()
    p = tmp_path / "raw.dcm"
    ds.save_as(p, implicit_vr=True, little_endian=True, enforce_file_format=False)
    assert p.read_bytes()[128:132] != b"DICM"
    plan = load_rtplan(p)
    assert len(plan.beams[0].layers) == 3
    # cut short, it is refused like any other truncated plan
    data = p.read_bytes()
    (tmp_path / "rawcut.dcm").write_bytes(data[:len(data) // 2])
    with pytest.raises(DicomInputError, match="ends early"):
        load_rtplan(tmp_path / "rawcut.dcm")


@pytest.mark.parametrize("uid,ok", [("1.2.826.0.1.3680043.8.498.1", True), ("1.2.840.10008.5.1.4.1.1.481.8", False),
                                    ("1.2.03.4", False), ("1..2", False), ("1.2.", False), ("", False),
                                    ("1." + "2" * 63, False), ("1.2.a", False), ("0.1", True)])
def test_is_valid_uid(uid, ok):
    assert is_valid_uid(uid) is ok


def test_deflated_plan_is_checked_after_inflating(tmp_path):
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    ds = _ds()
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    p = tmp_path / "deflated.dcm"
    ds.save_as(p, enforce_file_format=True)
    assert len(load_rtplan(p).beams[0].layers) == 3
    data = p.read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:len(data) * 2 // 3])
    with pytest.raises(DicomInputError, match="ends early"):
        load_rtplan(tmp_path / "cut.dcm")


def test_opentps_plan_facts_are_said_once(tmp_path):
    """Audit 18b F5: the [0, 0] VirtualSourceAxisDistances were warned once per beam, and the invalid plan SOP
    Instance UID twice (on reading the plan, and again on writing an RT Dose that references it).  Now one warning
    names every beam, and the reader's UID warning names the UID the RT Dose references: writing the dose in the same
    call says nothing more; outside that call (another block) the writer still says it."""
    from mcproton._io.dicom_common import StudyReference, replacement_plan_uid
    from mcproton._io.errors import recording_warnings
    from mcproton._io.rtdose import read_rtdose, write_rtdose

    ds = make_plan([{"gantry": g, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "meterset": 10.0,
                     "layers": [(100.0, [(0.0, 0.0)], [1.0])]} for g in (0.0, 90.0)])
    for b in ds.IonBeamSequence:
        b.VirtualSourceAxisDistances = [0, 0]
    ds.SOPInstanceUID = ds.SOPClassUID
    bad = str(ds.SOPClassUID)
    study = StudyReference(study_instance_uid="1.2.3.4", frame_of_reference_uid=str(ds.FrameOfReferenceUID),
                           plan_sop_instance_uid=bad)
    with pytest.warns(UserWarning), recording_warnings() as said:
        _load(ds, tmp_path)
        write_rtdose(np.ones((2, 2, 2)), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tmp_path / "RD.dcm", study=study)
    vsad = [m for m in said if "VirtualSourceAxisDistances" in m]
    assert len(vsad) == 1 and "beam(s) 1, 2:" in vsad[0], said
    uid = [m for m in said if bad in m]
    assert len(uid) == 1 and replacement_plan_uid(bad) in uid[0], said
    assert read_rtdose(tmp_path / "RD.dcm").referenced_plan_sop_instance_uid == replacement_plan_uid(bad)
    with pytest.warns(UserWarning, match="the RT Dose references"), recording_warnings() as said:
        write_rtdose(np.ones((2, 2, 2)), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tmp_path / "RD2.dcm", study=study)
    assert len(said) == 1, said


@pytest.mark.parametrize("bad", ["1.2.840.10008.1.1", "1.2.840.10008.5.1.4.1.1.481.8"])
def test_plan_uid_under_the_dicom_root_is_replaced_as_the_reader_says(tmp_path, bad):
    """A plan SOP Instance UID under the DICOM root 1.2.840.10008 (the standard's own UIDs, never an instance's): the
    plan reader says an RT Dose references the replacement UID, and the RT Dose does.  Before, the writer replaced
    only UIDs under the SOP Class root 1.2.840.10008.5.1.4.1.1: a plan of the Verification SOP Class UID read as
    replaced in the warning, and its RT Dose referenced it unchanged."""
    from mcproton._io.dicom_common import StudyReference, replacement_plan_uid
    from mcproton._io.errors import recording_warnings
    from mcproton._io.rtdose import read_rtdose, write_rtdose

    ds = make_plan([{"gantry": 0.0, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "meterset": 10.0,
                     "layers": [(100.0, [(0.0, 0.0)], [1.0])]}])
    ds.SOPInstanceUID = bad
    study = StudyReference(study_instance_uid="1.2.3.4", frame_of_reference_uid=str(ds.FrameOfReferenceUID),
                           plan_sop_instance_uid=bad)
    with pytest.warns(UserWarning), recording_warnings() as said:
        _load(ds, tmp_path)
        write_rtdose(np.ones((2, 2, 2)), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), tmp_path / "RD.dcm", study=study)
    uid = [m for m in said if bad in m]
    assert len(uid) == 1 and replacement_plan_uid(bad) in uid[0], said
    assert read_rtdose(tmp_path / "RD.dcm").referenced_plan_sop_instance_uid == replacement_plan_uid(bad)


def test_the_energies_a_beam_inherits_are_looked_up_once_per_control_point():
    """A beam of 40 layers each written as a zero-weight control point stating the energy and one with the weights
    that leaves it out (accepted: each inherits its own layer's energy).  Each control point's NominalBeamEnergy is
    looked up twice (its own check, and the beam's energies built once); before (the re-read of 2026-12-07, d 4) the
    beam's energies were rebuilt at every inheriting control point: 40 x 80 more look-ups."""
    from mcproton._io.plan_checks import _check_control_points

    looked: list[str] = []

    class ControlPoint(dict):
        def get(self, key, default=None):
            looked.append(key)
            return super().get(key, default)

    n_layers = 40
    cps = []
    for k in range(n_layers):
        cps.append(ControlPoint(NominalBeamEnergy=f"{200 - k}", ScanSpotMetersetWeights=[0.0],
                                NumberOfScanSpotPositions=1))
        cps.append(ControlPoint(ScanSpotMetersetWeights=[1.0], NumberOfScanSpotPositions=1))
    beam = {"IonControlPointSequence": cps, "NumberOfControlPoints": len(cps),
            "FinalCumulativeMetersetWeight": float(n_layers)}
    _check_control_points(beam, "beam 1", 0)
    assert looked.count("NominalBeamEnergy") == 2 * len(cps), looked.count("NominalBeamEnergy")
    del cps[2]["NominalBeamEnergy"]   # the same check: control point 3 would take 200 MeV, delivered before
    beam["NumberOfControlPoints"] = len(cps)
    with pytest.raises(DicomInputError, match=r"control point 3: .* so it would take 200 MeV from control point 0.*"
                                              r"spot weights at 200 MeV were delivered before \(control point 1\)"):
        _check_control_points(beam, "beam 1", 0)
