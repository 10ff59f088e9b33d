"""The numbers of an action-level row as text (the report's table, ``checks[].value_text`` / ``limit_text``).

The verdict is the unrounded value's.  Shown with a fixed number of decimals, a value a hair beyond its limit read
the same as the limit: ``3.00 %`` against ``|.| <= 3 %`` and FAIL (audit 13, F6: value 3.004), a row that
contradicts itself on the page a physicist signs.  The rule here: the value and the limit are shown with the same
decimals, at least :data:`LEVEL_DECIMALS` (and at least the limit's own, so that a configured 0.525 mm is not shown
as 0.53), and with more where needed until the two numbers as printed, judged as the level judges, give the
verdict: 3.004 against 3 is ``+3.004 %`` against ``|.| <= 3.000 %``, FAIL; 2.996 is ``+3.00 %`` against
``|.| <= 3.00 %``, a pass, and reads as one.  A value that rounds to zero is ``0.00``, never ``-0.00``.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

#: The decimals of an action-level row's value and limit unless the limit has more, or more are needed to show on
#: which side of the limit the value is (percent and mm: 0.01 is below any level's meaning).
LEVEL_DECIMALS = 2

#: The most decimals tried; a value still shown equal to its limit (within 1e-6 of it) is written in full (the
#: shortest text that reads back as the same float).
MAX_LEVEL_DECIMALS = 6

#: The comparisons of the action levels (the ``kind`` of a row, as its limit text starts).
KINDS = ("|.| <=", ">=", "<=")


def drop_zero_sign(text: str) -> str:
    """``text`` (a formatted number) without its sign where every digit is 0: "-0.00" and "+0.00" read as a
    signed difference where the value rounds to none."""
    if text[:1] in "+-" and not any(ch in "123456789" for ch in text):
        return text[1:]
    return text


def fixed(x: float, decimals: int | None, signed: bool = False) -> str:
    """``x`` with ``decimals`` decimals (``None``: in full, the shortest text that reads back as ``x``), "+" before
    a positive value where ``signed``, "n/a" where not finite, no sign where it rounds to zero."""
    if not math.isfinite(x):
        return "n/a"
    text = (repr(float(x)) if decimals is None else f"{x:.{decimals}f}")
    if signed and not text.startswith("-"):
        text = "+" + text
    return drop_zero_sign(text)


def percent_or_na(x: float, decimals: int = 2) -> str:
    """``x`` as "1.23 %", or "n/a" where it is not a number (a target without TPS dose: "nan %" before 2026-12-06,
    where the other numbers of the line read n/a; strings audit 19, F8)."""
    return f"{fixed(x, decimals)} %" if math.isfinite(x) else "n/a"


def judged(value: float, limit: float, kind: str) -> bool:
    """Whether ``value`` passes the level ``kind`` ("|.| <=", ">=" or "<=") of ``limit``; a value that is not a
    number fails."""
    if kind not in KINDS:
        raise ValueError(f"level kind {kind!r}: one of {', '.join(KINDS)}")
    if not math.isfinite(value):
        return False
    if kind == "|.| <=":
        return abs(value) <= limit
    return value >= limit if kind == ">=" else value <= limit


#: The most decimals of a limit shown in full as it is (a level file's 0.525 mm); a limit with more is a computed
#: one (90 % of the 99.25 % of rays the MC's noise alone leaves: 89.32833), whose decimals the value decides.
OWN_LIMIT_DECIMALS = 3


def _own_decimals(limit: float) -> int:
    """The decimals a limit needs to be shown exactly (0.525: 3), where it has at most OWN_LIMIT_DECIMALS; 0 for
    one with more."""
    for d in range(OWN_LIMIT_DECIMALS + 1):
        if float(f"{limit:.{d}f}") == limit:
            return d
    return 0


def level_decimals(values: Iterable[tuple[float, bool]], limit: float, kind: str) -> int | None:
    """The decimals to show the values of a row and its limit with: the fewest, at least LEVEL_DECIMALS and the
    limit's own, at which every ``(value, passed)`` as printed, judged against the limit as printed, gives its
    ``passed``; ``None`` where even MAX_LEVEL_DECIMALS do not (write them in full, :func:`fixed`)."""
    vals = list(values)
    for d in range(max(LEVEL_DECIMALS, _own_decimals(limit)), MAX_LEVEL_DECIMALS + 1):
        lim = float(f"{limit:.{d}f}")
        if all(not math.isfinite(v) or judged(float(f"{v:.{d}f}"), lim, kind) == ok for v, ok in vals):
            return d
    return None


def level_texts(value: float, limit: float, passed: bool, kind: str, unit: str,
                signed: bool = False) -> tuple[str, str]:
    """(value text, limit text) of a row: e.g. ("+3.004 %", "|.| <= 3.000 %") for a difference of 3.004 % against
    3 % (FAIL); ``signed`` for a difference, whose sign the reader needs."""
    d = level_decimals([(value, passed)], limit, kind)
    return (f"{fixed(value, d, signed)} {unit}".strip(), f"{kind} {fixed(limit, d)} {unit}".strip())
