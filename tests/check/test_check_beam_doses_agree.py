# ruff: noqa: F811 - the fixtures folder and patient are imported from test_check_pairing
"""The planning system's plan dose and per-beam doses given together must be of one calculation, and per-beam doses of
beams the plan does not compute are paired before they are judged (audit 26, F2 and F4).

F2: a stale plan dose beside current per-beam doses, or one beam's dose labelled PLAN, was compared in silence (a
note beside a PASS where every beam had a dose; nothing where one was missing).  Now ``gather`` refuses a plan dose
that lies below the sum of the per-beam doses given with it, and, with every beam's dose given, one that differs from
their sum, by more than inputs.TPS_SUM_TOL (0.5 %) of its maximum; RayStation's real plan03 files pass.
F4: the zero-dose floor refused a whole folder for the (empty) per-beam dose of a 0-MU beam.

Each test spoils the pairing test's small patient folder (test_check_pairing: a two-beam plan, a plan dose and two
per-beam doses) with doses of a shape (each beam's dose a blob on its own side); only ``gather`` runs."""
from __future__ import annotations

import copy
import gzip
import shutil
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_check_pairing import ORIGIN, STUDY, VS, XS, ZS, folder, patient, set_up_beam  # noqa: F401 - the fixtures

from mcproton._check.inputs import TPS_SUM_TOL, CheckInputError, gather

DATA = Path(__file__).resolve().parents[1] / "data" / "dicom"


def _blob(cx: float) -> np.ndarray:
    """A dose blob (Gy, 2 Gy at its centre, 10 mm SD) centred at x = ``cx`` mm on the pairing folder's grid."""
    z, y, x = np.meshgrid(ZS, XS, XS, indexing="ij")
    return 2.0 * np.exp(-((x - cx) ** 2 + y ** 2 + z ** 2) / (2 * 10.0 ** 2))


#: beam 1 on the left, beam 2 on the right with its own weight: where one peaks, the other's dose is 4e-6 of it
BEAM = {1: _blob(-26.0), 2: 0.7 * _blob(26.0)}


def _write(folder: Path, name: str, dose: np.ndarray, summation: str = "PLAN", beam: int | None = None) -> Path:
    from mcproton.dicom import write_rtdose

    uid = str(pydicom.dcmread(folder / "RP.dcm", stop_before_pixels=True).SOPInstanceUID)
    return write_rtdose(dose, VS, ORIGIN, folder / name, study=STUDY.replace(plan_sop_instance_uid=uid),
                        summation_type=summation, referenced_beam_number=beam)


def _doses(folder: Path, plan: np.ndarray | None = None, beams: dict | None = None) -> dict:
    """The folder's doses rewritten: the plan dose ``plan`` (default: the sum of BEAM) and the per-beam doses
    ``beams`` (default: BEAM; a beam left out has no file); gather's arguments."""
    beams = BEAM if beams is None else beams
    for b in (1, 2):
        (folder / f"RD_beam{b}.dcm").unlink(missing_ok=True)
    paths = [_write(folder, "RD_plan.dcm", sum(BEAM.values()) if plan is None else plan)]
    paths += [_write(folder, f"RD_beam{b}.dcm", d, "BEAM", b) for b, d in beams.items()]
    return {"plan": folder / "RP.dcm", "dose": paths, "ct": folder / "ct"}


def _refused(match: str, **kw) -> str:
    with pytest.raises(CheckInputError, match=match) as exc:
        gather(**kw)
    return str(exc.value)


# ---- F2: one calculation


def test_doses_of_one_calculation_pass_and_the_pairing_says_so(folder):
    inp = gather(**_doses(folder))
    assert sorted(inp.beams) == [1, 2] and inp.total is not None
    (line,) = [s for s in inp.pairing if "add up" in s]
    assert line.startswith("the TPS per-beam doses add up to the plan dose: largest difference 0.00"), line
    assert inp.tps_beams_minus_plan is not None and 0 <= inp.tps_beams_minus_plan < 1e-4   # for check.json
    assert gather(**_doses(folder, beams={1: BEAM[1]})).tps_beams_minus_plan is None   # beam 2's dose not given


