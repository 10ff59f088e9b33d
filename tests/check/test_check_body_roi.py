"""The body ROI and the targets of ``mcproton check`` as clinics' structure sets hold them (struct audit 14): one
rule chooses the body ROI (several EXTERNAL ROIs: the one named as the body, with a warning), a reused MC dose is
not changed by a check (F2), a target partly outside the body outline is judged on its part inside (F3), and the
type decides what is a target before the name (F4).

No transport: the MC dose is the analytic one of tests/check/test_report.py (``_fake_mc``) on test_check's ``base``
case (water box 32 x 32 x 40 mm, box PTV 32 x 32 x 24 mm, External = the box); each check takes a few seconds.
"""
from __future__ import annotations

import copy
import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_check import BOX, _tps, base  # noqa: E402,F401  (base: test_check's module fixture)
from test_report import _fake_mc  # noqa: E402

FAST = {"gamma_points": 200, "progress": False, "backend": "cpu", "report": False}


def _rs_with(base, name: str, rois, external_hi_x: float | None = None, first: bool = False) -> Path:  # noqa: F811
    """test_check's RS.dcm with ROIs added (``rois``: [(name, type, (x0, y0, z0), (x1, y1, z1)), ...]; ``first``:
    before the others in the file) and, with ``external_hi_x``, the External clipped at that x (mm)."""
    import pydicom

    ds = pydicom.dcmread(base["dir"] / "RS.dcm")
    if external_hi_x is not None:
        for rc in ds.ROIContourSequence:
            if rc.ReferencedROINumber == len(ds.StructureSetROISequence):   # the External: last
                for c in rc.ContourSequence:
                    p = np.reshape(np.asarray(c.ContourData, float), (-1, 3))
                    p[:, 0] = np.minimum(p[:, 0], external_hi_x)
                    c.ContourData = [float(v) for v in p.ravel()]
    template = ds.ROIContourSequence[0]
    for k, (nm, typ, a, b) in enumerate(rois):
        num = 100 + k
        r = copy.deepcopy(ds.StructureSetROISequence[0])
        r.ROINumber, r.ROIName = num, nm
        o = copy.deepcopy(ds.RTROIObservationsSequence[0])
        o.ObservationNumber, o.ReferencedROINumber, o.RTROIInterpretedType = num, num, typ
        rc = copy.deepcopy(template)
        rc.ReferencedROINumber = num
        cs = []
        for z in np.arange(a[2] + 1.0, b[2], 2.0):
            c = copy.deepcopy(template.ContourSequence[0])
            pts = [(a[0], a[1]), (b[0], a[1]), (b[0], b[1]), (a[0], b[1])]
            c.ContourData = [float(v) for x, y in pts for v in (x, y, z)]
            cs.append(c)
        rc.ContourSequence = pydicom.sequence.Sequence(cs)
        for seq, item in ((ds.StructureSetROISequence, r), (ds.RTROIObservationsSequence, o),
                          (ds.ROIContourSequence, rc)):
            if first:
                seq.insert(0, item)
            else:
                seq.append(item)
    path = base["dir"] / f"RS_{name}.dcm"
    ds.save_as(path)
    return path


def _check(base, struct, mc, **kw):  # noqa: F811
    from mcproton._check.api import check

    d = base["dir"]
    rd = _tps(base, "bodyroi_plan", base["blob"])
    return check(plan=d / "RP.dcm", dose=[rd], ct=d / "ct", struct=struct, beam_model="dcpt_v2", mc=mc,
                 **{**FAST, **kw})


