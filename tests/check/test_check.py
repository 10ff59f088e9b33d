"""``mcproton check`` on a small synthetic case: a water box (CT with air around it), a two-beam 90 MeV plan
(gantry 0 and 90), a box target in an RT Struct.  The 'TPS dose' is an mcproton dose of the same plan with
another seed, written as RT Dose (plan dose + per-beam doses).  The correct dose passes;
a dose shifted by 3 mm, scaled by 5 %, without one beam, or with a 3 % range error in one beam fails, naming
the failing quantity.  Bad inputs get a clear message.

Two module fixtures, each computing its MC once and reused through ``check(mc=...)`` (the comparisons are what
the tests test):
- ``clinical``: the verdicts.  The 'TPS' an mcproton run at ~1 % (550 000 primaries/beam), the check's MC stopped at
  the default 1 % target, every action level the default.  The correct doses and the deliberate errors (shift 3 mm,
  scale 5 %, a beam missing, a 3 % range error in one beam, one beam of a per-beam plan x 1.05) are judged here, on
  the rows that fail at that noise.  Each test's assertions were re-run on 31 seed pairs (the fixture's 777/1, and
  'TPS' seed 10000+k with check seed k, k = 1..30; one core): every one held in 31/31, so a spurious failure of
  any of them has a 95 % upper bound of 11 % (Clopper-Pearson); the correct doses' verdict FAILed in 0/31 and no
  error's verdict PASSed (0/31 each).  Each test's docstring gives its measured ranges.
  Cost: two ~1 % MCs of 8-15 s each on one core (~17 s for the fixture on an idle core, 27 s beside another
  job); each check after it ~0.3 s, plus its report where written.
- ``case``: the fast MC (~6.5 % noise, relaxed levels) for everything that is not a verdict at clinical noise
  (report contents, pairing, refusals, notes).  Its two MCs take ~15 s; its verdict on the correct doses is not
  asserted.

The tests that read the report's text, check.json or RD_mc.dcm and not its figures write it with blank figures
(fixture ``report_figures_blank``, tests/conftest.py: drawing them is about half of a check's time); those that look
at figures, or at the report of doses stored in other orientations, draw them.
"""
from __future__ import annotations

import html
import json
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
from dicom_factories import make_plan, save, spot_grid

from mcproton.dicom import StudyReference

FOR = "1.2.826.0.1.3680043.8.498.4242"
DATA = Path(__file__).resolve().parents[1] / "data" / "dicom"
BOX = (-40.0, 40.0)       # water box x, y (mm); z -20..20
# the fast test MC (fixture `case`) has ~6.5 % noise per voxel (a clinical check stops at 1 %: fixture `clinical`,
# default levels, judges the deliberate errors): the MC-uncertainty level, the
# fraction of rays within 2 mm and the target D95 are relaxed accordingly; every other level is the default.  The
# D95 verdict judges the raw, noise-matched and MC-corrected differences (compare.d95_verdict), and at this noise
# the MC-side correction (linear in sigma) is far off (+23 % for this correct dose; its 'TPS' is an MC at ~3.7 %
# too): D95 is not tested by this fixture (tests/check/test_check_noise.py tests it at 1 % noise)
LEVELS = {"mc_uncertainty_max_pct": 9.0, "range_within_2mm_min": 50.0, "target_d95_pct": 40.0}
FAST = {"gamma_points": 600, "progress": False, "backend": "cpu"}


def _write_rs(path: Path, plan_ds, lo=(-16.0, -16.0, -12.0), hi=(16.0, 16.0, 12.0), targets=None,
              organs=(), external_z=(-20.0, 20.0)) -> None:
    """An RT Struct with a box PTV and the External (the water box, ``external_z`` its extent in z); ``targets``:
    [(name, lo, hi), ...] instead of the PTV (ROI numbers 1, 2, ... in this order, the External last); ``organs``:
    [(name, lo, hi), ...] boxes of type ORGAN after the targets."""
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    uid = generate_uid()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    meta.MediaStorageSOPInstanceUID = uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = "1.2.840.10008.5.1.4.1.1.481.3", uid, "RTSTRUCT"
    ds.FrameOfReferenceUID = FOR
    rois, contours, obs = [], [], []
    boxes = [(n, "PTV", a, b) for n, a, b in (targets or [("PTV", lo, hi)])]
    boxes += [(n, "ORGAN", a, b) for n, a, b in organs]
    for num, (name, typ, a, b) in enumerate((*boxes, ("External", "EXTERNAL", (BOX[0], BOX[0], external_z[0]),
                                                       (BOX[1], BOX[1], external_z[1]))), start=1):
        r = Dataset()
        r.ROINumber, r.ROIName, r.ReferencedFrameOfReferenceUID = num, name, FOR
        rois.append(r)
        o = Dataset()
        o.ObservationNumber, o.ReferencedROINumber, o.RTROIInterpretedType = num, num, typ
        obs.append(o)
        cs = []
        for z in np.arange(a[2] + 1.0, b[2], 2.0):
            c = Dataset()
            c.ContourGeometricType = "CLOSED_PLANAR"
            pts = [(a[0], a[1]), (b[0], a[1]), (b[0], b[1]), (a[0], b[1])]
            c.NumberOfContourPoints = 4
            c.ContourData = [float(v) for x, y in pts for v in (x, y, z)]
            cs.append(c)
        rc = Dataset()
        rc.ReferencedROINumber = num
        rc.ContourSequence = Sequence(cs)
        contours.append(rc)
    ds.StructureSetROISequence = Sequence(rois)
    ds.ROIContourSequence = Sequence(contours)
    ds.RTROIObservationsSequence = Sequence(obs)
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """CT, plan and RS (no transport)."""
    from mcproton._io.rtplan import load_rtplan
    from mcproton.dicom import write_ct_series

    d = tmp_path_factory.mktemp("check")
    vs = (4.0, 2.0, 4.0)                                # 2 mm along beam 1 (+y), whose range error is tested
    xs = np.arange(-56.0, 56.0, vs[0]) + vs[0] / 2      # air 16 mm around the box in x, y
    ys = np.arange(-56.0, 56.0, vs[1]) + vs[1] / 2
    zs = np.arange(-28.0, 28.0, vs[2]) + vs[2] / 2
    X, Y = np.meshgrid(xs, ys, indexing="xy")
    inside = (X >= BOX[0]) & (X <= BOX[1]) & (Y >= BOX[0]) & (Y <= BOX[1])
    hu = np.full((zs.size, ys.size, xs.size), -1000.0)
    hu[(np.abs(zs) <= 20)[:, None, None] & inside[None]] = 0.0
    write_ct_series(hu, vs, (xs[0], ys[0], zs[0]), d / "ct", study=StudyReference(frame_of_reference_uid=FOR))
    spots = spot_grid(3, 8.0)
    layers = [(90.0, spots, [1.0] * 9), (80.0, spots, [0.6] * 9)]
    plan = make_plan([{"gantry": 0.0, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "layers": layers, "meterset": 20.0},
                      {"gantry": 90.0, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "layers": layers, "meterset": 20.0}],
                     frame_of_reference_uid=FOR)
    save(plan, d / "RP.dcm")
    _write_rs(d / "RS.dcm", plan)
    # an analytic stand-in dose for the bad-input tests (refused before any transport): a blob in the box
    Z3, Y3, X3 = np.meshgrid(zs, ys, xs, indexing="ij")
    blob = 2.0 * np.exp(-(X3 ** 2 + Y3 ** 2 + Z3 ** 2) / (2 * 20.0 ** 2)) * (hu > -500)
    rp = load_rtplan(d / "RP.dcm")
    return {"dir": d, "grid": (vs, (xs[0], ys[0], zs[0])), "shape": hu.shape, "plan_uid": rp.sop_instance_uid,
            "blob": blob, "rp": rp}


def _tps_run(base, primaries: int, folder: Path):
    """An independent mcproton run of the plan (seed 777), the 'TPS': its doses written as RT Dose (plan + per
    beam) into ``folder``.  Returns (the MC result, {beam: path, "plan": path}, the TPS grid)."""
    from mcproton._check.compute import build_geometry, run_mc
    from mcproton._check.inputs import CheckInputs, TPSDose
    from mcproton.dicom import write_rtdose

    d, rp = base["dir"], base["rp"]
    vs, org = base["grid"]
    grid = TPSDose("", np.zeros(base["shape"]), vs, org, FOR, "PHYSICAL", "PLAN", rp.sop_instance_uid)
    inp = CheckInputs(str(d / "RP.dcm"), rp, grid, {}, str(d / "ct"), None, FOR, "PHYSICAL", 1, True)
    geo, _, _ = build_geometry(d / "ct", "schneider2000", grid)
    hi = run_mc(inp, geo, "dcpt_v2", primaries=primaries, target_uncertainty=None, seed=777, backend="cpu",
                progress=False, log=lambda m: None)
    folder.mkdir(exist_ok=True)
    study = StudyReference(frame_of_reference_uid=FOR, plan_sop_instance_uid=rp.sop_instance_uid)
    files: dict = {b: write_rtdose(dose, vs, org, folder / f"RD_beam{b}.dcm", study=study, summation_type="BEAM",
                                   referenced_beam_number=b) for b, dose in hi.beams_gy_zyx.items()}
    files["plan"] = write_rtdose(hi.total_gy_zyx, vs, org, folder / "RD_plan.dcm", study=study)
    return hi, files, grid


def _check_correct(base, files, **kw):
    from mcproton._check.api import check

    d = base["dir"]
    return check(plan=d / "RP.dcm", dose=[files["plan"], files[1], files[2]], ct=d / "ct", struct=d / "RS.dcm",
                 beam_model="dcpt_v2", seed=1, **kw, **FAST)


@pytest.fixture(scope="module")
def case(base):
    """The 'TPS' doses (plan + per beam) of an independent mcproton run with 3x the primaries, and the check
    of the correct doses end to end (its MC is reused by the other tests)."""
    hi, files, grid = _tps_run(base, 36000, base["dir"])
    res = _check_correct(base, files, out=base["dir"] / "out", primaries=12000, target_uncertainty=None,
                         levels=_levels())
    return {**base, "files": files, "hi": hi, "res": res, "axes": grid.axes_mm()}


@pytest.fixture(scope="module")
def clinical(base):
    """The deliberate-error fixture at clinical noise (statistics audit 2026-12-06, F2: at the fast MC's 6.5 % the
    error tests asserted properties of that noise, e.g. a 5 % scale failing gamma 2%/2mm, which at 1 % passes it,
    and the correct case failed 1 re-seed in 8).  The 'TPS' doses: an mcproton run at 550 000 primaries/beam (u50
    ~1.0 %, seed 777); the check's MC stopped by the default 1 % target (--primaries 2 000 000: 10 batches of
    20 000 at least, so the 1 % rule decides, as on a clinical plan; u50 ~1.0 %, seed 1); the default ActionLevels,
    none relaxed (the D95 level too: the MC-corrected D95 fails only beyond level + 2 SE since the stats audit's F1
    fix).  Measured on one core: 8-15 s per MC."""
    from mcproton._check.levels import ActionLevels

    tps_dir = base["dir"] / "clinical"
    hi, files, grid = _tps_run(base, 550_000, tps_dir)
    res = _check_correct(base, files, out=None, primaries=2_000_000, target_uncertainty=0.01, levels=ActionLevels())
    return {**base, "files": files, "hi": hi, "res": res, "axes": grid.axes_mm(), "tps_dir": tps_dir,
            "levels": ActionLevels()}


def _levels():
    from mcproton._check.levels import ActionLevels

    return ActionLevels(**LEVELS)


def _tps(case, name: str, dose: np.ndarray, **kw) -> Path:
    from mcproton.dicom import write_rtdose

    vs, org = case["grid"]
    study = StudyReference(frame_of_reference_uid=kw.pop("frame_of_reference_uid", FOR),
                           plan_sop_instance_uid=case["plan_uid"])
    return write_rtdose(dose, vs, org, case.get("tps_dir", case["dir"]) / f"{name}.dcm", study=study, **kw)


def _recheck(case, doses, _only_inputs=False, **kw):
    """The check of other TPS doses with the MC of the correct case (``_only_inputs``: up to the MC only)."""
    from mcproton._check.api import check
    from mcproton._check.inputs import CheckInputError

    d = case["dir"]
    mc = case["res"].mc if "res" in case else None
    if mc is None:
        # no MC in this fixture: the inputs must be refused (or, with _only_inputs, pass) before any transport
        with pytest.raises(CheckInputError, match="no beam model") if _only_inputs else _nothing():
            return check(plan=d / "RP.dcm", dose=doses, ct=d / "ct", struct=d / "RS.dcm", beam_model=None,
                         levels=_levels(), **{**FAST, **kw})
        return None
    return check(plan=d / "RP.dcm", dose=doses, ct=d / "ct", struct=d / "RS.dcm", beam_model="dcpt_v2",
                 mc=mc, levels=case.get("levels") or _levels(), **{**FAST, **kw})


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _failed(res) -> str:
    print(res.summary())   # shown with pytest -rP
    return " | ".join(c["quantity"] for c in res.failed)


def test_correct_dose_passes_every_default_level_at_clinical_noise(clinical):
    """The correct doses (plan + per beam, 'TPS' and MC both at ~1 %) pass every default action level, no row near its
    limit at the fixture's seeds (gamma 2%/2mm 100 %, PTV Dmean -0.07 %, D95 -0.6 %, median dR80 +0.01 mm, beam MC/TPS
    -0.04 / -0.22 %). Re-seeded (31 seed pairs, see the module docstring): the verdict PASS in 31/31 (false FAIL 0/31,
    95 % bound 11 %), every assertion held; over them gamma 2%/2mm >= 99.8 %, Dmean -0.17..+0.10 %, beam MC/TPS
    -0.43..+0.51 %, |median dR80| <= 0.02 mm, and the D95 row, the nearest its limit, -2.80..+2.69 % (3 %; the
    MC-corrected value fails only beyond 3 % + 2 SE, compare.d95_limits)."""
    res = clinical["res"]
    print(res.summary())
    assert res.passed, res.summary()
    # stopped by the 1 % rule (its estimate from the batches: the final u50 reads 0.99-1.001 % over the re-seeds)
    assert 0.009 < res.mc.mean_rel_uncertainty_50 < 0.0105
    # no level relaxed: the target D95 3 %, the rays 90 %, the MC uncertainty 2 % (the fast fixture's 40, 50, 9)
    levels = {k: v["value"] for k, v in res.levels.items()}
    assert (levels["target_d95_pct"], levels["range_within_2mm_min"], levels["mc_uncertainty_max_pct"]) == (3, 90, 2)
    assert not any("uniform range difference" in n for n in res.diagnostics), res.diagnostics
    assert res.gamma["2%/2mm"]["pass_rate"] >= 0.99 and abs(res.structures["PTV"]["metrics"]["Dmean"]["diff_pct"]) < 1
    assert all(abs(r["median_mm"]) < 0.3 for r in res.ranges.values()) and set(res.ranges) == {1, 2}
    assert set(res.beam_dose) == {1, 2} and all(abs(r["diff_pct"]) < 1 for r in res.beam_dose.values())


def test_the_correct_doses_check_writes_the_report(case):
    """The fast fixture's check of the correct doses: what the report holds (its verdict at clinical noise:
    test_correct_dose_passes_every_default_level_at_clinical_noise)."""
    res = case["res"]
    print(res.summary())
    # every dose compared is mcproton's: the dose in the air is not "the planning system's (MCsquare ...)"
    # (statistics audit 2026-12-06, F3)
    air = [n for n in res.diagnostics if "lies outside the body outline" in n]
    assert len(air) == 1 and "the compared dose (written by mcproton) scores dose in the air" in air[0], air
    assert "planning system" not in air[0] and "MCsquare" not in air[0], air
    html = Path(res.report_html).read_text()
    assert html.startswith("<!DOCTYPE html>") and html.count("data:image/png;base64,") >= 4
    import json

    js = json.loads(Path(res.report_json).read_text())
    assert js["passed"] is res.passed and js["provenance"]["kernel_hash"] and "transport_s" in js["timings_s"]
    # the gamma rows say their points, the random subset's standard error and the dose the criteria are in % of,
    # the TPS's near-maximum in the body, as the dose difference (gamma audit 28, F1 and F4)
    from mcproton._check.compare import normalisation_dose

    norm = normalisation_dose(res.tps_gy_zyx, res.body_zyx)
    g = js["gamma"]["2%/2mm"]
    assert g["normalisation_gy"] == pytest.approx(norm) == js["dose_difference"]["normalisation_gy"]
    assert g["subset"] == FAST["gamma_points"] and 0 <= g["pass_rate_se"] < 0.05
    plateau_of = {g["normalisation_gy"]: g["normalisation_plateau"]
                  for g in [*js["gamma"].values(), *js["beam_gamma"].values()] if "normalisation_gy" in g}
    assert True in plateau_of.values() and False in plateau_of.values(), plateau_of
    for row in (c for c in js["checks"] if "gamma" in c["quantity"]):
        text = row["value_text"]
        assert f"{FAST['gamma_points']} random points of " in text and "standard error" in text, row
        assert "near-maximum in the body" in row["value_text"] and row["normalisation_gy"] > 0, row
        # which normalisation (review a of audit 31, R2): one of this fixture's noisy 4 x 2 x 4 mm per-beam TPS doses
        # has its near-maximum replaced by its 3 x 3 x 3 medians' (compare._plateau_near_max), and its row said
        # "(its 8th-largest voxel)" all the same
        plateau = plateau_of[row["normalisation_gy"]]
        assert ("(its 8th-largest voxel)" in text) is not plateau and ("3 x 3 x 3 medians" in text) is plateau, row
    assert '<th scope="col">standard error (%)</th>' in html and "near-maximum in the body" in html
    assert "robust max" not in html   # one name per statistic (audit 30, lefts F2)
    import pydicom

    uid = pydicom.dcmread(sorted(Path(res.inputs.ct_dir).glob("*.dcm"))[0], stop_before_pixels=True).SeriesInstanceUID
    ct_row = js["provenance"]["ct"]   # which CT the MC ran on: folder, series, grid (a signed report names it)
    assert ct_row.startswith(str(res.inputs.ct_dir)) and f"series {uid}" in ct_row and " slices of " in ct_row
    from html import escape

    assert f"<td>CT</td><td>{escape(ct_row)}" in html and js["provenance"]["structure_set"] == res.inputs.struct_path
    # which beam model file: name, resolved path, SHA-256 (before: the name alone; two versions of a file differ)
    import hashlib

    from mcproton._io.beam_model import BUILTIN

    bm = js["provenance"]["beam_model_file"]
    assert js["provenance"]["beam_model"] == "dcpt_v2" and bm["path"] == str(BUILTIN["dcpt_v2"])
    assert bm["sha256"] == hashlib.sha256(BUILTIN["dcpt_v2"].read_bytes()).hexdigest() and bm["table_sha256"]
    assert f"{escape(bm['path'])} (SHA-256 {bm['sha256']})" in html
    # the compared dose's own uncertainty on the TPS grid beside the MC grid's (statistics audit F3): interpolated
    # onto the TPS grid, it is lower (an average of up to 8 MC voxels); on coinciding grids the same
    u, u_tps = js["provenance"]["statistical_uncertainty_pct"], js["provenance"]["statistical_uncertainty_tps_grid_pct"]
    print("uncertainty MC grid", u, "TPS grid", u_tps, js["provenance"]["grid"])
    assert 0 < u_tps <= u * 1.001 and (u_tps < 0.9 * u) == ("interpolated" in js["provenance"]["grid"])


def test_the_target_d95_level_is_judged_raw_and_noise_matched(case):
    """The fast MC's ~6.5 % noise moves the raw D95 by several % (compare.structure_stats).  The D95 row is
    compare.d95_verdict's: the raw, the noise-matched and the MC-corrected differences all within the level (each
    alone hid a real error somewhere: tests/check/test_check_noise.py), the row giving all three, the two noise
    shifts and the modelled spread; a level that the largest of them exceeds fails.  The Dmean level is on the raw
    difference.  The JSON says what each "%" is of."""
    from mcproton._check.compare import d95_limits, d95_verdict

    res = case["res"]
    d95 = res.structures["PTV"]["metrics"]["D95"]
    row = next(c for c in res.checks if c["quantity"] == "PTV D95 difference")
    ok, value, vals = d95_verdict(d95, LEVELS["target_d95_pct"])
    assert (row["passed"], row["value"]) == (ok, value) and set(vals) == {"raw", "noise-matched", "MC-corrected"}
    assert row["value_text"].startswith(", ".join(f"{k} {x:+.2f} %" for k, x in vals.items()))
    assert "all must be within" in row["value_text"]
    assert row["limit_text"].startswith(f"|.| <= {LEVELS['target_d95_pct']:g}")
    assert "% of the TPS D95" in row["limit_text"]
    # the noise alone: the raw D95 reads low (-0.93 % from the 64 draws of a target, compare.TARGET_NOISE_REALISATIONS)
    assert d95["noise_shift_pct"] < -0.5 and d95["noise_sd_pct"] > 0
    from mcproton._check.api import check
    from mcproton._check.levels import ActionLevels

    d, f = case["dir"], case["files"]
    # each estimate's own limit: the MC-corrected one's the level + 2 standard errors (compare.d95_limits)
    lims = d95_limits(d95, LEVELS["target_d95_pct"])
    just_below = max(abs(v) - (lims[k] - LEVELS["target_d95_pct"]) for k, v in vals.items()) - 0.01
    res2 = check(plan=d / "RP.dcm", dose=[f["plan"], f[1], f[2]], ct=d / "ct", struct=d / "RS.dcm",
                 beam_model="dcpt_v2", mc=res.mc, levels=ActionLevels(**{**LEVELS, "target_d95_pct": just_below}),
                 seed=1, **FAST)   # the fixture's seed: the same noise realisations
    row2 = next(c for c in res2.checks if c["quantity"] == "PTV D95 difference")
    assert not row2["passed"] and "PTV D95 difference" in _failed(res2)
    dm = next(c for c in res.checks if c["quantity"] == "PTV Dmean difference")
    assert dm["value"] == res.structures["PTV"]["metrics"]["Dmean"]["diff_pct"]
    assert "TPS value" in res.settings["percent_of"]["structures"]
    assert "near-maximum in the body" in res.settings["percent_of"]["dose_difference"]
    assert "8th-largest body voxel" in res.settings["percent_of"]["dose_difference"]
    # the ranges too: per-beam uncertainty kept on the TPS grid, the median judged noise-matched, the rays level of
    # the share the MC's noise alone leaves within 2 mm (audit report_numbers F2)
    assert set(res.mc.beams_uncertainty_rel_zyx) == {1, 2}
    r = res.ranges[1]
    med = next(c for c in res.checks if c["quantity"].startswith("beam 1: median distal R80"))
    assert med["value"] == r["noise_matched_median_mm"] == r["median_mm"] - r["noise_median_mm"]
    rays = next(c for c in res.checks if c["quantity"] == "beam 1: rays with |R80 difference| <= 2 mm")
    assert rays["limit"] == pytest.approx(LEVELS["range_within_2mm_min"] * r["noise_within_2mm"])
    assert "noise alone" in rays["limit_text"]


def test_a_hot_tps_voxel_is_warned_of_and_does_not_normalise_the_gammas(case):
    """Gamma audit 28, F1: one voxel of the TPS plan dose at 5.7 x its plateau (a low-density voxel of a noisy planning
    MC) was the gammas' and the dose difference's normalisation.  Now they are in % of the near-maximum, which the
    voxel does not move, and the check warns of the voxel: by how much, where, the file."""
    from mcproton._check.compare import normalisation_dose

    plan = case["res"].inputs.total.dose_gy_zyx.copy()
    body = case["res"].body_zyx
    norm = normalisation_dose(plan, body)
    k = tuple(int(i) for i in np.argwhere(body & (plan > 0) & (plan < 0.3 * norm))[0])
    plan[k] = 5.7 * norm
    res = _recheck(case, [_tps(case, "RD_hot", plan)])
    hot = [w for w in res.warnings if "near-maximum" in w]
    assert len(hot) == 1 and hot[0].startswith("the TPS plan dose RD_hot.dcm: its maximum in the body, "), res.warnings
    ratio = float(hot[0].split(" x its near-maximum (8th-largest body voxel)")[0].rsplit(" ", 1)[1])
    assert ratio == pytest.approx(5.7, abs=0.05) and "(1 voxel above 1.2 x it)" in hot[0], hot[0]
    z, y, x = (float(a[i]) for a, i in zip(res.axes_zyx, k))
    assert f"at (x, y, z) = ({x:.1f}, {y:.1f}, {z:.1f}) mm" in hot[0], hot[0]
    for g in res.gamma.values():
        assert g["normalisation_gy"] == pytest.approx(norm, rel=0.01), g["normalisation_gy"]
    assert res.dose_difference["normalisation_gy"] == pytest.approx(norm, rel=0.01)


