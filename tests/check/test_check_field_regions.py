"""A plan of two isocentres checked on its TPS plan dose alone (CSI audit 2026-12-06, F1, F2): the MC's per-beam
doses localise each field (api.field_regions), so that

* (a) field 2 moved 5 mm along z in the TPS plan dose FAILs on field 2's region row and the note names beam 2 (the
  plan-level rows pass: the shift is diluted in them, and the check passed before);
* (b) field 2 missing from the TPS plan dose is named as missing, before any centroid note, and field 1's range
  rows do not fail for field 2's rays (before: no missing-beam note, and field 1's range rows took field 2's rays);
* (c) the correct plan dose passes every row.

Cheap: no transport.  A water box 80 x 80 x 392 mm on 4 mm voxels; two gantry-0 beams on isocentres 110 mm apart
in z; the 'MC' (a stand-in MCDose) and the 'TPS' are box-shaped analytic beam doses (erf edges, sigma 3 mm): a
wide 'cranial' field 1 (72 x 72 mm, z -20..190 mm) and a narrow 'spinal' field 2 (24 x 24 mm, z -150..20 mm) that
meet in a 40 mm linear feathered junction (z -20..20 mm).  Deterministic (no noise); ~10 s per check on 2 cores.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.special import erf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from dicom_factories import make_plan, save, spot_grid
from test_check import BOX, FOR, _write_rs

from mcproton.dicom import StudyReference

FAST = {"gamma_points": 4000, "progress": False, "backend": "cpu", "beam_model": "dcpt_v2", "out": None,
        "log": lambda m: None}
VS = (4.0, 4.0, 4.0)


def _box(a, lo, hi, sigma=3.0):
    return 0.5 * (erf((a - lo) / (np.sqrt(2) * sigma)) - erf((a - hi) / (np.sqrt(2) * sigma)))


@pytest.fixture(scope="module")
def two_iso(tmp_path_factory):
    from mcproton._io.rtplan import load_rtplan
    from mcproton.dicom import write_ct_series

    d = tmp_path_factory.mktemp("two_iso")
    xs, ys = (np.arange(-48.0, 48.0, 4.0) + 2.0,) * 2
    zs = np.arange(-200.0, 200.0, 4.0) + 2.0
    hu = np.full((zs.size, ys.size, xs.size), -1000.0)
    hu[np.ix_(np.abs(zs) <= 196, (ys >= BOX[0]) & (ys <= BOX[1]), (xs >= BOX[0]) & (xs <= BOX[1]))] = 0.0
    org = (xs[0], ys[0], zs[0])
    write_ct_series(hu, VS, org, d / "ct", study=StudyReference(frame_of_reference_uid=FOR))
    # a target in field 1's region only (a CSI's brain): the target rows are not what is tested
    _write_rs(d / "RS.dcm", None, lo=(-20.0, -20.0, 60.0), hi=(20.0, 16.0, 160.0), external_z=(-196.0, 196.0))
    layers = [(100.0, spot_grid(3, 8.0), [1.0] * 9)]
    plan = make_plan([{"gantry": 0.0, "couch": 0.0, "iso": (0.0, 0.0, 60.0), "layers": layers, "meterset": 20.0},
                      {"gantry": 0.0, "couch": 0.0, "iso": (0.0, 0.0, -50.0), "layers": layers, "meterset": 20.0}],
                     frame_of_reference_uid=FOR)
    save(plan, d / "RP.dcm")
    rp = load_rtplan(d / "RP.dcm")
    Z, Y, X = np.meshgrid(zs, ys, xs, indexing="ij")
    w1 = np.clip((Z + 20.0) / 40.0, 0.0, 1.0)   # the feathered junction, z -20..20 mm

    def fields(dz2: float = 0.0) -> dict[int, np.ndarray]:
        depth = _box(Y, -30.0, 20.0)
        f1 = w1 * _box(X, -36.0, 36.0) * _box(Z, -60.0, 190.0) * depth
        w2 = 1.0 - np.clip((Z - dz2 + 20.0) / 40.0, 0.0, 1.0)
        f2 = w2 * _box(X, -12.0, 12.0) * _box(Z - dz2, -150.0, 20.0) * depth
        return {1: 2.0 * f1, 2: 2.0 * f2}

    return {"dir": d, "rp": rp, "org": org, "fields": fields}


def _stand_in_mc(case):
    """An MCDose of the correct beam doses (no noise), with the plan's beam geometry."""
    from mcproton._check.compute import MCDose
    from mcproton._io.beam_model import load_beam_model
    from mcproton._io.rtplan import plan_to_beams

    model = load_beam_model("dcpt_v2")
    meta = {int(b.meta["beam_number"]): {**b.meta, "primaries": 500, "mean_rel_uncertainty_50": 0.01,
                                         "stop_reason": "primaries", "wall_s": 0.05}
            for b in plan_to_beams(case["rp"], model)}
    beams = case["fields"]()
    tot = beams[1] + beams[2]
    prov = {"kernel_hash": "0" * 16, "beam_model": "dcpt_v2 (test: analytic, no transport)",
            "beam_model_file": model.provenance(), "calibration": "schneider2000", "seed": 0, "dose_to": "water",
            "rbe": 1.0, "date": "2026-12-06"}
    return MCDose(tot, beams, np.zeros(tot.shape), 0.01, 1000, 0.1, "test (no transport)", "cpu", prov,
                  "computed on the TPS grid", meta, None)


