"""The harness shared by the DICOM mutation fuzz tests (tests/fuzz/test_dicom_mutations.py: RT Ion Plans and CT;
tests/fuzz/test_rtdose_rtstruct_mutations.py: RT Dose and RT Struct): walking a data set, writing a mutated
one, loading it and sorting the outcome, and the tally.

The rule: loading a damaged file either raises one of the refusals (:class:`DicomInputError` by default) with a
one-line message, or succeeds with exactly the signature (what a dose calculation uses) of the undamaged file.
A traceback (any other exception) or a success with another signature (a silent wrong result) is a violation.
"""
from __future__ import annotations

import io
import math
import warnings
from collections import Counter

from pydicom.dataset import Dataset

from mcproton._io.errors import DicomInputError

VIOLATIONS = ("traceback", "silently changed", "multi-line message")


def walk(ds: Dataset):
    """(parent data set, tag) of every element, recursively."""
    for elem in list(ds):
        yield ds, elem.tag
        if elem.VR == "SQ":
            for item in elem.value:
                yield from walk(item)


def nan_value(elem):
    """NaN in the element's own value representation (every value of a multi-valued FL/FD; a DS becomes one
    "NaN")."""
    if elem.VR in ("FL", "FD"):
        return [math.nan] * len(elem.value) if elem.VM > 1 else math.nan
    return "NaN"


def to_bytes(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


class Tally:
    def __init__(self):
        self.counts = Counter()
        self.by_mutation = Counter()
        self.violations: list[str] = []

    def record(self, kind: str, name: str, outcome: str, detail: str = ""):
        self.counts[f"{kind} {outcome}"] += 1
        self.by_mutation[f"{name} {outcome}"] += 1
        if outcome in VIOLATIONS:
            self.violations.append(f"{kind} {name}: {outcome}: {detail}")

    def total(self, outcome: str | None = None) -> int:
        return sum(v for k, v in self.counts.items() if outcome is None or k.endswith(" " + outcome))


def outcome(load, path, reference, refusals: tuple[type[BaseException], ...] = (DicomInputError,), describe=None):
    """("refused" | "accepted unchanged" | a violation, detail) of ``load(path)`` against ``reference``;
    ``describe(got, reference)`` says how a changed result differs."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            got = load(path)
    except refusals as exc:
        msg = str(exc)
        return ("refused", msg[:300]) if msg and "\n" not in msg else ("multi-line message", msg[:300])
    except Exception as exc:  # noqa: BLE001 - a traceback that would reach the user
        return "traceback", f"{type(exc).__name__}: {exc}"[:300]
    if got != reference:
        return "silently changed", (describe(got, reference) if describe else "loaded with a different result")
    return "accepted unchanged", ""


def run_cases(tmp, seed: int, *runners) -> Tally:
    """One Tally of the ``runners`` (each ``runner(tmp, tally, rng)``) sharing one random generator of ``seed``, in
    this order (the cases, hence the counts, depend on it)."""
    import numpy as np

    tally = Tally()
    rng = np.random.default_rng(seed)
    for run in runners:
        run(tmp, tally, rng)
    return tally


def print_counts(run_all, report) -> int:
    """Run the cases in a temporary folder, print the counts (``report``) and every violation; 1 if there is one
    (the files' ``python tests/fuzz/<file>.py``)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        t = run_all(Path(d))
    print(report(t))
    for v in t.violations:
        print("VIOLATION", v)
    return 1 if t.violations else 0



def refusal(load, path, refusals: tuple[type[BaseException], ...] = (DicomInputError,)) -> str:
    """The message of ``load(path)``'s refusal; AssertionError if it loads, raises anything else (a traceback that
    would reach the user) or says it on more than one line."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            load(path)
    except refusals as exc:
        msg = str(exc)
        assert msg and "\n" not in msg, f"{path}: a refusal without a one-line message: {msg!r}"
        return msg
    except Exception as exc:  # noqa: BLE001 - reported as the test's failure
        raise AssertionError(f"{path}: {type(exc).__name__} instead of a refusal: {exc}") from exc
    raise AssertionError(f"{path}: loaded, not refused")


def set_text(ds, item, keyword: str, index: int, text: str) -> bytes:
    """The bytes of ``ds`` with value ``index`` of the string-encoded numeric attribute (DS, IS) ``keyword`` of
    ``item`` (``ds`` or an item inside it) replaced by ``text`` as it stands, e.g. "nan", "1,5" or "abc", which
    pydicom will not write itself: a placeholder number of the same width is written and its bytes replaced."""
    width = max(len(text), 4)
    elem = item[keyword]
    # a number of the width of ``text`` that no file holds elsewhere (a "+" is never in a UID)
    mark = "+" + "7" * (width - 1) if elem.VR == "IS" else "+" + "7" * (width - 3) + ".5"
    vals = [str(v) for v in elem.value] if elem.VM > 1 else [str(elem.value)]
    vals[index] = mark
    elem.value = vals if len(vals) > 1 else vals[0]
    data = to_bytes(ds)
    assert data.count(mark.encode()) == 1, f"the placeholder {mark} is not unique in the file"
    return data.replace(mark.encode(), text.encode().ljust(width))