@pytest.mark.parametrize("factor", [1.35, 1.26])
def test_a_hot_region_above_the_target_dose_does_not_pass(case, factor):
    """Audit 31, norm F2: a hot region of the TPS dose too large for the plateau rule (5 x 5 x 5 voxels at 1.35 x the
    near-maximum, in the body outside the PTV: an air-cavity edge, a metal implant; compare._plateau_near_max keeps
    it) set the gammas' and the dose difference's normalisation, every global criterion 1.35 x looser, with no word
    about it.  It now lies more than 1.2 x above the target dose (the PTV's TPS near-maximum here: no prescription),
    so a failed row says so and the check does not PASS; the correct case has no such row.  At 1.26 x too, just
    above the limit (mutation audit 32: the limit at 1.32 x, mutants C27 and C31, passed the 1.35 x case alone).
    Deterministic."""
    from scipy.ndimage import binary_erosion

    from mcproton._check.compare import normalisation_dose

    assert not any(c["level"] == "normalisation_target_ratio_max" for c in case["res"].checks)
    plan = case["res"].inputs.total.dose_gy_zyx.copy()
    body = case["res"].body_zyx
    norm = normalisation_dose(plan, body)
    away = binary_erosion(~case["res"].masks["PTV"], np.ones((3, 3, 3)))   # not the PTV nor next to it
    room = binary_erosion(body & away, np.ones((5, 5, 5)))
    k = np.argwhere(room)[0]                            # a 5 x 5 x 5 block in the body, 2 voxels from the PTV at least
    plan[tuple(slice(int(i) - 2, int(i) + 3) for i in k)] = factor * norm
    assert not (plan > 1.3 * norm)[case["res"].masks["PTV"]].any()   # the block is outside the PTV
    res = _recheck(case, [_tps(case, "RD_hot_region", plan)])
    rows = [c for c in res.checks if c["level"] == "normalisation_target_ratio_max"]
    assert len(rows) == 1 and not rows[0]["passed"] and not res.passed, res.checks
    assert rows[0]["value"] > 1.2 and rows[0]["normalisation_gy"] == pytest.approx(factor * norm, rel=0.02)
    assert any("the check does not PASS" in d for d in res.diagnostics), res.diagnostics
    # a planned boost whose ROI is not typed as a target fails the same way (review a of audit 31, R4): said how
    assert any("(a simultaneous boost) is compared only as a target: type its ROI PTV, CTV, GTV or ITV" in d
               for d in res.diagnostics), res.diagnostics


def _small_target_case(case, rs_path):
    """The small-target case of review a of audit 31 (R1): a structure set at ``rs_path`` with the PTV and an 8 mm
    GTV_small at the isocentre, and a TPS dose uniform (the plan dose's maximum) within 4 mm of it, falling outside
    as a Gaussian of sigma 2 mm, at least a quarter of the plan dose.  Returns (plan dose, body, distance from the
    isocentre in mm, that maximum, the dose)."""
    _write_rs(rs_path, None, targets=[("PTV", (-16.0, -16.0, -12.0), (16.0, 16.0, 12.0)),
                                      ("GTV_small", (-4.0, -4.0, -4.0), (4.0, 4.0, 4.0))])
    plan = case["res"].inputs.total.dose_gy_zyx
    body = case["res"].body_zyx
    r = np.sqrt(sum((np.asarray(a) ** 2).reshape([-1 if i == k else 1 for i in range(3)])
                    for k, a in enumerate(case["axes"])))                  # mm from the isocentre (0, 0, 0)
    top = float(np.max(plan))
    dose = np.maximum(np.where(r <= 4.0, top, top * np.exp(-(r - 4.0) ** 2 / (2 * 2.0 ** 2))), 0.25 * plan)
    return plan, body, r, top, dose


def test_a_small_target_on_a_coarse_grid_keeps_its_near_maximum(case):
    """Review a of audit 31, R1: a genuinely small target (a uniform dose in a sphere of 8 mm, falling outside as a
    Gaussian of sigma 2 mm: 8 voxels of this 4 x 2 x 4 mm grid), inside a typed target GTV_small of 8 mm: its
    3 x 3 x 3 medians cannot reach its dose, so compare._plateau_near_max took it for a hot cluster, the gammas and the
    dose difference were normalised 1.4 x lower (criteria that much stricter) and a warning blamed a TPS artefact.
    Now api.check decides the normalisation once with the targets (compare.small_targets): it is the 8th-largest
    body voxel in every plan-dose row and the dose difference, with no hot-cluster warning.  Deterministic (the dose
    is built, the MC reused)."""
    from mcproton._check.api import check
    from mcproton._check.compare import _near_max_voxel, _plateau_near_max

    d = case["dir"]
    plan, body, r, top, dose = _small_target_case(case, d / "RS_small_target.dcm")
    n8 = _near_max_voxel(np.where(body, dose, 0.0), body)
    assert n8 == pytest.approx(top) and np.count_nonzero(r <= 4.0) == 8
    assert _plateau_near_max(np.where(body, dose, 0.0), body, n8) < n8 / 1.1   # taken for a hot cluster without it
    res = check(plan=d / "RP.dcm", dose=[_tps(case, "RD_small_target", dose)], ct=d / "ct",
                struct=d / "RS_small_target.dcm", beam_model="dcpt_v2", mc=case["res"].mc, levels=_levels(), **FAST)
    assert res.masks["GTV_small"][r <= 4.0].all()                          # the small dose lies in the target
    assert res.dose_difference["normalisation_gy"] == pytest.approx(n8, rel=1e-6), res.dose_difference
    assert not res.dose_difference["normalisation_plateau"]
    rows = [c for c in res.checks if c.get("normalisation_gy") is not None and "region" not in c["quantity"]]
    assert rows and all(c["normalisation_gy"] == pytest.approx(n8, rel=1e-6) for c in rows), res.checks
    assert not any("is set by a hot cluster" in w for w in res.warnings), res.warnings
    # said all the same: a hot cluster at a small target would be kept too (review c of audit 31, C3)
    kept = [w for w in res.warnings if "is kept as that target's planned dose" in w]
    assert len(kept) == 1 and "the TPS plan dose" in kept[0] and f"{n8:.4g}" in kept[0], res.warnings


def test_a_hot_cluster_in_a_small_target_is_held_to_its_stated_prescription(case):
    """Audit 32, c3 (review c of audit 31, C3): a near-maximum kept as a small typed target's planned dose
    (compare.small_targets) was kept whatever it was: 8 voxels at 1.3 x inside a small GTV (2 x 6 x 2 voxels of this
    4 x 2 x 4 mm grid, its dose ``top`` elsewhere) made the normalisation 1.3 x the target's dose, every global
    criterion that much looser, with a warning only.  Where the target's prescription is stated and consistent with
    its TPS median (compare.PRESCRIPTION_CONSISTENT), the kept near-maximum is held to PLATEAU_RATIO x it: the
    prescription is the normalisation, with a warning.  Without a stated prescription the near-maximum is kept, as
    before (nothing tells a planned small hot target from an artefact), and the C3 warning says so.  Deterministic."""
    from mcproton._check.api import check
    from mcproton._check.compare import PLATEAU_RATIO, _near_max_voxel, small_targets

    d = case["dir"]
    _write_rs(d / "RS_small_hot.dcm", None, targets=[("PTV", (-16.0, -16.0, -12.0), (16.0, 16.0, 12.0)),
                                                     ("GTV_small", (-5.0, -5.0, -5.0), (5.0, 5.0, 5.0))])
    plan = case["res"].inputs.total.dose_gy_zyx
    body = case["res"].body_zyx
    grids = np.meshgrid(*(np.asarray(a, float) for a in case["axes"]), indexing="ij")   # mm from the isocentre
    cheb, r = np.maximum.reduce([np.abs(g) for g in grids]), np.sqrt(sum(g ** 2 for g in grids))
    top = float(np.max(plan))
    dose = np.maximum(np.where(cheb <= 5.0, top, top * np.exp(-(cheb - 5.0) ** 2 / (2 * 2.0 ** 2))), 0.25 * plan)
    dose[r <= 4.0] = 1.3 * top                                               # the hot cluster: 8 voxels
    assert np.count_nonzero(r <= 4.0) == 8
    path = _tps(case, "RD_small_hot", dose)
    kw = {"plan": d / "RP.dcm", "dose": [path], "ct": d / "ct", "struct": d / "RS_small_hot.dcm",
          "beam_model": "dcpt_v2", "mc": case["res"].mc, "levels": _levels(), **FAST}
    res = check(prescription={"GTV_small": round(1.1 * top, 6)}, **kw)     # Gy(RBE): the PHYSICAL dose x 1.1
    gtv = res.masks["GTV_small"]
    assert (small_targets(res.masks, ["GTV_small", "PTV"]) == gtv).all() and gtv[r <= 4.0].all()   # small
    assert float(np.median(res.tps_gy_zyx[gtv])) == pytest.approx(top, rel=1e-3)   # the prescription: consistent
    n8 = _near_max_voxel(np.where(body, dose, 0.0), body)
    assert n8 == pytest.approx(1.3 * top, rel=1e-3)
    norm = res.dose_difference["normalisation_gy"]
    assert norm == pytest.approx(top, rel=1e-3), (norm, top, n8)           # was n8: 1.3 x looser criteria
    rows = [c for c in res.checks if c.get("normalisation_gy") is not None and "region" not in c["quantity"]
            and "beam" not in c["quantity"]]
    assert rows and all(c["normalisation_gy"] == pytest.approx(norm) for c in rows), res.checks
    held = [w for w in res.warnings if "x its stated prescription" in w]
    assert len(held) == 1 and "1.30 x its stated prescription" in held[0] and "'GTV_small'" in held[0], res.warnings
    assert not any("is kept as that target's planned dose" in w for w in res.warnings), res.warnings
    # without a stated prescription: kept (its TPS median stands for it), and said (review c of audit 31, C3)
    res = check(**kw)
    assert res.dose_difference["normalisation_gy"] == pytest.approx(n8, rel=1e-6)
    assert any("is kept as that target's planned dose" in w for w in res.warnings), res.warnings
    assert PLATEAU_RATIO < 1.3


def test_the_beam_figures_take_the_normalisation_of_their_beams_gamma(case, tmp_path, monkeypatch):
    """Review c of audit 31: the report's beam figures are drawn before the 3-D gammas end (api.check's early result,
    no beam gamma in it), so report._beam_norm recomputed compare.normalisation_dose of the per-beam TPS dose without
    the targets: with a small typed target (review a, R1) the figure's difference and 2-D gamma were in % of the
    plateau's dose, 2 x below the beam's 3-D gamma's normalisation (its 8th-largest voxel).  Now the early result
    carries the normalisation api.check decided for each beam.  Deterministic (the doses built, the MC reused; the
    figures drawn in this process)."""
    from mcproton._check import report as report_mod
    from mcproton._check.api import check
    from mcproton._check.compare import _near_max_voxel

    d = case["dir"]
    plan, body, r, top, dose = _small_target_case(case, d / "RS_small_beams.dcm")
    beams = sorted(case["res"].mc.beams_gy_zyx)
    files = [_tps(case, "RD_small_plan", dose)] + [
        _tps(case, f"RD_small_b{b}", dose / len(beams), summation_type="BEAM", referenced_beam_number=b)
        for b in beams]
    seen: dict[int, float] = {}
    real = report_mod._beam_norm

    def recording(res, b):
        seen[b] = real(res, b)
        return seen[b]

    monkeypatch.setattr(report_mod, "_beam_norm", recording)
    monkeypatch.setattr(report_mod, "figure_worker_count", lambda *a, **k: 0)   # drawn here, where it is recorded
    res = check(plan=d / "RP.dcm", dose=files, ct=d / "ct", struct=d / "RS_small_beams.dcm", beam_model="dcpt_v2",
                mc=case["res"].mc, levels=_levels(), out=tmp_path / "out", **FAST)
    n8 = _near_max_voxel(np.where(body, dose / len(beams), 0.0), body)
    assert sorted(seen) == beams
    for b in beams:
        assert res.beam_gamma[b]["normalisation_gy"] == pytest.approx(n8, rel=1e-6), res.beam_gamma[b]
        assert seen[b] == pytest.approx(res.beam_gamma[b]["normalisation_gy"], rel=1e-9), (b, seen)


def test_the_target_dose_is_a_consistent_prescription_else_the_targets_near_maximum():
    """compare.target_dose_of_plan: a stated prescription whose target's TPS median lies within 5 % of it is the
    target dose (a hot region inside that target then lies above it: 1.3 x); one further off is not, and the
    target's own near-maximum is used (a heterogeneous test plan is not failed for it)."""
    from mcproton._check.compare import target_dose_of_plan

    tps = np.zeros((20, 20, 20))
    ptv = np.zeros(tps.shape, bool)
    ptv[5:15, 5:15, 5:15] = True
    tps[ptv] = 2.0
    tps[8:13, 8:13, 8:13] = 2.6                          # 125 hot voxels inside the target
    body = np.ones(tps.shape, bool)
    assert target_dose_of_plan(tps, body, {"PTV": ptv}, ["PTV"], {"PTV": 2.0})[0] == 2.0
    assert target_dose_of_plan(tps, body, {"PTV": ptv}, ["PTV"], {"PTV": 1.8})[0] == 2.6   # median +11 %: not it
    assert target_dose_of_plan(tps, body, {"PTV": ptv}, ["PTV"], {})[0] == 2.6
    assert target_dose_of_plan(tps, body, {"PTV": ptv}, [], {}) is None


def test_dose_shifted_by_3mm_fails(clinical):
    """The plan dose shifted 3 mm along x (beam 2's direction): the gamma rows and beam 2's range rows fail (2%/2mm 68.5
    %, beam 2 median dR80 +3.24 mm, 0 % of its rays within 2 mm at the fixture's seeds), beam 1's range rows pass (a
    lateral shift for it) and the uniform-range note names beam 2 only. Re-seeded (31 seed pairs, see the module
    docstring): held in 31/31; 2%/2mm 68.5-74.8 %, beam 2 median dR80 +3.18..+3.26 mm."""
    from scipy.ndimage import shift

    vs = clinical["grid"][0][0]   # x
    d = shift(clinical["hi"].total_gy_zyx, (0, 0, 3.0 / vs), order=1)
    res = _recheck(clinical, _tps(clinical, "shift", d))
    failed = {c["quantity"] for c in res.failed}
    print(res.summary())
    assert not res.passed
    assert {"gamma 3%/2mm global pass rate (body, 10 % threshold)",
            "gamma 2%/2mm global pass rate (body, 10 % threshold)", "beam 2: rays with |R80 difference| <= 2 mm"} \
        <= failed, failed
    assert any(q.startswith("beam 2: median distal R80") for q in failed) and res.ranges[2]["median_mm"] > 2.5
    assert not any(q.startswith("beam 1:") for q in failed), failed
    # beam 2 (gantry 90) runs along x: its distal edges all moved; beam 1 (along y) sees a lateral shift only
    assert [n[:7] for n in res.diagnostics if "uniform range difference" in n] == ["beam 2:"], res.diagnostics


def test_dose_scaled_by_5_percent_fails(clinical):
    """The plan dose x 1.05 (MC/TPS -4.8 %): at 1 % noise the target rows fail (PTV Dmean -4.8 %, D95 -5.4 % at the
    fixture's seeds) and the diagnosis names the ratio (0.952); gamma 2%/2mm does not see it (96 % here, >= 95 %: the
    audit's 22 seeds with a 0.22 % 'TPS' 96.7-97.3 %; at the old fast fixture's 6.5 % noise it failed, a property of
    that noise). With the per-beam doses scaled too, each beam's MC/TPS dose row fails (-4.8 / -5.0 %). Re-seeded (31
    seed pairs, see the module docstring): held in 31/31; Dmean -4.66..-4.93 %, the D95 row -3.5..-7.4 %, the beam rows
    -4.28..-5.17 %; gamma 2%/2mm 95.2-98.5 %, passing in 31/31 (gamma alone misses a 5 % scale at 1 %)."""
    hi = clinical["hi"]
    res = _recheck(clinical, _tps(clinical, "scaled", hi.total_gy_zyx * 1.05))
    failed = {c["quantity"] for c in res.failed}
    print(res.summary())
    assert not res.passed and {"PTV Dmean difference", "PTV D95 difference"} <= failed, failed
    assert -6.0 < res.structures["PTV"]["metrics"]["Dmean"]["diff_pct"] < -3.5
    assert any(n.startswith("the MC dose is 0.95") for n in res.diagnostics), res.diagnostics
    doses = [_tps(clinical, "scaled_plan", hi.total_gy_zyx * 1.05),
             *(_tps(clinical, f"scaled_{b}", hi.beams_gy_zyx[b] * 1.05, summation_type="BEAM",
                    referenced_beam_number=b) for b in (1, 2))]
    res = _recheck(clinical, doses)
    failed = {c["quantity"] for c in res.failed}
    print(res.summary())
    assert {"PTV Dmean difference", "PTV D95 difference"} <= failed, failed
    for b in (1, 2):
        assert f"beam {b}: MC/TPS dose (median voxel ratio, TPS beam dose >= 50 %)" in failed, failed
        assert -6.0 < res.beam_dose[b]["diff_pct"] < -3.5, res.beam_dose
        assert any(n.startswith(f"beam {b}'s dose is ") and "below the TPS's" in n for n in res.diagnostics)
    assert not any("R80" in q for q in failed), failed   # a scale, not a range


def _d95_row(case, monkeypatch, raw, matched, corrected, se):
    """The check of the fast fixture's correct doses (the D95 level 3 %) with its PTV D95 estimates set to ``raw``,
    ``matched`` and ``corrected`` (%) and the MC-corrected one's standard error to ``se`` (%): the D95 row and the
    result."""
    import mcproton._check.api as api
    from mcproton._check.levels import ActionLevels

    real = api.structure_stats

    def stats(*a, **kw):
        out = real(*a, **kw)
        d95 = out.get("PTV", {}).get("metrics", {}).get("D95", {})
        if "mc_corrected_diff_pct" in d95:
            d95.update(diff_pct=raw, noise_matched_diff_pct=matched, mc_corrected_diff_pct=corrected,
                       mc_noise_shift_se_pct=se, mc_noise_shift_implausible=False)
        return out

    monkeypatch.setattr(api, "structure_stats", stats)
    levels = ActionLevels(**{**LEVELS, "target_d95_pct": 3.0})
    res = _recheck({**case, "levels": levels}, [case["files"]["plan"], case["files"][1], case["files"][2]])
    row = next(c for c in res.checks if c["quantity"] == "PTV D95 difference")
    print(row["value_text"], "|", row["limit_text"])
    return row, res


def test_a_gross_d95_error_fails_without_blaming_the_noise(case, clinical, monkeypatch):
    """A D95 level that fails on all three estimates, each several times the 3 % level, is the dose's: no note says
    that "the MC's statistical noise decides this verdict" (audit 26, F1: the TPS plan dose x 0.9 at 1.52 % noise
    read +11.17 / +11.59 / +14.47 %, spread by 3.3 points, more than D95_ESTIMATES_AGREE_PCT, since the MC-noise
    correction is a share of the dose; the note asked for a rerun at 4 x the primaries "before reading it as a dose
    error").  The note needs an estimate within its own limit (api.d95_noise_could_decide); one that is keeps it.
    And the clinical fixture's plan dose x 0.90 (+10.4 / +11.1 / +10.6 % at 1 %): FAIL, no such note."""
    row, res = _d95_row(case, monkeypatch, 11.17, 11.59, 14.47, 0.2)   # the audit's numbers
    notes = [n for n in res.diagnostics if "decides this verdict" in n and n.startswith("target 'PTV'")]
    assert not row["passed"] and notes == [], notes
    # an estimate within its limit, the three spread by more than 2 points: the noise could turn it, said so
    row, res = _d95_row(case, monkeypatch, -3.4, -2.1, -0.5, 0.2)
    notes = [n for n in res.diagnostics if "decides this verdict" in n and n.startswith("target 'PTV'")]
    assert not row["passed"] and len(notes) == 1 and "while its three estimates disagree by 2.9 %" in notes[0], notes
    monkeypatch.undo()

    res = _recheck(clinical, _tps(clinical, "x090", clinical["hi"].total_gy_zyx * 0.90))
    print(res.summary())
    assert "PTV D95 difference" in _failed(res)
    assert not any("decides this verdict" in n for n in res.diagnostics), res.diagnostics
    assert any(n.startswith("the MC dose is 1.1") for n in res.diagnostics), res.diagnostics   # the scale is named


def test_d95_row_decimals_are_chosen_per_estimate_against_its_own_limit(case, monkeypatch):
    """The D95 row's values and limits with as few decimals as each estimate needs against its own limit (audit 26,
    F3): an MC-corrected +3.0247 % within its own 3.42 % limit (the level 3 % + 2 standard errors of 0.21 %) was
    tested against the level (3 %), which no rounding could make it pass, so the row was written in full
    ("raw +0.05293823079970631 %").  Now "+3.02 %" against "3.00 %" and "the MC-corrected value: 3.42 %"."""
    import re

    row, _ = _d95_row(case, monkeypatch, 0.05293823079970631, 0.41290668467696023, 3.0247042916498588, 0.21)
    assert row["passed"], row
    assert row["value_text"].startswith("raw +0.05 %, noise-matched +0.41 %, MC-corrected +3.02 % of the TPS D95"), \
        row["value_text"]
    assert row["limit_text"].startswith("|.| <= 3.00 % of the TPS D95 (the MC-corrected value: 3.42 %, the level"), \
        row["limit_text"]
    for text in (row["value_text"], row["limit_text"]):   # never a number in full
        assert not re.search(r"\d\.\d{4,}", text), text
    # a value a hair beyond its own limit still shows on which side it is (level_text's rule, per estimate)
    row, _ = _d95_row(case, monkeypatch, 0.5, 0.4, 3.4213, 0.21)
    assert not row["passed"] and "MC-corrected +3.421 %" in row["value_text"], row["value_text"]
    assert "the MC-corrected value: 3.420 %" in row["limit_text"], row["limit_text"]