def test_a_reused_mc_dose_is_not_changed_by_a_check_with_another_body(base):  # noqa: F811
    """F2: check(mc=...) zeroed the caller's MCDose outside its body outline, so re-checking the first inputs with
    the same MC after a check with a smaller External compared a truncated MC dose (CTV Dmean -21 % in the
    audit).  Now the MC dose (and the result's .mc) stay as computed and the repeated check gives the same
    figures."""
    mc = _fake_mc(base, 1.0)
    before = (mc.total_gy_zyx.copy(), {b: d.copy() for b, d in mc.beams_gy_zyx.items()})
    first = _check(base, base["dir"] / "RS.dcm", mc)
    clipped = _rs_with(base, "clipped", [], external_hi_x=8.0)
    _check(base, clipped, mc)
    np.testing.assert_array_equal(mc.total_gy_zyx, before[0])
    for b, d in before[1].items():
        np.testing.assert_array_equal(mc.beams_gy_zyx[b], d)
    again = _check(base, base["dir"] / "RS.dcm", mc)
    for met in ("Dmean", "D95", "D98"):
        assert again.structures["PTV"]["metrics"][met]["mc_gy"] == first.structures["PTV"]["metrics"][met]["mc_gy"]
    assert [c["value"] for c in again.checks] == [c["value"] for c in first.checks]


def test_a_target_partly_outside_the_body_is_judged_on_its_part_inside(base):  # noqa: F811
    """F3: the External clipped at x = 8 mm leaves 25 % of the PTV (x -16..16 mm) outside it, where both doses are
    set to 0: its D95 and D98 were 0.000 Gy on both sides and the D95 level failed "n/a" with no reason.  Now they
    are of the PTV's part inside the body (PTV & body, a PTV_eval), said in a note with the share outside, and in
    the JSON row."""
    res = _check(base, _rs_with(base, "clipped", [], external_hi_x=8.0), _fake_mc(base, 1.0))
    row = res.structures["PTV"]
    assert row["outside_body_fraction"] == pytest.approx(0.25, abs=0.03)
    assert row["evaluated_on"] == "its part inside the body outline"
    d95 = row["metrics"]["D95"]
    assert d95["tps_gy"] > 0.5 and np.isfinite(d95["diff_pct"]) and abs(d95["diff_pct"]) < 0.1   # the RT Dose's 16 bits
    assert next(c for c in res.checks if c["quantity"] == "PTV D95 difference")["passed"]
    assert any("target 'PTV': 2" in n and "outside the body outline" in n and "PTV_eval" in n
               for n in res.diagnostics), res.diagnostics


def test_the_body_roi_among_two_externals_is_the_one_named_as_the_body(base):  # noqa: F811
    """F1: with an old External ("Skin_old", EXTERNAL, x <= 8 mm) listed before "External", the check took the first
    in the file (and said nothing) while `mcproton run` took the one named as the body; now both take "External",
    with a warning naming the two."""
    rs = _rs_with(base, "two_ext", [("Skin_old", "EXTERNAL", (BOX[0], BOX[0], -20.0), (8.0, BOX[1], 20.0))],
                  first=True)
    res = _check(base, rs, _fake_mc(base, 1.0))
    assert res.provenance["body_outline"] == "External ROI 'External'"
    assert any("2 EXTERNAL ROIs" in w and "'External' is used" in w for w in res.warnings), res.warnings
    assert "outside_body_fraction" not in res.structures["PTV"]


def test_targets_by_type_first_and_the_report_says_which_came_from_the_name(base, report_figures_blank):  # noqa: F811
    """F4: "PTV_flash" typed CONTROL (a helper reaching beyond the skin) got target levels by its name and failed the
    check; "PTV_eval" typed ORGAN is a target by its name, and the JSON and a note say so.  The report's text only:
    its figures blank (tests/conftest.py)."""
    rs = _rs_with(base, "helpers", [("PTV_flash", "CONTROL", (-30.0, -16.0, -12.0), (16.0, 16.0, 12.0)),
                                    ("PTV_eval", "ORGAN", (-12.0, -12.0, -8.0), (12.0, 12.0, 8.0))])
    res = _check(base, rs, _fake_mc(base, 1.0))
    assert "PTV_flash" not in res.structures
    assert not any(c["quantity"].startswith("PTV_flash") for c in res.checks)
    assert res.structures["PTV_eval"]["kind"] == "target"
    assert res.structures["PTV_eval"]["kind_basis"] == "by its name; typed ORGAN"
    assert res.structures["PTV"]["kind_basis"] == "by its type"
    assert any("'PTV_eval' is judged as a target by its name; typed ORGAN" in n for n in res.diagnostics)
    # and the report's structure table says it beside the kind
    html = (_check(base, rs, _fake_mc(base, 1.0), out=base["dir"] / "report_f4", report=True)
            .report_json.replace("check.json", "check.html"))
    text = Path(html).read_text()
    assert "target (by its name; typed ORGAN)" in text and "target (by its type)" not in text


