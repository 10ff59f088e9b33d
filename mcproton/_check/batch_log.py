"""What the log of ``mcproton check --batch`` says as the batch goes (the progress-log audit 26, F4 and F5).

* Each patient's verdict as its check ends (:func:`verdict_line`), not only in the table printed after the last
  patient: a batch stopped by SIGTERM, a time limit of the batch system or Ctrl-C never printed that table, so its log
  held no outcome of the patients that had ended (batch.json had them), and a patient refused for its input was
  named with its reason only after the whole night.
* The warnings about the whole batch (the beam model as it is read, a --target-uncertainty above its action level:
  :func:`said_for_the_batch`) once, before the first patient, and not again for each patient (a 30-patient night
  printed 60 copies of one beam-model line); every other warning given during a patient's check shown with the
  patient's folder name in front, ``mcproton: warning: [p1] ...`` (:func:`patient_warnings`), so that
  ``grep warning batch.log`` keeps whose it is.  Only what is shown changes: each patient's check.json and report
  keep every warning of its check, in full.
"""
from __future__ import annotations

import contextlib
import warnings
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

from .._io.console import printable

#: the verdict word of a patient that was not checked, by its status
BATCH_WORD = {"refused": "REFUSED", "environment_error": "ERROR", "internal_error": "ERROR",
              "not_checked": "NOT CHECKED"}


def verdict_word(r: Any) -> str:
    """A patient's outcome in ``check_batch``'s result (a CheckResult, a ReusedCheck, or a BatchError: the message,
    a ``str`` with a ``status``) in words: PASS, FAIL (the quantities failed), REFUSED (why), ERROR (why) or NOT
    CHECKED (why); a check against mcproton's own dose says so, as the single check's verdict line (realcheck F2),
    one without a structure set too (journey audit 28, F1), and a reused one when it was checked."""
    if isinstance(r, str):
        return f"{BATCH_WORD.get(getattr(r, 'status', ''), 'ERROR')} ({r})"
    from .api import verdict_said

    word = verdict_said(r.passed, "" if r.passed else "; ".join(c["quantity"] for c in r.failed), r.self_compared,
                        getattr(r, "no_structures", ""), getattr(r, "kvp_mismatch", ""))
    if getattr(r, "status", None) == "reused":
        word += f" (reused: checked {r.checked}, same inputs and settings)"
    return word


def verdict_line(name: str, r: Any, seconds: float | None = None) -> str:
    """The log's line of a patient whose check ended: ``mcproton check --batch: p1: FAIL (...)``, with the time it
    took (``seconds``) and its report where it has one."""
    from .._run.streaming import duration

    report = getattr(r, "report_html", None) or getattr(r, "report_json", None)
    return (f"mcproton check --batch: {printable(name)}: {verdict_word(r)}"
            + (f", after {duration(seconds).strip()}" if seconds is not None else "")
            + (f"; report {printable(report)}" if report else ""))


def said_for_the_batch(kwargs: Mapping[str, Any]) -> list[str]:
    """Say, once before the first patient, the warnings that every patient's check would give alike, and return
    their messages: the beam model's (read here, as each check reads it again: a model given by name or file; one
    given as a BeamModel was read by the caller), a --target-uncertainty above the action level of the MC's
    uncertainty, and one whose noise takes most of the target D95 level (api._warn_d95_noise_bias: it came once for
    each patient, review b of audit 31, R2).  Where the model or the levels cannot be read, nothing is said of them
    here: each patient's check refuses them, as before."""
    from .._io.errors import recording_warnings

    with recording_warnings() as said:
        bm = kwargs.get("beam_model")
        if isinstance(bm, (str, Path)):
            from .._io.beam_model import load_beam_model

            try:
                load_beam_model(bm)
            except Exception:  # noqa: BLE001 - refused by each patient's check, with its message
                pass
        if kwargs.get("mc") is None:
            from .api import _warn_d95_noise_bias, _warn_target_above_level
            from .levels import ActionLevels

            levels = kwargs.get("levels")
            try:
                lv = levels if isinstance(levels, ActionLevels) else ActionLevels.load(levels)
            except Exception:  # noqa: BLE001 - refused by each patient's check, with its message
                lv = None
            if lv is not None:
                _warn_target_above_level(kwargs.get("target_uncertainty"), lv)
                _warn_d95_noise_bias(kwargs.get("target_uncertainty"), lv)
    return list(dict.fromkeys(said))


@contextlib.contextmanager
def patient_warnings(name: str, batch_wide: Collection[str]) -> Iterator[None]:
    """``with patient_warnings("p1", said):`` mcproton's warnings shown during the block (one patient's check) carry
    ``[p1]`` in front, and those in ``batch_wide`` (:func:`said_for_the_batch`, said before the first patient) are
    not shown again.  Only the showing changes (``warnings.showwarning``): what is recorded (the check's record,
    check.json) and Python's warning filters are untouched."""
    from .._io.errors import McprotonWarning

    label = f"[{printable(name)}] "
    with warnings.catch_warnings():
        shown = warnings.showwarning

        def show(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
            if isinstance(category, type) and issubclass(category, McprotonWarning):
                text = str(message)
                if text in batch_wide:
                    return
                try:
                    message = category(label + text)
                except TypeError:   # a warning class that takes other arguments: its text
                    message = label + text
            shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        yield
