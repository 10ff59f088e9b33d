"""A TPS dose that is itself a noisy Monte Carlo dose (roundtrip audit of 2026-12-06, F4).

The demo's own RT Dose at 3 mm (2.74 % noise, stated in its ImageComments) failed ``mcproton check`` on gamma
2 %/2 mm (92.8 % with the MC at 1 %, 92.4 % at 0.5 %) and read its D95 +2.5 to +3.8 % low, and the only note blamed
the MC's noise.  Now the check reads the uncertainty an RT Dose mcproton wrote states of itself
(rtdose.stated_uncertainty: write_result_rtdose's ImageComments, the check's own RD_mc.dcm's DoseComment), records
it in check.json's input record of that dose, and where it explains a failed gamma or D95 level names it among the
likely causes with the numbers and the remedy (mcproton/_check/reference_noise.py).  A dose that states no
uncertainty (every planning system's) is checked as before.

The end-to-end case: the water box of tests/check/test_check.py on 4 x 2 x 4 mm voxels, one beam of three layers
(90, 85 and 80 MeV, 5 x 5 spots 8 mm apart), an MC of 60 000 protons (seed 4321, 5.3 % noise, ~4 s on one core)
reused through ``check(mc=)``; the 'TPS' dose is that MC dose times (1 + 8 % x normal noise) (seeded), so that it
differs from the MC by its own noise alone, written with and without the statement.  Deterministic with the seeds:
gamma 2 %/2 mm 83.8 % (3 %/2 mm 87.3 %), D95 raw +5.4 %, MC-corrected +8.2 % (measured 2026-12-06; 2 %/2 mm 84.5 %
since the gammas' robust normalisation and finer search of 2026-12-07, gamma audit 28 F1, F2; at 5 % noise
2 %/2 mm read 91.0 %, 3 %/2 mm 95.0 %; with one beam of 3 x 3 spots, mostly gradient, 10 % noise still passed
3 %/2 mm at 99 %: the gamma's search finds an agreeing dose where the dose is not flat).  ~20 s on one core.
"""
from __future__ import annotations

import json
import math
import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from dicom_factories import spot_grid
from test_check import FOR
from test_check_shallow_range import box_case

from mcproton._check.reference_noise import (NOISE_FAIL_TOLERANCE, Found, JudgedAgainst, ReferenceNoise,
                                             noise_fail_share, reference_d95_clause, reference_noise_notes)
from mcproton.dicom import StudyReference

#: the 'TPS' dose's own relative noise (1 sd) in the end-to-end case, and the MC's protons
NOISE = 0.08
PRIMARIES = 60000
FAST = {"gamma_points": 600, "progress": False, "backend": "cpu", "beam_model": "dcpt_v2", "log": lambda m: None}


# ---- what an RT Dose states of its own noise, read back


def _result(unc: float):
    """A small mcproton result (a water box, a smooth dose) whose mean relative uncertainty above 50 % is ``unc``."""
    from mcproton import DoseResult, box_phantom

    g = box_phantom("water", (8.0, 8.0, 12.0), (4.0, 4.0, 4.0))
    shape = g.shape_zyx
    dose = np.linspace(0.1, 2.1, int(np.prod(shape))).reshape(shape)
    return DoseResult(dose_gy_zyx=dose, dose_to_water_gy_zyx=dose, let_d_kev_um_zyx=np.full(shape, 2.0),
                      uncertainty_rel_zyx=np.full(shape, unc), mean_rel_uncertainty_50=unc, geometry=g,
                      ledger={"incident": 1.0, "deposited": 1.0}, primaries=900000, wall_s=1.0,
                      protons_per_second=5e4, backend="cpu", device="cpu", normalisation="Gy for 1e+10 protons",
                      provenance={"seed": 7, "beam_index": 0, "normalisation": "Gy for 1e+10 protons"})


def _written(tmp_path, unc: float, name: str = "RD.dcm") -> Path:
    from mcproton.dicom import write_result_rtdose

    path = tmp_path / name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # no body outline, no plan: not what is tested here
        write_result_rtdose(_result(unc), path)
    return path


