"""The range rows of ``mcproton check`` on a shallow beam (audit 21 F1): the level is an absolute |median dR80| <=
1 mm, and a relative range error moves the distal R80 by that fraction of the beam's depth, so a 3 % error in a
beam whose distal edge lies ~41 mm deep moves the median by ~1.2 mm only, and an offset of the two codes' ranges
of 0.5 mm (mcproton against MCsquare) can cancel part of it.  The check says, per beam, what its level is as a
relative range error (the row's limit text, check.json ``ranges[b]["range_level_pct_of_depth"]``) and, below the
depth where a 3 % error is found for sure, a note.

Case: the water box of tests/check/test_check.py (surface at y = -40 mm) on 4 x 1 x 4 mm voxels, with one 70 MeV
beam along +y (the lowest energy of dcpt_v2: R80 ~41 mm in water).  MC against MC: the 'TPS' dose is an MC of the
same plan and seed on the box with its densities divided by 1.03 (every path length 3 % longer: a range error of
+3 %), or by the factor that puts its R80 3 % deeper less 0.5 mm (the codes' offset cancelling part of the error).
Measured (2026-12-06): the median moved by -1.234 mm against 3 % of 41.1 mm = 1.233 mm (2 % and 4 %: -0.817 and
-1.647 mm against 0.822 and 1.644).  On 2 mm voxels the same error read -0.93 mm: there the R80 of a narrow Bragg
peak moves with the peak's place within a voxel by a few tenths of a mm (docs/check.md "Range").  Stochastic only
through the MC's noise, with the same seed in every run (correlated sampling; the noise-matched medians within
0.03 mm of the raw ones over ~435 rays): the medians' tolerance of 0.25 mm is not reached by chance; deterministic
with the seed.  ~15 s on 2 cores (three runs of 30 000 protons).
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "io"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from dicom_factories import make_plan, save, spot_grid
from test_check import BOX, FOR, _write_rs

from mcproton.dicom import StudyReference

ENERGY_MEV = 70.0
FAST = {"gamma_points": 600, "progress": False, "backend": "cpu", "beam_model": "dcpt_v2", "out": None,
        "log": lambda m: None}


def box_case(d: Path, vs: tuple[float, float, float], layers: list) -> tuple:
    """The water box of test_check.py on ``vs`` voxels (its CT in ``d``/ct), its External and a box PTV (RS.dcm), and
    a plan of one beam along +y (gantry 0) of ``layers`` ([(energy, spots, weights), ...]; RP.dcm): (the plan read,
    the check's inputs for an MC of it, the geometry the MC runs on, the grid's origin).  Also
    tests/check/test_check_reference_noise.py's case."""
    from mcproton._check.compute import build_geometry
    from mcproton._check.inputs import CheckInputs, TPSDose
    from mcproton._io.rtplan import load_rtplan
    from mcproton.dicom import write_ct_series

    xs, ys, zs = (np.arange(-lim, lim, v) + v / 2 for lim, v in ((56.0, vs[0]), (56.0, vs[1]), (28.0, vs[2])))
    hu = np.full((zs.size, ys.size, xs.size), -1000.0)
    hu[np.ix_(np.abs(zs) <= 20, (ys >= BOX[0]) & (ys <= BOX[1]), (xs >= BOX[0]) & (xs <= BOX[1]))] = 0.0
    org = (xs[0], ys[0], zs[0])
    write_ct_series(hu, vs, org, d / "ct", study=StudyReference(frame_of_reference_uid=FOR))
    _write_rs(d / "RS.dcm", None)
    plan = make_plan([{"gantry": 0.0, "couch": 0.0, "iso": (0.0, 0.0, 0.0), "meterset": 20.0, "layers": layers}],
                     frame_of_reference_uid=FOR)
    save(plan, d / "RP.dcm")
    rp = load_rtplan(d / "RP.dcm")
    grid = TPSDose("", np.zeros(hu.shape), vs, org, FOR, "PHYSICAL", "PLAN", rp.sop_instance_uid)
    inp = CheckInputs(str(d / "RP.dcm"), rp, grid, {}, str(d / "ct"), None, FOR, "PHYSICAL", 1, True)
    geo, _, _ = build_geometry(d / "ct", "schneider2000", grid)
    return rp, inp, geo, org


@pytest.fixture(scope="module")
def shallow(tmp_path_factory):
    """The water box of test_check.py on 4 x 1 x 4 mm voxels (1 mm along the beam: on 2 mm the R80 of a narrow
    Bragg peak moves with the peak's place within a voxel by a few tenths of a mm), its External and a box PTV, and
    one ENERGY_MEV beam along +y (gantry 0)."""
    from mcproton._check.compute import run_mc

    d = tmp_path_factory.mktemp("shallow")
    vs = (4.0, 1.0, 4.0)
    rp, inp, geo, org = box_case(d, vs, [(ENERGY_MEV, spot_grid(3, 8.0), [1.0] * 9)])

    def mc_of(range_factor: float):   # the MC with every path length range_factor x longer (densities / it)
        g = geo if range_factor == 1.0 else dataclasses.replace(
            geo, density_g_cm3_zyx=np.asarray(geo.density_g_cm3_zyx) / range_factor)
        return run_mc(inp, g, "dcpt_v2", primaries=30000, target_uncertainty=None, seed=4321, backend="cpu",
                      progress=False, log=lambda m: None)

    return {"dir": d, "rp": rp, "mc": mc_of(1.0), "mc_of": mc_of, "grid": (vs, org)}


