"""The action levels of mcproton check: a pass-rate level written as a fraction (0.95, as pymedphys and the gamma
pass_rate of check.json give it) is refused; before, it was taken as 0.95 % and a 52 % gamma passed (a helper's
audit, 2026-12-05)."""
from __future__ import annotations

import math

import pytest

from mcproton._check.levels import PERCENT_DOSE_LEVELS, PERCENT_OF_POINTS, ActionLevels


#: (level, a fraction given for it, what its refusal says, what a --config file's says at its start)
_AS_FRACTION = ([(k, 0.95, r"is a percentage of points.*0 switches it off.*give 95 for 95 %.*fraction",
                  "is a percentage") for k in PERCENT_OF_POINTS]
                + [(k, 0.03, r"is in percent, and a level below 1 % .*: give 3 for 3 % \(0.03 looks like a fraction\)",
                    "is in percent") for k in PERCENT_DOSE_LEVELS])


@pytest.mark.parametrize("key,value,said,in_file", _AS_FRACTION)
def test_a_level_in_percent_given_as_a_fraction_is_refused(key, value, said, in_file, tmp_path):
    """A pass-rate level given as a fraction (0.95) and, since the units audit of 2026-12-07 (F3), a dose level in
    percent given as one (target_d95_pct = 0.03 meant 3 %: taken as 0.03 %, every such row FAILed and sent the
    reader after a dose error) are refused with the same hint; no dose level below 1 % is meant (below what two dose
    calculations agree to).  0 as before (a pass rate's: the level off)."""
    with pytest.raises(ValueError, match=rf"{key} = {value:g} {said}"):
        ActionLevels(**{key: value})
    f = tmp_path / "levels.toml"
    f.write_text(f"[levels]\n{key} = {value}\n")
    with pytest.raises(ValueError, match=rf"levels.toml: action level {key} = {value:g} {in_file}"):
        ActionLevels.load(f)
    assert getattr(ActionLevels(**{key: 0}), key) == 0.0
    for ok in (98.0,) if key in PERCENT_OF_POINTS else (1.0, 2.5, 40.0):
        assert getattr(ActionLevels(**{key: ok}), key) == ok
    if key in PERCENT_OF_POINTS:
        with pytest.raises(ValueError, match=r"in \(1, 100\]"):
            ActionLevels(**{key: 100.5})


def test_an_mc_uncertainty_level_below_1_percent_is_kept_with_a_warning():
    """mc_uncertainty_max_pct = 0.02 (meant 2 %) can never pass; 0.5 % may be meant (a check run to 0.5 %): below
    1 it is warned about, naming both readings, and kept (the units audit of 2026-12-07, F3)."""
    from mcproton._io.errors import McprotonWarning

    with pytest.warns(McprotonWarning, match=r"mc_uncertainty_max_pct = 0.02 is in percent: the check FAILs an MC "
                                             r"whose statistical uncertainty is above 0.02 %, which needs a "
                                             r"--target-uncertainty of 0.0002 or less; if 2 % was meant, give 2 for "
                                             r"2 %"):
        assert ActionLevels(mc_uncertainty_max_pct=0.02).mc_uncertainty_max_pct == 0.02
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ActionLevels(mc_uncertainty_max_pct=1.0).mc_uncertainty_max_pct == 1.0


@pytest.mark.parametrize("value", [math.nan, math.inf, -1.0, True, "95"])
def test_a_level_that_is_not_a_finite_non_negative_number_is_refused(value):
    with pytest.raises(ValueError, match="must be a non-negative number"):
        ActionLevels(target_d95_pct=value)
    with pytest.raises(ValueError, match="must be a non-negative number"):
        ActionLevels.load(None, target_d95_pct=value)


def test_the_defaults_and_the_example_are_valid():
    lv = ActionLevels()
    assert lv.gamma_2_2_min == 95.0 and lv.mc_uncertainty_max_pct == 2.0


