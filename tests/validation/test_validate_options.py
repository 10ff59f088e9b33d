"""`mcproton validate --seed/--batches`: checked as a run checks them, before any case runs, as a usage error (exit
status 2) naming the option (the CLI-help audit of 2026-12-07, F3).  Before, every Monte Carlo case raised the run's
"run.batches must be >= 2" ("SOME CASES RAISED", exit status 4, the internal error's), and a validation of analytic
cases only ended ALL PASSED with summary.json recording "batches": -1, "seed": -5."""
from __future__ import annotations

import pytest

from mcproton.validation import runner


def _never(*a, **k):
    raise AssertionError("a case ran although an option was refused")


@pytest.mark.parametrize("args, said", [
    (["--batches", "1"], "--batches must be >= 2 (the uncertainty needs at least two); got 1"),
    (["--batches", "0", "--cases", "stopping_power"], "--batches must be >= 2"),
    (["--batches", "-1", "--seed", "-5", "--cases", "stopping_power"], "--seed must be a non-negative integer"),
    (["--seed", "-5"], "--seed must be a non-negative integer below 2^63; got -5"),
    (["--seed", str(2**63)], f"--seed must be a non-negative integer below 2^63; got {2**63}"),
])
def test_a_bad_seed_or_batch_count_is_refused_before_any_case(args, said, tmp_path, capsys):
    out = tmp_path / "v"
    assert runner.main(["--out", str(out), "--backend", "cpu", *args], simulate_fn=_never) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"mcproton validate: error: {said}"), err
    assert "run." not in err[-1] and not out.exists()


def test_a_seed_or_batch_count_in_exponent_form_is_refused_as_the_other_commands_refuse_it(tmp_path, capsys):
    assert runner.main(["--out", str(tmp_path / "v"), "--batches", "1e1"], simulate_fn=_never) == 2
    assert "argument --batches: 1e1 is written as a decimal number: write 10" in capsys.readouterr().err
    assert not (tmp_path / "v").exists()