def test_a_stale_plan_dose_beside_every_beams_dose_is_refused(folder):
    """Beam 2's part of the plan dose x 1.05 (the plan dose of an earlier calculation, the beam doses current): 3.4 %
    of the plan dose's maximum where beam 2 peaks; before, a note beside the verdict (audit 26 S5: PASS)."""
    msg = _refused(r"the TPS per-beam doses \(RD_beam1\.dcm, RD_beam2\.dcm\) do not add up to the plan dose "
                   r"RD_plan\.dcm: they differ by up to 3\.\d\d % of its maximum \(the plan dose 1\.4\d* Gy, the "
                   r"beams' 1\.3\d* Gy at x, y, z = \(26\.0, ",
                   **_doses(folder, plan=BEAM[1] + 1.05 * BEAM[2]))
    assert "beyond the 0.5 % that the rounding of the doses of one calculation may leave: they are of different " \
           "calculations (a stale plan or beam dose, another plan version; integral ratio plan / sum 1.0" in msg, msg
    assert "separate Monte Carlo" not in msg, msg
    # the way out as options (check review b, R3)
    assert "export the plan dose and the per-beam doses again from one calculation of the plan, and give those, or, " \
           "where the planning system computes them apart, check the plan dose alone, --dose " in msg, msg
    assert msg.endswith("with a patient folder the --dose files given are the only RT Doses read"), msg


def test_separate_monte_carlo_plan_and_beam_doses_are_refused_as_such_with_the_way_out(folder):
    """A plan dose and beam doses each of its own Monte Carlo run of the same plan (~1 % noise, independent): the
    largest difference is several times the noise, beyond the tolerance, and refused (the two rows would judge
    different doses), but the integrals agree (plan / sum 1.000x), so the message says they look like separate
    Monte Carlo calculations, not a stale export, and names the way out as options: --dose with the plan dose alone
    or with the per-beam doses alone (check review b of audit 26, R3: "a stale plan or beam dose, another plan
    version" only, and "check the plan dose alone" without saying how)."""
    rng = np.random.default_rng(7)

    def mc(d: np.ndarray) -> np.ndarray:
        return d * (1 + 0.01 * rng.standard_normal(d.shape))

    kw = _doses(folder, plan=mc(sum(BEAM.values())), beams={b: mc(d) for b, d in BEAM.items()})
    msg = _refused(r"the TPS per-beam doses \(RD_beam1\.dcm, RD_beam2\.dcm\) do not add up to the plan dose "
                   r"RD_plan\.dcm: they differ by up to \d\.\d\d % of its maximum", **kw)
    assert "the differences average out (integral ratio plan / sum 1.000" in msg, msg
    assert "look like separate Monte Carlo calculations of the same plan" in msg, msg
    plan, b1, b2 = (str(p) for p in kw["dose"])
    assert f"check the plan dose alone, --dose {plan} (Python: dose={plan!r}), or the per-beam doses alone, " \
           f"--dose {b1} --dose {b2} (Python: dose={[b1, b2]!r})" in msg, msg
    # the way out works: the plan dose alone, and the per-beam doses alone
    assert gather(plan=kw["plan"], dose=[plan], ct=kw["ct"]).beams == {}
    assert sorted(gather(plan=kw["plan"], dose=[b1, b2], ct=kw["ct"]).beams) == [1, 2]


def test_a_plan_dose_below_the_beams_given_is_refused_with_a_beams_dose_missing(folder):
    """Only beam 1's per-beam dose beside the plan dose: the plan dose must hold it.  One beam's dose labelled PLAN
    (beam 2's, no beam reference; audit 26 S8c: compared as 'the plan dose', the diagnosis a 2 x dose and a range
    error) lies below beam 1's dose in beam 1's field; a stale plan dose whose beam 1 part is 5 % low too.  Both were
    compared in silence."""
    msg = _refused(r"the TPS plan dose RD_plan\.dcm lies below the sum of the per-beam doses given with it "
                   r"\(RD_beam1\.dcm\) by up to 14\d\.\d\d % of its maximum \(the plan dose 0 Gy, the beams' "
                   r"1\.9\d* Gy at x, y, z = \(-26\.0, ",
                   **_doses(folder, plan=BEAM[2], beams={1: BEAM[1]}))
    assert "one beam's dose labelled PLAN?" in msg and "export the plan dose and the per-beam doses again" in msg
    _refused(r"lies below the sum of the per-beam doses given with it \(RD_beam1\.dcm\) by up to [45]\.\d\d %",
             **_doses(folder, plan=0.95 * BEAM[1] + BEAM[2], beams={1: BEAM[1]}))