def test_the_uncertainty_mcprotons_rt_dose_states_is_read_back(tmp_path):
    """write_result_rtdose's ImageComments (here after the placeholder plan reference's note, as a dose without a
    plan writes it) read back by the check's TPS dose reader: 2.74 %; "not estimated" (one batch): none."""
    from mcproton._check.inputs import read_tps_dose

    path = _written(tmp_path, 0.0274)
    text = str(pydicom.dcmread(path).ImageComments)
    assert text.startswith("no RT Plan: placeholder plan ref; 900,000 primaries"), text
    assert text.endswith("mean relative uncertainty above 50 % of the maximum: 2.74 %"), text
    d = read_tps_dose(path)
    assert d.stated_uncertainty_pct == pytest.approx(2.74)
    assert d.stated_uncertainty_source == \
        "ImageComments ('mean relative uncertainty above 50 % of the maximum: 2.74 %')"
    one_batch = read_tps_dose(_written(tmp_path, float("nan"), "RD_nan.dcm"))
    assert "not estimated" in str(pydicom.dcmread(one_batch.path).ImageComments)
    assert one_batch.stated_uncertainty_pct is None and one_batch.stated_uncertainty_source == ""


@pytest.mark.parametrize("image_comments, dose_comment, maker, expected", [
    ("MEAN RELATIVE UNCERTAINTY ABOVE 50 % OF THE MAXIMUM:2.5%", "", "mcproton", 2.5),     # case, spacing
    ("x; mean relative  uncertainty above 50 %\nof the maximum: 1.2e+03 %", "", "mcproton", 1200.0),   # .3g
    ("mean relative uncertainty above 50 % of the maximum: 3.1 %", "", "RayStation", 3.1),   # the words: any writer
    ("", "mcproton check MC to water, physical, 0.88% 1sd, 0 outside body", "mcproton", 0.88),   # the check's RD_mc
    ("", "mcproton check MC to water, physical, 1sd n/a, 0 outside body", "mcproton", None),
    ("", "MC dose 2.0% 1sd", "RaySearch Laboratories", None),   # the check's short form: only mcproton's files
    ("", "/DPBNUM=X1\r\n/MCOPT=F1", "RaySearch Laboratories", None),   # RayStation's MC dose (aptg_plan03)
    ("mean relative uncertainty above 50 % of the maximum: not estimated (fewer than 2 batches)", "", "mcproton",
     None),
    ("", "", "OpenMCsquare", None),   # OpenTPS's MCsquare dose (opentps_head): states nothing
])
def test_what_is_read_as_a_stated_uncertainty(image_comments, dose_comment, maker, expected):
    from pydicom.dataset import Dataset

    from mcproton._io.rtdose import stated_uncertainty

    ds = Dataset()
    ds.Manufacturer = maker
    if image_comments:
        ds.ImageComments = image_comments
    if dose_comment:
        ds.DoseComment = dose_comment
    got = stated_uncertainty(ds)
    assert (got and got[0]) == (pytest.approx(expected) if expected is not None else None), got


def test_the_checks_own_mc_dose_comment_is_read_back():
    """The DoseComment of the check's RD_mc.dcm (mc_rtdose.dose_comment), as it writes it."""
    from pydicom.dataset import Dataset

    from mcproton._check.mc_rtdose import dose_comment
    from mcproton._io.rtdose import stated_uncertainty

    ds = Dataset()
    ds.Manufacturer = "mcproton"
    ds.DoseComment = dose_comment("to water, physical", 0.0088, "dcpt_v5", beam=2)
    assert stated_uncertainty(ds)[0] == pytest.approx(0.88), ds.DoseComment


# ---- the note (reference_noise_notes), on rows as the check makes them


def _gamma(value: float, limit: float = 95.0, dose_pct: float = 2.0, stated: float | None = 2.74,
           label: str = "the plan dose", ref: str = "rtdose.dcm", beam: int | None = None) -> JudgedAgainst:
    row = {"quantity": "gamma", "value": value, "limit": limit, "passed": value >= limit}
    return JudgedAgainst(row, ref, stated, "ImageComments (...)", label, gamma_dose_pct=dose_pct, beam=beam)


def _d95(vals: dict, lims: dict, stated: float | None = 2.74) -> JudgedAgainst:
    ok = all(abs(v) <= lims[k] for k, v in vals.items())
    row = {"quantity": "CTV_PF D95 difference", "value": max(vals.values(), key=abs), "limit": 3.0, "passed": ok}
    return JudgedAgainst(row, "rtdose.dcm", stated, "ImageComments (...)", "target 'CTV_PF' D95", d95=(vals, lims))