def test_one_beam_of_a_per_beam_plan_scaled_by_5_percent_fails_naming_that_beam(clinical, tmp_path,
                                                                                report_figures_blank):
    """Beam 2's TPS dose x 1.05, in its per-beam dose and in the plan dose (a wrong MU or output of one field; the CSI
    audit of 2026-12-05, F1: on one of four CSI fields every plan-level row passed, and the one note blamed "a shift or
    a range difference"). Each beam with a per-beam TPS dose has its MC/TPS dose row (compare. beam_dose_ratio): beam
    2's fails, beam 1's passes, the diagnosis names beam 2's dose first and no shift; the same doses unscaled pass those
    rows (the fixture's check). At the fixture's seeds: unscaled -0.04 / -0.22 %, scaled beam 2 -4.97 %, beam 1 -0.04 %.
    Re-seeded (31 seed pairs, see the module docstring): held in 31/31; beam 2 -4.31..-5.10 %, beam 1 -0.43..+0.51 %."""
    hi = clinical["hi"]
    for b, r in clinical["res"].beam_dose.items():   # unscaled: passed
        row = next(c for c in clinical["res"].checks if c["quantity"].startswith(f"beam {b}: MC/TPS dose"))
        assert row["passed"] and abs(r["diff_pct"]) < 1 and r["voxels"] > 100 and 0 < r["uncertainty_pct"] < 0.5
    doses = [_tps(clinical, "b2x_plan", hi.beams_gy_zyx[1] + 1.05 * hi.beams_gy_zyx[2]),
             _tps(clinical, "b2x_1", hi.beams_gy_zyx[1], summation_type="BEAM", referenced_beam_number=1),
             _tps(clinical, "b2x_2", 1.05 * hi.beams_gy_zyx[2], summation_type="BEAM", referenced_beam_number=2)]
    res = _recheck(clinical, doses, out=tmp_path / "o", log=lambda m: None)
    failed = _failed(res)
    assert "beam 2: MC/TPS dose" in failed and "beam 1: MC/TPS dose" not in failed, res.summary()
    assert res.beam_dose[2]["diff_pct"] < -4.0 and abs(res.beam_dose[1]["diff_pct"]) < 1, res.beam_dose
    named = [k for k, n in enumerate(res.diagnostics) if n.startswith("beam 2's dose is ") and "below the TPS's" in n]
    assert named and "MU/output" in res.diagnostics[named[0]], res.diagnostics
    assert not any("centroid" in n for n in res.diagnostics), res.diagnostics
    import json

    js = json.loads(Path(res.report_json).read_text())
    assert js["beam_dose"]["2"]["ratio"] == pytest.approx(res.beam_dose[2]["ratio"])
    assert js["levels"]["beam_dose_ratio_pct"]["value"] == 3.0
    page = Path(res.report_html).read_text()
    assert "<h2>Beams: dose level</h2>" in page and f"{res.beam_dose[2]['ratio']:.4f}" in page


def test_rays_where_the_mc_has_no_distal_edge_count_as_failing_rays(case, tmp_path, report_figures_blank):
    """The MC's beam 1 without dose at x > 0 (half its field lost: a spot column missing or misplaced), the TPS
    doses the MC's own: the rays where the TPS has a distal R80 and the MC none count outside 2 mm, and the rays row
    fails at the default 90 % (the fixture's relaxed 50 % is above what is left: 55 %).  Both counts are in the
    result, check.json, the rows and the report; the beam's dose-level row, a scale level, says that its integral
    ratio (0.52) is far from its median.  Before, those rays dropped out and the rows read "100 % within 2 mm" of
    the 65 rays kept (check review 2026-12-06, F2)."""
    import dataclasses
    import json

    from mcproton._check.api import check

    d, mc = case["dir"], case["res"].mc
    vs, org = case["grid"]
    xs = org[0] + vs[0] * np.arange(mc.total_gy_zyx.shape[2])
    b1 = np.where(xs > 0, 0.0, mc.beams_gy_zyx[1])
    half = dataclasses.replace(mc, beams_gy_zyx={1: b1, 2: mc.beams_gy_zyx[2]}, total_gy_zyx=b1 + mc.beams_gy_zyx[2])
    doses = [_tps(case, f"same_b{b}", mc.beams_gy_zyx[b], summation_type="BEAM", referenced_beam_number=b)
             for b in (1, 2)]
    from mcproton._check.levels import ActionLevels

    res = check(plan=d / "RP.dcm", dose=doses, ct=d / "ct", struct=d / "RS.dcm", beam_model="dcpt_v2", mc=half,
                levels=ActionLevels(**{**LEVELS, "range_within_2mm_min": 90.0}), out=tmp_path / "o",
                log=lambda m: None, **FAST)
    r = res.ranges[1]
    assert r["rays_tps"] == r["rays"] + r["rays_without_mc_edge"] and r["rays_without_tps_edge"] == 0, r
    assert 0.3 < r["rays_without_mc_edge"] / r["rays_tps"] < 0.6, r             # half the field (measured 53 of 118)
    assert r["within_2mm"] <= r["rays"] / r["rays_tps"] + 1e-12, r
    assert res.ranges[2]["rays_without_mc_edge"] == 0 and res.ranges[2]["rays_tps"] == res.ranges[2]["rays"]
    rows = {c["quantity"]: c for c in res.checks}
    row = rows["beam 1: rays with |R80 difference| <= 2 mm"]
    said = f"of the {r['rays_tps']} rays with a distal R80 in the TPS dose, {r['rays_without_mc_edge']} have none"
    assert not row["passed"] and said in row["value_text"], row
    assert said in rows["beam 1: median distal R80 difference (per-beam TPS dose)"]["value_text"]
    assert "have none" not in rows["beam 2: rays with |R80 difference| <= 2 mm"]["value_text"]
    level = rows["beam 1: MC/TPS dose (median voxel ratio, TPS beam dose >= 50 %)"]["value_text"]
    assert "the integral ratio differs from the median" in level, level
    assert "differs from the median" not in rows["beam 2: MC/TPS dose (median voxel ratio, TPS beam dose >= 50 %)"][
        "value_text"]
    js = json.loads(Path(res.report_json).read_text())["ranges"]["1"]
    assert (js["rays_tps"], js["rays"], js["rays_without_mc_edge"]) == (r["rays_tps"], r["rays"],
                                                                         r["rays_without_mc_edge"])
    page = Path(res.report_html).read_text()
    assert "rays with a TPS edge (no MC edge)" in page and f"{r['rays_tps']} ({r['rays_without_mc_edge']} no MC edge)" \
        in page


def test_a_range_of_too_few_rays_is_not_judged(case, monkeypatch):
    """A beam whose range has fewer than compare.MIN_RANGE_RAYS rays (one hot TPS voxel left 1 ray, which failed
    at -27.8 mm: CSI audit F3): no range rows, a note "not evaluable (n rays)" instead, and the other beam's rows."""
    import mcproton._check.api as api
    from mcproton._check.compare import _not_evaluable

    real = api.range_agreement

    def few(*a, **kw):
        r = real(*a, **kw)
        if kw.get("stream") == 1:   # beam 1: three of its rays
            r = _not_evaluable({**r, "rays": 3, "values_mm": r["values_mm"][:3]}, 0.5)
        return r

    monkeypatch.setattr(api, "range_agreement", few)
    res = _recheck(case, [case["files"]["plan"], case["files"][1], case["files"][2]])
    rows = [c["quantity"] for c in res.checks]
    assert not any(q.startswith("beam 1:") and "R80" in q for q in rows), rows
    assert any(q.startswith("beam 2: median distal R80") for q in rows), rows
    assert any(n.startswith("beam 1: distal R80 not evaluable (3 rays)") for n in res.diagnostics), res.diagnostics
    assert res.ranges[1]["evaluable"] is False and res.ranges[2]["evaluable"] is True


def test_a_range_failed_at_high_noise_names_the_noise_on_its_row_and_in_a_cause(case, monkeypatch):
    """Beam 1's range as APTG plan03's at 7 % (smoke audit 2026-12-06, F3: a correct plan read -1.9 mm
    noise-matched, the noise alone +5.2 mm, a FAIL with no note where the D95 rows had one): the synthetic ramp beam
    of test_check_noise with noise correlated along the beam.  Its failed median row says the noise decides, and a
    cause note asks for a rerun at a lower uncertainty; beam 2 (the case's own MC) gets no note."""
    import mcproton._check.api as api
    from test_check_noise import _correlated_noisy, _ramp_beam

    axes, tps = _ramp_beam()
    mc, rel = _correlated_noisy(tps * 1.007, 0.07, 0, 4)
    noisy = api.range_agreement(axes, tps, mc, (0.0, 1.0, 0.0), (0.0, 0.0, 0.0), noise_rel=rel, seed=1)
    real = api.range_agreement

    def high_noise(*a, **kw):
        r = real(*a, **kw)
        return dict(noisy) if kw.get("stream") == 1 and "noise_median_mm" in r else r

    monkeypatch.setattr(api, "range_agreement", high_noise)
    res = _recheck(case, [case["files"]["plan"], case["files"][1], case["files"][2]])
    assert res.ranges[1]["noise_median_mm"] == noisy["noise_median_mm"], "the per-beam noise floor was not used"
    row = next(c for c in res.checks if c["quantity"].startswith("beam 1: median distal R80"))
    assert not row["passed"] and row.get("noise_decides") is True, row
    assert row["value_text"].endswith("the noise decides this verdict (see the note)"), row["value_text"]
    notes = [(n, k) for n, k in zip(res.diagnostics, res.diagnostic_kinds) if "noise decides this verdict" in n]
    assert len(notes) == 1 and notes[0][0].startswith("beam 1: the median distal R80 level failed") \
        and notes[0][1] == "cause", res.diagnostics
    # the D95 note's remedy (noise_remedy): here --primaries stopped the MC above the default 1 % target
    assert "; raise --primaries to about " in notes[0][0] and notes[0][0].endswith("before reading it as a range error")
    assert not any(c.get("noise_decides") for c in res.checks if c["quantity"].startswith("beam 2:")), res.checks


def test_beam_missing_fails_and_is_named(clinical):
    """A plan dose of beam 1 alone: every dose row fails (gamma ~50 %, Dmean +100 %, both beams' range rows; only the
    MC's own uncertainty row passes) and the note names beam 2 as missing. Re-seeded (31 seed pairs, see the module
    docstring): held in 31/31."""
    res = _recheck(clinical, _tps(clinical, "onebeam", clinical["hi"].beams_gy_zyx[1]))
    print(res.summary())
    assert not res.passed
    assert [c["quantity"] for c in res.checks if c["passed"]] == [
        "MC statistical uncertainty (mean, voxels > 50 % of the maximum)"], res.summary()
    assert len(res.checks) >= 9   # gamma x2, D95, Dmean, 2 x 2 range rows, the uncertainty
    assert any("beam 2 seems to be missing" in n for n in res.diagnostics), res.diagnostics


def test_per_beam_doses_of_some_beams_without_a_plan_dose_are_refused(case):
    """An export of beam 1's BEAM dose only (beam 2's file and the plan dose missing): refused in the pairing,
    naming the missing beam.  Before, the one beam's dose was compared as the plan's dose: a +100 % target dose
    and a -13 mm range for beam 2 in the report, while the cause was a missing file (a helper's audit, real
    RayStation plan03 files)."""
    from mcproton._check.inputs import CheckInputError, gather

    d = case["dir"]
    with pytest.raises(CheckInputError, match=r"per-beam TPS doses of beam\(s\) \[1\] only, and no plan dose, but "
                                              r"the plan has beams \[1, 2\]: the dose of beam\(s\) \[2\] is missing"):
        gather(plan=d / "RP.dcm", dose=[case["files"][1]], ct=d / "ct")
    both = gather(plan=d / "RP.dcm", dose=[case["files"][1], case["files"][2]], ct=d / "ct")   # every beam: checked
    assert sorted(both.beams) == [1, 2] and both.total is None


def test_an_out_folder_where_an_output_would_overwrite_an_input_is_refused(case, tmp_path):
    """The planning system's dose exported as RD_mc.dcm into the folder given as --out: refused, the file kept
    (before, replaced by the MC dose without a word: the input of the very check)."""
    import hashlib
    import shutil

    from mcproton._check.inputs import CheckInputError

    o = tmp_path / "patient"
    o.mkdir()
    tps = shutil.copy(case["files"]["plan"], o / "RD_mc.dcm")
    before = hashlib.sha1(Path(tps).read_bytes()).hexdigest()
    with pytest.raises(CheckInputError, match=r"the check writes RD_mc.dcm there, but .* is an input of this check"):
        _recheck(case, tps, out=o, log=lambda m: None)
    assert hashlib.sha1(Path(tps).read_bytes()).hexdigest() == before
    (o / "check.html").write_text("<html>the physicist's own notes</html>")   # not ours: refused, kept
    with pytest.raises(CheckInputError, match=r"check.html is there and was not written by mcproton check"):
        _recheck(case, case["files"]["plan"], out=o, log=lambda m: None)
    assert "own notes" in (o / "check.html").read_text()


def test_an_earlier_checks_outputs_are_removed_from_a_reused_out_folder(case, tmp_path, report_figures_blank):
    """A check into a folder that holds an earlier check (here with per-beam doses: RD_mc_beam1/2.dcm) removes
    what that check wrote and names it, so that no MC dose of another plan version or patient lies beside the new
    report (before: left there, and imported with it)."""
    o = tmp_path / "o"
    _recheck(case, [case["files"]["plan"], case["files"][1], case["files"][2]], out=o, log=lambda m: None)
    assert sorted(p.name for p in o.glob("RD_mc*.dcm")) == ["RD_mc.dcm", "RD_mc_beam1.dcm", "RD_mc_beam2.dcm"]
    import shutil

    from mcproton._check.inputs import CheckInputError

    shutil.copy(o / "RD_mc.dcm", o / "RD_mc_kept.dcm")   # a copy the user renamed to keep: not an output's name
    said = []
    res = _recheck(case, case["files"]["plan"], out=o, log=said.append)
    assert sorted(p.name for p in o.iterdir()) == ["RD_mc.dcm", "RD_mc_kept.dcm", "check.html", "check.json"]
    assert res.mc_rtdose.keys() == {"plan"}
    assert any("removed the earlier check's outputs" in m and "RD_mc_beam1.dcm, RD_mc_beam2.dcm" in m
               for m in said), said
    # a re-check refused after the inputs were read: the refusal records itself in check.json, and the earlier
    # check's outputs are moved aside, not left beside the record as if current (automation audit 2026-12-06, F1)
    report = (o / "check.json").read_text()
    with pytest.raises(CheckInputError, match="prescription names"):
        _recheck(case, case["files"]["plan"], out=o, log=lambda m: None, prescription={"PTv": 2.0})
    record = json.loads((o / "check.json").read_text())
    assert record["status"] == "refused" and "prescription names" in record["error"]
    (earlier,) = o.glob("earlier_check_*")
    assert (earlier / "check.json").read_text() == report and (earlier / "RD_mc.dcm").exists()
    assert (o / "RD_mc_kept.dcm").exists() and not (o / "RD_mc.dcm").exists()


def test_range_error_of_3_percent_in_one_beam_fails(clinical):
    """Beam 1 (gantry 0, HFS: along +y) stretched by 3 % in depth from the box surface (y = -40 mm), per-beam doses:
    beam 1's median distal R80 row fails (-1.89 mm at the fixture's seeds), beam 2's range rows pass. Re-seeded (31 seed
    pairs, see the module docstring): the rows and notes held in 31/31, beam 1's median -1.875..-1.900 mm."""
    case = clinical
    from scipy.ndimage import map_coordinates

    hi = case["hi"]
    z, y, x = case["axes"]
    vs = case["grid"][0][1]   # y
    Z, Y, X = np.meshgrid(np.arange(z.size), np.arange(y.size), np.arange(x.size), indexing="ij")
    y_src = BOX[0] + (y[Y] - BOX[0]) / 1.03
    b1 = map_coordinates(hi.beams_gy_zyx[1], [Z, (y_src - y[0]) / vs, X], order=1)
    doses = [_tps(case, "b1", b1, summation_type="BEAM", referenced_beam_number=1),
             _tps(case, "b2", hi.beams_gy_zyx[2], summation_type="BEAM", referenced_beam_number=2)]
    res = _recheck(case, doses)
    failed = _failed(res)
    assert "beam 1: median distal R80 difference" in failed, res.summary()
    assert "beam 2: median distal R80" not in failed
    assert res.ranges[1]["median_mm"] < -1.0    # the MC stops short of the stretched TPS dose
    # a beam this deep (90 MeV: the distal edge ~64 mm from the surface) is one where the 1 mm level finds a 3 %
    # range error (beyond 50 mm): no shallow-beam note (tests/check/test_check_shallow_range.py has one below it)
    assert all(r["distal_depth_mm"] > 55 for r in res.ranges.values()), res.ranges
    assert not any(": its distal edge lies" in n for n in res.diagnostics), res.diagnostics
    notes = [n for n in res.diagnostics if "uniform range difference" in n]
    assert len(notes) == 1 and notes[0].startswith("beam 1: the MC's distal edge lies") and "shallower" in notes[0]
    from mcproton._check.api import GENERIC_CALIBRATION_NOTE

    assert GENERIC_CALIBRATION_NOTE in res.diagnostics   # the CT read with the default curve: named as a suspect
    given = _recheck(case, doses, calibration="schneider2000")   # the curve chosen on purpose: not a suspect
    assert GENERIC_CALIBRATION_NOTE not in given.diagnostics and notes[0] in given.diagnostics


def test_a_range_failure_that_is_not_uniform_names_the_default_calibration(clinical):
    """Journey audit 28, F2: the OpenTPS head checked with the default curve failed both beams' median distal R80
    rows (+1.1 mm) with no cause named, as the generic-calibration note stood only behind a uniform range difference
    (5-95 % of the rays on one side of zero), and a 0.1 mm tail below zero ruled that out.  Here beam 1's TPS dose is
    stretched by 3 % in depth over most of its field (x > -4 mm) and shortened by 1 % over the rest: its median row
    fails (-1.9 mm), its rays lie on both sides of zero (no uniform-range note), and the default calibration is named
    among the causes all the same; not with the curve given (--calibration)."""
    from scipy.ndimage import map_coordinates

    from mcproton._check.api import GENERIC_CALIBRATION_NOTE

    case = clinical
    hi = case["hi"]
    z, y, x = case["axes"]
    vs = case["grid"][0][1]   # y
    Z, Y, X = np.meshgrid(np.arange(z.size), np.arange(y.size), np.arange(x.size), indexing="ij")
    y_src = BOX[0] + (y[Y] - BOX[0]) / np.where(x[X] > -4.0, 1.03, 0.99)
    b1 = map_coordinates(hi.beams_gy_zyx[1], [Z, (y_src - y[0]) / vs, X], order=1)
    doses = [_tps(case, "b1_part", b1, summation_type="BEAM", referenced_beam_number=1),
             _tps(case, "b2_part", hi.beams_gy_zyx[2], summation_type="BEAM", referenced_beam_number=2)]
    res = _recheck(case, doses)
    assert "beam 1: median distal R80 difference" in _failed(res), res.summary()
    r = res.ranges[1]
    assert r["p5_mm"] < 0 < r["p95_mm"], r   # not a uniform difference
    assert not any(n.startswith("beam 1:") and "uniform range difference" in n for n in res.diagnostics)
    assert GENERIC_CALIBRATION_NOTE in res.diagnostics_of("cause"), res.diagnostics
    given = _recheck(case, doses, calibration="schneider2000")   # the curve chosen on purpose: not a suspect
    assert GENERIC_CALIBRATION_NOTE not in given.diagnostics


def test_a_turned_beam_s_range_rows_do_not_name_the_default_calibration(case):
    """Audit 31 direction R6: beam 1's TPS dose turned about the isocentre to run along +x (its plan beam, gantry 0,
    along +y), on the CT with the default calibration: its range rows fail (+16.3 mm, 0 % of the rays within 2 mm) and
    its note says they follow from the direction, "not from ... the CT calibration"; the generic-calibration note
    named the curve as a cause beside it.  Now the turned beam's range rows are left out of that note's decision; beam
    2's own rows (passing) and the turned note stay."""
    from scipy.ndimage import map_coordinates

    from mcproton._check.api import GENERIC_CALIBRATION_NOTE

    z, y, x = case["axes"]
    Z, Y, X = np.meshgrid(np.arange(z.size), np.arange(y.size), np.arange(x.size), indexing="ij")
    # the TPS dose at (z, y, x) is the MC's at (z, y' = x, x' = y): its depth (the MC's y) along x
    b1 = map_coordinates(case["hi"].beams_gy_zyx[1], [Z, (x[X] - y[0]) / (y[1] - y[0]), (y[Y] - x[0]) / (x[1] - x[0])],
                         order=1, mode="constant", cval=0.0)
    doses = [_tps(case, "b1_turned", b1, summation_type="BEAM", referenced_beam_number=1),
             _tps(case, "b2_aimed", case["hi"].beams_gy_zyx[2], summation_type="BEAM", referenced_beam_number=2)]
    res = _recheck(case, doses)
    assert "beam 1: median distal R80 difference" in _failed(res)   # the rows that brought the note
    assert "beam 2: median distal R80" not in _failed(res)
    (turned,) = [n for n in res.diagnostics_of("cause") if n.startswith("beam 1: the TPS dose of this beam runs along")]
    assert "runs along +x, the plan's beam along +y" in turned and "not from its MU, the beam model or the CT " \
        "calibration" in turned, turned
    assert GENERIC_CALIBRATION_NOTE not in res.diagnostics, res.diagnostics


def test_the_generic_calibration_note_follows_the_range_rows_not_their_spread():
    """Journey audit 28, F2, on the OpenTPS head's figures: beam 0's rays +1.14 mm median, 5-95 % -0.09..+1.77 mm
    (no uniform-range note) and its median row failed: the note is a cause; a median at half the level or more with
    the rows passing: a remark; well inside: nothing; a curve given: nothing."""
    from mcproton._check.api import GENERIC_CALIBRATION_NOTE, generic_calibration_note, uniform_range_note

    assert uniform_range_note(0, {"rays": 400, "median_mm": 1.14, "p5_mm": -0.09, "p95_mm": 1.77}) is None

    def rows(median: float, within: float = 99.0) -> list[dict]:
        return [{"level": "range_median_mm", "value": median, "limit": 1.0, "passed": abs(median) <= 1.0},
                {"level": "range_within_2mm_min", "value": within, "limit": 90.0, "passed": within >= 90.0},
                {"level": "gamma_3_2_min", "value": 99.0, "limit": 95.0, "passed": True}]

    assert generic_calibration_note(rows(1.15), True) == (GENERIC_CALIBRATION_NOTE, True)
    assert generic_calibration_note(rows(0.3, within=87.8), True) == (GENERIC_CALIBRATION_NOTE, True)
    assert generic_calibration_note(rows(-0.56), True) == (GENERIC_CALIBRATION_NOTE, False)
    assert generic_calibration_note(rows(0.3), True) is None
    assert generic_calibration_note(rows(1.15), False) is None
    assert "--calibration FOLDER" in GENERIC_CALIBRATION_NOTE and "hu_spr.csv" in GENERIC_CALIBRATION_NOTE


def test_a_check_without_a_structure_set_says_so_beside_its_verdict(case, tmp_path, report_figures_blank):
    """Journey audit 28, F1: a check without an RT Struct said PASS from its 7 rows, the target D95/Dmean rows gone
    without a word.  Now: where the plan names a structure set that is not given, refused unless allow_no_struct
    (--allow-no-struct); whenever none is used, a warning and the verdict "PASS (without a structure set: ...)" in the
    summary, check.json and the report; with the structure set, none of this."""
    from mcproton._check.api import NO_STRUCT_WARNING, NO_STRUCTURES, check
    from mcproton._check.inputs import CheckInputError

    d = case["dir"]
    rs_uid = str(pydicom.dcmread(d / "RS.dcm", stop_before_pixels=True).SOPInstanceUID)
    ds = pydicom.dcmread(d / "RP.dcm")   # the same plan (its SOPInstanceUID: the MC is reused), naming its RS
    ref = pydicom.Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.481.3", rs_uid
    ds.ReferencedStructureSetSequence = pydicom.Sequence([ref])
    ds.save_as(tmp_path / "RP.dcm")
    kw = dict(dose=case["files"]["plan"], ct=d / "ct", beam_model="dcpt_v2", mc=case["res"].mc, levels=_levels(),
              **FAST)
    with pytest.raises(CheckInputError, match=rf"the plan names structure set {rs_uid} .*--allow-no-struct"):
        check(plan=tmp_path / "RP.dcm", **kw)
    res = check(plan=tmp_path / "RP.dcm", allow_no_struct=True, out=tmp_path / "o", **kw)
    verdict = "PASS" if res.passed else "FAIL"
    assert res.no_structures == NO_STRUCTURES
    # (after the words that the 'TPS' dose here is mcproton's own, as any qualifier of the verdict)
    assert res.summary().splitlines()[0] == (f"mcproton check: {verdict} ({res.self_compared}) ({NO_STRUCTURES})"), \
        res.summary()
    assert not [c for c in res.checks if "D95" in c["quantity"] or "Dmean" in c["quantity"]]
    (said,) = [w for w in res.warnings if w.startswith(NO_STRUCT_WARNING)]
    assert rs_uid in said and "as asked (--allow-no-struct)" in said and "no target rows (D95, Dmean)" in said
    assert any(line == f"note: {said}" for line in res.pairing)
    record = json.loads((tmp_path / "o" / "check.json").read_text())
    assert record["no_structures"] == NO_STRUCTURES and record["settings"]["allow_no_struct"] is True
    page = html.unescape((tmp_path / "o" / "check.html").read_text())
    assert f"{NO_STRUCTURES[0].upper()}{NO_STRUCTURES[1:]}." in page
    assert "checked without one as asked (--allow-no-struct)" in page
    # a plan that names no structure set: checked, said the same way
    res = check(plan=d / "RP.dcm", **kw)
    assert res.no_structures == NO_STRUCTURES and not any("as asked" in w for w in res.warnings)
    # ... and with --allow-no-struct (a batch gives it to every patient), which then did nothing: the Settings row
    # does not say "as asked" (review d of 2026-12-07, R3)
    res = check(plan=d / "RP.dcm", allow_no_struct=True, out=tmp_path / "o2", **kw)
    assert res.no_structures == NO_STRUCTURES and res.settings["plan_structure_sets"] == []
    page = html.unescape((tmp_path / "o2" / "check.html").read_text())
    assert "as asked (--allow-no-struct)" not in page and "none given or found (the plan names none)" in page
    # with its structure set: a plain verdict
    res = _recheck(case, case["files"]["plan"])
    assert res.no_structures == "" and "(without" not in res.summary().splitlines()[0]
    assert not any(w.startswith(NO_STRUCT_WARNING) for w in res.warnings)


