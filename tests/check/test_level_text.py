"""The numbers of an action-level row (mcproton/_check/level_text.py): a value that rounds onto its limit is shown
with the digits that show which side it is on, the limit with the same decimals, no "-0.00" (audit 13, F6: a
Dmean of 3.004 % read "3.00 %" against "|.| <= 3 %" and FAIL)."""
from __future__ import annotations

import itertools
import math
import re

import pytest

from mcproton._check.level_text import (LEVEL_DECIMALS, MAX_LEVEL_DECIMALS, drop_zero_sign, fixed, judged,
                                        level_decimals, level_texts)


def test_a_value_a_hair_beyond_its_limit_shows_the_digit_that_fails_it():
    assert level_texts(3.004, 3, False, "|.| <=", "%", signed=True) == ("+3.004 %", "|.| <= 3.000 %")
    assert level_texts(-3.004, 3, False, "|.| <=", "%", signed=True) == ("-3.004 %", "|.| <= 3.000 %")
    assert level_texts(94.996, 95, False, ">=", "%") == ("94.996 %", ">= 95.000 %")       # a gamma pass rate
    assert level_texts(2.004, 2, False, "<=", "%") == ("2.004 %", "<= 2.000 %")            # the MC's uncertainty
    assert level_texts(1.0004, 1, False, "|.| <=", "mm", signed=True) == ("+1.0004 mm", "|.| <= 1.0000 mm")


def test_a_value_that_rounds_onto_its_limit_and_passes_keeps_two_decimals():
    """2.996 reads 3.00 against 3.00 and passes: the printed numbers say the same as the verdict."""
    assert level_texts(2.996, 3, True, "|.| <=", "%", signed=True) == ("+3.00 %", "|.| <= 3.00 %")
    assert level_texts(95.004, 95, True, ">=", "%") == ("95.00 %", ">= 95.00 %")
    assert level_texts(98.8, 95, True, ">=", "%") == ("98.80 %", ">= 95.00 %")
    assert level_texts(-0.91, 3, True, "|.| <=", "% of the TPS Dmean", signed=True) == (
        "-0.91 % of the TPS Dmean", "|.| <= 3.00 % of the TPS Dmean")


def test_a_limit_with_more_decimals_is_shown_in_full_and_the_value_with_as_many():
    """A level file's 0.525 mm is not shown as 0.53 (nor the value as 0.52 against it); the audit's repro: the
    limit set to the value's 2-decimal display, 0.52 against a median of 0.52273, FAIL."""
    assert level_texts(0.52273, 0.525, True, "|.| <=", "mm", signed=True) == ("+0.523 mm", "|.| <= 0.525 mm")
    assert level_texts(0.52273, 0.52, False, "|.| <=", "mm", signed=True) == ("+0.523 mm", "|.| <= 0.520 mm")
    # a computed limit (90 % of the 99.25 % the noise alone leaves): the value decides the decimals
    lim = 0.9 * 99.2537
    assert level_decimals([(89.31, False)], lim, ">=") == LEVEL_DECIMALS
    assert level_decimals([(89.3281, False)], lim, ">=") == 4


def test_several_values_of_one_row_each_on_its_own_side():
    """The D95 row's raw, noise-matched and MC-corrected differences: the decimals that show each one's side."""
    vals = [(3.1, False), (3.0004, False), (2.5, True)]
    assert level_decimals(vals, 3, "|.| <=") == 4
    assert level_decimals([(3.1, False), (2.5, True)], 3, "|.| <=") == 2


def test_no_negative_zero_and_nan_is_na():
    assert fixed(-0.001, 2) == "0.00" and fixed(-0.001, 2, signed=True) == "0.00"
    assert fixed(0.004, 2, signed=True) == "0.00" and fixed(0.006, 2, signed=True) == "+0.01"
    assert fixed(-0.00004, 4) == "0.0000" and drop_zero_sign("-0.0000") == "0.0000"
    assert drop_zero_sign("-0.10") == "-0.10" and drop_zero_sign("+1.00") == "+1.00"
    assert fixed(float("nan"), 2) == "n/a" and level_texts(float("nan"), 95, False, ">=", "%")[0] == "n/a %"
    assert not judged(float("nan"), 3, "|.| <=")
    with pytest.raises(ValueError, match="level kind"):
        judged(1.0, 1.0, "<")


def test_a_value_within_a_millionth_of_its_limit_is_written_in_full():
    v = 3.0000000001
    assert level_decimals([(v, False)], 3, "|.| <=") is None
    assert level_texts(v, 3, False, "|.| <=", "%", signed=True) == ("+3.0000000001 %", "|.| <= 3.0 %")


@pytest.mark.parametrize("kind", ["|.| <=", ">=", "<="])
def test_the_printed_numbers_judged_as_the_level_judges_give_the_verdict(kind):
    """Over values around limits of 0, 1 and 2 decimals: the value and the limit as printed, read back and judged,
    give the verdict of the unrounded value; the two have the same decimals."""
    limits = (3, 95, 1, 0.5, 2.25, 89.33)
    steps = (0, 1e-7, 4e-4, 4.9e-3, 5e-3, 5.1e-3, 0.01, 0.2)
    for lim, step, sign in itertools.product(limits, steps, (1, -1)):
        value = lim + sign * step
        for v in ((value, -value) if kind == "|.| <=" else (value,)):
            ok = judged(v, lim, kind)
            vt, lt = level_texts(v, lim, ok, kind, "%", signed=kind == "|.| <=")
            shown_v = float(vt.split()[0])
            shown_l = float(re.findall(r"[-+]?\d+\.?\d*", lt)[0])
            assert judged(shown_v, shown_l, kind) == ok, (v, lim, vt, lt)
            dv, dl = (len(t.split(".")[1]) if "." in t else 0 for t in (vt.split()[0], lt.split()[-2]))
            assert dv == dl or MAX_LEVEL_DECIMALS < max(dv, dl), (vt, lt)
            assert not vt.startswith("-0.00") and math.isfinite(shown_v)


def test_a_percentage_that_is_not_a_number_reads_n_a():
    """Strings audit 19, F8: the D95 level's "modelled spread nan % (1 sd ...)" of a target without TPS dose."""
    from mcproton._check.level_text import percent_or_na

    assert percent_or_na(float("nan")) == "n/a" and percent_or_na(1.234) == "1.23 %"
    assert percent_or_na(float("inf")) == "n/a" and percent_or_na(-0.001) == "0.00 %"