def _beam(b: int, value: float, stated: float) -> JudgedAgainst:
    """A per-beam gamma row against that beam's own RT Dose (RD_beam<b>.dcm), as the roundtrip audit's."""
    return _gamma(value, stated=stated, label=f"beam {b}", ref=f"RD_beam{b}.dcm", beam=b)


DEMO_D95 = ({"raw": 2.52, "noise-matched": 2.79, "MC-corrected": 3.77},
            {"raw": 3.0, "noise-matched": 3.0, "MC-corrected": 3.05})
#: the plan dose's median MC/TPS ratio of a correct MC (the roundtrip audit's unperturbed checks: -0.01 to -0.08 %)
SAME = Found(ratios={None: {"diff_pct": -0.01, "uncertainty_pct": 0.04}})


def test_the_demos_case_names_the_reference_noise_with_its_numbers():
    """The auditor's check of the demo's 2.74 % dose: gamma 3 %/2 mm 95.89 % (pass), 2 %/2 mm 92.76 % (FAIL), D95
    MC-corrected +3.77 % (FAIL), nothing systematic found: one cause, naming the file's stated noise, the share of
    points that noise fails by the calibrated model (0.268 erfc(1.083 x 2 / 2.74) = 7.1 %: an expected pass rate
    of 92.9 %), the D95 it lowers (1.645 x 2.74 = 4.5 %, every failed estimate within it) and the remedy (a
    reference at 0.5 %: (2.74 / 0.5)^2 = 30 x its primaries); and not the flat-region bound's "whatever the MC
    does" (review of 2026-12-06, R4: a noisier MC passes more)."""
    notes = reference_noise_notes([_gamma(95.89, dose_pct=3.0), _gamma(92.76), _d95(*DEMO_D95)], SAME)
    assert len(notes.causes) == 1 and notes.remarks == [], notes
    n = notes.causes[0]
    print(n)
    assert n.startswith("the TPS dose rtdose.dcm is itself a Monte Carlo dose: it states its own statistical "
                        "uncertainty, 2.74 % (in its ImageComments (...)), and the failed levels are consistent with "
                        "that noise alone"), n
    assert "gamma 2 %/2 mm (the plan dose 92.76 %): a reference this noisy fails about 7.1 % of the points with no " \
           "dose difference (an expected pass rate of 92.9 %" in n, n
    assert "the 7.2 % failed here is within 1.7 x that" in n, n
    assert "whatever the MC does" not in n and "alone can explain" not in n, n
    assert "gamma 3 %" not in n   # it passed
    assert "target 'CTV_PF' D95 (MC-corrected +3.77 %)" in n and "lowers the TPS's D95 by up to 4.5 %" in n, n
    assert "does not remove this noise: regenerate the reference dose at a statistical uncertainty of at most 0.5 %" \
        in n and "(about 30 x its primaries)" in n, n
    assert noise_fail_share(2.0, 2.74) == pytest.approx(0.268 * math.erfc(1.083 * 2 / 2.74))


def test_the_model_reproduces_the_measured_pass_rates():
    """The gamma model against the pass rates it was calibrated on (2 %/2 mm, the check's MC at about 1 %): the
    roundtrip audit's unperturbed per-beam check (references stated at 1.32-1.36 %: 99.40-99.57 %), the 1.9 % demo
    (97.2 %, docs/check.md), the 2.74 % demo (92.76 %); and the demo's 3 %/2 mm (95.89 %) within the tolerance."""
    for s, measured in ((1.36, 99.45), (1.32, 99.40), (1.32, 99.57), (1.9, 97.2), (2.74, 92.76)):
        assert 100 * (1 - noise_fail_share(2.0, s)) == pytest.approx(measured, abs=0.25), s
    assert 100 - 95.89 <= NOISE_FAIL_TOLERANCE * 100 * noise_fail_share(3.0, 2.74)