def test_the_generic_calibration_note_states_what_the_built_in_curves_give():
    """GENERIC_CALIBRATION_NOTE's figures: the stopping-power ratios of schneider2000 and mcsquare_default at 100
    MeV, with this code's stopping powers, differ by up to 2.4 % in soft tissue (-100..100 HU) and 5 % in dense bone
    (1200 HU).  A change to either curve or to the stopping powers that moves these figures fails here."""
    from mcproton._check.api import GENERIC_CALIBRATION_NOTE
    from mcproton._io.hu_calibration import HUCalibration

    hu = np.array([-100.0, -50.0, 0.0, 40.0, 100.0, 700.0, 1200.0])
    a = HUCalibration.load("schneider2000").spr_from_hu(hu)
    b = HUCalibration.load("mcsquare_default").spr_from_hu(hu)
    diff = 100 * (b / a - 1)
    np.testing.assert_allclose(diff, [1.26, 0.58, -1.68, 2.44, -0.87, -2.83, -5.07], atol=0.02)
    assert max(abs(diff[:5])) == pytest.approx(2.44, abs=0.02) and "2.4 % in soft tissue" in GENERIC_CALIBRATION_NOTE
    assert abs(diff[-1]) == pytest.approx(5.07, abs=0.02) and "5 % in dense bone" in GENERIC_CALIBRATION_NOTE


def test_uniform_range_note_only_for_edges_that_all_moved():
    """The range diagnosis: all rays moved one way (a range difference) -> named; noise (both ways), a lateral shift
    (some rays only) or a small move -> nothing."""
    from mcproton._check.api import uniform_range_note

    row = {"rays": 200, "median_mm": 1.8, "p5_mm": 1.6, "p95_mm": 1.95}
    assert "1.8 mm deeper" in uniform_range_note(3, row) and uniform_range_note(3, row).startswith("beam 3:")
    assert uniform_range_note(1, {**row, "median_mm": -1.8, "p5_mm": -1.95, "p95_mm": -1.6}).count("shallower") == 1
    assert uniform_range_note(1, {**row, "p5_mm": -0.9}) is None                  # noise: both sides of zero
    assert uniform_range_note(1, {**row, "p5_mm": 0.1, "p95_mm": 6.0}) is None    # some rays only: a lateral shift
    assert uniform_range_note(1, {**row, "median_mm": 0.8, "p5_mm": 0.7, "p95_mm": 0.9}) is None   # within 1 mm
    assert uniform_range_note(1, {**row, "median_mm": 0.8, "p5_mm": 0.7, "p95_mm": 0.9}, 0.5) is not None
    assert uniform_range_note(1, {**row, "rays": 5}) is None and uniform_range_note(1, {"rays": 0}) is None


# ---------------------------------------------------------------------- bad input
def test_each_target_is_compared_with_its_own_prescription(case, tmp_path):
    """A plan with two target prescriptions (DoseReferenceSequence: the low-dose PTV's first, as a simultaneous
    boost plan may list them): each target's V95/V100 is relative to the dose reference of its ROI, and a target
    no dose reference names gets none (which of two prescriptions is its own is unknown).  Before: the first
    TargetPrescriptionDose was used for every target, so the boost target's V95 was relative to the low dose.
    TargetPrescriptionDose is Gy(RBE) and the TPS dose physical: each is divided by the RBE 1.1."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from mcproton._check.api import check

    d = case["dir"]
    rp = pydicom.dcmread(d / "RP.dcm")          # the same plan (its SOP Instance UID: the TPS doses refer to it)
    tps = case["hi"].total_gy_zyx
    refs = []
    for num, rx in ((2, 0.5), (1, 0.9)):        # ROI 2 'PTV_low' first, ROI 1 'PTV_high' second
        dr = Dataset()
        dr.DoseReferenceNumber, dr.DoseReferenceStructureType, dr.DoseReferenceType = num, "VOLUME", "TARGET"
        dr.ReferencedROINumber, dr.TargetPrescriptionDose = num, 1.1 * rx * float(tps.max())   # Gy(RBE)
        refs.append(dr)
    rp.DoseReferenceSequence = Sequence(refs)
    rp.save_as(tmp_path / "RP_sib.dcm")
    _write_rs(tmp_path / "RS_sib.dcm", None, targets=[("PTV_high", (-16.0, -16.0, -12.0), (0.0, 16.0, 12.0)),
                                                       ("PTV_low", (0.0, -16.0, -12.0), (16.0, 16.0, 12.0)),
                                                       ("PTV_other", (-8.0, -8.0, -4.0), (8.0, 8.0, 4.0))])
    f = case["files"]
    res = check(plan=tmp_path / "RP_sib.dcm", dose=[f["plan"], f[1], f[2]], ct=d / "ct",
                struct=tmp_path / "RS_sib.dcm", beam_model="dcpt_v2", mc=case["res"].mc, levels=_levels(), **FAST)
    for name, rx in (("PTV_high", 0.9), ("PTV_low", 0.5)):
        row = res.structures[name]
        assert row["prescription_gy"] == pytest.approx(rx * float(tps.max()))
        want = float(np.mean(res.tps_gy_zyx[res.masks[name]] >= 0.95 * rx * float(tps.max())))
        assert row["metrics"]["V95"]["tps"] == pytest.approx(want)
    # the boost target against the low dose (what the first dose reference gave before) reads otherwise
    wrong = float(np.mean(res.tps_gy_zyx[res.masks["PTV_high"]] >= 0.95 * 0.5 * float(tps.max())))
    assert wrong - res.structures["PTV_high"]["metrics"]["V95"]["tps"] > 0.3   # measured 0.71 - 0.14
    other = res.structures["PTV_other"]
    assert "V95" not in other["metrics"] and other["prescription_gy"] is None
    assert any("PTV_other" in n and "prescription" in n for n in res.diagnostics), res.diagnostics
    assert res.provenance["prescription_gy"] == {"PTV_high": pytest.approx(0.9 * float(tps.max())),
                                                 "PTV_low": pytest.approx(0.5 * float(tps.max()))}
    # one type whatever the number of targets: {target: Gy} (integrators' audit 2026-12-06, F6)
    assert res.provenance["prescription_gy_by_target"] == res.provenance["prescription_gy"]
    # each structure's ROINumber, the key a script joins on (integrators' F3)
    assert (res.structures["PTV_high"]["roi_number"], res.structures["PTV_low"]["roi_number"]) == (1, 2)
    src = res.provenance["prescription_source"]
    assert "of each target's dose reference (ReferencedROINumber)" in src and "/ 1.1 = " in src, src


def test_without_a_prescription_the_tps_median_of_one_fraction_is_not_divided_again(case, tmp_path):
    """No TargetPrescriptionDose, a 5-fraction plan and TPS doses of one session (FRACTION_SESSION): V95/V100 are
    relative to the TPS median in the target, which is already of one fraction.  Before, it was divided by the 5
    fractions as the plan's prescription is, and every target voxel passed V95 and V100 on both sides."""
    from mcproton._check.api import check
    from mcproton.dicom import write_rtdose

    d, hi = case["dir"], case["hi"]
    rp = pydicom.dcmread(d / "RP.dcm")
    rp.FractionGroupSequence[0].NumberOfFractionsPlanned = 5
    rp.save_as(tmp_path / "RP_5fx.dcm")
    vs, org = case["grid"]
    study = StudyReference(frame_of_reference_uid=FOR, plan_sop_instance_uid=case["plan_uid"])
    files = [write_rtdose(hi.total_gy_zyx, vs, org, tmp_path / "RD_plan.dcm", study=study,
                          summation_type="FRACTION_SESSION")]
    files += [write_rtdose(dose, vs, org, tmp_path / f"RD_beam{b}.dcm", study=study, summation_type="BEAM_SESSION",
                           referenced_beam_number=b) for b, dose in hi.beams_gy_zyx.items()]
    res = check(plan=tmp_path / "RP_5fx.dcm", dose=files, ct=d / "ct", struct=d / "RS.dcm", beam_model="dcpt_v2",
                mc=case["res"].mc, levels=_levels(), **FAST)
    assert res.inputs.all_fractions is False and res.inputs.fractions == 5
    ptv = res.tps_gy_zyx[res.masks["PTV"]]
    assert res.structures["PTV"]["prescription_gy"] == pytest.approx(float(np.median(ptv)))
    assert res.provenance["prescription_gy"] == pytest.approx(float(np.median(ptv)))
    assert res.provenance["prescription_gy_by_target"] == {"PTV": pytest.approx(float(np.median(ptv)))}   # F6
    assert res.structures["PTV"]["metrics"]["V100"]["tps"] == pytest.approx(float(np.mean(ptv >= np.median(ptv))))
    assert res.structures["PTV"]["metrics"]["V100"]["tps"] < 0.6      # about half; 1.0 when it was divided by 5


def test_without_a_prescription_each_target_is_relative_to_its_own_median(case, tmp_path):
    """No TargetPrescriptionDose and two targets at different dose levels (a boost): each target's V95/V100 are
    relative to its own TPS median.  Before 2026-12-05 every target took the first target's median, so the low-dose
    target's V95 read about 0 (plausible for a cold target, but wrong)."""
    from mcproton._check.api import check

    d = case["dir"]
    tps = case["hi"].total_gy_zyx.copy()
    vs, org = case["grid"]
    xs = org[0] + vs[0] * np.arange(tps.shape[2])
    tps[:, :, xs > 0] *= 0.5                                          # the low-dose half: PTV_low lies there
    rd = _tps(case, "rd_boost", tps)
    _write_rs(tmp_path / "RS_two.dcm", None, targets=[("PTV_high", (-16.0, -16.0, -12.0), (0.0, 16.0, 12.0)),
                                                       ("PTV_low", (0.0, -16.0, -12.0), (16.0, 16.0, 12.0))])
    res = check(plan=d / "RP.dcm", dose=rd, ct=d / "ct", struct=tmp_path / "RS_two.dcm", beam_model="dcpt_v2",
                mc=case["res"].mc, levels=_levels(), **FAST)
    for name in ("PTV_high", "PTV_low"):
        own = res.tps_gy_zyx[res.masks[name]]
        assert res.structures[name]["prescription_gy"] == pytest.approx(float(np.median(own)))
        assert 0.4 < res.structures[name]["metrics"]["V100"]["tps"] < 0.6     # about half of the target, by definition
        # so labelled (audit report_numbers F3: "V100 50 %" read as half the target under-dosed), JSON and page
        assert res.structures[name]["metrics"]["V100"]["label"] == "V100 of the TPS median"
    low = res.tps_gy_zyx[res.masks["PTV_low"]]
    high_median = float(np.median(res.tps_gy_zyx[res.masks["PTV_high"]]))
    assert float(np.mean(low >= 0.95 * high_median)) < 0.1     # what the first target's median gave it
    assert "own TPS median" in res.provenance["prescription_source"]


def test_without_a_prescription_the_organ_note_says_the_targets_tps_d50(case, tmp_path):
    """No TargetPrescriptionDose: the organ-at-risk note's dose threshold is 2 % of the target's TPS D50, and it
    says so.  Before, each target's TPS median (the V95/V100 reference) was passed on as "the prescription" and the
    note read "2 % of the prescription (0.0219 Gy)" of a plan that has none (check review 2026-12-06, F3).  The MC
    is the TPS dose 25 % higher in the organ only."""
    import dataclasses

    from mcproton._check.api import check

    d = case["dir"]
    mc = case["res"].mc
    vs, org = case["grid"]
    nz, ny, nx = mc.total_gy_zyx.shape
    zs, ys, xs = (o + v * np.arange(n) for o, v, n in zip(org[::-1], vs[::-1], (nz, ny, nx)))
    Z, Y, X = np.meshgrid(zs, ys, xs, indexing="ij")
    cord = (np.abs(X) <= 16) & (Y >= 16) & (Y <= 28) & (np.abs(Z) <= 12)
    hot = dataclasses.replace(mc, total_gy_zyx=np.where(cord, 1.25 * mc.total_gy_zyx, mc.total_gy_zyx))
    _write_rs(tmp_path / "RS_cord.dcm", None, organs=[("Cord", (-16.0, 16.0, -12.0), (16.0, 28.0, 12.0))])
    res = check(plan=d / "RP.dcm", dose=_tps(case, "rd_same", mc.total_gy_zyx), ct=d / "ct",
                struct=tmp_path / "RS_cord.dcm", beam_model="dcpt_v2", mc=hot, levels=_levels(), **FAST)
    assert "own TPS median" in res.provenance["prescription_source"]
    note = [n for n in res.diagnostics if n.startswith("organ(s) at risk")]
    assert len(note) == 1 and "Cord Dmean +25.0 %" in note[0], res.diagnostics
    d50 = res.structures["PTV"]["metrics"]["D50"]["tps_gy"]
    assert f"2 % of the target's TPS D50 ({d50:.3g} Gy)" in note[0] and "prescription" not in note[0], note[0]


def test_a_given_prescription_is_used_for_all_fractions_and_checked(case, tmp_path):
    """``prescription=`` (``--prescription``): one dose for every target or {ROI: dose}, Gy(RBE) for all fractions
    of the plan as its TargetPrescriptionDose, converted as that is (divided by the RBE 1.1 for this PHYSICAL TPS
    dose, and by the fractions where the TPS dose holds one); an unknown ROI name or a dose <= 0 is refused."""
    from mcproton._check.api import check
    from mcproton._check.cli import _prescription_arg
    from mcproton._check.inputs import CheckInputError
    from mcproton.dicom import write_rtdose

    d, hi = case["dir"], case["hi"]
    f = case["files"]
    kw = {"ct": d / "ct", "struct": d / "RS.dcm", "beam_model": "dcpt_v2", "mc": case["res"].mc,
          "levels": _levels(), **FAST}
    rx = round(1.1 * float(np.median(hi.total_gy_zyx[case["res"].masks["PTV"]])), 5)   # Gy(RBE): the median x 1.1
    res = check(plan=d / "RP.dcm", dose=[f["plan"], f[1], f[2]], prescription=rx, **kw)
    ptv = res.tps_gy_zyx[res.masks["PTV"]]
    assert res.structures["PTV"]["prescription_gy"] == pytest.approx(rx / 1.1)
    assert res.provenance["prescription_gy"] == pytest.approx(rx / 1.1)
    assert res.structures["PTV"]["metrics"]["V95"]["tps"] == pytest.approx(float(np.mean(ptv >= 0.95 * rx / 1.1)))
    assert res.structures["PTV"]["metrics"]["V95"]["label"] == "V95"     # of the prescription: no "TPS median"
    src = res.provenance["prescription_source"]
    assert src.startswith(f"given (--prescription): {rx:g} Gy(RBE) / 1.1 = ") and "divided by the RBE 1.1" in src \
        and "the plan gives no TargetPrescriptionDose" in src, src
    assert res.settings["prescription_given"] == rx and res.settings["prescription_anyway"] is False
    res = check(plan=d / "RP.dcm", dose=[f["plan"], f[1], f[2]], prescription={"PTV": 0.8 * rx}, **kw)
    assert res.structures["PTV"]["prescription_gy"] == pytest.approx(0.8 * rx / 1.1)
    with pytest.raises(CheckInputError, match=r"\['PTV_typo'\], which are not targets .*its targets: \['PTV'\]"):
        check(plan=d / "RP.dcm", dose=[f["plan"], f[1], f[2]], prescription={"PTV_typo": 1.2}, **kw)
    for bad in (0.0, -2.0, float("nan"), "x"):
        with pytest.raises(CheckInputError, match="prescription must be a dose in Gy above 0"):
            check(plan=d / "RP.dcm", dose=[f["plan"], f[1], f[2]], prescription=bad, **kw)
    # a 5-fraction plan and a TPS dose of one session: the prescription (all fractions) divided by 5 too
    rp = pydicom.dcmread(d / "RP.dcm")
    rp.FractionGroupSequence[0].NumberOfFractionsPlanned = 5
    rp.save_as(tmp_path / "RP_5fx.dcm")
    vs, org = case["grid"]
    study = StudyReference(frame_of_reference_uid=FOR, plan_sop_instance_uid=case["plan_uid"])
    one = write_rtdose(hi.total_gy_zyx, vs, org, tmp_path / "RD_fx.dcm", study=study,
                       summation_type="FRACTION_SESSION")
    res = check(plan=tmp_path / "RP_5fx.dcm", dose=one, prescription=5 * rx, **kw)
    assert res.structures["PTV"]["prescription_gy"] == pytest.approx(rx / 1.1)
    assert "/ 1.1 / 5 fractions = " in res.provenance["prescription_source"]
    # the command line's form
    assert _prescription_arg(["54"]) == 54.0 and _prescription_arg(None) is None
    assert _prescription_arg(["PTV boost=60", "PTV=54"]) == {"PTV boost": 60.0, "PTV": 54.0}
    for bad in (["54", "PTV=1"], ["PTV=abc"], ["=5"]):
        with pytest.raises(ValueError, match="--prescription"):
            _prescription_arg(bad)


def test_a_given_prescription_read_as_gy_rbe_for_a_physical_dose_is_said(case, tmp_path, report_figures_blank):
    """Against this PHYSICAL TPS dose, with a plan that gives no TargetPrescriptionDose, a typed prescription is read
    as Gy(RBE) and divided by the RBE: the log, check.json's diagnostics and the report say so, and what to give for
    a physical dose (the value x 1.1); the report's settings row gives the typed value in Gy(RBE) and the one used in
    Gy.  Before (the review of 2026-12-07, R2 and R7) nothing said it: a physicist who typed the physical 1.8 Gy
    OpenTPS optimised to had V100 read 98 % in place of 52 %."""
    from mcproton._check.api import check

    d, f = case["dir"], case["files"]
    rx = round(float(np.median(case["hi"].total_gy_zyx[case["res"].masks["PTV"]])), 4)   # physical, as typed
    lines: list[str] = []
    res = check(plan=d / "RP.dcm", dose=[f["plan"], f[1], f[2]], ct=d / "ct", struct=d / "RS.dcm",
                beam_model="dcpt_v2", mc=case["res"].mc, levels=_levels(), prescription=rx, out=tmp_path / "o",
                log=lines.append, **FAST)
    assert res.structures["PTV"]["prescription_gy"] == pytest.approx(rx / 1.1)
    said = (f"--prescription {rx:g} was read as Gy(RBE), as a TargetPrescriptionDose is: {rx:g} Gy(RBE) / the RBE "
            f"1.1 = {rx / 1.1:.4g} Gy physical for this PHYSICAL TPS dose (the TPS dose's median in 'PTV': ")
    give = f"if you meant {rx:g} Gy physical, give --prescription {rx * 1.1:.4g} (the physical dose x the RBE 1.1)"
    note = [n for n in res.diagnostics if n.startswith(said)]
    assert len(note) == 1 and note[0].endswith(give), res.diagnostics
    assert f"mcproton check: note: {note[0]}" in lines, lines
    assert note[0] in json.loads((tmp_path / "o" / "check.json").read_text())["diagnostics"]
    page = (tmp_path / "o" / "check.html").read_text()
    assert html.escape(give) in page
    assert f"<td>prescription</td><td>{rx:g} Gy(RBE)</td><td>used: {rx / 1.1:.3g} Gy (given" in page


