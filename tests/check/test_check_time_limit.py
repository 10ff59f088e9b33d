"""``mcproton check --time-limit`` (automation audit 2026-12-06, F6a): the MC stops at the limit as ``mcproton run``'s
run.time_limit_s does, the check goes on with the dose reached and says so where the verdict is read (the
uncertainty row, a note, check.json's settings).  A small synthetic head, one beam, the CPU: the limit of a
millisecond stops the beam after its first batch of histories (the limit is checked between batches), far above
the 0.1 % target; the uncertainty's action level then judges it (one batch: no estimate, NaN, which fails it)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic_head import write_case  # noqa: E402

PRIMARIES = 200_000
TARGET = 0.001


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    return write_case(tmp_path_factory.mktemp("head"), shape_zyx=(24, 64, 64), pixel_mm=2.0, slice_mm=2.5)


def test_the_time_limit_stops_the_mc_and_the_report_says_so(case, tmp_path):
    pytest.importorskip("pymedphys")
    import mcproton._check.api as api

    out, logged = tmp_path / "chk", []
    res = api.check(plan=case["plan"], dose=case["dose"], ct=case["ct"], beam_model="dcpt_v5", primaries=PRIMARIES,
                    target_uncertainty=TARGET, time_limit_s=0.001, backend="cpu", threads=1, gamma_points=200,
                    out=out, report=False, progress=False, log=logged.append)
    assert res.provenance["primaries"] < PRIMARIES, "stopped before the primaries"
    assert res.settings["time_limit_s"] == 0.001 and res.settings["mc_stopped_by_time_limit"]
    row = next(c for c in res.checks if c["level"] == "mc_uncertainty_max_pct")
    assert row["time_limited"] and "--time-limit 0.001 s" in row["value_text"]
    assert "above the target 0.1 %" in row["value_text"]
    assert any("stopped by --time-limit" in d for d in res.diagnostics)
    # worded for the check, not for mcproton run's config (docs audit of 2026-12-06, F2): the one-batch warning and
    # the time-limit line name --time-limit / --primaries and the beam by its BeamNumber, the note says there is no
    # estimate rather than "nan %"
    one = [w for w in res.warnings if "only one batch was completed" in w]
    assert one and "--time-limit" in one[0] and "--primaries" in one[0], res.warnings
    assert not any("run." in w for w in res.warnings), res.warnings
    stopped = [m for m in logged if "stopped by the time limit" in m]
    assert stopped and "(--time-limit 0.001 s for the run" in stopped[0] and "run.time_limit_s" not in stopped[0]
    note = next(d for d in res.diagnostics if "stopped by --time-limit" in d)
    assert "nan" not in note and "no estimate of its statistical uncertainty (one batch)" in note, note
    # ... and no row reads "noise-matched" with a noise of zero
    rows = [c for c in res.checks if "D95" in c["quantity"] or "R80" in c["quantity"]]
    assert rows, [c["quantity"] for c in res.checks]
    for c in rows:
        assert not c.get("noise_matched") and "noise-matched" not in c.get("value_text", "").replace(
            "not noise-matched", ""), c
    # the reached uncertainty is far above the level (one batch of a few thousand primaries: NaN, as mcproton run
    # says, where one batch gives no estimate): FAIL, not a silent PASS
    assert not res.provenance["statistical_uncertainty_pct"] <= 2.0
    assert not row["passed"] and not res.passed
    record = json.loads((out / "check.json").read_text(encoding="utf-8"))
    assert record["settings"]["mc_stopped_by_time_limit"] == res.settings["mc_stopped_by_time_limit"]


@pytest.mark.parametrize("bad", ["0", "-5", "nan", "inf"])
def test_a_time_limit_that_is_no_number_of_seconds_is_refused(tmp_path, bad, capsys):
    from mcproton.cli import main

    rc = main(["check", str(tmp_path), "--beam-model", "dcpt_v5", "--out", str(tmp_path / "o"), "--quiet",
               "--time-limit", bad])
    assert rc == 2
    assert "--time-limit) must be a positive number of seconds" in capsys.readouterr().err


def test_the_option_is_in_the_help():
    from mcproton._check.cli import add_parser
    import argparse

    sub = argparse.ArgumentParser().add_subparsers()
    assert "--time-limit SECONDS" in add_parser(sub).format_help()
