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