def _check_against(shallow, name: str, range_factor: float):
    """The check of the MC dose against a 'TPS' dose of ``range_factor`` x its range (an MC of the box with its
    densities divided by it)."""
    from mcproton._check.api import check
    from mcproton.dicom import write_rtdose

    vs, org = shallow["grid"]
    tps = shallow["mc"].total_gy_zyx if range_factor == 1.0 else shallow["mc_of"](range_factor).total_gy_zyx
    study = StudyReference(frame_of_reference_uid=FOR, plan_sop_instance_uid=shallow["rp"].sop_instance_uid)
    rd = write_rtdose(tps, vs, org, shallow["dir"] / f"{name}.dcm", study=study)
    return check(plan=shallow["dir"] / "RP.dcm", dose=rd, ct=shallow["dir"] / "ct", struct=shallow["dir"] / "RS.dcm",
                 mc=shallow["mc"], seed=1, **FAST)


def _median_row(res):
    (row,) = [c for c in res.checks if "median distal R80" in c["quantity"]]
    return row


def test_the_range_rows_say_what_relative_range_error_their_level_is_at_the_beams_depth(shallow):
    from mcproton._check.api import shallow_range_detection_depth_mm

    res = _check_against(shallow, "same", 1.0)
    r = res.ranges[1]
    depth = r["distal_depth_mm"]
    assert 37.0 <= depth <= 44.0, f"70 MeV in water: the distal R80 ~41 mm from the surface, read {depth:.2f} mm"
    assert abs(r["median_mm"]) < 0.05   # the MC against itself
    assert r["range_level_pct_of_depth"] == pytest.approx(100 * 1.0 / depth)
    row = _median_row(res)
    assert row["passed"] and f"(= {100 / depth:.1f} % of this beam's distal depth, {depth:.0f} mm)" in row["limit_text"]
    assert shallow_range_detection_depth_mm(1.0) == pytest.approx(50.0)   # (1 mm + 0.5 mm) / 3 %
    notes = [n for n in res.diagnostics if n.startswith("beam 1: its distal edge lies")]
    assert len(notes) == 1 and f"{depth:.0f} mm deep" in notes[0] and "beyond 50 mm" in notes[0], res.diagnostics
    assert "does not rule one out" in notes[0]
    # the 'TPS' dose is mcproton's (write_rtdose): no other code named in a check of mcproton against itself
    # (realcheck audit F1: "an offset of the two codes' ranges of 0.5 mm (as mcproton's against MCsquare's)")
    assert "MCsquare" not in notes[0] and "two codes" not in notes[0] and "both are mcproton's" in notes[0]
    js = res.to_dict()
    assert js["ranges"]["1"]["range_level_pct_of_depth"] == pytest.approx(100 / depth)
    assert notes[0] in res.summary()


def test_a_3_percent_range_error_moves_the_median_by_3_percent_of_the_depth(shallow):
    """Pinned: on a ~41 mm deep beam a 3 % range error moves the median distal R80 by ~1.2 mm (3 % of the depth),
    enough for the 1 mm level MC against MC, and then no note says that a PASS does not rule it out; with an offset
    of the codes' ranges of 0.5 mm that cancels part of it, the range rows pass, and the note says that their PASS
    does not rule such an error out."""
    d0 = _check_against(shallow, "same", 1.0).ranges[1]["distal_depth_mm"]
    res = _check_against(shallow, "longer", 1.03)
    med = res.ranges[1]["median_mm"]
    assert med == pytest.approx(-0.03 * d0, abs=0.25), f"3 % of {d0:.1f} mm is {0.03 * d0:.2f} mm; read {med:+.2f}"
    assert not _median_row(res)["passed"]   # beyond the 1 mm level, as 3 % of ~41 mm is
    # the row found it: no remark that the rows' PASS does not rule one out (audit 21 review F3: it stood beside the
    # failed row), nor where only the rays-within-2 mm row failed (both rows must pass)
    assert not [n for n in res.diagnostics if "its distal edge lies" in n], res.diagnostics
    offset = _check_against(shallow, "longer_offset", (1.03 * d0 - 0.5) / d0)
    med_o = offset.ranges[1]["median_mm"]
    assert med_o == pytest.approx(-0.03 * d0 + 0.5, abs=0.25), f"read {med_o:+.2f} mm"
    row = _median_row(offset)
    assert row["passed"], row   # the detection limit: the 3 % error is not found by the range rows here
    assert any(n.startswith("beam 1: its distal edge lies") for n in offset.diagnostics), offset.diagnostics


def test_the_shallow_beam_remark_names_the_offset_as_an_allowance_not_a_fact_of_this_check():
    """The remark said "an offset of the two codes' ranges of 0.5 mm (as mcproton's against MCsquare's)" in every
    check: against RayStation, Eclipse or mcproton's own dose too (realcheck audit F1).  Now it names the offset
    between the two dose calculations, the 0.5 mm as measured against MCsquare on the OpenTPS case (the allowance
    the 50 mm rests on), and in a check of mcproton against itself no other code."""
    from mcproton._check.api import shallow_range_note

    other = shallow_range_note("beam 1", 40.0, 1.0)
    own = shallow_range_note("beam 1", 40.0, 1.0, self_compared=True)
    for note in (other, own):
        assert note is not None and "two codes" not in note and "as mcproton's against MCsquare's" not in note, note
        assert "3 % range error moves the median by 1.20 mm, against the level of 1 mm" in note, note
        assert "a systematic offset between the two dose calculations' ranges" in note, note
        assert "allowing for an offset of 0.5 mm, the range rows find a 3 % error for sure only beyond 50 mm" in note
    assert "measured: 0.5 mm between mcproton and MCsquare on an OpenTPS head plan, 2026-12-05" in other, other
    assert "MCsquare" not in own and "both are mcproton's here" in own, own
    assert shallow_range_note("beam 1", 51.0, 1.0) is None and shallow_range_note("beam 1", 51.0, 1.0,
                                                                                   self_compared=True) is None