def _check(case, name: str, tps: np.ndarray):
    from mcproton._check.api import check
    from mcproton.dicom import write_rtdose

    d = case["dir"]
    study = StudyReference(frame_of_reference_uid=FOR, plan_sop_instance_uid=case["rp"].sop_instance_uid)
    path = write_rtdose(tps, VS, case["org"], d / f"RD_{name}.dcm", study=study)
    return check(plan=d / "RP.dcm", dose=[path], ct=d / "ct", struct=d / "RS.dcm", mc=_stand_in_mc(case), **FAST)


def _rows(res, text: str) -> dict[str, bool]:
    return {c["quantity"]: c["passed"] for c in res.checks if text in c["quantity"]}


def test_a_correct_two_isocentre_plan_dose_passes_with_a_row_for_the_separate_field(two_iso):
    f = two_iso["fields"]()
    res = _check(two_iso, "correct", f[1] + f[2])
    assert res.passed, res.failed
    rows = _rows(res, "field region")
    # both fields have a region of their own here (the wide field 1 beyond the junction, the narrow field 2)
    assert rows == {"beam 1: gamma 2%/2mm pass rate in its field region of the plan dose": True,
                    "beam 2: gamma 2%/2mm pass rate in its field region of the plan dose": True}, rows
    assert res.field_regions[2]["judged"] and res.field_regions[2]["own_fraction"] > 0.5
    assert res.to_dict()["field_regions"]["2"]["gamma_2_2"]["pass_rate"] == 1.0
    assert "mask" not in res.to_dict()["field_regions"]["2"]
    # what a batch keeps of a patient has no region masks (full-grid arrays; check review 2026-12-06, finding 3)
    small = res.numbers_only()
    assert not any("mask" in r for r in small.field_regions.values()), small.field_regions
    assert small.field_regions[2]["gamma_2_2"] == res.field_regions[2]["gamma_2_2"]
    assert res.field_regions[2]["mask"].shape == res.tps_gy_zyx.shape   # the full result keeps them
    assert not any("seems to be missing" in n or "centroid" in n for n in res.diagnostics), res.diagnostics
    assert any(n.startswith("a plan of 2 isocentres checked without per-beam TPS doses") for n in res.diagnostics)


def test_one_field_moved_5mm_in_the_plan_dose_fails_naming_it(two_iso):
    f = two_iso["fields"]()
    res = _check(two_iso, "shifted", f[1] + two_iso["fields"](5.0)[2])
    plan_rows = [c for c in res.checks if "global pass rate" in c["quantity"]]
    assert plan_rows and all(c["passed"] for c in plan_rows), plan_rows   # diluted: the plan level passes
    assert not res.passed
    assert _rows(res, "field region")["beam 2: gamma 2%/2mm pass rate in its field region of the plan dose"] is False
    notes = [n for n in res.diagnostics if "field region of the plan dose (no per-beam TPS dose): the high-dose" in n]
    assert len(notes) == 1 and notes[0].startswith("beam 2's field region"), res.diagnostics
    c = res.field_regions[2]["centroid_mc_minus_tps_mm"]
    assert -6.0 < c[2] < -2.0 and abs(c[0]) < 0.5 and abs(c[1]) < 0.5, c   # the junction ramp: -2.9 mm


def test_a_missing_field_is_named_and_does_not_fail_the_other_fields_range(two_iso):
    f = two_iso["fields"]()
    res = _check(two_iso, "missing", f[1])
    assert not res.passed
    miss = [k for k, n in enumerate(res.diagnostics) if "beam 2 seems to be missing from the TPS dose" in n]
    assert miss, res.diagnostics
    assert not any("beam 1 seems to be missing" in n for n in res.diagnostics)
    cent = [k for k, n in enumerate(res.diagnostics) if "centroid" in n]
    assert not cent or miss[0] < min(cent), res.diagnostics
    # field 1's range rows on its own rays only: they pass; field 2's fail (its dose is not in the TPS's)
    r1 = _rows(res, "beam 1: ")
    assert any("R80" in q for q in r1) and all(ok for q, ok in r1.items() if "R80" in q), r1
    assert not all(ok for q, ok in _rows(res, "beam 2: ").items() if "R80" in q)
    assert res.ranges[1]["rays"] != res.ranges[2]["rays"] or res.ranges[1]["rays_tps"] != res.ranges[2]["rays_tps"]


