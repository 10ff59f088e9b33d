"""The counts that the README's Reliability section quotes for each fuzz suite, read back so that every suite
compares them with what it measures: they drifted without a failure (re-acceptance audit of 2026-12-06, F1: the
config fuzz was quoted 63 refused / 37 accepted while it gave 83 / 17).  A suite whose counts move fails until
the README's line is updated (say in the commit which cases moved and why)."""
from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_bullet(suite: str) -> str:
    """The README bullet that names ``tests/fuzz/<suite>``, on one line."""
    text = README.read_text()
    start = text.find(f"(`tests/fuzz/{suite}`")
    assert start >= 0, f"README's Reliability section no longer names tests/fuzz/{suite}"
    ends = [i for i in (text.find("\n- ", start), text.find("\n\n", start)) if i >= 0]
    return " ".join(text[start:min(ends) if ends else len(text)].split())


def quoted_counts(suite: str) -> dict[str, int]:
    """{"cases", "refused", "accepted"}: the first "N configs" or "N damaged copies", "N refused" and
    "N accepted" of the suite's README bullet."""
    bullet = readme_bullet(suite)
    found = {key: re.search(pattern, bullet) for key, pattern in
             (("cases", r"(\d+) (?:configs|damaged copies)"), ("refused", r"(\d+) refused"),
              ("accepted", r"(\d+) accepted"))}
    missing = [k for k, m in found.items() if m is None]
    assert not missing, f"README's bullet of tests/fuzz/{suite} no longer quotes its {missing} count: {bullet}"
    return {k: int(m.group(1)) for k, m in found.items() if m is not None}


def assert_readme_quotes(suite: str, cases: int, refused: int, accepted: int, rerun: str) -> None:
    """The README's counts of ``suite`` are the ones measured; else a failure that says what to update."""
    measured = {"cases": cases, "refused": refused, "accepted": accepted}
    quoted = quoted_counts(suite)
    assert quoted == measured, (
        f"README (Reliability) quotes {quoted} for tests/fuzz/{suite}, the suite measures {measured} today: "
        f"update the README's line from `{rerun}` and say in the commit which cases moved and why")