def test_the_command_line_refuses_a_fraction_before_reading_the_inputs(tmp_path, capsys):
    from mcproton.cli import main

    f = tmp_path / "levels.toml"
    f.write_text("[levels]\ngamma_2_2_min = 0.95\n")
    rc = main(["check", str(tmp_path / "no_such_folder"), "--beam-model", "dcpt_v5", "--config", str(f),
               "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "gamma_2_2_min = 0.95 is a percentage of points" in err, err
    assert not (tmp_path / "o").exists()


def test_print_levels_prints_the_defaults_as_a_config_file_with_no_other_option(tmp_path, capsys):
    """``mcproton check --print-levels`` (no folder, no --out) prints a --config file that loads as the defaults:
    what an installed user has, who has no examples/check.toml (audit 21 F6)."""
    from mcproton._check.levels import MEANINGS, defaults_toml
    from mcproton.cli import main

    rc = main(["check", "--print-levels"])
    out = capsys.readouterr().out
    assert rc == 0 and out == defaults_toml()
    f = tmp_path / "mine.toml"
    f.write_text(out)
    assert ActionLevels.load(f) == ActionLevels()
    for k, meaning in MEANINGS.items():   # every level, with what it is
        assert f"{k} = {getattr(ActionLevels(), k)!r}" in out and meaning in out
    f.write_text(out.replace("range_median_mm = 1.0", "range_median_mm = 0.7"))   # a copy edited
    assert ActionLevels.load(f) == ActionLevels(range_median_mm=0.7)


@pytest.mark.parametrize("config_first", [True, False])
def test_print_levels_with_a_config_prints_the_levels_that_config_gives(tmp_path, capsys, config_first):
    """``--print-levels --config tight.toml`` printed the defaults (range_median_mm = 1.0 where the file says 0.5)
    without a word that the file was not read (realcheck audit F5).  Now it prints the levels the file gives over
    the defaults, as the check reads them (a level changed says its default), on either side of --config on the
    line, with no --out; a config the check would refuse is refused here too, with the check's message."""
    from mcproton._check.levels import defaults_toml
    from mcproton.cli import main

    f = tmp_path / "tight.toml"
    f.write_text("[levels]\nrange_median_mm = 0.5\n")
    opts = ["--config", str(f), "--print-levels"] if config_first else ["--print-levels", "--config", str(f)]
    rc = main(["check", *opts])
    out = capsys.readouterr().out
    assert rc == 0 and out != defaults_toml(), out
    line = next(x for x in out.splitlines() if x.startswith("range_median_mm"))
    assert line.startswith("range_median_mm = 0.5 ") and line.endswith("(default 1.0)"), line
    assert str(f) in out and "(default" not in out.replace(line, "")   # the others are the defaults
    printed = tmp_path / "printed.toml"
    printed.write_text(out)
    assert ActionLevels.load(printed) == ActionLevels(range_median_mm=0.5)   # a --config file itself
    f.write_text("[levels]\nrange_median = 0.5\n")
    rc = main(["check", *opts])
    cap = capsys.readouterr()
    assert rc == 2 and cap.out == "" and "unknown action level(s) ['range_median']" in cap.err, cap


def test_the_default_levels_are_named_by_what_an_installed_user_has():
    """--help, help(mcproton.check), check.json's levels_config and a missing --config file named
    examples/check.toml, which pip does not install: each now names --print-levels (audit 21 F6)."""
    import mcproton
    from mcproton._check.record import levels_record
    from mcproton.cli import command_parsers

    texts = {"--help": command_parsers()["check"].format_help(),
             "help(mcproton.check)": mcproton.check.__doc__ or "",
             "check.json": levels_record(None)["source"]}
    with pytest.raises(ValueError) as ex:
        ActionLevels.load("no_such_levels.toml")
    texts["missing --config"] = str(ex.value)
    for where, text in texts.items():
        flat = " ".join(text.split())
        assert "examples/check.toml" not in flat and "--print-levels" in flat, (where, flat)