def test_an_organ_at_risk_with_a_near_zero_tps_dose_is_given_in_gy_not_percent():
    """CSI audit 2026-12-06, F7: a missing spinal field gave "vertebrae_lumbar Dmean +3301359.6 % (0.000249 -> 8.26
    Gy)": a % of a TPS value near 0 is noise; below 2 % of the prescription the difference is given in Gy."""
    from mcproton._check.api import oar_notes

    def row(tps, mc):
        d = 100 * (mc - tps) / tps
        return {"kind": "oar", "metrics": {"Dmean": {"tps_gy": tps, "mc_gy": mc, "diff_pct": d,
                                                     "noise_matched_diff_pct": d, "noise_sd_pct": 0.0}}}

    notes = oar_notes({"lumbar": row(0.000249, 8.26), "cord": row(13.4, 21.1)}, 21.3)
    assert len(notes) == 1 and "lumbar Dmean +8.26 Gy (0.000249 -> 8.26 Gy; the TPS value below 2 %" in notes[0]
    assert "cord Dmean +57.5 % (13.4 -> 21.1 Gy)" in notes[0] and "3301" not in notes[0], notes


def test_a_lower_dose_field_on_its_own_isocentre_keeps_its_range_rows(two_iso):
    """Check review 2026-12-06, finding 1: field 2 at 40 % of field 1's dose (a nodal or elective field, a spinal
    segment of lower dose) reaches nowhere 50 % of the plan's maximum.  Its rays were those where the total reached
    50 % of its maximum *and* its own field 50 % of its own: 12 rays, "not evaluable", both rows gone (before CSI F2
    they were field 1's rays, 868, with field 1's median).  Now its own field's rays alone: both rows, on rays other
    than field 1's."""
    F = two_iso["fields"]()
    case = dict(two_iso, fields=lambda dz2=0.0: {1: F[1], 2: 0.4 * F[2]})
    res = _check(case, "lowdose", F[1] + 0.4 * F[2])
    assert res.passed, res.failed
    assert all(r["evaluable"] for r in res.ranges.values()), {b: r.get("note") for b, r in res.ranges.items()}
    r2 = _rows(res, "beam 2: ")
    assert sum("R80" in q for q in r2) == 2 and all(r2.values()), r2
    assert res.ranges[2]["rays"] >= 100 and res.ranges[2]["rays"] != res.ranges[1]["rays"], res.ranges[2]["rays"]
    assert "whatever the plan's total reaches" in res.ranges[2]["rays_through"]


def test_a_range_not_evaluable_on_a_field_says_the_rays_were_the_fields():
    """The "not evaluable" note of rays chosen by a beam's own field names that field, not the totals' 50 %."""
    from mcproton._check.compare import range_agreement

    axes = (np.arange(20) * 2.0, np.arange(20) * 2.0, np.arange(20) * 2.0)
    tot = np.zeros((20, 20, 20))
    tot[5:15, 2:12, 5:15] = 1.0
    own = np.zeros_like(tot)
    own[9, 2:12, 9] = 1.0   # one BEV pixel (a pencil of the field): too few rays
    r = range_agreement(axes, tot, tot, (0.0, 1.0, 0.0), (19.0, 19.0, 19.0), field=own, field_name="beam 2")
    assert not r["evaluable"]
    assert ("cross beam 2's own field (where the MC's dose of beam 2 reaches 50 % of its 99.9th-percentile dose)"
            in r["note"]), r["note"]
    r = range_agreement(axes, tot, tot, (0.0, 1.0, 0.0), (19.0, 19.0, 19.0), field=np.where(own > 0, 0.0, own))
    assert "the beam's own field" in r["note"], r["note"]
    r = range_agreement(axes, 0.0 * tot, tot, (0.0, 1.0, 0.0), (19.0, 19.0, 19.0))
    assert "of the TPS's or the MC's 99.9th-percentile dose" in r["note"], r["note"]


def test_field_region_rows_on_a_plan_of_one_isocentre_come_with_the_remark_that_explains_them():
    """Check review 2026-12-06, finding 6: the rows go by where a beam's dose is its own, not by the isocentres (APTG
    plan03: two fields from one isocentre on the target's anterior and posterior halves, 60 % of each one's
    high-dose voxels its own), but the remark spoke only for plans of >= 2 isocentres: the rows came unexplained."""
    from mcproton._check.api import field_region_notes

    meta = {1: {"isocenter_mm": (0.0, 0.0, 0.0)}, 2: {"isocenter_mm": (0.0, 0.0, 0.0)}}
    judged = {b: {"judged": True, "own_fraction": 0.6, "voxels": 95000} for b in (1, 2)}
    notes = field_region_notes(judged, meta)
    assert len(notes) == 1 and notes[0].startswith("a plan checked without per-beam TPS doses of beam(s) 1, 2"), notes
    assert "beam(s) 1, 2 are compared over their own field region" in notes[0]
    assert "at least 50 % of its own high-dose voxels: a field of its own, whatever the isocentres" in notes[0]
    # opposed or crossing fields on one target from one isocentre: no row, no remark (as before)
    why = "its field overlaps the other beams' (...)"
    assert field_region_notes({b: {"judged": False, "why": why} for b in (1, 2)}, meta) == []
