"""The config fuzz's count tests in an order where their fixture runs the cases before test_config_fuzz does
(review b of audit 31, R3).  The fixture of hygiene audit 31 F3 (``fuzz_counts``) ran the 100 cases where they had
not run, and returned the module's running totals: test_config_fuzz then ran them again into the same totals, and
test_readme_quotes_the_counts, after it, was skipped, "test_config_fuzz ran 200 of its 100 cases".  Run in a
subprocess (about 12 s: the cases twice), in that order, by node id."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

FILE = Path(__file__).resolve().parent / "test_config_fuzz.py"


@pytest.mark.skipif(sys.platform == "win32", reason="the fuzz's watchdog uses SIGALRM")
def test_the_counts_are_of_one_run_whatever_the_order(tmp_path):
    ids = [f"{FILE}::{t}" for t in ("test_fuzz_counts", "test_config_fuzz", "test_readme_quotes_the_counts")]
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n0", "-rs", "-p", "no:cacheprovider", *ids],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "ran 200 of its 100 cases" not in out and "did not run" not in out, out
    # the README comparison itself ran, unless this hypothesis is another version than the README's counts name
    assert "3 passed" in out or "README's config-fuzz counts are of hypothesis" in out, out


@pytest.mark.skipif(sys.platform == "win32", reason="the fuzz's watchdog uses SIGALRM")
def test_the_cases_do_not_depend_on_the_modules_loaded_before(tmp_path):
    """Review b of audit 31, R5: hypothesis (6.131 and later) draws some values from the constants in the source of the
    local modules loaded in the process (hypothesis.internal.conjecture.providers._get_local_constants): with
    mcproton.plots loaded first (as by any check test that ran before in the process: a batch, a report) the 95th
    case onwards differed, the README's counts (84 refused / 16 accepted) read 83 / 17 and
    test_readme_quotes_the_counts failed, by the order of the tests alone."""
    code = ("import sys, mcproton.plots, mcproton._check.report, pytest; "
            f"sys.exit(pytest.main(['-q', '-n0', '-rs', '-p', 'no:cacheprovider', {str(FILE)!r}]))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "3 passed" in out or "README's config-fuzz counts are of hypothesis" in out, out