@pytest.mark.parametrize("stated, value, kind", [
    (None, 92.76, None),       # no statement: nothing
    (0.5, 92.76, None),        # at the remedy's goal: nothing (review R2)
    (0.9, 90.0, None),         # the model: 0.03 % of the points; not even a remark
    (1.36, 94.5, None),        # mcproton's ordinary per-beam RT Dose: 0.6 %; a failed 95 % level is never its noise
    (2.0, 94.5, "cause"),      # 3.4 %: 5.5 % failed, within 1.7 x
    (2.0, 94.0, "remark"),     # 6.0 % failed, beyond 1.7 x 3.4 %: contributes, a difference remains
    (2.74, 92.76, "cause"),
    (2.74, 88.2, "cause"),     # 11.8 % <= 1.7 x 7.1 %
    (2.74, 87.5, "remark"),
    (1.2, 41.3, None),         # the review's gross failure (R1, gamma_gross.py): not the reference's noise
])
def test_a_gamma_failure_is_put_on_the_reference_only_where_the_pass_rate_fits_its_noise(stated, value, kind):
    """Named as a cause only where the share of points failed is at most 1.7 x what the reference's noise gives
    by the model; a remark (contributes) where the model gives at least 1 % of the points; else nothing."""
    notes = reference_noise_notes([_gamma(value, stated=stated)], SAME)
    got = "cause" if notes.causes else "remark" if notes.remarks else None
    assert got == kind, notes
    if kind == "remark":
        assert "which contributes to the failed level but does not explain it" in notes.remarks[0], notes
        assert "the rest is a dose difference, beyond what this noise gives" in notes.remarks[0], notes


#: The roundtrip audit's perturbed copies of mcproton's own per-beam RT Doses (1.36 / 1.32 / 1.32 %), checked with
#: the code before fix/refnoise (review of 2026-12-06, R1, rows_to_notes.py): the beam gamma rows, the beams'
#: median MC/TPS ratios and the likely causes that name the real error
SHIFTY = {"gamma": (84.80, 73.57, 73.90), "ratio": (-0.3, -0.5, -0.4),
          "notes": [f"beam {b}: the high-dose centroid of the MC lies (+0.0, -1.9, -0.0) mm (x, y, z) from the "
                    "TPS's: a shift of the beam (along it, also a range difference)" for b in (1, 2, 3)],
          "failed_ranges": ["beam 1: median distal R80 difference (per-beam TPS dose)"]}
SCALE = {"gamma": (90.90, 92.26, 93.22), "ratio": (-2.92, -2.99, -2.92), "notes": [], "failed_ranges": []}


@pytest.mark.parametrize("case", [SHIFTY, SCALE], ids=["shift 3 mm", "scale 3 %"])
@pytest.mark.parametrize("context", [True, False], ids=["with what the check found", "rows alone"])
def test_a_real_dose_error_is_not_blamed_on_the_references_noise(case, context):
    """A 3 mm shift and a 3 % scale error against mcproton's own per-beam RT Doses (stated 1.36 / 1.32 / 1.32 %)
    failed every beam gamma (73.6-93.2 %): before, each beam got "that noise alone can explain the failed level
    ... whatever the MC does", first among the causes.  Now no note at all: their pass rates are far below what a
    reference of 1.3 % gives (99.4 %, the model's 0.6 % of the points too few even for a remark), and the check's
    own findings (the centroid shifts and a failed range row; the -2.9 % ratios) stop it on their own too."""
    stated = (1.36, 1.32, 1.32)
    rows = [_beam(b, v, s) for b, v, s in zip((1, 2, 3), case["gamma"], stated)]
    found = Found(ratios={b: {"diff_pct": r, "uncertainty_pct": 0.04} for b, r in zip((1, 2, 3), case["ratio"])},
                  notes=case["notes"], failed_ranges=case["failed_ranges"]) if context else None
    notes = reference_noise_notes(rows, found)
    assert notes.causes == [] and notes.remarks == [], notes
    # the same failures against a noisier reference, whose noise gives about these pass rates: what the check found
    # keeps them from being its noise's; a remark says what share the noise contributes
    noisy = [_beam(b, 90.5, 2.74) for b in (1, 2, 3)]
    notes = reference_noise_notes(noisy, Found(ratios={b: {"diff_pct": r} for b, r in zip((1, 2, 3), case["ratio"])},
                                               notes=case["notes"], failed_ranges=case["failed_ranges"]))
    assert notes.causes == [] and len(notes.remarks) == 3, notes
    for n in notes.remarks:
        assert "which contributes to the failed level but does not explain it" in n and "see the likely causes" in n
        assert "consistent with that noise alone" not in n and "whatever the MC does" not in n, n