def _external_with_slices_left_out(base) -> Path:  # noqa: F811
    """test_check's RS.dcm with the External's contours at z 3-9 mm left out: its mask on the 4 mm CT (and TPS) grid
    has no voxel on the slices z = 6 and 10 mm, between its first and last."""
    import pydicom

    ds = pydicom.dcmread(base["dir"] / "RS.dcm")
    rc = ds.ROIContourSequence[-1]   # the External: last
    rc.ContourSequence = pydicom.sequence.Sequence([c for c in rc.ContourSequence
                                                    if not 2.0 < float(c.ContourData[2]) < 10.0])
    path = base["dir"] / "RS_external_gaps.dcm"
    ds.save_as(path)
    return path


def test_an_external_with_slices_left_out_is_warned_of_and_air_says_what_becomes_air(base, monkeypatch):  # noqa: F811
    """Check review 2026-12-06, R7: since each contour plane stands for its own CT slice (fix/rtstructz), an External
    with slices left out leaves those slices outside the body; `mcproton run` warns of it, the check did not, and
    with --outside-external air those slices of the patient became air in the MC with no word.  Now the check gives
    the run's warning (mcproton.body.warn_body_slices_missing) with what it does there: not compared (its body
    outline) and, with --outside-external air, air in the MC (said once, with the CT's slices)."""
    from mcproton._check import api

    gaps = _external_with_slices_left_out(base)
    said = r"the body ROI 'External' of the RT Structure Set .* has no contour on 2 of the grid's slices .*z = 6, 10 mm"
    # the body outline (a reused MC dose; the same with --outside-external ct): not compared there
    res = _check(base, gaps, _fake_mc(base, 1.0))
    (w,) = [w for w in res.warnings if "has no contour on" in w]
    assert re.search(said, w) and "both doses are set to 0 there and not compared" in w, w
    assert "contour the body on every CT slice" in w and "plan.outside_external" not in w, w
    # the External on every slice: nothing said
    res = _check(base, base["dir"] / "RS.dcm", _fake_mc(base, 1.0))
    assert not [w for w in res.warnings if "has no contour on" in w], res.warnings
    # --outside-external air: those slices of the CT become air in the MC, said in the warning (once) and the note
    seen = {}

    def fake_run_mc(inp, geometry, *a, **k):   # the MC's geometry kept; the analytic MC dose
        seen["density"] = geometry.density_g_cm3_zyx.copy()
        return _fake_mc(base, 1.0)

    monkeypatch.setattr(api, "run_mc", fake_run_mc)
    res = _check(base, gaps, None, outside_external="air")
    (w,) = [w for w in res.warnings if "has no contour on" in w]
    assert re.search(said, w), w
    assert "--outside-external air makes the patient's material on those slices of the CT air in the MC" in w, w
    assert "or give --outside-external ct" in w, w
    (note,) = [n for n in res.provenance["geometry_notes"] if "--outside-external air" in n]
    assert "among them 2 CT slice(s) between its first and last contour with no contour of it: air across" in note, \
        note
    rho = seen["density"][:, seen["density"].shape[1] // 2, seen["density"].shape[2] // 2]   # the box's axis
    assert rho[8] < 0.01 and rho[9] < 0.01 and rho[7] > 0.9 and rho[10] > 0.9, rho   # z = 6, 10 mm: air