def test_a_plan_dose_holding_the_beams_given_passes_with_a_beams_dose_missing(folder):
    """Beam 2's dose missing, the plan dose at least beam 1's everywhere: paired (beam 2's part is not tested, said
    so); also a stale plan dose whose beam 2 part differs (nothing to compare it with)."""
    for plan in (sum(BEAM.values()), BEAM[1] + 1.05 * BEAM[2]):
        inp = gather(**_doses(folder, plan=plan, beams={1: BEAM[1]}))
        assert sorted(inp.beams) == [1], inp.beams
        assert any(s.startswith("the TPS plan dose is at least the sum of the per-beam doses given (RD_beam1.dcm) "
                                "everywhere, within 0.5 % of its maximum (beam(s) [2] without a per-beam dose")
                   for s in inp.pairing), inp.pairing


@pytest.mark.parametrize("beams_given", [(1, 2), (1,)])
def test_the_tolerance_is_half_a_percent_of_the_plan_doses_maximum(folder, beams_given):
    """A difference of 0.4 % of the plan dose's maximum passes (rounding, with room), 0.6 % is refused: the plan dose
    lower than the beams' sum where beam 1 peaks (also higher, where every beam is given)."""
    assert TPS_SUM_TOL == 0.005
    total = sum(BEAM.values())
    bump = float(total.max()) * BEAM[1] / float(BEAM[1].max())   # the plan dose's maximum, where beam 1 peaks
    beams = {b: BEAM[b] for b in beams_given}
    gather(**_doses(folder, plan=total - 0.004 * bump, beams=beams))
    _refused(r"by up to 0\.60 % of its maximum", **_doses(folder, plan=total - 0.006 * bump, beams=beams))
    if beams_given == (1, 2):
        gather(**_doses(folder, plan=total + 0.004 * bump, beams=beams))
        _refused(r"do not add up .* by up to 0\.60 % of its maximum",
                 **_doses(folder, plan=total + 0.006 * bump, beams=beams))


def test_raystations_plan03_plan_and_beam_dose_are_paired(tmp_path):
    """The real RayStation files (APTG plan03): the plan dose and field 1's BEAM dose, one calculation (plan - beam
    1 >= -0.0014 % of the plan dose's maximum, its 16-bit rounding): paired, the sum test passed."""
    with gzip.open(DATA / "aptg_check" / "RD_plan03_total.dcm.gz", "rb") as fi, \
            open(tmp_path / "RD_plan03_total.dcm", "wb") as fo:
        shutil.copyfileobj(fi, fo)
    beam1 = next((DATA / "aptg_plan03").glob("RD*.dcm"))
    inp = gather(plan=DATA / "aptg_check" / "RP_plan03.dcm", dose=[tmp_path / "RD_plan03_total.dcm", beam1])
    assert sorted(inp.beams) == [1] and Path(inp.total.path).name == "RD_plan03_total.dcm"
    assert any(s.startswith("the TPS plan dose is at least the sum of the per-beam doses given") for s in inp.pairing)
    low = float((inp.total.dose_gy_zyx - inp.beams[1].dose_gy_zyx).min()) / float(inp.total.dose_gy_zyx.max())
    assert -2e-5 < low <= 0, low   # what TPS_SUM_TOL's comment says of them


# ---- F4: per-beam doses of beams the plan does not compute


def _plan_with_a_zero_mu_beam_and_a_set_up_beam(folder: Path) -> None:
    """The folder's plan with beam 3, a copy of beam 1 left at 0 MU (in the fraction group with BeamMeterset 0), and
    beam 9, a set-up field (TreatmentDeliveryType SETUP, no spots, not in the fraction group)."""
    ds = pydicom.dcmread(folder / "RP.dcm")
    zero = copy.deepcopy(ds.IonBeamSequence[0])
    zero.BeamNumber, zero.BeamName, zero.FinalCumulativeMetersetWeight = 3, "ZERO", 0.0
    for cp in zero.IonControlPointSequence:
        cp.ScanSpotMetersetWeights = [0.0] * len(cp.ScanSpotMetersetWeights)
        cp.CumulativeMetersetWeight = 0.0
    ds.IonBeamSequence.extend([zero, set_up_beam(ds, 9)])
    ref = Dataset()
    ref.ReferencedBeamNumber, ref.BeamMeterset = 3, 0.0
    fg = ds.FractionGroupSequence[0]
    fg.ReferencedBeamSequence.append(ref)
    fg.NumberOfBeams = 3
    ds.save_as(folder / "RP.dcm")