def test_what_the_check_found_stops_only_its_own_beam_and_the_plan():
    """A centroid note of beam 1 stops its own row and the plan's rows being put on the noise, not beam 2's; a note
    of no beam (the plan's) stops every row; a beam's median ratio beyond 1 % its own row; the plan dose's ratio
    beyond 1 % the plan's rows and a D95."""
    rows = [_beam(1, 92.0, 2.74), _beam(2, 92.0, 2.74), _gamma(92.0, stated=2.74, ref="RD.dcm")]
    shifted = Found(notes=["beam 1: the high-dose centroid of the MC lies ..."])
    notes = reference_noise_notes(rows, shifted)
    assert [n.split()[3] for n in notes.causes] == ["RD_beam2.dcm"], notes
    assert sorted(n.split()[3] for n in notes.remarks) == ["RD.dcm", "RD_beam1.dcm"], notes
    plan_note = Found(notes=["the MC dose is 0.971 x the TPS dose (sum over the body voxels above 10 %)"])
    assert reference_noise_notes(rows, plan_note).causes == []
    ratio = Found(ratios={1: {"diff_pct": 1.4}, 2: {"diff_pct": 0.2}, None: {"diff_pct": 0.1}})
    assert [n.split()[3] for n in reference_noise_notes(rows, ratio).causes] == ["RD_beam2.dcm", "RD.dcm"]
    plan_ratio = Found(ratios={None: {"diff_pct": 2.1}})
    d95 = _d95(*DEMO_D95)
    assert reference_noise_notes([d95], SAME).causes and reference_d95_clause(d95, SAME)
    assert not reference_noise_notes([d95], plan_ratio).causes and reference_d95_clause(d95, plan_ratio) == ""
    assert "does not explain it" in reference_noise_notes([d95], plan_ratio).remarks[0]


def test_no_note_where_the_levels_pass_or_the_d95_difference_is_not_the_reference_noises():
    """Passed levels: nothing.  A D95 the MC reads lower than the TPS (its noise lowers the TPS's D95: it cannot
    explain that): nothing.  Higher by more than 1.645 x the stated noise (the whole shift it can make, not only
    the excess over the level): a remark at most, never a cause."""
    assert reference_noise_notes([_gamma(96.0), _d95({"raw": 2.0}, {"raw": 3.0})], SAME) == ReferenceNoise()
    assert reference_noise_notes([_d95({"raw": -3.8}, {"raw": 3.0})], SAME) == ReferenceNoise()
    within = reference_noise_notes([_d95({"raw": 1.6449 * 2.74 - 0.1}, {"raw": 3.0})], SAME)
    assert len(within.causes) == 1 and within.remarks == []
    beyond = reference_noise_notes([_d95({"raw": 1.6449 * 2.74 + 0.1}, {"raw": 3.0})], SAME)
    assert beyond.causes == [] and len(beyond.remarks) == 1
    assert "which contributes to the failed level" in beyond.remarks[0] and "up to that much of the MC's D95 reading " \
        "higher may be this noise's" in beyond.remarks[0], beyond
    # beyond the level + that shift (without the noise it would still fail): not even a remark (the review's
    # c_shifty: a plan dose stated at 0.88 %, D95 +7.3 %)
    assert reference_noise_notes([_d95({"raw": 7.29, "MC-corrected": 9.42}, {"raw": 3.0, "MC-corrected": 3.08},
                                       stated=0.88)], SAME) == ReferenceNoise()
    # each reference file its own note: a per-beam file's noise explains its own row only
    notes = reference_noise_notes([_gamma(90.0, stated=0.3), _gamma(88.0, stated=8.0, label="beam 1",
                                                                      ref="RD_beam1.dcm", beam=1)], SAME)
    assert len(notes.causes) == 1 and notes.causes[0].startswith("the TPS dose RD_beam1.dcm") \
        and "(beam 1 88.00 %)" in notes.causes[0] and notes.remarks == [], notes


@pytest.mark.parametrize("stated, vals", [
    (0.3, {"raw": 3.3, "noise-matched": 3.2, "MC-corrected": 3.4}),   # the review's d95_remedy.py (R2)
    (0.1, {"raw": 3.1}),
    (0.5, {"raw": 3.2}),   # at the goal (a sixth of the 3 % level)
])
def test_a_reference_at_or_below_the_goal_is_not_named_on_d95(stated, vals):
    """A reference stated at or below the D95 remedy's goal (0.5 % at the 3 % level): no note, no clause in the
    MC-noise note (before: "regenerate the reference dose at a statistical uncertainty of at most 0.5 %" for a
    0.1 % reference, and "that noise alone can explain" a difference its 0.16 % shift hardly touches)."""
    j = _d95(vals, {k: 3.0 for k in vals}, stated=stated)
    assert reference_noise_notes([j], SAME) == ReferenceNoise()
    assert reference_d95_clause(j, SAME) == ""


