# ruff: noqa: F811 - the fixtures folder and patient are imported from test_check_pairing
"""The check's log names beams by BeamNumber, as its report does (audit 26, F5): the MC's lines of mcproton/_run/
job.py numbered them by their place in the plan ("beam 1 (12:F1) reached the target uncertainty") while its time
limit line said "beam 12 (12:F1)"; in a plan with a set-up field numbered 1, "beam 1" was that field.  The pairing
test's small patient folder (test_check_pairing) with its beams renumbered; the check's MC runs (two beams, a few
thousand primaries, one thread)."""
from __future__ import annotations

import sys
from pathlib import Path

import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_check_pairing import folder, patient  # noqa: F401 - the fixtures

from mcproton._check.inputs import gather


def _renumbered(folder: Path):
    """The folder's plan with its beams numbered 12 and 3 (in that order), checked against its plan dose."""
    ds = pydicom.dcmread(folder / "RP.dcm")
    for b, n in zip(ds.IonBeamSequence, (12, 3)):
        b.BeamNumber = n
    for r, n in zip(ds.FractionGroupSequence[0].ReferencedBeamSequence, (12, 3)):
        r.ReferencedBeamNumber = n
    ds.save_as(folder / "RP.dcm")
    inp = gather(plan=folder / "RP.dcm", dose=folder / "RD_plan.dcm", ct=folder / "ct")
    assert [b.number for b in inp.plan.beams] == [12, 3]
    return inp


def test_the_checks_mc_log_names_beams_by_their_beam_number(folder):
    """A plan whose beams are numbered 12 and 3 (in that order): the check's MC lines name them so, as the report
    does.  Before (audit 26, F5), "beam 1 (12:F1) reached the target uncertainty" beside "beam 12 (12:F1) stopped by
    the time limit"; "beam 1/2: 12:F1" for the step line."""
    from mcproton._check.compute import build_geometry, run_mc

    inp = _renumbered(folder)
    geo, _, _ = build_geometry(folder / "ct", "schneider2000", inp.reference)
    lines: list[str] = []
    run_mc(inp, geo, "dcpt_v2", primaries=20_000, target_uncertainty=0.2, seed=1, backend="cpu", threads=1,
           progress=False, log=lines.append)
    print("\n".join(lines))
    for n, k in ((12, 1), (3, 2)):
        assert any(s.startswith(f"beam {n} ({k}/2): {n}:") for s in lines), lines
        assert any(s.startswith(f"mcproton: beam {n} ({n}:") and "reached the target uncertainty" in s
                   for s in lines), lines
    assert not any(s.startswith(("beam 1/2", "beam 2/2", "mcproton: beam 1 ", "mcproton: beam 2 ")) for s in lines)


def test_a_beam_the_time_limit_leaves_unstarted_is_named_by_its_number_and_the_checks_option(folder):
    """The check's --time-limit used up by beam 12: beam 3's line names it by number and the check's option, not
    "beam 2" and run.time_limit_s (audit 26, F5)."""
    import warnings

    from mcproton._check.compute import build_geometry, run_mc

    inp = _renumbered(folder)
    geo, _, _ = build_geometry(folder / "ct", "schneider2000", inp.reference)
    lines: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # few batches, a plan stopped short: not what is tested here
        run_mc(inp, geo, "dcpt_v2", primaries=1_000_000, target_uncertainty=None, seed=1, backend="cpu", threads=1,
               progress=False, log=lines.append, time_limit_s=0.01)
    print("\n".join(lines))
    (line,) = [s for s in lines if "time limit is used up" in s]
    assert line.startswith("mcproton: beam 3 (3:") and "not started" in line and "(--time-limit 0.01 s;" in line, line
    assert any(s.startswith("mcproton: beam 12 (12:") and "stopped by the time limit" in s for s in lines), lines