def test_the_empty_dose_of_a_zero_mu_or_set_up_beam_is_skipped_with_a_note(folder):
    """A per-field export holds a dose of every beam, also of a beam left at 0 MU: all zero.  The floor refused the
    whole folder for it ("the TPS dose is zero everywhere ...: export the dose again", audit 26 F4), which an export
    again does not change.  Paired first now: skipped with a pairing note; the beams computed pair as before; an
    empty RT Dose of another plan in the folder is skipped as another plan's."""
    from mcproton._io.errors import McprotonWarning

    _plan_with_a_zero_mu_beam_and_a_set_up_beam(folder)
    _write(folder, "RD_beam3.dcm", np.zeros_like(BEAM[1]), "BEAM", 3)
    _write(folder, "RD_beam9.dcm", np.zeros_like(BEAM[1]), "BEAM", 9)
    other = _write(folder, "RD_other.dcm", np.zeros_like(BEAM[1]))
    ds = pydicom.dcmread(other)
    ds.ReferencedRTPlanSequence[0].ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.424242"
    ds.save_as(other)
    with pytest.warns(McprotonWarning, match="beam 3 'ZERO' delivers 0 MU"):
        inp = gather(folder=folder)
    assert sorted(inp.beams) == [1, 2] and Path(inp.total.path).name == "RD_plan.dcm"
    assert [b.number for b in inp.plan.beams] == [1, 2]
    assert ("skipped RT Dose RD_beam3.dcm (BEAM): the dose of beam 3, which delivers 0 MU in the plan RP.dcm and is "
            "not computed; it is zero, as it should be: not compared") in inp.pairing, inp.pairing
    assert ("skipped RT Dose RD_beam9.dcm (BEAM): the dose of beam 9, which is a set-up beam (TreatmentDeliveryType "
            "SETUP) in the plan RP.dcm and is not computed; it is zero, as it should be: not compared") in inp.pairing
    assert any(s.startswith("skipped RT Dose RD_other.dcm: it refers to plan") for s in inp.pairing), inp.pairing
    # a compared dose that is empty is still refused (the floor applies to what is compared)
    _write(folder, "RD_beam2.dcm", np.zeros_like(BEAM[1]), "BEAM", 2)
    with pytest.warns(McprotonWarning):
        with pytest.raises(CheckInputError, match=r"RD_beam2\.dcm: the TPS dose is zero everywhere"):
            gather(folder=folder)


def test_a_dose_of_a_zero_mu_beam_that_holds_dose_is_refused_saying_so(folder):
    """A per-beam dose naming beam 3, which this plan leaves at 0 MU, that holds a dose: another plan version's.
    Before: "for beam(s) [3], but the plan's beams are [1, 2]", as if the plan had no beam 3."""
    from mcproton._io.errors import McprotonWarning

    _plan_with_a_zero_mu_beam_and_a_set_up_beam(folder)
    _write(folder, "RD_beam3.dcm", BEAM[1], "BEAM", 3)
    with pytest.warns(McprotonWarning, match="delivers 0 MU"):
        msg = _refused(r"RT Dose RD_beam3\.dcm is a per-beam dose \(DoseSummationType BEAM\) of beam 3, which "
                       r"delivers 0 MU in the plan RP\.dcm \(so the check does not compute it\), yet it holds a dose "
                       r"\(maximum 1\.9\d* Gy\)", folder=folder)
    assert "give the doses computed for this version of the plan" in msg and "[1, 2]" in msg, msg
    (folder / "RD_beam3.dcm").unlink()   # only the empty dose of a skipped beam given: nothing to compare with
    _write(folder, "RD_beam3.dcm", np.zeros_like(BEAM[1]), "BEAM", 3)
    with pytest.warns(McprotonWarning, match="delivers 0 MU"):
        _refused(r"no RT Dose to compare with: the only ones are the empty doses of beams that the plan RP\.dcm does "
                 r"not compute \(RD_beam3\.dcm of beam 3, which delivers 0 MU\)",
                 plan=folder / "RP.dcm", dose=folder / "RD_beam3.dcm", ct=folder / "ct")
