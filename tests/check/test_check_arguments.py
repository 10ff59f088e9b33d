"""``mcproton.check``'s arguments are checked as given, before anything is read, and named as the check names them
(the Python-API audit of 2026-12-06, F8 and F9).

Before: ``check(gamma_points=-5)`` evaluated all the gamma points but 5 (a slice ``[:-5]``; only the command line
refused it) and ``gamma_workers=-1`` was taken as 1; ``primaries=0``, ``seed=-1``, ``backend="gpu"`` and
``threads=0`` were refused only after the DICOM had been read (the CT of a large patient too), as RunSettings errors
naming ``run.primaries``; ``target_uncertainty=1e-6`` as "run.target_uncertainty = 1.41421e-06 is below 0.0001":
the per-beam value (the value given x sqrt(beams)), not the one given.  Each case here is given a patient folder
that does not exist: a refusal that names the argument shows it came before the folder was looked at."""
from __future__ import annotations

import re

import pytest

from mcproton._check.api import _checked_arguments, check, check_batch
from mcproton.errors import CheckInputError


@pytest.mark.parametrize("kw, words", [
    ({"gamma_points": -5}, "gamma_points (--gamma-points) = -5: give a positive number (or 0: every point)"),
    ({"gamma_workers": -1}, "gamma_workers (--gamma-workers) = -1: give a positive number (or 0: one process per "
                            "gamma up to the cores)"),
    ({"gamma_points": 2.5}, "gamma_points (--gamma-points) = 2.5: give a positive number"),
    ({"gamma_points": "100"}, "gamma_points (--gamma-points) = '100': give a positive number"),
    ({"gamma_workers": True}, "gamma_workers (--gamma-workers) = True: give a positive number"),
    ({"primaries": 0}, "primaries (--primaries) must be a positive integer; got 0"),
    ({"primaries": 2.5}, "primaries (--primaries) = 2.5 is not a whole number"),
    ({"seed": -1}, "seed (--seed) must be a non-negative integer below 2^63; got -1"),
    ({"backend": "gpu"}, "backend (--backend) must be one of ('auto', 'cpu', 'cuda'); got 'gpu'"),
    ({"threads": 0}, "threads must be >= 1 or unset; got 0"),
    ({"target_uncertainty": 1e-6}, "target_uncertainty (--target-uncertainty) = 1e-06 is below 0.0001 (0.01 %)"),
    ({"target_uncertainty": "0.01"}, "target_uncertainty (--target-uncertainty) = '0.01' has the wrong type (text)"),
])
def test_an_argument_is_refused_before_anything_is_read_naming_it_and_the_value_given(kw, words, tmp_path):
    with pytest.raises(CheckInputError) as err:
        check(folder=tmp_path / "no_such_patient", beam_model="dcpt_v5", log=lambda line: None, **kw)
    msg = str(err.value)
    assert msg.startswith(words), msg
    assert "run." not in msg.split(";")[0] and "1.41421" not in msg


def test_a_batch_refuses_them_once_before_any_patient(tmp_path):
    """``check_batch`` (``mcproton check --batch``) refuses them at once, not as each patient's REFUSED row (or,
    for the run settings, after each patient's DICOM was read)."""
    for kw in ({"gamma_points": -5}, {"primaries": 0}, {"backend": "gpu"}, {"machine_check": "no"}):
        with pytest.raises(CheckInputError, match=re.escape(next(iter(kw)))):
            check_batch(tmp_path / "no_such_folder", tmp_path / "out", log=lambda line: None, **kw)
    assert not (tmp_path / "out").exists()


def test_the_gamma_counts_as_used():
    """0 (or None) is every point for gamma_points, one worker per gamma for gamma_workers (as ``--gamma-workers
    0``; before, check(gamma_workers=0) ran one worker); a whole float is an int."""
    got = _checked_arguments(gamma_points=0, gamma_workers=0)
    assert got["gamma_points"] is None and got["gamma_workers"] is None
    got = _checked_arguments(gamma_points=1e4, gamma_workers=2)
    assert got["gamma_points"] == 10000 and type(got["gamma_points"]) is int and got["gamma_workers"] == 2
    assert _checked_arguments(gamma_points=None)["gamma_points"] is None


def test_valid_arguments_pass_and_the_target_floor_applies_to_the_value_given():
    """1e-4 (the floor) passes as given, though the per-beam target is above it; 0 is no target."""
    _checked_arguments(primaries=1e5, seed=0, backend="cpu", threads=1, target_uncertainty=1e-4, rbe=1.1,
                       time_limit_s=60, progress=False, report=True)
    _checked_arguments(target_uncertainty=0)
    _checked_arguments(target_uncertainty=None)


@pytest.mark.parametrize("target, got", [
    (5, "got 5 (5 % is 0.05)"), (1, "got 1 (1 % is 0.01)"), (99.5, "got 99.5 (99.5 % is 0.995)"),
    (100, "got 100"), (float("inf"), "got inf"), (-0.01, "got -0.01"), (-5, "got -5"), (float("nan"), "got nan"),
    ("x", "got 'x'"), (True, "got True (1 % is 0.01)"),
])
def test_a_target_outside_0_1_gets_the_percent_hint_only_where_it_reads_as_a_percent(target, got):
    """The refusal of a target_uncertainty outside (0, 1) ends with the hint of a percent typed for a fraction
    (settings.percent_for_fraction) from 1 to below 100, and with nothing after the value otherwise (below 0, NaN,
    text, 100 and above); pins the message through the removal of a guard that could not change it (re-read c 9)."""
    with pytest.raises(CheckInputError) as err:
        _checked_arguments(target_uncertainty=target)
    assert str(err.value) == ("target_uncertainty (--target-uncertainty) must be a fraction in (0, 1), e.g. 0.01 for "
                              f"1 %; {got}")


@pytest.mark.parametrize("target, typed", [
    (0.5, "; it is a fraction: if 0.5 % was meant (0.5 % is 0.005), give --target-uncertainty 0.005"),
    (0.05, ""),
])
def test_a_target_above_the_level_is_warned_with_the_percent_hint_where_it_reads_as_one(target, typed):
    from mcproton._check.api import _warn_target_above_level
    from mcproton._check.levels import ActionLevels

    with pytest.warns(Warning) as rec:
        _warn_target_above_level(target, ActionLevels())
    msg = str(rec[0].message)
    assert msg.endswith("[levels] table of the --config file (Python: levels=)" + typed), msg
