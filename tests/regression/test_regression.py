"""Exact regression files (issue 16): each case's CPU result must match its ``results_true.json`` bit for bit.

A change that is meant to move physics rewrites the files with ``pytest tests/regression --update-regression``
and the rewrite is reviewed in its own commit (tests/regression/README.md).  A mismatch lists the arrays that
moved and the summary numbers old -> new (marked *).
"""
from __future__ import annotations

import pytest

import regression_harness as harness


@pytest.mark.parametrize("case", harness.cases())
def test_regression(case, request):
    new = harness.record(case, harness.run_case(case))
    old = harness.load(case)
    if request.config.getoption("--update-regression"):
        if old is None or old["sha256"] != new["sha256"] or old["platform"] != new["platform"]:
            harness.save(case, new)
        return
    if old is None:
        pytest.fail(f"{case}: no {harness.RESULTS_FILE}; write it with `pytest tests/regression --update-regression` "
                    "and commit it")
    if old["platform"] != new["platform"]:
        # another compiler, instruction set or libm: the bits differ, the summary numbers must agree closely
        other = {k: v for k, v in new["platform"].items() if old["platform"].get(k) != v}
        bad = harness.near_misses(old, new)
        if bad:
            pytest.fail(f"{case}: the CPU result moved beyond the tolerances of a platform difference (recorded "
                        f"on {old['platform']}, this machine differs in {other}):\n" + "\n".join(bad)
                        + "\n" + harness.differences(old, new), pytrace=False)
        return
    if old["sha256"] != new["sha256"]:
        pytest.fail(f"{case}: the CPU result moved (tests/regression/README.md says when to rewrite it)\n"
                    + harness.differences(old, new), pytrace=False)


@pytest.mark.parametrize("case", harness.cases())
def test_regression_inputs_are_accepted_by_mcproton_run(case, tmp_path, capsys):
    """Each case's inputs pass ``mcproton run --check-config``, every refusal of bad input included: the harness
    builds the job without the CLI's input checks, so a case that the command refuses would pin the dose of an input
    no user can run (ct_plan's plan named another patient than its CT until 2026-12-07)."""
    from mcproton.cli import main

    rc = main(["run", str(harness.HERE / case / "run.toml"), "--check-config"])
    err = capsys.readouterr().err
    assert rc == 0, f"{case}: mcproton run --check-config refused its inputs (exit {rc}):\n{err}"
