"""``mcproton check`` on RayStation's per-beam doses (APTG/2022_DCPT_LET, CC BY 4.0; see
tests/data/dicom/aptg_check/README.md and tests/data/dicom/aptg_plan06/README.md): both fields of plan03 with its plan
dose, and the beam dose of plan06, a range-shifter plan, with a short check run against it.  The public files carry
two PatientIDs (the plans' and the phantom's), which the pairing warns about: asserted once, ignored elsewhere."""
from __future__ import annotations

import gzip
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from mcproton._check.inputs import CheckInputError, gather
from mcproton._io.errors import McprotonWarning

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "dicom"
P03 = DATA / "aptg_check"
pytestmark = pytest.mark.filterwarnings("ignore:the files linked by UID carry different PatientIDs")
BEAM1_03 = next((DATA / "aptg_plan03").glob("RD*.dcm"))
PLAN06 = DATA / "RP_plan06_rs.dcm"
DOSE06_GZ = DATA / "aptg_plan06" / "RD_plan06_beam1.dcm.gz"


def _gunzip(src: Path, dst: Path) -> Path:
    with gzip.open(src, "rb") as fi, open(dst, "wb") as fo:
        shutil.copyfileobj(fi, fo)
    return dst


@pytest.fixture(scope="module")
def p03(tmp_path_factory):
    d = tmp_path_factory.mktemp("p03")
    return {"plan": P03 / "RP_plan03.dcm", "struct": P03 / "RS_plan03.dcm", "beam1": BEAM1_03,
            "total": _gunzip(P03 / "RD_plan03_total.dcm.gz", d / "RD_plan03_total.dcm"),
            "beam2": _gunzip(P03 / "RD_plan03_beam2.dcm.gz", d / "RD_plan03_beam2.dcm")}


def test_plan03_both_field_doses_add_up_to_raystation_s_plan_dose(p03):
    """RayStation's plan dose and its two BEAM doses of one calculation: paired by beam number, and their sum within
    the 16-bit rounding of each (measured 0.002 % of the maximum, 2.1e-5; TPS_SUM_TOL refuses above 0.5 %)."""
    with pytest.warns(McprotonWarning, match="different PatientIDs") as said:   # as the public files are
        inp = gather(plan=p03["plan"], struct=p03["struct"], dose=[p03["total"], p03["beam1"], p03["beam2"]])
    assert any("'test_LET_ramp'" in str(w.message) and "'WTR303030'" in str(w.message) for w in said)
    assert sorted(inp.beams) == [1, 2] and Path(inp.total.path).name == "RD_plan03_total.dcm"
    assert Path(inp.beams[2].path).name == "RD_plan03_beam2.dcm"
    assert inp.dose_type == "EFFECTIVE" and inp.all_fractions and inp.fractions == 1
    assert any(s.startswith("the TPS per-beam doses add up to the plan dose") for s in inp.pairing), inp.pairing
    total = inp.total.dose_gy_zyx
    diff = float(np.abs(total - inp.beams[1].dose_gy_zyx - inp.beams[2].dose_gy_zyx).max()) / float(total.max())
    assert diff < 5e-5, diff
    # the two fields are the two opposed halves of the plan: each about half of its integral
    share = float(inp.beams[2].dose_gy_zyx.sum()) / float(total.sum())
    assert 0.45 < share < 0.55, share


def test_plan03_field_doses_alone_make_the_plan_and_one_alone_is_refused(p03):
    """Both BEAM doses without the plan dose: the plan is compared as their sum (no plan dose paired).  Field 2's alone,
    of a two-field plan: refused, naming the missing beam, not compared as if it were the plan's dose."""
    inp = gather(plan=p03["plan"], struct=p03["struct"], dose=[p03["beam1"], p03["beam2"]])
    assert sorted(inp.beams) == [1, 2] and inp.total is None
    with pytest.raises(CheckInputError, match=r"the dose of beam\(s\) \[1\] is missing"):
        gather(plan=p03["plan"], struct=p03["struct"], dose=[p03["beam2"]])