@pytest.mark.parametrize("stated", [0.2, 0.45, 0.55, 0.8, 1.0, 1.5, 2.0, 2.74, 4.0, 8.0])
def test_the_remedy_never_asks_for_a_reference_as_noisy_as_it_is(stated):
    """Whatever note is given, the goal it names is below the stated noise (review R2)."""
    rows = [_gamma(v, stated=stated) for v in (60.0, 85.0, 93.0)] + [
        _d95({"raw": x}, {"raw": 3.0}, stated=stated) for x in (3.1, 4.0, 6.0, 12.0)]
    for found in (SAME, Found(ratios={None: {"diff_pct": 3.0}})):
        notes = reference_noise_notes(rows, found)
        for n in notes.causes + notes.remarks:
            goal = float(re.search(r"(?:at most|a reference at) ([0-9.]+) %", n).group(1))
            assert goal < stated, n


# ---- end to end: check() of a noisy 'TPS' MC dose


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    """The water box of test_check.py (4 x 2 x 4 mm voxels), its External and a box PTV, one beam along +y of three
    layers, and an MC dose of it (PRIMARIES protons)."""
    from mcproton._check.compute import run_mc

    d = tmp_path_factory.mktemp("refnoise")
    vs = (4.0, 2.0, 4.0)
    spots = spot_grid(5, 8.0)
    rp, inp, geo, org = box_case(d, vs, [(90.0, spots, [1.0] * 25), (85.0, spots, [0.7] * 25),
                                         (80.0, spots, [0.6] * 25)])
    mc = run_mc(inp, geo, "dcpt_v2", primaries=PRIMARIES, target_uncertainty=None, seed=4321, backend="cpu",
                progress=False, log=lambda m: None)
    return {"dir": d, "rp": rp, "mc": mc, "grid": (vs, org)}


def _check_noisy(box, name: str, stated: bool, out: Path | None = None, scale: float = 1.0, shift_x: int = 0):
    """The check against the MC dose x (1 + NOISE x normal noise), its ImageComments stating NOISE (``stated``, as
    write_result_rtdose words it) or nothing; x ``scale`` and moved by ``shift_x`` voxels along x (a dose error)."""
    from mcproton._check.api import check
    from mcproton._io.rtdose import UNCERTAINTY_STATEMENT
    from mcproton.dicom import write_rtdose

    vs, org = box["grid"]
    dose = box["mc"].total_gy_zyx
    noisy = np.clip(dose * (1 + NOISE * np.random.default_rng(11).standard_normal(dose.shape)), 0, None)
    noisy = scale * np.roll(noisy, shift_x, axis=2)
    study = StudyReference(frame_of_reference_uid=FOR, plan_sop_instance_uid=box["rp"].sop_instance_uid)
    rd = write_rtdose(noisy, vs, org, box["dir"] / f"{name}.dcm", study=study,
                      image_comments=f"20,000 primaries; {UNCERTAINTY_STATEMENT}{100 * NOISE:g} %" if stated else "")
    return check(plan=box["dir"] / "RP.dcm", dose=rd, ct=box["dir"] / "ct", struct=box["dir"] / "RS.dcm",
                 mc=box["mc"], seed=1, out=out, **FAST)


def _reference_notes(res) -> tuple[list[str], list[str]]:
    return ([n for n in res.diagnostics_of("cause") if "is itself a Monte Carlo dose" in n],
            [n for n in res.diagnostics_of("remark") if "is itself a Monte Carlo dose" in n])