@pytest.fixture(scope="module")
def plan_rx(case, tmp_path_factory):
    """The test plan in 5 fractions with a TargetPrescriptionDose (SITE) of the TPS dose's median in the PTV x 1.1
    x 5 (Gy(RBE), all fractions), and the 'TPS' dose as one fraction of it (FRACTION_SESSION); the plan's own
    check (no --prescription) of it, with the fixture's MC."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from mcproton._check.api import check
    from mcproton.dicom import write_rtdose

    d, hi = case["dir"], case["hi"]
    tmp = tmp_path_factory.mktemp("plan_rx")
    rx = round(5 * 1.1 * float(np.median(hi.total_gy_zyx[case["res"].masks["PTV"]])), 4)
    rp = pydicom.dcmread(d / "RP.dcm")
    rp.FractionGroupSequence[0].NumberOfFractionsPlanned = 5
    dr = Dataset()
    dr.DoseReferenceNumber, dr.DoseReferenceStructureType, dr.DoseReferenceType = 1, "SITE", "TARGET"
    dr.TargetPrescriptionDose = rx
    rp.DoseReferenceSequence = Sequence([dr])
    rp.save_as(tmp / "RP_rx.dcm")
    vs, org = case["grid"]
    study = StudyReference(frame_of_reference_uid=FOR, plan_sop_instance_uid=case["plan_uid"])
    one = write_rtdose(hi.total_gy_zyx, vs, org, tmp / "RD_fx.dcm", study=study, summation_type="FRACTION_SESSION")
    kw = {"plan": tmp / "RP_rx.dcm", "dose": one, "ct": d / "ct", "struct": d / "RS.dcm", "beam_model": "dcpt_v2",
          "mc": case["res"].mc, "levels": _levels(), **FAST}
    return {"rx": rx, "kw": kw, "own": check(**kw)}


@pytest.mark.parametrize("typed,slip", [
    (100, "cGy"),                                               # 3060 for 30.6
    (1 / 5, "the dose of one of the plan's 5 fractions"),       # 1.8 for 30.6 in 17 fractions
    (1 / 1.1, r"a physical dose \(Gy\(RBE\) / the RBE 1.1\)"),  # 27.8 for 30.6 Gy(RBE)
    (1 / 5 / 1.1, r"the dose of one of the plan's 5 fractions and a physical dose \(Gy\(RBE\) / the RBE 1.1\)"),
    (100 / 5, "cGy and the dose of one of the plan's 5 fractions"),
])
def test_a_given_prescription_off_by_a_unit_slip_is_refused_naming_it(plan_rx, typed, slip):
    """--prescription in cGy, of one fraction or physical, against the plan's TargetPrescriptionDose (Gy(RBE), all
    fractions): refused, naming the slip and the plan's value to give.  Before (the units audit of 2026-12-07, F1)
    each was taken as given, so V95/V100 read 0 or 1 and a 100 x prescription silenced the organ-at-risk note."""
    from mcproton._check.api import check
    from mcproton._check.inputs import CheckInputError

    rx = plan_rx["rx"]
    with pytest.raises(CheckInputError, match=rf"prescription \(--prescription {rx * typed:g}\): .* x the plan's "
                                              rf"TargetPrescriptionDose {rx:g} Gy\(RBE\), so it looks like {slip}; "
                                              rf"give {rx:g}\. --prescription is in Gy\(RBE\) .*--prescription-anyway"):
        check(prescription=rx * typed, **plan_rx["kw"])


def test_the_plans_own_prescription_given_is_used_as_the_plans_and_the_way_out_keeps_a_slip(plan_rx):
    """The plan's own TargetPrescriptionDose given as --prescription gives the plan's V95/V100 (before, it was taken
    as physical Gy and not divided by the RBE: V95 75 % -> 15 % in the audit's demo); --prescription-anyway keeps
    a value that looks like a slip, and the report says what it differs from."""
    from mcproton._check.api import check

    rx, own = plan_rx["rx"], plan_rx["own"]
    res = check(prescription=rx, **plan_rx["kw"])
    assert res.structures["PTV"]["prescription_gy"] == pytest.approx(own.structures["PTV"]["prescription_gy"])
    assert res.structures["PTV"]["prescription_gy"] == pytest.approx(rx / 1.1 / 5)
    assert res.structures["PTV"]["metrics"]["V95"] == own.structures["PTV"]["metrics"]["V95"]
    assert not any("anyway" in n for n in res.diagnostics)
    res = check(prescription=100 * rx, prescription_anyway=True, **plan_rx["kw"])
    assert res.structures["PTV"]["prescription_gy"] == pytest.approx(100 * rx / 1.1 / 5)
    assert res.settings["prescription_anyway"] is True
    assert "kept with --prescription-anyway although" in res.provenance["prescription_source"]
    assert any("looks like cGy: kept (--prescription-anyway)" in n for n in res.diagnostics), res.diagnostics


def test_a_given_prescription_far_from_the_tps_median_is_refused(case, tmp_path):
    """Without a TargetPrescriptionDose in the plan, --prescription is compared with the TPS dose's median in the
    target: about 100 x (cGy), or more than 2 x off, refused; 1.5 x (a deliberate other reference) used.  One dose for
    every target is compared with the highest median (the target treated); ROI=GY with that target's."""
    from mcproton._check.api import check
    from mcproton._check.inputs import CheckInputError

    d, f = case["dir"], case["files"]
    kw = {"plan": d / "RP.dcm", "dose": [f["plan"], f[1], f[2]], "ct": d / "ct", "struct": d / "RS.dcm",
          "beam_model": "dcpt_v2", "mc": case["res"].mc, "levels": _levels(), **FAST}
    med = float(np.median(case["hi"].total_gy_zyx[case["res"].masks["PTV"]]))
    rx = 1.1 * med
    with pytest.raises(CheckInputError, match=r"is 100 x the TPS dose's median in the target 'PTV' .*looks like cGy; "
                                              rf"give about {rx:.3g}"):
        check(prescription=100 * rx, **kw)
    with pytest.raises(CheckInputError, match=r"prescription of 'PTV' \(--prescription PTV=.*is 3 x the TPS dose's "
                                              r"median in the target 'PTV' .*more than a factor 2 from it"):
        check(prescription={"PTV": 3 * rx}, **kw)
    with pytest.raises(CheckInputError, match=r"is 0.4 x the TPS dose's median"):
        check(prescription=0.4 * rx, **kw)
    res = check(prescription=1.5 * rx, **kw)
    assert res.structures["PTV"]["prescription_gy"] == pytest.approx(1.5 * med)


def _with_dose_references(case, tmp_path, source_plan: Path) -> Path:
    """The test plan (its SOP Instance UID, to which the TPS doses refer) with a real plan's DoseReferenceSequence."""
    rp = pydicom.dcmread(case["dir"] / "RP.dcm")
    rp.DoseReferenceSequence = pydicom.dcmread(source_plan, stop_before_pixels=True).DoseReferenceSequence
    rp.save_as(tmp_path / "RP_refs.dcm")
    return tmp_path / "RP_refs.dcm"


def test_point_dose_references_are_not_a_targets_prescription(case, tmp_path, report_figures_blank):
    """The DCPT head-phantom plan (Eclipse, RN_headphantom_rs.dcm) has two COORDINATES dose references
    'Verification3/5' of 8.639 Gy(RBE), points of a verification box, no ROI: neither is the PTV's prescription, so
    V95/V100 are relative to the PTV's TPS median and the report says why.  Before (audit finding 7), 8.64 Gy was
    the PTV's prescription, labelled "of each target's dose reference (ReferencedROINumber)"."""
    from mcproton._check.api import check

    f = case["files"]
    plan = _with_dose_references(case, tmp_path, DATA / "RN_headphantom_rs.dcm")
    res = check(plan=plan, dose=[f["plan"], f[1], f[2]], ct=case["dir"] / "ct", struct=case["dir"] / "RS.dcm",
                beam_model="dcpt_v2", mc=case["res"].mc, levels=_levels(), out=tmp_path / "out", **FAST)
    ptv = res.tps_gy_zyx[res.masks["PTV"]]
    assert res.structures["PTV"]["prescription_gy"] == pytest.approx(float(np.median(ptv)))
    src = res.provenance["prescription_source"]
    assert src.startswith("each target's own TPS median dose (the plan prescribes no target volume or site: "), src
    assert "'Verification3' (COORDINATES), 'Verification5' (COORDINATES) give the dose at a point" in src, src
    assert "ReferencedROINumber" not in src and "8.64" not in src
    assert html.escape("'Verification5' (COORDINATES) give the dose at a point") in (
        tmp_path / "out" / "check.html").read_text()


def test_a_site_prescription_in_gy_rbe_is_divided_by_the_rbe_for_a_physical_dose(case, tmp_path):
    """An Eclipse plan (RN_plan02_mono.dcm) prescribes 2.2 Gy(RBE) to its SITE 'SOBP' and gives a COORDINATES point
    'Mono_160' (2.217 Gy(RBE)): the SITE's dose is every target's prescription, divided by the RBE 1.1 against the
    PHYSICAL TPS dose (before: two prescriptions, so no V95/V100; and Gy(RBE) used as Gy).  ``rbe`` given with
    the physical dose: a warning that it only converts the prescription, which it then does."""
    from mcproton._check.api import check
    from mcproton._io.errors import McprotonWarning

    f = case["files"]
    plan = _with_dose_references(case, tmp_path, DATA / "RN_plan02_mono.dcm")
    kw = {"dose": [f["plan"], f[1], f[2]], "ct": case["dir"] / "ct", "struct": case["dir"] / "RS.dcm",
          "beam_model": "dcpt_v2", "mc": case["res"].mc, "levels": _levels(), **FAST}
    res = check(plan=plan, **kw)
    ptv = res.tps_gy_zyx[res.masks["PTV"]]
    assert res.structures["PTV"]["prescription_gy"] == pytest.approx(2.0)
    assert res.structures["PTV"]["metrics"]["V95"]["tps"] == pytest.approx(float(np.mean(ptv >= 0.95 * 2.0)))
    src = res.provenance["prescription_source"]
    assert src == ("the plan's TargetPrescriptionDose: 2.2 Gy(RBE) / 1.1 = 2 Gy (RBE-weighted; the TPS dose is "
                   "physical, so divided by the RBE 1.1); not the dose at a point of 'Mono_160' (COORDINATES)"), src
    assert not any("--rbe" in w for w in res.warnings)
    with pytest.warns(McprotonWarning, match=r"--rbe 1.2 \(rbe=\) is the RBE of a DoseType EFFECTIVE TPS dose, but "
                                             r"this one is PHYSICAL.*only converts the plan's TargetPrescriptionDose"):
        res = check(plan=plan, rbe=1.2, **kw)
    assert res.structures["PTV"]["prescription_gy"] == pytest.approx(2.2 / 1.2)
    assert "2.2 Gy(RBE) / 1.2 = 1.83 Gy" in res.provenance["prescription_source"]
    assert any(w.startswith("--rbe 1.2 (rbe=)") for w in res.warnings), res.warnings
    # an EFFECTIVE TPS dose (Gy(RBE)) is compared with the prescription as it is
    res = check(plan=plan, dose_type="effective", **{**kw, "mc": None, "primaries": 2000, "target_uncertainty": None,
                                                     "seed": 1})
    assert res.structures["PTV"]["prescription_gy"] == pytest.approx(2.2)
    assert "/ 1.1" not in res.provenance["prescription_source"]


def test_target_uncertainty_and_rbe_checked_as_given(case, tmp_path):
    """``--target-uncertainty`` is checked as the user gave it and named so (before: the per-beam value x sqrt(beams)
    under the key run.target_uncertainty: 'got 7.07' for 5); one too large for the number of beams is refused
    before the transport; ``--rbe`` must be a plausible constant RBE (0.5-2, as ``mcproton run``'s output.rbe)."""
    from mcproton._check.api import check
    from mcproton._check.inputs import CheckInputError

    f = case["files"]
    kw = {"plan": case["dir"] / "RP.dcm", "dose": [f["plan"], f[1], f[2]], "ct": case["dir"] / "ct",
          "struct": case["dir"] / "RS.dcm", "beam_model": "dcpt_v2", "levels": _levels(), **FAST}
    with pytest.raises(CheckInputError, match=r"^target_uncertainty \(--target-uncertainty\) must be a fraction in "
                                              r"\(0, 1\), e.g. 0.01 for 1 %; got 5 \(5 % is 0.05\)$"):
        check(target_uncertainty=5, **kw)
    with pytest.raises(CheckInputError, match=r"got -0.01$"):
        check(target_uncertainty=-0.01, **kw)
    with pytest.raises(CheckInputError, match=r"target_uncertainty \(--target-uncertainty\) 0.8 is too large for 2 "
                                              r"beams: each beam runs to the target x sqrt\(2\) = 1.13"):
        check(target_uncertainty=0.8, **kw)
    for bad in (0, -1.1, 11, float("nan"), "x"):
        with pytest.raises(CheckInputError, match=r"rbe \(--rbe\) = .* is not a plausible constant RBE; give 1.1"):
            check(rbe=bad, **kw)


def test_the_report_says_what_the_machine_check_did(case, tmp_path, report_figures_blank):
    """Audit 24 swallow F2: with a beam model that names no machines the check's record said "machine check: yes"
    (``settings.machine_check`` true: the option, not what was done) and nothing was warned.  Now check.json's
    settings and the report's Settings table say what was checked of the plan against the model (machine and spot
    tunes), and the check warns once; with the DCPT model of the plan's machine, "yes"."""
    from mcproton._check.api import check
    from mcproton._io.beam_model import BUILTIN

    js = json.loads(Path(case["res"].report_json).read_text())
    assert js["settings"]["machine_check"] == ("yes: TreatmentMachineName 'TR1' is of beam model 'dcpt_v2' (TR1, "
                                               "TR2, TR3)")
    assert js["settings"]["spot_tune_check"].startswith("not possible: beam model 'dcpt_v2' declares no spot tunes")
    src = BUILTIN["dcpt_v2"]   # the same model, its `machines` left out
    text = src.read_text()
    assert 'machines = ["TR1", "TR2", "TR3"]' in text
    (tmp_path / "m.toml").write_text(text.replace('machines = ["TR1", "TR2", "TR3"]', "")
                                     .replace('name = "dcpt_v2"', 'name = "no_machines"'))
    for f in src.parent.glob("*.csv"):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    f = case["files"]
    res = check(plan=case["dir"] / "RP.dcm", dose=[f["plan"], f[1], f[2]], ct=case["dir"] / "ct",
                struct=case["dir"] / "RS.dcm", beam_model=tmp_path / "m.toml", levels=_levels(), primaries=2000,
                target_uncertainty=None, seed=2, out=tmp_path / "out", **FAST)
    js = json.loads(Path(res.report_json).read_text())
    done = js["settings"]["machine_check"]
    assert done == ("not possible: beam model 'no_machines' names no treatment machines (`machines`); the plan's "
                    "TreatmentMachineName: 'TR1'"), done
    said = [w for w in js["warnings"] if "names no treatment machines" in w]
    assert len(said) == 1 and "'TR1' was not checked" in said[0], js["warnings"]
    page = Path(res.report_html).read_text()
    row = page[page.index("<td>machine check</td>"):][:400]
    assert f"<td>{html.escape(done)}</td>" in row and "<td>yes</td>" not in row, row
    assert "<td>spot-tune check</td><td>not possible: beam model &#x27;no_machines&#x27; declares no spot" in page


def test_plan_and_dose_on_different_frames(base):
    from mcproton._check.inputs import CheckInputError

    p = _tps(base, "otherframe", base["blob"], frame_of_reference_uid="1.2.3.4.5")
    with pytest.raises(CheckInputError, match="different frames of reference"):
        _recheck(base, p)


def test_a_given_dose_of_another_plan_is_refused(base, tmp_path, capsys):
    """``mcproton check --plan RP_v2.dcm --dose RD_v1.dcm``: a re-optimised plan on the same CT (same patient, same
    frame of reference) with the dose of the earlier version.  The check would compare the MC of one plan with the
    planning system's dose of another and give a verdict about the wrong pair, so it is refused before any
    transport (exit status 2), naming both plans.  Folder pairing picks doses by the plan's UID, so only a dose
    given explicitly reaches this refusal, and no test gave one (mutation audit 2026-12-05, G7)."""
    import re

    from mcproton._check.inputs import CheckInputError, gather
    from mcproton.cli import main

    d = base["dir"]
    v2 = pydicom.dcmread(d / "RP.dcm")
    v2.SOPInstanceUID = v2.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.4242.2"
    v2.RTPlanLabel = "version 2"
    v2.save_as(tmp_path / "RP_v2.dcm")
    rd_v1 = _tps(base, "of_v1", base["blob"])   # refers to RP.dcm (base["plan_uid"])
    v2_uid = re.escape("1.2.826.0.1.3680043.8.498.4242.2")
    with pytest.raises(CheckInputError, match=rf"RT Dose of_v1\.dcm refers to the plan {re.escape(base['plan_uid'])}, "
                                              rf"not to RP_v2\.dcm \({v2_uid}\): it is another plan's dose; give the "
                                              "dose of this plan"):
        gather(plan=tmp_path / "RP_v2.dcm", dose=rd_v1, ct=d / "ct", struct=d / "RS.dcm")
    rc = main(["check", "--plan", str(tmp_path / "RP_v2.dcm"), "--dose", str(rd_v1), "--ct", str(d / "ct"),
               "--struct", str(d / "RS.dcm"), "--beam-model", "dcpt_v2", "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "it is another plan's dose" in err and base["plan_uid"] in err, err
    assert not (tmp_path / "o" / "RD_mc.dcm").exists()
    gather(plan=d / "RP.dcm", dose=rd_v1, ct=d / "ct", struct=d / "RS.dcm")   # with its own plan: accepted


def test_a_structure_set_whose_rois_lie_in_another_frame(base, tmp_path):
    """The structure set's own frame is the plan's, but its ROIs name another (ReferencedFrameOfReferenceUID of
    the StructureSetROISequence, where DICOM places each ROI): refused like a structure set of another frame.
    Before: only the set's frame was compared, and the contours were used on this CT."""
    from mcproton._check.inputs import CheckInputError, gather

    rs = pydicom.dcmread(base["dir"] / "RS.dcm")
    for r in rs.StructureSetROISequence:
        r.ReferencedFrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.777"
    rs.save_as(tmp_path / "RS_roi_frame.dcm")
    d = base["dir"]
    with pytest.raises(CheckInputError, match=r"different frames of reference .*structure set ROI 'PTV': "
                                              r"1\.2\.826\.0\.1\.3680043\.8\.498\.777"):
        gather(plan=d / "RP.dcm", dose=_tps(base, "ok_rf", base["blob"]), ct=d / "ct",
               struct=tmp_path / "RS_roi_frame.dcm")
    gather(plan=d / "RP.dcm", dose=_tps(base, "ok_rf", base["blob"]), ct=d / "ct", struct=d / "RS.dcm")   # accepted


def test_dose_grid_not_covering_the_body(base):
    from mcproton.dicom import write_rtdose

    vs, org = base["grid"]
    d = base["blob"][:, 10:, 10:]          # cut through the box where the dose is
    o = (org[0] + 10 * vs[0], org[1] + 10 * vs[1], org[2])
    p = write_rtdose(d, vs, o, base["dir"] / "cut.dcm",
                     study=StudyReference(frame_of_reference_uid=FOR, plan_sop_instance_uid=base["plan_uid"]))
    from mcproton._check.inputs import CheckInputError

    with pytest.raises(CheckInputError, match="does not cover the irradiated body"):
        _recheck(base, p)
    _recheck(base, _tps(base, "whole", base["blob"]), _only_inputs=True)   # the whole grid is accepted


def test_a_grid_cutting_the_second_beam_is_refused_with_per_beam_doses_only(base):
    """Per-beam TPS doses and no plan dose, on a grid cut at x = +30 mm: beam 1's dose (a narrow blob at the
    centre) lies well inside it, beam 2's (gantry 90: entering the box at x = +40 mm) is cut through.  Refused,
    naming beam 2, as the plan dose of the same grid is.  Before, only the first beam's dose (``inp.reference``)
    was looked at and the check passed with beam 2's entrance left out (check review 2026-12-06, F1)."""
    from mcproton._check.inputs import CheckInputError
    from mcproton.dicom import write_rtdose

    vs, org = base["grid"]
    nz, ny, nx = base["shape"]
    zs, ys, xs = (o + v * np.arange(n) for o, v, n in zip(org[::-1], vs[::-1], (nz, ny, nx)))
    Z, Y, X = np.meshgrid(zs, ys, xs, indexing="ij")
    water = base["blob"] > 0
    b1 = 2.0 * np.exp(-(X ** 2 + Y ** 2 + Z ** 2) / (2 * 8.0 ** 2)) * water     # 1e-3 of its maximum at x = 30
    b2 = 2.0 * np.exp(-(Y ** 2 + Z ** 2) / (2 * 8.0 ** 2)) * water               # flat along x: 100 % on the cut
    keep = xs <= 30.0
    study = StudyReference(frame_of_reference_uid=FOR, plan_sop_instance_uid=base["plan_uid"])
    files = [write_rtdose(d[:, :, keep], vs, org, base["dir"] / f"cut_beam{b}.dcm", study=study,
                          summation_type="BEAM", referenced_beam_number=b) for b, d in ((1, b1), (2, b2))]
    with pytest.raises(CheckInputError, match=r"cut_beam2\.dcm \(beam 2's dose\) does not cover the irradiated body"):
        _recheck(base, files)
    plan = write_rtdose((b1 + b2)[:, :, keep], vs, org, base["dir"] / "cut_plan.dcm", study=study)
    with pytest.raises(CheckInputError, match=r"cut_plan\.dcm does not cover the irradiated body"):
        _recheck(base, plan)
    whole = [write_rtdose(d, vs, org, base["dir"] / f"whole_beam{b}.dcm", study=study, summation_type="BEAM",
                          referenced_beam_number=b) for b, d in ((1, b1), (2, b2))]
    _recheck(base, whole, _only_inputs=True)   # the whole grid is accepted


def test_unknown_dose_type(base):
    from mcproton._check.inputs import CheckInputError

    p = _tps(base, "errtype", base["blob"])
    ds = pydicom.dcmread(p)
    ds.DoseType = "ERROR"
    ds.save_as(p)
    with pytest.raises(CheckInputError, match="DoseType 'ERROR'"):
        _recheck(base, p)


def test_missing_beam_model(base):
    from mcproton._check.api import check
    from mcproton._check.inputs import CheckInputError

    d = base["dir"]
    with pytest.raises(CheckInputError, match="no beam model"):
        check(plan=d / "RP.dcm", dose=_tps(base, "ok", base["blob"]), ct=d / "ct", beam_model=None, **FAST)


def test_mismatched_fractions(base):
    from mcproton._check.inputs import CheckInputError

    p = _tps(base, "fraction", base["blob"], summation_type="FRACTION_SESSION")
    with pytest.raises(CheckInputError, match="holds one fraction"):
        _recheck(base, p, fractions="all")


@pytest.fixture(scope="module")
def five_fx(base):
    """The base case's beams in a plan of 5 fractions (no transport: the pairing only)."""
    d = base["dir"] / "fx5"
    d.mkdir()
    spots = spot_grid(3, 8.0)
    layers = [(90.0, spots, [1.0] * 9)]
    plan = make_plan([{"gantry": 0.0, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "layers": layers, "meterset": 20.0},
                      {"gantry": 90.0, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "layers": layers, "meterset": 20.0}],
                     frame_of_reference_uid=FOR, n_fractions=5)
    save(plan, d / "RP.dcm")
    return {**base, "dir": d, "plan_uid": str(plan.SOPInstanceUID)}


@pytest.mark.parametrize("kinds, fractions, all_fx", [
    (["PLAN"], "auto", True),
    (["FRACTION"], "auto", True),                   # PS3.3: one fraction GROUP, i.e. all its fractions
    (["FRACTION_SESSION"], "auto", False),          # one session: what `mcproton run` writes for "fraction"
    ([("BEAM", 1), ("BEAM", 2)], "auto", True),
    ([("BEAM_SESSION", 1), ("BEAM_SESSION", 2)], "auto", False),
    (["FRACTION_SESSION", ("BEAM_SESSION", 1)], "auto", False),
    (["FRACTION"], "one", False),                   # a system that meant one fraction: the user says so
])
def test_summation_types_as_dicom_defines_them(five_fx, kinds, fractions, all_fx):
    """DoseSummationType (DICOM PS3.3 C.8.8.3.1) -> how many of the plan's 5 fractions the MC must compute."""
    from mcproton._check.inputs import gather

    paths = []
    for i, k in enumerate(kinds):
        st, beam = (k, None) if isinstance(k, str) else k
        kw = {"referenced_beam_number": beam} if beam else {}
        paths.append(_tps(five_fx, f"{st}_{i}_{fractions}", five_fx["blob"], summation_type=st, **kw))
    inp = gather(plan=five_fx["dir"] / "RP.dcm", dose=paths, fractions=fractions)
    assert inp.fractions == 5 and inp.all_fractions is all_fx
    assert (inp.total is not None) == any(isinstance(k, str) for k in kinds)
    assert sorted(inp.beams) == sorted(k[1] for k in kinds if not isinstance(k, str))
    if kinds == ["FRACTION"]:
        assert any("FRACTION read as" in line for line in inp.pairing)


@pytest.mark.parametrize("kinds, fractions, match", [
    (["FRACTION_SESSION"], "all", "holds one fraction .DoseSummationType FRACTION_SESSION"),
    ([("BEAM_SESSION", 1)], "all", "holds one fraction"),
    (["PLAN"], "one", "is a PLAN dose .all 5 fractions"),
    ([("BEAM", 1)], "one", "is a BEAM dose"),
    (["PLAN", ("BEAM_SESSION", 1)], "auto", "different numbers of fractions"),
    (["MULTI_PLAN"], "auto", "DoseSummationType MULTI_PLAN is not supported"),
    (["RECORD"], "auto", "DoseSummationType RECORD is not supported"),
])
def test_summation_types_that_cannot_be_matched_are_refused(five_fx, kinds, fractions, match):
    from mcproton._check.inputs import CheckInputError, gather

    paths = []
    for i, k in enumerate(kinds):
        st, beam = (k, None) if isinstance(k, str) else k
        kw = {"referenced_beam_number": beam} if beam else {}
        if st in ("MULTI_PLAN", "RECORD"):
            p = _tps(five_fx, f"bad_{st}", five_fx["blob"], summation_type="PLAN")
            ds = pydicom.dcmread(p)
            ds.DoseSummationType = st
            ds.save_as(p)
            paths.append(p)
            continue
        paths.append(_tps(five_fx, f"r_{st}_{i}_{fractions}", five_fx["blob"], summation_type=st, **kw))
    with pytest.raises(CheckInputError, match=match):
        gather(plan=five_fx["dir"] / "RP.dcm", dose=paths, fractions=fractions)


def test_the_check_reads_what_mcproton_run_writes_for_one_fraction(five_fx, tmp_path):
    """`mcproton run` with output.dose_summation = "fraction" writes FRACTION_SESSION (one session); the check pairs
    it as one fraction of the plan (it refused it before: the two sides disagreed on the standard)."""
    from mcproton._check.inputs import gather
    from mcproton._io.rtdose import dose_contents

    class _B:
        def __init__(self, n):
            self.meta = {"beam_number": n, "fractions": 5, "fractions_planned": 5, "plan_beam_numbers": [1, 2],
                         "plan_sop_instance_uid": five_fx["plan_uid"]}

    c = dose_contents([_B(1), _B(2)], summation="fraction")
    assert c.summation_type == "FRACTION_SESSION"
    p = _tps(five_fx, "from_run", five_fx["blob"], summation_type=c.summation_type)
    inp = gather(plan=five_fx["dir"] / "RP.dcm", dose=p)
    assert inp.all_fractions is False and inp.total is not None


def test_the_checks_beams_take_the_physics_water_model(base, monkeypatch):
    """The check turns the plan into beams with its physics' water model, so that a range shifter's WET is taken in
    the water the MC transports (the units audit of 2026-12-07, F4: always ICRU 90's before)."""
    from mcproton._check import api

    seen = []
    plan_beams = api.beams_of_plan

    def beams_of_plan(*a, **k):
        seen.append(k.get("water_model"))
        return plan_beams(*a, **k)

    def stop(*a, **k):
        raise RuntimeError("transport reached")

    monkeypatch.setattr(api, "beams_of_plan", beams_of_plan)
    monkeypatch.setattr(api, "run_mc", stop)
    d = base["dir"]
    kw = dict(plan=d / "RP.dcm", dose=_tps(base, "wm", base["blob"]), ct=d / "ct", struct=d / "RS.dcm",
              beam_model="dcpt_v2", **FAST)
    for physics, want in (({"water_model": "pstar"}, "pstar"), (None, "icru90")):
        with pytest.raises(RuntimeError, match="transport reached"):
            api.check(physics=physics, **kw)
        assert seen[-1] == want, seen


def test_the_checks_ct_calibration_takes_the_physics_water_model(base, tmp_path, monkeypatch):
    """A HU -> SPR table (--calibration of hu_spr.csv) is turned into densities with the check's physics, its water
    model and I-values, as mcproton run reads phantom.calibration with [physics] (HUCalibration.load_for_physics):
    the CT's SPRs are then in the MC's water, as the range shifters' WETs are.  Before (audit 27 followb) the check
    read them in ICRU 90 water whatever its physics (here PMMA 0.50 % denser per SPR with PSTAR water); the default
    physics reads as before, bitwise."""
    from mcproton._check import api
    from mcproton._io.hu_calibration import HUCalibration

    cal = tmp_path / "clinic_spr"
    cal.mkdir()
    (cal / "hu_spr.csv").write_text("HU,SPR\n-1000,0.001\n0,1.05\n3000,2.5\n")
    (cal / "hu_materials.csv").write_text("hu_lo,name,w_H,w_C,w_O\n-1000,pmma,0.080538,0.599848,0.319614\n")
    seen = []

    def stop(inputs, geometry, *a, **k):
        seen.append(geometry.density_g_cm3_zyx.copy())
        raise RuntimeError("transport reached")

    monkeypatch.setattr(api, "run_mc", stop)
    d = base["dir"]
    kw = dict(plan=d / "RP.dcm", dose=_tps(base, "cal_wm", base["blob"]), ct=d / "ct", struct=d / "RS.dcm",
              beam_model="dcpt_v2", calibration=str(cal), **FAST)
    for physics in ({"water_model": "pstar"}, None, {"water_model": "icru90"}):
        with pytest.raises(RuntimeError, match="transport reached"):
            api.check(physics=physics, **kw)
    pstar, default, icru90 = seen
    box = default > 0.5   # the 0 HU box: PMMA at SPR 1.05
    want = {m: HUCalibration.load(cal, water_model=m).density_from_hu(np.zeros(1))[0] for m in ("icru90", "pstar")}
    assert want["pstar"] / want["icru90"] == pytest.approx(1.0050, abs=2e-4)
    np.testing.assert_allclose(pstar[box], want["pstar"], rtol=1e-6)
    np.testing.assert_allclose(default[box], want["icru90"], rtol=1e-6)
    assert np.array_equal(default, icru90)
    # a reused MC dose (mc=) of that calibration and physics is its own: its calibration's data are compared as read
    # with the physics (not refused as computed with another calibration); with the default physics they differ
    from types import SimpleNamespace

    from mcproton._check.inputs import CheckInputError
    from mcproton.settings import PhysicsSettings

    rec = {"name": "clinic_spr", "data_sha256": HUCalibration.load(cal, water_model="pstar").data_sha256()}
    mc = SimpleNamespace(provenance={"calibration_record": rec})
    api._check_reused_mc_models(mc, str(cal), None, PhysicsSettings(water_model="pstar"))
    with pytest.raises(CheckInputError, match="was computed with the HU calibration 'clinic_spr'"):
        api._check_reused_mc_models(mc, str(cal), None, None)


@pytest.mark.parametrize("given, said", [
    ("cal_nomat", "cal_nomat: the folder holds hu_density.csv but no hu_materials.csv"),
    ("cal_nomat/hu_density.csv", "cal_nomat/hu_density.csv is a file, not a calibration folder; give the folder"),
    ("nosuchcal", "unknown calibration 'nosuchcal': not a built-in name"),
])
def test_a_calibration_refused_names_the_option(base, tmp_path, monkeypatch, capsys, given, said):
    """`mcproton check --calibration X`: a calibration that cannot be read is refused (exit 2) naming --calibration
    and the value, as mcproton run names phantom.calibration, with where an unknown name was looked for (the
    error-message audit 27, F4: it named only the path); a reused MC dose's comparison reads it alike."""
    from types import SimpleNamespace

    from mcproton._check import api
    from mcproton._io.errors import CalibrationError
    from mcproton.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "cal_nomat").mkdir()
    (tmp_path / "cal_nomat" / "hu_density.csv").write_text("HU,density_g_cm3\n-1000,0.001\n3000,2.8\n")
    d = base["dir"]
    rc = main(["check", "--plan", str(d / "RP.dcm"), "--dose", str(_tps(base, "cal_bad", base["blob"])),
               "--ct", str(d / "ct"), "--struct", str(d / "RS.dcm"), "--beam-model", "dcpt_v2",
               "--calibration", given, "--out", str(tmp_path / "o"), "--quiet", "--backend", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and f"mcproton: error: --calibration {given}: {said}" in err, err
    assert ("looked for the folder " + str(tmp_path / "nosuchcal") in err) == (given == "nosuchcal"), err
    with pytest.raises(CalibrationError, match=f"^--calibration {given}: "):
        api._check_reused_mc_models(SimpleNamespace(provenance={}), given, None)


def test_cli_help_and_bad_input_exit_status(base, capsys):
    from mcproton.cli import main

    with pytest.raises(SystemExit) as e:
        main(["check", "--help"])
    assert e.value.code == 0 and "--phantom-from-struct" in capsys.readouterr().out
    d = base["dir"]
    rc = main(["check", "--plan", str(d / "RP.dcm"), "--dose", str(_tps(base, "ok", base["blob"])),
               "--ct", str(d / "ct"),
               "--out", str(d / "cli")])
    assert rc == 2 and "no beam model" in capsys.readouterr().err
    # --prescription's unit in the help; --prescription-anyway needs a --prescription, and none with --batch
    with pytest.raises(SystemExit):
        main(["check", "--help"])
    assert "Gy(RBE) for all fractions of the plan, as the plan's TargetPrescriptionDose" in \
        " ".join(capsys.readouterr().out.split())
    for extra, said in ((["--batch", str(d)], "--prescription-anyway is one plan's; --batch checks many"),
                        (["--plan", str(d / "RP.dcm")], "without --prescription it keeps nothing")):
        rc = main(["check", *extra, "--beam-model", "dcpt_v2", "--prescription-anyway", "--out", str(d / "cli_rx")])
        assert rc == 2 and said in capsys.readouterr().err


def test_batch_goes_on_past_a_refused_patient(case, tmp_path, capsys, report_figures_blank):
    """--batch: one patient folder is checked, one without a TPS dose is refused with the reason; exit status 1."""
    import json
    import shutil

    from mcproton.cli import main

    d = case["dir"]
    ok, bad = tmp_path / "pts" / "a_ok", tmp_path / "pts" / "b_nodose"
    shutil.copytree(d / "ct", ok / "ct")
    for f in ("RP.dcm", "RS.dcm", "RD_plan.dcm"):
        shutil.copy(d / f, ok / f)
    bad.mkdir()
    shutil.copy(d / "RP.dcm", bad / "RP.dcm")
    cfg = tmp_path / "levels.toml"
    cfg.write_text("[levels]\n" + "".join(f"{k} = {v}\n" for k, v in LEVELS.items()))
    rc = main(["check", str(tmp_path / "pts"), "--batch", "--beam-model", "dcpt_v2", "--out", str(tmp_path / "out"),
               "--primaries", "4000", "--target-uncertainty", "0", "--gamma-points", "300", "--backend", "cpu",
               "--config", str(cfg), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 2 and "b_nodose: REFUSED" in out and "no RT Dose" in out   # the worst patient's status: refused
    table = json.loads((tmp_path / "out" / "batch.json").read_text())
    # the report's path is relative to batch.json's folder (not to the working directory)
    assert set(table) == {"a_ok", "b_nodose"} and (tmp_path / "out" / table["a_ok"]["report"]).is_file()
    assert table["a_ok"]["gamma_2_2_pct"] > 50      # 4000 primaries: noisy, but the same plan
    page = (tmp_path / "out" / "index.html").read_text()
    assert '<a href="a_ok/check.html">a_ok/check.html</a>' in page
    assert "REFUSED" in page and "not checked yet" not in page
    assert "summary: " in out and (tmp_path / "out" / "a_ok" / "RD_mc.dcm").is_file()


def test_batch_records_an_internal_error_writes_its_summary_after_each_patient_and_keeps_only_numbers(
        case, tmp_path, monkeypatch):
    """A patient whose check stops on an unexpected error is recorded (ERROR) and the batch goes on; batch.json and
    index.html are rewritten after every patient (an interrupted batch keeps the patients done); the results keep
    their numbers, not their dose arrays (a batch's memory stays one patient's)."""
    import json

    from mcproton._check import api

    root = tmp_path / "pts"
    for name in ("p1", "p2", "p3"):
        (root / name).mkdir(parents=True)
    seen = {}
    real = case["res"]

    def fake_check(*, folder, out, log, **kw):
        name = Path(folder).name
        seen[name] = (json.loads((tmp_path / "out" / "batch.json").read_text())
                      if (tmp_path / "out" / "batch.json").exists() else None,
                      (tmp_path / "out" / "index.html").read_text() if (tmp_path / "out" / "index.html").exists()
                      else "")
        if name == "p2":        # a bug (a RuntimeError would be the machine's since 2026-12-06: mcproton.errors)
            raise KeyError("something broke")
        return real

    monkeypatch.setattr(api, "check", fake_check)
    res = api.check_batch(root, tmp_path / "out", log=lambda m: None)
    assert seen["p1"] == (None, "")
    assert "p2</td><td></td><td></td><td>not checked yet" in seen["p2"][1]
    from mcproton._check.api import NOT_CHECKED

    assert seen["p2"][0]["p2"] == seen["p2"][0]["p3"] == NOT_CHECKED   # in batch.json too
    assert NOT_CHECKED["status"] == "not_checked" and NOT_CHECKED["passed"] is False
    assert NOT_CHECKED["not_checked"] is True and NOT_CHECKED["error"] == "not checked yet"
    assert seen["p2"][0]["p1"]["passed"] is True
    assert seen["p3"][0]["p2"]["internal_error"] is True and "something broke" in seen["p3"][0]["p2"]["error"]
    table = json.loads((tmp_path / "out" / "batch.json").read_text())
    assert set(table) == {"p1", "p2", "p3"} and table["p1"]["passed"] is True
    assert res["p2"].startswith("internal error KeyError")
    assert ">ERROR<" in (tmp_path / "out" / "index.html").read_text()
    kept = res["p1"]
    assert kept.passed == real.passed and kept.gamma == real.gamma and kept.mc_rtdose == real.mc_rtdose
    assert kept.mc_gy_zyx is None and kept.mc is None and kept.inputs is None and real.mc_gy_zyx is not None
    with pytest.raises(ValueError, match="no dose arrays"):
        kept.figures()
    assert api.check_batch(root, tmp_path / "out2", log=lambda m: None, keep_arrays=True)["p1"] is real


def test_each_beam_runs_to_the_plan_target_times_sqrt_of_the_beams(base, monkeypatch):
    """The target uncertainty is the plan dose's: the 2 beams of the base plan each run to 1 % x sqrt(2) (both
    to 1 % gave the plan dose 1 % / sqrt(2) with twice the primaries needed); none: no target for the beams."""
    import math

    import mcproton._run.job as job
    from mcproton._check.compute import build_geometry, run_mc
    from mcproton._check.inputs import CheckInputs, TPSDose

    d, rp = base["dir"], base["rp"]
    vs, org = base["grid"]
    grid = TPSDose("", np.zeros(base["shape"]), vs, org, FOR, "PHYSICAL", "PLAN", rp.sop_instance_uid)
    inp = CheckInputs(str(d / "RP.dcm"), rp, grid, {}, str(d / "ct"), None, FOR, "PHYSICAL", 1, True)
    geo, _, _ = build_geometry(d / "ct", "schneider2000", grid)
    seen = []

    class _Stop(Exception):
        pass

    def fake_run_job(cfg, settings, geometry, beams, out, options=None, **kw):
        seen.append((settings.target_uncertainty, len(beams)))
        raise _Stop

    monkeypatch.setattr(job, "run_job", fake_run_job)
    for target, want in ((0.01, 0.01 * math.sqrt(2)), (None, None)):
        with pytest.raises(_Stop):
            run_mc(inp, geo, "dcpt_v2", primaries=1000, target_uncertainty=target, backend="cpu", progress=False,
                   log=lambda m: None)
        assert seen[-1][1] == 2 and (seen[-1][0] == pytest.approx(want) if want else seen[-1][0] is None)


@pytest.mark.parametrize("dose_to, per_beam_gy", [("water", 2.0), ("medium", 1.0)])
def test_the_mc_dose_compared_is_the_one_asked_for(base, monkeypatch, dose_to, per_beam_gy):
    """The check compares the MC's dose to water by default (what planning systems report), its dose to medium
    with --dose-to medium, per beam and in the total.  The check's transports run on water phantoms, where the two
    nearly agree, so a run_mc that put the dose to medium on the TPS grid for a "water" check passed every test
    (mutation audit 2026-12-05, G1): in bone it is several per cent off, and the report would still say "dose to
    water".  The transport is replaced by a stand-in whose dose to medium is 1 Gy and dose to water 2 Gy in every
    voxel, so which one reached the TPS grid is seen at once: 2 Gy per beam (4 Gy for the two beams) to water,
    1 Gy (2 Gy) to medium; the TPS dose is PHYSICAL, so no RBE factor."""
    from types import SimpleNamespace

    import mcproton._run.job as job
    import mcproton.run as run
    from mcproton._check.compute import build_geometry, run_mc
    from mcproton._check.inputs import CheckInputs, TPSDose

    d, rp = base["dir"], base["rp"]
    vs, org = base["grid"]
    grid = TPSDose("", np.zeros(base["shape"]), vs, org, FOR, "PHYSICAL", "PLAN", rp.sop_instance_uid)
    inp = CheckInputs(str(d / "RP.dcm"), rp, grid, {}, str(d / "ct"), None, FOR, "PHYSICAL", 1, True)
    geo, _, _ = build_geometry(d / "ct", "schneider2000", grid)

    def result(medium, water):
        return SimpleNamespace(dose_gy_zyx=medium, dose_to_water_gy_zyx=water,
                               uncertainty_rel_zyx=np.zeros_like(medium), primaries=1000, provenance={},
                               mean_rel_uncertainty_50=0.01, wall_s=0.0, device="cpu", backend="cpu")

    def fake_run_job(cfg, settings, geometry, beams, out, options=None, **kw):
        shape = geometry.shape_zyx
        return [result(np.ones(shape), np.full(shape, 2.0)) for _ in beams]

    def fake_sum(results):
        return result(sum(r.dose_gy_zyx for r in results), sum(r.dose_to_water_gy_zyx for r in results))

    monkeypatch.setattr(job, "run_job", fake_run_job)
    monkeypatch.setattr(run, "sum_results", fake_sum)
    mc = run_mc(inp, geo, "dcpt_v2", dose_to=dose_to, target_uncertainty=None, backend="cpu", progress=False,
                log=lambda m: None)
    assert mc.provenance["dose_to"] == dose_to and mc.provenance["rbe"] == 1.0
    assert sorted(mc.beams_gy_zyx) == [1, 2]
    for dose in mc.beams_gy_zyx.values():   # the MC grid covers the TPS grid: the stand-in's dose everywhere
        assert dose == pytest.approx(np.full(base["shape"], per_beam_gy))
    assert mc.total_gy_zyx == pytest.approx(np.full(base["shape"], 2 * per_beam_gy))


def test_a_plan_whose_beams_overlap_little_is_topped_up_to_the_target(base):
    """The base plan's two orthogonal beams overlap only in part: after each reached 3 % x sqrt(2) the plan dose is
    above 3 % (3.2 %), so each beam runs again with independent random numbers for the missing primaries and the
    two runs are averaged by primaries.  Deterministic (fixed seeds, CPU): the plan reaches 3 % within 3 % of it,
    and the averaged dose keeps the first pass's integral (a sum instead of a mean would double it)."""
    from mcproton._check.compute import TOP_UP_SEED_OFFSET, build_geometry, run_mc
    from mcproton._check.inputs import CheckInputs, TPSDose

    d, rp = base["dir"], base["rp"]
    vs, org = base["grid"]
    grid = TPSDose("", np.zeros(base["shape"]), vs, org, FOR, "PHYSICAL", "PLAN", rp.sop_instance_uid)
    inp = CheckInputs(str(d / "RP.dcm"), rp, grid, {}, str(d / "ct"), None, FOR, "PHYSICAL", 1, True)
    geo, _, _ = build_geometry(d / "ct", "schneider2000", grid)
    logs: list[str] = []
    mc = run_mc(inp, geo, "dcpt_v2", primaries=400_000, target_uncertainty=0.03, backend="cpu", progress=False,
                log=logs.append)
    assert any("topping up each beam" in m for m in logs), logs
    assert all("top-up of" in m["stop_reason"] for m in mc.beam_meta.values())
    assert mc.mean_rel_uncertainty_50 <= 0.03 * 1.03
    # 40 000 per beam, no target: a reference of the dose integral (the energy the protons leave in the grid).  Its
    # statistical sd is ~0.1 % (the integral of the topped-up run differed from it by -0.03..+0.09 % at 40 000, seeds
    # 12345 and 5, and by +0.07 % at 400 000, 2026-12-07), so the 3 % window is > 20 sd of it (false positive
    # < 1e-80) and a sum of the two passes instead of their mean (about twice the integral) fails
    # it.  400 000 per beam (0.8 % per voxel, a voxel-wise reference this integral does not need) took 80 % of the test.
    one = run_mc(inp, geo, "dcpt_v2", primaries=40_000, target_uncertainty=None, backend="cpu", progress=False,
                 log=lambda m: None)
    assert mc.total_gy_zyx.sum() == pytest.approx(one.total_gy_zyx.sum(), rel=0.03)
    assert TOP_UP_SEED_OFFSET != 0


# ---------------------------------------------------------------------- the MC dose as RT Dose beside the report
def test_the_mc_dose_comment_fits_dicom_and_keeps_what_matters():
    """LO holds 64 characters: the beam, the quantity and the uncertainty are kept, the "mcproton check" prefix and
    the beam model only where there is room."""
    from mcproton._check.mc_rtdose import dose_comment

    c = dose_comment("to water, physical", 0.0099, "dcpt_v5")
    assert c == "mcproton check MC to water, physical, 0.99% 1sd, 0 outside body"
    c = dose_comment("to medium, RBE 1.1", 0.1234, "a_long_beam_model_name", beam=12)
    assert c == "MC beam 12, to medium, RBE 1.1, 12.34% 1sd, 0 outside body" and len(c) <= 64
    assert "1sd n/a" in dose_comment("to water, physical", float("nan"), "", beam=1)


def test_the_plan_reference_note_never_costs_the_mc_dose_comment_its_uncertainty():
    """Audit 25 provenance, F3: the note of a replaced plan UID ("invalid plan UID replaced") goes into the
    DoseComment only where the comment, its uncertainty included, fits before it; else into ImageComments only
    (write_rtdose cut the comment to make room for it before, and the uncertainty went)."""
    from mcproton._check.mc_rtdose import comment_and_note

    note = "invalid plan UID replaced"
    c, in_comment = comment_and_note("to water, physical", 0.1643, "BDL_default_DN_RangeShifter", None, note)
    assert in_comment and "16.43% 1sd" in c and len(f"{c}; {note}") <= 64, c
    c, in_comment = comment_and_note("to medium, RBE 1.1, 1 of 30 fx", 0.1234, "dcpt_v5", 12, note)
    assert not in_comment and "12.34% 1sd" in c and "beam 12" in c and len(c) <= 64, c
    assert comment_and_note("to water, physical", 0.0099, "dcpt_v5", None, "") == (
        "mcproton check MC to water, physical, 0.99% 1sd, 0 outside body", True)


def test_the_check_writes_its_mc_dose_as_rt_dose_beside_the_tps_dose(case):
    """RD_mc.dcm (plan) and RD_mc_beam<N>.dcm: the TPS grid, the TPS dose's study and frame, the report's patient,
    the plan referenced, the TPS files' DoseType and DoseSummationType, the compared dose to within the 16-bit
    quantisation."""
    import json
    import shutil
    import subprocess

    from mcproton._io.rtdose import read_rtdose

    res, out = case["res"], case["dir"] / "out"
    assert set(res.mc_rtdose) == {"plan", "beam 1", "beam 2"}
    tps_hdr = pydicom.dcmread(case["files"]["plan"], stop_before_pixels=True)
    expect = {"plan": ("RD_mc.dcm", "PLAN", [], res.mc_gy_zyx),
              "beam 1": ("RD_mc_beam1.dcm", "BEAM", [1], np.where(res.body_zyx, res.mc.beams_gy_zyx[1], 0.0)),
              "beam 2": ("RD_mc_beam2.dcm", "BEAM", [2], np.where(res.body_zyx, res.mc.beams_gy_zyx[2], 0.0))}
    series, sops = set(), set()
    for key, (name, summation, beams, dose) in expect.items():
        assert res.mc_rtdose[key]["file"] == name
        rd = read_rtdose(out / name)
        assert rd.dose_gy_zyx.shape == case["res"].tps_gy_zyx.shape
        np.testing.assert_allclose(rd.voxel_size_mm, case["grid"][0], atol=1e-6)
        np.testing.assert_allclose(rd.origin_mm, case["grid"][1], atol=1e-6)
        assert (rd.dose_type, rd.dose_summation_type, rd.dose_units) == ("PHYSICAL", summation, "GY")
        assert rd.referenced_plan_sop_instance_uid == case["plan_uid"] and rd.frame_of_reference_uid == FOR
        assert rd.referenced_beam_numbers == beams
        assert dose.max() > 0 and (dose[~res.body_zyx] == 0).all()        # as compared: zero outside the body
        np.testing.assert_allclose(rd.dose_gy_zyx, dose, rtol=0, atol=rd.dose_grid_scaling / 2 * (1 + 1e-9))
        hdr = pydicom.dcmread(out / name, stop_before_pixels=True)
        # the TPS dose's study; the patient the report names, the plan's (here the TPS dose gives no PatientID; audit
        # 24 identity F2: RD_mc.dcm named the TPS dose's patient, the report the plan's)
        assert hdr.StudyInstanceUID == tps_hdr.StudyInstanceUID
        assert hdr.PatientID == res.provenance["identification"]["PatientID"] != tps_hdr.get("PatientID", "")
        assert hdr.TissueHeterogeneityCorrection == "IMAGE"   # the CT as it is: its structure set has no override
        # each file's own statistical uncertainty, and its beam (before 2026-12-05 every per-beam file carried the
        # plan dose's, smaller, and no beam: interop audit F3)
        unc = res.mc.mean_rel_uncertainty_50 if not beams else res.mc.beam_meta[beams[0]]["mean_rel_uncertainty_50"]
        assert f"{100 * unc:.2f}% 1sd" in hdr.DoseComment and len(hdr.DoseComment) <= 64, hdr.DoseComment
        assert (f"beam {beams[0]}, to water" in hdr.DoseComment) if beams else "beam" not in hdr.DoseComment
        # and in full in ImageComments, with the file's own primaries (audit 25 provenance, F3, F4)
        from mcproton._io.rtdose import stated_uncertainty

        own = res.mc.primaries if not beams else res.mc.beam_meta[beams[0]]["primaries"]
        assert f"{own:,} primaries" in hdr.ImageComments, hdr.ImageComments
        assert stated_uncertainty(hdr)[0] == pytest.approx(100 * unc, rel=1e-3), hdr.ImageComments
        assert res.mc_rtdose[key]["sop_instance_uid"] == hdr.SOPInstanceUID
        series.add(hdr.SeriesInstanceUID)
        sops.add(hdr.SOPInstanceUID)
        if shutil.which("dciodvfy"):
            r = subprocess.run(["dciodvfy", str(out / name)], capture_output=True, text=True, timeout=60)
            assert "Error" not in r.stderr + r.stdout, r.stderr + r.stdout
    assert len(series) == 1 and len(sops) == 3
    assert min(res.mc.beam_meta[b]["mean_rel_uncertainty_50"] for b in (1, 2)) > res.mc.mean_rel_uncertainty_50
    js = json.loads(Path(res.report_json).read_text())
    assert js["mc_rtdose"]["plan"]["file"] == "RD_mc.dcm" and js["timings_s"]["rtdose_s"] >= 0
    assert "RD_mc_beam2.dcm" in Path(res.report_html).read_text()


@pytest.mark.parametrize("summation", ["PLAN", "FRACTION_SESSION"])
def test_the_checks_own_rt_dose_checked_against_its_mc_passes_exactly(case, tmp_path, summation):
    """The MC RT Dose read back as the 'TPS' dose and checked against the same MC: the check pairs it (same plan,
    frame, grid), the summation type mirrored, gamma 100 %, dose differences within the quantisation."""
    import shutil

    src = _tps(case, f"tps_{summation}", case["hi"].total_gy_zyx, summation_type=summation)
    res = _recheck(case, [src], out=tmp_path / "first")
    assert res.mc_rtdose["plan"]["dose_summation_type"] == summation
    mine = tmp_path / "mine.dcm"
    shutil.copy(tmp_path / "first" / "RD_mc.dcm", mine)
    # the check of it again without the report's figures (report=False: check.json and RD_mc.dcm; the first check
    # above drew its report): its gammas, differences and ranges are what is asserted, not its report
    again = _recheck(case, [mine], out=tmp_path / "again", report=False)
    assert again.gamma["2%/2mm"]["pass_rate"] == 1.0 and again.gamma["1%/1mm"]["pass_rate"] == 1.0, _failed(again)
    assert abs(again.dose_difference["integral_ratio_mc_tps"] - 1) < 1e-4
    assert max(abs(r["median_mm"]) for r in again.ranges.values()) < 0.05


def test_the_mc_rt_doses_take_the_orientation_of_each_tps_file(case, tmp_path):
    """TPS doses stored prone (plan dose, ImageOrientationPatient [-1,0,0,0,-1,0]), feet-first (beam 1,
    [-1,0,0,0,1,0], frames along -z) and head-first supine (beam 2): each MC RT Dose has its TPS file's
    ImageOrientationPatient, ImagePositionPatient and frame offsets, and its stored array is the MC dose in that
    order, so the two files match index by index (CSI audit 2026-12-05 F4: every MC file was [1,0,0,0,1,0]); the
    check's results are those of the same doses stored head-first supine."""
    axes = {"plan": (-1, -1, 1), 1: (-1, 1, -1), 2: (1, 1, 1)}
    hi = case["hi"]
    tps = {k: _tps(case, f"tps_orient_{k}", hi.total_gy_zyx if k == "plan" else hi.beams_gy_zyx[k], axis_directions=a,
                   **({} if k == "plan" else {"summation_type": "BEAM", "referenced_beam_number": k}))
           for k, a in axes.items()}
    res = _recheck(case, [tps["plan"], tps[1], tps[2]], out=tmp_path / "o")
    as_compared = {b: np.where(res.body_zyx, res.mc.beams_gy_zyx[b], 0.0) for b in (1, 2)}   # res.mc: as computed
    for k, name, mc in (("plan", "RD_mc.dcm", res.mc_gy_zyx), (1, "RD_mc_beam1.dcm", as_compared[1]),
                        (2, "RD_mc_beam2.dcm", as_compared[2])):
        t, m = pydicom.dcmread(tps[k]), pydicom.dcmread(tmp_path / "o" / name)
        for kw in ("ImageOrientationPatient", "ImagePositionPatient", "GridFrameOffsetVector"):
            assert [float(v) for v in m[kw].value] == [float(v) for v in t[kw].value], (name, kw)
        sx, sy, sz = axes[k]
        np.testing.assert_allclose(m.pixel_array * float(m.DoseGridScaling), mc[::sz, ::sy, ::sx], rtol=0,
                                   atol=float(m.DoseGridScaling) / 2 * (1 + 1e-9))
    f = case["files"]
    # without the report's figures (report=False): only its results are compared (the check above, of the doses
    # stored prone and feet-first, drew its report; the case fixture's check draws these head-first doses' report)
    before = _recheck(case, [f["plan"], f[1], f[2]], out=tmp_path / "hfs", report=False)
    assert {k: v["pass_rate"] for k, v in res.gamma.items()} == {k: v["pass_rate"] for k, v in before.gamma.items()}
    assert res.passed == before.passed


def test_a_folder_holding_an_earlier_checks_mc_dose_pairs_the_tps_dose(case, tmp_path):
    """A patient folder that also holds a check's output (RD_mc*.dcm refer to the same plan): those are not taken for
    the planning system's doses, and the pairing says so."""
    import shutil

    from mcproton._check.inputs import gather

    d, f = case["dir"], tmp_path / "patient"
    shutil.copytree(d / "ct", f / "ct")
    for name in ("RP.dcm", "RS.dcm", "RD_plan.dcm", "RD_beam1.dcm", "RD_beam2.dcm"):
        shutil.copy(d / name, f / name)
    shutil.copytree(d / "out", f / "check_before", ignore=shutil.ignore_patterns("*.html", "*.json"))
    assert sorted(p.name for p in (f / "check_before").glob("RD_mc*.dcm")) == \
        ["RD_mc.dcm", "RD_mc_beam1.dcm", "RD_mc_beam2.dcm"]
    inp = gather(folder=f)
    assert Path(inp.total.path).name == "RD_plan.dcm" and sorted(inp.beams) == [1, 2]
    assert {Path(t.path).name for t in inp.beams.values()} == {"RD_beam1.dcm", "RD_beam2.dcm"}
    skipped = [line for line in inp.pairing if "earlier mcproton check" in line]
    assert len(skipped) == 1 and skipped[0].startswith("skipped 3 file(s)"), inp.pairing


def test_a_folder_holding_an_earlier_checks_phantom_ct_is_not_the_patients_ct(case, tmp_path):
    """The phantom CT that --phantom-from-struct writes (HU codes of its own calibration) beside the patient's CT:
    the patient's CT is paired, the phantom skipped (before, the two were 'CT slices in several folders'; alone,
    the phantom was taken for the patient's CT and read with the default calibration)."""
    import shutil

    from mcproton._check.inputs import gather
    from mcproton._check.mc_rtdose import PHANTOM_SERIES_DESCRIPTION
    from mcproton.dicom import write_ct_series

    d, f = case["dir"], tmp_path / "patient"
    f.mkdir()
    for name in ("RP.dcm", "RS.dcm", "RD_plan.dcm"):
        shutil.copy(d / name, f / name)
    write_ct_series(np.full((3, 4, 4), 7, np.int16), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), f / "old" / "phantom_ct",
                    series_description=PHANTOM_SERIES_DESCRIPTION, study=StudyReference(frame_of_reference_uid=FOR))
    inp = gather(folder=f)
    assert inp.ct_dir is None and any(line.startswith("skipped 3 file(s)") for line in inp.pairing), inp.pairing
    shutil.copytree(d / "ct", f / "ct")
    assert Path(gather(folder=f).ct_dir) == f / "ct"


def test_phantom_from_struct_with_a_ct_is_refused(base):
    """--phantom-from-struct and a CT: the user must say which geometry (before, the CT won silently)."""
    from mcproton._check.api import check
    from mcproton._check.inputs import CheckInputError

    d = base["dir"]
    with pytest.raises(CheckInputError, match="--phantom-from-struct builds the CT .* a CT was given"):
        check(plan=d / "RP.dcm", dose=_tps(base, "pfs", base["blob"]), ct=d / "ct", struct=d / "RS.dcm",
              beam_model="dcpt_v2", phantom_from_struct=True, **FAST)


def test_a_check_of_the_plan_dose_only_says_that_no_beams_direction_was_judged(case, tmp_path, report_figures_blank):
    """Audit 32, norm2 F2: the direction test (api._direction_notes) judges each beam on its own TPS dose, so with
    the plan dose only no beam's direction is judged; docs/check.md said so, the report and check.json did not (a
    plan given in another gantry or couch angle than the TPS computed showed only through the other rows).  Now a
    remark (not a cause) says it, in check.json's diagnostics and the report; the check with per-beam doses has
    none."""
    import json

    from mcproton._check.api import NO_BEAM_DIRECTION_JUDGED

    res = _recheck(case, [case["files"]["plan"]], out=tmp_path / "o")
    said = [d for d in res.diagnostics_of("remark") if d.startswith(NO_BEAM_DIRECTION_JUDGED)]
    assert len(said) == 1 and "(beams 1, 2; the plan dose only)" in said[0], res.diagnostics
    assert not any(d.startswith(NO_BEAM_DIRECTION_JUDGED) for d in res.diagnostics_of("cause"))
    js = json.loads((tmp_path / "o" / "check.json").read_text())
    assert said[0] in js["diagnostics"]
    assert js["diagnostic_kinds"][js["diagnostics"].index(said[0])] == "remark"
    assert html.escape(NO_BEAM_DIRECTION_JUDGED) in (tmp_path / "o" / "check.html").read_text()
    assert not any(d.startswith(NO_BEAM_DIRECTION_JUDGED) for d in case["res"].diagnostics)   # per-beam doses given


def test_a_beam_without_its_own_tps_dose_beside_others_is_said_to_be_unjudged(case, tmp_path, report_figures_blank):
    """Review a of audit 32, R2: with the plan dose and beam 1's TPS dose only, beam 2's direction is judged on
    nothing (api._direction_notes judges each beam on its own TPS dose), and the plan-dose-only remark (norm2 F2)
    was given only where no beam had one: beam 2 went unjudged without a word.  Now the remark names beam 2, and
    not beam 1, in check.json's diagnostics (a remark) and the report."""
    import json

    from mcproton._check.api import NO_BEAM_DIRECTION_JUDGED

    res = _recheck(case, [case["files"]["plan"], case["files"][1]], out=tmp_path / "o")
    said = [d for d in res.diagnostics_of("remark") if d.startswith(NO_BEAM_DIRECTION_JUDGED)]
    assert len(said) == 1 and "(beam 2:" in said[0] and "beam 1" not in said[0].split(":")[0], res.diagnostics
    js = json.loads((tmp_path / "o" / "check.json").read_text())
    assert js["diagnostic_kinds"][js["diagnostics"].index(said[0])] == "remark"
    assert html.escape(said[0][:80]) in (tmp_path / "o" / "check.html").read_text()


def test_an_error_after_the_mc_keeps_its_rt_dose(case, tmp_path, monkeypatch):
    """The MC RT Dose is written before the comparisons: an error in them leaves the (expensive) MC dose on disk."""
    from mcproton._check import api

    def broken(*a, **k):
        raise RuntimeError("range comparison broke")

    monkeypatch.setattr(api, "range_agreement", broken)
    with pytest.raises(RuntimeError, match="range comparison broke"):
        _recheck(case, [case["files"]["plan"]], out=tmp_path / "o")
    assert (tmp_path / "o" / "RD_mc.dcm").is_file() and not (tmp_path / "o" / "check.html").exists()


def test_a_plan_for_another_machine_is_refused_before_the_transport(base, tmp_path, capsys):
    """The check's beam model (dcpt_v2: TR1-TR3) and a plan for 'GTR4': exit status 2 naming the machine and the
    way out (--no-machine-check), before any transport."""
    from mcproton.cli import main

    d = base["dir"]
    ds = pydicom.dcmread(d / "RP.dcm")
    for b in ds.IonBeamSequence:
        b.TreatmentMachineName = "GTR4"
    ds.save_as(tmp_path / "RP_gtr4.dcm")   # the same SOPInstanceUID: the TPS dose still refers to it
    rc = main(["check", "--plan", str(tmp_path / "RP_gtr4.dcm"), "--dose", str(_tps(base, "gtr4", base["blob"])),
               "--ct", str(d / "ct"), "--beam-model", "dcpt_v2", "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "planned for treatment machine 'GTR4'" in err and "--no-machine-check" in err, err
    assert not (tmp_path / "o" / "RD_mc.dcm").exists()


def test_tps_dose_outside_the_body_is_named(case):
    """A TPS dose with dose outside the body outline used here (as when the planning system's External differs:
    plan06's RayStation dose reaches 9 mm upstream of the phantom document's surface): the share is in the JSON and
    named among the likely causes; the correct dose has none."""
    from mcproton._check.api import tps_outside_body

    z, y, x = case["axes"]
    inside = (np.abs(x)[None, None, :] <= BOX[1]) & (np.abs(y)[None, :, None] <= BOX[1]) \
        & (np.abs(z)[:, None, None] <= 20)
    d = np.where(inside, case["hi"].total_gy_zyx, 0.0)            # what a planning system writes: no dose in air
    res = _recheck(case, _tps(case, "inside", d))
    assert res.dose_difference["tps_outside_body_fraction"] == 0.0
    assert not any("outside the body" in n for n in res.diagnostics), res.diagnostics
    assert x[1] < BOX[0] - 6                                     # a slab of dose in the air beside the water box,
    d[2:-2, 2:-2, 1] = 0.5 * d.max()                             # not out to the faces of the grid
    res = _recheck(case, _tps(case, "outside", d))
    frac = res.dose_difference["tps_outside_body_fraction"]
    assert frac > 0.01 and any(n.startswith(f"{100 * frac:.1f} % of the TPS dose") and "External?" in n
                               for n in res.diagnostics), res.diagnostics
    assert res.dose_difference["tps_dose_in_air_at_grid_edge"] is False
    assert tps_outside_body(d, inside) == pytest.approx(frac, rel=1e-4)   # the file: 16-bit quantised
    # the same dose out to the grid's face, in air: a planning system that scores dose in all the grid (MCsquare)
    d[:, :, x < BOX[0] - 6] = 0.5 * d.max()
    own = _tps(case, "to_edge", d)
    res = _recheck(case, own)
    assert res.dose_difference["tps_dose_in_air_at_grid_edge"] is True
    # a dose mcproton wrote (compared with itself): the note names no planning system (stats audit F3)
    assert any("in air out to the edge of the dose grid" in n and "written by mcproton" in n
               and "MCsquare" not in n and "planning system" not in n for n in res.diagnostics), res.diagnostics
    assert not any("External?" in n for n in res.diagnostics), res.diagnostics
    # the same dose from a planning system: the note names the one known to do this (MCsquare)
    ds = pydicom.dcmread(own)
    ds.Manufacturer = "Some TPS"
    ds.save_as(case["dir"] / "to_edge_tps.dcm")
    res = _recheck(case, case["dir"] / "to_edge_tps.dcm")
    assert any("in air out to the edge of the dose grid" in n and "MCsquare" in n for n in res.diagnostics), \
        res.diagnostics
    # the boundary voxels (partly inside) are the TPS's too: dose one voxel outside is not counted
    edge = np.zeros_like(inside)
    edge[:, :, 1:] = inside[:, :, :-1] & ~inside[:, :, 1:]
    assert edge.any() and tps_outside_body(np.where(inside | edge, 1.0, 0.0), inside) == 0.0


def test_a_target_off_the_dose_grid_is_named(case, tmp_path):
    """A target whose contours lie outside the TPS grid got no D95/Dmean level and no word: now it is named.  Every
    other ROI left out of the structure table is named with the reason too (structure audit F7: OARs off the grid,
    without closed contours or between voxel centres were left out silently; a PTV without contours was said to
    "have contours")."""
    import pydicom

    from mcproton._check.api import check

    d = case["dir"]
    rs = tmp_path / "RS_far.dcm"
    _write_rs(rs, None, targets=[("PTV", (-16.0, -16.0, -12.0), (16.0, 16.0, 12.0)),
                                 ("CTV_far", (-10.0, -10.0, 200.0), (10.0, 10.0, 220.0)),
                                 ("EmptyPTV", (-4.0, -4.0, -4.0), (4.0, 4.0, 4.0)),
                                 ("Brainstem_far", (-10.0, -10.0, 200.0), (10.0, 10.0, 220.0)),
                                 ("OpenLine", (-4.0, -4.0, -4.0), (4.0, 4.0, 4.0)),
                                 ("Dot", (0.01, 0.01, -4.0), (0.02, 0.02, 4.0)),
                                 ("Couch", (-4.0, -4.0, -4.0), (4.0, 4.0, 4.0)),
                                 ("Lens", (-3.0, -3.0, -3.0), (3.0, 3.0, 3.0))])
    ds = pydicom.dcmread(rs)
    del ds.ROIContourSequence[2].ContourSequence
    for i, typ in ((3, "ORGAN"), (4, "ORGAN"), (5, "ORGAN"), (6, "SUPPORT"), (7, "ORGAN")):
        ds.RTROIObservationsSequence[i].RTROIInterpretedType = typ
    for c in ds.ROIContourSequence[4].ContourSequence:
        c.ContourGeometricType = "OPEN_PLANAR"
    ds.save_as(rs)
    res = check(plan=d / "RP.dcm", dose=case["files"]["plan"], ct=d / "ct", struct=rs, beam_model="dcpt_v2",
                mc=case["res"].mc, levels=_levels(), **FAST)
    notes = "\n".join(res.diagnostics)
    assert "target 'CTV_far' has its contours outside the dose grid, so it has no voxel" in notes, notes
    assert "target 'EmptyPTV' has no closed contours (no contours at all)" in notes, notes
    assert "3 structure(s) are not in the structure table, having no voxel on the TPS dose grid: 'Brainstem_far' " \
           "has its contours outside the dose grid; 'OpenLine' has no closed contours (only " in notes, notes
    assert "'Dot' has no voxel centre inside its contours" in notes, notes
    assert "1 ROI(s) are not in the structure table, their types having no dose metrics" in notes \
           and "'Couch' (SUPPORT)" in notes, notes
    assert "CTV_far" not in res.structures and "PTV" in res.structures
    assert not any("no voxel" in n or "not in the structure table" in n for n in case["res"].diagnostics)
    # a structure of a few voxels: its voxels and a flag in the table, a note on its centre-in metrics (F6)
    lens, ptv = res.structures["Lens"], res.structures["PTV"]
    assert 0 < lens["voxels"] < 30 and lens["few_voxels"] and ptv["voxels"] >= 30 and not ptv["few_voxels"]
    assert lens["volume_cm3"] == pytest.approx(lens["voxels"] * ptv["volume_cm3"] / ptv["voxels"])
    assert f"1 structure(s) have fewer than 30 voxels on the TPS dose grid: 'Lens' ({lens['voxels']}); their " \
           "metrics are of those voxels, each in or out by its centre" in notes, notes
    # the contour volume beside the mask's, and a note where they differ by more than 1.25 x (infant audit F3)
    assert ptv["contour_volume_cm3"] == pytest.approx(32 * 32 * 24 / 1e3, rel=0.1)
    assert 0.8 <= ptv["volume_cm3"] / ptv["contour_volume_cm3"] <= 1.25
    ratio = lens["volume_cm3"] / lens["contour_volume_cm3"]
    assert (f"'Lens' mask {lens['volume_cm3']:.3g} cm3, contour {lens['contour_volume_cm3']:.3g} cm3 ({ratio:.2f})"
            in notes) == (not 0.8 <= ratio <= 1.25), (ratio, notes)
    assert "'PTV' mask" not in notes


def test_tps_beam_doses_that_do_not_add_up_to_the_plan_dose_are_refused(case):
    """Plan dose and per-beam doses of the planning system that disagree with each other (not of one calculation)
    are refused before the comparison, naming the files (audit 26, F2: before, a note beside a PASS); the correct
    ones (one calculation) agree to the quantisation, recorded in the JSON and the pairing.  tests/check/
    test_check_beam_doses_agree.py tests the rule on its own (a beam's dose missing, the tolerance, real data)."""
    from mcproton._check.inputs import CheckInputError

    assert case["res"].dose_difference["tps_beams_minus_plan_max_pct"] < 0.01
    assert any(n.startswith("the TPS per-beam doses add up to the plan dose") for n in case["res"].pairing)
    hi = case["hi"]
    beams = [_tps(case, f"b{b}_x", hi.beams_gy_zyx[b] * (1.1 if b == 1 else 1.0), summation_type="BEAM",
                  referenced_beam_number=b) for b in (1, 2)]
    with pytest.raises(CheckInputError, match=r"the TPS per-beam doses \(b1_x\.dcm, b2_x\.dcm\) do not add up to "
                                              r"the plan dose RD_plan\.dcm: they differ by up to \d+\.\d\d % of its "
                                              r"maximum .*export the plan dose and the per-beam doses again from one "
                                              r"calculation"):
        _recheck(case, [case["files"]["plan"], *beams])


def test_per_beam_doses_paired_with_the_wrong_beam_are_named(case):
    """Two per-beam files whose ReferencedBeamNumbers were exchanged (an export or renaming slip; the plan dose right,
    so they still add up to it): each beam's level fails, and the first note says the two look swapped, each file
    matching the other beam's MC dose (audit 26, F6: the causes read "MU/output ... or the beam model's calibration"
    and a shift of the beam).  One beam's file given as another's (beam 2's dose named beam 1, beam 2's own missing):
    named as looking like beam 2's.  The correct doses: no such note."""
    hi = case["hi"]
    assert not any("look swapped" in n or "looks like beam" in n for n in case["res"].diagnostics)
    says = {b: _tps(case, f"b{b}_says{3 - b}", hi.beams_gy_zyx[b], summation_type="BEAM",
                    referenced_beam_number=3 - b) for b in (1, 2)}
    res = _recheck(case, [case["files"]["plan"], says[1], says[2]])
    failed = _failed(res)
    assert "beam 1: MC/TPS dose" in failed and "beam 2: MC/TPS dose" in failed, failed
    causes = res.diagnostics_of("cause")
    swapped = [k for k, n in enumerate(causes) if n.startswith("the TPS doses of beams 1 and 2 look swapped: "
                                                               "b2_says1.dcm matches the MC dose of beam 2 (MC/TPS")]
    assert len(swapped) == 1 and "b1_says2.dcm matches the MC dose of beam 1" in causes[swapped[0]], causes
    assert "ReferencedBeamNumbers (or the files) exchanged" in causes[swapped[0]], causes[swapped[0]]
    mu = [k for k, n in enumerate(causes) if "MU/output" in n]
    assert all(swapped[0] < k for k in mu), causes   # before the dose-level causes it explains
    res = _recheck(case, [case["files"]["plan"], says[2]])
    notes = [n for n in res.diagnostics_of("cause") if "looks like beam 2's dose" in n]
    assert len(notes) == 1 and notes[0].startswith("b2_says1.dcm matches the MC dose of beam 2 (MC/TPS"), \
        res.diagnostics


def test_a_structure_cut_by_the_dose_grid_is_labelled(case, tmp_path, report_figures_blank):
    """An organ whose contours run beyond the TPS grid: its metrics are of the part on the grid, and the JSON and
    the report say so; structures inside the grid are not labelled."""
    import json

    from mcproton._check.api import check

    d = case["dir"]
    rs = tmp_path / "RS_long.dcm"
    _write_rs(rs, None, targets=[("PTV", (-16.0, -16.0, -12.0), (16.0, 16.0, 12.0)),
                                 ("Cord", (-4.0, 20.0, -60.0), (4.0, 28.0, 60.0))])   # z beyond the grid's +-28 mm
    res = check(plan=d / "RP.dcm", dose=case["files"]["plan"], ct=d / "ct", struct=rs, beam_model="dcpt_v2",
                mc=case["res"].mc, levels=_levels(), out=tmp_path / "o", **FAST)
    assert res.structures["Cord"]["partly_outside_dose_grid"] is True
    assert res.structures["PTV"]["partly_outside_dose_grid"] is False
    assert json.loads(Path(res.report_json).read_text())["structures"]["Cord"]["partly_outside_dose_grid"] is True
    page = Path(res.report_html).read_text()
    assert "Cord (part on the dose grid)" in page and "PTV (part on the dose grid)" not in page


def _ct_written_for(base, tmp_path, name: str) -> Path:
    """The base CT with the ImageComments of a CT that mcproton wrote with the inverse of calibration ``name``."""
    from mcproton._io.hu_calibration import calibration_note

    out = tmp_path / f"ct_{name}"
    out.mkdir()
    for f in sorted((base["dir"] / "ct").glob("*.dcm")):
        ds = pydicom.dcmread(f)
        ds.ImageComments = calibration_note(name)
        ds.save_as(out / f.name)
    return out


def test_a_phantom_ct_of_another_calibration_is_refused_with_the_default(base, tmp_path, capsys):
    """A phantom CT written with mcsquare_default's inverse, checked with the default calibration: refused before
    the transport, naming the calibration to give (before: read with schneider2000 without a word, as `mcproton
    run` did before it compared them: the bone densities ~5 % off)."""
    from mcproton.cli import main

    d = base["dir"]
    ct = _ct_written_for(base, tmp_path, "mcsquare_default")
    rc = main(["check", "--plan", str(d / "RP.dcm"), "--dose", str(_tps(base, "calnote", base["blob"])),
               "--ct", str(ct), "--beam-model", "dcpt_v2", "--out", str(tmp_path / "o"), "--quiet",
               "--primaries", "2000"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "'mcsquare_default'" in err and "'schneider2000'" in err and "--calibration mcsquare_default" in err, err
    assert not (tmp_path / "o" / "RD_mc.dcm").exists()


def test_a_phantom_ct_of_another_calibration_given_on_purpose_is_warned_about(base, tmp_path, capsys, monkeypatch,
                                                                              warnings_to_stderr):
    """--calibration given (another curve than the CT's, on purpose): a warning, and the check goes on (stopped
    here at the transport)."""
    from mcproton._check import api
    from mcproton.cli import main

    def stop(*a, **k):
        raise RuntimeError("transport reached")

    monkeypatch.setattr(api, "run_mc", stop)
    d = base["dir"]
    ct = _ct_written_for(base, tmp_path, "mcsquare_default")
    rc = main(["check", "--plan", str(d / "RP.dcm"), "--dose", str(_tps(base, "calnote2", base["blob"])),
               "--ct", str(ct), "--beam-model", "dcpt_v2", "--out", str(tmp_path / "o"), "--quiet",
               "--calibration", "schneider2000"])
    err = capsys.readouterr().err
    assert rc != 0 and "transport reached" in err, err
    assert "warning" in err and "'mcsquare_default'" in err and "'schneider2000'" in err, err
    # its own calibration: no word about it
    rc = main(["check", "--plan", str(d / "RP.dcm"), "--dose", str(_tps(base, "calnote3", base["blob"])),
               "--ct", str(ct), "--beam-model", "dcpt_v2", "--out", str(tmp_path / "o2"), "--quiet",
               "--calibration", "mcsquare_default"])
    err = capsys.readouterr().err
    assert rc != 0 and "transport reached" in err and "ImageComments" not in err, err


def test_the_check_runs_through_the_cuda_backend_emulated(base, tmp_path, monkeypatch):
    """`mcproton check --backend cuda` end to end through the CUDA backend's Python side (tests/fake_cupy.py: a
    strict CuPy stand-in whose kernel launches run on the CPU), so that a GPU session finds the check's GPU data flow
    working: the same MC dose as the CPU backend, bit for bit (the same kernel source and random streams), the RT
    Dose files and the report written, the device named."""
    from fake_cupy import DEVICE_NAME, install_fake_cupy

    from mcproton._backend import get_backend
    from mcproton._check.api import check

    d = base["dir"]
    common = dict(plan=d / "RP.dcm", dose=_tps(base, "emu", base["blob"]), ct=d / "ct", struct=d / "RS.dcm",
                  beam_model="dcpt_v2", primaries=3000, target_uncertainty=None, seed=5, levels=_levels(),
                  gamma_points=300, progress=False)
    cpu = check(backend="cpu", **common)
    fake = install_fake_cupy(monkeypatch)
    try:
        gpu = check(backend="cuda", out=tmp_path / "o", **common)
    finally:
        get_backend.cache_clear()
    assert fake.launches and gpu.provenance["backend"] == "cuda" and DEVICE_NAME in gpu.provenance["device"]
    np.testing.assert_array_equal(gpu.mc_gy_zyx, cpu.mc_gy_zyx)
    assert gpu.gamma["2%/2mm"]["pass_rate"] == cpu.gamma["2%/2mm"]["pass_rate"]
    assert (tmp_path / "o" / "RD_mc.dcm").is_file() and Path(gpu.report_html).is_file()


# ------------------------------------------------------------- labels: which dose (physical or RBE, water or medium)
def _labels(res) -> dict:
    import json

    figs = res.figures(["axial", "dvh", "beam_1"])
    # the dose panels' units: in their titles (the colour bars, insets since audit 13 F8, carry ticks only)
    bars = {n: [ax.get_title() for ax in f.axes] for n, f in figs.items()}
    return {"html": Path(res.report_html).read_text(), "json": json.loads(Path(res.report_json).read_text()),
            "dvh_x": figs["dvh"].axes[0].get_xlabel(), "bars": bars,
            "titles": {n: f._suptitle.get_text() if f._suptitle else "" for n, f in figs.items()}}


@pytest.mark.parametrize("dose_to", ["water", "medium"])
def test_an_rbe_weighted_tps_dose_is_labelled_as_such_everywhere(case, tmp_path, dose_to):
    """A DoseType EFFECTIVE TPS dose: the JSON, the report's headings and tables, the figures' colour bars, titles
    and DVH axis, and the MC RT Dose all say RBE-weighted (RBE 1.1), to water or medium, Gy(RBE), the plan.
    Before: 'Dose maps', 'TPS (Gy / %)', colour bars without a label over panels titled '(Gy)', a DVH axis
    'dose (Gy or Gy(RBE))', 'maximum (Gy)', and a DoseComment that named neither the RBE nor water/medium."""
    import dataclasses

    from mcproton._check.api import check

    mc = case["res"].mc
    eff = dataclasses.replace(mc, total_gy_zyx=mc.total_gy_zyx * 1.1,
                              beams_gy_zyx={b: d * 1.1 for b, d in mc.beams_gy_zyx.items()},
                              provenance={**mc.provenance, "rbe": 1.1, "dose_to": dose_to})
    src = _tps(case, f"tps_eff_{dose_to}", case["hi"].total_gy_zyx * 1.1, dose_type="EFFECTIVE")
    d, out = case["dir"], tmp_path / "eff"
    res = check(plan=d / "RP.dcm", dose=[src], ct=d / "ct", struct=d / "RS.dcm", beam_model="dcpt_v2", mc=eff,
                levels=_levels(), out=out, dose_to=dose_to, **FAST)
    what = f"RBE-weighted dose (constant RBE 1.1) to {dose_to}"
    lab = _labels(res)
    p = lab["json"]["provenance"]
    assert p["dose"] == what and p["dose_unit"] == "Gy(RBE)" and "plan" in p["dose_fractions"], p
    assert "Gy(RBE)" in p["dose_values"]
    assert lab["json"]["mc_rtdose"]["plan"]["unit"] == "Gy(RBE)" and lab["json"]["mc_rtdose"]["plan"]["dose"] == what
    html = lab["html"]
    assert f"<h2>Dose maps: {what}" in html and f"<h2>Structures: {what}" in html
    assert "TPS (Gy(RBE) / %)" in html and "maximum (Gy(RBE))" in html
    assert "(Gy)" not in html and "Gy /" not in html, "a Gy label left in the report of an RBE-weighted dose"
    assert lab["dvh_x"] == f"{what} (Gy(RBE))"
    for name in ("axial", "beam_1"):
        units = lab["bars"][name]
        assert sum("(Gy(RBE))" in t for t in units) >= 2 and not any("(Gy)" in t for t in units), units
        assert what in lab["titles"][name]
    rd = pydicom.dcmread(out / "RD_mc.dcm", stop_before_pixels=True)
    assert rd.DoseType == "EFFECTIVE" and f"to {dose_to}, RBE 1.1" in rd.DoseComment, rd.DoseComment
    assert len(rd.DoseComment) <= 64


def test_a_failing_effective_dose_names_the_constant_rbe_assumption(case, tmp_path):
    """rbe audit 2026-12-06 F1: a DoseType EFFECTIVE TPS dose that fails the check names the constant-RBE
    assumption among the causes (a variable-RBE TPS dose: export the physical dose, --dose-type physical); the MC's
    LETd on the TPS grid, which the variable-RBE test regresses on, comes with the MC dose; a passing EFFECTIVE dose
    and a failing PHYSICAL one have no such note."""
    import dataclasses

    from mcproton._check.api import check

    mc = case["res"].mc
    assert mc.let_d_kev_um_zyx is not None and mc.let_d_kev_um_zyx.shape == mc.total_gy_zyx.shape
    assert 1.0 < float(np.percentile(mc.let_d_kev_um_zyx[mc.total_gy_zyx > 0.5 * mc.total_gy_zyx.max()], 50)) < 10
    eff = dataclasses.replace(mc, total_gy_zyx=mc.total_gy_zyx * 1.1,
                              beams_gy_zyx={b: d * 1.1 for b, d in mc.beams_gy_zyx.items()},
                              provenance={**mc.provenance, "rbe": 1.1, "dose_to": "water"})
    d = case["dir"]
    for scale, fails in ((1.1 * 1.15, True), (1.1, False)):
        src = _tps(case, f"tps_eff_{scale:.3f}", case["hi"].total_gy_zyx * scale, dose_type="EFFECTIVE")
        res = check(plan=d / "RP.dcm", dose=[src], ct=d / "ct", struct=d / "RS.dcm", beam_model="dcpt_v2", mc=eff,
                    levels=_levels(), **FAST)
        assert res.passed is not fails
        named = [n for n in res.diagnostics if "constant RBE 1.1" in n and "--dose-type physical" in n]
        assert len(named) == (1 if fails else 0), res.diagnostics
    assert not any("constant RBE" in n for n in _recheck(case, [_tps(case, "tps_phys_hi", case["hi"].total_gy_zyx
                                                                     * 1.15)]).diagnostics)


def test_the_physical_dose_is_labelled_physical_and_a_reused_mc_of_another_dose_refused(case, tmp_path):
    from mcproton._check.api import check
    from mcproton._check.inputs import CheckInputError

    lab = _labels(case["res"])
    assert lab["json"]["provenance"]["dose"] == "physical dose to water"
    assert lab["json"]["provenance"]["dose_unit"] == "Gy" and lab["dvh_x"] == "physical dose to water (Gy)"
    assert "TPS (Gy / %)" in lab["html"] and "Gy(RBE)" not in lab["html"]
    rd = pydicom.dcmread(case["dir"] / "out" / "RD_mc.dcm", stop_before_pixels=True)
    assert "to water, physical" in rd.DoseComment
    # the physical MC reused for an RBE-weighted TPS dose, or for dose to medium: refused (before: compared, and
    # the report said 'effective dose to water, RBE 1')
    src = _tps(case, "tps_eff_reuse", case["hi"].total_gy_zyx * 1.1, dose_type="EFFECTIVE")
    d = case["dir"]
    with pytest.raises(CheckInputError, match="reused MC dose"):
        check(plan=d / "RP.dcm", dose=[src], ct=d / "ct", struct=d / "RS.dcm", beam_model="dcpt_v2",
              mc=case["res"].mc, levels=_levels(), out=tmp_path / "x", **FAST)
    with pytest.raises(CheckInputError, match="reused MC dose"):
        check(plan=d / "RP.dcm", dose=[case["files"]["plan"]], ct=d / "ct", struct=d / "RS.dcm",
              beam_model="dcpt_v2", mc=case["res"].mc, levels=_levels(), dose_to="medium", **FAST)


def test_a_reused_mc_dose_of_another_calibration_or_beam_model_is_refused(case, tmp_path):
    """check(mc=earlier.mc, calibration=..., beam_model=...) used the earlier MC dose whatever the calibration or beam
    model given, and recorded the earlier one: a loop over calibrations that reused one MC found them all the same
    (the long-lived-process audit, F3).  Another one is refused, as other physics are; the same one is accepted."""
    from mcproton._check.api import check
    from mcproton._check.inputs import CheckInputError
    from mcproton._io.hu_calibration import HUCalibration

    d = case["dir"]
    kw = dict(plan=d / "RP.dcm", dose=[case["files"]["plan"]], ct=d / "ct", struct=d / "RS.dcm", mc=case["res"].mc,
              levels=_levels(), **FAST)
    with pytest.raises(CheckInputError, match="HU calibration 'schneider2000'.*asks for 'mcsquare_default'"):
        check(beam_model="dcpt_v2", calibration="mcsquare_default", **kw)
    scaled = HUCalibration.load()
    scaled.seg_rho_lo *= 1.03
    with pytest.raises(CheckInputError, match="HU calibration 'schneider2000'.*data SHA-256"):
        check(beam_model="dcpt_v2", calibration=scaled, **kw)
    with pytest.raises(CheckInputError, match="beam model 'dcpt_v2'.*asks for 'dcpt_v5'"):
        check(beam_model="dcpt_v5", **kw)
    res = check(beam_model="dcpt_v2", calibration=HUCalibration.load(), **kw)
    assert res.mc is case["res"].mc


def test_a_prescription_naming_no_target_and_an_implausible_rbe_are_refused_before_the_transport(base, monkeypatch):
    """--prescription ROI=GY with a mistyped ROI, and --rbe 0 or -1: refused before the MC (before: the whole MC
    ran, then the ROI was refused with no report written; --rbe 0 reported -100 % differences and --rbe -1 ended
    in "dose has negative values" without naming --rbe; a helper's audit)."""
    from mcproton._check import api
    from mcproton._check.inputs import CheckInputError

    def stop(*a, **k):
        raise RuntimeError("transport reached")

    monkeypatch.setattr(api, "run_mc", stop)
    d = base["dir"]
    kw = dict(plan=d / "RP.dcm", dose=_tps(base, "rx_typo", base["blob"]), ct=d / "ct", struct=d / "RS.dcm",
              beam_model="dcpt_v2", **FAST)
    with pytest.raises(CheckInputError, match=r"prescription names \['PTv'\], which are not targets .*'PTV'"):
        api.check(prescription={"PTv": 2.0}, **kw)
    with pytest.raises(RuntimeError, match="transport reached"):    # the right name goes on to the transport
        api.check(prescription={"PTV": 2.0}, **kw)
    # a prescription far from the TPS dose in the target (a unit slip: the units audit of 2026-12-07, F1) too
    with pytest.raises(CheckInputError, match=r"prescription \(--prescription 1000\): .* more than a factor 2"):
        api.check(prescription=1000.0, **kw)
    with pytest.raises(CheckInputError, match=r"--prescription-anyway\) keeps a --prescription .*without "
                                              "--prescription it keeps nothing"):
        api.check(prescription_anyway=True, **kw)
    for bad in (0.0, -1.0, 3.0, float("nan"), True):
        with pytest.raises(CheckInputError, match=r"rbe \(--rbe\) = .* is not a plausible constant RBE"):
            api.check(rbe=bad, **kw)


def test_a_tps_dose_that_says_dose_to_medium_is_compared_as_such(case, tmp_path):
    """DICOM does not say dose to water or medium; an RT Dose that mcproton wrote says it in its DoseComment.  The
    demo's dose to medium (its RT Plan now written beside it) was compared as dose to water without a word; now the
    check takes what the file says (here: the reused MC, of dose to water, is refused as another dose), and a
    --dose-to that contradicts it is warned about and compared as given."""
    from types import SimpleNamespace

    from mcproton import McprotonWarning
    from mcproton._check.api import _dose_to_of, stated_dose_to
    from mcproton._check.inputs import CheckInputError

    hi = case["hi"].total_gy_zyx
    med = _tps(case, "tps_medium", hi, dose_comment="MC dose, 1 of 1 fx, to medium, physical")
    wat = _tps(case, "tps_water", hi, dose_comment="MC dose, 1 of 1 fx, to water, physical")
    other = _tps(case, "tps_other", hi, dose_comment="Dose To Medium")
    pydicom_ds = pydicom.dcmread(other)
    pydicom_ds.Manufacturer = "Another TPS"          # another writer's comment is read too (dose-to-water audit F1)
    pydicom_ds.save_as(other)
    silent = _tps(case, "tps_silent", hi, dose_comment="Eclipse dose")
    assert stated_dose_to([med]) == "medium" and stated_dose_to([wat]) == "water"
    assert stated_dose_to([med, wat]) is None and stated_dose_to([other]) == "medium"
    lines: list[str] = []
    inp = SimpleNamespace(total=SimpleNamespace(path=med), beams={})
    assert _dose_to_of(inp, None, lines.append) == "medium"
    assert "dose to medium, as read from its DoseComment" in lines[0]
    assert _dose_to_of(SimpleNamespace(total=SimpleNamespace(path=other), beams={}), None, lines.append) == "medium"
    assert "'Another TPS'" in lines[-1] and "'Dose To Medium'" in lines[-1]
    assert _dose_to_of(SimpleNamespace(total=SimpleNamespace(path=silent), beams={}), None, lines.append) == "water"
    assert "compared as dose to water, assumed" in lines[-1] and "--dose-to medium" in lines[-1]
    with pytest.warns(McprotonWarning, match="says it is dose to medium .* but dose to water was asked"):
        assert _dose_to_of(inp, "water", lines.append) == "water"
    with pytest.raises(CheckInputError, match="medium"):   # the case's MC is of dose to water: not this dose
        _recheck(case, [med])
    with pytest.warns(McprotonWarning, match="says it is dose to medium"):
        res = _recheck(case, [med], dose_to="water")
    assert res.settings["dose_to"] == "water"


def test_beams_of_one_direction_compared_on_the_total_dose_give_one_range_row(case, tmp_path, report_figures_blank):
    """Audit 18b F8: without a per-beam TPS dose, the range of each beam is read along its direction on the total
    dose; three fields at gantry 0 compared the same rays and gave three identical FAIL rows.  Now the beams sharing
    a direction and isocentre give one row, "beams 1, 2 (gantry 0, couch 0)", and one row in the HTML's range table."""
    import copy
    import dataclasses

    from mcproton._check.api import check

    mc = case["res"].mc
    meta = copy.deepcopy(mc.beam_meta)
    meta[2]["beam_direction"] = meta[1]["beam_direction"]   # beam 2 along beam 1 (the plan's angles are beam 1's)
    d = case["dir"]
    res = check(plan=d / "RP.dcm", dose=case["files"]["plan"], ct=d / "ct", struct=d / "RS.dcm", beam_model="dcpt_v2",
                mc=dataclasses.replace(mc, beam_meta=meta), levels=_levels(), out=tmp_path / "out", **FAST)
    rows = [c["quantity"] for c in res.checks if "R80" in c["quantity"]]
    assert rows == ["beams 1, 2 (gantry 0, couch 0): median distal R80 difference (total dose along the beam "
                    "direction (no per-beam TPS dose))", "beams 1, 2 (gantry 0, couch 0): rays with |R80 difference| "
                    "<= 2 mm"], rows
    assert res.ranges[2]["same_rays_as"] == 1 and res.ranges[1]["beams"] == res.ranges[2]["beams"] == [1, 2]
    assert res.ranges[2]["within_2mm"] == res.ranges[1]["within_2mm"]
    page = (tmp_path / "out" / "check.html").read_text()
    assert page.count("<td>1, 2 (gantry 0, couch 0)</td>") == 1 and "<td>2</td><td>total dose" not in page


def test_likely_causes_come_before_the_remarks_under_their_own_heading(case, tmp_path, report_figures_blank):
    """Audit 18b F6: every note of a FAIL stood under "Likely causes", remarks that cause nothing (an ROI off the
    grid, an ROI typed by its name, dose in air) first and the real cause last.  Now check.json's
    ``diagnostic_kinds`` says which is which (``diagnostics`` unchanged), the HTML shows the causes under "Likely
    causes" and the remarks under "Remarks", and the summary gives the causes first."""
    import json

    rs = tmp_path / "RS_far.dcm"
    _write_rs(rs, None, targets=[("PTV", (-16.0, -16.0, -12.0), (16.0, 16.0, 12.0)),
                                 ("Brainstem_far", (-10.0, -10.0, 200.0), (10.0, 10.0, 220.0))])
    from mcproton._check.api import check

    d = case["dir"]
    res = check(plan=d / "RP.dcm", dose=_tps(case, "scaled_f6", case["hi"].total_gy_zyx * 1.05), ct=d / "ct",
                struct=rs, beam_model="dcpt_v2", mc=case["res"].mc, levels=_levels(), out=tmp_path / "out", **FAST)
    assert not res.passed and len(res.diagnostic_kinds) == len(res.diagnostics)
    causes, remarks = res.diagnostics_of("cause"), res.diagnostics_of("remark")
    assert any("0.95" in n for n in causes), causes                               # the MC/TPS ratio: a cause
    assert any("'Brainstem_far'" in n for n in remarks), remarks                  # an ROI off the grid: a remark
    assert not any("'Brainstem_far'" in n for n in causes), causes
    saved = json.loads((tmp_path / "out" / "check.json").read_text())
    assert saved["diagnostics"] == res.diagnostics and saved["diagnostic_kinds"] == res.diagnostic_kinds
    page = (tmp_path / "out" / "check.html").read_text()
    lc, rm = page.index("<h3>Likely causes</h3>"), page.index("<h3>Remarks</h3>")
    assert lc < page.index("0.95", lc) < rm < page.index("Brainstem_far", rm), "causes first, then the remarks"
    notes = [ln for ln in res.summary().splitlines() if ln.startswith("  note: ")]
    assert notes == [f"  note: {d}" for d in causes + remarks], notes


def test_a_reused_mc_dose_without_a_model_file_record_is_matched_by_name_as_documented():
    """Review 2 of 2026-12-06, F7: check(mc=...) with an MC dose recorded without its beam model's file (an older
    record) and beam_model="dcpt_v2" was refused with "computed with the beam model 'dcpt_v2', but this check asks
    for 'dcpt_v2'", while the docstring said it is then compared by name.  The same name is accepted with a warning
    that says it could not be matched by content; another name is still refused."""
    import types
    import warnings

    from mcproton._check.api import _check_reused_mc_models
    from mcproton._check.inputs import CheckInputError
    from mcproton._io.errors import recording_warnings

    mc = types.SimpleNamespace(provenance={"beam_model": "dcpt_v2", "calibration": "schneider2000"})
    with recording_warnings() as said, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _check_reused_mc_models(mc, None, "dcpt_v2")
    assert len(said) == 1 and "matched to it by name only" in said[0], said
    with pytest.raises(CheckInputError, match="beam model 'dcpt_v2'.*asks for 'dcpt_v5'"):
        _check_reused_mc_models(mc, None, "dcpt_v5")