@pytest.fixture(scope="module")
def p06(tmp_path_factory):
    """plan06's plan and RayStation beam dose with the structure set examples/aptg_plan06_struct.py writes of its
    documented phantom (geometry F, solid water at 1.047 g/cm3)."""
    spec = importlib.util.spec_from_file_location("aptg_plan06_struct", ROOT / "examples" / "aptg_plan06_struct.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    d = tmp_path_factory.mktemp("p06")
    shutil.copy(PLAN06, d / "RP_plan06_rs.dcm")
    _gunzip(DOSE06_GZ, d / "RD_plan06_beam1.dcm")
    mod.make_struct(d / "RP_plan06_rs.dcm", d / "RS_plan06_geometryF.dcm", 1.047)
    return d


def test_plan06_beam_dose_pairs_with_its_range_shifter_plan(p06):
    """RayStation's BEAM dose of a one-beam plan: paired by the plan's SOP Instance UID and beam 1, EFFECTIVE, all
    fractions (BEAM: DICOM's whole course), the grid and level RayStation wrote (2.2 Gy(RBE) prescribed)."""
    inp = gather(folder=p06)
    assert inp.total is None and sorted(inp.beams) == [1]
    b = inp.beams[1]
    assert Path(b.path).name == "RD_plan06_beam1.dcm"
    assert inp.dose_type == "EFFECTIVE" and inp.all_fractions and inp.fractions == 1
    assert b.shape_zyx == (127, 89, 127) and b.voxel_size_mm == (2.5, 2.5, 2.5)
    assert 2.2 < float(b.dose_gy_zyx.max()) < 2.3


@pytest.fixture(scope="module")
def checked06(p06):
    from mcproton._check.api import check

    return check(folder=p06, phantom_from_struct=True, beam_model="dcpt_v5", primaries=200_000,
                 target_uncertainty=None, seed=12345, backend="cpu", progress=False, gamma_points=2000,
                 gamma_workers=1, report=False, log=lambda m: None)


def test_plan06_range_and_dose_level_agree_with_raystation(checked06):
    """mcproton's dose of plan06 (range shifter RS_3CM, WET 34.3 mm) against RayStation's, 2 x 10^5 primaries (14 %
    noise; ~25 s on 2 CPU cores).  Measured at 83c38192 (2026-12-07, CPU): median distal dR80 -0.06 mm (raw; -0.32 mm
    noise-matched), integral ratio 1.005; seeds 1-4: -0.01..-0.03 mm and 1.0040..1.0054.  At the default 1 % target
    the documented run gives -0.17 mm and 1.002 (docs/check.md, "plan06 at the default 1 %").  Tolerances: |dR80| <
    1 mm (the action level) fails a range shifter left out or counted twice (34 mm), its WET off by more than about
    1 mm, or the phantom's solid water at plan03's 1.02 g/cm3 (+1.8 mm at 1 %); the integral within 3 % fails a dose
    mislabelled by the RBE (1.10).  Fixed seed: the CPU result is the same in every run; against other seeds both
    sit > 15 times their seed-to-seed spread inside the tolerances."""
    res = checked06
    (r,) = res.ranges.values()
    assert abs(r["median_mm"]) < 1.0, r
    ratio = res.dose_difference["integral_ratio_mc_tps"]
    assert 0.97 < ratio < 1.03, ratio


def test_plan06_right_direction_gets_no_direction_note(checked06):
    """The negative control of the direction note: plan06's RayStation dose runs along the plan's beam (+y)."""
    assert not [n for n in checked06.diagnostics if "runs along" in n], checked06.diagnostics


@pytest.fixture(scope="module")
def checked03(p03, tmp_path_factory):
    """plan03 as written (gantry 90/270, HFS) against RayStation's plan dose and both field doses, which belong to the
    base plan whose fields run along y (docs/patient_workflow.md, "plan03"); 2 x 10^5 primaries per beam."""
    from mcproton._check.api import check

    d = tmp_path_factory.mktemp("p03_check")
    for k in ("plan", "struct", "total", "beam1", "beam2"):
        shutil.copy(p03[k], d / Path(p03[k]).name)
    return check(folder=d, phantom_from_struct=True, beam_model="dcpt_v5", primaries=200_000,
                 target_uncertainty=None, seed=12345, backend="cpu", progress=False, gamma_points=2000,
                 gamma_workers=1, report=False, log=lambda m: None)


def test_a_tps_beam_dose_along_another_axis_is_named_not_mu_or_range(checked03):
    """Audit 30 realdata F1: the check named "its MU/output ... or the beam model's calibration" (MC/TPS 0.29) and "a
    uniform range difference" (-58 mm) for RayStation's doses of plan03, which run along y while the plan's fields run
    along x.  Now each beam's direction is named (field 1, gantry 90: plan -x, TPS +y; field 2: +x, -y; overlap
    0.99 across against 0.65 along the plan's axis), and that beam's MU, centroid and range causes are left out.
    The verdict stays FAIL."""
    res = checked03
    assert not res.passed
    said = res.diagnostics
    for b, plan_dir, tps_dir in ((1, "-x", "+y"), (2, "+x", "-y")):
        (note,) = [n for n in said if n.startswith(f"beam {b}: the TPS dose of this beam runs along")]
        assert f"runs along {tps_dir}, the plan's beam along {plan_dir} (gantry {90 if b == 1 else 270}, couch 0, " \
               f"HFS)" in note, note
        assert "another direction" in note and "not from its MU, the beam model or the CT calibration" in note
        assert not [n for n in said if n.startswith(f"beam {b}'s dose is")], said              # no MU/output cause
        assert not [n for n in said if n.startswith(f"beam {b}: the MC's distal edge lies")], said   # no range cause
        assert not [n for n in said if n.startswith(f"beam {b}: the high-dose centroid")], said
    assert all(k == "cause" for n, k in zip(said, res.diagnostic_kinds) if "runs along" in n)