def test_a_check_against_a_noisy_mc_dose_names_its_noise_among_the_likely_causes(box, tmp_path):
    """The 'TPS' differs from the MC by its own 8 % noise alone: gamma 2 %/2 mm fails; nothing systematic is found
    (the plan dose's median MC/TPS ratio within 1 %, no shift or range cause), and the pass rates are what such a
    reference gives (the model: 18.8 % of the points fail at 2 %/2 mm, 15.5 % do: the 8 % noise raises the 8th-largest
    voxel (compare.normalisation_dose's near-maximum) more than 1.1 x above the near-maximum of the 3 x 3 x 3 medians,
    which the gammas are normalised to since audit 31 (norm F1; 13.8 % failed, 86.17 % passed, normalised to the
    noise-raised voxel; 15.5 % with the 99.9th percentile before review d of 2026-12-07): the note names the file's
    stated 8 % among the likely causes, with the numbers, the failed D95 level among them (no MC-noise note for it:
    every estimate fails, audit 26 F1; before, that note asked for more MC primaries and then pointed here);
    check.json's input record of the dose keeps it, and the report's files table says it.  The same dose stating
    nothing: the same verdict, no such note, no such record."""
    res = _check_noisy(box, "RD_noisy", True, out=tmp_path / "out")
    print(res.summary())
    g22 = [c for c in res.checks if c["level"] == "gamma_2_2_min"]
    assert g22 and not g22[0]["passed"], res.summary()
    (note,), remarks = _reference_notes(res)
    assert remarks == [], remarks
    assert note.startswith("the TPS dose RD_noisy.dcm is itself a Monte Carlo dose: it states its own statistical "
                           "uncertainty, 8.00 %"), note
    assert "consistent with that noise alone" in note and "whatever the MC does" not in note, note
    assert "gamma 2 %/2 mm (the plan dose 84.50 %): a reference this noisy fails about 18.8 % of the points" in note
    assert "regenerate the reference dose at a statistical uncertainty of at most 0.5 %" in note
    assert note in res.summary()
    # the D95 level (raw +5.4, noise-matched +6.6, MC-corrected +8.2 %: every estimate beyond its limit, so the MC's
    # noise cannot turn it) is this note's, not the MC-noise note's, whose rerun of the MC would not remove it
    # (audit 26, F1; where an estimate is within its limit, that note keeps reference_d95_clause, tested above)
    assert "target 'PTV' D95 (raw +" in note and "its own noise lowers the TPS's D95 by up to 13.2 %" in note, note
    assert not any("the D95 level failed" in n for n in res.diagnostics), res.diagnostics
    js = json.loads((tmp_path / "out" / "check.json").read_text())
    (rec,) = [f for f in js["provenance"]["inputs"] if f["role"] == "TPS RT Dose (plan)"]
    assert rec["stated_uncertainty_pct"] == pytest.approx(8.0)
    assert rec["stated_uncertainty_source"] == "ImageComments ('mean relative uncertainty above 50 % of the maximum: " \
                                               "8 %')"
    assert js["diagnostic_kinds"][js["diagnostics"].index(note)] == "cause"
    assert "an MC dose stating 8.00 % statistical uncertainty" in (tmp_path / "out" / "check.html").read_text()
    silent = _check_noisy(box, "RD_silent", False)
    assert [c["passed"] for c in silent.checks] == [c["passed"] for c in res.checks]
    assert not any("is itself a Monte Carlo dose" in n or "own stated noise" in n for n in silent.diagnostics)
    assert all("stated_uncertainty_pct" not in f for f in silent.provenance["inputs"])


@pytest.mark.parametrize("scale, shift_x, found", [
    (1.03, 0, "the MC dose is 0.971 x the TPS dose"),   # a 3 % scale error (the review's c_scale)
    # a 4 mm shift (its c_shifty: 3 mm): no centroid note here, the MC's uncertainty level failing (5.3 %), but the
    # part of the field moved out of the body's >= 10 % region reads as a scale
    (1.0, 1, "the MC dose is 0.978 x the TPS dose"),
], ids=["scale 3 %", "shift 4 mm"])
def test_a_dose_error_against_a_noisy_mc_dose_is_not_put_on_its_noise(box, scale, shift_x, found):
    """The same noisy 'TPS' with a real error: its noise is no likely cause (before: "that noise alone can explain
    the failed level ... whatever the MC does", first among the causes; review of 2026-12-06, R1); the cause that
    names the error comes first, and the reference's noise is a remark after the causes, that it contributes and
    does not explain."""
    res = _check_noisy(box, f"RD_err_{scale}_{shift_x}", True, scale=scale, shift_x=shift_x)
    print(res.summary())
    assert not res.passed
    causes = res.diagnostics_of("cause")
    assert causes[0].startswith(found), causes
    assert not any("is itself a Monte Carlo dose" in n or "own stated noise" in n for n in causes), causes
    named, remarks = _reference_notes(res)
    assert named == [] and len(remarks) == 1, remarks
    assert "which contributes to the failed level" in remarks[0] and "see the likely causes" in remarks[0], remarks
    assert res.diagnostics.index(remarks[0]) > max(res.diagnostics.index(c) for c in causes)
